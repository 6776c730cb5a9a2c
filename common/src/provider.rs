//! The page provider: the kernel's buddy allocator, one zone per (logical) NUMA node.
//!
//! ```text
//!   alloc_pages(node, order, owner) ──► reserve against limits ──► NodeArena::rmqueue (lock)
//!                                                                   │ smallest free order ≥ order,
//!                                                                   │ else a fresh MAX_ORDER-1 block
//!                                                                   └ expand(): halves to lower lists
//!   free_pages(page, order) ──► checks ──► NodeArena::free_one (lock): merge with free buddies,
//!                                          release to the OS above the watermark
//! ```
//!
//! # Memory
//! One virtual reservation (`mmap(MAP_NORESERVE)`) holds the arenas of all nodes back to back,
//! each `node_pages` pages (a power of two), aligned to the largest block (4 MiB), so a block's buddy is found by
//! flipping one bit of its page index, and `virt_to_page` is one subtraction and one shift. Each
//! node's arena is bound to the real node behind it with `mbind(MPOL_BIND)` (raw syscall); on
//! fake NUMA several arenas bind to the same real node; a memoryless node's arena binds to the
//! nearest node with memory ([`Topology::mem_node`]). The `mem_map` — one 64-byte [`Page`] per
//! page — is a second reservation, touched only for pages that are used. The provider's own state
//! lives in a third small mapping, so nothing here comes from the Rust heap: a slab allocator
//! built on it can serve as the global allocator.
//!
//! Pages never handed out are not on any free list: each node keeps a cursor (`fresh_next`) to
//! its first never-used top-order block, so a large arena costs nothing until used.
//!
//! # Invariants (checked by [`PageProvider::check_invariants`])
//! 1. A free block of order `k` starts at a page index that is a multiple of `2^k`, its head page
//!    has `PG_BUDDY` and `order == k`, and it is on exactly `free_area[k]` of its node.
//! 2. No two free blocks overlap and no free block has a free buddy of the same order (they would
//!    have been merged), except blocks of the top order.
//! 3. `nr_free` of each order equals the length of its list; `free pages + pages allocated +
//!    never-used pages == node_pages` for every node, where "allocated" is counted under the
//!    node lock (`BuddyState::allocated`), so the sum is exact while other threads allocate.
//! 4. An allocated block's head page has `PG_ALLOCATED`, its order and owner; its tail pages have
//!    `PG_TAIL` and link to the head.
//!
//! # Locks
//! One [`SpinLock`] per node protects that node's free lists, `fresh_next`, the locked page
//! counts (`free_pages`, `allocated`) and the `PG_BUDDY` state of its pages. Accounting counters
//! (`NodeCounters`, the limits' reservations) are atomics read without the lock, for statistics
//! only: [`PageProvider::check_invariants`] compares nothing but numbers read under the lock it
//! holds, so its answer is exact on a live provider. No other lock is taken while a node lock is
//! held (it is a leaf lock for both allocators), and nothing allocates from the heap under it:
//! the checker records a [`Violation`] and formats it after unlocking.
//!
//! The provider's state also holds the per-CPU area allocator ([`crate::pcpu_alloc`]: the chunk
//! list behind `PerCpu`, shared by every handle), which gets its pages through the provider's
//! `ChunkPages` implementation (so `pcpu_alloc` does not call up into this module). Its *percpu
//! lock* is taken before node locks (its `alloc_pages`/`free_pages` run while it is held), never
//! after; see that module's header.

use crate::check::Violation;
use crate::list::ListHead;
use crate::page::{
    flags::{PG_ALLOCATED, PG_BUDDY, PG_HEAD, PG_RELEASED, PG_TAIL},
    Owner, Page,
};
pub use crate::page::{get_order, PAGE_SHIFT, PAGE_SIZE};
use crate::pcpu_alloc::{ChunkPages, PcpuAlloc, PcpuStats};
use crate::sync::SpinLock;
use crate::sys;
use crate::topology::{Topology, MAX_NUMNODES};
use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `MAX_ORDER` as 2.6.32 defines it: orders `0..MAX_ORDER` exist, the largest block is
/// `2^(MAX_ORDER-1)` pages (4 MiB).
pub const MAX_ORDER: usize = 11;
/// Pages in the largest block.
pub const MAX_ORDER_NR_PAGES: usize = 1 << (MAX_ORDER - 1);
/// Bytes in the largest block.
pub const MAX_BLOCK_BYTES: usize = MAX_ORDER_NR_PAGES * PAGE_SIZE;

/// Allocation flags (the subset of `gfp_t` that means something here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Gfp(pub u32);

impl Gfp {
    /// `GFP_KERNEL`: no special behaviour.
    pub const KERNEL: Gfp = Gfp(0);
    /// `__GFP_ZERO`: zero the memory.
    pub const ZERO: Gfp = Gfp(1 << 0);
    /// `__GFP_THISNODE`: do not fall back to another node.
    pub const THISNODE: Gfp = Gfp(1 << 1);
    /// `__GFP_NOWARN`.
    pub const NOWARN: Gfp = Gfp(1 << 2);
    /// `__GFP_NORETRY`.
    pub const NORETRY: Gfp = Gfp(1 << 3);
    /// `__GFP_COMP`: make a compound page (always done here for order > 0).
    pub const COMP: Gfp = Gfp(1 << 4);
    /// `GFP_NOWAIT`: the caller may not block (no direct reclaim). The provider never blocks;
    /// SLUB's sheaves (eras 6.18/7.0) skip the refill rung of `__pcs_replace_empty_main` for it.
    pub const NOWAIT: Gfp = Gfp(1 << 5);

