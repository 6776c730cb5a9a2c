//! `GlobalSlab` as this test binary's `#[global_allocator]`, over a minimal `SlabAllocator` that
//! serves every request from whole pages of the page provider. It checks the adapter's lazy,
//! heap-free initialisation (the first allocation of the process builds the provider, which must
//! not allocate), alignment handling up to 64 KiB, frees from other threads, and that every page
//! comes back.

use common::api::{MemoryUsage, SlabAllocator};
use common::page::Owner;
use common::provider::get_order;
use common::{
    CacheHandle, Ctor, Gfp, GlobalSlab, PageProvider, ProviderConfig, SlabError, SlabFlags,
    SlabInfo, Topology, PAGE_SIZE,
};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every kmalloc is a block of pages: a correct (if wasteful) SlabAllocator.
struct PageAlloc {
    p: PageProvider,
    live: AtomicUsize,
}

impl SlabAllocator for PageAlloc {
    fn name(&self) -> &'static str {
        "pages"
    }
    fn provider(&self) -> &PageProvider {
        &self.p
    }
    fn kmem_cache_create(
        &self,
        _: &str,
        _: usize,
        _: usize,
        _: SlabFlags,
        _: Option<Ctor>,
    ) -> Result<CacheHandle, SlabError> {
        Err(SlabError::NoMemory)
    }
    fn kmem_cache_alloc(&self, _: CacheHandle, _: Gfp) -> Option<NonNull<u8>> {
        None
    }
    fn kmem_cache_alloc_node(&self, _: CacheHandle, _: Gfp, _: usize) -> Option<NonNull<u8>> {
        None
    }
    unsafe fn kmem_cache_free(&self, _: CacheHandle, _: NonNull<u8>) -> Result<(), SlabError> {
        Err(SlabError::ForeignCache)
    }
    fn kmalloc(&self, size: usize, gfp: Gfp) -> Option<NonNull<u8>> {
        self.kmalloc_node(size, gfp, 0)
    }
    fn kmalloc_node(&self, size: usize, _: Gfp, node: usize) -> Option<NonNull<u8>> {
        let order = get_order(size.max(1));
        let page = self.p.alloc_pages(node, order, Owner::LargeKmalloc)?;
        self.live.fetch_add(1, Ordering::Relaxed);
        Some(self.p.page_address(page))
    }
    unsafe fn kfree(&self, ptr: *mut u8) -> Result<(), SlabError> {
        if ptr.is_null() {
            return Ok(());
        }
        let page = self
            .p
            .virt_to_head_page(ptr as usize)
            .ok_or(SlabError::NotOurs(ptr as usize))?;
        // SAFETY: reading the order of our own head page.
        let order = unsafe { page.as_ref() }.order as usize;
        // SAFETY: the caller gives back a block it got from kmalloc.
        unsafe { self.p.free_pages(page, order) }.map_err(|_| SlabError::NotOurs(ptr as usize))?;
        self.live.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }
    unsafe fn ksize(&self, ptr: NonNull<u8>) -> Result<usize, SlabError> {
        let page = self
            .p
            .virt_to_head_page(ptr.as_ptr() as usize)
            .ok_or(SlabError::NotOurs(ptr.as_ptr() as usize))?;
        // SAFETY: reading our own head page.
        Ok(PAGE_SIZE << unsafe { page.as_ref() }.order)
    }
    fn kmem_cache_shrink(&self, _: CacheHandle) -> Result<(), SlabError> {
        Ok(())
    }
    unsafe fn kmem_cache_destroy(&self, _: CacheHandle) -> Result<(), SlabError> {
        Ok(())
    }
    fn for_each_slabinfo(&self, _: &mut dyn FnMut(&SlabInfo)) {}
    fn validate(&self) -> Result<(), String> {
        self.p.check_invariants()
    }
    fn memory_usage(&self) -> MemoryUsage {
        MemoryUsage::from_provider(&self.p, Owner::LargeKmalloc)
    }
}

/// Builds the allocator without touching the Rust heap (it *is* the Rust heap).
fn init() -> Option<PageAlloc> {
    let topo = Topology::from_sysfs().ok()?;
    let p = PageProvider::new(&ProviderConfig::small(topo, 1024)).ok()?;
    Some(PageAlloc {
        p,
        live: AtomicUsize::new(0),
    })
}

