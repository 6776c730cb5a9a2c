//! Real NUMA: on a machine with a node 1 (`scripts/numa-vm.sh` boots a two-node qemu
//! guest for it), objects of `kmalloc_node(…, 1)` and `kmem_cache_alloc_node(…, 1)` must lie in
//! node 1's memory (`get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)` on every page they touch), and a
//! free of a node-1 object from a node-0 CPU must go through the alien cache (`remotefrees`,
//! `alienoverflow`, the alien arrays' fill) and leave `validate()` clean. Without a node 1 the
//! real test says so and returns; the same scenario runs on two fake nodes of this machine
//! (placement by the provider's arenas, not checked against the kernel).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slab_classic::{Slab, SlabSettings};

/// The first CPU of `node` this thread may run on, pinned to.
use common::testing::{check_on_node, pin_to_node, say, skip};

fn alien_scenario(pv: &PageProvider, real: bool) {
    let topo = pv.topology().clone();
    let label = if real { "real" } else { "fake" };
    let s = Slab::new(
        pv,
        SlabSettings {
            stats: true,
            ..SlabSettings::default()
        },
    )
    .unwrap();
    let Some(cpu0) = pin_to_node(&topo, 0) else {
        skip(
            &format!("slab-classic {label} NUMA"),
            "numa-cpus",
            "cannot run on a node-0 CPU here",
        );
        return;
    };
    assert_eq!(s.cpu_to_node(s.current_cpu()), 0);
    let c = s
        .kmem_cache_create("numa-alien", 100, 0, SlabFlags::NONE, None)
        .unwrap();

    // Placement: kmalloc_node and kmem_cache_alloc_node on node 1, from a node-0 CPU.
    let mut placed = 0;
    for size in [32usize, 192, 700, 3000, 20000, 100_000] {
        let o = s.kmalloc_node(size, Gfp::KERNEL, 1).unwrap();
        check_on_node(pv, o, size, 1, real, &format!("kmalloc_node({size}, 1)"));
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
        placed += 1;
    }
    let objs: Vec<_> = (0..40)
        .map(|_| s.kmem_cache_alloc_node(c, Gfp::KERNEL, 1).unwrap())
        .collect();
    for &o in &objs {
        check_on_node(pv, o, 100, 1, real, "kmem_cache_alloc_node(c, 1)");
        placed += 1;
    }
    let st0 = s.cache_stats(c).unwrap();
    assert!(st0.nodeallocs >= 40, "{st0:?}");

    // Node-1 objects freed from the node-0 CPU: into the alien array for node 1, which
    // overflows into node 1's shared array / lists.
    for (i, &o) in objs.iter().enumerate() {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        if i == 0 {
            assert_eq!(
                s.node_state(c, 0).unwrap().alien_avail,
                1,
                "first remote free"
            );
        }
    }
    let st = s.cache_stats(c).unwrap();
    let alien = s.node_state(c, 0).unwrap().alien_avail;
    assert_eq!(st.remotefrees - st0.remotefrees, 40, "{st:?}");
    assert!(st.alienoverflow >= 1, "{st:?}");
    assert!(alien > 0 && alien < 40, "alien arrays hold {alien}");
    assert_eq!(
        s.array_state(c, cpu0).unwrap().avail,
        0,
        "node-1 objects never enter the node-0 CPU array"
    );
    s.validate().unwrap();
    s.cache_reap(cpu0);
    let n1 = s.node_state(c, 1).unwrap();
    s.validate().unwrap();
    say(&format!(
        "slab-classic {label} NUMA: {placed} objects of kmalloc_node/kmem_cache_alloc_node(…, 1) on node 1{}; 40 remote frees from CPU {cpu0} (node 0): remotefrees {}, alienoverflow {}, alien fill {alien} -> {} after cache_reap, node 1 shared {}; validate clean",
        if real { " (verified by get_mempolicy)" } else { "" },
        st.remotefrees - st0.remotefrees,
        st.alienoverflow,
        s.node_state(c, 0).unwrap().alien_avail,
        n1.shared_avail
    ));
    s.kmem_cache_shrink(c).unwrap();
    // SAFETY: nothing allocated.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    s.validate().unwrap();
}

#[test]
fn real_numa_alien_frees() {
    if !std::path::Path::new("/sys/devices/system/node/node1").exists() {
        skip(
            "real_numa_alien_frees",
            "numa",
            "one real NUMA node (no /sys/devices/system/node/node1); scripts/numa-vm.sh runs it on real nodes",
        );
        return;
    }
    let topo = Topology::from_sysfs().unwrap();
    let pv = PageProvider::new(&ProviderConfig::small(topo, 64)).unwrap();
    if let Some(e) = pv.node_stats(1).bind_errno {
        panic!("node 1: mbind refused (errno {e})");
    }
    alien_scenario(&pv, true);
}

