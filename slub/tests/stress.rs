//! Deterministic multi-thread stress with cross-CPU frees and content checks, then
//! `validate()`; pinned and migrating threads; several settings.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{CacheHandle, Gfp, SlabAllocator, SlabFlags};
use slub::{Slub, SlubSettings};
use std::sync::mpsc;
use std::sync::Arc;
use util::*;

const SIZES: &[usize] = &[8, 24, 64, 96, 100, 192, 256, 700, 1024, 3000, 8192, 20000];

/// A tagged object: (address, size, seed, custom cache or kmalloc).
#[derive(Clone, Copy)]
struct Obj {
    addr: usize,
    size: usize,
    seed: usize,
    cache: Option<CacheHandle>,
}

fn alloc_one(s: &Slub, custom: CacheHandle, rng: &mut u64, seed: usize) -> Obj {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    let r = *rng as usize;
    if r % 5 == 0 {
        let o = s
            .kmem_cache_alloc(custom, Gfp::KERNEL)
            .expect("custom alloc");
        fill(o, 72, seed);
        Obj {
            addr: o.as_ptr() as usize,
            size: 72,
            seed,
            cache: Some(custom),
        }
    } else {
        let size = SIZES[r % SIZES.len()];
        let o = s.kmalloc(size, Gfp::KERNEL).expect("kmalloc");
        fill(o, size, seed);
        Obj {
            addr: o.as_ptr() as usize,
            size,
            seed,
            cache: None,
        }
    }
}

fn free_one(s: &Slub, o: Obj) {
    assert!(
        check(o.addr as *mut u8, o.size, o.seed),
        "object {:#x} ({} B) corrupted",
        o.addr,
        o.size
    );
    // SAFETY: each object is freed exactly once, by whoever holds it.
    unsafe {
        match o.cache {
            Some(c) => s.kmem_cache_free(c, std::ptr::NonNull::new(o.addr as *mut u8).unwrap()),
            None => s.kfree(o.addr as *mut u8),
        }
    }
    .unwrap();
}

/// `threads` workers in a ring: each allocates, keeps half, sends half to the next worker (a
/// different CPU when pinned), and frees what it receives after checking the contents.
fn ring_stress(settings: SlubSettings, threads: usize, rounds: usize, pin_threads: bool) {
    let p = provider(1, 512);
    let s = Arc::new(slub_with(&p, settings));
    let custom = s
        .kmem_cache_create("stress72", 72, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<Vec<Obj>>()).unzip();
    let mut handles = Vec::new();
    for (t, rx) in rxs.into_iter().enumerate() {
        let s = Arc::clone(&s);
        let tx = txs[(t + 1) % threads].clone();
        handles.push(std::thread::spawn(move || {
            if pin_threads {
                pin(t);
            }
            let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ ((t as u64 + 1) * 0x1234_5678);
            let mut kept: Vec<Obj> = Vec::new();
            for round in 0..rounds {
                let batch: Vec<Obj> = (0..64)
                    .map(|i| alloc_one(&s, custom, &mut rng, t * 1_000_000 + round * 100 + i))
                    .collect();
                let mut give = Vec::new();
                let mut keep = Vec::new();
                for (i, o) in batch.into_iter().enumerate() {
                    if i % 2 == 0 {
                        give.push(o);
                    } else {
                        keep.push(o);
                    }
                }
                kept.extend(keep);
                tx.send(give).unwrap();
                if let Ok(got) = rx.recv() {
                    for o in got {
                        free_one(&s, o);
                    }
                }
                // Keep a bounded working set, freeing in a scrambled order.
                while kept.len() > 200 {
                    let i = (rng as usize) % kept.len();
                    let o = kept.swap_remove(i);
                    free_one(&s, o);
                }
            }
            drop(tx);
            for got in &rx {
                for o in got {
                    free_one(&s, o);
                }
            }
            for o in kept {
                free_one(&s, o);
            }
        }));
    }
    drop(txs);
    for h in handles {
        h.join().unwrap();
    }
    s.validate().unwrap();
    for name in common::sizes::slub::NAMES {
        let h = s.find_cache(name).unwrap();
        s.flush_all(h).unwrap();
        assert_eq!(
            s.cache_attrs(h).unwrap().objects,
            0,
            "{name} leaked objects"
        );
    }
    s.flush_all(custom).unwrap();
    assert_eq!(s.cache_attrs(custom).unwrap().objects, 0);
    s.kmem_cache_shrink(custom).unwrap();
    // SAFETY: all threads are done.
    unsafe { s.kmem_cache_destroy(custom) }.unwrap();
    assert_eq!(p.stats().owner(common::Owner::LargeKmalloc), 0);
    drop(Arc::try_unwrap(s).ok().expect("sole owner"));
    assert_eq!(p.stats().pages_in_use, 0);
}

