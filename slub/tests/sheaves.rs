//! Percpu sheaves and barns, eras 6.18 and 7.0: every rung of the allocation and
//! free ladders with the stat counters as the oracle, barn limits, NUMA bypass, the
//! preallocation API, capacity per size, shrink/destroy, out-of-memory, multi-thread stress.
//!
//! Exact counter checks need the thread to stay on one CPU: each test pins itself and, if the
//! machine does not allow it, prints what it skipped (the structural checks still run).

mod util;

use common::{Gfp, SlabAllocator, SlabError, SlabFlags};
use slub::{
    calculate_sheaf_capacity, Era, KmemCacheArgs, Slub, SlubSettings, StatItem as S,
    MAX_FULL_SHEAVES,
};
use std::ptr::NonNull;
use util::*;

fn era(e: &str) -> SlubSettings {
    SlubSettings::from_boot_options(&format!("era={e} stats")).unwrap()
}

/// Stat snapshot of one cache, for deltas.
struct Snap<'a> {
    s: &'a Slub,
    c: common::CacheHandle,
    base: Vec<u64>,
}

impl<'a> Snap<'a> {
    fn new(s: &'a Slub, c: common::CacheHandle) -> Self {
        let base = S::ALL
            .iter()
            .map(|&i| s.cache_stat(c, i).unwrap())
            .collect();
        Self { s, c, base }
    }
    fn d(&self, i: S) -> u64 {
        self.s.cache_stat(self.c, i).unwrap() - self.base[i as usize]
    }
}

/// Pins this thread to one CPU; says so when it cannot.
fn pinned(test: &str) -> bool {
    let ok = pin(0);
    if !ok {
        say_skip(
            test,
            "could not pin the thread: exact per-CPU counter checks skipped",
        );
    }
    ok
}

fn say_skip(test: &str, why: &str) {
    eprintln!("SKIPPED PART of {test}: {why}");
}

/// A 6.18 cache of `size`-byte objects with `cap`-slot sheaves.
fn cache_618(s: &Slub, name: &str, size: usize, cap: usize) -> common::CacheHandle {
    s.kmem_cache_create_args(
        name,
        size,
        0,
        SlabFlags::NO_MERGE,
        None,
        KmemCacheArgs {
            sheaf_capacity: cap,
        },
    )
    .unwrap()
}

/// One object that never passed through this CPU's sheaves: taken from an oversize
/// prefilled sheaf (filled by the slab path), the rest of which goes back to the slabs.
fn extra_object(s: &Slub, c: common::CacheHandle) -> NonNull<u8> {
    let cap = s.cache_attrs(c).unwrap().sheaf_capacity;
    let mut h = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, cap + 1).unwrap();
    let o = s
        .kmem_cache_alloc_from_sheaf(c, Gfp::KERNEL, &mut h)
        .unwrap();
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap();
    o
}

/// Shrinks every kmalloc cache (twice: sheaves of one kmalloc cache live in another) and
/// flushes the boot caches; returns (objects in use on all slabs, pages held). Objects are
/// exact; pages are not comparable across cycles exactly, because shrink keeps every CPU's
/// (empty) main sheaf, as the kernel does, and where those live moves between slabs.
fn settle(s: &Slub) -> (usize, usize) {
    for _ in 0..2 {
        for &size in common::sizes::slub::SIZES {
            s.kmem_cache_shrink(s.kmalloc_cache(size).unwrap()).unwrap();
        }
    }
    for name in ["kmem_cache", "kmem_cache_node"] {
        s.flush_all(s.find_cache(name).unwrap()).unwrap();
    }
    let mut objects = 0;
    s.for_each_slabinfo(&mut |i| objects += i.active_objs);
    (objects, s.memory_usage().pages)
}

/// Pages that main sheaves may keep beyond a previous settle: one slab (order ≤ 1 for the
/// 64…512-byte sheaf buckets) per CPU main of every cache with sheaves.
fn main_sheaf_slack(s: &Slub, caches_with_sheaves: usize) -> usize {
    2 * s.nr_cpu_ids() * caches_with_sheaves
}

fn alloc_n(s: &Slub, c: common::CacheHandle, n: usize) -> Vec<NonNull<u8>> {
    (0..n)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect()
}

fn free_all(s: &Slub, c: common::CacheHandle, v: &mut Vec<NonNull<u8>>) {
    for o in v.drain(..) {
        // SAFETY: each object freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Settings, capacities, creation
// ---------------------------------------------------------------------------------------------

#[test]
fn eras_parse_and_show() {
    for (t, e) in [("6.18", Era::V6_18), ("7.0", Era::V7_0)] {
        let st = SlubSettings::from_boot_options(&format!("era={t}")).unwrap();
        assert_eq!(st.era, e);
        assert_eq!(e.name(), t);
        let p = provider(1, 32);
        let s = slub_with(&p, st);
        assert!(s.settings_summary().contains(&format!("era={t}")));
    }
    assert!(SlubSettings::from_boot_options("era=6.19").is_err());
}

#[test]
fn calculate_sheaf_capacity_by_size() {
    let f = SlabFlags::NONE;
    // 60 slots: 32 + 480 = 512, exactly kmalloc-512.
    assert_eq!(calculate_sheaf_capacity(8, f, 0), 60);
    assert_eq!(calculate_sheaf_capacity(255, f, 0), 60);
    // 26 → 32 + 208 = 240 → kmalloc-256 → (256 - 32) / 8 = 28.
    assert_eq!(calculate_sheaf_capacity(256, f, 0), 28);
    assert_eq!(calculate_sheaf_capacity(1023, f, 0), 28);
    // 12 → 128 exactly.
    assert_eq!(calculate_sheaf_capacity(1024, f, 0), 12);
    // 4 → 64 exactly.
    assert_eq!(calculate_sheaf_capacity(4096, f, 0), 4);
    assert_eq!(calculate_sheaf_capacity(8192, f, 0), 4);
    // An explicit request wins when larger.
    assert_eq!(calculate_sheaf_capacity(64, f, 100), 100);
    assert_eq!(calculate_sheaf_capacity(64, f, 10), 60);
    // Debug and NOLEAKTRACE caches have none.
    assert_eq!(calculate_sheaf_capacity(64, SlabFlags::RED_ZONE, 0), 0);
    assert_eq!(calculate_sheaf_capacity(64, SlabFlags::NOLEAKTRACE, 0), 0);
}

#[test]
fn era_7_0_caches_get_capacity_by_stride() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("7.0"));
    for (size, cap) in [(64, 60), (300, 28), (2000, 12), (5000, 4)] {
        let c = s
            .kmem_cache_create(&format!("c{size}"), size, 0, SlabFlags::NO_MERGE, None)
            .unwrap();
        assert_eq!(s.cache_attrs(c).unwrap().sheaf_capacity, cap, "size {size}");
    }
    // kmalloc caches get sheaves through the bootstrap step; the boot caches none.
    let k64 = s.kmalloc_cache(64).unwrap();
    assert_eq!(s.cache_attrs(k64).unwrap().sheaf_capacity, 60);
    let k8k = s.kmalloc_cache(8192).unwrap();
    assert_eq!(s.cache_attrs(k8k).unwrap().sheaf_capacity, 4);
    for boot in ["kmem_cache", "kmem_cache_node"] {
        let b = s.find_cache(boot).unwrap();
        assert_eq!(s.cache_attrs(b).unwrap().sheaf_capacity, 0, "{boot}");
    }
    s.validate().unwrap();
}

