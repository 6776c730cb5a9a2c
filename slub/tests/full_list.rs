//! The full list of `SLAB_STORE_USER` debug caches (mm/slub.c 6.4 `add_full`/`remove_full`,
//! `validate_slab_node`'s walk of `n->full` and its count against `nr_slabs`): slabs that fill up
//! go on the full list, a free moves them back to the partial list, `validate` walks both and
//! counts every slab; caches without `U` keep their full slabs on no list.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabFlags};
use core::ptr::NonNull;
use slub::{DebugReport, ReportFn, Slub, SlubDebug, SlubSettings, StatItem as S};
use util::*;

fn quiet(_: &DebugReport) {}

fn debug_slub(p: &common::PageProvider) -> Slub {
    slub_with(
        p,
        SlubSettings {
            slub_debug: Some(SlubDebug::OFF),
            debug_report: Some(ReportFn(quiet)),
            stats: true,
            ..SlubSettings::default()
        },
    )
}

/// Fills `slabs` whole slabs of `c` (plus `extra` objects) and returns the objects.
fn fill_slabs(s: &Slub, c: common::CacheHandle, slabs: usize, extra: usize) -> Vec<NonNull<u8>> {
    let per = s.cache_attrs(c).unwrap().objs_per_slab;
    (0..slabs * per + extra)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect()
}

fn free(s: &Slub, c: common::CacheHandle, o: NonNull<u8>) {
    // SAFETY: each object is freed once, by the test that allocated it.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
}

#[test]
fn store_user_slabs_that_fill_up_go_on_the_full_list() {
    for flags in [
        SlabFlags::STORE_USER,
        SlabFlags(SlabFlags::STORE_USER.0 | SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0),
        SlabFlags(
            SlabFlags::STORE_USER.0 | SlabFlags::CONSISTENCY_CHECKS.0 | SlabFlags::RED_ZONE.0,
        ),
    ] {
        let p = provider(1, 32);
        let s = debug_slub(&p);
        let c = s.kmem_cache_create("full-U", 200, 0, flags, None).unwrap();
        let objs = fill_slabs(&s, c, 3, 1);
        let a = s.cache_attrs(c).unwrap();
        assert_eq!((a.slabs, a.full, a.partial), (4, 3, 1), "{flags:?}");
        assert_eq!(a.cpu_slabs, 0, "debug caches have no CPU slabs");
        s.validate_cache(c).unwrap();
        assert_eq!(s.slab_errors(), 0);

        // Freeing one object of a full slab moves it to the partial list (tail).
        let first = objs[0];
        free(&s, c, first);
        let a = s.cache_attrs(c).unwrap();
        assert_eq!((a.slabs, a.full, a.partial), (4, 2, 2), "{flags:?}");
        assert!(s.cache_stat(c, S::FREE_ADD_PARTIAL).unwrap() >= 1);
        s.validate_cache(c).unwrap();

        // Allocating it again fills that slab up again: back on the full list.
        let again = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        let a = s.cache_attrs(c).unwrap();
        assert_eq!(a.full + a.partial, 4);
        s.validate_cache(c).unwrap();

        // Free everything: the full list empties, empty slabs beyond min_partial go away.
        free(&s, c, again);
        for &o in &objs[1..] {
            free(&s, c, o);
        }
        let a = s.cache_attrs(c).unwrap();
        assert_eq!(a.full, 0);
        assert_eq!(a.slabs, a.partial);
        s.validate_cache(c).unwrap();
        assert_eq!(s.slab_errors(), 0, "{flags:?}");
        s.kmem_cache_shrink(c).unwrap();
        // SAFETY: nothing allocated.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
    }
}

