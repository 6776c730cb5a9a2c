//! The slow paths (mm/slub.c 6.4): `___slab_alloc` with `get_freelist`, `deactivate_slab`, the
//! per-CPU partial pop, `get_partial`/`get_partial_node`/`acquire_slab`/`get_any_partial` and
//! `new_slab` (with `allocate_slab` folded in); `__slab_free` with `put_cpu_partial` and `__unfreeze_partials`;
//! `flush_all`. Everything here is `#[cold]`/`#[inline(never)]` or called only from such code.
//!
//! A slab's `{freelist, counters}` changes only by [`cmpxchg_double_slab`] once published. The
//! CPU slot (`c->slab`, `c->partial`, and rewrites of `c->freelist`) changes only under
//! `c->lock`, inside `begin_update`/`end_update` when the fast path could observe it (see
//! `fastpath.rs`). Lock order: `list_lock` → `c->lock`; the local lock is always dropped before
//! a node lock is taken (`deactivate_slab`, `__unfreeze_partials` run after unlocking).

use crate::cache::{KmemCache, KmemCacheCpu};
use crate::freeptr::{get_freepointer, naive_double_free, set_freepointer};
use crate::node::{counters_of, KmemCacheNode, ListGuard};
use crate::stats::StatItem::{
    ALLOC_FROM_PARTIAL, ALLOC_NODE_MISMATCH, ALLOC_REFILL, ALLOC_SLAB, ALLOC_SLOWPATH,
    CMPXCHG_DOUBLE_FAIL, CPUSLAB_FLUSH, CPU_PARTIAL_ALLOC, CPU_PARTIAL_DRAIN, CPU_PARTIAL_FREE,
    CPU_PARTIAL_NODE, DEACTIVATE_BYPASS, DEACTIVATE_EMPTY, DEACTIVATE_FULL,
    DEACTIVATE_REMOTE_FREES, DEACTIVATE_TO_HEAD, DEACTIVATE_TO_TAIL, FREE_ADD_PARTIAL, FREE_FROZEN,
    FREE_REMOVE_PARTIAL, FREE_SLAB, FREE_SLOWPATH, ORDER_FALLBACK,
};
use crate::{Slub, NUMA_NO_NODE};
use common::page::flags::PG_SLAB;
use common::percpu::cpu_id;
use common::{Gfp, Owner, Page, PageProvider, SlabCounters, SlabError};
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// The descriptor behind a slab pointer.
#[inline(always)]
fn slab_ref<'a>(slab: *mut Page) -> &'a Page {
    // SAFETY: every slab pointer handled here is a descriptor in the provider's mem_map, which
    // lives as long as the provider (held by the cache).
    unsafe { &*slab }
}

/// `slab_nid(slab)`: the node the provider recorded in the head page when it handed the block
/// out (one byte load; `PageProvider::page_to_nid` divides by the arena size).
#[inline(always)]
pub(crate) fn slab_nid(s: &KmemCache, slab: *mut Page) -> usize {
    debug_assert_eq!(
        // SAFETY-free: address arithmetic only.
        s.provider
            .page_to_nid(NonNull::new(slab).expect("slab pointer")),
        // SAFETY: see below.
        unsafe { core::ptr::addr_of!((*slab).node).read() } as usize
    );
    // SAFETY: slab is the head page of a block we hold (a slab of the cache with a live object
    // or owned by the caller); `node` was written by the provider before the block was handed
    // out and does not change while it is allocated.
    unsafe { core::ptr::addr_of!((*slab).node).read() as usize }
}

/// `node_match(slab, node)`: `slab` (non-null) is on `node`, or any node will do.
#[inline(always)]
pub(crate) fn node_match(s: &KmemCache, slab: *mut Page, node: usize) -> bool {
    // page_to_nid is address arithmetic on a descriptor pointer of our mem_map (no load).
    node == NUMA_NO_NODE || s.provider.page_to_nid(NonNull::new(slab).expect("slab")) == node
}

/// `numa_mem_id()`: the node of the CPU we run on; `s` names the instance.
#[inline]
pub(crate) fn numa_mem_id(s: &KmemCache) -> usize {
    numa_mem_id_of(&s.provider, s.nr_nodes)
}

