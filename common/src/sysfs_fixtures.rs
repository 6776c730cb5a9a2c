//! Server topologies as sysfs trees, written on demand: the compact description of each machine
//! lives here and [`SysfsFixture::write`] lays out the files [`Topology::from_sysfs_root`] reads
//! (`cpu/possible`, `cpu/online`, `cpu/cpu0/cache/index0/coherency_line_size`, `node/online`,
//! `node/has_memory`, `node/nodeN/{cpulist,distance}`). A full copy of a 448-CPU `/sys` would be
//! thousands of files; these are the dozen the topology reader needs.
//!
//! Used by `common/tests/server_topologies.rs` (topology, provider and both allocators on each)
//! and the harness's `metadata` workload (queue memory by CPUs and nodes).
//!
//! [`Topology::from_sysfs_root`]: crate::Topology::from_sysfs_root

use std::fmt::Write as _;
use std::path::Path;

/// One machine's sysfs facts.
#[derive(Clone, Debug)]
pub struct SysfsFixture {
    /// Short name (a directory name).
    pub name: String,
    /// One line about the machine it models.
    pub about: String,
    /// `cpu/possible`.
    pub possible: String,
    /// `cpu/online`.
    pub online: String,
    /// Online nodes: kernel node id and its `cpulist` (empty for a CPU-less node).
    pub nodes: Vec<(usize, String)>,
    /// `node/has_memory` (`None`: file absent, every node has memory).
    pub has_memory: Option<String>,
    /// `node/nodeN/distance` rows, in the order of `nodes`.
    pub distances: Vec<Vec<u8>>,
    /// `coherency_line_size`.
    pub cache_line: usize,
}

/// `lo-hi` with an SMT sibling range `lo+smt-hi+smt` (how Linux numbers hyperthreads).
fn smt_list(lo: usize, n: usize, smt_offset: Option<usize>) -> String {
    let mut s = format!("{lo}-{}", lo + n - 1);
    if let Some(o) = smt_offset {
        let _ = write!(s, ",{}-{}", lo + o, lo + o + n - 1);
    }
    s
}

fn matrix(n: usize, d: impl Fn(usize, usize) -> u8) -> Vec<Vec<u8>> {
    (0..n).map(|a| (0..n).map(|b| d(a, b)).collect()).collect()
}

impl SysfsFixture {
    /// A 2-socket server, 32 cores × 2 threads per socket: 128 CPUs, 2 nodes, distances 10/21.
    pub fn two_socket_128() -> Self {
        Self {
            name: "2s-128cpu".into(),
            about: "2-socket, 32 cores x 2 threads per socket (128 CPUs), 2 nodes, 10/21".into(),
            possible: "0-127".into(),
            online: "0-127".into(),
            nodes: (0..2)
                .map(|k| (k, smt_list(k * 32, 32, Some(64))))
                .collect(),
            has_memory: Some("0-1".into()),
            distances: matrix(2, |a, b| if a == b { 10 } else { 21 }),
            cache_line: 64,
        }
    }

    /// An AMD EPYC-style 2-socket server in NPS4 mode: 8 nodes of 16 cores × 2 threads (256
    /// CPUs), distances 10 local, 12 within a socket, 32 across sockets.
    pub fn amd_8node_256() -> Self {
        Self {
            name: "amd-8n-256cpu".into(),
            about: "AMD EPYC-style 2P NPS4: 8 nodes x 16 cores x 2 threads (256 CPUs), 10/12/32"
                .into(),
            possible: "0-255".into(),
            online: "0-255".into(),
            nodes: (0..8)
                .map(|k| (k, smt_list(k * 16, 16, Some(128))))
                .collect(),
            has_memory: Some("0-7".into()),
            distances: matrix(8, |a, b| {
                if a == b {
                    10
                } else if a / 4 == b / 4 {
                    12
                } else {
                    32
                }
            }),
            cache_line: 64,
        }
    }

    /// A 4-socket server with SMT: 56 cores × 2 threads per socket (448 CPUs), 4 nodes, 10/21.
    pub fn four_socket_448() -> Self {
        Self {
            name: "4s-448cpu-smt".into(),
            about: "4-socket, 56 cores x 2 threads per socket (448 CPUs), 4 nodes, 10/21".into(),
            possible: "0-447".into(),
            online: "0-447".into(),
            nodes: (0..4)
                .map(|k| (k, smt_list(k * 56, 56, Some(224))))
                .collect(),
            has_memory: Some("0-3".into()),
            distances: matrix(4, |a, b| if a == b { 10 } else { 21 }),
            cache_line: 64,
        }
    }

    /// Four nodes with sparse kernel ids 0, 1, 2, 5: node 1 has CPUs but no memory, node 2
    /// memory but no CPUs (a CXL expander); 32 possible CPUs of which 24 are online (the offline
    /// ones are in no node's list and count on node 0).
    pub fn memoryless_cpuless() -> Self {
        Self {
            name: "memless-cpuless".into(),
            about:
                "4 nodes (ids 0,1,2,5): node 1 memoryless, node 2 CPU-less; 24 of 32 CPUs online"
                    .into(),
            possible: "0-31".into(),
            online: "0-23".into(),
            nodes: vec![
                (0, "0-7".into()),
                (1, "8-15".into()),
                (2, String::new()),
                (5, "16-23".into()),
            ],
            has_memory: Some("0,2,5".into()),
            distances: matrix(4, |a, b| {
                if a == b {
                    10
                } else if a == 2 || b == 2 {
                    40
                } else {
                    21
                }
            }),
            cache_line: 64,
        }
    }

    /// The four server fixtures, smallest first.
    pub fn servers() -> Vec<Self> {
        vec![
            Self::two_socket_128(),
            Self::amd_8node_256(),
            Self::four_socket_448(),
            Self::memoryless_cpuless(),
        ]
    }

    /// Writes the tree under `root` (the directory that will hold `devices/`).
    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        let sys = root.join("devices/system");
        let cpu = sys.join("cpu");
        std::fs::create_dir_all(cpu.join("cpu0/cache/index0"))?;
        std::fs::write(cpu.join("possible"), format!("{}\n", self.possible))?;
        std::fs::write(cpu.join("online"), format!("{}\n", self.online))?;
        std::fs::write(
            cpu.join("cpu0/cache/index0/coherency_line_size"),
            format!("{}\n", self.cache_line),
        )?;
        let node = sys.join("node");
        std::fs::create_dir_all(&node)?;
        let ids: Vec<String> = self.nodes.iter().map(|(id, _)| id.to_string()).collect();
        std::fs::write(node.join("online"), format!("{}\n", ids.join(",")))?;
        if let Some(m) = &self.has_memory {
            std::fs::write(node.join("has_memory"), format!("{m}\n"))?;
        }
        for (i, (id, cpus)) in self.nodes.iter().enumerate() {
            let d = node.join(format!("node{id}"));
            std::fs::create_dir_all(&d)?;
            std::fs::write(d.join("cpulist"), format!("{cpus}\n"))?;
            if let Some(row) = self.distances.get(i) {
                let row: Vec<String> = row.iter().map(|v| v.to_string()).collect();
                std::fs::write(d.join("distance"), format!("{}\n", row.join(" ")))?;
            }
        }
        Ok(())
    }
}
