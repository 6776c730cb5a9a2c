//! Cache creation and sizing — 2.6.32 `mm/slab.c` `cache_estimate`, `calculate_slab_order`,
//! `kmem_cache_create`, `setup_cpu_cache`, `enable_cpucache`, `do_tune_cpucache`,
//! `alloc_kmemlist`, `alloc_alien_cache`, `drain_cpu_caches`, `__cache_shrink`,
//! `kmem_cache_shrink`, `kmem_cache_destroy`, `__kmem_cache_destroy`.

use crate::arraycache::{ac_init, arraycache_bytes, ArrayCache, ArrayRef, BOOT_CPUCACHE_ENTRIES};
use crate::bootstrap::CpuCacheUp;
use crate::instance::SlabGlobals;
use crate::node::{kmem_list3_init, KmemList3, List};
use crate::reap::REAPTIMEOUT_LIST3;
use crate::slabmgmt::{
    align_up, reciprocal_value, slab_mgmt_size, BUFCTL_SIZE, SLAB_DESC_SIZE, SLAB_LIMIT,
};
use crate::stats::CacheStats;
use common::api::{CacheName, Ctor, SlabError, SlabFlags};
use common::list::ListHead;
use common::percpu::LocalLock;
use common::sizes::slub_index::fls;
use common::{Gfp, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// `CFLGS_OFF_SLAB`: the slab descriptor is off-slab (internal flag bit).
pub(crate) const CFLGS_OFF_SLAB: u32 = 0x8000_0000;
/// `BYTES_PER_WORD`.
pub(crate) const BYTES_PER_WORD: usize = core::mem::size_of::<usize>();
/// `KMALLOC_MAX_ORDER` of 2.6.32 with 4 KiB pages and `MAX_ORDER` 11: 10.
pub const KMALLOC_MAX_ORDER: usize = 10;
/// `KMALLOC_MAX_SIZE`: 4 MiB.
pub(crate) const KMALLOC_MAX_SIZE: usize = PAGE_SIZE << KMALLOC_MAX_ORDER;
/// `BREAK_GFP_ORDER_LO`.
pub const BREAK_GFP_ORDER_LO: usize = 0;
/// `BREAK_GFP_ORDER_HI` (used above 32 MiB of memory).
pub const BREAK_GFP_ORDER_HI: usize = 1;
/// Value of `kmem_cache.magic` while the cache exists.
pub(crate) const CACHE_MAGIC: usize = 0x51AB_2632;
/// Value of `kmem_cache.magic` while a cache that takes the debug path exists: the handle
/// check of `kmem_cache_alloc`/`kmem_cache_free` compares with [`CACHE_MAGIC`] anyway, so a
/// debug cache leaves the fast path at that same compare (no extra test for the others).
pub(crate) const CACHE_MAGIC_DEBUG: usize = 0x51AB_D326;

/// Whether `magic` is that of a live cache (debug or not).
#[inline(always)]
pub(crate) const fn magic_ok(magic: usize) -> bool {
    magic == CACHE_MAGIC || magic == CACHE_MAGIC_DEBUG
}
/// `CFLGS_INIT_ON_ALLOC`: `init_on_alloc` applies to this cache (internal flag bit).
pub(crate) const CFLGS_INIT_ON_ALLOC: u32 = 0x4000_0000;
/// `CFLGS_INIT_ON_FREE`: `init_on_free` applies to this cache (internal flag bit).
pub(crate) const CFLGS_INIT_ON_FREE: u32 = 0x2000_0000;
/// The `DEBUG` flags of 2.6.32 (`SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER`) plus
/// `SLAB_CONSISTENCY_CHECKS` (2.6.32's `SLAB_DEBUG_FREE`: `check_slabp` on every slow path).
pub(crate) const DEBUG_FLAGS: u32 = SlabFlags::RED_ZONE.0
    | SlabFlags::POISON.0
    | SlabFlags::STORE_USER.0
    | SlabFlags::CONSISTENCY_CHECKS.0;
/// Any of these sends the cache's allocations and frees down the debug path (decided once, at
/// creation: one flag test on the fast path).
pub(crate) const CFLGS_DEBUG_PATH: u32 = DEBUG_FLAGS | CFLGS_INIT_ON_ALLOC | CFLGS_INIT_ON_FREE;
/// `REDZONE_ALIGN = max(BYTES_PER_WORD, __alignof__(unsigned long long))`.
pub(crate) const REDZONE_ALIGN: usize = 8;
/// Flags honoured at creation (`CREATE_MASK` of a `DEBUG` build).
const CREATE_MASK: u32 = DEBUG_FLAGS
    | SlabFlags::HWCACHE_ALIGN.0
    | SlabFlags::CACHE_DMA.0
    | SlabFlags::RECLAIM_ACCOUNT.0
    | SlabFlags::PANIC.0
    | SlabFlags::TYPESAFE_BY_RCU.0
    | SlabFlags::MEM_SPREAD.0
    | SlabFlags::NOLEAKTRACE.0
    | SlabFlags::ACCOUNT.0
    | SlabFlags::KMALLOC.0
    | SlabFlags::NO_MERGE.0;

/// One CPU's entry of `kmem_cache.array[]`: the array-cache pointer with its local lock (the
/// `local_irq_save` stand-in) and the CPU's node, one cache line per CPU.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CpuSlot {
    /// Held around every use of `ac` (fast paths, drains, `do_ccupdate_local`).
    pub(crate) lock: LocalLock,
    /// `cpu_to_node(cpu)`.
    pub(crate) node: u16,
    /// The CPU's array cache: written by the holder of `lock` (a `SlotGuard`), read by it and
    /// by the rseq sequences on this CPU (fastpath.rs).
    pub(crate) ac: UnsafeCell<*mut ArrayCache>,
    /// rseq mode's busy mark (see `fastpath.rs`): non-zero while a holder of `lock` works on
    /// `ac` (or swaps it), so the rseq fast paths on this CPU fall back to the locked path.
    /// Set and cleared only by the holder of `lock`.
    pub(crate) busy: core::sync::atomic::AtomicUsize,
}

impl CpuSlot {
    /// Writes a slot in place (creation, bootstrap).
    ///
    /// # Safety
    /// `slot` valid for writes; nobody else uses it yet.
    pub(crate) unsafe fn init(slot: *mut CpuSlot, node: usize, ac: *mut ArrayCache) {
        // SAFETY: valid for writes (contract).
        unsafe {
            slot.write(CpuSlot {
                lock: LocalLock::new(),
                node: node as u16,
                ac: UnsafeCell::new(ac),
                busy: core::sync::atomic::AtomicUsize::new(0),
            });
        }
    }

