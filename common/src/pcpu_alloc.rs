//! The per-CPU area allocator behind [`PerCpu`](crate::percpu::PerCpu): `pcpu_alloc` /
//! `free_percpu` in the spirit of the kernel's mm/percpu.c, reduced to what a user-space port
//! needs.
//!
//! ```text
//!   pcpu_alloc(bytes) ──► units > chunk capacity? ──► own block of pages (alloc_pages, as before)
//!                    └──► percpu lock: first fit over the chunk list, else a new chunk
//!                                      (alloc_pages under the lock), mark the run in its map
//!   free_percpu(block) ─► percpu lock: clear the run; an empty chunk is unlinked and its pages
//!                                      go back to the provider (free_pages under the lock)
//! ```
//!
//! # Memory
//! A *chunk* is one buddy block of `2^chunk_order` pages (`Owner::Metadata`, node 0 falling back
//! to the other nodes) cut into 64-byte *units*. Its first `header_units` units hold the chunk
//! header: the link to the next chunk, the count of free units and the allocation map (one bit
//! per unit, set = in use; the header's own units are always set). A request for `bytes` takes
//! `ceil(bytes / 64)` contiguous units, first fit over the chunks in list order; a request larger
//! than a chunk's capacity gets its own block of pages, exactly as `PerCpu` did before. Every
//! area is 64-byte aligned (a chunk is a buddy block, so it is aligned to its own size, and units
//! are 64 bytes), so `PerCpu`'s cache-line slots stay aligned and never share a line.
//!
//! The chunk order is fixed per provider: the smallest order whose chunk holds 16 areas of one
//! line per possible CPU of the provider's topology (order 0 on a machine of up to 3 CPUs), at
//! most [`MAX_CHUNK_ORDER`]. The list head and that geometry live in [`PcpuAlloc`], a field of
//! the provider's own state (its private mapping), and the headers live in the chunks: nothing
//! here touches the Rust heap, and every `PageProvider` handle shares one allocator. The pages
//! come through `ChunkPages`, which the provider implements and passes in with that state.
//!
//! # Invariants (checked by [`PageProvider::check_invariants`](crate::PageProvider::check_invariants))
//! 1. Every chunk on the list is an allocated `Owner::Metadata` block of `chunk_order` pages of
//!    this provider, and is on the list exactly once.
//! 2. A chunk's map has the header units set, and its free count equals the number of clear bits.
//! 3. No chunk on the list is empty (all non-header units free): an empty chunk is returned to
//!    the provider at once.
//! 4. The areas handed out are disjoint runs of set bits; `units_in_use` is the sum of their
//!    units over all chunks (own blocks are not counted there).
//!
//! # Locks
//! Nothing allocates from the heap under the percpu lock: `check` compares only numbers read
//! under it and returns a [`Violation`] that its caller formats after the lock is released.
//! One [`SpinLock`] (the *percpu lock*) protects the chunk list, every chunk header and map, and
//! the counters in [`ChunkList`]. Lock order: **percpu lock → node buddy lock**. `pcpu_alloc`
//! and `free_percpu` call `alloc_pages` / `free_pages` with the percpu lock held (so a chunk is
//! never visible half-built or half-freed); that is safe because the node locks are leaf locks:
//! nothing takes the percpu lock while holding a node lock. The percpu lock itself is taken only
//! here and never held while running anything but the page provider — in particular not while
//! `PerCpu` runs a slot's `init` or `drop`, so slab-allocator locks (slab_mutex, list_lock, the
//! per-CPU locks) may be held around `PerCpu::new`/`drop` (they come before the percpu lock) but
//! are never taken inside it.

use crate::check::Violation;
use crate::page::Owner;
use crate::page::{get_order, Page, PAGE_SIZE};
use crate::sync::SpinLock;
use core::cell::Cell;
use core::ptr::NonNull;

