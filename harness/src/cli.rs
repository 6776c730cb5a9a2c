//! Command line: flags, defaults, and their validation into a [`RunConfig`]. Every bad input is
//! a one-line error and a non-zero exit, checked before anything is measured or written.

use crate::registry;
use crate::workloads::Workload;
use clap::{Args, Parser, Subcommand};
use common::Topology;
use std::path::PathBuf;

/// slabworks harness: Linux SLAB (2.6.32) vs SLUB (6.4) in user space, against glibc malloc and
/// mimalloc, with every thread pinned and memory bound to its NUMA node. Writes a tidy CSV,
/// meta.json, plots (SVG and PNG) and summary.md.
#[derive(Parser, Debug)]
#[command(name = "harness", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Redraw plots and summary from an existing results directory.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Run options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Redraw plots and summary.md from DIR/results.csv (several CSVs may be concatenated).
    Plot {
        /// A results directory holding results.csv.
        dir: PathBuf,
    },
}

/// Options of a measurement run.
#[derive(Args, Debug, Clone)]
pub(crate) struct RunArgs {
    /// List the allocators and workloads, then exit.
    #[arg(long)]
    pub list: bool,
    /// Print the estimated duration of the run (per workload) and exit without measuring.
    #[arg(long)]
    pub estimate: bool,
    /// Smoke sweep in well under 30 s (fewer sizes, ops, repetitions; what CI and tests use).
    #[arg(long)]
    pub quick: bool,
    /// Allocators to measure, comma-separated [default: slab,slab-lock,slub,slub-cmpxchg,slub-sheaves,system,mimalloc; see --list].
    #[arg(long, value_delimiter = ',')]
    pub allocators: Option<Vec<String>>,
    /// Workloads to run, comma-separated [default: all but programs; see --list].
    #[arg(long, value_delimiter = ',')]
    pub workloads: Option<Vec<String>>,
    /// Object sizes in bytes, comma-separated [default: 8,16,...,16384; quick: 8,64,256,4096].
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    /// Object sizes for the memory workload [default: 64].
    #[arg(long, value_delimiter = ',')]
    pub memory_sizes: Option<Vec<usize>>,
    /// CPUs to run on, comma-separated [default: every CPU this process may use].
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// Use only the CPUs of these (logical) nodes, comma-separated [default: all nodes].
    #[arg(long, value_delimiter = ',')]
    pub nodes: Option<Vec<usize>>,
    /// Most threads to use (the first N of the CPUs) [default: one per CPU].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Allow more threads than CPUs (threads then share CPUs round-robin).
    #[arg(long)]
    pub oversubscribe: bool,
    /// Split the machine into N fake NUMA nodes (also: SLABWORKS_FAKE_NUMA) [default: real nodes].
    #[arg(long, value_name = "N")]
    pub fake_numa: Option<usize>,
    /// Repetitions of every measurement [default: 5; quick: 1].
    #[arg(long)]
    pub reps: Option<usize>,
    /// Operations per measurement (slab_test's N) [default: 10000; quick: 2000].
    #[arg(long)]
    pub ops: Option<usize>,
    /// Live objects the memory workload grows to [default: 1000000; quick: 20000].
    #[arg(long)]
    pub live_objects: Option<usize>,
    /// Output directory [default: harness-out/RUN_ID].
    #[arg(long, short = 'o')]
    pub out: Option<PathBuf>,
    /// Seed of the random choices in the workloads [default: 42].
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// SLAB setting KEY=VALUE (repeatable): limit, batchcount, shared, break_gfp_order, alien,
    /// reap, stats, fastpath (auto|rseq|lock), config (kernel|hardened|checked).
    #[arg(long = "slab", value_name = "KEY=VALUE")]
    pub slab_settings: Vec<String>,
    /// SLUB setting KEY=VALUE (repeatable): era (6.4|2.6.32), min_order, max_order,
    /// min_objects, nomerge, cpu_partial, min_partial, hardened, stats, fastpath (auto|rseq|cmpxchg),
    /// config (kernel|hardened|checked).
    #[arg(long = "slub", value_name = "KEY=VALUE")]
    pub slub_settings: Vec<String>,
    /// The `ablation` workload's full form (every repetition, every op, the outlier sizes
    /// 512/1024/8192 B too) instead of the short one of the default sweep.
    #[arg(long)]
    pub ablation_full: bool,
    /// Skip drawing plots (CSV, meta.json and summary are still written).
    #[arg(long)]
    pub no_plots: bool,
    /// Also print the CSV rows to standard output.
    #[arg(long)]
    pub stdout: bool,
}

/// The validated configuration of a run.
#[derive(Clone, Debug)]
pub(crate) struct RunConfig {
    /// Smoke mode.
    pub quick: bool,
    /// Allocator names, in order.
    pub allocators: Vec<&'static str>,
    /// Workloads, in order.
    pub workloads: Vec<Workload>,
    /// Object sizes.
    pub sizes: Vec<usize>,
    /// Memory workload sizes.
    pub memory_sizes: Vec<usize>,
    /// CPUs, one thread each (repeated when oversubscribed).
    pub cpus: Vec<usize>,
    /// Repetitions.
    pub reps: usize,
    /// Operations per measurement.
    pub ops: usize,
    /// Memory workload's live objects.
    pub live_objects: usize,
    /// Output directory.
    pub out: PathBuf,
    /// Seed.
    pub seed: u64,
    /// Allocator settings.
    pub settings: registry::Settings,
    /// Draw plots.
    pub plots: bool,
    /// Echo CSV to stdout.
    pub stdout: bool,
    /// The ablation workload's full form.
    pub ablation_full: bool,
}

