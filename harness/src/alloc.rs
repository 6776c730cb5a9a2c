//! The allocators under test, behind one small trait so every workload drives them the same way.
//!
//! Workloads are generic over [`BenchAllocator`] (monomorphised per allocator, no virtual call in
//! the timed loops). Slab allocators are driven through the common API — `kmalloc`/`kfree` and a
//! dedicated `kmem_cache` — and baselines through `malloc`/`free` of the same sizes ("caches" of a
//! baseline are just a remembered size).

use common::api::{SlabAllocator, SlabFlags};
use common::{CacheHandle, CacheName, Gfp};
use std::alloc::{GlobalAlloc, Layout};
use std::ptr::NonNull;

/// A cache made through [`BenchAllocator::create_cache`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum BenchCache {
    /// A kmem_cache of a slab allocator: handle, object size, name.
    Slab(CacheHandle, usize, CacheName),
    /// A baseline: `malloc` of this size.
    Size(usize),
}

impl BenchCache {
    /// Object size.
    pub(crate) fn size(self) -> usize {
        match self {
            BenchCache::Slab(_, s, _) | BenchCache::Size(s) => s,
        }
    }
}

/// How held memory was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HeldMeasure {
    /// Pages the allocator holds from the page provider (exact, includes its metadata).
    Provider,
    /// glibc's own count of memory it holds from the OS: `mallinfo2()` `arena + hblkhd`
    /// (delta over the workload).
    Mallinfo2,
    /// No exact count of its own (mimalloc's commit counter is compiled out of its release
    /// build; jemalloc's needs jemalloc-ctl): the value is the process RSS, and the memory
    /// workload writes only its `smaps_anon` rows for such an allocator.
    Rss,
}

impl HeldMeasure {
    /// Column value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            HeldMeasure::Provider => "provider",
            HeldMeasure::Mallinfo2 => "mallinfo2",
            HeldMeasure::Rss => "rss",
        }
    }
}

/// What a workload needs from an allocator.
pub(crate) trait BenchAllocator: Send + Sync {
    /// Registry name.
    fn name(&self) -> &'static str;
    /// `kmalloc` / `malloc`.
    fn alloc(&self, size: usize) -> *mut u8;
    /// `kfree` / `free`.
    ///
    /// # Safety
    /// `p` came from `alloc` of this allocator and is not used again.
    unsafe fn free(&self, p: *mut u8);
    /// `kmem_cache_create`.
    /// `kmem_cache_create` (cache-line aligned, as kernel callers mostly ask); `no_merge` keeps
    /// SLUB from aliasing it to another cache so its slabinfo row is its own.
    fn create_cache(&self, name: &str, size: usize, no_merge: bool) -> Result<BenchCache, String> {
        let _ = (name, no_merge);
        Ok(BenchCache::Size(size))
    }
    /// `kmem_cache_alloc`.
    fn cache_alloc(&self, c: BenchCache) -> *mut u8 {
        self.alloc(c.size())
    }
    /// `kmem_cache_free`.
    ///
    /// # Safety
    /// `p` came from `cache_alloc(c)` and is not used again.
    unsafe fn cache_free(&self, c: BenchCache, p: *mut u8) {
        let _ = c;
        // SAFETY: forwarded.
        unsafe { self.free(p) }
    }
    /// `kmem_cache_shrink` (baselines: give memory back the way they can).
    fn shrink(&self, c: BenchCache) {
        let _ = c;
    }
    /// `kmem_cache_destroy`.
    fn destroy_cache(&self, c: BenchCache) -> Result<(), String> {
        let _ = c;
        Ok(())
    }
    /// Objects the allocator counts as in use in the cache (slabinfo `active_objs`) and the object
    /// stride, if it knows.
    fn cache_active_objects(&self, c: BenchCache) -> Option<(usize, usize)> {
        let _ = c;
        None
    }
    /// Bytes held now and how that was measured.
    fn held_bytes(&self) -> (usize, HeldMeasure);
    /// Settings in force, for the CSV.
    fn settings(&self) -> String;
    /// Statistics counters.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// Consistency walk (slab allocators).
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
    /// `kmem_cache_alloc_node` (baselines: `cache_alloc`, their placement is their own).
    fn cache_alloc_node(&self, c: BenchCache, node: usize) -> *mut u8 {
        let _ = node;
        self.cache_alloc(c)
    }
    /// Sizes of the object queues and per-CPU/per-node structures (slab allocators; see
    /// `SlabAllocator::for_each_queue_stat`).
    fn queue_stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The census of objects `c` holds in per-CPU and per-node caches (slab allocators; see
    /// [`CachesCensus`]). Empty for baselines.
    fn census(&self, c: BenchCache) -> Vec<CensusPart> {
        let _ = c;
        Vec::new()
    }
}

/// One kind of per-CPU or per-node object cache in a census: objects allocated on their slabs
/// but free for users, held there now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CensusPart {
    /// `cpu_array`, `shared_array`, `alien_array` (SLAB); `cpu_slab`, `cpu_partial` (SLUB
    /// 6.4/6.18); `sheaf_main`, `sheaf_spare`, `barn_full`, `barn_empty` (sheaves); `cpu_max`
    /// (the most one CPU holds, where known).
    pub part: &'static str,
    /// Objects held.
    pub objects: u64,
    /// Arrays, slabs or sheaves holding them (`sheaf_main`: every sheaf the CPUs hold, main and
    /// spare; `barn_empty`: empty sheaves, 0 objects).
    pub containers: u64,
}

