//! Server topologies from sysfs fixture trees (`common::sysfs_fixtures`): a 2-socket 128-CPU
//! machine, an 8-node 256-CPU AMD-style machine, a 4-socket 448-CPU machine with SMT, and one
//! with a memoryless and a CPU-less node (sparse node ids, offline CPUs). For each: the topology
//! read from the tree, a page provider, and both allocators built on it (no threads), with every
//! per-CPU and per-node structure counted and checked against `nr_cpu_ids` and the node count,
//! `kmalloc_node` on every node landing in that node's arena, and `validate()` clean. Past the
//! supported maxima (`NR_CPUS`, `MAX_NUMNODES`) the topology is a clear error, at the maxima
//! everything builds.
//!
//! Lives in the harness crate because it needs both allocators (common cannot depend on them).

use common::sysfs_fixtures::SysfsFixture;
use common::topology::TopologyError;
use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, Topology, MAX_NUMNODES, NR_CPUS};

fn read(f: &SysfsFixture) -> (tempfile::TempDir, Result<Topology, TopologyError>) {
    let dir = tempfile::tempdir().unwrap();
    f.write(dir.path()).unwrap();
    let t = Topology::from_sysfs_root(dir.path().as_os_str().as_encoded_bytes());
    (dir, t)
}

fn provider(t: &Topology) -> PageProvider {
    let mut cfg = ProviderConfig::small(t.clone(), 64);
    cfg.bind = false;
    PageProvider::new(&cfg).unwrap()
}

/// Builds both allocators on `t` and checks their per-CPU and per-node structures.
fn allocators_on(t: &Topology) {
    let nr_cpus = t.nr_cpu_ids();
    let nodes = t.nr_nodes();

    let p = provider(t);
    let slab = slab_classic::Slab::new(&p, slab_classic::SlabSettings::default()).unwrap();
    let q = slab.queue_memory();
    let mut shared_caches = 0;
    slab.for_each_slabinfo(&mut |r| shared_caches += usize::from(r.sharedfactor > 0));
    assert_eq!((q.nr_cpus, q.nr_nodes), (nr_cpus, nodes));
    assert!(q.caches >= 18, "kmalloc caches: {}", q.caches);
    assert_eq!(
        q.cpu.arrays,
        q.caches * nr_cpus,
        "one head array per cache and CPU"
    );
    assert_eq!(
        q.shared.arrays,
        shared_caches * nodes,
        "one shared array per node"
    );
    let alien = if nodes > 1 { nodes * (nodes - 1) } else { 0 };
    assert_eq!(q.alien.arrays, q.caches * alien, "nodes x (nodes-1) aliens");
    // Bootstrap frees (the boot head arrays it replaces) leave a few objects in the arrays.
    assert!(q.cpu.objects <= q.cpu.capacity);
    assert!(q.shared.objects <= q.shared.capacity && q.alien.objects <= q.alien.capacity);
    check_every_node(&p, &slab, "slab");
    slab.validate().unwrap();
    drop(slab);
    assert_eq!(p.stats().pages_in_use, 0, "slab gave everything back");

    let p = provider(t);
    let slub = slub::Slub::new(&p, slub::SlubSettings::default()).unwrap();
    let q = slub.queue_memory();
    assert_eq!((q.nr_cpus, q.nr_nodes), (nr_cpus, nodes));
    assert!(q.caches > 10, "kmalloc caches: {}", q.caches);
    assert_eq!(q.cpu_structs, q.caches * nr_cpus);
    assert_eq!(q.node_structs, q.caches * nodes);
    check_every_node(&p, &slub, "slub");
    slub.validate().unwrap();
    drop(slub);
    assert_eq!(p.stats().pages_in_use, 0, "slub gave everything back");
}

/// `kmalloc_node` of a few sizes on every node: each object's page is in that node's arena.
fn check_every_node<A: SlabAllocator>(p: &PageProvider, a: &A, name: &str) {
    for node in 0..p.nr_nodes() {
        for size in [64usize, 1000, 5000, 100_000] {
            let o = a
                .kmalloc_node(size, Gfp::KERNEL, node)
                .unwrap_or_else(|| panic!("{name}: kmalloc_node({size}, {node})"));
            let page = p.virt_to_head_page(o.as_ptr() as usize).unwrap();
            assert_eq!(
                p.page_to_nid(page),
                node,
                "{name}: kmalloc_node({size}, {node})"
            );
            // SAFETY: freed once.
            unsafe { a.kfree(o.as_ptr()) }.unwrap();
        }
    }
    let o = a.kmalloc(200, Gfp::KERNEL).unwrap();
    // SAFETY: freed once.
    unsafe { a.kfree(o.as_ptr()) }.unwrap();
}

fn node_sizes(t: &Topology) -> Vec<usize> {
    (0..t.nr_nodes()).map(|n| t.nr_cpus_node(n)).collect()
}

#[test]
fn two_socket_128_cpus() {
    let (_d, t) = read(&SysfsFixture::two_socket_128());
    let t = t.unwrap();
    assert_eq!((t.nr_cpu_ids(), t.nr_nodes()), (128, 2));
    assert_eq!(node_sizes(&t), vec![64, 64]);
    // SMT siblings: CPU 5 and CPU 69 share a core on socket 0; 32 and 96 on socket 1.
    assert_eq!(t.cpu_to_node(69), 0);
    assert_eq!(t.cpu_to_node(96), 1);
    assert_eq!(t.node_distance(0, 1), 21);
    allocators_on(&t);
}

