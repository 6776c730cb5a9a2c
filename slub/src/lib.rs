//! # slub — Linux 6.4 SLUB on the slabworks page provider, and SLUB with percpu sheaves (6.18, 7.0)
//!
//! A port of `mm/slub.c` as Linux 6.4 shipped it (before sheaves), with the kernel's function
//! names so the two can be read side by side. The eras `era=6.18` and `era=7.0` add percpu
//! *sheaves* and per-node *barns* (`sheaf.rs`, whose header has their call tree, lock order and
//! invariants). Every byte — object slabs, the `kmem_cache` and `kmem_cache_node` structures,
//! the per-CPU `kmem_cache_cpu` arrays — comes from the [`PageProvider`]; nothing on an
//! allocation or free path touches the Rust heap. How to use it (settings, `slub_debug`,
//! `init_on_*`, kernel configurations), the deviations from 6.4 and their reasons are in
//! `docs/design-notes.md`, section "slub".
//!
//! ## Modules (callers above callees)
//! ```text
//!   lib.rs       Slub: the SlabAllocator API, settings, handles, introspection
//!   merge.rs     find_mergeable / __kmem_cache_alias    bootstrap.rs  kmem_cache_init, bootstrap()
//!   validate.rs  validate_slab_cache, slabinfo
//!   kmalloc.rs   kmalloc-8 … kmalloc-8k, kmalloc_large, kfree, ksize
//!   fastpath.rs  slab_alloc_node / slab_free → do_slab_free, bulk   (kmem_cache_cpu {freelist, tid})
//!   sheaf.rs     (6.18/7.0) slab_sheaf, node_barn: alloc_from_pcs / free_to_pcs, bulk, prefill
//!   refill.rs    (7.0) the slab path without kmem_cache_cpu: ___slab_alloc, refill_objects
//!   slowpath.rs  ___slab_alloc / __slab_free / deactivate_slab / per-CPU partials / new_slab
//!   hooks.rs     slab_post_alloc_hook / slab_free_freelist_hook (init_on_alloc/free, __GFP_ZERO)
//!   debug/       slub_debug=: alloc_debug / free_to_partial_list, check_object, validate_slab
//!   node.rs      kmem_cache_node: partial (and full) lists, list_lock (ListGuard), shrink
//!   cache.rs     kmem_cache, kmem_cache_cpu: kmem_cache_open, calculate_sizes / _order, oo
//!   stats.rs     enum stat_item, CacheAttrs            freeptr.rs  get/set_freepointer (hardening)
//!   common       PageProvider ─► Page (struct slab), ListHead, PerCpu, SpinLock, rseq, DoubleWord
//!   (tests)      model.rs: every interleaving of the fast-path protocol;
//!                sheaf_model.rs: of the sheaves' rseq local_trylock (common::rseq_lock)
//! ```
//! Calls that go *up* this list, each one `mm/slub.c` makes too:
//! - **The allocator allocates its own metadata** (the kernel's cycle):
//!   ```text
//!   cache::kmem_cache_open ─► node::init_kmem_cache_nodes ─► fastpath::slab_alloc_node(kmem_cache_node)
//!     │                        (before bootstrap is done: bootstrap::early_kmem_cache_node_alloc)
//!     │                       node::free_kmem_cache_nodes ─► kmalloc::kmem_cache_free_internal
//!     └► sheaf::init_cache_sheaves ─► kmalloc (sheaves and barns are kmalloc objects)
//!   node::kmem_cache_shrink / free_partial ─► slowpath::flush_all / free_slab,
//!                                              sheaf::flush_all_sheaves
//!   ```
//! - `fastpath` ⇄ `sheaf`: the fast-path entry points hand caches with sheaves to `sheaf.rs`,
//!   whose fallbacks are the 6.4 paths (`slab_alloc_node_6_4`, `do_slab_free`, bulk).
//! - `slowpath` ⇄ `debug`: debug caches leave `___slab_alloc` / `__slab_free` for
//!   `alloc_debug` / `free_to_partial_list`, which use slowpath's `new_slab`, `free_slab`,
//!   `cmpxchg_double_slab`.
//! - `cache` (creation) uses `fastpath::init_tid`, `hooks::init_hooks_for` and the debug flags;
//!   `stats` and `freeptr` take the `KmemCache` struct, and `stats` reads
//!   `sheaf::sheaf_capacity`.
//!
//! ## Call tree, fast to slow
//! ```text
//! kmem_cache_alloc[_node] / kmalloc[_node]
//!   └ slab_alloc_node                     fastpath: pop c->freelist, rseq or cmpxchg16b (freelist, tid),
//!       │                                 then slab_post_alloc_hook (__GFP_ZERO, init_on_alloc/free)
//!       └ __slab_alloc → ___slab_alloc     slowpath (#[cold]), under c->lock
//!           ├ get_freelist                 take the CPU slab's remote-freed objects (cmpxchg slab)
//!           ├ deactivate_slab              CPU slab of the wrong node / exhausted
//!           ├ per-CPU partial pop          c->partial → c->slab
//!           ├ get_partial → get_partial_node → acquire_slab, put_cpu_partial
//!           │             └ get_any_partial (remote_node_defrag_ratio)
//!           └ new_slab                     (allocate_slab folded in) provider.alloc_pages (oo, then min)
//! kmem_cache_alloc_bulk                   pop c->freelist under c->lock (busy), ___slab_alloc when dry
//! kmem_cache_free / kfree                 slab_free (one object)
//! kmem_cache_free_bulk                    build_detached_freelist: chains per slab → slab_free_bulk
//!   └ slab_free_freelist_hook (init_on_free), then
//!     do_slab_free                        object(s) of c->slab → push on c->freelist (rseq/cmpxchg)
//!       └ __slab_free                      cmpxchg slab {freelist, counters}
//!           ├ put_cpu_partial → __unfreeze_partials   (drain when cpu_partial_slabs reached)
//!           └ add_partial / remove_partial / discard_slab
//! kmem_cache_shrink → flush_all → __kmem_cache_do_shrink
//!
//! debug caches (s->debug): the fast paths above see `s.debug` and fall through to
//!   __slab_alloc → debug::alloc_debug           under list_lock: alloc_single_from_partial /
//!                                                _from_new_slab → alloc_debug_processing, set_track
//!   __slab_free  → debug::free_to_partial_list   under list_lock: free_debug_processing
//!                                                (free_consistency_checks, on_freelist), init_object
//!   validate_slab_cache → debug::validate_slab   check_slab, on_freelist, check_object per object
//! ```
//!
//! ## Lock order (as `mm/slub.c` 6.4 numbers it)
//! 1. `slab_mutex` ([`Slub`]'s cache list): the list of caches, aliases (`refcount`,
//!    `object_size`/`inuse` raised by `__kmem_cache_alias`), creation and destruction.
//! 2. `kmem_cache_node::list_lock` (spinlock): `partial` list, `nr_partial` (written only under
//!    it; read racily as a hint), and the `slab_list` link of every slab on it.
//! 3. `kmem_cache_cpu::lock` (local lock, one per CPU slot): `c->slab`, `c->partial` (the chain
//!    through `Page::private`, `Page::slabs`), and the right to *change* `c->freelist`/`c->tid`
//!    other than by the fast path's pop/push.
//! 4. The slab's `{freelist, counters}` double word: not a lock but a 16-byte `cmpxchg`, the only
//!    way `inuse`, `frozen` and the slab freelist change once a slab is published.
//! 5. The page provider's node lock (leaf).
//!
//! ## What runs without a lock, and why it is still correct
//! - **The fast paths** change only `c->freelist`, by one `cmpxchg16b` on `{freelist, tid}` (with
//!   the lock prefix: `common::dword`) or, in rseq mode, by a restartable sequence on the CPU
//!   whose slot they use. The tid names the slot and the event (`fastpath.rs`), so a thread that
//!   read slot A and was then migrated still compares against A's pair and fails if A changed.
//! - **Slow-path changes of a CPU slot** first *mark the tid busy* (`TID_BUSY`: by `cmpxchg16b`,
//!   or an rseq commit on the slot's CPU, or `cmpxchg16b` plus a membarrier fence of that CPU),
//!   so no fast path on another CPU can commit into the slot meanwhile, and publish the new
//!   `{freelist, tid + TID_STEP}` when done. The kernel uses plain stores here (its local lock
//!   keeps that CPU's fast path out); `model.rs` shows them losing objects in user space.
//! - **Remote frees** (`__slab_free`) and freezing/unfreezing change a slab only by `cmpxchg` of
//!   its `{freelist, counters}`; `frozen` slabs belong to one CPU slot and are not on node lists.
//!
//! ## Invariants (checked by `validate()`)
//! - A slab on a node's partial list is not frozen, has `0 < free`, `inuse == objects − |freelist|`
//!   and `slab_cache == s`; `nr_partial` is the list length.
//! - `c->freelist` non-null implies `c->slab` non-null and the objects belong to `c->slab`.
//! - `Σ nr_slabs`, `Σ total_objects` per node count every slab of the cache, listed or not.

