//! Per-node lists: `struct kmem_list3` — 2.6.32 `mm/slab.c` `kmem_list3_init`, `free_block`,
//! `drain_freelist`, `init_list`'s splice (`MAKE_ALL_LISTS`).
//!
//! Invariants (checked by `validate`, the `s_show` accounting checks):
//! - every slab on `slabs_full` has `inuse == num`, on `slabs_partial` `0 < inuse < num`, on
//!   `slabs_free` `inuse == 0`;
//! - `free_objects` = Σ (num − inuse) over the three lists (objects in arrays count as in use);
//! - each slab is on the list of its own node (`slab.nodeid`).
//!
//! Everything here is protected by `list_lock`, including the `shared` array's contents.

use crate::arraycache::ArrayCache;
use crate::bootstrap::SlabGlobals;
use crate::cache::KmemCache;
use crate::slabmgmt::{slab_from_list, slab_put_obj, SlabDesc};
use crate::stats::StatItem;
use crate::sync::RawLock;
use common::list::ListHead;
use core::ptr::addr_of_mut;
use core::sync::atomic::AtomicPtr;

/// `REAPTIMEOUT_LIST3`: per-node reaping every 4 s (in jiffies, `HZ` = 1000).
pub const REAPTIMEOUT_LIST3: usize = 4 * crate::reap::HZ;

/// `struct kmem_list3` (104 bytes → `INDEX_L3` is `size-128`, as in the kernel).
#[repr(C)]
#[derive(Debug)]
pub struct KmemList3 {
    /// Slabs with some objects free ("partial list first, better asm code").
    pub slabs_partial: ListHead,
    /// Slabs with every object handed out.
    pub slabs_full: ListHead,
    /// Slabs with no object handed out.
    pub slabs_free: ListHead,
    /// Free objects on the three lists.
    pub free_objects: usize,
    /// Above this many free objects, empty slabs go back to the page provider.
    pub free_limit: u32,
    /// Next colour for `cache_grow`.
    pub colour_next: u32,
    /// The node lock.
    pub list_lock: RawLock,
    /// Shared array of the node (null if the `shared` tunable is 0).
    pub shared: *mut ArrayCache,
    /// Alien arrays indexed by node (null without alien caches); set once, read locklessly.
    pub alien: AtomicPtr<*mut ArrayCache>,
    /// Jiffies of the next per-node reap.
    pub next_reap: usize,
    /// An allocation took a slab from `slabs_free` since the last reap.
    pub free_touched: u32,
}

const _: () = assert!(core::mem::size_of::<KmemList3>() == 104);

/// `kmem_list3_init`, in place.
///
/// # Safety
/// `l3` valid for writes and never moved afterwards (its list heads point to themselves).
pub unsafe fn kmem_list3_init(l3: *mut KmemList3) {
    // SAFETY: valid for writes per the contract.
    unsafe {
        ListHead::init(addr_of_mut!((*l3).slabs_partial));
        ListHead::init(addr_of_mut!((*l3).slabs_full));
        ListHead::init(addr_of_mut!((*l3).slabs_free));
        (*l3).free_objects = 0;
        (*l3).free_limit = 0;
        (*l3).colour_next = 0;
        addr_of_mut!((*l3).list_lock).write(RawLock::new());
        (*l3).shared = core::ptr::null_mut();
        addr_of_mut!((*l3).alien).write(AtomicPtr::new(core::ptr::null_mut()));
        (*l3).next_reap = 0;
        (*l3).free_touched = 0;
    }
}

/// Moves every entry of list `from` onto the freshly initialised head `to`
/// (`list_splice` after `INIT_LIST_HEAD`, used by `MAKE_ALL_LISTS`).
///
/// # Safety
/// `from` a valid list whose entries are live; `to` valid for writes.
pub unsafe fn list_splice_init(from: *mut ListHead, to: *mut ListHead) {
    // SAFETY: as documented.
    unsafe {
        ListHead::init(to);
        if ListHead::is_empty(from) {
            return;
        }
        let first = (*from).next;
        let last = (*from).prev;
        (*to).next = first;
        (*to).prev = last;
        (*first).prev = to;
        (*last).next = to;
        ListHead::init(from);
    }
}

