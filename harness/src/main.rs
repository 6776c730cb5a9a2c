//! # harness — SLAB vs SLUB vs glibc vs mimalloc, NUMA-pinned
//!
//! ```text
//!   main: parse flags (cli) ─► topology (sysfs | hwloc | --fake-numa) ─► validate everything
//!     └► for each workload: for each allocator (registry): workloads::<w>::run(make fresh instance)
//!          └► placement::run_pinned (pin, verify sched_getcpu, barrier) ─► timed loops (tsc)
//!     └► results.csv (record) + meta.json ─► plots (plot, from rows) + summary.md (summary)
//!   `harness plot DIR` re-reads results.csv and redraws plots and summary.
//! ```

mod alloc;
mod analysis;
mod cli;
mod estimate;
mod placement;
mod plot;
mod record;
mod registry;
mod slab_settings;
mod summary;
mod sysinfo;
mod tsc;
mod workloads;

use clap::Parser;
use cli::{Cli, Command, RunConfig};
use common::Topology;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use record::{Row, RunMeta};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use workloads::{Ctx, Workload};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Some(Command::Plot { dir }) => replot(dir),
        None => run(&cli.run),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn list() {
    println!("allocators:");
    for a in registry::available() {
        println!("  {:<10} {}", a.name, a.description);
    }
    println!("workloads:");
    for w in Workload::ALL {
        println!("  {:<14} {}", w.name(), w.description());
    }
}

fn topology(args: &cli::RunArgs) -> Result<Topology, String> {
    match args.fake_numa {
        Some(0) => Err("--fake-numa must be at least 1".into()),
        Some(n) => {
            let base = match std::env::var(common::topology::ENV_TOPOLOGY).as_deref() {
                Ok("hwloc") => Topology::from_hwloc(),
                _ => Topology::from_sysfs(),
            }
            .map_err(|e| e.to_string())?;
            base.with_fake_numa(n)
                .map_err(|e| format!("--fake-numa {n}: {e}"))
        }
        None => Topology::detect().map_err(|e| e.to_string()),
    }
}

fn units(cfg: &RunConfig, w: Workload, topo_nodes_cross: usize) -> u64 {
    let a = cfg.allocators.len() as u64;
    let reps = cfg.reps as u64;
    match w {
        Workload::SlabTest => a * reps * cfg.sizes.len() as u64,
        Workload::RemoteFree => {
            a * reps
                * topo_nodes_cross as u64
                * workloads::remote_free::sizes(&cfg.sizes).len() as u64
        }
        Workload::Memory => a * cfg.memory_sizes.len() as u64,
        Workload::CustomCaches | Workload::SheafBatch => a * reps,
        Workload::Scaling => a * reps * workloads::scaling::sizes(&cfg.sizes).len() as u64,
        Workload::Pages => reps * workloads::pages::orders(cfg.quick).len() as u64,
        Workload::Programs => reps * workloads::programs::PROGRAMS.len() as u64 * 4,
        Workload::Latency => {
            let extra = cfg
                .allocators
                .iter()
                .filter(|a| workloads::latency::needs_stats_pass(cfg, a))
                .count() as u64;
            (a + extra) * workloads::latency::sizes(&cfg.sizes).len() as u64
        }
        Workload::Ablation => workloads::ablation::units(cfg),
        Workload::Metadata => {
            a * (common::sysfs_fixtures::SysfsFixture::servers().len() as u64 + 1)
        }
    }
}

