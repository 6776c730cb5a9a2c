//! `lib/test_meminit.c` ported to SLUB: `test_pages` (through large kmalloc),
//! `test_kvmalloc` (its kmalloc half), `test_kmemcache` (8 B … 4 KiB × constructor /
//! `TYPESAFE_BY_RCU` / `__GFP_ZERO`, each with the bulk half, plus `do_kmem_cache_size_bulk`) and
//! `test_rcu_persistent`, with the kernel's counting: every test function returns how many
//! tests it ran and adds its failures, prints "all N tests in F passed" or "F failed X out of N
//! times", and the suite ends with "all N tests passed!" or "failures: X out of N".
//!
//! Each test can fail: with `init_on_alloc`/`init_on_free` off, `test_pages`, `test_kvmalloc`
//! and `test_kmemcache` find the garbage they wrote before freeing; `test_rcu_persistent`'s
//! content check fails on a cache that is not `TYPESAFE_BY_RCU` under `init_on_free`; and
//! poisoning (which takes precedence over `init_on_*`) makes `test_kmemcache` fail too.
//!
//! What differs from the kernel: there is no vmalloc (the vmalloc half of `test_kvmalloc` is
//! left out) and no RCU-delayed slab freeing — `TYPESAFE_BY_RCU` here means what the tests
//! check: the free pointer lies outside the object and `init_on_*` leaves the object alone, so
//! its contents survive a free. `test_pages` allocates `PAGE_SIZE << order` through `kmalloc`:
//! orders 0 and 1 come from `kmalloc-4k`/`kmalloc-8k`, orders 2.. are `kmalloc_large` pages.
//! `do_kmem_cache_rcu_persistent` frees the objects it allocated also when it did not meet the
//! saved pointer again (the kernel leaks them there, and our destroy refuses a busy cache).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{CacheHandle, Gfp, SlabAllocator, SlabFlags, MAX_ORDER, PAGE_SIZE};
use core::ptr::NonNull;
use slub::{DebugReport, ReportFn, Slub, SlubDebug, SlubSettings};

const GARBAGE_INT: u32 = 0x09A7_BA9E;
const GARBAGE_BYTE: u8 = 0x9E;
const CTOR_PATTERN: u32 = 0x4141_4141;
const CTOR_BYTES: usize = 4;
const BULK_SIZE: usize = 100;

/// One test function's result: tests run, failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Count {
    num_tests: usize,
    failures: usize,
}

impl core::ops::AddAssign for Count {
    fn add_assign(&mut self, o: Count) {
        self.num_tests += o.num_tests;
        self.failures += o.failures;
    }
}

/// `REPORT_FAILURES_IN_FN`.
fn report(func: &str, c: Count) -> Count {
    if c.failures > 0 {
        println!(
            "test_meminit: {func} failed {} out of {} times",
            c.failures, c.num_tests
        );
    } else {
        println!("test_meminit: all {} tests in {func} passed", c.num_tests);
    }
    c
}

fn count_nonzero_bytes(p: *const u8, size: usize) -> usize {
    // SAFETY: the caller owns (or, for an RCU check, may still read) size bytes at p.
    (0..size)
        .filter(|&i| unsafe { p.add(i).read() } != 0)
        .count()
}

/// `fill_with_garbage_skip`: `GARBAGE_INT` words, then `GARBAGE_BYTE`s, from `skip` on.
fn fill_with_garbage_skip(p: *mut u8, size: usize, skip: usize) {
    assert!(skip <= size);
    let mut i = skip;
    while size - i >= 4 {
        // SAFETY: the caller owns size bytes at p.
        unsafe { p.add(i).cast::<u32>().write_unaligned(GARBAGE_INT) };
        i += 4;
    }
    while i < size {
        // SAFETY: as above.
        unsafe { p.add(i).write(GARBAGE_BYTE) };
        i += 1;
    }
}

fn fill_with_garbage(p: *mut u8, size: usize) {
    fill_with_garbage_skip(p, size, 0);
}

// SAFETY (contract): called with a fresh object of at least 8 bytes.
unsafe fn test_ctor(p: *mut u8) {
    // SAFETY: as above.
    unsafe { p.cast::<u32>().write_unaligned(CTOR_PATTERN) };
}

