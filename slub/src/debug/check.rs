//! The checks: `check_valid_pointer`, `check_bytes_and_report`, `check_pad_bytes`,
//! `slab_pad_check`, `check_object`, `check_slab`, `on_freelist`, and `validate_slab`.

use super::layout::{
    byte_slice, freeptr_outside_object, get_info_end, get_orig_size, object_poison, object_size,
    size_from_object, slub_debug_orig_size, tracks_of,
};
use super::report::{blank, object_err, report, slab_err, slab_fix, ReportKind};
use super::{
    POISON_END, POISON_FREE, POISON_INUSE, SLUB_RED_ACTIVE, SLUB_RED_INACTIVE, TRACK_SIZE,
};
use crate::cache::KmemCache;
use crate::freeptr::{get_freepointer, set_freepointer};
use crate::node::counters_of;
use crate::slowpath::cmpxchg_double_slab;
use crate::Slub;
use common::{Page, SlabCounters, SlabFlags, PAGE_SIZE};
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// A slab under check: its descriptor and the address of its first byte.
pub(super) struct SlabRef {
    pub(super) page: *mut Page,
    pub(super) base: usize,
}

pub(super) fn slab_ref(sl: &Slub, page: *mut Page) -> SlabRef {
    let base = sl
        .provider
        .page_address(NonNull::new(page).expect("slab"))
        .as_ptr() as usize;
    SlabRef { page, base }
}

/// `check_valid_pointer`: `object` is 0 or an object start inside the slab.
pub(super) fn check_valid_pointer(s: &KmemCache, sr: &SlabRef, object: usize) -> bool {
    if object == 0 {
        return true;
    }
    let objects = counters_of(sr.page).objects as usize;
    let start = sr.base + s.red_left_pad;
    object >= start && (object - start) % s.size == 0 && (object - start) / s.size < objects
}

/// `memchr_inv(b, value)`: the first byte of `b` that is not `value`, eight bytes at a time
/// while they all match.
pub(super) fn memchr_inv(b: &[u8], value: u8) -> Option<usize> {
    let word = u64::from_ne_bytes([value; 8]);
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in chunks.by_ref() {
        if u64::from_ne_bytes(c.try_into().expect("8 bytes")) != word {
            break;
        }
        at += 8;
    }
    b[at..].iter().position(|&x| x != value).map(|i| at + i)
}

/// `check_bytes_and_report`: the bytes `[start, start + bytes)` must all be `value`; else
/// report "<what> overwritten" and restore them (`restore_bytes`).
#[allow(clippy::too_many_arguments)]
fn check_bytes_and_report(
    sl: &Slub,
    s: &KmemCache,
    sr: &SlabRef,
    object: usize,
    what: &'static str,
    start: usize,
    value: u8,
    bytes: usize,
) -> bool {
    let b = byte_slice(start, bytes);
    let Some(first) = memchr_inv(b, value) else {
        return true;
    };
    let last = b.iter().rposition(|&x| x != value).unwrap_or(first);
    let mut r = blank(s, ReportKind::Overwritten, what, sr.base);
    r.object = object;
    r.start = start + first;
    r.end = start + last + 1;
    r.expected = value;
    r.found = b[first];
    (r.alloc, r.free) = tracks_of(s, object);
    report(sl, s, &r);
    // restore_bytes
    b[first..=last].fill(value);
    let mut f = blank(s, ReportKind::Fix, "Restoring", sr.base);
    f.object = object;
    f.start = r.start;
    f.end = r.end;
    f.expected = value;
    report(sl, s, &f);
    false
}

/// `check_pad_bytes`: the padding after the metadata is `0x5a`.
fn check_pad_bytes(sl: &Slub, s: &KmemCache, sr: &SlabRef, p: usize) -> bool {
    let mut off = get_info_end(s);
    if s.flags.contains(SlabFlags::STORE_USER) {
        off += 2 * TRACK_SIZE;
        if s.flags.contains(SlabFlags::KMALLOC) {
            off += 4;
        }
    }
    let end = size_from_object(s);
    if end <= off {
        return true;
    }
    check_bytes_and_report(
        sl,
        s,
        sr,
        p,
        "Object padding",
        p + off,
        POISON_INUSE,
        end - off,
    )
}

