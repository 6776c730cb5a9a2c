//! The allocator's "static" data and the six-step `kmem_cache_init` of 2.6.32.
//!
//! What the kernel keeps in `.data`/`.bss` — `cache_cache`, `initarray_cache`,
//! `initarray_generic`, `initkmem_list3[]`, `malloc_sizes[]`, `cache_chain`,
//! `g_cpucache_up` — lives in [`SlabGlobals`], one block taken from the page provider
//! (`Owner::Metadata`) when the instance is built. Everything else (every other `kmem_cache`,
//! every `array_cache`, `kmem_list3`, alien table and off-slab descriptor) is allocated by the
//! allocator from its own caches, exactly as the kernel bootstraps itself:
//!
//! 1. `cache_cache` (the cache of `kmem_cache` objects) is set up by hand with the static
//!    `initarray_cache` and the `CACHE_CACHE` list3s.
//! 2. The `INDEX_AC` kmalloc cache (`size-32`, holds an `arraycache_init`) is created: state
//!    `NONE` gives it the static `initarray_generic` and `SIZE_AC` list3s → `PARTIAL_AC`.
//! 3. The `INDEX_L3` cache (`size-128`, holds a `kmem_list3`) gets kmalloc'd arrays and the static
//!    `SIZE_L3` list3s → `PARTIAL_L3`; off-slab is allowed from now on; every other `size-N`
//!    cache is created with kmalloc'd arrays and kmalloc_node'd list3s.
//! 4. The static head arrays of `cache_cache` and the `INDEX_AC` cache are replaced by kmalloc'd
//!    copies.
//! 5. `init_list` replaces every static list3 with a kmalloc_node'd copy, splicing the slab
//!    lists across → `EARLY`.
//! 6. (`kmem_cache_init_late`) `enable_cpucache` on every cache → `FULL`.
//!
//! Deviation: user space has every CPU from the start, so where the kernel's `cpuup_prepare`
//! gives late CPUs their arrays, the bootstrap gives every CPU slot an array at once (during
//! bootstrap all slots of the first two caches share the static array; only one thread runs).

use crate::arraycache::{ac_init, ArrayCache, ArrayCacheInit, ARRAYCACHE_INIT_SIZE};
use crate::cache::{cache_estimate, kmem_cache_layout, CpuSlot, KmemCache, CACHE_MAGIC};
use crate::kmalloc::{CacheSizes, INDEX_AC, INDEX_L3};
use crate::node::{kmem_list3_init, list_splice_init, KmemList3};
use crate::slabmgmt::{align_up, reciprocal_value, BUFCTL_SIZE, SLAB_DESC_SIZE};
use crate::SlabSettings;
use common::api::{CacheName, SlabError, SlabFlags};
use common::list::ListHead;
use common::percpu::LocalLock;
use common::provider::get_order;
use common::sizes::slab as sizes;
use common::sync::{ChainMutex, ChainMutexGuard};
use common::{Gfp, Owner, PageProvider, MAX_NUMNODES, NR_CPUS, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ptr::{addr_of_mut, null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

/// `g_cpucache_up`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuCacheUp {
    /// Nothing yet.
    None = 0,
    /// The `INDEX_AC` cache exists.
    PartialAc = 1,
    /// The `INDEX_L3` cache exists.
    PartialL3 = 2,
    /// Every kmalloc cache exists, static structures replaced.
    Early = 3,
    /// Tunables applied.
    Full = 4,
}

impl CpuCacheUp {
    /// From its `u8` value (anything above `EARLY` is `FULL`).
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => CpuCacheUp::None,
            1 => CpuCacheUp::PartialAc,
            2 => CpuCacheUp::PartialL3,
            3 => CpuCacheUp::Early,
            _ => CpuCacheUp::Full,
        }
    }
}

