//! kmalloc classes, pattern write/verify, ksize, bad frees.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::sizes::slab as sizes;
use common::{Gfp, Owner, SlabAllocator, SlabError, SlabFlags};
use core::ptr::NonNull;
use slab_classic::Slab;

#[test]
fn pattern_write_verify_every_kmalloc_class() {
    let p = util::provider(1, 64);
    let s = util::slab(&p);
    for (i, &class) in sizes::SIZES.iter().enumerate() {
        let smallest = if i == 0 { 1 } else { sizes::SIZES[i - 1] + 1 };
        let n = (256 * 1024 / class).clamp(2, 300);
        let mut objs = Vec::new();
        for k in 0..n {
            let size = if k % 2 == 0 { class } else { smallest };
            let o = s
                .kmalloc(size, Gfp::KERNEL)
                .unwrap_or_else(|| panic!("kmalloc({size})"));
            // SAFETY: o is a live kmalloc object of at least `size` bytes.
            let ks = unsafe { s.ksize(o) };
            assert_eq!(ks, Ok(class), "ksize of a {size}-byte kmalloc");
            util::fill(o.as_ptr(), size, (i * 1000 + k) as u64);
            objs.push((o, size, (i * 1000 + k) as u64));
        }
        for &(o, size, seed) in &objs {
            assert!(
                util::check(o.as_ptr(), size, seed),
                "{} object overwritten",
                sizes::NAMES[i]
            );
        }
        s.validate().unwrap();
        for (o, _, _) in objs {
            // SAFETY: each object freed once.
            unsafe { s.kfree(o.as_ptr()) }.unwrap();
        }
    }
    s.validate().unwrap();
}

#[test]
fn kmalloc_limits() {
    let p = util::provider(1, 64);
    let s = util::slab(&p);
    assert!(s.kmalloc(0, Gfp::KERNEL).is_none());
    assert!(s.kmalloc((4 << 20) + 1, Gfp::KERNEL).is_none());
    let big = s.kmalloc(4 << 20, Gfp::KERNEL).unwrap();
    // SAFETY: live object, freed once.
    unsafe {
        assert_eq!(s.ksize(big), Ok(4 << 20));
        s.kfree(big.as_ptr()).unwrap();
        s.kfree(core::ptr::null_mut()).unwrap();
    }
    // __GFP_ZERO clears the object even when it was used before.
    let a = s.kmalloc(200, Gfp::KERNEL).unwrap();
    util::fill(a.as_ptr(), 200, 7);
    // SAFETY: freed once.
    unsafe { s.kfree(a.as_ptr()) }.unwrap();
    let z = s.kmalloc(200, Gfp::ZERO).unwrap();
    // SAFETY: 256 bytes owned.
    assert!((0..256).all(|i| unsafe { *z.as_ptr().add(i) } == 0));
    // SAFETY: freed once.
    unsafe { s.kfree(z.as_ptr()) }.unwrap();
}

#[test]
fn bad_frees_are_reported() {
    let p = util::provider(1, 64);
    let s = util::slab(&p);
    let c1 = s
        .kmem_cache_create("c1", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let c2 = s
        .kmem_cache_create("c2", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c1, Gfp::KERNEL).unwrap();
    let mut local = 0u64;
    let stack = NonNull::from(&mut local).cast::<u8>();
    // SAFETY: every call below is refused before anything is touched, except the last.
    unsafe {
        assert_eq!(
            s.kfree(stack.as_ptr()),
            Err(SlabError::NotOurs(stack.as_ptr() as usize))
        );
        let inner = o.as_ptr().add(8);
        assert_eq!(
            s.kfree(inner),
            Err(SlabError::NotObjectStart(inner as usize))
        );
        assert_eq!(
            s.kmem_cache_free(c2, o),
            Err(SlabError::WrongCache(o.as_ptr() as usize))
        );
        // A provider page that is not a slab.
        let page = p.alloc_pages_addr(0, 0, Owner::Other).unwrap();
        assert!(matches!(s.kfree(page.as_ptr()), Err(SlabError::NotOurs(_))));
        p.free_pages_addr(page, 0).unwrap();
        // Another instance on the same provider.
        let other = Slab::new(&p, slab_classic::SlabSettings::default()).unwrap();
        assert!(matches!(
            other.kfree(o.as_ptr()),
            Err(SlabError::NotOurs(_))
        ));
        assert_eq!(other.kmem_cache_alloc(c1, Gfp::KERNEL), None);
        assert_eq!(other.kmem_cache_shrink(c1), Err(SlabError::ForeignCache));
        s.kmem_cache_free(c1, o).unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn impossible_caches_are_refused() {
    let p = util::provider(1, 16);
    let s = util::slab(&p);
    assert_eq!(
        s.kmem_cache_create("z", 0, 0, SlabFlags::NONE, None),
        Err(SlabError::ZeroSize)
    );
    assert!(matches!(
        s.kmem_cache_create("big", (4 << 20) + 1, 0, SlabFlags::NONE, None),
        Err(SlabError::TooLarge { .. })
    ));
    assert_eq!(
        s.kmem_cache_create("a", 64, 3, SlabFlags::NONE, None),
        Err(SlabError::BadAlign(3))
    );
    assert_eq!(
        s.kmem_cache_create("a", 64, 8192, SlabFlags::NONE, None),
        Err(SlabError::BadAlign(8192))
    );
    assert_eq!(
        s.kmem_cache_create("", 64, 0, SlabFlags::NONE, None),
        Err(SlabError::BadName)
    );
    assert_eq!(
        s.kmem_cache_create("size-64", 64, 0, SlabFlags::NONE, None),
        Err(SlabError::BadName),
        "duplicate name"
    );
    // Alignment honoured.
    let c = s
        .kmem_cache_create("al", 200, 256, SlabFlags::NONE, None)
        .unwrap();
    let v: Vec<_> = (0..40)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    assert!(v.iter().all(|o| o.as_ptr() as usize % 256 == 0));
    for o in v {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
}

static CTOR_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

unsafe fn ctor(p: *mut u8) {
    // SAFETY: the allocator passes an object of at least 16 bytes.
    unsafe { p.cast::<u64>().write(0xC0FFEE) };
    CTOR_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[test]
fn constructor_runs_once_per_object_at_slab_creation() {
    let p = util::provider(1, 16);
    let s = util::slab(&p);
    let c = s
        .kmem_cache_create("ctor", 16, 0, SlabFlags::NONE, Some(ctor))
        .unwrap();
    let before = CTOR_CALLS.load(std::sync::atomic::Ordering::Relaxed);
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: live object.
    assert_eq!(unsafe { o.as_ptr().cast::<u64>().read() }, 0xC0FFEE);
    let num = s.cache_geometry(c).unwrap().num;
    assert_eq!(
        CTOR_CALLS.load(std::sync::atomic::Ordering::Relaxed) - before,
        num
    );
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
}