    /// Whether all bits of `other` are set.
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Gfp {
    type Output = Gfp;
    fn bitor(self, rhs: Gfp) -> Gfp {
        Gfp(self.0 | rhs.0)
    }
}

/// How to build a provider.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The machine (or fake NUMA split) to lay arenas out for.
    pub topology: Topology,
    /// Arena size per node, in pages; rounded up to a power of two of at least the largest block
    /// (so `page_to_nid` is a shift).
    pub node_pages: usize,
    /// Most pages in use at once, over all nodes (`None`: the arena size).
    pub page_limit: Option<usize>,
    /// Most pages in use at once on each node.
    pub node_page_limit: Option<usize>,
    /// Free pages a node keeps before freed top-order blocks are given back to the OS with
    /// `MADV_DONTNEED` (`None`: never give back).
    pub release_watermark: Option<usize>,
    /// Bind each arena to its real node with `mbind` (on by default).
    pub bind: bool,
    /// Prefault every top-order block the first time it is handed out (`MADV_POPULATE_WRITE`,
    /// after the node lock is dropped), as the kernel's memory is always present: no
    /// first-touch page fault then lands in a later allocation's timing. Off by default (RSS
    /// grows by whole 4 MiB blocks); the harness turns it on.
    pub populate: bool,
}

impl ProviderConfig {
    /// Defaults for `topology`: 4 GiB of address space per node, no limit, give memory back above
    /// 64 MiB free per node, bind to nodes.
    pub fn new(topology: Topology) -> Self {
        Self {
            topology,
            node_pages: (4usize << 30) / PAGE_SIZE,
            page_limit: None,
            node_page_limit: None,
            release_watermark: Some((64usize << 20) / PAGE_SIZE),
            bind: true,
            populate: false,
        }
    }

    /// A small provider for tests: `mib` MiB per node.
    pub fn small(topology: Topology, mib: usize) -> Self {
        Self {
            node_pages: (mib << 20) / PAGE_SIZE,
            ..Self::new(topology)
        }
    }
}

/// Why a provider could not be built or a free was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageError {
    /// mmap failed with this errno.
    Map(i32),
    /// The configuration is impossible (zero pages, too many nodes).
    BadConfig(&'static str),
    /// The pointer is not a page of this provider.
    NotOurs(usize),
    /// The page is not the head of an allocated block.
    NotAllocated(usize),
    /// The order given to `free_pages` is not the block's order.
    OrderMismatch {
        /// Page address.
        addr: usize,
        /// Order of the block.
        block: usize,
        /// Order passed to free.
        given: usize,
    },
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::Map(e) => write!(f, "cannot reserve arena memory: mmap errno {e}"),
            PageError::BadConfig(s) => write!(f, "bad page provider configuration: {s}"),
            PageError::NotOurs(a) => write!(f, "address {a:#x} is not a page of this provider"),
            PageError::NotAllocated(a) => write!(
                f,
                "page {a:#x} is not the head of an allocated block (double free or tail page?)"
            ),
            PageError::OrderMismatch { addr, block, given } => write!(
                f,
                "free_pages({addr:#x}, order {given}) but the block has order {block}"
            ),
        }
    }
}

impl std::error::Error for PageError {}

/// One order's free list (`struct free_area`).
struct FreeArea {
    free_list: UnsafeCell<ListHead>,
    nr_free: Cell<usize>,
}

/// What a node's lock protects.
struct BuddyState {
    free_area: [FreeArea; MAX_ORDER],
    /// Index (in top-order blocks) of the first never-used block of the node.
    fresh_next: Cell<usize>,
    /// Free pages on the lists (not counting never-used blocks).
    free_pages: Cell<usize>,
    /// Pages handed out by `rmqueue` and not yet back through `free_one`: the in-use count the
    /// lock guards, so `free + allocated + untouched == node_pages` is exact on a live provider.
    /// (`NodeCounters::in_use` is reserved before `rmqueue` and released after `free_one`,
    /// outside the lock: it runs ahead of this one and is never compared with the lists.)
    allocated: Cell<usize>,
}

// SAFETY: BuddyState is only reached through its node's SpinLock, so the raw list pointers and
// Cells inside are used by one thread at a time. (The fields are Cells/UnsafeCells, and the state
// is only ever borrowed shared, because free pages hold raw pointers to the list heads: a unique
// borrow of the whole state would invalidate them.)
unsafe impl Send for BuddyState {}

/// Per-node counters, read without the lock.
struct NodeCounters {
    in_use: AtomicUsize,
    peak: AtomicUsize,
    blocks_by_order: [AtomicUsize; MAX_ORDER],
    released_now: AtomicUsize,
    released_total: AtomicUsize,
    madvise_calls: AtomicUsize,
    failures: AtomicUsize,
}

struct NodeArena {
    lock: SpinLock<BuddyState>,
    counters: NodeCounters,
    /// 0 if the arena is bound to its node, else the errno mbind gave (or -1: not bound).
    bind_errno: AtomicUsize,
}

/// The provider's state, placed in its own mapping.
struct ProviderInner {
    refs: AtomicUsize,
    self_len: usize,
    base: usize,
    node_pages: usize,
    /// log2(node_pages).
    node_shift: u32,
    nr_nodes: usize,
    /// `nr_nodes * node_pages * PAGE_SIZE`: the bytes of all arenas (the `virt_to_page` bound).
    span: usize,
    mem_map: *mut Page,
    map_len: usize,
    page_limit: usize,
    node_page_limit: usize,
    release_watermark: usize,
    populate: bool,
    in_use: AtomicUsize,
    peak: AtomicUsize,
    owner_cur: [AtomicUsize; Owner::COUNT],
    owner_peak: [AtomicUsize; Owner::COUNT],
    topology: Topology,
    nodes: [NodeArena; MAX_NUMNODES],
    /// The per-CPU area allocator (chunk list behind the percpu lock).
    pcpu: PcpuAlloc,
}

/// A handle on a page provider. Cloning shares the provider (a reference count kept in the
/// provider's own memory, no heap); the last handle dropped unmaps everything.
pub struct PageProvider {
    inner: NonNull<ProviderInner>,
    /// Copies of the immutable address-map fields, held in every handle so the hot look-ups
    /// (`virt_to_page`, `page_address`, `page_to_nid`) are one load from the handle's owner
    /// away instead of two (the allocators embed their handle; a free's page look-up then
    /// does not wait for the `inner` pointer first).
    map: MapView,
}

