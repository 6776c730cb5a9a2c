//! slab_test's outliers with counters as the oracle: Test A (N kmallocs) and B (N
//! kfrees) at 512 B, 1 KiB and 8 KiB, and Test F (N objects allocated on one CPU, freed on
//! another) at 4096 B, for SLAB and SLUB on one provider configuration each, with per object:
//! cycles, SLUB's stat counters (alloc_slab, alloc_slowpath, free_slowpath, cpu_partial_*,
//! deactivate_*, free_slab), SLAB's grown/reaped, the page provider's `MADV_DONTNEED`
//! releases, and the process's minor page faults.
//!
//! Each line runs on a fresh instance, after one untimed round of the same test (as
//! slab_test does). Four provider set-ups are set side by side: `release` (the provider's
//! default, and the harness's until it turned `populate` on: free memory above 64 MiB given back with
//! `MADV_DONTNEED`), `never` (nothing given back), `populate` (nothing given back, every
//! top-order block prefaulted when first cut: the harness's provider now) and `warm` (nothing
//! given back, 256 MiB per node touched before the allocator is built: the reference), so the
//! share of the page provider in the cost shows in the same run.
//!
//! With two CPUs it also runs the ablation's cross-thread server pattern once (populated
//! provider), to show which SLUB paths its frees take.
//!
//! `cargo run --release -p harness --example outliers` (environment: `N`, default 10 000;
//! `REPS`, default 3, the fastest round is printed; `SIZE` one size only).

use common::api::SlabAllocator;
use common::{Gfp, PageProvider, ProviderConfig, Topology};
use std::fmt::Write;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rdtsc() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

fn minflt() -> i64 {
    // SAFETY: getrusage writes the struct we pass.
    let mut ru: libc::rusage = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut ru) };
    ru.ru_minflt
}

/// The three provider set-ups compared.
#[derive(Clone, Copy, PartialEq)]
enum Pv {
    /// The default: free memory above 64 MiB given back with `MADV_DONTNEED`.
    Release,
    /// Nothing given back.
    Never,
    /// Nothing given back, every top-order block prefaulted when first cut (what the harness
    /// builds).
    Populate,
    /// Nothing given back, and the first 256 MiB of every node touched once before the
    /// allocator is built, as the kernel's memory always is.
    Warm,
}

fn provider(pv: Pv) -> PageProvider {
    let mut cfg = ProviderConfig::new(Topology::from_sysfs().unwrap());
    if pv != Pv::Release {
        cfg.release_watermark = None;
    }
    cfg.populate = pv == Pv::Populate;
    let p = PageProvider::new(&cfg).unwrap();
    if pv == Pv::Warm {
        warm(&p, 256 << 20);
    }
    p
}

/// Touches `bytes` of every node's arena once (top-order blocks taken, written, given back).
fn warm(p: &PageProvider, bytes: usize) {
    let order = common::MAX_ORDER - 1;
    let block = common::PAGE_SIZE << order;
    for node in 0..p.nr_nodes() {
        let blocks: Vec<_> = (0..bytes / block)
            .map_while(|_| p.alloc_pages(node, order, common::Owner::Other))
            .collect();
        for b in &blocks {
            let a = p.page_address(*b).as_ptr();
            for off in (0..block).step_by(common::PAGE_SIZE) {
                // SAFETY: inside a block we hold.
                unsafe { a.add(off).write_volatile(0) };
            }
        }
        for b in blocks {
            // SAFETY: taken above, given back once.
            unsafe { p.free_pages(b, order) }.unwrap();
        }
    }
}

