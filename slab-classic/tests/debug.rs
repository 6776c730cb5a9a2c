//! `CONFIG_DEBUG_SLAB`: every corruption the 2.6.32 debug code catches is
//! caught here, counted, reported with the cache and offset, and leaves the allocator
//! consistent (`validate()` clean, nothing handed out twice).
//!
//! Reports reach a callback that records them per thread (each test runs on its own thread
//! and every report is made on the thread that called the allocator).
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::check::FixedLog;
use common::{Gfp, SlabAllocator, SlabError, SlabFlags};
use core::panic::Location;
use slab_classic::{
    DebugAction, DebugErrorKind, DebugReport, Slab, SlabSettings, POISON_END, POISON_FREE,
    POISON_INUSE, RED_ACTIVE, RED_INACTIVE,
};
use std::cell::RefCell;
use std::ptr::NonNull;

// Reports, kept without the heap: the callback runs under allocator locks.
thread_local! {
    static REPORTS: RefCell<FixedLog<DebugReport, 64>> = const { RefCell::new(FixedLog::new()) };
}

fn capture(r: &DebugReport) {
    REPORTS.with(|v| v.borrow_mut().push(*r));
}

fn take_reports() -> Vec<DebugReport> {
    REPORTS.with(|v| v.borrow_mut().take())
}

fn take() -> Vec<DebugReport> {
    take_reports()
}

const RZ: SlabFlags = SlabFlags::RED_ZONE;
const PO: SlabFlags = SlabFlags::POISON;
const SU: SlabFlags = SlabFlags::STORE_USER;

fn settings() -> SlabSettings {
    SlabSettings {
        stats: true,
        report: Some(capture),
        ..SlabSettings::default()
    }
}

fn instance() -> (common::PageProvider, Slab) {
    instance_with(settings())
}

/// An instance with `settings` (start from [`settings`] to keep the report capture).
fn instance_with(settings: SlabSettings) -> (common::PageProvider, Slab) {
    let p = util::provider(1, 32);
    let s = Slab::new(&p, settings).unwrap();
    (p, s)
}

fn alloc(s: &Slab, c: common::CacheHandle) -> NonNull<u8> {
    s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap()
}

/// Writes one byte at `off` from `p` (may be outside the object: that is the point).
fn poke(p: NonNull<u8>, off: isize, v: u8) {
    // SAFETY: the offsets used stay inside the object's buffer (red zones included).
    unsafe { *p.as_ptr().offset(off) = v };
}

fn peek(p: NonNull<u8>, off: isize) -> u8 {
    // SAFETY: as poke.
    unsafe { *p.as_ptr().offset(off) }
}

fn one_report(s: &Slab, kind: DebugErrorKind, cache: &str, offset: isize) -> DebugReport {
    let r = take();
    assert_eq!(r.len(), 1, "{r:#?}");
    let r = r[0];
    assert_eq!(r.kind, kind, "{r}");
    assert_eq!(r.cache_name(), cache, "{r}");
    assert_eq!(r.offset, offset, "{r}");
    assert!(s.slab_errors() >= 1);
    r
}

#[test]
fn layout_is_the_2_6_32_layout() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("lay-all", 64, 0, RZ | PO | SU, None)
        .unwrap();
    let l = s.debug_layout(c).unwrap();
    // 64 + 2 red-zone words + REDZONE_ALIGN for the user word = 88.
    assert_eq!(
        (l.obj_offset, l.obj_size, l.buffer_size),
        (8, 64, 88),
        "{l:?}"
    );
    assert_eq!(
        (l.redzone1, l.redzone2, l.userword),
        (Some(-8), Some(64), Some(72))
    );
    let c = s.kmem_cache_create("lay-rz", 60, 0, RZ, None).unwrap();
    let l = s.debug_layout(c).unwrap();
    assert_eq!((l.obj_offset, l.obj_size, l.buffer_size), (8, 64, 80));
    assert_eq!((l.redzone2, l.userword), (Some(64), None));
    let c = s.kmem_cache_create("lay-su", 64, 0, SU, None).unwrap();
    let l = s.debug_layout(c).unwrap();
    assert_eq!((l.obj_offset, l.buffer_size, l.userword), (0, 72, Some(64)));
    // Alignment above 8 silently drops red zone and user word (poison stays).
    let c = s
        .kmem_cache_create("lay-al", 64, 64, RZ | PO | SU, None)
        .unwrap();
    let l = s.debug_layout(c).unwrap();
    assert_eq!(l.flags, PO);
    assert_eq!((l.obj_offset, l.buffer_size), (0, 64));
    // Red zoning undoes HWCACHE_ALIGN (word alignment).
    let c = s
        .kmem_cache_create("lay-hw", 100, 0, RZ | SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    let l = s.debug_layout(c).unwrap();
    assert_eq!((l.obj_size, l.buffer_size), (104, 120));
    let o = alloc(&s, c);
    assert_eq!(o.as_ptr() as usize % 8, 0);
    // SAFETY: live object of this instance.
    assert_eq!(unsafe { s.ksize(o) }, Ok(104));
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    assert_eq!(s.slab_errors(), 0);
}

