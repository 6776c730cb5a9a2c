//! The API both allocators implement, so the harness, the tests and the `GlobalAlloc` adapter
//! drive SLAB and SLUB the same way.
//!
//! An allocator is an *instance* (tests build many side by side, each on its own or a shared
//! [`PageProvider`]). Caches are named by an opaque [`CacheHandle`] that carries the id of the
//! instance that made it, so a handle given to the wrong instance is refused with
//! [`SlabError::ForeignCache`] instead of being dereferenced.
//!
//! Allocation returns `None` when the page provider cannot supply memory (the kernel's NULL);
//! frees return `Err` for input that is provably wrong (a pointer outside the allocator, into the
//! wrong cache, not at an object's start, or — in debug modes — a double free). Frees stay
//! `unsafe`: a pointer that *is* a live object of ours but still in use elsewhere cannot be
//! detected.
//!
//! That error contract is the `checked` [`KernelConfig`], the default. An instance created in the
//! `kernel` or `hardened` configuration does what the kernel does instead (see [`KernelConfig`]):
//! there a bad pointer is the caller's undefined behaviour, as in the kernel.

use crate::page::Owner;
use crate::provider::{Gfp, PageProvider, MAX_BLOCK_BYTES, PAGE_SIZE};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

/// Which kernel configuration an allocator instance imitates on its free paths (issue 15),
/// chosen once at creation, like a static key: the fast paths of one configuration carry no test
/// of another.
///
/// | | `kmem_cache_free(s, x)` | `kfree(x)` | SLUB free pointers |
/// |---|---|---|---|
/// | `Kernel` | trusts `s` and `x` (no ownership, wrong-cache or object-start test) | the cache from `x`'s page, unchecked | plain |
/// | `Hardened` | `cache_from_obj`: compares `virt_to_cache(x)` with `s`; on a mismatch counts a warning and frees into the real cache; not a slab page: warning, nothing freed (`Err`) | as `Kernel` | XOR-encoded |
/// | `Checked` | refuses foreign, wrong-cache and interior pointers with an error | the same tests | as set |
///
/// Debug modes (`slub_debug`, `CONFIG_DEBUG_SLAB`) check in every configuration. `Kernel` and
/// `Hardened` make a bad pointer undefined behaviour, exactly as in the kernel: never the
/// default of the API or of the preload library.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KernelConfig {
    /// A kernel without `CONFIG_SLAB_FREELIST_HARDENED`: frees trust their arguments.
    Kernel,
    /// What distributions ship (6.4 with `CONFIG_SLAB_FREELIST_HARDENED=y`).
    Hardened,
    /// slabworks' own: every provable error refused with an error. The default.
    #[default]
    Checked,
}

impl KernelConfig {
    /// Every configuration, in the order the harness reports them.
    pub const ALL: [KernelConfig; 3] = [
        KernelConfig::Kernel,
        KernelConfig::Hardened,
        KernelConfig::Checked,
    ];

    /// The settings spelling (`config=kernel|hardened|checked`).
    pub fn name(self) -> &'static str {
        match self {
            KernelConfig::Kernel => "kernel",
            KernelConfig::Hardened => "hardened",
            KernelConfig::Checked => "checked",
        }
    }

    /// Parses [`KernelConfig::name`]'s spelling.
    pub fn parse(s: &str) -> Option<KernelConfig> {
        Self::ALL.into_iter().find(|c| c.name() == s)
    }
}

/// A constructor run on every object when its slab is created (`void (*ctor)(void *)`).
pub type Ctor = unsafe fn(*mut u8);

/// Cache creation flags, with the kernel's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct SlabFlags(pub u32);

