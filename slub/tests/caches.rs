//! kmem_cache_open results, merging, constructors, shrink and destroy, sysfs-style attributes,
//! out of memory.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, Owner, SlabAllocator, SlabError, SlabFlags};
use slub::{Era, SlubSettings};
use std::sync::atomic::{AtomicUsize, Ordering};
use util::*;

/// (size, slab_size, offset, inuse, order, objects, min_partial, cpu_partial), hand-computed
/// from the 6.4 formulas for a 2-CPU machine (min_objects = 12).
type Row = (usize, usize, usize, usize, usize, usize, usize, usize);
const OPEN_TABLE: &[Row] = &[
    (8, 8, 0, 8, 0, 512, 5, 120),
    (24, 24, 8, 24, 0, 170, 5, 120),
    (64, 64, 32, 64, 0, 64, 5, 120),
    (96, 96, 48, 96, 0, 42, 5, 120),
    (192, 192, 96, 192, 0, 21, 5, 120),
    (256, 256, 128, 256, 0, 16, 5, 52),
    (700, 704, 344, 704, 2, 23, 5, 52),
    (1024, 1024, 512, 1024, 2, 16, 5, 24),
    (4096, 4096, 2048, 4096, 3, 8, 6, 6),
    (8192, 8192, 4096, 8192, 3, 4, 6, 6),
];

#[test]
fn kmem_cache_open_table_6_4() {
    let p = provider(1, 64);
    let s = slub(&p);
    for &(size, slab_size, offset, inuse, order, objects, min_partial, cpu_partial) in OPEN_TABLE {
        let c = s
            .kmem_cache_create(&format!("t{size}"), size, 0, SlabFlags::NO_MERGE, None)
            .unwrap();
        let a = s.cache_attrs(c).unwrap();
        assert_eq!(
            (
                a.object_size,
                a.slab_size,
                a.offset,
                a.inuse,
                a.order,
                a.objs_per_slab
            ),
            (size, slab_size, offset, inuse, order, objects),
            "size {size}"
        );
        assert_eq!(
            (a.min_partial, a.cpu_partial),
            (min_partial, cpu_partial),
            "size {size}"
        );
        assert_eq!(
            a.cpu_partial_slabs,
            (cpu_partial * 2).div_ceil(objects),
            "size {size}"
        );
        // The slabinfo row agrees.
        let row = s
            .slabinfo()
            .into_iter()
            .find(|r| r.name.as_str() == format!("t{size}"))
            .unwrap();
        assert_eq!(
            (row.objsize, row.objperslab, row.pagesperslab),
            (slab_size, objects, 1 << order)
        );
    }
    // A constructor cache: free pointer after the object.
    unsafe fn nop(_: *mut u8) {}
    let c = s
        .kmem_cache_create("ctor64", 64, 0, SlabFlags::NONE, Some(nop))
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(
        (a.slab_size, a.offset, a.inuse, a.order, a.objs_per_slab),
        (72, 64, 64, 0, 56)
    );
    assert_eq!((a.min_partial, a.cpu_partial), (5, 120));
}

#[test]
fn kmem_cache_open_2_6_32_era() {
    let p = provider(1, 64);
    let s = slub_with(&p, SlubSettings::v2_6_32());
    let c = s
        .kmem_cache_create("old64", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.offset, a.min_partial, a.cpu_partial), (0, 6, 0));
    // No per-CPU partials in this era: the sysfs write accepts only 0 (-EINVAL in the kernel).
    s.set_cpu_partial(c, 0).unwrap();
    assert!(matches!(
        s.set_cpu_partial(c, 30),
        Err(SlabError::InvalidArgument(_))
    ));
    let c = s
        .kmem_cache_create("old4k", 4096, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().min_partial, 10);
    // It still allocates and frees correctly, with no per-CPU partial slabs.
    let objs: Vec<_> = (0..3000)
        .map(|_| s.kmalloc(100, Gfp::KERNEL).unwrap())
        .collect();
    for (i, o) in objs.iter().enumerate() {
        fill(*o, 100, i);
    }
    for (i, o) in objs.iter().enumerate().rev() {
        assert!(check(*o, 100, i));
        // SAFETY: live, freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
    }
    let a = s.cache_attrs(s.kmalloc_cache(100).unwrap()).unwrap();
    assert_eq!(a.slabs_cpu_partial, 0);
    assert_eq!(s.settings().era, Era::V2_6_32);
    s.validate().unwrap();
}

