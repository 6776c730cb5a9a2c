//! Machine topology: CPUs, NUMA nodes, the CPU→node map, node distances, cache line and page
//! size.
//!
//! Three sources, one answer type:
//! - **sysfs** (default, no system library): `/sys/devices/system/{cpu,node}`, read with
//!   [`crate::sys::read_small_file`] into stack buffers, so topology can be read while a global
//!   allocator bootstraps (no heap). A test root (a copied sysfs tree) can stand in for `/sys`.
//! - **hwloc** (cargo feature `hwloc`, through `hwlocality`): the same facts from libhwloc.
//! - **fake NUMA**: `N` logical nodes over the real ones (`N` ≥ real nodes), so that every NUMA
//!   path runs on a one-node machine. Logical node `f` sits on real node `f·R/N`; the CPUs of a real
//!   node are split into contiguous runs among its logical nodes (a logical node may get none: a
//!   memory-only node, which the kernel also knows). Distances: 10 to itself, 20 to another
//!   logical node, or the real distance if that is larger. Each logical node gets its own arena in
//!   the page provider; binding goes to the real node behind it.
//!
//! Environment: `SLABWORKS_FAKE_NUMA=N` turns on fake NUMA for [`Topology::detect`];
//! `SLABWORKS_TOPOLOGY=sysfs|hwloc` chooses the source (hwloc needs the feature).
//!
//! Node numbers used everywhere in slabworks are *logical* and dense (0..nr_nodes); the kernel's
//! node id behind one is [`Topology::real_node`].

use crate::sys;
use core::fmt;

/// Most NUMA nodes a topology can describe (`MAX_NUMNODES`).
pub const MAX_NUMNODES: usize = 64;
/// Most CPUs a topology can describe (`NR_CPUS`).
pub const NR_CPUS: usize = 512;
const MASK_WORDS: usize = NR_CPUS / 64;

/// Environment variable: number of fake NUMA nodes.
pub const ENV_FAKE_NUMA: &str = "SLABWORKS_FAKE_NUMA";
/// Environment variable: topology source (`sysfs` or `hwloc`).
pub const ENV_TOPOLOGY: &str = "SLABWORKS_TOPOLOGY";

/// Where the topology came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologySource {
    /// `/sys/devices/system` of this machine.
    Sysfs,
    /// A sysfs tree under another root (tests).
    SysfsRoot,
    /// libhwloc.
    Hwloc,
    /// Built by hand ([`Topology::uniform`]).
    Synthetic,
}

impl TopologySource {
    /// Lower-case name.
    pub const fn name(self) -> &'static str {
        match self {
            TopologySource::Sysfs => "sysfs",
            TopologySource::SysfsRoot => "sysfs-root",
            TopologySource::Hwloc => "hwloc",
            TopologySource::Synthetic => "synthetic",
        }
    }
}

