//! The era-7.0 slab path: SLUB without `kmem_cache_cpu`. When the percpu sheaves
//! cannot serve an allocation (`sheaf.rs`), or to refill a sheaf, objects come straight from
//! the node partial lists or a new slab — no CPU slab, no per-CPU partial list, no tid
//! (Linux 7.0 "slab: replace cpu (partial) slabs with sheaves": `___slab_alloc`,
//! `get_from_partial_node`, `get_from_any_partial`, `refill_objects`, `alloc_from_new_slab`).
//!
//! ```text
//! __slab_alloc_node (7.0)          one object, sheaves failed or absent
//!   └ ___slab_alloc                 ALLOC_SLOWPATH; debug caches → debug::alloc_debug
//!       ├ get_from_partial          requested/local node, then get_from_any_partial
//!       │   └ get_partial_node_bulk  under list_lock: objects by cmpxchg of {freelist, counters}
//!       └ new_slab → alloc_from_new_slab   ALLOC_SLAB; the rest of the slab to the partial head
//! refill_objects(p, min)           bulk: local partial slabs, other nodes' (nearest first, as
//!                                   remote_node_defrag_ratio allows), then new slabs
//! ```
//!
//! # Invariants (7.0 era)
//! - No slab is ever frozen. A slab with free objects and objects in use is on its node's
//!   partial list except while `list_lock` is held by the code taking objects from it; a
//!   slab with no free object is on no list (non-debug caches, as in 6.4).
//! - Objects are taken from a *listed* slab only under its node's `list_lock`, by `cmpxchg` of
//!   `{freelist, counters}` (a concurrent `__slab_free` pushes without the lock, so the walk
//!   from the head we read stays valid: pushes never touch objects already on the freelist,
//!   and nobody else can pop while we hold the lock).
//! - `__slab_free` is the 6.4 one with `has_cpu_partial == false`: it takes `list_lock` before
//!   its `cmpxchg` whenever the slab was full or becomes empty, so it never races the list
//!   manipulation here.
//!
//! # Deviation from 7.0
//! 7.0's `get_partial_node_bulk` *isolates* partial slabs (takes them off the list, marked
//! `!SL_partial`) and then grabs their whole freelists with `get_freelist_nofreeze` outside
//! the lock; its `__slab_free` checks `SL_partial` before touching the list. We have no
//! `SL_partial` bit in the shared `Page`, so `get_partial_node_bulk` here takes at most the
//! objects it needs from each listed slab by `cmpxchg` under `list_lock` (what 7.0's
//! single-object `get_from_partial_node` does, generalised to `k` objects) and leaves the
//! slab listed while it keeps free objects. Objects per lock round trip are the same; the
//! unchanged 6.4 `__slab_free` stays correct.

use crate::cache::KmemCache;
use crate::freeptr::get_freepointer;
use crate::node::{slab_of, KmemCacheNode};
use crate::slowpath::{cmpxchg_double_slab, get_cycles, new_slab, numa_mem_id, slab_nid};
use crate::stats::StatItem::{ALLOC_SLAB, ALLOC_SLOWPATH};
use crate::{Slub, NUMA_NO_NODE};
use common::list::ListHead;
use common::{Gfp, Page, SlabCounters};
use core::sync::atomic::Ordering;