#[test]
fn settings_override_orders_and_partials() {
    let p = provider(1, 64);
    let s = slub_with(
        &p,
        SlubSettings {
            slub_min_order: 1,
            slub_max_order: 2,
            min_partial: Some(2),
            cpu_partial: Some(30),
            slab_nomerge: true,
            ..SlubSettings::default()
        },
    );
    let c = s
        .kmem_cache_create("o", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(
        (a.order, a.objs_per_slab, a.min_partial, a.cpu_partial),
        (1, 128, 2, 30)
    );
    // 4096-byte objects: max order 2 → min_objects = min(12, 4) = 4 → order 2.
    let a = s.cache_attrs(s.kmalloc_cache(4096).unwrap()).unwrap();
    assert_eq!(a.order, 2);
    // sysfs writes.
    s.set_min_partial(c, 7).unwrap();
    s.set_cpu_partial(c, 0).unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(
        (a.min_partial, a.cpu_partial, a.cpu_partial_slabs),
        (7, 0, 0)
    );
    assert!(s.settings_summary().contains("slub_max_order=2"));
}

#[test]
fn merging_decisions() {
    let p = provider(1, 64);
    let s = slub(&p);
    let k64 = s.kmalloc_cache(64).unwrap();
    // 60 bytes, no special flags: merges into kmalloc-64 (size 64 − 64 < 8 after rounding).
    let a = s
        .kmem_cache_create("a", 60, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(a, k64);
    assert_eq!(s.cache_attrs(k64).unwrap().aliases, 1);
    // 56 bytes: 64 − 56 = 8 is not < 8: no merge with kmalloc-64; 56 has no kmalloc class.
    let b = s
        .kmem_cache_create("b", 56, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_ne!(b, k64);
    // Same size as b afterwards: merges with b (newest first).
    let b2 = s
        .kmem_cache_create("b2", 52, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(b2, b);
    assert_eq!(s.cache_attrs(b).unwrap().object_size, 56);
    // Constructor, never-merge flags, different MERGE_SAME flags: separate.
    unsafe fn nop(_: *mut u8) {}
    assert_ne!(
        s.kmem_cache_create("c", 60, 0, SlabFlags::NONE, Some(nop))
            .unwrap(),
        k64
    );
    assert_ne!(
        s.kmem_cache_create("d", 60, 0, SlabFlags::TYPESAFE_BY_RCU, None)
            .unwrap(),
        k64
    );
    assert_ne!(
        s.kmem_cache_create("e", 60, 0, SlabFlags::NO_MERGE, None)
            .unwrap(),
        k64
    );
    assert_ne!(
        s.kmem_cache_create("f", 60, 0, SlabFlags::RECLAIM_ACCOUNT, None)
            .unwrap(),
        k64
    );
    // Alignment: 64-aligned 100-byte objects fit kmalloc-128 (128 is a multiple of 64).
    let g = s
        .kmem_cache_create("g", 100, 64, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(g, s.kmalloc_cache(128).unwrap());
    // 256-aligned 180 bytes: size rounds to 256, which kmalloc-256 matches.
    let h = s
        .kmem_cache_create("h", 180, 256, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(h, s.kmalloc_cache(256).unwrap());
    // __kmem_cache_alias raises object_size/inuse: kmalloc-96 taking a 90-byte cache.
    let i = s
        .kmem_cache_create("i", 90, 0, SlabFlags::NONE, None)
        .unwrap();
    assert_eq!(i, s.kmalloc_cache(96).unwrap());
    // Destroying an alias drops a reference only.
    // SAFETY: nobody uses the alias.
    unsafe { s.kmem_cache_destroy(a) }.unwrap();
    assert_eq!(s.cache_attrs(k64).unwrap().aliases, 0);
    assert!(s.kmem_cache_alloc(k64, Gfp::KERNEL).is_some());
    // slab_nomerge turns it all off.
    let q = slub_with(
        &p,
        SlubSettings {
            slab_nomerge: true,
            ..SlubSettings::default()
        },
    );
    assert_ne!(
        q.kmem_cache_create("a", 64, 0, SlabFlags::NONE, None)
            .unwrap(),
        q.kmalloc_cache(64).unwrap()
    );
}

static CTOR_CALLS: AtomicUsize = AtomicUsize::new(0);

unsafe fn ctor_mark(p: *mut u8) {
    CTOR_CALLS.fetch_add(1, Ordering::Relaxed);
    // SAFETY: the object is 48 bytes.
    unsafe { p.cast::<u64>().write(0xC0FF_EE00_C0FF_EE00) };
}

#[test]
fn constructor_runs_once_per_object_and_survives_free() {
    let p = provider(1, 64);
    let s = slub(&p);
    let c = s
        .kmem_cache_create("ctor", 48, 0, SlabFlags::NONE, Some(ctor_mark))
        .unwrap();
    let per_slab = s.cache_attrs(c).unwrap().objs_per_slab;
    let objs: Vec<_> = (0..per_slab * 3)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    assert_eq!(CTOR_CALLS.load(Ordering::Relaxed), per_slab * 3);
    for o in &objs {
        assert_eq!(read_u64(*o), 0xC0FF_EE00_C0FF_EE00);
        // SAFETY: freed once, not touched (constructed state kept).
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    for _ in 0..per_slab {
        let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        assert_eq!(read_u64(o), 0xC0FF_EE00_C0FF_EE00);
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn shrink_and_destroy_return_pages() {
    let p = provider(1, 128);
    let s = slub(&p);
    let base = p.stats();
    let c = s
        .kmem_cache_create("shr", 256, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let objs: Vec<_> = (0..5000)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    // Objects on a CPU freelist count as in use until flushed, as in the kernel.
    assert!(s.cache_attrs(c).unwrap().objects >= 5000);
    s.flush_all(c).unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.objects, 5000);
    assert!(a.slabs >= 5000 / a.objs_per_slab);
    // Free every other object, then the rest: slabs drain onto the lists.
    for o in objs.iter().step_by(2).chain(objs.iter().skip(1).step_by(2)) {
        // SAFETY: each freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    s.validate().unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.objects, 0);
    assert!(
        a.slabs <= a.min_partial,
        "empty slabs beyond min_partial are freed at once: {a:?}"
    );
    s.kmem_cache_shrink(c).unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.slabs, a.partial, a.total_objects), (0, 0, 0));
    // Shrink sorts partial slabs: fullest first.
    let objs: Vec<_> = (0..64)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for (i, o) in objs.iter().enumerate() {
        if i % 16 <= i / 16 {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, *o) }.unwrap();
        }
    }
    s.kmem_cache_shrink(c).unwrap();
    s.validate().unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!(a.partial, 4);
    for (i, o) in objs.iter().enumerate() {
        if i % 16 > i / 16 {
            // SAFETY: the rest, freed once.
            unsafe { s.kmem_cache_free(c, *o) }.unwrap();
        }
    }
    // SAFETY: nobody uses c any more.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    let after = p.stats();
    assert_eq!(after.owner(Owner::Slub), base.owner(Owner::Slub));
    assert_eq!(after.owner(Owner::Metadata), base.owner(Owner::Metadata));
    s.validate().unwrap();
}

#[test]
fn out_of_memory_returns_none_and_frees_everything() {
    let p = limited_provider(64, 120);
    let s = slub(&p);
    let c = s
        .kmem_cache_create("oom", 1000, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let mut objs = Vec::new();
    while let Some(o) = s.kmem_cache_alloc(c, Gfp::KERNEL) {
        fill(o, 1000, objs.len());
        objs.push(o);
        assert!(objs.len() < 1_000_000);
    }
    assert!(objs.len() > 100, "got {}", objs.len());
    assert!(p.stats().pages_in_use <= 120);
    // Other paths report out of memory too.
    assert!(s.kmalloc(1 << 20, Gfp::KERNEL).is_none());
    assert!(s.kmalloc(2000, Gfp::KERNEL).is_none() || p.stats().pages_in_use <= 120);
    assert!(matches!(
        s.kmem_cache_create("x", 64, 0, SlabFlags::NO_MERGE, None),
        Err(SlabError::NoMemory) | Ok(_)
    ));
    for (i, o) in objs.iter().enumerate() {
        assert!(check(*o, 1000, i));
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    s.validate().unwrap();
    // Memory is usable again.
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    // SAFETY: unused now.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();
    drop(s);
    assert_eq!(p.stats().pages_in_use, 0);
}

#[test]
fn zeroed_allocations() {
    let p = provider(1, 32);
    let s = slub(&p);
    for size in [8, 100, 3000] {
        let o = s.kmalloc(size, Gfp::KERNEL).unwrap();
        fill(o, size, 1);
        // SAFETY: freed once.
        unsafe { s.kfree(o.as_ptr()) }.unwrap();
        let z = s.kmalloc(size, Gfp::ZERO).unwrap();
        // SAFETY: size bytes live.
        assert!((0..size).all(|i| unsafe { z.as_ptr().add(i).read() } == 0));
        // SAFETY: freed once.
        unsafe { s.kfree(z.as_ptr()) }.unwrap();
    }
}

/// Issue target: 1 M live 64-byte objects cost at most 1.02 × their bytes in provider pages.
#[test]
fn memory_overhead_one_million_64_byte_objects() {
    let p = provider(1, 256);
    let s = slub(&p);
    let c = s
        .kmem_cache_create("m64", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let base = p.stats().pages_in_use;
    let n = 1_000_000;
    let objs: Vec<_> = (0..n)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    let pages = p.stats().pages_in_use - base;
    let ratio = (pages * 4096) as f64 / (n * 64) as f64;
    eprintln!("1M x 64 B: {pages} pages, provider bytes / live bytes = {ratio:.4}");
    assert!(ratio <= 1.02, "ratio {ratio}");
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.kmem_cache_shrink(c).unwrap();
    assert_eq!(p.stats().pages_in_use, base);
}

/// Debug flags: the layout grows as `calculate_sizes` says, the
/// cache never uses per-CPU partials and every operation takes the slow path.
#[test]
fn debug_flags_force_slow_paths_and_layout() {
    let p = provider(1, 64);
    let s = slub_with(&p, stats_on());
    let flags = SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER;
    let c = s.kmem_cache_create("dbg", 64, 0, flags, None).unwrap();
    let a = s.cache_attrs(c).unwrap();
    // 64 + 8 (right red zone) = inuse 72; free pointer after: 80; 2 tracks: 144; red zone
    // word: 152; left pad 8: 160.
    assert_eq!(
        (a.inuse, a.offset, a.slab_size, a.cpu_partial),
        (72, 72, 160, 0)
    );
    let objs: Vec<_> = (0..200)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    for (i, o) in objs.iter().enumerate() {
        fill(*o, 64, i);
        // Objects start after the left red zone.
        let base = p
            .page_address(p.virt_to_head_page(o.as_ptr() as usize).unwrap())
            .as_ptr() as usize;
        assert_eq!((o.as_ptr() as usize - base) % 160, 8);
    }
    for (i, o) in objs.iter().enumerate() {
        assert!(check(*o, 64, i));
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, *o) }.unwrap();
    }
    assert_eq!(s.cache_stat(c, slub::StatItem::ALLOC_FASTPATH).unwrap(), 0);
    assert_eq!(s.cache_stat(c, slub::StatItem::FREE_FASTPATH).unwrap(), 0);
    assert_eq!(
        s.cache_stat(c, slub::StatItem::ALLOC_SLOWPATH).unwrap(),
        200
    );
    // Never merged.
    assert_ne!(s.kmem_cache_create("dbg2", 64, 0, flags, None).unwrap(), c);
    s.validate().unwrap();
}

/// Empty-slab policy by era: 6.4 keeps `min_partial` empty slabs per node; 2.6.32's
/// `__slab_free` discards a slab as soon as it is empty (only deactivation keeps some).
#[test]
fn empty_slab_policy_by_era() {
    for (settings, expect_max, expect_min) in [
        (SlubSettings::default(), 5, 5),
        (SlubSettings::v2_6_32(), 1, 0),
    ] {
        let p = provider(1, 64);
        let s = slub_with(&p, settings);
        let c = s
            .kmem_cache_create("pol", 256, 0, SlabFlags::NO_MERGE, None)
            .unwrap();
        let objs: Vec<_> = (0..16 * 12)
            .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
            .collect();
        for o in &objs {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, *o) }.unwrap();
        }
        s.flush_all(c).unwrap();
        let a = s.cache_attrs(c).unwrap();
        assert!(
            (expect_min..=expect_max).contains(&a.slabs),
            "{:?}: {} slabs left",
            settings.era,
            a.slabs
        );
        assert_eq!(a.objects, 0);
        s.validate().unwrap();
    }
}

#[test]
fn bulk_alloc_and_free() {
    let p = provider(1, 64);
    let s = slub_with(&p, stats_on());
    let c = s
        .kmem_cache_create("bulk", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let mut objs = vec![core::ptr::null_mut::<u8>(); 1000];
    assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut objs), 1000);
    let mut sorted: Vec<usize> = objs.iter().map(|&o| o as usize).collect();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 1000, "all distinct");
    for (i, &o) in objs.iter().enumerate() {
        fill(o, 64, i);
    }
    for (i, &o) in objs.iter().enumerate() {
        assert!(check(o, 64, i));
    }
    s.flush_all(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().objects, 1000);
    // Interleave objects of different slabs, then free in bulk.
    let mut mixed: Vec<*mut u8> = Vec::new();
    for k in 0..500 {
        mixed.push(objs[k]);
        mixed.push(objs[999 - k]);
    }
    // A wrong object refuses the whole batch.
    let other = s.kmalloc(64, Gfp::KERNEL).unwrap();
    mixed.push(other.as_ptr());
    // SAFETY: refused before anything is freed.
    let r = unsafe { s.kmem_cache_free_bulk(c, &mut mixed) };
    assert_eq!(r, Err(SlabError::WrongCache(other.as_ptr() as usize)));
    s.flush_all(c).unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().objects, 1000);
    mixed.retain(|&o| o != other.as_ptr());
    // SAFETY: each object once, all of c.
    unsafe { s.kmem_cache_free_bulk(c, &mut mixed) }.unwrap();
    // SAFETY: freed once.
    unsafe { s.kfree(other.as_ptr()) }.unwrap();
    s.validate().unwrap();
    assert_eq!(s.cache_attrs(c).unwrap().objects, 0);
    // Chains (at most 3 misses of look-ahead, as in the kernel): fewer free operations than
    // objects even for this interleaving of two slabs.
    let frees = s.cache_stat(c, slub::StatItem::FREE_FASTPATH).unwrap()
        + s.cache_stat(c, slub::StatItem::FREE_SLOWPATH).unwrap();
    assert!(frees <= 500, "{frees} free operations for 1000 objects");
    // Zeroed bulk.
    let mut z = vec![core::ptr::null_mut::<u8>(); 100];
    assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::ZERO, &mut z), 100);
    assert!(z.iter().all(|&o| read_u64(o) == 0));
    // SAFETY: each once.
    unsafe { s.kmem_cache_free_bulk(c, &mut z) }.unwrap();
}

