//! Seeded multi-thread stress of both allocators through the common API: every CPU (and more
//! threads than CPUs), fake NUMA with 1, 2 and 4 nodes, random sizes (kmalloc classes, large
//! kmalloc, dedicated caches) and lifetimes, `kmalloc_node` on random nodes, a quarter of the
//! objects freed by another thread (cross-CPU and, with fake NUMA, cross-node), every object
//! stamped and checked before it is freed. After each run: zero corruptions, `validate()` clean,
//! and once everything is freed and every cache shrunk, the provider holds exactly the bootstrap
//! footprint again.
//!
//! The short version runs in `cargo test`. The long one: `SLABWORKS_STRESS_SECS=600 cargo test
//! --release -p harness --test stress -- --nocapture` (seconds per allocator and node count).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

use common::api::{SlabAllocator, SlabFlags};
use common::{CacheHandle, Gfp, PageProvider, ProviderConfig, Topology};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One live object: address, size, stamp, and where it came from.
#[derive(Clone, Copy)]
struct Obj {
    p: usize,
    size: usize,
    stamp: u64,
    cache: Option<usize>,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The stamped words of an object: first, middle and last (distinct indices only) with their
/// values.
fn stamps(o: &Obj) -> impl Iterator<Item = (usize, u64)> {
    let words = o.size / 8;
    let last = words - 1;
    let mid = words / 2;
    [
        Some((0, o.stamp)),
        (mid != 0 && mid != last).then_some((mid, o.stamp.rotate_left(17))),
        (last != 0).then_some((last, !o.stamp)),
    ]
    .into_iter()
    .flatten()
}

fn stamp_obj(o: &Obj) {
    let p = o.p as *mut u64;
    for (i, v) in stamps(o) {
        // SAFETY: a live object of at least `size` (>= 8) bytes owned by the caller; i < size/8.
        unsafe { p.add(i).write(v) };
    }
}

fn check_obj(o: &Obj) -> bool {
    let p = o.p as *const u64;
    // SAFETY: as in stamp_obj.
    stamps(o).all(|(i, v)| unsafe { p.add(i).read() } == v)
}

const CACHE_SIZES: [usize; 3] = [40, 192, 704];

struct Totals {
    ops: AtomicU64,
    remote: AtomicU64,
    corrupt: AtomicU64,
    oom: AtomicU64,
}

fn free_obj<A: SlabAllocator>(a: &A, caches: &[CacheHandle], o: &Obj, t: &Totals) {
    if !check_obj(o) {
        t.corrupt.fetch_add(1, Ordering::Relaxed);
    }
    let p = NonNull::new(o.p as *mut u8).expect("non-null");
    // SAFETY: each object is freed exactly once, by whoever holds its Obj.
    let r = unsafe {
        match o.cache {
            Some(c) => a.kmem_cache_free(caches[c], p),
            None => a.kfree(p.as_ptr()),
        }
    };
    assert!(r.is_ok(), "free failed: {r:?}");
}

fn run<A: SlabAllocator>(
    a: &A,
    shrink_everything: &dyn Fn(&A),
    threads: usize,
    dur: Duration,
    seed: u64,
) {
    let (footprint, after) = run_measured(a, shrink_everything, threads, dur, seed);
    assert_eq!(
        after,
        footprint,
        "{}: provider back to the bootstrap footprint",
        a.name()
    );
}

/// [`run`] without the footprint assertion: returns the pages in use before and after.
fn run_measured<A: SlabAllocator>(
    a: &A,
    shrink_everything: &dyn Fn(&A),
    threads: usize,
    dur: Duration,
    seed: u64,
) -> (usize, usize) {
    let footprint = a.provider().stats().pages_in_use;
    let caches: Vec<CacheHandle> = CACHE_SIZES
        .iter()
        .map(|&s| {
            a.kmem_cache_create(&format!("stress-{s}"), s, 0, SlabFlags::NONE, None)
                .unwrap()
        })
        .collect();
    let nodes = a.provider().nr_nodes();
    let inboxes: Vec<Mutex<Vec<Obj>>> = (0..threads).map(|_| Mutex::new(Vec::new())).collect();
    let totals = Totals {
        ops: AtomicU64::new(0),
        remote: AtomicU64::new(0),
        corrupt: AtomicU64::new(0),
        oom: AtomicU64::new(0),
    };
    let cpus = common::pin::allowed_cpus();
    let start = Instant::now();
    std::thread::scope(|s| {
        for me in 0..threads {
            let (caches, inboxes, totals, cpus) = (&caches, &inboxes, &totals, &cpus);
            s.spawn(move || {
                // Pin the first threads, leave the rest free to migrate.
                if me < cpus.len() {
                    let _ = common::pin::pin_to_cpu(cpus[me]);
                }
                let mut rng = Rng(seed ^ (me as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut live: Vec<Obj> = Vec::with_capacity(4096);
                let mut n = 0u64;
                while start.elapsed() < dur {
                    for _ in 0..256 {
                        n += 1;
                        let r = rng.below(100);
                        if live.len() < 3000 && (r < 55 || live.is_empty()) {
                            let (p, size, cache) = match rng.below(10) {
                                0..=5 => {
                                    let size = 8 << rng.below(11); // 8 .. 8192
                                    let size = (size + rng.below(size as u64) as usize).max(8) & !7;
                                    (a.kmalloc(size, Gfp::KERNEL), size, None)
                                }
                                6 => {
                                    let size = 64 + 8 * rng.below(100) as usize;
                                    let node = rng.below(nodes as u64) as usize;
                                    (a.kmalloc_node(size, Gfp::KERNEL, node), size, None)
                                }
                                7 if rng.below(50) == 0 => {
                                    let size = 16384 + 4096 * rng.below(64) as usize;
                                    (a.kmalloc(size, Gfp::KERNEL), size, None)
                                }
                                _ => {
                                    let c = rng.below(CACHE_SIZES.len() as u64) as usize;
                                    (
                                        a.kmem_cache_alloc(caches[c], Gfp::KERNEL),
                                        CACHE_SIZES[c],
                                        Some(c),
                                    )
                                }
                            };
                            let Some(p) = p else {
                                totals.oom.fetch_add(1, Ordering::Relaxed);
                                continue;
                            };
                            let o = Obj {
                                p: p.as_ptr() as usize,
                                size,
                                stamp: rng.next(),
                                cache,
                            };
                            stamp_obj(&o);
                            live.push(o);
                        } else if !live.is_empty() {
                            let i = rng.below(live.len() as u64) as usize;
                            let o = live.swap_remove(i);
                            if threads > 1 && rng.below(4) == 0 {
                                let to =
                                    (me + 1 + rng.below(threads as u64 - 1) as usize) % threads;
                                inboxes[to].lock().unwrap().push(o);
                                totals.remote.fetch_add(1, Ordering::Relaxed);
                            } else {
                                free_obj(a, caches, &o, totals);
                            }
                        }
                        if n % 64 == 0 {
                            let mine = std::mem::take(&mut *inboxes[me].lock().unwrap());
                            for o in &mine {
                                free_obj(a, caches, o, totals);
                            }
                        }
                        if n % 1024 == 0 && rng.below(8) == 0 {
                            std::thread::yield_now();
                        }
                    }
                }
                for o in &live {
                    free_obj(a, caches, o, totals);
                }
                totals.ops.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    for inbox in &inboxes {
        for o in inbox.lock().unwrap().drain(..) {
            free_obj(a, &caches, &o, &totals);
        }
    }
    let corrupt = totals.corrupt.load(Ordering::Relaxed);
    assert_eq!(
        corrupt,
        0,
        "{}: {corrupt} objects changed while live",
        a.name()
    );
    a.validate()
        .unwrap_or_else(|e| panic!("{}: validate after stress: {e}", a.name()));
    for c in caches {
        a.kmem_cache_shrink(c).unwrap();
        // SAFETY: all threads are done with the cache.
        unsafe { a.kmem_cache_destroy(c) }.unwrap();
    }
    // Shrinking one cache can free objects into another (SLAB's off-slab descriptors and array
    // caches live in size-N caches), so shrink everything until nothing more comes back.
    let mut pages = usize::MAX;
    for _ in 0..8 {
        shrink_everything(a);
        let now = a.provider().stats().pages_in_use;
        if now == pages {
            break;
        }
        pages = now;
    }
    a.validate().unwrap();
    let after = a.provider().stats().pages_in_use;
    eprintln!(
        "{}: {} threads, {} nodes, {:.1} s: {} ops, {} remote frees, {} NULLs, 0 corruptions; pages {} -> {}",
        a.name(),
        threads,
        nodes,
        start.elapsed().as_secs_f64(),
        totals.ops.load(Ordering::Relaxed),
        totals.remote.load(Ordering::Relaxed),
        totals.oom.load(Ordering::Relaxed),
        footprint,
        after
    );
    (footprint, after)
}

fn duration() -> Duration {
    std::env::var("SLABWORKS_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(Duration::from_millis(400), Duration::from_secs_f64)
}

fn provider(nodes: usize) -> PageProvider {
    let topo = Topology::from_sysfs().unwrap();
    let topo = if nodes > topo.nr_nodes() {
        topo.with_fake_numa(nodes).unwrap()
    } else {
        topo
    };
    PageProvider::new(&ProviderConfig::small(topo, 512)).unwrap()
}

fn threads() -> usize {
    (common::pin::allowed_cpus().len() * 2).max(3)
}

fn slub_shrink(a: &slub::Slub) {
    for &size in common::sizes::slub::SIZES {
        if let Some(h) = a.kmalloc_cache(size) {
            a.kmem_cache_shrink(h).unwrap();
        }
    }
}

#[test]
fn slab_classic_stress_1_2_4_nodes() {
    let _watchdog = common::testing::watchdog("slab_classic_stress_1_2_4_nodes");
    for nodes in [1, 2, 4] {
        let p = provider(nodes);
        let a = slab_classic::Slab::new(&p, slab_classic::SlabSettings::default()).unwrap();
        run(
            &a,
            &|a| a.shrink_all(),
            threads(),
            duration(),
            0x5eed + nodes as u64,
        );
    }
}

#[test]
fn slub_stress_1_2_4_nodes() {
    let _watchdog = common::testing::watchdog("slub_stress_1_2_4_nodes");
    for nodes in [1, 2, 4] {
        let p = provider(nodes);
        let a = slub::Slub::new(&p, slub::SlubSettings::default()).unwrap();
        run(
            &a,
            &slub_shrink,
            threads(),
            duration(),
            0x5eed + nodes as u64,
        );
    }
}

#[test]
fn slub_2_6_32_era_stress() {
    let _watchdog = common::testing::watchdog("slub_2_6_32_era_stress");
    let p = provider(2);
    let a = slub::Slub::new(&p, slub::SlubSettings::v2_6_32()).unwrap();
    run(&a, &slub_shrink, threads(), duration(), 0x2632);
}

/// Issue 17: SLUB with percpu sheaves (era 7.0, every cache; era 6.18 with no opt-in caches
/// here, so its kmalloc paths are the 6.4 ones plus the sheaf dispatch test).
#[test]
fn slub_sheaves_eras_stress() {
    for (era, nodes) in [
        (slub::Era::V7_0, 1),
        (slub::Era::V7_0, 2),
        (slub::Era::V6_18, 2),
    ] {
        let p = provider(nodes);
        let a = slub::Slub::new(
            &p,
            slub::SlubSettings {
                era,
                ..slub::SlubSettings::default()
            },
        )
        .unwrap();
        let objects = |a: &slub::Slub| {
            let mut n = 0;
            a.for_each_slabinfo(&mut |i| n += i.active_objs);
            n
        };
        // Every cache's CPU slabs (6.18) back to the lists, so slabinfo is exact.
        let flush_boot = |a: &slub::Slub| {
            slub_shrink(a);
            for name in ["kmem_cache", "kmem_cache_node"] {
                a.flush_all(a.find_cache(name).unwrap()).unwrap();
            }
        };
        flush_boot(&a);
        let before = objects(&a);
        let (footprint, after) = run_measured(
            &a,
            &slub_shrink,
            threads(),
            duration(),
            0x7000 + nodes as u64,
        );
        // Every object is back: the slabs hold exactly what they held after bootstrap (the
        // kmalloc caches' own main sheaves).
        flush_boot(&a);
        assert_eq!(objects(&a), before, "{era:?}: objects in use after shrink");
        // Pages may not be: shrink keeps each CPU's (empty) main sheaf, as the kernel does,
        // and after a run those live in other kmalloc slabs than at bootstrap — at most one
        // slab (order ≤ 1 for the 64…512-byte sheaf buckets) per main sheaf.
        let mains = a.nr_cpu_ids() * common::sizes::slub::SIZES.len();
        assert!(
            after <= footprint + 2 * mains,
            "{era:?}: {after} pages after, {footprint} at bootstrap, {mains} main sheaves"
        );
    }
}
