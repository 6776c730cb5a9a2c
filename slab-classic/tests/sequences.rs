//! Random operation sequences (seeded, single thread, so every run is the same) over many
//! caches on two fake nodes, checked against a model of the live objects, with validate()
//! every few hundred steps: create/destroy, alloc/alloc_node/kmalloc/kmalloc_node, frees in
//! random order, shrink, tunables, reaping with the clock moving.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabError, SlabFlags};
use core::ptr::NonNull;

use common::testing::XorShift as Rng;

struct Live {
    ptr: NonNull<u8>,
    len: usize,
    seed: u64,
    cache: Option<usize>,
}

fn run(seed: u64, steps: usize) {
    let p = util::provider(2, 64);
    let s = util::slab(&p);
    s.shrink_all();
    let baseline = p.stats().pages_in_use;
    let mut rng = Rng(seed);
    let mut caches: Vec<(common::CacheHandle, usize)> = Vec::new();
    let mut live: Vec<Live> = Vec::new();
    let mut made = 0;
    let flags = [
        SlabFlags::NONE,
        SlabFlags::HWCACHE_ALIGN,
        SlabFlags::RECLAIM_ACCOUNT,
    ];
    for step in 0..steps {
        match rng.below(20) {
            0 if caches.len() < 8 => {
                let size = [8, 24, 100, 192, 500, 1000, 3000, 5000, 20000][rng.below(9)];
                let align = [0, 0, 16, 128][rng.below(4)];
                let c = s
                    .kmem_cache_create(
                        &format!("seq{made}"),
                        size,
                        align,
                        flags[rng.below(3)],
                        None,
                    )
                    .unwrap();
                made += 1;
                caches.push((c, size));
            }
            1 if !caches.is_empty() => {
                let i = rng.below(caches.len());
                let (c, _) = caches[i];
                let in_use = live.iter().filter(|l| l.cache == Some(i)).count();
                // SAFETY: nothing else uses the cache; refused while objects live.
                let r = unsafe { s.kmem_cache_destroy(c) };
                if in_use > 0 {
                    assert!(matches!(r, Err(SlabError::Busy { .. })), "{r:?}");
                } else {
                    r.unwrap();
                    caches.swap_remove(i);
                    for l in &mut live {
                        if l.cache == Some(caches.len()) {
                            l.cache = Some(i);
                        }
                    }
                }
            }
            2..=6 if !caches.is_empty() => {
                let i = rng.below(caches.len());
                let (c, size) = caches[i];
                let o = if rng.below(3) == 0 {
                    s.kmem_cache_alloc_node(c, Gfp::KERNEL, rng.below(2))
                } else {
                    s.kmem_cache_alloc(c, Gfp::KERNEL)
                }
                .unwrap();
                let seed = rng.next();
                util::fill(o.as_ptr(), size, seed);
                live.push(Live {
                    ptr: o,
                    len: size,
                    seed,
                    cache: Some(i),
                });
            }
            7..=10 => {
                let max = if rng.below(10) == 0 { 70_000 } else { 1500 };
                let len = 1 + rng.below(max);
                let o = if rng.below(2) == 0 {
                    s.kmalloc_node(len, Gfp::KERNEL, rng.below(2))
                } else {
                    s.kmalloc(len, Gfp::KERNEL)
                }
                .unwrap();
                // SAFETY: live object.
                assert!(unsafe { s.ksize(o) }.unwrap() >= len);
                let seed = rng.next();
                util::fill(o.as_ptr(), len, seed);
                live.push(Live {
                    ptr: o,
                    len,
                    seed,
                    cache: None,
                });
            }
            11..=15 if !live.is_empty() => {
                let l = live.swap_remove(rng.below(live.len()));
                assert!(
                    util::check(l.ptr.as_ptr(), l.len, l.seed),
                    "step {step}: overwritten"
                );
                // SAFETY: freed once.
                unsafe {
                    match l.cache {
                        Some(i) => s.kmem_cache_free(caches[i].0, l.ptr).unwrap(),
                        None => s.kfree(l.ptr.as_ptr()).unwrap(),
                    }
                }
            }
            16 if !caches.is_empty() => {
                let (c, _) = caches[rng.below(caches.len())];
                s.kmem_cache_shrink(c).unwrap();
            }
            17 if !caches.is_empty() => {
                let (c, _) = caches[rng.below(caches.len())];
                let limit = 1 + rng.below(150) as u32;
                let batch = 1 + rng.below(limit as usize) as u32;
                s.kmem_cache_tune(c, limit, batch, rng.below(9) as u32)
                    .unwrap();
            }
            18 => {
                s.advance_jiffies(rng.below(3000));
                s.cache_reap(rng.below(s.nr_cpu_ids()));
            }
            _ => {}
        }
        if step % 500 == 499 {
            s.validate()
                .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
        }
    }
    for l in live.drain(..) {
        assert!(util::check(l.ptr.as_ptr(), l.len, l.seed));
        // SAFETY: freed once.
        unsafe {
            match l.cache {
                Some(i) => s.kmem_cache_free(caches[i].0, l.ptr).unwrap(),
                None => s.kfree(l.ptr.as_ptr()).unwrap(),
            }
        }
    }
    for (c, _) in caches {
        // SAFETY: unused now.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
    }
    s.validate().unwrap();
    s.shrink_all();
    assert_eq!(
        p.stats().pages_in_use,
        baseline,
        "seed {seed}: pages leaked"
    );
}

#[test]
fn random_sequences() {
    let _watchdog = common::testing::watchdog("random_sequences");
    for seed in [1, 2, 3, 4, 5, 6, 7, 0xDEAD_BEEF] {
        run(seed, 20_000);
    }
}
