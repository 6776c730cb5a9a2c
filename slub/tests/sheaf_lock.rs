//! The sheaves' per-CPU lock (`cpu_sheaves->lock`) in both forms: rseq mode's
//! `local_trylock` on restartable sequences (`common::rseq_lock`) and lock mode's
//! `RawSpinLock`. Same tests for both: re-entry on the same CPU fails and takes the slab path
//! (the stat counters are the oracle), a holder on another CPU excludes the slot's own thread,
//! the held lock counts in the debug lock depth, and threads re-pinned across CPUs while
//! remote flushes run leave a cache that `validate()`s.

mod util;

use common::sync::{lock_depth, LOCKDEP};
use common::testing::{is_child, run_child, skip, watchdog};
use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slub::{FastPath, KmemCacheArgs, PcsLockForm, Slub, SlubSettings, StatItem as S};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use util::{check, fill};

/// A provider whose topology has one CPU slot per CPU id of this machine (rseq mode needs
/// it), on one node.
fn provider() -> PageProvider {
    let cpus = common::sys::nprocs_conf().min(common::NR_CPUS);
    let mut cfg = ProviderConfig::small(Topology::uniform(1, cpus).unwrap(), 64);
    cfg.bind = false;
    PageProvider::new(&cfg).unwrap()
}

fn settings(era: &str, form: FastPath) -> SlubSettings {
    SlubSettings {
        fastpath: form,
        ..SlubSettings::from_boot_options(&format!("era={era} stats")).unwrap()
    }
}

/// A 6.18 cache with 8-slot sheaves, in the requested lock form; `None` (after a skip) when
/// this machine cannot run that form.
fn cache(s: &Slub, test: &str, form: FastPath) -> Option<common::CacheHandle> {
    let c = s
        .kmem_cache_create_args(
            "lock_test",
            64,
            0,
            SlabFlags::NO_MERGE,
            None,
            KmemCacheArgs { sheaf_capacity: 8 },
        )
        .unwrap();
    let got = s.sheaf_fastpath(c).unwrap();
    if got != Some(form) {
        skip(
            test,
            "rseq",
            "no rseq areas or no membarrier fence here: rseq mode resolves to the locked form",
        );
        return None;
    }
    Some(c)
}

/// The CPUs this thread may run on.
fn allowed() -> Vec<usize> {
    common::pin::allowed_cpus()
}

/// Pins this thread to `cpu`; false (after a skip) if it cannot.
fn pin(test: &str, cpu: usize) -> bool {
    let ok = common::pin::pin_to_cpu(cpu).is_ok() && common::sys::sched_getcpu() == Some(cpu);
    if !ok {
        skip(test, "pin", "cannot pin the thread to one CPU");
    }
    ok
}

/// Counters read without the heap (inside a held lock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    alloc_pcs: u64,
    free_pcs: u64,
}

fn counts(s: &Slub, c: common::CacheHandle) -> Counts {
    Counts {
        alloc_pcs: s.cache_stat(c, S::ALLOC_PCS).unwrap(),
        free_pcs: s.cache_stat(c, S::FREE_PCS).unwrap(),
    }
}

/// One allocation and its free; returns the sheaf hits they made. No heap allocation (it runs
/// under the held lock).
fn alloc_free_hits(s: &Slub, c: common::CacheHandle) -> Counts {
    let before = counts(s, c);
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: just allocated, freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    let after = counts(s, c);
    Counts {
        alloc_pcs: after.alloc_pcs - before.alloc_pcs,
        free_pcs: after.free_pcs - before.free_pcs,
    }
}

