//! # slab-classic — Linux 2.6.32 SLAB on the slabworks page provider
//!
//! A port of `mm/slab.c` as Linux 2.6.32 shipped it: `kmem_cache` with per-CPU `array_cache`s,
//! per-node `kmem_list3` (partial/full/free lists, shared array, alien arrays), slab
//! descriptors with a `kmem_bufctl_t` index chain, colouring, the `enable_cpucache` tunables,
//! `cache_reap`, the kmalloc caches `size-32` … `size-4194304` and the six-step
//! `kmem_cache_init` bootstrap. Functions keep the kernel's names; a name the kernel does not
//! have (`cpu_cache_alloc`, `cache_alloc_locked`, …) is ours and says what it does.
//! Design history and measurements: `docs/design-notes.md` ("slab-classic").
//!
//! ## Module map
//! Each line uses the lines below it, except where `mm/slab.c` itself loops back:
//! - the allocator allocates its own metadata: `cache.rs` (`kmem_cache` objects from
//!   `cache_cache`, array caches, list3s, alien tables), `bootstrap.rs` and `refill.rs`
//!   (off-slab descriptors from `slabp_cache`) call back up into `kmalloc.rs` and
//!   `fastpath.rs`, and `free_block` (`node.rs`) ends in `slab_destroy` (`refill.rs`), which
//!   frees an off-slab descriptor the same way;
//! - the `CONFIG_DEBUG_SLAB` hooks (`debug.rs`) are called from inside the paths they check
//!   (`fastpath.rs`, `refill.rs`, `numa.rs`, `node.rs`), and a checked debug free continues in
//!   `fastpath.rs` (2.6.32's `__cache_free` with `cache_free_debugcheck` inside);
//! - `instance.rs` is the data every module's methods hang on (the kernel's file-scope
//!   statics; its `create` runs the bootstrap and resolves the fast path), and the
//!   `KmemCache` type of `cache.rs` is every function's first argument, as in the kernel.
//! ```text
//!  lib.rs        Slab: the SlabAllocator API, handle checks, checked frees, introspection,
//!                settings, slabinfo, the reaper thread
//!  validate.rs   s_show's accounting, validate()        queues.rs  bytes held by the arrays
//!  bootstrap.rs  kmem_cache_init: cache_cache, INDEX_AC, INDEX_L3, g_cpucache_up
//!  cache.rs      kmem_cache + CpuSlot, kmem_cache_create, cache_estimate, do_tune_cpucache,
//!                alloc_kmemlist, __cache_shrink, kmem_cache_destroy
//!  kmalloc.rs    malloc_sizes[], __find_general_cachep, metadata kmalloc/kfree, object lookup
//!  fastpath.rs   SlotGuard (local_irq_save), ____cache_alloc, __cache_free, rseq entries
//!  debug.rs      CONFIG_DEBUG_SLAB around the fast path: checks, poison, red zones, reports
//!  reap.rs       cache_reap, drain_array (fake clock)
//!  numa.rs       ____cache_alloc_node, fallback_alloc, alien caches
//!  refill.rs     cache_alloc_refill, cache_flusharray, cache_grow, slab_destroy, virt_to_slab
//!  node.rs       kmem_list3 + ListGuard (list_lock), free_block, drain_freelist
//!  slabmgmt.rs   struct slab + SlabRef, bufctl chain, obj_to_index (reciprocal divide)
//!  arraycache.rs struct array_cache + ArrayRef, transfer_objects
//!  instance.rs   SlabGlobals: the "static" data (cache_cache, malloc_sizes[], cache_chain and
//!                its mutex, boot arrays and list3s), settings, clock; cpu_slot, lock_list
//!  stats.rs      STATS counters (StatItem)               sync.rs    RawLock (common's spinlock)
//!  common        PageProvider (buddy per node) ─► Page (struct page), ListHead, LocalLock, rseq
//!  (tests)       model.rs: every schedule of the rseq array protocol
//! ```
//!
//! ## Call tree, fast to slow
//! ```text
//! kmem_cache_alloc / kmalloc ─► cache_alloc_internal (__cache_alloc) ─► cpu_cache_alloc
//!     │   rseq mode: array_pop on this CPU's array (no lock)              ← rseq fast path
//!     │   else / empty / busy ─► cache_alloc_locked (SlotGuard: slot lock + busy mark)
//!     ├─ ____cache_alloc: ac->avail ? entry[--avail]                       ← fast path
//!     ├─ cache_alloc_refill (ListGuard)                                    ← slow path
//!     │    ├─ transfer_objects(shared → ac)
//!     │    ├─ slabs_partial, then slabs_free: slab_get_obj × batchcount
//!     │    └─ cache_grow ─► kmem_getpages ─► PageProvider::alloc_pages
//!     │                  └► alloc_slabmgmt (off-slab: kmem_cache_alloc_node(slabp_cache))
//!     └─ ____cache_alloc_node ─► cache_grow(THISNODE) ─► fallback_alloc (other nodes)
//!     then a debug cache ─► cache_alloc_debug_after (#[cold])
//! kmem_cache_alloc_node / kmalloc_node ─► cache_alloc_node_internal ─► cache_alloc_node_locked
//!     (__cache_alloc_node: the local array, or ____cache_alloc_node)
//! kmem_cache_free ─► check_object_of / kfree ─► lookup_object (struct page checks)
//!     ─► cache_free_internal: a debug cache ─► cache_free_debug (#[cold]) ─► cpu_cache_free
//!     ─► cpu_cache_free: rseq mode: array_push (no lock)                   ← rseq fast path
//!     ─► else / full / busy / remote ─► cache_free_locked (SlotGuard) ─► __cache_free
//!     ├─ cache_free_alien (object of another node) ─► alien array ─► __drain_alien_cache
//!     ├─ ac->avail < limit ? entry[avail++] = obj                          ← fast path
//!     └─ cache_flusharray (ListGuard): shared array, else free_block ─► slab_destroy
//! cache_reap(cpu) ─► reap_alien, drain_array(cpu), [every 4 s] drain_shared, drain_freelist
//! ```
//!
//! ## Lock order
//! 1. `cache_chain_mutex` (`SlabGlobals`): the cache chain, cache creation/destruction,
//!    tunables, `cache_reap` (trylock), `validate`.
//! 2. CPU slot lock (`CpuSlot::lock`, a `LocalLock`, the `local_irq_save` stand-in; held as a
//!    `fastpath::SlotGuard`): that CPU's `array_cache` pointer and contents (`avail`,
//!    `touched`, `entry[]`) and its `busy` mark. In rseq mode the holder also sets `busy` so
//!    the lock-free rseq push/pop on that CPU stays out; fastpath.rs gives the argument.
//! 3. Alien array lock (`array_cache.lock` of `l3->alien[n]`): that alien array.
//! 4. Node `list_lock` (`kmem_list3.list_lock`, held as a `node::ListGuard`): the three slab
//!    lists, every `struct slab` on them (`inuse`, `free`, bufctls), `free_objects`,
//!    `free_limit`, `colour_next`, `next_reap`, `free_touched`, and the node's `shared` array.
//!
//! Functions that need a lock take its guard (`&SlotGuard`, `&ListGuard`) or a view that only
//! a guard hands out (`ArrayRef`, `SlabRef`). A list_lock may be held while freeing an
//! off-slab descriptor into its `slabp_cache` (`slab_destroy` from `free_block`), which takes
//! that *other* cache's locks 2–4; as in the kernel, a `slabp_cache` is an on-slab kmalloc
//! cache whose paths never take another cache's locks, so no cycle exists. The page
//! provider's node locks are leaves. Lock-free: the rseq array push/pop, reads of immutable
//! cache fields, the tunables and `magic` (atomics), the `alien` table pointer (set once) and
//! the statistics counters.
//!
//! ## Invariants
//! - Slab lists (`node.rs`): a slab on `slabs_full` has `inuse == num`, on `slabs_partial`
//!   `0 < inuse < num`, on `slabs_free` `inuse == 0`; `free_objects` = Σ (num − inuse).
//! - Free chain (`slabmgmt.rs`): from `free`, exactly `num − inuse` distinct indices below `num`;
//!   a handed-out object's bufctl holds `BUFCTL_FREE`.
//! - Arrays (`arraycache.rs`): `avail <= limit`; every entry is a handed-out object of the
//!   array's cache and node.
//! - Debug caches (`debug.rs`): free objects have inactive red zones and intact poison,
//!   allocated ones active red zones.
//!
//! `validate()` checks all of them. All metadata comes from the page provider: one block for
//! the "static" data (`instance.rs`), everything else from the allocator's own caches; nothing
//! on an allocation or free path touches the Rust heap (`validate`, `slabinfo` text and the
//! reaper thread do, with no lock held).
//!
//! ## Deviations from 2.6.32
//! - `local_irq_save` → a lock per CPU slot (threads migrate), with an rseq fast path in front
//!   ([`FastPath`]); every CPU gets its arrays at boot (no hotplug, no `cpuup_prepare`).
//! - Slab marks live on the head page (`PG_SLAB`, `slab_cache`, `private` = descriptor, `spare`
//!   = offset of `s_mem`): frees are checked from `struct page` alone, per
//!   [`SlabSettings::config`] (`kernel` trusts like 2.6.32, `hardened` is 6.4's
//!   `cache_from_obj`, `checked` the default).
//! - Always on: the top-of-array double-free check (6.4 `__free_one`) and the `BUFCTL_FREE`
//!   marker of debug `slab_put_obj`; debugging reports instead of `BUG()`ing (`debug.rs`).
//! - No `alternate_node_alloc`, DMA caches or RCU (`SLAB_DESTROY_BY_RCU` slabs freed at once);
//!   time is a per-instance `jiffies` (`HZ` = 1000); bad tunables and duplicate names are
//!   errors, not ignored.