impl SlabGlobals {
    /// `free_block(cachep, objpp, nr_objects, node)`: returns objects to their slabs. A slab
    /// that becomes empty is destroyed at once if the node holds more than `free_limit` free
    /// objects (2.6.32), else put on `slabs_free`; a slab still in use goes to the **tail** of
    /// `slabs_partial`. Caller holds `nodelists[node].list_lock`.
    ///
    /// # Safety
    /// Every object is an object start of `cachep` on `node`, handed out and not yet freed.
    pub(crate) unsafe fn free_block(
        &self,
        cachep: *mut KmemCache,
        objpp: *const *mut u8,
        nr_objects: usize,
        node: usize,
    ) {
        // SAFETY: as documented; list_lock of the node is held by the caller.
        unsafe {
            let l3 = *(*cachep).nodelists.add(node);
            for i in 0..nr_objects {
                let objp = *objpp.add(i);
                let slabp = self.virt_to_slab(objp);
                let debug = crate::debug::is_debug(cachep);
                if debug {
                    self.debug_check_slabp(cachep, slabp);
                }
                ListHead::del(addr_of_mut!((*slabp).list));
                if !slab_put_obj(cachep, slabp, objp) {
                    // Double free caught by the bufctl marker: keep the slab where it was.
                    self.stat_inc(cachep, StatItem::ERRORS);
                    if debug {
                        self.report_bufctl_double_free(cachep, objp);
                    }
                    let head = if (*slabp).inuse == (*cachep).num {
                        addr_of_mut!((*l3).slabs_full)
                    } else {
                        addr_of_mut!((*l3).slabs_partial)
                    };
                    ListHead::add(addr_of_mut!((*slabp).list), head);
                    continue;
                }
                self.stat_active(cachep, -1);
                (*l3).free_objects += 1;
                if debug {
                    self.debug_check_slabp(cachep, slabp);
                }
                if (*slabp).inuse == 0 {
                    if (*l3).free_objects > (*l3).free_limit as usize {
                        (*l3).free_objects -= (*cachep).num as usize;
                        self.slab_destroy(cachep, slabp);
                    } else {
                        ListHead::add(addr_of_mut!((*slabp).list), addr_of_mut!((*l3).slabs_free));
                    }
                } else {
                    ListHead::add_tail(
                        addr_of_mut!((*slabp).list),
                        addr_of_mut!((*l3).slabs_partial),
                    );
                }
            }
        }
    }

    /// `drain_freelist(cache, l3, tofree)`: destroys up to `tofree` slabs from the tail of
    /// `slabs_free`, taking the lock per slab. Returns how many were destroyed.
    ///
    /// # Safety
    /// `cachep` and `l3` valid; the caller holds no lock of `cachep`'s node.
    pub(crate) unsafe fn drain_freelist(
        &self,
        cachep: *mut KmemCache,
        l3: *mut KmemList3,
        tofree: usize,
    ) -> usize {
        let mut nr_freed = 0;
        // SAFETY: the list is only touched under its lock.
        unsafe {
            while nr_freed < tofree {
                (*l3).list_lock.lock();
                let Some(p) = ListHead::last(addr_of_mut!((*l3).slabs_free)) else {
                    (*l3).list_lock.unlock();
                    break;
                };
                let slabp: *mut SlabDesc = slab_from_list(p);
                ListHead::del(p);
                (*l3).free_objects -= (*cachep).num as usize;
                (*l3).list_lock.unlock();
                self.slab_destroy(cachep, slabp);
                nr_freed += 1;
            }
        }
        nr_freed
    }
}