impl SlabFlags {
    /// No flags.
    pub const NONE: SlabFlags = SlabFlags(0);
    /// `SLAB_CONSISTENCY_CHECKS` (2.6.32: `SLAB_DEBUG_FREE`): extra checks on free (`F`).
    pub const CONSISTENCY_CHECKS: SlabFlags = SlabFlags(1 << 0);
    /// `SLAB_RED_ZONE` (`Z`).
    pub const RED_ZONE: SlabFlags = SlabFlags(1 << 1);
    /// `SLAB_POISON` (`P`).
    pub const POISON: SlabFlags = SlabFlags(1 << 2);
    /// `SLAB_STORE_USER` (`U`).
    pub const STORE_USER: SlabFlags = SlabFlags(1 << 3);
    /// `SLAB_TRACE` (`T`).
    pub const TRACE: SlabFlags = SlabFlags(1 << 4);
    /// `SLAB_HWCACHE_ALIGN`: align objects on cache lines.
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(1 << 5);
    /// `SLAB_CACHE_DMA`.
    pub const CACHE_DMA: SlabFlags = SlabFlags(1 << 6);
    /// `SLAB_RECLAIM_ACCOUNT`.
    pub const RECLAIM_ACCOUNT: SlabFlags = SlabFlags(1 << 7);
    /// `SLAB_PANIC`: creation failure is fatal (here: still an `Err`, the caller decides).
    pub const PANIC: SlabFlags = SlabFlags(1 << 8);
    /// `SLAB_TYPESAFE_BY_RCU` (2.6.32: `SLAB_DESTROY_BY_RCU`).
    pub const TYPESAFE_BY_RCU: SlabFlags = SlabFlags(1 << 9);
    /// `SLAB_MEM_SPREAD`.
    pub const MEM_SPREAD: SlabFlags = SlabFlags(1 << 10);
    /// `SLAB_NOLEAKTRACE`.
    pub const NOLEAKTRACE: SlabFlags = SlabFlags(1 << 11);
    /// `SLAB_ACCOUNT`.
    pub const ACCOUNT: SlabFlags = SlabFlags(1 << 12);
    /// `SLAB_KMALLOC`: the cache is one of the kmalloc caches.
    pub const KMALLOC: SlabFlags = SlabFlags(1 << 13);
    /// `SLAB_NO_MERGE`: never merge this cache with another (6.4's `SLAB_NO_MERGE`).
    pub const NO_MERGE: SlabFlags = SlabFlags(1 << 14);

    /// Whether all bits of `other` are set.
    pub const fn contains(self, other: SlabFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: SlabFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// `self` without the bits of `other`.
    pub const fn without(self, other: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 & !other.0)
    }
    /// `self` with the bits of `other`.
    pub const fn with(self, other: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | other.0)
    }
}

impl core::ops::BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, rhs: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for SlabFlags {
    fn bitor_assign(&mut self, rhs: SlabFlags) {
        self.0 |= rhs.0;
    }
}