// The kernel's formulas are kept literally ((limit + 4) / 5, not div_ceil) so they can be
// compared with mm/slab.c; kernel functions are methods of the instance even where they only
// need the cache.
#![allow(
    clippy::manual_div_ceil,
    clippy::unused_self,
    clippy::single_match_else
)]

mod arraycache;
mod bootstrap;
mod cache;
mod census;
mod debug;
mod fastpath;
mod instance;
mod kmalloc;
#[cfg(test)]
mod model;
mod node;
mod numa;
mod queues;
mod reap;
mod refill;
mod slabmgmt;
mod stats;
mod sync;
mod validate;

use crate::cache::{KmemCache, CACHE_MAGIC};
use crate::instance::SlabGlobals;
use common::api::{
    CacheHandle, Ctor, KernelConfig, MemoryUsage, SlabAllocator, SlabError, SlabFlags, SlabInfo,
};
use common::list::ListHead;
use common::{Gfp, Owner, PageProvider};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

pub use crate::bootstrap::CpuCacheUp;
pub use crate::cache::{
    cache_estimate, calculate_slab_order, cpucache_tunables, free_limit, kmem_cache_geometry,
    Geometry,
};
pub use crate::cache::{
    forced_debug_flags, BREAK_GFP_ORDER_HI, BREAK_GFP_ORDER_LO, KMALLOC_MAX_ORDER,
};
pub use crate::census::QueueCensus;
pub use crate::debug::{
    DebugAction, DebugErrorKind, DebugReport, DEBUG_ENV, POISON_END, POISON_FREE, POISON_INUSE,
    RED_ACTIVE, RED_INACTIVE,
};
pub use crate::kmalloc::KMALLOC_MAX_SIZE;
pub use crate::queues::{QueueBytes, QueueMemory};
pub use crate::reap::{drain_array_count, reap_freelist_count, time_after, HZ, REAPTIMEOUT_CPUC};
pub use crate::stats::{SlabStats, StatItem, STATS_HEADER};

/// The `kmem_cache` whose chain link is `link`.
pub(crate) fn cache_from_chain(link: *mut ListHead) -> *mut KmemCache {
    link.cast::<u8>()
        .wrapping_sub(core::mem::offset_of!(KmemCache, next))
        .cast::<KmemCache>()
}

/// Per-CPU array tunables (`limit`, `batchcount`, `shared`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunables {
    /// Array capacity.
    pub limit: u32,
    /// Objects moved per refill/flush.
    pub batchcount: u32,
    /// Shared array factor (capacity `shared × batchcount`; 0 = none).
    pub shared: u32,
}

impl Tunables {
    /// Checks `limit ≥ 1`, `1 ≤ batchcount ≤ limit` (what `slabinfo_write` requires).
    pub fn check(self) -> Result<Self, TuneError> {
        if self.limit < 1 {
            return Err(TuneError::BadValue("limit must be at least 1"));
        }
        if self.batchcount < 1 {
            return Err(TuneError::BadValue("batchcount must be at least 1"));
        }
        if self.batchcount > self.limit {
            return Err(TuneError::BadValue("batchcount must not exceed limit"));
        }
        if self.limit > 1 << 20 || self.shared > 1 << 10 {
            return Err(TuneError::BadValue("limit or shared too large"));
        }
        Ok(self)
    }
}

