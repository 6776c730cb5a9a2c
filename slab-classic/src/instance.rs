//! The instance: [`SlabGlobals`], what the kernel keeps in `.data`/`.bss` for SLAB
//! (`cache_cache`, `initarray_cache`, `initarray_generic`, `initkmem_list3[]`,
//! `malloc_sizes[]`, `cache_chain` and its mutex, `g_cpucache_up`) plus this port's
//! per-instance settings and the fake clock. One block from the page provider
//! (`Owner::Metadata`) holds it, the `cache_cache` object and the boot list3s; `create` builds
//! it and runs the bootstrap (`bootstrap.rs`), `release_all_memory` gives every page back.
//!
//! Every other module adds the kernel functions of its part of `mm/slab.c` as methods of
//! `SlabGlobals` (`impl SlabGlobals` in cache.rs, fastpath.rs, refill.rs, …): in the kernel
//! they are free functions over these globals.
//!
//! Invariants: the fields outside cells and atomics are written only by `create` before the
//! instance is shared; `cache_chain` changes only under `cache_chain_mutex` (or during the
//! single-threaded bootstrap); the boot arrays and list3s are in use only until bootstrap
//! step 4/5 replaces them.

use crate::arraycache::{ArrayCache, ArrayCacheInit};
use crate::bootstrap::{CpuCacheUp, NUM_INIT_LIST_BLOCKS};
use crate::cache::{kmem_cache_layout, CpuSlot, KmemCache};
use crate::kmalloc::CacheSizes;
use crate::node::{KmemList3, List, ListGuard};
use crate::slabmgmt::align_up;
use crate::SlabSettings;
use common::api::SlabError;
use common::list::ListHead;
use common::provider::get_order;
use common::sizes::slab as sizes;
use common::sync::{ChainMutex, ChainMutexGuard};
use common::{Gfp, Owner, PageProvider, MAX_NUMNODES, NR_CPUS, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ptr::{addr_of_mut, null_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The per-instance "static" data (see the module documentation).
pub(crate) struct SlabGlobals {
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
    /// `settings.config`, beside the fields the free paths read.
    pub(crate) config: common::KernelConfig,
    /// `cache_from_obj` warnings of a `hardened` instance (counted, not printed).
    pub(crate) free_warnings: AtomicU64,
    /// `sysconf(_SC_NPROCESSORS_CONF)`: slots at or above it name no CPU a thread can run on.
    pub(crate) nprocs_conf: usize,
    /// Debug reports made by this instance (the `slab_errors` count, all caches).
    pub(crate) slab_errors: AtomicU64,
    pub(crate) g_cpucache_up: AtomicU8,
    /// Every state `g_cpucache_up` went through, in order (for tests and introspection).
    pub(crate) states_seen: [AtomicU8; 8],
    pub(crate) slab_early_init: AtomicBool,
    /// `cache_chain`. Linked into every cache's `next` and written whenever a cache is created
    /// or destroyed (chain mutex held), through pointers from [`Self::cache_chain_head`].
    pub(crate) cache_chain: UnsafeCell<ListHead>,
    pub(crate) cache_chain_mutex: ChainMutex,
    pub(crate) malloc_sizes: [CacheSizes; sizes::NR],
    pub(crate) jiffies: AtomicUsize,
    pub(crate) reap_node: [AtomicU16; NR_CPUS],
    pub(crate) reaper: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(crate) reaper_stop: AtomicBool,
    /// The boot head array of `cache_cache`; every CPU slot points at it during bootstrap and
    /// writes through that pointer (hence the `UnsafeCell`).
    pub(crate) initarray_cache: UnsafeCell<ArrayCacheInit>,
    /// The boot head array of the `INDEX_AC` cache (as `initarray_cache`).
    pub(crate) initarray_generic: UnsafeCell<ArrayCacheInit>,
    /// `initkmem_list3[]`: `NUM_INIT_LIST_BLOCKS × nr_nodes` list3s after the `cache_cache`
    /// object in the same block (a raw pointer from the block's base, so writes through it are
    /// not writes through `&self`).
    pub(crate) initkmem_list3: *mut KmemList3,
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
        let value = SlabGlobals {
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
            nprocs_conf: common::sys::nprocs_conf(),
            slab_errors: AtomicU64::new(0),
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
            initarray_cache: UnsafeCell::new(ArrayCacheInit::empty()),
            initarray_generic: UnsafeCell::new(ArrayCacheInit::empty()),
            initkmem_list3: base.wrapping_add(globals_size + cc_bytes).cast(),
            cache_cache: base.wrapping_add(globals_size).cast(),
            block_order: order,
        };
        // SAFETY: the block is fresh, zeroed, page-aligned and big enough for the globals, the
        // cache_cache object and the static list3s.
        unsafe {
            g.write(value);
            let cc = (*g).cache_cache;
            (*cc).array = cc.cast::<u8>().add(array_off).cast::<CpuSlot>();
            (*cc).nodelists = cc.cast::<u8>().add(nodelists_off).cast();
        }
        // SAFETY: called once, before the instance is shared.
        if let Err(e) = unsafe { (*g).kmem_cache_init() } {
            // A failed bootstrap leaves slabs behind: give every page back.
            // SAFETY: nobody else has seen the block; it is not used after.
            unsafe {
                (*g).release_all_memory();
                core::ptr::drop_in_place(g);
            }
            // SAFETY: the block, unused now.
            let _ = unsafe { provider.free_pages(page, order) };
            return Err(e);
        }
        // SAFETY: g is the block's base, non-null.
        Ok(unsafe { NonNull::new_unchecked(g) })
    }
}

impl SlabGlobals {
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
    pub(crate) fn find_cache_by_name(&self, name: &str) -> Option<&KmemCache> {
        // SAFETY: the chain is walked under the chain mutex held by the caller.
        unsafe { ListHead::iter(self.cache_chain_head()) }
            // SAFETY: chain links of live caches.
            .map(|l| unsafe { self.cache_of_link(l) })
            .find(|c| c.name.as_str() == name)
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
        // SAFETY: a local head, not moved while pages are on it.
        unsafe { ListHead::init(head) };
        // SAFETY: exclusive access (contract).
        if unsafe { (*self.cache_chain_head()).next.is_null() } {
            return;
        }
        let mut seen_l3 = [null_mut::<KmemList3>(); 64];
        let mut nseen = 0;
        // SAFETY: exclusive access: the chain does not change.
        for link in unsafe { ListHead::iter(self.cache_chain_head()) } {
            // SAFETY: a chain link.
            let cachep = unsafe { self.cache_of_link(link) };
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                if l3.is_null() || (nseen < 64 && seen_l3[..nseen].contains(&l3)) {
                    continue;
                }
                if nseen < 64 {
                    seen_l3[nseen] = l3;
                    nseen += 1;
                }
                // SAFETY: a live list3; exclusive access.
                unsafe { self.collect_slab_pages(l3, head) };
            }
        }
        // SAFETY: our private list.
        while let Some(link) = unsafe { ListHead::first(head) } {
            // SAFETY: a slab head page collected above, on our private list only.
            unsafe {
                ListHead::del(link);
                let page = NonNull::new_unchecked(common::Page::from_lru(link));
                let order = page.as_ref().order as usize;
                page.as_ref()
                    .clear_flags(common::page::flags::PG_SLAB | common::page::flags::PG_OFF_SLAB);
                let _ = self.provider.free_pages(page, order);
            }
        }
    }

    /// Links the head page of every slab on `l3`'s lists onto `head` (through `Page::lru`).
    ///
    /// # Safety
    /// `l3` live and nobody uses the instance; `head` a private list.
    unsafe fn collect_slab_pages(&self, l3: *mut KmemList3, head: *mut ListHead) {
        // SAFETY: nobody else uses the instance, so taking the (free) lock is only a formality
        // that gives the list walk its proof.
        let g = unsafe { ListGuard::lock(l3) };
        for list in [List::Full, List::Partial, List::Free] {
            // SAFETY: reading a list head's link (null: a list never initialised).
            if unsafe { (*g.head(list)).next.is_null() } {
                continue;
            }
            for s in g.slabs(list) {
                if let Some(page) = self.provider.virt_to_page(s.mem_start() as usize) {
                    // SAFETY: the page's lru link is unused while it is a slab page.
                    unsafe { ListHead::add(common::Page::lru_of(page.as_ptr()), head) };
                }
            }
        }
    }

    /// The cache of `kmem_cache` objects.
    pub(crate) fn cache_cache(&self) -> &KmemCache {
        // SAFETY: set up by the bootstrap inside this block; lives as long as the instance.
        unsafe { &*self.cache_cache }
    }

    /// `cachep->array[cpu]`.
    #[inline(always)]
    pub(crate) fn cpu_slot<'a>(&self, cachep: &'a KmemCache, cpu: usize) -> &'a CpuSlot {
        assert!(cpu < self.nr_cpus);
        // SAFETY: cpu < nr_cpus, the length of every cache's array[].
        unsafe { cachep.slot_unchecked(cpu) }
    }

    /// `cachep->nodelists[node]` (null only while the cache is being set up).
    #[inline(always)]
    pub(crate) fn l3(&self, cachep: &KmemCache, node: usize) -> *mut KmemList3 {
        assert!(node < self.nr_nodes);
        // SAFETY: node < nr_nodes, the length of every cache's nodelists[].
        unsafe { cachep.nodelist_unchecked(node) }
    }

    /// `spin_lock(&cachep->nodelists[node]->list_lock)`.
    #[inline]
    pub(crate) fn lock_list<'a>(&self, cachep: &'a KmemCache, node: usize) -> ListGuard<'a> {
        let l3 = self.l3(cachep, node);
        assert!(!l3.is_null());
        // SAFETY: a set-up list3 of a live cache lives as long as the cache.
        unsafe { ListGuard::lock(l3) }
    }

    /// The `kmem_cache` whose chain link is `link`.
    ///
    /// # Safety
    /// `link` is on the cache chain (chain mutex held, or bootstrap).
    pub(crate) unsafe fn cache_of_link(&self, link: *mut ListHead) -> &KmemCache {
        // SAFETY: every chain link is the `next` of a live kmem_cache (contract).
        unsafe { &*crate::cache_from_chain(link) }
    }

    /// Every cache on the chain, in chain order.
    pub(crate) fn caches<'a>(
        &'a self,
        _chain: &'a ChainMutexGuard<'_>,
    ) -> impl Iterator<Item = &'a KmemCache> + 'a {
        // SAFETY: the chain mutex is held (the guard) while the iterator lives.
        unsafe { ListHead::iter(self.cache_chain_head()) }.map(|l| unsafe { self.cache_of_link(l) })
    }
}
