//! Cache creation, merging and destruction (mm/slab_common.c 6.4: `kmem_cache_create_usercopy`,
//! `find_mergeable`, `slab_unmergeable`, `kmem_cache_destroy`; mm/slub.c `__kmem_cache_alias`,
//! `__kmem_cache_shutdown`).

use crate::cache::{calculate_alignment, kmem_cache_open_args, KmemCache, WORD};
use crate::fastpath::slab_alloc_node;
use crate::kmalloc::kmem_cache_free_internal;
use crate::node::free_partial;
use crate::slowpath::flush_all;
use crate::{SlabCaches, Slub, NUMA_NO_NODE};
use common::{CacheName, Ctor, Gfp, SlabError, SlabFlags};
use core::sync::atomic::Ordering;

/// `SLAB_NEVER_MERGE`: flags that keep a cache apart.
pub(crate) const SLAB_NEVER_MERGE: SlabFlags = SlabFlags(
    SlabFlags::RED_ZONE.0
        | SlabFlags::POISON.0
        | SlabFlags::STORE_USER.0
        | SlabFlags::TRACE.0
        | SlabFlags::TYPESAFE_BY_RCU.0
        | SlabFlags::NOLEAKTRACE.0
        | SlabFlags::NO_MERGE.0,
);

/// `SLAB_MERGE_SAME`: flags that must agree for two caches to merge.
pub(crate) const SLAB_MERGE_SAME: SlabFlags =
    SlabFlags(SlabFlags::RECLAIM_ACCOUNT.0 | SlabFlags::CACHE_DMA.0 | SlabFlags::ACCOUNT.0);

/// `slab_unmergeable(s)`.
fn slab_unmergeable(sl: &Slub, s: &KmemCache) -> bool {
    // 6.18: caches with sheaves never merge (7.0 lifted that).
    (sl.settings.era == crate::Era::V6_18 && crate::sheaf::sheaf_capacity(s) != 0)
        || sl.settings.slab_nomerge
        || s.flags.intersects(SLAB_NEVER_MERGE)
        || s.ctor.is_some()
        || s.refcount.load(Ordering::Relaxed) < 0
}

/// `find_mergeable`: the newest cache a new `(size, align, flags, ctor)` cache can share.
fn find_mergeable(
    sl: &Slub,
    list: &SlabCaches,
    size: usize,
    align: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
    sheaf_capacity: usize,
) -> *mut KmemCache {
    if sl.settings.slab_nomerge || ctor.is_some() {
        return core::ptr::null_mut();
    }
    // A 6.18 cache asking for sheaves is created apart.
    if sheaf_capacity != 0 && sl.settings.era == crate::Era::V6_18 {
        return core::ptr::null_mut();
    }
    let size = size.next_multiple_of(WORD);
    let align = calculate_alignment(flags, align, size);
    let size = size.next_multiple_of(align);
    if flags.intersects(SLAB_NEVER_MERGE) {
        return core::ptr::null_mut();
    }
    let mut p = list.head;
    while !p.is_null() {
        // SAFETY: caches on the list are live while slab_mutex (list) is held.
        let s = unsafe { &*p };
        let next = s.next.load(Ordering::Relaxed);
        let ok = !slab_unmergeable(sl, s)
            && size <= s.size
            && (flags.0 & SLAB_MERGE_SAME.0) == (s.flags.0 & SLAB_MERGE_SAME.0)
            && s.size & !(align - 1) == s.size
            && s.size - size < WORD
            // 7.0 merges caches with sheaves; not into one with fewer slots than asked
            // (a conservative choice here, see sheaf.rs).
            && sheaf_capacity <= crate::sheaf::sheaf_capacity(s);
        if ok {
            return p;
        }
        p = next;
    }
    core::ptr::null_mut()
}

/// `__kmem_cache_alias`: merge into an existing cache, raising its `object_size` and `inuse`.
fn __kmem_cache_alias(
    sl: &Slub,
    list: &SlabCaches,
    size: usize,
    align: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
    sheaf_capacity: usize,
) -> *mut KmemCache {
    let p = find_mergeable(sl, list, size, align, flags, ctor, sheaf_capacity);
    if !p.is_null() {
        // SAFETY: found on the list under slab_mutex.
        let s = unsafe { &*p };
        s.refcount.fetch_add(1, Ordering::Relaxed);
        s.object_size.fetch_max(size, Ordering::Relaxed);
        s.inuse
            .fetch_max(size.next_multiple_of(WORD), Ordering::Relaxed);
    }
    p
}

/// `list_add(&s->list, &slab_caches)` (the list is newest first).
pub(crate) fn list_add(list: &mut SlabCaches, s: *mut KmemCache) {
    // SAFETY: s is a live cache being published under slab_mutex.
    unsafe { (*s).next.store(list.head, Ordering::Relaxed) };
    list.head = s;
}

/// Unlinks `s` from the list.
fn list_del(list: &mut SlabCaches, s: *mut KmemCache) {
    let mut pp: *mut *mut KmemCache = &raw mut list.head;
    // SAFETY: walking live caches under slab_mutex; pp points at the head or a `next` field.
    unsafe {
        while !(*pp).is_null() {
            if *pp == s {
                *pp = (*s).next.load(Ordering::Relaxed);
                return;
            }
            pp = (*(*pp)).next.as_ptr();
        }
    }
}

/// `kmem_cache_create_usercopy` → alias or `create_cache`.
pub(crate) fn kmem_cache_create_usercopy(
    sl: &Slub,
    name: CacheName,
    size: usize,
    align: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
) -> Result<*mut KmemCache, SlabError> {
    kmem_cache_create_args(sl, name, size, align, flags, ctor, 0)
}