#[test]
fn forced_debug_follows_the_size_rules() {
    let (_p, s) = instance_with(SlabSettings {
        forced_debug: true,
        ..settings()
    });
    let rules = [
        (3000, RZ | SU | PO),
        // 4096: 4095 + 24 crosses 4096, so no red zone / user word.
        (4096, PO),
        // 8000: 7999 + 24 stays below 8192.
        (8000, RZ | SU | PO),
        (8180, PO),
    ];
    for (size, want) in rules {
        let c = s
            .kmem_cache_create(&format!("forced-{size}"), size, 0, SlabFlags::NONE, None)
            .unwrap();
        assert_eq!(s.debug_layout(c).unwrap().flags, want, "size {size}");
    }
    let rcu = s
        .kmem_cache_create("forced-rcu", 64, 0, SlabFlags::TYPESAFE_BY_RCU, None)
        .unwrap();
    assert_eq!(
        s.debug_layout(rcu).unwrap().flags,
        RZ | SU,
        "no poison with RCU"
    );
    // kmalloc caches are debug caches too, and everything still works.
    let mut v = Vec::new();
    for size in [8, 30, 64, 100, 500, 1000, 3000, 5000, 70_000] {
        let o = s.kmalloc(size, Gfp::KERNEL).unwrap();
        // SAFETY: live kmalloc object.
        assert!(unsafe { s.ksize(o) }.unwrap() >= size);
        util::fill(o.as_ptr(), size, size as u64);
        v.push((o, size));
    }
    s.validate().unwrap();
    for (o, size) in v {
        assert!(util::check(o.as_ptr(), size, size as u64));
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    s.shrink_all();
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0, "{:?}", take());
}

// ---- the slub_kunit corruptions against slab-classic ----

#[test]
fn clobber_redzone_after_object_is_reported_on_free() {
    let (_p, s) = instance();
    let c = s.kmem_cache_create("rz-after", 64, 0, RZ, None).unwrap();
    let o = alloc(&s, c);
    poke(o, 64, 0x88);
    // SAFETY: freed once; the red zone is repaired and the object freed, as the kernel does.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    let r = one_report(&s, DebugErrorKind::RedZoneOverwritten, "rz-after", 64);
    assert_eq!(r.expected, RED_ACTIVE);
    assert_eq!(r.found & 0xff, 0x88);
    assert_eq!(r.object, o.as_ptr() as usize);
    assert!(
        r.to_string()
            .contains("memory outside object was overwritten"),
        "{r}"
    );
    assert_eq!(s.cache_errors(c), Ok(1));
    s.validate().unwrap();
    // The object comes back (LIFO) with no further report: the red zone was repaired.
    let again = alloc(&s, c);
    assert_eq!(again, o);
    assert!(take().is_empty());
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, again) }.unwrap();
    assert_eq!(s.slab_errors(), 1);
}

#[test]
fn clobber_redzone_before_object_is_reported_on_free() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("rz-before", 64, 0, RZ | SU, None)
        .unwrap();
    let o = alloc(&s, c);
    poke(o, -1, 0x11);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    let r = one_report(&s, DebugErrorKind::RedZoneOverwritten, "rz-before", -8);
    assert_eq!(r.found >> 56, 0x11, "{r}");
    assert_eq!(r.redzone2, RED_ACTIVE);
    s.validate().unwrap();
    assert_eq!(s.cache_errors(c), Ok(1));
}

