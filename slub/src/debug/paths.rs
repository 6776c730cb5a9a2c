//! The debug alloc and free paths, under the node's `list_lock`: `alloc_debug`
//! (`alloc_single_from_partial` / `_from_new_slab` → `alloc_debug_processing`) and
//! `free_to_partial_list` (`free_debug_processing`).

use super::check::{
    check_object, check_slab, check_valid_pointer, on_freelist, on_freelist_quiet, set_slab,
    slab_ref, SlabRef,
};
use super::layout::{init_object, set_orig_size, set_track};
use super::report::{blank, object_err, report, slab_err, slab_fix, ReportKind};
use super::{SLUB_RED_ACTIVE, SLUB_RED_INACTIVE};
use crate::cache::KmemCache;
use crate::freeptr::{get_freepointer, set_freepointer};
use crate::node::{counters_of, KmemCacheNode};
use crate::slowpath::{free_slab, new_slab, numa_mem_id, slab_nid};
use crate::stats::StatItem::{ALLOC_SLAB, ALLOC_SLOWPATH, FREE_ADD_PARTIAL, FREE_REMOVE_PARTIAL};
use crate::{Slub, NUMA_NO_NODE};
use common::{Gfp, Page, SlabCounters, SlabError, SlabFlags};
use core::sync::atomic::Ordering;

/// `alloc_debug_processing` (list_lock held or slab not yet published).
fn alloc_debug_processing(
    sl: &Slub,
    s: &KmemCache,
    sr: &SlabRef,
    object: usize,
    orig_size: usize,
) -> bool {
    if s.flags.contains(SlabFlags::CONSISTENCY_CHECKS) {
        let ok = check_slab(sl, s, sr)
            && if check_valid_pointer(s, sr, object) {
                check_object(sl, s, sr, object, SLUB_RED_INACTIVE)
            } else {
                object_err(sl, s, sr.base, object, "Freelist Pointer check fails");
                false
            };
        if !ok {
            // Mark every object used so the corrupt ones are never touched again.
            slab_fix(sl, s, sr.base, "Marking all objects used");
            let mut c = counters_of(sr.page);
            c.inuse = c.objects;
            set_slab(s, sr.page, 0, c);
            return false;
        }
    }
    set_orig_size(s, object, orig_size);
    init_object(s, object, SLUB_RED_ACTIVE);
    true
}

/// Pops one object off an unfrozen listed slab (list_lock held): `alloc_single_from_partial`.
fn alloc_single_from_partial(
    sl: &Slub,
    s: &KmemCache,
    n: &KmemCacheNode,
    g: &crate::node::ListGuard<'_>,
    slab: *mut Page,
    orig_size: usize,
) -> usize {
    let sr = slab_ref(sl, slab);
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*slab };
    let (object, counters) = p.freelist_counters.load_pair();
    let mut c = SlabCounters::unpack(counters);
    if object == 0 || c.inuse >= c.objects {
        // A full slab on the partial list (not expected): where it belongs.
        n.remove_partial(g, slab);
        n.add_full(s, g, slab);
        return 0;
    }
    let next = if check_valid_pointer(s, &sr, object) {
        get_freepointer(s, object)
    } else {
        0
    };
    c.inuse += 1;
    set_slab(s, slab, next, c);
    if !alloc_debug_processing(sl, s, &sr, object, orig_size) {
        // Every object is marked used now: the kernel leaves the slab on no list; with
        // STORE_USER it goes on the full list here, so every slab stays listed (validate's
        // count) and a later free's remove_full finds it there.
        n.remove_partial(g, slab);
        n.add_full(s, g, slab);
        return 0;
    }
    if c.inuse == c.objects {
        n.remove_partial(g, slab);
        n.add_full(s, g, slab);
    }
    object
}

/// The first slab on a node's partial list.
fn first_partial(g: &crate::node::ListGuard<'_>) -> Option<*mut Page> {
    // SAFETY: the guard proves list_lock is held for the walk.
    let link = unsafe { common::list::ListHead::iter(g.partial()) }.next()?;
    Some(crate::node::slab_of(link))
}

