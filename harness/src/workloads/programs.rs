//! Real programs on each allocator: a command run under glibc malloc, under
//! `LD_PRELOAD=libslabworks_preload.so` with `SLABWORKS_ALLOCATOR=slab` and `=slub`, and under
//! mimalloc's shared library when one can be found. Per run: wall time, peak RSS
//! (`wait4` → `ru_maxrss`) and, for slab and slub, the allocator's own figure from its exit
//! report (`SLABWORKS_SLABINFO`): page-provider bytes held at the peak and at exit, and the
//! peak of `mmap`-ed address space for requests above 4 MiB (kept apart: sort maps a buffer of
//! ~2 GB and touches a few MB of it). Each program's stdout must be identical on every allocator (else the
//! workload fails: a wrong result is not a measurement).
//!
//! Programs (choose with `HARNESS_PROGRAMS=python,sort,sqlite3`; default: all that exist):
//! - `python`: python3 builds a dict of 60 000 (quick: 15 000) records, `json.dumps` with
//!   sorted keys, `json.loads` back, sorts the pieces;
//! - `sort`: `LC_ALL=C sort --parallel=2` of 500 000 (quick: 100 000) seeded random lines;
//! - `sqlite3`: 100 000 (quick: 20 000) rows inserted, indexed, grouped, deleted, vacuumed.
//!
//! Rows: `workload = "programs"`, `phase` = program, `api = "preload"` (`"malloc"` for glibc),
//! `ops = 1`, `ns_per_op` = wall time, `bytes_held` = peak RSS (`held_measure = "peak_rss"`),
//! `note` = the allocator's own figures (`provider_peak_bytes=… provider_end_bytes=…
//! mmap_peak_bytes=…`). Programs are not pinned: they start their own threads (sort).
//!
//! Beside the rows, `benchres.csv` in the output directory holds every run in mimalloc-bench's
//! format (`# benchmark allocator elapsed rss user sys page-faults page-reclaims`, space
//! separated, as its `bench.sh` writes with GNU time: elapsed `[M:]SS.ss`, rss in KiB, CPU
//! seconds, major and minor faults from `wait4`), glibc named `sys` and mimalloc `mi` as there,
//! so the lines merge with published mimalloc-bench runs.
//!
//! The preload library is looked for in `$SLABWORKS_PRELOAD_SO`, next to the harness binary
//! (`target/<profile>/`), and else built with `cargo build -p preload --lib` in the same
//! profile; mimalloc in `$SLABWORKS_MIMALLOC_SO` and the usual library directories.

use super::Ctx;
use crate::record::Row;
use std::collections::hash_map::DefaultHasher;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Comma list of programs to run.
pub(crate) const ENV_PROGRAMS: &str = "HARNESS_PROGRAMS";
/// Path of `libslabworks_preload.so`.
pub(crate) const ENV_PRELOAD_SO: &str = "SLABWORKS_PRELOAD_SO";
/// Path of `libmimalloc.so`.
pub(crate) const ENV_MIMALLOC_SO: &str = "SLABWORKS_MIMALLOC_SO";

/// The programs known, in run order.
pub(crate) const PROGRAMS: [&str; 3] = ["python", "sort", "sqlite3"];

const PY_SCRIPT: &str = r#"
import hashlib, json, random, sys
random.seed(12345)
n = int(sys.argv[1])
d = {}
for i in range(n):
    k = "key-%06d-%s" % (i, "".join(random.choice("abcdefghij") for _ in range(random.randint(1, 12))))
    d[k] = {"n": i, "sq": i * i, "tags": [random.random() for _ in range(i % 7)],
            "name": "x" * (i % 50), "nested": {"a": [i, str(i)], "b": None}}
s = json.dumps(d, sort_keys=True)
lines = sorted(s.split(", "), key=lambda x: (len(x), x))
assert json.loads(s) == d
print(len(d), len(s), len(lines), hashlib.sha256(s.encode()).hexdigest())
"#;