/// Bytes per allocation unit (one cache line).
pub const UNIT: usize = 64;
/// Largest chunk: `2^4` pages, 1024 units.
pub const MAX_CHUNK_ORDER: usize = 4;
/// Areas of one line per CPU a chunk should hold when the chunk order is chosen.
const AREAS_PER_CHUNK: usize = 16;

/// The fixed part of a chunk header; the map words follow it.
#[repr(C)]
struct ChunkHead {
    /// Address of the next chunk on the list (0: the last).
    next: Cell<usize>,
    /// Free (clear) units in the map.
    free: Cell<usize>,
}

/// What the percpu lock protects.
pub(crate) struct ChunkList {
    /// Address of the first chunk (0: none).
    first: Cell<usize>,
    /// Chunks on the list.
    chunks: Cell<usize>,
    /// Units handed out from chunks.
    units_in_use: Cell<usize>,
    /// Areas served by their own block of pages, live now.
    big_areas: Cell<usize>,
}

// SAFETY: ChunkList is only reached through the percpu SpinLock, so the Cells (and the chunk
// headers their addresses lead to) are used by one thread at a time.
unsafe impl Send for ChunkList {}

/// What the per-CPU allocator needs from the page provider that holds its state, passed in by
/// the provider (which implements it) and by `PerCpu`, so this module sits below `provider`.
pub(crate) trait ChunkPages {
    /// Why a block could not be given back.
    type Error: core::fmt::Debug;
    /// A block of `2^order` `Owner::Metadata` pages (node 0 first, then the nearest nodes).
    fn alloc_chunk_block(&self, order: usize) -> Option<NonNull<u8>>;
    /// Gives back a block from [`ChunkPages::alloc_chunk_block`].
    ///
    /// # Safety
    /// `addr` came from `alloc_chunk_block(order)` of this provider and nobody uses it any more.
    unsafe fn free_chunk_block(&self, addr: NonNull<u8>, order: usize) -> Result<(), Self::Error>;
    /// The descriptor of the page at `addr`, if the provider maps it.
    fn chunk_page(&self, addr: usize) -> Option<NonNull<Page>>;
}

/// The per-CPU area allocator's state, in [`ProviderInner`](crate::provider) (the provider's own
/// mapping). The geometry is fixed at creation; the list is behind the percpu lock.
pub(crate) struct PcpuAlloc {
    chunk_order: usize,
    /// Units per chunk (`PAGE_SIZE << chunk_order) / UNIT`).
    chunk_units: usize,
    /// Units taken by the header (link, free count, map).
    header_units: usize,
    /// u64 words of the map.
    map_words: usize,
    list: SpinLock<ChunkList>,
}

/// Accounting of the per-CPU allocator (tests, reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PcpuStats {
    /// Order of every chunk.
    pub chunk_order: usize,
    /// Units a chunk can hand out (its units minus the header's).
    pub chunk_capacity: usize,
    /// Chunks held now.
    pub chunks: usize,
    /// Units handed out from chunks now.
    pub units_in_use: usize,
    /// Live areas that have their own block of pages (larger than a chunk).
    pub big_areas: usize,
}

/// One area handed out by [`pcpu_alloc`]. Two words, so `PerCpu` (and the `kmem_cache` that
/// embeds it) keeps the size it had with one block per instance: whether the area is a chunk's
/// run of units or a block of its own follows from `bytes` and the provider's fixed geometry.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PcpuArea {
    /// First byte (64-byte aligned).
    pub addr: NonNull<u8>,
    /// Bytes requested.
    bytes: usize,
}

