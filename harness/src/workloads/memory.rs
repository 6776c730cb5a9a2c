//! Memory overhead: a dedicated cache's working set grown to N live objects with seeded random
//! frees, then 90 % freed at random, then `kmem_cache_shrink`-ed, then emptied and destroyed.
//! Overhead = bytes held ÷ bytes live.
//!
//! Every (allocator, size) is measured in a fresh child process (the harness binary re-run with
//! [`ENV_CHILD`] set), so nothing an earlier measurement left in a process-wide heap is reused
//! or counted. In the child, the kernel's own accounting is read from `/proc/self/smaps_rollup`
//! before the allocator is created and at every sample: `held_measure = smaps_anon` rows carry
//! the growth of `Anonymous` (with the `Rss` and `Pss_Anon` growth in the note) — the one column
//! that compares all allocators. Beside it, the allocator's exact count where it has one:
//! `provider` (slab allocators: the page provider's bytes, metadata included) and `mallinfo2`
//! (glibc: `arena + hblkhd`, growth since the same start). mimalloc and jemalloc have no exact
//! count in this build (their process-RSS rows of before are gone: smaps is the better form).
//! Objects the allocator still counts as in use though the workload freed them (SLAB's per-CPU,
//! shared and alien arrays; SLUB's CPU slabs) are reported as `queued_bytes`.
//!
//! **Census** (the memory side Lameter raised against sheaves): in the parent, for
//! each slab allocator, one pinned worker per CPU drives a fresh cache through [`CENSUS_PHASES`]
//! and after each phase (workers joined) the allocator counts the objects its per-CPU and
//! per-node caches hold ([`crate::alloc::CensusPart`]: SLAB's per-CPU, shared and alien
//! arrays; 6.4 SLUB's CPU slabs and per-CPU partial slabs; sheaves' `main`/`spare` and the
//! barns' full/empty sheaves). Rows: phase `census_<phase>`, `metric` = `census:<part>`,
//! `value` = objects, `queued_bytes` = objects × size, the note has the containers and
//! `active_minus_live` (slabinfo `active_objs` − live objects, which every part together must
//! equal on a quiescent cache).

use super::{oom, validate, Ctx, Rng, Workload};
use crate::alloc::{BenchAllocator, BenchCache, HeldMeasure};
use crate::placement::run_pinned;
use crate::record::Row;
use common::Topology;

/// Samples taken while growing.
const SAMPLES: usize = 20;

/// The census phases, in order, with what each does on every CPU at once (one pinned worker
/// per CPU, a fresh cache, a working set of [`CENSUS_LIVE`] objects per CPU kept live
/// throughout):
/// - `rest`: the working set, then [`CENSUS_OPS`] alloc+free pairs in LIFO batches of 16 —
///   ordinary use, then idle;
/// - `burst`: [`CENSUS_OPS`] objects allocated, then all freed (in allocation order) by the
///   same CPU;
/// - `burst_remote`: [`CENSUS_OPS`] allocated, then freed by the next CPU (the last CPU's by
///   the first: the other node's where there are two);
/// - `shrunk`: `kmem_cache_shrink` (working sets still live).
pub(crate) const CENSUS_PHASES: [&str; 4] = ["rest", "burst", "burst_remote", "shrunk"];
/// Objects each CPU keeps live through the census.
pub(crate) const CENSUS_LIVE: usize = 4096;
/// Objects per CPU in each census burst.
pub(crate) const CENSUS_OPS: usize = 20_000;
/// [`CENSUS_LIVE`] and [`CENSUS_OPS`] of a `--quick` run.
pub(crate) const CENSUS_QUICK: (usize, usize) = (512, 2000);

/// Set (to `ALLOCATOR:SIZE`) in the child process that measures one allocator and size.
pub(crate) const ENV_CHILD: &str = "HARNESS_MEMORY_CHILD";

