//! The process-wide allocator: SLAB or SLUB behind one enum (static dispatch, no vtable on the
//! fast path), and [`Shared`], the handle `common::GlobalSlab` builds for Rust programs.

use crate::config::Kind;
use common::api::{CacheHandle, Ctor, MemoryUsage, SlabAllocator, SlabError, SlabFlags, SlabInfo};
use common::{Gfp, Owner, PageProvider};
use core::ptr::NonNull;
use slab_classic::Slab;
use slub::Slub;

/// SLAB or SLUB. (One static instance per process, so the variants' size difference costs
/// nothing; boxing would need the heap this library replaces.)
#[allow(clippy::large_enum_variant)]
pub enum Instance {
    /// slab-classic.
    Slab(Slab),
    /// slub.
    Slub(Slub),
}

macro_rules! delegate {
    ($self:ident, $a:ident => $e:expr) => {
        match $self {
            Instance::Slab($a) => $e,
            Instance::Slub($a) => $e,
        }
    };
}

impl Instance {
    /// Which one.
    pub fn kind(&self) -> Kind {
        match self {
            Instance::Slab(_) => Kind::Slab,
            Instance::Slub(_) => Kind::Slub,
        }
    }

    /// The owner tag of this allocator's slab pages.
    pub fn slab_owner(&self) -> Owner {
        match self {
            Instance::Slab(_) => Owner::SlabClassic,
            Instance::Slub(_) => Owner::Slub,
        }
    }
}

impl SlabAllocator for Instance {
    fn name(&self) -> &'static str {
        delegate!(self, a => a.name())
    }
    #[inline(always)]
    fn provider(&self) -> &PageProvider {
        delegate!(self, a => a.provider())
    }
    fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<CacheHandle, SlabError> {
        delegate!(self, a => a.kmem_cache_create(name, size, align, flags, ctor))
    }
    fn kmem_cache_alloc(&self, cache: CacheHandle, gfp: Gfp) -> Option<NonNull<u8>> {
        delegate!(self, a => a.kmem_cache_alloc(cache, gfp))
    }
    fn kmem_cache_alloc_node(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        node: usize,
    ) -> Option<NonNull<u8>> {
        delegate!(self, a => a.kmem_cache_alloc_node(cache, gfp, node))
    }
    unsafe fn kmem_cache_free(
        &self,
        cache: CacheHandle,
        obj: NonNull<u8>,
    ) -> Result<(), SlabError> {
        // SAFETY: forwarded contract.
        delegate!(self, a => unsafe { a.kmem_cache_free(cache, obj) })
    }
    #[inline(always)]
    fn kmalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        delegate!(self, a => a.kmalloc(size, gfp))
    }
    fn kmalloc_node(&self, size: usize, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        delegate!(self, a => a.kmalloc_node(size, gfp, node))
    }
    #[inline(always)]
    unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), SlabError> {
        // SAFETY: forwarded contract.
        delegate!(self, a => unsafe { a.kfree(ptr) })
    }
    #[inline(always)]
    unsafe fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        // SAFETY: forwarded contract.
        delegate!(self, a => unsafe { a.ksize(ptr) })
    }
    fn kmem_cache_shrink(&self, cache: CacheHandle) -> Result<(), SlabError> {
        delegate!(self, a => a.kmem_cache_shrink(cache))
    }
    unsafe fn kmem_cache_destroy(&self, cache: CacheHandle) -> Result<(), SlabError> {
        // SAFETY: forwarded contract.
        delegate!(self, a => unsafe { a.kmem_cache_destroy(cache) })
    }
    fn for_each_slabinfo(&self, f: &mut dyn FnMut(&SlabInfo)) {
        delegate!(self, a => a.for_each_slabinfo(f));
    }
    fn validate(&self) -> Result<(), String> {
        delegate!(self, a => a.validate())
    }
    fn memory_usage(&self) -> MemoryUsage {
        delegate!(self, a => a.memory_usage())
    }
    fn for_each_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        delegate!(self, a => a.for_each_stat(f));
    }
    fn settings_summary(&self) -> String {
        delegate!(self, a => a.settings_summary())
    }
}

