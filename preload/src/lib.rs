//! # slabworks_preload — SLAB or SLUB as the process's malloc
//!
//! Built as a `cdylib` (`libslabworks_preload.so`) it replaces the C allocation family of any
//! dynamically linked program:
//! ```sh
//! LD_PRELOAD=target/release/libslabworks_preload.so SLABWORKS_ALLOCATOR=slab python3 script.py
//! ```
//! As an `rlib` it offers the same process-wide instance to Rust through
//! `common::GlobalSlab<Shared>` (see `examples/global.rs`). Note that a binary linking the rlib
//! also gets the exported `malloc` family (the linker resolves libc's and std's `malloc` to the
//! rlib's definition), so its C allocations use the same instance: the example does, and so do
//! this crate's integration tests (the unit tests do not: the symbols are not exported under
//! `cfg(test)`). Do not link this crate into a program that must keep glibc malloc.
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
//! `INITING` wait. A bad environment value prints one line (`slabworks: VAR="value": what was
//! expected`) and `_exit(2)`s; there is no silent default for a bad value. The constructor then
//! registers the fork handlers and the exit report (from the constructor, not from inside a
//! `malloc` libc may have called with one of its locks held).
//!
//! ## Pointers not from us
//! `free` classifies a pointer by address: the bump area; the page provider's arenas (slab
//! object, whole-page block, or an aligned pointer with a header); the `mmap` table; anything
//! else is not ours and `free` prints one line and calls `abort()`. We do not forward such
//! pointers to libc's `free` (via `dlsym(RTLD_NEXT)`): with the library preloaded, every
//! `malloc` after the dynamic loader relocated libc is ours, and what the loader allocated
//! before that comes from its own minimal allocator, which glibc never hands to `free`; a
//! foreign pointer is therefore a bug in the program and aborting says so (glibc does the
//! same: "free(): invalid pointer"). `dlsym` itself may allocate, which would be one more
//! recursion to guard.
//!
//! ## Threads and fork
//! Per-CPU structures belong to CPUs, not threads (a thread uses the slot of the CPU it runs
//! on, under the slot's lock or the freelist+tid cmpxchg), so a thread's exit leaves nothing
//! behind and needs no hook. Neither allocator exposes a "lock everything" call for
//! `pthread_atfork`; instead [`gate`] counts threads inside the allocator (per-CPU-sharded
//! counters) and the prepare handler closes the gate and waits until none is inside, so every
//! allocator lock is free when the address space is copied. Parent and child reopen it.
//!
//! ## Environment
//! | variable | values | default | meaning |
//! |---|---|---|---|
//! | `SLABWORKS_ALLOCATOR` | `slab`, `slub` | `slub` | which allocator serves the process |
//! | `SLABWORKS_FAKE_NUMA` | `0`..`64` | `0` (off) | split the machine into N logical nodes |
//! | `SLABWORKS_TOPOLOGY` | `sysfs` | `sysfs` | (hwloc is refused: it allocates) |
//! | `SLABWORKS_ARENA_MIB` | `4`..`1048576` | `4096` | address space reserved per node |
//! | `SLABWORKS_STATS` | `0`, `1` | `0` | keep the allocator's statistics counters |
//! | `SLABWORKS_SLAB` | `limit=N batchcount=N shared=N break_order=N noaliencache noreap stats` | kernel table | SLAB tunables for every cache (the three together), `slab_break_gfp_order`, no alien caches, no `cache_reap` |
//! | `SLABWORKS_SLUB` | `slub_min_order=N slub_max_order=N slub_min_objects=N slab_nomerge slub_cpu_partial=N slub_min_partial=N era=6.4\|2.6.32\|6.18\|7.0 hardened stats remote_node_defrag_ratio=N seed=N init_on_alloc[=0\|1] init_on_free[=0\|1]` | 6.4 defaults | SLUB boot options (`SlubSettings::from_boot_options` language) |
//! | `SLABWORKS_FORK_GATE` | `0`, `1` | `1` | the fork gate (off: two atomic adds fewer per call; a `fork` while other threads allocate may deadlock the child) |
//! | `SLABWORKS_SLABINFO` | path, `-` | unset | at exit write slabinfo rows, counters and pages held; `-` is stderr, `%p` in a path is the pid (else the file is appended to) |
//!
//! Options are separated by spaces or commas. SLUB reads `SLUB_DEBUG` (the kernel's
//! `slub_debug=` syntax) itself when its instance is built, so it works under preload too.
//! slab-classic's `SLAB_CLASSIC_DEBUG` is deliberately not applied here yet: with red zones the
//! debug object starts 8 bytes into its buffer, which breaks the aligned-header path below for
//! 16-byte alignment (tried: every free then reports "not the start of an object"). SLUB's
//! `hardened` option adds encoded free pointers and the naive double-free check.
//!
//! ## Sizes and alignment
//! Up to 4 MiB (`KMALLOC_MAX_SIZE` of both) `kmalloc`; above, `mmap` (the page provider's
//! largest block is 4 MiB, so there is no larger page path). `malloc` returns 16-byte aligned
//! memory for requests above 8 bytes (8-byte classes stay 8-byte objects, as in the kernel);
//! every power-of-two alignment is honoured (see [`alloc`]).

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
