//! Real programs under `LD_PRELOAD=libslabworks_preload.so`, on SLAB and on SLUB, must print
//! exactly what they print on glibc malloc: python3 (a large dict through json.dumps and sort),
//! git (init/add/commit/log in a temporary repository with fixed identities and dates), sort
//! (a few MB of seeded random lines), sqlite3 (skipped with a note if not installed), and a
//! C program with threads that allocate, pass pointers through a queue and free on other
//! threads (compiled with `cc` from `tests/c/stress.c`, which also forks while they run and
//! checks the C API). The Rust global-allocator example runs the same kind of stress. A bad
//! `SLABWORKS_*` value must stop a program with one line on stderr and a non-zero exit.
//!
//! The library is found next to the test executable's directory (`target/<profile>/`), where
//! cargo puts the package's cdylib when it builds the integration tests.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::testing::skip;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const ALLOCATORS: [&str; 2] = ["slab", "slub"];

/// `target/<profile>/` (the parent of `deps/`, where this test executable lives).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Builds (or finds up to date) the package's cdylib and the global-allocator example: cargo
/// builds only the rlib for integration tests, and a stale `.so` would test old code.
fn build_artifacts() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let mut c = Command::new(env!("CARGO"));
        c.args([
            "build",
            "-q",
            "-p",
            "preload",
            "--lib",
            "--example",
            "global",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            c.arg("--release");
        }
        let st = c.status().expect("cargo build of the preload cdylib");
        assert!(st.success(), "cargo build -p preload --lib: {st}");
    });
}