#[test]
fn full_list_of_a_kmalloc_cache_with_slub_debug_u() {
    // slub_debug=U,kmalloc-256: the kmalloc cache tracks users and keeps a full list.
    let p = provider(1, 32);
    let s = slub_with(
        &p,
        SlubSettings {
            slub_debug: Some(SlubDebug::new(b"U,kmalloc-256").unwrap()),
            debug_report: Some(ReportFn(quiet)),
            ..SlubSettings::default()
        },
    );
    let c = s.kmalloc_cache(256).unwrap();
    let per = s.cache_attrs(c).unwrap().objs_per_slab;
    let before = s.cache_attrs(c).unwrap();
    let objs: Vec<_> = (0..2 * per)
        .map(|_| s.kmalloc(200, Gfp::KERNEL).unwrap())
        .collect();
    let a = s.cache_attrs(c).unwrap();
    assert!(
        a.full > before.full,
        "{} full slabs before, {} after",
        before.full,
        a.full
    );
    s.validate().unwrap();
    for o in objs {
        // SAFETY: allocated above, freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0);
}

#[test]
fn caches_without_store_user_keep_full_slabs_on_no_list() {
    let p = provider(1, 32);
    let s = debug_slub(&p);
    for flags in [SlabFlags::NONE, SlabFlags::RED_ZONE, SlabFlags::POISON] {
        let c = s
            .kmem_cache_create("full-noU", 200, 0, flags.with(SlabFlags::NO_MERGE), None)
            .unwrap();
        let objs = fill_slabs(&s, c, 3, 1);
        s.flush_all(c).unwrap();
        let a = s.cache_attrs(c).unwrap();
        assert_eq!(a.full, 0, "{flags:?}");
        assert!(a.slabs >= 4);
        s.validate_cache(c).unwrap();
        for o in objs {
            free(&s, c, o);
        }
        s.validate_cache(c).unwrap();
        s.kmem_cache_shrink(c).unwrap();
        // SAFETY: nothing allocated.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
    }
    assert_eq!(s.slab_errors(), 0);
}

#[test]
fn bulk_alloc_and_free_keep_the_full_list_consistent() {
    let p = provider(1, 32);
    let s = debug_slub(&p);
    let c = s
        .kmem_cache_create("full-bulk", 96, 0, SlabFlags::STORE_USER, None)
        .unwrap();
    let per = s.cache_attrs(c).unwrap().objs_per_slab;
    let mut objs = vec![core::ptr::null_mut(); 5 * per];
    assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut objs), 5 * per);
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.slabs, a.full, a.partial), (5, 5, 0));
    s.validate_cache(c).unwrap();
    // Free every other object, in bulk: every slab becomes partial.
    let mut half: Vec<_> = objs.iter().copied().step_by(2).collect();
    // SAFETY: live objects of c, each once.
    unsafe { s.kmem_cache_free_bulk(c, &mut half) }.unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.full, a.partial), (0, 5));
    s.validate_cache(c).unwrap();
    let mut rest: Vec<_> = objs.iter().copied().skip(1).step_by(2).collect();
    // SAFETY: the other half, each once.
    unsafe { s.kmem_cache_free_bulk(c, &mut rest) }.unwrap();
    s.validate_cache(c).unwrap();
    assert_eq!(s.slab_errors(), 0);
}

#[test]
fn a_slab_given_up_by_the_consistency_checks_stays_counted() {
    // A corrupt free pointer found by alloc_debug_processing: "Freepointer corrupt", then
    // "Marking all objects used", and the slab leaves the partial list. 6.4 leaves it on no
    // list (validate's "slabs counted but counter" would then fire on every later validate);
    // here a STORE_USER cache puts it on the full list, so it stays counted and a later free
    // of its live object finds it there.
    let p = provider(1, 32);
    let s = debug_slub(&p);
    let c = s
        .kmem_cache_create(
            "full-corrupt",
            64,
            0,
            SlabFlags(SlabFlags::STORE_USER.0 | SlabFlags::CONSISTENCY_CHECKS.0),
            None,
        )
        .unwrap();
    let a = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    let b = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    free(&s, c, b);
    // b heads the slab's freelist; its free pointer (offset 32) becomes a wild value.
    // SAFETY: b's memory stays mapped (a free object of a live slab); deliberate corruption.
    unsafe { b.as_ptr().write_bytes(0x77, 64) };
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    assert_eq!(
        s.slab_errors(),
        2,
        "Freepointer corrupt + Marking all objects used"
    );
    let attrs = s.cache_attrs(c).unwrap();
    assert_eq!((attrs.slabs, attrs.full, attrs.partial), (2, 1, 1));
    s.validate_cache(c).unwrap();
    assert_eq!(s.slab_errors(), 2, "no count mismatch");
    // Freeing a (in the given-up slab) takes it off the full list.
    free(&s, c, a);
    let attrs = s.cache_attrs(c).unwrap();
    assert_eq!((attrs.full, attrs.partial), (0, 2));
    s.validate_cache(c).unwrap();
    free(&s, c, o);
    s.validate_cache(c).unwrap();
    assert_eq!(s.slab_errors(), 2);
}