#[test]
fn era_6_18_sheaves_only_on_request() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let plain = s
        .kmem_cache_create("plain", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    assert_eq!(s.cache_attrs(plain).unwrap().sheaf_capacity, 0);
    let sh = cache_618(&s, "sh", 64, 32);
    assert_eq!(s.cache_attrs(sh).unwrap().sheaf_capacity, 32);
    assert_eq!(
        s.cache_attrs(s.kmalloc_cache(64).unwrap())
            .unwrap()
            .sheaf_capacity,
        0
    );
    // Older eras ignore the argument.
    let p2 = provider(1, 32);
    let old = slub_with(&p2, era("6.4"));
    let c = cache_618(&old, "x", 64, 32);
    assert_eq!(old.cache_attrs(c).unwrap().sheaf_capacity, 0);
    assert_eq!(old.sheaf_census(c).unwrap().objects(), 0);
}

#[test]
fn merging_6_18_refuses_sheaves_7_0_merges() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let mk = |n: &str, cap| {
        s.kmem_cache_create_args(
            n,
            200,
            0,
            SlabFlags::NONE,
            None,
            KmemCacheArgs {
                sheaf_capacity: cap,
            },
        )
        .unwrap()
    };
    let a = mk("a", 16);
    let b = mk("b", 16);
    assert_ne!(a, b, "6.18 caches with sheaves never merge");
    let c = mk("c", 0);
    assert_ne!(a, c, "nor does another cache merge into one with sheaves");
    let d = mk("d", 0);
    assert_eq!(c, d, "caches without sheaves still merge in 6.18");

    let p2 = provider(1, 64);
    let s7 = slub_with(&p2, era("7.0"));
    let x = s7
        .kmem_cache_create("x", 200, 0, SlabFlags::NONE, None)
        .unwrap();
    let y = s7
        .kmem_cache_create("y", 200, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(x, y, "7.0 caches with sheaves are mergeable");
}

#[test]
fn debug_caches_have_no_sheaves_and_work_in_7_0() {
    let p = provider(1, 64);
    let s = slub_with(
        &p,
        SlubSettings {
            slub_debug: Some(slub::SlubDebug::OFF),
            ..era("7.0")
        },
    );
    let c = s
        .kmem_cache_create("dbg", 100, 0, SlabFlags::RED_ZONE | SlabFlags::POISON, None)
        .unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().sheaf_capacity, 0);
    let mut v = alloc_n(&s, c, 300);
    for (i, o) in v.iter().enumerate() {
        fill(*o, 100, i);
    }
    for (i, o) in v.iter().enumerate() {
        assert!(check(*o, 100, i));
    }
    free_all(&s, c, &mut v);
    assert_eq!(s.slab_errors(), 0);
    s.validate().unwrap();
    assert_eq!(s.cache_stat(c, S::ALLOC_FASTPATH).unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// The allocation ladder (6.18, capacity 4)
// ---------------------------------------------------------------------------------------------

#[test]
fn alloc_rung_refill_into_new_sheaf() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("alloc_rung_refill_into_new_sheaf");
    let c = cache_618(&s, "r", 128, 4);
    let sn = Snap::new(&s, c);
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    if exact {
        // Empty main, no spare, no full sheaf in the barn: a new sheaf refilled to capacity.
        assert_eq!(sn.d(S::BARN_GET_FAIL), 1);
        assert_eq!(sn.d(S::SHEAF_ALLOC), 1);
        assert_eq!(sn.d(S::SHEAF_REFILL), 4);
        assert_eq!(sn.d(S::ALLOC_PCS), 1);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!(cen.cpu_main_objects, 3);
        assert_eq!(cen.cpu_spare_objects, 0);
    }
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    s.validate().unwrap();
}

#[test]
fn alloc_rung_refill_reuses_empty_spare() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("alloc_rung_refill_reuses_empty_spare");
    let c = cache_618(&s, "r2", 128, 4);
    let mut v = alloc_n(&s, c, 4); // main emptied, spare = the first (empty) main
    let sn = Snap::new(&s, c);
    v.push(s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap());
    if exact {
        // The empty spare is refilled: no new sheaf.
        assert_eq!(sn.d(S::SHEAF_ALLOC), 0);
        assert_eq!(sn.d(S::SHEAF_REFILL), 4);
        assert_eq!(sn.d(S::BARN_GET_FAIL), 1);
        assert_eq!(s.sheaf_census(c).unwrap().cpu_main_objects, 3);
    }
    free_all(&s, c, &mut v);
    s.validate().unwrap();
}

#[test]
fn alloc_rung_swap_with_full_spare() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("alloc_rung_swap_with_full_spare");
    let c = cache_618(&s, "sw", 128, 4);
    let mut v = alloc_n(&s, c, 8);
    free_all(&s, c, &mut v); // main and spare full
    if exact {
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!((cen.cpu_main_objects, cen.cpu_spare_objects), (4, 4));
    }
    let mut v = alloc_n(&s, c, 4); // main empty
    let sn = Snap::new(&s, c);
    v.push(s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap());
    if exact {
        assert_eq!(sn.d(S::ALLOC_PCS), 1);
        assert_eq!(
            sn.d(S::BARN_GET) + sn.d(S::BARN_GET_FAIL),
            0,
            "no barn visit"
        );
        assert_eq!(sn.d(S::SHEAF_REFILL), 0);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!((cen.cpu_main_objects, cen.cpu_spare_objects), (3, 0));
    }
    free_all(&s, c, &mut v);
    s.validate().unwrap();
}