/// Errors of the slab API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// `kmem_cache_create` with size 0.
    ZeroSize,
    /// A size above what the allocator can serve.
    TooLarge {
        /// Requested.
        size: usize,
        /// Largest possible.
        max: usize,
    },
    /// An alignment that is not a power of two, or larger than a page.
    BadAlign(usize),
    /// A cache name that is empty, too long (over [`CacheName::CAPACITY`] bytes) or not
    /// printable.
    BadName,
    /// The page provider could not supply memory.
    NoMemory,
    /// The address is not memory of this allocator.
    NotOurs(usize),
    /// The address is an object of another cache than the one named.
    WrongCache(usize),
    /// The address lies inside an object but not at its start.
    NotObjectStart(usize),
    /// The object is already free (detected in debug modes).
    DoubleFree(usize),
    /// A cache handle from another allocator instance, or of a destroyed cache.
    ForeignCache,
    /// `kmem_cache_destroy` of a cache that still has objects in use.
    Busy {
        /// Objects still allocated.
        objects: usize,
    },
    /// Debug checks found corrupted memory at this address.
    Corrupted(usize),
    /// A setting or tunable outside what the allocator accepts (what the kernel answers with
    /// `-EINVAL`); the text says which rule was broken.
    InvalidArgument(&'static str),
    /// `kmem_cache_destroy` of a cache the allocator itself owns (a kmalloc cache or the cache
    /// of `kmem_cache` objects), which is never destroyed.
    BootCache,
    /// A node index at or above the allocator's node count.
    NoSuchNode(usize),
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlabError::ZeroSize => write!(f, "object size 0 is not allowed"),
            SlabError::TooLarge { size, max } => {
                write!(f, "size {size} is larger than the largest possible ({max})")
            }
            SlabError::BadAlign(a) => write!(
                f,
                "alignment {a} is not a power of two no larger than the page size"
            ),
            SlabError::BadName => write!(
                f,
                "cache name must be 1..={} printable ASCII bytes",
                CacheName::CAPACITY
            ),
            SlabError::NoMemory => write!(f, "out of memory: the page provider refused"),
            SlabError::NotOurs(a) => {
                write!(f, "address {a:#x} was not allocated by this allocator")
            }
            SlabError::WrongCache(a) => write!(f, "object {a:#x} belongs to a different cache"),
            SlabError::NotObjectStart(a) => {
                write!(f, "address {a:#x} is inside an object, not at its start")
            }
            SlabError::DoubleFree(a) => write!(f, "double free of object {a:#x}"),
            SlabError::ForeignCache => {
                write!(
                    f,
                    "cache handle belongs to another allocator instance or was destroyed"
                )
            }
            SlabError::Busy { objects } => {
                write!(f, "cache still has {objects} objects in use")
            }
            SlabError::Corrupted(a) => write!(f, "memory corruption detected at {a:#x}"),
            SlabError::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            SlabError::BootCache => write!(f, "kmalloc and boot caches are never destroyed"),
            SlabError::NoSuchNode(n) => write!(f, "node {n} does not exist"),
        }
    }
}

impl std::error::Error for SlabError {}

/// Validates the arguments of `kmem_cache_create` the same way for both allocators.
pub fn check_cache_args(
    name: &str,
    size: usize,
    align: usize,
    max: usize,
) -> Result<CacheName, SlabError> {
    let n = CacheName::new(name)?;
    if size == 0 {
        return Err(SlabError::ZeroSize);
    }
    if size > max {
        return Err(SlabError::TooLarge { size, max });
    }
    if align != 0 && (!align.is_power_of_two() || align > PAGE_SIZE) {
        return Err(SlabError::BadAlign(align));
    }
    Ok(n)
}

/// A cache name stored inline (no heap), at most [`CacheName::CAPACITY`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheName {
    buf: [u8; Self::CAPACITY],
    len: u8,
}

impl CacheName {
    /// Longest name (the kernel's slabinfo column is 17 wide; names run to ~32 in practice).
    pub const CAPACITY: usize = 48;

