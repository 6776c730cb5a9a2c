//! Shared helpers for the integration tests.
#![allow(dead_code)]

use common::{PageProvider, ProviderConfig, Topology};
use slub::{Slub, SlubSettings};

/// A provider with `nodes` fake NUMA nodes over a synthetic 2-CPU machine, `mib` MiB per node.
pub(crate) fn provider(nodes: usize, mib: usize) -> PageProvider {
    let t = Topology::uniform(1, 2).unwrap();
    let t = if nodes > 1 {
        t.with_fake_numa(nodes).unwrap()
    } else {
        t
    };
    let mut cfg = ProviderConfig::small(t, mib);
    cfg.bind = false;
    PageProvider::new(&cfg).unwrap()
}

/// A provider (one node, `mib` MiB) with a CPU slot for every CPU id of the machine
/// ([`common::testing::machine_topology`]): for the rseq storms.
pub(crate) fn machine_provider(mib: usize) -> PageProvider {
    let mut cfg = ProviderConfig::small(common::testing::machine_topology(), mib);
    cfg.bind = false;
    PageProvider::new(&cfg).unwrap()
}

/// A provider with a page limit.
pub(crate) fn limited_provider(mib: usize, page_limit: usize) -> PageProvider {
    let t = Topology::uniform(1, 2).unwrap();
    let mut cfg = ProviderConfig::small(t, mib);
    cfg.bind = false;
    cfg.page_limit = Some(page_limit);
    PageProvider::new(&cfg).unwrap()
}

pub(crate) fn slub(p: &PageProvider) -> Slub {
    Slub::new(p, SlubSettings::default()).unwrap()
}

pub(crate) fn slub_with(p: &PageProvider, s: SlubSettings) -> Slub {
    Slub::new(p, s).unwrap()
}

pub(crate) fn stats_on() -> SlubSettings {
    SlubSettings {
        stats: true,
        ..SlubSettings::default()
    }
}

/// Fills `len` bytes at `p` with a pattern derived from `seed`.
pub(crate) fn fill<P: Addr>(p: P, len: usize, seed: usize) {
    let p = p.addr() as *mut u8;
    for i in 0..len {
        let v = seed.wrapping_mul(31).wrapping_add(i * 7) as u8;
        // SAFETY: test objects of at least len bytes.
        unsafe { p.add(i).write(v) };
    }
}

/// Checks the pattern of [`fill`].
pub(crate) fn check<P: Addr>(p: P, len: usize, seed: usize) -> bool {
    let p = p.addr() as *const u8;
    (0..len).all(|i| {
        // SAFETY: as in fill.
        unsafe { p.add(i).read() == (seed.wrapping_mul(31).wrapping_add(i * 7)) as u8 }
    })
}

/// Pins to `cpu` if the machine allows (tests still pass unpinned).
pub(crate) fn pin(cpu: usize) -> bool {
    let allowed = common::pin::allowed_cpus();
    if allowed.is_empty() {
        return false;
    }
    common::pin::pin_to_cpu(allowed[cpu % allowed.len()]).is_ok()
}

/// Something that names an address (raw or NonNull pointer).
pub(crate) trait Addr {
    fn addr(self) -> usize;
}
impl Addr for *mut u8 {
    fn addr(self) -> usize {
        self as usize
    }
}
impl Addr for core::ptr::NonNull<u8> {
    fn addr(self) -> usize {
        self.as_ptr() as usize
    }
}

/// The first word of a live object.
pub(crate) fn read_u64<P: Addr>(p: P) -> u64 {
    // SAFETY: test objects are at least 8 bytes and 8-aligned.
    unsafe { (p.addr() as *const u64).read() }
}

/// Asserts that a child started by `common::testing::run_child(test, ..)` died of SIGABRT with
/// the debug-build lockdep report: a heap allocation (from `site`, if given) while holding one
/// allocator lock.
pub(crate) fn assert_lockdep_abort(test: &str, out: &std::process::Output, site: Option<&str>) {
    use std::os::unix::process::ExitStatusExt;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "the child of {test} should abort: {:?}\n{stderr}",
        out.status
    );
    let report = match site {
        Some(site) => format!(
            "slabworks lockdep: heap allocation (from {site}) while holding 1 allocator lock(s)"
        ),
        None => "while holding 1 allocator lock(s)".to_string(),
    };
    assert!(stderr.contains(&report), "{stderr}");
}