    /// The array pointer, read by the single thread that bootstraps or creates the cache
    /// (no slot lock taken, none needed).
    ///
    /// # Safety
    /// Nobody else uses the slot (bootstrap, creation or destruction of its cache).
    pub(crate) unsafe fn ac_unshared(&self) -> *mut ArrayCache {
        // SAFETY: no concurrent writer (contract).
        unsafe { *self.ac.get() }
    }

    /// Sets the array pointer without the slot lock.
    ///
    /// # Safety
    /// As [`Self::ac_unshared`].
    pub(crate) unsafe fn set_ac_unshared(&self, ac: *mut ArrayCache) {
        // SAFETY: no concurrent reader or writer (contract).
        unsafe { *self.ac.get() = ac };
    }
}

/// `struct kmem_cache` of 2.6.32. Variable size: `array` (one [`CpuSlot`] per CPU) and
/// `nodelists` (one pointer per node) follow the fixed part in the same object, as the
/// kernel's `nodelists[]` is sized to `nr_node_ids` at boot.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct KmemCache {
    // First cache line: everything the fast paths and the free checks read.
    /// [`CACHE_MAGIC`] while alive (stale-handle check); 0 once destroyed.
    pub magic: AtomicUsize,
    /// `array[]`: one slot per CPU.
    pub array: *mut CpuSlot,
    /// `nodelists[]`: one per node.
    pub nodelists: *mut *mut KmemList3,
    /// Object stride (`buffer_size`).
    pub buffer_size: usize,
    /// `buffer_size` divides an offset: the object-start test of checked frees.
    pub buffer_size_divides: common::ExactDiv,
    /// Creation flags plus `CFLGS_OFF_SLAB`.
    pub flags: u32,
    /// Objects per slab.
    pub num: u32,
    /// Allocator instance id.
    pub instance: u32,
    /// `obj_offset`: bytes from the buffer start to the object (8 with a red zone, else 0).
    pub obj_offset: u32,
    /// Tunable `batchcount`.
    pub batchcount: AtomicU32,
    /// Tunable `limit`.
    pub limit: AtomicU32,
    /// Tunable `shared`.
    pub shared: AtomicU32,
    // Colder fields.
    /// `reciprocal_value(buffer_size)` (`obj_to_index` of the slow paths).
    pub reciprocal_buffer_size: u32,
    /// Slab order.
    pub gfporder: u32,
    /// Number of colours.
    pub colour: usize,
    /// Colour step.
    pub colour_off: usize,
    /// Cache of off-slab descriptors.
    pub slabp_cache: *mut KmemCache,
    /// Descriptor size (`struct slab` + bufctls, aligned when on-slab).
    pub slab_size: usize,
    /// Constructor.
    pub ctor: Option<Ctor>,
    /// Name.
    pub name: CacheName,
    /// Link on the cache chain (written under `cache_chain_mutex` while other threads use
    /// the cache, hence the cell).
    pub next: UnsafeCell<ListHead>,
    /// `obj_size`: the object size the caller sees (the requested size rounded up to a word,
    /// as 2.6.32 `DEBUG` stores it; what `ksize` returns for a debug cache).
    pub obj_size: usize,
    /// Debug reports made about this cache (the `slab_errors` count).
    pub debug_errors: core::sync::atomic::AtomicU64,
    /// Counters (STATS).
    pub stats: CacheStats,
}

const _: () = assert!(core::mem::offset_of!(KmemCache, batchcount) + 4 <= 64);

// SAFETY: the fields written after creation are atomics or cells written under the locks the
// crate header lists (`next` under the chain mutex); the raw pointers name per-CPU and
// per-node structures protected by their own locks.
unsafe impl Sync for KmemCache {}
// SAFETY: see Sync.
unsafe impl Send for KmemCache {}

impl KmemCache {
    /// The kmalloc cache of this cache's off-slab descriptors.
    pub(crate) fn slabp_cache(&self) -> Option<&KmemCache> {
        // SAFETY: a kmalloc cache, never destroyed while its instance lives.
        unsafe { self.slabp_cache.as_ref() }
    }

    /// The chain link.
    pub(crate) fn chain_link(&self) -> *mut ListHead {
        // Derived from `self` as a raw pointer, with no narrower reference in between: the
        // link's provenance covers the whole object, which `cache_from_chain` goes back to.
        core::ptr::from_ref(self)
            .cast_mut()
            .wrapping_byte_add(core::mem::offset_of!(KmemCache, next))
            .cast::<ListHead>()
    }

    /// The magic word (one relaxed load: the handle check of every public call).
    #[inline(always)]
    pub(crate) fn magic(&self) -> usize {
        self.magic.load(Ordering::Relaxed)
    }

    /// Whether the slab descriptor lives off-slab.
    pub(crate) fn off_slab(&self) -> bool {
        self.flags & CFLGS_OFF_SLAB != 0
    }

    /// Whether allocations and frees take the debug path (`CFLGS_DEBUG_PATH`).
    #[inline(always)]
    pub(crate) fn debug_path(&self) -> bool {
        self.flags & CFLGS_DEBUG_PATH != 0
    }

    /// Whether the cache has any `DEBUG` flag (layout, checks) — not just `init_on_*`.
    #[inline(always)]
    pub(crate) fn is_debug(&self) -> bool {
        self.flags & DEBUG_FLAGS != 0
    }

    /// `cpu`'s slot of `array[]`.
    ///
    /// # Safety
    /// `cpu < nr_cpus` of the instance (the length of `array[]`).
    #[inline(always)]
    pub(crate) unsafe fn slot_unchecked(&self, cpu: usize) -> &CpuSlot {
        // SAFETY: `array` points at nr_cpus initialised slots in this object (both creation
        // paths write every one before the cache is used); cpu < nr_cpus (contract).
        unsafe { &*self.array.add(cpu) }
    }

    /// `nodelists[node]` (null while the cache is being set up).
    ///
    /// # Safety
    /// `node < nr_nodes` of the instance.
    #[inline(always)]
    pub(crate) unsafe fn nodelist_unchecked(&self, node: usize) -> *mut KmemList3 {
        // SAFETY: the array has nr_nodes entries (contract).
        unsafe { *self.nodelists.add(node) }
    }

