//! Per-node lists: `struct kmem_list3` — 2.6.32 `mm/slab.c` `kmem_list3_init`, `free_block`,
//! `drain_freelist`, `init_list`'s splice (`MAKE_ALL_LISTS`).
//!
//! Invariants (checked by `validate`, the `s_show` accounting checks):
//! - every slab on `slabs_full` has `inuse == num`, on `slabs_partial` `0 < inuse < num`, on
//!   `slabs_free` `inuse == 0`;
//! - `free_objects` = Σ (num − inuse) over the three lists (objects in arrays count as in use);
//! - each slab is on the list of its own node (`slab.nodeid`).
//!
//! Everything here except `alien` is protected by `list_lock`, including the `shared` array's
//! contents. [`ListGuard`] is the proof of holding it: every function that needs the lock
//! takes `&ListGuard`, and outside the single-threaded bootstrap and cache destruction the
//! guard's accessors are the only way to the locked fields.

use crate::arraycache::{ArrayCache, ArrayRef};
use crate::cache::KmemCache;
use crate::instance::SlabGlobals;
use crate::slabmgmt::{slab_from_list, SlabRef};
use crate::stats::StatItem;
use crate::sync::RawLock;
use common::list::ListHead;
use core::marker::PhantomData;
use core::ptr::{addr_of_mut, NonNull};
use core::sync::atomic::{AtomicPtr, Ordering};

/// `struct kmem_list3` (104 bytes → `INDEX_L3` is `size-128`, as in the kernel).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct KmemList3 {
    /// Slabs with some objects free ("partial list first, better asm code").
    pub(crate) slabs_partial: ListHead,
    /// Slabs with every object handed out.
    pub(crate) slabs_full: ListHead,
    /// Slabs with no object handed out.
    pub(crate) slabs_free: ListHead,
    /// Free objects on the three lists.
    pub(crate) free_objects: usize,
    /// Above this many free objects, empty slabs go back to the page provider.
    pub(crate) free_limit: u32,
    /// Next colour for `cache_grow`.
    pub(crate) colour_next: u32,
    /// The node lock.
    pub(crate) list_lock: RawLock,
    /// Shared array of the node (null if the `shared` tunable is 0).
    pub(crate) shared: *mut ArrayCache,
    /// Alien arrays indexed by node (null without alien caches); set once, read locklessly.
    pub(crate) alien: AtomicPtr<*mut ArrayCache>,
    /// Jiffies of the next per-node reap.
    pub(crate) next_reap: usize,
    /// An allocation took a slab from `slabs_free` since the last reap.
    pub(crate) free_touched: u32,
}

const _: () = assert!(core::mem::size_of::<KmemList3>() == 104);

/// `kmem_list3_init`, in place.
///
/// # Safety
/// `l3` valid for writes and never moved afterwards (its list heads point to themselves).
pub(crate) unsafe fn kmem_list3_init(l3: *mut KmemList3) {
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
pub(crate) unsafe fn list_splice_init(from: *mut ListHead, to: *mut ListHead) {
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

/// One of a node's three slab lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    /// `slabs_partial`.
    Partial,
    /// `slabs_full`.
    Full,
    /// `slabs_free`.
    Free,
}

/// Proof that a node's `list_lock` is held (2.6.32 `spin_lock(&l3->list_lock)`); unlocks on
/// drop. Its accessors are the only way to the fields the lock protects.
pub(crate) struct ListGuard<'a> {
    l3: NonNull<KmemList3>,
    _locked: PhantomData<&'a KmemList3>,
}

