//! # slabworks_preload — SLAB or SLUB as the process's malloc
//!
//! As a `cdylib` (`libslabworks_preload.so`, `LD_PRELOAD`) it replaces the C allocation family
//! of a dynamically linked program; as an `rlib` it offers the same process-wide instance to
//! Rust through `common::GlobalSlab<Shared>` (`examples/global.rs`) — and exports the `malloc`
//! family to that binary too (not under `cfg(test)`), so do not link it into a program that must
//! keep glibc malloc. Usage, the environment variables and sizes/alignment: `preload/README.md`.
//!
//! ## Layers
//! ```text
//!  lib.rs    the C ABI: malloc free calloc realloc reallocarray posix_memalign aligned_alloc
//!            memalign valloc pvalloc malloc_usable_size; the library constructor
//!  alloc.rs  size/alignment dispatch, free's classification of a pointer, realloc
//!  huge.rs   > 4 MiB: mmap with a fixed address table        report.rs  exit report
//!  state.rs  init state machine, bump area, the Instance      gate.rs    fork gate
//!  config.rs environment parsing (no heap)                     out.rs     fmt to an fd
//!  instance.rs  Instance = Slab | Slub (static dispatch), Shared (GlobalSlab handle)
//!  slab_classic::Slab / slub::Slub ─► common::PageProvider
//! ```
//!
//! ## Initialisation and the recursion guard
//! A static state machine `UNINIT → INITING → READY` ([`state`]). The first caller (usually
//! the library constructor in `.init_array`, or whichever `malloc` comes earlier, e.g. from
//! libc's start-up) wins the CAS and builds the allocator: environment (`getenv`, parsed by
//! hand), topology from sysfs (stack buffers), the page provider (its own `mmap`s), then
//! `Slab::new`/`Slub::new` (metadata from the provider). If anything on that path calls
//! `malloc` again on the same thread, the state is `INITING` with this thread as owner, and
//! the call is served from a 256 KiB static bump area; `free` recognises bump pointers by
//! address and ignores them, `realloc` copies out of them. Other threads arriving during
//! `INITING` wait. A bad environment value prints one line and `_exit(2)`s. The constructor
//! then registers the fork handlers and the exit report (not from inside a `malloc` libc may
//! have called with one of its locks held).
//!
//! ## Pointers not from us
//! `free` classifies a pointer by address: the bump area; the page provider's arenas (slab
//! object, whole-page block, or an aligned pointer with a header); the `mmap` table; anything
//! else is not ours: one line, then `abort()`, as glibc's "free(): invalid pointer". It is not
//! forwarded to libc's `free`: under `LD_PRELOAD` every `malloc` after the loader relocated
//! libc is ours (the loader's own early allocations never reach `free`), so a foreign pointer
//! is a bug in the program, and `dlsym(RTLD_NEXT)` may itself allocate.
//!
//! ## Threads and fork
//! Per-CPU structures belong to CPUs, not threads (a thread uses the slot of the CPU it runs
//! on: by an rseq sequence on that CPU, the freelist+tid `cmpxchg16b`, or under the slot's
//! lock), so a thread's exit leaves nothing behind and needs no hook. Neither allocator has a
//! "lock everything" call for `pthread_atfork`; instead [`gate`] counts threads inside the
//! allocator (per-CPU-sharded counters) and the prepare handler closes the gate and waits until
//! none is inside, so every allocator lock is free when the address space is copied. Parent
//! and child reopen it.

// `match` with a commented unsafe arm reads better than if-let/else for the C entry points.
#![allow(clippy::single_match_else)]

pub mod alloc;
pub mod config;
pub mod gate;
pub mod huge;
pub mod instance;
pub mod out;
pub mod report;
pub mod state;

pub use config::{Config, Kind};
pub use instance::{Instance, Shared};

use core::ffi::c_void;
use core::ptr::null_mut;

const PAGE: usize = common::PAGE_SIZE;

/// The library constructor: builds the allocator (so a bad environment is reported at start
/// even by a program that never allocates) and registers the fork and exit handlers.
extern "C" fn constructor() {
    if state::instance().is_some() {
        state::register_handlers();
    }
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;

#[inline(always)]
fn malloc_impl(size: usize) -> *mut c_void {
    common::sync::might_alloc("malloc");
    match state::instance() {
        Some(inst) => alloc::alloc_bytes(inst, size).cast(),
        None => no_instance(state::bump_alloc(size, 16)),
    }
}

fn no_instance(p: *mut u8) -> *mut c_void {
    if p.is_null() {
        alloc::set_errno(libc::ENOMEM);
    }
    p.cast()
}

fn aligned_impl(align: usize, size: usize) -> *mut c_void {
    common::sync::might_alloc("aligned malloc");
    match state::instance() {
        Some(inst) => alloc::alloc_aligned(inst, size, align).cast(),
        None if align <= PAGE => no_instance(state::bump_alloc(size, align)),
        None => no_instance(null_mut()),
    }
}

/// `malloc(3)`.
///
/// # Safety
/// Callable from any thread; the C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    malloc_impl(size)
}