/// Why a topology could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopologyError {
    /// The CPU list file could not be read or parsed.
    NoCpus,
    /// More CPUs or nodes than [`NR_CPUS`] / [`MAX_NUMNODES`].
    TooBig,
    /// A CPU id at or above [`NR_CPUS`] in a CPU list (`id` is the largest one seen).
    TooManyCpus {
        /// The largest CPU id listed.
        id: usize,
    },
    /// More nodes than [`MAX_NUMNODES`], or a node id at or above [`NR_CPUS`] (the widest list
    /// the parser takes).
    TooManyNodes {
        /// Nodes listed (0 if the list could not be parsed because an id was too large).
        count: usize,
        /// The largest node id listed.
        id: usize,
    },
    /// A sysfs list file exists but does not parse (the path's tail).
    BadList(&'static str),
    /// Fake NUMA asked for fewer logical nodes than there are real ones, or none, or too many.
    BadFakeNodes(usize),
    /// An environment variable held something unusable.
    BadEnv(&'static str),
    /// hwloc was asked for but is not compiled in (feature `hwloc`) or failed.
    Hwloc,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopologyError::NoCpus => write!(f, "cannot read the CPU list from sysfs"),
            TopologyError::TooBig => write!(
                f,
                "machine exceeds NR_CPUS={NR_CPUS} or MAX_NUMNODES={MAX_NUMNODES}"
            ),
            TopologyError::TooManyCpus { id } => write!(
                f,
                "CPU id {id} is past the supported maximum: slabworks supports CPU ids 0..{NR_CPUS} \
                 (NR_CPUS={NR_CPUS}); use a machine (or a --cpus/--nodes subset of a sysfs tree) \
                 with fewer CPUs, or raise NR_CPUS in common/src/topology.rs"
            ),
            TopologyError::TooManyNodes { count, id } => write!(
                f,
                "NUMA nodes past the supported maximum: {count} node(s) listed, largest id {id}; \
                 slabworks supports up to MAX_NUMNODES={MAX_NUMNODES} nodes with ids below \
                 {NR_CPUS} (raise MAX_NUMNODES in common/src/topology.rs)"
            ),
            TopologyError::BadList(path) => {
                write!(f, "sysfs list file {path} exists but does not parse")
            }
            TopologyError::BadFakeNodes(n) => write!(
                f,
                "fake NUMA needs between the real node count and {MAX_NUMNODES} nodes, got {n}"
            ),
            TopologyError::BadEnv(v) => write!(f, "environment variable {v} has a bad value"),
            TopologyError::Hwloc => write!(
                f,
                "hwloc topology unavailable (build with --features hwloc and install libhwloc)"
            ),
        }
    }
}

impl std::error::Error for TopologyError {}

/// A set of CPUs as a bitmap (`cpumask_t`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuMask([u64; MASK_WORDS]);

impl CpuMask {
    /// The empty set.
    pub const fn new() -> Self {
        Self([0; MASK_WORDS])
    }
    /// Adds `cpu`.
    pub fn set(&mut self, cpu: usize) {
        self.0[cpu / 64] |= 1 << (cpu % 64);
    }
    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < NR_CPUS && self.0[cpu / 64] & (1 << (cpu % 64)) != 0
    }
    /// Number of CPUs in the set.
    pub fn weight(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// The CPUs, ascending.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..NR_CPUS).filter(|&c| self.contains(c))
    }
    /// One past the highest CPU in the set (0 if empty).
    pub fn last_plus_one(&self) -> usize {
        for (i, w) in self.0.iter().enumerate().rev() {
            if *w != 0 {
                return i * 64 + 64 - w.leading_zeros() as usize;
            }
        }
        0
    }

    /// Parses a kernel cpulist ("0-3,8,10-11"). `None` on a syntax error or a CPU ≥ NR_CPUS.
    pub fn parse_list(s: &[u8]) -> Option<Self> {
        Self::parse_list_checked(s).ok()
    }

    /// Parses a kernel cpulist, telling a syntax error (`Err(None)`) from an id at or above
    /// [`NR_CPUS`] (`Err(Some(largest id))`), so callers can say which limit was passed.
    pub fn parse_list_checked(s: &[u8]) -> Result<Self, Option<usize>> {
        let mut m = Self::new();
        let s = trim(s);
        if s.is_empty() {
            return Ok(m);
        }
        let mut too_big = None;
        for part in s.split(|&b| b == b',') {
            let part = trim(part);
            let (a, b) = if let Some(i) = part.iter().position(|&c| c == b'-') {
                (
                    parse_usize(&part[..i]).ok_or(None)?,
                    parse_usize(&part[i + 1..]).ok_or(None)?,
                )
            } else {
                let v = parse_usize(part).ok_or(None)?;
                (v, v)
            };
            if a > b {
                return Err(None);
            }
            if b >= NR_CPUS {
                too_big = Some(too_big.unwrap_or(0).max(b));
                continue;
            }
            for c in a..=b {
                m.set(c);
            }
        }
        match too_big {
            Some(id) => Err(Some(id)),
            None => Ok(m),
        }
    }
}

