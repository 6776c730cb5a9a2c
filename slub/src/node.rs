//! `struct kmem_cache_node` and the per-node partial lists (mm/slub.c 6.4: `add_partial`,
//! `remove_partial`, `inc_slabs_node`, `init_kmem_cache_nodes`, `__kmem_cache_do_shrink`).
//!
//! `list_lock` protects `partial`, `full` (debug caches with `SLAB_STORE_USER` only:
//! `add_full`, `remove_full`), the `slab_list` links of the slabs on them and writes of
//! `nr_partial`. [`ListGuard`] is the proof of holding it, passed to every function that
//! needs it. `nr_slabs` and `total_objects` (`CONFIG_SLUB_DEBUG`'s counters) are one atomic
//! double word, updated outside the lock, read as a consistent pair.

use crate::cache::KmemCache;
use crate::slowpath::{flush_all, free_slab};
use crate::{SlabState, Slub};
use common::dword::DoubleWord;
use common::list::ListHead;
use common::sync::{SpinLock, SpinLockGuard};
use common::{Gfp, Page, SlabCounters, SlabError, SlabFlags};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `SHRINK_PROMOTE_MAX`.
pub(crate) const SHRINK_PROMOTE_MAX: usize = 32;

/// `struct kmem_cache_node` (SLUB part).
#[repr(C)]
pub(crate) struct KmemCacheNode {
    list_lock: SpinLock<()>,
    /// `nr_partial`: written under `list_lock`, read racily as a hint.
    pub(crate) nr_partial: AtomicUsize,
    partial: UnsafeCell<ListHead>,
    /// `nr_slabs` (low word) and `total_objects` (high word), updated together by one 16-byte
    /// compare-exchange so a reader's snapshot of the pair is consistent by construction (the
    /// kernel's two `atomic_long_t`s can be seen half-updated; `validate` compares them).
    slabs_objects: DoubleWord,
    /// `full`: the full slabs of a debug cache with `SLAB_STORE_USER` (no count of its own:
    /// `validate` checks `nr_partial` + |full| against `nr_slabs`, as 6.4 does).
    full: UnsafeCell<ListHead>,
    /// Node id (for validation).
    pub(crate) node: usize,
    /// `barn` (as 6.18 hangs it here): the node's barn of sheaves, or null.
    pub(crate) barn: core::sync::atomic::AtomicPtr<crate::sheaf::NodeBarn>,
}

// SAFETY: the UnsafeCell list heads are only touched under list_lock (ListGuard).
unsafe impl Sync for KmemCacheNode {}
// SAFETY: see Sync.
unsafe impl Send for KmemCacheNode {}

/// Proof that a node's `list_lock` is held.
pub(crate) struct ListGuard<'a> {
    _g: SpinLockGuard<'a, ()>,
    n: &'a KmemCacheNode,
}

impl ListGuard<'_> {
    /// The partial list head.
    pub(crate) fn partial(&self) -> *mut ListHead {
        self.n.partial.get()
    }

    /// The full list head (used by `SLAB_STORE_USER` caches only).
    pub(crate) fn full(&self) -> *mut ListHead {
        self.n.full.get()
    }
}

/// The `Page` whose `slab_list` is `link`.
#[inline(always)]
pub(crate) fn slab_of(link: *mut ListHead) -> *mut Page {
    Page::from_lru(link)
}

/// The counters word of a slab, unpacked.
#[inline(always)]
pub(crate) fn counters_of(slab: *mut Page) -> SlabCounters {
    // SAFETY: slab is a descriptor in mem_map; the word is atomic.
    SlabCounters::unpack(unsafe { (*slab).freelist_counters.hi(Ordering::Acquire) })
}