/// The address-map fields of [`ProviderInner`], fixed at creation.
#[derive(Clone, Copy)]
struct MapView {
    base: usize,
    span: usize,
    mem_map: *mut Page,
    node_shift: u32,
}

impl MapView {
    fn of(i: &ProviderInner) -> Self {
        Self {
            base: i.base,
            span: i.span,
            mem_map: i.mem_map,
            node_shift: i.node_shift,
        }
    }
}

// SAFETY: all shared state in ProviderInner is behind per-node spinlocks or atomics; raw pointers
// in it point into mappings owned by the provider for its whole life.
unsafe impl Send for PageProvider {}
// SAFETY: see Send; every method takes &self and synchronises internally.
unsafe impl Sync for PageProvider {}

impl Clone for PageProvider {
    fn clone(&self) -> Self {
        self.inner().refs.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: self.inner,
            map: self.map,
        }
    }
}

impl Drop for PageProvider {
    fn drop(&mut self) {
        if self.inner().refs.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let inner = self.inner;
        let (base, total, map, map_len, self_len) = {
            let i = self.inner();
            (
                i.base,
                i.nr_nodes * i.node_pages * PAGE_SIZE,
                i.mem_map,
                i.map_len,
                i.self_len,
            )
        };
        // SAFETY: this was the last handle, so nothing references the arenas, the map or the
        // inner struct any more; each range is exactly the mapping made in `new`.
        unsafe {
            sys::munmap(NonNull::new_unchecked(base as *mut u8), total);
            sys::munmap(NonNull::new_unchecked(map.cast::<u8>()), map_len);
            core::ptr::drop_in_place(inner.as_ptr());
            sys::munmap(inner.cast::<u8>(), self_len);
        }
    }
}

/// A snapshot of the provider's accounting.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProviderStats {
    /// Pages handed out now.
    pub pages_in_use: usize,
    /// Most pages handed out at once.
    pub peak_pages: usize,
    /// Pages handed out now, by [`Owner`] index.
    pub owner_pages: [usize; Owner::COUNT],
    /// Peak pages by owner.
    pub owner_peak: [usize; Owner::COUNT],
    /// Pages of `mem_map` descriptors that cover the arenas (64 B per page), whether touched or
    /// not: the provider's own overhead.
    pub mem_map_bytes: usize,
    /// Pages currently given back to the OS while free.
    pub released_pages: usize,
    /// Pages ever given back to the OS.
    pub released_total: usize,
    /// `madvise(MADV_DONTNEED)` calls made.
    pub madvise_calls: usize,
    /// Requests that could not be served.
    pub failures: usize,
}

impl ProviderStats {
    /// Pages held by `owner` now.
    pub fn owner(&self, owner: Owner) -> usize {
        self.owner_pages[owner as usize]
    }
}

/// A snapshot of one node's accounting.
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeStats {
    /// Pages handed out now.
    pub pages_in_use: usize,
    /// Most pages handed out at once.
    pub peak_pages: usize,
    /// Allocated blocks now, by order.
    pub blocks_by_order: [usize; MAX_ORDER],
    /// Free blocks on the lists, by order.
    pub free_by_order: [usize; MAX_ORDER],
    /// Free pages on the lists.
    pub free_pages: usize,
    /// Pages never handed out yet.
    pub untouched_pages: usize,
    /// Pages given back to the OS now.
    pub released_pages: usize,
    /// `None` if bound to its real node, else the errno of `mbind` (or `None` with bind off).
    pub bind_errno: Option<i32>,
}

const BIND_NOT_TRIED: usize = usize::MAX;