fn run(args: &cli::RunArgs) -> Result<(), String> {
    if args.list {
        list();
        return Ok(());
    }
    let topo = topology(args)?;
    let allowed = common::pin::allowed_cpus();
    if let Ok(spec) = std::env::var(workloads::memory::ENV_CHILD) {
        return memory_child(args, &topo, &allowed, &spec);
    }
    let host = sysinfo::hostname();
    let utc = sysinfo::utc_now();
    let run_id = format!("{}-{}", host, utc.replace([':', '-'], ""));
    let cfg = cli::validate(args, &topo, &allowed, &run_id)?;
    cli::check_out_dir(&cfg.out)?;
    let tty = std::io::stdout().is_terminal();
    let tsc_ghz = tsc::calibrate(if cfg.quick { 20 } else { 100 });
    let meta = RunMeta {
        run_id,
        utc_time: utc,
        git_commit: sysinfo::git_commit(&cfg.out),
        host,
        cpu_model: sysinfo::cpu_model(),
        cpus: cfg.cpus.len(),
        nodes_real: topo.nr_real_nodes(),
        nodes_fake: topo.fake_numa().unwrap_or(0),
        kernel: sysinfo::kernel_release(),
        tsc_ghz,
    };
    eprintln!("slabworks harness — run {}", meta.run_id);
    eprint!("topology: {}", topo.describe());
    eprintln!(
        "cpus: {:?}   cpu_id source: {:?}   cmpxchg16b lock-free: {}   TSC {:.3} GHz",
        cfg.cpus,
        common::percpu::cpu_id_source(),
        common::dword::DoubleWord::is_lock_free(),
        tsc_ghz
    );
    eprintln!(
        "allocators: {}   workloads: {}   reps {}   ops {}{}",
        cfg.allocators.join(","),
        cfg.workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(","),
        cfg.reps,
        cfg.ops,
        if cfg.quick { "   (quick)" } else { "" }
    );
    let cross = workloads::remote_free::placements(&Ctx {
        meta: &meta,
        cfg: &cfg,
        topo: &topo,
        tsc_ghz,
        progress: &ProgressBar::hidden(),
    })
    .len();
    let pair_ns = estimate::calibrate_pair_ns();
    let plan = estimate::plan(&cfg, cross, topo.nr_nodes(), pair_ns);
    let total: f64 = plan.iter().map(|p| p.1).sum();
    eprintln!(
        "estimated duration: {} ({}; calibration {pair_ns:.1} ns per malloc+free pair, reference {:.1}){}",
        estimate::human(total),
        plan.iter()
            .map(|(w, s)| format!("{} {}", w.name(), estimate::human(*s)))
            .collect::<Vec<_>>()
            .join(", "),
        estimate::REFERENCE_PAIR_NS,
        if total > 600.0 {
            "; a subset is quicker: --nodes 0, --cpus 0-15 style lists, --threads N, --workloads, --sizes"
        } else {
            ""
        }
    );
    if args.estimate {
        return Ok(());
    }
    let mut took: Vec<(Workload, f64, f64)> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let style =
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .map_err(|e| e.to_string())?
            .progress_chars("=> ");
    for (wi, &w) in cfg.workloads.iter().enumerate() {
        let bar = if tty {
            ProgressBar::with_draw_target(Some(units(&cfg, w, cross)), ProgressDrawTarget::stdout())
        } else {
            eprintln!(
                "[{}] running (estimate ~{})",
                w.name(),
                estimate::human(plan[wi].1)
            );
            ProgressBar::hidden()
        };
        let started = std::time::Instant::now();
        bar.set_style(style.clone());
        bar.set_prefix(w.name());
        let ctx = Ctx {
            meta: &meta,
            cfg: &cfg,
            topo: &topo,
            tsc_ghz,
            progress: &bar,
        };
        placement::set_context(w.name());
        let w_start = std::time::Instant::now();
        let result = if w == Workload::Pages {
            workloads::pages::run(&ctx)
        } else if w == Workload::Programs {
            workloads::programs::run(&ctx)
        } else if w == Workload::Ablation {
            workloads::ablation::run(&ctx)
        } else {
            let mut all = Vec::new();
            let mut res = Ok(());
            for a in &cfg.allocators {
                bar.set_message(a.to_string());
                placement::set_context(&format!("{}/{a}", w.name()));
                match registry::run(a, w, &ctx) {
                    Ok(r) => all.extend(r),
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            if res.is_ok() && w == Workload::Latency {
                res = latency_stats_pass(&ctx, &mut all);
            }
            res.map(|()| all)
        };
        bar.finish_and_clear();
        took.push((
            w,
            plan.iter().find(|p| p.0 == w).map_or(0.0, |p| p.1),
            w_start.elapsed().as_secs_f64(),
        ));
        match result {
            Ok(r) => {
                let took = started.elapsed().as_secs_f64();
                let n = units(&cfg, w, cross);
                if tty {
                    println!("{:>14} done: {} rows in {took:.1} s", w.name(), r.len());
                } else {
                    eprintln!(
                        "[{}] done in {took:.1} s ({n} units, {:.3} s each)",
                        w.name(),
                        took / n.max(1) as f64
                    );
                }
                rows.extend(r);
            }
            Err(e) => {
                let partial = cfg.out.join("results.partial.csv");
                let _ = write_csv(&partial, &rows);
                return Err(format!(
                    "{} failed: {e} (rows so far in {}; no results.csv written)",
                    w.name(),
                    partial.display()
                ));
            }
        }
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let csv_path = cfg.out.join("results.csv");
    write_csv(&csv_path, &rows)?;
    write_meta(&cfg.out.join("meta.json"), &meta, &command, &topo, &cfg)?;
    if cfg.stdout {
        let mut w = csv::Writer::from_writer(std::io::stdout());
        for r in &rows {
            w.serialize(r).map_err(|e| e.to_string())?;
        }
        w.flush().map_err(|e| e.to_string())?;
    }
    let placement_path = cfg.out.join("placement.csv");
    write_placement(&placement_path, &placement::take_log())?;
    let mut files = vec![csv_path.clone(), cfg.out.join("meta.json"), placement_path];
    if cfg.plots {
        files.extend(plot::draw_all(&rows, &cfg.out)?);
    }
    let sum = cfg.out.join("summary.md");
    std::fs::write(&sum, summary::render(&rows, &meta, &command))
        .map_err(|e| format!("{}: {e}", sum.display()))?;
    files.push(sum);
    eprintln!(
        "duration by workload (estimated / took): {}",
        took.iter()
            .map(|(w, e, t)| format!(
                "{} {} / {}",
                w.name(),
                estimate::human(*e),
                estimate::human(*t)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!("wrote {} rows to {}", rows.len(), cfg.out.display());
    for f in files {
        eprintln!("  {}", f.display());
    }
    Ok(())
}

/// The memory workload's child process (`HARNESS_MEMORY_CHILD=ALLOCATOR:SIZE`, the parent's
/// arguments): measures that one allocator and size, prints the rows as CSV on stdout.
fn memory_child(
    args: &cli::RunArgs,
    topo: &Topology,
    allowed: &[usize],
    spec: &str,
) -> Result<(), String> {
    let (name, size) = spec
        .split_once(':')
        .and_then(|(n, s)| Some((n, s.parse::<usize>().ok()?)))
        .ok_or_else(|| {
            format!(
                "{}={spec}: expected ALLOCATOR:SIZE",
                workloads::memory::ENV_CHILD
            )
        })?;
    let mut cfg = cli::validate(args, topo, allowed, "memory-child")?;
    cfg.memory_sizes = vec![size];
    let meta = RunMeta::default();
    let ctx = Ctx {
        meta: &meta,
        cfg: &cfg,
        topo,
        tsc_ghz: 1.0,
        progress: &ProgressBar::hidden(),
    };
    let rows = registry::run(name, Workload::Memory, &ctx)?;
    let mut w = csv::Writer::from_writer(std::io::stdout());
    for r in &rows {
        w.serialize(r).map_err(|e| e.to_string())?;
    }
    w.flush().map_err(|e| e.to_string())
}

/// The latency workload's second, untimed pass on instances with stats on (for the slab
/// allocators whose stats are off in this run): slow-path counters per phase.
fn latency_stats_pass(ctx: &Ctx<'_>, all: &mut Vec<Row>) -> Result<(), String> {
    let cfg = workloads::latency::with_stats(ctx.cfg);
    let sctx = Ctx { cfg: &cfg, ..*ctx };
    for a in &ctx.cfg.allocators {
        if !workloads::latency::needs_stats_pass(ctx.cfg, a) {
            continue;
        }
        ctx.progress.set_message(format!("{a} (stats pass)"));
        workloads::latency::STATS_PASS.store(true, std::sync::atomic::Ordering::Relaxed);
        let r = registry::run(a, Workload::Latency, &sctx);
        workloads::latency::STATS_PASS.store(false, std::sync::atomic::Ordering::Relaxed);
        all.extend(r?);
    }
    Ok(())
}

fn write_csv(path: &Path, rows: &[Row]) -> Result<(), String> {
    let mut w = csv::Writer::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if rows.is_empty() {
        w.write_record(record::COLUMNS).map_err(|e| e.to_string())?;
    }
    for r in rows {
        w.serialize(r)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    w.flush().map_err(|e| format!("{}: {e}", path.display()))
}

/// `placement.csv`: every worker's pinned CPU and where `getcpu()` found it when done.
fn write_placement(path: &Path, log: &[placement::Placed]) -> Result<(), String> {
    use std::fmt::Write;
    let mut s = String::from("context,worker,pinned_cpu,cpu_after,expected_node,node_after,ok\n");
    let mut bad = 0;
    for p in log {
        let ok = p.pinned_cpu == p.cpu_after && p.expected_node == p.node_after;
        bad += usize::from(!ok);
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{}",
            p.context, p.worker, p.pinned_cpu, p.cpu_after, p.expected_node, p.node_after, ok
        );
    }
    if bad > 0 {
        eprintln!(
            "warning: {bad} of {} workers were not on their pinned CPU/node when they finished (see {})",
            log.len(),
            path.display()
        );
    }
    std::fs::write(path, s).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_meta(
    path: &Path,
    meta: &RunMeta,
    command: &str,
    topo: &Topology,
    cfg: &RunConfig,
) -> Result<(), String> {
    let nodes: Vec<serde_json::Value> = (0..topo.nr_nodes())
        .map(|n| {
            serde_json::json!({
                "node": n,
                "real_node": topo.real_node(n),
                "cpus": topo.cpus_of_node(n).iter().collect::<Vec<_>>(),
                "distances": (0..topo.nr_nodes()).map(|m| topo.node_distance(n, m)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let v = serde_json::json!({
        "run": meta,
        "command": command,
        "topology": {
            "summary": topo.summary(),
            "source": topo.source().name(),
            "fake_numa": topo.fake_numa(),
            "nodes": nodes,
        },
        "config": {
            "quick": cfg.quick,
            "allocators": cfg.allocators,
            "workloads": cfg.workloads.iter().map(|w| w.name()).collect::<Vec<_>>(),
            "sizes": cfg.sizes,
            "memory_sizes": cfg.memory_sizes,
            "cpus": cfg.cpus,
            "reps": cfg.reps,
            "ops": cfg.ops,
            "live_objects": cfg.live_objects,
            "seed": cfg.seed,
            "slab_settings": cfg.settings.slab,
            "slub_settings": format!("{:?}", cfg.settings.slub),
        },
        "cpu_id_source": format!("{:?}", common::percpu::cpu_id_source()),
        "cmpxchg16b_lock_free": common::dword::DoubleWord::is_lock_free(),
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn replot(dir: &Path) -> Result<(), String> {
    let csv_path = dir.join("results.csv");
    let rows = record::read_csv(&csv_path)?;
    if rows.is_empty() {
        return Err(format!("{} has no rows", csv_path.display()));
    }
    let files = plot::draw_all(&rows, dir)?;
    let meta_text = std::fs::read_to_string(dir.join("meta.json")).ok();
    let (meta, command) = meta_text
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|v| {
            (
                serde_json::from_value::<RunMeta>(v["run"].clone()).unwrap_or_default(),
                v["command"].as_str().unwrap_or("").to_string(),
            )
        })
        .unwrap_or_default();
    std::fs::write(
        dir.join("summary.md"),
        summary::render(&rows, &meta, &command),
    )
    .map_err(|e| e.to_string())?;
    eprintln!(
        "redrew {} figures and summary.md in {}",
        files.len() / 2,
        dir.display()
    );
    Ok(())
}
