//! The three kernel configurations: what each one's free does with a good pointer,
//! a pointer into the wrong cache, an interior pointer and a pointer that is not ours.

mod util;

use common::{Gfp, KernelConfig, SlabAllocator, SlabError, SlabFlags};
use core::ptr::NonNull;
use slub::{SlubDebug, SlubSettings};
use util::*;

fn with(config: KernelConfig) -> SlubSettings {
    SlubSettings {
        config,
        stats: true,
        random_seed: 0x1234_5678,
        slub_debug: Some(SlubDebug::OFF),
        ..SlubSettings::default()
    }
}

/// `FREE_FASTPATH + FREE_SLOWPATH` of a cache.
fn frees(s: &slub::Slub, c: common::CacheHandle) -> u64 {
    s.cache_stat(c, slub::StatItem::FREE_FASTPATH).unwrap()
        + s.cache_stat(c, slub::StatItem::FREE_SLOWPATH).unwrap()
}

#[test]
fn boot_options_name_the_configurations() {
    for c in KernelConfig::ALL {
        let s = SlubSettings::from_boot_options(&format!("config={}", c.name())).unwrap();
        assert_eq!(s.config, c);
    }
    assert_eq!(SlubSettings::default().config, KernelConfig::Checked);
    assert!(SlubSettings::from_boot_options("config=paranoid").is_err());
    // A kernel without CONFIG_SLAB_FREELIST_HARDENED cannot have the codec.
    assert!(SlubSettings::from_boot_options("config=kernel hardened").is_err());
}

#[test]
fn checked_refuses_wrong_cache_interior_and_foreign_pointers() {
    let p = provider(1, 32);
    let s = slub_with(&p, with(KernelConfig::Checked));
    assert_eq!(s.kernel_config(), KernelConfig::Checked);
    let a = s
        .kmem_cache_create("a", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let b = s
        .kmem_cache_create("b", 128, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let x = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    let addr = x.as_ptr() as usize;
    let mut local = 0u64;
    let foreign = NonNull::from(&mut local).cast::<u8>();
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
            s.kmem_cache_free(a, foreign),
            Err(SlabError::NotOurs(_))
        ));
    }
    assert_eq!((frees(&s, a), frees(&s, b)), (0, 0), "nothing was freed");
    assert_eq!(s.free_warnings(), 0);
    // SAFETY: the object is live and freed once, into its own cache.
    unsafe { s.kmem_cache_free(a, x) }.unwrap();
    assert_eq!(frees(&s, a), 1);
    s.validate().unwrap();
}