/// [`numa_mem_id`] for callers without a cache (`kmalloc_large_node`): node 0 if the topology
/// names a node beyond the instance's `nr_nodes`.
#[inline]
pub(crate) fn numa_mem_id_of(provider: &PageProvider, nr_nodes: usize) -> usize {
    let n = provider.topology().cpu_to_node(cpu_id());
    if n < nr_nodes {
        n
    } else {
        0
    }
}

/// `cmpxchg_double_slab` / `__cmpxchg_double_slab`: replaces the slab's `{freelist, counters}`
/// if unchanged; counts `CMPXCHG_DOUBLE_FAIL` when not.
#[inline]
pub(crate) fn cmpxchg_double_slab(
    s: &KmemCache,
    slab: *mut Page,
    old: (usize, usize),
    new: (usize, usize),
) -> bool {
    if slab_ref(slab).freelist_counters.cmpxchg(old, new) {
        true
    } else {
        s.stat(CMPXCHG_DOUBLE_FAIL);
        false
    }
}

#[inline]
fn slab_freelist_counters(slab: *mut Page) -> (usize, usize) {
    let p = slab_ref(slab);
    (
        p.freelist_counters.lo(Ordering::Acquire),
        p.freelist_counters.hi(Ordering::Acquire),
    )
}

// ---------------------------------------------------------------------------------------------
// Slab allocation and freeing (new_slab, allocate_slab, free_slab, discard_slab)
// ---------------------------------------------------------------------------------------------

/// `allocate_slab`/`new_slab`: a fresh slab of `s` on `node` (any node for `NUMA_NO_NODE`),
/// trying `oo` first and `min` after (`ORDER_FALLBACK`); objects linked in address order,
/// `inuse = 0`, not frozen. `None` when the provider is out of memory.
pub(crate) fn new_slab(s: &KmemCache, gfp: Gfp, node: usize) -> Option<*mut Page> {
    let nid = if node == NUMA_NO_NODE {
        numa_mem_id(s)
    } else {
        node
    };
    let place = if gfp.contains(Gfp::THISNODE) {
        Gfp::THISNODE
    } else {
        Gfp::KERNEL
    };
    // init_on_free: the kernel's free pages are zero (zeroed when freed); the provider's are
    // not, so a slab of such a cache is zeroed when it is made.
    let place = crate::hooks::new_slab_gfp(s, place);
    let mut oo = s.oo;
    let mut page = s.provider.alloc_pages_gfp(
        nid,
        oo.order(),
        Owner::Slub,
        place | Gfp::NOWARN | Gfp::NORETRY,
    );
    if page.is_none() {
        oo = s.min;
        page = s
            .provider
            .alloc_pages_gfp(nid, oo.order(), Owner::Slub, place);
        page?;
        s.stat(ORDER_FALLBACK);
    }
    let page = page?;
    let slab = page.as_ptr();
    let p = slab_ref(slab);
    let objects = oo.objects();
    let base = s.provider.page_address(page).as_ptr() as usize;
    let start = base + s.red_left_pad;
    if s.debug {
        crate::debug::setup_slab_debug(s, base, oo.order());
    }
    for idx in 0..objects {
        let obj = start + idx * s.size;
        if s.debug {
            crate::debug::setup_object_debug(s, obj);
        }
        if let Some(ctor) = s.ctor {
            // SAFETY: setup_object: the object is fresh memory of object_size bytes, the
            // constructor's contract.
            unsafe { ctor(obj as *mut u8) };
        }
        let next = if idx + 1 < objects { obj + s.size } else { 0 };
        set_freepointer(s, obj, next);
    }
    p.slab_cache
        .store(core::ptr::from_ref(s) as usize, Ordering::Relaxed);
    p.freelist_counters.set_lo(start, Ordering::Relaxed);
    p.freelist_counters.set_hi(
        SlabCounters {
            inuse: 0,
            objects: objects as u16,
            frozen: false,
        }
        .pack(),
        Ordering::Relaxed,
    );
    p.set_flags(PG_SLAB);
    Some(slab)
}

/// `free_slab`/`__free_slab`: clears the slab state and gives the pages back.
///
/// # Safety
/// The slab is off every list and CPU slot, no object of it is in use, nobody touches it after.
pub(crate) unsafe fn free_slab(s: &KmemCache, slab: *mut Page) {
    let p = slab_ref(slab);
    let order = p.order as usize;
    p.clear_flags(PG_SLAB);
    p.slab_cache.store(0, Ordering::Relaxed);
    // SAFETY: per the caller the block is ours and unused.
    let r = unsafe {
        s.provider
            .free_pages(NonNull::new(slab).expect("slab"), order)
    };
    debug_assert!(r.is_ok(), "free_slab: {r:?}");
}

