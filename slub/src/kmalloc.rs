//! kmalloc (mm/slab_common.c + mm/slub.c 6.4): the `kmalloc-8` … `kmalloc-8k` caches (with 96
//! and 192), found through `size_index[]`/`fls` (`kmalloc_slab`), `kmalloc_large` for larger
//! requests straight from the page provider, `kfree` by the page flags, `ksize`.

use crate::cache::KmemCache;
use crate::fastpath::{slab_alloc_node, slab_free};
use crate::{Slub, KMALLOC_MAX_SIZE, NUMA_NO_NODE};
use common::provider::get_order;
use common::sizes::slub_index::{find_position, KMALLOC_MAX_CACHE_SIZE};
use common::{CacheHandle, Gfp, KernelConfig, Owner, Page, SlabError, PAGE_SIZE};
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// `kmalloc_slab(size)`: the kmalloc cache for `size` (1..=8192).
#[inline(always)]
pub(crate) fn kmalloc_slab(sl: &Slub, size: usize) -> Option<&KmemCache> {
    let pos = find_position(size)?;
    // SAFETY: kmalloc caches are created by kmem_cache_init and live as long as the instance.
    Some(unsafe { &*sl.kmalloc_caches[pos] })
}

/// `__kmalloc_node` / `kmalloc_node`: inlined into the caller like the cache API's fast path
/// (the large-size path and the slow paths stay out of line).
#[inline(always)]
pub(crate) fn kmalloc_node(sl: &Slub, size: usize, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
    if size > KMALLOC_MAX_CACHE_SIZE {
        return kmalloc_large_node(sl, size, gfp, node);
    }
    let s = kmalloc_slab(sl, size)?;
    let p = slab_alloc_node(sl, s, gfp, node)?;
    if s.debug {
        crate::debug::kmalloc_debug_orig_size(s, p.as_ptr() as usize, size);
    }
    Some(p)
}

/// `kmalloc_large_node`: whole pages for sizes above `KMALLOC_MAX_CACHE_SIZE`.
#[cold]
#[inline(never)]
pub(crate) fn kmalloc_large_node(
    sl: &Slub,
    size: usize,
    gfp: Gfp,
    node: usize,
) -> Option<NonNull<u8>> {
    if size > KMALLOC_MAX_SIZE {
        return None;
    }
    let order = get_order(size);
    let nid = if node == NUMA_NO_NODE {
        crate::slowpath::numa_mem_id_of(&sl.provider, sl.nr_nodes)
    } else {
        node
    };
    let gfp = crate::hooks::large_alloc_gfp(sl, gfp);
    let page = sl
        .provider
        .alloc_pages_gfp(nid, order, Owner::LargeKmalloc, gfp)?;
    Some(sl.provider.page_address(page))
}

/// `virt_to_slab` with the checks `kfree` can make: the head page must be a slab of a cache of
/// this instance, and `addr` an object start. Returns the slab and its cache.
#[inline(always)]
pub(crate) fn virt_to_slab(
    sl: &Slub,
    addr: usize,
) -> Result<(NonNull<Page>, &KmemCache), SlabError> {
    let page = sl
        .provider
        .virt_to_head_page(addr)
        .ok_or(SlabError::NotOurs(addr))?;
    slab_of_page(sl, page, addr)
}

/// The second half of [`virt_to_slab`], for a caller that already has the head page of
/// `addr` (`kfree`).
#[inline(always)]
fn slab_of_page(
    sl: &Slub,
    page: NonNull<Page>,
    addr: usize,
) -> Result<(NonNull<Page>, &KmemCache), SlabError> {
    // SAFETY: a descriptor of the provider's mem_map.
    let p = unsafe { page.as_ref() };
    if !p.is_slab() || p.owner() != Some(Owner::Slub) {
        return Err(SlabError::NotOurs(addr));
    }
    let cache = p.cache();
    if cache == 0 {
        return Err(SlabError::NotOurs(addr));
    }
    // SAFETY: slab_cache of a live slab names its kmem_cache (possibly of another SLUB
    // instance on the same provider, which the magic check tells apart).
    let s = unsafe { &*(cache as *const KmemCache) };
    if !s.is_live(sl.instance) {
        return Err(SlabError::NotOurs(addr));
    }
    let start = sl.provider.page_address(page).as_ptr() as usize + s.red_left_pad;
    let objects = crate::node::counters_of(page.as_ptr()).objects as usize;
    let off = addr.wrapping_sub(start);
    if off >= objects * s.size || !s.size_divides.divides(off as u32) {
        return Err(SlabError::NotObjectStart(addr));
    }
    Ok((page, s))
}

