//! How long a sweep will take, before it runs: a cost model per workload from the run's shape
//! (allocators, repetitions, sizes, CPUs `C`, nodes) and four per-event costs measured on the
//! two-core development VM (release build). What grows with the machine:
//!
//! | workload | per (allocator, repetition, size) | growth in CPUs `C` |
//! |---|---|---|
//! | slab_test | A–C on one CPU, D/E on all at once, F: the last CPU frees `(C−1)·N` | linear (F) |
//! | remote_free | one producer/consumer pair per placement | none |
//! | memory | one CPU | none |
//! | custom_caches | the mixed pattern on 1…C CPUs, fixed work per thread | `C` runs, `C²/2` thread starts |
//! | scaling | 1…C threads, fixed total work, a fresh instance each | `C` instances (each `O(C)`), `C²/2` thread starts |
//! | pages | every CPU at once | none (per run) |
//! | metadata | five topologies (fixtures up to 448 CPUs, this machine) | none |
//!
//! Nodes add `O(nodes²)` alien arrays per SLAB instance (tiny next to the CPU terms) and one
//! cross-node placement to remote_free. The quadratic thread-start terms dominate past a few
//! hundred CPUs: `--cpus`/`--nodes` choose a subset, `--threads N` the first N CPUs.
//! The printed figure is an estimate (±2× on an idle machine); the run prints each workload's
//! estimate beside its real duration at the end, so the model can be checked on any machine.
//! A short calibration first (64 B malloc+free pairs of glibc on this thread) scales the
//! model by how fast this machine is against the reference VM.

use crate::cli::RunConfig;
use crate::workloads::{self, Workload};

/// Seconds per operation on a timed loop's critical path (alloc or free, all allocators).
const OP: f64 = 40e-9;
/// Seconds per byte of fresh object memory on the critical path (page faults and first
/// touches dominate slab_test and remote_free at large sizes: ~2 ns/byte on the VM).
const BYTE: f64 = 2e-9;
/// Seconds to start, pin, verify and join one worker thread.
const THREAD: f64 = 150e-6;
/// Seconds of fixed cost per pinned run (barrier, rows, validate).
const RUN: f64 = 1e-3;
/// Seconds to build and tear down one allocator instance, and per CPU and per node pair of it.
const INSTANCE: f64 = 3e-3;
const INSTANCE_PER_CPU: f64 = 30e-6;
const INSTANCE_PER_NODE_PAIR: f64 = 20e-6;

/// The shape of one workload's work.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Cost {
    /// Pinned runs (each a set of threads started together).
    pub runs: u64,
    /// Worker threads started.
    pub threads: u64,
    /// Operations on the critical path (the slowest thread's), summed over runs.
    pub serial_ops: u64,
    /// Bytes of fresh object memory touched on the critical path.
    pub serial_bytes: u64,
    /// Allocator instances built.
    pub instances: u64,
}

impl Cost {
    /// Estimated seconds on a machine with `cpus` CPUs and `nodes` nodes.
    pub(crate) fn seconds(&self, cpus: usize, nodes: usize) -> f64 {
        let inst = INSTANCE
            + INSTANCE_PER_CPU * cpus as f64
            + INSTANCE_PER_NODE_PAIR * (nodes * nodes) as f64;
        self.runs as f64 * RUN
            + self.threads as f64 * THREAD
            + self.serial_ops as f64 * OP
            + self.serial_bytes as f64 * BYTE
            + self.instances as f64 * inst
    }
}

fn tri(c: u64) -> u64 {
    c * (c + 1) / 2
}

fn harmonic(c: u64) -> f64 {
    (1..=c).map(|t| 1.0 / t as f64).sum()
}

