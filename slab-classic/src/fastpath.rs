//! The per-CPU fast paths — 2.6.32 `____cache_alloc`, `__cache_free`, and their callers
//! `__cache_alloc` (`__do_cache_alloc`) and `__cache_alloc_node`.
//!
//! The CPU's [`CpuSlot`](crate::cache::CpuSlot) lock stands in for `local_irq_save`: it is taken
//! around every use of the per-CPU array, so a thread migrated after reading its CPU id still
//! uses exactly the slot it locked. With pinned threads it is uncontended.

use crate::arraycache::ac_entry;
use crate::bootstrap::SlabGlobals;
use crate::cache::{CpuSlot, KmemCache, CFLGS_DEBUG_PATH};
use crate::stats::StatItem;
use common::percpu::cpu_id;
use common::Gfp;
use core::panic::Location;
use core::ptr::NonNull;

impl SlabGlobals {
    /// The slot index for the CPU this thread runs on.
    #[inline(always)]
    pub(crate) fn this_cpu(&self) -> usize {
        let c = cpu_id();
        if c < self.nr_cpus {
            c
        } else {
            c % self.nr_cpus
        }
    }

    /// `____cache_alloc`: pop from the CPU's array, or refill.
    ///
    /// # Safety
    /// `slot` is `cachep`'s slot, locked by the caller.
    #[inline(always)]
    pub(crate) unsafe fn ____cache_alloc(
        &self,
        cachep: *mut KmemCache,
        slot: *mut CpuSlot,
        gfp: Gfp,
    ) -> *mut u8 {
        // SAFETY: the slot lock protects the array.
        unsafe {
            let ac = (*slot).ac;
            if (*ac).avail > 0 {
                self.stat_inc(cachep, StatItem::ALLOCHIT);
                (*ac).touched = 1;
                (*ac).avail -= 1;
                *ac_entry(ac).add((*ac).avail as usize)
            } else {
                self.stat_inc(cachep, StatItem::ALLOCMISS);
                self.cache_alloc_refill(cachep, ac, (*slot).node as usize, gfp)
            }
        }
    }

    /// `__do_cache_alloc` under the CPU slot lock: the local array, then
    /// `____cache_alloc_node` on the local node (which may fall back to other nodes). Returns
    /// the raw object (null when out of memory).
    #[inline(always)]
    pub(crate) fn __do_cache_alloc(&self, cachep: *mut KmemCache, gfp: Gfp) -> *mut u8 {
        let cpu = self.this_cpu();
        // SAFETY: cachep is a live cache of this instance (callers check handles); the slot
        // lock is held around the array use.
        unsafe {
            let slot = self.cpu_slot(cachep, cpu);
            (*slot).lock.lock();
            let mut objp = self.____cache_alloc(cachep, slot, gfp);
            if objp.is_null() {
                objp = self.____cache_alloc_node(
                    cachep,
                    gfp,
                    (*slot).node as usize,
                    (*slot).node as usize,
                );
            }
            (*slot).lock.unlock();
            objp
        }
    }