#[test]
fn poison_byte_0_written_after_free_is_reported_on_reuse() {
    let (_p, s) = instance();
    let c = s.kmem_cache_create("uaf-0", 64, 0, PO, None).unwrap();
    let o = alloc(&s, c);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    assert_eq!(peek(o, 0), POISON_FREE);
    assert_eq!(peek(o, 63), POISON_END);
    poke(o, 0, 0x78);
    let again = alloc(&s, c);
    assert_eq!(again, o, "LIFO reuse");
    let r = one_report(&s, DebugErrorKind::SlabCorruption, "uaf-0", 0);
    assert_eq!(
        (r.expected, r.found, r.bad_bytes, r.len),
        (0x6b, 0x78, 1, 64)
    );
    let text = r.to_string();
    assert!(text.starts_with("Slab corruption: uaf-0 start="), "{text}");
    // Handed out re-poisoned as in use: the corruption is gone.
    assert_eq!(peek(again, 0), POISON_INUSE);
    assert_eq!(peek(again, 63), POISON_END);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, again) }.unwrap();
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 1);
}

#[test]
fn poison_byte_50_written_after_free_is_reported_on_reuse() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("uaf-50", 64, 0, PO | RZ | SU, None)
        .unwrap();
    let o = alloc(&s, c);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    poke(o, 50, 0x9a);
    let again = alloc(&s, c);
    assert_eq!(again, o);
    let r = one_report(&s, DebugErrorKind::SlabCorruption, "uaf-50", 50);
    assert_eq!((r.expected, r.found), (0x6b, 0x9a));
    assert_eq!((r.redzone1, r.redzone2), (RED_INACTIVE, RED_INACTIVE));
    assert_ne!(r.last_caller, 0, "the free's caller is recorded");
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, again) }.unwrap();
    s.validate().unwrap();
}

#[test]
fn use_after_free_is_also_caught_when_the_slab_is_destroyed() {
    let (_p, s) = instance();
    let c = s.kmem_cache_create("uaf-destroy", 64, 0, PO, None).unwrap();
    let o = alloc(&s, c);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    poke(o, 10, 0);
    // Shrinking drains the CPU array and gives the empty slab back: slab_destroy_debugcheck.
    s.kmem_cache_shrink(c).unwrap();
    one_report(&s, DebugErrorKind::SlabCorruption, "uaf-destroy", 10);
    s.validate().unwrap();
}

#[test]
fn redzone_written_after_free_is_reported_on_reuse() {
    let (_p, s) = instance();
    let c = s.kmem_cache_create("rz-free", 64, 0, RZ, None).unwrap();
    let o = alloc(&s, c);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    poke(o, 64, 0xab);
    let again = alloc(&s, c);
    assert_eq!(again, o);
    let r = one_report(&s, DebugErrorKind::RedZoneOnAlloc, "rz-free", 64);
    assert_eq!(r.expected, RED_INACTIVE);
    assert!(
        r.to_string()
            .contains("double free, or memory outside object was overwritten"),
        "{r}"
    );
    // SAFETY: freed once; red zones are active again, so no second report.
    unsafe { s.kmem_cache_free(c, again) }.unwrap();
    assert!(take().is_empty());
    s.validate().unwrap();
}

#[test]
fn double_free_is_caught_by_the_redzone_and_refused() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("dfree-rz", 64, 0, RZ | PO | SU, None)
        .unwrap();
    let o = alloc(&s, c);
    let other = alloc(&s, c);
    // SAFETY: the second free is the bug under test; it is refused.
    unsafe {
        s.kmem_cache_free(c, o).unwrap();
        s.kmem_cache_free(c, other).unwrap();
        assert_eq!(
            s.kmem_cache_free(c, o),
            Err(SlabError::DoubleFree(o.as_ptr() as usize))
        );
    }
    let r = one_report(&s, DebugErrorKind::DoubleFree, "dfree-rz", -8);
    assert_eq!(r.found, RED_INACTIVE);
    assert!(r.to_string().contains("double free detected"), "{r}");
    s.validate().unwrap();
    // Nothing is handed out twice.
    let a = alloc(&s, c);
    let b = alloc(&s, c);
    let d = alloc(&s, c);
    assert!(a != b && b != d && a != d);
    for x in [a, b, d] {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, x) }.unwrap();
    }
    assert!(take().is_empty());
    s.validate().unwrap();
}