/// `discard_slab`: `dec_slabs_node` and `free_slab`.
///
/// # Safety
/// As [`free_slab`].
pub(crate) unsafe fn discard_slab(s: &KmemCache, slab: *mut Page) {
    let c = counters_of(slab);
    s.get_node(slab_nid(s, slab))
        .dec_slabs_node(c.objects as usize);
    // SAFETY: forwarded.
    unsafe { free_slab(s, slab) };
}

// ---------------------------------------------------------------------------------------------
// Allocation slow path
// ---------------------------------------------------------------------------------------------

/// `get_freelist`: takes the CPU slab's whole freelist (objects freed to it remotely),
/// `inuse = objects`, `frozen = freelist != NULL`. Called under `c->lock`.
fn get_freelist(s: &KmemCache, slab: *mut Page) -> usize {
    loop {
        let (freelist, counters) = slab_freelist_counters(slab);
        let mut new = SlabCounters::unpack(counters);
        debug_assert!(new.frozen);
        new.inuse = new.objects;
        new.frozen = freelist != 0;
        if cmpxchg_double_slab(s, slab, (freelist, counters), (0, new.pack())) {
            return freelist;
        }
    }
}

/// `acquire_slab`: freezes a slab of the node's partial list and takes it off the list. With
/// `take_all` its freelist is taken too (for the CPU slab). Returns the freelist, 0 on a race.
fn acquire_slab(
    s: &KmemCache,
    n: &KmemCacheNode,
    g: &ListGuard<'_>,
    slab: *mut Page,
    take_all: bool,
) -> usize {
    let (freelist, counters) = slab_freelist_counters(slab);
    let mut new = SlabCounters::unpack(counters);
    let new_freelist = if take_all {
        new.inuse = new.objects;
        0
    } else {
        freelist
    };
    debug_assert!(!new.frozen);
    new.frozen = true;
    if !cmpxchg_double_slab(s, slab, (freelist, counters), (new_freelist, new.pack())) {
        return 0;
    }
    n.remove_partial(g, slab);
    debug_assert!(freelist != 0);
    freelist
}

/// `get_partial_node`: the first slab of the node's partial list becomes the CPU slab (its
/// freelist returned, the slab in `*pslab`); more go to the per-CPU partial list until more
/// than `cpu_partial_slabs / 2` were taken.
fn get_partial_node(
    s: &KmemCache,
    n: &KmemCacheNode,
    c: &KmemCacheCpu,
    pslab: &mut *mut Page,
) -> usize {
    // Racy check: if we mistakenly see no partial slabs we allocate a new one.
    if n.nr_partial.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let mut object = 0;
    let mut partial_slabs = 0;
    let g = n.lock();
    // SAFETY: list_lock held for the walk; only the yielded entry is removed.
    for link in unsafe { common::list::ListHead::iter(g.partial()) } {
        let slab = crate::node::slab_of(link);
        let t = acquire_slab(s, n, &g, slab, object == 0);
        if t == 0 {
            break;
        }
        if object == 0 {
            *pslab = slab;
            s.stat(ALLOC_FROM_PARTIAL);
            object = t;
        } else {
            put_cpu_partial(s, c, slab, false);
            s.stat(CPU_PARTIAL_NODE);
            partial_slabs += 1;
        }
        if !s.has_cpu_partial || partial_slabs > s.cpu_partial_slabs.load(Ordering::Relaxed) / 2 {
            break;
        }
    }
    object
}

/// `get_cycles()`.
#[inline]
pub(crate) fn get_cycles() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions in user mode on Linux.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        cpu_id() as u64
    }
}

/// `get_any_partial`: partial slabs from other nodes, nearest first, if
/// `remote_node_defrag_ratio` allows and the node has more than `min_partial`.
fn get_any_partial(s: &KmemCache, c: &KmemCacheCpu, pslab: &mut *mut Page) -> usize {
    let ratio = s.remote_node_defrag_ratio.load(Ordering::Relaxed);
    if ratio == 0 || (get_cycles() % 1024) as usize > ratio {
        return 0;
    }
    let order = s.provider.topology().nodes_by_distance(numa_mem_id(s));
    let min_partial = s.min_partial.load(Ordering::Relaxed);
    for &nid in &order[..s.nr_nodes] {
        let n = s.get_node(nid as usize);
        if n.nr_partial.load(Ordering::Relaxed) > min_partial {
            let object = get_partial_node(s, n, c, pslab);
            if object != 0 {
                return object;
            }
        }
    }
    0
}