/// Settings of one SLAB instance.
#[derive(Clone, Copy, Debug)]
pub struct SlabSettings {
    /// Keep the `STATS` counters (slabinfo `(statistics)` columns, `for_each_stat`).
    pub stats: bool,
    /// Override `slab_break_gfp_order` (default: 1 when the provider has over 32 MiB, else 0).
    pub slab_break_gfp_order: Option<usize>,
    /// Override the `enable_cpucache` table for every cache.
    pub tunables: Option<Tunables>,
    /// Alien caches on multi-node machines (`noaliencache` turns them off).
    pub use_alien_caches: bool,
    /// Whether `cache_reap` does anything.
    pub reap: bool,
    /// Start the background reaper thread at construction.
    pub reaper_thread: bool,
    /// Debug flags for every cache (`RED_ZONE`, `POISON`, `STORE_USER`, `CONSISTENCY_CHECKS`),
    /// kmalloc caches included; red zone and user word are still dropped for alignments above
    /// 8, poison for `TYPESAFE_BY_RCU` caches.
    pub debug: SlabFlags,
    /// `CONFIG_DEBUG_SLAB`'s `FORCED_DEBUG`: red zone + user word for every cache below 4096
    /// bytes (or where the 24 bytes do not cross a power of two), poison unless RCU.
    pub forced_debug: bool,
    /// `init_on_alloc`: zero every object on allocation (not caches with a constructor,
    /// `TYPESAFE_BY_RCU` or poison).
    pub init_on_alloc: bool,
    /// `init_on_free`: zero every object on free (same exceptions).
    pub init_on_free: bool,
    /// After a debug report: continue (default) or abort the process.
    pub on_error: DebugAction,
    /// Called with every debug report (default: print it on stderr in the kernel's words).
    /// May run with a node lock held: it must not allocate from this instance.
    pub report: Option<fn(&DebugReport)>,
    /// Which per-CPU fast path to use; `SLAB_FASTPATH=rseq|lock` overrides `Auto` only (an
    /// explicit setting wins).
    pub fastpath: FastPath,
    /// The kernel configuration of the free paths (default `Checked`): see
    /// "Kernel configurations" above and [`common::KernelConfig`].
    pub config: KernelConfig,
}

/// The per-CPU array fast path (`fastpath.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FastPath {
    /// rseq when `common::rseq` is available on the creating thread, the membarrier fence
    /// works and every CPU id has its own slot; else the lock. The default.
    #[default]
    Auto,
    /// rseq push/pop (falls back to the lock where rseq is not available).
    Rseq,
    /// Every array use under the CPU slot's `LocalLock` (2.6.32's `local_irq_save`).
    Lock,
}

impl PartialEq for SlabSettings {
    /// Field by field; the report callbacks compare by address.
    fn eq(&self, o: &Self) -> bool {
        self.stats == o.stats
            && self.slab_break_gfp_order == o.slab_break_gfp_order
            && self.tunables == o.tunables
            && self.use_alien_caches == o.use_alien_caches
            && self.reap == o.reap
            && self.reaper_thread == o.reaper_thread
            && self.fastpath == o.fastpath
            && self.config == o.config
            && self.debug == o.debug
            && self.forced_debug == o.forced_debug
            && self.init_on_alloc == o.init_on_alloc
            && self.init_on_free == o.init_on_free
            && self.on_error == o.on_error
            && self.report.map(|f| f as usize) == o.report.map(|f| f as usize)
    }
}

impl Eq for SlabSettings {}

impl Default for SlabSettings {
    fn default() -> Self {
        Self {
            stats: false,
            slab_break_gfp_order: None,
            tunables: None,
            use_alien_caches: true,
            reap: true,
            reaper_thread: false,
            debug: SlabFlags::NONE,
            forced_debug: false,
            init_on_alloc: false,
            init_on_free: false,
            on_error: DebugAction::Continue,
            report: None,
            fastpath: FastPath::Auto,
            config: KernelConfig::Checked,
        }
    }
}

/// Why a tunables write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TuneError {
    /// Not `"<name> <limit> <batchcount> <shared>"` (or longer than 128 bytes).
    Parse,
    /// No cache has that name.
    NoSuchCache,
    /// A value the kernel would silently ignore.
    BadValue(&'static str),
    /// Out of memory for the new arrays.
    NoMemory,
    /// A handle of another instance or of a destroyed cache.
    ForeignCache,
}

impl fmt::Display for TuneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TuneError::Parse => write!(f, "expected \"<name> <limit> <batchcount> <shared>\""),
            TuneError::NoSuchCache => write!(f, "no cache of that name"),
            TuneError::BadValue(s) => write!(f, "bad tunable: {s}"),
            TuneError::NoMemory => write!(f, "out of memory for the new arrays"),
            TuneError::ForeignCache => write!(f, "cache handle of another instance"),
        }
    }
}

impl std::error::Error for TuneError {}

/// Geometry and tunables of a cache, as created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheGeometry {
    /// `buffer_size`.
    pub buffer_size: usize,
    /// Objects per slab.
    pub num: usize,
    /// Slab order.
    pub gfporder: usize,
    /// Number of colours.
    pub colour: usize,
    /// Colour step.
    pub colour_off: usize,
    /// Descriptor off-slab.
    pub off_slab: bool,
    /// Descriptor size.
    pub slab_size: usize,
    /// Tunables in force.
    pub tunables: Tunables,
}

/// A snapshot of one CPU's array (tests and introspection).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayState {
    /// Objects held.
    pub avail: u32,
    /// Capacity.
    pub limit: u32,
    /// Batch.
    pub batchcount: u32,
    /// Touched flag.
    pub touched: bool,
}

/// A snapshot of one node's `kmem_list3`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeState {
    /// Slabs on `slabs_full`.
    pub full: usize,
    /// Slabs on `slabs_partial`.
    pub partial: usize,
    /// Slabs on `slabs_free`.
    pub free: usize,
    /// `free_objects`.
    pub free_objects: usize,
    /// `free_limit`.
    pub free_limit: usize,
    /// Objects in the shared array.
    pub shared_avail: usize,
    /// Capacity of the shared array (0 without one).
    pub shared_limit: usize,
    /// Objects in this node's alien arrays, summed.
    pub alien_avail: usize,
    /// `colour_next`.
    pub colour_next: usize,
    /// `free_touched`.
    pub free_touched: bool,
    /// `next_reap`.
    pub next_reap: usize,
}

/// Where the debug words of a cache's objects lie, relative to the object as the caller sees
/// it (see [`debug`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugLayout {
    /// The debug flags in force (after the alignment rule).
    pub flags: SlabFlags,
    /// `init_on_alloc` applies.
    pub init_on_alloc: bool,
    /// `init_on_free` applies.
    pub init_on_free: bool,
    /// `obj_offset`.
    pub obj_offset: usize,
    /// `obj_size` (what `ksize` returns for a debug cache).
    pub obj_size: usize,
    /// `buffer_size`.
    pub buffer_size: usize,
    /// Offset of red zone word 1 (−8), if red-zoned.
    pub redzone1: Option<isize>,
    /// Offset of red zone word 2, if red-zoned.
    pub redzone2: Option<isize>,
    /// Offset of the last-caller word, with `STORE_USER`.
    pub userword: Option<isize>,
}

/// One SLAB allocator instance (Linux 2.6.32 `mm/slab.c`) on a page provider.
pub struct Slab {
    g: NonNull<SlabGlobals>,
    provider: PageProvider,
}

// SAFETY: every shared structure is protected by the locks listed in the crate documentation.
unsafe impl Send for Slab {}
// SAFETY: as Send.
unsafe impl Sync for Slab {}

struct GlobalsPtr(NonNull<SlabGlobals>);
// SAFETY: the reaper thread only uses the globals until `stop_reaper` joins it.
unsafe impl Send for GlobalsPtr {}

