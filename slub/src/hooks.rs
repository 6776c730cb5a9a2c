//! Memory auto-initialisation, `init_on_alloc` / `init_on_free` (mm/slab.h 6.4
//! `slab_want_init_on_alloc`/`slab_want_init_on_free`, mm/slub.c `slab_post_alloc_hook`,
//! `slab_free_hook`/`slab_free_freelist_hook`, `maybe_wipe_obj_freeptr`; the page allocator's
//! `post_alloc_hook`/`free_pages_prepare` for large kmalloc).
//!
//! # What is zeroed
//! - **On allocation** ([`slab_post_alloc_hook`]): the whole object (`object_size`) when the
//!   request has `__GFP_ZERO` or `init_on_alloc` applies to the cache. With `init_on_free` the
//!   free pointer word inside the object is wiped (`maybe_wipe_obj_freeptr`): the rest of the
//!   object was zeroed when it was freed.
//! - **On free** ([`slab_free_freelist_hook`], before the chain is pushed): the object and the
//!   metadata after it up to the next slot, keeping the red zones (left red zone of the next
//!   slot, right red zone between `object_size` and `inuse`) and a free pointer that lies
//!   outside the object; the chain's links are rewritten after zeroing.
//! - **Exceptions** (`slab_want_init_on_*`): no `init_on_*` for caches with a constructor,
//!   `SLAB_TYPESAFE_BY_RCU` or `SLAB_POISON` (poison takes precedence, as the kernel says at
//!   boot); `__GFP_ZERO` still zeroes those (but not ctor caches: the kernel warns there).
//! - **Large kmalloc**: pages come zeroed with `init_on_alloc` (unless `init_on_free` already
//!   zeroed them when they were freed, as the page allocator's `post_alloc_hook` decides) and
//!   are zeroed on `kfree` with `init_on_free`.
//!
//! # Cost when off
//! Each cache keeps the answer in [`KmemCache::init_hooks`], next to `debug` on the cache line
//! the fast paths read anyway. Allocation ORs it into the `__GFP_ZERO` test it always made
//! (one test for both); free tests one bit of it. The work is in `#[cold]` functions.
//!
//! # Deviations from 6.4, both from later kernels
//! - `slab_free_hook` zeroes the object only up to the kmalloc request (`get_orig_size`),
//!   restores `orig_size`, and leaves a free pointer outside the object alone (6.4 zeroes
//!   `object_size` and everything from `inuse`, so with `slub_debug=FZU` a kmalloc cache reported
//!   its own kmalloc red zone "overwritten" on every free; fixed upstream by "Restore orig_size").
//! - `maybe_wipe_obj_freeptr` wipes only a free pointer inside the object (6.4 also cleared one
//!   outside it, which a hardened free-pointer check then decodes as garbage).

use crate::cache::KmemCache;
use crate::freeptr::{get_freepointer, set_freepointer};
use crate::Slub;
use common::{Ctor, Gfp, SlabFlags};
use core::sync::atomic::Ordering;

/// [`KmemCache::init_hooks`] bit: `init_on_alloc` applies (the same bit as `__GFP_ZERO`, so the
/// allocation test is `(gfp | init_hooks) & ZERO`).
pub(crate) const INIT_ON_ALLOC: u32 = Gfp::ZERO.0;
/// [`KmemCache::init_hooks`] bit: `init_on_free` applies (zero on free, wipe the free pointer on
/// allocation).
pub(crate) const INIT_ON_FREE: u32 = 1 << 31;
const _: () = assert!(INIT_ON_ALLOC.is_power_of_two() && INIT_ON_ALLOC & INIT_ON_FREE == 0);

/// `slab_want_init_on_alloc(0, s)` and `slab_want_init_on_free(s)` for a new cache, as the
/// [`KmemCache::init_hooks`] bits: nothing for a constructor, `SLAB_TYPESAFE_BY_RCU` or
/// `SLAB_POISON`.
pub(crate) fn init_hooks_for(sl: &Slub, flags: SlabFlags, ctor: Option<Ctor>) -> u32 {
    if ctor.is_some() || flags.intersects(SlabFlags::TYPESAFE_BY_RCU | SlabFlags::POISON) {
        return 0;
    }
    let mut h = 0;
    if sl.settings.init_on_alloc {
        h |= INIT_ON_ALLOC;
    }
    if sl.settings.init_on_free {
        h |= INIT_ON_FREE;
    }
    h
}

/// `maybe_wipe_obj_freeptr` + `slab_post_alloc_hook`'s zeroing for one object just taken.
/// With both off this is the one test the `__GFP_ZERO` check always was.
#[inline(always)]
pub(crate) fn slab_post_alloc_hook(s: &KmemCache, gfp: Gfp, object: usize) {
    let want = gfp.0 | s.init_hooks;
    if want & (Gfp::ZERO.0 | INIT_ON_FREE) != 0 {
        post_alloc_init(s, want, object);
    }
}

