//! Fake NUMA with 2 and 4 nodes: node-specific allocation lands on the node, remote frees from
//! other threads, node mismatch handling, per-node lists.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabFlags};
use slub::StatItem as S;
use std::sync::Arc;
use util::*;

fn nid_of(p: &common::PageProvider, addr: usize) -> usize {
    p.page_to_nid(p.virt_to_head_page(addr).unwrap())
}

fn numa_round_trip(nodes: usize) {
    let p = provider(nodes, 64);
    assert_eq!(p.nr_nodes(), nodes);
    let s = Arc::new(slub_with(&p, stats_on()));
    let c = s
        .kmem_cache_create("numa", 200, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.nodes.len(), nodes);
    let mut objs = Vec::new();
    for round in 0..3 {
        for node in 0..nodes {
            for i in 0..150 {
                let o = s.kmem_cache_alloc_node(c, Gfp::KERNEL, node).unwrap();
                assert_eq!(
                    nid_of(&p, o.as_ptr() as usize),
                    node,
                    "cache object on node {node}"
                );
                fill(o, 200, node * 1000 + i + round);
                objs.push((o.as_ptr() as usize, 200, node * 1000 + i + round, true));
                for size in [16, 96, 1000, 5000] {
                    let k = s.kmalloc_node(size, Gfp::KERNEL, node).unwrap();
                    assert_eq!(
                        nid_of(&p, k.as_ptr() as usize),
                        node,
                        "kmalloc-{size} on node {node}"
                    );
                    fill(k, size, i);
                    objs.push((k.as_ptr() as usize, size, i, false));
                }
            }
            // Large kmalloc on the node too.
            let l = s.kmalloc_node(50_000, Gfp::KERNEL, node).unwrap();
            assert_eq!(nid_of(&p, l.as_ptr() as usize), node);
            objs.push((l.as_ptr() as usize, 50_000, 7, false));
            fill(l, 50_000, 7);
        }
    }
    // Alternating nodes from one CPU slot forces ALLOC_NODE_MISMATCH + deactivation.
    assert!(s.cache_stat(c, S::ALLOC_NODE_MISMATCH).unwrap() > 0);
    assert!(
        s.cache_stat(c, S::DEACTIVATE_TO_HEAD).unwrap()
            + s.cache_stat(c, S::DEACTIVATE_FULL).unwrap()
            > 0
    );
    let a = s.cache_attrs(c).unwrap();
    for (node, &(_, slabs, _)) in a.nodes.iter().enumerate() {
        assert!(slabs > 0, "node {node} has slabs");
    }
    // Remote frees: other threads free everything, split among them.
    let objs = Arc::new(objs);
    let hs: Vec<_> = (0..3)
        .map(|t| {
            let s = Arc::clone(&s);
            let objs = Arc::clone(&objs);
            std::thread::spawn(move || {
                pin(t + 1);
                for &(addr, size, seed, custom) in objs.iter().skip(t).step_by(3) {
                    assert!(check(addr as *mut u8, size, seed));
                    let nn = std::ptr::NonNull::new(addr as *mut u8).unwrap();
                    // SAFETY: each object freed once, by exactly one thread.
                    unsafe {
                        if custom {
                            s.kmem_cache_free(c, nn).unwrap();
                        } else {
                            s.kfree(nn.as_ptr()).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    s.validate().unwrap();
    s.flush_all(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().objects, 0);
    // Unspecified node: served, from any node.
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    // An out-of-range node means "no preference".
    let o = s.kmalloc_node(64, Gfp::KERNEL, 99).unwrap();
    // SAFETY: freed once.
    unsafe { s.kfree(o.as_ptr()) }.unwrap();
    s.kmem_cache_shrink(c).unwrap();
    // SAFETY: unused now.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    drop(Arc::try_unwrap(s).ok().unwrap());
    assert_eq!(p.stats().pages_in_use, 0);
}

#[test]
fn fake_numa_two_nodes() {
    let _watchdog = common::testing::watchdog("fake_numa_two_nodes");
    numa_round_trip(2);
}

#[test]
fn fake_numa_four_nodes() {
    let _watchdog = common::testing::watchdog("fake_numa_four_nodes");
    numa_round_trip(4);
}

#[test]
fn node_structures_live_on_their_node() {
    let _watchdog = common::testing::watchdog("node_structures_live_on_their_node");
    let p = provider(4, 32);
    let s = slub(&p);
    // Node partial lists fill per node: allocate on node 3, free, and the slab stays on node 3's
    // list (min_partial keeps it).
    let c = s
        .kmem_cache_create("n3", 512, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let objs: Vec<_> = (0..40)
        .map(|_| s.kmem_cache_alloc_node(c, Gfp::KERNEL, 3).unwrap())
        .collect();
    for o in &objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    s.flush_all(c).unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.nodes[0].1 + a.nodes[1].1 + a.nodes[2].1, 0);
    assert!(a.nodes[3].1 > 0 && a.nodes[3].0 == a.nodes[3].1);
    s.validate().unwrap();
    // THISNODE allocation with the node full of other data still works here (plenty of room).
    let o = s.kmem_cache_alloc_node(c, Gfp::THISNODE, 2).unwrap();
    assert_eq!(nid_of(&p, o.as_ptr() as usize), 2);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
}

#[test]
fn get_any_partial_takes_remote_partials() {
    let _watchdog = common::testing::watchdog("get_any_partial_takes_remote_partials");
    let p = provider(2, 64);
    let s = slub_with(&p, stats_on());
    if common::testing::skip_unless(
        "get_any_partial_takes_remote_partials",
        "cpu0",
        pin(0) && common::percpu::cpu_id() == 0,
        "cannot run on CPU 0 (the first CPU of fake node 0)",
    ) {
        return;
    }
    let c = s
        .kmem_cache_create("remote", 256, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    let (per, min_partial) = (a.objs_per_slab, a.min_partial);
    // Node 1 gets min_partial + 3 partial slabs (one free object each).
    let nslabs = min_partial + 3;
    let objs: Vec<_> = (0..per * nslabs)
        .map(|_| s.kmem_cache_alloc_node(c, Gfp::KERNEL, 1).unwrap())
        .collect();
    s.flush_all(c).unwrap();
    for k in 0..nslabs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, objs[k * per]) }.unwrap();
    }
    s.flush_all(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().nodes[1].0, nslabs);
    s.set_remote_node_defrag_ratio(c, 100).unwrap();
    // No node preference from CPU 0 (node 0, no partials): get_any_partial finds node 1's.
    // The kernel samples get_cycles() % 1024 against the ratio, so a few tries may miss.
    let mut got = None;
    for _ in 0..20 {
        let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        let nid = p.page_to_nid(p.virt_to_head_page(o.as_ptr() as usize).unwrap());
        if nid == 1 {
            got = Some(o);
            break;
        }
        // SAFETY: freed once; the node-0 slab is then shrunk away.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        s.kmem_cache_shrink(c).unwrap();
    }
    let o = got.expect("an object from node 1's partial list");
    assert!(s.cache_stat(c, S::ALLOC_FROM_PARTIAL).unwrap() >= 1);
    // With the ratio at 0 remote partials are left alone.
    s.set_remote_node_defrag_ratio(c, 0).unwrap();
    assert!(matches!(
        s.set_remote_node_defrag_ratio(c, 101),
        Err(common::SlabError::InvalidArgument(_))
    ));
    s.flush_all(c).unwrap();
    let before = s.cache_attrs(c).unwrap().nodes[1].0;
    let o2 = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    assert_eq!(
        p.page_to_nid(p.virt_to_head_page(o2.as_ptr() as usize).unwrap()),
        0
    );
    assert_eq!(s.cache_attrs(c).unwrap().nodes[1].0, before);
    for x in objs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % per != 0)
        .map(|(_, x)| x)
        .chain([&o, &o2])
    {
        // SAFETY: every remaining object, freed once.
        unsafe { s.kmem_cache_free(c, *x) }.unwrap();
    }
    s.validate().unwrap();
}