/// One program: argv and extra environment.
struct Program {
    name: &'static str,
    argv: Vec<OsString>,
    env: Vec<(&'static str, String)>,
}

/// How a run was set up.
#[derive(Clone)]
enum Alloc {
    Glibc,
    Preload { lib: PathBuf, which: &'static str },
    Mimalloc(PathBuf),
}

impl Alloc {
    fn name(&self) -> &str {
        match self {
            Alloc::Glibc => "system",
            Alloc::Preload { which, .. } => which,
            Alloc::Mimalloc(_) => "mimalloc",
        }
    }
}

struct Measured {
    wall_s: f64,
    maxrss_bytes: u64,
    /// User and system CPU seconds, major and minor page faults (`wait4`'s rusage).
    user_s: f64,
    sys_s: f64,
    majflt: u64,
    minflt: u64,
    stdout_hash: u64,
    report: Option<Report>,
}

/// The allocator's figures from its exit report.
struct Report {
    settings: String,
    /// Page-provider bytes at the peak (slabs, page blocks, metadata: what the allocator held).
    peak_bytes: u64,
    /// Page-provider bytes at exit.
    end_bytes: u64,
    /// Peak of `mmap`-ed bytes for requests above 4 MiB (address space: a program such as
    /// sort may map far more than it touches, so this is not memory held).
    mmap_peak_bytes: u64,
}

fn on_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// The real python3 executable (not a pyenv shim script).
fn python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.is_file().then_some(p)
}

fn random_lines(path: &Path, lines: usize, seed: u64) -> Result<(), String> {
    use std::fmt::Write;
    let mut s = seed | 1;
    let mut text = String::with_capacity(lines * 40);
    for _ in 0..lines {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let mut x = s;
        for _ in 0..4 + (s >> 59) as usize * 3 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            text.push((b'a' + ((x >> 33) % 26) as u8) as char);
        }
        let _ = writeln!(text, " {}", s >> 40);
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The programs to run, and notes about the ones skipped.
fn programs(ctx: &Ctx<'_>, dir: &Path) -> Result<(Vec<Program>, Vec<String>), String> {
    let wanted: Vec<String> = match std::env::var(ENV_PROGRAMS) {
        Ok(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        Err(_) => PROGRAMS.iter().map(|s| (*s).to_string()).collect(),
    };
    let scale = if ctx.cfg.quick { 1 } else { 4 };
    let (mut out, mut notes) = (Vec::new(), Vec::new());
    for w in &wanted {
        match w.as_str() {
            "python" => {
                let Some(py) = python() else {
                    notes.push("python3 not found: python skipped".to_string());
                    continue;
                };
                let script = dir.join("dict.py");
                std::fs::write(&script, PY_SCRIPT).map_err(|e| e.to_string())?;
                out.push(Program {
                    name: "python",
                    argv: vec![
                        py.into(),
                        script.into(),
                        (15_000 * scale).to_string().into(),
                    ],
                    env: vec![("PYTHONHASHSEED", "0".into())],
                });
            }
            "sort" => {
                let Some(sort) = on_path("sort") else {
                    notes.push("sort not found: sort skipped".to_string());
                    continue;
                };
                let input = dir.join("lines.txt");
                random_lines(&input, 125_000 * scale, ctx.cfg.seed)?;
                out.push(Program {
                    name: "sort",
                    argv: vec![sort.into(), "--parallel=2".into(), input.into()],
                    env: vec![("LC_ALL", "C".into())],
                });
            }
            "sqlite3" => {
                let Some(sq) = on_path("sqlite3") else {
                    notes.push("sqlite3 not installed: sqlite3 skipped".to_string());
                    continue;
                };
                let rows = 25_000 * scale;
                let sql = format!(
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL, b BLOB);
                     WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
                       INSERT INTO t SELECT x, printf('name-%05d-%s', x % 977, hex(x * 7919)),
                                            x * 0.5, zeroblob(x % 300) FROM c;
                     CREATE INDEX t_name ON t(name);
                     SELECT count(*), sum(v), count(DISTINCT name) FROM t;
                     SELECT name, count(*) FROM t GROUP BY name ORDER BY 2 DESC, 1 LIMIT 3;
                     DELETE FROM t WHERE id % 3 = 0; VACUUM;
                     SELECT count(*), sum(length(b)) FROM t;"
                );
                out.push(Program {
                    name: "sqlite3",
                    argv: vec![sq.into(), ":memory:".into(), sql.into()],
                    env: vec![],
                });
            }
            other => {
                return Err(format!(
                    "{ENV_PROGRAMS}: unknown program '{other}' (known: {})",
                    PROGRAMS.join(", ")
                ))
            }
        }
    }
    Ok((out, notes))
}

/// The preload library: `$SLABWORKS_PRELOAD_SO`, next to this binary, or built now.
fn preload_lib() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(ENV_PRELOAD_SO) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!("{ENV_PRELOAD_SO}={} does not exist", p.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no directory for the harness binary")?;
    let lib = dir.join("libslabworks_preload.so");
    // Build (or confirm up to date) in the harness's own profile, so the library is never stale.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../preload/Cargo.toml");
    if manifest.is_file() {
        let mut c = Command::new(cargo);
        c.args(["build", "-q", "-p", "preload", "--lib", "--manifest-path"])
            .arg(&manifest);
        if dir.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        if let Some(target) = dir.parent() {
            c.env("CARGO_TARGET_DIR", target);
        }
        match c.status() {
            Ok(s) if s.success() => {}
            Ok(s) => eprintln!("programs: cargo build -p preload failed ({s})"),
            Err(e) => eprintln!("programs: cannot run cargo ({e})"),
        }
    }
    if lib.is_file() {
        Ok(lib)
    } else {
        Err(format!(
            "{} not found: build it with `cargo build --release -p preload` or set {ENV_PRELOAD_SO}",
            lib.display()
        ))
    }
}

fn mimalloc_lib() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(ENV_MIMALLOC_SO) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let dirs = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
        "/usr/local/lib",
        "/usr/local/lib64",
    ];
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut found: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libmimalloc") && n.contains(".so"))
            })
            .collect();
        found.sort();
        if let Some(p) = found.into_iter().next() {
            return Some(p);
        }
    }
    None
}