/// `slab_pad_check`: the slab tail after the last object is `0x5a` (poisoning caches).
fn slab_pad_check(sl: &Slub, s: &KmemCache, sr: &SlabRef) {
    if !s.flags.contains(SlabFlags::POISON) {
        return;
    }
    let c = counters_of(sr.page);
    let length = PAGE_SIZE << slab_ref_order(sr);
    let used = c.objects as usize * s.size;
    if used >= length {
        return;
    }
    let b = byte_slice(sr.base + used, length - used);
    let Some(first) = b.iter().position(|&x| x != POISON_INUSE) else {
        return;
    };
    let last = b.iter().rposition(|&x| x != POISON_INUSE).unwrap_or(first);
    let mut r = blank(s, ReportKind::Slab, "Padding overwritten", sr.base);
    r.start = sr.base + used + first;
    r.end = sr.base + used + last + 1;
    r.expected = POISON_INUSE;
    r.found = b[first];
    report(sl, s, &r);
    b[first..=last].fill(POISON_INUSE);
    let mut f = blank(s, ReportKind::Fix, "Restoring", sr.base);
    f.start = r.start;
    f.end = r.end;
    f.expected = POISON_INUSE;
    report(sl, s, &f);
}

fn slab_ref_order(sr: &SlabRef) -> usize {
    // SAFETY: sr.page is a slab descriptor in mem_map.
    unsafe { (*sr.page).order as usize }
}

/// `check_object`: red zones, kmalloc red zone, poison, padding and (free objects, or a free
/// pointer outside the object) the free pointer. Returns false after reporting and fixing.
pub(super) fn check_object(sl: &Slub, s: &KmemCache, sr: &SlabRef, p: usize, val: u8) -> bool {
    let osize = object_size(s);
    let inuse = s.inuse.load(Ordering::Relaxed);
    let endobject = p + osize;
    if s.flags.contains(SlabFlags::RED_ZONE) {
        if !check_bytes_and_report(
            sl,
            s,
            sr,
            p,
            "Left Redzone",
            p - s.red_left_pad,
            val,
            s.red_left_pad,
        ) {
            return false;
        }
        if !check_bytes_and_report(sl, s, sr, p, "Right Redzone", endobject, val, inuse - osize) {
            return false;
        }
        if slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
            let orig = get_orig_size(s, p);
            if osize > orig
                && !check_bytes_and_report(
                    sl,
                    s,
                    sr,
                    p,
                    "kmalloc Redzone",
                    p + orig,
                    val,
                    osize - orig,
                )
            {
                return false;
            }
        }
    } else if s.flags.contains(SlabFlags::POISON) && osize < inuse {
        check_bytes_and_report(
            sl,
            s,
            sr,
            p,
            "Alignment padding",
            endobject,
            POISON_INUSE,
            inuse - osize,
        );
    }
    if s.flags.contains(SlabFlags::POISON) {
        if val != SLUB_RED_ACTIVE
            && object_poison(s)
            && osize > 0
            && (!check_bytes_and_report(sl, s, sr, p, "Poison", p, POISON_FREE, osize - 1)
                || !check_bytes_and_report(
                    sl,
                    s,
                    sr,
                    p,
                    "End Poison",
                    p + osize - 1,
                    POISON_END,
                    1,
                ))
        {
            return false;
        }
        check_pad_bytes(sl, s, sr, p);
    }
    if !freeptr_outside_object(s) && val == SLUB_RED_ACTIVE {
        // Object and free pointer overlap: nothing to check while allocated.
        return true;
    }
    if !check_valid_pointer(s, sr, get_freepointer(s, p)) {
        object_err(sl, s, sr.base, p, "Freepointer corrupt");
        // No choice but to zap it and thus lose the remainder of the free objects.
        set_freepointer(s, p, 0);
        return false;
    }
    true
}

/// `check_slab`: objects within the order, inuse within objects, slab tail padding.
pub(super) fn check_slab(sl: &Slub, s: &KmemCache, sr: &SlabRef) -> bool {
    let c = counters_of(sr.page);
    let maxobj = (PAGE_SIZE << slab_ref_order(sr)) / s.size;
    if c.objects as usize > maxobj {
        slab_err(
            sl,
            s,
            sr.base,
            "objects > max",
            (c.objects as usize, maxobj),
        );
        return false;
    }
    if c.inuse > c.objects {
        slab_err(
            sl,
            s,
            sr.base,
            "inuse > max",
            (c.inuse as usize, c.objects as usize),
        );
        return false;
    }
    slab_pad_check(sl, s, sr);
    true
}