/// Object sizes measured (the first requested size ≤ 4 KiB, default 64 B).
pub(crate) fn sizes(ctx: &Ctx<'_>) -> Vec<usize> {
    ctx.cfg.memory_sizes.clone()
}

/// The kernel's accounting of this process (`/proc/self/smaps_rollup`), in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Smaps {
    /// `Rss`.
    pub rss: u64,
    /// `Pss_Anon` (0 on kernels before 5.9, which lack the field).
    pub pss_anon: u64,
    /// `Anonymous`.
    pub anon: u64,
}

/// Parses the fields of [`Smaps`] out of smaps_rollup text.
pub(crate) fn parse_smaps(text: &str) -> Option<Smaps> {
    let mut s = Smaps::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let kb = || -> Option<u64> {
            v.split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .map(|x| x * 1024)
        };
        match k {
            "Rss" => s.rss = kb()?,
            "Pss_Anon" => s.pss_anon = kb()?,
            "Anonymous" => {
                s.anon = kb()?;
                seen = true;
            }
            _ => {}
        }
    }
    seen.then_some(s)
}

/// Reads `/proc/self/smaps_rollup` into a stack buffer (no heap allocation, so the glibc
/// baseline's own heap is not disturbed by the measurement).
pub(crate) fn smaps() -> Result<Smaps, String> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let mut f = std::fs::File::open("/proc/self/smaps_rollup")
        .map_err(|e| format!("/proc/self/smaps_rollup (Linux 4.14+ needed): {e}"))?;
    let mut n = 0;
    loop {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if n == buf.len() {
                    break;
                }
            }
            Err(e) => return Err(format!("/proc/self/smaps_rollup: {e}")),
        }
    }
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(parse_smaps)
        .ok_or_else(|| "/proc/self/smaps_rollup: no Anonymous field".to_string())
}

/// One sample of the life cycle, plain numbers.
#[derive(Clone, Copy)]
struct Sample {
    phase: &'static str,
    live_n: usize,
    step: usize,
    k: Smaps,
    held: usize,
    m: HeldMeasure,
    queued: u64,
}

/// Runs the working-set life cycle for each size: in the parent, one child process per size;
/// in a child ([`ENV_CHILD`] set), the measurement itself.
pub(crate) fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    if std::env::var_os(ENV_CHILD).is_some() {
        return run_here(ctx, make);
    }
    let name = make(ctx.topo)?.name();
    let mut rows = Vec::new();
    for &size in &sizes(ctx) {
        rows.extend(spawn_child(ctx, name, size)?);
        rows.extend(census(ctx, make, size)?);
        ctx.progress.inc(1);
    }
    Ok(rows)
}