/// `CACHE_CACHE` index into `initkmem_list3`.
pub const CACHE_CACHE: usize = 0;
/// `SIZE_AC` block of `initkmem_list3` (times the node count).
pub const SIZE_AC: usize = 1;
/// `SIZE_L3` block.
pub const SIZE_L3: usize = 2;
/// `NUM_INIT_LISTS` = 3 × nodes.
pub const NUM_INIT_LIST_BLOCKS: usize = 3;

/// The per-instance "static" data (see the module documentation).
pub struct SlabGlobals {
    pub(crate) provider: PageProvider,
    pub(crate) instance: u32,
    pub(crate) settings: SlabSettings,
    /// Per-CPU slots (`nr_cpu_ids`).
    pub(crate) nr_cpus: usize,
    /// Nodes (`nr_node_ids`).
    pub(crate) nr_nodes: usize,
    pub(crate) num_possible_cpus: usize,
    pub(crate) cpu_node: [u8; NR_CPUS],
    pub(crate) nr_cpus_node: [u32; MAX_NUMNODES],
    pub(crate) cache_line_size: usize,
    pub(crate) slab_break_gfp_order: usize,
    pub(crate) use_alien_caches: bool,
    pub(crate) stats: bool,
    /// The fast path in use (`settings.fastpath` and `SLAB_FASTPATH` resolved at creation):
    /// true = rseq push/pop with busy marks, false = every array use under the slot lock.
    pub(crate) rseq: bool,
    /// `settings.config` (issue 15), beside the fields the free paths read.
    pub(crate) config: common::KernelConfig,
    /// `cache_from_obj` warnings of a `hardened` instance (counted, not printed).
    pub(crate) free_warnings: AtomicU64,
    /// `sysconf(_SC_NPROCESSORS_CONF)`: slots at or above it name no CPU a thread can run on.
    pub(crate) nprocs_conf: usize,
    /// Debug reports made by this instance (the `slab_errors` count, all caches).
    pub(crate) debug_errors: AtomicU64,
    g_cpucache_up: AtomicU8,
    /// Every state `g_cpucache_up` went through, in order (for tests and introspection).
    states_seen: [AtomicU8; 8],
    slab_early_init: AtomicBool,
    /// `cache_chain`. Linked into every cache's `next` and written whenever a cache is created
    /// or destroyed (chain mutex held), through pointers from [`Self::cache_chain_head`].
    cache_chain: UnsafeCell<ListHead>,
    cache_chain_mutex: ChainMutex,
    pub(crate) malloc_sizes: [CacheSizes; sizes::NR],
    jiffies: AtomicUsize,
    pub(crate) reap_node: [AtomicU16; NR_CPUS],
    pub(crate) reaper: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) reaper_stop: AtomicBool,
    /// The boot head array of `cache_cache`; every CPU slot points at it during bootstrap and
    /// writes through that pointer (hence the `UnsafeCell`).
    initarray_cache: UnsafeCell<ArrayCacheInit>,
    /// The boot head array of the `INDEX_AC` cache (as `initarray_cache`).
    initarray_generic: UnsafeCell<ArrayCacheInit>,
    /// `initkmem_list3[]`: `NUM_INIT_LIST_BLOCKS × nr_nodes` list3s after the `cache_cache`
    /// object in the same block (a raw pointer from the block's base, so writes through it are
    /// not writes through `&self`).
    initkmem_list3: *mut KmemList3,
    /// The cache of `kmem_cache` objects (static in the kernel, here inside this block).
    pub(crate) cache_cache: *mut KmemCache,
    pub(crate) block_order: usize,
}

// SAFETY: all mutable state reached through the raw pointers and `UnsafeCell`s is protected by
// the locks the crate documents (lib.rs lock order) or written only during the single-threaded
// bootstrap (`malloc_sizes`, the boot arrays); everything else is atomics or read-only.
unsafe impl Send for SlabGlobals {}
// SAFETY: see Send.
unsafe impl Sync for SlabGlobals {}