/// Warms this CPU's sheaves: a few objects allocated and freed, so `main` has objects and room.
fn warm(s: &Slub, c: common::CacheHandle) {
    let v: Vec<NonNull<u8>> = (0..4)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for o in v {
        // SAFETY: each freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
}

fn reentry_takes_the_slab_path(test: &str, form: FastPath) {
    let p = provider();
    let s = Slub::new(&p, settings("6.18", form)).unwrap();
    let Some(c) = cache(&s, test, form) else {
        return;
    };
    let cpu = allowed()[0];
    if !pin(test, cpu) {
        return;
    }
    warm(&s, c);
    // Control: unlocked, both operations are sheaf hits.
    assert_eq!(
        alloc_free_hits(&s, c),
        Counts {
            alloc_pcs: 1,
            free_pcs: 1
        }
    );
    let base = lock_depth();
    let (form_used, depth, inside) = s
        .with_pcs_locked(c, cpu, |f| (f, lock_depth(), alloc_free_hits(&s, c)))
        .unwrap()
        .expect("a cache with sheaves");
    let want = if form == FastPath::Rseq {
        PcsLockForm::RseqLocal
    } else {
        PcsLockForm::Spin
    };
    assert_eq!(form_used, want);
    assert_eq!(
        inside,
        Counts::default(),
        "re-entry on the same CPU must fail the trylock and take the slab path"
    );
    if LOCKDEP {
        assert_eq!(
            depth,
            base + 1,
            "the held pcs lock counts in the lock depth"
        );
    }
    assert_eq!(lock_depth(), base);
    // Unlocked again: hits again (the lock was released, not lost).
    assert_eq!(
        alloc_free_hits(&s, c),
        Counts {
            alloc_pcs: 1,
            free_pcs: 1
        }
    );
    s.validate().unwrap();
}

#[test]
fn reentry_on_the_same_cpu_fails_and_takes_the_slab_path_rseq() {
    reentry_takes_the_slab_path(
        "reentry_on_the_same_cpu_fails_and_takes_the_slab_path_rseq",
        FastPath::Rseq,
    );
}

#[test]
fn reentry_on_the_same_cpu_fails_and_takes_the_slab_path_spinlock() {
    reentry_takes_the_slab_path(
        "reentry_on_the_same_cpu_fails_and_takes_the_slab_path_spinlock",
        FastPath::Cmpxchg,
    );
}

/// A thread on CPU `b` holds CPU `a`'s lock (rseq mode: the remote form, fenced) while the
/// slot's own thread, pinned to `a`, allocates and frees: both go to the slab path. After the
/// holder unlocks, they are hits again.
fn remote_holder_excludes(test: &'static str, form: FastPath) {
    let _w = watchdog(test);
    let cpus = allowed();
    if cpus.len() < 2 {
        skip(test, "cpus2", "needs two CPUs this thread may run on");
        return;
    }
    let (a, b) = (cpus[0], cpus[1]);
    let p = provider();
    let s = Slub::new(&p, settings("6.18", form)).unwrap();
    let Some(c) = cache(&s, test, form) else {
        return;
    };
    if !pin(test, a) {
        return;
    }
    warm(&s, c);
    let held = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let holder_form = std::thread::scope(|sc| {
        let h = sc.spawn(|| {
            if !pin(test, b) {
                held.store(true, Ordering::Release);
                return None;
            }
            s.with_pcs_locked(c, a, |f| {
                held.store(true, Ordering::Release);
                while !done.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                f
            })
            .unwrap()
        });
        while !held.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        let inside = alloc_free_hits(&s, c);
        done.store(true, Ordering::Release);
        let f = h.join().unwrap();
        if f.is_some() {
            assert_eq!(
                inside,
                Counts::default(),
                "a remote holder must exclude the slot's own thread"
            );
        }
        f
    });
    let Some(f) = holder_form else {
        return;
    };
    let want = if form == FastPath::Rseq {
        PcsLockForm::RseqRemote
    } else {
        PcsLockForm::Spin
    };
    assert_eq!(f, want);
    assert_eq!(
        alloc_free_hits(&s, c),
        Counts {
            alloc_pcs: 1,
            free_pcs: 1
        }
    );
    s.validate().unwrap();
}

#[test]
fn remote_holder_excludes_the_local_owner_rseq() {
    remote_holder_excludes(
        "remote_holder_excludes_the_local_owner_rseq",
        FastPath::Rseq,
    );
}

#[test]
fn remote_holder_excludes_the_local_owner_spinlock() {
    remote_holder_excludes(
        "remote_holder_excludes_the_local_owner_spinlock",
        FastPath::Cmpxchg,
    );
}

/// A heap allocation while holding the pcs lock aborts (debug builds), in both forms: the
/// rseq lock is an allocator lock to lockdep like the spinlock.
fn allocation_under_the_lock_aborts(test: &str, form: FastPath) {
    if !LOCKDEP {
        skip(test, "lockdep", "a release build keeps no lock depth");
        return;
    }
    if is_child(test) {
        let p = provider();
        let s = Slub::new(&p, settings("6.18", form)).unwrap();
        let Some(c) = cache(&s, test, form) else {
            // The parent sees a clean exit and skips too.
            std::process::exit(0);
        };
        let cpu = common::sys::sched_getcpu().unwrap_or(0);
        s.with_pcs_locked(c, cpu, |_| {
            std::hint::black_box(Box::new(7u64));
        })
        .unwrap();
        std::process::exit(0);
    }
    let out = run_child(test, &[], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.contains("SKIPPED") {
        skip(test, "rseq", "the child could not run this form");
        return;
    }
    util::assert_lockdep_abort(test, &out, None);
}

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

#[test]
fn allocation_under_the_pcs_lock_aborts_rseq() {
    allocation_under_the_lock_aborts("allocation_under_the_pcs_lock_aborts_rseq", FastPath::Rseq);
}

#[test]
fn allocation_under_the_pcs_lock_aborts_spinlock() {
    allocation_under_the_lock_aborts(
        "allocation_under_the_pcs_lock_aborts_spinlock",
        FastPath::Cmpxchg,
    );
}

/// Threads that re-pin themselves to another CPU every few operations (so they migrate
/// between reading their CPU id and locking, and while holding slots), hand objects to each
/// other (cross-CPU frees), and a meddler that flushes and shrinks the cache (every slot
/// locked from wherever it runs: the remote form). Every object is stamped and checked; the
/// cache validates at the end, with nothing left allocated.
fn stress_with_migration(test: &'static str, era: &str, form: FastPath) {
    let _w = watchdog(test);
    let p = provider();
    let s = Slub::new(&p, settings(era, form)).unwrap();
    let Some(c) = cache(&s, test, form) else {
        return;
    };
    let cpus = allowed();
    let nthreads = 4;
    let rounds = 1500;
    let stop = AtomicBool::new(false);
    let repins = AtomicUsize::new(0);
    let meddles = AtomicUsize::new(0);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..nthreads)
        .map(|_| std::sync::mpsc::channel::<Vec<usize>>())
        .unzip();
    std::thread::scope(|sc| {
        let workers: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(i, rx)| {
                let tx = txs[(i + 1) % nthreads].clone();
                let (s, cpus, repins) = (&s, &cpus, &repins);
                sc.spawn(move || {
                    let mut seed = i * 7919 + 1;
                    for r in 0..rounds {
                        if r % 3 == 0 {
                            let cpu = cpus[(i + r) % cpus.len()];
                            if common::pin::pin_to_cpu(cpu).is_ok() {
                                repins.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        let n = 1 + (seed % 24);
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                        let mut batch = Vec::with_capacity(n);
                        for k in 0..n {
                            let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
                            fill(o, 64, o.as_ptr() as usize ^ k);
                            batch.push((o.as_ptr() as usize) << 8 | k);
                        }
                        // Free half here (this CPU, or the one we moved to), send the rest.
                        let keep = batch.split_off(n / 2);
                        for v in batch {
                            free_checked(s, c, v);
                        }
                        tx.send(keep).unwrap();
                        while let Ok(got) = rx.try_recv() {
                            for v in got {
                                free_checked(s, c, v);
                            }
                        }
                    }
                    drop(tx);
                    // Drain what the neighbour still sends.
                    for got in rx {
                        for v in got {
                            free_checked(s, c, v);
                        }
                    }
                })
            })
            .collect();
        drop(txs);
        let meddler = sc.spawn(|| {
            let mut k = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if k % 2 == 0 {
                    s.flush_all(c).unwrap();
                } else {
                    s.kmem_cache_shrink(c).unwrap();
                }
                k += 1;
                meddles.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_micros(300));
            }
        });
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        meddler.join().unwrap();
    });
    // 7.0 counts sheaf hits as the fast path (it has no other), 6.18 as `*_cpu_sheaf`.
    let (ah, fh) = if era == "7.0" {
        (S::ALLOC_FASTPATH, S::FREE_FASTPATH)
    } else {
        (S::ALLOC_PCS, S::FREE_PCS)
    };
    let (ah, fh) = (s.cache_stat(c, ah).unwrap(), s.cache_stat(c, fh).unwrap());
    eprintln!(
        "{test}: {} re-pins, {} flushes/shrinks, sheaf hits: {ah} allocs, {fh} frees",
        repins.load(Ordering::Relaxed),
        meddles.load(Ordering::Relaxed),
    );
    assert!(ah > 0 && fh > 0, "the stress never hit the sheaves");
    s.validate().unwrap();
    s.validate_cache(c).unwrap();
    s.kmem_cache_shrink(c).unwrap();
    let census = s.sheaf_census(c).unwrap();
    assert_eq!(census.objects(), 0, "every object was freed: {census:?}");
    let mut active = 0;
    s.for_each_slabinfo(&mut |i| {
        if i.name.as_str() == "lock_test" {
            active = i.active_objs;
        }
    });
    assert_eq!(active, 0, "objects left allocated after the stress");
}