/// `get_partial`: from the requested (or local) node, then — only without a node
/// preference — from any node.
fn get_partial(s: &KmemCache, node: usize, c: &KmemCacheCpu, pslab: &mut *mut Page) -> usize {
    let searchnode = if node == NUMA_NO_NODE {
        numa_mem_id(s)
    } else {
        node
    };
    let object = get_partial_node(s, s.get_node(searchnode), c, pslab);
    if object != 0 || node != NUMA_NO_NODE {
        return object;
    }
    get_any_partial(s, c, pslab)
}

/// States of `___slab_alloc`, named after its labels.
enum Step {
    RereadSlab,
    Redo(*mut Page),
    DeactivateSlab(*mut Page),
    NewSlab,
    NewObjects,
    RetryLoadSlab(*mut Page, usize),
}

/// `__slab_alloc`.
#[cold]
#[inline(never)]
pub(crate) fn __slab_alloc(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    node: usize,
    c: &KmemCacheCpu,
) -> Option<usize> {
    if s.debug {
        let object =
            crate::debug::alloc_debug(sl, s, gfp, node, s.object_size.load(Ordering::Relaxed));
        return (object != 0).then_some(object);
    }
    let object = ___slab_alloc(s, gfp, node, c);
    (object != 0).then_some(object)
}

/// `___slab_alloc`: see the module header. Returns an object or 0 (out of memory).
fn ___slab_alloc(s: &KmemCache, gfp: Gfp, node: usize, c: &KmemCacheCpu) -> usize {
    let mut node = node;
    let node_valid = |n: usize| n < s.nr_nodes;
    s.stat(ALLOC_SLOWPATH);
    let mut step = Step::RereadSlab;
    loop {
        step = match step {
            Step::RereadSlab => {
                let slab = c.slab.load(Ordering::Acquire);
                if slab.is_null() {
                    if node != NUMA_NO_NODE && !node_valid(node) {
                        node = NUMA_NO_NODE;
                    }
                    Step::NewSlab
                } else {
                    Step::Redo(slab)
                }
            }
            Step::Redo(slab) => {
                if !node_match(s, slab, node) {
                    if !node_valid(node) {
                        node = NUMA_NO_NODE;
                    } else {
                        s.stat(ALLOC_NODE_MISMATCH);
                        step = Step::DeactivateSlab(slab);
                        continue;
                    }
                }
                c.lock.lock();
                if slab != c.slab.load(Ordering::Relaxed) {
                    c.lock.unlock();
                    step = Step::RereadSlab;
                    continue;
                }
                let old = c.begin_update();
                let mut freelist = old.0;
                if freelist == 0 {
                    freelist = get_freelist(s, slab);
                    if freelist == 0 {
                        c.slab.store(core::ptr::null_mut(), Ordering::Release);
                        c.end_update(old, 0);
                        c.lock.unlock();
                        s.stat(DEACTIVATE_BYPASS);
                        step = Step::NewSlab;
                        continue;
                    }
                    s.stat(ALLOC_REFILL);
                }
                // load_freelist
                let next = get_freepointer(s, freelist);
                c.end_update(old, next);
                c.lock.unlock();
                return freelist;
            }
            Step::DeactivateSlab(slab) => {
                c.lock.lock();
                if slab != c.slab.load(Ordering::Relaxed) {
                    c.lock.unlock();
                    Step::RereadSlab
                } else {
                    let old = c.begin_update();
                    c.slab.store(core::ptr::null_mut(), Ordering::Release);
                    c.end_update(old, 0);
                    c.lock.unlock();
                    deactivate_slab(s, slab, old.0);
                    Step::NewSlab
                }
            }
            Step::NewSlab => {
                if c.partial.load(Ordering::Relaxed).is_null() {
                    Step::NewObjects
                } else {
                    c.lock.lock();
                    if !c.slab.load(Ordering::Relaxed).is_null() {
                        c.lock.unlock();
                        Step::RereadSlab
                    } else {
                        let p = c.partial.load(Ordering::Relaxed);
                        if p.is_null() {
                            c.lock.unlock();
                            Step::NewObjects
                        } else {
                            let old = c.begin_update();
                            debug_assert_eq!(old.0, 0);
                            c.slab.store(p, Ordering::Release);
                            c.partial
                                .store(slab_ref(p).private as *mut Page, Ordering::Relaxed);
                            c.end_update(old, old.0);
                            c.lock.unlock();
                            s.stat(CPU_PARTIAL_ALLOC);
                            Step::Redo(p)
                        }
                    }
                }
            }
            Step::NewObjects => {
                let mut pslab = core::ptr::null_mut();
                let freelist = get_partial(s, node, c, &mut pslab);
                if freelist != 0 {
                    Step::RetryLoadSlab(pslab, freelist)
                } else {
                    let Some(slab) = new_slab(s, gfp, node) else {
                        // slab_out_of_memory
                        return 0;
                    };
                    s.stat(ALLOC_SLAB);
                    let p = slab_ref(slab);
                    let freelist = p.freelist_counters.lo(Ordering::Relaxed);
                    let mut cnt = SlabCounters::unpack(p.freelist_counters.hi(Ordering::Relaxed));
                    cnt.inuse = cnt.objects;
                    cnt.frozen = true;
                    // The slab is not published yet: plain stores.
                    p.freelist_counters.set_lo(0, Ordering::Relaxed);
                    p.freelist_counters.set_hi(cnt.pack(), Ordering::Release);
                    s.get_node(slab_nid(s, slab))
                        .inc_slabs_node(cnt.objects as usize);
                    Step::RetryLoadSlab(slab, freelist)
                }
            }
            Step::RetryLoadSlab(slab, freelist) => {
                c.lock.lock();
                let cur = c.slab.load(Ordering::Relaxed);
                if cur.is_null() {
                    let old = c.begin_update();
                    debug_assert_eq!(old.0, 0);
                    c.slab.store(slab, Ordering::Release);
                    let next = get_freepointer(s, freelist);
                    c.end_update(old, next);
                    c.lock.unlock();
                    return freelist;
                }
                let old = c.begin_update();
                c.slab.store(core::ptr::null_mut(), Ordering::Release);
                c.end_update(old, 0);
                c.lock.unlock();
                deactivate_slab(s, cur, old.0);
                s.stat(CPUSLAB_FLUSH);
                Step::RetryLoadSlab(slab, freelist)
            }
        };
    }
}

