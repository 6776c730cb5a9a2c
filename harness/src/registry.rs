//! The allocator registry: one entry per allocator (adding one is one line here plus a `make`
//! arm), and the dispatch that runs a workload on a named allocator with fresh instances.

use crate::alloc::{BenchAllocator, Mimalloc, SlabBench, System};
use crate::record::Row;
use crate::workloads::{self, Ctx, Workload};
use common::{PageProvider, ProviderConfig, Topology};

/// A registered allocator.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AllocSpec {
    /// Command-line name.
    pub name: &'static str,
    /// One line for `--list`.
    pub description: &'static str,
    /// Part of the default sweep.
    pub default: bool,
}

/// Every allocator this build knows, in sweep order.
pub(crate) const ALLOCATORS: &[AllocSpec] = &[
    AllocSpec {
        name: "slab",
        description: "slab-classic: Linux 2.6.32 SLAB (array caches, three lists, shared/alien caches) via kmalloc/kmem_cache",
        default: true,
    },
    AllocSpec {
        name: "slab-lock",
        description: "slab with the per-CPU-lock fast path (2.6.32's local_irq_save stand-in) instead of rseq",
        default: true,
    },
    AllocSpec {
        name: "slub",
        description: "slub: Linux 6.4 SLUB (lockless per-CPU freelist, per-CPU partials) via kmalloc/kmem_cache",
        default: true,
    },
    AllocSpec {
        name: "slub-cmpxchg",
        description: "slub with the lock cmpxchg16b fast path instead of rseq",
        default: true,
    },
    AllocSpec {
        name: "slub-sheaves",
        description: "slub era 7.0: percpu sheaves and per-node barns for every cache, no CPU slabs",
        default: true,
    },
    AllocSpec {
        name: "slub-6.18",
        description: "(opt-in) slub era 6.18: the 6.4 paths, sheaves only for caches created with a sheaf_capacity",
        default: false,
    },
    AllocSpec {
        name: "slub-2.6.32",
        description: "(opt-in) slub with the 2.6.32 constants: min_partial = ilog2(size), free pointer at offset 0, no per-CPU partials",
        default: false,
    },
    AllocSpec {
        name: "system",
        description: "baseline: glibc malloc/free",
        default: true,
    },
    AllocSpec {
        name: "mimalloc",
        description: "baseline: mimalloc (the mimalloc crate) mi_malloc/mi_free",
        default: true,
    },
    #[cfg(feature = "jemalloc")]
    AllocSpec {
        name: "jemalloc",
        description: "baseline: jemalloc (tikv-jemalloc-sys, feature jemalloc)",
        default: true,
    },
];

/// The allocators available in this build.
pub(crate) fn available() -> &'static [AllocSpec] {
    ALLOCATORS
}

/// Looks a name up.
pub(crate) fn find(name: &str) -> Option<&'static AllocSpec> {
    ALLOCATORS.iter().find(|s| s.name == name)
}

/// All names.
pub(crate) fn names() -> Vec<&'static str> {
    ALLOCATORS.iter().map(|s| s.name).collect()
}

/// Allocator settings from the command line (`--slab KEY=VALUE`, `--slub KEY=VALUE`).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// SLAB settings, as validated KEY=VALUE pairs (applied in `slab_settings::build`).
    pub slab: Vec<(String, String)>,
    /// SLUB boot options.
    pub slub: slub::SlubSettings,
}

fn parse_kv(s: &str) -> Result<(&str, &str), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| format!("setting '{s}' is not KEY=VALUE"))
}

fn num(k: &str, v: &str) -> Result<usize, String> {
    v.parse::<usize>()
        .map_err(|_| format!("setting {k}={v}: not a non-negative integer"))
}

fn flag(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(format!("setting {k}={v}: expected on/off")),
    }
}

impl Settings {
    /// Parses the repeated flags; unknown keys and bad values are errors.
    pub(crate) fn parse(slab: &[String], slub_args: &[String]) -> Result<Self, String> {
        let mut s = Settings {
            slab: Vec::new(),
            slub: slub::SlubSettings::default(),
        };
        for a in slab {
            let (k, v) = parse_kv(a)?;
            crate::slab_settings::check(k, v).map_err(|e| format!("--slab {a}: {e}"))?;
            s.slab.push((k.to_string(), v.to_string()));
        }
        crate::slab_settings::settings(&s.slab).map_err(|e| format!("--slab: {e}"))?;
        for a in slub_args {
            let (k, v) = parse_kv(a)?;
            let u = &mut s.slub;
            match k {
                "era" => {
                    u.era = match v {
                        "6.4" => slub::Era::V6_4,
                        "2.6.32" => slub::Era::V2_6_32,
                        "6.18" => slub::Era::V6_18,
                        "7.0" => slub::Era::V7_0,
                        _ => {
                            return Err(format!(
                                "--slub era={v}: expected 6.4, 2.6.32, 6.18 or 7.0"
                            ))
                        }
                    }
                }
                "min_order" => u.slub_min_order = num(k, v)?,
                "max_order" => u.slub_max_order = num(k, v)?,
                "min_objects" => u.slub_min_objects = num(k, v)?,
                "nomerge" => u.slab_nomerge = flag(k, v)?,
                "cpu_partial" => u.cpu_partial = Some(num(k, v)?),
                "min_partial" => u.min_partial = Some(num(k, v)?),
                "hardened" => u.freelist_hardened = flag(k, v)?,
                "config" => {
                    u.config = common::KernelConfig::parse(v).ok_or_else(|| {
                        format!("--slub config={v}: expected kernel, hardened or checked")
                    })?;
                }
                "stats" => u.stats = flag(k, v)?,
                "fastpath" => {
                    u.fastpath = match v {
                        "auto" => slub::FastPath::Auto,
                        "rseq" => slub::FastPath::Rseq,
                        "cmpxchg" => slub::FastPath::Cmpxchg,
                        _ => return Err(format!("--slub fastpath={v}: expected auto, rseq or cmpxchg")),
                    }
                }
                _ => {
                    return Err(format!(
                        "--slub {a}: unknown key '{k}' (era, min_order, max_order, min_objects, nomerge, cpu_partial, min_partial, hardened, stats, fastpath, config)"
                    ))
                }
            }
            if u.slub_max_order >= common::MAX_ORDER || u.slub_min_order >= common::MAX_ORDER {
                return Err(format!(
                    "--slub {a}: orders go up to {}",
                    common::MAX_ORDER - 1
                ));
            }
        }
        Ok(s)
    }
}