impl ListGuard<'_> {
    /// `spin_lock(&l3->list_lock)`.
    ///
    /// # Safety
    /// `l3` is a live, initialised `kmem_list3` that outlives `'a`.
    #[inline]
    pub(crate) unsafe fn lock(l3: *mut KmemList3) -> Self {
        // SAFETY: live list3 (contract); the lock word is only used through lock/unlock.
        unsafe { (*l3).list_lock.lock() };
        ListGuard {
            // SAFETY: live, so non-null.
            l3: unsafe { NonNull::new_unchecked(l3) },
            _locked: PhantomData,
        }
    }

    /// The locked `kmem_list3`.
    pub(crate) fn l3(&self) -> *mut KmemList3 {
        self.l3.as_ptr()
    }

    /// The head of one of the three lists.
    #[inline]
    pub(crate) fn head(&self, list: List) -> *mut ListHead {
        let l3 = self.l3.as_ptr();
        // SAFETY: field addresses of a live list3; no reference is created.
        unsafe {
            match list {
                List::Partial => addr_of_mut!((*l3).slabs_partial),
                List::Full => addr_of_mut!((*l3).slabs_full),
                List::Free => addr_of_mut!((*l3).slabs_free),
            }
        }
    }

    /// The first slab of `list`.
    #[inline]
    pub(crate) fn first(&self, list: List) -> Option<SlabRef<'_>> {
        // SAFETY: lock held; the list holds slab descriptors of this node only.
        unsafe { ListHead::first(self.head(list)).map(|l| SlabRef::new(slab_from_list(l))) }
    }

    /// The last slab of `list`.
    pub(crate) fn last(&self, list: List) -> Option<SlabRef<'_>> {
        // SAFETY: as `first`.
        unsafe { ListHead::last(self.head(list)).map(|l| SlabRef::new(slab_from_list(l))) }
    }

    /// Every slab of `list` (the list must not change while iterating).
    pub(crate) fn slabs(&self, list: List) -> impl Iterator<Item = SlabRef<'_>> + '_ {
        // SAFETY: lock held (self) for as long as the iterator borrows it; the links are
        // slab descriptors of this node.
        unsafe { ListHead::iter(self.head(list)) }
            .map(|l| unsafe { SlabRef::new(slab_from_list(l)) })
    }

    /// Slabs on `list`.
    pub(crate) fn count(&self, list: List) -> usize {
        // SAFETY: lock held; a well-formed list.
        unsafe { ListHead::count(self.head(list)) }
    }

    /// Whether `list` is empty.
    pub(crate) fn is_empty(&self, list: List) -> bool {
        // SAFETY: lock held.
        unsafe { ListHead::is_empty(self.head(list)) }
    }

    /// Takes `s` off its list (`list_del`).
    ///
    /// # Safety
    /// `s` is on one of this node's lists.
    pub(crate) unsafe fn del(&self, s: SlabRef<'_>) {
        // SAFETY: on a list of this node (contract), lock held.
        unsafe { ListHead::del(s.link()) };
    }

    /// Puts `s` at the head (or, with `tail`, the tail) of `list`.
    ///
    /// # Safety
    /// `s` is a slab of this node's cache on no list.
    pub(crate) unsafe fn add(&self, s: SlabRef<'_>, list: List, tail: bool) {
        // SAFETY: off every list (contract), lock held.
        unsafe {
            if tail {
                ListHead::add_tail(s.link(), self.head(list));
            } else {
                ListHead::add(s.link(), self.head(list));
            }
        }
    }

    /// Moves `s`, which is on a list of this node, to the head of `list`.
    ///
    /// # Safety
    /// As [`Self::del`].
    pub(crate) unsafe fn move_to(&self, s: SlabRef<'_>, list: List) {
        // SAFETY: forwarded contract; off the list between the two steps.
        unsafe {
            self.del(s);
            self.add(s, list, false);
        }
    }

    /// `free_objects`.
    pub(crate) fn free_objects(&self) -> usize {
        // SAFETY: live list3, lock held.
        unsafe { (*self.l3()).free_objects }
    }

    /// `free_objects = n`.
    pub(crate) fn set_free_objects(&self, n: usize) {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).free_objects = n };
    }

    /// `free_limit`.
    pub(crate) fn free_limit(&self) -> usize {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).free_limit as usize }
    }

    /// `free_limit = n`.
    pub(crate) fn set_free_limit(&self, n: usize) {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).free_limit = n as u32 };
    }

    /// `colour_next`.
    pub(crate) fn colour_next(&self) -> usize {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).colour_next as usize }
    }

    /// `colour_next = n`.
    pub(crate) fn set_colour_next(&self, n: usize) {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).colour_next = n as u32 };
    }

    /// `next_reap`.
    pub(crate) fn next_reap(&self) -> usize {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).next_reap }
    }

    /// `next_reap = t`.
    pub(crate) fn set_next_reap(&self, t: usize) {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).next_reap = t };
    }

    /// `free_touched`.
    pub(crate) fn free_touched(&self) -> bool {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).free_touched != 0 }
    }

    /// Sets or clears `free_touched`.
    pub(crate) fn set_free_touched(&self, on: bool) {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).free_touched = u32::from(on) };
    }

    /// The shared array's address (null without one).
    pub(crate) fn shared_ptr(&self) -> *mut ArrayCache {
        // SAFETY: as `free_objects`.
        unsafe { (*self.l3()).shared }
    }

    /// The shared array, locked by this guard.
    pub(crate) fn shared(&self) -> Option<ArrayRef<'_>> {
        let ac = self.shared_ptr();
        // SAFETY: the node's shared array is live and protected by list_lock, held.
        (!ac.is_null()).then(|| unsafe { ArrayRef::new(ac) })
    }

    /// Installs a new shared array (null for none); returns the old one.
    pub(crate) fn replace_shared(&self, ac: *mut ArrayCache) -> *mut ArrayCache {
        // SAFETY: as `free_objects`.
        unsafe { core::mem::replace(&mut (*self.l3()).shared, ac) }
    }
}