/// `check_buf`: true means failure.
fn check_buf(
    buf: *const u8,
    size: usize,
    want_ctor: bool,
    want_rcu: bool,
    want_zero: bool,
) -> bool {
    let bytes = count_nonzero_bytes(buf, size);
    assert!(!(want_ctor && want_zero));
    if want_zero {
        return bytes != 0;
    }
    if want_ctor {
        // SAFETY: objects have at least CTOR_BYTES bytes.
        unsafe { buf.cast::<u32>().read_unaligned() != CTOR_PATTERN }
    } else {
        bytes != 0 && !want_rcu
    }
}

fn kfree(s: &Slub, p: NonNull<u8>) {
    // SAFETY: every test pointer is freed once.
    unsafe { s.kfree(p.as_ptr()) }.unwrap();
}

fn cache_free(s: &Slub, c: CacheHandle, p: NonNull<u8>) {
    // SAFETY: every test object is freed once.
    unsafe { s.kmem_cache_free(c, p) }.unwrap();
}

/// `do_alloc_pages_order` (through kmalloc: see the module doc).
fn do_alloc_pages_order(s: &Slub, order: usize, failures: &mut usize) -> usize {
    let size = PAGE_SIZE << order;
    let buf = s.kmalloc(size, Gfp::KERNEL).unwrap();
    fill_with_garbage(buf.as_ptr(), size);
    kfree(s, buf);
    let buf = s.kmalloc(size, Gfp::KERNEL).unwrap();
    if count_nonzero_bytes(buf.as_ptr(), size) != 0 {
        *failures += 1;
    }
    fill_with_garbage(buf.as_ptr(), size);
    kfree(s, buf);
    1
}

/// `test_pages`: orders 0 .. MAX_ORDER.
fn test_pages(s: &Slub) -> Count {
    let mut c = Count::default();
    for order in 0..MAX_ORDER {
        c.num_tests += do_alloc_pages_order(s, order, &mut c.failures);
    }
    report("test_pages", c)
}

/// `do_kmalloc_size`.
fn do_kmalloc_size(s: &Slub, size: usize, failures: &mut usize) -> usize {
    let buf = s.kmalloc(size, Gfp::KERNEL).unwrap();
    fill_with_garbage(buf.as_ptr(), size);
    kfree(s, buf);
    let buf = s.kmalloc(size, Gfp::KERNEL).unwrap();
    if count_nonzero_bytes(buf.as_ptr(), size) != 0 {
        *failures += 1;
    }
    fill_with_garbage(buf.as_ptr(), size);
    kfree(s, buf);
    1
}

/// `test_kvmalloc` without vmalloc: sizes `1 << i`, i < 20.
fn test_kvmalloc(s: &Slub) -> Count {
    let mut c = Count::default();
    for i in 0..20 {
        c.num_tests += do_kmalloc_size(s, 1 << i, &mut c.failures);
    }
    report("test_kvmalloc", c)
}

/// `do_kmem_cache_size`: 10 rounds of (bulk alloc + check + bulk free if no ctor/RCU), single
/// alloc + check, garbage, free; RCU caches check the object is intact after the free.
fn do_kmem_cache_size(
    s: &Slub,
    size: usize,
    want_ctor: bool,
    want_rcu: bool,
    want_zero: bool,
    failures: &mut usize,
) -> usize {
    let gfp = if want_zero { Gfp::ZERO } else { Gfp::KERNEL };
    let flags = if want_rcu {
        SlabFlags::TYPESAFE_BY_RCU
    } else {
        SlabFlags::NONE
    };
    let c = s
        .kmem_cache_create(
            "test_cache",
            size,
            1,
            flags,
            want_ctor.then_some(test_ctor as common::Ctor),
        )
        .unwrap();
    let mut fail = false;
    let mut bulk = [core::ptr::null_mut::<u8>(); BULK_SIZE];
    for _ in 0..10 {
        if !want_rcu && !want_ctor {
            let ret = s.kmem_cache_alloc_bulk(c, gfp, &mut bulk);
            if ret == 0 {
                fail = true;
            } else {
                for &o in &bulk[..ret] {
                    fail |= check_buf(o, size, want_ctor, want_rcu, want_zero);
                }
                // SAFETY: the objects just allocated, each once.
                unsafe { s.kmem_cache_free_bulk(c, &mut bulk[..ret]) }.unwrap();
            }
        }
        let buf = s.kmem_cache_alloc(c, gfp).unwrap();
        fail |= check_buf(buf.as_ptr(), size, want_ctor, want_rcu, want_zero);
        fill_with_garbage_skip(buf.as_ptr(), size, if want_ctor { CTOR_BYTES } else { 0 });
        if !want_rcu {
            cache_free(s, c, buf);
            continue;
        }
        // "rcu_read_lock()": the object may be read after it is freed (its slab stays mapped
        // and, here, allocated: nothing else runs on this cache).
        let copy: Vec<u8> = (0..size)
            // SAFETY: a live object of size bytes.
            .map(|i| unsafe { buf.as_ptr().add(i).read() })
            .collect();
        cache_free(s, c, buf);
        fail |= check_buf(buf.as_ptr(), size, want_ctor, want_rcu, false);
        // SAFETY: as above: the freed object's memory is still mapped.
        fail |= (0..size).any(|i| unsafe { buf.as_ptr().add(i).read() } != copy[i]);
    }
    // SAFETY: every object was freed.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    *failures += usize::from(fail);
    1
}