    /// Sets `nodelists[node]` (creation, bootstrap, destruction).
    ///
    /// # Safety
    /// `node < nr_nodes`; nobody else uses the cache's node lists (bootstrap, creation or
    /// destruction).
    pub(crate) unsafe fn set_nodelist(&self, node: usize, l3: *mut KmemList3) {
        // SAFETY: the array is outside the struct proper (trailing, reached through the raw
        // `nodelists` pointer) and has nr_nodes entries; no concurrent user (contract).
        unsafe { *self.nodelists.add(node) = l3 };
    }
}

/// Where `array[]` starts in every `kmem_cache` object: right after the fixed part, on a cache
/// line. A constant, so the fast paths find a CPU's slot by address arithmetic from the cache
/// pointer, without first loading `kmem_cache.array`.
pub(crate) const ARRAY_OFF: usize = align_up(core::mem::size_of::<KmemCache>(), 64);

/// Size of a `kmem_cache` object for `nr_cpus` CPUs and `nr_nodes` nodes, and the offsets of
/// its two trailing arrays.
pub(crate) const fn kmem_cache_layout(nr_cpus: usize, nr_nodes: usize) -> (usize, usize, usize) {
    let array_off = ARRAY_OFF;
    let nodelists_off = array_off + nr_cpus * core::mem::size_of::<CpuSlot>();
    (
        nodelists_off + nr_nodes * core::mem::size_of::<usize>(),
        array_off,
        nodelists_off,
    )
}

/// `cache_estimate(gfporder, buffer_size, align, flags)`: `(left_over, num)`.
pub fn cache_estimate(
    gfporder: usize,
    buffer_size: usize,
    align: usize,
    off_slab: bool,
) -> (usize, usize) {
    let slab_size = PAGE_SIZE << gfporder;
    let (nr_objs, mgmt_size) = if off_slab {
        ((slab_size / buffer_size).min(SLAB_LIMIT as usize), 0)
    } else {
        let mut nr = (slab_size - SLAB_DESC_SIZE) / (buffer_size + BUFCTL_SIZE);
        if slab_mgmt_size(nr, align) + nr * buffer_size > slab_size {
            nr -= 1;
        }
        let nr = nr.min(SLAB_LIMIT as usize);
        (nr, slab_mgmt_size(nr, align))
    };
    (slab_size - nr_objs * buffer_size - mgmt_size, nr_objs)
}

/// The geometry `kmem_cache_create` settles on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// `buffer_size`.
    pub size: usize,
    /// Final alignment.
    pub align: usize,
    /// Objects per slab.
    pub num: usize,
    /// Slab order.
    pub gfporder: usize,
    /// Bytes left over (after moving the descriptor on-slab if it was).
    pub left_over: usize,
    /// Colour step.
    pub colour_off: usize,
    /// Number of colours.
    pub colour: usize,
    /// Descriptor off-slab.
    pub off_slab: bool,
    /// Descriptor bytes.
    pub slab_size: usize,
    /// `obj_offset` (red zone word 1 before the object).
    pub obj_offset: usize,
    /// `obj_size`: the word-rounded size the caller may use.
    pub obj_size: usize,
    /// The flags after the alignment rules (red zone / store user dropped when the alignment
    /// exceeds 8, as `kmem_cache_create` does silently).
    pub flags: SlabFlags,
}

/// The `FORCED_DEBUG` rule of 2.6.32 `kmem_cache_create`: red zone and last-user word for
/// objects below 4096 bytes, or when the 24 extra bytes do not cross the next power of two;
/// poison unless the cache is `SLAB_DESTROY_BY_RCU`.
pub const fn forced_debug_flags(size: usize, flags: SlabFlags) -> SlabFlags {
    let mut f = flags.0;
    if size < 4096 || fls(size - 1) == fls(size - 1 + REDZONE_ALIGN + 16) {
        f |= SlabFlags::RED_ZONE.0 | SlabFlags::STORE_USER.0;
    }
    if f & SlabFlags::TYPESAFE_BY_RCU.0 == 0 {
        f |= SlabFlags::POISON.0;
    }
    SlabFlags(f)
}

/// `calculate_slab_order(cachep, size, align, flags)`: `(num, gfporder, left_over)`.
pub fn calculate_slab_order(
    size: usize,
    align: usize,
    off_slab: bool,
    reclaim_account: bool,
    slab_break_gfp_order: usize,
) -> (usize, usize, usize) {
    let (mut num, mut order, mut left_over) = (0, 0, 0);
    for gfporder in 0..=KMALLOC_MAX_ORDER {
        let (remainder, n) = cache_estimate(gfporder, size, align, off_slab);
        if n == 0 {
            continue;
        }
        if off_slab {
            // Off-slab descriptors must fit an object of this size (recursion guard).
            let offslab_limit = (size - SLAB_DESC_SIZE) / BUFCTL_SIZE;
            if n > offslab_limit {
                break;
            }
        }
        num = n;
        order = gfporder;
        left_over = remainder;
        if reclaim_account || gfporder >= slab_break_gfp_order {
            break;
        }
        if left_over * 8 <= PAGE_SIZE << gfporder {
            break;
        }
    }
    (num, order, left_over)
}