#[test]
fn amd_eight_nodes_256_cpus() {
    let (_d, t) = read(&SysfsFixture::amd_8node_256());
    let t = t.unwrap();
    assert_eq!((t.nr_cpu_ids(), t.nr_nodes()), (256, 8));
    assert_eq!(node_sizes(&t), vec![32; 8]);
    assert_eq!(t.cpu_to_node(128 + 16 * 7), 7);
    assert_eq!(t.node_distance(1, 3), 12, "same socket");
    assert_eq!(t.node_distance(1, 4), 32, "other socket");
    assert_eq!(&t.nodes_by_distance(5)[..4], &[5, 6, 7, 4]);
    allocators_on(&t);
}

#[test]
fn four_socket_448_cpus_smt() {
    let (_d, t) = read(&SysfsFixture::four_socket_448());
    let t = t.unwrap();
    assert_eq!((t.nr_cpu_ids(), t.nr_nodes()), (448, 4));
    assert_eq!(node_sizes(&t), vec![112; 4]);
    assert_eq!(t.cpu_to_node(447), 3);
    assert_eq!(t.cpu_to_node(224 + 56), 1);
    allocators_on(&t);
}

#[test]
fn memoryless_and_cpuless_nodes() {
    let (_d, t) = read(&SysfsFixture::memoryless_cpuless());
    let t = t.unwrap();
    assert_eq!((t.nr_cpu_ids(), t.nr_nodes()), (32, 4));
    assert_eq!(t.num_online_cpus(), 24);
    // Dense logical nodes over kernel ids 0, 1, 2, 5.
    assert_eq!(
        (0..4).map(|n| t.real_node(n)).collect::<Vec<_>>(),
        vec![0, 1, 2, 5]
    );
    assert_eq!(t.cpu_to_node(20), 3);
    assert_eq!(t.cpu_to_node(30), 0, "an offline CPU counts on node 0");
    assert_eq!(node_sizes(&t), vec![8, 8, 0, 8]);
    assert!(!t.node_has_memory(1), "node 1 is memoryless");
    assert!(t.node_has_memory(2), "node 2 is CPU-less but has memory");
    let m = t.mem_node(1);
    assert!(
        t.node_has_memory(m) && t.node_distance(1, m) == 21,
        "nearest with memory: {m}"
    );
    assert_eq!(t.mem_node(2), 2);
    assert!(t.describe().contains("memoryless"));
    allocators_on(&t);
}

fn fixture(possible: &str, nodes: Vec<(usize, String)>) -> SysfsFixture {
    let n = nodes.len();
    SysfsFixture {
        name: "limit".into(),
        about: "limit".into(),
        possible: possible.into(),
        online: possible.into(),
        nodes,
        has_memory: None,
        distances: (0..n)
            .map(|a| (0..n).map(|b| if a == b { 10 } else { 20 }).collect())
            .collect(),
        cache_line: 64,
    }
}

#[test]
fn past_the_maxima_is_a_clear_error() {
    // A CPU id at NR_CPUS.
    let f = fixture(&format!("0-{NR_CPUS}"), vec![(0, format!("0-{NR_CPUS}"))]);
    let (_d, t) = read(&f);
    let e = t.unwrap_err();
    assert_eq!(e, TopologyError::TooManyCpus { id: NR_CPUS });
    assert!(e.to_string().contains("NR_CPUS=512"), "{e}");
    // One node more than MAX_NUMNODES.
    let nodes = (0..=MAX_NUMNODES).map(|k| (k, k.to_string())).collect();
    let f = fixture(&format!("0-{MAX_NUMNODES}"), nodes);
    let (_d, t) = read(&f);
    let e = t.unwrap_err();
    assert_eq!(
        e,
        TopologyError::TooManyNodes {
            count: MAX_NUMNODES + 1,
            id: MAX_NUMNODES
        }
    );
    assert!(e.to_string().contains("MAX_NUMNODES=64"), "{e}");
    // A node id too large for the parser.
    let f = fixture("0-1", vec![(0, "0".into()), (600, "1".into())]);
    let (_d, t) = read(&f);
    assert!(matches!(
        t,
        Err(TopologyError::TooManyNodes { id: 600, .. })
    ));
    // A node list that does not parse is an error, not a silent one-node machine.
    let dir = tempfile::tempdir().unwrap();
    fixture("0-1", vec![(0, "0-1".into())])
        .write(dir.path())
        .unwrap();
    std::fs::write(dir.path().join("devices/system/node/online"), "0-x\n").unwrap();
    let t = Topology::from_sysfs_root(dir.path().as_os_str().as_encoded_bytes());
    assert_eq!(t.unwrap_err(), TopologyError::BadList("node/online"));
    // Synthetic topologies say the same.
    assert_eq!(
        Topology::uniform(MAX_NUMNODES + 1, 1).unwrap_err(),
        TopologyError::TooBig
    );
}

#[test]
fn at_the_maxima_everything_builds() {
    // NR_CPUS CPUs over MAX_NUMNODES nodes, 8 CPUs each.
    let per = NR_CPUS / MAX_NUMNODES;
    let nodes = (0..MAX_NUMNODES)
        .map(|k| (k, format!("{}-{}", k * per, k * per + per - 1)))
        .collect();
    let f = fixture(&format!("0-{}", NR_CPUS - 1), nodes);
    let (_d, t) = read(&f);
    let t = t.unwrap();
    assert_eq!((t.nr_cpu_ids(), t.nr_nodes()), (NR_CPUS, MAX_NUMNODES));
    assert_eq!(t.cpu_to_node(NR_CPUS - 1), MAX_NUMNODES - 1);
    allocators_on(&t);
}