/// The cost of workload `w` for `cfg` with `cross` remote_free placements.
pub(crate) fn cost(cfg: &RunConfig, w: Workload, cross: usize) -> Cost {
    let a = cfg.allocators.len() as u64;
    let r = cfg.reps as u64;
    let c = cfg.cpus.len() as u64;
    let n = cfg.ops as u64;
    let sizes = cfg.sizes.len() as u64;
    let each = |k: u64, one: Cost| Cost {
        runs: one.runs * k,
        threads: one.threads * k,
        serial_ops: one.serial_ops * k,
        serial_bytes: one.serial_bytes * k,
        instances: one.instances * k,
    };
    match w {
        Workload::SlabTest => {
            // A-C, then D/E and F on every CPU: each run faults n objects per thread.
            let smp = u64::from(c > 1);
            let bytes: u64 = cfg.sizes.iter().map(|&z| z as u64).sum();
            each(
                a * r,
                Cost {
                    runs: (1 + 2 * smp) * sizes,
                    threads: (1 + 2 * c * smp) * sizes,
                    serial_ops: (8 * n + smp * (8 * n + n * c)) * sizes,
                    serial_bytes: (1 + 2 * smp) * n * bytes,
                    instances: sizes,
                },
            )
        }
        Workload::RemoteFree => {
            let rs = workloads::remote_free::sizes(&cfg.sizes);
            let bytes: u64 = rs.iter().map(|&z| z as u64).sum();
            each(
                a * r * cross as u64,
                Cost {
                    runs: rs.len() as u64,
                    threads: 2 * rs.len() as u64,
                    serial_ops: 20 * n * rs.len() as u64,
                    // 10n objects flow per size; about half is fresh memory.
                    serial_bytes: 5 * n * bytes,
                    instances: rs.len() as u64,
                },
            )
        }
        Workload::Memory => each(
            a * cfg.memory_sizes.len() as u64,
            Cost {
                // The life cycle in a child, then the census: 4 pinned runs on every CPU.
                runs: 5,
                threads: 1 + 4 * c,
                // Random frees, the bookkeeping vector and slabinfo samples: ~30 steps a live
                // object; the census: ~130 000 operations per CPU.
                serial_ops: 30 * cfg.live_objects as u64 + 130_000 * c,
                serial_bytes: 0,
                instances: 1,
            },
        ),
        Workload::CustomCaches => each(
            a * r,
            Cost {
                runs: 1 + c,
                threads: 1 + tri(c),
                serial_ops: 8 * n + 8 * n * c,
                serial_bytes: 0,
                instances: 1,
            },
        ),
        Workload::Scaling => each(
            a * r * workloads::scaling::sizes(&cfg.sizes).len() as u64,
            Cost {
                runs: c,
                threads: tri(c),
                serial_ops: (40.0 * n as f64 * harmonic(c)) as u64,
                serial_bytes: 0,
                instances: c,
            },
        ),
        Workload::Pages => each(
            r * workloads::pages::orders(cfg.quick).len() as u64,
            Cost {
                runs: 2,
                threads: 2 * c,
                serial_ops: 4 * n,
                // Each page block's first page is touched.
                serial_bytes: 2 * n * common::PAGE_SIZE as u64,
                instances: 0,
            },
        ),
        // Five topologies per allocator, the largest with 448 CPUs: about 0.2 s, whatever
        // this machine is (counted as 200 fixed-cost runs).
        Workload::Metadata => each(
            a,
            Cost {
                runs: 5 + 200,
                threads: 5,
                serial_ops: 5 * 6 * 2000,
                serial_bytes: 0,
                instances: 5,
            },
        ),
        // Latency: every operation timed separately into a sample buffer, 4 rounds of each phase
        // at three sizes (about 0.25 s per allocator, size and repetition here), plus one
        // statistics pass.
        Workload::Latency => each(
            a * r * workloads::latency::sizes(&cfg.sizes).len() as u64,
            Cost {
                runs: 250,
                ..Cost::default()
            },
        ),
        // Ablation: 12 combinations per allocator, each the pair, A, B, F and the server
        // pattern (about 0.25 s a combination and round here).
        Workload::Ablation => Cost {
            runs: 250 * workloads::ablation::units(cfg),
            ..Cost::default()
        },
        // The sheaves series' batch benchmark: 8 pinned runs of 20·ops pairs per allocator and
        // repetition, one instance each repetition.
        Workload::SheafBatch => each(
            a * r,
            Cost {
                runs: 8,
                threads: 8,
                serial_ops: 8 * 40 * n,
                serial_bytes: 0,
                instances: 1,
            },
        ),
        // Real programs: about ten seconds per program and allocator, whatever the machine.
        Workload::Programs => Cost {
            runs: r * workloads::programs::PROGRAMS.len() as u64 * 4 * 10_000,
            ..Cost::default()
        },
    }
}

/// ns of one 64 B glibc malloc+free pair on the reference VM the costs above were measured on.
pub(crate) const REFERENCE_PAIR_NS: f64 = 5.4;