/// `cache_from_obj(s, x)` for `kmem_cache_free`, where the caller names the cache: the slab
/// of `addr` if `addr` is an object start in a slab of `s`, else the error `virt_to_slab`
/// gives (or [`SlabError::WrongCache`] for an object of another cache).
///
/// The kernel checks this only with hardening or debugging on; here it is always on, so it
/// is written to cost no latency: the free goes on with `s` from the handle, and every test
/// below only compares loaded values against it (a predicted branch), none of them feeds
/// the free. `virt_to_slab` instead has to load the cache from the page first.
#[inline(always)]
pub(crate) fn cache_from_obj(
    sl: &Slub,
    s: &KmemCache,
    addr: usize,
) -> Result<NonNull<Page>, SlabError> {
    let Some(page) = sl.provider.virt_to_head_page(addr) else {
        return Err(SlabError::NotOurs(addr));
    };
    // SAFETY: a descriptor of the provider's mem_map.
    let p = unsafe { page.as_ref() };
    if p.cache() != core::ptr::from_ref(s) as usize
        || !p.is_slab()
        || p.owner() != Some(Owner::Slub)
    {
        return Err(cache_from_obj_error(sl, addr));
    }
    let start = sl.provider.page_address(page).as_ptr() as usize + s.red_left_pad;
    let off = addr.wrapping_sub(start);
    let objects = crate::node::counters_of(page.as_ptr()).objects as usize;
    if off >= objects * s.size || !s.size_divides.divides(off as u32) {
        return Err(SlabError::NotObjectStart(addr));
    }
    Ok(page)
}

/// Why [`cache_from_obj`] refused `addr` (cold).
#[cold]
#[inline(never)]
fn cache_from_obj_error(sl: &Slub, addr: usize) -> SlabError {
    match virt_to_slab(sl, addr) {
        Ok(_) => SlabError::WrongCache(addr),
        Err(e) => e,
    }
}

/// `kfree`.
///
/// # Safety
/// `ptr` is null or a live allocation of `sl` not used after the call.
#[inline(always)]
pub(crate) unsafe fn kfree(sl: &Slub, ptr: *mut u8) -> Result<(), SlabError> {
    if ptr.is_null() {
        return Ok(());
    }
    let addr = ptr as usize;
    let page = sl
        .provider
        .virt_to_head_page(addr)
        .ok_or(SlabError::NotOurs(addr))?;
    // SAFETY: a descriptor of the provider's mem_map.
    let p = unsafe { page.as_ref() };
    if !p.is_slab() {
        // SAFETY: forwarded contract.
        return unsafe { free_large_kmalloc(sl, page, addr) };
    }
    let (slab, s) = if sl.config == KernelConfig::Checked {
        slab_of_page(sl, page, addr)?
    } else {
        // The kernel's kfree in every configuration: slab->slab_cache, trusted.
        // SAFETY: in the kernel and hardened configurations the caller promises `ptr` is a
        // live object of this instance, so its slab names a live cache of ours.
        (page, unsafe { &*(p.cache() as *const KmemCache) })
    };
    // SAFETY: checked object start of a slab of s (or the caller's promise); given up.
    unsafe { slab_free(sl, s, slab, addr) }
}

/// `kmem_cache_free` in the `kernel` configuration: `s` from the handle and the slab from
/// `virt_to_slab(x)`, both trusted (a debug cache still takes the checked path, as the
/// kernel's `cache_from_obj` runs for `SLAB_CONSISTENCY_CHECKS`).
///
/// # Safety
/// `cache` is a live cache of `sl` and `addr` a live object of it, not used after.
#[inline(always)]
pub(crate) unsafe fn kmem_cache_free_kernel(
    sl: &Slub,
    cache: CacheHandle,
    addr: usize,
) -> Result<(), SlabError> {
    // SAFETY: the caller's promise (a live cache of this instance).
    let s = unsafe { &*(cache.ptr().as_ptr() as *const KmemCache) };
    if s.debug {
        return kmem_cache_free_checked(sl, cache, addr);
    }
    let slab = sl
        .provider
        .virt_to_head_page(addr)
        .ok_or(SlabError::NotOurs(addr))?;
    // SAFETY: the caller's promise.
    unsafe { slab_free(sl, s, slab, addr) }
}