#[test]
fn ring_stress_pinned() {
    let _watchdog = common::testing::watchdog("ring_stress_pinned");
    ring_stress(SlubSettings::default(), 2, 300, true);
}

#[test]
fn ring_stress_migrating_threads_share_cpu_slots() {
    let _watchdog = common::testing::watchdog("ring_stress_migrating_threads_share_cpu_slots");
    // More threads than CPUs, unpinned: several threads use one CPU slot at once.
    ring_stress(
        SlubSettings {
            stats: true,
            ..SlubSettings::default()
        },
        6,
        150,
        false,
    );
}

#[test]
fn ring_stress_hardened_and_2_6_32() {
    let _watchdog = common::testing::watchdog("ring_stress_hardened_and_2_6_32");
    ring_stress(
        SlubSettings {
            freelist_hardened: true,
            ..SlubSettings::default()
        },
        3,
        120,
        false,
    );
    ring_stress(SlubSettings::v2_6_32(), 3, 120, false);
}

#[test]
fn ring_stress_tiny_partials() {
    let _watchdog = common::testing::watchdog("ring_stress_tiny_partials");
    ring_stress(
        SlubSettings {
            cpu_partial: Some(0),
            min_partial: Some(0),
            slub_max_order: 0,
            ..SlubSettings::default()
        },
        4,
        120,
        false,
    );
}

/// Hammer one slab from many threads: same cache, alloc/free pairs and cross frees, which
/// exercises the tid cmpxchg and the slab cmpxchg under contention.
#[test]
fn same_cache_contention() {
    let _watchdog = common::testing::watchdog("same_cache_contention");
    let p = provider(1, 128);
    let s = Arc::new(slub_with(&p, stats_on()));
    let c = s
        .kmem_cache_create("hot", 32, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let shared: Arc<Vec<std::sync::atomic::AtomicUsize>> = Arc::new(
        (0..256)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect(),
    );
    let hs: Vec<_> = (0..4)
        .map(|t| {
            let s = Arc::clone(&s);
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for i in 0..20_000usize {
                    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
                    let tag = (t << 24 | i) as u64;
                    // SAFETY: a live 32-byte object.
                    unsafe { o.as_ptr().cast::<u64>().write(tag) };
                    let slot = &shared[(i * 7 + t) % 256];
                    let prev = slot.swap(o.as_ptr() as usize, std::sync::atomic::Ordering::AcqRel);
                    if prev != 0 {
                        // SAFETY: taken out of the shared slot by swap: we own it now.
                        unsafe {
                            s.kmem_cache_free(c, std::ptr::NonNull::new(prev as *mut u8).unwrap())
                        }
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    for slot in shared.iter() {
        let o = slot.swap(0, std::sync::atomic::Ordering::AcqRel);
        if o != 0 {
            // SAFETY: the last holder of each slot.
            unsafe { s.kmem_cache_free(c, std::ptr::NonNull::new(o as *mut u8).unwrap()) }.unwrap();
        }
    }
    s.validate().unwrap();
    s.flush_all(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().objects, 0);
    let total = s.cache_stat(c, slub::StatItem::ALLOC_FASTPATH).unwrap()
        + s.cache_stat(c, slub::StatItem::ALLOC_SLOWPATH).unwrap();
    assert_eq!(total, 80_000);
}

/// Bulk allocation on one thread, bulk free of the same batch on another (cross-CPU chains).
#[test]
fn bulk_cross_thread() {
    let _watchdog = common::testing::watchdog("bulk_cross_thread");
    let p = provider(1, 128);
    let s = Arc::new(slub(&p));
    let c = s
        .kmem_cache_create("bulkx", 96, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let (tx, rx) = mpsc::channel::<Vec<usize>>();
    let producer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            pin(0);
            for round in 0..200 {
                let mut v = vec![core::ptr::null_mut::<u8>(); 1 + round % 150];
                assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut v), v.len());
                for (i, &o) in v.iter().enumerate() {
                    fill(o, 96, round * 1000 + i);
                }
                tx.send(v.into_iter().map(|o| o as usize).collect())
                    .unwrap();
            }
        })
    };
    let consumer = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            pin(1);
            for (round, v) in rx.iter().enumerate() {
                for (i, &o) in v.iter().enumerate() {
                    assert!(check(o as *mut u8, 96, round * 1000 + i));
                }
                let mut ptrs: Vec<*mut u8> = v.into_iter().map(|o| o as *mut u8).collect();
                // SAFETY: each object once, all of c, handed over by the producer.
                unsafe { s.kmem_cache_free_bulk(c, &mut ptrs) }.unwrap();
            }
        })
    };
    producer.join().unwrap();
    consumer.join().unwrap();
    s.validate().unwrap();
    s.flush_all(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().objects, 0);
}