/// The process-wide instance as a [`SlabAllocator`], for `common::GlobalSlab<Shared>`: the same
/// instance the C `malloc` of this library uses. Its `kmalloc`/`kfree`/`ksize` go through the
/// same dispatch as `malloc`/`free`/`malloc_usable_size` (so sizes above 4 MiB work, from
/// `mmap`), and through the fork gate; everything else forwards to the allocator. Like `free`,
/// its `kfree` aborts with one line on a pointer that is not ours instead of returning `Err`.
#[derive(Clone, Copy)]
pub struct Shared(&'static Instance);

impl Shared {
    /// The instance, initialised from the environment if needed (`None` if this thread is
    /// inside the initialisation itself). Pass this function to `GlobalSlab::new`.
    pub fn get() -> Option<Shared> {
        crate::state::instance().map(Shared)
    }

    /// The allocator behind it.
    pub fn instance(self) -> &'static Instance {
        self.0
    }
}

impl SlabAllocator for Shared {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn provider(&self) -> &PageProvider {
        self.0.provider()
    }
    fn kmem_cache_create(
        &self,
        name: &str,
        size: usize,
        align: usize,
        flags: SlabFlags,
        ctor: Option<Ctor>,
    ) -> Result<CacheHandle, SlabError> {
        let _g = crate::gate::Gate::enter();
        self.0.kmem_cache_create(name, size, align, flags, ctor)
    }
    fn kmem_cache_alloc(&self, cache: CacheHandle, gfp: Gfp) -> Option<NonNull<u8>> {
        let _g = crate::gate::Gate::enter();
        self.0.kmem_cache_alloc(cache, gfp)
    }
    fn kmem_cache_alloc_node(
        &self,
        cache: CacheHandle,
        gfp: Gfp,
        node: usize,
    ) -> Option<NonNull<u8>> {
        let _g = crate::gate::Gate::enter();
        self.0.kmem_cache_alloc_node(cache, gfp, node)
    }
    unsafe fn kmem_cache_free(
        &self,
        cache: CacheHandle,
        obj: NonNull<u8>,
    ) -> Result<(), SlabError> {
        let _g = crate::gate::Gate::enter();
        // SAFETY: forwarded contract.
        unsafe { self.0.kmem_cache_free(cache, obj) }
    }
    #[inline]
    fn kmalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        let p = if size > crate::alloc::KMALLOC_MAX {
            // GlobalSlab asks for kmalloc(max(size, align)) when align > a page and drops a
            // misaligned result: align `mmap`ed blocks to the largest power of two ≤ size, which
            // is ≥ any such align (address space only: the excess is unmapped).
            let align = 1usize << (usize::BITS - 1 - size.leading_zeros());
            crate::alloc::alloc_aligned(self.0, size, align)
        } else {
            crate::alloc::alloc_bytes(self.0, size)
        };
        let p = NonNull::new(p)?;
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh allocation of at least `size` bytes.
            unsafe { p.as_ptr().write_bytes(0, size) };
        }
        Some(p)
    }
    fn kmalloc_node(&self, size: usize, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
        let _g = crate::gate::Gate::enter();
        self.0.kmalloc_node(size, gfp, node)
    }
    #[inline]
    unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), SlabError> {
        // SAFETY: forwarded contract (a pointer from kmalloc above or from malloc).
        unsafe { crate::alloc::free_ptr(self.0, ptr) };
        Ok(())
    }
    unsafe fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        // SAFETY: forwarded contract.
        Ok(unsafe { crate::alloc::usable_size(self.0, ptr.as_ptr()) })
    }
    fn kmem_cache_shrink(&self, cache: CacheHandle) -> Result<(), SlabError> {
        let _g = crate::gate::Gate::enter();
        self.0.kmem_cache_shrink(cache)
    }
    unsafe fn kmem_cache_destroy(&self, cache: CacheHandle) -> Result<(), SlabError> {
        let _g = crate::gate::Gate::enter();
        // SAFETY: forwarded contract.
        unsafe { self.0.kmem_cache_destroy(cache) }
    }
    fn for_each_slabinfo(&self, f: &mut dyn FnMut(&SlabInfo)) {
        // Not under the fork gate: `f` may allocate (`slabinfo()` collects into a Vec), and a
        // nested gate entry would wait on a fork that waits on us.
        self.0.for_each_slabinfo(f);
    }
    fn validate(&self) -> Result<(), String> {
        // Not under the gate: validate builds its error text on the heap, which may be us.
        self.0.validate()
    }
    fn memory_usage(&self) -> MemoryUsage {
        self.0.memory_usage()
    }
    fn for_each_stat(&self, f: &mut dyn FnMut(&'static str, u64)) {
        // Not under the gate, as for_each_slabinfo.
        self.0.for_each_stat(f);
    }
    fn settings_summary(&self) -> String {
        self.0.settings_summary()
    }
}
