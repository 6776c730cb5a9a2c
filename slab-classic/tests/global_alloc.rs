//! slab-classic as the process's `#[global_allocator]`: every Rust allocation of this test
//! binary (the test harness's included) goes through kmalloc/kfree of one SLAB instance, which
//! proves that construction and the allocation paths never use the Rust heap themselves.

use common::api::GlobalSlab;
use common::{PageProvider, ProviderConfig, SlabAllocator, Topology};
use slab_classic::{Slab, SlabSettings};

fn init() -> Option<Slab> {
    let topo = Topology::uniform(1, 2).ok()?;
    let p = PageProvider::new(&ProviderConfig::small(topo, 256)).ok()?;
    Slab::new(&p, SlabSettings::default()).ok()
}

#[global_allocator]
static GLOBAL: GlobalSlab<Slab> = GlobalSlab::new(init);

#[test]
fn rust_collections_run_on_slab() {
    let _watchdog = common::testing::watchdog("rust_collections_run_on_slab");
    let mut v: Vec<String> = Vec::new();
    for i in 0..20_000 {
        v.push(format!("object number {i}"));
    }
    let total: usize = v.iter().map(String::len).sum();
    assert!(total > 200_000);
    let mut m = std::collections::BTreeMap::new();
    for (i, s) in v.iter().enumerate() {
        m.insert(s.clone(), i);
    }
    assert_eq!(m.len(), 20_000);
    let big = vec![7u8; 3 << 20];
    assert_eq!(
        big.iter().map(|&b| b as usize).sum::<usize>(),
        7 * (3 << 20)
    );
    let aligned = std::alloc::Layout::from_size_align(100, 256).unwrap();
    // SAFETY: allocated and freed with the same layout.
    unsafe {
        let p = std::alloc::alloc(aligned);
        assert!(!p.is_null() && p as usize % 256 == 0);
        std::alloc::dealloc(p, aligned);
    }
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                (0..10_000)
                    .map(|i| vec![t; i % 300])
                    .map(|v| v.len())
                    .sum::<usize>()
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() > 0);
    }
    let slab = GLOBAL.get().unwrap();
    slab.validate().unwrap();
    assert!(slab.memory_usage().slab_pages > 0);
    drop(v);
    drop(m);
    drop(big);
}