/// `free(3)`.
///
/// # Safety
/// `p` is null or a live allocation of this library, not used afterwards.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn free(p: *mut c_void) {
    common::sync::might_alloc("free");
    if p.is_null() || state::in_bump(p as usize) {
        return;
    }
    if let Some(inst) = state::instance() {
        // SAFETY: the caller's contract.
        unsafe { alloc::free_ptr(inst, p.cast()) };
    }
}

/// `calloc(3)`: `ENOMEM` on overflow of `n * size`.
///
/// # Safety
/// The C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        alloc::set_errno(libc::ENOMEM);
        return null_mut();
    };
    let p = malloc_impl(total);
    // mmap-ed (huge) and bump memory is fresh and zero already.
    if !p.is_null() && total <= alloc::KMALLOC_MAX && !state::in_bump(p as usize) {
        // SAFETY: p is a fresh allocation of at least total bytes.
        unsafe { p.cast::<u8>().write_bytes(0, total) };
    }
    p
}

/// `realloc(3)`: in place when the object's `ksize` allows; `realloc(p, 0)` frees and returns
/// null (glibc's behaviour).
///
/// # Safety
/// The C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    common::sync::might_alloc("realloc");
    if p.is_null() {
        return malloc_impl(size);
    }
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { free(p) };
        return null_mut();
    }
    match state::instance() {
        // SAFETY: the caller's contract.
        Some(inst) => unsafe { alloc::realloc(inst, p.cast(), size) }.cast(),
        None => {
            // During initialisation only bump memory exists.
            let q = state::bump_alloc(size, 16);
            if !q.is_null() && state::in_bump(p as usize) {
                // SAFETY: both are bump allocations; the old one holds its usable size.
                unsafe {
                    let old = state::bump_usable(p.cast());
                    core::ptr::copy_nonoverlapping(p.cast::<u8>(), q, old.min(size));
                }
            }
            no_instance(q)
        }
    }
}

/// `reallocarray(3)`: `realloc(p, n * size)` with an overflow check (`ENOMEM`).
///
/// # Safety
/// The C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn reallocarray(p: *mut c_void, n: usize, size: usize) -> *mut c_void {
    match n.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(total) => unsafe { realloc(p, total) },
        None => {
            alloc::set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// `posix_memalign(3)`: `EINVAL` unless `align` is a power of two multiple of `sizeof(void *)`.
///
/// # Safety
/// `out` must be writable.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> i32 {
    if !align.is_power_of_two() || align % core::mem::size_of::<usize>() != 0 {
        return libc::EINVAL;
    }
    // posix_memalign reports through its result and leaves errno alone.
    // SAFETY: errno is this thread's.
    let saved = unsafe { *libc::__errno_location() };
    let p = aligned_impl(align, size);
    alloc::set_errno(saved);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { *out = p };
    0
}

/// `aligned_alloc(3)`: `EINVAL` unless `align` is a power of two.
///
/// # Safety
/// The C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        alloc::set_errno(libc::EINVAL);
        return null_mut();
    }
    aligned_impl(align, size)
}

/// `memalign(3)`: as glibc, an alignment that is not a power of two is rounded up to one.
///
/// # Safety
/// The C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    match align.max(1).checked_next_power_of_two() {
        Some(a) => aligned_impl(a, size),
        None => {
            alloc::set_errno(libc::EINVAL);
            null_mut()
        }
    }
}

/// `valloc(3)`: page-aligned.
///
/// # Safety
/// The C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    aligned_impl(PAGE, size)
}

/// `pvalloc(3)`: page-aligned, size rounded up to whole pages (0 → one page).
///
/// # Safety
/// The C contract.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    match size.max(1).checked_next_multiple_of(PAGE) {
        Some(s) => aligned_impl(PAGE, s),
        None => {
            alloc::set_errno(libc::ENOMEM);
            null_mut()
        }
    }
}

/// `malloc_usable_size(3)`: the object's `ksize` (0 for null).
///
/// # Safety
/// `p` is null or a live allocation of this library.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(p: *mut c_void) -> usize {
    if p.is_null() {
        return 0;
    }
    if state::in_bump(p as usize) {
        // SAFETY: a bump allocation.
        return unsafe { state::bump_usable(p.cast()) };
    }
    match state::instance() {
        // SAFETY: the caller's contract.
        Some(inst) => unsafe { alloc::usable_size(inst, p.cast()) },
        None => 0,
    }
}

/// Writes the exit report now to `fd` (tests and tools; the `SLABWORKS_SLABINFO` handler does
/// the same at exit).
pub fn write_report(fd: i32) {
    if let Some(inst) = state::instance() {
        report::write_report(inst, fd);
    }
}