impl KmemCacheNode {
    /// `spin_lock(&n->list_lock)`.
    pub(crate) fn lock(&self) -> ListGuard<'_> {
        ListGuard {
            _g: self.list_lock.lock(),
            n: self,
        }
    }

    /// `__add_partial` / `add_partial`: to the head or (`tail`) the tail of the partial list.
    pub(crate) fn add_partial(&self, g: &ListGuard<'_>, slab: *mut Page, tail: bool) {
        debug_assert!(core::ptr::eq(g.n, self));
        self.nr_partial.fetch_add(1, Ordering::Relaxed);
        // SAFETY: lock held (g); slab is a slab of this node on no list.
        unsafe {
            if tail {
                ListHead::add_tail(Page::lru_of(slab), g.partial());
            } else {
                ListHead::add(Page::lru_of(slab), g.partial());
            }
        }
    }

    /// `remove_partial`.
    pub(crate) fn remove_partial(&self, g: &ListGuard<'_>, slab: *mut Page) {
        debug_assert!(core::ptr::eq(g.n, self));
        // SAFETY: lock held; the slab is on this node's partial list.
        unsafe { ListHead::del(Page::lru_of(slab)) };
        self.nr_partial.fetch_sub(1, Ordering::Relaxed);
    }

    /// `add_full`: a debug slab that just became full goes on the node's full list, if the
    /// cache tracks users (`SLAB_STORE_USER`); else it is on no list, as without debugging.
    pub(crate) fn add_full(&self, s: &KmemCache, g: &ListGuard<'_>, slab: *mut Page) {
        debug_assert!(core::ptr::eq(g.n, self));
        if !s.flags.contains(SlabFlags::STORE_USER) {
            return;
        }
        // SAFETY: lock held (g); slab is a slab of this node on no list.
        unsafe { ListHead::add(Page::lru_of(slab), g.full()) };
    }

    /// `remove_full`: takes a slab that was full off the full list (`SLAB_STORE_USER` caches;
    /// a no-op for the others, whose full slabs are on no list).
    pub(crate) fn remove_full(&self, s: &KmemCache, g: &ListGuard<'_>, slab: *mut Page) {
        debug_assert!(core::ptr::eq(g.n, self));
        if !s.flags.contains(SlabFlags::STORE_USER) {
            return;
        }
        // SAFETY: lock held; the slab is on this node's full list.
        unsafe { ListHead::del(Page::lru_of(slab)) };
    }

    /// `inc_slabs_node`.
    pub(crate) fn inc_slabs_node(&self, objects: usize) {
        self.add_slabs(1, objects as isize);
    }

    /// `dec_slabs_node`.
    pub(crate) fn dec_slabs_node(&self, objects: usize) {
        self.add_slabs(-1, -(objects as isize));
    }

    fn add_slabs(&self, slabs: isize, objects: isize) {
        let mut old = self.slabs_objects.load_pair();
        loop {
            let new = (
                old.0.wrapping_add_signed(slabs),
                old.1.wrapping_add_signed(objects),
            );
            if self.slabs_objects.cmpxchg(old, new) {
                return;
            }
            old = self.slabs_objects.load_pair();
        }
    }

    /// `(nr_slabs, total_objects)` as one consistent snapshot.
    pub(crate) fn slabs_snapshot(&self) -> (usize, usize) {
        self.slabs_objects.load_pair()
    }

    /// `node_nr_slabs`.
    pub(crate) fn nr_slabs(&self) -> usize {
        self.slabs_snapshot().0
    }

    /// `node_nr_objs`.
    pub(crate) fn total_objects(&self) -> usize {
        self.slabs_snapshot().1
    }

    /// Slabs on the full list (walked under `list_lock`).
    pub(crate) fn count_full(&self) -> usize {
        let g = self.lock();
        // SAFETY: lock held for the walk.
        unsafe { ListHead::iter(g.full()) }.count()
    }

    /// `count_partial(n, count_free)`: free objects on the partial slabs.
    pub(crate) fn count_partial_free(&self) -> usize {
        let g = self.lock();
        let mut x = 0;
        // SAFETY: lock held for the walk.
        for link in unsafe { ListHead::iter(g.partial()) } {
            let c = counters_of(slab_of(link));
            x += (c.objects - c.inuse) as usize;
        }
        x
    }
}