impl fmt::Debug for CpuMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && s[a].is_ascii_whitespace() {
        a += 1;
    }
    while b > a && s[b - 1].is_ascii_whitespace() {
        b -= 1;
    }
    &s[a..b]
}

fn parse_usize(s: &[u8]) -> Option<usize> {
    let s = trim(s);
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut v = 0usize;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as usize;
    }
    Some(v)
}

/// A fixed-capacity path buffer (no heap): `root` + formatted suffix.
struct PathBuf {
    buf: [u8; 256],
    len: usize,
}

impl PathBuf {
    fn new(root: &[u8]) -> Option<Self> {
        let mut p = Self {
            buf: [0; 256],
            len: 0,
        };
        p.push(root)?;
        Some(p)
    }
    fn push(&mut self, s: &[u8]) -> Option<&mut Self> {
        if self.len + s.len() >= self.buf.len() {
            return None;
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
        Some(self)
    }
    fn push_num(&mut self, mut n: usize) -> Option<&mut Self> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..])
    }
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// The machine as the allocators see it. Plain data with fixed capacity (no heap), `Clone`.
#[derive(Clone)]
pub struct Topology {
    source: TopologySource,
    possible: CpuMask,
    online: CpuMask,
    nr_nodes: usize,
    cpu_node: [u8; NR_CPUS],
    node_cpus: [CpuMask; MAX_NUMNODES],
    real_node: [u16; MAX_NUMNODES],
    distance: [[u8; MAX_NUMNODES]; MAX_NUMNODES],
    fake_nodes: usize,
    real_nodes: usize,
    /// Logical nodes with memory (`N_MEMORY`, sysfs `node/has_memory`), one bit per node.
    mem_nodes: u64,
    cache_line_size: usize,
    page_size: usize,
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary())
    }
}

impl Topology {
    fn empty(source: TopologySource) -> Self {
        Self {
            source,
            possible: CpuMask::new(),
            online: CpuMask::new(),
            nr_nodes: 0,
            cpu_node: [0; NR_CPUS],
            node_cpus: [CpuMask::new(); MAX_NUMNODES],
            real_node: [0; MAX_NUMNODES],
            distance: [[0; MAX_NUMNODES]; MAX_NUMNODES],
            fake_nodes: 0,
            real_nodes: 0,
            mem_nodes: u64::MAX,
            cache_line_size: 64,
            page_size: 4096,
        }
    }

    /// A synthetic machine: `nodes` real nodes with `cpus_per_node` CPUs each, distances 10/20.
    pub fn uniform(nodes: usize, cpus_per_node: usize) -> Result<Self, TopologyError> {
        if nodes == 0 || cpus_per_node == 0 {
            return Err(TopologyError::NoCpus);
        }
        if nodes > MAX_NUMNODES || nodes * cpus_per_node > NR_CPUS {
            return Err(TopologyError::TooBig);
        }
        let mut t = Self::empty(TopologySource::Synthetic);
        t.nr_nodes = nodes;
        t.real_nodes = nodes;
        for n in 0..nodes {
            t.real_node[n] = n as u16;
            for c in n * cpus_per_node..(n + 1) * cpus_per_node {
                t.possible.set(c);
                t.online.set(c);
                t.node_cpus[n].set(c);
                t.cpu_node[c] = n as u8;
            }
            for m in 0..nodes {
                t.distance[n][m] = if n == m { 10 } else { 20 };
            }
        }
        t.page_size = sys::page_size();
        Ok(t)
    }

