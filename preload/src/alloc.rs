//! Where each request goes, and how `free` finds what it was.
//!
//! ```text
//! alloc_bytes(n)            n ≤ 4 MiB ─► kmalloc(n)        (16-byte aligned for n > 8, else
//!                                                            re-served by alloc_aligned(n, 16))
//!                           n > 4 MiB ─► huge::alloc (mmap)
//! alloc_aligned(n, a)       a ≤ page: kmalloc(pow2 ≥ max(n, a)) if that object is aligned
//!                                     (SLUB: always; SLAB: colouring may break it), else
//!                                     kmalloc(n + a + 16) with a header before the aligned
//!                                     pointer: [MAGIC ^ ptr, object start]
//!                           else / too big: pages of order ≥ a from the provider
//!                                     (Owner::LargeKmalloc, buddy blocks are size-aligned),
//!                                     or huge::alloc(n, a) above 4 MiB
//! free_ptr(p)               bump area ─► nothing
//!                           provider page, LargeKmalloc head, p = page start ─► free_pages
//!                           provider page, otherwise ─► kfree(p); NotObjectStart ─► header
//!                           huge table ─► munmap;  anything else ─► one line, abort()
//! ```

use crate::gate::Gate;
use crate::huge;
use crate::instance::Instance;
use crate::out::{FdWriter, STDERR};
use common::api::{SlabAllocator, SlabError};
use common::page::flags::PG_ALLOCATED;
use common::provider::get_order;
use common::{Gfp, Owner, Page, MAX_ORDER, PAGE_SIZE};
use core::fmt::Write;
use core::ptr::{null_mut, NonNull};

/// Largest `kmalloc` of both allocators (`size-4194304`; SLUB's `kmalloc_large` limit).
pub const KMALLOC_MAX: usize = 4 << 20;
const _: () = assert!(KMALLOC_MAX == slab_classic::KMALLOC_MAX_SIZE);
const _: () = assert!(KMALLOC_MAX == slub::KMALLOC_MAX_SIZE);

/// What `malloc` guarantees (`alignof(max_align_t)` on x86-64), for requests above 8 bytes.
pub const MIN_ALIGN: usize = 16;
const HDR: usize = 16;
const ALIGN_MAGIC: usize = 0x51ab_a11c_0bad_f00d;

/// Sets `errno`.
pub fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// `malloc(size)` on `inst`: null (and `ENOMEM`) on failure.
#[inline]
pub fn alloc_bytes(inst: &Instance, size: usize) -> *mut u8 {
    let _g = Gate::enter();
    let p = alloc_locked(inst, size);
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p
}

#[inline(always)]
fn alloc_locked(inst: &Instance, size: usize) -> *mut u8 {
    let n = size.max(1);
    if n <= KMALLOC_MAX {
        match inst.kmalloc(n, Gfp::KERNEL) {
            Some(p) => {
                let a = p.as_ptr();
                if a as usize & (MIN_ALIGN - 1) == 0 || n <= 8 {
                    return a;
                }
                // A class whose objects are not 16-byte aligned (SLAB colouring): give it back
                // and serve aligned.
                // SAFETY: just allocated, unused.
                let _ = unsafe { inst.kfree(a) };
                aligned_locked(inst, n, MIN_ALIGN)
            }
            None => null_mut(),
        }
    } else {
        huge::alloc(n, PAGE_SIZE)
    }
}

/// `memalign(align, size)` on `inst`; `align` must be a power of two.
pub fn alloc_aligned(inst: &Instance, size: usize, align: usize) -> *mut u8 {
    let _g = Gate::enter();
    let p = if align <= MIN_ALIGN {
        alloc_locked(inst, size.max(9))
    } else {
        aligned_locked(inst, size.max(1), align)
    };
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p
}

