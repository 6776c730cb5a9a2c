//! Issue 9: the rseq fast path of the per-CPU arrays. Mode selection, an oversubscribed
//! signal-storm stress (more threads than CPUs, unpinned, `sched_yield`, SIGUSR1 thrown at the
//! threads, cross-thread frees, content stamps, concurrent reaps and tunes from other threads,
//! `validate()` clean, the abort counter moved) in both modes, and the fallback when glibc did
//! not register rseq (a child with `GLIBC_TUNABLES=glibc.pthread.rseq=0`).

mod util;

use common::rseq;
use common::{Gfp, SlabAllocator, SlabFlags};
use slab_classic::{FastPath, Slab, SlabSettings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use util::*;

// libc is not a dependency of this crate (the shared Cargo.lock stays as it is): the three
// calls the storm needs, declared here. Linux x86-64 values.
extern "C" {
    fn signal(sig: i32, handler: extern "C" fn(i32)) -> usize;
    fn pthread_self() -> usize;
    fn pthread_kill(t: usize, sig: i32) -> i32;
}
const SIGUSR1: i32 = 10;

fn env_forces_lock() -> bool {
    std::env::var("SLAB_FASTPATH").is_ok_and(|v| v == "lock")
}

fn env_forces_rseq() -> bool {
    std::env::var("SLAB_FASTPATH").is_ok_and(|v| v == "rseq" || v == "auto")
}

fn rseq_possible() -> bool {
    rseq::available() && rseq::fence_available()
}

fn slab_with(fastpath: FastPath) -> (common::PageProvider, Slab) {
    let p = provider(1, 256);
    let s = Slab::new(
        &p,
        SlabSettings {
            fastpath,
            stats: true,
            ..SlabSettings::default()
        },
    )
    .unwrap();
    (p, s)
}

#[test]
fn mode_is_chosen_and_recorded() {
    let machine_cpus = std::thread::available_parallelism().map_or(1, usize::from);
    for f in [FastPath::Lock, FastPath::Rseq, FastPath::Auto] {
        let (_p, s) = slab_with(f);
        let want_rseq = rseq_possible()
            && machine_cpus <= 2
            && !env_forces_lock()
            && (f != FastPath::Lock || env_forces_rseq());
        assert_eq!(SlabSettings::default().fastpath, FastPath::Auto);
        let want = if want_rseq {
            FastPath::Rseq
        } else {
            FastPath::Lock
        };
        assert_eq!(s.fastpath(), want, "{f:?}");
        let name = if want_rseq { "rseq" } else { "lock" };
        assert!(
            s.settings_summary().ends_with(&format!("fastpath={name}")),
            "{}",
            s.settings_summary()
        );
    }
}

extern "C" fn on_signal(_: i32) {}

/// (address, size, seed, custom cache?)
type Batch = Vec<(usize, usize, u64, bool)>;

/// More threads than CPUs, unpinned, yielding, under a SIGUSR1 storm; each round a thread runs
/// alloc/free pairs (the array fast path), then sends a stamped batch to its neighbour and
/// frees the batch it receives; one thread reaps every CPU's arrays and another retunes the
/// custom cache (swapping every CPU's array) meanwhile. Returns the aborts counted.
#[allow(clippy::too_many_lines)]
fn signal_storm_stress(fastpath: FastPath) -> u64 {
    // SAFETY: installs a handler that does nothing (async-signal-safe).
    unsafe { signal(SIGUSR1, on_signal) };
    let (_p, s) = slab_with(fastpath);
    let s = Arc::new(s);
    let custom = s
        .kmem_cache_create("rseq-storm", 72, 0, SlabFlags::NONE, None)
        .unwrap();
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let n = 4 * cpus.max(2);
    let rounds = 300u64;
    let before = rseq::abort_count();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Batch>()).unzip();
    let tids: Arc<Mutex<Vec<usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut rxs: Vec<Option<mpsc::Receiver<Batch>>> = rxs.into_iter().map(Some).collect();
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let s = Arc::clone(&s);
            let tx = txs[(i + 1) % n].clone();
            let rx = rxs[i].take().unwrap();
            let tids = Arc::clone(&tids);
            std::thread::spawn(move || {
                // SAFETY: pthread_self has no preconditions.
                tids.lock().unwrap().push(unsafe { pthread_self() });
                let mut seed = i as u64 * 1_000_003;
                for _ in 0..rounds {
                    for k in 0..200 {
                        seed += 1;
                        let size = [64, 256, 24][k % 3];
                        let o = s.kmalloc(size, Gfp::KERNEL).unwrap();
                        fill(o.as_ptr(), size, seed);
                        assert!(check(o.as_ptr(), size, seed), "stamp overwritten");
                        // SAFETY: allocated above, freed once.
                        unsafe { s.kfree(o.as_ptr()) }.unwrap();
                        if k % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                    let mut batch = Batch::new();
                    for k in 0..32 {
                        seed += 1;
                        if k % 4 == 0 {
                            let o = s.kmem_cache_alloc(custom, Gfp::KERNEL).unwrap();
                            fill(o.as_ptr(), 72, seed);
                            batch.push((o.as_ptr() as usize, 72, seed, true));
                        } else {
                            let size = [64, 256, 700][k % 3];
                            let o = s.kmalloc(size, Gfp::KERNEL).unwrap();
                            fill(o.as_ptr(), size, seed);
                            batch.push((o.as_ptr() as usize, size, seed, false));
                        }
                    }
                    tx.send(batch).unwrap();
                    for (a, size, sd, cust) in rx.recv().unwrap() {
                        assert!(check(a as *const u8, size, sd), "object {a:#x} corrupted");
                        // SAFETY: each object is freed once, by the thread that received it.
                        unsafe {
                            if cust {
                                s.kmem_cache_free(
                                    custom,
                                    core::ptr::NonNull::new(a as *mut u8).unwrap(),
                                )
                                .unwrap();
                            } else {
                                s.kfree(a as *mut u8).unwrap();
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let storm = {
        let (tids, stop) = (Arc::clone(&tids), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for &t in tids.lock().unwrap().iter() {
                    // SAFETY: the workers are joined only after `stop`, so t names a live (or
                    // finished, unjoined) thread.
                    unsafe { pthread_kill(t, SIGUSR1) };
                    sent += 1;
                }
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            sent
        })
    };
    // Slow paths from other threads: reaps of every CPU's arrays and array swaps by tuning.
    let meddler = {
        let (s, stop) = (Arc::clone(&s), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for cpu in 0..2 {
                    s.advance_jiffies(1000);
                    s.cache_reap(cpu);
                }
                let (limit, batch) = if k % 2 == 0 { (32, 16) } else { (120, 60) };
                s.kmem_cache_tune(custom, limit, batch, 8).unwrap();
                k += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            k
        })
    };
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let sent = storm.join().unwrap();
    let tunes = meddler.join().unwrap();
    s.validate().unwrap();
    let aborts = rseq::abort_count() - before;
    eprintln!(
        "{:?}: {n} threads on {cpus} CPUs, {sent} signals, {tunes} tunes, {aborts} rseq aborts in {} alloc/free pairs",
        s.fastpath(),
        n as u64 * rounds * (200 + 32)
    );
    aborts
}

#[test]
fn oversubscribed_signal_storm_rseq() {
    if !rseq_possible() || env_forces_lock() {
        return;
    }
    let aborts: u64 = (0..5)
        .map(|_| signal_storm_stress(FastPath::Rseq))
        .find(|&a| a > 0)
        .unwrap_or(0);
    assert!(aborts > 0, "no sequence was aborted in 5 runs");
}

#[test]
fn oversubscribed_signal_storm_lock() {
    signal_storm_stress(FastPath::Lock);
}

/// The child half of [`fallback_without_glibc_rseq`]: does nothing unless run by it.
#[test]
fn fallback_child() {
    if std::env::var("SLAB_RSEQ_CHILD").is_err() {
        return;
    }
    let (_p, s) = slab_with(FastPath::Auto);
    println!(
        "CHILD registration={:?} fastpath={:?}",
        rseq::registration(),
        s.fastpath()
    );
    let ptrs: Vec<Vec<usize>> = (0..4u64)
        .map(|i| {
            (0..1000u64)
                .map(|k| {
                    let o = s.kmalloc(64, Gfp::KERNEL).unwrap();
                    fill(o.as_ptr(), 64, i * 10_000 + k);
                    o.as_ptr() as usize
                })
                .collect()
        })
        .collect();
    std::thread::scope(|sc| {
        for (i, ptrs) in ptrs.into_iter().enumerate() {
            let s = &s;
            sc.spawn(move || {
                for (k, a) in ptrs.into_iter().enumerate() {
                    assert!(check(a as *const u8, 64, i as u64 * 10_000 + k as u64));
                    // SAFETY: allocated above, freed once (on another thread).
                    unsafe { s.kfree(a as *mut u8) }.unwrap();
                }
                for _ in 0..10_000 {
                    let o = s.kmalloc(256, Gfp::KERNEL).unwrap();
                    // SAFETY: freed once.
                    unsafe { s.kfree(o.as_ptr()) }.unwrap();
                }
            });
        }
    });
    s.validate().unwrap();
    println!("CHILD ok");
}

/// With glibc's rseq turned off, the process registers its own per-thread areas and `Auto`
/// still chooses rseq.
#[test]
fn fallback_without_glibc_rseq() {
    if std::env::var("SLAB_RSEQ_CHILD").is_ok() || !rseq_possible() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fallback_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SLAB_RSEQ_CHILD", "1")
        .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0")
        .env_remove("SLAB_FASTPATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let machine_cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if machine_cpus <= 2 {
        assert!(
            stdout.contains("CHILD registration=Own fastpath=Rseq"),
            "{stdout}"
        );
    }
    assert!(stdout.contains("CHILD ok"), "{stdout}");
}