    /// This machine's topology, from `SLABWORKS_TOPOLOGY` (default sysfs) with
    /// `SLABWORKS_FAKE_NUMA` applied when set.
    pub fn detect() -> Result<Self, TopologyError> {
        let source = std::env::var_os(ENV_TOPOLOGY);
        let base = match source.as_ref().and_then(|s| s.to_str()) {
            None | Some("" | "sysfs") => Self::from_sysfs()?,
            Some("hwloc") => Self::from_hwloc()?,
            Some(_) => return Err(TopologyError::BadEnv(ENV_TOPOLOGY)),
        };
        match std::env::var_os(ENV_FAKE_NUMA) {
            None => Ok(base),
            Some(v) => {
                let n = v
                    .to_str()
                    .and_then(|s| s.trim().parse::<usize>().ok())
                    .ok_or(TopologyError::BadEnv(ENV_FAKE_NUMA))?;
                if n == 0 {
                    Ok(base)
                } else {
                    base.with_fake_numa(n)
                }
            }
        }
    }

    /// Reads `/sys/devices/system` of this machine.
    pub fn from_sysfs() -> Result<Self, TopologyError> {
        let mut t = Self::from_sysfs_root(b"/sys")?;
        t.source = TopologySource::Sysfs;
        Ok(t)
    }