impl SlabGlobals {
    /// Builds the block and runs `kmem_cache_init` + `kmem_cache_init_late`.
    pub(crate) fn create(
        provider: &PageProvider,
        settings: SlabSettings,
    ) -> Result<NonNull<SlabGlobals>, SlabError> {
        let topo = provider.topology();
        let nr_cpus = topo.nr_cpu_ids().max(1);
        let nr_nodes = provider.nr_nodes();
        let (cc_size, array_off, nodelists_off) = kmem_cache_layout(nr_cpus, nr_nodes);
        let globals_size = align_up(core::mem::size_of::<SlabGlobals>(), 64);
        let cc_bytes = align_up(cc_size, 64);
        let l3_bytes = NUM_INIT_LIST_BLOCKS * nr_nodes * core::mem::size_of::<KmemList3>();
        let total = globals_size + cc_bytes + l3_bytes;
        let order = get_order(total);
        let page = provider
            .alloc_pages_gfp(0, order, Owner::Metadata, Gfp::ZERO)
            .ok_or(SlabError::NoMemory)?;
        let base = provider.page_address(page).as_ptr();
        let mut cpu_node = [0u8; NR_CPUS];
        for (c, n) in cpu_node.iter_mut().enumerate().take(nr_cpus) {
            *n = topo.cpu_to_node(c).min(nr_nodes - 1) as u8;
        }
        let mut nr_cpus_node = [0u32; MAX_NUMNODES];
        for (n, v) in nr_cpus_node.iter_mut().enumerate().take(nr_nodes) {
            *v = topo.nr_cpus_node(n) as u32;
        }
        let total_ram = provider.node_pages() * nr_nodes * PAGE_SIZE;
        let break_order = settings
            .slab_break_gfp_order
            .unwrap_or(if total_ram > 32 << 20 {
                crate::cache::BREAK_GFP_ORDER_HI
            } else {
                crate::cache::BREAK_GFP_ORDER_LO
            });
        let g = base.cast::<SlabGlobals>();
        // SAFETY: the block is fresh, zeroed, page-aligned and big enough for the globals, the
        // cache_cache object and the static list3s.
        unsafe {
            g.write(SlabGlobals {
                provider: provider.clone(),
                instance: common::api::new_instance_id(),
                settings,
                nr_cpus,
                nr_nodes,
                num_possible_cpus: topo.possible_cpus().weight().max(1),
                cpu_node,
                nr_cpus_node,
                cache_line_size: topo.cache_line_size().max(8),
                slab_break_gfp_order: break_order,
                use_alien_caches: settings.use_alien_caches && nr_nodes > 1,
                stats: settings.stats,
                rseq: crate::fastpath::resolve_fastpath(settings.fastpath, nr_cpus),
                nprocs_conf: crate::fastpath::nprocs_conf(),
                debug_errors: AtomicU64::new(0),
                config: settings.config,
                free_warnings: AtomicU64::new(0),
                g_cpucache_up: AtomicU8::new(CpuCacheUp::None as u8),
                states_seen: core::array::from_fn(|_| AtomicU8::new(u8::MAX)),
                slab_early_init: AtomicBool::new(true),
                cache_chain: UnsafeCell::new(ListHead::new()),
                cache_chain_mutex: ChainMutex::new(),
                malloc_sizes: core::array::from_fn(|i| CacheSizes::new(sizes::SIZES[i])),
                jiffies: AtomicUsize::new(0),
                reap_node: core::array::from_fn(|_| AtomicU16::new(0)),
                reaper: Mutex::new(None),
                reaper_stop: AtomicBool::new(false),
                initarray_cache: UnsafeCell::new(core::mem::zeroed()),
                initarray_generic: UnsafeCell::new(core::mem::zeroed()),
                initkmem_list3: base.add(globals_size + cc_bytes).cast(),
                cache_cache: base.add(globals_size).cast(),
                block_order: order,
            });
            let cc = (*g).cache_cache;
            (*cc).array = cc.cast::<u8>().add(array_off).cast::<CpuSlot>();
            (*cc).nodelists = cc.cast::<u8>().add(nodelists_off).cast();
            if let Err(e) = (*g).kmem_cache_init() {
                // A failed bootstrap leaves slabs behind: give every page back.
                (*g).release_all_memory();
                let block = (*g).block_order;
                core::ptr::drop_in_place(g);
                let _ = provider.free_pages(page, block);
                return Err(e);
            }
            Ok(NonNull::new_unchecked(g))
        }
    }

