//! cache_reap driven by the fake clock.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabFlags};
use slab_classic::{drain_array_count, reap_freelist_count};

#[test]
fn reap_skips_touched_arrays_then_drains_a_fifth_of_the_limit() {
    let p = util::provider(1, 32);
    let s = util::slab(&p);
    util::pin_first();
    let cpu = s.current_cpu();
    let c = s
        .kmem_cache_create("reap1", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let objs: Vec<_> = (0..100)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    let before = s.array_state(c, cpu).unwrap();
    assert!(before.touched && before.avail >= 24, "{before:?}");
    s.cache_reap(cpu);
    let a1 = s.array_state(c, cpu).unwrap();
    assert_eq!(
        (a1.avail, a1.touched),
        (before.avail, false),
        "touched array only un-touched"
    );
    s.cache_reap(cpu);
    let a2 = s.array_state(c, cpu).unwrap();
    assert_eq!(
        a2.avail,
        before.avail - drain_array_count(before.avail, 120, false)
    );
    assert_eq!(before.avail - a2.avail, 24, "(limit + 4) / 5");
    s.validate().unwrap();
}

#[test]
fn per_node_reaping_waits_for_next_reap_then_drains_over_time() {
    let p = util::provider(1, 32);
    let s = util::slab(&p);
    util::pin_first();
    let cpu = s.current_cpu();
    s.shrink_all();
    let baseline = p.stats().pages_in_use;
    let c = s
        .kmem_cache_create("reap2", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let objs: Vec<_> = (0..2000)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    let n0 = s.node_state(c, 0).unwrap();
    assert!(n0.shared_avail > 0 && n0.free > 0, "{n0:?}");
    assert!(n0.next_reap > s.jiffies());
    // Without time passing only the CPU arrays are reaped.
    for _ in 0..10 {
        s.cache_reap(cpu);
    }
    let n1 = s.node_state(c, 0).unwrap();
    assert_eq!(
        (n1.shared_avail, n1.next_reap),
        (n0.shared_avail, n0.next_reap)
    );
    assert_eq!(
        s.array_state(c, cpu).unwrap().avail,
        0,
        "ten reaps empty the CPU array"
    );
    // Past next_reap: the shared array loses (limit + 4) / 5 and, free_touched being set by
    // the refills, the free list is left alone this once.
    let now = s.advance_jiffies(8000);
    s.cache_reap(cpu);
    let n2 = s.node_state(c, 0).unwrap();
    assert_eq!(
        n2.shared_avail,
        n1.shared_avail - drain_array_count(n1.shared_avail as u32, 480, false) as usize
    );
    assert_eq!(n2.next_reap, now + 4000);
    assert!(!n2.free_touched);
    // Over simulated time everything drains back.
    for _ in 0..500 {
        s.advance_jiffies(2000);
        s.cache_reap(cpu);
        s.cache_reap((cpu + 1) % s.nr_cpu_ids());
    }
    let n4 = s.node_state(c, 0).unwrap();
    assert_eq!(
        (
            n4.shared_avail,
            n4.free,
            n4.partial,
            n4.full,
            n4.free_objects
        ),
        (0, 0, 0, 0, 0)
    );
    assert!(s.cache_stats(c).unwrap().reaped > 0);
    s.validate().unwrap();
    // SAFETY: unused now.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    s.shrink_all();
    assert_eq!(p.stats().pages_in_use, baseline);
}

#[test]
fn reap_can_be_switched_off_and_the_thread_started_and_stopped() {
    let p = util::provider(1, 16);
    let s = slab_classic::Slab::new(
        &p,
        slab_classic::SlabSettings {
            reap: false,
            ..Default::default()
        },
    )
    .unwrap();
    let c = s.kmalloc_cache(64).unwrap();
    let o = s.kmalloc(64, Gfp::KERNEL).unwrap();
    // SAFETY: freed once.
    unsafe { s.kfree(o.as_ptr()) }.unwrap();
    let cpu = s.current_cpu();
    let before = s.array_state(c, cpu).unwrap().avail;
    s.advance_jiffies(100_000);
    assert_eq!(s.cache_reap(cpu), 0);
    assert_eq!(s.array_state(c, cpu).unwrap().avail, before);
    assert!(s.start_reaper());
    assert!(!s.start_reaper());
    s.stop_reaper();
    s.stop_reaper();
}

#[test]
fn node_reap_frees_a_fifth_of_free_limit_worth_of_slabs() {
    let p = util::provider(1, 32);
    let s = util::slab(&p);
    util::pin_first();
    let cpu = s.current_cpu();
    let c = s
        .kmem_cache_create("reap3", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    s.kmem_cache_tune(c, 120, 60, 0).unwrap();
    let objs: Vec<_> = (0..370)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    // Empty the CPU array, then one node reap to clear free_touched (set by the refills).
    for _ in 0..10 {
        s.cache_reap(cpu);
    }
    s.advance_jiffies(8000);
    s.cache_reap(cpu);
    let n = s.node_state(c, 0).unwrap();
    assert_eq!(n.free_limit, 3 * 60 + 37);
    assert!(!n.free_touched);
    assert_eq!((n.full, n.partial), (0, 0));
    assert_eq!(
        n.free, 5,
        "free slabs kept up to free_limit 217 = 5 slabs of 37"
    );
    let per_reap = reap_freelist_count(n.free_limit, 37);
    assert_eq!(per_reap, 2);
    // Not yet time: nothing.
    s.cache_reap(cpu);
    assert_eq!(s.node_state(c, 0).unwrap().free, 5);
    s.advance_jiffies(4000);
    s.cache_reap(cpu);
    assert_eq!(s.node_state(c, 0).unwrap().free, 3);
    s.advance_jiffies(4000);
    s.cache_reap(cpu);
    assert_eq!(s.node_state(c, 0).unwrap().free, 1);
    s.advance_jiffies(4000);
    s.cache_reap(cpu);
    let n = s.node_state(c, 0).unwrap();
    assert_eq!((n.free, n.free_objects), (0, 0));
    assert_eq!(s.cache_stats(c).unwrap().reaped, 5);
    s.validate().unwrap();
}
