//! Free pointers: `freelist_ptr`, `get_freepointer`, `set_freepointer` (mm/slub.c 6.4,
//! "Core slab cache functions").
//!
//! A free object keeps the address of the next free object at `s->offset`. With
//! `CONFIG_SLAB_FREELIST_HARDENED` (here [`crate::SlubSettings::freelist_hardened`]) the stored
//! value is `ptr ^ s->random ^ swab(address where it is stored)`, so a leaked or overwritten free
//! pointer does not point anywhere useful; decoding is the same XOR.
//!
//! The word is read and written with relaxed atomic accesses: the fast path reads the free
//! pointer of an object another thread may just have allocated (its `cmpxchg` then fails and the
//! value is discarded), as the kernel's `get_freepointer_safe` does. Slab memory stays mapped for
//! the life of the provider, so such a stale read never faults.

use crate::cache::KmemCache;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `swab(x)` for a machine word: the bytes reversed.
#[inline(always)]
pub const fn swab(x: usize) -> usize {
    x.swap_bytes()
}

/// `freelist_ptr(s, ptr, ptr_addr)`: encodes or decodes a stored free pointer.
#[inline(always)]
pub(crate) fn freelist_ptr(s: &KmemCache, ptr: usize, ptr_addr: usize) -> usize {
    if s.hardened {
        ptr ^ s.random ^ swab(ptr_addr)
    } else {
        ptr
    }
}

#[inline(always)]
fn word_at(addr: usize) -> &'static AtomicUsize {
    // SAFETY: callers pass `object + s->offset` of an object inside a slab of `s`; offsets are
    // word aligned and slab memory stays mapped while the provider lives (see module header).
    // The 'static lifetime is never kept beyond the single access.
    unsafe { &*(addr as *const AtomicUsize) }
}

/// `get_freepointer(s, object)`.
#[inline(always)]
pub(crate) fn get_freepointer(s: &KmemCache, object: usize) -> usize {
    let ptr_addr = object + s.offset;
    freelist_ptr(s, word_at(ptr_addr).load(Ordering::Relaxed), ptr_addr)
}

/// `set_freepointer(s, object, fp)`. The kernel `BUG()`s on `object == fp` with hardening (a
/// naive double free); the callers check that first and return `SlabError::DoubleFree`.
#[inline(always)]
pub(crate) fn set_freepointer(s: &KmemCache, object: usize, fp: usize) {
    let ptr_addr = object + s.offset;
    word_at(ptr_addr).store(freelist_ptr(s, fp, ptr_addr), Ordering::Relaxed);
}

/// [`get_freepointer`] of a cache known not to be hardened (`KmemCache::plain`).
#[inline(always)]
pub(crate) fn get_freepointer_plain(s: &KmemCache, object: usize) -> usize {
    debug_assert!(!s.hardened);
    word_at(object + s.offset).load(Ordering::Relaxed)
}

/// [`set_freepointer`] of a cache known not to be hardened (`KmemCache::plain`).
#[inline(always)]
pub(crate) fn set_freepointer_plain(s: &KmemCache, object: usize, fp: usize) {
    debug_assert!(!s.hardened);
    word_at(object + s.offset).store(fp, Ordering::Relaxed);
}

/// The naive double-free check of hardened kernels: freeing the object that already heads the
/// freelist.
#[inline(always)]
pub(crate) fn naive_double_free(s: &KmemCache, object: usize, fp: usize) -> bool {
    s.hardened && object == fp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swab_reverses_bytes() {
        assert_eq!(swab(0x0102_0304_0506_0708), 0x0807_0605_0403_0201);
    }

    #[test]
    fn hardened_encoding_round_trips() {
        let random = 0xdead_beef_1234_5678usize;
        let ptr = 0x7f00_1234_5000usize;
        let addr = 0x7f00_1234_6020usize;
        let enc = ptr ^ random ^ swab(addr);
        assert_ne!(enc, ptr);
        assert_eq!(enc ^ random ^ swab(addr), ptr);
        // Null is encoded too, so a zeroed word is not a valid "end of list".
        assert_ne!(random ^ swab(addr), 0);
    }
}