    /// `kmem_cache_init` (steps 1–5) and `kmem_cache_init_late` (step 6).
    ///
    /// Takes `&self`, not `&mut self`: the pointers it stores into caches (the chain head, the
    /// boot arrays) are used for the instance's whole life, and a unique borrow of the whole
    /// block would make them invalid under Stacked Borrows as soon as it ended. Everything it
    /// writes is therefore in `UnsafeCell`s, atomics, or memory reached through raw pointers.
    ///
    /// # Safety
    /// Called once, by `create`, before the instance is shared.
    unsafe fn kmem_cache_init(&self) -> Result<(), SlabError> {
        let nr_nodes = self.nr_nodes;
        // SAFETY: single-threaded bootstrap over memory of the globals block.
        unsafe {
            for i in 0..NUM_INIT_LIST_BLOCKS * nr_nodes {
                kmem_list3_init(self.initkmem_list3.add(i));
            }
            for cpu in 0..self.nr_cpus {
                self.reap_node[cpu].store(
                    ((self.cpu_node[cpu] as usize + 1) % nr_nodes) as u16,
                    Ordering::Relaxed,
                );
            }
            // 1) cache_cache.
            ListHead::init(self.cache_chain_head());
            let cc = self.cache_cache;
            // At least 64: the per-CPU slots inside a kmem_cache are cache-line-aligned structs.
            let line = self.cache_line_size.max(64);
            (*cc).instance = self.instance;
            addr_of_mut!((*cc).name)
                .write(CacheName::new("kmem_cache").unwrap_or_else(|_| unreachable!()));
            ListHead::add(addr_of_mut!((*cc).next), self.cache_chain_head());
            (*cc).colour_off = line;
            let init_ac = self.initarray_cache_ptr();
            ac_init(init_ac, 1, 1);
            for cpu in 0..self.nr_cpus {
                let slot = self.cpu_slot(cc, cpu);
                addr_of_mut!((*slot).lock).write(LocalLock::new());
                addr_of_mut!((*slot).busy).write(core::sync::atomic::AtomicUsize::new(0));
                (*slot).node = self.cpu_node[cpu] as u16;
                (*slot).ac = init_ac;
            }
            self.set_up_list3s(cc, CACHE_CACHE);
            let (cc_size, _, _) = kmem_cache_layout(self.nr_cpus, nr_nodes);
            (*cc).buffer_size = align_up(cc_size, line);
            (*cc).obj_size = cc_size;
            (*cc).reciprocal_buffer_size = reciprocal_value((*cc).buffer_size as u32);
            (*cc).buffer_size_divides = common::ExactDiv::new((*cc).buffer_size as u32);
            let mut order = 0;
            let mut left_over = 0;
            while order < common::MAX_ORDER {
                let (l, n) = cache_estimate(order, (*cc).buffer_size, line, false);
                left_over = l;
                (*cc).num = n as u32;
                if n > 0 {
                    break;
                }
                order += 1;
            }
            if (*cc).num == 0 {
                return Err(SlabError::TooLarge {
                    size: (*cc).buffer_size,
                    max: crate::cache::KMALLOC_MAX_SIZE,
                });
            }
            (*cc).gfporder = order as u32;
            (*cc).colour = left_over / (*cc).colour_off;
            (*cc).slab_size = align_up((*cc).num as usize * BUFCTL_SIZE + SLAB_DESC_SIZE, line);
            (*cc).batchcount.store(1, Ordering::Relaxed);
            (*cc).limit.store(1, Ordering::Relaxed);
            (*cc).shared.store(1, Ordering::Relaxed);
            (*cc).magic = CACHE_MAGIC;

            // 2+3) the kmalloc caches, INDEX_AC and INDEX_L3 first.
            let kflags = SlabFlags::HWCACHE_ALIGN | SlabFlags::KMALLOC;
            let ac_cache = self.kmem_cache_create(
                sizes::NAMES[INDEX_AC],
                sizes::SIZES[INDEX_AC],
                8,
                kflags,
                None,
            )?;
            self.malloc_sizes[INDEX_AC].set_cachep(ac_cache);
            if INDEX_AC != INDEX_L3 {
                let l3_cache = self.kmem_cache_create(
                    sizes::NAMES[INDEX_L3],
                    sizes::SIZES[INDEX_L3],
                    8,
                    kflags,
                    None,
                )?;
                self.malloc_sizes[INDEX_L3].set_cachep(l3_cache);
            }
            self.slab_early_init.store(false, Ordering::Relaxed);
            for i in 0..sizes::NR {
                if self.malloc_sizes[i].cachep().is_null() {
                    let c =
                        self.kmem_cache_create(sizes::NAMES[i], sizes::SIZES[i], 8, kflags, None)?;
                    self.malloc_sizes[i].set_cachep(c);
                }
            }

            // 4) replace the bootstrap head arrays.
            for (cachep, init) in [
                (cc, self.initarray_cache_ptr()),
                (ac_cache, self.initarray_generic_ptr()),
            ] {
                let mut first = true;
                // Allocate every replacement before installing any (the INDEX_AC cache
                // allocates them from its own static array).
                let tmp = self
                    .kmalloc_internal(self.nr_cpus * 8)
                    .ok_or(SlabError::NoMemory)?;
                let tmp = tmp.as_ptr().cast::<*mut ArrayCache>();
                for cpu in 0..self.nr_cpus {
                    let p = self
                        .kmalloc_internal(ARRAYCACHE_INIT_SIZE)
                        .ok_or(SlabError::NoMemory)?;
                    *tmp.add(cpu) = p.as_ptr().cast();
                }
                for cpu in 0..self.nr_cpus {
                    let p = *tmp.add(cpu);
                    if first {
                        core::ptr::copy_nonoverlapping(
                            init.cast::<u8>(),
                            p.cast::<u8>(),
                            ARRAYCACHE_INIT_SIZE,
                        );
                        (*p).lock.init();
                        first = false;
                    } else {
                        ac_init(p, 1, 1);
                    }
                    (*self.cpu_slot(cachep, cpu)).ac = p;
                }
                (*init).avail = 0;
                self.kfree_internal(tmp.cast());
            }

            // 5) replace the bootstrap kmem_list3s.
            let l3_cache = self.malloc_sizes[INDEX_L3].cachep();
            for nid in 0..nr_nodes {
                self.init_list(
                    cc,
                    self.initkmem_list3.add(CACHE_CACHE * nr_nodes + nid),
                    nid,
                )?;
                self.init_list(
                    ac_cache,
                    self.initkmem_list3.add(SIZE_AC * nr_nodes + nid),
                    nid,
                )?;
                if INDEX_AC != INDEX_L3 {
                    self.init_list(
                        l3_cache,
                        self.initkmem_list3.add(SIZE_L3 * nr_nodes + nid),
                        nid,
                    )?;
                }
            }
            self.set_cpucache_up(CpuCacheUp::Early);

            // 6) kmem_cache_init_late: final head-array sizes.
            let head = self.cache_chain_head();
            for link in ListHead::iter(head) {
                let cachep = crate::cache_from_chain(link);
                self.enable_cpucache(cachep)?;
            }
            self.set_cpucache_up(CpuCacheUp::Full);
        }
        Ok(())
    }