/// The census (module documentation) for one size; no rows for an allocator without one.
pub(crate) fn census<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
    size: usize,
) -> Result<Vec<Row>, String> {
    use std::sync::Mutex;
    let a = make(ctx.topo)?;
    let c = a.create_cache(&format!("census-{size}"), size, true)?;
    if a.census(c).is_empty() {
        a.destroy_cache(c)?;
        return Ok(Vec::new());
    }
    let cpus = &ctx.cfg.cpus;
    let n = cpus.len();
    let (live_per_cpu, ops) = if ctx.cfg.quick {
        CENSUS_QUICK
    } else {
        (CENSUS_LIVE, CENSUS_OPS)
    };
    let live: Vec<Mutex<Vec<usize>>> = (0..n).map(|_| Mutex::new(Vec::new())).collect();
    let handoff: Vec<Mutex<Vec<usize>>> = (0..n).map(|_| Mutex::new(Vec::new())).collect();
    let failed = std::sync::atomic::AtomicBool::new(false);
    let alloc = |v: &mut Vec<usize>| {
        let p = a.cache_alloc(c);
        if p.is_null() {
            failed.store(true, std::sync::atomic::Ordering::Relaxed);
        } else {
            v.push(p as usize);
        }
    };
    let free_all = |v: &mut Vec<usize>, lifo: bool| {
        let f = |p: usize| {
            // SAFETY: an object of `c` allocated by this census, freed once.
            unsafe { a.cache_free(c, p as *mut u8) }
        };
        if lifo {
            while let Some(p) = v.pop() {
                f(p);
            }
        } else {
            v.drain(..).for_each(f);
        }
    };
    let mut rows = Vec::new();
    for phase in CENSUS_PHASES {
        match phase {
            "rest" => {
                run_pinned(cpus, ctx.topo, |w| {
                    w.barrier.wait();
                    let mut mine = Vec::with_capacity(live_per_cpu);
                    for _ in 0..live_per_cpu {
                        alloc(&mut mine);
                    }
                    let mut batch = Vec::with_capacity(16);
                    for _ in 0..ops / 16 {
                        for _ in 0..16 {
                            alloc(&mut batch);
                        }
                        free_all(&mut batch, true);
                    }
                    *live[w.index].lock().expect("live") = mine;
                })?;
            }
            "burst" => {
                run_pinned(cpus, ctx.topo, |w| {
                    w.barrier.wait();
                    let mut v = Vec::with_capacity(ops);
                    for _ in 0..ops {
                        alloc(&mut v);
                    }
                    free_all(&mut v, false);
                })?;
            }
            "burst_remote" => {
                run_pinned(cpus, ctx.topo, |w| {
                    w.barrier.wait();
                    let mut v = Vec::with_capacity(ops);
                    for _ in 0..ops {
                        alloc(&mut v);
                    }
                    *handoff[(w.index + 1) % n].lock().expect("handoff") = v;
                })?;
                run_pinned(cpus, ctx.topo, |w| {
                    let mut v = std::mem::take(&mut *handoff[w.index].lock().expect("handoff"));
                    w.barrier.wait();
                    free_all(&mut v, false);
                })?;
            }
            _ => a.shrink(c),
        }
        if failed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(oom(a.name(), size));
        }
        let live_n: usize = live.iter().map(|v| v.lock().expect("live").len()).sum();
        let parts = a.census(c);
        let unused = a
            .cache_active_objects(c)
            .map_or(-1, |(active, _)| active as i64 - live_n as i64);
        for p in parts {
            let mut r = ctx.row(&a, "cache", Workload::Memory, &format!("census_{phase}"));
            r.size = size;
            r.threads = n;
            r.ops = ops as u64;
            r.metric = format!("census:{}", p.part);
            r.value = p.objects as f64;
            r.queued_bytes = p.objects * size as u64;
            r.bytes_live = (live_n * size) as u64;
            r.note = format!(
                "containers={} live_objects={live_n} active_minus_live={unused} cpus={n}",
                p.containers
            );
            rows.push(r);
        }
    }
    for v in &live {
        free_all(&mut v.lock().expect("live"), false);
    }
    a.shrink(c);
    a.destroy_cache(c)?;
    validate(&a, Workload::Memory)?;
    Ok(rows)
}

/// Runs this harness again with the same arguments and [`ENV_CHILD`] = `name:size`; the child
/// prints its rows as CSV on stdout. The rows get this run's facts.
fn spawn_child(ctx: &Ctx<'_>, name: &str, size: usize) -> Result<Vec<Row>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("memory: no harness binary: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(ENV_CHILD, format!("{name}:{size}"))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("memory: cannot start the child process: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "memory child for {name} {size} B failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let mut r = csv::Reader::from_reader(out.stdout.as_slice());
    let mut rows = Vec::new();
    for row in r.deserialize::<Row>() {
        let row = row.map_err(|e| format!("memory child output: {e}"))?;
        let mut x = Row::new(ctx.meta);
        x.allocator = row.allocator;
        x.api = row.api;
        x.settings = row.settings;
        x.workload = row.workload;
        x.phase = row.phase;
        x.size = row.size;
        x.threads = row.threads;
        x.cpu = row.cpu;
        x.node = row.node;
        x.repetition = row.repetition;
        x.ops = row.ops;
        x.queued_bytes = row.queued_bytes;
        x.note = row.note;
        rows.push(x.memory(row.bytes_live, row.bytes_held, &row.held_measure));
    }
    Ok(rows)
}

