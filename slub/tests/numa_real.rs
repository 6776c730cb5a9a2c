//! Real NUMA: on a machine with a node 1 (`scripts/numa-vm.sh` boots a two-node qemu
//! guest for it), objects of `kmalloc_node(…, 1)` and `kmem_cache_alloc_node(…, 1)` must lie in
//! node 1's memory (`get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)` on every page they touch), and
//! node-1 objects freed from a node-0 CPU (remote frees: `__slab_free` on slabs that are not
//! that CPU's) must end on node 1's partial list — through the per-CPU partial list and
//! `flush_all` in 6.4, straight to it (`FREE_ADD_PARTIAL`) in 2.6.32 — with `validate()` clean.
//! Without a node 1 the real test says so and returns; the same scenario runs on two fake
//! nodes of this machine (placement by the provider's arenas, not checked against the kernel).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slub::{Slub, SlubSettings, StatItem as S};

use common::testing::{check_on_node, pin_to_node, say, skip};

fn remote_free_scenario(pv: &PageProvider, real: bool, settings: SlubSettings) {
    let topo = pv.topology().clone();
    let label = if real { "real" } else { "fake" };
    let era = if settings.era == slub::Era::V6_4 {
        "6.4"
    } else {
        "2.6.32"
    };
    let s = Slub::new(
        pv,
        SlubSettings {
            stats: true,
            ..settings
        },
    )
    .unwrap();
    let (Some(cpu0), Some(cpu1)) = (pin_to_node(&topo, 0), pin_to_node(&topo, 1)) else {
        skip(
            &format!("slub {label} NUMA"),
            "numa-cpus",
            "cannot run on CPUs of both nodes here",
        );
        return;
    };
    let c = s
        .kmem_cache_create("numa-remote", 256, 0, SlabFlags::NO_MERGE, None)
        .unwrap();

    // Placement from a node-0 CPU.
    pin_to_node(&topo, 0).unwrap();
    let mut placed = 0;
    for size in [32usize, 192, 700, 3000, 8192, 20000, 100_000] {
        let o = s.kmalloc_node(size, Gfp::KERNEL, 1).unwrap();
        check_on_node(pv, o, size, 1, real, &format!("kmalloc_node({size}, 1)"));
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
        placed += 1;
    }
    for _ in 0..20 {
        let o = s.kmem_cache_alloc_node(c, Gfp::KERNEL, 1).unwrap();
        check_on_node(pv, o, 256, 1, real, "kmem_cache_alloc_node(c, 1)");
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        placed += 1;
    }
    s.kmem_cache_shrink(c).unwrap();

    // Four slabs' worth of node-1 objects, allocated on a node-1 CPU.
    pin_to_node(&topo, 1).unwrap();
    let per = s.cache_attrs(c).unwrap().objs_per_slab;
    let objs: Vec<_> = (0..4 * per)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for (i, &o) in objs.iter().enumerate() {
        let n = pv.page_to_nid(pv.virt_to_head_page(o.as_ptr() as usize).unwrap());
        assert_eq!(n, 1, "object {i} allocated on the node-1 CPU");
        if i % per == 0 {
            check_on_node(pv, o, 256, 1, real, "kmem_cache_alloc on node 1");
        }
    }
    let before = s.cache_attrs(c).unwrap();
    assert_eq!(before.nodes[1].1, 4, "4 slabs on node 1");
    s.clear_stats(c).unwrap();

    // Every other object freed from the node-0 CPU: all remote (slow path), no slab empties.
    pin_to_node(&topo, 0).unwrap();
    for &o in objs.iter().step_by(2) {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    let stat = |i| s.cache_stat(c, i).unwrap();
    let frees = (2 * per) as u64;
    assert_eq!(
        stat(S::FREE_SLOWPATH),
        frees,
        "remote frees take the slow path"
    );
    assert_eq!(stat(S::FREE_FASTPATH), 0);
    let (cpu_partial_free, add_partial_direct) =
        (stat(S::CPU_PARTIAL_FREE), stat(S::FREE_ADD_PARTIAL));
    if settings.era == slub::Era::V6_4 {
        // The three full slabs are frozen onto the node-0 CPU's partial list; the node-1 CPU
        // slab takes FREE_FROZEN frees.
        assert_eq!(cpu_partial_free, 3);
        assert_eq!(add_partial_direct, 0);
    } else {
        // 2.6.32: no per-CPU partials; the full slabs go straight onto node 1's partial list.
        assert_eq!(add_partial_direct, 3);
        assert_eq!(s.cache_attrs(c).unwrap().nodes[1].0, 3);
    }
    assert!(stat(S::FREE_FROZEN) >= (per / 2) as u64);
    // flush_all (validate does it too): everything unfreezes onto node 1's partial list.
    s.validate_cache(c).unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.nodes[1].0, 4, "node 1 partial slabs: {:?}", a.nodes);
    assert_eq!(
        a.nodes[0].0 + a.nodes[0].1,
        0,
        "nothing on node 0: {:?}",
        a.nodes
    );
    s.validate().unwrap();
    say(&format!(
        "slub {era} {label} NUMA: {placed} objects of kmalloc_node/kmem_cache_alloc_node(…, 1) on node 1{}; {frees} remote frees of node-1 objects from CPU {cpu0} (node 0; allocated on CPU {cpu1}): free_slowpath {}, free_fastpath 0, cpu_partial_free {cpu_partial_free}, free_add_partial {add_partial_direct}, free_frozen {}; node 1 partial slabs {} after flush, node 0 none; validate clean",
        if real { " (verified by get_mempolicy)" } else { "" },
        stat(S::FREE_SLOWPATH),
        stat(S::FREE_FROZEN),
        a.nodes[1].0
    ));
    for &o in objs.iter().skip(1).step_by(2) {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
    s.kmem_cache_shrink(c).unwrap();
    // SAFETY: nothing allocated.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    s.validate().unwrap();
}

fn both_eras(pv: &PageProvider, real: bool) {
    remote_free_scenario(pv, real, SlubSettings::default());
    remote_free_scenario(pv, real, SlubSettings::v2_6_32());
}

#[test]
fn real_numa_remote_frees() {
    if !std::path::Path::new("/sys/devices/system/node/node1").exists() {
        skip(
            "real_numa_remote_frees",
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
    both_eras(&pv, true);
}

#[test]
fn fake_numa_remote_frees() {
    let topo = Topology::from_sysfs().unwrap();
    if topo.nr_nodes() > 1 || topo.num_online_cpus() < 2 {
        skip(
            "fake_numa_remote_frees",
            "fake-numa",
            "needs one real node and 2 CPUs",
        );
        return;
    }
    let topo = topo.with_fake_numa(2).unwrap();
    let mut cfg = ProviderConfig::small(topo, 32);
    cfg.bind = false;
    both_eras(&PageProvider::new(&cfg).unwrap(), false);
}

/// Every ordered pair of nodes (a, b), a ≠ b: objects allocated on a CPU of node a lie on node
/// a, and freed from a CPU of node b each takes `__slab_free` (a remote free: `FREE_SLOWPATH`
/// counts it, `FREE_FASTPATH` none); `validate()` clean after every pair.
fn every_pair_scenario(
    pv: &PageProvider,
    real: bool,
    settings: SlubSettings,
) -> Option<(usize, u64)> {
    const K: usize = 40;
    let topo = pv.topology().clone();
    let nodes = topo.nr_nodes();
    let s = Slub::new(
        pv,
        SlubSettings {
            stats: true,
            ..settings
        },
    )
    .unwrap();
    let c = s
        .kmem_cache_create("numa-pairs", 256, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let mut pairs = 0;
    let mut total = 0;
    for a in 0..nodes {
        for b in (0..nodes).filter(|&b| b != a) {
            pin_to_node(&topo, a)?;
            let objs: Vec<_> = (0..K)
                .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
                .collect();
            for (i, &o) in objs.iter().enumerate() {
                let n = pv.page_to_nid(pv.virt_to_head_page(o.as_ptr() as usize).unwrap());
                assert_eq!(n, a, "object {i} allocated on a node-{a} CPU");
            }
            check_on_node(pv, objs[0], 256, a, real, "kmem_cache_alloc on node a");
            let cpu_b = pin_to_node(&topo, b)?;
            s.clear_stats(c).unwrap();
            for &o in &objs {
                // SAFETY: freed once.
                unsafe { s.kmem_cache_free(c, o) }.unwrap();
            }
            let slow = s.cache_stat(c, S::FREE_SLOWPATH).unwrap();
            assert_eq!(
                slow, K as u64,
                "node {a} objects freed on CPU {cpu_b} (node {b})"
            );
            assert_eq!(s.cache_stat(c, S::FREE_FASTPATH).unwrap(), 0);
            s.validate().unwrap();
            pairs += 1;
            total += slow;
        }
    }
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
        say("slub real NUMA every pair: one node here; skipped (scripts/numa-vm.sh harness runs it on four)");
        return;
    }
    let nodes = topo.nr_nodes();
    let pv = PageProvider::new(&ProviderConfig::small(topo, 64)).unwrap();
    for n in 0..nodes {
        if let Some(e) = pv.node_stats(n).bind_errno {
            panic!("node {n}: mbind refused (errno {e})");
        }
    }
    for (era, settings) in [
        ("6.4", SlubSettings::default()),
        ("2.6.32", SlubSettings::v2_6_32()),
    ] {
        match every_pair_scenario(&pv, true, settings) {
            Some((pairs, moved)) => say(&format!(
                "slub {era} real NUMA every pair: {nodes} nodes, {pairs} ordered pairs, objects on their node (verified by get_mempolicy), {moved} remote frees (free_slowpath, {} per pair, free_fastpath 0); validate clean",
                moved / pairs as u64
            )),
            None => say("slub real NUMA every pair: cannot run on a CPU of every node; skipped"),
        }
    }
}

#[test]
fn fake_numa_every_pair_of_nodes() {
    let topo = Topology::from_sysfs().unwrap();
    if topo.nr_nodes() > 1 || topo.num_online_cpus() < 2 {
        say("slub fake NUMA every pair: needs one real node and 2 CPUs; skipped");
        return;
    }
    let topo = topo.with_fake_numa(2).unwrap();
    let mut cfg = ProviderConfig::small(topo, 32);
    cfg.bind = false;
    let pv = PageProvider::new(&cfg).unwrap();
    let r = every_pair_scenario(&pv, false, SlubSettings::default());
    assert_eq!(
        r.map(|r| r.0),
        Some(2),
        "both ordered pairs of two fake nodes"
    );
}
