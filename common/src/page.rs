//! `Page`: the kernel's `struct page` as the buddy allocator and the slab allocators use it.
//!
//! One 64-byte `Page` per 4 KiB page of every arena, in the provider's `mem_map` (itself mmap-ed).
//! Layout (bytes):
//!
//! ```text
//!  0  freelist_counters  DoubleWord   SLUB: slab freelist (lo) + counters {inuse:16,objects:15,frozen:1} (hi)
//! 16  lru                ListHead     slab lists (SLAB's three lists, SLUB's node partial/full),
//!                                     buddy free lists; on a tail page `lru.next` = head | 1
//! 32  slab_cache         AtomicUsize  address of the owning kmem_cache (0 if none)
//! 40  private            usize        SLAB: address of the slab descriptor (`struct slab`);
//!                                     SLUB: next slab on a per-CPU partial chain
//! 48  slabs              u32          SLUB: slabs on the per-CPU partial chain from here down
//! 52  flags              AtomicU32    PG_* bits below
//! 56  order              u8           order of the block this head page starts
//! 57  node               u8           (logical) node of the arena the page belongs to
//! 58  owner              u8           Owner tag of the allocation, for accounting
//! 59  _pad               u8
//! 60  spare              u32          free for the owner (SLAB keeps the offset of the first
//!                                     object, s_mem, here)
//! ```
//!
//! Only head pages carry meaning for a slab; tail pages carry just `PG_TAIL` and the
//! compound-head link, so `compound_head()` (the kernel's `virt_to_head_page`) finds the head
//! of a multi-page slab from any address inside it.

use crate::dword::DoubleWord;
use crate::list::ListHead;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// `PAGE_SHIFT`.
pub const PAGE_SHIFT: usize = 12;
/// `PAGE_SIZE`.
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// `get_order`: the smallest order whose block holds `size` bytes.
pub const fn get_order(size: usize) -> usize {
    if size <= PAGE_SIZE {
        return 0;
    }
    let pages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT;
    (usize::BITS - (pages - 1).leading_zeros()) as usize
}

/// Page flag bits (`enum pageflags`).
pub mod flags {
    /// The page heads a slab (`PG_slab`).
    pub const PG_SLAB: u32 = 1 << 0;
    /// The page heads a block of order > 0 (`PG_head`).
    pub const PG_HEAD: u32 = 1 << 1;
    /// The page is a tail page of a compound block.
    pub const PG_TAIL: u32 = 1 << 2;
    /// The page heads a free buddy block (`PG_buddy`).
    pub const PG_BUDDY: u32 = 1 << 3;
    /// The block's memory was returned to the OS (`MADV_DONTNEED`) while free.
    pub const PG_RELEASED: u32 = 1 << 4;
    /// Bit spinlock for SLUB's slab_lock (the fallback when cmpxchg_double is off).
    pub const PG_LOCKED: u32 = 1 << 5;
    /// SLUB: the slab is on a node's full list (debug caches).
    pub const PG_ON_FULL: u32 = 1 << 6;
    /// The page is in use by someone (set by alloc_pages, cleared by free_pages).
    pub const PG_ALLOCATED: u32 = 1 << 7;
    /// SLAB: the descriptor is off-slab.
    pub const PG_OFF_SLAB: u32 = 1 << 8;
    /// First bit free for an allocator's private use.
    pub const PG_PRIVATE_0: u32 = 1 << 16;
    /// Second private bit.
    pub const PG_PRIVATE_1: u32 = 1 << 17;
}

/// Who holds pages, for the provider's accounting (current and peak pages by owner).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Not allocated.
    Free = 0,
    /// Object pages (slabs) of slab-classic.
    SlabClassic = 1,
    /// Object pages (slabs) of SLUB.
    Slub = 2,
    /// kmalloc requests above the largest size class, served from whole pages.
    LargeKmalloc = 3,
    /// An allocator's own structures (kmem_cache, nodes, per-CPU arrays) when not in a slab.
    Metadata = 4,
    /// Anything else (tests, benchmarks of the provider itself).
    Other = 5,
}