#[test]
fn bulk_alloc_out_of_memory_keeps_nothing() {
    let p = limited_provider(32, 60);
    let s = slub(&p);
    let c = s
        .kmem_cache_create("bulkoom", 2048, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let before = p.stats().pages_in_use;
    let mut objs = vec![core::ptr::null_mut::<u8>(); 10_000];
    assert_eq!(s.kmem_cache_alloc_bulk(c, Gfp::KERNEL, &mut objs), 0);
    s.kmem_cache_shrink(c).unwrap();
    assert_eq!(p.stats().pages_in_use, before);
    s.validate().unwrap();
}

/// The largest cache: one 4 MiB object per order-10 slab (calculate_order's MAX_ORDER
/// fallback); and the ORDER_FALLBACK path when the preferred order cannot be had.
#[test]
fn largest_cache_and_order_fallback() {
    let p = provider(1, 32);
    let s = slub_with(&p, stats_on());
    let c = s
        .kmem_cache_create("huge", 4 << 20, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.order, a.objs_per_slab), (10, 1));
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    fill(o, 4 << 20, 3);
    assert!(check(o, 4 << 20, 3));
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    // SAFETY: unused now.
    unsafe { s.kmem_cache_destroy(c) }.unwrap();

    // 3000-byte objects prefer order 3 (10 objects); with only order-0 blocks left the slab
    // falls back to `min` (order 0, one object).
    let p = limited_provider(32, 200);
    let s = slub_with(&p, stats_on());
    let c = s
        .kmem_cache_create("fb", 3000, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let a = s.cache_attrs(c).unwrap();
    assert_eq!((a.order, a.objs_per_slab, a.min_objects), (3, 10, 1));
    // Leave fewer than 8 pages free in the provider.
    let mut hog = Vec::new();
    while p.stats().pages_in_use < 200 - 3 {
        hog.push(p.alloc_pages(0, 0, common::Owner::Other).unwrap());
    }
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    assert_eq!(s.cache_stat(c, slub::StatItem::ORDER_FALLBACK).unwrap(), 1);
    let pg = p.virt_to_head_page(o.as_ptr() as usize).unwrap();
    // SAFETY: a descriptor of the provider.
    assert_eq!(unsafe { pg.as_ref() }.order, 0);
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    s.validate().unwrap();
    for h in hog {
        // SAFETY: our own order-0 pages.
        unsafe { p.free_pages(h, 0) }.unwrap();
    }
}