    /// `__cache_alloc`: `__do_cache_alloc`, then a debug cache (decided once, at creation)
    /// goes to [`Self::cache_alloc_debug_after`]; for every other one `__GFP_ZERO` clears the
    /// object.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn cache_alloc_internal(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
    ) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.__do_cache_alloc(cachep, gfp))?;
        // SAFETY: a live cache (callers check handles).
        if unsafe { (*cachep).flags } & CFLGS_DEBUG_PATH != 0 {
            return self.cache_alloc_debug_after(cachep, gfp, p.as_ptr(), Location::caller());
        }
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh object of buffer_size bytes.
            unsafe { p.as_ptr().write_bytes(0, (*cachep).buffer_size) };
        }
        Some(p)
    }

    /// `__cache_alloc` of a cache known not to be a debug cache (the handle's magic said so).
    #[inline(always)]
    pub(crate) fn cache_alloc_nodebug(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
    ) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.__do_cache_alloc(cachep, gfp))?;
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh object of buffer_size bytes.
            unsafe { p.as_ptr().write_bytes(0, (*cachep).buffer_size) };
        }
        Some(p)
    }

    /// `__cache_alloc_node` under the CPU slot lock: the local array when `nodeid` is this
    /// CPU's node, else straight from the node's lists (`____cache_alloc_node`), falling back
    /// unless `THISNODE`. Returns the raw object.
    pub(crate) fn __do_cache_alloc_node(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> *mut u8 {
        let cpu = self.this_cpu();
        // SAFETY: as __do_cache_alloc.
        unsafe {
            let slot = self.cpu_slot(cachep, cpu);
            (*slot).lock.lock();
            let here = (*slot).node as usize;
            let nodeid = if nodeid >= self.nr_nodes {
                here
            } else {
                nodeid
            };
            let objp = if self.l3(cachep, nodeid).is_null() {
                self.fallback_alloc(cachep, gfp, here)
            } else {
                let mut p = core::ptr::null_mut();
                if nodeid == here {
                    p = self.____cache_alloc(cachep, slot, gfp);
                }
                if p.is_null() {
                    p = self.____cache_alloc_node(cachep, gfp, nodeid, here);
                }
                p
            };
            (*slot).lock.unlock();
            objp
        }
    }

    /// `__cache_alloc_node` with the debug split of [`Self::cache_alloc_internal`].
    #[track_caller]
    pub(crate) fn cache_alloc_node_internal(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.__do_cache_alloc_node(cachep, gfp, nodeid))?;
        // SAFETY: a live cache.
        if unsafe { (*cachep).flags } & CFLGS_DEBUG_PATH != 0 {
            return self.cache_alloc_debug_after(cachep, gfp, p.as_ptr(), Location::caller());
        }
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh object of buffer_size bytes.
            unsafe { p.as_ptr().write_bytes(0, (*cachep).buffer_size) };
        }
        Some(p)
    }

    /// `__cache_free`: remote objects to the alien path, else push on the CPU's array,
    /// flushing a batch first when it is full. Returns `false` (and frees nothing) when `objp`
    /// is already the top of the array — the one-compare double-free check Linux later added
    /// under `CONFIG_SLAB_FREELIST_HARDENED` (6.4 `__free_one`); not in 2.6.32, kept because it
    /// is free.
    ///
    /// # Safety
    /// `slot` is `cachep`'s slot, locked; `objp` a live object start of `cachep`.
    #[inline(always)]
    pub(crate) unsafe fn __cache_free(
        &self,
        cachep: *mut KmemCache,
        slot: *mut CpuSlot,
        objp: *mut u8,
    ) -> bool {
        // SAFETY: slot lock held.
        unsafe {
            let node = (*slot).node as usize;
            if self.nr_nodes > 1 && self.cache_free_alien(cachep, objp, node) {
                return true;
            }
            let ac = (*slot).ac;
            if (*ac).avail > 0 && *ac_entry(ac).add((*ac).avail as usize - 1) == objp {
                self.stat_inc(cachep, StatItem::ERRORS);
                return false;
            }
            if (*ac).avail < (*ac).limit {
                self.stat_inc(cachep, StatItem::FREEHIT);
            } else {
                self.stat_inc(cachep, StatItem::FREEMISS);
                self.cache_flusharray(cachep, ac, node);
            }
            *ac_entry(ac).add((*ac).avail as usize) = objp;
            (*ac).avail += 1;
            true
        }
    }

    /// `__cache_free` of a raw object under this CPU's slot lock.
    ///
    /// # Safety
    /// `objp` a raw object start of `cachep`, handed out, not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn __cache_free_locked(&self, cachep: *mut KmemCache, objp: *mut u8) -> bool {
        let cpu = self.this_cpu();
        // SAFETY: forwarded contract; slot lock held around the array use.
        unsafe {
            let slot = self.cpu_slot(cachep, cpu);
            (*slot).lock.lock();
            let ok = self.__cache_free(cachep, slot, objp);
            (*slot).lock.unlock();
            ok
        }
    }

    /// `kmem_cache_free` after the checks: a debug cache goes to [`Self::cache_free_debug`],
    /// every other one straight to the CPU array.
    ///
    /// # Safety
    /// `objp` a live object start of `cachep` (as the caller sees it), not used afterwards.
    #[inline(always)]
    #[track_caller]
    pub(crate) unsafe fn cache_free_internal(&self, cachep: *mut KmemCache, objp: *mut u8) -> bool {
        // SAFETY: forwarded contract.
        unsafe {
            if (*cachep).flags & CFLGS_DEBUG_PATH != 0 {
                return self.cache_free_debug(cachep, objp, Location::caller());
            }
            self.__cache_free_locked(cachep, objp)
        }
    }
}
