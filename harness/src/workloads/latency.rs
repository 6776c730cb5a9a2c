//! Per-operation latency distributions: every operation timed on its own, into an HDR histogram,
//! so the tail a mean hides (SLAB's batch refills and flushes, SLUB's slab switches and partial
//! list work) shows as p99 … p99.99 and max.
//!
//! Phases (per allocator × size; each repetition a fresh instance, histograms merged over the
//! repetitions):
//! - `A_alloc`: N kmallocs in a row, each timed; `B_free`: the N kfrees, each timed; `C_pair`:
//!   N alloc+free pairs, each pair timed as one operation — on the first CPU, `rounds` times
//!   after one untimed round (as `slab_test`, so first-touch page faults are not counted);
//! - `X_alloc` / `X_remote_free` (two CPUs or more): a producer on the first CPU allocates, hands
//!   the objects over in batches of 256 to a consumer on the second CPU, which frees them —
//!   every producer alloc and every consumer (remote) free timed.
//!
//! ## Timing
//! One sample = `lfence; rdtsc; lfence` … operation … `rdtscp; lfence` (the fences keep the
//! operation between the two reads). The timer's own cost is calibrated on the same pinned
//! thread just before each measurement: the median of 20 000 empty begin/end pairs; that
//! median is subtracted from every sample (saturating at 0) and written as a `timer` row, so a
//! reader can see its size (≈ 30–40 cycles on the lead's VM, about one fast-path pair).
//! Samples go to a `Vec<u32>` sized before the timed loop (no allocation, no histogram access
//! inside it); the histogram (`hdrhistogram`, 3 significant digits, 1 … 2^36 cycles) is filled
//! from that vector after the loop.
//!
//! ## Where the tail comes from
//! The slab allocators' stat counters (SLUB `stat_item`, SLAB `STATS`) cost an increment on the
//! fast path, so they are not on during the timed pass. When they are off (the default), a
//! second, untimed pass of the same phases runs on instances with `stats` on, and the counter
//! deltas of each phase are written per 10 000 operations (`metric = stat:NAME`; the X phases
//! share one `X` count, as producer and consumer run at once). When the user turned stats on,
//! the timed pass is also the counting pass.

use super::{kmalloc_api, oom, validate, Ctx, Workload};
use crate::alloc::BenchAllocator;
use crate::placement::run_pinned;
use crate::record::Row;
use common::Topology;
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

/// The quantiles written, with their `metric` names. The first six are the tail table's; the
/// others fill in the CDF plot.
pub(crate) const QUANTILES: [(&str, f64); 11] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("max", 1.0),
    ("p75", 0.75),
    ("p95", 0.95),
    ("p99.5", 0.995),
    ("p99.95", 0.9995),
    ("p99.999", 0.99999),
];

/// The phases, with a title for tables and plots.
pub(crate) const PHASES: [(&str, &str); 5] = [
    ("A_alloc", "A: kmalloc, N in a row, one CPU"),
    ("B_free", "B: kfree of those N, one CPU"),
    ("C_pair", "C: alloc+free pair, one CPU"),
    ("X_alloc", "X: producer alloc, objects freed on another CPU"),
    ("X_remote_free", "X: consumer's remote free"),
];

/// The stat pass's phase names: A, B, C as above; `X` for the producer/consumer run.
const STAT_PHASES: [&str; 4] = ["A_alloc", "B_free", "C_pair", "X"];

const BATCH: usize = 256;
const BUFFERS: usize = 8;
const TIMER_SAMPLES: usize = 20_000;
/// Largest value the histograms track (≈ 20 s at 3 GHz; larger samples saturate there).
const HIST_MAX: u64 = 1 << 36;

/// Set by `main` while the extra, untimed stats pass runs (instances with stats on).
pub(crate) static STATS_PASS: AtomicBool = AtomicBool::new(false);

/// Sizes measured: 64, 256 and 4096 B among those requested, else the first requested.
pub(crate) fn sizes(requested: &[usize]) -> Vec<usize> {
    let v: Vec<usize> = [64usize, 256, 4096]
        .into_iter()
        .filter(|s| requested.contains(s))
        .collect();
    if v.is_empty() {
        vec![requested.first().copied().unwrap_or(64)]
    } else {
        v
    }
}

/// Timed rounds of N operations per phase and repetition.
pub(crate) fn rounds(quick: bool) -> usize {
    if quick {
        2
    } else {
        4
    }
}

