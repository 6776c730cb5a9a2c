//! Fake NUMA with 2 and 4 nodes: placement, alien caches, fallback.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use core::ptr::NonNull;
use slab_classic::Slab;

fn nid(p: &PageProvider, o: NonNull<u8>) -> usize {
    p.page_to_nid(p.virt_to_head_page(o.as_ptr() as usize).unwrap())
}

fn placement_on_every_node(nodes: usize) {
    let p = util::provider(nodes, 32);
    let s = util::slab(&p);
    assert_eq!(s.nr_nodes(), nodes);
    let c = s
        .kmem_cache_create("placed", 120, 0, SlabFlags::NONE, None)
        .unwrap();
    let mut objs = Vec::new();
    for node in 0..nodes {
        for &size in &[32usize, 100, 700, 3000, 20000] {
            for _ in 0..50 {
                let o = s.kmalloc_node(size, Gfp::KERNEL, node).unwrap();
                assert_eq!(nid(&p, o), node, "kmalloc_node({size}, {node})");
                objs.push(o);
            }
        }
        for _ in 0..100 {
            let o = s.kmem_cache_alloc_node(c, Gfp::THISNODE, node).unwrap();
            assert_eq!(nid(&p, o), node);
            // SAFETY: freed once (from whatever CPU runs this: local or alien path).
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
    }
    assert!(
        s.kmalloc_node(64, Gfp::KERNEL, nodes).is_none(),
        "no such node"
    );
    s.validate().unwrap();
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    s.validate().unwrap();
    s.shrink_all();
    s.validate().unwrap();
}

#[test]
fn kmalloc_node_places_objects_on_2_nodes() {
    placement_on_every_node(2);
}

#[test]
fn kmalloc_node_places_objects_on_4_nodes() {
    placement_on_every_node(4);
}

#[test]
fn remote_frees_go_through_the_alien_array_and_overflow_into_the_shared_array() {
    let p = util::provider(2, 32);
    let s = util::slab(&p);
    util::pin_first();
    let cpu = s.current_cpu();
    let here = s.cpu_to_node(cpu);
    let there = 1 - here;
    let c = s
        .kmem_cache_create("alien", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let objs: Vec<_> = (0..13)
        .map(|_| s.kmem_cache_alloc_node(c, Gfp::KERNEL, there).unwrap())
        .collect();
    assert_eq!(s.cache_stats(c).unwrap().nodeallocs, 13);
    for &o in &objs[..12] {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    assert_eq!(
        s.node_state(c, here).unwrap().alien_avail,
        12,
        "alien array capacity 12"
    );
    assert_eq!(s.node_state(c, there).unwrap().shared_avail, 0);
    // The 13th finds the alien array full: drained into the remote shared array first.
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, objs[12]) }.unwrap();
    assert_eq!(s.node_state(c, here).unwrap().alien_avail, 1);
    assert_eq!(s.node_state(c, there).unwrap().shared_avail, 12);
    let st = s.cache_stats(c).unwrap();
    assert_eq!((st.remotefrees, st.alienoverflow), (13, 1));
    assert_eq!(
        s.array_state(c, cpu).unwrap().avail,
        0,
        "remote objects never enter the CPU array"
    );
    s.validate().unwrap();
    // cache_reap drains the alien array of the CPU's reap node (round robin).
    s.cache_reap(cpu);
    assert_eq!(s.node_state(c, here).unwrap().alien_avail, 0);
    s.validate().unwrap();
    s.kmem_cache_shrink(c).unwrap();
    let n = s.node_state(c, there).unwrap();
    assert_eq!((n.full, n.partial, n.free, n.shared_avail), (0, 0, 0, 0));
}

#[test]
fn without_alien_caches_remote_frees_go_straight_to_the_remote_lists() {
    let p = util::provider(2, 32);
    let s = Slab::new(
        &p,
        slab_classic::SlabSettings {
            use_alien_caches: false,
            stats: true,
            ..Default::default()
        },
    )
    .unwrap();
    util::pin_first();
    let here = s.cpu_to_node(s.current_cpu());
    let there = 1 - here;
    let c = s
        .kmem_cache_create("noalien", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc_node(c, Gfp::KERNEL, there).unwrap();
    assert_eq!(s.node_state(c, there).unwrap().free_objects, 36);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    assert_eq!(s.node_state(c, here).unwrap().alien_avail, 0);
    assert_eq!(s.node_state(c, there).unwrap().free_objects, 37);
    s.validate().unwrap();
}

#[test]
fn exhausted_node_falls_back_unless_thisnode() {
    let topo = Topology::uniform(1, 2).unwrap().with_fake_numa(2).unwrap();
    let mut cfg = ProviderConfig::small(topo, 16);
    cfg.node_page_limit = Some(300);
    let p = PageProvider::new(&cfg).unwrap();
    let s = util::slab(&p);
    let c = s
        .kmem_cache_create("fallback", 2000, 0, SlabFlags::NONE, None)
        .unwrap();
    let mut objs = Vec::new();
    while let Some(o) = s.kmem_cache_alloc_node(c, Gfp::THISNODE, 1) {
        assert_eq!(nid(&p, o), 1);
        objs.push(o);
    }
    assert!(objs.len() > 100);
    // Node 1 is full: without THISNODE, fallback_alloc finds memory on node 0.
    let o = s.kmem_cache_alloc_node(c, Gfp::KERNEL, 1).unwrap();
    assert_eq!(nid(&p, o), 0);
    objs.push(o);
    s.validate().unwrap();
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn cross_node_stress_with_four_nodes() {
    let p = util::provider(4, 32);
    let s = std::sync::Arc::new(util::slab(&p));
    let cpus = common::pin::allowed_cpus();
    let c = s
        .kmem_cache_create("xnode", 72, 0, SlabFlags::NONE, None)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<(usize, usize)>>();
    let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
    let mut hs = Vec::new();
    for t in 0..2usize {
        let s = s.clone();
        let tx = tx.clone();
        let rx = rx.clone();
        let cpu = cpus[t % cpus.len()];
        hs.push(std::thread::spawn(move || {
            let _ = common::pin::pin_to_cpu(cpu);
            for round in 0..200u64 {
                let mut batch = Vec::new();
                for k in 0..64u64 {
                    let node = ((round + k) % 4) as usize;
                    let seed = (t as u64) << 32 | round << 8 | k;
                    let o = s.kmem_cache_alloc_node(c, Gfp::KERNEL, node).unwrap();
                    util::fill(o.as_ptr(), 72, seed);
                    batch.push((o.as_ptr() as usize, seed as usize));
                }
                tx.send(batch).unwrap();
                let got = rx.lock().unwrap().try_recv();
                if let Ok(b) = got {
                    for (a, seed) in b {
                        assert!(util::check(a as *const u8, 72, seed as u64));
                        // SAFETY: objects sent once, freed once by the receiver.
                        unsafe { s.kmem_cache_free(c, NonNull::new(a as *mut u8).unwrap()) }
                            .unwrap();
                    }
                }
            }
        }));
    }
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    for b in rx.lock().unwrap().iter() {
        for (a, seed) in b {
            assert!(util::check(a as *const u8, 72, seed as u64));
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, NonNull::new(a as *mut u8).unwrap()) }.unwrap();
        }
    }
    s.validate().unwrap();
    assert!(s.cache_stats(c).unwrap().remotefrees > 0);
    s.shrink_all();
    s.validate().unwrap();
    for node in 0..4 {
        let n = s.node_state(c, node).unwrap();
        assert_eq!((n.full, n.partial, n.free), (0, 0, 0), "node {node}");
    }
}
