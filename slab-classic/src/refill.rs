//! The slow paths between the per-CPU arrays and the node lists — 2.6.32
//! `cache_alloc_refill`, `cache_flusharray`, `cache_grow`, `kmem_getpages`, `kmem_freepages`,
//! `alloc_slabmgmt`, `slab_map_pages`, `slab_destroy`, `virt_to_slab`.

use crate::arraycache::{ac_entry, ac_shift_down, transfer_objects, ArrayCache};
use crate::bootstrap::SlabGlobals;
use crate::cache::{KmemCache, CFLGS_INIT_ON_FREE, CFLGS_OFF_SLAB, DEBUG_FLAGS};
use crate::slabmgmt::{
    cache_init_objs, init_slab_desc, slab_from_list, slab_get_obj, SlabDesc, BUFCTL_END,
};
use crate::stats::StatItem;
use common::api::SlabFlags;
use common::list::ListHead;
use common::page::flags::{PG_OFF_SLAB, PG_SLAB};
use common::{Gfp, Owner, Page};
use core::ptr::{addr_of_mut, null_mut, NonNull};
use core::sync::atomic::Ordering;

/// `BATCHREFILL_LIMIT`: an untouched array refills at most this many objects.
pub const BATCHREFILL_LIMIT: u32 = 16;

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

    /// `cache_alloc_refill`: fills the CPU's empty array with up to `batchcount` objects from
    /// the node's shared array, else its partial then free slabs; grows the cache and retries
    /// when the node has nothing. Returns one object (or null when out of memory).
    ///
    /// # Safety
    /// `ac` is the locked CPU array of `cachep` on `node`, and empty.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn cache_alloc_refill(
        &self,
        cachep: *mut KmemCache,
        ac: *mut ArrayCache,
        node: usize,
        gfp: Gfp,
    ) -> *mut u8 {
        // SAFETY: the caller holds the CPU slot lock; node lists under list_lock.
        unsafe {
            loop {
                let mut batchcount = (*ac).batchcount;
                if (*ac).touched == 0 && batchcount > BATCHREFILL_LIMIT {
                    batchcount = BATCHREFILL_LIMIT;
                }
                let l3 = self.l3(cachep, node);
                (*l3).list_lock.lock();
                let shared = (*l3).shared;
                let from_shared = !shared.is_null() && transfer_objects(ac, shared, batchcount) > 0;
                if !from_shared {
                    let num = (*cachep).num;
                    while batchcount > 0 {
                        let entry = match ListHead::first(addr_of_mut!((*l3).slabs_partial)) {
                            Some(e) => e,
                            None => {
                                (*l3).free_touched = 1;
                                match ListHead::first(addr_of_mut!((*l3).slabs_free)) {
                                    Some(e) => e,
                                    None => break, // must_grow
                                }
                            }
                        };
                        let slabp = slab_from_list(entry);
                        let debug = (*cachep).flags & DEBUG_FLAGS != 0;
                        if debug {
                            self.debug_check_slabp(cachep, slabp);
                        }
                        while (*slabp).inuse < num && batchcount > 0 {
                            batchcount -= 1;
                            self.stat_inc(cachep, StatItem::LISTALLOCS);
                            self.stat_active(cachep, 1);
                            *ac_entry(ac).add((*ac).avail as usize) = slab_get_obj(cachep, slabp);
                            (*ac).avail += 1;
                        }
                        if debug {
                            self.debug_check_slabp(cachep, slabp);
                        }
                        ListHead::del(entry);
                        if (*slabp).free == BUFCTL_END {
                            ListHead::add(entry, addr_of_mut!((*l3).slabs_full));
                        } else {
                            ListHead::add(entry, addr_of_mut!((*l3).slabs_partial));
                        }
                    }
                    (*l3).free_objects -= (*ac).avail as usize;
                }
                (*l3).list_lock.unlock();
                if (*ac).avail == 0 {
                    let grown = self.cache_grow(cachep, Gfp(gfp.0 | Gfp::THISNODE.0), node, None);
                    if !grown && (*ac).avail == 0 {
                        return null_mut();
                    }
                    if (*ac).avail == 0 {
                        continue;
                    }
                }
                break;
            }
            (*ac).touched = 1;
            (*ac).avail -= 1;
            *ac_entry(ac).add((*ac).avail as usize)
        }
    }

    /// `cache_flusharray`: moves the `batchcount` oldest objects of a full CPU array to the
    /// shared array if it has room, else gives them back with `free_block`; the rest slide down.
    ///
    /// # Safety
    /// `ac` is the locked, full CPU array of `cachep` on `node`.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn cache_flusharray(
        &self,
        cachep: *mut KmemCache,
        ac: *mut ArrayCache,
        node: usize,
    ) {
        // SAFETY: CPU slot lock held by the caller; list_lock taken here.
        unsafe {
            let mut batchcount = (*ac).batchcount.min((*ac).avail);
            let l3 = self.l3(cachep, node);
            (*l3).list_lock.lock();
            let shared = (*l3).shared;
            let mut done = false;
            if !shared.is_null() {
                let max = (*shared).limit - (*shared).avail;
                if max > 0 {
                    batchcount = batchcount.min(max);
                    core::ptr::copy_nonoverlapping(
                        ac_entry(ac),
                        ac_entry(shared).add((*shared).avail as usize),
                        batchcount as usize,
                    );
                    (*shared).avail += batchcount;
                    done = true;
                }
            }
            if !done {
                self.free_block(cachep, ac_entry(ac), batchcount as usize, node);
            }
            if self.stats {
                let n = ListHead::count(addr_of_mut!((*l3).slabs_free));
                (*cachep).stats.set_freeable(n as u64);
            }
            (*l3).list_lock.unlock();
            ac_shift_down(ac, batchcount);
        }
    }

    /// `kmem_getpages`: a slab's pages from `nodeid` (only that node with `THISNODE`).
    pub(crate) fn kmem_getpages(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> Option<NonNull<Page>> {
        // SAFETY: live cache.
        let order = unsafe { (*cachep).gfporder } as usize;
        let flags = Gfp(gfp.0 & Gfp::THISNODE.0);
        self.provider
            .alloc_pages_gfp(nodeid, order, Owner::SlabClassic, flags)
    }

    /// `kmem_freepages`: clears the slab marks and gives the pages back.
    ///
    /// # Safety
    /// `addr` is the start of a slab of `cachep` nobody uses any more.
    pub(crate) unsafe fn kmem_freepages(&self, cachep: *mut KmemCache, addr: *mut u8) {
        // SAFETY: a slab start is a page of ours.
        unsafe {
            let page = self.provider.virt_to_page(addr as usize).unwrap_unchecked();
            let p = page.as_ptr();
            (*p).clear_flags(PG_SLAB | PG_OFF_SLAB);
            (*p).private = 0;
            (*p).slab_cache.store(0, Ordering::Relaxed);
            let r = self.provider.free_pages(page, (*cachep).gfporder as usize);
            debug_assert!(r.is_ok(), "kmem_freepages: {r:?}");
        }
    }

    /// `slab_destroy`: pages back to the provider, an off-slab descriptor back to its cache.
    /// (`SLAB_DESTROY_BY_RCU` has no RCU here: freed at once.)
    ///
    /// # Safety
    /// `slabp` is off every list, all its objects free.
    pub(crate) unsafe fn slab_destroy(&self, cachep: *mut KmemCache, slabp: *mut SlabDesc) {
        // SAFETY: as documented.
        unsafe {
            let addr = (*slabp).s_mem.sub((*slabp).colouroff);
            if (*cachep).flags & (SlabFlags::POISON.0 | SlabFlags::RED_ZONE.0) != 0 {
                self.slab_destroy_debugcheck(cachep, slabp);
            }
            self.kmem_freepages(cachep, addr);
            if (*cachep).flags & CFLGS_OFF_SLAB != 0 {
                let ok = self.cache_free_internal((*cachep).slabp_cache, slabp.cast());
                debug_assert!(ok);
            }
        }
    }

    /// `alloc_slabmgmt`: the descriptor, on-slab after the colour offset or from `slabp_cache`.
    ///
    /// # Safety
    /// `objp` a fresh slab of `cachep`.
    unsafe fn alloc_slabmgmt(
        &self,
        cachep: *mut KmemCache,
        objp: *mut u8,
        colour_off: usize,
        nodeid: usize,
    ) -> *mut SlabDesc {
        // SAFETY: the slab is ours; offsets stay inside it (cache_estimate guarantees it).
        unsafe {
            let mut colour_off = colour_off;
            let slabp = if (*cachep).flags & CFLGS_OFF_SLAB != 0 {
                match self.cache_alloc_node_internal((*cachep).slabp_cache, Gfp::KERNEL, nodeid) {
                    Some(p) => p.as_ptr().cast::<SlabDesc>(),
                    None => return null_mut(),
                }
            } else {
                let s = objp.add(colour_off).cast::<SlabDesc>();
                colour_off += (*cachep).slab_size;
                s
            };
            init_slab_desc(slabp, colour_off, objp.add(colour_off), nodeid);
            slabp
        }
    }

    /// `cache_grow`: one more slab on `nodeid`'s free list, coloured by the node's
    /// `colour_next`. `page` is a block `fallback_alloc` already got. `false` when out of memory
    /// (nothing is kept).
    ///
    /// # Safety
    /// `cachep` live; no list_lock of `cachep` held.
    #[cold]
    pub(crate) unsafe fn cache_grow(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        nodeid: usize,
        page: Option<NonNull<Page>>,
    ) -> bool {
        // SAFETY: l3 fields under list_lock; the new slab is private until linked.
        unsafe {
            let l3 = self.l3(cachep, nodeid);
            (*l3).list_lock.lock();
            let mut offset = (*l3).colour_next as usize;
            (*l3).colour_next += 1;
            if (*l3).colour_next as usize >= (*cachep).colour {
                (*l3).colour_next = 0;
            }
            (*l3).list_lock.unlock();
            offset *= (*cachep).colour_off;
            let Some(page) = page.or_else(|| self.kmem_getpages(cachep, gfp, nodeid)) else {
                return false;
            };
            let objp = self.provider.page_address(page).as_ptr();
            let slabp = self.alloc_slabmgmt(cachep, objp, offset, nodeid);
            if slabp.is_null() {
                let r = self.provider.free_pages(page, (*cachep).gfporder as usize);
                debug_assert!(r.is_ok());
                return false;
            }
            // slab_map_pages: the head page names the cache and the descriptor.
            let p = page.as_ptr();
            (*p).slab_cache.store(cachep as usize, Ordering::Relaxed);
            (*p).private = slabp as usize;
            // `spare` = offset of s_mem from the slab start, for the quick checks on free.
            (*p).spare = (*slabp).colouroff as u32;
            (*p).set_flags(
                PG_SLAB
                    | if (*cachep).flags & CFLGS_OFF_SLAB != 0 {
                        PG_OFF_SLAB
                    } else {
                        0
                    },
            );
            if (*cachep).flags & (DEBUG_FLAGS | CFLGS_INIT_ON_FREE) != 0 {
                self.cache_init_objs_debug(cachep, slabp);
            } else {
                cache_init_objs(cachep, slabp);
            }
            (*l3).list_lock.lock();
            ListHead::add_tail(addr_of_mut!((*slabp).list), addr_of_mut!((*l3).slabs_free));
            self.stat_inc(cachep, StatItem::GROWN);
            (*l3).free_objects += (*cachep).num as usize;
            (*l3).list_lock.unlock();
            true
        }
    }
}
