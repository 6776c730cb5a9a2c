//! kmalloc — 2.6.32 `malloc_sizes[]`/`cache_names[]` from the common size-table macro,
//! compile-time `index_of`, `__find_general_cachep`, `kmalloc`, `kmalloc_node`, `kfree`,
//! `ksize`, plus the checked object lookup every public free goes through.

use crate::arraycache::ARRAYCACHE_INIT_SIZE;
use crate::bootstrap::SlabGlobals;
use crate::cache::{magic_ok, KmemCache};
use crate::node::KmemList3;
use crate::slabmgmt::reciprocal_divide;
use common::api::SlabError;
use common::page::flags::PG_SLAB;
use common::sizes::slab as sizes;
use common::{Gfp, Owner};
use core::cell::UnsafeCell;
use core::ptr::{null_mut, NonNull};

/// `INDEX_AC = index_of(sizeof(struct arraycache_init))`, evaluated at compile time.
pub const INDEX_AC: usize = sizes::index_of(ARRAYCACHE_INIT_SIZE);
/// `INDEX_L3 = index_of(sizeof(struct kmem_list3))`.
pub const INDEX_L3: usize = sizes::index_of(core::mem::size_of::<KmemList3>());
/// `KMALLOC_MAX_SIZE` (4 MiB: `size-4194304` is the last class).
pub const KMALLOC_MAX_SIZE: usize = sizes::MAX_SIZE;
const _: () = assert!(KMALLOC_MAX_SIZE == crate::cache::KMALLOC_MAX_SIZE);

/// One entry of `malloc_sizes[]` (no DMA caches: there is no DMA zone here).
///
/// `cs_cachep` is filled in by `kmem_cache_init`, which runs on a shared `&SlabGlobals` (so that
/// the pointers it hands out stay valid under Stacked Borrows), hence the `UnsafeCell`.
#[derive(Debug)]
pub struct CacheSizes {
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
    pub(crate) unsafe fn set_cachep(&self, c: *mut KmemCache) {
        // SAFETY: single-threaded bootstrap per the contract; no reference into the cell exists.
        unsafe { *self.cs_cachep.get() = c };
    }
}

impl SlabGlobals {
    /// `__find_general_cachep(size)`: the first class `>= size` (linear scan), or null for 0
    /// and sizes above `KMALLOC_MAX_SIZE`.
    #[inline]
    pub(crate) fn find_general_cachep(&self, size: usize) -> *mut KmemCache {
        match sizes::find_index(size) {
            Some(i) => self.malloc_sizes[i].cachep(),
            None => null_mut(),
        }
    }

    /// `kmalloc(size, GFP_KERNEL)` for internal metadata.
    pub(crate) fn kmalloc_internal(&self, size: usize) -> Option<NonNull<u8>> {
        let c = self.find_general_cachep(size);
        if c.is_null() {
            return None;
        }
        self.cache_alloc_internal(c, Gfp::KERNEL)
    }

    /// `kmalloc_node(size, GFP_KERNEL, node)` for internal metadata.
    pub(crate) fn kmalloc_node_internal(&self, size: usize, node: usize) -> Option<NonNull<u8>> {
        let c = self.find_general_cachep(size);
        if c.is_null() {
            return None;
        }
        self.cache_alloc_node_internal(c, Gfp::KERNEL, node)
    }

    /// `kfree` of internal metadata (null is a no-op).
    ///
    /// # Safety
    /// `p` null or a live kmalloc object of this instance.
    pub(crate) unsafe fn kfree_internal(&self, p: *mut u8) {
        if p.is_null() {
            return;
        }
        // SAFETY: a live object of ours has a slab head page naming its cache.
        unsafe {
            let page = self
                .provider
                .virt_to_head_page(p as usize)
                .unwrap_unchecked();
            let cachep = page.as_ref().cache() as *mut KmemCache;
            let ok = self.cache_free_internal(cachep, p);
            debug_assert!(ok, "internal double free");
        }
    }