#[global_allocator]
static GLOBAL: GlobalSlab<PageAlloc> = GlobalSlab::new(init);

/// The tests share one allocator; they run one at a time so page counts are theirs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn collections_run_on_the_adapter() {
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let a = GLOBAL.get().expect("initialised by the first allocation");
    let v: Vec<u64> = (0..10_000).collect();
    let addr = v.as_ptr() as usize;
    assert!(
        a.provider().contains(addr),
        "Vec memory comes from the page provider"
    );
    let s: String = v
        .iter()
        .map(|x| char::from(b'a' + (x % 26) as u8))
        .collect();
    assert_eq!(s.len(), 10_000);
    let mut m = std::collections::HashMap::new();
    for i in 0..2000 {
        m.insert(i, i.to_string());
    }
    assert_eq!(m[&1999], "1999");
    a.validate().unwrap();
}

#[test]
fn alignments_are_honoured() {
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for align in [1usize, 8, 16, 64, 128, 4096, 16384, 65536] {
        let layout = std::alloc::Layout::from_size_align(24, align).unwrap();
        // SAFETY: non-zero size; the block is freed with the same layout.
        unsafe {
            let p = std::alloc::alloc(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % align, 0, "align {align}");
            p.write_bytes(0x5a, 24);
            std::alloc::dealloc(p, layout);
        }
    }
}

#[test]
fn huge_requests_get_their_own_mapping() {
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let a = GLOBAL.get().unwrap();
    let mut v = vec![7u8; 6 << 20];
    assert!(
        !a.provider().contains(v.as_ptr() as usize),
        "6 MiB is above every kmalloc"
    );
    v[(6 << 20) - 1] = 9;
    let w = v.clone();
    assert_eq!(w[(6 << 20) - 1], 9);
    drop(v);
    drop(w);
}

#[test]
fn frees_from_other_threads_and_nothing_leaks() {
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let a = GLOBAL.get().unwrap();
    let boxes: Vec<Box<[u8; 100]>> = (0..200).map(|i| Box::new([i as u8; 100])).collect();
    let before = a.provider().stats().owner(Owner::LargeKmalloc);
    let h = std::thread::spawn(move || {
        let sum: usize = boxes.iter().map(|b| b[0] as usize).sum();
        drop(boxes);
        sum
    });
    assert_eq!(h.join().unwrap(), (0..200).map(|i| i % 256).sum::<usize>());
    let after = a.provider().stats().owner(Owner::LargeKmalloc);
    assert!(
        after + 150 <= before,
        "the other thread's 200 frees gave pages back ({before} -> {after})"
    );
}

static INNER_WAS_NONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static REENTRANT: GlobalSlab<PageAlloc> = GlobalSlab::new(init_reentrant);

/// An init that (wrongly) uses the adapter it is initialising: the inner call must fail fast
/// instead of spinning forever on its own initialisation.
fn init_reentrant() -> Option<PageAlloc> {
    INNER_WAS_NONE.store(REENTRANT.get().is_none(), Ordering::Relaxed);
    init()
}

#[test]
fn reentrant_init_fails_fast_instead_of_hanging() {
    assert!(REENTRANT.get().is_some());
    assert!(INNER_WAS_NONE.load(Ordering::Relaxed));
}

#[test]
fn realloc_stays_in_place_while_it_fits() {
    let _g = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let layout = std::alloc::Layout::from_size_align(100, 8).unwrap();
    // SAFETY: standard alloc/realloc/dealloc sequence with matching layouts.
    unsafe {
        let p = std::alloc::alloc(layout);
        p.write_bytes(3, 100);
        // PageAlloc's objects are whole pages: 4000 bytes still fit.
        let q = std::alloc::realloc(p, layout, 4000);
        assert_eq!(p, q, "grown in place within ksize");
        assert_eq!(*q.add(99), 3);
        let big = std::alloc::Layout::from_size_align(4000, 8).unwrap();
        let r = std::alloc::realloc(q, big, 20_000);
        assert_ne!(r, q, "moved when it no longer fits");
        assert_eq!(*r.add(99), 3, "contents copied");
        std::alloc::dealloc(r, std::alloc::Layout::from_size_align(20_000, 8).unwrap());
    }
}
