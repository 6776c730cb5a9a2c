//! `validate_slab_cache` (mm/slub.c 6.4, "Validation of slabs"): flush every CPU slab, then walk
//! each node's partial list (and, for `SLAB_STORE_USER` caches, the full list) and cross-check
//! every slab — `on_freelist` counts, `inuse`,
//! `objects` against the order, frozen state, owner and node — and the node totals. Also the
//! slabinfo 2.1 row (`get_slabinfo`).

use crate::cache::KmemCache;
use crate::freeptr::get_freepointer;
use crate::node::{counters_of, slab_of};
use crate::slowpath::{flush_all, slab_nid};
use crate::Slub;
use common::list::ListHead;
use common::{Page, SlabFlags, SlabInfo, PAGE_SIZE};
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// `check_valid_pointer`: `object` lies in the slab at an object boundary.
fn check_valid_pointer(s: &KmemCache, base: usize, objects: usize, object: usize) -> bool {
    if object == 0 {
        return true;
    }
    let start = base + s.red_left_pad;
    object >= start && (object - start) % s.size == 0 && (object - start) / s.size < objects
}

/// `on_freelist` + `check_slab` for one unfrozen slab on a node list: returns the number of
/// free objects or a description of the inconsistency.
fn validate_slab(sl: &Slub, s: &KmemCache, slab: *mut Page, node: usize) -> Result<usize, String> {
    // SAFETY: slab is a descriptor in mem_map on the node's partial list (lock held by caller).
    let p = unsafe { &*slab };
    let page = NonNull::new(slab).expect("slab");
    let base = sl.provider.page_address(page).as_ptr() as usize;
    if !p.is_slab() {
        return Err(format!("slab {base:#x} on a partial list without PG_slab"));
    }
    if p.cache() != core::ptr::from_ref(s) as usize {
        return Err(format!("slab {base:#x} belongs to another cache"));
    }
    if slab_nid(s, slab) != node {
        return Err(format!(
            "slab {base:#x} of node {} on node {node}'s list",
            slab_nid(s, slab)
        ));
    }
    // One atomic snapshot of {freelist, counters}: remote frees may push onto a listed slab
    // concurrently, but the chain behind a snapshot head stays put (allocation from a listed
    // slab needs the list_lock we hold).
    let (head, counters) = p.freelist_counters.load_pair();
    let c = common::SlabCounters::unpack(counters);
    if c.frozen {
        return Err(format!("frozen slab {base:#x} on a node list"));
    }
    let objects = c.objects as usize;
    let order = p.order as usize;
    let expected = if order == s.oo.order() {
        s.oo.objects()
    } else {
        s.min.objects()
    };
    if objects != expected || objects * s.size > PAGE_SIZE << order {
        return Err(format!(
            "slab {base:#x}: objects {objects}, expected {expected} for order {order}"
        ));
    }
    // on_freelist: walk at most `objects` steps, each pointer valid and seen once.
    let mut seen = [0u64; 512];
    let mut nr = 0;
    let mut fp = head;
    while fp != 0 {
        if nr >= objects {
            return Err(format!(
                "slab {base:#x}: freelist longer than {objects} objects (cycle?)"
            ));
        }
        if !check_valid_pointer(s, base, objects, fp) {
            return Err(format!(
                "slab {base:#x}: freechain corrupt at object #{nr}: {fp:#x}"
            ));
        }
        let idx = crate::cache::obj_to_index(s, base, fp);
        if seen[idx / 64] & (1 << (idx % 64)) != 0 {
            return Err(format!(
                "slab {base:#x}: object {fp:#x} twice on the freelist"
            ));
        }
        seen[idx / 64] |= 1 << (idx % 64);
        nr += 1;
        fp = get_freepointer(s, fp);
    }
    if c.inuse as usize != objects - nr {
        return Err(format!(
            "slab {base:#x}: inuse {} but {} objects and {nr} free",
            c.inuse, objects
        ));
    }
    if nr == 0 {
        return Err(format!("slab {base:#x}: full slab on the partial list"));
    }
    Ok(nr)
}

