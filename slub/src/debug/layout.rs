//! The debug metadata of an object: `get_info_end`, orig-size, `struct track`, `init_object`,
//! `setup_slab_debug` / `setup_object_debug`.

use super::{
    POISON_END, POISON_FREE, POISON_INUSE, SLUB_RED_ACTIVE, SLUB_RED_INACTIVE, TRACK_SIZE,
};
use crate::cache::{KmemCache, WORD};
use common::{SlabFlags, PAGE_SIZE};
use core::sync::atomic::Ordering;

/// `struct track`: who allocated or freed an object last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Track {
    /// Caller word: always 0 here (stable Rust has no return-address intrinsic, and
    /// `#[track_caller]` would add a hidden argument to every fast path; see
    /// `docs/design-notes.md`, slub, "Debugging").
    pub addr: usize,
    /// CPU the call ran on.
    pub cpu: u32,
    /// Thread id (`gettid`).
    pub pid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub when: u64,
    /// Unused (`handle` of the stack depot in the kernel).
    pub handle: u64,
}
const _: () = assert!(core::mem::size_of::<Track>() == TRACK_SIZE);

pub(super) fn byte_slice<'a>(addr: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: callers pass ranges inside one slab of the cache (object slots, their metadata or
    // the slab tail), which stay mapped while the cache lives; debug caches change them only
    // under the node's list_lock or while the object is owned by the caller.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// `freeptr_outside_object`.
pub(super) fn freeptr_outside_object(s: &KmemCache) -> bool {
    s.offset >= s.inuse.load(Ordering::Relaxed)
}

/// `get_info_end`: end of the object plus the free pointer if that lies after it.
pub(crate) fn get_info_end(s: &KmemCache) -> usize {
    if freeptr_outside_object(s) {
        s.offset + WORD
    } else {
        s.inuse.load(Ordering::Relaxed)
    }
}

/// `slub_debug_orig_size`: kmalloc caches with `STORE_USER` keep the requested size.
pub(super) fn slub_debug_orig_size(s: &KmemCache) -> bool {
    s.flags.contains(SlabFlags::STORE_USER) && s.flags.contains(SlabFlags::KMALLOC)
}

/// `size_from_object`.
pub(super) fn size_from_object(s: &KmemCache) -> usize {
    if s.flags.contains(SlabFlags::RED_ZONE) {
        s.size - s.red_left_pad
    } else {
        s.size
    }
}

/// `__OBJECT_POISON`: poison objects (not with a constructor or RCU).
pub(super) fn object_poison(s: &KmemCache) -> bool {
    s.flags.contains(SlabFlags::POISON)
        && s.ctor.is_none()
        && !s.flags.contains(SlabFlags::TYPESAFE_BY_RCU)
}

pub(super) fn object_size(s: &KmemCache) -> usize {
    s.object_size.load(Ordering::Relaxed)
}

fn orig_size_addr(s: &KmemCache, object: usize) -> usize {
    object + get_info_end(s) + 2 * TRACK_SIZE
}

/// `get_orig_size`.
pub(crate) fn get_orig_size(s: &KmemCache, object: usize) -> usize {
    if !slub_debug_orig_size(s) {
        return object_size(s);
    }
    // SAFETY: the orig_size word is inside the object's metadata (slub_debug_orig_size layout).
    unsafe { (orig_size_addr(s, object) as *const u32).read_unaligned() as usize }
}

/// `set_orig_size`.
pub(crate) fn set_orig_size(s: &KmemCache, object: usize, orig_size: usize) {
    if !slub_debug_orig_size(s) {
        return;
    }
    let v = orig_size.min(object_size(s)) as u32;
    // SAFETY: as get_orig_size.
    unsafe { (orig_size_addr(s, object) as *mut u32).write_unaligned(v) };
}

fn track_addr(s: &KmemCache, object: usize, free: bool) -> usize {
    object + get_info_end(s) + if free { TRACK_SIZE } else { 0 }
}

