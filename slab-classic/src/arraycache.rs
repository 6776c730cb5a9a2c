//! `struct array_cache`: the per-CPU "head array" (and, with a lock, the per-node shared array
//! and the alien arrays) — 2.6.32 `mm/slab.c` `array_cache`, `arraycache_init`,
//! `alloc_arraycache`, `transfer_objects`.
//!
//! `entry[0..avail]` holds object pointers, used as a stack: the hottest object is on top
//! (`entry[avail-1]`), the oldest at the bottom (`entry[0]`). Invariant: `avail <= limit`.

use crate::sync::RawLock;
use core::marker::PhantomData;
use core::ptr::{addr_of_mut, NonNull};

/// `struct array_cache` (header; `entry[]` follows it, `limit` pointers).
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ArrayCache {
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
pub(crate) const ARRAY_CACHE_SIZE: usize = core::mem::size_of::<ArrayCache>();
const _: () = assert!(ARRAY_CACHE_SIZE == 24);

/// `struct arraycache_init`: a header with room for `BOOT_CPUCACHE_ENTRIES` (1) pointer.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ArrayCacheInit {
    /// The array.
    pub cache: ArrayCache,
    /// Its one entry.
    pub entries: [*mut u8; BOOT_CPUCACHE_ENTRIES],
}

impl ArrayCacheInit {
    /// An empty boot array (every field zero, the lock free).
    pub(crate) const fn empty() -> Self {
        ArrayCacheInit {
            cache: ArrayCache {
                avail: 0,
                limit: 0,
                batchcount: 0,
                touched: 0,
                lock: RawLock::new(),
                entry: [],
            },
            entries: [core::ptr::null_mut(); BOOT_CPUCACHE_ENTRIES],
        }
    }
}

/// `BOOT_CPUCACHE_ENTRIES`.
pub(crate) const BOOT_CPUCACHE_ENTRIES: usize = 1;
/// `sizeof(struct arraycache_init)` = 32 → `INDEX_AC` is `size-32`, as in the kernel.
pub(crate) const ARRAYCACHE_INIT_SIZE: usize = core::mem::size_of::<ArrayCacheInit>();
const _: () = assert!(ARRAYCACHE_INIT_SIZE == 32);

/// Bytes of an array cache with `entries` entries (`alloc_arraycache`'s `memsize`).
pub(crate) const fn arraycache_bytes(entries: usize) -> usize {
    ARRAY_CACHE_SIZE + entries * core::mem::size_of::<*mut u8>()
}

/// Pointer to `entry[0]`.
///
/// # Safety
/// `ac` must be a valid array cache.
#[inline(always)]
pub(crate) unsafe fn ac_entry(ac: *mut ArrayCache) -> *mut *mut u8 {
    // SAFETY: entry is the trailing field of the header.
    unsafe { addr_of_mut!((*ac).entry).cast::<*mut u8>() }
}