#[test]
fn alloc_rung_full_sheaf_from_barn() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("alloc_rung_full_sheaf_from_barn");
    let c = cache_618(&s, "bg", 128, 4);
    let mut v = alloc_n(&s, c, 12);
    free_all(&s, c, &mut v); // main, spare full; one full sheaf in the barn
    if exact {
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!(cen.barn_full, 1);
        assert_eq!(cen.objects(), 12);
    }
    let mut v = alloc_n(&s, c, 8); // main and spare drained
    let sn = Snap::new(&s, c);
    v.push(s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap());
    if exact {
        assert_eq!(sn.d(S::BARN_GET), 1);
        assert_eq!(sn.d(S::SHEAF_REFILL), 0);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!((cen.barn_full, cen.barn_empty), (0, 1));
        assert_eq!(cen.cpu_main_objects, 3);
    }
    free_all(&s, c, &mut v);
    s.validate().unwrap();
}

#[test]
fn alloc_rung_nowait_takes_the_slab_path_in_6_18_only() {
    for (e, refills) in [("6.18", false), ("7.0", true)] {
        let p = provider(1, 64);
        let s = slub_with(&p, era(e));
        let exact = pinned("alloc_rung_nowait");
        let c = s
            .kmem_cache_create_args(
                "nw",
                128,
                0,
                SlabFlags::NO_MERGE,
                None,
                KmemCacheArgs { sheaf_capacity: 4 },
            )
            .unwrap();
        let sn = Snap::new(&s, c);
        let o = s.kmem_cache_alloc(c, Gfp::NOWAIT).unwrap();
        if exact {
            assert_eq!(sn.d(S::BARN_GET_FAIL), 1, "era {e}");
            if refills {
                assert!(
                    sn.d(S::SHEAF_REFILL) > 0,
                    "7.x refills whenever it may spin"
                );
                assert_eq!(sn.d(S::ALLOC_FASTPATH), 1);
            } else {
                assert_eq!(sn.d(S::SHEAF_REFILL), 0, "6.18: GFP_NOWAIT never refills");
                assert_eq!(sn.d(S::ALLOC_PCS), 0);
                // The 6.4 CPU-slab path served it.
                assert_eq!(sn.d(S::ALLOC_SLOWPATH), 1);
            }
        }
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        s.validate().unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The free ladder (6.18, capacity 4)
// ---------------------------------------------------------------------------------------------

#[test]
fn free_rung_swap_with_spare_that_has_room() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("free_rung_swap_with_spare_that_has_room");
    let c = cache_618(&s, "fs", 128, 4);
    let mut v = alloc_n(&s, c, 8); // main empty, spare empty
    let mut first: Vec<_> = v.drain(..4).collect();
    free_all(&s, c, &mut first); // main full
    let sn = Snap::new(&s, c);
    free_all(&s, c, &mut v[..1].to_vec());
    if exact {
        assert_eq!(sn.d(S::FREE_PCS), 1);
        assert_eq!(sn.d(S::BARN_PUT) + sn.d(S::BARN_PUT_FAIL), 0);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!((cen.cpu_main_objects, cen.cpu_spare_objects), (1, 4));
    }
    free_all(&s, c, &mut v.split_off(1));
    s.validate().unwrap();
}

#[test]
fn free_rung_no_spare_takes_empty_from_barn() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("free_rung_no_spare_takes_empty_from_barn");
    let c = cache_618(&s, "fe", 128, 4);
    // Reach: spare empty, main full, barn with an empty sheaf. Take the spare away with a
    // prefill (fast: it takes the spare), then return it so it goes... to the spare again.
    // Instead: 12 objects leave a full sheaf in the barn; allocating 9 swaps it in and parks
    // an empty one in the barn; then spare = drained, main = 3.
    let mut v = alloc_n(&s, c, 12);
    free_all(&s, c, &mut v);
    let mut v = alloc_n(&s, c, 9);
    // Take the spare (empty) out with a prefill and keep it: now spare is null.
    let h = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 1).unwrap();
    let mut more = alloc_n(&s, c, 3); // main empty now? main had 3
    free_all(&s, c, &mut more); // main 3 again
    let mut extra = v.split_off(8); // 1 object
    free_all(&s, c, &mut extra); // main 4 (full)
    let sn = Snap::new(&s, c);
    let cen0 = s.sheaf_census(c).unwrap();
    free_all(&s, c, &mut v[..1].to_vec());
    if exact {
        assert_eq!(cen0.barn_empty, 1, "setup: one empty sheaf in the barn");
        // No spare: an empty sheaf from the barn becomes main, main becomes the spare.
        assert_eq!(sn.d(S::FREE_PCS), 1);
        assert_eq!(sn.d(S::SHEAF_ALLOC), 0);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!(cen.barn_empty, 0);
        assert_eq!((cen.cpu_main_objects, cen.cpu_spare_objects), (1, 4));
    }
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap();
    free_all(&s, c, &mut v.split_off(1));
    s.validate().unwrap();
}

#[test]
fn free_rung_barn_has_no_empty_so_alloc_one() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("free_rung_barn_has_no_empty_so_alloc_one");
    let c = cache_618(&s, "fa", 128, 4);
    let mut v = alloc_n(&s, c, 8);
    let mut last = vec![extra_object(&s, c)];
    free_all(&s, c, &mut v); // main and spare full, barn empty
    let sn = Snap::new(&s, c);
    free_all(&s, c, &mut last);
    if exact {
        // barn_replace_full_sheaf: -ENOMEM; alloc_empty_sheaf(GFP_NOWAIT) succeeds and
        // __pcs_install_empty_sheaf puts the full main in the barn.
        assert_eq!(sn.d(S::SHEAF_ALLOC), 1);
        assert_eq!(sn.d(S::BARN_PUT), 1);
        assert_eq!(sn.d(S::BARN_PUT_FAIL), 0);
        assert_eq!(sn.d(S::FREE_PCS), 1);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!((cen.barn_full, cen.cpu_main_objects), (1, 1));
    }
    s.kmem_cache_shrink(c).unwrap();
    s.validate().unwrap();
}

#[test]
fn free_rung_barn_replace_full_with_empty() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("free_rung_barn_replace_full_with_empty");
    let c = cache_618(&s, "fr", 128, 4);
    let mut v = alloc_n(&s, c, 12);
    free_all(&s, c, &mut v); // barn: 1 full
    let mut v = alloc_n(&s, c, 12); // barn: 1 empty (swapped for the full one)
    let mut last = v.split_off(8);
    free_all(&s, c, &mut v); // main, spare full
    let sn = Snap::new(&s, c);
    free_all(&s, c, &mut last[..1].to_vec());
    if exact {
        assert_eq!(sn.d(S::BARN_PUT), 1);
        assert_eq!(sn.d(S::SHEAF_ALLOC), 0, "the barn's empty sheaf was used");
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!((cen.barn_full, cen.barn_empty), (1, 0));
    }
    free_all(&s, c, &mut last.split_off(1));
    s.validate().unwrap();
}

