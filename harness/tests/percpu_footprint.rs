//! Provider pages of a fresh SLUB and a fresh SLAB instance, and after 50 extra caches: the
//! footprint the packed per-CPU allocator (`common::pcpu_alloc`) is meant to shrink for SLUB.
//! Run with `--nocapture` to see the numbers.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::{Owner, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};

const EXTRA_CACHES: usize = 50;

fn provider() -> PageProvider {
    let mut cfg = ProviderConfig::small(Topology::uniform(1, 2).unwrap(), 64);
    cfg.bind = false;
    PageProvider::new(&cfg).unwrap()
}

#[derive(Debug, Clone, Copy)]
struct Counts {
    pages: usize,
    metadata: usize,
}

fn counts(p: &PageProvider) -> Counts {
    let s = p.stats();
    Counts {
        pages: s.pages_in_use,
        metadata: s.owner(Owner::Metadata),
    }
}

/// (fresh, after the extra caches)
fn measure<A: SlabAllocator>(name: &str, p: &PageProvider, a: &A) -> (Counts, Counts) {
    let fresh = counts(p);
    let hs: Vec<_> = (0..EXTRA_CACHES)
        .map(|i| {
            a.kmem_cache_create(
                &format!("extra-{i}"),
                24 + 8 * i,
                0,
                SlabFlags::NO_MERGE,
                None,
            )
            .unwrap()
        })
        .collect();
    let more = counts(p);
    println!(
        "{name}: fresh {} pages ({} metadata); +{EXTRA_CACHES} caches {} pages ({} metadata)",
        fresh.pages, fresh.metadata, more.pages, more.metadata
    );
    for h in hs {
        // SAFETY: the cache is empty and nobody uses it any more.
        unsafe { a.kmem_cache_destroy(h) }.unwrap();
    }
    (fresh, more)
}

#[test]
fn slub_and_slab_footprint() {
    let p = provider();
    let s = slub::Slub::new(&p, slub::SlubSettings::default()).unwrap();
    let (fresh, more) = measure("slub", &p, &s);
    drop(s);
    assert_eq!(p.stats().pages_in_use, 0);

    let p = provider();
    let s = slab_classic::Slab::new(&p, slab_classic::SlabSettings::default()).unwrap();
    let _ = measure("slab", &p, &s);
    drop(s);
    assert_eq!(p.stats().pages_in_use, 0);

    // One PerCpu<KmemCacheCpu> per SLUB cache (2 CPUs x 64 B): packed into shared chunks, the
    // 50 caches cost far less metadata than the page per cache an unpacked PerCpu took (before
    // packing: +50 metadata pages, one per cache).
    assert!(
        more.metadata - fresh.metadata < EXTRA_CACHES / 4,
        "{fresh:?} -> {more:?}"
    );
}