mod bootstrap;
mod cache;
pub mod census;
mod debug;
mod fastpath;
mod freeptr;
mod hooks;
mod kmalloc;
mod merge;
#[cfg(test)]
mod model;
mod node;
mod refill;
mod sheaf;
#[cfg(test)]
mod sheaf_model;
mod slowpath;
mod stats;
mod validate;

pub use cache::{
    calc_slab_order, calculate_alignment, calculate_order, calculate_sizes, min_partial_for,
    set_cpu_partial_for, CacheLayout, KmemCacheOrderObjects, OO_SHIFT,
};
pub use debug::{
    DebugReport, ReportFn, ReportKind, SlubDebug, Track, DEBUG_DEFAULT_FLAGS, POISON_END,
    POISON_FREE, POISON_INUSE, SLUB_RED_ACTIVE, SLUB_RED_INACTIVE,
};
pub use fastpath::{init_tid, next_tid, tid_to_cpu, tid_to_event, TID_STEP};
pub use freeptr::swab;
pub use sheaf::SlabSheafHandle as SlabSheaf;
pub use sheaf::{
    calculate_sheaf_capacity, PcsLockForm, SheafCensus, SlabSheafHandle, MAX_EMPTY_SHEAVES,
    MAX_FULL_SHEAVES, PCS_BATCH_MAX,
};
pub use stats::{CacheAttrs, QueueMemory, StatItem};

use cache::KmemCache;
use common::api::{check_cache_args, new_instance_id};
use common::sizes::slub as kmalloc_sizes;
use common::sync::SpinLock;
use common::{
    CacheHandle, Ctor, Gfp, KernelConfig, MemoryUsage, Owner, PageProvider, SlabAllocator,
    SlabError, SlabFlags, SlabInfo,
};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

/// `struct kmem_cache_args` (the part that means something here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KmemCacheArgs {
    /// `sheaf_capacity`: 0 = none (6.18) / computed (7.0).
    pub sheaf_capacity: usize,
}

/// "No node preference" (`NUMA_NO_NODE`).
pub const NUMA_NO_NODE: usize = usize::MAX;

/// Which kernel's constants to use where 2.6.32 and 6.4 differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    /// Linux 6.4: `min_partial = clamp(ilog2(size)/2, 5, 10)`, free pointer in the middle of the
    /// object, per-CPU partial slabs, `min_objects` from the CPU count.
    V6_4,
    /// Linux 2.6.32: `min_partial = clamp(ilog2(size), 5, 10)`, free pointer at offset 0, no
    /// per-CPU partial slabs (they came in 3.2), `min_objects` from `nr_cpu_ids`, empty slabs
    /// discarded at once by `__slab_free`, and `deactivate_slab` putting a slab with a CPU
    /// freelist at the head. The fast paths stay the lockless tid ones (2.6.39+; 2.6.32
    /// disabled interrupts instead).
    V2_6_32,
    /// Linux 6.18: 6.4 plus percpu sheaves for caches created with a
    /// `sheaf_capacity` ([`Slub::kmem_cache_create_args`]); such caches never merge.
    V6_18,
    /// Linux 7.0: sheaves for every cache but the boot caches, capacity from
    /// `calculate_sheaf_capacity()`; no CPU slabs, per-CPU partials or tid fast path.
    V7_0,
}

impl Era {
    /// The `era=` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Era::V6_4 => "6.4",
            Era::V2_6_32 => "2.6.32",
            Era::V6_18 => "6.18",
            Era::V7_0 => "7.0",
        }
    }
}

