//! `lib/test_meminit.c` ports: `test_kmemcache` over 8 B … 4 KiB
//! × {constructor, `__GFP_ZERO`, plain} under `init_on_alloc`, `init_on_free` and both, and
//! `test_kvmalloc`'s kmalloc reuse check.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabFlags};
use slab_classic::{Slab, SlabSettings};

/// `CTOR_PATTERN` / `CTOR_BYTES` of test_meminit.c.
const CTOR_PATTERN: u32 = 0x4141_4141;
const CTOR_BYTES: usize = 4;

// SAFETY (contract): called by the allocator with a fresh object of at least 8 bytes.
unsafe fn test_ctor(p: *mut u8) {
    // SAFETY: as above.
    unsafe { p.cast::<u32>().write_unaligned(CTOR_PATTERN) };
}

fn count_nonzero_bytes(p: *const u8, len: usize) -> usize {
    // SAFETY: the caller owns `len` bytes at `p`.
    (0..len).filter(|&i| unsafe { *p.add(i) } != 0).count()
}

/// `fill_with_garbage_skip`.
fn fill_with_garbage_skip(p: *mut u8, len: usize, skip: usize) {
    for i in skip..len {
        // SAFETY: the caller owns `len` bytes at `p`.
        unsafe { *p.add(i) = (i as u8) ^ 0x5c | 1 };
    }
}

/// `check_buf`: zeroed unless a constructor owns the first bytes.
fn check_buf(p: *const u8, size: usize, want_ctor: bool, want_zero: bool, init: bool) -> bool {
    if want_zero {
        return count_nonzero_bytes(p, size) == 0;
    }
    if want_ctor {
        // SAFETY: the object has at least CTOR_BYTES bytes.
        return unsafe { p.cast::<u32>().read_unaligned() } == CTOR_PATTERN;
    }
    !init || count_nonzero_bytes(p, size) == 0
}

/// `do_kmem_cache_size` + the bulk half of `do_kmem_cache_size_bulk`: 10 rounds of
/// alloc / check / fill with garbage / free, and 100 objects at once.
fn do_kmem_cache_size(s: &Slab, size: usize, want_ctor: bool, want_zero: bool) -> usize {
    let name = format!("test_cache-{size}-{want_ctor}-{want_zero}");
    let c = s
        .kmem_cache_create(
            &name,
            size,
            0,
            SlabFlags::NONE,
            want_ctor.then_some(test_ctor as common::api::Ctor),
        )
        .unwrap();
    // Zeroing is owed when init_on_* applies to this cache (not with a constructor or
    // poisoning, as 6.4's slab_want_init_on_*).
    let l = s.debug_layout(c).unwrap();
    let init = l.init_on_alloc || l.init_on_free;
    assert_eq!(
        init,
        !want_ctor
            && !l.flags.contains(SlabFlags::POISON)
            && (s.settings().init_on_alloc || s.settings().init_on_free)
    );
    let gfp = if want_zero { Gfp::ZERO } else { Gfp::KERNEL };
    let mut fail = 0;
    for _ in 0..10 {
        let buf = s.kmem_cache_alloc(c, gfp).unwrap();
        if !check_buf(buf.as_ptr(), size, want_ctor, want_zero, init) {
            fail += 1;
        }
        fill_with_garbage_skip(buf.as_ptr(), size, if want_ctor { CTOR_BYTES } else { 0 });
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, buf) }.unwrap();
    }
    if !want_ctor {
        let objs: Vec<_> = (0..100)
            .map(|_| s.kmem_cache_alloc(c, gfp).unwrap())
            .collect();
        for &o in &objs {
            if !check_buf(o.as_ptr(), size, want_ctor, want_zero, init) {
                fail += 1;
            }
            fill_with_garbage_skip(o.as_ptr(), size, 0);
        }
        for o in objs {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
    }
    // SAFETY: nothing live.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    fail
}

