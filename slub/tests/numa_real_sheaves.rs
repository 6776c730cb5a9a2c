//! Sheaves on real NUMA nodes: for every ordered pair of nodes (a, b), a ≠ b, in
//! both sheaf eras (6.18 with an opt-in `sheaf_capacity`, 7.0 for every cache):
//! - objects allocated on a CPU of node a lie on node a (`get_mempolicy` on real nodes);
//! - freed from a CPU of node b they **bypass the sheaves** (`can_free_to_pcs`: a remote
//!   object goes to its slab): every free is `FREE_SLOWPATH`, none is a sheaf free
//!   (`free_cpu_sheaf` in 6.18, `free_fastpath` in 7.0) and the sheaf census is unchanged;
//! - on the node-b CPU, with its main sheaf stocked, `kmem_cache_alloc_node(…, a)` is a **node
//!   mismatch** (`ALLOC_NODE_MISMATCH`) served from node a's slabs (the object verified on
//!   node a), while `kmem_cache_alloc_node(…, b)` pops the local sheaf — in 6.18 unless the
//!   object on top is remote (see the scenario), which the popped-object check refuses;
//! - `validate()` is clean after every pair.
//!
//! `scripts/numa-vm.sh harness` runs it in a four-node guest (12 ordered pairs); without a
//! second real node the real test says so (`common::testing::skip`), and the same scenario
//! runs on two fake nodes of this machine (placement by the provider's arenas, not checked
//! against the kernel).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::testing::{check_on_node, pin_to_node, say, skip};
use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slub::{Era, KmemCacheArgs, Slub, SlubSettings, StatItem as S};

/// Objects per pair.
const K: usize = 40;

/// What the scenario did, summed over the pairs.
struct Done {
    pairs: usize,
    bypassed: u64,
    mismatches: u64,
    local_from_sheaf: u64,
    popped_remote: u64,
}

fn scenario(pv: &PageProvider, real: bool, era: Era) -> Option<Done> {
    let topo = pv.topology().clone();
    let nodes = topo.nr_nodes();
    let s = Slub::new(
        pv,
        SlubSettings {
            era,
            stats: true,
            ..SlubSettings::default()
        },
    )
    .unwrap();
    let c = if era == Era::V6_18 {
        s.kmem_cache_create_args(
            "numa-sheaves",
            256,
            0,
            SlabFlags::NO_MERGE,
            None,
            KmemCacheArgs { sheaf_capacity: 32 },
        )
    } else {
        s.kmem_cache_create("numa-sheaves", 256, 0, SlabFlags::NO_MERGE, None)
    }
    .unwrap();
    assert!(s.sheaf_census(c).unwrap().sheaf_capacity > 0, "{era:?}");
    let (sheaf_free, sheaf_alloc) = if era == Era::V7_0 {
        (S::FREE_FASTPATH, S::ALLOC_FASTPATH)
    } else {
        (S::FREE_PCS, S::ALLOC_PCS)
    };
    let stat = |i| s.cache_stat(c, i).unwrap();
    let mut d = Done {
        pairs: 0,
        bypassed: 0,
        mismatches: 0,
        local_from_sheaf: 0,
        popped_remote: 0,
    };
    for a in 0..nodes {
        for b in (0..nodes).filter(|&b| b != a) {
            // Node-a objects, allocated on a node-a CPU: in 7.0 by plain kmem_cache_alloc
            // (its sheaves hold only local objects); in 6.18 a plain allocation may pop a
            // remote object (see below), so by kmem_cache_alloc_node(…, a).
            pin_to_node(&topo, a)?;
            let objs: Vec<_> = (0..K)
                .map(|_| {
                    if era == Era::V7_0 {
                        s.kmem_cache_alloc(c, Gfp::KERNEL)
                    } else {
                        s.kmem_cache_alloc_node(c, Gfp::KERNEL, a)
                    }
                    .unwrap()
                })
                .collect();
            for (i, &o) in objs.iter().enumerate() {
                let n = pv.page_to_nid(pv.virt_to_head_page(o.as_ptr() as usize).unwrap());
                assert_eq!(n, a, "{era:?}: object {i} allocated on a node-{a} CPU");
            }
            check_on_node(pv, objs[0], 256, a, real, "kmem_cache_alloc on node a");

            // Freed on a node-b CPU: every one bypasses the sheaves.
            let cpu_b = pin_to_node(&topo, b)?;
            let held = s.sheaf_census(c).unwrap().objects();
            s.clear_stats(c).unwrap();
            for &o in &objs {
                // SAFETY: freed once.
                unsafe { s.kmem_cache_free(c, o) }.unwrap();
            }
            assert_eq!(
                stat(S::FREE_SLOWPATH),
                K as u64,
                "{era:?}: node-{a} objects freed on CPU {cpu_b} (node {b}) go to their slabs"
            );
            assert_eq!(
                stat(sheaf_free),
                0,
                "{era:?}: no remote object enters a sheaf"
            );
            assert_eq!(s.sheaf_census(c).unwrap().objects(), held, "{era:?}");
            d.bypassed += stat(S::FREE_SLOWPATH);

            // Node-b CPU, its main sheaf stocked: a node-a request is a mismatch served from
            // node a's slabs; a node-b request pops the sheaf if the object on top is from node
            // b. In 7.0 it always is (refills come from node b's partial slabs, only local
            // objects are freed to sheaves); in 6.18 a refill goes through the 6.4 CPU-slab
            // path, whose per-CPU partial list holds the node-a slabs our remote frees just
            // unfroze there (6.4's put_cpu_partial, as in the kernel), so the top object can be
            // remote: then the popped-object check refuses it (a second mismatch) and the
            // object comes from node b's slabs.
            let warm = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
            s.clear_stats(c).unwrap();
            let remote = s.kmem_cache_alloc_node(c, Gfp::KERNEL, a).unwrap();
            assert!(
                stat(S::ALLOC_NODE_MISMATCH) >= 1,
                "{era:?}: node {a} from node {b}"
            );
            assert_eq!(stat(sheaf_alloc), 0, "{era:?}");
            check_on_node(
                pv,
                remote,
                256,
                a,
                real,
                "kmem_cache_alloc_node(c, a) on node b",
            );
            d.mismatches += 1;
            s.clear_stats(c).unwrap();
            let local = s.kmem_cache_alloc_node(c, Gfp::KERNEL, b).unwrap();
            let (pops, popped_remote) = (stat(sheaf_alloc), stat(S::ALLOC_NODE_MISMATCH));
            if era == Era::V7_0 {
                assert_eq!(
                    (pops, popped_remote),
                    (1, 0),
                    "7.0: a local-node request pops the sheaf"
                );
            } else {
                assert!(
                    pops == 1 || popped_remote >= 1,
                    "6.18: popped, or refused as remote"
                );
            }
            check_on_node(
                pv,
                local,
                256,
                b,
                real,
                "kmem_cache_alloc_node(c, b) on node b",
            );
            d.local_from_sheaf += pops;
            d.popped_remote += u64::from(pops == 0);
            for o in [warm, remote, local] {
                // SAFETY: freed once.
                unsafe { s.kmem_cache_free(c, o) }.unwrap();
            }
            s.validate().unwrap();
            d.pairs += 1;
        }
    }
    s.kmem_cache_shrink(c).unwrap();
    assert_eq!(s.sheaf_census(c).unwrap().objects(), 0);
    // SAFETY: nothing allocated.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    s.validate().unwrap();
    Some(d)
}

