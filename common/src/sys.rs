//! The operating-system edge: virtual memory and NUMA policy as raw system calls.
//!
//! Every call into the kernel that the page provider and topology make lives here, each in a
//! small named function with its own `// SAFETY:` argument. NUMA calls (`mbind`,
//! `get_mempolicy`, `move_pages`) are made with `syscall(2)` directly: `libnuma-sys` does not build
//! on current Rust and a C library is not needed for four system calls. None of these functions
//! allocates on the Rust heap, so they are usable while bootstrapping a global allocator.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

/// `MPOL_DEFAULT` of `<linux/mempolicy.h>`.
pub const MPOL_DEFAULT: i32 = 0;
/// `MPOL_PREFERRED`.
pub const MPOL_PREFERRED: i32 = 1;
/// `MPOL_BIND`: allocate only from the nodes in the mask.
pub const MPOL_BIND: i32 = 2;
/// `MPOL_F_NODE` for `get_mempolicy`: return a node id instead of the policy.
pub const MPOL_F_NODE: u32 = 1;
/// `MPOL_F_ADDR` for `get_mempolicy`: look up the policy of / node backing an address.
pub const MPOL_F_ADDR: u32 = 2;

/// Bits in the node masks we pass to the kernel (`maxnode` argument).
const NODEMASK_BITS: usize = 1024;
const NODEMASK_WORDS: usize = NODEMASK_BITS / 64;

/// Errno of the last failing call, as a plain number.
fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reserves `len` bytes of anonymous, private, not-yet-committed virtual memory
/// (`MAP_NORESERVE`), so a large arena costs nothing until touched. Returns the errno on failure.
#[cfg(not(miri))]
pub fn mmap_reserve(len: usize) -> Result<NonNull<u8>, i32> {
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing cannot alias any
    // existing Rust object; the result is checked against MAP_FAILED before use.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(last_errno());
    }
    NonNull::new(p.cast::<u8>()).ok_or(libc::ENOMEM)
}

/// Reserves `len` bytes aligned to `align` (a power of two, at least a page): over-reserves by
/// `align` and unmaps the unaligned head and the tail.
#[cfg(not(miri))]
pub fn mmap_reserve_aligned(len: usize, align: usize) -> Result<NonNull<u8>, i32> {
    let raw = mmap_reserve(len + align)?;
    let raw_addr = raw.as_ptr() as usize;
    let base = raw_addr.next_multiple_of(align);
    // SAFETY: both trimmed pieces lie inside the reservation just made and are unused.
    unsafe {
        if base > raw_addr {
            munmap(raw, base - raw_addr);
        }
        let tail = raw_addr + len + align - (base + len);
        if tail > 0 {
            munmap(NonNull::new_unchecked((base + len) as *mut u8), tail);
        }
        Ok(NonNull::new_unchecked(base as *mut u8))
    }
}

/// Unmaps a region made by [`mmap_reserve`].
///
/// # Safety
/// `addr..addr+len` must be a mapping (or part of one) this process made with [`mmap_reserve`],
/// and no live reference may point into it.
#[cfg(not(miri))]
pub unsafe fn munmap(addr: NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees the range is ours and unreferenced.
    let rc = unsafe { libc::munmap(addr.as_ptr().cast::<c_void>(), len) };
    debug_assert_eq!(rc, 0, "munmap failed");
}

