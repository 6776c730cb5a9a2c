//! Topology from sysfs fixtures and this machine, fake NUMA splits, hwloc agreement (feature),
//! per-CPU ids from rseq and from the fallback, pinning.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::percpu::{cpu_id, cpu_id_source, force_cpu_id_fallback, CpuIdSource, PerCpuLocked};
use common::pin::{allowed_cpus, pin_to_cpu};
use common::topology::{Topology, TopologySource};
use common::{PageProvider, ProviderConfig};

fn fixture(name: &str) -> Vec<u8> {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")).into_bytes()
}

#[test]
fn sysfs_fixture_two_nodes_eight_cpus() {
    let t = Topology::from_sysfs_root(&fixture("sysfs-2node-8cpu")).unwrap();
    assert_eq!(t.source(), TopologySource::SysfsRoot);
    assert_eq!(t.nr_nodes(), 2);
    assert_eq!(t.nr_cpu_ids(), 8);
    let map: Vec<usize> = (0..8).map(|c| t.cpu_to_node(c)).collect();
    assert_eq!(map, vec![0, 0, 1, 1, 0, 0, 1, 1]);
    assert_eq!(t.node_distance(0, 1), 21);
    assert_eq!(t.node_distance(1, 1), 10);
    assert_eq!(t.nr_cpus_node(1), 4);
    assert_eq!(t.cache_line_size(), 64);
    assert_eq!(t.real_node(1), 1);
}

#[test]
fn sysfs_fixture_without_numa_is_one_node() {
    let t = Topology::from_sysfs_root(&fixture("sysfs-nonuma-4cpu")).unwrap();
    assert_eq!(t.nr_nodes(), 1);
    assert_eq!(t.nr_cpu_ids(), 4);
    assert_eq!(t.num_online_cpus(), 3, "cpu 3 is offline in the fixture");
    assert_eq!(t.cache_line_size(), 128);
    assert!(Topology::from_sysfs_root(b"/nonexistent").is_err());
}

#[test]
fn fake_numa_over_the_fixture() {
    let t = Topology::from_sysfs_root(&fixture("sysfs-2node-8cpu"))
        .unwrap()
        .with_fake_numa(4)
        .unwrap();
    assert_eq!(t.nr_nodes(), 4);
    assert_eq!(t.nr_real_nodes(), 2);
    assert_eq!(t.fake_numa(), Some(4));
    // Real node 0 (cpus 0,1,4,5) splits into fake 0 (0,1) and fake 1 (4,5).
    let map: Vec<usize> = (0..8).map(|c| t.cpu_to_node(c)).collect();
    assert_eq!(map, vec![0, 0, 2, 2, 1, 1, 3, 3]);
    assert_eq!(t.real_node(1), 0);
    assert_eq!(t.real_node(2), 1);
    assert_eq!(t.node_distance(0, 1), 20, "fake siblings on one real node");
    assert_eq!(
        t.node_distance(0, 2),
        21,
        "across real nodes keeps the real distance"
    );
    assert!(t.describe().contains("node 3 (real 1)"));
    // A provider over it gets one arena per logical node, bound to the real one.
    let p = PageProvider::new(&ProviderConfig::small(t, 4));
    assert!(p.is_ok());
}

#[test]
fn this_machine_agrees_with_sched_getcpu() {
    let t = Topology::from_sysfs().unwrap();
    for c in allowed_cpus() {
        assert!(t.possible_cpus().contains(c));
    }
    let (_, real_node) = common::sys::getcpu().unwrap();
    assert!(real_node < 1024);
}

#[cfg(feature = "hwloc")]
#[test]
fn hwloc_agrees_with_sysfs() {
    let s = Topology::from_sysfs().unwrap();
    let h = Topology::from_hwloc().expect("hwloc topology");
    assert_eq!(h.source(), TopologySource::Hwloc);
    assert_eq!(h.nr_nodes(), s.nr_nodes());
    for c in s.online_cpus().iter() {
        assert_eq!(h.cpu_to_node(c), s.cpu_to_node(c), "cpu {c}");
    }
    for n in 0..s.nr_nodes() {
        assert_eq!(h.real_node(n), s.real_node(n));
        for m in 0..s.nr_nodes() {
            assert_eq!(h.node_distance(n, m), s.node_distance(n, m));
        }
    }
}

#[cfg(not(feature = "hwloc"))]
#[test]
fn hwloc_without_feature_is_a_clear_error() {
    let e = Topology::from_hwloc().unwrap_err();
    assert!(e.to_string().contains("--features hwloc"));
}

/// cpu_id() equals sched_getcpu() on a pinned thread, through rseq where glibc registered it and
/// through the fallback when forced. (One test: the fallback switch is process-wide.)
#[test]
fn cpu_id_rseq_and_fallback_match_sched_getcpu() {
    let source = cpu_id_source();
    eprintln!("cpu_id source: {source:?}");
    for c in allowed_cpus() {
        let h = std::thread::spawn(move || {
            pin_to_cpu(c).unwrap();
            let a = cpu_id();
            force_cpu_id_fallback(true);
            let b = cpu_id();
            assert_eq!(cpu_id_source(), CpuIdSource::SchedGetcpu);
            force_cpu_id_fallback(false);
            (a, b, common::sys::sched_getcpu().unwrap())
        });
        let (a, b, s) = h.join().unwrap();
        assert_eq!(a, s, "{source:?} path");
        assert_eq!(b, s, "fallback path");
    }
    // On glibc ≥ 2.35 outside valgrind, rseq is registered: make sure we used it.
    if std::env::var_os("GLIBC_TUNABLES").is_none() && !running_under_valgrind() {
        assert_eq!(source, CpuIdSource::Rseq);
    }
}

fn running_under_valgrind() -> bool {
    std::env::var_os("LD_PRELOAD").is_some_and(|v| v.to_string_lossy().contains("valgrind"))
}

#[test]
fn local_lock_stays_correct_when_threads_share_a_slot() {
    // Two unpinned threads hammer the same CPU's slot (as a migrated thread would): the lock
    // keeps the read-modify-write sequences whole.
    let t = Topology::uniform(1, 1).unwrap();
    let p = PageProvider::new(&ProviderConfig::small(t, 4)).unwrap();
    let pc = std::sync::Arc::new(PerCpuLocked::new(&p, 2, |_| (0u64, 0u64)).unwrap());
    let ths: Vec<_> = (0..3)
        .map(|_| {
            let pc = pc.clone();
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    let mut g = pc.lock_cpu(0);
                    let v = g.0;
                    std::hint::black_box(&mut *g);
                    g.0 = v + 1;
                    g.1 += 2;
                }
            })
        })
        .collect();
    for th in ths {
        th.join().unwrap();
    }
    let g = pc.lock_cpu(0);
    assert_eq!((g.0, g.1), (60_000, 120_000));
}