/// Whether this run needs the extra stats pass for `allocator` (a slab allocator whose stats
/// are off in the run's settings).
pub(crate) fn needs_stats_pass(cfg: &crate::cli::RunConfig, allocator: &str) -> bool {
    let slab_stats = crate::slab_settings::settings(&cfg.settings.slab).is_ok_and(|s| s.stats);
    match allocator {
        "slab" | "slab-lock" => !slab_stats,
        "slub" | "slub-cmpxchg" | "slub-2.6.32" => !cfg.settings.slub.stats,
        _ => false,
    }
}

/// `cfg` with the slab allocators' stats turned on, one repetition (for the stats pass: the
/// counters are rates, one fresh instance per size gives them).
pub(crate) fn with_stats(cfg: &crate::cli::RunConfig) -> crate::cli::RunConfig {
    let mut c = cfg.clone();
    c.reps = 1;
    c.settings.slub.stats = true;
    c.settings.slab.retain(|(k, _)| k != "stats");
    c.settings.slab.push(("stats".into(), "on".into()));
    c
}

#[inline(always)]
fn begin() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_lfence, _rdtsc};
        // SAFETY: lfence and rdtsc have no preconditions and no memory effects.
        unsafe {
            _mm_lfence();
            let t = _rdtsc();
            _mm_lfence();
            t
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::tsc::rdtsc()
    }
}

#[inline(always)]
fn end() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{__rdtscp, _mm_lfence};
        let mut aux = 0u32;
        // SAFETY: rdtscp writes only `aux`, a valid local; lfence has no preconditions.
        unsafe {
            let t = __rdtscp(&raw mut aux);
            _mm_lfence();
            t
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        crate::tsc::rdtsc()
    }
}

#[inline(always)]
fn delta(t0: u64, t1: u64) -> u32 {
    t1.wrapping_sub(t0).min(u64::from(u32::MAX)) as u32
}

/// The timer's own cost on this thread: (median, resolution) of empty begin/end pairs; the
/// resolution is the smallest step between distinct readings (a VM's TSC may advance in steps).
fn timer_cost() -> (u32, u32) {
    let mut v = vec![0u32; TIMER_SAMPLES];
    for s in &mut v {
        let t0 = begin();
        let t1 = end();
        *s = delta(t0, t1);
    }
    v.sort_unstable();
    let step = v
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|&d| d > 0)
        .min()
        .unwrap_or(1);
    (v[v.len() / 2], step)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX, 3).expect("valid histogram bounds")
}

/// Fills `h` from raw samples less the timer's cost.
fn record(h: &mut Histogram<u64>, samples: &[u32], timer: u32) {
    for &s in samples {
        h.saturating_record(u64::from(s.saturating_sub(timer)));
    }
}