/// The sizing half of `kmem_cache_create`: word rounding, the alignment rules, on/off-slab,
/// order, colouring.
pub fn kmem_cache_geometry(
    size: usize,
    align: usize,
    flags: SlabFlags,
    slab_early_init: bool,
    slab_break_gfp_order: usize,
    cache_line_size: usize,
) -> Result<Geometry, SlabError> {
    let mut flags = flags;
    let mut size = align_up(size.max(BYTES_PER_WORD), BYTES_PER_WORD);
    let mut ralign = if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut r = cache_line_size;
        while size <= r / 2 {
            r /= 2;
        }
        r
    } else {
        BYTES_PER_WORD
    };
    // Red zoning and the user word need word alignment (this undoes HWCACHE_ALIGN).
    if flags.contains(SlabFlags::STORE_USER) {
        ralign = BYTES_PER_WORD;
    }
    if flags.contains(SlabFlags::RED_ZONE) {
        ralign = REDZONE_ALIGN;
        size = align_up(size, REDZONE_ALIGN);
    }
    // ARCH_SLAB_MINALIGN is 0 on x86-64; then the caller's alignment.
    if ralign < align {
        ralign = align;
    }
    // Silently no red zone / user word above 8-byte alignment.
    if ralign > 8 {
        flags = flags.without(SlabFlags::RED_ZONE | SlabFlags::STORE_USER);
    }
    let align = ralign;
    let obj_size = size;
    let mut obj_offset = 0;
    if flags.contains(SlabFlags::RED_ZONE) {
        obj_offset += 8;
        size += 16;
    }
    if flags.contains(SlabFlags::STORE_USER) {
        size += if flags.contains(SlabFlags::RED_ZONE) {
            REDZONE_ALIGN
        } else {
            BYTES_PER_WORD
        };
    }
    let off_slab = size >= PAGE_SIZE >> 3 && !slab_early_init;
    size = align_up(size, align);
    let (num, gfporder, mut left_over) = calculate_slab_order(
        size,
        align,
        off_slab,
        flags.contains(SlabFlags::RECLAIM_ACCOUNT),
        slab_break_gfp_order,
    );
    if num == 0 {
        return Err(SlabError::TooLarge {
            size,
            max: KMALLOC_MAX_SIZE,
        });
    }
    let mut slab_size = align_up(num * BUFCTL_SIZE + SLAB_DESC_SIZE, align);
    let mut off = off_slab;
    if off && left_over >= slab_size {
        off = false;
        left_over -= slab_size;
    }
    if off {
        slab_size = num * BUFCTL_SIZE + SLAB_DESC_SIZE;
    }
    let colour_off = cache_line_size.max(align);
    Ok(Geometry {
        size,
        align,
        num,
        gfporder,
        left_over,
        colour_off,
        colour: left_over / colour_off,
        off_slab: off,
        slab_size,
        obj_offset,
        obj_size,
        flags,
    })
}

/// `enable_cpucache`'s table: `(limit, batchcount, shared)` for an object size.
pub fn cpucache_tunables(buffer_size: usize, num_possible_cpus: usize) -> (u32, u32, u32) {
    let limit = if buffer_size > 131_072 {
        1
    } else if buffer_size > PAGE_SIZE {
        8
    } else if buffer_size > 1024 {
        24
    } else if buffer_size > 256 {
        54
    } else {
        120
    };
    let shared = if buffer_size <= PAGE_SIZE && num_possible_cpus > 1 {
        8
    } else {
        0
    };
    (limit, (limit + 1) / 2, shared)
}

/// `free_limit = (1 + nr_cpus_node) × batchcount + num` (2.6.32 `alloc_kmemlist`).
pub const fn free_limit(nr_cpus_node: usize, batchcount: usize, num: usize) -> usize {
    (1 + nr_cpus_node) * batchcount + num
}

impl SlabGlobals {
    /// `alloc_arraycache(node, entries, batchcount)`: kmalloc_node of an array cache.
    pub(crate) fn alloc_arraycache(
        &self,
        node: usize,
        entries: u32,
        batchcount: u32,
    ) -> *mut ArrayCache {
        let Some(p) = self.kmalloc_node_internal(arraycache_bytes(entries as usize), node) else {
            return null_mut();
        };
        let ac = p.as_ptr().cast::<ArrayCache>();
        // SAFETY: fresh kmalloc object of the right size.
        unsafe { ac_init(ac, entries, batchcount) };
        ac
    }

    /// A kmalloc'd table of `n` pointers, all null (`None` when out of memory).
    pub(crate) fn alloc_ptr_table<T>(&self, n: usize, node: Option<usize>) -> Option<*mut *mut T> {
        let bytes = n * core::mem::size_of::<*mut T>();
        let p = match node {
            Some(node) => self.kmalloc_node_internal(bytes, node)?,
            None => self.kmalloc_internal(bytes)?,
        };
        let t = p.as_ptr().cast::<*mut T>();
        // SAFETY: a fresh object of n pointers.
        unsafe { core::slice::from_raw_parts_mut(t, n).fill(null_mut()) };
        Some(t)
    }

    /// `alloc_alien_cache(node, limit)`: one array per other node, 12 entries when `limit > 1`.
    pub(crate) fn alloc_alien_cache(&self, node: usize, limit: u32) -> *mut *mut ArrayCache {
        let limit = if limit > 1 { 12 } else { limit };
        let Some(ac_ptr) = self.alloc_ptr_table::<ArrayCache>(self.nr_nodes, Some(node)) else {
            return null_mut();
        };
        for i in (0..self.nr_nodes).filter(|&i| i != node) {
            let ac = self.alloc_arraycache(node, limit, 0xbaad_f00d);
            if ac.is_null() {
                self.free_alien_cache(ac_ptr);
                return null_mut();
            }
            // SAFETY: i < nr_nodes, the table's length.
            unsafe { *ac_ptr.add(i) = ac };
        }
        ac_ptr
    }

    /// `free_alien_cache`.
    pub(crate) fn free_alien_cache(&self, ac_ptr: *mut *mut ArrayCache) {
        if ac_ptr.is_null() {
            return;
        }
        for i in 0..self.nr_nodes {
            // SAFETY: ac_ptr has nr_nodes entries, each null or a kmalloc'd array nobody uses.
            unsafe { self.kfree_internal((*ac_ptr.add(i)).cast()) };
        }
        // SAFETY: ac_ptr itself was kmalloc'd.
        unsafe { self.kfree_internal(ac_ptr.cast()) };
    }

    /// `kmem_cache_create`. The name must be unique (the kernel refuses duplicates too).
    pub(crate) fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<&KmemCache, SlabError> {
        let cname = common::api::check_cache_args(name, size, align, KMALLOC_MAX_SIZE)?;
        let flags = self.debug_create_flags(size, flags, ctor.is_some());
        let flags = SlabFlags(flags.0 & CREATE_MASK);
        let _chain = self.chain_lock();
        if self.find_cache_by_name(name).is_some() {
            return Err(SlabError::BadName);
        }
        let geo = kmem_cache_geometry(
            size,
            align,
            flags,
            self.slab_early_init(),
            self.slab_break_gfp_order,
            self.cache_line_size,
        )?;
        // Get the cache's descriptor object (kmem_cache_zalloc(&cache_cache)).
        let Some(mem) = self.cache_alloc_internal(self.cache_cache(), Gfp::ZERO) else {
            return Err(SlabError::NoMemory);
        };
        let raw = mem.as_ptr().cast::<KmemCache>();
        // SAFETY: a zeroed object of cache_cache, large enough for the layout, nobody else's.
        unsafe { self.init_cache_object(raw, cname, &geo, ctor) };
        // SAFETY: initialised above; lives until kmem_cache_destroy.
        let cachep = unsafe { &*raw };
        if geo.off_slab {
            assert!(cachep.slabp_cache().is_some());
        }
        // SAFETY: being created, not yet visible to other threads.
        if let Err(e) = unsafe { self.setup_cpu_cache(cachep) } {
            // SAFETY: no slabs, nobody uses it.
            unsafe { self.__kmem_cache_destroy(cachep) };
            return Err(e);
        }
        let magic = if cachep.debug_path() {
            CACHE_MAGIC_DEBUG
        } else {
            CACHE_MAGIC
        };
        cachep.magic.store(magic, Ordering::Relaxed);
        // SAFETY: chain mutex held.
        unsafe { ListHead::add(cachep.chain_link(), self.cache_chain_head()) };
        Ok(cachep)
    }

