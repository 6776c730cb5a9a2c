//! Out of memory from a limited provider: failures return None/Err and leak nothing.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabError, SlabFlags};
use slab_classic::{Slab, SlabSettings};

fn footprint() -> usize {
    let p = util::provider(1, 64);
    let s = Slab::new(&p, SlabSettings::default()).unwrap();
    drop(s);
    assert_eq!(p.stats().pages_in_use, 0);
    let s = Slab::new(&p, SlabSettings::default()).unwrap();
    let f = p.stats().pages_in_use;
    drop(s);
    f
}

#[test]
fn bootstrap_failure_at_every_limit_leaks_nothing() {
    let f = footprint();
    assert!(f > 10, "bootstrap footprint {f}");
    util::bootstrap_fails_cleanly_below(SlabSettings::default(), f, 3);
}

#[test]
fn allocation_fails_cleanly_and_works_again_after_memory_returns() {
    let f = footprint();
    let p = util::limited_provider(64, f + 80);
    let s = Slab::new(&p, SlabSettings::default()).unwrap();
    s.shrink_all();
    let baseline = p.stats().pages_in_use;
    let c = s
        .kmem_cache_create("oom4k", 4096, 0, SlabFlags::NONE, None)
        .unwrap();
    let mut objs = Vec::new();
    while let Some(o) = s.kmem_cache_alloc(c, Gfp::KERNEL) {
        objs.push(o);
        assert!(objs.len() < 10_000);
    }
    assert!(objs.len() > 30, "{}", objs.len());
    assert!(s.kmalloc(100_000, Gfp::KERNEL).is_none());
    assert!(
        s.kmem_cache_alloc(c, Gfp::KERNEL).is_none(),
        "still out of memory"
    );
    s.validate().unwrap();
    let n = objs.len();
    for o in objs.drain(..) {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
    // The cache works again: the same number of objects fit.
    for _ in 0..n {
        objs.push(
            s.kmem_cache_alloc(c, Gfp::KERNEL)
                .expect("memory came back"),
        );
    }
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    // SAFETY: unused now.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    s.shrink_all();
    assert_eq!(p.stats().pages_in_use, baseline);
    s.validate().unwrap();
}

#[test]
fn cache_creation_under_memory_pressure() {
    let f = footprint();
    let p = util::limited_provider(64, f + 3);
    let s = Slab::new(&p, SlabSettings::default()).unwrap();
    let mut hog = Vec::new();
    for size in [32, 64, 128, 192, 256, 512, 1024, 2048, 4096] {
        while let Some(o) = s.kmalloc(size, Gfp::KERNEL) {
            hog.push(o);
        }
    }
    let mut made = Vec::new();
    let err = loop {
        match s.kmem_cache_create(
            &format!("pressure{}", made.len()),
            256,
            0,
            SlabFlags::NONE,
            None,
        ) {
            Ok(c) => made.push(c),
            Err(e) => break e,
        }
        assert!(made.len() < 1000);
    };
    assert_eq!(err, SlabError::NoMemory);
    assert!(
        s.find_cache(&format!("pressure{}", made.len())).is_none(),
        "failed cache not on the chain"
    );
    s.validate().unwrap();
    for c in made {
        // SAFETY: unused caches.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
    }
    for o in hog {
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    s.validate().unwrap();
    // Freed objects sit in the arrays and free slabs of the other caches until they are
    // reaped or shrunk (as in the kernel); give them back, then creation works again.
    s.shrink_all();
    let c = s
        .kmem_cache_create("after", 256, 0, SlabFlags::NONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
}