#[test]
fn double_free_without_redzone_is_caught_by_the_array_and_the_bufctl() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("dfree-bufctl", 64, 0, PO, None)
        .unwrap();
    s.kmem_cache_tune(c, 1, 1, 0).unwrap();
    let (p, q, r) = (alloc(&s, c), alloc(&s, c), alloc(&s, c));
    // SAFETY: the repeated frees of p are the bug under test.
    unsafe {
        s.kmem_cache_free(c, p).unwrap();
        // Top of the CPU array: refused at once.
        assert_eq!(
            s.kmem_cache_free(c, p),
            Err(SlabError::DoubleFree(p.as_ptr() as usize))
        );
        one_report(&s, DebugErrorKind::BufctlDoubleFree, "dfree-bufctl", 0);
        // q flushes p to its slab; the second p pushes q out; r flushes the second p, which
        // free_block finds already on the slab's free chain.
        s.kmem_cache_free(c, q).unwrap();
        s.kmem_cache_free(c, p).unwrap();
        s.kmem_cache_free(c, r).unwrap();
    }
    let rep = one_report(&s, DebugErrorKind::BufctlDoubleFree, "dfree-bufctl", 0);
    assert!(rep
        .to_string()
        .starts_with("slab: double free detected in cache 'dfree-bufctl'"));
    assert_eq!(s.cache_stats(c).unwrap().error, 2);
    s.validate().unwrap();
}

// ---- wrong use with debug on ----

#[test]
fn free_of_an_object_of_another_cache_is_refused_and_reported() {
    let (_p, s) = instance();
    let a = s
        .kmem_cache_create("wrong-a", 64, 0, RZ | PO, None)
        .unwrap();
    let b = s
        .kmem_cache_create("wrong-b", 64, 0, RZ | PO, None)
        .unwrap();
    let o = alloc(&s, a);
    // SAFETY: refused; o stays live in a.
    let e = unsafe { s.kmem_cache_free(b, o) };
    assert_eq!(e, Err(SlabError::WrongCache(o.as_ptr() as usize)));
    one_report(&s, DebugErrorKind::WrongCache, "wrong-b", 0);
    assert_eq!(s.cache_errors(b), Ok(1));
    util::fill(o.as_ptr(), 64, 7);
    assert!(util::check(o.as_ptr(), 64, 7), "object untouched");
    // SAFETY: the right cache now.
    unsafe { s.kmem_cache_free(a, o) }.unwrap();
    assert!(take().is_empty());
    s.validate().unwrap();
}

#[test]
fn free_of_an_interior_pointer_is_refused_and_reported_with_its_offset() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("interior", 64, 0, RZ | PO, None)
        .unwrap();
    let o = alloc(&s, c);
    // SAFETY: refused.
    let inner = unsafe { NonNull::new_unchecked(o.as_ptr().add(24)) };
    // SAFETY: refused, nothing freed.
    let e = unsafe { s.kmem_cache_free(c, inner) };
    assert_eq!(e, Err(SlabError::NotObjectStart(inner.as_ptr() as usize)));
    one_report(&s, DebugErrorKind::NotObjectStart, "interior", 24);
    // kfree of an interior pointer too (the cache is found from the page).
    // SAFETY: refused.
    assert!(unsafe { s.kfree(o.as_ptr().wrapping_sub(8)) }.is_err());
    one_report(&s, DebugErrorKind::NotObjectStart, "interior", -8);
    // SAFETY: the object itself.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    s.validate().unwrap();
}

#[test]
fn free_of_a_foreign_pointer_is_refused_and_reported() {
    let (_p, s) = instance_with(SlabSettings {
        debug: RZ | PO,
        ..settings()
    });
    let c = s
        .kmem_cache_create("foreign", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let mut stack = [0u8; 64];
    let f = NonNull::new(stack.as_mut_ptr()).unwrap();
    // SAFETY: refused: not memory of the allocator.
    unsafe {
        assert_eq!(
            s.kmem_cache_free(c, f),
            Err(SlabError::NotOurs(f.as_ptr() as usize))
        );
        one_report(&s, DebugErrorKind::OutOfRange, "foreign", 0);
        assert_eq!(
            s.kfree(f.as_ptr()),
            Err(SlabError::NotOurs(f.as_ptr() as usize))
        );
    }
    let r = take();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].kind, r[0].cache), (DebugErrorKind::OutOfRange, None));
    assert!(r[0]
        .to_string()
        .starts_with("kfree_debugcheck: out of range ptr"));
    assert_eq!(stack, [0u8; 64], "foreign memory untouched");
    assert_eq!(s.slab_errors(), 2);
    s.validate().unwrap();
}