/// `kmem_cache_free` in the `hardened` configuration: `cache_from_obj` as 6.4 runs it under
/// `CONFIG_SLAB_FREELIST_HARDENED` — `virt_to_cache(x)` compared with the handle's cache; on a
/// mismatch a counted warning and the free goes to the real cache ([`hardened_mismatch`]). No
/// object-start test (the kernel has none outside debugging).
///
/// # Safety
/// `addr` is a live object (of whichever cache of `sl`), not used after; an interior pointer
/// into a slab of `cache` is undefined behaviour, as in the kernel.
#[inline(always)]
pub(crate) unsafe fn kmem_cache_free_hardened(
    sl: &Slub,
    cache: CacheHandle,
    addr: usize,
) -> Result<(), SlabError> {
    // One instance per kernel: a handle of another instance is refused, not dereferenced.
    if cache.instance() != sl.instance {
        return Err(SlabError::ForeignCache);
    }
    let given = cache.ptr().as_ptr() as usize;
    let Some(page) = sl.provider.virt_to_head_page(addr) else {
        return hardened_mismatch(sl, None, addr);
    };
    // SAFETY: a descriptor of the provider's mem_map.
    let p = unsafe { page.as_ref() };
    if p.cache() != given || !p.is_slab() {
        return hardened_mismatch(sl, Some(page), addr);
    }
    // SAFETY: the page is a slab of the cache at `given`, whose handle is of this instance.
    let s = unsafe { &*(given as *const KmemCache) };
    if s.debug {
        return kmem_cache_free_checked(sl, cache, addr);
    }
    // SAFETY: the caller's promise (a live object start of this slab).
    unsafe { slab_free(sl, s, page, addr) }
}

/// The `hardened` mismatch: count the warning (the kernel's `WARN`: "Wrong slab cache" or
/// `virt_to_cache`'s "not a slab page"), then free into the real cache if `addr` is on a slab of
/// a live cache of this instance; otherwise nothing is freed (`Err`), as `kmem_cache_free`
/// returns when `cache_from_obj` gives NULL.
#[cold]
#[inline(never)]
fn hardened_mismatch(sl: &Slub, page: Option<NonNull<Page>>, addr: usize) -> Result<(), SlabError> {
    sl.free_warnings.fetch_add(1, Ordering::Relaxed);
    let Some(page) = page else {
        return Err(SlabError::NotOurs(addr));
    };
    // SAFETY: a descriptor of the provider's mem_map.
    let p = unsafe { page.as_ref() };
    let cache = p.cache();
    if !p.is_slab() || p.owner() != Some(Owner::Slub) || cache == 0 {
        return Err(SlabError::NotOurs(addr));
    }
    // SAFETY: slab_cache of a live slab names a kmem_cache in provider memory (possibly of
    // another instance, which the magic tells apart).
    let s = unsafe { &*(cache as *const KmemCache) };
    if !s.is_live(sl.instance) {
        return Err(SlabError::NotOurs(addr));
    }
    // SAFETY: the object is on a slab of s, a live cache of this instance; the caller gives it
    // up (its promise in this configuration).
    unsafe { slab_free(sl, s, page, addr) }
}

/// The `checked` `kmem_cache_free` (the debug caches of the other configurations come here).
#[cold]
#[inline(never)]
fn kmem_cache_free_checked(sl: &Slub, cache: CacheHandle, addr: usize) -> Result<(), SlabError> {
    let s = sl.cache_of(cache)?;
    let slab = cache_from_obj(sl, s, addr)?;
    // SAFETY: checked object start of a slab of s; the caller gives it up.
    unsafe { slab_free(sl, s, slab, addr) }
}