impl Owner {
    /// Number of owner tags (array size for accounting).
    pub const COUNT: usize = 6;
    /// All tags, in index order.
    pub const ALL: [Owner; Self::COUNT] = [
        Owner::Free,
        Owner::SlabClassic,
        Owner::Slub,
        Owner::LargeKmalloc,
        Owner::Metadata,
        Owner::Other,
    ];

    /// Lower-case name for reports and CSV columns.
    pub const fn name(self) -> &'static str {
        match self {
            Owner::Free => "free",
            Owner::SlabClassic => "slab-classic",
            Owner::Slub => "slub",
            Owner::LargeKmalloc => "large-kmalloc",
            Owner::Metadata => "metadata",
            Owner::Other => "other",
        }
    }

    /// The tag with index `v`, if any.
    pub const fn from_u8(v: u8) -> Option<Owner> {
        if (v as usize) < Self::COUNT {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }
}

/// The descriptor of one 4 KiB page. See the module documentation for the layout.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct Page {
    /// SLUB's `freelist` (lo) and `counters` (hi), swapped together by `cmpxchg_double`.
    pub freelist_counters: DoubleWord,
    /// List link: slab lists, buddy free lists; compound-head link on tail pages.
    pub lru: ListHead,
    /// Address of the owning `kmem_cache` (0 if none).
    pub slab_cache: AtomicUsize,
    /// SLAB: slab descriptor address. SLUB: next slab on the per-CPU partial chain.
    pub private: usize,
    /// SLUB: number of slabs on the per-CPU partial chain from this one down.
    pub slabs: u32,
    /// `PG_*` bits of [`flags`].
    pub flags: AtomicU32,
    /// Order of the block this head page starts.
    pub order: u8,
    /// Node of the arena holding this page.
    pub node: u8,
    /// [`Owner`] tag, as `u8`.
    pub owner: u8,
    _pad: u8,
    /// Free for the owner of the page.
    pub spare: u32,
}

const _: () = assert!(core::mem::size_of::<Page>() == 64);
const _: () = assert!(core::mem::align_of::<Page>() == 64);
const _: () = assert!(core::mem::offset_of!(Page, freelist_counters) % 16 == 0);
const _: () = assert!(core::mem::offset_of!(Page, lru) == 16);

impl Page {
    /// A zeroed descriptor (what a fresh `mem_map` page of zeroes holds).
    pub const fn zeroed() -> Self {
        Self {
            freelist_counters: DoubleWord::new(0, 0),
            lru: ListHead::new(),
            slab_cache: AtomicUsize::new(0),
            private: 0,
            slabs: 0,
            flags: AtomicU32::new(0),
            order: 0,
            node: 0,
            owner: 0,
            _pad: 0,
            spare: 0,
        }
    }

    /// The `Page` whose `lru` link is `link` (`list_entry(link, struct page, lru)`).
    #[inline(always)]
    pub fn from_lru(link: *mut ListHead) -> *mut Page {
        link.cast::<u8>()
            .wrapping_sub(core::mem::offset_of!(Page, lru))
            .cast::<Page>()
    }

    /// Pointer to the `lru` link of `page`.
    #[inline(always)]
    pub fn lru_of(page: *mut Page) -> *mut ListHead {
        // SAFETY-free: pure address arithmetic on a raw pointer (no dereference).
        page.cast::<u8>()
            .wrapping_add(core::mem::offset_of!(Page, lru))
            .cast::<ListHead>()
    }

    /// Tests flag bits (relaxed; flags are published by the alloc/free that set them).
    #[inline(always)]
    pub fn test_flags(&self, bits: u32) -> bool {
        self.flags.load(Ordering::Relaxed) & bits == bits
    }