/// Largest object size accepted (the largest kmalloc class of slab-classic).
pub(crate) const MAX_OBJECT_SIZE: usize = 4 << 20;

/// Validates `args` against the machine. `topo` is the run's (possibly fake) topology;
/// `allowed` the CPUs this process may use.
pub(crate) fn validate(
    args: &RunArgs,
    topo: &Topology,
    allowed: &[usize],
    run_id: &str,
) -> Result<RunConfig, String> {
    let allocators = match &args.allocators {
        None => registry::available()
            .iter()
            .filter(|s| s.default)
            .map(|s| s.name)
            .collect(),
        Some(list) => list
            .iter()
            .map(|n| {
                registry::find(n.trim()).map(|s| s.name).ok_or_else(|| {
                    format!(
                        "unknown allocator '{n}' (known: {})",
                        registry::names().join(", ")
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if allocators.is_empty() {
        return Err("no allocator selected".into());
    }
    let workloads = match &args.workloads {
        None => Workload::DEFAULT.to_vec(),
        Some(list) => list
            .iter()
            .map(|n| {
                Workload::parse(n.trim()).ok_or_else(|| {
                    let known: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                    format!("unknown workload '{n}' (known: {})", known.join(", "))
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    if workloads.is_empty() {
        return Err("no workload selected".into());
    }
    let default_sizes: Vec<usize> = if args.quick {
        vec![8, 64, 256, 4096]
    } else {
        (3..=14).map(|s| 1usize << s).collect()
    };
    let sizes = args.sizes.clone().unwrap_or(default_sizes);
    check_sizes(&sizes, "--sizes")?;
    let memory_sizes = args.memory_sizes.clone().unwrap_or_else(|| vec![64]);
    check_sizes(&memory_sizes, "--memory-sizes")?;
    if memory_sizes.iter().any(|&s| s > 4096) {
        return Err("--memory-sizes: the memory workload takes sizes up to 4096".into());
    }
    // CPUs: explicit list, or those of the chosen nodes, or all allowed.
    let mut cpus: Vec<usize> = match &args.cpus {
        Some(list) => {
            for &c in list {
                if !topo.possible_cpus().contains(c) {
                    return Err(format!("CPU {c} does not exist on this machine"));
                }
                if !allowed.contains(&c) {
                    return Err(format!("CPU {c} is not in this process's affinity mask"));
                }
            }
            list.clone()
        }
        None => allowed.to_vec(),
    };
    if let Some(nodes) = &args.nodes {
        for &n in nodes {
            if n >= topo.nr_nodes() {
                return Err(format!(
                    "node {n} does not exist (this run has {} node(s){})",
                    topo.nr_nodes(),
                    if topo.fake_numa().is_some() {
                        ", fake"
                    } else {
                        ""
                    }
                ));
            }
        }
        cpus.retain(|&c| nodes.contains(&topo.cpu_to_node(c)));
        if cpus.is_empty() {
            return Err("the chosen nodes have none of the chosen CPUs".into());
        }
    }
    let mut seen = std::collections::HashSet::new();
    if !cpus.iter().all(|c| seen.insert(*c)) {
        return Err("--cpus lists a CPU twice".into());
    }
    if cpus.is_empty() {
        return Err("no CPU to run on".into());
    }
    if let Some(t) = args.threads {
        if t == 0 {
            return Err("--threads must be at least 1".into());
        }
        if t > cpus.len() && !args.oversubscribe {
            return Err(format!(
                "--threads {t} is more than the {} CPU(s) available; add --oversubscribe to share CPUs",
                cpus.len()
            ));
        }
        let base = cpus.clone();
        cpus = (0..t).map(|i| base[i % base.len()]).collect();
    }
    let positive = |v: Option<usize>, name: &str, d: usize| -> Result<usize, String> {
        match v {
            Some(0) => Err(format!("{name} must be at least 1")),
            Some(n) => Ok(n),
            None => Ok(d),
        }
    };
    let reps = positive(args.reps, "--reps", if args.quick { 1 } else { 5 })?;
    let ops = positive(args.ops, "--ops", if args.quick { 2000 } else { 10_000 })?;
    let live_objects = positive(
        args.live_objects,
        "--live-objects",
        if args.quick { 20_000 } else { 1_000_000 },
    )?;
    if live_objects < 100 {
        return Err("--live-objects must be at least 100".into());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("harness-out").join(run_id));
    let settings = registry::Settings::parse(&args.slab_settings, &args.slub_settings)?;
    Ok(RunConfig {
        quick: args.quick,
        allocators,
        workloads,
        sizes,
        memory_sizes,
        cpus,
        reps,
        ops,
        live_objects,
        out,
        seed: args.seed,
        settings,
        plots: !args.no_plots,
        stdout: args.stdout,
        ablation_full: args.ablation_full,
    })
}

fn check_sizes(sizes: &[usize], flag: &str) -> Result<(), String> {
    if sizes.is_empty() {
        return Err(format!("{flag}: no size given"));
    }
    for &s in sizes {
        if s == 0 {
            return Err(format!("{flag}: size 0 is not allowed"));
        }
        if s < 8 {
            return Err(format!(
                "{flag}: size {s} is below 8 bytes (objects hold a pointer)"
            ));
        }
        if s > MAX_OBJECT_SIZE {
            return Err(format!(
                "{flag}: size {s} is above the largest kmalloc size ({MAX_OBJECT_SIZE})"
            ));
        }
    }
    Ok(())
}

/// Checks that the output directory can be created and written, before measuring.
pub(crate) fn check_out_dir(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create output directory {}: {e}", dir.display()))?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok")
        .map_err(|e| format!("output directory {} is not writable: {e}", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}