#[test]
fn free_rung_e2big_flushes_the_spare() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("free_rung_e2big_flushes_the_spare");
    let c = cache_618(&s, "big", 128, 4);
    // 2 CPU sheaves + MAX_FULL_SHEAVES barn sheaves, all full, then one more.
    let n = (2 + MAX_FULL_SHEAVES) * 4;
    let mut v = alloc_n(&s, c, n);
    let mut last = vec![extra_object(&s, c)];
    free_all(&s, c, &mut v);
    if exact {
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!(cen.barn_full, MAX_FULL_SHEAVES);
        assert_eq!(cen.objects(), n);
    }
    let sn = Snap::new(&s, c);
    free_all(&s, c, &mut last);
    if exact {
        assert_eq!(sn.d(S::BARN_PUT_FAIL), 1);
        assert_eq!(sn.d(S::SHEAF_FLUSH), 4, "the full spare went to the slabs");
        assert_eq!(sn.d(S::FREE_PCS), 1);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!(cen.barn_full, MAX_FULL_SHEAVES, "the barn limit held");
        assert_eq!((cen.cpu_main_objects, cen.cpu_spare_objects), (1, 4));
    }
    s.kmem_cache_shrink(c).unwrap();
    s.validate().unwrap();
}

#[test]
fn free_rung_flush_main_when_no_sheaf_can_be_had() {
    // A provider with room for a little: the sheaf memory (kmalloc-64) is exhausted on
    // purpose, so alloc_empty_sheaf(GFP_NOWAIT) fails and main is flushed in batches.
    let p = limited_provider(16, 600);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("free_rung_flush_main_when_no_sheaf_can_be_had");
    let c = cache_618(&s, "fm", 512, 4); // sheaf = 64 bytes: kmalloc-64
    let mut v = alloc_n(&s, c, 8);
    let mut last = vec![extra_object(&s, c)];
    free_all(&s, c, &mut v); // main, spare full; barn empty
                             // Exhaust the provider (and with it kmalloc-64).
    let mut hog = Vec::new();
    while let Some(o) = s.kmalloc(64, Gfp::KERNEL) {
        hog.push(o);
    }
    let sn = Snap::new(&s, c);
    free_all(&s, c, &mut last);
    if exact {
        assert_eq!(sn.d(S::SHEAF_ALLOC), 0, "no memory for a sheaf");
        assert_eq!(sn.d(S::BARN_PUT_FAIL), 1);
        assert_eq!(
            sn.d(S::SHEAF_FLUSH),
            4,
            "main flushed in one PCS_BATCH_MAX batch"
        );
        assert_eq!(sn.d(S::FREE_PCS), 1);
        let cen = s.sheaf_census(c).unwrap();
        assert_eq!((cen.cpu_main_objects, cen.cpu_spare_objects), (1, 4));
    }
    for o in hog {
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    s.kmem_cache_shrink(c).unwrap();
    s.validate().unwrap();
}

#[test]
fn barn_holds_max_full_sheaves_and_parks_empties() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("barn_holds_max_full_sheaves_and_parks_empties");
    let c = cache_618(&s, "lim", 64, 4);
    let mut v = alloc_n(&s, c, 400);
    free_all(&s, c, &mut v);
    let cen = s.sheaf_census(c).unwrap();
    if exact {
        // The free ladder never puts more than MAX_FULL_SHEAVES full sheaves in the barn...
        assert_eq!(cen.barn_full, MAX_FULL_SHEAVES);
        assert!(s.cache_stat(c, S::BARN_PUT_FAIL).unwrap() > 0);
    }
    assert!(cen.barn_full <= MAX_FULL_SHEAVES + 2);
    // ...and the allocation ladder parks an empty sheaf for every full one it takes
    // (`barn_put_empty`/`barn_replace_empty_sheaf` do not check MAX_EMPTY_SHEAVES).
    let mut v = alloc_n(&s, c, 400);
    let cen = s.sheaf_census(c).unwrap();
    if exact {
        assert_eq!(cen.barn_full, 0);
        assert_eq!(cen.barn_empty, MAX_FULL_SHEAVES);
    }
    free_all(&s, c, &mut v);
    s.validate().unwrap();
}

// ---------------------------------------------------------------------------------------------
// 7.0 specifics
// ---------------------------------------------------------------------------------------------

#[test]
fn era_7_0_counts_sheaf_hits_as_fastpath_and_has_no_cpu_slabs() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("7.0"));
    let exact = pinned("era_7_0_counts_sheaf_hits_as_fastpath");
    let c = s
        .kmem_cache_create("f7", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let mut v = alloc_n(&s, c, 1000);
    free_all(&s, c, &mut v);
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.cpu_slabs, 0, "7.0 has no CPU slabs");
    assert_eq!(a.slabs_cpu_partial, 0);
    assert_eq!(s.cache_stat(c, S::ALLOC_PCS).unwrap(), 0);
    assert_eq!(s.cache_stat(c, S::DEACTIVATE_BYPASS).unwrap(), 0);
    assert_eq!(s.cache_stat(c, S::CPU_PARTIAL_FREE).unwrap(), 0);
    if exact {
        // Refills come from slabs in whole sheaves: one refill per 60 allocations.
        assert_eq!(
            s.cache_stat(c, S::ALLOC_FASTPATH).unwrap(),
            1000,
            "every allocation from a sheaf"
        );
        assert_eq!(s.cache_stat(c, S::SHEAF_REFILL).unwrap(), 17 * 60);
    }
    s.validate().unwrap();
}

