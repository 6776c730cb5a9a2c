//! The sheaves series' own microbenchmark, in shape: a cache with `sheaf_capacity`
//! 32 against the same cache without sheaves, objects allocated in batches of 1, 10, 100 and
//! 1000 then freed in order or shuffled; time per alloc+free pair. All variants run side by
//! side in one process, on one pinned CPU, interleaved round by round, and are reported as
//! ratios (the published numbers: Ryzen 7 5700, cover letter of v7, reference §7).
//!
//! The last two columns compare the two forms of the sheaves' per-CPU lock on the same
//! workload: rseq mode (`fastpath=rseq`, the default where available: hits are one restartable
//! sequence checking the `local_trylock` word, misses take it by an rseq commit) against lock
//! mode (`fastpath=cmpxchg`: every hit and miss takes the slot's `RawSpinLock`), for 7.0 and
//! for 6.18 with capacity 32 (whose misses also take 6.4's CPU-slab path in that mode). A last
//! table times the two locks alone: `RseqLocalLock` try + unlock on this CPU (one sequence and a
//! store) against `RawSpinLock` try + unlock (a locked `cmpxchg` and a store).
//!
//! ```sh
//! cargo run --release -p slub --example sheaf_batch [-- ROUNDS]
//! ```
//! Not a test: nothing is asserted on time.

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slub::{KmemCacheArgs, Slub, SlubSettings};
use std::time::Instant;

const SIZE: usize = 64;
const OPS_PER_ROUND: usize = 500_000;

struct Variant {
    name: &'static str,
    s: Slub,
    c: common::CacheHandle,
}

fn variant(p: &PageProvider, name: &'static str, options: &str, cap: usize) -> Variant {
    let s = Slub::new(p, SlubSettings::from_boot_options(options).unwrap()).unwrap();
    let c = s
        .kmem_cache_create_args(
            "bench",
            SIZE,
            0,
            SlabFlags::NO_MERGE,
            None,
            KmemCacheArgs {
                sheaf_capacity: cap,
            },
        )
        .unwrap();
    Variant { name, s, c }
}