/// `do_kmem_cache_rcu_persistent`: data written before a free survives when the same address
/// comes back within 1024 allocations. `flags` is `TYPESAFE_BY_RCU` in the kernel's test.
fn do_kmem_cache_rcu_persistent(
    s: &Slub,
    size: usize,
    flags: SlabFlags,
    failures: &mut usize,
) -> usize {
    let c = s
        .kmem_cache_create("test_cache", size, size, flags, None)
        .unwrap();
    let buf = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    let saved_ptr = buf;
    fill_with_garbage(buf.as_ptr(), size);
    let contents: Vec<u8> = (0..size)
        // SAFETY: a live object of size bytes.
        .map(|i| unsafe { buf.as_ptr().add(i).read() })
        .collect();
    cache_free(s, c, buf);
    let mut fail = false;
    let mut used = Vec::with_capacity(1024);
    for _ in 0..1024 {
        let buf = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        used.push(buf);
        if buf == saved_ptr {
            // SAFETY: a live object of size bytes.
            fail = (0..size).any(|i| unsafe { buf.as_ptr().add(i).read() } != contents[i]);
            break;
        }
    }
    for o in used {
        cache_free(s, c, o);
    }
    // SAFETY: every object was freed.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    *failures += usize::from(fail);
    1
}

/// `do_kmem_cache_size_bulk`: 10 objects at a time, up to 1024 rounds or the first failure.
fn do_kmem_cache_size_bulk(s: &Slub, size: usize, failures: &mut usize) -> usize {
    let c = s
        .kmem_cache_create("test_cache", size, size, SlabFlags::NONE, None)
        .unwrap();
    let mut fail = false;
    let mut objects = [core::ptr::null_mut::<u8>(); 10];
    let mut iter = 0;
    while iter < 1024 && !fail {
        let num = s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut objects);
        for &o in &objects[..num] {
            if count_nonzero_bytes(o, size) != 0 {
                fail = true;
            }
            fill_with_garbage(o, size);
        }
        if num > 0 {
            // SAFETY: the objects just allocated, each once.
            unsafe { s.kmem_cache_free_bulk(c, &mut objects[..num]) }.unwrap();
        }
        iter += 1;
    }
    // SAFETY: every object was freed.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    *failures += usize::from(fail);
    1
}

/// `test_kmemcache`: sizes 8 << i (i < 10) × the 6 flag combinations without ctor + zero, and
/// `do_kmem_cache_size_bulk` for each size.
fn test_kmemcache(s: &Slub) -> Count {
    let mut c = Count::default();
    for i in 0..10 {
        let size = 8 << i;
        for flags in 0..8 {
            let (ctor, rcu, zero) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
            if ctor && zero {
                continue;
            }
            c.num_tests += do_kmem_cache_size(s, size, ctor, rcu, zero, &mut c.failures);
        }
        c.num_tests += do_kmem_cache_size_bulk(s, size, &mut c.failures);
    }
    report("test_kmemcache", c)
}

/// `test_rcu_persistent` (with the cache flags as a parameter, for the negative check).
fn test_rcu_persistent_flags(s: &Slub, flags: SlabFlags) -> Count {
    let mut c = Count::default();
    for i in 0..10 {
        c.num_tests += do_kmem_cache_rcu_persistent(s, 8 << i, flags, &mut c.failures);
    }
    report("test_rcu_persistent", c)
}

fn test_rcu_persistent(s: &Slub) -> Count {
    test_rcu_persistent_flags(s, SlabFlags::TYPESAFE_BY_RCU)
}

