//! [`GlobalSlab`]: a `#[global_allocator]` over any [`SlabAllocator`], with a mapping of its own
//! for requests beyond every kmalloc.

use super::allocator::SlabAllocator;
use crate::provider::{Gfp, MAX_BLOCK_BYTES, PAGE_SIZE};
use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};

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