    /// Sets flag bits.
    #[inline(always)]
    pub fn set_flags(&self, bits: u32) {
        self.flags.fetch_or(bits, Ordering::Relaxed);
    }

    /// Clears flag bits.
    #[inline(always)]
    pub fn clear_flags(&self, bits: u32) {
        self.flags.fetch_and(!bits, Ordering::Relaxed);
    }

    /// `PageSlab`.
    #[inline(always)]
    pub fn is_slab(&self) -> bool {
        self.test_flags(flags::PG_SLAB)
    }

    /// `PageTail`.
    #[inline(always)]
    pub fn is_tail(&self) -> bool {
        self.test_flags(flags::PG_TAIL)
    }

    /// The owning cache address, or 0.
    #[inline(always)]
    pub fn cache(&self) -> usize {
        self.slab_cache.load(Ordering::Relaxed)
    }

    /// The [`Owner`] tag of this (head) page.
    pub fn owner(&self) -> Option<Owner> {
        Owner::from_u8(self.owner)
    }

    /// `slab_lock`: spins on the `PG_LOCKED` bit (SLUB's per-slab bit spinlock).
    pub fn slab_lock(&self) {
        let mut spins = 0u32;
        while self.flags.fetch_or(flags::PG_LOCKED, Ordering::Acquire) & flags::PG_LOCKED != 0 {
            crate::sync::relax(&mut spins);
        }
    }

    /// `slab_unlock`.
    pub fn slab_unlock(&self) {
        self.flags.fetch_and(!flags::PG_LOCKED, Ordering::Release);
    }
}

/// SLUB's `counters` word: `{inuse:16, objects:15, frozen:1}` packed as the kernel's bitfields
/// are on x86-64 (first field in the lowest bits), in the low 32 bits of the word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlabCounters {
    /// Objects in use (allocated, or held by a CPU freelist).
    pub inuse: u16,
    /// Objects in the slab (15 bits, at most 32767).
    pub objects: u16,
    /// Owned by one CPU (CPU slab or per-CPU partial).
    pub frozen: bool,
}

impl SlabCounters {
    /// Largest `objects` value (`MAX_OBJS_PER_PAGE` of 6.4).
    pub const MAX_OBJECTS: u16 = 0x7fff;

    /// Packs into the `counters` word.
    #[inline(always)]
    pub const fn pack(self) -> usize {
        (self.inuse as usize)
            | (((self.objects & Self::MAX_OBJECTS) as usize) << 16)
            | ((self.frozen as usize) << 31)
    }

    /// Unpacks a `counters` word.
    #[inline(always)]
    pub const fn unpack(word: usize) -> Self {
        Self {
            inuse: word as u16,
            objects: ((word >> 16) as u16) & Self::MAX_OBJECTS,
            frozen: (word >> 31) & 1 == 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_and_bit_positions() {
        let c = SlabCounters {
            inuse: 7,
            objects: 32767,
            frozen: true,
        };
        assert_eq!(SlabCounters::unpack(c.pack()), c);
        assert_eq!(c.pack(), 7 | (32767 << 16) | (1 << 31));
        let z = SlabCounters::default();
        assert_eq!(z.pack(), 0);
    }

    #[test]
    fn lru_container_of() {
        let mut p = Page::zeroed();
        let pp = &raw mut p;
        assert_eq!(Page::from_lru(Page::lru_of(pp)), pp);
    }

    #[test]
    fn owner_tags() {
        for (i, o) in Owner::ALL.iter().enumerate() {
            assert_eq!(Owner::from_u8(i as u8), Some(*o));
        }
        assert_eq!(Owner::from_u8(200), None);
    }

    #[test]
    fn bit_lock() {
        let p = Page::zeroed();
        p.slab_lock();
        assert!(p.test_flags(flags::PG_LOCKED));
        p.slab_unlock();
        assert!(!p.test_flags(flags::PG_LOCKED));
    }
}