impl PcpuAlloc {
    /// The allocator for a provider whose topology has `nr_cpu_ids` possible CPUs.
    pub(crate) fn new(nr_cpu_ids: usize) -> Self {
        let want_units = AREAS_PER_CHUNK * nr_cpu_ids.max(1) + 1;
        let mut chunk_order = 0;
        while chunk_order < MAX_CHUNK_ORDER && (PAGE_SIZE << chunk_order) / UNIT < want_units {
            chunk_order += 1;
        }
        let chunk_units = (PAGE_SIZE << chunk_order) / UNIT;
        let map_words = chunk_units.div_ceil(64);
        let header_bytes = core::mem::size_of::<ChunkHead>() + 8 * map_words;
        Self {
            chunk_order,
            chunk_units,
            header_units: header_bytes.div_ceil(UNIT),
            map_words,
            list: SpinLock::new(ChunkList {
                first: Cell::new(0),
                chunks: Cell::new(0),
                units_in_use: Cell::new(0),
                big_areas: Cell::new(0),
            }),
        }
    }

    fn capacity(&self) -> usize {
        self.chunk_units - self.header_units
    }

    /// Units for `bytes`, and the order of a block of its own if they do not fit in a chunk.
    fn units_and_order(&self, bytes: usize) -> (usize, Option<usize>) {
        let units = bytes.div_ceil(UNIT).max(1);
        let own = (units > self.capacity()).then(|| get_order(bytes.max(PAGE_SIZE)));
        (units, own)
    }

    fn chunk_bytes(&self) -> usize {
        PAGE_SIZE << self.chunk_order
    }

    /// The snapshot behind [`PageProvider::percpu_stats`](crate::PageProvider::percpu_stats).
    pub(crate) fn stats(&self) -> PcpuStats {
        let l = self.list.lock();
        PcpuStats {
            chunk_order: self.chunk_order,
            chunk_capacity: self.capacity(),
            chunks: l.chunks.get(),
            units_in_use: l.units_in_use.get(),
            big_areas: l.big_areas.get(),
        }
    }
}

/// The header and map of the chunk at `base`.
///
/// # Safety
/// `base` must be a chunk on the list of `pa` (or one being set up by the caller), and the
/// caller must hold `pa`'s percpu lock for as long as it uses the references.
unsafe fn chunk<'a>(pa: &PcpuAlloc, base: usize) -> (&'a ChunkHead, &'a [Cell<u64>]) {
    let head = base as *const ChunkHead;
    // SAFETY: the chunk is an allocated block of ours at least header_units * 64 bytes long,
    // aligned to its size; its header is only touched under the percpu lock the caller holds,
    // so these shared references to Cells are the only access. The map words directly follow
    // ChunkHead (16 bytes, so 8-aligned).
    unsafe {
        let map = head.add(1).cast::<Cell<u64>>();
        (&*head, core::slice::from_raw_parts(map, pa.map_words))
    }
}

fn test_bit(map: &[Cell<u64>], u: usize) -> bool {
    map[u / 64].get() & (1 << (u % 64)) != 0
}

fn set_run(map: &[Cell<u64>], start: usize, n: usize, on: bool) {
    for u in start..start + n {
        let w = &map[u / 64];
        let bit = 1u64 << (u % 64);
        debug_assert_eq!(w.get() & bit != 0, !on, "unit {u} already {on}");
        w.set(if on { w.get() | bit } else { w.get() & !bit });
    }
}

/// First fit: the first run of `n` clear units in `[from, to)`.
fn find_run(map: &[Cell<u64>], from: usize, to: usize, n: usize) -> Option<usize> {
    let mut start = from;
    let mut len = 0;
    for u in from..to {
        if test_bit(map, u) {
            start = u + 1;
            len = 0;
        } else {
            len += 1;
            if len == n {
                return Some(start);
            }
        }
    }
    None
}