    /// `init_list`: a kmalloc_node'd copy of a static list3, lists spliced across.
    ///
    /// # Safety
    /// Bootstrap only.
    unsafe fn init_list(
        &self,
        cachep: *mut KmemCache,
        list: *mut KmemList3,
        nid: usize,
    ) -> Result<(), SlabError> {
        let p = self
            .kmalloc_node_internal(core::mem::size_of::<KmemList3>(), nid)
            .ok_or(SlabError::NoMemory)?;
        let ptr = p.as_ptr().cast::<KmemList3>();
        // SAFETY: fresh object of the INDEX_L3 cache; `list` is the live static list3.
        unsafe {
            core::ptr::copy_nonoverlapping(list, ptr, 1);
            (*ptr).list_lock.init();
            list_splice_init(
                addr_of_mut!((*list).slabs_full),
                addr_of_mut!((*ptr).slabs_full),
            );
            list_splice_init(
                addr_of_mut!((*list).slabs_partial),
                addr_of_mut!((*ptr).slabs_partial),
            );
            list_splice_init(
                addr_of_mut!((*list).slabs_free),
                addr_of_mut!((*ptr).slabs_free),
            );
            *(*cachep).nodelists.add(nid) = ptr;
        }
        Ok(())
    }

    /// `set_up_list3s(cachep, index)`: the static list3s of block `index` for every node.
    ///
    /// # Safety
    /// Bootstrap only.
    pub(crate) unsafe fn set_up_list3s(&self, cachep: *mut KmemCache, index: usize) {
        // SAFETY: the static list3s are inside the globals block.
        unsafe {
            for node in 0..self.nr_nodes {
                let l3 = self.initkmem_list3.add(index * self.nr_nodes + node);
                *(*cachep).nodelists.add(node) = l3;
                (*l3).next_reap = self.next_reap_initial(cachep);
            }
        }
    }