impl Slab {
    /// Builds an instance: bootstraps `cache_cache` and every `size-N` cache from `provider`
    /// (about 20 pages on one node, 34 on two, 63 on four, with 2 CPUs). Uses no Rust heap, so
    /// it can back a `GlobalSlab`. `Err(NoMemory)` if the provider cannot hold the bootstrap
    /// (every page is given back); `Err(InvalidArgument(why))` for invalid `settings.tunables`
    /// (the rule [`Tunables::check`] found broken).
    pub fn new(provider: &PageProvider, settings: SlabSettings) -> Result<Slab, SlabError> {
        if let Some(t) = settings.tunables {
            t.check().map_err(|e| match e {
                TuneError::BadValue(why) => SlabError::InvalidArgument(why),
                _ => SlabError::InvalidArgument("invalid tunables"),
            })?;
        }
        let g = SlabGlobals::create(provider, settings)?;
        let s = Slab {
            g,
            provider: provider.clone(),
        };
        if settings.reaper_thread {
            s.start_reaper();
        }
        Ok(s)
    }

    /// The per-CPU fast path this instance uses ([`FastPath::Rseq`] or [`FastPath::Lock`];
    /// `Auto` and the `SLAB_FASTPATH` override are resolved at creation).
    pub fn fastpath(&self) -> FastPath {
        if self.g().rseq {
            FastPath::Rseq
        } else {
            FastPath::Lock
        }
    }

    #[inline(always)]
    fn g(&self) -> &SlabGlobals {
        // SAFETY: the globals live as long as the Slab.
        unsafe { self.g.as_ref() }
    }

    /// The bytes SLAB's queues (per-CPU, shared and alien arrays) and per-CPU/per-node
    /// structures hold over every cache, with what the arrays could hold and hold now
    /// ([`queues`]).
    pub fn queue_memory(&self) -> QueueMemory {
        self.g().queue_memory()
    }

    /// The settings in force.
    pub fn settings(&self) -> SlabSettings {
        self.g().settings
    }

    /// `slab_break_gfp_order` in force.
    pub fn slab_break_gfp_order(&self) -> usize {
        self.g().slab_break_gfp_order
    }

    /// The `kmem_cache` a handle of this instance names: a `kmem_cache` object in provider
    /// memory, which stays mapped for the instance's life (a destroyed one reads magic 0).
    #[inline(always)]
    fn cache_of_handle(&self, h: CacheHandle) -> Result<&KmemCache, SlabError> {
        if h.instance() != self.g().instance {
            return Err(SlabError::ForeignCache);
        }
        // SAFETY: a handle of this instance names a kmem_cache object (live or destroyed) in
        // this instance's provider memory, which stays mapped while the instance lives.
        Ok(unsafe { h.ptr().cast::<KmemCache>().as_ref() })
    }

    #[inline(always)]
    fn cache(&self, h: CacheHandle) -> Result<&KmemCache, SlabError> {
        let c = self.cache_of_handle(h)?;
        if !cache::magic_ok(c.magic()) {
            return Err(SlabError::ForeignCache);
        }
        Ok(c)
    }

    /// The handle check of the fast paths: `Ok((c, true))` for a live non-debug cache,
    /// `Ok((c, false))` for a live debug cache (its own magic, so one compare decides both).
    #[inline(always)]
    fn cache_fast(&self, h: CacheHandle) -> Result<(&KmemCache, bool), SlabError> {
        let c = self.cache_of_handle(h)?;
        let magic = c.magic();
        if magic == CACHE_MAGIC {
            return Ok((c, true));
        }
        if magic == cache::CACHE_MAGIC_DEBUG {
            return Ok((c, false));
        }
        Err(SlabError::ForeignCache)
    }

    /// `kmem_cache_alloc` of a debug cache.
    #[cold]
    #[inline(never)]
    fn kmem_cache_alloc_debug(
        &self,
        c: &KmemCache,
        gfp: Gfp,
        caller: &'static core::panic::Location<'static>,
    ) -> Option<NonNull<u8>> {
        let g = self.g();
        let p = NonNull::new(g.cpu_cache_alloc(c, gfp))?;
        g.cache_alloc_debug_after(c, gfp, p.as_ptr(), caller)
    }

    /// `kmem_cache_free` of a debug cache: the checks (reported), then the debug free.
    ///
    /// # Safety
    /// As `kmem_cache_free`.
    #[cold]
    #[inline(never)]
    unsafe fn kmem_cache_free_debug(
        &self,
        c: &KmemCache,
        obj: *mut u8,
        caller: &'static core::panic::Location<'static>,
    ) -> Result<(), SlabError> {
        let g = self.g();
        if let Err(e) = g.check_object_of(c, obj) {
            g.debug_bad_free(Some(c), obj, e);
            return Err(e);
        }
        // SAFETY: a checked object start of this cache; the caller gives it up.
        if unsafe { g.cache_free_debug(c, obj, caller) } {
            Ok(())
        } else {
            Err(SlabError::DoubleFree(obj as usize))
        }
    }

    /// `kmem_cache_free` in the `kernel` configuration: 2.6.32's `__cache_free(cachep, objp)`
    /// with the handle's cache, trusted (a debug cache still takes its checking path).
    ///
    /// # Safety
    /// `cache` is a live cache of this instance and `obj` a live object of it, not used after.
    #[inline(always)]
    #[track_caller]
    unsafe fn kmem_cache_free_kernel(
        &self,
        cache: CacheHandle,
        obj: NonNull<u8>,
    ) -> Result<(), SlabError> {
        // SAFETY: the caller's promise: a live cache of this instance.
        let c = unsafe { cache.ptr().cast::<KmemCache>().as_ref() };
        if c.magic() != CACHE_MAGIC {
            // SAFETY: forwarded contract.
            return unsafe {
                self.kmem_cache_free_debug(c, obj.as_ptr(), core::panic::Location::caller())
            };
        }
        // SAFETY: the caller's promise.
        if unsafe { self.g().cpu_cache_free(c, obj.as_ptr()) } {
            Ok(())
        } else {
            Err(SlabError::DoubleFree(obj.as_ptr() as usize))
        }
    }