fn aligned_locked(inst: &Instance, n: usize, align: usize) -> *mut u8 {
    debug_assert!(align.is_power_of_two());
    if align <= PAGE_SIZE {
        let s = n.max(align).next_power_of_two();
        if s <= KMALLOC_MAX {
            if let Some(p) = inst.kmalloc(s, Gfp::KERNEL) {
                if p.as_ptr() as usize & (align - 1) == 0 {
                    return p.as_ptr();
                }
                // SAFETY: just allocated, unused.
                let _ = unsafe { inst.kfree(p.as_ptr()) };
            } else {
                return null_mut();
            }
        }
        if let Some(total) = n.checked_add(align + HDR).filter(|&t| t <= KMALLOC_MAX) {
            let Some(p) = inst.kmalloc(total, Gfp::KERNEL) else {
                return null_mut();
            };
            let start = p.as_ptr() as usize;
            let a = (start + HDR).next_multiple_of(align);
            // SAFETY: [start, start + total) is our fresh object; the header's 16 bytes lie in
            // [a - 16, a) ⊂ [start, a), and a + n ≤ start + total.
            unsafe {
                let h = (a - HDR) as *mut usize;
                h.write(ALIGN_MAGIC ^ a);
                h.add(1).write(start);
            }
            return a as *mut u8;
        }
    }
    let big = n.max(align);
    let order = get_order(big);
    if order < MAX_ORDER {
        let prov = inst.provider();
        let topo = prov.topology();
        let node = topo
            .cpu_to_node(common::percpu::cpu_id())
            .min(prov.nr_nodes() - 1);
        return prov
            .alloc_pages_gfp(node, order, Owner::LargeKmalloc, Gfp::KERNEL)
            .map_or(null_mut(), |pg| prov.page_address(pg).as_ptr());
    }
    huge::alloc(n, align)
}

/// `free(p)` on `inst` (null and bump-area pointers are no-ops); aborts on a pointer that is
/// not ours.
///
/// # Safety
/// `p` is null or a live allocation of this library, not used afterwards.
#[inline]
pub unsafe fn free_ptr(inst: &Instance, p: *mut u8) {
    if p.is_null() || crate::state::in_bump(p as usize) {
        return;
    }
    let _g = Gate::enter();
    // SAFETY: forwarded contract.
    unsafe { free_locked(inst, p) }
}

/// The head page of `p` if it is a whole-page block (`Owner::LargeKmalloc`, not a slab).
#[inline(always)]
fn large_head(inst: &Instance, p: usize) -> Option<(NonNull<Page>, &Page, bool)> {
    let prov = inst.provider();
    let page = prov.virt_to_head_page(p)?;
    // SAFETY: a descriptor inside the provider's mem_map.
    let pg = unsafe { page.as_ref() };
    let large =
        !pg.is_slab() && pg.owner == Owner::LargeKmalloc as u8 && pg.test_flags(PG_ALLOCATED);
    Some((page, pg, large))
}

#[inline(always)]
unsafe fn free_locked(inst: &Instance, p: *mut u8) {
    let addr = p as usize;
    match large_head(inst, addr) {
        Some((page, pg, true)) => {
            let prov = inst.provider();
            if prov.page_address(page).as_ptr() as usize == addr {
                // SAFETY: the whole block is the caller's allocation, given up.
                if let Err(e) = unsafe { prov.free_pages(page, pg.order as usize) } {
                    bad_pointer("free", addr, &e);
                }
            } else {
                // SAFETY: forwarded.
                unsafe { free_aligned(inst, addr) };
            }
        }
        Some((_, _, false)) => {
            // SAFETY: forwarded; kfree checks what it can and changes nothing on an error.
            match unsafe { inst.kfree(p) } {
                Ok(()) => {}
                // SAFETY: forwarded.
                Err(SlabError::NotObjectStart(_)) => unsafe { free_aligned(inst, addr) },
                Err(e) => bad_pointer("free", addr, &e),
            }
        }
        None => {
            // SAFETY: forwarded.
            if !unsafe { huge::free(addr) } {
                bad_pointer("free", addr, &SlabError::NotOurs(addr));
            }
        }
    }
}