/// One measurement: a worker pinned to `cpu` warms itself up (its stack, its first heap use,
/// the bookkeeping vector) and waits; the baseline is read; the allocator is made; then the
/// worker runs the life cycle. So the smaps growth holds the allocator and its objects, and
/// as little of the harness as can be kept out.
#[allow(clippy::type_complexity)]
fn isolated<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
    size: usize,
    cpu: usize,
) -> Result<(std::sync::OnceLock<A>, Result<Vec<Row>, String>), String> {
    use std::sync::{Barrier, OnceLock};
    let slot: OnceLock<A> = OnceLock::new();
    let base: OnceLock<Smaps> = OnceLock::new();
    let barrier = Barrier::new(2);
    let res = std::thread::scope(|sc| {
        let h = sc.spawn(|| -> Result<Vec<Row>, String> {
            let pinned = common::pin::pin_to_cpu(cpu);
            // The bookkeeping vector, made and touched before the baseline; and one small
            // heap allocation so the thread's own malloc arena exists before it too.
            // (`vec![0; n]` would be calloc: fresh zero pages, not touched until pushed to.)
            let mut live: Vec<usize> = vec![1; ctx.cfg.live_objects];
            std::hint::black_box(&mut live);
            live.clear();
            let warm = std::hint::black_box(format!("warm {cpu}"));
            drop(warm);
            barrier.wait();
            barrier.wait();
            pinned.map_err(|e| format!("memory worker: {e}"))?;
            let (Some(a), Some(&b)) = (slot.get(), base.get()) else {
                return Err("memory: no allocator or baseline".into());
            };
            life_cycle(ctx, a, size, &mut live, b)
        });
        barrier.wait();
        let made = smaps().and_then(|b| {
            let _ = base.set(b);
            make(ctx.topo).map(|a| {
                let _ = slot.set(a);
            })
        });
        barrier.wait();
        let r = h
            .join()
            .unwrap_or_else(|_| Err("memory worker panicked".into()));
        made.map(|()| r)
    })?;
    Ok((slot, res))
}

/// The child's side of [`run`]: `ctx.cfg.memory_sizes` holds the one size.
fn run_here<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &size in &sizes(ctx) {
        let cpu = ctx.cfg.cpus[0];
        let r = isolated(ctx, make, size, cpu)?;
        validate(r.0.get().expect("made"), Workload::Memory)?;
        let out = [r.1];
        let mut r = out.into_iter().next().expect("one worker")?;
        for row in &mut r {
            row.cpu = cpu as i64;
            row.node = ctx.topo.cpu_to_node(cpu) as i64;
        }
        rows.extend(r);
    }
    Ok(rows)
}