/// The boot options, as one struct (`slub_min_order=`, `slub_max_order=`, `slub_min_objects=`,
/// `slab_nomerge`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlubSettings {
    /// 6.4 or 2.6.32 formulas.
    pub era: Era,
    /// `slub_min_order` (default 0).
    pub slub_min_order: usize,
    /// `slub_max_order` (default `PAGE_ALLOC_COSTLY_ORDER` = 3).
    pub slub_max_order: usize,
    /// `slub_min_objects` (0 = automatic, `4·(fls(nr_cpus)+1)`).
    pub slub_min_objects: usize,
    /// `slab_nomerge`: never merge caches.
    pub slab_nomerge: bool,
    /// Override of every cache's `cpu_partial` (objects), like writing the sysfs file.
    pub cpu_partial: Option<usize>,
    /// Override of every cache's `min_partial`.
    pub min_partial: Option<usize>,
    /// `CONFIG_SLAB_FREELIST_HARDENED`: encoded free pointers and the naive double-free check
    /// (forced on by `config: Hardened`).
    pub freelist_hardened: bool,
    /// The kernel configuration of the free paths (`config=kernel|hardened|checked`;
    /// default `Checked`): see [`common::KernelConfig`] and "Kernel configurations" above.
    pub config: KernelConfig,
    /// `CONFIG_SLUB_STATS`: the 26 per-CPU stat counters.
    pub stats: bool,
    /// `remote_node_defrag_ratio` of new caches, in the sysfs unit (0..=100, default 100 =
    /// the kernel's internal 1000).
    pub remote_node_defrag_ratio: usize,
    /// Seed for the per-cache `random` of the hardened free pointer (0: from the clock).
    pub random_seed: u64,
    /// Which lockless fast path: restartable sequences or `lock cmpxchg16b`.
    pub fastpath: FastPath,
    /// `slub_debug=`. `None`: read the environment variable `SLUB_DEBUG` (same
    /// syntax, e.g. `SLUB_DEBUG='F,kmalloc-*;ZP'`) when the instance is created;
    /// `Some(SlubDebug::OFF)`: off whatever the environment says.
    pub slub_debug: Option<SlubDebug>,
    /// Report callback for `slub_debug` reports (`None`: printed to stderr).
    pub debug_report: Option<ReportFn>,
    /// Abort the process after the first `slub_debug` error report (the kernel's `BUG`);
    /// default: report, fix and continue.
    pub debug_abort: bool,
    /// `init_on_alloc`: zero every object when it is allocated, and large kmalloc pages (not
    /// caches with a constructor, `SLAB_TYPESAFE_BY_RCU` or `SLAB_POISON`; see `hooks.rs`).
    pub init_on_alloc: bool,
    /// `init_on_free`: zero every object when it is freed (same exceptions), and large kmalloc
    /// pages on `kfree`.
    pub init_on_free: bool,
}

/// The fast-path implementation (`fastpath=` boot option; see `fastpath.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FastPath {
    /// rseq when this process has rseq areas and the membarrier CPU fence, else cmpxchg. The
    /// environment variable `SLUB_FASTPATH=rseq|cmpxchg` overrides `Auto` (so a whole test
    /// suite can be run in either mode without editing it).
    #[default]
    Auto,
    /// Restartable sequences (falls back to cmpxchg, with the summary saying so, where rseq
    /// is unavailable or the topology has fewer CPU slots than the machine has CPU ids).
    Rseq,
    /// The `lock cmpxchg16b` on `{freelist, tid}`.
    Cmpxchg,
}

impl FastPath {
    /// Resolves `Auto` (and an unavailable `Rseq`) to what this process can run.
    pub fn resolve(self) -> FastPath {
        let wanted = match self {
            FastPath::Auto => match env_fastpath() {
                Some(f) => f,
                None => FastPath::Rseq,
            },
            f => f,
        };
        if wanted == FastPath::Rseq && common::rseq::available() && common::rseq::fence_available()
        {
            FastPath::Rseq
        } else {
            FastPath::Cmpxchg
        }
    }

    /// The option spelling.
    pub fn name(self) -> &'static str {
        match self {
            FastPath::Auto => "auto",
            FastPath::Rseq => "rseq",
            FastPath::Cmpxchg => "cmpxchg",
        }
    }
}

/// Boot option tokens: separated by spaces, and by commas except inside `slub_debug=…`
/// (whose value uses commas and semicolons itself).
fn split_boot_options(opts: &str) -> impl Iterator<Item = &str> {
    opts.split(' ')
        .flat_map(|w| {
            let keep = w.starts_with("slub_debug=");
            w.split(move |c| c == ',' && !keep)
        })
        .filter(|t| !t.is_empty())
}

/// `kstrtobool` for `init_on_alloc=`/`init_on_free=` (a bare option means on).
fn parse_bool(k: &str, v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "y" | "Y" | "on" => Ok(true),
        "0" | "n" | "N" | "off" => Ok(false),
        _ => Err(format!("{k}: {v:?} is not 0 or 1")),
    }
}

/// `SLUB_FASTPATH`, read with `getenv` (no heap: `Slub::new` must not allocate).
fn env_fastpath() -> Option<FastPath> {
    let table: &[(&[u8], FastPath)] = &[(b"rseq", FastPath::Rseq), (b"cmpxchg", FastPath::Cmpxchg)];
    common::sys::fastpath_env(c"SLUB_FASTPATH", table)
}

impl Default for SlubSettings {
    fn default() -> Self {
        Self {
            era: Era::V6_4,
            slub_min_order: 0,
            slub_max_order: 3,
            slub_min_objects: 0,
            slab_nomerge: false,
            cpu_partial: None,
            min_partial: None,
            freelist_hardened: false,
            config: KernelConfig::Checked,
            stats: false,
            remote_node_defrag_ratio: 100,
            random_seed: 0,
            fastpath: FastPath::Auto,
            slub_debug: None,
            debug_report: None,
            debug_abort: false,
            init_on_alloc: false,
            init_on_free: false,
        }
    }
}

