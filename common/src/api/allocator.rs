//! The [`SlabAllocator`] trait both allocators implement.

use super::config::KernelConfig;
use super::error::SlabError;
use super::flags::{Ctor, SlabFlags};
use super::handle::CacheHandle;
use super::slabinfo::{MemoryUsage, SlabInfo};
use crate::provider::{Gfp, PageProvider};
use core::ptr::NonNull;

/// What SLAB and SLUB both provide. See the module documentation for the error contract.
pub trait SlabAllocator: Send + Sync {
    /// Short name ("slab", "slub").
    fn name(&self) -> &'static str;

    /// The page provider every byte of this allocator comes from.
    fn provider(&self) -> &PageProvider;

    /// `kmem_cache_create`.
    fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<CacheHandle, SlabError>;

    /// `kmem_cache_alloc`: an object, or `None` when out of memory.
    fn kmem_cache_alloc(&self, cache: CacheHandle, gfp: Gfp) -> Option<NonNull<u8>>;

    /// `kmem_cache_alloc_node`: an object from `node`'s memory (`None` when out of memory).
    fn kmem_cache_alloc_node(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        node: usize,
    ) -> Option<NonNull<u8>>;

    /// `kmem_cache_free`.
    ///
    /// # Safety
    /// `obj` must not be used after this call; it should be a live object of `cache` (what can be
    /// checked is checked and reported as an error).
    unsafe fn kmem_cache_free(&self, cache: CacheHandle, obj: NonNull<u8>)
        -> Result<(), SlabError>;

    /// `kmalloc`: `size` bytes, or `None` (size 0 or too large also give `None`).
    fn kmalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>>;

    /// `kmalloc_node`.
    fn kmalloc_node(&self, size: usize, gfp: Gfp, node: usize) -> Option<NonNull<u8>>;

    /// `kfree` (null is a no-op).
    ///
    /// # Safety
    /// As [`SlabAllocator::kmem_cache_free`].
    unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), SlabError>;

    /// `ksize`: the usable size of a kmalloc-ed object.
    ///
    /// # Safety
    /// `ptr` must be a live object of this allocator (checked where possible).
    unsafe fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError>;

    /// `kmem_cache_shrink`: give back every free slab the cache can spare.
    fn kmem_cache_shrink(&self, cache: CacheHandle) -> Result<(), SlabError>;

    /// `kmem_cache_destroy`: refused with [`SlabError::Busy`] if objects are still in use.
    ///
    /// # Safety
    /// No thread may use `cache` during or after the call.
    unsafe fn kmem_cache_destroy(&self, cache: CacheHandle) -> Result<(), SlabError>;

    /// Calls `f` with the slabinfo row of every cache (no allocation on the way).
    fn for_each_slabinfo(&self, f: &mut dyn FnMut(&SlabInfo));

    /// Walks every slab of every cache and cross-checks the counts (SLAB's `check_slabp`,
    /// SLUB's `validate_slab_cache`); a description of the first inconsistency.
    fn validate(&self) -> Result<(), String>;

    /// `/proc/slabinfo` rows, collected.
    fn slabinfo(&self) -> Vec<SlabInfo> {
        let mut v = Vec::new();
        self.for_each_slabinfo(&mut |r| v.push(*r));
        v
    }

    /// Pages held, from the provider's accounting.
    fn memory_usage(&self) -> MemoryUsage;

    /// Calls `f` with every statistics counter (name, value summed over CPUs and caches), e.g.
    /// SLUB's `stat_item`s or SLAB's `STATS` counters. Default: none.
    fn for_each_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let _ = f;
    }

    /// The kernel configuration this instance was created in. Default: `Checked`.
    fn kernel_config(&self) -> KernelConfig {
        KernelConfig::Checked
    }

    /// How many `cache_from_obj` warnings (a free naming the wrong cache, or a pointer that is
    /// not on a slab page) a `Hardened` instance has counted. Default: 0.
    fn free_warnings(&self) -> u64 {
        0
    }

    /// Calls `f` with the size of the allocator's object queues and per-CPU/per-node structures
    /// (name, value; names ending in `bytes` are bytes, the others counts), summed over its
    /// caches: SLAB's per-CPU, shared and alien arrays, SLUB's `kmem_cache_cpu`/`kmem_cache_node`
    /// and the slabs they hold. The harness's `metadata` workload reports them. Default: none.
    fn for_each_queue_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        let _ = f;
    }

    /// A one-line description of the settings in force (tunables, orders, era, debug flags),
    /// recorded with every measurement. Default: empty.
    fn settings_summary(&self) -> String {
        String::new()
    }
}
