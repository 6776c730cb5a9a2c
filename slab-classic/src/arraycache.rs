//! `struct array_cache`: the per-CPU "head array" (and, with a lock, the per-node shared array
//! and the alien arrays) — 2.6.32 `mm/slab.c` `array_cache`, `arraycache_init`,
//! `alloc_arraycache`, `transfer_objects`.
//!
//! `entry[0..avail]` holds object pointers, used as a stack: the hottest object is on top
//! (`entry[avail-1]`), the oldest at the bottom (`entry[0]`). Invariant: `avail <= limit`.

use crate::sync::RawLock;
use core::ptr::addr_of_mut;

/// `struct array_cache` (header; `entry[]` follows it, `limit` pointers).
#[repr(C)]
#[derive(Debug)]
pub struct ArrayCache {
    /// Objects in `entry`.
    pub avail: u32,
    /// Capacity of `entry`.
    pub limit: u32,
    /// Objects moved per refill or flush.
    pub batchcount: u32,
    /// Set on use, cleared by the reaper.
    pub touched: u32,
    /// Taken for shared (together with the node lock) and alien arrays.
    pub lock: RawLock,
    entry: [*mut u8; 0],
}

/// `sizeof(struct array_cache)`: 24 bytes, entries from offset 24, as in 2.6.32 on x86-64.
pub const ARRAY_CACHE_SIZE: usize = core::mem::size_of::<ArrayCache>();
const _: () = assert!(ARRAY_CACHE_SIZE == 24);

/// `struct arraycache_init`: a header with room for `BOOT_CPUCACHE_ENTRIES` (1) pointer.
#[repr(C)]
#[derive(Debug)]
pub struct ArrayCacheInit {
    /// The array.
    pub cache: ArrayCache,
    /// Its one entry.
    pub entries: [*mut u8; BOOT_CPUCACHE_ENTRIES],
}

/// `BOOT_CPUCACHE_ENTRIES`.
pub const BOOT_CPUCACHE_ENTRIES: usize = 1;
/// `sizeof(struct arraycache_init)` = 32 → `INDEX_AC` is `size-32`, as in the kernel.
pub const ARRAYCACHE_INIT_SIZE: usize = core::mem::size_of::<ArrayCacheInit>();
const _: () = assert!(ARRAYCACHE_INIT_SIZE == 32);

/// Bytes of an array cache with `entries` entries (`alloc_arraycache`'s `memsize`).
pub const fn arraycache_bytes(entries: usize) -> usize {
    ARRAY_CACHE_SIZE + entries * core::mem::size_of::<*mut u8>()
}

/// Pointer to `entry[0]`.
///
/// # Safety
/// `ac` must be a valid array cache.
#[inline(always)]
pub unsafe fn ac_entry(ac: *mut ArrayCache) -> *mut *mut u8 {
    // SAFETY: entry is the trailing field of the header.
    unsafe { addr_of_mut!((*ac).entry).cast::<*mut u8>() }
}

/// Initialises the header of a fresh array (`alloc_arraycache` after its kmalloc).
///
/// # Safety
/// `ac` valid for writes of the header.
pub unsafe fn ac_init(ac: *mut ArrayCache, limit: u32, batchcount: u32) {
    // SAFETY: valid for writes per the contract.
    unsafe {
        (*ac).avail = 0;
        (*ac).limit = limit;
        (*ac).batchcount = batchcount;
        (*ac).touched = 0;
        addr_of_mut!((*ac).lock).write(RawLock::new());
    }
}

/// `transfer_objects(to, from, max)`: moves `min(from.avail, max, to.limit − to.avail)`
/// pointers from the top of `from` onto `to`; marks `to` touched (2.6.32). Returns the count.
///
/// # Safety
/// Both arrays valid and protected by the locks the caller holds.
pub unsafe fn transfer_objects(to: *mut ArrayCache, from: *mut ArrayCache, max: u32) -> u32 {
    // SAFETY: as documented; the ranges are inside both arrays and distinct arrays never overlap.
    unsafe {
        let nr = (*from).avail.min(max).min((*to).limit - (*to).avail);
        if nr == 0 {
            return 0;
        }
        core::ptr::copy_nonoverlapping(
            ac_entry(from).add(((*from).avail - nr) as usize),
            ac_entry(to).add((*to).avail as usize),
            nr as usize,
        );
        (*from).avail -= nr;
        (*to).avail += nr;
        (*to).touched = 1;
        nr
    }
}

/// Removes the `n` oldest entries (the bottom) after they were handed to `free_block`, moving
/// the rest down (the memmove of `cache_flusharray` and `drain_array`).
///
/// # Safety
/// `ac` valid and locked; `n <= avail`.
pub unsafe fn ac_shift_down(ac: *mut ArrayCache, n: u32) {
    // SAFETY: both ranges lie in entry[0..avail].
    unsafe {
        (*ac).avail -= n;
        let e = ac_entry(ac);
        core::ptr::copy(e.add(n as usize), e, (*ac).avail as usize);
    }
}
