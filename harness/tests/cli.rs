//! The harness as a user runs it: a `--quick` sweep into a temporary directory (CSV schema and
//! rows, meta.json, every plot a valid SVG and PNG, summary), `harness plot DIR`, `--list`, and
//! every bad-input error (one line, non-zero exit, no results.csv).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use std::path::Path;
use std::process::{Command, Output};

fn harness(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .output()
        .expect("run harness")
}

const COLUMNS: &str = "schema_version,run_id,utc_time,git_commit,host,cpu_model,cpus,nodes_real,nodes_fake,kernel,allocator,api,settings,workload,phase,size,threads,cpu,node,repetition,metric,value,ops,cycles_per_op,ns_per_op,ops_per_s,bytes_live,bytes_held,overhead,held_measure,queued_bytes,note,config,percpu,stats";

const FIGURES: &[&str] = &[
    "slab_test",
    "scaling",
    "memory",
    "remote_free",
    "custom_caches",
    "pages",
    "latency",
    "ablation",
    "metadata",
];

fn check_figures(dir: &Path) {
    for f in FIGURES {
        let svg = std::fs::read_to_string(dir.join(format!("{f}.svg"))).expect("svg written");
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{f}.svg"
        );
        assert!(svg.contains("<text"), "{f}.svg has text");
        let png = std::fs::read(dir.join(format!("{f}.png"))).expect("png written");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{f}.png signature");
        assert!(png.len() > 10_000, "{f}.png is a real picture");
    }
}

#[test]
fn estimate_prints_and_measures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = harness(&["--estimate", "-o", out.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("estimated duration: "), "{err}");
    assert!(err.contains("scaling "), "per workload: {err}");
    assert!(!out.join("results.csv").exists());
}