/// ns per 64 B malloc+free pair on this thread (best of three short rounds, a few ms).
pub(crate) fn calibrate_pair_ns() -> f64 {
    const N: u32 = 200_000;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..N {
            // SAFETY: malloc has no preconditions; free gets what malloc returned (or null).
            unsafe {
                let p = libc::malloc(std::hint::black_box(64));
                libc::free(std::hint::black_box(p));
            }
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(N));
    }
    best
}

/// Per workload: (workload, estimated seconds), scaled by this machine's speed (`pair_ns`
/// from [`calibrate_pair_ns`] against [`REFERENCE_PAIR_NS`], clamped to 0.25–8×).
pub(crate) fn plan(
    cfg: &RunConfig,
    cross: usize,
    nodes: usize,
    pair_ns: f64,
) -> Vec<(Workload, f64)> {
    let c = cfg.cpus.len();
    let speed = (pair_ns / REFERENCE_PAIR_NS).clamp(0.25, 8.0);
    cfg.workloads
        .iter()
        .map(|&w| (w, cost(cfg, w, cross).seconds(c, nodes) * speed))
        .collect()
}

/// "1 h 05 min", "3 min 20 s", "42 s".
pub(crate) fn human(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else if secs >= 10.0 {
        format!("{s} s")
    } else {
        format!("{secs:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The default sweep's configuration on a uniform machine of `nodes` × `per` CPUs.
    fn config(nodes: usize, per: usize, extra: &[&str]) -> RunConfig {
        let topo = common::Topology::uniform(nodes, per).unwrap();
        let allowed: Vec<usize> = (0..nodes * per).collect();
        let mut args = vec!["harness"];
        args.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(args).unwrap();
        crate::cli::validate(&cli.run, &topo, &allowed, "test").unwrap()
    }

    fn total(cfg: &RunConfig, nodes: usize) -> f64 {
        plan(cfg, 2, nodes, REFERENCE_PAIR_NS)
            .iter()
            .map(|p| p.1)
            .sum()
    }

    #[test]
    fn thread_starts_grow_quadratically_in_cpus() {
        for c in [2usize, 16, 128] {
            let cfg = config(1, c, &[]);
            let s = cost(&cfg, Workload::Scaling, 2);
            let per = (cfg.allocators.len()
                * cfg.reps
                * workloads::scaling::sizes(&cfg.sizes).len()) as u64;
            assert_eq!(s.threads, per * tri(c as u64));
            assert_eq!(s.instances, per * c as u64);
            // memory: the life cycle is one thread; the census, 4 runs on every CPU.
            let m = cost(&cfg, Workload::Memory, 2);
            let per = (cfg.allocators.len() * cfg.memory_sizes.len()) as u64;
            assert_eq!(m.threads, per * (1 + 4 * c as u64), "memory: census linear");
        }
    }

    #[test]
    fn the_default_sweep_grows_with_cpus_and_a_subset_shrinks_it() {
        let small = total(&config(1, 2, &[]), 1);
        let two_socket = total(&config(2, 64, &[]), 2);
        let big = total(&config(4, 112, &[]), 4);
        assert!(small < two_socket && two_socket < big);
        // Quadratic terms dominate at this size: 3.5x the CPUs costs more than 3.5x the time.
        assert!(big > 3.5 * two_socket, "{two_socket} -> {big}");
        // One node of the 2-socket machine (--nodes 0) or 16 CPUs (--threads 16) is cheaper.
        let one_node = total(&config(2, 64, &["--nodes", "0"]), 2);
        let sixteen = total(&config(2, 64, &["--threads", "16"]), 2);
        assert!(one_node < two_socket && sixteen < one_node);
        for (name, c, n, t) in [
            ("2 CPUs", 2, 1, small),
            ("2-socket 128 CPUs", 128, 2, two_socket),
            ("  --nodes 0 (64 CPUs)", 64, 2, one_node),
            ("  --threads 16", 16, 2, sixteen),
            ("4-socket 448 CPUs", 448, 4, big),
        ] {
            eprintln!(
                "default sweep on {name} ({c} CPUs, {n} nodes): {}",
                human(t)
            );
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(42.4), "42 s");
        assert_eq!(human(0.44), "0.4 s");
        assert_eq!(human(200.0), "3 min 20 s");
        assert_eq!(human(3900.0), "1 h 05 min");
    }
}