/// Counters that move during one phase.
#[derive(Default, Clone)]
struct Snap {
    stats: Vec<(&'static str, u64)>,
    madvise: usize,
    released: usize,
    minflt: i64,
}

fn snap<A: SlabAllocator>(a: &A) -> Snap {
    let mut stats = Vec::new();
    a.for_each_stat(&mut |n, v| stats.push((n, v)));
    let ps = a.provider().stats();
    Snap {
        stats,
        madvise: ps.madvise_calls,
        released: ps.released_total,
        minflt: minflt(),
    }
}

const SHOWN: &[&str] = &[
    "alloc_fastpath",
    "free_fastpath",
    "free_frozen",
    "alloc_refill",
    "allochit",
    "freehit",
    "alloc_slowpath",
    "alloc_slab",
    "free_slowpath",
    "free_slab",
    "cpu_partial_alloc",
    "cpu_partial_free",
    "cpu_partial_drain",
    "deactivate_empty",
    "deactivate_full",
    "free_add_partial",
    "grown",
    "reaped",
    "allocmiss",
    "freemiss",
];

fn line(what: &str, n: usize, cyc: u64, a: &Snap, b: &Snap) -> String {
    let per = |x: f64| x / n as f64;
    let mut s = format!(
        "{what:<34} {:>7.0} cyc/obj  madvise {:>4}  released-pages {:>6}  minflt {:>6.3}/obj",
        cyc as f64 / n as f64,
        b.madvise - a.madvise,
        b.released - a.released,
        per((b.minflt - a.minflt) as f64),
    );
    for ((name, v1), (_, v0)) in b.stats.iter().zip(&a.stats) {
        if SHOWN.contains(name) && v1 > v0 {
            let _ = write!(s, "  {name} {:.3}", per((v1 - v0) as f64));
        }
    }
    s
}

/// Test A then B on the calling thread, after an untimed round; the fastest of `reps`
/// instances.
fn test_ab<A: SlabAllocator>(mk: &dyn Fn() -> A, size: usize, n: usize, reps: usize, tag: &str) {
    let mut best: Option<(u64, u64, String, String)> = None;
    for _ in 0..reps {
        let a = mk();
        let mut v = vec![core::ptr::null_mut::<u8>(); n];
        let round = |v: &mut [*mut u8]| {
            let s0 = snap(&a);
            let t0 = rdtsc();
            for p in v.iter_mut() {
                *p = a.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
            }
            let t1 = rdtsc();
            let s1 = snap(&a);
            for &p in v.iter() {
                // SAFETY: allocated above, freed once.
                unsafe { a.kfree(p) }.unwrap();
            }
            let t2 = rdtsc();
            let s2 = snap(&a);
            (
                t1 - t0,
                t2 - t1,
                line(&format!("{tag} A {size} B"), n, t1 - t0, &s0, &s1),
                line(&format!("{tag} B {size} B"), n, t2 - t1, &s1, &s2),
            )
        };
        let _ = round(&mut v);
        let r = round(&mut v);
        if best.as_ref().is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    let (_, _, la, lb) = best.expect("reps >= 1");
    println!("{la}\n{lb}");
}

/// Test F with one producer (CPU 0) and the consumer (CPU 1): the consumer's frees.
fn test_f<A: SlabAllocator>(mk: &dyn Fn() -> A, size: usize, n: usize, reps: usize, tag: &str) {
    let mut best: Option<(u64, String)> = None;
    for _ in 0..reps {
        let a = mk();
        let round = || {
            let v: Vec<usize> = std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = common::pin::pin_to_cpu(0);
                    (0..n)
                        .map(|_| a.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr() as usize)
                        .collect()
                })
                .join()
                .unwrap()
            });
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = common::pin::pin_to_cpu(1);
                    let s0 = snap(&a);
                    let t0 = rdtsc();
                    for &p in &v {
                        // SAFETY: allocated by the producer, freed once.
                        unsafe { a.kfree(p as *mut u8) }.unwrap();
                    }
                    let c = rdtsc() - t0;
                    let s1 = snap(&a);
                    (
                        c,
                        line(&format!("{tag} F {size} B remote free"), n, c, &s0, &s1),
                    )
                })
                .join()
                .unwrap()
            })
        };
        let _ = round();
        let r = round();
        if best.as_ref().is_none_or(|b| r.0 < b.0) {
            best = Some(r);
        }
    }
    println!("{}", best.expect("reps >= 1").1);
}

/// The ablation's cross-thread server pattern on CPUs 0 and 1: every thread swaps blocks of
/// 8–1000 B into random slots of one 4096-slot table and frees what it takes out.
fn test_server<A: SlabAllocator>(mk: &dyn Fn() -> A, ops: usize, tag: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let a = mk();
    let table: Vec<AtomicUsize> = (0..4096).map(|_| AtomicUsize::new(0)).collect();
    let s0 = snap(&a);
    let cyc: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let (a, table) = (&a, &table);
                s.spawn(move || {
                    let _ = common::pin::pin_to_cpu(t);
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (t as u64 + 1);
                    let mut next = || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as usize
                    };
                    let t0 = rdtsc();
                    for _ in 0..ops {
                        let p = a.kmalloc(8 + next() % 993, Gfp::KERNEL).unwrap().as_ptr();
                        let old = table[next() % 4096].swap(p as usize, Ordering::AcqRel);
                        if old != 0 {
                            // SAFETY: every block leaves the table once, by this swap.
                            unsafe { a.kfree(old as *mut u8) }.unwrap();
                        }
                    }
                    rdtsc() - t0
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>() / 2
    });
    let s1 = snap(&a);
    println!(
        "{}",
        line(
            &format!("{tag} server (per alloc+free)"),
            ops * 2,
            cyc * 2,
            &s0,
            &s1
        )
    );
    for slot in &table {
        let p = slot.swap(0, Ordering::AcqRel);
        if p != 0 {
            // SAFETY: the last block of the slot, freed once.
            unsafe { a.kfree(p as *mut u8) }.unwrap();
        }
    }
}

fn main() {
    let only = env_usize("SIZE", 0);
    let sel = |size: usize| only == 0 || only == size;
    let n = env_usize("N", 10_000);
    let reps = env_usize("REPS", 3);
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    for pvk in [Pv::Release, Pv::Never, Pv::Populate, Pv::Warm] {
        let pv = match pvk {
            Pv::Release => "release",
            Pv::Never => "never",
            Pv::Populate => "populate",
            Pv::Warm => "warm",
        };
        let slub = || {
            let s = slub::SlubSettings {
                stats: true,
                ..slub::SlubSettings::default()
            };
            slub::Slub::new(&provider(pvk), s).unwrap()
        };
        let slab = || {
            let s = slab_classic::SlabSettings {
                stats: true,
                ..slab_classic::SlabSettings::default()
            };
            slab_classic::Slab::new(&provider(pvk), s).unwrap()
        };
        std::thread::scope(|s| {
            s.spawn(|| {
                let _ = common::pin::pin_to_cpu(0);
                for size in [512, 1024, 8192] {
                    if sel(size) {
                        test_ab(&slab, size, n, reps, &format!("slab/{pv}"));
                        test_ab(&slub, size, n, reps, &format!("slub/{pv}"));
                    }
                }
            });
        });
        if cpus > 1 && only == 0 && pvk == Pv::Populate {
            test_server(&slab, 200_000, &format!("slab/{pv}"));
            test_server(&slub, 200_000, &format!("slub/{pv}"));
        }
        if cpus > 1 && sel(4096) {
            test_f(&slab, 4096, n, reps, &format!("slab/{pv}"));
            test_f(&slub, 4096, n, reps, &format!("slub/{pv}"));
        }
    }
}