/// Gives the physical pages behind a range back to the OS (`MADV_DONTNEED`); the range stays
/// mapped and reads as zero when next touched.
///
/// # Safety
/// The range must lie inside a private anonymous mapping of ours whose contents nobody needs.
#[cfg(not(miri))]
pub unsafe fn madvise_dontneed(addr: NonNull<u8>, len: usize) -> Result<(), i32> {
    // SAFETY: the caller guarantees the range is ours and its contents are dead.
    let rc = unsafe { libc::madvise(addr.as_ptr().cast::<c_void>(), len, libc::MADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

// Under Miri there is no mmap with MAP_NORESERVE: the same functions over the Rust allocator
// (zeroed, 4 MiB-aligned), so the single-threaded cores run unchanged in the interpreter.
#[cfg(miri)]
const MIRI_ALIGN: usize = 4 << 20;

/// Miri stand-in: zeroed memory from the Rust allocator.
#[cfg(miri)]
pub fn mmap_reserve(len: usize) -> Result<NonNull<u8>, i32> {
    mmap_reserve_aligned(len, MIRI_ALIGN)
}

/// Miri stand-in: zeroed memory from the Rust allocator, 4 MiB-aligned.
#[cfg(miri)]
pub fn mmap_reserve_aligned(len: usize, align: usize) -> Result<NonNull<u8>, i32> {
    assert!(align <= MIRI_ALIGN);
    let layout = std::alloc::Layout::from_size_align(len, MIRI_ALIGN).map_err(|_| libc::EINVAL)?;
    // SAFETY: len is non-zero for every caller (arenas, maps, the provider struct).
    NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).ok_or(libc::ENOMEM)
}

/// Miri stand-in for munmap of a whole reservation.
///
/// # Safety
/// `addr`/`len` exactly as returned by / passed to [`mmap_reserve`].
#[cfg(miri)]
pub unsafe fn munmap(addr: NonNull<u8>, len: usize) {
    let layout = std::alloc::Layout::from_size_align(len, MIRI_ALIGN).unwrap();
    // SAFETY: the caller passes a whole reservation made with this layout.
    unsafe { std::alloc::dealloc(addr.as_ptr(), layout) };
}

/// Prefaults `addr..addr+len` writable (`MADV_POPULATE_WRITE`, Linux 5.14+) without changing
/// its contents, so later writes take no page fault. `Err(errno)` where the kernel lacks it.
///
/// # Safety
/// The range must lie inside a private anonymous mapping of ours.
#[cfg(not(miri))]
pub unsafe fn madvise_populate_write(addr: NonNull<u8>, len: usize) -> Result<(), i32> {
    // SAFETY: the caller guarantees the range is ours; the advice does not change contents.
    let rc = unsafe {
        libc::madvise(
            addr.as_ptr().cast::<c_void>(),
            len,
            libc::MADV_POPULATE_WRITE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// Miri stand-in: nothing to prefault.
///
/// # Safety
/// As the real one.
#[cfg(miri)]
pub unsafe fn madvise_populate_write(_addr: NonNull<u8>, _len: usize) -> Result<(), i32> {
    Ok(())
}

/// Miri stand-in: zero the range.
///
/// # Safety
/// As the real one.
#[cfg(miri)]
pub unsafe fn madvise_dontneed(addr: NonNull<u8>, len: usize) -> Result<(), i32> {
    // SAFETY: the caller guarantees the range is ours and dead.
    unsafe { addr.as_ptr().write_bytes(0, len) };
    Ok(())
}

fn nodemask_for(node: usize) -> [u64; NODEMASK_WORDS] {
    let mut mask = [0u64; NODEMASK_WORDS];
    mask[node / 64] |= 1u64 << (node % 64);
    mask
}

/// Binds `addr..addr+len` to the real NUMA node `node` with `mbind(MPOL_BIND)`.
/// Returns the errno on failure (e.g. `ENOSYS` in a kernel without NUMA, `EINVAL` for a node the
/// machine does not have, `EPERM` under some sandboxes).
///
/// # Safety
/// The range must be a mapping of ours (mbind only changes where future faults are served).
pub unsafe fn mbind_bind(addr: NonNull<u8>, len: usize, node: usize) -> Result<(), i32> {
    if node >= NODEMASK_BITS {
        return Err(libc::EINVAL);
    }
    if cfg!(miri) {
        return Err(libc::ENOSYS);
    }
    let mask = nodemask_for(node);
    // SAFETY: the mask array outlives the call and holds NODEMASK_BITS bits, the maxnode we pass.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mbind,
            addr.as_ptr(),
            len,
            MPOL_BIND,
            mask.as_ptr(),
            NODEMASK_BITS + 1,
            0u32,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_errno())
    }
}

/// The memory policy that governs `addr` (`get_mempolicy(…, MPOL_F_ADDR)`): the mode and the
/// lowest node of its mask.
pub fn get_mempolicy_addr(addr: usize) -> Result<(i32, Option<usize>), i32> {
    let mut mode: i32 = 0;
    let mut mask = [0u64; NODEMASK_WORDS];
    // SAFETY: mode and mask are valid for writes of the sizes the kernel is told; MPOL_F_ADDR only
    // reads the VMA covering `addr`, it does not dereference it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &raw mut mode,
            mask.as_mut_ptr(),
            NODEMASK_BITS + 1,
            addr,
            MPOL_F_ADDR,
        )
    };
    if rc != 0 {
        return Err(last_errno());
    }
    let first = mask
        .iter()
        .enumerate()
        .find(|(_, w)| **w != 0)
        .map(|(i, w)| i * 64 + w.trailing_zeros() as usize);
    Ok((mode, first))
}

/// The node whose memory backs the (already touched) page at `addr`
/// (`get_mempolicy(MPOL_F_NODE | MPOL_F_ADDR)`).
pub fn node_of_address(addr: usize) -> Result<usize, i32> {
    let mut node: i32 = -1;
    // SAFETY: `node` is valid for a write of one int; no mask is passed (maxnode 0); the kernel
    // only looks the address up.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &raw mut node,
            ptr::null_mut::<u64>(),
            0usize,
            addr,
            MPOL_F_NODE | MPOL_F_ADDR,
        )
    };
    if rc != 0 {
        return Err(last_errno());
    }
    usize::try_from(node).map_err(|_| libc::EINVAL)
}

/// `sched_getcpu()` through glibc (a vDSO call on x86-64).
pub fn sched_getcpu() -> Option<usize> {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// The raw `getcpu(2)` system call: the CPU and the (real) node the kernel says we run on.
pub fn getcpu() -> Option<(usize, usize)> {
    let mut cpu: u32 = 0;
    let mut node: u32 = 0;
    // SAFETY: both out-pointers are valid for a u32 write; the third argument is unused since 2.6.24.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &raw mut cpu,
            &raw mut node,
            ptr::null_mut::<c_void>(),
        )
    };
    (rc == 0).then_some((cpu as usize, node as usize))
}

