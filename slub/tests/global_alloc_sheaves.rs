//! The whole test binary runs on SLUB era 7.0 (percpu sheaves for every cache, the
//! kmalloc caches included): `GlobalSlab<Slub>` is its `#[global_allocator]`, so the test
//! harness, its threads and the standard library allocate through sheaves, barns and the
//! CPU-slab-less slab path.

use common::{GlobalSlab, PageProvider, ProviderConfig, SlabAllocator, Topology};
use slub::{Era, Slub, SlubSettings};

fn init() -> Option<Slub> {
    let cpus = common::sys::nprocs_conf().max(1);
    let t = Topology::uniform(1, cpus).ok()?;
    let mut cfg = ProviderConfig::small(t, 1024);
    cfg.bind = false;
    let p = PageProvider::new(&cfg).ok()?;
    Slub::new(
        &p,
        SlubSettings {
            era: Era::V7_0,
            ..SlubSettings::default()
        },
    )
    .ok()
}

#[global_allocator]
static GLOBAL: GlobalSlab<Slub> = GlobalSlab::new(init);

/// One test, so `validate()` (whose provider check reads counters that a page allocation on
/// another thread updates in two steps) never runs beside another test's allocations.
#[test]
fn sheaves_as_the_global_allocator() {
    std_collections_on_sheaves();
    threads_on_sheaves();
}

fn std_collections_on_sheaves() {
    let mut v: Vec<String> = Vec::new();
    for i in 0..20_000 {
        v.push(format!("item-{i}-{}", "x".repeat(i % 300)));
    }
    let mut m = std::collections::HashMap::new();
    for (i, s) in v.iter().enumerate() {
        m.insert(s.clone(), i);
    }
    for (i, s) in v.iter().enumerate() {
        assert_eq!(m[s], i);
    }
    let s = GLOBAL.get().unwrap();
    assert_eq!(s.settings().era, Era::V7_0);
    let k = s.kmalloc_cache(64).unwrap();
    assert!(s.cache_attrs(k).unwrap().sheaf_capacity > 0);
    assert!(s.sheaf_census(k).unwrap().cpu_sheaves > 0);
}

fn threads_on_sheaves() {
    let hs: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                for i in 0..5000 {
                    let b: Box<[u64]> =
                        vec![(t * 10_000 + i) as u64; 1 + i % 64].into_boxed_slice();
                    keep.push(b);
                    if keep.len() > 100 {
                        let b = keep.swap_remove(i % keep.len());
                        assert!(b.iter().all(|&x| x == b[0]));
                    }
                }
                keep.len()
            })
        })
        .collect();
    for h in hs {
        assert!(h.join().unwrap() > 0);
    }
    GLOBAL.get().unwrap().validate().unwrap();
}