fn life_cycle<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    a: &A,
    size: usize,
    live: &mut Vec<usize>,
    smaps_base: Smaps,
) -> Result<Vec<Row>, String> {
    let n = ctx.cfg.live_objects;
    // The allocator's own count: provider bytes are this instance's alone (from 0); glibc's
    // mallinfo2 is process-wide, so its growth since the smaps baseline (a fresh process: only
    // the harness's own start-up is in it).
    let (own_base, _) = a.held_bytes();
    let cache = a.create_cache(&format!("memtest-{size}"), size, true)?;
    let mut rng = Rng::new(ctx.cfg.seed ^ size as u64);
    let api = match cache {
        BenchCache::Slab(..) => "cache",
        BenchCache::Size(_) => "malloc",
    };
    // Samples are plain numbers in a vector reserved up front; the rows (strings) are made
    // after the life cycle, so the harness's own heap use stays out of the smaps growth.
    let mut samples: Vec<Sample> = Vec::with_capacity(SAMPLES * 2 + 16);
    let sample = |samples: &mut Vec<Sample>, phase: &'static str, live_n: usize, step: usize| {
        let k = smaps().unwrap_or_default();
        let (held, m) = a.held_bytes();
        let queued = a.cache_active_objects(cache).map_or(0, |(active, _)| {
            (active.saturating_sub(live_n) * size) as u64
        });
        samples.push(Sample {
            phase,
            live_n,
            step,
            k,
            held,
            m,
            queued,
        });
    };
    let every = (n / SAMPLES).max(1);
    let mut step = 0usize;
    // Grow: 3 of 4 operations allocate, 1 frees a random live object.
    while live.len() < n {
        step += 1;
        if live.is_empty() || rng.below(4) != 0 {
            let p = a.cache_alloc(cache);
            if p.is_null() {
                return Err(super::oom(a.name(), size));
            }
            // SAFETY: a fresh object of `size` bytes: write its first and last byte as a user
            // would, so RSS-measured baselines really commit the memory.
            unsafe {
                p.write(1);
                p.add(size - 1).write(1);
            }
            live.push(p as usize);
            if live.len() % every == 0 {
                sample(&mut samples, "grow", live.len(), step);
            }
        } else {
            let i = rng.below(live.len());
            let p = live.swap_remove(i);
            // SAFETY: a live object of this cache, freed once.
            unsafe { a.cache_free(cache, p as *mut u8) };
        }
    }
    // Free 90 % at random.
    let keep = n / 10;
    while live.len() > keep {
        let i = rng.below(live.len());
        let p = live.swap_remove(i);
        // SAFETY: freed once.
        unsafe { a.cache_free(cache, p as *mut u8) };
    }
    sample(&mut samples, "freed90", live.len(), step);
    a.shrink(cache);
    sample(&mut samples, "shrunk", live.len(), step);
    for p in live.drain(..) {
        // SAFETY: freed once.
        unsafe { a.cache_free(cache, p as *mut u8) };
    }
    a.shrink(cache);
    sample(&mut samples, "empty", 0, step);
    a.destroy_cache(cache)?;
    sample(&mut samples, "destroyed", 0, step);
    let mut rows = Vec::new();
    for (i, x) in samples.iter().enumerate() {
        let mut r = ctx.row(a, api, Workload::Memory, x.phase);
        r.size = size;
        r.threads = 1;
        r.ops = x.step as u64;
        r.queued_bytes = x.queued;
        let live_b = (x.live_n * size) as u64;
        let tag = if x.phase == "grow" {
            format!(" sample={i}")
        } else {
            String::new()
        };
        r.note = format!(
            "live_objects={} rss_growth={} pss_anon_growth={}{tag}",
            x.live_n,
            x.k.rss.saturating_sub(smaps_base.rss),
            x.k.pss_anon.saturating_sub(smaps_base.pss_anon)
        );
        let own = match x.m {
            HeldMeasure::Provider => Some(x.held as u64),
            HeldMeasure::Mallinfo2 => Some(x.held.saturating_sub(own_base) as u64),
            HeldMeasure::Rss => None,
        };
        if let Some(own) = own {
            let mut o = r.clone();
            o.note = format!("live_objects={}{tag}", x.live_n);
            rows.push(o.memory(live_b, own, x.m.name()));
        }
        let anon = x.k.anon.saturating_sub(smaps_base.anon);
        rows.push(r.memory(live_b, anon, "smaps_anon"));
    }
    Ok(rows)
}

/// Census parts held per CPU (the rest but `cpu_max` and `barn_empty` are per node).
const PER_CPU_PARTS: [&str; 5] = [
    "cpu_array",
    "cpu_slab",
    "cpu_partial",
    "sheaf_main",
    "sheaf_spare",
];
/// Census parts held per node.
const PER_NODE_PARTS: [&str; 3] = ["shared_array", "alien_array", "barn_full"];