    /// Checks and stores `s`.
    pub fn new(s: &str) -> Result<Self, SlabError> {
        if s.is_empty()
            || s.len() > Self::CAPACITY
            || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(SlabError::BadName);
        }
        let mut buf = [0; Self::CAPACITY];
        buf[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Self {
            buf,
            len: s.len() as u8,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored.
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(1);

/// A fresh allocator-instance id for [`CacheHandle`]s.
pub fn new_instance_id() -> u32 {
    NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
}

/// An opaque reference to a cache of one allocator instance.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CacheHandle {
    ptr: NonNull<u8>,
    instance: u32,
}

// SAFETY: a handle is an address and an id; all use goes through the allocator, which checks the
// instance and synchronises internally.
unsafe impl Send for CacheHandle {}
// SAFETY: see Send.
unsafe impl Sync for CacheHandle {}

impl CacheHandle {
    /// Made by an allocator for its cache structure at `ptr`.
    pub fn new(ptr: NonNull<u8>, instance: u32) -> Self {
        Self { ptr, instance }
    }
    /// The cache structure's address.
    pub fn ptr(self) -> NonNull<u8> {
        self.ptr
    }
    /// The instance that made it.
    pub fn instance(self) -> u32 {
        self.instance
    }
}

/// One row of `/proc/slabinfo` (version 2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabInfo {
    /// Cache name.
    pub name: CacheName,
    /// Objects in use.
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// Object stride in bytes (`buffer_size` / `size`).
    pub objsize: usize,
    /// Objects per slab.
    pub objperslab: usize,
    /// Pages per slab.
    pub pagesperslab: usize,
    /// SLAB tunable `limit` (0 for SLUB).
    pub limit: usize,
    /// SLAB tunable `batchcount` (0 for SLUB).
    pub batchcount: usize,
    /// SLAB tunable `shared` (0 for SLUB).
    pub sharedfactor: usize,
    /// Slabs with at least one object in use.
    pub active_slabs: usize,
    /// All slabs.
    pub num_slabs: usize,
    /// Objects in shared arrays (SLAB), 0 for SLUB.
    pub sharedavail: usize,
}

impl SlabInfo {
    /// The header lines of `/proc/slabinfo` 2.1.
    pub const HEADER: &'static str = "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>";
}

impl fmt::Display for SlabInfo {
    /// The row exactly as `s_show` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<17} {:6} {:6} {:6} {:4} {:4} : tunables {:4} {:4} {:4} : slabdata {:6} {:6} {:6}",
            self.name.as_str(),
            self.active_objs,
            self.num_objs,
            self.objsize,
            self.objperslab,
            self.pagesperslab,
            self.limit,
            self.batchcount,
            self.sharedfactor,
            self.active_slabs,
            self.num_slabs,
            self.sharedavail
        )
    }
}

/// Memory an allocator holds, from the page provider's exact accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Pages held now, everything included (slabs, large kmallocs, metadata).
    pub pages: usize,
    /// Most pages held at once.
    pub peak_pages: usize,
    /// Pages in slabs.
    pub slab_pages: usize,
    /// Pages of large kmallocs (whole-page allocations).
    pub large_pages: usize,
    /// Pages of the allocator's own structures outside slabs.
    pub metadata_pages: usize,
}

impl MemoryUsage {
    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.pages * PAGE_SIZE
    }
    /// From a provider used by one allocator whose slab pages carry `slab_owner`.
    pub fn from_provider(p: &PageProvider, slab_owner: Owner) -> Self {
        let s = p.stats();
        Self {
            pages: s.pages_in_use,
            peak_pages: s.peak_pages,
            slab_pages: s.owner(slab_owner),
            large_pages: s.owner(Owner::LargeKmalloc),
            metadata_pages: s.owner(Owner::Metadata),
        }
    }
}

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

/// Requests above the largest buddy block (4 MiB) — beyond every kmalloc — and the rare aligned
/// request a kmalloc class cannot satisfy get their own mapping, as the kernel's vmalloc would
/// serve them, and are unmapped on free.
fn huge_alloc(layout: Layout) -> *mut u8 {
    let len = layout.size().max(1).next_multiple_of(PAGE_SIZE);
    crate::sys::mmap_reserve_aligned(len, layout.align().max(PAGE_SIZE))
        .map_or(core::ptr::null_mut(), NonNull::as_ptr)
}

/// Frees what [`huge_alloc`] returned.
///
/// # Safety
/// `ptr` and `layout` exactly as given to and returned by `huge_alloc`.
unsafe fn huge_free(ptr: *mut u8, layout: Layout) {
    if let Some(p) = NonNull::new(ptr) {
        // SAFETY: the mapping was made for this layout's size rounded to pages.
        unsafe { crate::sys::munmap(p, layout.size().max(1).next_multiple_of(PAGE_SIZE)) };
    }
}

/// Alignment `kmalloc` guarantees for every size in both ports: 8 bytes (SLUB's `kmalloc-8`
/// objects are 8 bytes apart; SLAB's smallest class is 32-aligned, but its colouring leaves the
/// 128 B and larger classes only 64-aligned). Larger alignments are asked of a power-of-two class
/// at least that large, checked, and served from a mapping of their own when the class falls short.
pub const KMALLOC_GUARANTEED_ALIGN: usize = 8;