/// Counter snapshots: name → value.
type Snap = Vec<(&'static str, u64)>;

fn diff(after: &Snap, before: &Snap, into: &mut BTreeMap<&'static str, u64>) {
    for ((n, a), (_, b)) in after.iter().zip(before) {
        *into.entry(n).or_default() += a.saturating_sub(*b);
    }
}

/// Tests A, B, C `rounds` times on the calling thread (after one untimed round); samples into
/// `a`, `b`, `c` (each `rounds * v.len()` long). `hook(phase, start)` runs between phases,
/// outside the timed loops.
fn single<A: BenchAllocator>(
    al: &A,
    size: usize,
    v: &mut [usize],
    rounds: usize,
    s: &mut [Vec<u32>; 3],
    hook: &mut dyn FnMut(usize, bool),
) -> Result<(), String> {
    let n = v.len();
    for r in 0..=rounds {
        // Round 0 is the untimed warm-up: its samples land in round 1's slots and are
        // overwritten.
        let at = r.max(1) - 1;
        let warm = r == 0;
        if !warm {
            hook(0, true);
        }
        {
            let out = &mut s[0][at * n..(at + 1) * n];
            for (slot, o) in v.iter_mut().zip(out.iter_mut()) {
                let t0 = begin();
                let p = al.alloc(size);
                let t1 = end();
                *slot = p as usize;
                *o = delta(t0, t1);
            }
        }
        if !warm {
            hook(0, false);
        }
        let failed = v.contains(&0);
        if !warm {
            hook(1, true);
        }
        {
            let out = &mut s[1][at * n..(at + 1) * n];
            for (&p, o) in v.iter().zip(out.iter_mut()) {
                if p != 0 {
                    let t0 = begin();
                    // SAFETY: p came from al.alloc above and is freed once.
                    unsafe { al.free(p as *mut u8) };
                    let t1 = end();
                    *o = delta(t0, t1);
                }
            }
        }
        if !warm {
            hook(1, false);
        }
        if failed {
            return Err(oom(al.name(), size));
        }
        if !warm {
            hook(2, true);
        }
        let mut null = false;
        for o in &mut s[2][at * n..(at + 1) * n] {
            let t0 = begin();
            let p = al.alloc(size);
            if !p.is_null() {
                // SAFETY: freed once, right after its allocation.
                unsafe { al.free(std::hint::black_box(p)) };
            }
            let t1 = end();
            null |= p.is_null();
            *o = delta(t0, t1);
        }
        if !warm {
            hook(2, false);
        }
        if null {
            return Err(oom(al.name(), size));
        }
    }
    Ok(())
}

/// Producer: `total` allocs, each timed into `out`, handed over in batches.
fn produce<A: BenchAllocator>(
    al: &A,
    size: usize,
    out: &mut [u32],
    tx: &SyncSender<Vec<usize>>,
    rx: &Receiver<Vec<usize>>,
) -> bool {
    let mut ok = true;
    for chunk in out.chunks_mut(BATCH) {
        let mut buf = rx.recv().expect("empty buffer");
        buf.clear();
        for o in chunk.iter_mut() {
            let t0 = begin();
            let p = al.alloc(size);
            let t1 = end();
            *o = delta(t0, t1);
            if p.is_null() {
                ok = false;
                break;
            }
            // SAFETY: a fresh object of `size` >= 8 bytes.
            unsafe { p.cast::<u64>().write(size as u64) };
            buf.push(p as usize);
        }
        tx.send(buf).expect("full buffer");
        if !ok {
            break;
        }
    }
    ok
}

/// Consumer: frees everything it receives, each free timed into `out` (sized for all).
fn consume<A: BenchAllocator>(
    al: &A,
    out: &mut [u32],
    rx: &Receiver<Vec<usize>>,
    tx: &SyncSender<Vec<usize>>,
) -> usize {
    let mut k = 0;
    while let Ok(mut buf) = rx.recv() {
        for &p in &buf {
            let t0 = begin();
            // SAFETY: allocated by the producer, handed over once, freed once.
            unsafe { al.free(p as *mut u8) };
            let t1 = end();
            if k < out.len() {
                out[k] = delta(t0, t1);
                k += 1;
            }
        }
        buf.clear();
        let _ = tx.send(buf);
    }
    k
}

/// Histograms of the producer's allocs and the consumer's frees, and the producer's timer
/// (median, resolution).
type CrossResult = (Histogram<u64>, Histogram<u64>, (u32, u32));

/// Producer on `cpus[0]`, consumer on `cpus[1]`; returns the histograms (alloc, free) and the
/// timer cost subtracted.
fn cross<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    al: &A,
    size: usize,
    total: usize,
) -> Result<CrossResult, String> {
    let cpus = [ctx.cfg.cpus[0], ctx.cfg.cpus[1]];
    let (full_tx, full_rx) = sync_channel::<Vec<usize>>(BUFFERS);
    let (empty_tx, empty_rx) = sync_channel::<Vec<usize>>(BUFFERS);
    for _ in 0..BUFFERS {
        empty_tx.send(Vec::with_capacity(BATCH)).expect("channel");
    }
    let ends = Mutex::new((Some(full_tx), Some(full_rx), Some(empty_tx), Some(empty_rx)));
    let res = run_pinned(&cpus, ctx.topo, |w| {
        let timer = timer_cost();
        let mut out = vec![0u32; total];
        let mut h = new_hist();
        let ok = if w.index == 0 {
            let (tx, rx) = {
                let mut e = ends.lock().expect("ends");
                (e.0.take().expect("once"), e.3.take().expect("once"))
            };
            w.barrier.wait();
            let ok = produce(al, size, &mut out, &tx, &rx);
            drop(tx);
            record(&mut h, &out, timer.0);
            ok
        } else {
            let (rx, tx) = {
                let mut e = ends.lock().expect("ends");
                (e.1.take().expect("once"), e.2.take().expect("once"))
            };
            w.barrier.wait();
            let k = consume(al, &mut out, &rx, &tx);
            record(&mut h, &out[..k], timer.0);
            true
        };
        (ok, h, timer)
    })?;
    let mut it = res.into_iter();
    let (ok, ha, ta) = it.next().expect("producer");
    let (_, hf, _) = it.next().expect("consumer");
    if !ok {
        return Err(oom(al.name(), size));
    }
    Ok((ha, hf, ta))
}