/// `SLABWORKS_SLAB` for the harness's SLAB settings.
fn slab_env(ctx: &Ctx<'_>) -> Result<String, String> {
    let s = crate::slab_settings::settings(&ctx.cfg.settings.slab)?;
    let mut v = Vec::new();
    if let Some(t) = s.tunables {
        v.push(format!(
            "limit={} batchcount={} shared={}",
            t.limit, t.batchcount, t.shared
        ));
    }
    if let Some(o) = s.slab_break_gfp_order {
        v.push(format!("break_order={o}"));
    }
    if !s.use_alien_caches {
        v.push("noaliencache".into());
    }
    if !s.reap {
        v.push("noreap".into());
    }
    if s.stats {
        v.push("stats".into());
    }
    Ok(v.join(" "))
}

/// `SLABWORKS_SLUB` for the harness's SLUB settings (the boot-option language).
fn slub_env(ctx: &Ctx<'_>) -> String {
    let s = &ctx.cfg.settings.slub;
    let mut v = vec![
        format!("era={}", s.era.name()),
        format!("slub_min_order={}", s.slub_min_order),
        format!("slub_max_order={}", s.slub_max_order),
        format!("slub_min_objects={}", s.slub_min_objects),
        format!("remote_node_defrag_ratio={}", s.remote_node_defrag_ratio),
    ];
    if s.slab_nomerge {
        v.push("slab_nomerge".into());
    }
    if let Some(c) = s.cpu_partial {
        v.push(format!("slub_cpu_partial={c}"));
    }
    if let Some(m) = s.min_partial {
        v.push(format!("slub_min_partial={m}"));
    }
    if s.freelist_hardened {
        v.push("hardened".into());
    }
    if s.stats {
        v.push("stats".into());
    }
    if s.random_seed != 0 {
        v.push(format!("seed={}", s.random_seed));
    }
    v.join(" ")
}

fn parse_report(text: &str, pid: u32) -> Option<Report> {
    let start = text.find(&format!("# slabworks pid={pid} "))?;
    let block = &text[start..];
    let first = block.lines().next()?;
    let settings = first
        .split_once("settings=")
        .map_or(String::new(), |(_, s)| s.to_string());
    let mem = block.lines().find(|l| l.starts_with("memory "))?;
    let field = |k: &str| -> Option<u64> {
        mem.split_whitespace()
            .find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
            .and_then(|v| v.parse().ok())
    };
    let page = common::PAGE_SIZE as u64;
    Some(Report {
        settings,
        peak_bytes: field("peak_pages")? * page,
        end_bytes: field("pages")? * page,
        mmap_peak_bytes: field("mmap_peak_bytes")?,
    })
}