    /// Reads a sysfs tree whose root (the directory holding `devices/`) is `root`.
    pub fn from_sysfs_root(root: &[u8]) -> Result<Self, TopologyError> {
        let mut t = Self::empty(TopologySource::SysfsRoot);
        let mut buf = [0u8; 4096];
        let mut path = PathBuf::new(root).ok_or(TopologyError::NoCpus)?;
        path.push(b"/devices/system/cpu/possible")
            .ok_or(TopologyError::NoCpus)?;
        t.possible = match sys::read_small_file(path.as_bytes(), &mut buf)
            .map(CpuMask::parse_list_checked)
        {
            None | Some(Err(None)) => return Err(TopologyError::NoCpus),
            Some(Err(Some(id))) => return Err(TopologyError::TooManyCpus { id }),
            Some(Ok(m)) => m,
        };
        if t.possible.weight() == 0 {
            return Err(TopologyError::NoCpus);
        }
        let mut path = PathBuf::new(root).ok_or(TopologyError::NoCpus)?;
        path.push(b"/devices/system/cpu/online")
            .ok_or(TopologyError::NoCpus)?;
        t.online = match sys::read_small_file(path.as_bytes(), &mut buf)
            .map(CpuMask::parse_list_checked)
        {
            None => t.possible,
            Some(Err(None)) => return Err(TopologyError::BadList("cpu/online")),
            Some(Err(Some(id))) => return Err(TopologyError::TooManyCpus { id }),
            Some(Ok(m)) => m,
        };

        // Nodes: the online node list; a kernel without NUMA has none, i.e. one node. A list
        // that exists but does not parse, or names too many nodes, is an error (never a silent
        // one-node machine).
        let mut path = PathBuf::new(root).ok_or(TopologyError::NoCpus)?;
        path.push(b"/devices/system/node/online")
            .ok_or(TopologyError::NoCpus)?;
        let nodes = match sys::read_small_file(path.as_bytes(), &mut buf)
            .map(CpuMask::parse_list_checked)
        {
            None => None,
            Some(Err(None)) => return Err(TopologyError::BadList("node/online")),
            Some(Err(Some(id))) => return Err(TopologyError::TooManyNodes { count: 0, id }),
            Some(Ok(m)) => Some(m),
        };
        match nodes {
            Some(nodes) if nodes.weight() > 0 => {
                if nodes.weight() > MAX_NUMNODES {
                    return Err(TopologyError::TooManyNodes {
                        count: nodes.weight(),
                        id: nodes.last_plus_one() - 1,
                    });
                }
                let ids: [usize; MAX_NUMNODES] = {
                    let mut a = [0; MAX_NUMNODES];
                    for (i, n) in nodes.iter().enumerate() {
                        a[i] = n;
                    }
                    a
                };
                t.nr_nodes = nodes.weight();
                for (dense, &real) in ids.iter().enumerate().take(t.nr_nodes) {
                    t.real_node[dense] = real as u16;
                    let mut p = PathBuf::new(root).ok_or(TopologyError::NoCpus)?;
                    p.push(b"/devices/system/node/node")
                        .and_then(|p| p.push_num(real))
                        .and_then(|p| p.push(b"/cpulist"))
                        .ok_or(TopologyError::NoCpus)?;
                    let cpus = match sys::read_small_file(p.as_bytes(), &mut buf)
                        .map(CpuMask::parse_list_checked)
                    {
                        None => CpuMask::new(),
                        Some(Err(None)) => {
                            return Err(TopologyError::BadList("node/nodeN/cpulist"))
                        }
                        Some(Err(Some(id))) => return Err(TopologyError::TooManyCpus { id }),
                        Some(Ok(m)) => m,
                    };
                    for c in cpus.iter() {
                        t.cpu_node[c] = dense as u8;
                    }
                    t.node_cpus[dense] = cpus;
                    let mut p = PathBuf::new(root).ok_or(TopologyError::NoCpus)?;
                    p.push(b"/devices/system/node/node")
                        .and_then(|p| p.push_num(real))
                        .and_then(|p| p.push(b"/distance"))
                        .ok_or(TopologyError::NoCpus)?;
                    // The distance file lists one entry per online node, in node order.
                    let mut read = false;
                    if let Some(d) = sys::read_small_file(p.as_bytes(), &mut buf) {
                        let mut col = 0;
                        for tok in d
                            .split(|b| b.is_ascii_whitespace())
                            .filter(|s| !s.is_empty())
                        {
                            if col < t.nr_nodes {
                                t.distance[dense][col] =
                                    parse_usize(tok).unwrap_or(20).min(255) as u8;
                            }
                            col += 1;
                        }
                        read = col == t.nr_nodes;
                    }
                    if !read {
                        for m in 0..t.nr_nodes {
                            t.distance[dense][m] = if m == dense { 10 } else { 20 };
                        }
                    }
                }
                // Nodes with memory (N_MEMORY): a node missing from has_memory is memoryless
                // (CPUs only). Without the file every node has memory.
                let mut p = PathBuf::new(root).ok_or(TopologyError::NoCpus)?;
                p.push(b"/devices/system/node/has_memory")
                    .ok_or(TopologyError::NoCpus)?;
                if let Some(m) =
                    sys::read_small_file(p.as_bytes(), &mut buf).map(CpuMask::parse_list_checked)
                {
                    let m = m.map_err(|_| TopologyError::BadList("node/has_memory"))?;
                    t.mem_nodes = 0;
                    for dense in 0..t.nr_nodes {
                        if m.contains(t.real_node[dense] as usize) {
                            t.mem_nodes |= 1 << dense;
                        }
                    }
                    if t.mem_nodes == 0 {
                        return Err(TopologyError::BadList(
                            "node/has_memory (no node has memory)",
                        ));
                    }
                }
                // CPUs the node files did not list (offline CPUs) stay on node 0, as
                // cpu_to_node's default does.
                for c in t.possible.iter() {
                    if !(0..t.nr_nodes).any(|n| t.node_cpus[n].contains(c)) {
                        t.node_cpus[0].set(c);
                        t.cpu_node[c] = 0;
                    }
                }
            }
            _ => {
                t.nr_nodes = 1;
                t.node_cpus[0] = t.possible;
                t.distance[0][0] = 10;
            }
        }
        t.real_nodes = t.nr_nodes;
        let mut p = PathBuf::new(root).ok_or(TopologyError::NoCpus)?;
        p.push(b"/devices/system/cpu/cpu")
            .and_then(|p| p.push_num(t.possible.iter().next().unwrap_or(0)))
            .and_then(|p| p.push(b"/cache/index0/coherency_line_size"))
            .ok_or(TopologyError::NoCpus)?;
        t.cache_line_size = sys::read_small_file(p.as_bytes(), &mut buf)
            .and_then(parse_usize)
            .filter(|v| v.is_power_of_two())
            .unwrap_or(64);
        t.page_size = sys::page_size();
        Ok(t)
    }

    /// The topology as libhwloc reports it (feature `hwloc`).
    #[cfg(feature = "hwloc")]
    pub fn from_hwloc() -> Result<Self, TopologyError> {
        crate::hwloc::topology()
    }