/// `get_partial_node_bulk` (see the module header for how it differs): fills `out` from the
/// partial slabs of `n`, taking objects by `cmpxchg` under `list_lock`; a slab left without
/// free objects is taken off the list. Returns how many were taken.
pub(crate) fn get_partial_node_bulk(s: &KmemCache, n: &KmemCacheNode, out: &mut [usize]) -> usize {
    // Racy check to avoid taking the lock unnecessarily.
    if out.is_empty() || n.nr_partial.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let g = n.lock();
    let mut got = 0;
    // SAFETY: list_lock held for the walk; only the yielded entry is removed.
    for link in unsafe { ListHead::iter(g.partial()) } {
        if got == out.len() {
            break;
        }
        let slab = slab_of(link);
        // SAFETY: a slab on our partial list: its descriptor lives as long as the cache.
        let p = unsafe { &*slab };
        loop {
            let fl = p.freelist_counters.lo(Ordering::Acquire);
            let counters = p.freelist_counters.hi(Ordering::Acquire);
            let mut c = SlabCounters::unpack(counters);
            debug_assert!(!c.frozen, "7.0 slabs are never frozen");
            let mut object = fl;
            let mut k = 0;
            while object != 0 && got + k < out.len() {
                out[got + k] = object;
                object = get_freepointer(s, object);
                k += 1;
            }
            c.inuse += k as u16;
            if cmpxchg_double_slab(s, slab, (fl, counters), (object, c.pack())) {
                if object == 0 {
                    n.remove_partial(&g, slab);
                }
                got += k;
                break;
            }
            // A concurrent __slab_free pushed onto the freelist: read it again.
        }
    }
    got
}

/// `alloc_from_new_slab`: takes up to `out.len()` objects of a fresh, unpublished slab; the
/// rest of the slab goes to the head of its node's partial list. Returns the count.
pub(crate) fn alloc_from_new_slab(s: &KmemCache, slab: *mut Page, out: &mut [usize]) -> usize {
    // SAFETY: a fresh slab from new_slab: ours alone until add_partial publishes it.
    let p = unsafe { &*slab };
    let mut c = SlabCounters::unpack(p.freelist_counters.hi(Ordering::Relaxed));
    let mut object = p.freelist_counters.lo(Ordering::Relaxed);
    let mut allocated = 0;
    while object != 0 && allocated < out.len() {
        out[allocated] = object;
        object = get_freepointer(s, object);
        allocated += 1;
    }
    c.inuse = allocated as u16;
    let needs_add_partial = object != 0;
    p.freelist_counters.set_lo(object, Ordering::Relaxed);
    p.freelist_counters.set_hi(c.pack(), Ordering::Release);
    let n = s.get_node(slab_nid(s, slab));
    // Counted before it is listed, so validate never sees more listed slabs than nr_slabs.
    n.inc_slabs_node(c.objects as usize);
    if needs_add_partial {
        let g = n.lock();
        n.add_partial(&g, slab, false);
    }
    allocated
}

/// `get_from_any_partial`: partial slabs of other nodes (nearest first), if
/// `remote_node_defrag_ratio` allows and the node keeps more than `min_partial`.
fn get_from_any_partial(s: &KmemCache, skip: usize, out: &mut [usize]) -> usize {
    let ratio = s.remote_node_defrag_ratio.load(Ordering::Relaxed);
    if ratio == 0 || (get_cycles() % 1024) as usize > ratio || s.nr_nodes < 2 {
        return 0;
    }
    let topo = s.provider.topology();
    // Nodes by distance from `skip`, ties by id (no heap: a selection over a small array).
    let mut order = [0usize; common::MAX_NUMNODES];
    let mut nr = 0;
    for node in 0..s.nr_nodes {
        if node != skip {
            order[nr] = node;
            nr += 1;
        }
    }
    order[..nr].sort_unstable_by_key(|&b| (topo.node_distance(skip, b), b));
    let mut got = 0;
    for &node in &order[..nr] {
        let n = s.get_node(node);
        if n.nr_partial.load(Ordering::Relaxed) > s.min_partial.load(Ordering::Relaxed) {
            got += get_partial_node_bulk(s, n, &mut out[got..]);
            if got == out.len() {
                break;
            }
        }
    }
    got
}