/// `__kmem_cache_create_args` with `kmem_cache_args.sheaf_capacity`.
pub(crate) fn kmem_cache_create_args(
    sl: &Slub,
    name: CacheName,
    size: usize,
    align: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
    sheaf_capacity: usize,
) -> Result<*mut KmemCache, SlabError> {
    // Only the kernel's creation flags; SLAB_KMALLOC is internal (kept only together with
    // debug flags, so kunit's orig-size cache can be built).
    let flags = if flags.intersects(crate::debug::SLAB_DEBUG_FLAGS) {
        flags
    } else {
        flags.without(SlabFlags::KMALLOC)
    };
    // kmem_cache_flags: slub_debug= decides before merging (debug caches never merge).
    let flags = crate::debug::kmem_cache_flags(sl, flags, name.as_str());
    let mut list = sl.slab_mutex.lock();
    let s = __kmem_cache_alias(sl, &list, size, align, flags, ctor, sheaf_capacity);
    if !s.is_null() {
        return Ok(s);
    }
    let s = create_cache(
        sl,
        name,
        size,
        calculate_alignment(flags, align, size),
        flags,
        ctor,
        sheaf_capacity,
    )?;
    list_add(&mut list, s);
    Ok(s)
}

/// `create_cache`: a `kmem_cache` object from the `kmem_cache` cache, opened.
pub(crate) fn create_cache(
    sl: &Slub,
    name: CacheName,
    size: usize,
    align: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
    sheaf_capacity: usize,
) -> Result<*mut KmemCache, SlabError> {
    // SAFETY: the kmem_cache cache exists once slab_state >= PARTIAL.
    let kc = unsafe { &*sl.kmem_cache };
    let obj = slab_alloc_node(sl, kc, Gfp::ZERO, NUMA_NO_NODE).ok_or(SlabError::NoMemory)?;
    let s = obj.as_ptr().cast::<KmemCache>();
    // SAFETY: a fresh object of the kmem_cache cache, sized and aligned for a KmemCache.
    if let Err(e) =
        // SAFETY: a fresh object of the kmem_cache cache, sized and aligned for a KmemCache.
        unsafe {
            kmem_cache_open_args(sl, s, name, size, align, flags, ctor, sheaf_capacity)
        }
    {
        let r = kmem_cache_free_internal(sl, kc, s as usize);
        debug_assert!(r.is_ok());
        return Err(e);
    }
    Ok(s)
}

/// Objects still in use in a flushed cache: `total_objects` minus free objects on partials.
fn objects_in_use(s: &KmemCache) -> usize {
    (0..s.nr_nodes)
        .map(|node| {
            let n = s.get_node(node);
            n.total_objects() - n.count_partial_free()
        })
        .sum()
}

/// Releases a cache with no objects in use: its slabs, nodes, per-CPU memory and the
/// `kmem_cache` object (`__kmem_cache_shutdown` + `kmem_cache_release`). With `force`,
/// partial slabs holding objects are freed too (instance teardown).
///
/// # Safety
/// `s` is off the cache list and unused by anyone else.
pub(crate) unsafe fn release_cache(sl: &Slub, s: *mut KmemCache, force: bool) {
    // SAFETY: per the caller.
    let sr = unsafe { &*s };
    // Every sheaf and barn back first (their objects to the slabs).
    crate::sheaf::free_cache_sheaves(sl, sr);
    flush_all(sr);
    for node in 0..sr.nr_nodes {
        free_partial(sr, sr.get_node(node), force);
    }
    crate::node::free_kmem_cache_nodes(sl, sr);
    sr.magic.store(0, Ordering::Relaxed);
    // SAFETY: drops the per-CPU and stat memory and the provider handle; the object itself is
    // then given back to the kmem_cache cache.
    unsafe { core::ptr::drop_in_place(s) };
    // SAFETY: the kmem_cache cache outlives every other cache.
    let kc = unsafe { &*sl.kmem_cache };
    let r = kmem_cache_free_internal(sl, kc, s as usize);
    debug_assert!(r.is_ok());
}

/// `kmem_cache_destroy`: drops one reference; the last one shuts the cache down, refused with
/// `Busy` while objects are in use (the cache then stays usable). kmalloc and boot caches are
/// permanent: destroying their last reference is refused with `Busy`.
///
/// # Safety
/// No thread uses the cache during or after a successful final destroy.
pub(crate) unsafe fn kmem_cache_destroy(sl: &Slub, s: *mut KmemCache) -> Result<(), SlabError> {
    let mut list = sl.slab_mutex.lock();
    // SAFETY: s was checked live by cache_of; slab_mutex serialises destroy.
    let sr = unsafe { &*s };
    let refs = sr.refcount.load(Ordering::Relaxed);
    if refs > 1 {
        sr.refcount.fetch_sub(1, Ordering::Relaxed);
        return Ok(());
    }
    // __kmem_cache_shutdown flushes the sheaves and shrinks the barns first.
    crate::sheaf::flush_all_sheaves(sl, sr);
    flush_all(sr);
    let busy = objects_in_use(sr);
    if busy != 0 {
        // list_slab_objects + the destroy warning: counted as slub_debug reports.
        crate::debug::report_leak(sl, sr, busy);
    }
    if busy != 0 || refs < 1 || sr.flags.contains(SlabFlags::KMALLOC) {
        return Err(SlabError::Busy { objects: busy });
    }
    sr.refcount.store(0, Ordering::Relaxed);
    list_del(&mut list, s);
    drop(list);
    // SAFETY: off the list, no objects, the caller promises no further use.
    unsafe { release_cache(sl, s, false) };
    Ok(())
}
