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
    }
}

fn run(args: &cli::RunArgs) -> Result<(), String> {
    if args.list {
        list();
        return Ok(());
    }
    let topo = topology(args)?;
    let allowed = common::pin::allowed_cpus();
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
    let mut rows: Vec<Row> = Vec::new();
    let style =
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .map_err(|e| e.to_string())?
            .progress_chars("=> ");
    for &w in &cfg.workloads {
        let bar = if tty {
            ProgressBar::with_draw_target(Some(units(&cfg, w, cross)), ProgressDrawTarget::stdout())
        } else {
            eprintln!("[{}] running", w.name());
            ProgressBar::hidden()
        };
        bar.set_style(style.clone());
        bar.set_prefix(w.name());
        let ctx = Ctx {
            meta: &meta,
            cfg: &cfg,
            topo: &topo,
            tsc_ghz,
            progress: &bar,
        };
        let result = if w == Workload::Pages {
            workloads::pages::run(&ctx)
        } else if w == Workload::Programs {
            workloads::programs::run(&ctx)
        } else {
            let mut all = Vec::new();
            let mut res = Ok(());
            for a in &cfg.allocators {
                bar.set_message(a.to_string());
                match registry::run(a, w, &ctx) {
                    Ok(r) => all.extend(r),
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            res.map(|()| all)
        };
        bar.finish_and_clear();
        match result {
            Ok(r) => {
                if tty {
                    println!("{:>14} done: {} rows", w.name(), r.len());
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
    let mut files = vec![csv_path.clone(), cfg.out.join("meta.json")];
    if cfg.plots {
        files.extend(plot::draw_all(&rows, &cfg.out)?);
    }
    let sum = cfg.out.join("summary.md");
    std::fs::write(&sum, summary::render(&rows, &meta, &command))
        .map_err(|e| format!("{}: {e}", sum.display()))?;
    files.push(sum);
    eprintln!("wrote {} rows to {}", rows.len(), cfg.out.display());
    for f in files {
        eprintln!("  {}", f.display());
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