/// `init_kmem_cache_node(n)`, in place.
///
/// # Safety
/// `n` must be writable memory for a `KmemCacheNode` that nobody else uses yet.
pub(crate) unsafe fn init_kmem_cache_node(n: *mut KmemCacheNode, node: usize) {
    // The node cache is created with its type's alignment (the 16-byte counter pair needs it).
    assert!(n.is_aligned(), "kmem_cache_node object {n:p} misaligned");
    // SAFETY: exclusive, writable memory per the caller; the list heads are initialised in
    // place after the write, so they point at their final address.
    unsafe {
        n.write(KmemCacheNode {
            list_lock: SpinLock::new(()),
            nr_partial: AtomicUsize::new(0),
            partial: UnsafeCell::new(ListHead::new()),
            slabs_objects: DoubleWord::new(0, 0),
            full: UnsafeCell::new(ListHead::new()),
            node,
            barn: core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()),
        });
        ListHead::init((*n).partial.get());
        ListHead::init((*n).full.get());
    }
}

/// `init_kmem_cache_nodes(s)`: one `kmem_cache_node` per node, from the `kmem_cache_node` cache
/// (or, while `slab_state == DOWN`, by `early_kmem_cache_node_alloc`).
pub(crate) fn init_kmem_cache_nodes(sl: &Slub, s: &KmemCache) -> Result<(), SlabError> {
    for node in 0..sl.nr_nodes {
        let n = if sl.slab_state() == SlabState::Down {
            crate::bootstrap::early_kmem_cache_node_alloc(sl, s, node)
        } else {
            // SAFETY: kmem_cache_node is set before slab_state leaves DOWN.
            let kcn = unsafe { &*sl.kmem_cache_node };
            crate::fastpath::slab_alloc_node(sl, kcn, Gfp::KERNEL, node).map(|p| {
                let n = p.as_ptr().cast::<KmemCacheNode>();
                // SAFETY: a fresh object of the kmem_cache_node cache, sized for one.
                unsafe { init_kmem_cache_node(n, node) };
                n
            })
        };
        let Some(n) = n else {
            free_kmem_cache_nodes(sl, s);
            return Err(SlabError::NoMemory);
        };
        s.node[node].store(n, Ordering::Release);
    }
    Ok(())
}

/// `free_kmem_cache_nodes(s)`: gives the node structures back.
pub(crate) fn free_kmem_cache_nodes(sl: &Slub, s: &KmemCache) {
    for node in 0..sl.nr_nodes {
        let n = s.node[node].swap(core::ptr::null_mut(), Ordering::AcqRel);
        if n.is_null() {
            continue;
        }
        if sl.slab_state() == SlabState::Down {
            // An early node: its slab holds only itself; give the slab back whole.
            let page = sl
                .provider
                .virt_to_head_page(n as usize)
                .expect("node structure in a slab");
            // SAFETY: boot failure: this slab was made by early_kmem_cache_node_alloc and holds
            // nothing but n, which nobody uses any more.
            unsafe { free_slab(s, page.as_ptr()) };
        } else {
            // SAFETY: kmem_cache_node is live after DOWN; n is one of its objects.
            let kcn = unsafe { &*sl.kmem_cache_node };
            let r = crate::kmalloc::kmem_cache_free_internal(sl, kcn, n as usize);
            debug_assert!(r.is_ok());
        }
    }
}

/// `list_splice(list, head)`: moves all entries of `list` to the front of `head`.
///
/// # Safety
/// Both lists valid; the lock of `head` held; `list` is private to the caller.
unsafe fn list_splice(list: *mut ListHead, head: *mut ListHead) {
    // SAFETY: per the caller both are valid lists.
    unsafe {
        if ListHead::is_empty(list) {
            return;
        }
        let first = (*list).next;
        let last = (*list).prev;
        let at = (*head).next;
        (*first).prev = head;
        (*head).next = first;
        (*last).next = at;
        (*at).prev = last;
        ListHead::init(list);
    }
}