/// One round: `OPS_PER_ROUND` pairs in batches of `batch`; returns ns per pair.
fn round(v: &Variant, batch: usize, order: &[usize], objs: &mut [*mut u8]) -> f64 {
    let reps = (OPS_PER_ROUND / batch).max(1);
    let t0 = Instant::now();
    for _ in 0..reps {
        for o in &mut objs[..batch] {
            *o = v.s.kmem_cache_alloc(v.c, Gfp::KERNEL).unwrap().as_ptr();
        }
        for &i in &order[..batch] {
            // SAFETY: allocated just above, freed once.
            unsafe {
                v.s.kmem_cache_free(v.c, core::ptr::NonNull::new_unchecked(objs[i]))
                    .unwrap();
            }
        }
    }
    t0.elapsed().as_nanos() as f64 / (reps * batch) as f64
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(41);
    let allowed = common::pin::allowed_cpus();
    let pinned = !allowed.is_empty() && common::pin::pin_to_cpu(allowed[0]).is_ok();
    let topo = Topology::from_sysfs().unwrap();
    let p = PageProvider::new(&ProviderConfig::small(topo, 256)).unwrap();
    let vs = [
        variant(&p, "6.4 (no sheaves)", "era=6.4", 0),
        variant(&p, "6.18 no sheaves", "era=6.18", 0),
        variant(&p, "6.18 sheaf_capacity=32", "era=6.18", 32),
        variant(&p, "7.0 (capacity 60)", "era=7.0", 0),
        variant(&p, "6.18 cap 32, spinlock", "era=6.18 fastpath=cmpxchg", 32),
        variant(&p, "7.0, spinlock", "era=7.0 fastpath=cmpxchg", 0),
    ];
    // Published: sheaves vs none, % faster (v7 cover letter, Ryzen 7 5700).
    let published = [
        (1, Some(17.2), None),
        (10, Some(15.3), Some(12.6)),
        (100, Some(31.0), Some(28.6)),
        (1000, Some(30.2), Some(6.3)),
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut objs = vec![core::ptr::null_mut(); 1000];
    println!(
        "sheaf_batch: {SIZE}-byte objects, {rounds} interleaved rounds of {OPS_PER_ROUND} pairs, pinned={pinned}; median ns per alloc+free pair"
    );
    println!();
    for v in &vs {
        println!(
            "- {}: CPU-slab fast path {:?}, sheaf fast path {:?}",
            v.name,
            v.s.fastpath(),
            v.s.sheaf_fastpath(v.c).unwrap()
        );
    }
    println!();
    let names: Vec<&str> = vs.iter().map(|v| v.name).collect();
    println!(
        "| batch | order | {} | 6.18 cap 32 vs none | 7.0 vs 6.4 | published (sheaves vs none) | 6.18 cap 32: rseq lock vs spinlock | 7.0: rseq lock vs spinlock |",
        names.join(" | ")
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &(batch, pub_in, pub_sh) in &published {
        for shuffled in [false, true] {
            let mut order: Vec<usize> = (0..batch).collect();
            if shuffled {
                for i in (1..batch).rev() {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    order.swap(i, (seed % (i as u64 + 1)) as usize);
                }
            }
            let mut t: Vec<Vec<f64>> = vec![Vec::new(); vs.len()];
            for _ in 0..rounds {
                for (k, v) in vs.iter().enumerate() {
                    t[k].push(round(v, batch, &order, &mut objs));
                }
            }
            let med: Vec<f64> = t
                .iter_mut()
                .map(|x| {
                    x.sort_by(f64::total_cmp);
                    x[x.len() / 2]
                })
                .collect();
            let pct = |new: f64, old: f64| (old / new - 1.0) * 100.0;
            let published = if shuffled { pub_sh } else { pub_in };
            println!(
                "| {batch} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:+.1} % | {:+.1} % | {} | {:+.1} % | {:+.1} % |",
                if shuffled { "shuffled" } else { "in order" },
                med[0],
                med[1],
                med[2],
                med[3],
                med[4],
                med[5],
                pct(med[2], med[1]),
                pct(med[3], med[0]),
                published.map_or("—".to_string(), |x| format!("+{x} %")),
                pct(med[2], med[4]),
                pct(med[3], med[5]),
            );
        }
    }
    for v in &vs {
        v.s.validate().unwrap();
    }
    lock_alone(rounds, pinned);
}

/// The two forms of `cpu_sheaves->lock` alone: try + unlock pairs on this CPU's lock, rounds
/// interleaved; median ns per pair.
fn lock_alone(rounds: usize, pinned: bool) {
    use common::rseq_lock::RseqLocalLock;
    use common::sync::RawSpinLock;
    const PAIRS: usize = 1_000_000;
    let Some(t) = common::rseq::this_thread() else {
        println!("\nlock alone: no rseq area on this thread");
        return;
    };
    let rl = RseqLocalLock::new();
    let sl = RawSpinLock::new();
    let (mut r, mut s) = (Vec::new(), Vec::new());
    let mut failed = 0usize;
    for _ in 0..rounds {
        let t0 = Instant::now();
        for _ in 0..PAIRS {
            if rl.try_lock_local(&t, t.cpu()).is_ok() {
                rl.unlock();
            } else {
                failed += 1;
            }
        }
        r.push(t0.elapsed().as_nanos() as f64 / PAIRS as f64);
        let t0 = Instant::now();
        for _ in 0..PAIRS {
            if std::hint::black_box(&sl).try_lock() {
                sl.unlock();
            }
        }
        s.push(t0.elapsed().as_nanos() as f64 / PAIRS as f64);
    }
    let med = |x: &mut Vec<f64>| {
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let (r, s) = (med(&mut r), med(&mut s));
    println!();
    println!("| lock alone (pinned={pinned}) | ns per try+unlock |");
    println!("|---|---:|");
    println!("| RseqLocalLock (rseq local_trylock) | {r:.2} |");
    println!("| RawSpinLock | {s:.2} |");
    println!(
        "| rseq lock vs spinlock | {:+.1} % ({failed} local tries failed: aborted or migrated) |",
        (s / r - 1.0) * 100.0
    );
}