    /// The static `initarray_cache` head array (writable: it lives in an `UnsafeCell`).
    pub(crate) fn initarray_cache_ptr(&self) -> *mut ArrayCache {
        // SAFETY: in bounds of the cell's contents; no reference is created.
        unsafe { addr_of_mut!((*self.initarray_cache.get()).cache) }
    }

    /// The static `initarray_generic` head array (writable: it lives in an `UnsafeCell`).
    pub(crate) fn initarray_generic_ptr(&self) -> *mut ArrayCache {
        // SAFETY: in bounds of the cell's contents; no reference is created.
        unsafe { addr_of_mut!((*self.initarray_generic.get()).cache) }
    }

    /// Whether `ac` is one of the two static boot arrays.
    pub(crate) fn is_static_array(&self, ac: *mut ArrayCache) -> bool {
        ac == self.initarray_cache_ptr() || ac == self.initarray_generic_ptr()
    }

    /// Whether `l3` is one of the static boot list3s.
    pub(crate) fn is_static_l3(&self, l3: *mut KmemList3) -> bool {
        let start = self.initkmem_list3 as usize;
        let end = start + NUM_INIT_LIST_BLOCKS * self.nr_nodes * core::mem::size_of::<KmemList3>();
        (start..end).contains(&(l3 as usize))
    }

    pub(crate) fn cpucache_up(&self) -> CpuCacheUp {
        CpuCacheUp::from_u8(self.g_cpucache_up.load(Ordering::Acquire))
    }

    pub(crate) fn set_cpucache_up(&self, s: CpuCacheUp) {
        self.g_cpucache_up.store(s as u8, Ordering::Release);
        if let Some(slot) = self
            .states_seen
            .iter()
            .find(|a| a.load(Ordering::Relaxed) == u8::MAX)
        {
            slot.store(s as u8, Ordering::Relaxed);
        }
    }