/// Frees an object the stress stamped (address << 8 | index), checking the stamp.
fn free_checked(s: &Slub, c: common::CacheHandle, v: usize) {
    let (addr, k) = (v >> 8, v & 0xff);
    assert!(
        check(addr as *mut u8, 64, addr ^ k),
        "object {addr:#x} corrupted"
    );
    let o = NonNull::new(addr as *mut u8).unwrap();
    // SAFETY: allocated by the stress, freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
}

#[test]
fn stress_with_migration_and_remote_flushes_rseq_6_18() {
    stress_with_migration(
        "stress_with_migration_and_remote_flushes_rseq_6_18",
        "6.18",
        FastPath::Rseq,
    );
}

#[test]
fn stress_with_migration_and_remote_flushes_rseq_7_0() {
    stress_with_migration(
        "stress_with_migration_and_remote_flushes_rseq_7_0",
        "7.0",
        FastPath::Rseq,
    );
}

#[test]
fn stress_with_migration_and_remote_flushes_spinlock_6_18() {
    stress_with_migration(
        "stress_with_migration_and_remote_flushes_spinlock_6_18",
        "6.18",
        FastPath::Cmpxchg,
    );
}

#[test]
fn stress_with_migration_and_remote_flushes_spinlock_7_0() {
    stress_with_migration(
        "stress_with_migration_and_remote_flushes_spinlock_7_0",
        "7.0",
        FastPath::Cmpxchg,
    );
}