#[test]
fn fake_numa_alien_frees() {
    let topo = Topology::from_sysfs().unwrap();
    if topo.nr_nodes() > 1 || topo.num_online_cpus() < 2 {
        skip(
            "fake_numa_alien_frees",
            "fake-numa",
            "needs one real node and 2 CPUs",
        );
        return;
    }
    let topo = topo.with_fake_numa(2).unwrap();
    let mut cfg = ProviderConfig::small(topo, 32);
    cfg.bind = false;
    alien_scenario(&PageProvider::new(&cfg).unwrap(), false);
}

/// Every ordered pair of nodes (a, b), a ≠ b: objects of `kmem_cache_alloc_node(c, a)` lie on
/// node a, and freed from a CPU of node b they go through b's alien array for a (`remotefrees`
/// counts each); `validate()` clean after every pair and after the reaper drained the aliens.
fn every_pair_scenario(pv: &PageProvider, real: bool) -> Option<(usize, u64)> {
    const K: usize = 20;
    let topo = pv.topology().clone();
    let nodes = topo.nr_nodes();
    let s = Slab::new(
        pv,
        SlabSettings {
            stats: true,
            ..SlabSettings::default()
        },
    )
    .unwrap();
    let c = s
        .kmem_cache_create("numa-pairs", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let mut pairs = 0;
    let mut total = 0;
    for b in 0..nodes {
        let cpu_b = pin_to_node(&topo, b)?;
        for a in (0..nodes).filter(|&a| a != b) {
            let objs: Vec<_> = (0..K)
                .map(|_| s.kmem_cache_alloc_node(c, Gfp::KERNEL, a).unwrap())
                .collect();
            for (i, &o) in objs.iter().enumerate() {
                let n = pv.page_to_nid(pv.virt_to_head_page(o.as_ptr() as usize).unwrap());
                assert_eq!(n, a, "object {i} of kmem_cache_alloc_node(c, {a})");
            }
            check_on_node(pv, objs[0], 100, a, real, "kmem_cache_alloc_node(c, a)");
            let before = s.cache_stats(c).unwrap().remotefrees;
            for &o in &objs {
                // SAFETY: freed once.
                unsafe { s.kmem_cache_free(c, o) }.unwrap();
            }
            let moved = s.cache_stats(c).unwrap().remotefrees - before;
            assert_eq!(
                moved, K as u64,
                "node {a} objects freed on CPU {cpu_b} (node {b})"
            );
            s.validate().unwrap();
            pairs += 1;
            total += moved;
        }
        s.cache_reap(cpu_b);
    }
    s.validate().unwrap();
    s.kmem_cache_shrink(c).unwrap();
    // SAFETY: nothing allocated.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    s.validate().unwrap();
    Some((pairs, total))
}

#[test]
fn real_numa_every_pair_of_nodes() {
    let topo = Topology::from_sysfs().unwrap();
    if topo.nr_nodes() < 2 {
        say("slab-classic real NUMA every pair: one node here; skipped (scripts/numa-vm.sh harness runs it on four)");
        return;
    }
    let nodes = topo.nr_nodes();
    let pv = PageProvider::new(&ProviderConfig::small(topo, 64)).unwrap();
    for n in 0..nodes {
        if let Some(e) = pv.node_stats(n).bind_errno {
            panic!("node {n}: mbind refused (errno {e})");
        }
    }
    match every_pair_scenario(&pv, true) {
        Some((pairs, moved)) => say(&format!(
            "slab-classic real NUMA every pair: {nodes} nodes, {pairs} ordered pairs, objects on their node (verified by get_mempolicy), remotefrees {moved} through the alien arrays ({} per pair); validate clean",
            moved / pairs as u64
        )),
        None => say("slab-classic real NUMA every pair: cannot run on a CPU of every node; skipped"),
    }
}

#[test]
fn fake_numa_every_pair_of_nodes() {
    let topo = Topology::from_sysfs().unwrap();
    if topo.nr_nodes() > 1 || topo.num_online_cpus() < 2 {
        say("slab-classic fake NUMA every pair: needs one real node and 2 CPUs; skipped");
        return;
    }
    let topo = topo.with_fake_numa(2).unwrap();
    let mut cfg = ProviderConfig::small(topo, 32);
    cfg.bind = false;
    let r = every_pair_scenario(&PageProvider::new(&cfg).unwrap(), false);
    assert_eq!(
        r.map(|r| r.0),
        Some(2),
        "both ordered pairs of two fake nodes"
    );
}