    /// Writes the fields of a fresh `kmem_cache` object from its geometry (the assignment
    /// half of `kmem_cache_create`), its CPU slots with no array yet.
    ///
    /// # Safety
    /// `cachep` is a zeroed `cache_cache` object nobody else uses.
    unsafe fn init_cache_object(
        &self,
        cachep: *mut KmemCache,
        name: CacheName,
        geo: &Geometry,
        ctor: Option<Ctor>,
    ) {
        let (_, array_off, nodelists_off) = kmem_cache_layout(self.nr_cpus, self.nr_nodes);
        let flags = geo.flags.0
            | if geo.off_slab { CFLGS_OFF_SLAB } else { 0 }
            | self.init_flags(geo.flags, ctor.is_some());
        let slabp_cache = if geo.off_slab {
            self.find_general_cachep(geo.slab_size)
                .map(core::ptr::from_ref)
        } else {
            None
        };
        // The trailing arrays lie inside the object (kmem_cache_layout).
        let base = cachep.cast::<u8>();
        let array = base.wrapping_add(array_off).cast::<CpuSlot>();
        let value = KmemCache {
            magic: AtomicUsize::new(0),
            array,
            nodelists: base.wrapping_add(nodelists_off).cast(),
            buffer_size: geo.size,
            buffer_size_divides: common::ExactDiv::new(geo.size as u32),
            flags,
            num: geo.num as u32,
            instance: self.instance,
            obj_offset: geo.obj_offset as u32,
            batchcount: AtomicU32::new(0),
            limit: AtomicU32::new(0),
            shared: AtomicU32::new(0),
            reciprocal_buffer_size: reciprocal_value(geo.size as u32),
            gfporder: geo.gfporder as u32,
            colour: geo.colour,
            colour_off: geo.colour_off,
            slabp_cache: slabp_cache.map_or(null_mut(), <*const KmemCache>::cast_mut),
            slab_size: geo.slab_size,
            ctor,
            name,
            next: UnsafeCell::new(ListHead::new()),
            obj_size: geo.obj_size,
            debug_errors: core::sync::atomic::AtomicU64::new(0),
            stats: CacheStats::default(),
        };
        // SAFETY: valid for writes, exclusive (contract).
        unsafe { cachep.write(value) };
        for cpu in 0..self.nr_cpus {
            // SAFETY: slot `cpu` of the trailing array, inside the object, ours.
            unsafe { CpuSlot::init(array.add(cpu), self.cpu_node[cpu] as usize, null_mut()) };
        }
    }

    /// `setup_cpu_cache`: boot arrays and list3s by bootstrap state, or `enable_cpucache`.
    ///
    /// # Safety
    /// `cachep` being created, not yet visible to other threads.
    pub(crate) unsafe fn setup_cpu_cache(&self, cachep: &KmemCache) -> Result<(), SlabError> {
        let state = self.cpucache_up();
        if state == CpuCacheUp::Full {
            // SAFETY: forwarded.
            return unsafe { self.enable_cpucache(cachep) };
        }
        // SAFETY: bootstrap runs on one thread; the cache is not visible yet.
        unsafe { self.setup_cpu_cache_boot(cachep, state)? };
        for node in 0..self.nr_nodes {
            let l3 = self.lock_list(cachep, node);
            l3.set_next_reap(self.next_reap_initial(cachep));
        }
        for cpu in 0..self.nr_cpus {
            // SAFETY: bootstrap: nobody else uses the slots; each holds a boot-sized array.
            unsafe {
                ac_init(
                    self.cpu_slot(cachep, cpu).ac_unshared(),
                    BOOT_CPUCACHE_ENTRIES as u32,
                    1,
                );
            };
        }
        cachep.batchcount.store(1, Ordering::Relaxed);
        cachep
            .limit
            .store(BOOT_CPUCACHE_ENTRIES as u32, Ordering::Relaxed);
        Ok(())
    }

    /// The bootstrap-state half of `setup_cpu_cache`: the static head array for the
    /// `INDEX_AC` cache (state `NONE`), kmalloc'd ones after it; the static list3s of `SIZE_AC`
    /// / `SIZE_L3`, kmalloc_node'd ones after `PARTIAL_L3`.
    ///
    /// # Safety
    /// As [`Self::setup_cpu_cache`], during bootstrap.
    unsafe fn setup_cpu_cache_boot(
        &self,
        cachep: &KmemCache,
        state: CpuCacheUp,
    ) -> Result<(), SlabError> {
        if state == CpuCacheUp::None {
            // The INDEX_AC cache: every CPU shares the static initarray_generic until step 4.
            let ac = self.initarray_generic_ptr();
            for cpu in 0..self.nr_cpus {
                // SAFETY: bootstrap is single-threaded.
                unsafe { self.cpu_slot(cachep, cpu).set_ac_unshared(ac) };
            }
            // SAFETY: bootstrap.
            unsafe { self.set_up_list3s(cachep, crate::bootstrap::SIZE_AC) };
            self.set_cpucache_up(if crate::kmalloc::INDEX_AC == crate::kmalloc::INDEX_L3 {
                CpuCacheUp::PartialL3
            } else {
                CpuCacheUp::PartialAc
            });
            return Ok(());
        }
        for cpu in 0..self.nr_cpus {
            let p = self
                .kmalloc_internal(crate::arraycache::ARRAYCACHE_INIT_SIZE)
                .ok_or(SlabError::NoMemory)?;
            // SAFETY: bootstrap is single-threaded.
            unsafe {
                self.cpu_slot(cachep, cpu)
                    .set_ac_unshared(p.as_ptr().cast());
            };
        }
        if state == CpuCacheUp::PartialAc {
            // SAFETY: bootstrap.
            unsafe { self.set_up_list3s(cachep, crate::bootstrap::SIZE_L3) };
            self.set_cpucache_up(CpuCacheUp::PartialL3);
            return Ok(());
        }
        for node in 0..self.nr_nodes {
            let l3 = self.alloc_kmem_list3(node).ok_or(SlabError::NoMemory)?;
            // SAFETY: node < nr_nodes; the cache is not visible yet.
            unsafe { cachep.set_nodelist(node, l3) };
        }
        Ok(())
    }