/// `pcpu_alloc`: `bytes` (at least one unit) of 64-byte-aligned, uninitialised memory from the
/// provider's per-CPU chunks, or a block of its own if larger than a chunk. `None` if the
/// provider has no memory; then nothing was taken.
pub(crate) fn pcpu_alloc(
    pa: &PcpuAlloc,
    pages: &impl ChunkPages,
    bytes: usize,
) -> Option<PcpuArea> {
    let (units, own) = pa.units_and_order(bytes);
    if let Some(order) = own {
        let addr = pages.alloc_chunk_block(order)?;
        let l = pa.list.lock();
        l.big_areas.set(l.big_areas.get() + 1);
        return Some(PcpuArea { addr, bytes });
    }
    let l = pa.list.lock();
    let mut last = 0;
    let mut cur = l.first.get();
    while cur != 0 {
        // SAFETY: cur is on the list and we hold the percpu lock.
        let (head, map) = unsafe { chunk(pa, cur) };
        if head.free.get() >= units {
            if let Some(u) = find_run(map, pa.header_units, pa.chunk_units, units) {
                set_run(map, u, units, true);
                head.free.set(head.free.get() - units);
                l.units_in_use.set(l.units_in_use.get() + units);
                return Some(area_at(cur, u, bytes));
            }
        }
        last = cur;
        cur = head.next.get();
    }
    // No room: a new chunk, appended so the older (fuller) chunks are tried first.
    let base = pages.alloc_chunk_block(pa.chunk_order)?.as_ptr() as usize;
    // SAFETY: the block was just allocated for us and is chunk_bytes long; we hold the lock.
    let (head, map) = unsafe { init_chunk(pa, base) };
    set_run(map, pa.header_units, units, true);
    head.free.set(head.free.get() - units);
    if last == 0 {
        l.first.set(base);
    } else {
        // SAFETY: last is on the list; lock held.
        unsafe { chunk(pa, last) }.0.next.set(base);
    }
    l.chunks.set(l.chunks.get() + 1);
    l.units_in_use.set(l.units_in_use.get() + units);
    Some(area_at(base, pa.header_units, bytes))
}

/// Writes a fresh header into the chunk at `base`: not linked, all units free but the header's.
///
/// # Safety
/// `base` is a newly allocated chunk block of `pa`'s order, not on the list; the percpu lock is
/// held.
unsafe fn init_chunk<'a>(pa: &PcpuAlloc, base: usize) -> (&'a ChunkHead, &'a [Cell<u64>]) {
    // SAFETY: the block is ours and big enough for the header (header_units < chunk_units);
    // writing the plain words initialises it before any reference is made.
    unsafe {
        let head = base as *mut ChunkHead;
        head.write(ChunkHead {
            next: Cell::new(0),
            free: Cell::new(pa.capacity()),
        });
        let map = head.add(1).cast::<u64>();
        for w in 0..pa.map_words {
            map.add(w).write(0);
        }
    }
    // SAFETY: the header is initialised now; forwarded contract.
    let (head, map) = unsafe { chunk(pa, base) };
    set_run(map, 0, pa.header_units, true);
    (head, map)
}

fn area_at(base: usize, unit: usize, bytes: usize) -> PcpuArea {
    PcpuArea {
        // SAFETY: base is a non-null chunk address and the unit lies inside the chunk.
        addr: unsafe { NonNull::new_unchecked((base + unit * UNIT) as *mut u8) },
        bytes,
    }
}

