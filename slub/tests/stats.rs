//! Slow-path outcomes with the stat counters as the oracle, and the fast-path tid sequence.
//! These tests pin the thread to one CPU so every operation uses one CPU slot.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabFlags};
use slub::{tid_to_cpu, tid_to_event, StatItem as S};
use util::*;

#[test]
fn full_slab_freed_remotely_goes_to_cpu_partial() {
    let p = provider(1, 64);
    let s = slub_with(&p, stats_on());
    let pinned = pin(0);
    let c = s
        .kmem_cache_create("st", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let per = s.cache_attrs(c).unwrap().objs_per_slab;
    assert_eq!(per, 64);
    let st = |i: S| s.cache_stat(c, i).unwrap();
    let objs: Vec<_> = (0..2 * per)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    if pinned {
        assert_eq!(st(S::ALLOC_SLAB), 2);
        assert_eq!(st(S::ALLOC_SLOWPATH), 2);
        assert_eq!(st(S::ALLOC_FASTPATH), 2 * per as u64 - 2);
        // The first CPU slab ran dry: bypassed (full, unfrozen, on no list).
        assert_eq!(st(S::DEACTIVATE_BYPASS), 1);
    }
    assert_eq!(
        st(S::ALLOC_FASTPATH) + st(S::ALLOC_SLOWPATH),
        2 * per as u64
    );
    // Free one object of the full first slab: it is frozen onto the per-CPU partial list.
    // SAFETY: each object freed once.
    unsafe { s.kmem_cache_free(c, objs[0]) }.unwrap();
    if pinned {
        assert_eq!(st(S::CPU_PARTIAL_FREE), 1);
        assert_eq!(st(S::FREE_SLOWPATH), 1);
        assert_eq!(s.cache_attrs(c).unwrap().slabs_cpu_partial, 1);
    }
    // The rest of that slab joins the frozen slab's freelist.
    for o in &objs[1..per] {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    if pinned {
        assert_eq!(st(S::FREE_FROZEN), per as u64 - 1);
        // Allocating again: the CPU slab is exhausted, the per-CPU partial slab is taken.
        let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        assert_eq!(st(S::CPU_PARTIAL_ALLOC), 1);
        assert_eq!(st(S::DEACTIVATE_BYPASS), 2);
        assert_eq!(st(S::ALLOC_REFILL), 1);
        // SAFETY: freed once (fast path: it is the CPU slab's object).
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        assert_eq!(st(S::FREE_FASTPATH), 1);
    }
    // flush_all: the CPU slab (all objects free again) is deactivated.
    s.flush_all(c).unwrap();
    assert!(st(S::CPUSLAB_FLUSH) >= 1);
    // Second slab: still fully allocated.
    for o in &objs[per..] {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    s.validate_cache(c).unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.objects, 0);
    assert!(a.slabs <= 2);
    s.kmem_cache_shrink(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().slabs, 0);
    // Shrink frees with free_slab directly: FREE_SLAB counts only discard_slab callers.
    // Totals and names through the trait.
    let mut names = Vec::new();
    s.for_each_stat(&mut |n, _| names.push(n));
    // The 26 items of 6.4, then the 15 sheaf items of 6.18.
    assert_eq!(names.len(), 26 + 15);
    assert_eq!(names[0], "alloc_fastpath");
    assert_eq!(names[25], "cpu_partial_drain");
}

#[test]
fn cpu_partial_drain_and_unfreeze() {
    let p = provider(1, 64);
    let s = slub_with(&p, stats_on());
    if common::testing::skip_unless(
        "cpu_partial_drain_and_unfreeze",
        "pin",
        pin(0),
        "cannot pin this thread to a CPU",
    ) {
        return;
    }
    let c = s
        .kmem_cache_create("drain", 1024, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    let (per, slabs_limit) = (a.objs_per_slab, a.cpu_partial_slabs);
    assert_eq!((per, slabs_limit), (16, 3));
    let n = per * 10;
    let objs: Vec<_> = (0..n)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    // Free one object from each of the first 9 (full) slabs: each is frozen onto the per-CPU
    // list; whenever the chain holds cpu_partial_slabs, it is drained to the node first.
    for k in 0..9 {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, objs[k * per]) }.unwrap();
    }
    let st = |i: S| s.cache_stat(c, i).unwrap();
    assert_eq!(st(S::CPU_PARTIAL_FREE), 9);
    assert_eq!(st(S::CPU_PARTIAL_DRAIN), 2, "drained at 3 and 6 slabs");
    assert_eq!(st(S::FREE_ADD_PARTIAL), 6);
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.slabs_cpu_partial, a.partial), (3, 6));
    // get_partial_node fills the per-CPU list from the node: more than 3/2 slabs.
    let before = st(S::CPU_PARTIAL_NODE);
    s.flush_all(c).unwrap();
    let more: Vec<_> = (0..2)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    assert_eq!(st(S::ALLOC_FROM_PARTIAL), 1);
    assert_eq!(st(S::CPU_PARTIAL_NODE) - before, 2);
    for o in objs
        .iter()
        .enumerate()
        .filter(|(i, _)| i % per != 0 || *i >= 9 * per)
        .map(|(_, o)| o)
        .chain(&more)
    {
        // SAFETY: every remaining object, freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    s.validate_cache(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().objects, 0);
}

#[test]
fn fast_path_tid_sequence() {
    let p = provider(1, 32);
    let s = slub_with(&p, stats_on());
    for cpu in 0..s.nr_cpu_ids() {
        let c = s.kmalloc_cache(512).unwrap();
        assert_eq!(tid_to_cpu(s.cpu_tid(c, cpu).unwrap()), cpu);
        assert_eq!(tid_to_event(s.cpu_tid(c, cpu).unwrap()), 0);
    }
    if common::testing::skip_unless(
        "fast_path_tid_sequence",
        "pin",
        pin(1),
        "cannot pin this thread to a CPU",
    ) {
        return;
    }
    let cpu = common::percpu::cpu_id();
    let c = s
        .kmem_cache_create("tid", 128, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let first = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    let t0 = s.cpu_tid(c, cpu).unwrap();
    assert_eq!(tid_to_cpu(t0), cpu % s.nr_cpu_ids());
    assert_eq!(
        tid_to_event(t0),
        1,
        "the slow path's load_freelist is one event"
    );
    let objs: Vec<_> = (0..10)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    let t1 = s.cpu_tid(c, cpu).unwrap();
    assert_eq!(tid_to_event(t1) - tid_to_event(t0), 10);
    assert_eq!(s.cache_stat(c, S::ALLOC_FASTPATH).unwrap(), 10);
    for o in objs.iter().chain([&first]) {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    assert_eq!(
        tid_to_event(s.cpu_tid(c, cpu).unwrap()) - tid_to_event(t1),
        11
    );
    assert_eq!(s.cache_stat(c, S::FREE_FASTPATH).unwrap(), 11);
}