    /// The bootstrap states reached, in order.
    pub(crate) fn states_seen(&self) -> impl Iterator<Item = u8> + '_ {
        self.states_seen
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .take_while(|&v| v != u8::MAX)
    }

    pub(crate) fn slab_early_init(&self) -> bool {
        self.slab_early_init.load(Ordering::Relaxed)
    }

    /// `cache_chain_mutex`.
    pub(crate) fn chain_lock(&self) -> ChainMutexGuard<'_> {
        self.cache_chain_mutex.lock()
    }

    /// `mutex_trylock(&cache_chain_mutex)`.
    pub(crate) fn chain_try_lock(&self) -> Option<ChainMutexGuard<'_>> {
        self.cache_chain_mutex.try_lock()
    }

    /// `&cache_chain`, writable under the chain mutex (or during bootstrap).
    pub(crate) fn cache_chain_head(&self) -> *mut ListHead {
        self.cache_chain.get()
    }

    /// The cache named `name` (chain mutex held).
    pub(crate) fn find_cache_by_name(&self, name: &str) -> Option<*mut KmemCache> {
        // SAFETY: the chain is walked under the chain mutex held by the caller.
        unsafe {
            ListHead::iter(self.cache_chain_head())
                .map(crate::cache_from_chain)
                .find(|&c| (*c).name.as_str() == name)
        }
    }

    /// The fake clock, in jiffies (`HZ` = 1000, so milliseconds).
    pub(crate) fn jiffies(&self) -> usize {
        self.jiffies.load(Ordering::Relaxed)
    }

    /// Advances the fake clock.
    pub(crate) fn advance_jiffies(&self, n: usize) -> usize {
        self.jiffies.fetch_add(n, Ordering::Relaxed).wrapping_add(n)
    }

    /// Gives every slab page of every cache back to the provider without looking at objects
    /// (teardown of the whole instance). Collects pages on a private list through
    /// `Page::lru` first, because the list3s and caches being walked live in those pages.
    ///
    /// # Safety
    /// Nobody uses the instance any more.
    pub(crate) unsafe fn release_all_memory(&self) {
        let mut pages = ListHead::new();
        let head = &raw mut pages;
        // SAFETY: exclusive access; every slab on a list has a head page in mem_map.
        unsafe {
            ListHead::init(head);
            if (*self.cache_chain_head()).next.is_null() {
                return;
            }
            let mut seen_l3 = [null_mut::<KmemList3>(); 64];
            let mut nseen = 0;
            for link in ListHead::iter(self.cache_chain_head()) {
                let cachep = crate::cache_from_chain(link);
                for node in 0..self.nr_nodes {
                    let l3 = self.l3(cachep, node);
                    if l3.is_null() || (nseen < 64 && seen_l3[..nseen].contains(&l3)) {
                        continue;
                    }
                    if nseen < 64 {
                        seen_l3[nseen] = l3;
                        nseen += 1;
                    }
                    for lh in [
                        addr_of_mut!((*l3).slabs_full),
                        addr_of_mut!((*l3).slabs_partial),
                        addr_of_mut!((*l3).slabs_free),
                    ] {
                        if (*lh).next.is_null() {
                            continue;
                        }
                        for s in ListHead::iter(lh) {
                            let slabp = crate::slabmgmt::slab_from_list(s);
                            let addr = (*slabp).s_mem as usize - (*slabp).colouroff;
                            if let Some(page) = self.provider.virt_to_page(addr) {
                                ListHead::add(common::Page::lru_of(page.as_ptr()), head);
                            }
                        }
                    }
                }
            }
            while let Some(link) = ListHead::first(head) {
                ListHead::del(link);
                let page = NonNull::new_unchecked(common::Page::from_lru(link));
                let order = page.as_ref().order as usize;
                page.as_ref()
                    .clear_flags(common::page::flags::PG_SLAB | common::page::flags::PG_OFF_SLAB);
                let _ = self.provider.free_pages(page, order);
            }
        }
    }
}