#[test]
fn quick_sweep_writes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = harness(&["--quick", "-o", out.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "harness --quick failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next().unwrap(), COLUMNS);
    let rows: Vec<Vec<String>> = {
        let mut r = csv::Reader::from_path(out.join("results.csv")).unwrap();
        r.records()
            .map(|x| x.unwrap().iter().map(str::to_string).collect())
            .collect()
    };
    let col = |name: &str| COLUMNS.split(',').position(|c| c == name).unwrap();
    let count = |alloc: &str, wl: &str| {
        rows.iter()
            .filter(|r| r[col("allocator")] == alloc && r[col("workload")] == wl)
            .count()
    };
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(64);
    for a in [
        "slab",
        "slab-lock",
        "slub",
        "slub-cmpxchg",
        "system",
        "mimalloc",
    ] {
        // slab_test: 4 sizes x (A, B, C) + with 2+ CPUs (D_alloc, D_free, E) per CPU + F per CPU.
        let per_size = 3 + if cpus > 1 { 4 * cpus } else { 0 };
        let stat_rows = rows
            .iter()
            .filter(|r| r[col("allocator")] == a && r[col("phase")].starts_with("stat:"))
            .count();
        assert_eq!(
            count(a, "slab_test") - stat_rows,
            4 * per_size,
            "{a} slab_test rows"
        );
        assert!(count(a, "memory") >= 5, "{a} memory rows");
        assert!(count(a, "scaling") >= 1, "{a} scaling rows");
        assert!(count(a, "custom_caches") >= 5, "{a} custom_caches rows");
        if cpus > 1 {
            assert!(count(a, "remote_free") >= 1, "{a} remote_free rows");
        }
        // latency: per size (64, 256, 4096 of the quick sizes) and phase, a mean and the
        // quantiles, in order (p50 <= p90 <= ... <= max).
        let phases = if cpus > 1 { 5 } else { 3 };
        for size in ["64", "256", "4096"] {
            for ph in ["A_alloc", "B_free", "C_pair", "X_alloc", "X_remote_free"]
                .iter()
                .take(phases)
            {
                let q = |m: &str| -> f64 {
                    rows.iter()
                        .find(|r| {
                            r[col("allocator")] == a
                                && r[col("workload")] == "latency"
                                && r[col("size")] == size
                                && r[col("phase")] == *ph
                                && r[col("metric")] == m
                        })
                        .unwrap_or_else(|| panic!("{a} latency {ph} {size} {m}"))[col("value")]
                    .parse()
                    .unwrap()
                };
                let v: Vec<f64> = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]
                    .iter()
                    .map(|m| q(m))
                    .collect();
                assert!(v.windows(2).all(|w| w[0] <= w[1]), "{a} {ph} {size}: {v:?}");
                assert!(q("mean") <= v[5], "{a} {ph} {size} mean <= max");
            }
        }
        // Slab allocators also show where the tail comes from: slow-path counters (their
        // stats are off in this run, so from the extra stats pass).
        if a.starts_with("sl") {
            assert!(
                rows.iter().any(|r| r[col("allocator")] == a
                    && r[col("workload")] == "latency"
                    && r[col("metric")].starts_with("stat:")),
                "{a} latency stat rows"
            );
        }
    }
    for r in &rows {
        assert_eq!(r[col("schema_version")], "2");
    }
    assert!(count("provider", "pages") > 0 && count("mmap", "pages") > 0);
    // metadata: slab allocators report their queues on the 4 fixtures and this machine, the
    // baselines nothing.
    for a in ["slab", "slub"] {
        for t in [
            "2s-128cpu",
            "amd-8n-256cpu",
            "4s-448cpu-smt",
            "memless-cpuless",
            "this-machine",
        ] {
            assert!(
                rows.iter().any(|r| r[col("allocator")] == a
                    && r[col("workload")] == "metadata"
                    && r[col("note")].contains(&format!("topology={t} "))),
                "{a} metadata rows for {t}"
            );
        }
    }
    assert_eq!(count("system", "metadata"), 0);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("## metadata") && summary.contains("| 4s-448cpu-smt | 448 | 4 |"));
    // placement.csv: one line per worker, every one on its pinned CPU when done.
    let placement = std::fs::read_to_string(out.join("placement.csv")).unwrap();
    let mut pl = placement.lines();
    assert_eq!(
        pl.next(),
        Some("context,worker,pinned_cpu,cpu_after,expected_node,node_after,ok")
    );
    let workers: Vec<&str> = pl.collect();
    assert!(workers.len() > 10);
    assert!(workers.iter().all(|l| l.ends_with(",true")), "{placement}");
    for r in &rows {
        let cyc: f64 = r[col("cycles_per_op")].parse().unwrap();
        assert!(cyc.is_finite() && cyc >= 0.0);
        assert!(!r[col("git_commit")].is_empty());
    }
    // Slab allocators report provider-measured memory beside the kernel's (smaps) count, which
    // every allocator has; held at least what is live at the full working set.
    for a in ["slab", "slub", "system", "mimalloc"] {
        let mem: Vec<&Vec<String>> = rows
            .iter()
            .filter(|r| {
                r[col("allocator")] == a
                    && r[col("workload")] == "memory"
                    && r[col("held_measure")] == "smaps_anon"
            })
            .collect();
        assert!(!mem.is_empty(), "{a} smaps rows");
        if a.starts_with("sl") {
            assert!(rows.iter().any(|r| r[col("allocator")] == a
                && r[col("workload")] == "memory"
                && r[col("held_measure")] == "provider"));
        }
        let grow_over: f64 = mem.iter().rfind(|r| r[col("phase")] == "grow").unwrap()
            [col("overhead")]
        .parse()
        .unwrap();
        assert!(
            grow_over >= 1.0,
            "{a}: held at least what is live ({grow_over})"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert!(meta["command"].as_str().unwrap().contains("--quick"));
    assert!(meta["topology"]["nodes"]
        .as_array()
        .is_some_and(|n| !n.is_empty()));
    check_figures(&out);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("Published SLUB/SLAB ratios"));

    // Redraw from the CSV alone.
    for f in FIGURES {
        std::fs::remove_file(out.join(format!("{f}.png"))).unwrap();
    }
    let o = harness(&["plot", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_figures(&out);
}

#[test]
fn fake_numa_run_records_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let o = harness(&[
        "--quick",
        "--fake-numa",
        "2",
        "--allocators",
        "slab,slub",
        "--workloads",
        "remote_free,slab_test",
        "--sizes",
        "64",
        "--no-plots",
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(dir.path().join("results.csv")).unwrap();
    assert!(
        csv.lines().skip(1).all(|l| l.contains(",2,")),
        "nodes_fake = 2 recorded"
    );
    assert!(!dir.path().join("slab_test.svg").exists(), "--no-plots");
}

fn assert_clean_error(args: &[&str], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let mut all: Vec<&str> = args.to_vec();
    let out_s = out.to_str().unwrap().to_string();
    if !args.contains(&"-o") && args.first() != Some(&"plot") {
        all.extend(["-o", &out_s]);
    }
    let o = harness(&all);
    assert!(!o.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() <= 3 && lines.iter().any(|l| l.contains(needle)),
        "{args:?}: expected a short error mentioning '{needle}', got:\n{err}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked");
    assert!(
        !out.join("results.csv").exists(),
        "{args:?} wrote a results.csv"
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    assert_clean_error(
        &["--allocators", "tcmalloc"],
        "unknown allocator 'tcmalloc'",
    );
    assert_clean_error(
        &["--workloads", "hackbench"],
        "unknown workload 'hackbench'",
    );
    assert_clean_error(&["--cpus", "4000"], "CPU 4000");
    assert_clean_error(&["--nodes", "7"], "node 7 does not exist");
    assert_clean_error(&["--threads", "4096"], "--oversubscribe");
    assert_clean_error(&["--threads", "0"], "--threads must be at least 1");
    assert_clean_error(&["--sizes", "0"], "size 0");
    assert_clean_error(&["--sizes", "99999999"], "largest kmalloc size");
    assert_clean_error(&["--reps", "0"], "--reps must be at least 1");
    assert_clean_error(&["--fake-numa", "0"], "--fake-numa must be at least 1");
    assert_clean_error(&["--fake-numa", "999"], "--fake-numa 999");
    assert_clean_error(&["--slub", "max_order=12"], "orders go up to");
    assert_clean_error(&["--slub", "colour=3"], "unknown key 'colour'");
    assert_clean_error(&["--slab", "limit=x"], "not a non-negative integer");
    assert_clean_error(
        &["--slub", "config=paranoid"],
        "kernel, hardened or checked",
    );
    assert_clean_error(
        &["--slab", "config=paranoid"],
        "kernel, hardened or checked",
    );
    assert_clean_error(&["-o", "/proc/slabworks-cannot-write"], "output directory");
    assert_clean_error(&["--bogus-flag"], "--bogus-flag");
    assert_clean_error(&["plot", "/nonexistent-dir"], "results.csv");
}

#[test]
fn list_names_everything() {
    let o = harness(&["--list"]);
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    for name in [
        "slab",
        "slub",
        "system",
        "mimalloc",
        "slab_test",
        "remote_free",
        "memory",
        "custom_caches",
        "scaling",
        "pages",
        "latency",
        "ablation",
    ] {
        assert!(s.contains(name), "--list mentions {name}");
    }
    let h = harness(&["--help"]);
    let help = String::from_utf8_lossy(&h.stdout);
    assert!(help.contains("--fake-numa") && help.contains("default"));
}