/// [`slab_post_alloc_hook`] of a cache without init hooks (`KmemCache::plain`): only the
/// caller's `__GFP_ZERO` is left to test.
#[inline(always)]
pub(crate) fn slab_post_alloc_hook_plain(s: &KmemCache, gfp: Gfp, object: usize) {
    debug_assert_eq!(s.init_hooks, 0);
    if gfp.0 & Gfp::ZERO.0 != 0 {
        post_alloc_init(s, gfp.0, object);
    }
}

/// [`slab_post_alloc_hook`] for the objects of a bulk allocation (one test when off).
#[inline(always)]
pub(crate) fn slab_post_alloc_hook_bulk(s: &KmemCache, gfp: Gfp, objects: &[usize]) {
    let want = gfp.0 | s.init_hooks;
    if want & (Gfp::ZERO.0 | INIT_ON_FREE) != 0 {
        for &o in objects {
            post_alloc_init(s, want, o);
        }
    }
}

#[cold]
#[inline(never)]
fn post_alloc_init(s: &KmemCache, want: u32, object: usize) {
    let osize = s.object_size.load(Ordering::Relaxed);
    if want & Gfp::ZERO.0 != 0 {
        // SAFETY: a freshly allocated object of object_size bytes.
        unsafe { (object as *mut u8).write_bytes(0, osize) };
    } else if want & INIT_ON_FREE != 0 && s.offset < s.inuse.load(Ordering::Relaxed) {
        // maybe_wipe_obj_freeptr: the free pointer inside the object is the only non-zero word
        // an object zeroed on free can hold.
        // SAFETY: s.offset + 8 <= inuse: a word of the object we own.
        unsafe { ((object + s.offset) as *mut usize).write_unaligned(0) };
    }
}

/// `slab_free_freelist_hook`: with `init_on_free`, zeroes every object of the chain
/// `head … tail` (linked through free pointers, `tail`'s link not followed) before it is
/// pushed, keeping the chain linked.
///
/// # Safety
/// The chain's objects are allocated objects of `s`, owned by the caller.
#[inline(always)]
pub(crate) unsafe fn slab_free_freelist_hook(s: &KmemCache, head: usize, tail: usize) {
    if s.init_hooks & INIT_ON_FREE != 0 {
        // SAFETY: forwarded.
        unsafe { free_init_chain(s, head, tail) };
    }
}

#[cold]
#[inline(never)]
unsafe fn free_init_chain(s: &KmemCache, head: usize, tail: usize) {
    let mut object = head;
    loop {
        let next = if object == tail {
            0
        } else {
            get_freepointer(s, object)
        };
        // SAFETY: an object of the chain (caller's contract).
        unsafe { slab_free_hook_init(s, object) };
        if object == tail {
            return;
        }
        set_freepointer(s, object, next);
        object = next;
    }
}

/// The `init` part of `slab_free_hook`: zero the object (up to the kmalloc request when the
/// cache tracks it) and the metadata from `get_info_end` to the end of the slot, minus the
/// next slot's left red zone; `orig_size` is put back.
///
/// # Safety
/// `x` is an allocated object of `s` owned by the caller.
unsafe fn slab_free_hook_init(s: &KmemCache, x: usize) {
    let orig = crate::debug::get_orig_size(s, x);
    let inuse = crate::debug::get_info_end(s);
    let rsize = if s.flags.contains(SlabFlags::RED_ZONE) {
        s.red_left_pad
    } else {
        0
    };
    // SAFETY: [x, x + orig) is the object; [x + inuse, x + size - rsize) is its metadata and
    // padding, up to the next slot's left red zone (slot = x - red_left_pad, size bytes).
    unsafe {
        (x as *mut u8).write_bytes(0, orig);
        ((x + inuse) as *mut u8).write_bytes(0, s.size - inuse - rsize);
    }
    crate::debug::set_orig_size(s, x, orig);
}

/// The gfp for a new slab's pages: `__GFP_ZERO` for an `init_on_free` cache, whose objects must
/// be zero whether or not they were ever freed.
#[inline]
pub(crate) fn new_slab_gfp(s: &KmemCache, gfp: Gfp) -> Gfp {
    if s.init_hooks & INIT_ON_FREE != 0 {
        gfp | Gfp::ZERO
    } else {
        gfp
    }
}

/// The gfp for a large kmalloc's pages: `__GFP_ZERO` added with `init_on_alloc`, unless
/// `init_on_free` zeroed the pages when they were freed (page allocator `post_alloc_hook`).
#[inline(always)]
pub(crate) fn large_alloc_gfp(sl: &Slub, gfp: Gfp) -> Gfp {
    if sl.settings.init_on_alloc && !sl.settings.init_on_free {
        gfp | Gfp::ZERO
    } else {
        gfp
    }
}

/// `free_pages_prepare`'s `init_on_free` for a large kmalloc block about to be freed.
#[inline(always)]
pub(crate) fn large_free_hook(sl: &Slub, addr: usize, order: usize) {
    if sl.settings.init_on_free {
        // SAFETY: the caller frees this block of 2^order pages and no longer uses it.
        unsafe { (addr as *mut u8).write_bytes(0, common::PAGE_SIZE << order) };
    }
}