#[test]
fn kmalloc_uses_sheaves_in_7_0() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("7.0"));
    let k = s.kmalloc_cache(128).unwrap();
    let before = s.cache_stat(k, S::ALLOC_FASTPATH).unwrap();
    let v: Vec<_> = (0..100)
        .map(|_| s.kmalloc(100, Gfp::KERNEL).unwrap())
        .collect();
    assert!(s.cache_stat(k, S::ALLOC_FASTPATH).unwrap() >= before + 90);
    for (i, o) in v.iter().enumerate() {
        fill(*o, 100, i);
    }
    for (i, o) in v.iter().enumerate() {
        assert!(check(*o, 100, i));
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn double_free_on_top_of_the_sheaf_is_refused() {
    for e in ["6.18", "7.0"] {
        let p = provider(1, 32);
        let s = slub_with(&p, era(e));
        let exact = pin(0);
        let c = cache_618(&s, "df", 64, 8);
        let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        // SAFETY: the first free is legal; the second is the bug under test.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        // SAFETY: see above.
        let r = unsafe { s.kmem_cache_free(c, o) };
        if exact {
            assert!(matches!(r, Err(SlabError::DoubleFree(_))), "era {e}: {r:?}");
        } else {
            say_skip(
                "double_free",
                "unpinned: the second free may reach another CPU",
            );
        }
        s.validate().unwrap();
    }
}

#[test]
fn init_on_free_zeroes_objects_that_go_to_sheaves() {
    let p = provider(1, 32);
    let st = SlubSettings {
        init_on_free: true,
        ..era("7.0")
    };
    let s = slub_with(&p, st);
    let _ = pinned("init_on_free_zeroes_objects_that_go_to_sheaves");
    let c = s
        .kmem_cache_create("z", 96, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    fill(o, 96, 7);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    let o2 = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: a live 96-byte object.
    let bytes = unsafe { std::slice::from_raw_parts(o2.as_ptr(), 96) };
    assert!(bytes.iter().all(|&b| b == 0));
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o2) }.unwrap();
    s.validate().unwrap();
}

// ---------------------------------------------------------------------------------------------
// NUMA: remote frees bypass sheaves; node-specific allocations
// ---------------------------------------------------------------------------------------------

/// Pins to a CPU of `node` in a 2-fake-node provider; None (said) if impossible.
fn pin_node(p: &common::PageProvider, node: usize, test: &str) -> bool {
    let allowed = common::pin::allowed_cpus();
    for cpu in allowed {
        if p.topology().cpu_to_node(cpu) == node && common::pin::pin_to_cpu(cpu).is_ok() {
            return true;
        }
    }
    say_skip(test, &format!("no CPU of fake node {node} to pin to"));
    false
}

#[test]
fn remote_node_free_bypasses_sheaves() {
    for e in ["6.18", "7.0"] {
        let p = provider(2, 32);
        let s = slub_with(&p, era(e));
        if !pin_node(&p, 0, "remote_node_free_bypasses_sheaves") {
            return;
        }
        let c = cache_618(&s, "rm", 64, 8);
        let o = s.kmem_cache_alloc_node(c, Gfp::KERNEL, 1).unwrap();
        assert_eq!(
            p.page_to_nid(p.virt_to_head_page(o.as_ptr() as usize).unwrap()),
            1
        );
        let sn = Snap::new(&s, c);
        let before = s.sheaf_census(c).unwrap().objects();
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        assert_eq!(s.sheaf_census(c).unwrap().objects(), before, "era {e}");
        assert_eq!(
            sn.d(S::FREE_PCS) + sn.d(S::FREE_FASTPATH) * u64::from(e == "7.0"),
            0
        );
        s.validate().unwrap();
    }
}

#[test]
fn node_requests_use_sheaves_only_for_the_local_node() {
    let p = provider(2, 32);
    let s = slub_with(&p, era("7.0"));
    if !pin_node(&p, 0, "node_requests_use_sheaves_only_for_the_local_node") {
        return;
    }
    let c = s
        .kmem_cache_create("nd", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let warm = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap(); // main refilled from node 0
    let sn = Snap::new(&s, c);
    let local = s.kmem_cache_alloc_node(c, Gfp::KERNEL, 0).unwrap();
    assert_eq!(sn.d(S::ALLOC_FASTPATH), 1, "local node: from the sheaf");
    let remote = s.kmem_cache_alloc_node(c, Gfp::KERNEL, 1).unwrap();
    assert_eq!(
        sn.d(S::ALLOC_NODE_MISMATCH),
        1,
        "another node: the slab path"
    );
    assert_eq!(sn.d(S::ALLOC_FASTPATH), 1);
    assert_eq!(
        p.page_to_nid(p.virt_to_head_page(remote.as_ptr() as usize).unwrap()),
        1
    );
    for o in [warm, local, remote] {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn node_mismatch_of_the_popped_object_falls_back() {
    // A sheaf filled on node 1, returned as the spare of a node-0 CPU: its objects are
    // remote there, and a node-0 request that would pop one goes to the slab path.
    let p = provider(2, 32);
    let s = slub_with(&p, era("6.18"));
    let c = cache_618(&s, "mm", 64, 4);
    if !pin_node(&p, 1, "node_mismatch_of_the_popped_object_falls_back") {
        return;
    }
    let h = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 4).unwrap();
    if !pin_node(&p, 0, "node_mismatch_of_the_popped_object_falls_back") {
        s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap();
        return;
    }
    // Node 0's CPU: empty its main, make the node-1 sheaf its spare.
    let mut v = alloc_n(&s, c, 1); // main refilled (node 0), 3 left
    v.extend(alloc_n(&s, c, 3)); // main empty; the spare is the old empty main
    let h2 = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 1).unwrap(); // takes that spare
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap(); // node-1 sheaf → spare (fast)
    assert_eq!(s.cache_stat(c, S::SHEAF_RETURN_FAST).unwrap(), 1);
    let sn = Snap::new(&s, c);
    let o = s.kmem_cache_alloc_node(c, Gfp::KERNEL, 0).unwrap();
    assert_eq!(sn.d(S::ALLOC_NODE_MISMATCH), 1);
    assert_eq!(sn.d(S::ALLOC_PCS), 0);
    assert_eq!(
        p.page_to_nid(p.virt_to_head_page(o.as_ptr() as usize).unwrap()),
        0
    );
    v.push(o);
    free_all(&s, c, &mut v);
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h2).unwrap();
    s.validate().unwrap();
}

#[test]
fn one_barn_per_fake_node() {
    let p = provider(2, 32);
    let s = slub_with(&p, era("6.18"));
    let c = cache_618(&s, "bn", 64, 4);
    let mut total = 0;
    for node in 0..2 {
        if !pin_node(&p, node, "one_barn_per_fake_node") {
            return;
        }
        let mut v = alloc_n(&s, c, 16);
        free_all(&s, c, &mut v); // leaves full sheaves in this node's barn
        total += 1;
    }
    let cen = s.sheaf_census(c).unwrap();
    assert!(
        cen.barn_full >= total,
        "each node's barn got its own full sheaves"
    );
    s.validate().unwrap();
    s.kmem_cache_shrink(c).unwrap();
    assert_eq!(s.sheaf_census(c).unwrap().barn_full, 0);
}

// ---------------------------------------------------------------------------------------------
// Preallocation API
// ---------------------------------------------------------------------------------------------