/// A slab allocator's per-cache census (`slub::Slub::cache_census`,
/// `slab_classic::Slab::queue_census`).
pub(crate) trait CachesCensus {
    /// The parts for cache `h` (empty if the handle is refused).
    fn census_of(&self, h: CacheHandle) -> Vec<CensusPart>;
}

fn part(part: &'static str, objects: usize, containers: usize) -> CensusPart {
    CensusPart {
        part,
        objects: objects as u64,
        containers: containers as u64,
    }
}

impl CachesCensus for slub::Slub {
    fn census_of(&self, h: CacheHandle) -> Vec<CensusPart> {
        let Ok(k) = self.cache_census(h) else {
            return Vec::new();
        };
        let sh = k.sheaves;
        let mut v = Vec::new();
        if sh.sheaf_capacity == 0 || k.cpu_slabs + k.cpu_partial_slabs > 0 {
            v.push(part("cpu_slab", k.cpu_slab_objects, k.cpu_slabs));
            v.push(part(
                "cpu_partial",
                k.cpu_partial_objects,
                k.cpu_partial_slabs,
            ));
        }
        if sh.sheaf_capacity > 0 {
            v.push(part("sheaf_main", sh.cpu_main_objects, sh.cpu_sheaves));
            v.push(part("sheaf_spare", sh.cpu_spare_objects, 0));
            v.push(part("barn_full", sh.barn_objects, sh.barn_full));
            v.push(part("barn_empty", 0, sh.barn_empty));
        } else {
            v.push(part("cpu_max", k.cpu_max_objects, 0));
        }
        v
    }
}

impl CachesCensus for slab_classic::Slab {
    fn census_of(&self, h: CacheHandle) -> Vec<CensusPart> {
        let Ok(k) = self.queue_census(h) else {
            return Vec::new();
        };
        vec![
            part("cpu_array", k.cpu_objects, k.cpu_arrays),
            part("shared_array", k.shared_objects, k.shared_arrays),
            part("alien_array", k.alien_objects, k.alien_arrays),
            part("cpu_max", k.cpu_max_objects, 0),
        ]
    }
}

/// A slab allocator through the common API.
pub(crate) struct SlabBench<A: SlabAllocator + CachesCensus> {
    /// The instance.
    pub inner: A,
    name: &'static str,
}