impl PageProvider {
    /// Reserves the arenas and the page map for `cfg`.
    pub fn new(cfg: &ProviderConfig) -> Result<Self, PageError> {
        let nr_nodes = cfg.topology.nr_nodes();
        if nr_nodes == 0 || nr_nodes > MAX_NUMNODES {
            return Err(PageError::BadConfig("node count out of range"));
        }
        if cfg.node_pages == 0 {
            return Err(PageError::BadConfig("zero pages per node"));
        }
        // A power of two (at least one top-order block), so page_to_nid is a shift.
        let node_pages = cfg.node_pages.max(MAX_ORDER_NR_PAGES).next_power_of_two();
        let total_pages = node_pages
            .checked_mul(nr_nodes)
            .ok_or(PageError::BadConfig("arena too large"))?;
        let total = total_pages
            .checked_mul(PAGE_SIZE)
            .ok_or(PageError::BadConfig("arena too large"))?;

        // Arenas, aligned to the largest block.
        let base = sys::mmap_reserve_aligned(total, MAX_BLOCK_BYTES)
            .map_err(PageError::Map)?
            .as_ptr() as usize;
        let map_len = (total_pages * core::mem::size_of::<Page>()).next_multiple_of(PAGE_SIZE);
        let mem_map = match sys::mmap_reserve(map_len) {
            Ok(p) => p.as_ptr().cast::<Page>(),
            Err(e) => {
                // SAFETY: the arena reservation is ours and unused.
                unsafe { sys::munmap(NonNull::new_unchecked(base as *mut u8), total) };
                return Err(PageError::Map(e));
            }
        };
        let self_len = core::mem::size_of::<ProviderInner>().next_multiple_of(PAGE_SIZE);
        let inner_mem = match sys::mmap_reserve(self_len) {
            Ok(p) => p.cast::<ProviderInner>(),
            Err(e) => {
                // SAFETY: both reservations are ours and unused.
                unsafe {
                    sys::munmap(NonNull::new_unchecked(base as *mut u8), total);
                    sys::munmap(NonNull::new_unchecked(mem_map.cast::<u8>()), map_len);
                }
                return Err(PageError::Map(e));
            }
        };
        let inner = ProviderInner {
            refs: AtomicUsize::new(1),
            self_len,
            base,
            node_pages,
            node_shift: node_pages.trailing_zeros(),
            span: nr_nodes * node_pages * PAGE_SIZE,
            nr_nodes,
            mem_map,
            map_len,
            page_limit: cfg.page_limit.unwrap_or(usize::MAX),
            node_page_limit: cfg.node_page_limit.unwrap_or(usize::MAX),
            release_watermark: cfg.release_watermark.unwrap_or(usize::MAX),
            populate: cfg.populate,
            in_use: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            owner_cur: Default::default(),
            owner_peak: Default::default(),
            topology: cfg.topology.clone(),
            nodes: core::array::from_fn(|_| NodeArena {
                lock: SpinLock::new(BuddyState {
                    free_area: core::array::from_fn(|_| FreeArea {
                        free_list: UnsafeCell::new(ListHead::new()),
                        nr_free: Cell::new(0),
                    }),
                    fresh_next: Cell::new(0),
                    free_pages: Cell::new(0),
                    allocated: Cell::new(0),
                }),
                counters: NodeCounters {
                    in_use: AtomicUsize::new(0),
                    peak: AtomicUsize::new(0),
                    blocks_by_order: Default::default(),
                    released_now: AtomicUsize::new(0),
                    released_total: AtomicUsize::new(0),
                    madvise_calls: AtomicUsize::new(0),
                    failures: AtomicUsize::new(0),
                },
                bind_errno: AtomicUsize::new(BIND_NOT_TRIED),
            }),
            pcpu: PcpuAlloc::new(cfg.topology.nr_cpu_ids()),
        };
        // SAFETY: inner_mem is a fresh mapping of at least size_of::<ProviderInner>() bytes,
        // page-aligned (so aligned for ProviderInner); nothing else refers to it.
        unsafe { inner_mem.as_ptr().write(inner) };
        // SAFETY: inner_mem was initialised just above.
        let map = MapView::of(unsafe { inner_mem.as_ref() });
        let provider = Self {
            inner: inner_mem,
            map,
        };
        // The list heads must be initialised where they will stay.
        for n in 0..nr_nodes {
            let st = provider.inner().nodes[n].lock.lock();
            for fa in &st.free_area {
                // SAFETY: the head lives in the provider's mapping and never moves.
                unsafe { ListHead::init(fa.free_list.get()) };
            }
        }
        if cfg.bind {
            for n in 0..nr_nodes {
                // A memoryless node's arena is bound to the nearest node with memory, where
                // the kernel would place its allocations (numa_mem_id).
                let real = cfg.topology.real_node(cfg.topology.mem_node(n));
                let start = base + n * node_pages * PAGE_SIZE;
                // SAFETY: the node's arena is part of our reservation.
                let r = unsafe {
                    sys::mbind_bind(
                        NonNull::new_unchecked(start as *mut u8),
                        node_pages * PAGE_SIZE,
                        real,
                    )
                };
                let v = match r {
                    Ok(()) => 0,
                    Err(e) => e.max(1) as usize,
                };
                provider.inner().nodes[n]
                    .bind_errno
                    .store(v, Ordering::Relaxed);
            }
        }
        Ok(provider)
    }

    /// A provider for this machine's topology ([`Topology::detect`]) with default settings.
    pub fn detect() -> Result<Self, Box<dyn std::error::Error>> {
        let topo = Topology::detect()?;
        Ok(Self::new(&ProviderConfig::new(topo))?)
    }

    #[inline(always)]
    fn inner(&self) -> &ProviderInner {
        // SAFETY: `inner` points to the initialised ProviderInner that lives while any handle
        // (such as self) exists.
        unsafe { self.inner.as_ref() }
    }

    /// The topology the arenas were laid out for.
    pub fn topology(&self) -> &Topology {
        &self.inner().topology
    }

    /// Logical nodes (arenas).
    pub fn nr_nodes(&self) -> usize {
        self.inner().nr_nodes
    }

    /// Pages per node arena.
    pub fn node_pages(&self) -> usize {
        self.inner().node_pages
    }

    /// Whether `addr` lies inside one of the arenas.
    #[inline(always)]
    pub fn contains(&self, addr: usize) -> bool {
        let i = &self.map;
        addr.wrapping_sub(i.base) < i.span
    }

    /// `virt_to_page`: the descriptor of the page holding `addr`, or `None` for an address
    /// outside every arena (never dereferenced).
    #[inline(always)]
    pub fn virt_to_page(&self, addr: usize) -> Option<NonNull<Page>> {
        let i = &self.map;
        let off = addr.wrapping_sub(i.base);
        if off >= i.span {
            return None;
        }
        // SAFETY: the index is below total_pages, so the pointer is inside mem_map.
        Some(unsafe { NonNull::new_unchecked(i.mem_map.add(off >> PAGE_SHIFT)) })
    }

    /// `virt_to_head_page`: the head page of the block holding `addr` (follows a tail page's
    /// link), or `None` outside every arena.
    #[inline(always)]
    pub fn virt_to_head_page(&self, addr: usize) -> Option<NonNull<Page>> {
        self.virt_to_page(addr).map(|p| self.compound_head(p))
    }

    /// `compound_head`: the head page of a tail page, or the page itself.
    #[inline(always)]
    pub fn compound_head(&self, page: NonNull<Page>) -> NonNull<Page> {
        // SAFETY: `page` is a descriptor in our mem_map (caller got it from us); reading the
        // flags and link word of a descriptor is always valid (the map is zero-filled memory).
        unsafe {
            let p = page.as_ref();
            if p.is_tail() {
                let link = core::ptr::addr_of!((*page.as_ptr()).lru.next).read_volatile() as usize;
                if link & 1 == 1 && self.is_page_ptr(link & !1) {
                    return NonNull::new_unchecked((link & !1) as *mut Page);
                }
            }
        }
        page
    }

    /// Whether `p` points at a descriptor inside this provider's `mem_map`.
    #[inline(always)]
    pub fn is_page_ptr(&self, p: usize) -> bool {
        let i = &self.map;
        let off = p.wrapping_sub(i.mem_map as usize);
        off < (i.span >> PAGE_SHIFT) * core::mem::size_of::<Page>()
            && off % core::mem::size_of::<Page>() == 0
    }

    #[inline(always)]
    fn page_index(&self, page: NonNull<Page>) -> usize {
        (page.as_ptr() as usize - self.map.mem_map as usize) / core::mem::size_of::<Page>()
    }