/// `test_meminit_init`: all four, the per-function counts and the total.
fn test_meminit_init(s: &Slub) -> [Count; 5] {
    let r = [
        test_pages(s),
        test_kvmalloc(s),
        test_kmemcache(s),
        test_rcu_persistent(s),
    ];
    let mut total = Count::default();
    for c in r {
        total += c;
    }
    if total.failures == 0 {
        println!("test_meminit: all {} tests passed!", total.num_tests);
    } else {
        println!(
            "test_meminit: failures: {} out of {}",
            total.failures, total.num_tests
        );
    }
    [r[0], r[1], r[2], r[3], total]
}

fn quiet(_: &DebugReport) {}

fn instance(p: &common::PageProvider, init_on_alloc: bool, init_on_free: bool) -> Slub {
    Slub::new(
        p,
        SlubSettings {
            init_on_alloc,
            init_on_free,
            slub_debug: Some(SlubDebug::OFF),
            ..SlubSettings::default()
        },
    )
    .unwrap()
}

/// The kernel's counts: test_pages 11 (MAX_ORDER), test_kvmalloc 20, test_kmemcache
/// 10 × (6 + 1) = 70, test_rcu_persistent 10.
const NUM_TESTS: [usize; 5] = [11, 20, 70, 10, 111];

fn all_pass(s: &Slub) {
    let r = test_meminit_init(s);
    for (c, n) in r.iter().zip(NUM_TESTS) {
        assert_eq!(c.num_tests, n);
    }
    assert_eq!(r[4].failures, 0, "{r:?}");
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0);
}

#[test]
fn test_meminit_init_on_alloc() {
    let p = util::provider(1, 128);
    all_pass(&instance(&p, true, false));
}

#[test]
fn test_meminit_init_on_free() {
    let p = util::provider(1, 128);
    all_pass(&instance(&p, false, true));
}

#[test]
fn test_meminit_init_on_alloc_and_free() {
    let p = util::provider(1, 128);
    all_pass(&instance(&p, true, true));
}

#[test]
fn test_meminit_init_on_free_hardened_2_6_32_layout() {
    // Free pointer at offset 0 (2.6.32 layout) and encoded (hardened): maybe_wipe_obj_freeptr
    // must clear the encoded word, not just a null.
    let p = util::provider(1, 128);
    let s = Slub::new(
        &p,
        SlubSettings {
            init_on_free: true,
            freelist_hardened: true,
            slub_debug: Some(SlubDebug::OFF),
            ..SlubSettings::v2_6_32()
        },
    )
    .unwrap();
    all_pass(&s);
}

#[test]
fn test_meminit_with_slub_debug_fzu() {
    // Consistency checks, red zones and user tracks (with the kmalloc red zone of orig-size
    // tracking) on every cache: zeroing keeps the red zones, the outside free pointer and
    // orig_size, so the debug checks find nothing and the tests pass.
    let p = util::provider(1, 256);
    for (alloc, free) in [(true, false), (false, true), (true, true)] {
        let s = Slub::new(
            &p,
            SlubSettings {
                init_on_alloc: alloc,
                init_on_free: free,
                slub_debug: Some(SlubDebug::new(b"FZU").unwrap()),
                debug_report: Some(ReportFn(quiet)),
                ..SlubSettings::default()
            },
        )
        .unwrap();
        all_pass(&s);
    }
}

#[test]
fn test_meminit_fails_with_init_off() {
    // The garbage written before each free comes back: the three zeroing tests fail, the RCU
    // one (which wants the garbage kept) passes.
    let p = util::provider(1, 128);
    let s = instance(&p, false, false);
    let r = test_meminit_init(&s);
    assert!(r[0].failures > 0, "test_pages: {:?}", r[0]);
    assert!(r[1].failures > 0, "test_kvmalloc: {:?}", r[1]);
    assert!(r[2].failures > 0, "test_kmemcache: {:?}", r[2]);
    assert_eq!(r[3].failures, 0, "test_rcu_persistent: {:?}", r[3]);
    assert_eq!(r[4].failures, r[0].failures + r[1].failures + r[2].failures);
    s.validate().unwrap();
}

#[test]
fn test_meminit_only_zeroing_requests_pass_with_init_off() {
    // Without init_on_*, only the __GFP_ZERO half of test_kmemcache passes: run it alone.
    let p = util::provider(1, 64);
    let s = instance(&p, false, false);
    let mut failures = 0;
    for i in 0..10 {
        do_kmem_cache_size(&s, 8 << i, false, false, true, &mut failures);
        do_kmem_cache_size(&s, 8 << i, false, true, true, &mut failures);
    }
    assert_eq!(failures, 0);
    let mut failures = 0;
    for i in 0..10 {
        do_kmem_cache_size(&s, 8 << i, false, false, false, &mut failures);
    }
    assert_eq!(failures, 10, "every size finds its garbage");
}

