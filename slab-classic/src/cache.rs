//! Cache creation and sizing — 2.6.32 `mm/slab.c` `cache_estimate`, `calculate_slab_order`,
//! `kmem_cache_create`, `setup_cpu_cache`, `enable_cpucache`, `do_tune_cpucache`,
//! `alloc_kmemlist`, `alloc_alien_cache`, `drain_cpu_caches`, `__cache_shrink`,
//! `kmem_cache_shrink`, `kmem_cache_destroy`, `__kmem_cache_destroy`.

use crate::arraycache::{ac_entry, ac_init, arraycache_bytes, ArrayCache, BOOT_CPUCACHE_ENTRIES};
use crate::bootstrap::{CpuCacheUp, SlabGlobals};
use crate::node::{kmem_list3_init, KmemList3, REAPTIMEOUT_LIST3};
use crate::slabmgmt::{
    align_up, reciprocal_value, slab_mgmt_size, BUFCTL_SIZE, SLAB_DESC_SIZE, SLAB_LIMIT,
};
use crate::stats::CacheStats;
use common::api::{CacheName, Ctor, SlabError, SlabFlags};
use common::list::ListHead;
use common::percpu::LocalLock;
use common::{Gfp, PAGE_SIZE};
use core::ptr::{addr_of_mut, null_mut};
use core::sync::atomic::{AtomicU32, Ordering};

/// `CFLGS_OFF_SLAB`: the slab descriptor is off-slab (internal flag bit).
pub const CFLGS_OFF_SLAB: u32 = 0x8000_0000;
/// `BYTES_PER_WORD`.
pub const BYTES_PER_WORD: usize = core::mem::size_of::<usize>();
/// `KMALLOC_MAX_ORDER` of 2.6.32 with 4 KiB pages and `MAX_ORDER` 11: 10.
pub const KMALLOC_MAX_ORDER: usize = 10;
/// `KMALLOC_MAX_SIZE`: 4 MiB.
pub const KMALLOC_MAX_SIZE: usize = PAGE_SIZE << KMALLOC_MAX_ORDER;
/// `BREAK_GFP_ORDER_LO`.
pub const BREAK_GFP_ORDER_LO: usize = 0;
/// `BREAK_GFP_ORDER_HI` (used above 32 MiB of memory).
pub const BREAK_GFP_ORDER_HI: usize = 1;
/// Value of `kmem_cache.magic` while the cache exists.
pub const CACHE_MAGIC: usize = 0x51AB_2632;
/// Value of `kmem_cache.magic` while a cache that takes the debug path exists: the handle
/// check of `kmem_cache_alloc`/`kmem_cache_free` compares with [`CACHE_MAGIC`] anyway, so a
/// debug cache leaves the fast path at that same compare (no extra test for the others).
pub const CACHE_MAGIC_DEBUG: usize = 0x51AB_D326;

/// Whether `magic` is that of a live cache (debug or not).
#[inline(always)]
pub const fn magic_ok(magic: usize) -> bool {
    magic == CACHE_MAGIC || magic == CACHE_MAGIC_DEBUG
}
/// `CFLGS_INIT_ON_ALLOC`: `init_on_alloc` applies to this cache (internal flag bit).
pub const CFLGS_INIT_ON_ALLOC: u32 = 0x4000_0000;
/// `CFLGS_INIT_ON_FREE`: `init_on_free` applies to this cache (internal flag bit).
pub const CFLGS_INIT_ON_FREE: u32 = 0x2000_0000;
/// The `DEBUG` flags of 2.6.32 (`SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER`) plus
/// `SLAB_CONSISTENCY_CHECKS` (2.6.32's `SLAB_DEBUG_FREE`: `check_slabp` on every slow path).
pub const DEBUG_FLAGS: u32 = SlabFlags::RED_ZONE.0
    | SlabFlags::POISON.0
    | SlabFlags::STORE_USER.0
    | SlabFlags::CONSISTENCY_CHECKS.0;