    #[inline(always)]
    fn page_at(&self, index: usize) -> NonNull<Page> {
        // SAFETY: callers pass an index below total_pages.
        unsafe { NonNull::new_unchecked(self.map.mem_map.add(index)) }
    }

    /// `page_address`: the first byte of the page `page` describes.
    #[inline(always)]
    pub fn page_address(&self, page: NonNull<Page>) -> NonNull<u8> {
        let addr = self.map.base + (self.page_index(page) << PAGE_SHIFT);
        // SAFETY: base is non-zero and the offset stays inside the arenas.
        unsafe { NonNull::new_unchecked(addr as *mut u8) }
    }

    /// `page_to_nid`: the (logical) node whose arena holds the page.
    #[inline(always)]
    pub fn page_to_nid(&self, page: NonNull<Page>) -> usize {
        self.page_index(page) >> self.map.node_shift
    }

    fn reserve(&self, node: usize, pages: usize) -> bool {
        let i = self.inner();
        let c = &i.nodes[node].counters;
        if i.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                (v + pages <= i.page_limit).then_some(v + pages)
            })
            .is_err()
        {
            return false;
        }
        if c.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |v| {
                (v + pages <= i.node_page_limit).then_some(v + pages)
            })
            .is_err()
        {
            i.in_use.fetch_sub(pages, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn unreserve(&self, node: usize, pages: usize) {
        let i = self.inner();
        i.in_use.fetch_sub(pages, Ordering::AcqRel);
        i.nodes[node]
            .counters
            .in_use
            .fetch_sub(pages, Ordering::AcqRel);
    }

    /// `alloc_pages_node(node, gfp | __GFP_THISNODE, order)`: a block of `2^order` pages from
    /// `node`'s arena, aligned to its size, or `None` if the node (or a limit) cannot serve it.
    /// Never panics or aborts.
    pub fn alloc_pages(&self, node: usize, order: usize, owner: Owner) -> Option<NonNull<Page>> {
        self.alloc_pages_gfp(node, order, owner, Gfp::THISNODE)
    }

    /// `alloc_pages_node` with flags: without [`Gfp::THISNODE`] it falls back to the other nodes
    /// nearest first; with [`Gfp::ZERO`] the memory is zeroed.
    pub fn alloc_pages_gfp(
        &self,
        node: usize,
        order: usize,
        owner: Owner,
        gfp: Gfp,
    ) -> Option<NonNull<Page>> {
        let i = self.inner();
        if order >= MAX_ORDER || node >= i.nr_nodes || owner == Owner::Free {
            return None;
        }
        let page = match self.alloc_on(node, order, owner) {
            Some(p) => Some(p),
            None if !gfp.contains(Gfp::THISNODE) => {
                let order_list = i.topology.nodes_by_distance(node);
                order_list[1..i.nr_nodes]
                    .iter()
                    .find_map(|&n| self.alloc_on(n as usize, order, owner))
            }
            None => None,
        }?;
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: the block was just handed to us and is 2^order pages long.
            unsafe {
                self.page_address(page)
                    .as_ptr()
                    .write_bytes(0, PAGE_SIZE << order);
            }
        }
        Some(page)
    }

    fn alloc_on(&self, node: usize, order: usize, owner: Owner) -> Option<NonNull<Page>> {
        let i = self.inner();
        let pages = 1usize << order;
        let arena = &i.nodes[node];
        if !self.reserve(node, pages) {
            arena.counters.failures.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let Some((index, fresh)) = self.rmqueue(node, order) else {
            self.unreserve(node, pages);
            arena.counters.failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if let Some(block) = fresh.filter(|_| i.populate) {
            let addr = self.page_address(self.page_at(block));
            // SAFETY: a whole top-order block of our arena; the advice leaves contents as they
            // are, so parts already handed to other threads are unaffected. Best effort: a
            // kernel without MADV_POPULATE_WRITE just faults the pages in later.
            let _ = unsafe { sys::madvise_populate_write(addr, MAX_BLOCK_BYTES) };
        }
        let page = self.page_at(index);
        self.prep_new_page(page, index, order, node, owner);
        let c = &arena.counters;
        c.peak
            .fetch_max(c.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
        i.peak
            .fetch_max(i.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
        c.blocks_by_order[order].fetch_add(1, Ordering::Relaxed);
        let cur = i.owner_cur[owner as usize].fetch_add(pages, Ordering::Relaxed) + pages;
        i.owner_peak[owner as usize].fetch_max(cur, Ordering::Relaxed);
        Some(page)
    }

    /// Takes a block of `order` off `node`'s free lists (splitting a larger one), returning the
    /// page index of its head, and the index of the never-used top-order block it was cut from
    /// if it came from one.
    fn rmqueue(&self, node: usize, order: usize) -> Option<(usize, Option<usize>)> {
        let i = self.inner();
        let arena = &i.nodes[node];
        let st = arena.lock.lock();
        let mut found = None;
        for cur in order..MAX_ORDER {
            let head = st.free_area[cur].free_list.get();
            // SAFETY: the node lock is held; the list head was initialised in `new`.
            if let Some(link) = unsafe { ListHead::first(head) } {
                // SAFETY: lock held; `link` is on this list.
                unsafe { ListHead::del(link) };
                dec(&st.free_area[cur].nr_free, 1);
                dec(&st.free_pages, 1 << cur);
                let page = Page::from_lru(link);
                // SAFETY: a page on our free list is a descriptor in mem_map.
                let p = unsafe { &*page };
                p.clear_flags(PG_BUDDY);
                if p.test_flags(PG_RELEASED) {
                    p.clear_flags(PG_RELEASED);
                    arena
                        .counters
                        .released_now
                        .fetch_sub(1 << cur, Ordering::Relaxed);
                }
                // SAFETY: page is non-null (it came from a list link).
                found = Some((
                    self.page_index(unsafe { NonNull::new_unchecked(page) }),
                    cur,
                ));
                break;
            }
        }
        let mut fresh = None;
        if found.is_none() && st.fresh_next.get() < i.node_pages / MAX_ORDER_NR_PAGES {
            let index = node * i.node_pages + st.fresh_next.get() * MAX_ORDER_NR_PAGES;
            st.fresh_next.set(st.fresh_next.get() + 1);
            found = Some((index, MAX_ORDER - 1));
            fresh = Some(index);
        }
        let (index, mut cur) = found?;
        inc(&st.allocated, 1 << order);
        // expand(): give back the upper halves.
        while cur > order {
            cur -= 1;
            let half = index + (1 << cur);
            self.put_free(&st, half, cur);
        }
        Some((index, fresh))
    }

    /// Puts the block at `index` of `order` on its free list (node lock held via `st`).
    fn put_free(&self, st: &BuddyState, index: usize, order: usize) {
        let page = self.page_at(index);
        // SAFETY: the block is free and ours; the node lock (st) protects buddy state.
        unsafe {
            let p = page.as_ptr();
            let released = (*p).test_flags(PG_RELEASED);
            (*p).flags.store(
                PG_BUDDY | if released { PG_RELEASED } else { 0 },
                Ordering::Relaxed,
            );
            (*p).order = order as u8;
            (*p).owner = Owner::Free as u8;
            ListHead::add(Page::lru_of(p), st.free_area[order].free_list.get());
        }
        inc(&st.free_area[order].nr_free, 1);
        inc(&st.free_pages, 1 << order);
    }

    fn prep_new_page(
        &self,
        page: NonNull<Page>,
        index: usize,
        order: usize,
        node: usize,
        owner: Owner,
    ) {
        let p = page.as_ptr();
        // SAFETY: the block is now exclusively ours; its descriptors are in mem_map.
        unsafe {
            (*p).freelist_counters.set_lo(0, Ordering::Relaxed);
            (*p).freelist_counters.set_hi(0, Ordering::Relaxed);
            (*p).lru = ListHead::new();
            (*p).slab_cache.store(0, Ordering::Relaxed);
            (*p).private = 0;
            (*p).slabs = 0;
            (*p).order = order as u8;
            (*p).node = node as u8;
            (*p).owner = owner as u8;
            (*p).spare = 0;
            let head_flag = if order > 0 { PG_HEAD } else { 0 };
            (*p).flags
                .store(PG_ALLOCATED | head_flag, Ordering::Release);
            let link = (p as usize | 1) as *mut ListHead;
            for t in 1..(1usize << order) {
                let tp = self.page_at(index + t).as_ptr();
                (*tp).lru.next = link;
                (*tp).order = 0;
                (*tp).node = node as u8;
                (*tp).owner = owner as u8;
                (*tp).flags.store(PG_TAIL, Ordering::Release);
            }
        }
    }

    /// `__free_pages(page, order)`: gives a block back. Checks that `page` is the head of an
    /// allocated block of this order from this provider; a bad free is refused with an error and
    /// changes nothing.
    ///
    /// # Safety
    /// Nobody may use the block's memory after this call.
    pub unsafe fn free_pages(&self, page: NonNull<Page>, order: usize) -> Result<(), PageError> {
        let i = self.inner();
        let addr = page.as_ptr() as usize;
        if !self.is_page_ptr(addr) {
            return Err(PageError::NotOurs(addr));
        }
        let index = self.page_index(page);
        let node = index >> i.node_shift;
        let page_addr = i.base + (index << PAGE_SHIFT);
        // SAFETY: the descriptor is inside mem_map.
        let p = unsafe { page.as_ref() };
        let f = p.flags.load(Ordering::Acquire);
        if f & PG_ALLOCATED == 0 || f & PG_TAIL != 0 {
            return Err(PageError::NotAllocated(page_addr));
        }
        if p.order as usize != order {
            return Err(PageError::OrderMismatch {
                addr: page_addr,
                block: p.order as usize,
                given: order,
            });
        }
        let owner = Owner::from_u8(p.owner).unwrap_or(Owner::Other);
        let pages = 1usize << order;
        // Tail pages: drop the compound link.
        for t in 1..pages {
            // SAFETY: tails of our block, inside mem_map.
            unsafe {
                let tp = self.page_at(index + t).as_ptr();
                (*tp).flags.store(0, Ordering::Relaxed);
                (*tp).lru = ListHead::new();
                (*tp).owner = Owner::Free as u8;
            }
        }
        p.flags.store(0, Ordering::Release);
        p.slab_cache.store(0, Ordering::Relaxed);
        self.free_one(node, index, order);
        let c = &i.nodes[node].counters;
        c.blocks_by_order[order].fetch_sub(1, Ordering::Relaxed);
        i.owner_cur[owner as usize].fetch_sub(pages, Ordering::Relaxed);
        self.unreserve(node, pages);
        Ok(())
    }

    /// `__free_one_page`: merges the block with its free buddies and puts it on a free list.
    fn free_one(&self, node: usize, mut index: usize, mut order: usize) {
        let i = self.inner();
        let node_start = node * i.node_pages;
        let arena = &i.nodes[node];
        let st = arena.lock.lock();
        dec(&st.allocated, 1 << order);
        while order < MAX_ORDER - 1 {
            let buddy = node_start + ((index - node_start) ^ (1 << order));
            let bp = self.page_at(buddy).as_ptr();
            // SAFETY: the buddy index is inside the node's arena (arena is a multiple of the top
            // block and aligned to it); its buddy state is protected by the node lock we hold.
            unsafe {
                if !(*bp).test_flags(PG_BUDDY) || (*bp).order as usize != order {
                    break;
                }
                ListHead::del(Page::lru_of(bp));
                if (*bp).test_flags(PG_RELEASED) {
                    // A released buddy merged with live memory: count it as reused.
                    arena
                        .counters
                        .released_now
                        .fetch_sub(1 << order, Ordering::Relaxed);
                }
                (*bp).flags.store(0, Ordering::Relaxed);
            }
            dec(&st.free_area[order].nr_free, 1);
            dec(&st.free_pages, 1 << order);
            index = index.min(buddy);
            order += 1;
        }
        let head = self.page_at(index).as_ptr();
        // SAFETY: head of the merged free block, under the node lock.
        unsafe { (*head).flags.store(0, Ordering::Relaxed) };
        // Give a whole top-order block back to the OS when the node has plenty free.
        if order == MAX_ORDER - 1 && st.free_pages.get() + MAX_ORDER_NR_PAGES > i.release_watermark
        {
            let addr = i.base + (index << PAGE_SHIFT);
            // SAFETY: the block is free and not on any list yet, and the node lock is held, so
            // nobody can allocate it while its contents are dropped.
            let ok = unsafe {
                sys::madvise_dontneed(NonNull::new_unchecked(addr as *mut u8), MAX_BLOCK_BYTES)
            }
            .is_ok();
            arena.counters.madvise_calls.fetch_add(1, Ordering::Relaxed);
            if ok {
                // SAFETY: as above.
                unsafe { (*head).set_flags(PG_RELEASED) };
                arena
                    .counters
                    .released_now
                    .fetch_add(MAX_ORDER_NR_PAGES, Ordering::Relaxed);
                arena
                    .counters
                    .released_total
                    .fetch_add(MAX_ORDER_NR_PAGES, Ordering::Relaxed);
            }
        }
        self.put_free(&st, index, order);
    }

    /// Convenience: allocate and return the block's address.
    pub fn alloc_pages_addr(&self, node: usize, order: usize, owner: Owner) -> Option<NonNull<u8>> {
        self.alloc_pages(node, order, owner)
            .map(|p| self.page_address(p))
    }

    /// Convenience: free the block starting at `addr`.
    ///
    /// # Safety
    /// As [`Self::free_pages`].
    pub unsafe fn free_pages_addr(&self, addr: NonNull<u8>, order: usize) -> Result<(), PageError> {
        let page = self
            .virt_to_page(addr.as_ptr() as usize)
            .ok_or(PageError::NotOurs(addr.as_ptr() as usize))?;
        if addr.as_ptr() as usize & (PAGE_SIZE - 1) != 0 {
            return Err(PageError::NotAllocated(addr.as_ptr() as usize));
        }
        // SAFETY: forwarded contract.
        unsafe { self.free_pages(page, order) }
    }

    /// The accounting, summed over nodes.
    pub fn stats(&self) -> ProviderStats {
        let i = self.inner();
        let mut s = ProviderStats {
            pages_in_use: i.in_use.load(Ordering::Relaxed),
            peak_pages: i.peak.load(Ordering::Relaxed),
            mem_map_bytes: i.nr_nodes * i.node_pages * core::mem::size_of::<Page>(),
            ..Default::default()
        };
        for o in 0..Owner::COUNT {
            s.owner_pages[o] = i.owner_cur[o].load(Ordering::Relaxed);
            s.owner_peak[o] = i.owner_peak[o].load(Ordering::Relaxed);
        }
        for n in 0..i.nr_nodes {
            let c = &i.nodes[n].counters;
            s.released_pages += c.released_now.load(Ordering::Relaxed);
            s.released_total += c.released_total.load(Ordering::Relaxed);
            s.madvise_calls += c.madvise_calls.load(Ordering::Relaxed);
            s.failures += c.failures.load(Ordering::Relaxed);
        }
        s
    }

    /// One node's accounting (takes the node lock briefly for the free-list counts).
    pub fn node_stats(&self, node: usize) -> NodeStats {
        let i = self.inner();
        let a = &i.nodes[node.min(i.nr_nodes - 1)];
        let c = &a.counters;
        let mut s = NodeStats {
            pages_in_use: c.in_use.load(Ordering::Relaxed),
            peak_pages: c.peak.load(Ordering::Relaxed),
            released_pages: c.released_now.load(Ordering::Relaxed),
            bind_errno: match a.bind_errno.load(Ordering::Relaxed) {
                0 | BIND_NOT_TRIED => None,
                e => Some(e as i32),
            },
            ..Default::default()
        };
        for o in 0..MAX_ORDER {
            s.blocks_by_order[o] = c.blocks_by_order[o].load(Ordering::Relaxed);
        }
        let st = a.lock.lock();
        for o in 0..MAX_ORDER {
            s.free_by_order[o] = st.free_area[o].nr_free.get();
        }
        s.free_pages = st.free_pages.get();
        s.untouched_pages = i.node_pages - st.fresh_next.get() * MAX_ORDER_NR_PAGES;
        s
    }

    /// The per-CPU area allocator shared by every handle.
    pub(crate) fn pcpu(&self) -> &PcpuAlloc {
        &self.inner().pcpu
    }

    /// Accounting of the per-CPU area allocator (chunks behind `PerCpu`).
    pub fn percpu_stats(&self) -> PcpuStats {
        self.inner().pcpu.stats()
    }

    /// Whether the arena of `node` was bound to its real node with `mbind`.
    pub fn node_bound(&self, node: usize) -> bool {
        self.inner().nodes[node].bind_errno.load(Ordering::Relaxed) == 0
    }

    /// Walks every node's free lists and page map and checks the invariants in the module
    /// header, then those of the per-CPU chunks ([`crate::pcpu_alloc`]). Returns a description of
    /// the first violation. Takes each node lock in turn, then the percpu lock; meant for tests
    /// and `validate` runs, not fast paths.
    pub fn check_invariants(&self) -> Result<(), String> {
        // Formatted here, after every lock is released (the provider may back the global
        // allocator, so formatting under a node lock can deadlock).
        self.check_buddy().map_err(|v| v.to_string())?;
        crate::pcpu_alloc::check(self.pcpu(), self).map_err(|v| v.to_string())
    }

    fn check_buddy(&self) -> Result<(), Violation> {
        for node in 0..self.inner().nr_nodes {
            self.check_buddy_node(node)?;
        }
        Ok(())
    }

    /// Invariants 1–3 of one node, all under its lock.
    fn check_buddy_node(&self, node: usize) -> Result<(), Violation> {
        let i = self.inner();
        let st = i.nodes[node].lock.lock();
        let start = node * i.node_pages;
        let mut free_pages = 0usize;
        for (order, fa) in st.free_area.iter().enumerate() {
            let head = fa.free_list.get();
            let mut n = 0;
            // SAFETY: node lock held for the walk; links are valid list entries.
            for link in unsafe { ListHead::iter(head) } {
                n += 1;
                let page = Page::from_lru(link);
                // SAFETY: entries are descriptors in mem_map.
                let p = unsafe { &*page };
                let idx = (page as usize - i.mem_map as usize) / 64;
                if !(start..start + i.node_pages).contains(&idx) {
                    return Err(Violation::new(
                        "node {}: free block {} outside its arena",
                        &[node, idx],
                    ));
                }
                if (idx - start) % (1 << order) != 0 {
                    return Err(Violation::new(
                        "node {}: order-{} block {} misaligned",
                        &[node, order, idx],
                    ));
                }
                if !p.test_flags(PG_BUDDY) || p.order as usize != order {
                    return Err(Violation::new(
                        "node {}: block {} on order-{} list has flags {x} order {}",
                        &[node, idx, order, p.flags.load(Ordering::Relaxed) as usize],
                    ));
                }
                if order < MAX_ORDER - 1 {
                    let b = start + ((idx - start) ^ (1 << order));
                    // SAFETY: b is inside the arena, so inside mem_map.
                    let bp = unsafe { &*i.mem_map.add(b) };
                    if bp.test_flags(PG_BUDDY) && bp.order as usize == order {
                        return Err(Violation::new(
                            "node {}: order-{} blocks {} and {} are unmerged buddies",
                            &[node, order, idx, b],
                        ));
                    }
                }
                free_pages += 1 << order;
            }
            if n != fa.nr_free.get() {
                return Err(Violation::new(
                    "node {}: order {} nr_free {} but {} on list",
                    &[node, order, fa.nr_free.get(), n],
                ));
            }
        }
        if free_pages != st.free_pages.get() {
            return Err(Violation::new(
                "node {}: free_pages {} but lists hold {}",
                &[node, st.free_pages.get(), free_pages],
            ));
        }
        let allocated = st.allocated.get();
        let fresh = i.node_pages - st.fresh_next.get() * MAX_ORDER_NR_PAGES;
        if free_pages + allocated + fresh != i.node_pages {
            return Err(Violation::new(
                "node {}: free {} + allocated {} + untouched {} != node pages",
                &[node, free_pages, allocated, fresh],
            ));
        }
        Ok(())
    }
}

fn inc(c: &Cell<usize>, by: usize) {
    c.set(c.get() + by);
}

fn dec(c: &Cell<usize>, by: usize) {
    c.set(c.get() - by);
}

impl fmt::Debug for PageProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats();
        f.debug_struct("PageProvider")
            .field("nodes", &self.nr_nodes())
            .field("node_pages", &self.node_pages())
            .field("pages_in_use", &s.pages_in_use)
            .finish_non_exhaustive()
    }
}

/// The provider's pages for the per-CPU chunks whose state it holds (passed in to
/// [`crate::pcpu_alloc`], which sits below this module).
impl ChunkPages for PageProvider {
    type Error = PageError;

    fn alloc_chunk_block(&self, order: usize) -> Option<NonNull<u8>> {
        let page = self.alloc_pages_gfp(0, order, Owner::Metadata, Gfp::KERNEL)?;
        Some(self.page_address(page))
    }

    unsafe fn free_chunk_block(&self, addr: NonNull<u8>, order: usize) -> Result<(), PageError> {
        // SAFETY: forwarded contract: a block of this order from `alloc_chunk_block`, now dead.
        unsafe { self.free_pages_addr(addr, order) }
    }

    fn chunk_page(&self, addr: usize) -> Option<NonNull<Page>> {
        self.virt_to_page(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(nodes: usize, mib: usize) -> PageProvider {
        let topo = Topology::uniform(1, 2)
            .unwrap()
            .with_fake_numa(nodes)
            .unwrap();
        PageProvider::new(&ProviderConfig::small(topo, mib)).unwrap()
    }

    #[test]
    fn get_order_values() {
        assert_eq!(get_order(1), 0);
        assert_eq!(get_order(4096), 0);
        assert_eq!(get_order(4097), 1);
        assert_eq!(get_order(8192), 1);
        assert_eq!(get_order(8193), 2);
        assert_eq!(get_order(4 << 20), 10);
    }

    #[test]
    fn split_and_merge_back_to_top_order() {
        let p = provider(1, 8);
        let a = p.alloc_pages(0, 0, Owner::Other).unwrap();
        let st = p.node_stats(0);
        // One top block was split: one free block of each order 0..=9.
        assert_eq!(&st.free_by_order[..10], &[1; 10]);
        p.check_invariants().unwrap();
        // SAFETY: a is ours, freed once.
        unsafe { p.free_pages(a, 0).unwrap() };
        let st = p.node_stats(0);
        assert_eq!(st.free_by_order[10], 1);
        assert_eq!(st.free_pages, MAX_ORDER_NR_PAGES);
        p.check_invariants().unwrap();
    }

    #[test]
    fn bad_frees_are_refused() {
        let p = provider(1, 4);
        let a = p.alloc_pages(0, 2, Owner::Other).unwrap();
        // SAFETY: these calls are all refused before touching anything.
        unsafe {
            assert!(matches!(
                p.free_pages(a, 1),
                Err(PageError::OrderMismatch { .. })
            ));
            let tail = NonNull::new_unchecked(a.as_ptr().add(1));
            assert!(matches!(
                p.free_pages(tail, 0),
                Err(PageError::NotAllocated(_))
            ));
            let foreign = NonNull::new_unchecked(4096usize as *mut Page);
            assert!(matches!(
                p.free_pages(foreign, 0),
                Err(PageError::NotOurs(_))
            ));
            p.free_pages(a, 2).unwrap();
            assert!(matches!(
                p.free_pages(a, 2),
                Err(PageError::NotAllocated(_))
            ));
        }
        assert_eq!(p.stats().pages_in_use, 0);
    }
}