    /// The topology as libhwloc reports it (feature `hwloc`): without the feature, an error.
    #[cfg(not(feature = "hwloc"))]
    pub fn from_hwloc() -> Result<Self, TopologyError> {
        Err(TopologyError::Hwloc)
    }

    /// Builds a topology from parts (used by the hwloc reader): per real node its kernel id and
    /// CPU set, plus distances (row-major, `nodes.len()²` entries) if known.
    pub fn from_parts(
        source: TopologySource,
        nodes: &[(usize, CpuMask)],
        distances: Option<&[u8]>,
        cache_line_size: usize,
    ) -> Result<Self, TopologyError> {
        if nodes.is_empty() {
            return Err(TopologyError::NoCpus);
        }
        if nodes.len() > MAX_NUMNODES {
            return Err(TopologyError::TooBig);
        }
        let mut t = Self::empty(source);
        t.nr_nodes = nodes.len();
        t.real_nodes = nodes.len();
        for (dense, (real, cpus)) in nodes.iter().enumerate() {
            t.real_node[dense] = *real as u16;
            t.node_cpus[dense] = *cpus;
            for c in cpus.iter() {
                t.possible.set(c);
                t.online.set(c);
                t.cpu_node[c] = dense as u8;
            }
            for m in 0..nodes.len() {
                t.distance[dense][m] = match distances {
                    Some(d) if d.len() == nodes.len() * nodes.len() => d[dense * nodes.len() + m],
                    _ if m == dense => 10,
                    _ => 20,
                };
            }
        }
        if t.possible.weight() == 0 {
            return Err(TopologyError::NoCpus);
        }
        t.cache_line_size = cache_line_size;
        t.page_size = sys::page_size();
        Ok(t)
    }

    /// The same machine split into `n` logical (fake) NUMA nodes; see the module documentation.
    pub fn with_fake_numa(&self, n: usize) -> Result<Self, TopologyError> {
        let real = self.real_nodes;
        if n < real || n == 0 || n > MAX_NUMNODES || self.fake_nodes != 0 {
            return Err(TopologyError::BadFakeNodes(n));
        }
        let mut t = self.clone();
        t.fake_nodes = n;
        t.nr_nodes = n;
        t.node_cpus = [CpuMask::new(); MAX_NUMNODES];
        // Logical node f lives on real (dense) node f*R/n; count how many per real node.
        let real_of = |f: usize| f * real / n;
        t.mem_nodes = 0;
        for f in 0..n {
            t.real_node[f] = self.real_node[real_of(f)];
            if self.node_has_memory(real_of(f)) {
                t.mem_nodes |= 1 << f;
            }
        }
        for r in 0..real {
            let fakes: [usize; MAX_NUMNODES] = {
                let mut a = [0; MAX_NUMNODES];
                let mut k = 0;
                for f in 0..n {
                    if real_of(f) == r {
                        a[k] = f;
                        k += 1;
                    }
                }
                a
            };
            let m = (0..n).filter(|&f| real_of(f) == r).count();
            let cpus = self.node_cpus[r];
            let c = cpus.weight();
            for (j, cpu) in cpus.iter().enumerate() {
                let f = fakes[j * m / c.max(1)];
                t.node_cpus[f].set(cpu);
                t.cpu_node[cpu] = f as u8;
            }
        }
        for a in 0..n {
            for b in 0..n {
                t.distance[a][b] = if a == b {
                    10
                } else {
                    self.distance[real_of(a)][real_of(b)].max(20)
                };
            }
        }
        Ok(t)
    }