impl<A: SlabAllocator + CachesCensus> SlabBench<A> {
    /// Wraps an instance.
    pub(crate) fn new(inner: A, name: &'static str) -> Self {
        Self { inner, name }
    }
}

#[inline(always)]
fn raw(p: Option<NonNull<u8>>) -> *mut u8 {
    p.map_or(std::ptr::null_mut(), NonNull::as_ptr)
}

impl<A: SlabAllocator + CachesCensus> BenchAllocator for SlabBench<A> {
    fn name(&self) -> &'static str {
        self.name
    }
    #[inline(always)]
    fn alloc(&self, size: usize) -> *mut u8 {
        raw(self.inner.kmalloc(size, Gfp::KERNEL))
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.inner.kfree(p) };
        debug_assert!(r.is_ok(), "kfree: {r:?}");
    }
    fn create_cache(&self, name: &str, size: usize, no_merge: bool) -> Result<BenchCache, String> {
        let flags = if no_merge {
            SlabFlags::HWCACHE_ALIGN | SlabFlags::NO_MERGE
        } else {
            SlabFlags::HWCACHE_ALIGN
        };
        self.inner
            .kmem_cache_create(name, size, 0, flags, None)
            .map(|h| BenchCache::Slab(h, size, CacheName::new(name).expect("name checked")))
            .map_err(|e| e.to_string())
    }
    #[inline(always)]
    fn cache_alloc(&self, c: BenchCache) -> *mut u8 {
        match c {
            BenchCache::Slab(h, _, _) => raw(self.inner.kmem_cache_alloc(h, Gfp::KERNEL)),
            BenchCache::Size(s) => self.alloc(s),
        }
    }
    #[inline(always)]
    unsafe fn cache_free(&self, c: BenchCache, p: *mut u8) {
        match (c, NonNull::new(p)) {
            (BenchCache::Slab(h, _, _), Some(p)) => {
                // SAFETY: forwarded from the caller.
                let r = unsafe { self.inner.kmem_cache_free(h, p) };
                debug_assert!(r.is_ok(), "kmem_cache_free: {r:?}");
            }
            // SAFETY: forwarded from the caller.
            _ => unsafe { self.free(p) },
        }
    }
    fn shrink(&self, c: BenchCache) {
        if let BenchCache::Slab(h, _, _) = c {
            let _ = self.inner.kmem_cache_shrink(h);
        }
    }
    fn destroy_cache(&self, c: BenchCache) -> Result<(), String> {
        match c {
            BenchCache::Slab(h, _, _) => {
                // SAFETY: workloads destroy a cache only after all their threads are done
                // with it.
                unsafe { self.inner.kmem_cache_destroy(h) }.map_err(|e| e.to_string())
            }
            BenchCache::Size(_) => Ok(()),
        }
    }
    fn cache_active_objects(&self, c: BenchCache) -> Option<(usize, usize)> {
        let BenchCache::Slab(_, _, name) = c else {
            return None;
        };
        let mut found = None;
        self.inner.for_each_slabinfo(&mut |r| {
            if r.name == name {
                found = Some((r.active_objs, r.objsize));
            }
        });
        found
    }
    fn held_bytes(&self) -> (usize, HeldMeasure) {
        (self.inner.memory_usage().bytes(), HeldMeasure::Provider)
    }
    fn settings(&self) -> String {
        self.inner.settings_summary()
    }
    fn stats(&self) -> Vec<(&'static str, u64)> {
        let mut v = Vec::new();
        self.inner.for_each_stat(&mut |n, c| v.push((n, c)));
        v
    }
    fn validate(&self) -> Result<(), String> {
        self.inner.validate()
    }
    fn cache_alloc_node(&self, c: BenchCache, node: usize) -> *mut u8 {
        match c {
            BenchCache::Slab(h, _, _) => {
                raw(self.inner.kmem_cache_alloc_node(h, Gfp::KERNEL, node))
            }
            BenchCache::Size(s) => raw(self.inner.kmalloc_node(s, Gfp::KERNEL, node)),
        }
    }
    fn queue_stats(&self) -> Vec<(&'static str, u64)> {
        let mut v = Vec::new();
        self.inner.for_each_queue_stat(&mut |n, c| v.push((n, c)));
        v
    }
    fn census(&self, c: BenchCache) -> Vec<CensusPart> {
        match c {
            BenchCache::Slab(h, _, _) => self.inner.census_of(h),
            BenchCache::Size(_) => Vec::new(),
        }
    }
}

