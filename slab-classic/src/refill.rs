//! The slow paths between the per-CPU arrays and the node lists — 2.6.32
//! `cache_alloc_refill`, `cache_flusharray`, `cache_grow`, `kmem_getpages`, `kmem_freepages`,
//! `alloc_slabmgmt`, `slab_map_pages`, `slab_destroy`, `virt_to_slab`.

use crate::arraycache::ArrayRef;
use crate::cache::{KmemCache, CFLGS_INIT_ON_FREE, DEBUG_FLAGS};
use crate::instance::SlabGlobals;
use crate::node::{List, ListGuard};
use crate::slabmgmt::{cache_init_objs, init_slab_desc, SlabDesc, SlabRef, BUFCTL_END};
use crate::stats::StatItem;
use common::api::SlabFlags;
use common::page::flags::{PG_OFF_SLAB, PG_SLAB};
use common::{Gfp, Owner, Page};
use core::ptr::{null_mut, NonNull};
use core::sync::atomic::Ordering;

/// `BATCHREFILL_LIMIT`: an untouched array refills at most this many objects.
pub(crate) const BATCHREFILL_LIMIT: u32 = 16;

impl SlabGlobals {
    /// `virt_to_slab`: the descriptor of the slab holding `obj`.
    ///
    /// # Safety
    /// `obj` lies in a live slab of this instance.
    #[inline(always)]
    pub(crate) unsafe fn virt_to_slab(&self, obj: *const u8) -> *mut SlabDesc {
        // SAFETY: a live slab object has a slab head page whose `private` names the descriptor.
        unsafe {
            let page = self
                .provider
                .virt_to_head_page(obj as usize)
                .unwrap_unchecked();
            page.as_ref().private as *mut SlabDesc
        }
    }

