//! `lib/slub_kunit.c` (suite "slub_test") ported: each case corrupts an object on purpose and
//! checks the `slab_errors` count the kernel expects (one per report, one per fix). Plus the
//! wrong-use cases with debug on, and `slub_debug=` applied through the settings.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabError, SlabFlags};
use core::sync::atomic::{AtomicUsize, Ordering};
use slub::{DebugReport, ReportFn, ReportKind, Slub, SlubDebug, SlubSettings};
use util::*;

static REPORTS: AtomicUsize = AtomicUsize::new(0);

fn quiet(_: &DebugReport) {
    REPORTS.fetch_add(1, Ordering::Relaxed);
}

/// `SLAB_NO_USER_FLAGS`: the tests' caches ignore `SLUB_DEBUG` from the environment.
fn kunit_slub(p: &common::PageProvider) -> Slub {
    slub_with(
        p,
        SlubSettings {
            slub_debug: Some(SlubDebug::OFF),
            debug_report: Some(ReportFn(quiet)),
            ..SlubSettings::default()
        },
    )
}

fn validate(s: &Slub, c: common::CacheHandle) {
    let _ = s.validate_cache(c);
}

#[test]
fn test_clobber_zone() {
    let p = provider(1, 16);
    let s = kunit_slub(&p);
    let c = s
        .kmem_cache_create("TestSlub_RZ_alloc", 64, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap().as_ptr();
    // SAFETY: byte 64 is the right red zone of a 64-byte object of a red-zoned cache.
    unsafe { o.add(64).write(0x12) };
    validate(&s, c);
    assert_eq!(s.slab_errors(), 2);
    assert_eq!(s.cache_errors(c).unwrap(), 2);
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, core::ptr::NonNull::new(o).unwrap()) }.unwrap();
    // SAFETY: no object in use.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    assert_eq!(
        s.slab_errors(),
        2,
        "the fixed red zone passes the free checks"
    );
}

#[test]
fn test_next_pointer() {
    let p = provider(1, 16);
    let s = kunit_slub(&p);
    let c = s
        .kmem_cache_create("TestSlub_next_ptr_free", 64, 0, SlabFlags::POISON, None)
        .unwrap();
    let offset = s.cache_debug_layout(c).unwrap().1;
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    let p8 = o.as_ptr();
    // SAFETY: the free pointer word lies inside the slot (after the object with POISON).
    let ptr_addr = unsafe { p8.add(offset) }.cast::<usize>();
    // SAFETY: as above.
    let tmp = unsafe { ptr_addr.read_unaligned() };
    // SAFETY: as above; corrupt one byte of the free pointer.
    unsafe { p8.add(offset).write(!p8.add(offset).read()) };
    // Freechain corrupt, wrong inuse count, and its fix.
    validate(&s, c);
    assert_eq!(s.slab_errors(), 3);
    // Repair the pointer: the truncated list still gives a wrong count, and its fix.
    // SAFETY: as above.
    unsafe { ptr_addr.write_unaligned(tmp) };
    s.reset_slab_errors();
    validate(&s, c);
    assert_eq!(s.slab_errors(), 2);
    // Repaired by the previous validation.
    s.reset_slab_errors();
    validate(&s, c);
    assert_eq!(s.slab_errors(), 0);
    // SAFETY: no object in use.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
}

fn poison_case(name: &str, at: usize, byte: u8) {
    let p = provider(1, 16);
    let s = kunit_slub(&p);
    let c = s
        .kmem_cache_create(name, 64, 0, SlabFlags::POISON, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    // SAFETY: a use after free on purpose, inside the slot.
    unsafe { o.as_ptr().add(at).write(byte) };
    validate(&s, c);
    assert_eq!(s.slab_errors(), 2);
    s.reset_slab_errors();
    validate(&s, c);
    assert_eq!(s.slab_errors(), 0, "restored");
    // SAFETY: no object in use.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
}

#[test]
fn test_first_word() {
    poison_case("TestSlub_1th_word_free", 0, 0x78);
}

#[test]
fn test_clobber_50th_byte() {
    poison_case("TestSlub_50th_word_free", 50, 0x9a);
}

#[test]
fn test_clobber_redzone_free() {
    let p = provider(1, 16);
    let s = kunit_slub(&p);
    let c = s
        .kmem_cache_create("TestSlub_RZ_free", 64, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    // SAFETY: the right red zone of the freed object.
    unsafe { o.as_ptr().add(64).write(0xab) };
    validate(&s, c);
    assert_eq!(s.slab_errors(), 2);
    // SAFETY: no object in use.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
}

#[test]
fn test_kmalloc_redzone_access() {
    let p = provider(1, 16);
    let s = kunit_slub(&p);
    let c = s
        .kmem_cache_create(
            "TestSlub_RZ_kmalloc",
            32,
            0,
            SlabFlags::KMALLOC | SlabFlags::STORE_USER | SlabFlags::RED_ZONE,
            None,
        )
        .unwrap();
    let o = s.kmalloc_trace(c, Gfp::KERNEL, 18).unwrap().as_ptr();
    // SAFETY: bytes 18 and 19 are inside the 32-byte bucket, beyond the 18-byte request.
    unsafe {
        o.add(18).write(0xab);
        o.add(19).write(0xab);
    }
    validate(&s, c);
    assert_eq!(s.slab_errors(), 2);
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, core::ptr::NonNull::new(o).unwrap()) }.unwrap();
    assert_eq!(s.slab_errors(), 2);
}

