//! `validate_slab_cache` (mm/slub.c 6.4, "Validation of slabs"): flush every CPU slab, then walk
//! each node's partial list (and, for `SLAB_STORE_USER` caches, the full list) and cross-check
//! every slab — `on_freelist` counts, `inuse`,
//! `objects` against the order, frozen state, owner and node — and the node totals. Also the
//! slabinfo 2.1 row (`get_slabinfo`).
//!
//! # On a live cache
//! The answer is exact while other threads allocate and free, as the kernel's validate is
//! under each node's `list_lock`: the listed slabs and `nr_partial` are read under that lock;
//! `nr_slabs` and `total_objects` are one double word read as a consistent snapshot (a slab is
//! counted before it is listed and uncounted after it is unlisted, so listed ≤ counted always
//! holds; `SLAB_STORE_USER` caches count under `list_lock`, so their partial + full == nr_slabs
//! is exact). Nothing allocates under a lock: violations are recorded as
//! [`Violation`]s and formatted by the caller after `slab_mutex` is released.

use crate::cache::KmemCache;
use crate::freeptr::get_freepointer;
use crate::node::{counters_of, slab_of};
use crate::slowpath::{flush_all, slab_nid};
use crate::Slub;
use common::check::Violation;
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
fn validate_slab(
    sl: &Slub,
    s: &KmemCache,
    slab: *mut Page,
    node: usize,
) -> Result<usize, Violation> {
    // SAFETY: slab is a descriptor in mem_map on the node's partial list (lock held by caller).
    let p = unsafe { &*slab };
    let page = NonNull::new(slab).expect("slab");
    let base = sl.provider.page_address(page).as_ptr() as usize;
    if !p.is_slab() {
        return Err(Violation::new(
            "slab {x} on a partial list without PG_slab",
            &[base],
        ));
    }
    if p.cache() != core::ptr::from_ref(s) as usize {
        return Err(Violation::new("slab {x} belongs to another cache", &[base]));
    }
    if slab_nid(s, slab) != node {
        return Err(Violation::new(
            "slab {x} of node {} on node {}'s list",
            &[base, slab_nid(s, slab), node],
        ));
    }
    // One atomic snapshot of {freelist, counters}: remote frees may push onto a listed slab
    // concurrently, but the chain behind a snapshot head stays put (allocation from a listed
    // slab needs the list_lock we hold).
    let (head, counters) = p.freelist_counters.load_pair();
    let c = common::SlabCounters::unpack(counters);
    if c.frozen {
        return Err(Violation::new("frozen slab {x} on a node list", &[base]));
    }
    let objects = c.objects as usize;
    let order = p.order as usize;
    let expected = if order == s.oo.order() {
        s.oo.objects()
    } else {
        s.min.objects()
    };
    if objects != expected || objects * s.size > PAGE_SIZE << order {
        return Err(Violation::new(
            "slab {x}: objects {}, expected {} for order {}",
            &[base, objects, expected, order],
        ));
    }
    // on_freelist: walk at most `objects` steps, each pointer valid and seen once.
    let mut seen = [0u64; 512];
    let mut nr = 0;
    let mut fp = head;
    while fp != 0 {
        if nr >= objects {
            return Err(Violation::new(
                "slab {x}: freelist longer than {} objects (cycle?)",
                &[base, objects],
            ));
        }
        if !check_valid_pointer(s, base, objects, fp) {
            return Err(Violation::new(
                "slab {x}: freechain corrupt at object #{}: {x}",
                &[base, nr, fp],
            ));
        }
        let idx = crate::cache::obj_to_index(s, base, fp);
        if seen[idx / 64] & (1 << (idx % 64)) != 0 {
            return Err(Violation::new(
                "slab {x}: object {x} twice on the freelist",
                &[base, fp],
            ));
        }
        seen[idx / 64] |= 1 << (idx % 64);
        nr += 1;
        fp = get_freepointer(s, fp);
    }
    if c.inuse as usize != objects - nr {
        return Err(Violation::new(
            "slab {x}: inuse {} but {} objects and {} free",
            &[base, c.inuse as usize, objects, nr],
        ));
    }
    if nr == 0 {
        return Err(Violation::new(
            "slab {x}: full slab on the partial list",
            &[base],
        ));
    }
    Ok(nr)
}

/// `validate_slab_cache`. Exact on a live cache: every number it compares is read under the
/// node's `list_lock` it holds (the listed slabs, `nr_partial`, and for `SLAB_STORE_USER` caches
/// `nr_slabs`, which those caches change only under `list_lock`) or is one consistent snapshot
/// (`nr_slabs` with `total_objects`; a listed slab is counted in `nr_slabs` before it is listed
/// and uncounted only after it is unlisted). CPU slabs may be refilled right after the flush, as
/// in the kernel; they are not walked. Returns a [`Violation`] (no heap use under the lock).
pub(crate) fn validate_slab_cache(sl: &Slub, s: &KmemCache) -> Result<(), Violation> {
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
            return Err(Violation::new(
                "node {}: {} partial slabs but nr_partial {}",
                &[node, count, nr_partial],
            ));
        }
        let (nr_slabs, total) = n.slabs_snapshot();
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
                    return Err(Violation::new(
                        "node {}: slab {x} of node {} on this full list",
                        &[node, base, slab_nid(s, slab)],
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
                return Err(Violation::new(
                    "node {}: {} slabs counted (partial + full) but nr_slabs {}",
                    &[node, count, nr_slabs],
                ));
            }
        }
        if count > nr_slabs {
            return Err(Violation::new(
                "node {}: {} listed slabs exceed nr_slabs {}",
                &[node, count, nr_slabs],
            ));
        }
        if objs > total {
            return Err(Violation::new(
                "node {}: {} objects in listed slabs exceed total_objects {}",
                &[node, objs, total],
            ));
        }
        if (nr_slabs == 0) != (total == 0) || total > nr_slabs * s.oo.objects().max(s.min.objects())
        {
            return Err(Violation::new(
                "node {}: nr_slabs {} and total_objects {} disagree",
                &[node, nr_slabs, total],
            ));
        }
    }
    // The objects held by sheaves and barns (see sheaf.rs, "Invariants").
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
        let (ns, no) = n.slabs_snapshot();
        nr_slabs += ns;
        nr_objs += no;
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