/// One allocator's census after one phase, from the rows.
#[derive(Default)]
struct CensusOf {
    size: usize,
    cpus: usize,
    per_cpu: f64,
    per_node: f64,
    cpu_max: Option<f64>,
    live: usize,
    parts: Vec<(String, f64, String)>,
    active_minus_live: Option<i64>,
}

fn note_field<'a>(note: &'a str, key: &str) -> Option<&'a str> {
    note.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The census rows grouped by (allocator, size, phase), phases in [`CENSUS_PHASES`] order.
fn census_table(rows: &[Row], allocs: &[String]) -> Vec<(String, &'static str, CensusOf)> {
    let mut out = Vec::new();
    for a in allocs {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                &r.allocator == a && r.workload == "memory" && r.metric.starts_with("census:")
            })
            .collect();
        let sizes: std::collections::BTreeSet<usize> = mine.iter().map(|r| r.size).collect();
        for size in sizes {
            for ph in CENSUS_PHASES {
                let phase = format!("census_{ph}");
                let sel: Vec<&&Row> = mine
                    .iter()
                    .filter(|r| r.size == size && r.phase == phase)
                    .collect();
                if sel.is_empty() {
                    continue;
                }
                let mut c = CensusOf {
                    size,
                    ..CensusOf::default()
                };
                for r in sel {
                    let part = r.metric.trim_start_matches("census:");
                    c.cpus = r.threads;
                    c.live = note_field(&r.note, "live_objects")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    c.active_minus_live = note_field(&r.note, "active_minus_live")
                        .and_then(|v| v.parse().ok())
                        .filter(|v: &i64| *v >= 0);
                    if PER_CPU_PARTS.contains(&part) {
                        c.per_cpu += r.value;
                    } else if PER_NODE_PARTS.contains(&part) {
                        c.per_node += r.value;
                    } else if part == "cpu_max" {
                        c.cpu_max = Some(r.value);
                    }
                    let k = note_field(&r.note, "containers").unwrap_or("?").to_string();
                    c.parts.push((part.to_string(), r.value, k));
                }
                out.push((a.clone(), ph, c));
            }
        }
    }
    out
}

/// The census section of `summary.md` (empty without census rows).
pub(crate) fn census_summary(rows: &[Row], allocs: &[String]) -> String {
    use std::fmt::Write;
    let t = census_table(rows, allocs);
    let mut s = String::new();
    if t.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "## memory census: objects held in per-CPU and per-node caches
"
    );
    let ops = rows
        .iter()
        .find(|r| r.metric.starts_with("census:"))
        .map_or(0, |r| r.ops);
    let live = t[0].2.live / t[0].2.cpus.max(1);
    let _ = writeln!(
        s,
        "Objects allocated on their slabs but free for users, counted by the allocator after each phase \
         (workers joined), one pinned worker per CPU, a fresh cache, {live} objects per CPU \
         kept live throughout. `rest`: the working set, then {ops} alloc+free pairs in LIFO \
         batches of 16 per CPU, then idle; `burst`: {ops} objects per CPU allocated then \
         freed by the same CPU; `burst_remote`: freed by the next CPU instead; `shrunk`: after \
         `kmem_cache_shrink`. Per-CPU caches: SLAB's per-CPU arrays, 6.4 SLUB's CPU slabs and \
         per-CPU partial slabs (their free objects), sheaves' `main` + `spare`; per-node: SLAB's \
         shared + alien arrays, the barns' full sheaves. Containers in brackets: arrays, slabs \
         or sheaves (`sheaf_main`: every sheaf the CPUs hold). The last column checks the \
         census against slabinfo (`active_objs` − live objects): they must agree.\n"
    );
    let _ = writeln!(
        s,
        "| allocator | size | phase | per-CPU | per-node | total | KiB | most on one CPU | parts [containers] | = active − live |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for (a, ph, c) in &t {
        let total = c.per_cpu + c.per_node;
        let parts: Vec<String> = c
            .parts
            .iter()
            .filter(|(p, _, _)| p != "cpu_max")
            .map(|(p, v, k)| format!("{p} {v:.0} [{k}]"))
            .collect();
        let check = match c.active_minus_live {
            Some(v) if (v as f64 - total).abs() < 0.5 => "yes".to_string(),
            Some(v) => format!("**no: {v}**"),
            None => "–".to_string(),
        };
        let _ = writeln!(
            s,
            "| {a} | {} | {ph} | {:.0} | {:.0} | {total:.0} | {:.1} | {} | {} | {check} |",
            c.size,
            c.per_cpu,
            c.per_node,
            total * c.size as f64 / 1024.0,
            c.cpu_max
                .map_or_else(|| "–".to_string(), |v| format!("{v:.0}")),
            parts.join(", ")
        );
    }
    let _ = writeln!(s);
    s
}