/// `get_from_partial`: the requested (or local) node, then — without `__GFP_THISNODE` on a
/// requested node — any node.
fn get_from_partial(s: &KmemCache, node: usize, gfp: Gfp, out: &mut [usize]) -> usize {
    let searchnode = if node == NUMA_NO_NODE {
        numa_mem_id(s)
    } else {
        node
    };
    let got = get_partial_node_bulk(s, s.get_node(searchnode), out);
    if got == out.len() || (node != NUMA_NO_NODE && gfp.contains(Gfp::THISNODE)) {
        return got;
    }
    got + get_from_any_partial(s, searchnode, &mut out[got..])
}

/// `___slab_alloc` of 7.0: one object from a partial slab or a new slab (0 when out of
/// memory). Debug caches take the 6.4 debug path, which never used a CPU slab.
#[cold]
#[inline(never)]
pub(crate) fn ___slab_alloc(sl: &Slub, s: &KmemCache, gfp: Gfp, node: usize) -> usize {
    if s.debug {
        return crate::debug::alloc_debug(sl, s, gfp, node, s.object_size.load(Ordering::Relaxed));
    }
    s.stat(ALLOC_SLOWPATH);
    let mut object = [0usize; 1];
    // A requested node is tried alone first (7.0: `__GFP_THISNODE` in pc.flags), then with
    // the caller's flags, which may fall back to other nodes.
    let mut try_thisnode = node != NUMA_NO_NODE && !gfp.contains(Gfp::THISNODE);
    loop {
        let pgfp = if try_thisnode {
            gfp | Gfp::THISNODE
        } else {
            gfp
        };
        if get_from_partial(s, node, pgfp, &mut object) == 1 {
            return object[0];
        }
        let Some(slab) = new_slab(s, pgfp, node) else {
            if try_thisnode {
                try_thisnode = false;
                continue;
            }
            return 0;
        };
        s.stat(ALLOC_SLAB);
        if alloc_from_new_slab(s, slab, &mut object) == 1 {
            return object[0];
        }
    }
}

/// `refill_objects(s, p, gfp, min, max)`: fills `out` (max = `out.len()`) from the local
/// partial slabs, then from new slabs, stopping early only when out of memory. Returns the
/// count (less than `min` only when out of memory; the caller frees what it got).
pub(crate) fn refill_objects(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    out: &mut [usize],
    min: usize,
) -> usize {
    if s.debug {
        // Debug caches: one object at a time through the debug path (checks, tracks, the
        // full list), as their `___slab_alloc` does.
        for (i, slot) in out.iter_mut().enumerate() {
            let o = ___slab_alloc(sl, s, gfp, NUMA_NO_NODE);
            if o == 0 {
                return i;
            }
            *slot = o;
        }
        return out.len();
    }
    let local = numa_mem_id(s);
    let mut got = get_partial_node_bulk(s, s.get_node(local), out);
    if got < min.min(out.len()) {
        // `__refill_objects_node` on the other nodes (7.0 final; v2 had a TODO here).
        got += get_from_any_partial(s, local, &mut out[got..]);
    }
    while got < min.min(out.len()) {
        let Some(slab) = new_slab(s, gfp, NUMA_NO_NODE) else {
            return got;
        };
        s.stat(ALLOC_SLAB);
        got += alloc_from_new_slab(s, slab, &mut out[got..]);
    }
    got
}

/// Frees `objs` to their slabs (`__kmem_cache_free_bulk` of 7.0, one object at a time through
/// `__slab_free`), skipping null entries. No free hooks: the objects already ran them.
///
/// # Safety
/// Each entry is a distinct allocated object of `s` (or 0), unused after the call.
pub(crate) unsafe fn free_objects_to_slabs(sl: &Slub, s: &KmemCache, objs: &[usize]) {
    for &o in objs {
        if o == 0 {
            continue;
        }
        let slab = sl
            .provider
            .virt_to_head_page(o)
            .expect("an object of this cache");
        // SAFETY: per the caller; a one-object chain.
        let r = unsafe { crate::slowpath::__slab_free(sl, s, slab, o, o, 1) };
        debug_assert!(r.is_ok(), "__slab_free: {r:?}");
    }
}