/// The page provider of every slab-allocator instance the harness builds: as the kernel's
/// buddy allocator, it never gives memory back to the host (no `MADV_DONTNEED` churn between a
/// test's rounds) and its memory is present (every top-order block prefaulted when first cut),
/// so no page fault lands in a timed round (SLUB's Test A at 512 B–8 KiB and Test F at
/// 4096 B were measuring this provider's page faults). Memory results are unaffected: they
/// count pages handed out, not resident ones. A sysfs tree under another root (the metadata
/// workload's server fixtures) is not this machine: its nodes are not bound.
pub(crate) fn provider(topo: &Topology) -> Result<PageProvider, String> {
    let cfg = ProviderConfig {
        release_watermark: None,
        populate: true,
        bind: topo.source() != common::topology::TopologySource::SysfsRoot,
        ..ProviderConfig::new(topo.clone())
    };
    PageProvider::new(&cfg).map_err(|e| e.to_string())
}

/// Runs workload `w` on allocator `name`.
pub(crate) fn run(name: &str, w: Workload, ctx: &Ctx<'_>) -> Result<Vec<Row>, String> {
    let s = &ctx.cfg.settings;
    match name {
        "slab" => dispatch(w, ctx, &|t: &Topology| {
            let p = provider(t)?;
            crate::slab_settings::build(&p, &s.slab).map(|a| SlabBench::new(a, "slab"))
        }),
        "slab-lock" => dispatch(w, ctx, &|t: &Topology| {
            let p = provider(t)?;
            crate::slab_settings::build_lock(&p, &s.slab).map(|a| SlabBench::new(a, "slab-lock"))
        }),
        "slub" => dispatch(w, ctx, &|t: &Topology| {
            let p = provider(t)?;
            slub::Slub::new(&p, s.slub)
                .map(|a| SlabBench::new(a, "slub"))
                .map_err(|e| format!("slub: {e}"))
        }),
        "slub-2.6.32" => dispatch(w, ctx, &|t: &Topology| {
            let p = provider(t)?;
            let settings = slub::SlubSettings {
                era: slub::Era::V2_6_32,
                ..s.slub
            };
            slub::Slub::new(&p, settings)
                .map(|a| SlabBench::new(a, "slub-2.6.32"))
                .map_err(|e| format!("slub-2.6.32: {e}"))
        }),
        "slub-sheaves" | "slub-6.18" => dispatch(w, ctx, &|t: &Topology| {
            let p = provider(t)?;
            let era = if name == "slub-sheaves" {
                slub::Era::V7_0
            } else {
                slub::Era::V6_18
            };
            let settings = slub::SlubSettings { era, ..s.slub };
            let label = if name == "slub-sheaves" {
                "slub-sheaves"
            } else {
                "slub-6.18"
            };
            slub::Slub::new(&p, settings)
                .map(|a| SlabBench::new(a, label))
                .map_err(|e| format!("{label}: {e}"))
        }),
        "slub-cmpxchg" => dispatch(w, ctx, &|t: &Topology| {
            let p = provider(t)?;
            let settings = slub::SlubSettings {
                fastpath: slub::FastPath::Cmpxchg,
                ..s.slub
            };
            slub::Slub::new(&p, settings)
                .map(|a| SlabBench::new(a, "slub-cmpxchg"))
                .map_err(|e| format!("slub-cmpxchg: {e}"))
        }),
        "system" => dispatch(w, ctx, &|_: &Topology| Ok(System)),
        "mimalloc" => dispatch(w, ctx, &|_: &Topology| Ok(Mimalloc)),
        #[cfg(feature = "jemalloc")]
        "jemalloc" => dispatch(w, ctx, &|_: &Topology| Ok(crate::alloc::Jemalloc)),
        _ => Err(format!("unknown allocator '{name}'")),
    }
}

fn dispatch<A: BenchAllocator>(
    w: Workload,
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    match w {
        Workload::SlabTest => workloads::slab_test::run(ctx, make),
        Workload::RemoteFree => workloads::remote_free::run(ctx, make),
        Workload::Memory => workloads::memory::run(ctx, make),
        Workload::CustomCaches => workloads::custom_caches::run(ctx, make),
        Workload::Scaling => workloads::scaling::run(ctx, make),
        Workload::Pages => workloads::pages::run(ctx),
        Workload::Programs => workloads::programs::run(ctx),
        Workload::Latency => workloads::latency::run(ctx, make),
        Workload::Ablation => workloads::ablation::run(ctx),
        Workload::Metadata => workloads::metadata::run(ctx, make),
        Workload::SheafBatch => workloads::sheaf_batch::run(ctx, make),
    }
}