impl Drop for ListGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: locked by `lock`, still live.
        unsafe { (*self.l3()).list_lock.unlock() };
    }
}

/// The alien table of a `kmem_list3` (set once, read without a lock; null without one).
///
/// # Safety
/// `l3` is live.
pub(crate) unsafe fn alien_table(l3: *mut KmemList3) -> *mut *mut ArrayCache {
    // SAFETY: live list3; an atomic field.
    unsafe { (*l3).alien.load(Ordering::Acquire) }
}

impl SlabGlobals {
    /// `free_block(cachep, objpp, nr_objects, node)`: returns objects to their slabs. A slab
    /// that becomes empty is destroyed at once if the node holds more than `free_limit` free
    /// objects (2.6.32), else put on `slabs_free`; a slab still in use goes to the **tail** of
    /// `slabs_partial`. `l3` is `nodelists[node]`, locked.
    ///
    /// # Safety
    /// Every object is an object start of `cachep` on `l3`'s node, handed out and not yet
    /// freed.
    pub(crate) unsafe fn free_block(
        &self,
        cachep: &KmemCache,
        l3: &ListGuard<'_>,
        objpp: *const *mut u8,
        nr_objects: usize,
    ) {
        for i in 0..nr_objects {
            // SAFETY: objpp has nr_objects entries (contract).
            let objp = unsafe { *objpp.add(i) };
            // SAFETY: an object of a live slab of ours (contract).
            let slabp = unsafe { self.slab_of_obj(objp) };
            // SAFETY: forwarded contract.
            unsafe { self.free_one(cachep, l3, slabp, objp) };
        }
    }

    /// One object of `free_block`.
    ///
    /// # Safety
    /// As `free_block`; `slabp` is `objp`'s slab.
    unsafe fn free_one(
        &self,
        cachep: &KmemCache,
        l3: &ListGuard<'_>,
        slabp: SlabRef<'_>,
        objp: *mut u8,
    ) {
        let debug = cachep.is_debug();
        if debug {
            self.debug_check_slabp(cachep, slabp);
        }
        // SAFETY: a slab with an object handed out is on one of the node's lists.
        unsafe { l3.del(slabp) };
        // SAFETY: objp is an object start of this slab (contract).
        if !unsafe { slabp.put_obj(cachep, objp) } {
            // Double free caught by the bufctl marker: keep the slab where it was.
            self.stat_inc(cachep, StatItem::ERRORS);
            if debug {
                // SAFETY: an object start of this slab (contract).
                unsafe { self.report_bufctl_double_free(cachep, objp) };
            }
            let list = if slabp.inuse() == cachep.num {
                List::Full
            } else {
                List::Partial
            };
            // SAFETY: taken off above.
            unsafe { l3.add(slabp, list, false) };
            return;
        }
        self.stat_active(cachep, -1);
        l3.set_free_objects(l3.free_objects() + 1);
        if debug {
            self.debug_check_slabp(cachep, slabp);
        }
        if slabp.inuse() == 0 {
            if l3.free_objects() > l3.free_limit() {
                l3.set_free_objects(l3.free_objects() - cachep.num as usize);
                // SAFETY: off every list, every object free.
                unsafe { self.slab_destroy(cachep, slabp.as_ptr()) };
            } else {
                // SAFETY: taken off above.
                unsafe { l3.add(slabp, List::Free, false) };
            }
        } else {
            // SAFETY: taken off above.
            unsafe { l3.add(slabp, List::Partial, true) };
        }
    }

    /// `drain_freelist(cache, l3, tofree)`: destroys up to `tofree` slabs from the tail of
    /// `slabs_free` of `node`, taking the lock per slab. Returns how many were destroyed.
    pub(crate) fn drain_freelist(&self, cachep: &KmemCache, node: usize, tofree: usize) -> usize {
        let mut nr_freed = 0;
        while nr_freed < tofree {
            let l3 = self.lock_list(cachep, node);
            let Some(slabp) = l3.last(List::Free) else {
                break;
            };
            let slabp = slabp.as_ptr();
            // SAFETY: on the free list.
            unsafe { ListHead::del(addr_of_mut!((*slabp).list)) };
            l3.set_free_objects(l3.free_objects() - cachep.num as usize);
            drop(l3);
            // SAFETY: off every list, every object free.
            unsafe { self.slab_destroy(cachep, slabp) };
            nr_freed += 1;
        }
        nr_freed
    }
}