#[test]
fn test_rcu_persistent_check_detects_wiping() {
    // The same check on caches init_on_free does wipe (not TYPESAFE_BY_RCU) fails every time
    // the saved object comes back.
    let p = util::provider(1, 64);
    let s = instance(&p, false, true);
    let r = test_rcu_persistent_flags(&s, SlabFlags::NONE);
    assert_eq!(r.num_tests, 10);
    assert_eq!(r.failures, 10, "{r:?}");
    // And TYPESAFE_BY_RCU is exempt in the same instance.
    assert_eq!(test_rcu_persistent(&s).failures, 0);
}

#[test]
fn test_meminit_poison_takes_precedence() {
    // slub_debug=P: poisoned caches are exempt from init_on_* ("SLAB_POISON will take
    // precedence"), so objects come back as 0x6b… and test_kmemcache's plain cases fail; the
    // __GFP_ZERO and constructor cases still pass.
    let p = util::provider(1, 128);
    let s = Slub::new(
        &p,
        SlubSettings {
            init_on_alloc: true,
            init_on_free: true,
            slub_debug: Some(SlubDebug::new(b"P").unwrap()),
            debug_report: Some(ReportFn(quiet)),
            ..SlubSettings::default()
        },
    )
    .unwrap();
    let r = test_kmemcache(&s);
    assert_eq!(r.num_tests, 70);
    // Per size: plain (with its bulk half) and do_kmem_cache_size_bulk fail; zero, ctor and
    // the RCU cases (exempt from poisoning anyway) pass.
    assert_eq!(r.failures, 20, "{r:?}");
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0);
}

#[test]
fn init_on_free_zeroes_at_free_time_and_keeps_the_red_zone() {
    let p = util::provider(1, 16);
    let s = Slub::new(
        &p,
        SlubSettings {
            init_on_free: true,
            slub_debug: Some(SlubDebug::new(b"Z").unwrap()),
            debug_report: Some(ReportFn(quiet)),
            ..SlubSettings::default()
        },
    )
    .unwrap();
    let c = s
        .kmem_cache_create("iof", 200, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let (_, offset) = s.cache_debug_layout(c).unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    fill_with_garbage(o.as_ptr(), 200);
    cache_free(&s, c, o);
    // The freed object is zero except its free pointer word (inside the object here).
    let p0 = o.as_ptr();
    let nonzero: Vec<usize> = (0..200)
        // SAFETY: a free object of a live slab: mapped, read only.
        .filter(|&i| unsafe { p0.add(i).read() } != 0)
        .collect();
    assert!(
        nonzero.iter().all(|&i| (offset..offset + 8).contains(&i)),
        "{nonzero:?}"
    );
    // The right red zone (200..208) is the free value, not zero.
    // SAFETY: as above (red zone bytes of the slot).
    assert!((200..208).all(|i| unsafe { p0.add(i).read() } == slub::SLUB_RED_INACTIVE));
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0);
    // Allocated again, it is all zero (maybe_wipe_obj_freeptr).
    let o2 = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    assert_eq!(o2, o);
    assert_eq!(count_nonzero_bytes(o2.as_ptr(), 200), 0);
    cache_free(&s, c, o2);
}

#[test]
fn init_on_is_per_cache_and_boot_options_parse() {
    let o = SlubSettings::from_boot_options("init_on_alloc=1 init_on_free").unwrap();
    assert!(o.init_on_alloc && o.init_on_free);
    let o = SlubSettings::from_boot_options("init_on_alloc=0,init_on_free=off").unwrap();
    assert!(!o.init_on_alloc && !o.init_on_free);
    assert!(SlubSettings::from_boot_options("init_on_free=maybe").is_err());
    let p = util::provider(1, 16);
    let s = instance(&p, true, false);
    assert!(s
        .settings_summary()
        .contains("init_on_alloc=1 init_on_free=0"));
    // A constructor cache is exempt: its objects keep the constructor's pattern.
    let c = s
        .kmem_cache_create("ctor", 64, 0, SlabFlags::NONE, Some(test_ctor))
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: a live object of 64 bytes.
    let first = unsafe { o.as_ptr().cast::<u32>().read_unaligned() };
    assert_eq!(first, CTOR_PATTERN);
    cache_free(&s, c, o);
}