/// The debug branch of `___slab_alloc`: an object from a node partial slab or a new slab,
/// under the node's `list_lock`, through `alloc_debug_processing`; never a CPU slab.
#[cold]
#[inline(never)]
pub(crate) fn alloc_debug(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    node: usize,
    orig_size: usize,
) -> usize {
    s.stat(ALLOC_SLOWPATH);
    let first = if node == NUMA_NO_NODE || node >= s.nr_nodes {
        numa_mem_id(s).min(s.nr_nodes - 1)
    } else {
        node
    };
    let any = node == NUMA_NO_NODE && !gfp.contains(Gfp::THISNODE);
    for i in 0..s.nr_nodes {
        let nid = (first + i) % s.nr_nodes;
        if i > 0 && !any {
            break;
        }
        let n = s.get_node(nid);
        let g = n.lock();
        while let Some(slab) = first_partial(&g) {
            let object = alloc_single_from_partial(sl, s, n, &g, slab, orig_size);
            if object != 0 {
                drop(g);
                set_track(s, object, false, 0);
                return object;
            }
        }
    }
    // alloc_single_from_new_slab
    loop {
        let Some(slab) = new_slab(s, gfp, node) else {
            return 0;
        };
        s.stat(ALLOC_SLAB);
        let sr = slab_ref(sl, slab);
        // SAFETY: slab descriptor, not published yet.
        let p = unsafe { &*slab };
        let (object, counters) = p.freelist_counters.load_pair();
        let mut c = SlabCounters::unpack(counters);
        c.inuse = 1;
        p.freelist_counters
            .set_lo(get_freepointer(s, object), Ordering::Relaxed);
        p.freelist_counters.set_hi(c.pack(), Ordering::Release);
        let ok = alloc_debug_processing(sl, s, &sr, object, orig_size);
        let n = s.get_node(slab_nid(s, slab));
        let g = n.lock();
        n.inc_slabs_node(c.objects as usize);
        if counters_of(slab).inuse < c.objects {
            n.add_partial(&g, slab, false);
        } else {
            n.add_full(s, &g, slab);
        }
        drop(g);
        if ok {
            set_track(s, object, false, 0);
            return object;
        }
    }
}

/// `free_consistency_checks`.
fn free_consistency_checks(sl: &Slub, s: &KmemCache, sr: &SlabRef, object: usize) -> bool {
    if !check_valid_pointer(s, sr, object) {
        let mut r = blank(s, ReportKind::Slab, "Invalid object pointer", sr.base);
        r.object = object;
        report(sl, s, &r);
        return false;
    }
    if on_freelist(sl, s, sr, object) {
        object_err(sl, s, sr.base, object, "Object already free");
        return false;
    }
    check_object(sl, s, sr, object, SLUB_RED_ACTIVE)
}

/// `free_to_partial_list`: the whole free of a debug cache under the node's `list_lock`
/// (`free_debug_processing`, then the slab's freelist and counters, partial list, discard).
/// A chain that fails the checks is not freed (reported "Object at … not freed", as the
/// kernel leaks it); an object already free gives `DoubleFree`.
#[cold]
#[inline(never)]
pub(crate) fn free_to_partial_list(
    sl: &Slub,
    s: &KmemCache,
    slab: *mut Page,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    let sr = slab_ref(sl, slab);
    let n = s.get_node(slab_nid(s, slab));
    let g = n.lock();
    // free_debug_processing
    let mut ok = true;
    let mut double = false;
    if s.flags.contains(SlabFlags::CONSISTENCY_CHECKS) && !check_slab(sl, s, &sr) {
        ok = false;
    }
    let c0 = counters_of(slab);
    if ok && c0.inuse < cnt {
        slab_err(
            sl,
            s,
            sr.base,
            "Slab has allocated objects but more are to be freed",
            (c0.inuse as usize, cnt as usize),
        );
        ok = false;
        double = true;
    }
    let mut object = head;
    let mut seen = 0u16;
    while ok {
        seen += 1;
        if seen > cnt {
            break;
        }
        if s.flags.contains(SlabFlags::CONSISTENCY_CHECKS)
            && !free_consistency_checks(sl, s, &sr, object)
        {
            ok = false;
            double = on_freelist_quiet(s, &sr, object);
            break;
        }
        let next = if object == tail {
            0
        } else {
            get_freepointer(s, object)
        };
        set_track(s, object, true, 0);
        init_object(s, object, SLUB_RED_INACTIVE);
        if object == tail {
            break;
        }
        object = next;
    }
    if !ok {
        let mut f = blank(s, ReportKind::Fix, "Object not freed", sr.base);
        f.object = object;
        report(sl, s, &f);
        return if double {
            Err(SlabError::DoubleFree(object))
        } else {
            Ok(())
        };
    }
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*slab };
    let (prior, counters) = p.freelist_counters.load_pair();
    let mut c = SlabCounters::unpack(counters);
    c.inuse -= cnt;
    set_freepointer(s, tail, prior);
    set_slab(s, slab, head, c);
    // An empty slab goes away once the node keeps min_partial others, from the full list or
    // the partial one.
    let discard = c.inuse == 0
        && n.nr_partial.load(Ordering::Relaxed) >= s.min_partial.load(Ordering::Relaxed);
    if prior == 0 || c0.inuse == c0.objects {
        // Was full: off the full list (STORE_USER), onto the partial list unless it goes away.
        n.remove_full(s, &g, slab);
        if !discard {
            n.add_partial(&g, slab, true);
            s.stat(FREE_ADD_PARTIAL);
        }
    } else if discard {
        n.remove_partial(&g, slab);
        s.stat(FREE_REMOVE_PARTIAL);
    }
    if discard {
        // dec_slabs_node still under list_lock, so validate never counts more listed slabs
        // than nr_slabs says exist.
        n.dec_slabs_node(c.objects as usize);
    }
    drop(g);
    if discard {
        s.stat(crate::stats::StatItem::FREE_SLAB);
        // SAFETY: empty, unfrozen, off every list and already uncounted; no CPU slot holds
        // debug slabs.
        unsafe { free_slab(s, slab) };
    }
    Ok(())
}