    /// Where this topology came from.
    pub fn source(&self) -> TopologySource {
        self.source
    }
    /// `nr_cpu_ids`: one past the highest possible CPU id (size of per-CPU arrays).
    pub fn nr_cpu_ids(&self) -> usize {
        self.possible.last_plus_one()
    }
    /// Possible CPUs.
    pub fn possible_cpus(&self) -> &CpuMask {
        &self.possible
    }
    /// Online CPUs.
    pub fn online_cpus(&self) -> &CpuMask {
        &self.online
    }
    /// Number of online CPUs (`num_online_cpus`).
    pub fn num_online_cpus(&self) -> usize {
        self.online.weight()
    }
    /// `nr_node_ids`: logical nodes (fake ones if fake NUMA is on).
    pub fn nr_nodes(&self) -> usize {
        self.nr_nodes
    }
    /// Number of real nodes behind the logical ones.
    pub fn nr_real_nodes(&self) -> usize {
        self.real_nodes
    }
    /// Fake node count, or `None` if the nodes are real.
    pub fn fake_numa(&self) -> Option<usize> {
        (self.fake_nodes != 0).then_some(self.fake_nodes)
    }
    /// `cpu_to_node`: logical node of a CPU (0 for an id out of range).
    #[inline]
    pub fn cpu_to_node(&self, cpu: usize) -> usize {
        if cpu < NR_CPUS {
            self.cpu_node[cpu] as usize
        } else {
            0
        }
    }
    /// CPUs of a logical node (`cpumask_of_node`).
    pub fn cpus_of_node(&self, node: usize) -> &CpuMask {
        &self.node_cpus[node.min(MAX_NUMNODES - 1)]
    }
    /// `nr_cpus_node`: online CPUs of a logical node.
    pub fn nr_cpus_node(&self, node: usize) -> usize {
        self.cpus_of_node(node)
            .iter()
            .filter(|&c| self.online.contains(c))
            .count()
    }
    /// The kernel's node id behind a logical node (the one `mbind` binds to).
    pub fn real_node(&self, node: usize) -> usize {
        self.real_node[node.min(MAX_NUMNODES - 1)] as usize
    }
    /// Whether a logical node has memory (`node_state(node, N_MEMORY)`); a memoryless node
    /// has CPUs only. Nodes past `nr_nodes` have none.
    pub fn node_has_memory(&self, node: usize) -> bool {
        node < self.nr_nodes && self.mem_nodes & (1 << node) != 0
    }
    /// The nearest node with memory (`numa_mem_id` for a node): the node itself if it has
    /// memory, else the first node with memory in distance order. The page provider binds a
    /// memoryless node's arena there.
    pub fn mem_node(&self, node: usize) -> usize {
        if self.node_has_memory(node) || node >= self.nr_nodes {
            return node.min(self.nr_nodes.saturating_sub(1));
        }
        let order = self.nodes_by_distance(node);
        order[..self.nr_nodes]
            .iter()
            .map(|&m| m as usize)
            .find(|&m| self.node_has_memory(m))
            .unwrap_or(node)
    }
    /// `node_distance` (10 = local).
    pub fn node_distance(&self, a: usize, b: usize) -> u8 {
        if a < self.nr_nodes && b < self.nr_nodes {
            self.distance[a][b]
        } else {
            255
        }
    }
    /// `cache_line_size()`.
    pub fn cache_line_size(&self) -> usize {
        self.cache_line_size
    }
    /// The page size the OS uses.
    pub fn page_size(&self) -> usize {
        self.page_size
    }
    /// Nodes ordered by distance from `node` (nearest first, itself first): the zonelist
    /// fallback order.
    pub fn nodes_by_distance(&self, node: usize) -> [u8; MAX_NUMNODES] {
        let mut order = [0u8; MAX_NUMNODES];
        for (i, o) in order.iter_mut().enumerate().take(self.nr_nodes) {
            *o = i as u8;
        }
        order[..self.nr_nodes].sort_by_key(|&m| {
            (
                self.node_distance(node, m as usize),
                (m as usize + self.nr_nodes - node) % self.nr_nodes,
            )
        });
        order
    }