/// Runs the timed pass (or, with [`STATS_PASS`] set, the counting pass) for every size.
pub(crate) fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let stats_pass = STATS_PASS.load(Ordering::Relaxed);
    let n = ctx.cfg.ops;
    let rounds = rounds(ctx.cfg.quick);
    let two = ctx.cfg.cpus.len() >= 2;
    let mut rows = Vec::new();
    for size in sizes(&ctx.cfg.sizes) {
        let mut hists: Vec<Histogram<u64>> = (0..PHASES.len()).map(|_| new_hist()).collect();
        let mut timers = Vec::new();
        let mut counts: [BTreeMap<&'static str, u64>; 4] = Default::default();
        let mut counted = false;
        let mut proto: Option<Row> = None;
        for _rep in 0..ctx.cfg.reps {
            let al = make(ctx.topo)?;
            let api = kmalloc_api(&al);
            if proto.is_none() {
                proto = Some(ctx.row(&al, api, Workload::Latency, ""));
            }
            // Count in the stats pass, or in the timed pass when the user turned stats on.
            let counting =
                stats_pass || (api == "kmalloc" && !needs_stats_pass(ctx.cfg, al.name()));
            let cpu = ctx.cfg.cpus[0];
            let single_res = run_pinned(&[cpu], ctx.topo, |w| {
                let timer = timer_cost();
                let mut v = vec![0usize; n];
                let mut s: [Vec<u32>; 3] = [
                    vec![0; rounds * n],
                    vec![0; rounds * n],
                    vec![0; rounds * n],
                ];
                let mut snaps: Vec<(usize, bool, Snap)> = Vec::new();
                let mut hook = |ph: usize, start: bool| {
                    if counting {
                        snaps.push((ph, start, al.stats()));
                    }
                };
                w.barrier.wait();
                let r = single(&al, size, &mut v, rounds, &mut s, &mut hook);
                (r, s, timer, snaps)
            })?;
            let (r, s, timer, snaps) = single_res.into_iter().next().expect("one worker");
            r?;
            timers.push(timer);
            for (i, samples) in s.iter().enumerate() {
                record(&mut hists[i], samples, timer.0);
            }
            for pair in snaps.chunks(2) {
                if let [(ph, true, b), (_, false, a)] = pair {
                    diff(a, b, &mut counts[*ph]);
                }
            }
            if two {
                let before = counting.then(|| al.stats());
                let (ha, hf, t) = cross(ctx, &al, size, rounds * n)?;
                if let Some(b) = before {
                    diff(&al.stats(), &b, &mut counts[3]);
                }
                timers.push(t);
                hists[3].add(&ha).map_err(|e| e.to_string())?;
                hists[4].add(&hf).map_err(|e| e.to_string())?;
            }
            counted |= counting;
            validate(&al, Workload::Latency)?;
        }
        let proto = proto.unwrap_or_default();
        let base = |phase: &str| {
            let mut r = proto.clone();
            r.phase = phase.to_string();
            r.size = size;
            r.threads = if phase.starts_with('X') { 2 } else { 1 };
            r.cpu = ctx.cfg.cpus[0] as i64;
            r.node = ctx.topo.cpu_to_node(ctx.cfg.cpus[0]) as i64;
            r
        };
        if !stats_pass {
            for (i, (phase, _)) in PHASES.iter().enumerate() {
                let h = &hists[i];
                if h.is_empty() {
                    continue;
                }
                let note = format!(
                    "per-op TSC, timer cost subtracted; {} repetitions merged (fresh instance each), {} rounds of {n}",
                    ctx.cfg.reps, rounds
                );
                let mut m = base(phase);
                m.metric = "mean".into();
                m.value = h.mean();
                m.note.clone_from(&note);
                let total = (h.mean() * h.len() as f64) as u64;
                rows.push(m.timed(h.len(), total, ctx.tsc_ghz));
                for (q, f) in QUANTILES {
                    let v = if f >= 1.0 {
                        h.max()
                    } else {
                        h.value_at_quantile(f)
                    };
                    let mut r = base(phase);
                    r.metric = q.into();
                    r.value = v as f64;
                    r.note.clone_from(&note);
                    let mut r = r.timed(1, v, ctx.tsc_ghz);
                    r.ops = h.len();
                    rows.push(r);
                }
            }
            timers.sort_unstable();
            if let Some(&(t, _)) = timers.get(timers.len() / 2) {
                let step = timers.iter().map(|t| t.1).min().unwrap_or(1);
                let mut r = base("timer");
                r.metric = "timer".into();
                r.value = f64::from(t);
                r.note = format!(
                    "median cycles of an empty lfence;rdtsc;lfence..rdtscp;lfence pair, subtracted from every sample (range over measurements {}..{}); TSC resolution {step} cycles",
                    timers[0].0,
                    timers[timers.len() - 1].0
                );
                rows.push(r);
            }
        }
        if counted {
            for (i, ph) in STAT_PHASES.iter().enumerate() {
                let ops = match i {
                    3 if !two => continue,
                    _ => (ctx.cfg.reps * rounds * n) as f64,
                };
                for (stat, &c) in &counts[i] {
                    if c == 0 {
                        continue;
                    }
                    let mut r = base(ph);
                    r.metric = format!("stat:{stat}");
                    r.value = c as f64 * 10_000.0 / ops;
                    r.ops = c;
                    r.note = if stats_pass {
                        "allocator counter per 10000 ops, from a second pass on instances with stats on (its timings discarded)".into()
                    } else {
                        "allocator counter per 10000 ops, from the timed pass (stats were on)"
                            .into()
                    };
                    rows.push(r);
                }
            }
        }
        ctx.progress.inc(1);
    }
    Ok(rows)
}