    /// `kmem_cache_free` in the `hardened` configuration: 6.4's `cache_from_obj` (mm/slab.h,
    /// also SLAB's under `CONFIG_SLAB_FREELIST_HARDENED`): the head page's cache compared with
    /// the handle's; on a mismatch a counted warning and the free goes to the real cache; not a
    /// slab page of ours: a warning and nothing freed. 2.6.32 had no such check.
    ///
    /// # Safety
    /// `obj` is a live object start (of whichever cache), not used after.
    #[inline(always)]
    #[track_caller]
    unsafe fn kmem_cache_free_hardened(
        &self,
        cache: CacheHandle,
        obj: NonNull<u8>,
    ) -> Result<(), SlabError> {
        let g = self.g();
        let named = self.cache_of_handle(cache)?;
        let page = self.provider.virt_to_head_page(obj.as_ptr() as usize);
        let same = page.is_some_and(|pg| {
            // SAFETY: a descriptor of the provider's mem_map.
            let p = unsafe { pg.as_ref() };
            p.cache() == core::ptr::from_ref(named) as usize
                && p.test_flags(common::page::flags::PG_SLAB)
        });
        // The caller promises a live cache of ours when the page said so; the mismatch path
        // checked the real one.
        let c = if same {
            named
        } else {
            self.hardened_mismatch(obj.as_ptr())?
        };
        if c.magic() != CACHE_MAGIC {
            // SAFETY: forwarded contract; c is the cache of obj's slab.
            return unsafe {
                self.kmem_cache_free_debug(c, obj.as_ptr(), core::panic::Location::caller())
            };
        }
        // SAFETY: forwarded contract; c is the cache of obj's slab.
        if unsafe { g.cpu_cache_free(c, obj.as_ptr()) } {
            Ok(())
        } else {
            Err(SlabError::DoubleFree(obj.as_ptr() as usize))
        }
    }

    /// The `hardened` mismatch (cold): counts the warning, returns the real cache of `obj` if
    /// it is on a slab of a live cache of this instance, else the error (nothing is freed).
    #[cold]
    #[inline(never)]
    fn hardened_mismatch(&self, obj: *mut u8) -> Result<&KmemCache, SlabError> {
        let g = self.g();
        g.free_warnings
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        g.lookup_object(obj)
    }

    /// `kfree` in the `kernel` and `hardened` configurations: 2.6.32's `virt_to_cache(objp)`,
    /// trusted (6.4's SLAB `kfree` has no `cache_from_obj` either).
    ///
    /// # Safety
    /// `ptr` is a live kmalloc object of this instance, not used after.
    #[inline(always)]
    #[track_caller]
    unsafe fn kfree_kernel(&self, ptr: *mut u8) -> Result<(), SlabError> {
        let page = self
            .provider
            .virt_to_head_page(ptr as usize)
            .ok_or(SlabError::NotOurs(ptr as usize))?;
        // SAFETY: the caller's promise: the head page of a live object names its live cache.
        let c = unsafe { &*(page.as_ref().cache() as *const KmemCache) };
        // SAFETY: as above; cache_free_internal takes debug caches to their checking path.
        if unsafe { self.g().cache_free_internal(c, ptr) } {
            Ok(())
        } else {
            Err(SlabError::DoubleFree(ptr as usize))
        }
    }

    fn handle(&self, c: &KmemCache) -> CacheHandle {
        CacheHandle::new(NonNull::from(c).cast(), self.g().instance)
    }

    /// The handle of the kmalloc cache serving `size` (`None` for 0 or above 4 MiB).
    pub fn kmalloc_cache(&self, size: usize) -> Option<CacheHandle> {
        self.g().find_general_cachep(size).map(|c| self.handle(c))
    }

    /// The handle of the cache named `name`.
    pub fn find_cache(&self, name: &str) -> Option<CacheHandle> {
        let g = self.g();
        let _chain = g.chain_lock();
        g.find_cache_by_name(name).map(|c| self.handle(c))
    }

    /// Geometry and tunables of a cache.
    pub fn cache_geometry(&self, h: CacheHandle) -> Result<CacheGeometry, SlabError> {
        let c = self.cache(h)?;
        Ok(CacheGeometry {
            buffer_size: c.buffer_size,
            num: c.num as usize,
            gfporder: c.gfporder as usize,
            colour: c.colour,
            colour_off: c.colour_off,
            off_slab: c.off_slab(),
            slab_size: c.slab_size,
            tunables: Tunables {
                limit: c.limit.load(Ordering::Relaxed),
                batchcount: c.batchcount.load(Ordering::Relaxed),
                shared: c.shared.load(Ordering::Relaxed),
            },
        })
    }

    /// A snapshot of `cpu`'s array of a cache.
    pub fn array_state(&self, h: CacheHandle, cpu: usize) -> Result<ArrayState, SlabError> {
        let c = self.cache(h)?;
        let g = self.g();
        let slot = g.slot_lock(c, cpu % g.nr_cpus);
        let ac = slot.ac();
        Ok(ArrayState {
            avail: ac.avail(),
            limit: ac.limit(),
            batchcount: ac.batchcount(),
            touched: ac.touched(),
        })
    }

    /// A snapshot of a cache's `kmem_list3` of `node`; `NoSuchNode` for a node index at or
    /// above [`Self::nr_nodes`].
    pub fn node_state(&self, h: CacheHandle, node: usize) -> Result<NodeState, SlabError> {
        let c = self.cache(h)?;
        let g = self.g();
        if node >= g.nr_nodes {
            return Err(SlabError::NoSuchNode(node));
        }
        let mut alien_avail = 0;
        g.for_each_alien(c, node, |ac, _| alien_avail += ac.avail() as usize);
        let l3 = g.lock_list(c, node);
        let shared = l3.shared();
        Ok(NodeState {
            full: l3.count(node::List::Full),
            partial: l3.count(node::List::Partial),
            free: l3.count(node::List::Free),
            free_objects: l3.free_objects(),
            free_limit: l3.free_limit(),
            shared_avail: shared.map_or(0, |sh| sh.avail() as usize),
            shared_limit: shared.map_or(0, |sh| sh.limit() as usize),
            alien_avail,
            colour_next: l3.colour_next(),
            free_touched: l3.free_touched(),
            next_reap: l3.next_reap(),
        })
    }

    /// Debug reports made by this instance so far (every cache; the kernel's `slab_errors`,
    /// as slub names it too).
    pub fn slab_errors(&self) -> u64 {
        self.g().slab_errors.load(Ordering::Relaxed)
    }

    /// Debug reports made about one cache so far (its `slab_errors`; slub's `cache_errors`).
    pub fn cache_errors(&self, h: CacheHandle) -> Result<u64, SlabError> {
        Ok(self.cache(h)?.debug_errors.load(Ordering::Relaxed))
    }

    /// The debug layout of a cache, as `kmem_cache_create` settled it.
    pub fn debug_layout(&self, h: CacheHandle) -> Result<DebugLayout, SlabError> {
        let c = self.cache(h)?;
        let flags = SlabFlags(c.flags & cache::DEBUG_FLAGS);
        let off = c.obj_offset as isize;
        let mut rz2 = c.buffer_size as isize - 8;
        if flags.contains(SlabFlags::STORE_USER) {
            rz2 -= cache::REDZONE_ALIGN as isize;
        }
        Ok(DebugLayout {
            flags,
            init_on_alloc: c.flags & cache::CFLGS_INIT_ON_ALLOC != 0,
            init_on_free: c.flags & cache::CFLGS_INIT_ON_FREE != 0,
            obj_offset: off as usize,
            obj_size: c.obj_size,
            buffer_size: c.buffer_size,
            redzone1: flags.contains(SlabFlags::RED_ZONE).then_some(-8),
            redzone2: flags.contains(SlabFlags::RED_ZONE).then_some(rz2 - off),
            userword: flags
                .contains(SlabFlags::STORE_USER)
                .then_some(c.buffer_size as isize - 8 - off),
        })
    }