/// The system page size (`sysconf(_SC_PAGESIZE)`).
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(v).unwrap_or(4096)
}

/// `getenv(name)` as bytes, `None` when unset: the workspace's one environment reader. No heap,
/// so it can run while a global allocator is being created. Like `getenv` itself it must not
/// race a `setenv` (the allocators read their variables once, at instance creation). Under
/// Miri every variable reads as unset, so interpreted tests do not depend on the environment.
pub fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    #[cfg(miri)]
    {
        let _ = name;
        None
    }
    #[cfg(not(miri))]
    {
        // SAFETY: `name` is NUL-terminated; getenv only reads the environment.
        let p = unsafe { libc::getenv(name.as_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: a non-null getenv result is a NUL-terminated string that lives while the
        // environment is not modified (callers parse it at once).
        Some(unsafe { core::ffi::CStr::from_ptr(p) }.to_bytes())
    }
}

/// Number of CPUs configured (`sysconf(_SC_NPROCESSORS_CONF)`).
pub fn nprocs_conf() -> usize {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(v).unwrap_or(1).max(1)
}

/// Reads a small file (sysfs) into `buf` without touching the Rust heap, so topology can be read
/// while a global allocator is still bootstrapping. Returns the bytes read, trimmed of trailing
/// white space; `None` if the file cannot be opened or read.
pub fn read_small_file<'a>(path: &[u8], buf: &'a mut [u8]) -> Option<&'a [u8]> {
    let mut cpath = [0u8; 512];
    if path.len() >= cpath.len() || path.contains(&0) {
        return None;
    }
    cpath[..path.len()].copy_from_slice(path);
    // SAFETY: cpath is NUL-terminated (zero-filled beyond path.len()).
    let fd = unsafe { libc::open(cpath.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut len = 0usize;
    loop {
        if len == buf.len() {
            break;
        }
        // SAFETY: the destination is the unfilled tail of `buf`, valid for writes of that length.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n < 0 {
            if last_errno() == libc::EINTR {
                continue;
            }
            // SAFETY: fd is an open descriptor of ours.
            unsafe { libc::close(fd) };
            return None;
        }
        if n == 0 {
            break;
        }
        len += n as usize;
    }
    // SAFETY: fd is an open descriptor of ours, closed once.
    unsafe { libc::close(fd) };
    let mut end = len;
    while end > 0 && buf[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    Some(&buf[..end])
}

/// Reads a fast-path environment variable (`SLUB_FASTPATH`, `SLAB_FASTPATH`) without the heap
/// and maps its value through `table` (`None` when unset or not in the table). The one rule
/// for both allocators: the variable overrides only an `Auto` setting; an explicit setting
/// in the code wins (the callers apply it).
pub fn fastpath_env<T: Copy>(name: &core::ffi::CStr, table: &[(&[u8], T)]) -> Option<T> {
    let v = getenv(name)?;
    table.iter().find(|(k, _)| *k == v).map(|&(_, t)| t)
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn reserve_touch_release_unmap() {
        let len = 1 << 20;
        let p = mmap_reserve(len).expect("mmap");
        // SAFETY: p is a fresh private mapping of len bytes.
        unsafe {
            p.as_ptr().write_bytes(0xab, 4096);
            madvise_dontneed(p, len).expect("madvise");
            assert_eq!(
                *p.as_ptr(),
                0,
                "MADV_DONTNEED must zero a private anonymous page"
            );
            munmap(p, len);
        }
    }

    #[test]
    fn mbind_to_node0_and_read_back() {
        let len = 1 << 20;
        let p = mmap_reserve(len).expect("mmap");
        // SAFETY: p is our mapping.
        match unsafe { mbind_bind(p, len, 0) } {
            Ok(()) => {
                let (mode, first) = get_mempolicy_addr(p.as_ptr() as usize).expect("get_mempolicy");
                assert_eq!(mode, MPOL_BIND);
                assert_eq!(first, Some(0));
                // SAFETY: p is our mapping; touch one page so it has a backing node.
                unsafe { p.as_ptr().write(1) };
                assert_eq!(node_of_address(p.as_ptr() as usize), Ok(0));
            }
            // A kernel without CONFIG_NUMA or a sandbox that forbids mbind: say so, not pass.
            Err(e) => eprintln!("mbind unavailable here (errno {e}); policy not checked"),
        }
        // SAFETY: unmapping our own mapping.
        unsafe { munmap(p, len) };
    }

    #[test]
    fn cpu_queries_agree() {
        let a = sched_getcpu().expect("sched_getcpu");
        let (b, _node) = getcpu().expect("getcpu");
        assert!(a < nprocs_conf() && b < nprocs_conf());
    }

    #[test]
    fn small_file_reader() {
        let mut buf = [0u8; 64];
        let s = read_small_file(b"/proc/sys/kernel/ostype", &mut buf).expect("read");
        assert_eq!(s, b"Linux");
        assert!(read_small_file(b"/nonexistent/x", &mut buf).is_none());
    }
}