/// Runs `p` once on `alloc`; stdout goes to a file in `dir`.
fn measure(
    ctx: &Ctx<'_>,
    p: &Program,
    alloc: &Alloc,
    dir: &Path,
    extra_env: &[(&'static str, String)],
) -> Result<Measured, String> {
    let out_path = dir.join(format!("{}-{}.out", p.name, alloc.name()));
    let report_path = dir.join(format!("{}-{}-report-%p.txt", p.name, alloc.name()));
    let stdout = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let mut c = Command::new(&p.argv[0]);
    c.args(&p.argv[1..])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped());
    c.env_remove("LD_PRELOAD");
    for (k, _) in std::env::vars() {
        if k.starts_with("SLABWORKS_") {
            c.env_remove(k);
        }
    }
    for (k, v) in &p.env {
        c.env(k, v);
    }
    match alloc {
        Alloc::Glibc => {}
        Alloc::Mimalloc(lib) => {
            c.env("LD_PRELOAD", lib);
        }
        Alloc::Preload { lib, which } => {
            c.env("LD_PRELOAD", lib)
                .env("SLABWORKS_ALLOCATOR", which)
                .env("SLABWORKS_SLABINFO", &report_path);
            if ctx.meta.nodes_fake > 0 {
                c.env("SLABWORKS_FAKE_NUMA", ctx.meta.nodes_fake.to_string());
            }
            for (k, v) in extra_env {
                c.env(k, v);
            }
        }
    }
    let t0 = Instant::now();
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", p.name))?;
    let pid = child.id();
    // Read stderr before reaping, so a chatty program cannot block on a full pipe.
    let mut err = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_end(&mut err);
    }
    let mut status = 0i32;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (Child::wait is never called); status and ru
    // are valid out-pointers.
    let r = unsafe { libc::wait4(pid as i32, &raw mut status, 0, &raw mut ru) };
    let wall_s = t0.elapsed().as_secs_f64();
    if r != pid as i32 {
        return Err(format!(
            "wait4 for {}: {}",
            p.name,
            std::io::Error::last_os_error()
        ));
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(format!(
            "{} on {} failed (wait status {status:#x}): {}",
            p.name,
            alloc.name(),
            String::from_utf8_lossy(&err).trim()
        ));
    }
    let bytes = std::fs::read(&out_path).map_err(|e| e.to_string())?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let report = if matches!(alloc, Alloc::Preload { .. }) {
        let path = dir.join(format!("{}-{}-report-{pid}.txt", p.name, alloc.name()));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        parse_report(&text, pid)
    } else {
        None
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Measured {
        wall_s,
        maxrss_bytes: ru.ru_maxrss as u64 * 1024,
        user_s: tv(ru.ru_utime),
        sys_s: tv(ru.ru_stime),
        majflt: ru.ru_majflt as u64,
        minflt: ru.ru_minflt as u64,
        stdout_hash: h.finish(),
        report,
    })
}