#[test]
fn prefill_fast_slow_and_return() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let exact = pinned("prefill_fast_slow_and_return");
    let c = cache_618(&s, "pf", 64, 8);
    assert!(s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 0).is_none());
    // No spare yet: slow (barn empty → a new sheaf, refilled).
    let mut h = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 5).unwrap();
    assert_eq!(s.kmem_cache_sheaf_size(&h), 8, "refilled to full capacity");
    assert_eq!(h.capacity(), 8);
    if exact {
        assert_eq!(s.cache_stat(c, S::SHEAF_PREFILL_SLOW).unwrap(), 1);
        assert_eq!(s.cache_stat(c, S::BARN_GET_FAIL).unwrap(), 1);
    }
    let mut got = Vec::new();
    for i in 0..8 {
        let o = s.kmem_cache_alloc_from_sheaf(c, Gfp::ZERO, &mut h).unwrap();
        // SAFETY: a live 64-byte object.
        assert!(unsafe { std::slice::from_raw_parts(o.as_ptr(), 64) }
            .iter()
            .all(|&b| b == 0));
        fill(o, 64, i);
        got.push(o);
    }
    assert!(
        s.kmem_cache_alloc_from_sheaf(c, Gfp::KERNEL, &mut h)
            .is_none(),
        "never falls back to the cache"
    );
    // Return: becomes the spare (fast).
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap();
    if exact {
        assert_eq!(s.cache_stat(c, S::SHEAF_RETURN_FAST).unwrap(), 1);
    }
    // Prefill again: takes the spare (fast) and refills it.
    let h = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 3).unwrap();
    assert!(s.kmem_cache_sheaf_size(&h) >= 3);
    if exact {
        assert_eq!(s.cache_stat(c, S::SHEAF_PREFILL_FAST).unwrap(), 1);
    }
    // A second return while the spare slot is taken: slow, refilled into the barn.
    let h2 = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 8).unwrap();
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap(); // fast: spare slot free
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h2).unwrap(); // slow
    if exact {
        assert_eq!(s.cache_stat(c, S::SHEAF_RETURN_SLOW).unwrap(), 1);
        assert_eq!(s.sheaf_census(c).unwrap().barn_full, 1);
    }
    for (i, o) in got.iter().enumerate() {
        assert!(check(*o, 64, i));
    }
    free_all(&s, c, &mut got);
    s.validate().unwrap();
    s.kmem_cache_shrink(c).unwrap();
    assert_eq!(s.sheaf_census(c).unwrap().objects(), 0);
}

#[test]
fn prefill_oversize_and_refill_growth() {
    for e in ["6.4", "6.18", "7.0"] {
        let p = provider(1, 64);
        let s = slub_with(&p, era(e));
        let c = cache_618(&s, "ov", 64, 8);
        let cap = s.cache_attrs(c).unwrap().sheaf_capacity;
        let want = cap + 50;
        let mut h = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, want).unwrap();
        assert_eq!(s.kmem_cache_sheaf_size(&h), want, "era {e}");
        assert_eq!(s.cache_stat(c, S::SHEAF_PREFILL_OVERSIZE).unwrap(), 1);
        let o = s
            .kmem_cache_alloc_from_sheaf(c, Gfp::KERNEL, &mut h)
            .unwrap();
        // Refill in place (oversize keeps its capacity)...
        s.kmem_cache_refill_sheaf(c, Gfp::KERNEL, &mut h, want)
            .unwrap();
        assert_eq!(s.kmem_cache_sheaf_size(&h), want);
        // ...or grow into a bigger oversize sheaf.
        s.kmem_cache_refill_sheaf(c, Gfp::KERNEL, &mut h, want + 40)
            .unwrap();
        assert_eq!(s.kmem_cache_sheaf_size(&h), want + 40);
        assert_eq!(s.cache_stat(c, S::SHEAF_PREFILL_OVERSIZE).unwrap(), 2);
        s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap();
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        s.validate().unwrap();
        s.kmem_cache_shrink(c).unwrap();
        assert_eq!(
            s.cache_slabinfo(c).unwrap().active_objs,
            0,
            "era {e}: every object came back"
        );
    }
}

#[test]
fn regular_sheaf_refill_can_become_oversize() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let c = cache_618(&s, "gr", 64, 8);
    let mut h = s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 2).unwrap();
    assert_eq!(h.capacity(), 8);
    s.kmem_cache_refill_sheaf(c, Gfp::KERNEL, &mut h, 20)
        .unwrap();
    assert_eq!(h.capacity(), 20);
    assert_eq!(s.kmem_cache_sheaf_size(&h), 20);
    s.kmem_cache_return_sheaf(c, Gfp::KERNEL, h).unwrap();
    s.validate().unwrap();
}

#[test]
fn sheaf_of_another_cache_is_refused() {
    let p = provider(1, 64);
    let s = slub_with(&p, era("6.18"));
    let a = cache_618(&s, "a", 64, 8);
    let b = cache_618(&s, "b", 64, 8);
    let mut h = s.kmem_cache_prefill_sheaf(a, Gfp::KERNEL, 4).unwrap();
    assert!(s
        .kmem_cache_alloc_from_sheaf(b, Gfp::KERNEL, &mut h)
        .is_none());
    assert_eq!(
        s.kmem_cache_refill_sheaf(b, Gfp::KERNEL, &mut h, 8),
        Err(SlabError::ForeignCache)
    );
    let p2 = provider(1, 32);
    let other = slub_with(&p2, era("6.18"));
    let oc = cache_618(&other, "o", 64, 8);
    let h2 = other.kmem_cache_prefill_sheaf(oc, Gfp::KERNEL, 1).unwrap();
    assert_eq!(
        s.kmem_cache_return_sheaf(a, Gfp::KERNEL, h2),
        Err(SlabError::ForeignCache)
    );
    s.kmem_cache_return_sheaf(a, Gfp::KERNEL, h).unwrap();
    s.validate().unwrap();
}

// ---------------------------------------------------------------------------------------------
// validate, shrink, destroy, bulk, out of memory
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_counts_objects_held_in_sheaves() {
    for e in ["6.18", "7.0"] {
        let p = provider(1, 64);
        let s = slub_with(&p, era(e));
        let c = cache_618(&s, "vc", 64, 16);
        let mut v = alloc_n(&s, c, 500);
        let keep = v.split_off(200);
        free_all(&s, c, &mut v);
        s.flush_all(c).unwrap(); // 6.18: CPU slabs back, so slabinfo is exact
        let cen = s.sheaf_census(c).unwrap();
        assert!(cen.objects() > 0);
        s.validate_cache(c).unwrap();
        // In-use objects on slabs = live objects + objects held by barns (CPU sheaves were
        // flushed by flush_all).
        assert_eq!(cen.cpu_main_objects + cen.cpu_spare_objects, 0);
        assert_eq!(
            s.cache_slabinfo(c).unwrap().active_objs,
            keep.len() + cen.objects(),
            "era {e}"
        );
        let mut keep = keep;
        free_all(&s, c, &mut keep);
    }
}

