//! Boot, kmalloc classes, large kmalloc, ksize, bad input.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, Owner, SlabAllocator, SlabError, SlabFlags};
use slub::{SlabState, Slub, SlubSettings};
use util::*;

#[test]
fn boots_with_all_caches_and_validates() {
    let p = provider(1, 64);
    let s = slub(&p);
    assert_eq!(s.slab_state(), SlabState::Full);
    let names: Vec<String> = s.slabinfo().iter().map(|r| r.name.to_string()).collect();
    for n in common::sizes::slub::NAMES {
        assert!(names.iter().any(|x| x == n), "missing {n}");
    }
    assert!(names.iter().any(|x| x == "kmem_cache"));
    assert!(names.iter().any(|x| x == "kmem_cache_node"));
    s.validate().unwrap();
    // All metadata comes from the provider: the kmem_cache structures sit in slabs.
    let u = s.memory_usage();
    assert!(u.slab_pages > 0 && u.metadata_pages > 0);
    let kc = s.find_cache("kmem_cache").unwrap();
    let a = s.cache_attrs(kc).unwrap();
    // 2 boot caches + 13 kmalloc caches live in kmem_cache objects.
    assert_eq!(a.objects, 15);
    drop(s);
    assert_eq!(p.stats().pages_in_use, 0, "everything given back");
}

#[test]
fn kmalloc_every_class_pattern_write_verify() {
    let p = provider(1, 256);
    let s = slub(&p);
    let mut sizes: Vec<usize> = Vec::new();
    for &c in common::sizes::slub::SIZES {
        sizes.extend([c - 1, c, c + 1]);
    }
    sizes.retain(|&x| x > 0);
    for &size in &sizes {
        let n = (64 * 1024 / size).clamp(8, 400);
        let objs: Vec<*mut u8> = (0..n)
            .map(|i| {
                let o = s.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
                fill(o, size, i + size);
                o
            })
            .collect();
        for (i, &o) in objs.iter().enumerate() {
            assert!(check(o, size, i + size), "size {size} object {i} corrupted");
            // SAFETY: live object.
            let k = unsafe { s.ksize(std::ptr::NonNull::new(o).unwrap()) }.unwrap();
            assert!(k >= size, "ksize {k} < {size}");
            if size <= 8192 {
                let class =
                    common::sizes::slub::SIZES[common::sizes::slub::find_index(size).unwrap()];
                assert_eq!(k, class, "size {size}");
                // kmalloc objects of power-of-two classes are naturally aligned.
                if class.is_power_of_two() {
                    assert_eq!(o as usize % class, 0, "size {size}");
                }
            }
        }
        for o in objs {
            // SAFETY: live object, freed once.
            unsafe { s.kfree(o) }.unwrap();
        }
    }
    s.validate().unwrap();
}

#[test]
fn kmalloc_large_from_pages() {
    let p = provider(1, 64);
    let s = slub(&p);
    for (i, &size) in [8193usize, 12288, 16384, 100_000, 1 << 20, 4 << 20]
        .iter()
        .enumerate()
    {
        let o = s.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
        assert_eq!(o as usize % 4096, 0);
        fill(o, size, i);
        assert!(check(o, size, i));
        // SAFETY: live.
        let k = unsafe { s.ksize(std::ptr::NonNull::new(o).unwrap()) }.unwrap();
        assert_eq!(k, 4096 << common::provider::get_order(size));
        assert!(p.stats().owner(Owner::LargeKmalloc) > 0);
        // Interior pointer is refused.
        assert_eq!(
            // SAFETY: refused without touching memory.
            unsafe { s.kfree(o.add(8)) },
            Err(SlabError::NotObjectStart(o as usize + 8))
        );
        // SAFETY: live, freed once.
        unsafe { s.kfree(o) }.unwrap();
        assert_eq!(p.stats().owner(Owner::LargeKmalloc), 0);
    }
    assert!(s.kmalloc((4 << 20) + 1, Gfp::KERNEL).is_none());
    assert!(s.kmalloc(0, Gfp::KERNEL).is_none());
    let z = s.kmalloc(20000, Gfp::ZERO).unwrap().as_ptr();
    // SAFETY: 20000 bytes live.
    assert!((0..20000).all(|i| unsafe { z.add(i).read() } == 0));
    // SAFETY: live.
    unsafe { s.kfree(z) }.unwrap();
}

#[test]
fn kmalloc_cache_lookup_boundaries() {
    let p = provider(1, 32);
    let s = slub(&p);
    let name = |size: usize| {
        let h = s.kmalloc_cache(size)?;
        s.slabinfo()
            .into_iter()
            .find(|r| {
                r.objsize == s.cache_attrs(h).unwrap().slab_size
                    && r.name.as_str().starts_with("kmalloc")
            })
            .map(|r| r.name.to_string())
    };
    assert_eq!(name(1).unwrap(), "kmalloc-8");
    assert_eq!(name(8).unwrap(), "kmalloc-8");
    assert_eq!(name(9).unwrap(), "kmalloc-16");
    assert_eq!(name(64).unwrap(), "kmalloc-64");
    assert_eq!(name(65).unwrap(), "kmalloc-96");
    assert_eq!(name(96).unwrap(), "kmalloc-96");
    assert_eq!(name(97).unwrap(), "kmalloc-128");
    assert_eq!(name(129).unwrap(), "kmalloc-192");
    assert_eq!(name(193).unwrap(), "kmalloc-256");
    assert_eq!(name(4097).unwrap(), "kmalloc-8k");
    assert!(s.kmalloc_cache(8193).is_none());
    assert!(s.kmalloc_cache(0).is_none());
    assert_eq!(s.kmalloc_cache(100), s.find_cache("kmalloc-128"));
}