/// `census.png`: objects held per CPU, per node, and in all, by census phase.
pub(crate) fn census_plot(
    rows: &[Row],
    dir: &std::path::Path,
) -> Result<Vec<std::path::PathBuf>, String> {
    use crate::analysis::Stat;
    use crate::plot::{color_of, Panel, Series};
    let allocs = crate::analysis::allocators(rows);
    let t = census_table(rows, &allocs);
    if t.is_empty() {
        return Ok(Vec::new());
    }
    let size = t[0].2.size;
    let cpus = t[0].2.cpus;
    let series = |f: &dyn Fn(&CensusOf) -> f64| -> Vec<Series> {
        allocs
            .iter()
            .filter_map(|a| {
                let points: Vec<(f64, Stat)> = t
                    .iter()
                    .filter(|(al, _, c)| al == a && c.size == size)
                    .filter_map(|(_, ph, c)| {
                        let x = CENSUS_PHASES.iter().position(|p| p == ph)? as f64;
                        let v = f(c);
                        Some((
                            x,
                            Stat {
                                med: v,
                                min: v,
                                max: v,
                                n: 1,
                            },
                        ))
                    })
                    .collect();
                (!points.is_empty()).then(|| Series {
                    label: a.clone(),
                    color: color_of(a),
                    points,
                })
            })
            .collect()
    };
    let cats: Vec<String> = CENSUS_PHASES.iter().map(|p| (*p).to_string()).collect();
    let panels = vec![
        Panel::new(
            format!("Census: objects in per-CPU caches ({size} B, {cpus} CPUs)"),
            "phase",
            "objects (all CPUs)",
            series(&|c| c.per_cpu),
        )
        .categories(cats.clone()),
        Panel::new(
            format!("Census: objects in per-node caches ({size} B)"),
            "phase",
            "objects (all nodes)",
            series(&|c| c.per_node),
        )
        .categories(cats.clone()),
        Panel::new(
            format!("Census: all objects held, KiB ({size} B)"),
            "phase",
            "KiB of objects held",
            series(&|c| (c.per_cpu + c.per_node) * c.size as f64 / 1024.0),
        )
        .categories(cats),
    ];
    crate::plot::draw_figure(dir, "census", &panels, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smaps_rollup_fields_are_parsed() {
        let text = "55d0c0000000-7ffd00000000 ---p 00000000 00:00 0                  [rollup]\n\
                    Rss:               12345 kB\nPss:               12000 kB\nPss_Anon:          10000 kB\n\
                    Pss_File:           2000 kB\nAnonymous:         10001 kB\nSwap:                  0 kB\n";
        let s = parse_smaps(text).unwrap();
        assert_eq!(s.rss, 12345 * 1024);
        assert_eq!(s.pss_anon, 10000 * 1024);
        assert_eq!(s.anon, 10001 * 1024);
        assert!(parse_smaps("Rss: 1 kB\n").is_none(), "no Anonymous field");
        assert!(parse_smaps("Anonymous: x kB\n").is_none(), "bad number");
    }

    #[test]
    fn this_process_has_smaps() {
        let s = smaps().unwrap();
        assert!(s.rss > 0 && s.anon > 0 && s.anon <= s.rss);
    }
}