/// A `#[global_allocator]` over any [`SlabAllocator`], built on first use by `init`, which must
/// not allocate from the Rust heap (the allocators' metadata comes from the page provider). If
/// `init` allocates anyway, the re-entering allocation fails (returns null) instead of waiting
/// for itself.
///
/// Requests with `align <= 8` go to `kmalloc(size)`; larger alignments up to 4 MiB to `kmalloc`
/// of the size rounded up to a power of two at least `align` (SLUB's power-of-two kmalloc objects
/// are naturally aligned; SLAB's are checked), and to a mapping of their own when the object is
/// not aligned; requests above 4 MiB get their own mapping. `realloc` stays in place while the
/// new size fits the object's `ksize`.
pub struct GlobalSlab<A: 'static> {
    state: AtomicU8,
    /// Thread id of the thread running `init` (0: none).
    init_tid: core::sync::atomic::AtomicI32,
    cell: UnsafeCell<MaybeUninit<A>>,
    init: fn() -> Option<A>,
}

// SAFETY: the cell is written once, by the thread that wins the state transition 0→1, and only
// read after state 2 is published with Release; A itself is Sync.
unsafe impl<A: Sync> Sync for GlobalSlab<A> {}

const G_UNINIT: u8 = 0;
const G_BUSY: u8 = 1;
const G_READY: u8 = 2;
const G_FAILED: u8 = 3;

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

impl<A: SlabAllocator> GlobalSlab<A> {
    /// An adapter that builds its allocator with `init` on first use.
    pub const fn new(init: fn() -> Option<A>) -> Self {
        Self {
            state: AtomicU8::new(G_UNINIT),
            init_tid: core::sync::atomic::AtomicI32::new(0),
            cell: UnsafeCell::new(MaybeUninit::uninit()),
            init,
        }
    }

    /// The allocator, built if needed; `None` if `init` failed, or if called from within `init`
    /// on the initialising thread.
    pub fn get(&self) -> Option<&A> {
        let mut s = self.state.load(Ordering::Acquire);
        if s == G_READY {
            // SAFETY: state 2 was published after the value was written.
            return Some(unsafe { (*self.cell.get()).assume_init_ref() });
        }
        if s == G_UNINIT
            && self
                .state
                .compare_exchange(G_UNINIT, G_BUSY, Ordering::Acquire, Ordering::Acquire)
                .is_ok()
        {
            self.init_tid.store(gettid(), Ordering::Relaxed);
            let made = (self.init)();
            s = match made {
                Some(a) => {
                    // SAFETY: this thread won the 0→1 transition, so it is the only writer, and
                    // no reader looks before state 2.
                    unsafe { (*self.cell.get()).write(a) };
                    G_READY
                }
                None => G_FAILED,
            };
            self.init_tid.store(0, Ordering::Relaxed);
            self.state.store(s, Ordering::Release);
        }
        let mut spins = 0;
        while s == G_BUSY || s == G_UNINIT {
            if self.init_tid.load(Ordering::Relaxed) == gettid() {
                return None; // `init` allocated: refuse rather than wait for ourselves.
            }
            crate::sync::relax(&mut spins);
            s = self.state.load(Ordering::Acquire);
        }
        if s == G_READY {
            // SAFETY: state 2 was published after the value was written.
            Some(unsafe { (*self.cell.get()).assume_init_ref() })
        } else {
            None
        }
    }

    fn kmalloc_size(layout: Layout) -> usize {
        let size = layout.size().max(1);
        if layout.align() <= KMALLOC_GUARANTEED_ALIGN {
            size
        } else {
            size.max(layout.align()).next_power_of_two()
        }
    }

