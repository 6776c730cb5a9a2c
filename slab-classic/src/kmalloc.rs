//! kmalloc — 2.6.32 `malloc_sizes[]`/`cache_names[]` from the common size-table macro,
//! compile-time `index_of`, `__find_general_cachep`, `kmalloc`, `kmalloc_node`, `kfree`,
//! `ksize`, plus the checked object lookup every public free goes through.

use crate::arraycache::ARRAYCACHE_INIT_SIZE;
use crate::cache::{magic_ok, KmemCache};
use crate::instance::SlabGlobals;
use crate::node::KmemList3;
use crate::slabmgmt::reciprocal_divide;
use common::api::SlabError;
use common::page::flags::PG_SLAB;
use common::sizes::slab as sizes;
use common::{Gfp, Owner};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};

/// `INDEX_AC = index_of(sizeof(struct arraycache_init))`, evaluated at compile time.
pub(crate) const INDEX_AC: usize = sizes::index_of(ARRAYCACHE_INIT_SIZE);
/// `INDEX_L3 = index_of(sizeof(struct kmem_list3))`.
pub(crate) const INDEX_L3: usize = sizes::index_of(core::mem::size_of::<KmemList3>());
/// `KMALLOC_MAX_SIZE` (4 MiB: `size-4194304` is the last class).
pub const KMALLOC_MAX_SIZE: usize = sizes::MAX_SIZE;
const _: () = assert!(KMALLOC_MAX_SIZE == crate::cache::KMALLOC_MAX_SIZE);

/// One entry of `malloc_sizes[]` (no DMA caches: there is no DMA zone here).
///
/// `cs_cachep` is filled in by `kmem_cache_init`, which runs on a shared `&SlabGlobals` (so that
/// the pointers it hands out stay valid under Stacked Borrows), hence the `UnsafeCell`.
#[derive(Debug)]
pub(crate) struct CacheSizes {
    /// Class size.
    pub cs_size: usize,
    /// Its cache (null until `kmem_cache_init` created it).
    cs_cachep: UnsafeCell<*mut KmemCache>,
}

impl CacheSizes {
    pub(crate) const fn new(cs_size: usize) -> Self {
        CacheSizes {
            cs_size,
            cs_cachep: UnsafeCell::new(null_mut()),
        }
    }

    /// The class's cache (null during bootstrap before it is created).
    #[inline(always)]
    pub(crate) fn cachep(&self) -> *mut KmemCache {
        // SAFETY: written only by `set_cachep` during the single-threaded bootstrap, before the
        // instance is shared; every later access is a read.
        unsafe { *self.cs_cachep.get() }
    }

    /// Installs the class's cache.
    ///
    /// # Safety
    /// Bootstrap only (`kmem_cache_init`): no other thread can see the instance yet.
    pub(crate) unsafe fn set_cachep(&self, c: &KmemCache) {
        // SAFETY: single-threaded bootstrap per the contract; no reference into the cell exists.
        unsafe { *self.cs_cachep.get() = core::ptr::from_ref(c).cast_mut() };
    }
}

impl SlabGlobals {
    /// `__find_general_cachep(size)`: the kmalloc cache serving `size` (`None` for 0 or
    /// above 4 MiB).
    #[inline]
    pub(crate) fn find_general_cachep(&self, size: usize) -> Option<&KmemCache> {
        let cs = &self.malloc_sizes[sizes::find_index(size)?];
        debug_assert!(size <= cs.cs_size);
        let c = cs.cachep();
        // SAFETY: a kmalloc cache, set at bootstrap, lives as long as the instance (null
        // only during the bootstrap, before it is created).
        unsafe { c.as_ref() }
    }

    /// `kmalloc(size, GFP_KERNEL)` for the allocator's own metadata.
    #[track_caller]
    pub(crate) fn kmalloc_internal(&self, size: usize) -> Option<NonNull<u8>> {
        self.cache_alloc_internal(self.find_general_cachep(size)?, Gfp::KERNEL)
    }

    /// `kmalloc_node(size, GFP_KERNEL, node)` for the allocator's own metadata.
    #[track_caller]
    pub(crate) fn kmalloc_node_internal(&self, size: usize, node: usize) -> Option<NonNull<u8>> {
        self.cache_alloc_node_internal(self.find_general_cachep(size)?, Gfp::KERNEL, node)
    }

    /// `kfree` of the allocator's own metadata (`virt_to_cache`, trusted). Null is a no-op.
    ///
    /// # Safety
    /// `p` is null or a live kmalloc object of this instance, not used afterwards.
    #[track_caller]
    pub(crate) unsafe fn kfree_internal(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        // SAFETY: a live object of ours has a slab head page naming its live cache.
        let cachep = unsafe {
            let page = self
                .provider
                .virt_to_head_page(p as usize)
                .unwrap_unchecked();
            &*(page.as_ref().cache() as *const KmemCache)
        };
        // SAFETY: forwarded contract.
        let ok = unsafe { self.cache_free_internal(cachep, p) };
        debug_assert!(ok, "internal double free");
    }