    /// [`Self::virt_to_slab`] as a [`SlabRef`].
    ///
    /// # Safety
    /// As `virt_to_slab`; the slab's fields are read only under its node's `list_lock`
    /// (or, for `nodeid`, at any time: it never changes).
    #[inline(always)]
    pub(crate) unsafe fn slab_of_obj(&self, obj: *const u8) -> SlabRef<'_> {
        // SAFETY: forwarded contract.
        unsafe { SlabRef::new(self.virt_to_slab(obj)) }
    }

    /// `cache_alloc_refill`: fills the CPU's empty array with up to `batchcount` objects from
    /// the node's shared array, else its partial then free slabs; grows the cache and retries
    /// when the node has nothing. Returns one object (or null when out of memory). `ac` is the
    /// locked CPU array of `cachep` on `node`, empty.
    #[cold]
    #[inline(never)]
    pub(crate) fn cache_alloc_refill(
        &self,
        cachep: &KmemCache,
        ac: ArrayRef<'_>,
        node: usize,
        gfp: Gfp,
    ) -> *mut u8 {
        loop {
            let mut batchcount = ac.batchcount();
            if !ac.touched() && batchcount > BATCHREFILL_LIMIT {
                batchcount = BATCHREFILL_LIMIT;
            }
            let l3 = self.lock_list(cachep, node);
            let from_shared = l3
                .shared()
                .is_some_and(|sh| ac.transfer_from(sh, batchcount) > 0);
            if !from_shared {
                self.refill_from_slabs(cachep, &l3, ac, batchcount);
            }
            drop(l3);
            if ac.avail() == 0 {
                let grown = self.cache_grow(cachep, Gfp(gfp.0 | Gfp::THISNODE.0), node, None);
                if !grown && ac.avail() == 0 {
                    return null_mut();
                }
                if ac.avail() == 0 {
                    continue;
                }
            }
            break;
        }
        ac.set_touched(true);
        ac.pop()
    }

    /// The slab half of `cache_alloc_refill`: up to `batchcount` objects from the partial,
    /// then the free slabs of the locked node into `ac`.
    fn refill_from_slabs(
        &self,
        cachep: &KmemCache,
        l3: &ListGuard<'_>,
        ac: ArrayRef<'_>,
        mut batchcount: u32,
    ) {
        let num = cachep.num;
        while batchcount > 0 {
            let slabp = match l3.first(List::Partial) {
                Some(s) => s,
                None => {
                    l3.set_free_touched(true);
                    match l3.first(List::Free) {
                        Some(s) => s,
                        None => break, // must_grow
                    }
                }
            };
            let debug = cachep.flags & DEBUG_FLAGS != 0;
            if debug {
                self.debug_check_slabp(cachep, slabp);
            }
            while slabp.inuse() < num && batchcount > 0 {
                batchcount -= 1;
                self.stat_inc(cachep, StatItem::LISTALLOCS);
                self.stat_active(cachep, 1);
                ac.push(slabp.get_obj(cachep));
            }
            if debug {
                self.debug_check_slabp(cachep, slabp);
            }
            let list = if slabp.free() == BUFCTL_END {
                List::Full
            } else {
                List::Partial
            };
            // SAFETY: the slab was on one of this node's lists.
            unsafe { l3.move_to(slabp, list) };
        }
        l3.set_free_objects(l3.free_objects() - ac.avail() as usize);
    }

    /// `cache_flusharray`: moves the `batchcount` oldest objects of a full CPU array to the
    /// shared array if it has room, else gives them back with `free_block`; the rest slide
    /// down. `ac` is the locked, full CPU array of `cachep` on `node`.
    #[cold]
    #[inline(never)]
    pub(crate) fn cache_flusharray(&self, cachep: &KmemCache, ac: ArrayRef<'_>, node: usize) {
        let mut batchcount = ac.batchcount().min(ac.avail());
        let l3 = self.lock_list(cachep, node);
        let mut done = false;
        if let Some(shared) = l3.shared() {
            let max = shared.limit() - shared.avail();
            if max > 0 {
                batchcount = batchcount.min(max);
                shared.append_oldest_of(ac, batchcount);
                done = true;
            }
        }
        if !done {
            // SAFETY: the CPU array's objects are handed-out objects of this cache and node.
            unsafe { self.free_block(cachep, &l3, ac.entries(), batchcount as usize) };
        }
        if self.stats {
            cachep.stats.set_freeable(l3.count(List::Free) as u64);
        }
        drop(l3);
        ac.shift_down(batchcount);
    }

    /// `kmem_getpages`: a slab's pages from `nodeid` (only that node with `THISNODE`).
    pub(crate) fn kmem_getpages(
        &self,
        cachep: &KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> Option<NonNull<Page>> {
        let flags = Gfp(gfp.0 & Gfp::THISNODE.0);
        self.provider
            .alloc_pages_gfp(nodeid, cachep.gfporder as usize, Owner::SlabClassic, flags)
    }

    /// `kmem_freepages`: clears the slab marks and gives the pages back.
    ///
    /// # Safety
    /// `addr` is the start of a slab of `cachep` nobody uses any more.
    pub(crate) unsafe fn kmem_freepages(&self, cachep: &KmemCache, addr: *mut u8) {
        // SAFETY: a slab start is a page of ours (contract).
        let page = unsafe { self.provider.virt_to_page(addr as usize).unwrap_unchecked() };
        let p = page.as_ptr();
        // SAFETY: the page descriptor of a slab nobody uses any more.
        unsafe {
            (*p).clear_flags(PG_SLAB | PG_OFF_SLAB);
            (*p).private = 0;
            (*p).slab_cache.store(0, Ordering::Relaxed);
        }
        // SAFETY: the slab's pages, unused (contract).
        let r = unsafe { self.provider.free_pages(page, cachep.gfporder as usize) };
        debug_assert!(r.is_ok(), "kmem_freepages: {r:?}");
    }

    /// `slab_destroy`: pages back to the provider, an off-slab descriptor back to its cache.
    /// (`SLAB_DESTROY_BY_RCU` has no RCU here: freed at once.)
    ///
    /// # Safety
    /// `slabp` is off every list, all its objects free.
    pub(crate) unsafe fn slab_destroy(&self, cachep: &KmemCache, slabp: *mut SlabDesc) {
        // SAFETY: off every list: nobody else sees it (contract).
        let s = unsafe { SlabRef::new(slabp) };
        if cachep.flags & (SlabFlags::POISON.0 | SlabFlags::RED_ZONE.0) != 0 {
            self.slab_destroy_debugcheck(cachep, s);
        }
        // SAFETY: the slab's pages, unused (contract).
        unsafe { self.kmem_freepages(cachep, s.mem_start()) };
        if let Some(desc_cache) = cachep.slabp_cache() {
            // SAFETY: the off-slab descriptor is an object of slabp_cache, unused now.
            let ok = unsafe { self.cache_free_internal(desc_cache, slabp.cast()) };
            debug_assert!(ok);
        }
    }

    /// `alloc_slabmgmt`: the descriptor, on-slab after the colour offset or from `slabp_cache`.
    ///
    /// # Safety
    /// `objp` a fresh slab of `cachep`.
    unsafe fn alloc_slabmgmt(
        &self,
        cachep: &KmemCache,
        objp: *mut u8,
        colour_off: usize,
        nodeid: usize,
    ) -> *mut SlabDesc {
        let mut colour_off = colour_off;
        let slabp = if let Some(desc_cache) = cachep.slabp_cache() {
            match self.cache_alloc_node_internal(desc_cache, Gfp::KERNEL, nodeid) {
                Some(p) => p.as_ptr().cast::<SlabDesc>(),
                None => return null_mut(),
            }
        } else {
            let s = objp.wrapping_add(colour_off).cast::<SlabDesc>();
            colour_off += cachep.slab_size;
            s
        };
        // SAFETY: the slab is ours; offsets stay inside it (cache_estimate guarantees it).
        unsafe { init_slab_desc(slabp, colour_off, objp.add(colour_off), nodeid) };
        slabp
    }

    /// `slab_map_pages`: the head page names the cache and the descriptor; `spare` = offset of
    /// `s_mem` from the slab start, for the quick checks on free.
    ///
    /// # Safety
    /// `page` is the head page of a fresh slab of `cachep` with descriptor `slabp`.
    unsafe fn slab_map_pages(&self, cachep: &KmemCache, page: NonNull<Page>, slabp: *mut SlabDesc) {
        let p = page.as_ptr();
        // SAFETY: the page descriptor of a slab nobody else sees yet (contract).
        unsafe {
            (*p).slab_cache
                .store(core::ptr::from_ref(cachep) as usize, Ordering::Relaxed);
            (*p).private = slabp as usize;
            (*p).spare = (*slabp).colouroff as u32;
            (*p).set_flags(PG_SLAB | if cachep.off_slab() { PG_OFF_SLAB } else { 0 });
        }
    }

    /// `cache_grow`: one more slab on `nodeid`'s free list, coloured by the node's
    /// `colour_next`. `page` is a block `fallback_alloc` already got. `false` when out of memory
    /// (nothing is kept). No list_lock of `cachep` may be held.
    #[cold]
    pub(crate) fn cache_grow(
        &self,
        cachep: &KmemCache,
        gfp: Gfp,
        nodeid: usize,
        page: Option<NonNull<Page>>,
    ) -> bool {
        let l3 = self.lock_list(cachep, nodeid);
        let mut offset = l3.colour_next();
        l3.set_colour_next(if offset + 1 >= cachep.colour {
            0
        } else {
            offset + 1
        });
        drop(l3);
        offset *= cachep.colour_off;
        let Some(page) = page.or_else(|| self.kmem_getpages(cachep, gfp, nodeid)) else {
            return false;
        };
        let objp = self.provider.page_address(page).as_ptr();
        // SAFETY: a fresh slab of this cache.
        let slabp = unsafe { self.alloc_slabmgmt(cachep, objp, offset, nodeid) };
        if slabp.is_null() {
            // SAFETY: the fresh pages, unused.
            let r = unsafe { self.provider.free_pages(page, cachep.gfporder as usize) };
            debug_assert!(r.is_ok());
            return false;
        }
        // SAFETY: the fresh slab and its descriptor, private until linked below.
        unsafe {
            self.slab_map_pages(cachep, page, slabp);
            if cachep.flags & (DEBUG_FLAGS | CFLGS_INIT_ON_FREE) != 0 {
                self.cache_init_objs_debug(cachep, slabp);
            } else {
                cache_init_objs(cachep, slabp);
            }
        }
        let l3 = self.lock_list(cachep, nodeid);
        // SAFETY: a fresh slab of this node on no list.
        unsafe { l3.add(SlabRef::new(slabp), List::Free, true) };
        self.stat_inc(cachep, StatItem::GROWN);
        l3.set_free_objects(l3.free_objects() + cachep.num as usize);
        true
    }
}