/// `deactivate_slab`: returns a CPU slab and its CPU freelist to the node: splices the CPU
/// freelist in front of the slab's, unfreezes, then discards (empty, enough partials), adds to
/// the partial list (head, or tail if there were remote frees) or leaves it unlisted (full).
pub(crate) fn deactivate_slab(s: &KmemCache, slab: *mut Page, freelist: usize) {
    let n = s.get_node(slab_nid(s, slab));
    let mut tail = false;
    if slab_ref(slab).freelist_counters.lo(Ordering::Acquire) != 0 {
        s.stat(DEACTIVATE_REMOTE_FREES);
        tail = true;
    }
    if s.era_2_6_32 {
        // 2.6.32 `deactivate_slab`: a slab with hot objects from the CPU freelist goes to the
        // head, otherwise to the tail.
        tail = freelist == 0;
    }
    // Stage one: count the CPU freelist and find its tail.
    let mut free_delta = 0u16;
    let mut freelist_tail = 0;
    let mut iter = freelist;
    let limit = counters_of(slab).objects;
    while iter != 0 && free_delta < limit {
        let next = get_freepointer(s, iter);
        freelist_tail = iter;
        free_delta += 1;
        iter = next;
    }
    // Stage two: unfreeze while splicing.
    loop {
        let (old_fl, old_c) = slab_freelist_counters(slab);
        let mut new = SlabCounters::unpack(old_c);
        debug_assert!(new.frozen);
        let new_fl = if freelist_tail != 0 {
            new.inuse -= free_delta;
            set_freepointer(s, freelist_tail, old_fl);
            freelist
        } else {
            old_fl
        };
        new.frozen = false;
        let min_partial = s.min_partial.load(Ordering::Relaxed);
        let (free, guard) = if new.inuse == 0 && n.nr_partial.load(Ordering::Relaxed) >= min_partial
        {
            (true, None)
        } else if new_fl != 0 {
            (false, Some(n.lock()))
        } else {
            (false, None)
        };
        if !cmpxchg_double_slab(s, slab, (old_fl, old_c), (new_fl, new.pack())) {
            drop(guard);
            continue;
        }
        if let Some(g) = guard {
            n.add_partial(&g, slab, tail);
            drop(g);
            s.stat(if tail {
                DEACTIVATE_TO_TAIL
            } else {
                DEACTIVATE_TO_HEAD
            });
        } else if free {
            s.stat(DEACTIVATE_EMPTY);
            // SAFETY: the slab was just unfrozen with inuse 0 and is on no list.
            unsafe { discard_slab(s, slab) };
            s.stat(FREE_SLAB);
        } else {
            s.stat(DEACTIVATE_FULL);
        }
        return;
    }
}