/// Any of these sends the cache's allocations and frees down the debug path (decided once, at
/// creation: one flag test on the fast path).
pub const CFLGS_DEBUG_PATH: u32 = DEBUG_FLAGS | CFLGS_INIT_ON_ALLOC | CFLGS_INIT_ON_FREE;
/// `REDZONE_ALIGN = max(BYTES_PER_WORD, __alignof__(unsigned long long))`.
pub const REDZONE_ALIGN: usize = 8;
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
pub struct CpuSlot {
    /// Held around every use of `ac` (fast paths, drains, `do_ccupdate_local`).
    pub lock: LocalLock,
    /// `cpu_to_node(cpu)`.
    pub node: u16,
    /// The CPU's array cache.
    pub ac: *mut ArrayCache,
    /// rseq mode's busy mark (see `fastpath.rs`): non-zero while a holder of `lock` works on
    /// `ac` (or swaps it), so the rseq fast paths on this CPU fall back to the locked path.
    /// Set and cleared only by the holder of `lock`.
    pub busy: core::sync::atomic::AtomicUsize,
}

/// `struct kmem_cache` of 2.6.32. Variable size: `array` (one [`CpuSlot`] per CPU) and
/// `nodelists` (one pointer per node) follow the fixed part in the same object, as the
/// kernel's `nodelists[]` is sized to `nr_node_ids` at boot.
#[repr(C)]
#[derive(Debug)]
pub struct KmemCache {
    // First cache line: everything the fast paths and the free checks read.
    /// [`CACHE_MAGIC`] while alive (stale-handle check).
    pub magic: usize,
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
    /// Link on the cache chain.
    pub next: ListHead,
    /// `obj_size`: the object size the caller sees (the requested size rounded up to a word,
    /// as 2.6.32 `DEBUG` stores it; what `ksize` returns for a debug cache).
    pub obj_size: usize,
    /// Debug reports made about this cache (the `slab_errors` count).
    pub debug_errors: core::sync::atomic::AtomicU64,
    /// Counters (STATS).
    pub stats: CacheStats,
}

const _: () = assert!(core::mem::offset_of!(KmemCache, batchcount) + 4 <= 64);

/// Where `array[]` starts in every `kmem_cache` object: right after the fixed part, on a cache
/// line. A constant, so the fast paths find a CPU's slot by address arithmetic from the cache
/// pointer, without first loading `kmem_cache.array`.
pub const ARRAY_OFF: usize = align_up(core::mem::size_of::<KmemCache>(), 64);

