//! Shared helpers for the integration tests.
#![allow(dead_code)]

use common::{PageProvider, ProviderConfig, SlabError, Topology};
use slab_classic::{Slab, SlabSettings};

/// A provider over `nodes` fake NUMA nodes (2 CPUs), `mib` MiB per node.
pub(crate) fn provider(nodes: usize, mib: usize) -> PageProvider {
    let topo = Topology::uniform(1, 2)
        .unwrap()
        .with_fake_numa(nodes)
        .unwrap();
    PageProvider::new(&ProviderConfig::small(topo, mib)).unwrap()
}

/// A provider (one node, `mib` MiB) with a CPU slot for every CPU id of the machine
/// ([`common::testing::machine_topology`]): for the rseq storms.
pub(crate) fn machine_provider(mib: usize) -> PageProvider {
    PageProvider::new(&ProviderConfig::small(
        common::testing::machine_topology(),
        mib,
    ))
    .unwrap()
}

/// A provider with a global page limit.
pub(crate) fn limited_provider(mib: usize, page_limit: usize) -> PageProvider {
    let topo = Topology::uniform(1, 2).unwrap();
    let mut cfg = ProviderConfig::small(topo, mib);
    cfg.page_limit = Some(page_limit);
    PageProvider::new(&cfg).unwrap()
}

/// An instance with stats on.
pub(crate) fn slab(p: &PageProvider) -> Slab {
    Slab::new(
        p,
        SlabSettings {
            stats: true,
            ..SlabSettings::default()
        },
    )
    .unwrap()
}

/// Pins the calling thread to the first CPU it may use and returns it.
pub(crate) fn pin_first() -> usize {
    let cpus = common::pin::allowed_cpus();
    let c = cpus[0];
    common::pin::pin_to_cpu(c).expect("pin test thread");
    c
}

/// Fills `len` bytes at `p` with a pattern derived from `seed`.
pub(crate) fn fill(p: *mut u8, len: usize, seed: u64) {
    for i in 0..len {
        // SAFETY: the caller owns `len` bytes at `p`.
        unsafe { *p.add(i) = (seed.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8 };
    }
}

/// Checks the pattern written by `fill`.
pub(crate) fn check(p: *const u8, len: usize, seed: u64) -> bool {
    (0..len).all(|i| {
        // SAFETY: the caller owns `len` bytes at `p`.
        unsafe { *p.add(i) == (seed.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8 }
    })
}

/// Pages a bootstrap with `settings` takes from a fresh provider (checked to be given back).
pub(crate) fn footprint(settings: SlabSettings) -> usize {
    let p = provider(1, 64);
    let s = Slab::new(&p, settings).unwrap();
    let f = p.stats().pages_in_use;
    drop(s);
    assert_eq!(p.stats().pages_in_use, 0);
    f
}

/// A bootstrap with `settings` on a provider limited to every `step`-th page count below its
/// footprint `f` (and `f - 1`) fails with `NoMemory`, gives every page back and leaves the
/// provider consistent; at `f` pages it succeeds, and the instance is returned.
pub(crate) fn bootstrap_fails_cleanly_below(
    settings: SlabSettings,
    f: usize,
    step: usize,
) -> (PageProvider, Slab) {
    for limit in (1..f).step_by(step).chain([f - 1]) {
        let p = limited_provider(64, limit);
        let r = Slab::new(&p, settings);
        assert!(
            matches!(r, Err(SlabError::NoMemory)),
            "limit {limit}: {r:?}"
        );
        assert_eq!(p.stats().pages_in_use, 0, "limit {limit}");
        p.check_invariants().unwrap();
    }
    let p = limited_provider(64, f);
    let s = Slab::new(&p, settings).unwrap();
    (p, s)
}