pub(super) fn tracks_of(s: &KmemCache, object: usize) -> (Option<Track>, Option<Track>) {
    if !s.flags.contains(SlabFlags::STORE_USER) || object == 0 {
        return (None, None);
    }
    // SAFETY: the two tracks lie after the free pointer of every STORE_USER object.
    unsafe {
        (
            Some((track_addr(s, object, false) as *const Track).read_unaligned()),
            Some((track_addr(s, object, true) as *const Track).read_unaligned()),
        )
    }
}

/// `current->pid`: the thread id, cached per thread (a `gettid` system call on every tracked
/// allocation and free was a third of a debug pair's time). A child of `fork` keeps its
/// parent's cached id in the forking thread; tracks there name the parent thread.
fn current_tid() -> u32 {
    thread_local! {
        static TID: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    }
    TID.with(|t| {
        if t.get() == 0 {
            // SAFETY: gettid has no preconditions.
            t.set(unsafe { libc::gettid() } as u32);
        }
        t.get()
    })
}

pub(super) fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `set_track`.
pub(super) fn set_track(s: &KmemCache, object: usize, free: bool, addr: usize) {
    if !s.flags.contains(SlabFlags::STORE_USER) {
        return;
    }
    let pid = current_tid();
    let t = Track {
        addr,
        cpu: common::percpu::cpu_id() as u32,
        pid,
        when: now_ns(),
        handle: 0,
    };
    // SAFETY: as tracks_of.
    unsafe { (track_addr(s, object, free) as *mut Track).write_unaligned(t) };
}

/// `init_tracking`.
fn init_tracking(s: &KmemCache, object: usize) {
    if s.flags.contains(SlabFlags::STORE_USER) {
        byte_slice(track_addr(s, object, false), 2 * TRACK_SIZE).fill(0);
    }
}

/// `init_object`: red zones to `val`, poison a free or freshly allocated object.
pub(super) fn init_object(s: &KmemCache, object: usize, val: u8) {
    let osize = object_size(s);
    let inuse = s.inuse.load(Ordering::Relaxed);
    let mut poison_size = osize;
    if s.flags.contains(SlabFlags::RED_ZONE) {
        byte_slice(object - s.red_left_pad, s.red_left_pad).fill(val);
        if slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
            poison_size = get_orig_size(s, object);
        }
    }
    if object_poison(s) && poison_size > 0 {
        let p = byte_slice(object, poison_size);
        p[..poison_size - 1].fill(POISON_FREE);
        p[poison_size - 1] = POISON_END;
    }
    if s.flags.contains(SlabFlags::RED_ZONE) {
        byte_slice(object + poison_size, inuse - poison_size).fill(val);
    }
}

/// `setup_slab_debug`: a new slab of a poisoning cache is `0x5a` throughout.
pub(crate) fn setup_slab_debug(s: &KmemCache, base: usize, order: usize) {
    if s.flags.contains(SlabFlags::POISON) {
        byte_slice(base, PAGE_SIZE << order).fill(POISON_INUSE);
    }
}

/// `setup_object_debug`.
pub(crate) fn setup_object_debug(s: &KmemCache, object: usize) {
    if s.flags.intersects(SlabFlags(
        SlabFlags::STORE_USER.0 | SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0,
    )) {
        init_object(s, object, SLUB_RED_INACTIVE);
        init_tracking(s, object);
    }
}

/// The kmalloc side of orig-size tracking: record the request and red-zone the slack
/// (`set_orig_size` and the "kmalloc Redzone" part of `init_object`), done after the object is
/// taken (and zeroed for `__GFP_ZERO`) so the non-debug kmalloc path carries no size argument.
pub(crate) fn kmalloc_debug_orig_size(s: &KmemCache, object: usize, orig_size: usize) {
    if slub_debug_orig_size(s) {
        set_orig_size(s, object, orig_size);
        let orig = get_orig_size(s, object);
        let osize = object_size(s);
        if s.flags.contains(SlabFlags::RED_ZONE) && orig < osize {
            byte_slice(object + orig, osize - orig).fill(SLUB_RED_ACTIVE);
        }
    }
}

/// `skip_orig_size_check`: after `ksize()` the whole object may be used.
pub(crate) fn skip_orig_size_check(s: &KmemCache, object: usize) {
    set_orig_size(s, object, object_size(s));
}