#[test]
fn test_leak_destroy() {
    let p = provider(1, 16);
    let s = kunit_slub(&p);
    let c = s
        .kmem_cache_create("TestSlub_leak_destroy", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: the cache is not used concurrently.
    let r = unsafe { s.kmem_cache_destroy(c) };
    assert!(matches!(r, Err(SlabError::Busy { objects: 1 })));
    assert_eq!(s.slab_errors(), 2);
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    // SAFETY: now empty.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
}

fn full_debug() -> Slub {
    let p = provider(1, 32);
    slub_with(
        &p,
        SlubSettings::from_boot_options("slub_debug=FZPU")
            .map(|x| SlubSettings {
                debug_report: Some(ReportFn(quiet)),
                ..x
            })
            .unwrap(),
    )
}

#[test]
fn wrong_use_double_free_detected() {
    let s = full_debug();
    let c = s
        .kmem_cache_create("dbl", 48, 0, SlabFlags::NONE, None)
        .unwrap();
    let (flags, _) = s.cache_debug_layout(c).unwrap();
    assert!(flags.contains(SlabFlags::CONSISTENCY_CHECKS | SlabFlags::POISON));
    let a = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    let b = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, a) }.unwrap();
    // SAFETY: a double free on purpose: must be refused, with a report.
    let r = unsafe { s.kmem_cache_free(c, a) };
    assert!(matches!(r, Err(SlabError::DoubleFree(_))), "{r:?}");
    assert!(s.slab_errors() >= 1);
    s.reset_slab_errors();
    s.validate_cache(c).unwrap();
    assert_eq!(s.slab_errors(), 0, "nothing corrupted");
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, b) }.unwrap();
}

#[test]
fn wrong_use_other_cache_interior_foreign() {
    let s = full_debug();
    let c1 = s
        .kmem_cache_create("one", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let c2 = s
        .kmem_cache_create("two", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let a = s.kmem_cache_alloc(c1, Gfp::KERNEL).unwrap();
    // SAFETY: wrong cache on purpose.
    let r = unsafe { s.kmem_cache_free(c2, a) };
    assert!(matches!(r, Err(SlabError::WrongCache(_))), "{r:?}");
    // SAFETY: interior pointer on purpose.
    let r = unsafe { s.kmem_cache_free(c1, a.add(8)) };
    assert!(r.is_err(), "{r:?}");
    let mut local = [0u8; 64];
    // SAFETY: foreign pointer on purpose.
    let r = unsafe { s.kfree(local.as_mut_ptr()) };
    assert!(r.is_err(), "{r:?}");
    s.validate_cache(c1).unwrap();
    assert_eq!(s.slab_errors(), 0);
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c1, a) }.unwrap();
}

#[test]
fn debug_caches_pattern_and_kmalloc_redzone() {
    let s = full_debug();
    // kmalloc caches get FZPU too: a kmalloc slack overwrite is caught at free.
    let before = s.slab_errors();
    let o = s.kmalloc(20, Gfp::KERNEL).unwrap();
    // SAFETY: byte 20 is in the 32-byte bucket's slack (the kmalloc red zone).
    unsafe { o.as_ptr().add(20).write(0) };
    // SAFETY: allocated above; the free reports, restores and (as the kernel) leaks it.
    let _ = unsafe { s.kfree(o.as_ptr()) };
    assert_eq!(
        s.slab_errors() - before,
        3,
        "overwritten + restoring + not freed"
    );
    let mut objs = Vec::new();
    for size in [8usize, 24, 100, 700, 3000] {
        for i in 0..50 {
            let p = s.kmalloc(size, Gfp::KERNEL).unwrap();
            // SAFETY: size bytes of a fresh object.
            unsafe { p.as_ptr().write_bytes(i as u8, size) };
            objs.push((p, size));
        }
    }
    for (p, size) in objs {
        // SAFETY: allocated above.
        unsafe { s.kfree(p.as_ptr()) }.unwrap();
        let _ = size;
    }
    s.validate().unwrap();
    assert_eq!(s.slab_errors() - before, 3, "clean use reports nothing");
}