/// Resident set size of this process (`/proc/self/statm`), in bytes.
fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
        })
        .map_or(0, |pages| pages * common::PAGE_SIZE)
}

/// glibc's malloc.
pub(crate) struct System;

impl BenchAllocator for System {
    fn name(&self) -> &'static str {
        "system"
    }
    #[inline(always)]
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: malloc has no preconditions.
        unsafe { libc::malloc(size).cast() }
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: p came from malloc (caller's contract).
        unsafe { libc::free(p.cast()) }
    }
    fn shrink(&self, _c: BenchCache) {
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }
    fn held_bytes(&self) -> (usize, HeldMeasure) {
        // SAFETY: mallinfo2 has no preconditions.
        let mi = unsafe { libc::mallinfo2() };
        (mi.arena + mi.hblkhd, HeldMeasure::Mallinfo2)
    }
    fn settings(&self) -> String {
        "glibc malloc defaults".into()
    }
}

/// mimalloc (the `mimalloc` crate), called directly (not as the global allocator).
pub(crate) struct Mimalloc;

const MI_ALIGN: usize = 8;

impl BenchAllocator for Mimalloc {
    fn name(&self) -> &'static str {
        "mimalloc"
    }
    #[inline(always)]
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: size > 0 in every workload and MI_ALIGN is a power of two.
        unsafe {
            mimalloc::MiMalloc.alloc(Layout::from_size_align_unchecked(size.max(1), MI_ALIGN))
        }
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: p came from MiMalloc.alloc; mimalloc's dealloc ignores the layout's size
        // (mi_free), so any layout with the same alignment is accepted.
        unsafe { mimalloc::MiMalloc.dealloc(p, Layout::from_size_align_unchecked(1, MI_ALIGN)) }
    }
    fn shrink(&self, _c: BenchCache) {
        // SAFETY: mi_collect has no preconditions.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
    fn held_bytes(&self) -> (usize, HeldMeasure) {
        (rss_bytes(), HeldMeasure::Rss)
    }
    fn settings(&self) -> String {
        "mimalloc defaults".into()
    }
}

/// jemalloc (feature `jemalloc`, `tikv-jemalloc-sys`: its prefixed malloc/free, not the process's).
#[cfg(feature = "jemalloc")]
pub(crate) struct Jemalloc;

#[cfg(feature = "jemalloc")]
impl BenchAllocator for Jemalloc {
    fn name(&self) -> &'static str {
        "jemalloc"
    }
    #[inline(always)]
    fn alloc(&self, size: usize) -> *mut u8 {
        // SAFETY: jemalloc's malloc has no preconditions.
        unsafe { tikv_jemalloc_sys::malloc(size).cast() }
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: p came from jemalloc's malloc (caller's contract).
        unsafe { tikv_jemalloc_sys::free(p.cast()) }
    }
    fn held_bytes(&self) -> (usize, HeldMeasure) {
        // Process RSS from /proc/self/statm (jemalloc's own counters need jemalloc-ctl).
        let pages = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<usize>().ok())
            })
            .unwrap_or(0);
        (pages * common::PAGE_SIZE, HeldMeasure::Rss)
    }
    fn settings(&self) -> String {
        "jemalloc defaults".into()
    }
}
