//! The whole test binary runs on SLUB: `GlobalSlab<Slub>` is its `#[global_allocator]`, so the
//! test harness, its threads, the standard library and these tests allocate through
//! `kmalloc`/`kfree` (construction must not use the Rust heap for this to work at all).

use common::{GlobalSlab, PageProvider, ProviderConfig, SlabAllocator, Topology};
use slub::{Slub, SlubSettings};

fn init() -> Option<Slub> {
    let cpus = common::sys::nprocs_conf().max(1);
    let t = Topology::uniform(1, cpus).ok()?;
    let mut cfg = ProviderConfig::small(t, 1024);
    cfg.bind = false;
    let p = PageProvider::new(&cfg).ok()?;
    Slub::new(&p, SlubSettings::default()).ok()
}

#[global_allocator]
static GLOBAL: GlobalSlab<Slub> = GlobalSlab::new(init);

#[test]
fn std_collections_on_slub() {
    let _watchdog = common::testing::watchdog("std_collections_on_slub");
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
    let big = vec![7u8; 3 << 20];
    assert!(big.iter().all(|&b| b == 7));
    let aligned = std::alloc::Layout::from_size_align(100, 256).unwrap();
    // SAFETY: non-zero layout; freed with the same layout.
    unsafe {
        let p = std::alloc::alloc(aligned);
        assert!(!p.is_null() && p as usize % 256 == 0);
        std::alloc::dealloc(p, aligned);
    }
    let s = GLOBAL.get().unwrap();
    assert!(s.memory_usage().slab_pages > 0);
}

#[test]
fn threads_on_slub() {
    let _watchdog = common::testing::watchdog("threads_on_slub");
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