fn line(era: &str, label: &str, nodes: usize, real: bool, d: &Done) -> String {
    format!(
        "slub sheaves {era} {label} NUMA every pair: {nodes} nodes, {} ordered pairs, objects on their node{}, {} remote frees bypassed the sheaves (free_slowpath {} per pair, sheaf frees 0, sheaf census unchanged), {} node-mismatch allocations from the other node's slabs, {} local-node allocations from the sheaf, {} refused because the sheaf's top object was remote; validate clean",
        d.pairs,
        if real { " (verified by get_mempolicy)" } else { "" },
        d.bypassed,
        d.bypassed / d.pairs as u64,
        d.mismatches,
        d.local_from_sheaf,
        d.popped_remote
    )
}

#[test]
fn real_numa_sheaves_every_pair_of_nodes() {
    let topo = Topology::from_sysfs().unwrap();
    if topo.nr_nodes() < 2 {
        skip(
            "real_numa_sheaves_every_pair_of_nodes",
            "numa",
            "one real NUMA node; scripts/numa-vm.sh harness runs it on four",
        );
        return;
    }
    let nodes = topo.nr_nodes();
    let pv = PageProvider::new(&ProviderConfig::small(topo, 64)).unwrap();
    for n in 0..nodes {
        if let Some(e) = pv.node_stats(n).bind_errno {
            panic!("node {n}: mbind refused (errno {e})");
        }
    }
    for (name, era) in [("6.18", Era::V6_18), ("7.0", Era::V7_0)] {
        match scenario(&pv, true, era) {
            Some(d) => say(&line(name, "real", nodes, true, &d)),
            None => skip(
                "real_numa_sheaves_every_pair_of_nodes",
                "numa-cpus",
                "cannot run on a CPU of every node",
            ),
        }
    }
}

#[test]
fn fake_numa_sheaves_every_pair_of_nodes() {
    let topo = Topology::from_sysfs().unwrap();
    if topo.nr_nodes() > 1 || topo.num_online_cpus() < 2 {
        skip(
            "fake_numa_sheaves_every_pair_of_nodes",
            "fake-numa",
            "needs one real node and 2 CPUs",
        );
        return;
    }
    let topo = topo.with_fake_numa(2).unwrap();
    let mut cfg = ProviderConfig::small(topo, 32);
    cfg.bind = false;
    let pv = PageProvider::new(&cfg).unwrap();
    for (name, era) in [("6.18", Era::V6_18), ("7.0", Era::V7_0)] {
        let d = scenario(&pv, false, era);
        assert_eq!(
            d.as_ref().map(|d| d.pairs),
            Some(2),
            "both ordered pairs of two fake nodes"
        );
        say(&line(name, "fake", 2, false, &d.unwrap()));
    }
}