/// `validate_slab_cache`. Exact when the cache is quiescent; under concurrent use it checks what
/// can be checked (CPU slabs may be refilled right after the flush, as in the kernel).
pub(crate) fn validate_slab_cache(sl: &Slub, s: &KmemCache) -> Result<(), String> {
    flush_all(s);
    for node in 0..s.nr_nodes {
        let n = s.get_node(node);
        let g = n.lock();
        let mut count = 0;
        let mut objs = 0;
        // SAFETY: list_lock held for the walk.
        for link in unsafe { ListHead::iter(g.partial()) } {
            let slab = slab_of(link);
            if s.debug {
                crate::debug::validate_slab(sl, s, slab);
            } else {
                validate_slab(sl, s, slab, node)?;
            }
            objs += counters_of(slab).objects as usize;
            count += 1;
        }
        let nr_partial = n.nr_partial.load(Ordering::Relaxed);
        if count != nr_partial {
            if s.debug {
                crate::debug::report_count_mismatch(
                    sl,
                    s,
                    "partial slabs counted but counter",
                    count,
                    nr_partial,
                );
            }
            return Err(format!(
                "node {node}: {count} partial slabs but nr_partial {nr_partial}"
            ));
        }
        let nr_slabs = n.nr_slabs.load(Ordering::Relaxed);
        if s.flags.contains(SlabFlags::STORE_USER) {
            // validate_slab_node: a STORE_USER cache keeps its full slabs on n->full, so
            // partial + full must be every slab of the node (debug caches have no CPU slabs).
            // SAFETY: list_lock held for the walk.
            for link in unsafe { ListHead::iter(g.full()) } {
                let slab = slab_of(link);
                if slab_nid(s, slab) != node {
                    let base = sl
                        .provider
                        .page_address(core::ptr::NonNull::new(slab).expect("slab"))
                        .as_ptr() as usize;
                    return Err(format!(
                        "node {node}: slab {base:#x} of node {} on this full list",
                        slab_nid(s, slab)
                    ));
                }
                crate::debug::validate_slab(sl, s, slab);
                objs += counters_of(slab).objects as usize;
                count += 1;
            }
            if count != nr_slabs {
                crate::debug::report_count_mismatch(
                    sl,
                    s,
                    "slabs counted but counter",
                    count,
                    nr_slabs,
                );
                return Err(format!(
                    "node {node}: {count} slabs counted (partial + full) but nr_slabs {nr_slabs}"
                ));
            }
        }
        let total = n.total_objects.load(Ordering::Relaxed);
        if count > nr_slabs || objs > total {
            return Err(format!(
                "node {node}: {count} partial slabs / {objs} objects exceed nr_slabs {nr_slabs} / total_objects {total}"
            ));
        }
        if (nr_slabs == 0) != (total == 0) || total > nr_slabs * s.oo.objects().max(s.min.objects())
        {
            return Err(format!(
                "node {node}: nr_slabs {nr_slabs} and total_objects {total} disagree"
            ));
        }
    }
    // Issue 17: the objects held by sheaves and barns (see sheaf.rs, "Invariants").
    crate::sheaf::validate_sheaves(sl, s)?;
    Ok(())
}

/// `get_slabinfo` + `slabinfo_show` for one cache.
pub(crate) fn get_slabinfo(_sl: &Slub, s: &KmemCache) -> SlabInfo {
    let mut nr_slabs = 0;
    let mut nr_objs = 0;
    let mut nr_free = 0;
    for node in 0..s.nr_nodes {
        let n = s.get_node(node);
        nr_slabs += n.nr_slabs.load(Ordering::Relaxed);
        nr_objs += n.total_objects.load(Ordering::Relaxed);
        nr_free += n.count_partial_free();
    }
    SlabInfo {
        name: s.name,
        active_objs: nr_objs.saturating_sub(nr_free),
        num_objs: nr_objs,
        objsize: s.size,
        objperslab: s.oo.objects(),
        pagesperslab: 1 << s.oo.order(),
        limit: 0,
        batchcount: 0,
        sharedfactor: 0,
        active_slabs: nr_slabs,
        num_slabs: nr_slabs,
        sharedavail: 0,
    }
}