impl SlubSettings {
    /// Parses kernel-command-line style options, separated by spaces or commas:
    /// `slub_min_order=N slub_max_order=N slub_min_objects=N slab_nomerge slab_merge
    /// slub_cpu_partial=N slub_min_partial=N era=6.4|2.6.32 hardened stats
    /// config=kernel|hardened|checked remote_node_defrag_ratio=N seed=N fastpath=auto|rseq|cmpxchg
    /// slub_debug[=…] debug_abort init_on_alloc[=0|1] init_on_free[=0|1]`
    /// (`slub_nomerge`/`slub_merge` are accepted too; commas inside `slub_debug=` belong to it).
    pub fn from_boot_options(opts: &str) -> Result<Self, String> {
        let mut s = Self::default();
        for tok in split_boot_options(opts) {
            let (k, v) = tok.split_once('=').unwrap_or((tok, ""));
            let num = || {
                v.parse::<usize>()
                    .map_err(|_| format!("{k}: bad number {v:?}"))
            };
            match k {
                "slub_min_order" => s.slub_min_order = num()?,
                "slub_max_order" => s.slub_max_order = num()?,
                "slub_min_objects" => s.slub_min_objects = num()?,
                "slab_nomerge" | "slub_nomerge" => s.slab_nomerge = true,
                "slab_merge" | "slub_merge" => s.slab_nomerge = false,
                "slub_cpu_partial" | "cpu_partial" => s.cpu_partial = Some(num()?),
                "slub_min_partial" | "min_partial" => s.min_partial = Some(num()?),
                "remote_node_defrag_ratio" => s.remote_node_defrag_ratio = num()?.min(100),
                "hardened" | "freelist_hardened" => s.freelist_hardened = true,
                "config" => {
                    s.config = KernelConfig::parse(v).ok_or_else(|| {
                        format!("config: {v:?} is not kernel, hardened or checked")
                    })?;
                }
                "stats" | "slub_stats" => s.stats = true,
                "seed" => s.random_seed = num()? as u64,
                "fastpath" => {
                    s.fastpath = match v {
                        "auto" => FastPath::Auto,
                        "rseq" => FastPath::Rseq,
                        "cmpxchg" => FastPath::Cmpxchg,
                        _ => return Err(format!("fastpath: {v:?} is not auto, rseq or cmpxchg")),
                    }
                }
                "slub_debug" => {
                    let text = tok.split_once('=').map_or("", |(_, v)| v);
                    s.slub_debug = Some(
                        SlubDebug::new(text.as_bytes())
                            .ok_or_else(|| format!("slub_debug: {text:?} is too long"))?,
                    );
                }
                "debug_abort" => s.debug_abort = true,
                "init_on_alloc" => s.init_on_alloc = parse_bool(k, v)?,
                "init_on_free" => s.init_on_free = parse_bool(k, v)?,
                "era" => {
                    s.era = match v {
                        "6.4" => Era::V6_4,
                        "2.6.32" => Era::V2_6_32,
                        "6.18" => Era::V6_18,
                        "7.0" => Era::V7_0,
                        _ => return Err(format!("era: {v:?} is not 6.4, 2.6.32, 6.18 or 7.0")),
                    }
                }
                _ => return Err(format!("unknown SLUB option {tok:?}")),
            }
        }
        if s.config == KernelConfig::Kernel && s.freelist_hardened {
            return Err(
                "config=kernel is a kernel without CONFIG_SLAB_FREELIST_HARDENED: drop `hardened`"
                    .to_string(),
            );
        }
        Ok(s)
    }

    /// The 2.6.32 era with otherwise default settings.
    pub fn v2_6_32() -> Self {
        Self {
            era: Era::V2_6_32,
            ..Self::default()
        }
    }
}

/// `slab_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum SlabState {
    /// No slab functionality yet.
    Down = 0,
    /// `kmem_cache_node` works (SLUB's `PARTIAL`).
    Partial = 1,
    /// kmalloc caches exist.
    Up = 2,
    /// Everything up.
    Full = 3,
}

/// The cache list under `slab_mutex` (newest first, so iteration is the kernel's
/// `list_for_each_entry_reverse` over `slab_caches`).
pub(crate) struct SlabCaches {
    pub(crate) head: *mut KmemCache,
}

// SAFETY: the raw pointer names a KmemCache in provider memory; it is only followed under the
// mutex that wraps this struct.
unsafe impl Send for SlabCaches {}

/// One SLUB allocator instance.
pub struct Slub {
    pub(crate) provider: PageProvider,
    pub(crate) settings: SlubSettings,
    pub(crate) instance: u32,
    pub(crate) nr_cpu_ids: usize,
    pub(crate) nr_nodes: usize,
    pub(crate) slab_state: AtomicU8,
    pub(crate) slab_mutex: SpinLock<SlabCaches>,
    /// The cache of `kmem_cache` structures (after bootstrap: an object of itself).
    pub(crate) kmem_cache: *mut KmemCache,
    /// The cache of `kmem_cache_node` structures.
    pub(crate) kmem_cache_node: *mut KmemCache,
    /// `kmalloc_caches[KMALLOC_NORMAL][]`, by position in `common::sizes::slub`.
    pub(crate) kmalloc_caches: [*mut KmemCache; kmalloc_sizes::NR],
    pub(crate) random_state: core::sync::atomic::AtomicU64,
    /// The resolved fast path is rseq (else cmpxchg).
    pub(crate) rseq: bool,
    /// `slab_errors`: every `slub_debug` report of this instance (the kunit resource).
    pub(crate) slab_errors: core::sync::atomic::AtomicU64,
    /// `settings.config`, beside the fields the free paths read.
    pub(crate) config: KernelConfig,
    /// `cache_from_obj` warnings of a `Hardened` instance (the kernel's `WARN_ONCE`s, counted).
    pub(crate) free_warnings: core::sync::atomic::AtomicU64,
}

// SAFETY: every raw pointer in Slub names provider memory owned by this instance for its whole
// life; all shared mutable state behind them is synchronised as the crate header describes.
unsafe impl Send for Slub {}
// SAFETY: see Send.
unsafe impl Sync for Slub {}

/// `KMALLOC_MAX_SIZE`: the largest `kmalloc` and `kmem_cache_create` size (4 MiB).
pub const KMALLOC_MAX_SIZE: usize = common::sizes::slub_index::KMALLOC_MAX_SIZE;