/// Rewrites a listed slab's `{freelist, counters}` (list_lock held; debug caches change
/// slabs only under it).
pub(super) fn set_slab(s: &KmemCache, slab: *mut Page, freelist: usize, c: SlabCounters) {
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*slab };
    loop {
        let old = p.freelist_counters.load_pair();
        if cmpxchg_double_slab(s, slab, old, (freelist, c.pack())) {
            return;
        }
    }
}

/// `on_freelist`: is `search` on the slab's freelist? Walking it also repairs a corrupt chain
/// (truncated at the last good object, or cleared) and a wrong `inuse`.
pub(super) fn on_freelist(sl: &Slub, s: &KmemCache, sr: &SlabRef, search: usize) -> bool {
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*sr.page };
    let (head, counters) = p.freelist_counters.load_pair();
    let mut c = SlabCounters::unpack(counters);
    let mut fp = head;
    let mut object = 0;
    let mut nr = 0usize;
    while fp != 0 && nr <= c.objects as usize {
        if fp == search {
            return true;
        }
        if !check_valid_pointer(s, sr, fp) {
            if object != 0 {
                object_err(sl, s, sr.base, object, "Freechain corrupt");
                set_freepointer(s, object, 0);
            } else {
                slab_err(sl, s, sr.base, "Freepointer corrupt", (0, 0));
                c.inuse = c.objects;
                set_slab(s, sr.page, 0, c);
                slab_fix(sl, s, sr.base, "Freelist cleared");
                return false;
            }
            break;
        }
        object = fp;
        fp = get_freepointer(s, object);
        nr += 1;
    }
    let max_objects = (PAGE_SIZE << slab_ref_order(sr)) / s.size;
    let mut changed = false;
    if c.objects as usize != max_objects {
        slab_err(
            sl,
            s,
            sr.base,
            "Wrong number of objects",
            (c.objects as usize, max_objects),
        );
        c.objects = max_objects as u16;
        slab_fix(sl, s, sr.base, "Number of objects adjusted");
        changed = true;
    }
    let nr = nr.min(c.objects as usize);
    if c.inuse as usize != c.objects as usize - nr {
        slab_err(
            sl,
            s,
            sr.base,
            "Wrong object count. Counter is / counted were",
            (c.inuse as usize, c.objects as usize - nr),
        );
        c.inuse = (c.objects as usize - nr) as u16;
        slab_fix(sl, s, sr.base, "Object count adjusted");
        changed = true;
    }
    if changed {
        set_slab(s, sr.page, p.freelist_counters.lo(Ordering::Relaxed), c);
    }
    search == 0
}

/// `validate_slab` of a debug cache: `check_slab`, `on_freelist`, then `check_object` of
/// every object with the red-zone value its state asks for. Errors are reported, counted and
/// fixed; the walk goes on.
pub(crate) fn validate_slab(sl: &Slub, s: &KmemCache, page: *mut Page) {
    let sr = slab_ref(sl, page);
    if !check_slab(sl, s, &sr) || !on_freelist(sl, s, &sr, 0) {
        return;
    }
    // __fill_map
    let mut map = [0u64; 512];
    let objects = counters_of(page).objects as usize;
    // SAFETY: slab descriptor in mem_map.
    let mut fp = unsafe { &*page }.freelist_counters.lo(Ordering::Relaxed);
    let mut n = 0;
    while fp != 0 && n < objects {
        let idx = (fp - sr.base - s.red_left_pad) / s.size;
        map[idx / 64] |= 1 << (idx % 64);
        fp = get_freepointer(s, fp);
        n += 1;
    }
    for idx in 0..objects {
        let p = sr.base + s.red_left_pad + idx * s.size;
        let val = if map[idx / 64] & (1 << (idx % 64)) != 0 {
            SLUB_RED_INACTIVE
        } else {
            SLUB_RED_ACTIVE
        };
        if !check_object(sl, s, &sr, p, val) {
            break;
        }
    }
}

/// `on_freelist` without reports (to classify a failed free as a double free).
pub(super) fn on_freelist_quiet(s: &KmemCache, sr: &SlabRef, search: usize) -> bool {
    // SAFETY: slab descriptor in mem_map.
    let mut fp = unsafe { &*sr.page }.freelist_counters.lo(Ordering::Relaxed);
    let objects = counters_of(sr.page).objects as usize;
    let mut nr = 0;
    while fp != 0 && nr <= objects && check_valid_pointer(s, sr, fp) {
        if fp == search {
            return true;
        }
        fp = get_freepointer(s, fp);
        nr += 1;
    }
    false
}