    /// The `g_cpucache_up` states the bootstrap went through, in order (2.6.32: PARTIAL_AC,
    /// PARTIAL_L3, EARLY, FULL).
    pub fn bootstrap_states(&self) -> impl Iterator<Item = CpuCacheUp> + '_ {
        self.g().states_seen().map(CpuCacheUp::from_u8)
    }

    /// The per-CPU slot the calling thread would use now (its CPU id modulo the slots).
    pub fn current_cpu(&self) -> usize {
        self.g().this_cpu()
    }

    /// Number of per-CPU slots (`nr_cpu_ids`, as slub names it too).
    pub fn nr_cpu_ids(&self) -> usize {
        self.g().nr_cpus
    }

    /// Number of nodes.
    pub fn nr_nodes(&self) -> usize {
        self.g().nr_nodes
    }

    /// The node of CPU slot `cpu`.
    pub fn cpu_to_node(&self, cpu: usize) -> usize {
        let g = self.g();
        g.cpu_node[cpu % g.nr_cpus] as usize
    }

    /// `kmem_cache_tune`: `do_tune_cpucache` with checked values (the slabinfo write).
    pub fn kmem_cache_tune(
        &self,
        h: CacheHandle,
        limit: u32,
        batchcount: u32,
        shared: u32,
    ) -> Result<(), TuneError> {
        let c = self.cache(h).map_err(|_| TuneError::ForeignCache)?;
        let t = Tunables {
            limit,
            batchcount,
            shared,
        }
        .check()?;
        let g = self.g();
        let _chain = g.chain_lock();
        // SAFETY: live cache; chain mutex held.
        unsafe { g.do_tune_cpucache(c, t.limit, t.batchcount, t.shared) }
            .map_err(|_| TuneError::NoMemory)
    }

    /// `slabinfo_write`: `"<name> <limit> <batchcount> <shared>"`, at most 128 bytes. Where the
    /// kernel silently ignores bad values, this returns [`TuneError::BadValue`].
    pub fn slabinfo_write(&self, line: &str) -> Result<(), TuneError> {
        if line.len() > 128 {
            return Err(TuneError::Parse);
        }
        let mut it = line.split_whitespace();
        let name = it.next().ok_or(TuneError::Parse)?;
        let mut num = || -> Result<i64, TuneError> {
            it.next()
                .ok_or(TuneError::Parse)?
                .parse::<i64>()
                .map_err(|_| TuneError::Parse)
        };
        let (limit, batch, shared) = (num()?, num()?, num()?);
        if it.next().is_some() {
            return Err(TuneError::Parse);
        }
        if limit < 1 || batch < 1 || batch > limit || shared < 0 {
            return Err(TuneError::BadValue(
                "need limit >= 1, 1 <= batchcount <= limit, shared >= 0",
            ));
        }
        let h = self.find_cache(name).ok_or(TuneError::NoSuchCache)?;
        let to_u32 = |v: i64| u32::try_from(v).map_err(|_| TuneError::BadValue("value too large"));
        self.kmem_cache_tune(h, to_u32(limit)?, to_u32(batch)?, to_u32(shared)?)
    }

    /// `kmem_cache_shrink` of every cache, kmalloc caches and `cache_cache` included (what
    /// "drop caches" would do): afterwards only slabs with live objects remain.
    pub fn shrink_all(&self) {
        let g = self.g();
        let chain = g.chain_lock();
        for c in g.caches(&chain) {
            g.__cache_shrink(c);
        }
    }

    /// Runs `cache_reap` as CPU `cpu` would. Returns slabs given back.
    pub fn cache_reap(&self, cpu: usize) -> usize {
        self.g().cache_reap(cpu)
    }

    /// The fake clock (jiffies, `HZ` = 1000).
    pub fn jiffies(&self) -> usize {
        self.g().jiffies()
    }

    /// Advances the fake clock by `n` jiffies; returns the new value.
    pub fn advance_jiffies(&self, n: usize) -> usize {
        self.g().advance_jiffies(n)
    }

    /// Starts the background reaper (every 2 s: advance the clock 2 s, reap every CPU).
    /// `false` if it was already running.
    pub fn start_reaper(&self) -> bool {
        let g = self.g();
        let mut r = g
            .reaper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if r.is_some() {
            return false;
        }
        g.reaper_stop.store(false, Ordering::Release);
        let p = GlobalsPtr(self.g);
        *r = Some(std::thread::spawn(move || {
            let p = p;
            // SAFETY: stop_reaper (called by Drop at the latest) joins this thread before the
            // globals are freed.
            unsafe { p.0.as_ref() }.reaper_loop();
        }));
        true
    }

    /// Stops and joins the background reaper, if running.
    pub fn stop_reaper(&self) {
        let g = self.g();
        let h = g
            .reaper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(h) = h {
            g.reaper_stop.store(true, Ordering::Release);
            h.thread().unpark();
            let _ = h.join();
        }
    }

    /// The `(statistics)` columns of a cache (zero with stats off).
    pub fn cache_stats(&self, h: CacheHandle) -> Result<SlabStats, SlabError> {
        let c = self.cache(h)?;
        Ok(self.g().cache_stats(c))
    }

    /// The whole `/proc/slabinfo` text (with the statistics columns when stats are on).
    pub fn slabinfo_text(&self) -> String {
        use core::fmt::Write;
        let g = self.g();
        let mut s = String::new();
        s.push_str(if g.stats {
            stats::STATS_HEADER
        } else {
            SlabInfo::HEADER
        });
        s.push('\n');
        // Rows gathered under the chain mutex, formatted with no lock held.
        g.for_each_cache_batched(
            |c| (g.s_show(c).0, g.cache_stats(c)),
            |(row, st)| {
                let _ = write!(s, "{row}");
                if g.stats {
                    let _ = write!(s, "{st}");
                }
                s.push('\n');
            },
        );
        s
    }
}

impl Drop for Slab {
    fn drop(&mut self) {
        self.stop_reaper();
        let g = self.g.as_ptr();
        // SAFETY: the last use of the instance: no thread uses it any more (&mut self), the
        // reaper is joined; every slab page goes back, then the globals block itself.
        unsafe {
            (*g).release_all_memory();
            let order = (*g).block_order;
            core::ptr::drop_in_place(g);
            if let Some(page) = self.provider.virt_to_page(g as usize) {
                let r = self.provider.free_pages(page, order);
                debug_assert!(r.is_ok());
            }
        }
    }
}

impl fmt::Debug for Slab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slab")
            .field("settings", &self.settings())
            .field("nr_cpu_ids", &self.nr_cpu_ids())
            .field("nr_nodes", &self.nr_nodes())
            .finish_non_exhaustive()
    }
}