#[test]
fn hardened_warns_and_frees_into_the_real_cache() {
    let p = provider(1, 32);
    let s = slub_with(&p, with(KernelConfig::Hardened));
    assert_eq!(s.kernel_config(), KernelConfig::Hardened);
    assert!(
        s.settings().freelist_hardened,
        "hardened brings the free-pointer codec"
    );
    let a = s
        .kmem_cache_create("a", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let b = s
        .kmem_cache_create("b", 128, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let x = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // The wrong cache named: a warning, and the object goes back to `a`.
    // SAFETY: x is live and freed once (into its real cache).
    unsafe { s.kmem_cache_free(b, x) }.unwrap();
    assert_eq!(s.free_warnings(), 1);
    assert_eq!(
        (frees(&s, a), frees(&s, b)),
        (1, 0),
        "freed into the real cache"
    );
    // The right cache: no warning.
    let y = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // SAFETY: live, freed once.
    unsafe { s.kmem_cache_free(a, y) }.unwrap();
    assert_eq!(s.free_warnings(), 1);
    assert_eq!(frees(&s, a), 2);
    // Not a slab page (a large kmalloc, and memory that is not ours): warned, not freed.
    let big = s.kmalloc(64 * 1024, Gfp::KERNEL).unwrap();
    let mut local = 0u64;
    // SAFETY: both are refused before anything is freed.
    unsafe {
        assert!(matches!(
            s.kmem_cache_free(a, big),
            Err(SlabError::NotOurs(_))
        ));
        assert!(matches!(
            s.kmem_cache_free(a, NonNull::from(&mut local).cast()),
            Err(SlabError::NotOurs(_))
        ));
    }
    assert_eq!(s.free_warnings(), 3);
    assert_eq!(frees(&s, a), 2);
    // SAFETY: live large kmalloc, freed once.
    unsafe { s.kfree(big.as_ptr()) }.unwrap();
    // A handle of another instance is still refused (one kernel, one instance).
    let other = slub_with(&p, with(KernelConfig::Hardened));
    let oc = other
        .kmem_cache_create("o", 64, 0, SlabFlags::NO_MERGE, None)
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

/// Frees 9 of 10 objects of one slab (the 10th keeps the slab alive) and returns the words at
/// the free-pointer offset of the freed ones, with the slab's address range.
fn stored_free_pointers(config: KernelConfig) -> (Vec<usize>, usize, usize) {
    let p = provider(1, 32);
    let s = slub_with(&p, with(config));
    let c = s
        .kmem_cache_create("fp", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let (_, offset) = s.cache_debug_layout(c).unwrap();
    let objs: Vec<_> = (0..10)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    let page = p.virt_to_head_page(objs[0].as_ptr() as usize).unwrap();
    let base = p.page_address(page).as_ptr() as usize;
    // SAFETY: descriptor of the provider's mem_map.
    let len = common::PAGE_SIZE << unsafe { page.as_ref() }.order;
    for o in &objs[..9] {
        // SAFETY: live, freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    let words = objs[..9]
        .iter()
        // SAFETY: the slab is still allocated (objs[9] is live), so its memory is ours to read.
        .map(|o| unsafe { o.as_ptr().add(offset).cast::<usize>().read() })
        .collect();
    // SAFETY: live, freed once.
    unsafe { s.kmem_cache_free(c, objs[9]) }.unwrap();
    s.validate().unwrap();
    (words, base, base + len)
}

#[test]
fn kernel_free_pointers_are_plain_and_hardened_ones_encoded() {
    let plain = |w: usize, lo: usize, hi: usize| w == 0 || (lo..hi).contains(&w);
    let (words, lo, hi) = stored_free_pointers(KernelConfig::Kernel);
    assert!(
        words.iter().all(|&w| plain(w, lo, hi)),
        "kernel: every stored free pointer is 0 or an address in the slab: {words:x?}"
    );
    let (words, lo, hi) = stored_free_pointers(KernelConfig::Hardened);
    assert!(
        words.iter().any(|&w| !plain(w, lo, hi)),
        "hardened: stored free pointers are encoded: {words:x?}"
    );
}

#[test]
fn kernel_frees_what_it_is_given_and_debug_caches_still_check() {
    let p = provider(1, 32);
    let s = slub_with(&p, with(KernelConfig::Kernel));
    assert_eq!(s.kernel_config(), KernelConfig::Kernel);
    let a = s
        .kmem_cache_create("a", 64, 0, SlabFlags::NO_MERGE, None)
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
        assert!(check(o.as_ptr(), 64, i));
        // SAFETY: live, freed once, into its own cache.
        unsafe { s.kmem_cache_free(a, *o) }.unwrap();
    }
    for o in k {
        // SAFETY: live, freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    assert_eq!(frees(&s, a), 300);
    assert_eq!(s.free_warnings(), 0);
    s.validate().unwrap();
    // A debug cache (consistency checks) refuses the wrong cache even here, as the kernel's
    // cache_from_obj does for SLAB_CONSISTENCY_CHECKS.
    let d = s
        .kmem_cache_create(
            "d",
            64,
            0,
            SlabFlags::NO_MERGE | SlabFlags::CONSISTENCY_CHECKS,
            None,
        )
        .unwrap();
    let x = s.kmem_cache_alloc(a, Gfp::KERNEL).unwrap();
    // SAFETY: refused, then freed once into its own cache.
    unsafe {
        assert_eq!(
            s.kmem_cache_free(d, x),
            Err(SlabError::WrongCache(x.as_ptr() as usize))
        );
        s.kmem_cache_free(a, x).unwrap();
    }
    s.validate().unwrap();
}