impl Slub {
    /// Builds an allocator on `provider` (`kmem_cache_init`: boot caches, bootstrap, kmalloc
    /// caches). `Err(NoMemory)` if the provider cannot hold the boot structures (everything
    /// taken so far is given back).
    pub fn new(provider: &PageProvider, settings: SlubSettings) -> Result<Slub, SlabError> {
        let mut settings = settings;
        if settings.slub_max_order >= common::MAX_ORDER {
            settings.slub_max_order = common::MAX_ORDER - 1;
        }
        // As setup_slub_min_order does: max order is at least the min order.
        settings.slub_max_order = settings.slub_max_order.max(settings.slub_min_order);
        if settings.slub_min_order >= common::MAX_ORDER {
            return Err(SlabError::TooLarge {
                size: common::PAGE_SIZE << settings.slub_min_order,
                max: common::PAGE_SIZE << (common::MAX_ORDER - 1),
            });
        }
        if settings.slub_debug.is_none() {
            settings.slub_debug = Some(debug::env_slub_debug());
        }
        if settings.config == KernelConfig::Hardened {
            // CONFIG_SLAB_FREELIST_HARDENED brings both cache_from_obj and the codec.
            settings.freelist_hardened = true;
        }
        let seed = if settings.random_seed != 0 {
            settings.random_seed
        } else {
            clock_seed()
        };
        let topo = provider.topology();
        let mut sl = Slub {
            provider: provider.clone(),
            settings,
            instance: new_instance_id(),
            nr_cpu_ids: topo.nr_cpu_ids().max(1),
            nr_nodes: provider.nr_nodes(),
            slab_state: AtomicU8::new(SlabState::Down as u8),
            slab_mutex: SpinLock::new(SlabCaches {
                head: core::ptr::null_mut(),
            }),
            kmem_cache: core::ptr::null_mut(),
            kmem_cache_node: core::ptr::null_mut(),
            kmalloc_caches: [core::ptr::null_mut(); kmalloc_sizes::NR],
            random_state: core::sync::atomic::AtomicU64::new(seed),
            // rseq mode only when every CPU id of the machine has its own slot (a sequence on
            // CPU X commits to slot X alone), as slab-classic and the sheaves decide; else
            // the cmpxchg fast path, which any number of CPUs may share a slot under.
            rseq: settings.fastpath.resolve() == FastPath::Rseq
                && topo.nr_cpu_ids() >= common::sys::nprocs_conf(),
            slab_errors: core::sync::atomic::AtomicU64::new(0),
            config: settings.config,
            free_warnings: core::sync::atomic::AtomicU64::new(0),
        };
        bootstrap::kmem_cache_init(&mut sl)?;
        Ok(sl)
    }

    /// The settings in force.
    pub fn settings(&self) -> &SlubSettings {
        &self.settings
    }

    /// `slab_state`.
    pub fn slab_state(&self) -> SlabState {
        match self.slab_state.load(Ordering::Acquire) {
            0 => SlabState::Down,
            1 => SlabState::Partial,
            2 => SlabState::Up,
            _ => SlabState::Full,
        }
    }

    pub(crate) fn set_state(&self, st: SlabState) {
        self.slab_state.store(st as u8, Ordering::Release);
    }

    /// `get_random_long()` stand-in (splitmix64 over a seed).
    pub(crate) fn get_random_long(&self) -> usize {
        let x = self
            .random_state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as usize
    }

    /// The cache a handle names, checked: `ForeignCache` for another instance's handle or a
    /// destroyed cache.
    pub(crate) fn cache_of(&self, h: CacheHandle) -> Result<&KmemCache, SlabError> {
        if h.instance() != self.instance {
            return Err(SlabError::ForeignCache);
        }
        // A handle of this instance names provider memory that stays mapped for the life of
        // the provider, so reading the magic word is safe even for a destroyed cache; destroy
        // clears it before the structure is freed.
        // SAFETY: see above; the structure is read only if the magic says it is live.
        let s = unsafe { &*(h.ptr().as_ptr() as *const KmemCache) };
        if !s.is_live(self.instance) {
            return Err(SlabError::ForeignCache);
        }
        Ok(s)
    }

    pub(crate) fn handle_of(&self, s: *mut KmemCache) -> CacheHandle {
        // SAFETY-free: s is never null here (callers pass a created cache).
        CacheHandle::new(
            NonNull::new(s.cast::<u8>()).expect("cache pointer"),
            self.instance,
        )
    }

    /// The handle of the kmalloc cache that serves `size` (None above 8 KiB or for 0).
    pub fn kmalloc_cache(&self, size: usize) -> Option<CacheHandle> {
        let pos = common::sizes::slub_index::find_position(size)?;
        Some(self.handle_of(self.kmalloc_caches[pos]))
    }

    /// Bytes of the per-CPU and per-node structures and the slabs they hold, over every cache
    /// (the harness's `metadata` workload; see [`QueueMemory`]).
    pub fn queue_memory(&self) -> QueueMemory {
        stats::queue_memory(self)
    }

    /// The sysfs-style attributes of a cache (`/sys/kernel/slab/<cache>/…`).
    pub fn cache_attrs(&self, cache: CacheHandle) -> Result<CacheAttrs, SlabError> {
        let s = self.cache_of(cache)?;
        Ok(stats::cache_attrs(self, s))
    }