impl SlabAllocator for Slab {
    fn name(&self) -> &'static str {
        "slab"
    }

    fn provider(&self) -> &PageProvider {
        &self.provider
    }

    fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<CacheHandle, SlabError> {
        let c = self.g().kmem_cache_create(name, size, align, flags, ctor)?;
        Ok(self.handle(c))
    }

    #[inline(always)]
    #[track_caller]
    fn kmem_cache_alloc(&self, cache: CacheHandle, gfp: Gfp) -> Option<NonNull<u8>> {
        let (c, fast) = self.cache_fast(cache).ok()?;
        if !fast {
            return self.kmem_cache_alloc_debug(c, gfp, core::panic::Location::caller());
        }
        self.g().cache_alloc_nodebug(c, gfp)
    }

    #[track_caller]
    fn kmem_cache_alloc_node(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        node: usize,
    ) -> Option<NonNull<u8>> {
        let c = self.cache(cache).ok()?;
        if node >= self.g().nr_nodes && node != usize::MAX {
            return None;
        }
        self.g().cache_alloc_node_internal(c, gfp, node)
    }

    #[inline(always)]
    #[track_caller]
    unsafe fn kmem_cache_free(
        &self,
        cache: CacheHandle,
        obj: NonNull<u8>,
    ) -> Result<(), SlabError> {
        // One test of a field fixed at creation picks the configuration's free.
        match self.g().config {
            KernelConfig::Checked => {}
            // SAFETY: forwarded contract; in these configurations it includes that `cache` is
            // a live cache of this instance (the kernel's trust).
            KernelConfig::Kernel => return unsafe { self.kmem_cache_free_kernel(cache, obj) },
            // SAFETY: as above.
            KernelConfig::Hardened => return unsafe { self.kmem_cache_free_hardened(cache, obj) },
        }
        let (c, fast) = self.cache_fast(cache)?;
        if !fast {
            // SAFETY: forwarded contract.
            return unsafe {
                self.kmem_cache_free_debug(c, obj.as_ptr(), core::panic::Location::caller())
            };
        }
        self.g().check_object_of(c, obj.as_ptr())?;
        // SAFETY: a checked object start of this (non-debug) cache; the caller gives it up.
        if unsafe { self.g().cpu_cache_free(c, obj.as_ptr()) } {
            Ok(())
        } else {
            Err(SlabError::DoubleFree(obj.as_ptr() as usize))
        }
    }

    #[inline(always)]
    #[track_caller]
    fn kmalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        let c = self.g().find_general_cachep(size)?;
        self.g().cache_alloc_internal(c, gfp)
    }

    #[track_caller]
    fn kmalloc_node(&self, size: usize, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        let c = self.g().find_general_cachep(size)?;
        if node >= self.g().nr_nodes && node != usize::MAX {
            return None;
        }
        self.g().cache_alloc_node_internal(c, gfp, node)
    }

    #[inline(always)]
    #[track_caller]
    unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), SlabError> {
        if ptr.is_null() {
            return Ok(());
        }
        if self.g().config != KernelConfig::Checked {
            // SAFETY: forwarded contract (in these configurations: a live object of ours).
            return unsafe { self.kfree_kernel(ptr) };
        }
        let c = match self.g().lookup_object(ptr) {
            Ok(c) => c,
            Err(e) => {
                self.g().debug_bad_free(None, ptr, e);
                return Err(e);
            }
        };
        // SAFETY: a checked object start; the caller gives it up.
        if unsafe { self.g().cache_free_internal(c, ptr) } {
            Ok(())
        } else {
            Err(SlabError::DoubleFree(ptr as usize))
        }
    }

    unsafe fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        let c = self.g().lookup_object(ptr.as_ptr())?;
        Ok(if c.is_debug() {
            c.obj_size
        } else {
            c.buffer_size
        })
    }

    fn kmem_cache_shrink(&self, cache: CacheHandle) -> Result<(), SlabError> {
        let c = self.cache(cache)?;
        let g = self.g();
        let _chain = g.chain_lock();
        g.__cache_shrink(c);
        Ok(())
    }

    unsafe fn kmem_cache_destroy(&self, cache: CacheHandle) -> Result<(), SlabError> {
        let c = self.cache(cache)?;
        // kmalloc caches and cache_cache are never destroyed.
        if c.flags & SlabFlags::KMALLOC.0 != 0 || core::ptr::eq(c, self.g().cache_cache()) {
            return Err(SlabError::BootCache);
        }
        // SAFETY: the caller guarantees nobody uses the cache.
        unsafe { self.g().kmem_cache_destroy(c) }
    }

    /// Rows are made by `s_show` under the cache-chain mutex into a stack batch, and `f` runs
    /// on each batch with no lock held (`f` may allocate, even from this allocator). Like a
    /// `/proc/slabinfo` read in pieces, a cache created or destroyed between batches may be
    /// missed or shown twice.
    fn for_each_slabinfo(&self, f: &mut dyn FnMut(&SlabInfo)) {
        let g = self.g();
        g.for_each_cache_batched(|c| g.s_show(c).0, |row| f(row));
    }

    fn validate(&self) -> Result<(), String> {
        self.g().validate()
    }

    fn memory_usage(&self) -> MemoryUsage {
        MemoryUsage::from_provider(&self.provider, Owner::SlabClassic)
    }

    fn for_each_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let g = self.g();
        let mut totals = [0u64; StatItem::COUNT];
        {
            let chain = g.chain_lock();
            for c in g.caches(&chain) {
                for (i, t) in totals.iter_mut().enumerate() {
                    *t += c.stats.get(StatItem::ALL[i]);
                }
            }
        }
        for (i, t) in totals.iter().enumerate() {
            f(StatItem::NAMES[i], *t);
        }
    }

    fn kernel_config(&self) -> KernelConfig {
        self.g().config
    }

    fn free_warnings(&self) -> u64 {
        self.g().free_warnings.load(Ordering::Relaxed)
    }

    fn for_each_queue_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let q = self.queue_memory();
        f("caches", q.caches as u64);
        f("nr_cpus", q.nr_cpus as u64);
        f("nr_nodes", q.nr_nodes as u64);
        let kinds: [(&QueueBytes, [&'static str; 6]); 3] = [
            (
                &q.cpu,
                [
                    "cpu_arrays",
                    "cpu_array_bytes",
                    "cpu_capacity",
                    "cpu_capacity_bytes",
                    "cpu_objects",
                    "cpu_object_bytes",
                ],
            ),
            (
                &q.shared,
                [
                    "shared_arrays",
                    "shared_array_bytes",
                    "shared_capacity",
                    "shared_capacity_bytes",
                    "shared_objects",
                    "shared_object_bytes",
                ],
            ),
            (
                &q.alien,
                [
                    "alien_arrays",
                    "alien_array_bytes",
                    "alien_capacity",
                    "alien_capacity_bytes",
                    "alien_objects",
                    "alien_object_bytes",
                ],
            ),
        ];
        for (k, n) in kinds {
            let v = [
                k.arrays,
                k.bytes,
                k.capacity,
                k.capacity_bytes,
                k.objects,
                k.object_bytes,
            ];
            for (name, v) in n.into_iter().zip(v) {
                f(name, v as u64);
            }
        }
        f("alien_table_bytes", q.alien_tables_bytes as u64);
        f("node_struct_bytes", q.node_struct_bytes as u64);
        f("cache_struct_bytes", q.cache_struct_bytes as u64);
        f("queue_bytes", q.queue_bytes() as u64);
    }

    fn settings_summary(&self) -> String {
        let g = self.g();
        let s = g.settings;
        let d = s.debug;
        let letters: String = [
            (SlabFlags::CONSISTENCY_CHECKS, 'F'),
            (SlabFlags::RED_ZONE, 'Z'),
            (SlabFlags::POISON, 'P'),
            (SlabFlags::STORE_USER, 'U'),
        ]
        .iter()
        .filter(|(f, _)| d.contains(*f))
        .map(|&(_, c)| c)
        .collect();
        format!(
            "slab-2.6.32 config={} break_order={} tunables={} shared={} alien={} reap={} stats={} cpus={} nodes={} debug={}{}{}{} fastpath={}",
            g.config.name(),
            g.slab_break_gfp_order,
            s.tunables.map_or("table".to_string(), |t| format!("{}/{}/{}", t.limit, t.batchcount, t.shared)),
            if g.num_possible_cpus > 1 { "8" } else { "0" },
            g.use_alien_caches,
            s.reap,
            s.stats,
            g.nr_cpus,
            g.nr_nodes,
            if letters.is_empty() { "-" } else { &letters },
            if s.forced_debug { ",forced" } else { "" },
            if s.init_on_alloc { ",init_on_alloc" } else { "" },
            if s.init_on_free { ",init_on_free" } else { "" },
            if g.rseq { "rseq" } else { "lock" },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::CpuCacheUp;
    use common::{ProviderConfig, Topology};

    #[test]
    fn bootstrap_walks_the_2_6_32_states_and_leaves_no_static_structure_in_use() {
        let topo = Topology::uniform(1, 2).unwrap().with_fake_numa(2).unwrap();
        let p = PageProvider::new(&ProviderConfig::small(topo, 16)).unwrap();
        let s = Slab::new(&p, SlabSettings::default()).unwrap();
        let g = s.g();
        let states: Vec<CpuCacheUp> = s.bootstrap_states().collect();
        assert_eq!(
            states,
            vec![
                CpuCacheUp::PartialAc,
                CpuCacheUp::PartialL3,
                CpuCacheUp::Early,
                CpuCacheUp::Full
            ]
        );
        let l3_cache = g.find_general_cachep(128).unwrap();
        let mut caches = 0;
        let chain = g.chain_lock();
        for c in g.caches(&chain) {
            caches += 1;
            if !core::ptr::eq(c, g.cache_cache()) {
                let owner = g.lookup_object(core::ptr::from_ref(c).cast_mut().cast());
                assert!(
                    owner.is_ok_and(|o| core::ptr::eq(o, g.cache_cache())),
                    "kmem_cache from cache_cache"
                );
            }
            for cpu in 0..g.nr_cpus {
                let ac = g.slot_lock(c, cpu).ac_ptr();
                assert!(!g.is_static_array(ac), "{} cpu {cpu}", c.name);
                assert!(g.lookup_object(ac.cast()).is_ok(), "array_cache kmalloc'd");
            }
            for node in 0..g.nr_nodes {
                let l3 = g.l3(c, node);
                assert!(!g.is_static_l3(l3), "{} node {node}", c.name);
                let owner = g.lookup_object(l3.cast());
                assert!(
                    owner.is_ok_and(|o| core::ptr::eq(o, l3_cache)),
                    "kmem_list3 from INDEX_L3"
                );
                let page = p.virt_to_head_page(l3 as usize).unwrap();
                assert_eq!(p.page_to_nid(page), node, "kmalloc_node placed the list3");
                // SAFETY: a live list3.
                let alien = unsafe { node::alien_table(l3) };
                assert!(!alien.is_null(), "alien arrays on 2 nodes");
            }
        }
        drop(chain);
        assert_eq!(caches, 1 + common::sizes::slab::NR);
        assert_eq!(
            p.stats().owner(Owner::Metadata),
            1 << g.block_order,
            "only the static block"
        );
    }

    #[test]
    fn validate_names_each_accounting_error() {
        let p = PageProvider::new(&ProviderConfig::small(Topology::uniform(1, 2).unwrap(), 16))
            .unwrap();
        let s = Slab::new(&p, SlabSettings::default()).unwrap();
        let h = s
            .kmem_cache_create("victim", 100, 0, SlabFlags::NONE, None)
            .unwrap();
        s.kmem_cache_tune(h, 1, 1, 0).unwrap();
        let objs: Vec<_> = (0..40)
            .map(|_| s.kmem_cache_alloc(h, Gfp::KERNEL).unwrap())
            .collect();
        s.validate().unwrap();
        let g = s.g();
        let c = s.cache(h).unwrap();
        {
            let l3 = g.lock_list(c, 0);
            let full = l3.first(node::List::Full).unwrap().as_ptr();
            // SAFETY: single-threaded test; each field is restored before the next check, and
            // validate takes the node lock only after this guard is dropped.
            let add_inuse =
                |d: i32| unsafe { (*full).inuse = (*full).inuse.wrapping_add_signed(d) };
            drop(l3);
            add_inuse(-1);
            let e = s.validate().unwrap_err();
            assert!(e.contains("slabs_full accounting error"), "{e}");
            add_inuse(1);
        }
        let bump = |d: isize| {
            let l3 = g.lock_list(c, 0);
            l3.set_free_objects(l3.free_objects().wrapping_add_signed(d));
        };
        bump(1);
        let e = s.validate().unwrap_err();
        assert!(e.contains("free_objects accounting error"), "{e}");
        bump(-1);
        let part = g
            .lock_list(c, 0)
            .first(node::List::Partial)
            .unwrap()
            .as_ptr();
        // SAFETY: single-threaded test; restored right after the check.
        let saved = unsafe { core::mem::replace(&mut (*part).inuse, 0) };
        let e = s.validate().unwrap_err();
        assert!(e.contains("slabs_partial/inuse accounting error"), "{e}");
        // SAFETY: as above.
        unsafe { (*part).inuse = saved };
        let move_first = |from: node::List, to: node::List| {
            let l3 = g.lock_list(c, 0);
            let spare = l3.first(from).unwrap();
            // SAFETY: the slab is on `from`; single-threaded test.
            unsafe { l3.move_to(spare, to) };
        };
        move_first(node::List::Partial, node::List::Free);
        let e = s.validate().unwrap_err();
        assert!(e.contains("slabs_free/inuse accounting error"), "{e}");
        move_first(node::List::Free, node::List::Partial);
        s.validate().unwrap();
        for o in objs {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(h, o) }.unwrap();
        }
        s.validate().unwrap();
    }
}

/// Heap allocations under an allocator lock abort the unit-test binary (debug builds).
#[cfg(test)]
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;