    fn alloc_in(a: &A, layout: Layout) -> *mut u8 {
        let size = Self::kmalloc_size(layout);
        if size > MAX_BLOCK_BYTES {
            return huge_alloc(layout);
        }
        match a.kmalloc(size, Gfp::KERNEL) {
            Some(p) if p.as_ptr() as usize % layout.align() == 0 => p.as_ptr(),
            Some(p) => {
                // Not aligned enough (a SLAB colour offset): give it back, map the block.
                // SAFETY: p was just allocated by a and is not used.
                let _ = unsafe { a.kfree(p.as_ptr()) };
                huge_alloc(layout)
            }
            None => core::ptr::null_mut(),
        }
    }
}

// SAFETY: alloc returns memory of at least layout.size() bytes aligned to layout.align() or
// null; dealloc hands back exactly what alloc returned (kfree finds the object from its address,
// and memory outside the provider is one of huge_alloc's mappings of this layout).
unsafe impl<A: SlabAllocator> GlobalAlloc for GlobalSlab<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        crate::sync::might_alloc("GlobalSlab::alloc");
        match self.get() {
            Some(a) => Self::alloc_in(a, layout),
            None => core::ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        crate::sync::might_alloc("GlobalSlab::dealloc");
        if let Some(a) = self.get() {
            if !a.provider().contains(ptr as usize) {
                // SAFETY: only huge_alloc hands out memory outside the provider, with this layout.
                unsafe { huge_free(ptr, layout) };
                return;
            }
            // SAFETY: the caller passes a pointer this adapter returned and stops using it.
            let r = unsafe { a.kfree(ptr) };
            debug_assert!(r.is_ok(), "GlobalSlab dealloc: {r:?}");
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        crate::sync::might_alloc("GlobalSlab::realloc");
        let Some(a) = self.get() else {
            return core::ptr::null_mut();
        };
        if let Some(p) = NonNull::new(ptr).filter(|p| a.provider().contains(p.as_ptr() as usize)) {
            // SAFETY: p is a live object of a (the caller's contract).
            if let Ok(usable) = unsafe { a.ksize(p) } {
                if new_size <= usable && new_size.max(1) <= MAX_BLOCK_BYTES {
                    return ptr; // fits in place, alignment unchanged
                }
            }
        }
        // SAFETY: the caller guarantees new_size is valid for layout.align().
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = Self::alloc_in(a, new_layout);
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and do not overlap.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_checked() {
        assert!(CacheName::new("dentry").is_ok());
        assert_eq!(CacheName::new(""), Err(SlabError::BadName));
        assert_eq!(CacheName::new("a\nb"), Err(SlabError::BadName));
        assert_eq!(CacheName::new(&"x".repeat(49)), Err(SlabError::BadName));
        assert_eq!(CacheName::new("kmalloc-96").unwrap().as_str(), "kmalloc-96");
    }

    #[test]
    fn cache_args_checked() {
        assert_eq!(check_cache_args("a", 0, 0, 100), Err(SlabError::ZeroSize));
        assert_eq!(
            check_cache_args("a", 101, 0, 100),
            Err(SlabError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(
            check_cache_args("a", 8, 3, 100),
            Err(SlabError::BadAlign(3))
        );
        assert_eq!(
            check_cache_args("a", 8, 8192, 100),
            Err(SlabError::BadAlign(8192))
        );
        assert!(check_cache_args("a", 8, 64, 100).is_ok());
    }

    #[test]
    fn slabinfo_row_format() {
        let r = SlabInfo {
            name: CacheName::new("size-64").unwrap(),
            active_objs: 10,
            num_objs: 59,
            objsize: 64,
            objperslab: 59,
            pagesperslab: 1,
            limit: 120,
            batchcount: 60,
            sharedfactor: 8,
            active_slabs: 1,
            num_slabs: 1,
            sharedavail: 0,
        };
        assert_eq!(
            r.to_string(),
            "size-64               10     59     64   59    1 : tunables  120   60    8 : slabdata      1      1      0"
        );
    }
}