#[test]
fn bad_input_is_refused() {
    let p = provider(1, 32);
    let s = slub(&p);
    let other = slub(&p);
    // Creation arguments.
    assert_eq!(
        s.kmem_cache_create("", 8, 0, SlabFlags::NONE, None),
        Err(SlabError::BadName)
    );
    assert_eq!(
        s.kmem_cache_create("a", 0, 0, SlabFlags::NONE, None),
        Err(SlabError::ZeroSize)
    );
    assert_eq!(
        s.kmem_cache_create("a", 8, 3, SlabFlags::NONE, None),
        Err(SlabError::BadAlign(3))
    );
    assert!(matches!(
        s.kmem_cache_create("a", (4 << 20) + 1, 0, SlabFlags::NONE, None),
        Err(SlabError::TooLarge { .. })
    ));
    let a = s
        .kmem_cache_create("a", 40, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let b = s
        .kmem_cache_create("b", 40, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    assert_ne!(a, b);
    let o = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // Wrong cache, interior pointer, foreign pointer, other instance.
    // SAFETY: all refused before touching the object.
    unsafe {
        assert_eq!(
            s.kmem_cache_free(b, o),
            Err(SlabError::WrongCache(o.as_ptr() as usize))
        );
        let inner = std::ptr::NonNull::new(o.as_ptr().add(4)).unwrap();
        assert_eq!(
            s.kmem_cache_free(a, inner),
            Err(SlabError::NotObjectStart(inner.as_ptr() as usize))
        );
        let mut local = 0u64;
        let lp = (&raw mut local).cast::<u8>();
        assert_eq!(s.kfree(lp), Err(SlabError::NotOurs(lp as usize)));
        assert_eq!(
            other.kfree(o.as_ptr()),
            Err(SlabError::NotOurs(o.as_ptr() as usize))
        );
        assert_eq!(other.kmem_cache_free(a, o), Err(SlabError::ForeignCache));
        assert!(other.kmem_cache_alloc(a, Gfp::KERNEL).is_none());
        assert_eq!(s.kfree(core::ptr::null_mut()), Ok(()));
        // Destroy while busy is refused and the cache stays usable.
        assert_eq!(s.kmem_cache_destroy(a), Err(SlabError::Busy { objects: 1 }));
        s.kmem_cache_free(a, o).unwrap();
        s.kmem_cache_destroy(a).unwrap();
        // The handle is dead now.
        assert_eq!(s.kmem_cache_shrink(a), Err(SlabError::ForeignCache));
        s.kmem_cache_destroy(b).unwrap();
        // kmalloc caches are permanent.
        let k = s.kmalloc_cache(64).unwrap();
        assert!(matches!(
            s.kmem_cache_destroy(k),
            Err(SlabError::Busy { .. })
        ));
    }
    s.validate().unwrap();
}

#[test]
fn hardened_freelist_and_naive_double_free() {
    let p = provider(1, 32);
    let s = slub_with(
        &p,
        SlubSettings {
            freelist_hardened: true,
            ..SlubSettings::default()
        },
    );
    let c = s
        .kmem_cache_create("h", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let objs: Vec<_> = (0..500)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for (i, o) in objs.iter().enumerate() {
        fill(o.as_ptr(), 64, i);
    }
    for (i, o) in objs.iter().enumerate() {
        assert!(check(o.as_ptr(), 64, i));
    }
    let last = *objs.last().unwrap();
    for o in &objs {
        // SAFETY: live, freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    // The stored free pointer is encoded: the middle word of the object is not a plain
    // pointer into the slab.
    // SAFETY: the object's memory is still mapped; reading it is what an attacker would do.
    let stored = unsafe { last.as_ptr().add(32).cast::<usize>().read() };
    assert!(
        p.virt_to_head_page(stored).is_none() || stored & 7 != 0 || stored == 0 || {
            let pg = p.virt_to_head_page(stored).unwrap();
            // SAFETY: descriptor.
            !unsafe { pg.as_ref() }.is_slab()
        }
    );
    s.validate().unwrap();
    // Freeing the freelist head again is caught (naive double free).
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: first free is valid; the second is the bug being detected.
    unsafe {
        s.kmem_cache_free(c, o).unwrap();
        assert_eq!(
            s.kmem_cache_free(c, o),
            Err(SlabError::DoubleFree(o.as_ptr() as usize))
        );
    }
    s.validate().unwrap();
}

#[test]
fn new_fails_cleanly_without_memory() {
    let p = limited_provider(16, 3);
    assert_eq!(
        Slub::new(&p, SlubSettings::default()).err(),
        Some(SlabError::NoMemory)
    );
    assert_eq!(p.stats().pages_in_use, 0);
    // Somewhere in the middle of the bootstrap as well.
    for limit in [4, 6, 9, 12, 20, 30] {
        let p = limited_provider(16, limit);
        match Slub::new(&p, SlubSettings::default()) {
            Ok(s) => drop(s),
            Err(e) => assert_eq!(e, SlabError::NoMemory),
        }
        assert_eq!(p.stats().pages_in_use, 0, "limit {limit}");
    }
}