    /// A kmalloc_node'd, initialised `kmem_list3` on `node`.
    pub(crate) fn alloc_kmem_list3(&self, node: usize) -> Option<*mut KmemList3> {
        let p = self.kmalloc_node_internal(core::mem::size_of::<KmemList3>(), node)?;
        let l3 = p.as_ptr().cast::<KmemList3>();
        // SAFETY: a fresh INDEX_L3 object, never moved.
        unsafe { kmem_list3_init(l3) };
        Some(l3)
    }

    /// `jiffies + REAPTIMEOUT_LIST3 + cachep % REAPTIMEOUT_LIST3`: staggered first node reap.
    pub(crate) fn next_reap_initial(&self, cachep: &KmemCache) -> usize {
        self.jiffies()
            .wrapping_add(REAPTIMEOUT_LIST3)
            .wrapping_add((core::ptr::from_ref(cachep) as usize / 64) % REAPTIMEOUT_LIST3)
    }

    /// `enable_cpucache`: the size table (or the settings' override) through
    /// `do_tune_cpucache`.
    ///
    /// # Safety
    /// `cachep` live; the chain mutex (or bootstrap exclusivity) held.
    pub(crate) unsafe fn enable_cpucache(&self, cachep: &KmemCache) -> Result<(), SlabError> {
        let (mut limit, mut batch, mut shared) =
            cpucache_tunables(cachep.buffer_size, self.num_possible_cpus);
        if cachep.is_debug() && limit > 32 {
            // DEBUG: large batches mean long stretches with the array locked.
            limit = 32;
            batch = (limit + 1) / 2;
        }
        if let Some(t) = self.settings.tunables {
            limit = t.limit;
            batch = t.batchcount;
            shared = t.shared;
        }
        // SAFETY: forwarded.
        unsafe { self.do_tune_cpucache(cachep, limit, batch, shared) }
    }

    /// `do_tune_cpucache`: new per-CPU arrays swapped in under each CPU's local lock
    /// (`do_ccupdate_local`), the old contents given back with `free_block`, then
    /// `alloc_kmemlist` for shared/alien arrays and `free_limit`.
    ///
    /// # Safety
    /// `cachep` live; chain mutex held (or bootstrap).
    pub(crate) unsafe fn do_tune_cpucache(
        &self,
        cachep: &KmemCache,
        limit: u32,
        batchcount: u32,
        shared: u32,
    ) -> Result<(), SlabError> {
        let new = self
            .alloc_ptr_table::<ArrayCache>(self.nr_cpus, None)
            .ok_or(SlabError::NoMemory)?;
        // SAFETY: a fresh table of nr_cpus pointers, ours alone until freed below.
        let table = unsafe { core::slice::from_raw_parts_mut(new, self.nr_cpus) };
        for (i, entry) in table.iter_mut().enumerate() {
            *entry = self.alloc_arraycache(self.cpu_node[i] as usize, limit, batchcount);
            if entry.is_null() {
                for ac in table.iter() {
                    // SAFETY: fresh arrays nobody uses (or null).
                    unsafe { self.kfree_internal(ac.cast()) };
                }
                // SAFETY: the table itself.
                unsafe { self.kfree_internal(new.cast()) };
                return Err(SlabError::NoMemory);
            }
        }
        for (i, entry) in table.iter_mut().enumerate() {
            let slot = self.slot_lock(cachep, i);
            *entry = slot.replace_ac(*entry);
        }
        cachep.batchcount.store(batchcount, Ordering::Relaxed);
        cachep.limit.store(limit, Ordering::Relaxed);
        cachep.shared.store(shared, Ordering::Relaxed);
        for (i, &ccold) in table.iter().enumerate() {
            if ccold.is_null() {
                continue;
            }
            let l3 = self.lock_list(cachep, self.cpu_node[i] as usize);
            // SAFETY: swapped out above: nobody else can reach this array any more.
            let old = unsafe { ArrayRef::new(ccold) };
            // SAFETY: the array's objects belong to this cache and node, handed out to it.
            unsafe { self.free_block(cachep, &l3, old.entries(), old.avail() as usize) };
            drop(l3);
            if !self.is_static_array(ccold) {
                // SAFETY: a kmalloc'd array nobody uses.
                unsafe { self.kfree_internal(ccold.cast()) };
            }
        }
        // SAFETY: the table itself.
        unsafe { self.kfree_internal(new.cast()) };
        // SAFETY: forwarded contract.
        unsafe { self.alloc_kmemlist(cachep) }
    }

    /// `alloc_kmemlist`: (re)builds each node's shared array, alien arrays and `free_limit`.
    ///
    /// # Safety
    /// `cachep` live; chain mutex held.
    pub(crate) unsafe fn alloc_kmemlist(&self, cachep: &KmemCache) -> Result<(), SlabError> {
        let limit = cachep.limit.load(Ordering::Relaxed);
        let batch = cachep.batchcount.load(Ordering::Relaxed);
        let shared = cachep.shared.load(Ordering::Relaxed);
        for node in 0..self.nr_nodes {
            let mut new_alien = null_mut();
            if self.use_alien_caches {
                new_alien = self.alloc_alien_cache(node, limit);
                if new_alien.is_null() {
                    return Err(SlabError::NoMemory);
                }
            }
            let mut new_shared = null_mut();
            if shared > 0 {
                new_shared = self.alloc_arraycache(node, shared * batch, 0xbaad_f00d);
                if new_shared.is_null() {
                    self.free_alien_cache(new_alien);
                    return Err(SlabError::NoMemory);
                }
            }
            if self.l3(cachep, node).is_null() {
                let Some(l3) = self.alloc_kmem_list3(node) else {
                    self.free_alien_cache(new_alien);
                    // SAFETY: a fresh array nobody uses.
                    unsafe { self.kfree_internal(new_shared.cast()) };
                    return Err(SlabError::NoMemory);
                };
                // SAFETY: node < nr_nodes; only creation reaches here with a missing list3.
                unsafe { cachep.set_nodelist(node, l3) };
                self.lock_list(cachep, node)
                    .set_next_reap(self.next_reap_initial(cachep));
            }
            let l3 = self.lock_list(cachep, node);
            if let Some(old) = l3.shared() {
                // SAFETY: the old shared array's objects are handed-out objects of this node.
                unsafe { self.free_block(cachep, &l3, old.entries(), old.avail() as usize) };
            }
            let old_shared = l3.replace_shared(new_shared);
            if self.install_alien(l3.l3(), new_alien) {
                new_alien = null_mut();
            }
            l3.set_free_limit(free_limit(
                self.nr_cpus_node[node] as usize,
                batch as usize,
                cachep.num as usize,
            ));
            drop(l3);
            // SAFETY: swapped out under the lock: nobody reaches it any more.
            unsafe { self.kfree_internal(old_shared.cast()) };
            self.free_alien_cache(new_alien);
        }
        Ok(())
    }