/// Cache creation/destruction (with merging) racing with allocation, slabinfo and validate().
#[test]
fn create_destroy_validate_concurrently() {
    let _watchdog = common::testing::watchdog("create_destroy_validate_concurrently");
    let p = provider(2, 128);
    let s = Arc::new(slub(&p));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let creator = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            for i in 0..300usize {
                let size = 16 + (i * 40) % 3000;
                let flags = if i % 3 == 0 {
                    SlabFlags::NO_MERGE
                } else {
                    SlabFlags::NONE
                };
                let c = s
                    .kmem_cache_create(&format!("c{i}"), size, 0, flags, None)
                    .unwrap();
                let objs: Vec<_> = (0..20)
                    .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
                    .collect();
                for (k, o) in objs.iter().enumerate() {
                    fill(*o, size, k);
                }
                for (k, o) in objs.iter().enumerate() {
                    assert!(check(*o, size, k));
                    // SAFETY: freed once.
                    unsafe { s.kmem_cache_free(c, *o) }.unwrap();
                }
                // SAFETY: nobody else uses c (aliases of kmalloc caches only drop a reference).
                unsafe { s.kmem_cache_destroy(c) }.unwrap();
            }
        })
    };
    let user = {
        let s = Arc::clone(&s);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let v: Vec<_> = (0..50)
                    .map(|i| {
                        s.kmalloc_node(8 + (n + i) % 500, Gfp::KERNEL, i % 2)
                            .unwrap()
                    })
                    .collect();
                for o in v {
                    // SAFETY: freed once.
                    unsafe { s.kfree(o.as_ptr()) }.unwrap();
                }
                n += 1;
            }
        })
    };
    let checker = {
        let s = Arc::clone(&s);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.validate().unwrap();
                assert!(s.slabinfo().len() >= 15);
                std::thread::yield_now();
            }
        })
    };
    creator.join().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    user.join().unwrap();
    checker.join().unwrap();
    s.validate().unwrap();
    // Only the 15 permanent caches remain, every alias dropped.
    assert_eq!(s.slabinfo().len(), 15);
    for name in common::sizes::slub::NAMES {
        let h = s.find_cache(name).unwrap();
        assert_eq!(s.cache_attrs(h).unwrap().aliases, 0, "{name}");
    }
}