/// `free_large_kmalloc`: `addr` must start a block of whole pages from `kmalloc_large`.
///
/// # Safety
/// As [`kfree`].
#[cold]
#[inline(never)]
unsafe fn free_large_kmalloc(sl: &Slub, page: NonNull<Page>, addr: usize) -> Result<(), SlabError> {
    // SAFETY: a descriptor of the provider's mem_map.
    let p = unsafe { page.as_ref() };
    if p.owner() != Some(Owner::LargeKmalloc) || !p.test_flags(common::page::flags::PG_ALLOCATED) {
        return Err(SlabError::NotOurs(addr));
    }
    if sl.provider.page_address(page).as_ptr() as usize != addr {
        return Err(SlabError::NotObjectStart(addr));
    }
    crate::hooks::large_free_hook(sl, addr, p.order as usize);
    // SAFETY: a large kmalloc block the caller gives up.
    unsafe { sl.provider.free_pages(page, p.order as usize) }.map_err(|_| SlabError::NotOurs(addr))
}

/// `ksize` (`__ksize` → `slab_ksize`, or the page block size of a large kmalloc).
pub(crate) fn ksize(sl: &Slub, addr: usize) -> Result<usize, SlabError> {
    let page = sl
        .provider
        .virt_to_head_page(addr)
        .ok_or(SlabError::NotOurs(addr))?;
    // SAFETY: a descriptor of the provider's mem_map.
    let p = unsafe { page.as_ref() };
    if !p.is_slab() {
        if p.owner() == Some(Owner::LargeKmalloc) && p.test_flags(common::page::flags::PG_ALLOCATED)
        {
            if sl.provider.page_address(page).as_ptr() as usize != addr {
                return Err(SlabError::NotObjectStart(addr));
            }
            return Ok(PAGE_SIZE << p.order);
        }
        return Err(SlabError::NotOurs(addr));
    }
    let (_, s) = virt_to_slab(sl, addr)?;
    if s.debug {
        // skip_orig_size_check: a ksize() user may use the whole object.
        crate::debug::skip_orig_size_check(s, addr);
    }
    Ok(slab_ksize(s))
}

/// `slab_ksize(s)`.
pub(crate) fn slab_ksize(s: &KmemCache) -> usize {
    use common::SlabFlags;
    if s.flags.intersects(SlabFlags::RED_ZONE | SlabFlags::POISON) {
        return s.object_size.load(Ordering::Relaxed);
    }
    if s.flags
        .intersects(SlabFlags::TYPESAFE_BY_RCU | SlabFlags::STORE_USER)
    {
        return s.inuse.load(Ordering::Relaxed);
    }
    s.size
}

/// Frees an object of an internal cache (`kmem_cache`, `kmem_cache_node`).
pub(crate) fn kmem_cache_free_internal(
    sl: &Slub,
    s: &KmemCache,
    obj: usize,
) -> Result<(), SlabError> {
    let page = sl
        .provider
        .virt_to_head_page(obj)
        .ok_or(SlabError::NotOurs(obj))?;
    // SAFETY: internal objects are live objects of s, given up by the caller.
    unsafe { slab_free(sl, s, page, obj) }
}

#[cfg(test)]
mod tests {
    use common::sizes::slub_index::{kmalloc_index, kmalloc_slab_index, position_of, SIZE_INDEX};

    #[test]
    fn kmalloc_index_and_size_index_boundaries() {
        // Compile-time __kmalloc_index.
        const I8: usize = kmalloc_index(8);
        const I96: usize = kmalloc_index(96);
        const I192: usize = kmalloc_index(192);
        const I8K: usize = kmalloc_index(8192);
        assert_eq!((I8, I96, I192, I8K), (3, 1, 2, 13));
        // size_index[] covers 1..=192 by (size - 1) / 8; fls above.
        assert_eq!(SIZE_INDEX.len(), 24);
        for (size, idx) in [
            (1, 3),
            (8, 3),
            (9, 4),
            (16, 4),
            (17, 5),
            (32, 5),
            (33, 6),
            (64, 6),
            (65, 1),
            (96, 1),
            (97, 7),
            (128, 7),
            (129, 2),
            (192, 2),
            (193, 8),
            (256, 8),
            (257, 9),
            (4096, 12),
            (4097, 13),
            (8192, 13),
        ] {
            assert_eq!(kmalloc_slab_index(size), Some(idx), "size {size}");
            assert_eq!(kmalloc_index(size), idx, "size {size}");
            assert!(common::sizes::slub::SIZES[position_of(idx)] >= size);
        }
        assert_eq!(kmalloc_slab_index(8193), None);
        assert_eq!(kmalloc_slab_index(0), None);
    }
}