#[test]
fn shrink_and_destroy_return_every_sheaf() {
    for e in ["6.18", "7.0"] {
        let p = provider(1, 64);
        let s = slub_with(&p, era(e));
        let cycle = || {
            let c = cache_618(&s, "sd", 200, 8);
            let mut v = alloc_n(&s, c, 700);
            free_all(&s, c, &mut v);
            assert!(s.sheaf_census(c).unwrap().objects() > 0);
            s.kmem_cache_shrink(c).unwrap();
            let cen = s.sheaf_census(c).unwrap();
            assert_eq!(cen.objects(), 0, "era {e}");
            assert_eq!(cen.barn_full + cen.barn_empty, 0);
            assert_eq!(
                s.cache_slabinfo(c).unwrap().num_slabs,
                0,
                "every slab back after shrink"
            );
            let mut v = alloc_n(&s, c, 100);
            free_all(&s, c, &mut v);
            // Destroy with objects held in sheaves and barns: flushed first, not Busy.
            // SAFETY: nobody uses the cache after.
            unsafe { s.kmem_cache_destroy(c) }.unwrap();
        };
        cycle();
        let (objects, pages) = settle(&s);
        for _ in 0..3 {
            cycle();
            let (o, pg) = settle(&s);
            assert_eq!(o, objects, "era {e}: objects leaked by a cycle");
            assert!(
                pg <= pages + main_sheaf_slack(&s, common::sizes::slub::SIZES.len()),
                "era {e}: {pg} pages after a cycle, {pages} after the first"
            );
        }
        s.validate().unwrap();
    }
}

#[test]
fn bulk_alloc_and_free_through_sheaves() {
    for e in ["6.18", "7.0"] {
        let p = provider(1, 64);
        let s = slub_with(&p, era(e));
        let c = cache_618(&s, "bk", 64, 32);
        let mut a = vec![std::ptr::null_mut(); 300];
        assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut a), 300);
        let mut seen = std::collections::HashSet::new();
        for (i, &o) in a.iter().enumerate() {
            assert!(seen.insert(o as usize), "duplicate object");
            fill(o, 64, i);
        }
        for (i, &o) in a.iter().enumerate() {
            assert!(check(o, 64, i));
        }
        // SAFETY: each object once, unused after.
        unsafe { s.kmem_cache_free_bulk(c, &mut a) }.unwrap();
        let cen = s.sheaf_census(c).unwrap();
        assert!(cen.objects() > 0, "era {e}: bulk frees went to sheaves");
        let hits = if e == "7.0" {
            S::FREE_FASTPATH
        } else {
            S::FREE_PCS
        };
        assert!(s.cache_stat(c, hits).unwrap() > 0);
        // Bulk again: served from the sheaves first.
        let mut b = vec![std::ptr::null_mut(); 40];
        assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut b), 40);
        // SAFETY: as above.
        unsafe { s.kmem_cache_free_bulk(c, &mut b) }.unwrap();
        s.validate().unwrap();
    }
}

#[test]
fn bulk_free_of_remote_objects_goes_to_slabs() {
    let p = provider(2, 32);
    let s = slub_with(&p, era("7.0"));
    if !pin_node(&p, 0, "bulk_free_of_remote_objects_goes_to_slabs") {
        return;
    }
    let c = s
        .kmem_cache_create("br", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let mut v: Vec<*mut u8> = (0..50)
        .map(|_| s.kmem_cache_alloc_node(c, Gfp::KERNEL, 1).unwrap().as_ptr())
        .collect();
    let sn = Snap::new(&s, c);
    // SAFETY: each once.
    unsafe { s.kmem_cache_free_bulk(c, &mut v) }.unwrap();
    assert_eq!(sn.d(S::FREE_FASTPATH), 0);
    assert_eq!(sn.d(S::FREE_SLOWPATH), 50);
    s.validate().unwrap();
}

#[test]
fn out_of_memory_from_a_limited_provider_leaks_nothing() {
    for e in ["6.18", "7.0"] {
        let p = limited_provider(16, 300);
        let s = slub_with(&p, era(e));
        let c = cache_618(&s, "oom", 256, 16);
        let cycle = || {
            let mut v = Vec::new();
            while let Some(o) = s.kmem_cache_alloc(c, Gfp::KERNEL) {
                fill(o, 256, v.len());
                v.push(o);
                assert!(v.len() < 1_000_000);
            }
            assert!(v.len() > 100, "era {e}: {} objects before OOM", v.len());
            // Prefill and bulk also fail cleanly.
            assert!(s.kmem_cache_prefill_sheaf(c, Gfp::KERNEL, 500).is_none());
            let mut b = vec![std::ptr::null_mut(); 64];
            assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut b), 0);
            for (i, o) in v.iter().enumerate() {
                assert!(check(*o, 256, i));
            }
            free_all(&s, c, &mut v);
            s.validate().unwrap();
            s.kmem_cache_shrink(c).unwrap();
            settle(&s)
        };
        let (objects, pages) = cycle();
        let (o, pg) = cycle();
        assert_eq!(o, objects, "era {e}: objects leaked by an OOM cycle");
        assert!(
            pg <= pages + main_sheaf_slack(&s, common::sizes::slub::SIZES.len() + 1),
            "era {e}: {pg} pages after an OOM cycle, {pages} after the first"
        );
        assert_eq!(s.cache_slabinfo(c).unwrap().active_objs, 0);
    }
}

#[test]
fn older_eras_have_no_sheaves() {
    for e in ["6.4", "2.6.32"] {
        let p = provider(1, 32);
        let s = slub_with(&p, era(e));
        let c = s
            .kmem_cache_create("o", 64, 0, SlabFlags::NO_MERGE, None)
            .unwrap();
        let mut v = alloc_n(&s, c, 100);
        free_all(&s, c, &mut v);
        assert_eq!(s.sheaf_census(c).unwrap(), slub::SheafCensus::default());
        for i in [S::ALLOC_PCS, S::FREE_PCS, S::SHEAF_ALLOC, S::SHEAF_REFILL] {
            assert_eq!(s.cache_stat(c, i).unwrap(), 0);
        }
    }
}