/// `free_percpu`: gives an area back; a chunk left empty goes back to the provider.
///
/// # Safety
/// `area` came from [`pcpu_alloc`] on this provider (any handle), is freed once, and nobody uses
/// its memory any more.
pub(crate) unsafe fn free_percpu(pa: &PcpuAlloc, pages: &impl ChunkPages, area: PcpuArea) {
    let addr = area.addr.as_ptr() as usize;
    let (units, own) = pa.units_and_order(area.bytes);
    if let Some(order) = own {
        {
            let l = pa.list.lock();
            l.big_areas.set(l.big_areas.get() - 1);
        }
        // SAFETY: the caller's contract: the block is ours, of this order, and dead.
        let r = unsafe { pages.free_chunk_block(area.addr, order) };
        debug_assert!(r.is_ok(), "per-CPU block {addr:#x}: {r:?}");
        return;
    }
    let base = addr & !(pa.chunk_bytes() - 1);
    let unit = (addr - base) / UNIT;
    let l = pa.list.lock();
    // SAFETY: the area came from a chunk still on the list (a chunk leaves the list only when
    // empty, and this area is still in it); lock held.
    let (head, map) = unsafe { chunk(pa, base) };
    set_run(map, unit, units, false);
    head.free.set(head.free.get() + units);
    l.units_in_use.set(l.units_in_use.get() - units);
    if head.free.get() < pa.capacity() {
        return;
    }
    // Empty: unlink it and hand it back.
    let next = head.next.get();
    if l.first.get() == base {
        l.first.set(next);
    } else {
        let mut cur = l.first.get();
        loop {
            assert_ne!(cur, 0, "per-CPU chunk {base:#x} not on the list");
            // SAFETY: cur is on the list; lock held.
            let h = unsafe { chunk(pa, cur) }.0;
            if h.next.get() == base {
                h.next.set(next);
                break;
            }
            cur = h.next.get();
        }
    }
    l.chunks.set(l.chunks.get() - 1);
    // SAFETY: base is the head of the chunk block, allocated with chunk_order; it is off the
    // list and holds no area, so nobody uses it.
    let r =
        unsafe { pages.free_chunk_block(NonNull::new_unchecked(base as *mut u8), pa.chunk_order) };
    debug_assert!(r.is_ok(), "per-CPU chunk {base:#x}: {r:?}");
}

/// Checks the invariants of the module header (for [`PageProvider::check_invariants`](crate::PageProvider::check_invariants)).
pub(crate) fn check(pa: &PcpuAlloc, pages: &impl ChunkPages) -> Result<(), Violation> {
    let l = pa.list.lock();
    let mut cur = l.first.get();
    let mut n = 0;
    let mut used = 0;
    while cur != 0 {
        n += 1;
        if n > l.chunks.get() {
            return Err(Violation::new(
                "percpu: more than {} chunks on the list (a cycle?)",
                &[l.chunks.get()],
            ));
        }
        let Some(page) = pages.chunk_page(cur) else {
            return Err(Violation::new(
                "percpu: chunk {x} outside the provider",
                &[cur],
            ));
        };
        // SAFETY: the descriptor is in mem_map; reading it is always valid.
        let p = unsafe { page.as_ref() };
        if cur % pa.chunk_bytes() != 0
            || !p.test_flags(crate::page::flags::PG_ALLOCATED)
            || p.test_flags(crate::page::flags::PG_TAIL)
            || p.order as usize != pa.chunk_order
            || p.owner != Owner::Metadata as u8
        {
            return Err(Violation::new(
                "percpu: chunk {x} is not an allocated metadata block of order {}",
                &[cur, pa.chunk_order],
            ));
        }
        // SAFETY: cur is on the list; lock held.
        let (head, map) = unsafe { chunk(pa, cur) };
        if (0..pa.header_units).any(|u| !test_bit(map, u)) {
            return Err(Violation::new(
                "percpu: chunk {x} header units not marked",
                &[cur],
            ));
        }
        let clear = (0..pa.chunk_units).filter(|&u| !test_bit(map, u)).count();
        if clear != head.free.get() {
            return Err(Violation::new(
                "percpu: chunk {x} free {} but {} clear units",
                &[cur, head.free.get(), clear],
            ));
        }
        if clear == pa.capacity() {
            return Err(Violation::new("percpu: empty chunk {x} kept", &[cur]));
        }
        used += pa.capacity() - clear;
        cur = head.next.get();
    }
    if n != l.chunks.get() {
        return Err(Violation::new(
            "percpu: {} chunks on the list, count says {}",
            &[n, l.chunks.get()],
        ));
    }
    if used != l.units_in_use.get() {
        return Err(Violation::new(
            "percpu: {} units marked, count says {}",
            &[used, l.units_in_use.get()],
        ));
    }
    Ok(())
}