fn test_kmemcache(settings: SlabSettings) {
    let p = util::provider(1, 64);
    let s = Slab::new(&p, settings).unwrap();
    let mut failures = Vec::new();
    for i in 0..10 {
        let size = 8 << i;
        for (ctor, zero) in [(false, false), (true, false), (false, true)] {
            let f = do_kmem_cache_size(&s, size, ctor, zero);
            if f > 0 {
                failures.push((size, ctor, zero, f));
            }
        }
    }
    assert!(failures.is_empty(), "{settings:?}: {failures:?}");
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0);
}

#[test]
fn test_kmemcache_init_on_alloc() {
    test_kmemcache(SlabSettings {
        init_on_alloc: true,
        ..SlabSettings::default()
    });
}

#[test]
fn test_kmemcache_init_on_free() {
    test_kmemcache(SlabSettings {
        init_on_free: true,
        ..SlabSettings::default()
    });
}

#[test]
fn test_kmemcache_init_on_alloc_and_free_with_forced_debug() {
    // Poisoned caches are exempt from init_on_* (as in 6.4); __GFP_ZERO still zeroes, the
    // constructor still runs (at allocation, because of poisoning).
    let p = util::provider(1, 64);
    let s = Slab::new(
        &p,
        SlabSettings {
            init_on_alloc: true,
            init_on_free: true,
            ..SlabSettings::default()
        },
    )
    .unwrap();
    let c = s
        .kmem_cache_create("no-init-with-ctor", 64, 0, SlabFlags::NONE, Some(test_ctor))
        .unwrap();
    let l = s.debug_layout(c).unwrap();
    assert!(
        !l.init_on_alloc && !l.init_on_free,
        "not with a constructor"
    );
    let c = s
        .kmem_cache_create("no-init-with-poison", 64, 0, SlabFlags::POISON, None)
        .unwrap();
    let l = s.debug_layout(c).unwrap();
    assert!(!l.init_on_alloc && !l.init_on_free, "not with poisoning");
    test_kmemcache(SlabSettings {
        init_on_alloc: true,
        init_on_free: true,
        forced_debug: true,
        ..SlabSettings::default()
    });
}

#[test]
fn init_on_free_zeroes_the_object_when_it_is_freed() {
    let p = util::provider(1, 16);
    let s = Slab::new(
        &p,
        SlabSettings {
            init_on_free: true,
            ..SlabSettings::default()
        },
    )
    .unwrap();
    let c = s
        .kmem_cache_create("iof", 200, 0, SlabFlags::NONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    fill_with_garbage_skip(o.as_ptr(), 200, 0);
    // SAFETY: freed once; the freed bytes are read back only to check the zeroing (the memory
    // stays mapped: it is a free object of a live slab).
    unsafe {
        s.kmem_cache_free(c, o).unwrap();
        assert_eq!(count_nonzero_bytes(o.as_ptr(), 200), 0);
    }
}

#[test]
fn test_kvmalloc_reuse_is_zeroed() {
    // do_kmalloc_size: after kfree, a kmalloc of the same size is zeroed.
    for settings in [
        SlabSettings {
            init_on_alloc: true,
            ..SlabSettings::default()
        },
        SlabSettings {
            init_on_free: true,
            ..SlabSettings::default()
        },
    ] {
        let p = util::provider(1, 32);
        let s = Slab::new(&p, settings).unwrap();
        for size in (0..12).map(|i| 8usize << i) {
            let a = s.kmalloc(size, Gfp::KERNEL).unwrap();
            fill_with_garbage_skip(a.as_ptr(), size, 0);
            // SAFETY: freed once.
            unsafe { s.kfree(a.as_ptr()) }.unwrap();
            let b = s.kmalloc(size, Gfp::KERNEL).unwrap();
            assert_eq!(count_nonzero_bytes(b.as_ptr(), size), 0, "size {size}");
            // SAFETY: freed once.
            unsafe { s.kfree(b.as_ptr()) }.unwrap();
        }
        s.validate().unwrap();
    }
}