#[test]
fn stat_names_include_the_sheaf_items() {
    for n in [
        "alloc_cpu_sheaf",
        "free_cpu_sheaf",
        "sheaf_flush",
        "sheaf_refill",
        "sheaf_alloc",
        "sheaf_free",
        "barn_get",
        "barn_get_fail",
        "barn_put",
        "barn_put_fail",
        "sheaf_prefill_fast",
        "sheaf_prefill_slow",
        "sheaf_prefill_oversize",
        "sheaf_return_fast",
        "sheaf_return_slow",
    ] {
        assert!(S::NAMES.contains(&n), "{n}");
    }
}

#[test]
fn debug_cache_bulk_alloc_in_7_0_takes_the_debug_path() {
    // Found by running the whole suite with era 7.0 as the default: a debug cache's bulk
    // allocation must not take objects behind the debug path's back.
    let p = provider(1, 32);
    let s = slub_with(
        &p,
        SlubSettings {
            slub_debug: Some(slub::SlubDebug::OFF),
            ..era("7.0")
        },
    );
    let c = s
        .kmem_cache_create("dbulk", 96, 0, SlabFlags::STORE_USER, None)
        .unwrap();
    let per = s.cache_attrs(c).unwrap().objs_per_slab;
    let mut objs = vec![std::ptr::null_mut(); 3 * per];
    assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut objs), 3 * per);
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.slabs, a.full, a.partial), (3, 3, 0));
    s.validate_cache(c).unwrap();
    // SAFETY: each once.
    unsafe { s.kmem_cache_free_bulk(c, &mut objs) }.unwrap();
    s.validate_cache(c).unwrap();
    assert_eq!(s.slab_errors(), 0);
}

// ---------------------------------------------------------------------------------------------
// Multi-thread stress with cross-CPU and cross-node frees, then validate
// ---------------------------------------------------------------------------------------------

fn stress(e: &str, nodes: usize) {
    use std::sync::mpsc;
    let p = provider(nodes, 64);
    let s = slub_with(&p, era(e));
    let c = cache_618(&s, "st", 48, 16);
    let threads = 4;
    let rounds = 20_000;
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| mpsc::channel::<usize>()).unzip();
    std::thread::scope(|sc| {
        for (t, rx) in rxs.into_iter().enumerate() {
            let txs = txs.clone();
            let s = &s;
            sc.spawn(move || {
                let allowed = common::pin::allowed_cpus();
                if !allowed.is_empty() {
                    let _ = common::pin::pin_to_cpu(allowed[t % allowed.len()]);
                }
                let mut rng = 0x9e37_79b9u64.wrapping_mul(t as u64 + 1);
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut mine: Vec<(usize, usize)> = Vec::new();
                for r in 0..rounds {
                    let seed = t * 1_000_000 + r;
                    let o = if next() % 4 == 0 {
                        s.kmem_cache_alloc_node(c, Gfp::KERNEL, (next() as usize) % nodes)
                    } else {
                        s.kmem_cache_alloc(c, Gfp::KERNEL)
                    }
                    .unwrap();
                    fill(o, 48, seed);
                    mine.push((o.as_ptr() as usize, seed));
                    // Objects from other threads: check and free (cross-CPU, cross-node).
                    while let Ok(x) = rx.try_recv() {
                        // SAFETY: an object another thread allocated and handed over.
                        unsafe { s.kmem_cache_free(c, NonNull::new(x as *mut u8).unwrap()) }
                            .unwrap();
                    }
                    if mine.len() > 64 || next() % 3 == 0 {
                        let i = (next() as usize) % mine.len();
                        let (x, sd) = mine.swap_remove(i);
                        assert!(check(x as *mut u8, 48, sd), "object content");
                        let to = (next() as usize) % threads;
                        // A receiver that already finished: free it here instead.
                        if next() % 2 == 1 || txs[to].send(x).is_err() {
                            // SAFETY: ours, freed once.
                            unsafe { s.kmem_cache_free(c, NonNull::new(x as *mut u8).unwrap()) }
                                .unwrap();
                        }
                    }
                    if r % 500 == 0 {
                        let mut b = [std::ptr::null_mut(); 20];
                        assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut b), 20);
                        // SAFETY: just allocated, each once.
                        unsafe { s.kmem_cache_free_bulk(c, &mut b) }.unwrap();
                    }
                }
                for (x, sd) in mine {
                    assert!(check(x as *mut u8, 48, sd));
                    // SAFETY: ours, freed once.
                    unsafe { s.kmem_cache_free(c, NonNull::new(x as *mut u8).unwrap()) }.unwrap();
                }
                rx
            });
        }
    });
    drop(txs);
    // Objects still in flight were received by nobody: the channels are gone with the
    // receivers, so count what validate sees instead.
    s.validate().unwrap();
}

#[test]
fn stress_cross_cpu_frees_7_0() {
    stress("7.0", 1);
}

#[test]
fn stress_cross_cpu_frees_6_18() {
    stress("6.18", 1);
}

#[test]
fn stress_cross_node_frees_7_0() {
    stress("7.0", 2);
}

#[test]
fn stress_cross_node_frees_6_18() {
    stress("6.18", 2);
}

/// rseq mode under a signal storm (aborted sequences) with remote slow paths meddling every
/// millisecond: `flush_all` (every CPU's sheaves flushed from this thread: the busy mark set
/// by store + membarrier fence) and `kmem_cache_shrink` (barns emptied too).
#[test]
fn signal_storm_with_remote_flushes_7_0() {
    if !common::rseq::available() || !common::rseq::fence_available() {
        say_skip(
            "signal_storm_with_remote_flushes_7_0",
            "no rseq or membarrier here: the sheaves run their locked fast path",
        );
        return;
    }
    let p = machine_provider(256);
    let s = slub_with(
        &p,
        SlubSettings {
            fastpath: slub::FastPath::Rseq,
            ..era("7.0")
        },
    );
    let custom = common::testing::storm_cache(&s);
    // rseq mode needs a slot per CPU id of the machine, which this provider has.
    assert_eq!(
        s.sheaf_fastpath(custom).unwrap(),
        Some(slub::FastPath::Rseq),
        "a slot for every CPU id: the sheaves run rseq mode"
    );
    let after = |s: &Slub, r: u64| {
        if r % 40 == 0 {
            s.flush_all(custom).unwrap();
        }
    };
    let meddle = |s: &Slub, k: u64| {
        if k % 2 == 0 {
            s.flush_all(custom).unwrap();
        } else {
            s.kmem_cache_shrink(custom).unwrap();
        }
    };
    let r = common::testing::signal_storm(&s, custom, &after, Some(&meddle));
    eprintln!(
        "sheaves storm: {} threads on {} CPUs, {} signals, {} rseq aborts",
        r.threads, r.cpus, r.signals, r.aborts
    );
    s.validate().unwrap();
    s.validate_cache(custom).unwrap();
}