    /// Writes `min_partial` (sysfs, rw).
    pub fn set_min_partial(&self, cache: CacheHandle, v: usize) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        s.min_partial.store(v, Ordering::Relaxed);
        Ok(())
    }

    /// Writes `cpu_partial` (sysfs, rw; objects) and flushes the CPU slabs. A cache without
    /// per-CPU partials (debug flags, 2.6.32 era) accepts only 0: anything else is refused with
    /// `InvalidArgument`, where the kernel returns -EINVAL.
    pub fn set_cpu_partial(&self, cache: CacheHandle, objects: usize) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        if objects != 0 && !s.has_cpu_partial {
            return Err(SlabError::InvalidArgument(
                "cpu_partial must be 0 for a cache without per-CPU partial slabs",
            ));
        }
        cache::slub_set_cpu_partial(s, objects);
        flush_all(s);
        Ok(())
    }

    /// Writes `remote_node_defrag_ratio` (sysfs, rw; 0..=100; above: `InvalidArgument`, where
    /// the kernel returns -ERANGE).
    pub fn set_remote_node_defrag_ratio(
        &self,
        cache: CacheHandle,
        v: usize,
    ) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        if v > 100 {
            return Err(SlabError::InvalidArgument(
                "remote_node_defrag_ratio must be 0..=100",
            ));
        }
        s.remote_node_defrag_ratio.store(v * 10, Ordering::Relaxed);
        Ok(())
    }

    /// `kmem_cache_alloc_bulk`: fills `out` with objects of `cache`; returns `out.len()`, or 0
    /// when out of memory (nothing is kept then).
    pub fn kmem_cache_alloc_bulk(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        out: &mut [*mut u8],
    ) -> usize {
        let Ok(s) = self.cache_of(cache) else {
            return 0;
        };
        // SAFETY: *mut u8 and usize have the same size and alignment; the slice is ours.
        let words =
            unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<usize>(), out.len()) };
        fastpath::kmem_cache_alloc_bulk(self, s, gfp, words)
    }

    /// `kmem_cache_free_bulk`: frees every object of `objs` (null entries are skipped), in
    /// chains of objects of one slab (`build_detached_freelist`). Every object is checked first
    /// (ours, of `cache`, an object start, no duplicates among neighbours): on an error nothing
    /// is freed. The slice is reordered.
    ///
    /// # Safety
    /// The objects must be live objects of `cache`, each listed once, unused after the call.
    pub unsafe fn kmem_cache_free_bulk(
        &self,
        cache: CacheHandle,
        objs: &mut [*mut u8],
    ) -> Result<(), SlabError> {
        if cache.instance() != self.instance {
            return Err(SlabError::ForeignCache);
        }
        let s = self.cache_of(cache)?;
        for &o in objs.iter() {
            if o.is_null() {
                continue;
            }
            let (_, owner) = kmalloc::virt_to_slab(self, o as usize)?;
            if !core::ptr::eq(owner, s) {
                return Err(SlabError::WrongCache(o as usize));
            }
        }
        // SAFETY: *mut u8 and usize have the same size and alignment.
        let words = unsafe {
            core::slice::from_raw_parts_mut(objs.as_mut_ptr().cast::<usize>(), objs.len())
        };
        // SAFETY: checked above; liveness and uniqueness are the caller's promise.
        unsafe { fastpath::kmem_cache_free_bulk(self, s, words) };
        Ok(())
    }

    /// One stat item of one cache (summed over CPUs; 0 with stats off).
    pub fn cache_stat(&self, cache: CacheHandle, item: StatItem) -> Result<u64, SlabError> {
        let s = self.cache_of(cache)?;
        Ok(s.stats.sum(item as usize))
    }

    /// Clears one cache's counters (writing 0 to a stat file).
    pub fn clear_stats(&self, cache: CacheHandle) -> Result<(), SlabError> {
        self.cache_of(cache)?.stats.clear();
        Ok(())
    }

    /// `validate` of one cache (`validate_slab_cache`): flushes, walks every listed slab.
    pub fn validate_cache(&self, cache: CacheHandle) -> Result<(), String> {
        let s = self.cache_of(cache).map_err(|e| e.to_string())?;
        let r = validate::validate_slab_cache(self, s).map_err(|v| v.in_named(s.name.as_str()));
        // Formatted with no lock held.
        r.map_err(|v| v.to_string())
    }

    /// `slab_errors` of this instance: how many `slub_debug` reports (errors and fixes) were
    /// made, as the kernel's kunit resource counts them.
    pub fn slab_errors(&self) -> u64 {
        self.slab_errors.load(Ordering::Relaxed)
    }

    /// Resets [`Slub::slab_errors`] (and every cache's counter) to 0.
    pub fn reset_slab_errors(&self) {
        self.slab_errors.store(0, Ordering::Relaxed);
        self.for_each_cache(|s| s.errors.store(0, Ordering::Relaxed));
    }

    /// The `slub_debug` report count of one cache.
    pub fn cache_errors(&self, cache: CacheHandle) -> Result<u64, SlabError> {
        Ok(self.cache_of(cache)?.errors.load(Ordering::Relaxed))
    }

    /// The flags a cache ended up with (after `slub_debug=`), and its free pointer offset.
    pub fn cache_debug_layout(&self, cache: CacheHandle) -> Result<(SlabFlags, usize), SlabError> {
        let s = self.cache_of(cache)?;
        Ok((s.flags, s.offset))
    }

    /// `kmalloc_trace(s, gfp, size)`: an object of a (kmalloc) cache for a `size`-byte request;
    /// with orig-size tracking the bytes after `size` are the "kmalloc Redzone".
    pub fn kmalloc_trace(&self, cache: CacheHandle, gfp: Gfp, size: usize) -> Option<NonNull<u8>> {
        let s = self.cache_of(cache).ok()?;
        if size > s.object_size.load(Ordering::Relaxed) {
            return None;
        }
        let p = fastpath::slab_alloc_node(self, s, gfp, NUMA_NO_NODE)?;
        if s.debug {
            debug::kmalloc_debug_orig_size(s, p.as_ptr() as usize, size);
        }
        Some(p)
    }

    /// The `tid` of one CPU slot of a cache (tests, introspection).
    pub fn cpu_tid(&self, cache: CacheHandle, cpu: usize) -> Result<usize, SlabError> {
        let s = self.cache_of(cache)?;
        Ok(s.cpu_slab.get(cpu).tid())
    }

    /// The fast path in use (`Rseq` or `Cmpxchg`, never `Auto`).
    pub fn fastpath(&self) -> FastPath {
        if self.rseq {
            FastPath::Rseq
        } else {
            FastPath::Cmpxchg
        }
    }

    /// Number of CPU slots (`nr_cpu_ids`).
    pub fn nr_cpu_ids(&self) -> usize {
        self.nr_cpu_ids
    }

    /// Flushes every CPU slab and per-CPU partial list of a cache (`flush_all`), and with
    /// sheaves every CPU's `main` and `spare` (`pcs_flush_all`; barns stay).
    pub fn flush_all(&self, cache: CacheHandle) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        // Sheaves first: their objects may land on CPU slabs, which are flushed next.
        sheaf::pcs_flush_all(self, s);
        flush_all(s);
        Ok(())
    }

    /// The slabinfo row of one cache.
    pub fn cache_slabinfo(&self, cache: CacheHandle) -> Result<SlabInfo, SlabError> {
        Ok(validate::get_slabinfo(self, self.cache_of(cache)?))
    }

    // ---- percpu sheaves (`sheaf.rs`; eras 6.18, 7.0) ----

    /// `kmem_cache_create` with `struct kmem_cache_args` (`__kmem_cache_create_args`): in era
    /// 6.18 a non-zero `sheaf_capacity` gives the cache percpu sheaves (and makes it
    /// unmergeable); in 7.0 it raises the computed capacity; earlier eras ignore it.
    pub fn kmem_cache_create_args(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
        args: KmemCacheArgs,
    ) -> Result<CacheHandle, SlabError> {
        let cname = check_cache_args(name, size, align, KMALLOC_MAX_SIZE)?;
        if args.sheaf_capacity > u32::MAX as usize / 2 {
            return Err(SlabError::InvalidArgument("sheaf_capacity too large"));
        }
        let s = merge::kmem_cache_create_args(
            self,
            cname,
            size,
            align,
            flags,
            ctor,
            args.sheaf_capacity,
        )?;
        Ok(self.handle_of(s))
    }

    /// The sheaf fast path of a cache: `Some(Rseq)` (one restartable sequence on the CPU's
    /// main sheaf), `Some(Cmpxchg)` (the slot lock: one locked instruction), `None` without
    /// sheaves.
    pub fn sheaf_fastpath(&self, cache: CacheHandle) -> Result<Option<FastPath>, SlabError> {
        let s = self.cache_of(cache)?;
        Ok((sheaf::sheaf_capacity(s) != 0).then(|| {
            if sheaf::rseq_mode(s) {
                FastPath::Rseq
            } else {
                FastPath::Cmpxchg
            }
        }))
    }

    /// Objects and sheaves held by a cache's percpu sheaves and barns (all zero without).
    pub fn sheaf_census(&self, cache: CacheHandle) -> Result<SheafCensus, SlabError> {
        Ok(sheaf::sheaf_census(self, self.cache_of(cache)?))
    }

    /// `kmem_cache_prefill_sheaf`: a sheaf with at least `size` objects of `cache` for the
    /// caller alone (`None` when out of memory or `size == 0`). Above the cache's
    /// `sheaf_capacity` (any size for a cache without sheaves) it is an "oversize" sheaf.
    pub fn kmem_cache_prefill_sheaf(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        size: usize,
    ) -> Option<SlabSheafHandle> {
        let s = self.cache_of(cache).ok()?;
        if size > u32::MAX as usize / 2 {
            return None;
        }
        sheaf::kmem_cache_prefill_sheaf(self, s, gfp, size)
    }

    /// `kmem_cache_alloc_from_sheaf`: an object from a prefilled sheaf; `None` once it is
    /// empty (never falls back to the cache) or for another cache's sheaf.
    pub fn kmem_cache_alloc_from_sheaf(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        sheaf: &mut SlabSheafHandle,
    ) -> Option<NonNull<u8>> {
        let s = self.cache_of(cache).ok()?;
        sheaf::kmem_cache_alloc_from_sheaf(self, s, gfp, sheaf)
    }

    /// `kmem_cache_refill_sheaf`: at least `size` objects in the sheaf (it may be replaced by
    /// an oversize one).
    pub fn kmem_cache_refill_sheaf(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        sheaf: &mut SlabSheafHandle,
        size: usize,
    ) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        if size > u32::MAX as usize / 2 {
            return Err(SlabError::InvalidArgument("sheaf size too large"));
        }
        sheaf::kmem_cache_refill_sheaf(self, s, gfp, sheaf, size)
    }

    /// `kmem_cache_return_sheaf`: gives a prefilled sheaf (and the objects left in it) back.
    /// `Err(ForeignCache)` (and nothing done) for a sheaf of another cache or instance.
    pub fn kmem_cache_return_sheaf(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        sheaf: SlabSheafHandle,
    ) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        if sheaf.instance != self.instance {
            return Err(SlabError::ForeignCache);
        }
        sheaf::kmem_cache_return_sheaf(self, s, gfp, sheaf)
    }

    /// `kmem_cache_sheaf_size`.
    pub fn kmem_cache_sheaf_size(&self, sheaf: &SlabSheafHandle) -> usize {
        sheaf.size()
    }

    /// Calls `f` for every cache (under `slab_mutex`).
    pub(crate) fn for_each_cache(&self, mut f: impl FnMut(&KmemCache)) {
        let list = self.slab_mutex.lock();
        let mut p = list.head;
        while !p.is_null() {
            // SAFETY: caches on the list are live while slab_mutex is held.
            let s = unsafe { &*p };
            f(s);
            p = s.next.load(Ordering::Relaxed);
        }
    }

    /// The handle of the cache named `name` (for the harness and tests).
    pub fn find_cache(&self, name: &str) -> Option<CacheHandle> {
        let mut found = None;
        self.for_each_cache(|s| {
            if found.is_none() && s.name.as_str() == name {
                found = Some(core::ptr::from_ref(s).cast_mut());
            }
        });
        found.map(|p| self.handle_of(p))
    }

    /// Per-item totals over all caches.
    pub fn stat_totals(&self) -> [u64; StatItem::COUNT] {
        let mut t = [0u64; StatItem::COUNT];
        self.for_each_cache(|s| {
            for (i, v) in s.stats.totals().iter().enumerate() {
                t[i] += v;
            }
        });
        t
    }
}