/// The object start behind an aligned pointer, from its header; aborts if there is none.
fn aligned_origin(inst: &Instance, a: usize, what: &str) -> usize {
    let h = a.wrapping_sub(HDR);
    if a % MIN_ALIGN != 0 || !inst.provider().contains(h) {
        bad_pointer(what, a, &SlabError::NotObjectStart(a));
    }
    // SAFETY: h is inside the provider's arenas, which are mapped readable; for a pointer we
    // returned it is our header.
    let (magic, start) = unsafe {
        (
            (h as *const usize).read(),
            (h as *const usize).add(1).read(),
        )
    };
    if magic != ALIGN_MAGIC ^ a || start >= a || a - start > KMALLOC_MAX {
        bad_pointer(what, a, &SlabError::NotObjectStart(a));
    }
    start
}

unsafe fn free_aligned(inst: &Instance, a: usize) {
    let start = aligned_origin(inst, a, "free");
    // SAFETY: our header (checked); cleared so a second free of `a` is caught.
    unsafe { ((a - HDR) as *mut usize).write(0) };
    // SAFETY: the object behind the header is the caller's allocation, given up.
    unsafe { free_locked(inst, start as *mut u8) }
}

/// `malloc_usable_size(p)`.
///
/// # Safety
/// `p` is null or a live allocation of this library.
pub unsafe fn usable_size(inst: &Instance, p: *mut u8) -> usize {
    if p.is_null() {
        return 0;
    }
    if crate::state::in_bump(p as usize) {
        // SAFETY: a bump allocation.
        return unsafe { crate::state::bump_usable(p) };
    }
    let _g = Gate::enter();
    usable_locked(inst, p as usize)
}

fn usable_locked(inst: &Instance, addr: usize) -> usize {
    match large_head(inst, addr) {
        Some((page, pg, true)) => {
            if inst.provider().page_address(page).as_ptr() as usize == addr {
                PAGE_SIZE << pg.order
            } else {
                let start = aligned_origin(inst, addr, "malloc_usable_size");
                usable_locked(inst, start) - (addr - start)
            }
        }
        // SAFETY: ksize checks the pointer and only reads.
        Some((_, _, false)) => match unsafe { inst.ksize(NonNull::new_unchecked(addr as *mut u8)) }
        {
            Ok(n) => n,
            Err(SlabError::NotObjectStart(_)) => {
                let start = aligned_origin(inst, addr, "malloc_usable_size");
                usable_locked(inst, start) - (addr - start)
            }
            Err(e) => bad_pointer("malloc_usable_size", addr, &e),
        },
        None => huge::usable(addr)
            .unwrap_or_else(|| bad_pointer("malloc_usable_size", addr, &SlabError::NotOurs(addr))),
    }
}

/// `realloc(p, n)` for a non-null `p` and `n > 0`.
///
/// # Safety
/// `p` is a live allocation of this library; on success it must not be used afterwards.
pub unsafe fn realloc(inst: &Instance, p: *mut u8, n: usize) -> *mut u8 {
    let addr = p as usize;
    let old = if crate::state::in_bump(addr) {
        // SAFETY: a bump allocation.
        unsafe { crate::state::bump_usable(p) }
    } else {
        let _g = Gate::enter();
        let old = usable_locked(inst, addr);
        // In place when the object is big enough and not more than twice too big.
        if n <= old && n >= old / 2 {
            return p;
        }
        if n > KMALLOC_MAX && old > KMALLOC_MAX && huge::usable(addr).is_some() {
            // SAFETY: a live huge allocation.
            let q = unsafe { huge::realloc(addr, n) };
            if !q.is_null() {
                return q;
            }
        }
        old
    };
    let q = alloc_bytes(inst, n);
    if q.is_null() {
        return q;
    }
    // SAFETY: both are live, distinct allocations of at least min(old, n) bytes.
    unsafe { core::ptr::copy_nonoverlapping(p, q, old.min(n)) };
    // SAFETY: the caller gives p up on success.
    unsafe { free_ptr(inst, p) };
    q
}

/// One line on stderr, then `abort()`.
#[cold]
#[inline(never)]
pub fn bad_pointer(what: &str, addr: usize, why: &dyn core::fmt::Display) -> ! {
    let mut w = FdWriter::new(STDERR);
    let name = crate::state::config().map_or("?", |c| c.kind.name());
    let _ = writeln!(
        w,
        "slabworks ({name}): {what}({addr:#x}): invalid pointer: {why}"
    );
    w.flush();
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