/// The tail table of `summary.md`: per phase, p50 … max cycles per allocator × size, and the
/// slow-path counters per 10 000 operations beside them.
pub(crate) fn summary(rows: &[Row], allocs: &[String]) -> String {
    use std::fmt::Write;
    let lat: Vec<&Row> = rows.iter().filter(|r| r.workload == "latency").collect();
    if lat.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## latency (cycles per operation, each operation timed on its own)\n"
    );
    let timer: Vec<String> = allocs
        .iter()
        .filter_map(|a| {
            let t: Vec<f64> = lat
                .iter()
                .filter(|r| &r.allocator == a && r.metric == "timer")
                .map(|r| r.value)
                .collect();
            (!t.is_empty()).then(|| format!("{a} {:.0}", t[t.len() / 2]))
        })
        .collect();
    let step = lat
        .iter()
        .filter(|r| r.metric == "timer")
        .filter_map(|r| {
            r.note
                .split("TSC resolution ")
                .nth(1)
                .and_then(|x| x.split_whitespace().next())
                .and_then(|x| x.parse::<u32>().ok())
        })
        .min();
    let _ = writeln!(
        s,
        "Every operation between `lfence; rdtsc; lfence` and `rdtscp; lfence`; the median cost of an empty such pair, calibrated on the same pinned thread before each measurement, is subtracted from every sample (cycles: {}){}. Histograms (HDR, 3 significant digits) merge the repetitions, each on a fresh instance. The slow-path column gives the allocator's counters per 10 000 operations of the phase (the largest non-fast-path ones; `X` counts producer and consumer together) — where the tail comes from.\n",
        timer.join(", "),
        step.filter(|&x| x > 1).map_or(String::new(), |x| format!(
            "; this machine's TSC advances in steps of {x} cycles, so every sample is a multiple of {x} and an operation cheaper than that reads as 0 or {x}"
        ))
    );
    let stat_of = |a: &str, size: usize, ph: &str| -> String {
        let ph = if ph.starts_with('X') { "X" } else { ph };
        let mut v: Vec<(&str, f64)> = lat
            .iter()
            .filter(|r| {
                r.allocator == a
                    && r.size == size
                    && r.phase == ph
                    && r.metric.starts_with("stat:")
                    && !r.metric.contains("fastpath")
                    && !r.metric.ends_with("hit")
            })
            .map(|r| (&r.metric[5..], r.value))
            .collect();
        v.sort_by(|x, y| y.1.total_cmp(&x.1));
        v.truncate(3);
        v.iter()
            .map(|(n, x)| format!("{n} {x:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (ph, title) in PHASES {
        let sel: Vec<&&Row> = lat.iter().filter(|r| r.phase == ph).collect();
        if sel.is_empty() {
            continue;
        }
        let sizes: std::collections::BTreeSet<usize> = sel.iter().map(|r| r.size).collect();
        let _ = writeln!(s, "### {ph} — {title}\n");
        let _ = writeln!(
            s,
            "| size | allocator | mean | p50 | p90 | p99 | p99.9 | p99.99 | max | slow path per 10k ops |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for size in sizes {
            for a in allocs {
                let get = |m: &str| {
                    sel.iter()
                        .find(|r| &r.allocator == a && r.size == size && r.metric == m)
                        .map(|r| r.value)
                };
                let Some(mean) = get("mean") else { continue };
                let cells: Vec<String> = QUANTILES[..6]
                    .iter()
                    .map(|(q, _)| get(q).map_or("–".into(), |v| format!("{v:.0}")))
                    .collect();
                let _ = writeln!(
                    s,
                    "| {size} | {a} | {mean:.1} | {} | {} |",
                    cells.join(" | "),
                    stat_of(a, size, ph)
                );
            }
        }
        let _ = writeln!(s);
    }
    s
}
