//! Deterministic multi-thread stress: cross-CPU frees, content checks, tunables changed under
//! load, migrating threads sharing CPU slots; validate() afterwards.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabFlags};
use core::ptr::NonNull;
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};

use common::testing::XorShift as Rng;

#[derive(Clone, Copy)]
struct Obj {
    addr: usize,
    len: usize,
    seed: u64,
    cache: bool,
}

fn stress(nodes: usize, threads: usize, pinned: bool, ops: usize) {
    stress_with(
        nodes,
        threads,
        pinned,
        ops,
        slab_classic::SlabSettings {
            stats: true,
            ..slab_classic::SlabSettings::default()
        },
    );
}

fn stress_with(
    nodes: usize,
    threads: usize,
    pinned: bool,
    ops: usize,
    settings: slab_classic::SlabSettings,
) {
    let p = util::provider(nodes, 64);
    let s = Arc::new(slab_classic::Slab::new(&p, settings).unwrap());
    s.shrink_all();
    let baseline = p.stats().pages_in_use;
    let c = s
        .kmem_cache_create("stress", 136, 0, SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    let cpus = common::pin::allowed_cpus();
    let mut txs = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..threads {
        let (tx, rx) = mpsc::channel::<Vec<Obj>>();
        txs.push(tx);
        rxs.push(Some(rx));
    }
    let txs = Arc::new(txs);
    let barrier = Arc::new(Barrier::new(threads));
    let leftovers = Arc::new(Mutex::new(Vec::new()));
    let mut hs = Vec::new();
    for t in 0..threads {
        let s = s.clone();
        let txs = txs.clone();
        let rx = rxs[t].take().unwrap();
        let barrier = barrier.clone();
        let leftovers = leftovers.clone();
        let cpu = cpus[t % cpus.len()];
        hs.push(std::thread::spawn(move || {
            if pinned {
                common::pin::pin_to_cpu(cpu).unwrap();
            }
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
            let mut mine: Vec<Obj> = Vec::new();
            let mut outbox: Vec<Obj> = Vec::new();
            let free = |o: Obj| {
                assert!(
                    util::check(o.addr as *const u8, o.len, o.seed),
                    "object overwritten"
                );
                let ptr = NonNull::new(o.addr as *mut u8).unwrap();
                // SAFETY: each object is freed exactly once, by whoever holds it.
                let r = unsafe {
                    if o.cache {
                        s.kmem_cache_free(c, ptr)
                    } else {
                        s.kfree(ptr.as_ptr())
                    }
                };
                r.unwrap();
            };
            for i in 0..ops {
                let r = rng.next();
                match r % 8 {
                    0..=3 => {
                        let (o, len, cache) = if r % 5 == 0 {
                            let node = (r >> 8) as usize % nodes;
                            (s.kmem_cache_alloc_node(c, Gfp::KERNEL, node), 136, true)
                        } else if r % 5 == 1 {
                            (s.kmem_cache_alloc(c, Gfp::KERNEL), 136, true)
                        } else {
                            let len =
                                1 + ((r >> 16) as usize % if r % 97 == 0 { 40_000 } else { 2000 });
                            (s.kmalloc(len, Gfp::KERNEL), len, false)
                        };
                        let o = o.expect("allocation");
                        let seed = r ^ i as u64;
                        util::fill(o.as_ptr(), len, seed);
                        mine.push(Obj {
                            addr: o.as_ptr() as usize,
                            len,
                            seed,
                            cache,
                        });
                    }
                    4 | 5 if !mine.is_empty() => {
                        let k = (r >> 20) as usize % mine.len();
                        free(mine.swap_remove(k));
                    }
                    6 if !mine.is_empty() => {
                        let k = (r >> 20) as usize % mine.len();
                        outbox.push(mine.swap_remove(k));
                        if outbox.len() >= 32 {
                            let to = (t + 1 + (r >> 40) as usize % (threads - 1).max(1)) % threads;
                            txs[to].send(std::mem::take(&mut outbox)).unwrap();
                        }
                    }
                    _ => {
                        while let Ok(batch) = rx.try_recv() {
                            for o in batch {
                                free(o);
                            }
                        }
                    }
                }
                if t == 0 && i % 4096 == 4095 {
                    let l = if (i / 4096) % 2 == 0 {
                        "stress 32 16 4"
                    } else {
                        "stress 120 60 8"
                    };
                    s.slabinfo_write(l).unwrap();
                }
            }
            for o in mine.drain(..).chain(outbox.drain(..)) {
                free(o);
            }
            barrier.wait();
            let mut left = Vec::new();
            while let Ok(batch) = rx.try_recv() {
                left.extend(batch);
            }
            leftovers.lock().unwrap().extend(left);
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    for o in leftovers.lock().unwrap().drain(..) {
        assert!(util::check(o.addr as *const u8, o.len, o.seed));
        let ptr = NonNull::new(o.addr as *mut u8).unwrap();
        // SAFETY: freed once.
        unsafe {
            if o.cache {
                s.kmem_cache_free(c, ptr).unwrap();
            } else {
                s.kfree(ptr.as_ptr()).unwrap();
            }
        }
    }
    s.validate().unwrap();
    for cpu in 0..s.nr_cpu_ids() {
        s.cache_reap(cpu);
    }
    s.validate().unwrap();
    // SAFETY: no thread uses the cache any more.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    s.shrink_all();
    s.validate().unwrap();
    assert_eq!(
        p.stats().pages_in_use,
        baseline,
        "every page back after shrink"
    );
    assert_eq!(
        s.slab_errors(),
        0,
        "no debug report under a correct workload"
    );
}

#[test]
fn stress_with_forced_debug_and_consistency_checks_two_nodes() {
    let _watchdog =
        common::testing::watchdog("stress_with_forced_debug_and_consistency_checks_two_nodes");
    // Every cache (kmalloc caches too) red-zoned, poisoned, user-tracked, check_slabp on
    // every slow path; cross-CPU and cross-node frees must never trip a check.
    stress_with(
        2,
        4,
        false,
        40_000,
        slab_classic::SlabSettings {
            stats: true,
            forced_debug: true,
            debug: SlabFlags::CONSISTENCY_CHECKS,
            ..slab_classic::SlabSettings::default()
        },
    );
}

#[test]
fn stress_pinned_threads_one_node() {
    let _watchdog = common::testing::watchdog("stress_pinned_threads_one_node");
    stress(1, 2, true, 200_000);
}

#[test]
fn stress_migrating_threads_share_cpu_slots() {
    let _watchdog = common::testing::watchdog("stress_migrating_threads_share_cpu_slots");
    stress(1, 6, false, 60_000);
}

#[test]
fn stress_cross_node_frees_two_nodes() {
    let _watchdog = common::testing::watchdog("stress_cross_node_frees_two_nodes");
    stress(2, 4, false, 80_000);
}

#[test]
fn stress_with_the_background_reaper_running() {
    let _watchdog = common::testing::watchdog("stress_with_the_background_reaper_running");
    let p = util::provider(2, 64);
    let s = Arc::new(util::slab(&p));
    s.start_reaper();
    let hs: Vec<_> = (0..3)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut v = Vec::new();
                for i in 0..40_000usize {
                    if (i + t) % 3 == 0 && !v.is_empty() {
                        let o: NonNull<u8> = v.swap_remove(i % v.len());
                        // SAFETY: freed once.
                        unsafe { s.kfree(o.as_ptr()) }.unwrap();
                    } else {
                        v.push(s.kmalloc(64 + (i % 500), Gfp::KERNEL).unwrap());
                    }
                    if i % 5000 == 0 {
                        // Drive the reaper's work concurrently too.
                        s.cache_reap(i / 5000 % 2);
                        s.advance_jiffies(2000);
                    }
                }
                for o in v {
                    // SAFETY: freed once.
                    unsafe { s.kfree(o.as_ptr()) }.unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    s.stop_reaper();
    s.validate().unwrap();
}

#[test]
fn concurrent_create_destroy_tune_and_validate() {
    let _watchdog = common::testing::watchdog("concurrent_create_destroy_tune_and_validate");
    let p = util::provider(2, 64);
    let s = Arc::new(util::slab(&p));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The workers start once the checker runs: with two busy workers on a two-CPU machine
    // the checker could otherwise be scheduled only after they finished (seen in rseq mode,
    // where the workers are faster).
    let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut hs = Vec::new();
    for t in 0..2usize {
        let s = s.clone();
        let started = started.clone();
        hs.push(std::thread::spawn(move || {
            while !started.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::yield_now();
            }
            for i in 0..150usize {
                let name = format!("cc-{t}-{i}");
                let c = s
                    .kmem_cache_create(&name, 40 + 24 * (i % 50), 0, SlabFlags::NONE, None)
                    .unwrap();
                let objs: Vec<_> = (0..(i % 70))
                    .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
                    .collect();
                if i % 3 == 0 {
                    s.slabinfo_write(&format!("{name} 16 8 2")).unwrap();
                }
                for o in objs {
                    // SAFETY: freed once.
                    unsafe { s.kmem_cache_free(c, o) }.unwrap();
                }
                // SAFETY: this thread is the only user of its cache.
                unsafe { s.kmem_cache_destroy(c) }.unwrap();
            }
        }));
    }
    let checker = {
        let s = s.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            started.store(true, std::sync::atomic::Ordering::Release);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.validate().unwrap();
                let _ = s.slabinfo();
                s.cache_reap(runs % s.nr_cpu_ids());
                s.advance_jiffies(1000);
                runs += 1;
            }
            runs
        })
    };
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(checker.join().unwrap() > 0);
    assert!(s
        .slabinfo()
        .iter()
        .all(|r| !r.name.as_str().starts_with("cc-")));
    s.validate().unwrap();
}