    /// The checks of `kmem_cache_free(cachep, obj)` when the caller names the cache: the head
    /// page must belong to `cachep`, and `obj` be an object start, found from the page alone
    /// (`Page::spare` holds the offset of `s_mem`), without touching the slab descriptor.
    /// Anything else is classified by [`Self::lookup_object`].
    #[inline]
    pub(crate) fn check_object_of(
        &self,
        cachep: *mut KmemCache,
        obj: *mut u8,
    ) -> Result<(), SlabError> {
        let addr = obj as usize;
        if let Some(page) = self.provider.virt_to_head_page(addr) {
            // SAFETY: the descriptor is in mem_map; cachep is a live cache (handle checked).
            unsafe {
                let p = page.as_ref();
                if p.cache() == cachep as usize && p.test_flags(PG_SLAB) {
                    let base = self.provider.page_address(page).as_ptr() as usize;
                    let off = addr
                        .wrapping_sub(base + p.spare as usize)
                        .wrapping_sub((*cachep).obj_offset as usize);
                    if off < (*cachep).num as usize * (*cachep).buffer_size
                        && (*cachep).buffer_size_divides.divides(off as u32)
                    {
                        return Ok(());
                    }
                    return Err(SlabError::NotObjectStart(addr));
                }
            }
        }
        match self.lookup_object(obj) {
            Ok(_) => Err(SlabError::WrongCache(addr)),
            Err(e) => Err(e),
        }
    }

    /// `virt_to_cache` with every check a free can afford: the address must be in our
    /// provider, on a slab page of slab-classic, of a cache of this instance, at an object's
    /// first byte as the caller sees it (`obj_offset` past the buffer start in debug caches).
    pub(crate) fn lookup_object(&self, obj: *mut u8) -> Result<*mut KmemCache, SlabError> {
        self.lookup_object_at(obj, true)
    }

    /// [`Self::lookup_object`] for a raw object start (what the arrays and bufctls hold).
    pub(crate) fn lookup_object_raw(&self, obj: *mut u8) -> Result<*mut KmemCache, SlabError> {
        self.lookup_object_at(obj, false)
    }

    /// For a pointer into a slab object of this instance: its offset from the start of the
    /// object as the caller sees it (negative inside the red zone), with the cache.
    pub(crate) fn interior_offset(&self, obj: *mut u8) -> Option<(*mut KmemCache, isize)> {
        let addr = obj as usize;
        let page = self.provider.virt_to_head_page(addr)?;
        // SAFETY: as lookup_object_at.
        unsafe {
            let p = page.as_ref();
            if !p.test_flags(PG_SLAB) || p.owner != Owner::SlabClassic as u8 {
                return None;
            }
            let cachep = p.cache() as *mut KmemCache;
            if cachep.is_null()
                || !self.provider.contains(cachep as usize)
                || (*cachep).instance != self.instance
                || !magic_ok((*cachep).magic)
            {
                return None;
            }
            let base = self.provider.page_address(page).as_ptr() as usize + p.spare as usize;
            let off = addr.checked_sub(base)? % (*cachep).buffer_size;
            Some((cachep, off as isize - (*cachep).obj_offset as isize))
        }
    }

    fn lookup_object_at(&self, obj: *mut u8, user: bool) -> Result<*mut KmemCache, SlabError> {
        let addr = obj as usize;
        let page = self
            .provider
            .virt_to_head_page(addr)
            .ok_or(SlabError::NotOurs(addr))?;
        // SAFETY: the descriptor is in mem_map; a slab head page carries its cache and
        // descriptor addresses, which live in this provider's memory.
        unsafe {
            let p = page.as_ref();
            if !p.test_flags(PG_SLAB) || p.owner != Owner::SlabClassic as u8 {
                return Err(SlabError::NotOurs(addr));
            }
            let cachep = p.cache() as *mut KmemCache;
            if cachep.is_null()
                || !self.provider.contains(cachep as usize)
                || (*cachep).instance != self.instance
                || !magic_ok((*cachep).magic)
            {
                return Err(SlabError::NotOurs(addr));
            }
            let base = self.provider.page_address(page).as_ptr() as usize;
            let mut off = addr.wrapping_sub(base + p.spare as usize);
            if user {
                off = off.wrapping_sub((*cachep).obj_offset as usize);
            }
            let size = (*cachep).buffer_size;
            if off >= (*cachep).num as usize * size
                || reciprocal_divide(off as u32, (*cachep).reciprocal_buffer_size) as usize * size
                    != off
            {
                return Err(SlabError::NotObjectStart(addr));
            }
            Ok(cachep)
        }
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