/// Initialises the header of a fresh array (`alloc_arraycache` after its kmalloc).
///
/// # Safety
/// `ac` valid for writes of the header.
pub(crate) unsafe fn ac_init(ac: *mut ArrayCache, limit: u32, batchcount: u32) {
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
pub(crate) unsafe fn transfer_objects(to: *mut ArrayCache, from: *mut ArrayCache, max: u32) -> u32 {
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
pub(crate) unsafe fn ac_shift_down(ac: *mut ArrayCache, n: u32) {
    // SAFETY: both ranges lie in entry[0..avail].
    unsafe {
        (*ac).avail -= n;
        let e = ac_entry(ac);
        core::ptr::copy(e.add(n as usize), e, (*ac).avail as usize);
    }
}

/// An array cache whose protecting lock is held for `'a` (the CPU slot lock for a per-CPU
/// array, `list_lock` for a node's shared array, the array's own lock for an alien array):
/// the proof that plain loads and stores of its header and entries race with nothing. Every
/// operation keeps `avail <= limit`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArrayRef<'a> {
    ac: NonNull<ArrayCache>,
    _locked: PhantomData<&'a mut ArrayCache>,
}

impl ArrayRef<'_> {
    /// # Safety
    /// `ac` is a live array cache with `avail <= limit` entries of room, and the lock that
    /// protects it is held for the returned lifetime.
    #[inline(always)]
    pub(crate) unsafe fn new(ac: *mut ArrayCache) -> Self {
        let ac = NonNull::new(ac).expect("a live array cache is never null");
        ArrayRef {
            ac,
            _locked: PhantomData,
        }
    }

    /// [`Self::new`] without the null test (the fast paths).
    ///
    /// # Safety
    /// As [`Self::new`].
    #[inline(always)]
    pub(crate) unsafe fn new_unchecked(ac: *mut ArrayCache) -> Self {
        ArrayRef {
            // SAFETY: a live array is never null (contract).
            ac: unsafe { NonNull::new_unchecked(ac) },
            _locked: PhantomData,
        }
    }

    /// The array's address.
    #[inline(always)]
    pub(crate) fn as_ptr(self) -> *mut ArrayCache {
        self.ac.as_ptr()
    }

    #[inline(always)]
    fn hdr(self) -> *mut ArrayCache {
        self.ac.as_ptr()
    }

    /// `avail`.
    #[inline(always)]
    pub(crate) fn avail(self) -> u32 {
        // SAFETY: live array, lock held (constructor contract).
        unsafe { (*self.hdr()).avail }
    }

    /// `limit`.
    #[inline(always)]
    pub(crate) fn limit(self) -> u32 {
        // SAFETY: as `avail`.
        unsafe { (*self.hdr()).limit }
    }

    /// `batchcount`.
    #[inline(always)]
    pub(crate) fn batchcount(self) -> u32 {
        // SAFETY: as `avail`.
        unsafe { (*self.hdr()).batchcount }
    }

    /// `touched`.
    #[inline(always)]
    pub(crate) fn touched(self) -> bool {
        // SAFETY: as `avail`.
        unsafe { (*self.hdr()).touched != 0 }
    }

    /// Sets or clears `touched`.
    #[inline(always)]
    pub(crate) fn set_touched(self, on: bool) {
        // SAFETY: as `avail`.
        unsafe { (*self.hdr()).touched = u32::from(on) };
    }

    /// Forgets every entry (`avail = 0`), after they were handed back elsewhere.
    #[inline(always)]
    pub(crate) fn clear(self) {
        // SAFETY: as `avail`.
        unsafe { (*self.hdr()).avail = 0 };
    }

    /// `entry[0..avail]`, oldest first (for `free_block`).
    #[inline(always)]
    pub(crate) fn entries(self) -> *mut *mut u8 {
        // SAFETY: live array.
        unsafe { ac_entry(self.hdr()) }
    }

    /// `entry[i]`, `i < avail`.
    #[inline(always)]
    pub(crate) fn entry(self, i: u32) -> *mut u8 {
        assert!(i < self.avail());
        // SAFETY: in bounds (checked), lock held.
        unsafe { *self.entries().add(i as usize) }
    }

    /// The object on top (the hottest), if any.
    #[inline(always)]
    pub(crate) fn top(self) -> Option<*mut u8> {
        let n = self.avail();
        (n > 0).then(|| self.entry(n - 1))
    }

    /// `entry[--avail]`: the object on top. The array must not be empty.
    #[inline(always)]
    pub(crate) fn pop(self) -> *mut u8 {
        let n = self.avail();
        assert!(n > 0);
        // SAFETY: n - 1 < avail <= limit; lock held.
        unsafe {
            (*self.hdr()).avail = n - 1;
            *self.entries().add(n as usize - 1)
        }
    }

    /// `entry[avail++] = obj`. The array must not be full.
    #[inline(always)]
    pub(crate) fn push(self, obj: *mut u8) {
        let n = self.avail();
        assert!(n < self.limit());
        // SAFETY: n < limit, inside the array; lock held.
        unsafe {
            *self.entries().add(n as usize) = obj;
            (*self.hdr()).avail = n + 1;
        }
    }

    /// [`Self::push`] without the room test (the locked fast path).
    ///
    /// # Safety
    /// `avail < limit`.
    #[inline(always)]
    pub(crate) unsafe fn push_unchecked(self, obj: *mut u8) {
        let n = self.avail();
        debug_assert!(n < self.limit());
        // SAFETY: n < limit (contract), inside the array; lock held.
        unsafe {
            *self.entries().add(n as usize) = obj;
            (*self.hdr()).avail = n + 1;
        }
    }

    /// Appends the `n` oldest entries of `from` (`n <= from.avail`, room for them here),
    /// without removing them from `from` (`cache_flusharray`'s copy to the shared array).
    pub(crate) fn append_oldest_of(self, from: ArrayRef<'_>, n: u32) {
        let avail = self.avail();
        assert!(n <= from.avail() && n <= self.limit() - avail);
        // SAFETY: both ranges in bounds (checked); distinct arrays never overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                from.entries(),
                self.entries().add(avail as usize),
                n as usize,
            );
            (*self.hdr()).avail = avail + n;
        }
    }

    /// `transfer_objects(self, from, max)` (see [`transfer_objects`]).
    pub(crate) fn transfer_from(self, from: ArrayRef<'_>, max: u32) -> u32 {
        // SAFETY: both arrays live and locked (constructor contracts).
        unsafe { transfer_objects(self.hdr(), from.hdr(), max) }
    }

    /// Drops the `n` oldest entries (`n <= avail`), moving the rest down.
    pub(crate) fn shift_down(self, n: u32) {
        assert!(n <= self.avail());
        // SAFETY: n <= avail (checked); lock held.
        unsafe { ac_shift_down(self.hdr(), n) };
    }
}
