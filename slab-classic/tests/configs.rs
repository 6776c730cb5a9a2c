//! The three kernel configurations: what each one's free does with a good pointer,
//! a pointer into the wrong cache, an interior pointer and a pointer that is not ours.

mod util;

use common::{CacheHandle, Gfp, KernelConfig, SlabAllocator, SlabError, SlabFlags};
use core::ptr::NonNull;
use slab_classic::{Slab, SlabSettings};
use util::*;

fn with(p: &common::PageProvider, config: KernelConfig) -> Slab {
    Slab::new(
        p,
        SlabSettings {
            config,
            stats: true,
            ..SlabSettings::default()
        },
    )
    .unwrap()
}

/// Frees a cache has taken (`freehit + freemiss`: one of the two per free).
fn frees(s: &Slab, c: CacheHandle) -> u64 {
    let st = s.cache_stats(c).unwrap();
    st.freehit + st.freemiss
}

#[test]
fn default_is_checked() {
    assert_eq!(SlabSettings::default().config, KernelConfig::Checked);
    let p = provider(1, 16);
    assert_eq!(slab(&p).kernel_config(), KernelConfig::Checked);
}

#[test]
fn checked_refuses_wrong_cache_interior_and_foreign_pointers() {
    let p = provider(1, 16);
    let s = with(&p, KernelConfig::Checked);
    let a = s
        .kmem_cache_create("a", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let b = s
        .kmem_cache_create("b", 128, 0, SlabFlags::NONE, None)
        .unwrap();
    let x = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    let addr = x.as_ptr() as usize;
    let mut local = 0u64;
    // SAFETY: every call below is refused before anything is freed.
    unsafe {
        assert_eq!(s.kmem_cache_free(b, x), Err(SlabError::WrongCache(addr)));
        let inner = NonNull::new(x.as_ptr().add(8)).unwrap();
        assert_eq!(
            s.kmem_cache_free(a, inner),
            Err(SlabError::NotObjectStart(addr + 8))
        );
        assert_eq!(
            s.kfree(inner.as_ptr()),
            Err(SlabError::NotObjectStart(addr + 8))
        );
        assert!(matches!(
            s.kmem_cache_free(a, NonNull::from(&mut local).cast()),
            Err(SlabError::NotOurs(_))
        ));
    }
    assert_eq!((frees(&s, a), frees(&s, b)), (0, 0), "nothing was freed");
    assert_eq!(s.free_warnings(), 0);
    // SAFETY: live, freed once into its own cache.
    unsafe { s.kmem_cache_free(a, x) }.unwrap();
    assert_eq!(frees(&s, a), 1);
    s.validate().unwrap();
}

#[test]
fn hardened_warns_and_frees_into_the_real_cache() {
    let p = provider(1, 16);
    let s = with(&p, KernelConfig::Hardened);
    assert_eq!(s.kernel_config(), KernelConfig::Hardened);
    let a = s
        .kmem_cache_create("a", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let b = s
        .kmem_cache_create("b", 128, 0, SlabFlags::NONE, None)
        .unwrap();
    let x = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // SAFETY: x is live and freed once (into its real cache).
    unsafe { s.kmem_cache_free(b, x) }.unwrap();
    assert_eq!(s.free_warnings(), 1);
    assert_eq!(
        (frees(&s, a), frees(&s, b)),
        (1, 0),
        "freed into the real cache"
    );
    let y = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // SAFETY: live, freed once.
    unsafe { s.kmem_cache_free(a, y) }.unwrap();
    assert_eq!(s.free_warnings(), 1, "the right cache: no warning");
    assert_eq!(frees(&s, a), 2);
    let mut local = 0u64;
    // SAFETY: refused before anything is freed.
    unsafe {
        assert!(matches!(
            s.kmem_cache_free(a, NonNull::from(&mut local).cast()),
            Err(SlabError::NotOurs(_))
        ));
    }
    assert_eq!(s.free_warnings(), 2, "not a slab page: warned, not freed");
    assert_eq!(frees(&s, a), 2);
    // One kernel, one instance: another instance's handle is refused, not dereferenced.
    let other = with(&p, KernelConfig::Hardened);
    let oc = other
        .kmem_cache_create("o", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let z = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // SAFETY: refused; then freed once into its own cache.
    unsafe {
        assert_eq!(s.kmem_cache_free(oc, z), Err(SlabError::ForeignCache));
        s.kmem_cache_free(a, z).unwrap();
    }
    s.validate().unwrap();
    other.validate().unwrap();
}

#[test]
fn kernel_frees_what_it_is_given_and_debug_caches_still_check() {
    let p = provider(1, 16);
    let s = with(&p, KernelConfig::Kernel);
    assert_eq!(s.kernel_config(), KernelConfig::Kernel);
    let a = s
        .kmem_cache_create("a", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let objs: Vec<_> = (0..300)
        .map(|i| {
            let o = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
            fill(o.as_ptr(), 64, i);
            o
        })
        .collect();
    let k: Vec<_> = (1..300)
        .map(|i| s.kmalloc(i, Gfp::KERNEL).unwrap())
        .collect();
    for (i, o) in objs.iter().enumerate() {
        assert!(check(o.as_ptr(), 64, i as u64));
        // SAFETY: live, freed once into its own cache.
        unsafe { s.kmem_cache_free(a, *o) }.unwrap();
    }
    for o in k {
        // SAFETY: live, freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    assert_eq!(frees(&s, a), 300);
    assert_eq!(s.free_warnings(), 0);
    s.validate().unwrap();
    // A debug cache still checks the pointer it is given (cache_free_debugcheck).
    let d = s
        .kmem_cache_create(
            "d",
            64,
            0,
            SlabFlags::CONSISTENCY_CHECKS | SlabFlags::RED_ZONE,
            None,
        )
        .unwrap();
    let x = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // SAFETY: refused, then freed once into its own cache.
    unsafe {
        assert!(s.kmem_cache_free(d, x).is_err());
        s.kmem_cache_free(a, x).unwrap();
    }
    s.validate().unwrap();
}