    /// One line for logs and CSV: `source=sysfs nodes=2 (fake on 1 real) cpus=2 line=64`.
    pub fn summary(&self) -> String {
        let fake = match self.fake_numa() {
            Some(n) => format!(" fake={n} over {} real", self.real_nodes),
            None => String::new(),
        };
        format!(
            "source={} nodes={}{} cpus={} online={} cache_line={} page={}",
            self.source.name(),
            self.nr_nodes,
            fake,
            self.possible.weight(),
            self.online.weight(),
            self.cache_line_size,
            self.page_size
        )
    }

    /// A multi-line description: per node its CPUs and distances.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = self.summary();
        s.push('\n');
        for n in 0..self.nr_nodes {
            let cpus: Vec<String> = self.node_cpus[n].iter().map(|c| c.to_string()).collect();
            let d: Vec<String> = (0..self.nr_nodes)
                .map(|m| self.node_distance(n, m).to_string())
                .collect();
            let _ = writeln!(
                s,
                "  node {n} (real {}{}): cpus [{}] distances [{}]",
                self.real_node(n),
                if self.node_has_memory(n) {
                    ""
                } else {
                    ", memoryless"
                },
                cpus.join(","),
                d.join(" ")
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpulist_parsing() {
        let m = CpuMask::parse_list(b"0-3,8,10-11\n").unwrap();
        assert_eq!(m.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(m.last_plus_one(), 12);
        assert!(CpuMask::parse_list(b"3-1").is_none());
        assert!(CpuMask::parse_list(b"x").is_none());
        assert!(CpuMask::parse_list(b"0-999999").is_none());
        assert_eq!(CpuMask::parse_list(b"").unwrap().weight(), 0);
    }

    #[test]
    #[cfg_attr(miri, ignore)]
    fn this_machine_from_sysfs() {
        let t = Topology::from_sysfs().expect("sysfs");
        assert!(t.nr_nodes() >= 1);
        assert!(t.nr_cpu_ids() >= 1);
        assert_eq!(t.nr_cpu_ids(), sys::nprocs_conf().max(t.nr_cpu_ids()));
        for c in t.possible_cpus().iter() {
            assert!(t.cpu_to_node(c) < t.nr_nodes());
        }
        assert_eq!(t.node_distance(0, 0), 10);
    }

    #[test]
    fn uniform_and_fake_split() {
        let t = Topology::uniform(1, 2).unwrap();
        let f = t.with_fake_numa(2).unwrap();
        assert_eq!(f.nr_nodes(), 2);
        assert_eq!(f.cpu_to_node(0), 0);
        assert_eq!(f.cpu_to_node(1), 1);
        assert_eq!(f.real_node(1), 0);
        assert_eq!(f.node_distance(0, 1), 20);
        assert_eq!(f.node_distance(1, 1), 10);
        // More fake nodes than CPUs: memory-only nodes.
        let f4 = t.with_fake_numa(4).unwrap();
        assert_eq!(f4.nr_nodes(), 4);
        let with_cpus = (0..4).filter(|&n| f4.nr_cpus_node(n) > 0).count();
        assert_eq!(with_cpus, 2);
        assert_eq!((0..4).map(|n| f4.nr_cpus_node(n)).sum::<usize>(), 2);
        assert!(t.with_fake_numa(0).is_err());
        assert!(f.with_fake_numa(4).is_err(), "fake over fake is refused");
        // Two real nodes of 4 CPUs, 4 fake nodes: two per real node, two CPUs each.
        let t2 = Topology::uniform(2, 4).unwrap().with_fake_numa(4).unwrap();
        assert_eq!(
            (0..8).map(|c| t2.cpu_to_node(c)).collect::<Vec<_>>(),
            vec![0, 0, 1, 1, 2, 2, 3, 3]
        );
        assert_eq!(t2.real_node(3), 1);
        assert!(Topology::uniform(2, 4).unwrap().with_fake_numa(1).is_err());
    }

    #[test]
    fn nearest_first() {
        let t = Topology::uniform(4, 1).unwrap();
        let o = t.nodes_by_distance(2);
        assert_eq!(o[0], 2);
        assert_eq!(&o[1..4], &[3, 0, 1]);
    }
}