fn preload_lib() -> PathBuf {
    build_artifacts();
    let p = profile_dir().join("libslabworks_preload.so");
    assert!(
        p.exists(),
        "{} not found after cargo build (manifest {})",
        p.display(),
        env!("CARGO_MANIFEST_DIR")
    );
    p
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("preload-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Runs `cmd` on glibc (`alloc = None`) or under the preload library on `alloc`.
fn run(mut cmd: Command, alloc: Option<&str>) -> Output {
    cmd.env_remove("LD_PRELOAD");
    for (k, _) in std::env::vars() {
        if k.starts_with("SLABWORKS_") {
            cmd.env_remove(k);
        }
    }
    if let Some(a) = alloc {
        cmd.env("LD_PRELOAD", preload_lib())
            .env("SLABWORKS_ALLOCATOR", a);
    }
    cmd.stdin(Stdio::null());
    let desc = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    assert!(
        out.status.success(),
        "{desc} on {}: {}\nstderr:\n{}",
        alloc.unwrap_or("glibc"),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the same command on glibc and both allocators; stdout must be byte-identical.
fn same_output(what: &str, mut make: impl FnMut() -> Command) -> Vec<u8> {
    let reference = run(make(), None).stdout;
    assert!(!reference.is_empty(), "{what}: no output on glibc");
    for a in ALLOCATORS {
        let t = std::time::Instant::now();
        let got = run(make(), Some(a)).stdout;
        assert!(
            got == reference,
            "{what}: output on {a} differs from glibc ({} vs {} bytes)\nglibc: {}\n{a}: {}",
            got.len(),
            reference.len(),
            String::from_utf8_lossy(&reference[..reference.len().min(400)]),
            String::from_utf8_lossy(&got[..got.len().min(400)])
        );
        eprintln!(
            "{what} on {a}: identical, {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    reference
}

fn have(prog: &str) -> bool {
    Command::new(prog)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The real python3 binary (not a pyenv shim script), so the test runs python itself.
fn python() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    p.exists().then_some(p)
}

const PY_SCRIPT: &str = r#"
import hashlib, json, random
random.seed(12345)
d = {}
for i in range(60000):
    k = "key-%06d-%s" % (i, "".join(random.choice("abcdefghij") for _ in range(random.randint(1, 12))))
    d[k] = {"n": i, "sq": i * i, "tags": [random.random() for _ in range(i % 7)],
            "name": "x" * (i % 50), "nested": {"a": [i, str(i)], "b": None}}
s = json.dumps(d, sort_keys=True)
lines = sorted(s.split(", "), key=lambda x: (len(x), x))
back = json.loads(s)
assert back == d
print(len(d), len(s), len(lines))
print(hashlib.sha256(s.encode()).hexdigest())
print(hashlib.sha256("\n".join(lines).encode()).hexdigest())
print(lines[:3], lines[-1][:60])
"#;

#[test]
fn python_json_dict() {
    let Some(py) = python() else {
        skip("python_json_dict", "python3", "python3 not found");
        return;
    };
    let dir = scratch("python");
    let script = dir.join("dict.py");
    std::fs::write(&script, PY_SCRIPT).unwrap();
    same_output("python3 dict/json", || {
        let mut c = Command::new(&py);
        c.arg(&script).env("PYTHONHASHSEED", "0");
        c
    });
}

fn git(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .args(args)
        .env("HOME", dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Slab Works")
        .env("GIT_AUTHOR_EMAIL", "slab@example.invalid")
        .env("GIT_COMMITTER_NAME", "Slab Works")
        .env("GIT_COMMITTER_EMAIL", "slab@example.invalid")
        .env("GIT_AUTHOR_DATE", "2009-12-03T12:00:00Z")
        .env("GIT_COMMITTER_DATE", "2009-12-03T12:00:00Z")
        .env("TZ", "UTC")
        .env("LC_ALL", "C");
    c
}

#[test]
fn git_init_add_commit_log() {
    if !have("git") {
        skip("git_init_add_commit_log", "git", "git not found");
        return;
    }
    let mut outputs = Vec::new();
    for alloc in [None, Some("slab"), Some("slub")] {
        let dir = scratch(&format!("git-{}", alloc.unwrap_or("glibc")));
        for i in 0..200 {
            let sub = dir.join(format!("d{}", i % 10));
            std::fs::create_dir_all(&sub).unwrap();
            let mut body = String::new();
            for j in 0..(i * 13 % 300) {
                writeln!(body, "line {j} of file {i}").unwrap();
            }
            std::fs::write(sub.join(format!("f{i}.txt")), body).unwrap();
        }
        let mut all = Vec::new();
        let steps: &[&[&str]] = &[
            &["-c", "init.defaultBranch=main", "init", "-q", "."],
            &["add", "."],
            &["commit", "-q", "-m", "first: 200 files"],
            &["rm", "-q", "-r", "d3"],
            &["commit", "-q", "-m", "second: remove d3"],
            &["log", "--stat", "--format=%H %an %ad %s"],
            &["ls-tree", "-r", "HEAD"],
            &["gc", "-q"],
            &["fsck", "--no-progress"],
            &["log", "--oneline"],
        ];
        let t = std::time::Instant::now();
        for s in steps {
            all.extend(run(git(&dir, s), alloc).stdout);
        }
        eprintln!(
            "git on {}: {:.2}s",
            alloc.unwrap_or("glibc"),
            t.elapsed().as_secs_f64()
        );
        outputs.push((alloc.unwrap_or("glibc"), all));
    }
    assert!(!outputs[0].1.is_empty());
    for (name, out) in &outputs[1..] {
        assert!(
            *out == outputs[0].1,
            "git output on {name} differs from glibc:\n{}\nvs\n{}",
            String::from_utf8_lossy(out),
            String::from_utf8_lossy(&outputs[0].1)
        );
    }
}

/// A few MB of seeded random lines.
fn random_lines(path: &Path, lines: usize) {
    let mut s = 0x1234_5678_u64;
    let mut text = String::with_capacity(lines * 40);
    for _ in 0..lines {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = 4 + (s >> 59) as usize * 3;
        let mut x = s;
        for _ in 0..len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push((b'a' + ((x >> 33) % 26) as u8) as char);
        }
        text.push(' ');
        text.push_str(&(s >> 40).to_string());
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn sort_random_lines() {
    let dir = scratch("sort");
    let input = dir.join("lines.txt");
    random_lines(&input, 120_000);
    let size = std::fs::metadata(&input).unwrap().len();
    assert!(size > 3 << 20, "a few MB of input ({size} bytes)");
    same_output("sort", || {
        let mut c = Command::new("sort");
        c.arg("--parallel=2")
            .arg("-S")
            .arg("64M")
            .arg(&input)
            .env("LC_ALL", "C");
        c
    });
    same_output("sort -k2n", || {
        let mut c = Command::new("sort");
        c.args(["-k2,2n", "-k1,1"]).arg(&input).env("LC_ALL", "C");
        c
    });
}

#[test]
fn sqlite3_if_present() {
    if !have("sqlite3") {
        skip("sqlite3_if_present", "sqlite3", "sqlite3 is not installed");
        return;
    }
    let dir = scratch("sqlite");
    let sql = "
        CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL, blob BLOB);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000)
          INSERT INTO t SELECT x, printf('name-%05d-%s', x % 977, hex(x * 7919)), x * 0.5,
                               zeroblob(x % 300) FROM c;
        CREATE INDEX t_name ON t(name);
        SELECT count(*), sum(v), sum(length(blob)), count(DISTINCT name) FROM t;
        SELECT name, count(*), max(id) FROM t GROUP BY name ORDER BY count(*) DESC, name LIMIT 5;
        DELETE FROM t WHERE id % 3 = 0;
        VACUUM;
        SELECT count(*), group_concat(id) FROM (SELECT id FROM t ORDER BY name, id LIMIT 20);
    ";
    let mut n = 0;
    same_output("sqlite3", || {
        n += 1;
        let db = dir.join(format!("db{n}.sqlite"));
        let mut c = Command::new("sqlite3");
        c.arg(db).arg(sql);
        c
    });
}

/// The C stress/API program, compiled once per test process.
fn c_program() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/stress.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("slabworks-stress");
        let st = Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-pthread", "-o"])
            .arg(&out)
            .arg(&src)
            .status();
        match st {
            Ok(s) if s.success() => Some(out),
            Ok(s) => panic!("cc failed on {}: {s}", src.display()),
            Err(e) => {
                eprintln!("note: no C compiler ({e})");
                None
            }
        }
    })
    .as_deref()
}

#[test]
fn c_cross_thread_free_stress_with_fork() {
    let Some(bin) = c_program() else {
        skip(
            "c_cross_thread_free_stress_with_fork",
            "cc",
            "no C compiler",
        );
        return;
    };
    let out = same_output("C stress", || {
        let mut c = Command::new(bin);
        c.args(["stress", "3", "3", "3", "6000"]);
        c
    });
    assert!(String::from_utf8_lossy(&out).contains("blocks=54000"));
}

#[test]
fn fork_while_other_threads_allocate() {
    let Some(bin) = c_program() else {
        skip("fork_while_other_threads_allocate", "cc", "no C compiler");
        return;
    };
    let out = same_output("C forkloop", || {
        let mut c = Command::new(bin);
        c.args(["forkloop", "100"]);
        c
    });
    assert_eq!(String::from_utf8_lossy(&out), "forkloop forks=100 hung=0\n");
}

#[test]
fn c_allocation_api() {
    let Some(bin) = c_program() else {
        skip("c_allocation_api", "cc", "no C compiler");
        return;
    };
    let out = same_output("C API", || {
        let mut c = Command::new(bin);
        c.arg("api");
        c
    });
    assert_eq!(String::from_utf8_lossy(&out).lines().count(), 11);
}

#[test]
fn fake_numa_and_options_run_the_stress() {
    let Some(bin) = c_program() else {
        skip(
            "fake_numa_and_options_run_the_stress",
            "cc",
            "no C compiler",
        );
        return;
    };
    let reference = run(
        {
            let mut c = Command::new(bin);
            c.args(["stress", "1", "2", "2", "4000"]);
            c
        },
        None,
    )
    .stdout;
    for (alloc, var, val) in [
        (
            "slab",
            "SLABWORKS_SLAB",
            "limit=54 batchcount=27 shared=8 stats",
        ),
        (
            "slub",
            "SLABWORKS_SLUB",
            "era=2.6.32 slub_max_order=1 hardened stats",
        ),
    ] {
        let mut c = Command::new(bin);
        c.args(["stress", "1", "2", "2", "4000"]);
        let mut c2 = run_prepared(c, alloc);
        c2.env("SLABWORKS_FAKE_NUMA", "2").env(var, val);
        let out = c2.output().unwrap();
        assert!(
            out.status.success(),
            "{alloc} {var}={val}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, reference, "{alloc} {var}={val}");
    }
}

/// A command with LD_PRELOAD set (and inherited SLABWORKS_* cleared), not yet run.
fn run_prepared(mut cmd: Command, alloc: &str) -> Command {
    for (k, _) in std::env::vars() {
        if k.starts_with("SLABWORKS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("LD_PRELOAD", preload_lib())
        .env("SLABWORKS_ALLOCATOR", alloc)
        .stdin(Stdio::null());
    cmd
}

#[test]
fn slabinfo_report_at_exit() {
    let Some(bin) = c_program() else {
        skip("slabinfo_report_at_exit", "cc", "no C compiler");
        return;
    };
    let dir = scratch("report");
    for alloc in ALLOCATORS {
        let mut c = run_prepared(Command::new(bin), alloc);
        c.args(["stress", "1", "2", "2", "2000"])
            .env("SLABWORKS_STATS", "1")
            .env("SLABWORKS_SLABINFO", dir.join(format!("{alloc}-%p.txt")));
        let child = c.spawn().unwrap();
        let pid = child.id();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{alloc}: {}", out.status);
        let text = std::fs::read_to_string(dir.join(format!("{alloc}-{pid}.txt")))
            .unwrap_or_else(|e| panic!("{alloc}: no report: {e}"));
        assert!(text.starts_with(&format!("# slabworks pid={pid} allocator={alloc}")));
        assert!(text.contains("slabinfo - version: 2.1"), "{text}");
        let class = if alloc == "slab" {
            "size-64 "
        } else {
            "kmalloc-64 "
        };
        let row = text
            .lines()
            .find(|l| l.starts_with(class))
            .unwrap_or_else(|| panic!("{alloc}: no {class} row in\n{text}"));
        let num_objs: usize = row.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(num_objs > 0, "{alloc}: the program used {class}: {row}");
        assert!(text.lines().any(|l| l.starts_with("stat ")), "{text}");
        let mem = text
            .lines()
            .find(|l| l.starts_with("memory pages="))
            .unwrap();
        let pages: usize = mem
            .split_whitespace()
            .find_map(|f| f.strip_prefix("pages="))
            .unwrap()
            .parse()
            .unwrap();
        assert!(pages > 0, "{mem}");
        assert!(text.trim_end().ends_with(&format!("# end pid={pid}")));
    }
}

#[test]
fn bad_settings_stop_the_program_with_one_line() {
    let Some(bin) = c_program() else {
        skip(
            "bad_settings_stop_the_program_with_one_line",
            "cc",
            "no C compiler",
        );
        return;
    };
    for (var, val, expect) in [
        ("SLABWORKS_ALLOCATOR", "jemalloc", "expected slab or slub"),
        ("SLABWORKS_FAKE_NUMA", "two", "node count"),
        ("SLABWORKS_SLUB", "era=3.0", "era must be"),
        ("SLABWORKS_SLAB", "limit=4", "together"),
        ("SLABWORKS_STATS", "perhaps", "expected 0 or 1"),
    ] {
        let mut c = run_prepared(Command::new(bin), "slub");
        c.arg("api").env(var, val);
        let out = c.output().unwrap();
        assert!(!out.status.success(), "{var}={val} must fail");
        assert!(
            out.stdout.is_empty(),
            "{var}={val}: the program must not run"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{var}={val}: one line, got {err:?}");
        assert!(
            err.starts_with(&format!("slabworks: {var}=\"{val}\": ")) && err.contains(expect),
            "{var}={val}: {err:?}"
        );
    }
}

#[test]
fn freeing_a_foreign_pointer_aborts_with_one_line() {
    let Some(bin) = c_program() else {
        skip(
            "freeing_a_foreign_pointer_aborts_with_one_line",
            "cc",
            "no C compiler",
        );
        return;
    };
    for alloc in ALLOCATORS {
        let mut c = run_prepared(Command::new(bin), alloc);
        c.arg("badfree");
        let out = c.output().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(SIGABRT), "{alloc}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("slabworks ({alloc}): free(0x"))
                && err.contains("invalid pointer"),
            "{alloc}: {err:?}"
        );
    }
}

const SIGABRT: i32 = 6;

#[test]
fn rust_global_allocator_example() {
    build_artifacts();
    let exe = profile_dir().join("examples").join("global");
    let mut outs = Vec::new();
    for alloc in ALLOCATORS {
        let mut c = Command::new(&exe);
        c.args(["2", "3", "3000"]);
        for (k, _) in std::env::vars() {
            if k.starts_with("SLABWORKS_") {
                c.env_remove(k);
            }
        }
        c.env_remove("LD_PRELOAD").env("SLABWORKS_ALLOCATOR", alloc);
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{alloc}: {}\n{err}", out.status);
        assert!(err.contains(&format!("allocator={alloc} ")), "{err}");
        outs.push(out.stdout);
    }
    assert_eq!(outs[0], outs[1]);
    assert!(String::from_utf8_lossy(&outs[0]).starts_with("global rounds=2 threads=3 blocks=18000"));
}