/// Size of a `kmem_cache` object for `nr_cpus` CPUs and `nr_nodes` nodes, and the offsets of
/// its two trailing arrays.
pub const fn kmem_cache_layout(nr_cpus: usize, nr_nodes: usize) -> (usize, usize, usize) {
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

/// `fls(x)`: the 1-based index of the highest set bit (0 for 0).
const fn fls(x: usize) -> u32 {
    usize::BITS - x.leading_zeros()
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
    /// The slot of `cpu` in `cachep.array[]`.
    ///
    /// # Safety
    /// `cachep` a live cache; `cpu < nr_cpus`.
    #[inline(always)]
    pub(crate) unsafe fn cpu_slot(&self, cachep: *const KmemCache, cpu: usize) -> *mut CpuSlot {
        let slot = cachep
            .cast::<u8>()
            .cast_mut()
            .wrapping_add(ARRAY_OFF)
            .cast::<CpuSlot>()
            .wrapping_add(cpu);
        // Both creation paths (bootstrap's cache_cache, kmem_cache_create) place array[] at
        // ARRAY_OFF of the object; `array` records it for readers of the structure.
        // SAFETY: cachep is live (contract), so its `array` field is readable.
        debug_assert_eq!(slot, unsafe { (*cachep).array.wrapping_add(cpu) });
        slot
    }

    /// `nodelists[node]`.
    ///
    /// # Safety
    /// `cachep` live; `node < nr_nodes`.
    #[inline(always)]
    pub(crate) unsafe fn l3(&self, cachep: *const KmemCache, node: usize) -> *mut KmemList3 {
        // SAFETY: the array has nr_nodes entries.
        unsafe { *(*cachep).nodelists.add(node) }
    }

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

    /// `alloc_alien_cache(node, limit)`: one array per other node, 12 entries when `limit > 1`.
    pub(crate) fn alloc_alien_cache(&self, node: usize, limit: u32) -> *mut *mut ArrayCache {
        let limit = if limit > 1 { 12 } else { limit };
        let Some(p) = self.kmalloc_node_internal(self.nr_nodes * 8, node) else {
            return null_mut();
        };
        let ac_ptr = p.as_ptr().cast::<*mut ArrayCache>();
        for i in 0..self.nr_nodes {
            // SAFETY: ac_ptr has nr_nodes entries.
            unsafe { *ac_ptr.add(i) = null_mut() };
        }
        for i in 0..self.nr_nodes {
            if i == node {
                continue;
            }
            let ac = self.alloc_arraycache(node, limit, 0xbaad_f00d);
            if ac.is_null() {
                self.free_alien_cache(ac_ptr);
                return null_mut();
            }
            // SAFETY: i < nr_nodes.
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
            // SAFETY: ac_ptr has nr_nodes entries, each null or a kmalloc'd array.
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
    ) -> Result<*mut KmemCache, SlabError> {
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
        let cc = self.cache_cache;
        let Some(mem) = self.cache_alloc_internal(cc, Gfp::ZERO) else {
            return Err(SlabError::NoMemory);
        };
        let cachep = mem.as_ptr().cast::<KmemCache>();
        let (_, array_off, nodelists_off) = kmem_cache_layout(self.nr_cpus, self.nr_nodes);
        // SAFETY: a zeroed object of cache_cache, large enough for the layout.
        unsafe {
            (*cachep).instance = self.instance;
            (*cachep).buffer_size = geo.size;
            (*cachep).reciprocal_buffer_size = reciprocal_value(geo.size as u32);
            (*cachep).buffer_size_divides = common::ExactDiv::new(geo.size as u32);
            (*cachep).flags = geo.flags.0
                | if geo.off_slab { CFLGS_OFF_SLAB } else { 0 }
                | self.init_flags(geo.flags, ctor.is_some());
            (*cachep).obj_offset = geo.obj_offset as u32;
            (*cachep).num = geo.num as u32;
            (*cachep).gfporder = geo.gfporder as u32;
            (*cachep).colour = geo.colour;
            (*cachep).colour_off = geo.colour_off;
            (*cachep).slab_size = geo.slab_size;
            (*cachep).ctor = ctor;
            addr_of_mut!((*cachep).name).write(cname);
            (*cachep).obj_size = geo.obj_size;
            (*cachep).array = mem.as_ptr().add(array_off).cast();
            (*cachep).nodelists = mem.as_ptr().add(nodelists_off).cast();
            for cpu in 0..self.nr_cpus {
                let slot = self.cpu_slot(cachep, cpu);
                addr_of_mut!((*slot).lock).write(LocalLock::new());
                addr_of_mut!((*slot).busy).write(core::sync::atomic::AtomicUsize::new(0));
                (*slot).node = self.cpu_node[cpu] as u16;
                (*slot).ac = null_mut();
            }
            if geo.off_slab {
                (*cachep).slabp_cache = self.find_general_cachep(geo.slab_size);
                assert!(!(*cachep).slabp_cache.is_null());
            }
            if let Err(e) = self.setup_cpu_cache(cachep) {
                self.__kmem_cache_destroy(cachep);
                return Err(e);
            }
            (*cachep).magic = if (*cachep).flags & CFLGS_DEBUG_PATH != 0 {
                CACHE_MAGIC_DEBUG
            } else {
                CACHE_MAGIC
            };
            ListHead::add(addr_of_mut!((*cachep).next), self.cache_chain_head());
        }
        Ok(cachep)
    }

    /// `setup_cpu_cache`: boot arrays and list3s by bootstrap state, or `enable_cpucache`.
    ///
    /// # Safety
    /// `cachep` being created, not yet visible to other threads.
    pub(crate) unsafe fn setup_cpu_cache(&self, cachep: *mut KmemCache) -> Result<(), SlabError> {
        let state = self.cpucache_up();
        if state == CpuCacheUp::Full {
            // SAFETY: forwarded.
            return unsafe { self.enable_cpucache(cachep) };
        }
        // SAFETY: bootstrap runs on one thread; the static init structures live in the globals.
        unsafe {
            if state == CpuCacheUp::None {
                // The INDEX_AC cache: every CPU shares the static initarray_generic until
                // step 4 (bootstrap is single-threaded).
                let ac = self.initarray_generic_ptr();
                for cpu in 0..self.nr_cpus {
                    (*self.cpu_slot(cachep, cpu)).ac = ac;
                }
                self.set_up_list3s(cachep, crate::bootstrap::SIZE_AC);
                self.set_cpucache_up(if crate::kmalloc::INDEX_AC == crate::kmalloc::INDEX_L3 {
                    CpuCacheUp::PartialL3
                } else {
                    CpuCacheUp::PartialAc
                });
            } else {
                for cpu in 0..self.nr_cpus {
                    let p = self
                        .kmalloc_internal(crate::arraycache::ARRAYCACHE_INIT_SIZE)
                        .ok_or(SlabError::NoMemory)?;
                    (*self.cpu_slot(cachep, cpu)).ac = p.as_ptr().cast();
                }
                if state == CpuCacheUp::PartialAc {
                    self.set_up_list3s(cachep, crate::bootstrap::SIZE_L3);
                    self.set_cpucache_up(CpuCacheUp::PartialL3);
                } else {
                    for node in 0..self.nr_nodes {
                        let p = self
                            .kmalloc_node_internal(core::mem::size_of::<KmemList3>(), node)
                            .ok_or(SlabError::NoMemory)?;
                        let l3 = p.as_ptr().cast::<KmemList3>();
                        kmem_list3_init(l3);
                        *(*cachep).nodelists.add(node) = l3;
                    }
                }
            }
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                (*l3).next_reap = self.next_reap_initial(cachep);
            }
            for cpu in 0..self.nr_cpus {
                let ac = (*self.cpu_slot(cachep, cpu)).ac;
                ac_init(ac, BOOT_CPUCACHE_ENTRIES as u32, 1);
            }
            (*cachep).batchcount.store(1, Ordering::Relaxed);
            (*cachep)
                .limit
                .store(BOOT_CPUCACHE_ENTRIES as u32, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `jiffies + REAPTIMEOUT_LIST3 + cachep % REAPTIMEOUT_LIST3`: staggered first node reap.
    pub(crate) fn next_reap_initial(&self, cachep: *const KmemCache) -> usize {
        self.jiffies()
            .wrapping_add(REAPTIMEOUT_LIST3)
            .wrapping_add((cachep as usize / 64) % REAPTIMEOUT_LIST3)
    }

    /// `enable_cpucache`: the size table (or the settings' override) through
    /// `do_tune_cpucache`.
    ///
    /// # Safety
    /// `cachep` live; the chain mutex (or bootstrap exclusivity) held.
    pub(crate) unsafe fn enable_cpucache(&self, cachep: *mut KmemCache) -> Result<(), SlabError> {
        // SAFETY: live cache.
        let size = unsafe { (*cachep).buffer_size };
        let (mut limit, mut batch, mut shared) = cpucache_tunables(size, self.num_possible_cpus);
        // SAFETY: live cache.
        if unsafe { (*cachep).flags } & DEBUG_FLAGS != 0 && limit > 32 {
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
        cachep: *mut KmemCache,
        limit: u32,
        batchcount: u32,
        shared: u32,
    ) -> Result<(), SlabError> {
        let Some(newp) = self.kmalloc_internal(self.nr_cpus * 8) else {
            return Err(SlabError::NoMemory);
        };
        let new = newp.as_ptr().cast::<*mut ArrayCache>();
        // SAFETY: `new` has nr_cpus entries; slots belong to a live cache.
        unsafe {
            for i in 0..self.nr_cpus {
                let ac = self.alloc_arraycache(self.cpu_node[i] as usize, limit, batchcount);
                if ac.is_null() {
                    for j in 0..i {
                        self.kfree_internal((*new.add(j)).cast());
                    }
                    self.kfree_internal(new.cast());
                    return Err(SlabError::NoMemory);
                }
                *new.add(i) = ac;
            }
            for i in 0..self.nr_cpus {
                let slot = self.cpu_slot(cachep, i);
                self.slot_lock(slot, i);
                let old = (*slot).ac;
                (*slot).ac = *new.add(i);
                *new.add(i) = old;
                self.slot_unlock(slot);
            }
            (*cachep).batchcount.store(batchcount, Ordering::Relaxed);
            (*cachep).limit.store(limit, Ordering::Relaxed);
            (*cachep).shared.store(shared, Ordering::Relaxed);
            for i in 0..self.nr_cpus {
                let ccold = *new.add(i);
                if ccold.is_null() {
                    continue;
                }
                let node = self.cpu_node[i] as usize;
                let l3 = self.l3(cachep, node);
                (*l3).list_lock.lock();
                self.free_block(cachep, ac_entry(ccold), (*ccold).avail as usize, node);
                (*l3).list_lock.unlock();
                if !self.is_static_array(ccold) {
                    self.kfree_internal(ccold.cast());
                }
            }
            self.kfree_internal(new.cast());
            self.alloc_kmemlist(cachep)
        }
    }

    /// `alloc_kmemlist`: (re)builds each node's shared array, alien arrays and `free_limit`.
    ///
    /// # Safety
    /// `cachep` live; chain mutex held.
    pub(crate) unsafe fn alloc_kmemlist(&self, cachep: *mut KmemCache) -> Result<(), SlabError> {
        // SAFETY: live cache; l3 fields changed under list_lock.
        unsafe {
            let limit = (*cachep).limit.load(Ordering::Relaxed);
            let batch = (*cachep).batchcount.load(Ordering::Relaxed);
            let shared = (*cachep).shared.load(Ordering::Relaxed);
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
                let mut l3 = self.l3(cachep, node);
                if l3.is_null() {
                    let Some(p) =
                        self.kmalloc_node_internal(core::mem::size_of::<KmemList3>(), node)
                    else {
                        self.free_alien_cache(new_alien);
                        self.kfree_internal(new_shared.cast());
                        return Err(SlabError::NoMemory);
                    };
                    l3 = p.as_ptr().cast();
                    kmem_list3_init(l3);
                    (*l3).next_reap = self.next_reap_initial(cachep);
                    *(*cachep).nodelists.add(node) = l3;
                }
                (*l3).list_lock.lock();
                let old_shared = (*l3).shared;
                if !old_shared.is_null() {
                    self.free_block(
                        cachep,
                        ac_entry(old_shared),
                        (*old_shared).avail as usize,
                        node,
                    );
                }
                (*l3).shared = new_shared;
                if (*l3).alien.load(Ordering::Relaxed).is_null() {
                    (*l3).alien.store(new_alien, Ordering::Release);
                    new_alien = null_mut();
                }
                (*l3).free_limit = free_limit(
                    self.nr_cpus_node[node] as usize,
                    batch as usize,
                    (*cachep).num as usize,
                ) as u32;
                (*l3).list_lock.unlock();
                self.kfree_internal(old_shared.cast());
                self.free_alien_cache(new_alien);
            }
        }
        Ok(())
    }

    /// `drain_cpu_caches`: every CPU's array (`do_drain`), then the alien arrays, then the
    /// shared arrays (forced).
    ///
    /// # Safety
    /// `cachep` live.
    pub(crate) unsafe fn drain_cpu_caches(&self, cachep: *mut KmemCache) {
        // SAFETY: slots and l3s of a live cache; lock order slot → list_lock.
        unsafe {
            for cpu in 0..self.nr_cpus {
                let slot = self.cpu_slot(cachep, cpu);
                self.slot_lock(slot, cpu);
                let ac = (*slot).ac;
                let node = (*slot).node as usize;
                let l3 = self.l3(cachep, node);
                (*l3).list_lock.lock();
                self.free_block(cachep, ac_entry(ac), (*ac).avail as usize, node);
                (*l3).list_lock.unlock();
                (*ac).avail = 0;
                self.slot_unlock(slot);
            }
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                let alien = (*l3).alien.load(Ordering::Acquire);
                if !alien.is_null() {
                    self.drain_alien_cache(cachep, alien);
                }
            }
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                self.drain_shared(cachep, l3, true, node);
            }
        }
    }

    /// `__cache_shrink`: drains every array, frees every empty slab; `true` if slabs with
    /// objects in use remain.
    ///
    /// # Safety
    /// `cachep` live; chain mutex held.
    pub(crate) unsafe fn __cache_shrink(&self, cachep: *mut KmemCache) -> bool {
        let mut ret = false;
        // SAFETY: live cache.
        unsafe {
            self.drain_cpu_caches(cachep);
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                (*l3).list_lock.lock();
                let n = (*l3).free_objects;
                (*l3).list_lock.unlock();
                self.drain_freelist(cachep, l3, n);
                (*l3).list_lock.lock();
                ret |= !ListHead::is_empty(addr_of_mut!((*l3).slabs_full))
                    || !ListHead::is_empty(addr_of_mut!((*l3).slabs_partial));
                (*l3).list_lock.unlock();
            }
        }
        ret
    }

    /// Objects handed out (on full and partial slabs, arrays drained first).
    ///
    /// # Safety
    /// `cachep` live.
    pub(crate) unsafe fn objects_in_slabs(&self, cachep: *mut KmemCache) -> usize {
        let mut n = 0;
        // SAFETY: walk under each node's lock.
        unsafe {
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                (*l3).list_lock.lock();
                for head in [
                    addr_of_mut!((*l3).slabs_full),
                    addr_of_mut!((*l3).slabs_partial),
                ] {
                    for link in ListHead::iter(head) {
                        n += (*crate::slabmgmt::slab_from_list(link)).inuse as usize;
                    }
                }
                (*l3).list_lock.unlock();
            }
        }
        n
    }

    /// `kmem_cache_destroy`: refused with `Busy` while objects are in use (the kernel prints
    /// "Can't free all objects" and keeps the cache).
    ///
    /// # Safety
    /// No other thread uses the cache.
    pub(crate) unsafe fn kmem_cache_destroy(
        &self,
        cachep: *mut KmemCache,
    ) -> Result<(), SlabError> {
        let _chain = self.chain_lock();
        // SAFETY: live cache, exclusive per the contract.
        unsafe {
            ListHead::del(addr_of_mut!((*cachep).next));
            if self.__cache_shrink(cachep) {
                let objects = self.objects_in_slabs(cachep);
                if (*cachep).flags & DEBUG_FLAGS != 0 {
                    self.report_leaks(cachep);
                }
                ListHead::add(addr_of_mut!((*cachep).next), self.cache_chain_head());
                return Err(SlabError::Busy { objects });
            }
            self.__kmem_cache_destroy(cachep);
        }
        Ok(())
    }

    /// `__kmem_cache_destroy`: frees the arrays, list3s and the descriptor itself.
    ///
    /// # Safety
    /// The cache has no slabs and nobody uses it.
    pub(crate) unsafe fn __kmem_cache_destroy(&self, cachep: *mut KmemCache) {
        // SAFETY: exclusive access per the contract.
        unsafe {
            (*cachep).magic = 0;
            for cpu in 0..self.nr_cpus {
                let ac = (*self.cpu_slot(cachep, cpu)).ac;
                if !ac.is_null() && !self.is_static_array(ac) {
                    self.kfree_internal(ac.cast());
                }
                (*self.cpu_slot(cachep, cpu)).ac = null_mut();
            }
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                if !l3.is_null() && !self.is_static_l3(l3) {
                    self.kfree_internal((*l3).shared.cast());
                    self.free_alien_cache((*l3).alien.load(Ordering::Acquire));
                    self.kfree_internal(l3.cast());
                }
                *(*cachep).nodelists.add(node) = null_mut();
            }
            let ok = self.cache_free_internal(self.cache_cache, cachep.cast());
            debug_assert!(ok);
        }
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