fn clock_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    t ^ (core::ptr::from_ref(&local) as u64).rotate_left(29) ^ 0x5bd1_e995
}

pub(crate) use slowpath::flush_all;

impl Drop for Slub {
    fn drop(&mut self) {
        bootstrap::teardown(self);
    }
}

impl SlabAllocator for Slub {
    fn name(&self) -> &'static str {
        "slub"
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
        let cname = check_cache_args(name, size, align, KMALLOC_MAX_SIZE)?;
        let s = merge::kmem_cache_create_usercopy(self, cname, size, align, flags, ctor)?;
        Ok(self.handle_of(s))
    }

    #[inline(always)]
    fn kmem_cache_alloc(&self, cache: CacheHandle, gfp: Gfp) -> Option<NonNull<u8>> {
        let s = self.cache_of(cache).ok()?;
        fastpath::slab_alloc_node(self, s, gfp, NUMA_NO_NODE)
    }

    fn kmem_cache_alloc_node(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        node: usize,
    ) -> Option<NonNull<u8>> {
        let s = self.cache_of(cache).ok()?;
        let node = if node < self.nr_nodes {
            node
        } else {
            NUMA_NO_NODE
        };
        fastpath::slab_alloc_node(self, s, gfp, node)
    }

    #[inline(always)]
    unsafe fn kmem_cache_free(
        &self,
        cache: CacheHandle,
        obj: NonNull<u8>,
    ) -> Result<(), SlabError> {
        let addr = obj.as_ptr() as usize;
        // One test of a field fixed at creation picks the configuration's free.
        match self.config {
            KernelConfig::Checked => {
                let s = self.cache_of(cache)?;
                let slab = kmalloc::cache_from_obj(self, s, addr)?;
                // SAFETY: obj is checked to be an object start of a slab of s; the caller
                // promises it is live and no longer used.
                unsafe { fastpath::slab_free(self, s, slab, addr) }
            }
            // SAFETY: forwarded contract; in these configurations it includes that `cache` is
            // a live cache of this instance (the kernel's trust).
            KernelConfig::Kernel => unsafe { kmalloc::kmem_cache_free_kernel(self, cache, addr) },
            // SAFETY: as above.
            KernelConfig::Hardened => unsafe {
                kmalloc::kmem_cache_free_hardened(self, cache, addr)
            },
        }
    }

    #[inline(always)]
    fn kmalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        kmalloc::kmalloc_node(self, size, gfp, NUMA_NO_NODE)
    }

    fn kmalloc_node(&self, size: usize, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        let node = if node < self.nr_nodes {
            node
        } else {
            NUMA_NO_NODE
        };
        kmalloc::kmalloc_node(self, size, gfp, node)
    }

    #[inline(always)]
    unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), SlabError> {
        // SAFETY: forwarded contract.
        unsafe { kmalloc::kfree(self, ptr) }
    }

    unsafe fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        kmalloc::ksize(self, ptr.as_ptr() as usize)
    }

    fn kmem_cache_shrink(&self, cache: CacheHandle) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        node::kmem_cache_shrink(self, s);
        Ok(())
    }

    unsafe fn kmem_cache_destroy(&self, cache: CacheHandle) -> Result<(), SlabError> {
        let s = self.cache_of(cache)?;
        // SAFETY: forwarded contract (nobody uses the cache any more).
        unsafe { merge::kmem_cache_destroy(self, core::ptr::from_ref(s).cast_mut()) }
    }

    /// Rows are gathered under `slab_mutex` into a stack batch and `f` runs on each batch with
    /// no lock held (`f` may allocate). Like a `/proc/slabinfo` read in pieces, a cache created
    /// or destroyed between batches may be missed or shown twice.
    fn for_each_slabinfo(&self, f: &mut dyn FnMut(&SlabInfo)) {
        const BATCH: usize = 16;
        let mut done = 0;
        loop {
            let mut rows = [None::<SlabInfo>; BATCH];
            let mut n = 0;
            let mut index = 0;
            self.for_each_cache(|s| {
                if index >= done && n < BATCH {
                    rows[n] = Some(validate::get_slabinfo(self, s));
                    n += 1;
                }
                index += 1;
            });
            rows.iter().flatten().for_each(&mut *f);
            done += n;
            if n < BATCH {
                return;
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        // Under slab_mutex, so no cache is destroyed while it is walked; the first violation is
        // formatted after slab_mutex and every list_lock are released.
        let mut result = Ok(());
        self.for_each_cache(|s| {
            if result.is_ok() {
                result =
                    validate::validate_slab_cache(self, s).map_err(|v| v.in_named(s.name.as_str()));
            }
        });
        result.map_err(|v| format!("cache {v}"))?;
        self.provider.check_invariants()
    }

    fn memory_usage(&self) -> MemoryUsage {
        MemoryUsage::from_provider(&self.provider, Owner::Slub)
    }

    fn for_each_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let t = self.stat_totals();
        for (i, name) in StatItem::NAMES.iter().enumerate() {
            f(name, t[i]);
        }
    }

    fn kernel_config(&self) -> KernelConfig {
        self.config
    }

    fn free_warnings(&self) -> u64 {
        self.free_warnings.load(Ordering::Relaxed)
    }

    fn for_each_queue_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let q = self.queue_memory();
        for (name, v) in [
            ("caches", q.caches),
            ("nr_cpus", q.nr_cpus),
            ("nr_nodes", q.nr_nodes),
            ("cpu_structs", q.cpu_structs),
            ("cpu_struct_bytes", q.cpu_struct_bytes),
            ("node_structs", q.node_structs),
            ("node_struct_bytes", q.node_struct_bytes),
            ("cache_struct_bytes", q.cache_struct_bytes),
            ("cpu_slabs", q.cpu_slabs),
            ("cpu_slab_bytes", q.cpu_slab_bytes),
            ("cpu_partial_slabs", q.cpu_partial_slabs),
            ("cpu_partial_bytes", q.cpu_partial_bytes),
            ("node_partial_slabs", q.node_partial_slabs),
            ("node_partial_bytes", q.node_partial_bytes),
            ("cpu_capacity_bytes", q.cpu_capacity_bytes),
            ("node_min_partial_bytes", q.node_min_partial_bytes),
        ] {
            f(name, v as u64);
        }
    }

    fn settings_summary(&self) -> String {
        let s = &self.settings;
        format!(
            "config={} era={} slub_min_order={} slub_max_order={} slub_min_objects={} slab_nomerge={} cpu_partial={} min_partial={} hardened={} stats={} remote_node_defrag_ratio={} slub_debug={:?} init_on_alloc={} init_on_free={} fastpath={}",
            self.config.name(),
            s.era.name(),
            s.slub_min_order,
            s.slub_max_order,
            s.slub_min_objects,
            s.slab_nomerge,
            s.cpu_partial.map_or("auto".to_string(), |v| v.to_string()),
            s.min_partial.map_or("auto".to_string(), |v| v.to_string()),
            s.freelist_hardened,
            s.stats,
            s.remote_node_defrag_ratio,
            s.slub_debug.unwrap_or(SlubDebug::OFF),
            u8::from(s.init_on_alloc),
            u8::from(s.init_on_free),
            self.fastpath().name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_options_parse() {
        let s = SlubSettings::from_boot_options(
            "slub_max_order=2,slub_min_objects=16 slab_nomerge era=2.6.32 stats cpu_partial=0",
        )
        .unwrap();
        assert_eq!(s.slub_max_order, 2);
        assert_eq!(s.slub_min_objects, 16);
        assert!(s.slab_nomerge && s.stats);
        assert_eq!(s.era, Era::V2_6_32);
        assert_eq!(s.cpu_partial, Some(0));
        assert_eq!(
            SlubSettings::from_boot_options("").unwrap(),
            SlubSettings::default()
        );
        assert!(SlubSettings::from_boot_options("slub_max_order=x").is_err());
        assert!(SlubSettings::from_boot_options("era=3.0").is_err());
        assert!(SlubSettings::from_boot_options("bogus").is_err());
    }
}

/// Heap allocations under an allocator lock abort the unit-test binary (debug builds).
#[cfg(test)]
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;