#[test]
fn report_display_in_kernel_words() {
    // The callback runs under list_lock: it keeps the (Copy) report and formats nothing.
    static LAST: std::sync::Mutex<Option<DebugReport>> = std::sync::Mutex::new(None);
    fn keep(r: &DebugReport) {
        if r.kind == ReportKind::Overwritten {
            *LAST.lock().unwrap() = Some(*r);
        }
    }
    let p = provider(1, 16);
    let s = slub_with(
        &p,
        SlubSettings {
            slub_debug: Some(SlubDebug::OFF),
            debug_report: Some(ReportFn(keep)),
            ..SlubSettings::default()
        },
    );
    let c = s
        .kmem_cache_create("rz", 64, 0, SlabFlags::RED_ZONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: right red zone.
    unsafe { o.as_ptr().add(64).write(0x12) };
    let _ = s.validate_cache(c);
    let report = LAST.lock().unwrap().expect("an Overwritten report");
    let text = report.to_string();
    assert!(text.contains("BUG rz"), "{text}");
    assert!(text.contains("Right Redzone overwritten"), "{text}");
    assert!(text.contains("First byte 0x12 instead of 0xcc"), "{text}");
}

#[test]
fn slub_debug_option_selects_caches() {
    let p = provider(1, 32);
    let st = SlubSettings::from_boot_options("slub_debug=F,kmalloc-*;ZP stats").unwrap();
    assert!(st.stats);
    let s = slub_with(&p, st);
    let k = s.find_cache("kmalloc-64").unwrap();
    assert_eq!(
        s.cache_debug_layout(k).unwrap().0,
        SlabFlags::CONSISTENCY_CHECKS | SlabFlags::KMALLOC
    );
    let c = s
        .kmem_cache_create("mine", 40, 0, SlabFlags::NONE, None)
        .unwrap();
    let f = s.cache_debug_layout(c).unwrap().0;
    assert!(f.contains(SlabFlags::RED_ZONE | SlabFlags::POISON));
    assert!(!f.contains(SlabFlags::STORE_USER));
    let off = SlubSettings::from_boot_options("slub_debug=-").unwrap();
    let s2 = slub_with(&p, off);
    let c2 = s2
        .kmem_cache_create("mine", 40, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(s2.cache_debug_layout(c2).unwrap().0, SlabFlags::NONE);
}

#[test]
fn debug_cache_cross_thread_stress_is_clean() {
    let p = provider(2, 32);
    let st = SlubSettings {
        slub_debug: Some(SlubDebug::new(b"FZPU").unwrap()),
        debug_report: Some(ReportFn(quiet)),
        ..SlubSettings::default()
    };
    let s = slub_with(&p, st);
    let c = s
        .kmem_cache_create("stress", 72, 0, SlabFlags::NONE, None)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    std::thread::scope(|sc| {
        let s = &s;
        sc.spawn(move || {
            let mut seed = 12345u64;
            let mut live: Vec<core::ptr::NonNull<u8>> = Vec::new();
            for _ in 0..20_000 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if live.len() < 200 && seed >> 62 != 0 {
                    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
                    // SAFETY: 72 bytes of a fresh object.
                    unsafe { o.as_ptr().write_bytes(0x33, 72) };
                    live.push(o);
                } else if let Some(o) = live.pop() {
                    // Half the frees happen on the other thread.
                    if seed & 1 == 0 {
                        tx.send(o.as_ptr() as usize).unwrap();
                    } else {
                        // SAFETY: allocated above.
                        unsafe { s.kmem_cache_free(c, o) }.unwrap();
                    }
                }
            }
            for o in live {
                tx.send(o.as_ptr() as usize).unwrap();
            }
        });
        sc.spawn(move || {
            for a in rx {
                let o = core::ptr::NonNull::new(a as *mut u8).unwrap();
                // SAFETY: every sent object is live and no longer used by the sender.
                unsafe {
                    assert_eq!(o.as_ptr().add(71).read(), 0x33);
                    s.kmem_cache_free(c, o).unwrap();
                }
            }
        });
    });
    s.validate().unwrap();
    assert_eq!(s.cache_errors(c).unwrap(), 0);
    assert_eq!(s.cache_attrs(c).unwrap().objects, 0);
    // SAFETY: empty.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
}

#[test]
fn kmalloc_zero_with_orig_size_tracking() {
    let s = full_debug();
    let o = s.kmalloc(20, Gfp::KERNEL | Gfp::ZERO).unwrap();
    // SAFETY: 20 requested bytes, then the slack of the 32-byte bucket.
    let b = unsafe { core::slice::from_raw_parts(o.as_ptr(), 32) };
    assert!(b[..20].iter().all(|&x| x == 0), "{b:?}");
    assert!(b[20..].iter().all(|&x| x == slub::SLUB_RED_ACTIVE), "{b:?}");
    let before = s.slab_errors();
    // SAFETY: allocated above.
    unsafe { s.kfree(o.as_ptr()) }.unwrap();
    assert_eq!(s.slab_errors(), before);
}