    /// The checked free's test: `obj` is an object start (as the caller sees it) of `cachep`,
    /// from `struct page` alone; else `NotObjectStart`, `WrongCache` or the lookup's error.
    #[inline]
    pub(crate) fn check_object_of(
        &self,
        cachep: &KmemCache,
        obj: *mut u8,
    ) -> Result<(), SlabError> {
        let addr = obj as usize;
        if let Some(page) = self.provider.virt_to_head_page(addr) {
            // SAFETY: a descriptor of the provider's mem_map.
            let p = unsafe { page.as_ref() };
            if p.cache() == core::ptr::from_ref(cachep) as usize && p.test_flags(PG_SLAB) {
                let base = self.provider.page_address(page).as_ptr() as usize;
                let off = addr
                    .wrapping_sub(base + p.spare as usize)
                    .wrapping_sub(cachep.obj_offset as usize);
                if off < cachep.num as usize * cachep.buffer_size
                    && cachep.buffer_size_divides.divides(off as u32)
                {
                    return Ok(());
                }
                return Err(SlabError::NotObjectStart(addr));
            }
        }
        match self.lookup_object(obj) {
            Ok(_) => Err(SlabError::WrongCache(addr)),
            Err(e) => Err(e),
        }
    }

    /// The cache of `obj` if it is an object start (as the caller sees it) of a live cache
    /// of this instance, from `struct page` alone (`NotOurs`, `NotObjectStart` otherwise).
    pub(crate) fn lookup_object(&self, obj: *mut u8) -> Result<&KmemCache, SlabError> {
        self.lookup_object_at(obj, true)
    }

    /// As [`Self::lookup_object`] for a raw buffer start (arrays, bufctls: no `obj_offset`).
    pub(crate) fn lookup_object_raw(&self, obj: *mut u8) -> Result<&KmemCache, SlabError> {
        self.lookup_object_at(obj, false)
    }

    /// The live cache of this instance that the slab page holding `addr` names, with the
    /// page's `spare` and the page's address (`None` if it is no slab page of a live cache of
    /// ours).
    fn slab_page_cache(&self, addr: usize) -> Option<(&KmemCache, usize)> {
        let page = self.provider.virt_to_head_page(addr)?;
        // SAFETY: a descriptor of the provider's mem_map.
        let p = unsafe { page.as_ref() };
        if !p.test_flags(PG_SLAB) || p.owner != Owner::SlabClassic as u8 {
            return None;
        }
        let c = p.cache() as *const KmemCache;
        if c.is_null() || !self.provider.contains(c as usize) {
            return None;
        }
        // SAFETY: a slab head page of ours names a kmem_cache object in this provider's
        // memory, which stays mapped (a destroyed one reads magic 0).
        let cachep = unsafe { &*c };
        if cachep.instance != self.instance || !magic_ok(cachep.magic()) {
            return None;
        }
        let base = self.provider.page_address(page).as_ptr() as usize;
        Some((cachep, base + p.spare as usize))
    }

    /// The offset of `obj` from the start of the object holding it, relative to the
    /// object as the caller sees it (negative inside the red zone), with the cache.
    pub(crate) fn interior_offset(&self, obj: *mut u8) -> Option<(&KmemCache, isize)> {
        let (cachep, s_mem) = self.slab_page_cache(obj as usize)?;
        let off = (obj as usize).checked_sub(s_mem)? % cachep.buffer_size;
        Some((cachep, off as isize - cachep.obj_offset as isize))
    }

    fn lookup_object_at(&self, obj: *mut u8, user: bool) -> Result<&KmemCache, SlabError> {
        let addr = obj as usize;
        let (cachep, s_mem) = self.slab_page_cache(addr).ok_or(SlabError::NotOurs(addr))?;
        let mut off = addr.wrapping_sub(s_mem);
        if user {
            off = off.wrapping_sub(cachep.obj_offset as usize);
        }
        let size = cachep.buffer_size;
        if off >= cachep.num as usize * size
            || reciprocal_divide(off as u32, cachep.reciprocal_buffer_size) as usize * size != off
        {
            return Err(SlabError::NotObjectStart(addr));
        }
        Ok(cachep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_ac_and_l3_match_the_kernel() {
        assert_eq!(sizes::NAMES[INDEX_AC], "size-32");
        assert_eq!(sizes::NAMES[INDEX_L3], "size-128");
        assert_ne!(INDEX_AC, INDEX_L3);
    }

    #[test]
    fn cache_names_from_the_x_macro() {
        assert_eq!(sizes::NAMES.len(), 19);
        assert_eq!(sizes::NAMES[0], "size-32");
        assert_eq!(sizes::NAMES[3], "size-192");
        assert_eq!(*sizes::NAMES.last().unwrap(), "size-4194304");
        const I: usize = sizes::index_of(100);
        assert_eq!(sizes::SIZES[I], 128);
        assert_eq!(sizes::find_index(4 << 20), Some(18));
        assert_eq!(sizes::find_index((4 << 20) + 1), None);
    }
}