// ---------------------------------------------------------------------------------------------
// Per-CPU partial lists
// ---------------------------------------------------------------------------------------------

/// `__unfreeze_partials`: unfreezes a chain of per-CPU partial slabs onto their nodes' partial
/// lists (tail), discarding empty ones beyond `min_partial`.
pub(crate) fn __unfreeze_partials(s: &KmemCache, partial: *mut Page) {
    let mut partial = partial;
    let mut cur: Option<(&KmemCacheNode, ListGuard<'_>)> = None;
    let mut slab_to_discard: *mut Page = core::ptr::null_mut();
    let min_partial = s.min_partial.load(Ordering::Relaxed);
    while !partial.is_null() {
        let slab = partial;
        partial = slab_ref(slab).private as *mut Page;
        let n2 = s.get_node(slab_nid(s, slab));
        if cur.as_ref().is_none_or(|(n, _)| !core::ptr::eq(*n, n2)) {
            drop(cur.take());
            cur = Some((n2, n2.lock()));
        }
        let (n, g) = cur.as_ref().expect("node locked");
        let new = loop {
            let (fl, counters) = slab_freelist_counters(slab);
            let mut new = SlabCounters::unpack(counters);
            debug_assert!(new.frozen);
            new.frozen = false;
            if cmpxchg_double_slab(s, slab, (fl, counters), (fl, new.pack())) {
                break new;
            }
        };
        if new.inuse == 0 && n.nr_partial.load(Ordering::Relaxed) >= min_partial {
            // SAFETY: the slab is ours (unfrozen, on no list); `private` links the discard chain.
            unsafe { core::ptr::addr_of_mut!((*slab).private).write(slab_to_discard as usize) };
            slab_to_discard = slab;
        } else {
            n.add_partial(g, slab, true);
            s.stat(FREE_ADD_PARTIAL);
        }
    }
    drop(cur);
    while !slab_to_discard.is_null() {
        let slab = slab_to_discard;
        slab_to_discard = slab_ref(slab).private as *mut Page;
        s.stat(DEACTIVATE_EMPTY);
        // SAFETY: empty, unfrozen, on no list.
        unsafe { discard_slab(s, slab) };
        s.stat(FREE_SLAB);
    }
}

/// `put_cpu_partial`: pushes a frozen slab on `c`'s partial chain; with `drain`, a chain that
/// already holds `cpu_partial_slabs` is unfrozen first (`CPU_PARTIAL_DRAIN`).
pub(crate) fn put_cpu_partial(s: &KmemCache, c: &KmemCacheCpu, slab: *mut Page, drain: bool) {
    let mut slab_to_unfreeze = core::ptr::null_mut();
    c.lock.lock();
    let mut oldslab = c.partial.load(Ordering::Relaxed);
    let mut slabs = 0;
    if !oldslab.is_null() {
        if drain && slab_ref(oldslab).slabs as usize >= s.cpu_partial_slabs.load(Ordering::Relaxed)
        {
            slab_to_unfreeze = oldslab;
            oldslab = core::ptr::null_mut();
        } else {
            slabs = slab_ref(oldslab).slabs;
        }
    }
    slabs += 1;
    // SAFETY: the slab is frozen for this CPU slot and its chain fields are ours under c->lock.
    unsafe {
        core::ptr::addr_of_mut!((*slab).slabs).write(slabs);
        core::ptr::addr_of_mut!((*slab).private).write(oldslab as usize);
    }
    c.partial.store(slab, Ordering::Relaxed);
    c.lock.unlock();
    if !slab_to_unfreeze.is_null() {
        __unfreeze_partials(s, slab_to_unfreeze);
        s.stat(CPU_PARTIAL_DRAIN);
    }
}

// ---------------------------------------------------------------------------------------------
// Free slow path
// ---------------------------------------------------------------------------------------------

/// `__slab_free`: frees `cnt` objects `head..tail` (already chained) to their slab by cmpxchg on
/// its `{freelist, counters}`; freezes a slab that was full onto this CPU's partial list, and
/// manages the node lists when a slab becomes empty.
///
/// # Safety
/// The objects are allocated objects of `slab`, a slab of `s`, and are not used after.
#[cold]
#[inline(never)]
pub(crate) unsafe fn __slab_free(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    let slab = slab.as_ptr();
    s.stat(FREE_SLOWPATH);
    if s.debug {
        return crate::debug::free_to_partial_list(sl, s, slab, head, tail, cnt);
    }
    let n = s.get_node(slab_nid(s, slab));
    let mut guard: Option<ListGuard<'_>>;
    let (prior, new, was_frozen) = loop {
        let (prior, counters) = slab_freelist_counters(slab);
        let mut new = SlabCounters::unpack(counters);
        if naive_double_free(s, tail, prior) || new.inuse < cnt {
            return Err(SlabError::DoubleFree(head));
        }
        set_freepointer(s, tail, prior);
        let was_frozen = new.frozen;
        new.inuse -= cnt;
        guard = None;
        if (new.inuse == 0 || prior == 0) && !was_frozen {
            if s.has_cpu_partial && prior == 0 {
                // Freeze a slab that was full: it goes to this CPU's partial list, no lock.
                new.frozen = true;
            } else {
                guard = Some(n.lock());
            }
        }
        if cmpxchg_double_slab(s, slab, (prior, counters), (head, new.pack())) {
            break (prior, new, was_frozen);
        }
        drop(guard.take());
    };
    let Some(g) = guard else {
        if was_frozen {
            s.stat(FREE_FROZEN);
        } else if new.frozen {
            put_cpu_partial(s, s.cpu_slab.this_cpu(), slab, true);
            s.stat(CPU_PARTIAL_FREE);
        }
        return Ok(());
    };
    // 2.6.32 `__slab_free` discards an empty slab whatever nr_partial is (min_partial only
    // applies on deactivation there).
    if new.inuse == 0
        && (s.era_2_6_32
            || n.nr_partial.load(Ordering::Relaxed) >= s.min_partial.load(Ordering::Relaxed))
    {
        // slab_empty
        if prior != 0 {
            n.remove_partial(&g, slab);
            s.stat(FREE_REMOVE_PARTIAL);
        } else {
            // Was full: on the full list if the cache had one (only STORE_USER debug caches,
            // which free through free_to_partial_list, so a no-op here as in 6.4).
            n.remove_full(s, &g, slab);
        }
        drop(g);
        s.stat(FREE_SLAB);
        // SAFETY: empty, unfrozen, just taken off the partial list (or was unlisted full).
        unsafe { discard_slab(s, slab) };
        return Ok(());
    }
    if !s.has_cpu_partial && prior == 0 {
        // Was full: remove_full (a no-op without STORE_USER) + add to the partial tail.
        n.remove_full(s, &g, slab);
        n.add_partial(&g, slab, true);
        s.stat(FREE_ADD_PARTIAL);
    }
    drop(g);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Flushing
// ---------------------------------------------------------------------------------------------

/// `__flush_cpu_slab` (`flush_slab` + `unfreeze_partials_cpu`) for one CPU slot.
pub(crate) fn __flush_cpu_slab(s: &KmemCache, c: &KmemCacheCpu) {
    c.lock.lock();
    let slab = c.slab.load(Ordering::Relaxed);
    let mut freelist = 0;
    if !slab.is_null() {
        let old = c.begin_update();
        freelist = old.0;
        c.slab.store(core::ptr::null_mut(), Ordering::Release);
        c.end_update(old, 0);
    }
    let partial = c.partial.swap(core::ptr::null_mut(), Ordering::Relaxed);
    c.lock.unlock();
    if !slab.is_null() {
        deactivate_slab(s, slab, freelist);
        s.stat(CPUSLAB_FLUSH);
    }
    if !partial.is_null() {
        __unfreeze_partials(s, partial);
    }
}

/// `flush_all`: every CPU slot's slab and partial chain back to the nodes.
pub(crate) fn flush_all(s: &KmemCache) {
    for (_, c) in s.cpu_slab.iter() {
        __flush_cpu_slab(s, c);
    }
}