#[test]
fn with_debug_off_bad_frees_are_still_refused_but_not_reported() {
    let (_p, s) = instance();
    let a = s
        .kmem_cache_create("quiet-a", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let b = s
        .kmem_cache_create("quiet-b", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let o = alloc(&s, a);
    let mut stack = [0u8; 16];
    let f = NonNull::new(stack.as_mut_ptr()).unwrap();
    // SAFETY: every one of these is refused.
    unsafe {
        assert!(matches!(
            s.kmem_cache_free(a, f),
            Err(SlabError::NotOurs(_))
        ));
        assert!(matches!(s.kfree(f.as_ptr()), Err(SlabError::NotOurs(_))));
        assert!(matches!(
            s.kmem_cache_free(b, o),
            Err(SlabError::WrongCache(_))
        ));
        assert!(matches!(
            s.kfree(o.as_ptr().add(8)),
            Err(SlabError::NotObjectStart(_))
        ));
        s.kmem_cache_free(a, o).unwrap();
        assert!(matches!(
            s.kmem_cache_free(a, o),
            Err(SlabError::DoubleFree(_))
        ));
    }
    assert_eq!(s.slab_errors(), 0);
    assert!(take().is_empty());
    let _ = stack;
    s.validate().unwrap();
}

#[test]
fn destroy_with_live_objects_reports_the_cache_and_each_leak() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("leak", 64, 0, RZ | PO | SU, None)
        .unwrap();
    let o = alloc(&s, c);
    // SAFETY: refused (Busy); the cache stays usable.
    let e = unsafe { s.kmem_cache_destroy(c) };
    assert_eq!(e, Err(SlabError::Busy { objects: 1 }));
    let r = take();
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(r[0].kind, DebugErrorKind::CantFreeAll);
    assert!(r[0].to_string().contains("Can't free all objects"));
    assert_eq!(
        (r[1].kind, r[1].object),
        (DebugErrorKind::LeakedObject, o.as_ptr() as usize)
    );
    assert_ne!(r[1].last_caller, 0);
    assert_eq!(s.cache_errors(c), Ok(2));
    // SAFETY: freed once, then destroyed with nothing live.
    unsafe {
        s.kmem_cache_free(c, o).unwrap();
        s.kmem_cache_destroy(c).unwrap();
    }
    assert!(take().is_empty());
    s.validate().unwrap();
}

#[test]
fn store_user_keeps_the_last_caller_location() {
    let (_p, s) = instance();
    let c = s.kmem_cache_create("caller", 64, 0, RZ | SU, None).unwrap();
    let here = Location::caller(); // just a different location, for contrast
    let line = line!() + 1;
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    poke(o, 64, 0);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    let r = one_report(&s, DebugErrorKind::RedZoneOverwritten, "caller", 64);
    // SAFETY: the user word holds the address of a `&'static Location` written by the
    // allocation above and nothing overwrote it (only red zone 2 was hit).
    let loc = unsafe { &*(r.last_caller as *const Location<'static>) };
    assert_eq!((loc.file(), loc.line()), (file!(), line), "{loc}");
    assert_ne!(loc.line(), here.line());
}

#[test]
fn constructor_runs_at_allocation_in_poisoned_caches() {
    // SAFETY: called by the allocator with a fresh object of at least 8 bytes.
    unsafe fn ctor(p: *mut u8) {
        // SAFETY: as above.
        unsafe { p.cast::<u32>().write_unaligned(0x4141_4141) };
    }
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("ctor-po", 64, 0, RZ | PO | SU, Some(ctor))
        .unwrap();
    for _ in 0..3 {
        let o = alloc(&s, c);
        // SAFETY: live object.
        let first = unsafe { o.as_ptr().cast::<u32>().read_unaligned() };
        assert_eq!(first, 0x4141_4141);
        assert_eq!(peek(o, 4), POISON_INUSE);
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    assert_eq!(s.slab_errors(), 0);
}

/// The child half of `abort_mode_aborts_the_process`: that test re-runs itself in a child
/// process with `SLAB_DEBUG_ABORT_CHILD` set, and the child comes here and must abort.
fn abort_child() {
    let p = util::provider(1, 16);
    // SLAB_CLASSIC_DEBUG=Z,abort in the environment: red zones everywhere, abort on a report.
    let settings = SlabSettings::default().with_debug_env().unwrap();
    assert_eq!(settings.on_error, DebugAction::Abort);
    let s = Slab::new(&p, settings).unwrap();
    let c = s
        .kmem_cache_create("abort", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let o = alloc(&s, c);
    // SAFETY: the double free is the point; the process aborts in the second free.
    unsafe {
        s.kmem_cache_free(c, o).unwrap();
        let _ = s.kmem_cache_free(c, o);
    }
    println!("NOT ABORTED");
}

#[test]
fn abort_mode_aborts_the_process() {
    if std::env::var_os("SLAB_DEBUG_ABORT_CHILD").is_some() {
        abort_child();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "abort_mode_aborts_the_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SLAB_DEBUG_ABORT_CHILD", "1")
        .env(slab_classic::DEBUG_ENV, "Z,abort")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("NOT ABORTED"), "{stdout}");
    assert!(
        stderr.contains("cache `abort': double free detected"),
        "{stderr}"
    );
}

#[test]
fn debug_spec_parses_like_slub_debug_letters() {
    let d = SlabSettings::default();
    let s = d.parse_debug(b"FZPU,forced,init_on_free").unwrap();
    assert_eq!(s.debug, SlabFlags::CONSISTENCY_CHECKS | RZ | PO | SU);
    assert!(s.forced_debug && s.init_on_free && !s.init_on_alloc);
    let s = d.parse_debug(b"zp, abort ,init_on_alloc").unwrap();
    assert_eq!(s.debug, RZ | PO);
    assert_eq!(s.on_error, DebugAction::Abort);
    assert!(s.init_on_alloc);
    assert_eq!(d.parse_debug(b"ZP,-").unwrap().debug, SlabFlags::NONE);
    assert_eq!(d.parse_debug(b"").unwrap(), d);
    assert!(d.parse_debug(b"ZQ").is_err());
    assert!(d.parse_debug(b"forcd").is_err());
}

#[test]
fn kmalloc_caches_are_checked_through_kfree_with_forced_debug() {
    let (_p, s) = instance_with(SlabSettings {
        forced_debug: true,
        ..settings()
    });
    let o = s.kmalloc(100, Gfp::KERNEL).unwrap();
    // SAFETY: live kmalloc object: ksize is the class size (obj_size of size-128).
    assert_eq!(unsafe { s.ksize(o) }, Ok(128));
    poke(o, 128, 0x42);
    // SAFETY: freed once (the red zone is repaired and the object freed).
    unsafe { s.kfree(o.as_ptr()) }.unwrap();
    let r = one_report(&s, DebugErrorKind::RedZoneOverwritten, "size-128", 128);
    assert_ne!(r.last_caller, 0);
    // A second kfree is a double free, refused.
    // SAFETY: refused.
    let again = unsafe { s.kfree(o.as_ptr()) };
    assert!(matches!(again, Err(SlabError::DoubleFree(_))));
    one_report(&s, DebugErrorKind::DoubleFree, "size-128", -8);
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 2);
}

#[test]
fn validate_finds_use_after_free_in_arrays_and_free_chains_and_repairs_it() {
    let (_p, s) = instance();
    let c = s
        .kmem_cache_create("uaf-validate", 64, 0, RZ | PO | SU, None)
        .unwrap();
    s.kmem_cache_tune(c, 2, 1, 0).unwrap();
    let objs: Vec<_> = (0..4).map(|_| alloc(&s, c)).collect();
    // SAFETY: each freed once; the first ones are flushed to their slab's free chain, the
    // last stays in the CPU array.
    unsafe {
        for &o in &objs {
            s.kmem_cache_free(c, o).unwrap();
        }
    }
    poke(objs[0], 50, 0x9a); // on the free chain by now
    poke(objs[3], 0, 0x78); // in the CPU array
    poke(objs[3], 64, 0x01); // and its red zone 2
    let e = s.validate().unwrap_err();
    assert!(e.contains("free object corrupted"), "{e}");
    let mut r = take();
    r.sort_by_key(|r| (r.object, r.offset));
    let got: Vec<_> = r.iter().map(|r| (r.kind, r.object, r.offset)).collect();
    let mut want = vec![
        (
            DebugErrorKind::SlabCorruption,
            objs[0].as_ptr() as usize,
            50,
        ),
        (DebugErrorKind::SlabCorruption, objs[3].as_ptr() as usize, 0),
        (
            DebugErrorKind::FreedEndOverwritten,
            objs[3].as_ptr() as usize,
            64,
        ),
    ];
    want.sort_by_key(|w| (w.1, w.2));
    assert_eq!(got, want, "{r:#?}");
    // Repaired: the next validate is clean, and reuse reports nothing.
    s.validate().unwrap();
    let again: Vec<_> = (0..4).map(|_| alloc(&s, c)).collect();
    assert!(take().is_empty());
    for o in again {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    assert_eq!(s.cache_errors(c), Ok(3));
}
