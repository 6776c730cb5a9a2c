//! Workloads: one module each. Every workload is generic over the allocator (monomorphised, no
//! virtual call in a timed loop) and builds fresh allocator instances through `make`, so each
//! measurement starts from an empty allocator with exact accounting.

pub(crate) mod ablation;
pub(crate) mod custom_caches;
pub(crate) mod latency;
pub(crate) mod memory;
pub(crate) mod metadata;
pub(crate) mod pages;
pub(crate) mod programs;
pub(crate) mod remote_free;
pub(crate) mod scaling;
pub(crate) mod sheaf_batch;
pub(crate) mod slab_test;

use crate::alloc::BenchAllocator;
use crate::record::{Row, RunMeta};
use common::Topology;
use indicatif::ProgressBar;

/// The workloads, in the order the default sweep runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Workload {
    /// Lameter's slab_test: tests A–F.
    SlabTest,
    /// Producer/consumer remote frees, same node and across nodes.
    RemoteFree,
    /// Working set grown, shrunk, kmem_cache_shrink-ed: memory overhead.
    Memory,
    /// kmem_cache_create of kernel-typical objects in a mixed pattern.
    CustomCaches,
    /// Alloc/free pairs on 1…all CPUs, same total work.
    Scaling,
    /// The page provider against mmap/munmap, pages per second by order.
    Pages,
    /// Real programs under LD_PRELOAD on each allocator (opt-in: not in the default sweep).
    Programs,
    /// Per-operation latency distributions (latency.rs).
    Latency,
    /// SLUB/SLAB by kernel configuration × per-CPU mechanism × statistics.
    Ablation,
    /// Bytes held by object queues and per-CPU/per-node structures on server topologies.
    Metadata,
    /// The sheaves series' batch benchmark.
    SheafBatch,
}

impl Workload {
    /// Every workload, in sweep order.
    pub(crate) const ALL: [Workload; 11] = [
        Workload::SlabTest,
        Workload::Latency,
        Workload::RemoteFree,
        Workload::Memory,
        Workload::CustomCaches,
        Workload::Scaling,
        Workload::Pages,
        Workload::Metadata,
        Workload::Programs,
        Workload::Ablation,
        Workload::SheafBatch,
    ];

    /// The default sweep: the synthetic workloads (programs is opt-in, it builds the preload
    /// library and runs external commands).
    pub(crate) const DEFAULT: [Workload; 10] = [
        Workload::SlabTest,
        Workload::Latency,
        Workload::RemoteFree,
        Workload::Memory,
        Workload::CustomCaches,
        Workload::Scaling,
        Workload::Pages,
        Workload::Ablation,
        Workload::Metadata,
        Workload::SheafBatch,
    ];

    /// Command-line name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::SlabTest => "slab_test",
            Workload::RemoteFree => "remote_free",
            Workload::Memory => "memory",
            Workload::CustomCaches => "custom_caches",
            Workload::Scaling => "scaling",
            Workload::Pages => "pages",
            Workload::Programs => "programs",
            Workload::Latency => "latency",
            Workload::Ablation => "ablation",
            Workload::Metadata => "metadata",
            Workload::SheafBatch => "sheaf_batch",
        }
    }

    /// One line for `--list`.
    pub(crate) fn description(self) -> &'static str {
        match self {
            Workload::SlabTest => "Lameter's slab_test: (A) N kmallocs, (B) N kfrees, (C) N alloc/free pairs on one CPU; (D/E) the same on all CPUs at once; (F) allocated on all but one CPU, freed remotely by the last; cycles/op per size",
            Workload::RemoteFree => "producer/consumer pairs: allocated on one CPU, freed on another, same node and across (fake) nodes; throughput by size",
            Workload::Memory => "working set grown to N live objects with seeded random frees, then shrunk and kmem_cache_shrink-ed; bytes held / bytes live",
            Workload::CustomCaches => "kmem_cache_create of dentry/skbuff/inode/4k-buffer-like objects in a mixed producer/consumer pattern",
            Workload::Scaling => "alloc/free pairs on 1..all CPUs with the same total work; throughput vs threads",
            Workload::Pages => "the page provider against raw mmap/munmap: alloc+free pairs by order on every CPU; pages per second",
            Workload::Latency => "per-operation latency: every kmalloc, kfree, pair, producer alloc and remote free timed on its own (TSC, timer cost subtracted) into a histogram; p50/p90/p99/p99.9/p99.99/max per size, slow-path counters per 10 000 ops",
            Workload::Ablation => "slab and slub in every kernel configuration (kernel/hardened/checked) x per-CPU mechanism (rseq/lock) x stats (off/on): pair, A, B at 64/256/4096 B, F at 64/4096 B, a cross-thread server pattern; SLUB/SLAB per mechanism (short form; full with --ablation-full)",
            Workload::Metadata => "bytes held by SLAB's per-CPU, shared and alien arrays and SLUB's per-CPU/per-node structures and slabs, on server topologies from sysfs fixtures (128-448 CPUs, 2-8 nodes) and this machine; vs CPUs and nodes",
            Workload::Programs => "(opt-in) real programs (python3, sort, sqlite3) under LD_PRELOAD on slab and slub vs glibc and mimalloc: wall time, peak RSS, the allocator's own held bytes",
            Workload::SheafBatch => "the SLUB sheaves series' benchmark: 64-byte cache objects allocated in batches of 1/10/100/1000, freed in order or shuffled, one pinned CPU; compare slub-sheaves with slub",
        }
    }

    /// Parses a command-line name.
    pub(crate) fn parse(s: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.name() == s)
    }
}

/// Everything a workload needs to know about the run.
pub(crate) struct Ctx<'a> {
    /// Run facts for the rows.
    pub meta: &'a RunMeta,
    /// The run's configuration.
    pub cfg: &'a crate::cli::RunConfig,
    /// Logical topology of the run.
    pub topo: &'a Topology,
    /// TSC ticks per ns.
    pub tsc_ghz: f64,
    /// Progress of the current phase.
    pub progress: &'a ProgressBar,
}

impl Ctx<'_> {
    /// A row with the run facts and the allocator's name, api, settings and workload filled.
    pub(crate) fn row<A: BenchAllocator>(&self, a: &A, api: &str, w: Workload, phase: &str) -> Row {
        let mut r = Row::new(self.meta);
        r.allocator = a.name().to_string();
        r.api = api.to_string();
        r.settings = a.settings();
        r.workload = w.name().to_string();
        r.phase = phase.to_string();
        r
    }
}

/// The API label for an allocator: slab allocators are driven by kmalloc, baselines by malloc.
pub(crate) fn kmalloc_api<A: BenchAllocator>(a: &A) -> &'static str {
    match a.name() {
        "slab" | "slab-lock" | "slub" | "slub-2.6.32" | "slub-cmpxchg" | "slub-sheaves"
        | "slub-6.18" => "kmalloc",
        _ => "malloc",
    }
}

/// A small seeded PRNG (xorshift64*), so runs are reproducible from `--seed`.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded (0 is mapped to a fixed non-zero value).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    /// Next value.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Fails with a clear message when an allocator returns null in a workload.
pub(crate) fn oom(a: &str, size: usize) -> String {
    format!("allocator {a} returned NULL for {size} bytes (out of memory?)")
}

/// Runs `validate()` and turns a failure into a run error.
pub(crate) fn validate<A: BenchAllocator>(a: &A, w: Workload) -> Result<(), String> {
    a.validate()
        .map_err(|e| format!("{} failed validation after {}: {e}", a.name(), w.name()))
}