/// Runs every program on every allocator, `reps` times, interleaved within a repetition.
pub(crate) fn run(ctx: &Ctx<'_>) -> Result<Vec<Row>, String> {
    let dir = ctx.cfg.out.join("programs-tmp");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (progs, mut notes) = programs(ctx, &dir)?;
    let lib = preload_lib()?;
    let mut allocs = vec![
        Alloc::Glibc,
        Alloc::Preload {
            lib: lib.clone(),
            which: "slab",
        },
        Alloc::Preload { lib, which: "slub" },
    ];
    match mimalloc_lib() {
        Some(m) => allocs.push(Alloc::Mimalloc(m)),
        None => notes.push(format!(
            "no libmimalloc.so found (set {ENV_MIMALLOC_SO}): mimalloc skipped"
        )),
    }
    for n in &notes {
        eprintln!("programs: {n}");
    }
    let slab_opts = slab_env(ctx)?;
    let slub_opts = slub_env(ctx);
    let mut rows = Vec::new();
    let mut bench = String::from(BENCHRES_HEADER);
    for rep in 0..ctx.cfg.reps {
        for p in &progs {
            let mut reference = None;
            for a in &allocs {
                ctx.progress
                    .set_message(format!("{} on {} (rep {rep})", p.name, a.name()));
                let extra: Vec<(&'static str, String)> = match a {
                    Alloc::Preload { which: "slab", .. } if !slab_opts.is_empty() => {
                        vec![("SLABWORKS_SLAB", slab_opts.clone())]
                    }
                    Alloc::Preload { which: "slub", .. } => {
                        vec![("SLABWORKS_SLUB", slub_opts.clone())]
                    }
                    _ => vec![],
                };
                let m = measure(ctx, p, a, &dir, &extra)?;
                bench.push_str(&benchres_line(p.name, a.name(), &m));
                match reference {
                    None => reference = Some(m.stdout_hash),
                    Some(h) if h != m.stdout_hash => {
                        return Err(format!(
                            "{} printed different output on {} than on glibc",
                            p.name,
                            a.name()
                        ))
                    }
                    Some(_) => {}
                }
                let mut r = Row::new(ctx.meta);
                r.allocator = a.name().to_string();
                r.api = if matches!(a, Alloc::Glibc) {
                    "malloc".into()
                } else {
                    "preload".into()
                };
                r.settings = match (&m.report, a) {
                    (Some(rep), _) => rep.settings.clone(),
                    (None, Alloc::Mimalloc(path)) => format!("LD_PRELOAD={}", path.display()),
                    (None, _) => "glibc defaults".into(),
                };
                r.workload = "programs".into();
                r.phase = p.name.into();
                r.threads = 1;
                r.repetition = rep;
                let ns = (m.wall_s * 1e9) as u64;
                r = r.timed(1, (ns as f64 * ctx.tsc_ghz) as u64, ctx.tsc_ghz);
                r.bytes_held = m.maxrss_bytes;
                r.held_measure = "peak_rss".into();
                r.note = match &m.report {
                    Some(rep) => format!(
                        "provider_peak_bytes={} provider_end_bytes={} mmap_peak_bytes={}",
                        rep.peak_bytes, rep.end_bytes, rep.mmap_peak_bytes
                    ),
                    None if matches!(a, Alloc::Preload { .. }) => "no exit report".into(),
                    None => String::new(),
                };
                rows.push(r);
                ctx.progress.inc(1);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let path = ctx.cfg.out.join("benchres.csv");
    std::fs::write(&path, bench).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(rows)
}

/// mimalloc-bench's `benchres.csv` header (its `bench.sh` writes it; the rows are GNU time's
/// `%E %M %U %S %F %R`, space-separated, the leading `0:` of `%E` removed).
pub(crate) const BENCHRES_HEADER: &str =
    "# benchmark allocator elapsed rss user sys page-faults page-reclaims\n";

/// mimalloc-bench's name of an allocator (`sys`, `mi`), ours for the rest.
fn benchres_alloc(name: &str) -> &str {
    match name {
        "system" => "sys",
        "mimalloc" => "mi",
        other => other,
    }
}

/// `%E` of GNU time without a leading `0:` as mimalloc-bench writes it: `SS.ss` under a
/// minute, `M:SS.ss` under an hour, `H:MM:SS` beyond.
fn benchres_elapsed(s: f64) -> String {
    let cs = (s * 100.0).round() as u64;
    let (h, m, sec, c) = (cs / 360_000, cs / 6000 % 60, cs / 100 % 60, cs % 100);
    if h > 0 {
        format!("{h}:{m:02}:{sec:02}")
    } else if m > 0 {
        format!("{m}:{sec:02}.{c:02}")
    } else {
        format!("{sec:02}.{c:02}")
    }
}

/// One `benchres.csv` line: benchmark allocator elapsed rss(KiB) user sys faults reclaims.
fn benchres_line(prog: &str, alloc: &str, m: &Measured) -> String {
    format!(
        "{prog} {} {} {} {:.2} {:.2} {} {}\n",
        benchres_alloc(alloc),
        benchres_elapsed(m.wall_s),
        m.maxrss_bytes / 1024,
        m.user_s,
        m.sys_s,
        m.majflt,
        m.minflt
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchres_lines_follow_mimalloc_bench() {
        assert_eq!(benchres_elapsed(2.123), "02.12");
        assert_eq!(benchres_elapsed(61.5), "1:01.50");
        assert_eq!(benchres_elapsed(3725.0), "1:02:05");
        let m = Measured {
            wall_s: 2.12,
            maxrss_bytes: 3588 * 1024,
            user_s: 2.15,
            sys_s: 0.0,
            majflt: 1,
            minflt: 306,
            stdout_hash: 0,
            report: None,
        };
        assert_eq!(
            benchres_line("cfrac", "mimalloc", &m),
            "cfrac mi 02.12 3588 2.15 0.00 1 306\n"
        );
        assert_eq!(
            BENCHRES_HEADER.split_whitespace().count(),
            9,
            "# + 8 columns"
        );
    }

    #[test]
    fn report_figures_are_parsed_for_the_right_pid() {
        let text = "# slabworks pid=7 allocator=slab settings=a b\nmemory pages=1 peak_pages=2 slab_pages=0 large_pages=0 metadata_pages=0 mmap_live=0 mmap_bytes=0 mmap_peak_bytes=0 bump_bytes=0\n# end pid=7\n\
                    # slabworks pid=42 allocator=slub settings=era=6.4 x\nslabinfo - version: 2.1\nmemory pages=10 peak_pages=20 slab_pages=9 large_pages=1 metadata_pages=0 mmap_live=1 mmap_bytes=8192 mmap_peak_bytes=4096 bump_bytes=0\n# end pid=42\n";
        let r = parse_report(text, 42).unwrap();
        assert_eq!(r.settings, "era=6.4 x");
        assert_eq!(r.peak_bytes, 20 * 4096);
        assert_eq!(r.end_bytes, 10 * 4096);
        assert_eq!(r.mmap_peak_bytes, 4096);
        assert!(parse_report(text, 5).is_none());
    }
}