/// `__kmem_cache_do_shrink`: discards every empty partial slab and sorts the rest by fullness
/// (fullest first). Returns whether slabs remain.
pub(crate) fn __kmem_cache_do_shrink(s: &KmemCache) -> bool {
    let mut ret = false;
    for node in 0..s.nr_nodes {
        let n = s.get_node(node);
        let mut discard = ListHead::new();
        let mut promote: [ListHead; SHRINK_PROMOTE_MAX] =
            [const { ListHead::new() }; SHRINK_PROMOTE_MAX];
        let dp = &raw mut discard;
        let pp = promote.as_mut_ptr();
        // SAFETY: the local list heads stay in this frame and are initialised in place.
        unsafe {
            ListHead::init(dp);
            for i in 0..SHRINK_PROMOTE_MAX {
                ListHead::init(pp.add(i));
            }
        }
        {
            let g = n.lock();
            // SAFETY: list_lock held for the walk; only the yielded entry is moved.
            for link in unsafe { ListHead::iter(g.partial()) } {
                let slab = slab_of(link);
                let c = counters_of(slab);
                let free = (c.objects - c.inuse) as usize;
                if free == c.objects as usize {
                    // SAFETY: lock held; link is on the partial list; dp is private.
                    unsafe { ListHead::move_to(link, dp) };
                    n.nr_partial.fetch_sub(1, Ordering::Relaxed);
                    n.dec_slabs_node(c.objects as usize);
                } else if free <= SHRINK_PROMOTE_MAX && free > 0 {
                    // SAFETY: as above.
                    unsafe { ListHead::move_to(link, pp.add(free - 1)) };
                }
            }
            for i in (0..SHRINK_PROMOTE_MAX).rev() {
                // SAFETY: lock held; promote lists are private.
                unsafe { list_splice(pp.add(i), g.partial()) };
            }
        }
        // SAFETY: the discarded slabs are empty, off every list, and ours alone.
        for link in unsafe { ListHead::iter(dp) } {
            // SAFETY: as above; the iterator has read the next link already.
            unsafe { free_slab(s, slab_of(link)) };
        }
        if n.nr_partial.load(Ordering::Relaxed) != 0 || n.nr_slabs() != 0 {
            ret = true;
        }
    }
    ret
}

/// `kmem_cache_shrink` → `__kmem_cache_shrink`: `flush_all` then `__kmem_cache_do_shrink`.
pub(crate) fn kmem_cache_shrink(sl: &Slub, s: &KmemCache) -> bool {
    // Sheaves: pcs_flush_all + barn_shrink first (their objects may land on CPU slabs).
    crate::sheaf::flush_all_sheaves(sl, s);
    flush_all(s);
    __kmem_cache_do_shrink(s)
}

/// `free_partial(s, n)` for shutdown: frees the empty slabs of the partial list; returns the
/// number of objects still in use on slabs that stay.
pub(crate) fn free_partial(s: &KmemCache, n: &KmemCacheNode, force: bool) -> usize {
    let mut discard = ListHead::new();
    let dp = &raw mut discard;
    let mut busy = 0;
    // SAFETY: local list head, initialised in place.
    unsafe { ListHead::init(dp) };
    {
        let g = n.lock();
        // SAFETY: lock held; only the yielded entry is moved.
        for link in unsafe { ListHead::iter(g.partial()) } {
            let c = counters_of(slab_of(link));
            if c.inuse == 0 || force {
                n.remove_partial(&g, slab_of(link));
                // SAFETY: the link was just removed; dp is private.
                unsafe { ListHead::add(link, dp) };
                n.dec_slabs_node(c.objects as usize);
            } else {
                busy += c.inuse as usize;
            }
        }
    }
    // SAFETY: these slabs are off every list and (without force) empty.
    for link in unsafe { ListHead::iter(dp) } {
        // SAFETY: as above.
        unsafe { free_slab(s, slab_of(link)) };
    }
    busy
}

impl KmemCacheNode {
    /// `count_partial(n, count_inuse)`.
    pub(crate) fn count_partial_inuse(&self) -> usize {
        let g = self.lock();
        let mut x = 0;
        // SAFETY: lock held for the walk.
        for link in unsafe { ListHead::iter(g.partial()) } {
            x += counters_of(slab_of(link)).inuse as usize;
        }
        x
    }
}