    /// Installs `alien` as `l3`'s alien table if it has none (set once); `true` if installed.
    fn install_alien(&self, l3: *mut KmemList3, alien: *mut *mut ArrayCache) -> bool {
        // SAFETY: a live list3 (its cache is live); the table pointer is atomic.
        let slot = unsafe { &(*l3).alien };
        slot.compare_exchange(null_mut(), alien, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// `drain_cpu_caches`: every CPU's array (`do_drain`), then the alien arrays, then the
    /// shared arrays (forced).
    pub(crate) fn drain_cpu_caches(&self, cachep: &KmemCache) {
        for cpu in 0..self.nr_cpus {
            let slot = self.slot_lock(cachep, cpu);
            let ac = slot.ac();
            let l3 = self.lock_list(cachep, slot.node());
            // SAFETY: the CPU array holds handed-out objects of this cache and node.
            unsafe { self.free_block(cachep, &l3, ac.entries(), ac.avail() as usize) };
            drop(l3);
            ac.clear();
        }
        for node in 0..self.nr_nodes {
            self.drain_alien_cache(cachep, node);
        }
        for node in 0..self.nr_nodes {
            self.drain_shared(cachep, true, node);
        }
    }

    /// `__cache_shrink`: drains every array, frees every empty slab; `true` if slabs with
    /// objects in use remain. The chain mutex is held.
    pub(crate) fn __cache_shrink(&self, cachep: &KmemCache) -> bool {
        let mut ret = false;
        self.drain_cpu_caches(cachep);
        for node in 0..self.nr_nodes {
            let n = self.lock_list(cachep, node).free_objects();
            self.drain_freelist(cachep, node, n);
            let l3 = self.lock_list(cachep, node);
            ret |= !l3.is_empty(List::Full) || !l3.is_empty(List::Partial);
        }
        ret
    }

    /// Objects handed out (on full and partial slabs, arrays drained first).
    pub(crate) fn objects_in_slabs(&self, cachep: &KmemCache) -> usize {
        let mut n = 0;
        for node in 0..self.nr_nodes {
            let l3 = self.lock_list(cachep, node);
            for list in [List::Full, List::Partial] {
                n += l3.slabs(list).map(|s| s.inuse() as usize).sum::<usize>();
            }
        }
        n
    }

    /// `kmem_cache_destroy`: refused with `Busy` while objects are in use (the kernel prints
    /// "Can't free all objects" and keeps the cache).
    ///
    /// # Safety
    /// No other thread uses the cache.
    pub(crate) unsafe fn kmem_cache_destroy(&self, cachep: &KmemCache) -> Result<(), SlabError> {
        let _chain = self.chain_lock();
        // SAFETY: on the chain; chain mutex held.
        unsafe { ListHead::del(cachep.chain_link()) };
        if self.__cache_shrink(cachep) {
            let objects = self.objects_in_slabs(cachep);
            if cachep.is_debug() {
                self.report_leaks(cachep);
            }
            // SAFETY: off the chain; chain mutex held.
            unsafe { ListHead::add(cachep.chain_link(), self.cache_chain_head()) };
            return Err(SlabError::Busy { objects });
        }
        // SAFETY: no slabs left; nobody uses it (contract).
        unsafe { self.__kmem_cache_destroy(cachep) };
        Ok(())
    }

    /// `__kmem_cache_destroy`: frees the arrays, list3s and the descriptor itself.
    ///
    /// # Safety
    /// The cache has no slabs and nobody uses it.
    pub(crate) unsafe fn __kmem_cache_destroy(&self, cachep: &KmemCache) {
        cachep.magic.store(0, Ordering::Relaxed);
        for cpu in 0..self.nr_cpus {
            let slot = self.cpu_slot(cachep, cpu);
            // SAFETY: nobody uses the cache (contract).
            let ac = unsafe { slot.ac_unshared() };
            if !ac.is_null() && !self.is_static_array(ac) {
                // SAFETY: a kmalloc'd array of this cache only.
                unsafe { self.kfree_internal(ac.cast()) };
            }
            // SAFETY: as above.
            unsafe { slot.set_ac_unshared(null_mut()) };
        }
        for node in 0..self.nr_nodes {
            let l3 = self.l3(cachep, node);
            if !l3.is_null() && !self.is_static_l3(l3) {
                // SAFETY: this cache's own list3 and arrays, unused (contract).
                unsafe {
                    self.kfree_internal((*l3).shared.cast());
                    self.free_alien_cache(crate::node::alien_table(l3));
                    self.kfree_internal(l3.cast());
                }
            }
            // SAFETY: node < nr_nodes; unused (contract).
            unsafe { cachep.set_nodelist(node, null_mut()) };
        }
        let raw = core::ptr::from_ref(cachep).cast_mut().cast::<u8>();
        // SAFETY: the descriptor is an object of cache_cache, given up here.
        let ok = unsafe { self.cache_free_internal(self.cache_cache(), raw) };
        debug_assert!(ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HW: SlabFlags = SlabFlags::HWCACHE_ALIGN;

    fn geo(size: usize, align: usize, flags: SlabFlags, brk: usize) -> Geometry {
        kmem_cache_geometry(size, align, flags, false, brk, 64).unwrap()
    }

    /// (num, order, left_over, colour, off_slab, buffer_size), computed by hand from the 2.6.32
    /// formulas (struct slab = 48 B, bufctl = 4 B, 64-byte lines, 4 KiB pages).
    fn check(
        g: Geometry,
        num: usize,
        order: usize,
        left: usize,
        colour: usize,
        off: bool,
        size: usize,
    ) {
        assert_eq!(
            (g.num, g.gfporder, g.left_over, g.colour, g.off_slab, g.size),
            (num, order, left, colour, off, size),
            "{g:?}"
        );
    }

    #[test]
    fn geometry_of_kmalloc_classes() {
        // size-32: HWCACHE halves 64 → 32; (4096-48)/36 = 112; mgmt ALIGN(48+448, 32) = 512.
        check(geo(32, 8, HW, 1), 112, 0, 0, 0, false, 32);
        // size-64: 4048/68 = 59; mgmt ALIGN(284, 64) = 320; 320 + 3776 = 4096.
        check(geo(64, 8, HW, 1), 59, 0, 0, 0, false, 64);
        // size-192: 4048/196 = 20; mgmt ALIGN(128, 64) = 128; left 4096-3840-128 = 128 → 2 colours.
        check(geo(192, 8, HW, 1), 20, 0, 128, 2, false, 192);
        // size-256: 4048/260 = 15; mgmt 128; left 128.
        check(geo(256, 8, HW, 1), 15, 0, 128, 2, false, 256);
        // size-512: off-slab (>= 512), 8 objects, descriptor 48 + 32 = 80 B (size-128).
        let g = geo(512, 8, HW, 1);
        check(g, 8, 0, 0, 0, true, 512);
        assert_eq!(g.slab_size, 80);
        // size-4096: off-slab, 1 object, descriptor 52 B.
        let g = geo(4096, 8, HW, 1);
        check(g, 1, 0, 0, 0, true, 4096);
        assert_eq!(g.slab_size, 52);
        // size-8192: order 0 holds none; order 1 one object; stops at break order 1.
        check(geo(8192, 8, HW, 1), 1, 1, 0, 0, true, 8192);
        check(geo(4 << 20, 8, HW, 1), 1, 10, 0, 0, true, 4 << 20);
    }

    #[test]
    fn geometry_of_plain_caches() {
        // 100 → 104 (word); 4048/108 = 37; mgmt ALIGN(48+148, 8) = 200; left 4096-3848-200 = 48.
        check(geo(100, 0, SlabFlags::NONE, 1), 37, 0, 48, 0, false, 104);
        // 100 with HWCACHE: 128 stride; 4048/132 = 30; mgmt ALIGN(168, 64) = 192; left 64 → 1 colour.
        check(geo(100, 0, HW, 1), 30, 0, 64, 1, false, 128);
        // 32 plain: 112 objects, mgmt ALIGN(496, 8) = 496, left 16.
        check(geo(32, 0, SlabFlags::NONE, 1), 112, 0, 16, 0, false, 32);
        // 1000: off-slab candidate, 4 objects, left 96 ≥ descriptor ALIGN(64, 8) = 64 → moved
        // back on-slab, left 32.
        check(geo(1000, 0, SlabFlags::NONE, 1), 4, 0, 32, 0, false, 1000);
        // 4096 plain: off-slab, 1 object per page.
        check(geo(4096, 0, SlabFlags::NONE, 1), 1, 0, 0, 0, true, 4096);
        // 8192 plain: order 1.
        check(geo(8192, 0, SlabFlags::NONE, 1), 1, 1, 0, 0, true, 8192);
        // Caller alignment 256 on a 200-byte object: stride 256, colour_off 256.
        let g = geo(200, 256, SlabFlags::NONE, 1);
        assert_eq!((g.size, g.align, g.colour_off), (256, 256, 256));
    }

    #[test]
    fn break_order_and_waste_stop() {
        // 1100 → 1104. Order 0: 3 objects, left 784 (784·8 > 4096, keep looking if allowed).
        // Break order 1: order 1 holds 7, left 464; descriptor ALIGN(76, 8) = 80 moves on-slab →
        // left 384, 6 colours.
        check(geo(1100, 0, SlabFlags::NONE, 1), 7, 1, 384, 6, false, 1104);
        // Break order 0: stays at order 0; descriptor 64 on-slab, left 720, 11 colours.
        check(geo(1100, 0, SlabFlags::NONE, 0), 3, 0, 720, 11, false, 1104);
        // SLAB_RECLAIM_ACCOUNT stops at the first order that fits.
        let g = geo(1100, 0, SlabFlags::RECLAIM_ACCOUNT, 1);
        assert_eq!((g.num, g.gfporder), (3, 0));
    }

    #[test]
    fn cache_estimate_and_offslab_guard() {
        assert_eq!(cache_estimate(0, 32, 32, false), (0, 112));
        assert_eq!(cache_estimate(0, 104, 8, false), (48, 37));
        assert_eq!(cache_estimate(1, 1104, 8, true), (464, 7));
        assert_eq!(cache_estimate(0, 8192, 8, true), (4096, 0));
        // An off-slab cache of 64-byte objects would need a descriptor bigger than an object:
        // the recursion guard refuses every order.
        assert_eq!(calculate_slab_order(64, 8, true, false, 1), (0, 0, 0));
    }

    #[test]
    fn impossible_geometry_is_an_error() {
        assert!(kmem_cache_geometry(64 << 20, 0, SlabFlags::NONE, false, 1, 64).is_err());
    }

    #[test]
    fn enable_cpucache_table() {
        assert_eq!(cpucache_tunables(32, 2), (120, 60, 8));
        assert_eq!(cpucache_tunables(256, 2), (120, 60, 8));
        assert_eq!(cpucache_tunables(257, 2), (54, 27, 8));
        assert_eq!(cpucache_tunables(1024, 2), (54, 27, 8));
        assert_eq!(cpucache_tunables(1025, 2), (24, 12, 8));
        assert_eq!(cpucache_tunables(4096, 2), (24, 12, 8));
        assert_eq!(cpucache_tunables(4097, 2), (8, 4, 0));
        assert_eq!(cpucache_tunables(131_072, 2), (8, 4, 0));
        assert_eq!(cpucache_tunables(131_073, 2), (1, 1, 0));
        assert_eq!(
            cpucache_tunables(64, 1),
            (120, 60, 0),
            "no shared array on one CPU"
        );
    }

    #[test]
    fn free_limit_formula() {
        assert_eq!(free_limit(2, 60, 59), 239);
        assert_eq!(free_limit(0, 60, 37), 97);
        assert_eq!(free_limit(1, 1, 37), 39);
    }

    #[test]
    fn kmem_cache_layout_has_room_for_every_cpu_and_node() {
        let (size, a, n) = kmem_cache_layout(2, 4);
        assert_eq!(a % 64, 0);
        assert_eq!(n, a + 2 * 64);
        assert_eq!(size, n + 4 * 8);
    }
}
