//! Where this thread's `struct rseq` area comes from: glibc's (`__rseq_offset`) or our own
//! thread-local one registered with the raw `rseq` syscall ([`Registration`]).
//!
//! # Where the area comes from
//! glibc 2.35+ registers an area for every thread and exports `__rseq_offset` (from the thread
//! pointer) and `__rseq_size`; `glibc.rs` looks them up with `dlsym`. If glibc is
//! there but did not register (`__rseq_size == 0`: `GLIBC_TUNABLES=glibc.pthread.rseq=0`, or a
//! glibc without rseq support), each thread registers its own thread-local area with the raw
//! `rseq` syscall on first use ([`Registration::Own`]). We never register when glibc did: the
//! kernel allows one area per thread, and a second registration fails with `EBUSY`, which we
//! treat as "unavailable on this thread". Under valgrind, rseq is unavailable (the syscall fails).
//! Our own area is in static TLS and is not unregistered at thread exit: the kernel writes it only
//! on return to user space, and glibc does not reuse a thread's TLS block before the thread is
//! gone.

use super::RSEQ_SIG;
use core::sync::atomic::{AtomicU8, Ordering};

/// How this process gets its rseq areas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// glibc registered one per thread (`__rseq_offset`).
    Glibc,
    /// glibc did not; each thread registers its own thread-local area on first use.
    Own,
    /// Not x86-64 Linux, or Miri.
    Unavailable,
}

const REG_UNKNOWN: u8 = 0;
const REG_GLIBC: u8 = 1;
const REG_OWN: u8 = 2;
const REG_NONE: u8 = 3;
static REGISTRATION: AtomicU8 = AtomicU8::new(REG_UNKNOWN);

/// Which registration this process uses (decided once).
pub fn registration() -> Registration {
    let mut r = REGISTRATION.load(Ordering::Acquire);
    if r == REG_UNKNOWN {
        r = imp::init_registration();
    }
    match r {
        REG_GLIBC => Registration::Glibc,
        REG_OWN => Registration::Own,
        _ => Registration::Unavailable,
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
mod imp {
    use super::{REGISTRATION, REG_GLIBC, REG_NONE, REG_OWN, REG_UNKNOWN, RSEQ_SIG};
    use crate::rseq::{glibc_rseq, thread_pointer};
    use core::cell::UnsafeCell;
    use core::sync::atomic::{AtomicIsize, Ordering};

    static GLIBC_OFFSET: AtomicIsize = AtomicIsize::new(0);

    /// `struct rseq` (original 32-byte ABI), as the kernel writes it.
    #[repr(C, align(32))]
    pub(super) struct Area {
        cpu_id_start: UnsafeCell<u32>,
        cpu_id: UnsafeCell<u32>,
        rseq_cs: UnsafeCell<u64>,
        flags: UnsafeCell<u32>,
        pad: UnsafeCell<[u32; 3]>,
    }

    // SAFETY: each thread only touches its own Area (thread-local); the kernel writes it for
    // that thread only.
    unsafe impl Sync for Area {}

    const RSEQ_CPU_ID_UNINITIALIZED: u32 = u32::MAX; // -1
    const RSEQ_CPU_ID_REGISTRATION_FAILED: u32 = u32::MAX - 1; // -2

    thread_local! {
        static OWN: Area = const {
            Area {
                cpu_id_start: UnsafeCell::new(0),
                cpu_id: UnsafeCell::new(RSEQ_CPU_ID_UNINITIALIZED),
                rseq_cs: UnsafeCell::new(0),
                flags: UnsafeCell::new(0),
                pad: UnsafeCell::new([0; 3]),
            }
        };
    }

    #[cold]
    pub(super) fn init_registration() -> u8 {
        let r = match glibc_rseq() {
            Some((off, size)) if size >= 20 => {
                GLIBC_OFFSET.store(off, Ordering::Relaxed);
                REG_GLIBC
            }
            _ => REG_OWN,
        };
        let r = if r == REG_OWN && !own_registration_works() {
            REG_NONE
        } else {
            r
        };
        let _ = REGISTRATION.compare_exchange(REG_UNKNOWN, r, Ordering::AcqRel, Ordering::Acquire);
        REGISTRATION.load(Ordering::Acquire)
    }

    /// Registers this thread's own area (once); false if the kernel refuses.
    fn own_registration_works() -> bool {
        OWN.with(|a| register_own(core::ptr::from_ref(a).cast_mut()))
    }

    #[cold]
    #[inline(never)]
    fn register_own(a: *mut Area) -> bool {
        // SAFETY: `a` is this thread's own Area; only this thread and the kernel write it.
        let cpu = unsafe { core::ptr::read_volatile((*a).cpu_id.get()) };
        if cpu != RSEQ_CPU_ID_UNINITIALIZED {
            return cpu != RSEQ_CPU_ID_REGISTRATION_FAILED;
        }
        // SAFETY: rseq(area, len, flags, sig) with a 32-byte, 32-aligned area that lives as
        // long as the thread (static TLS); the kernel fills cpu_id on success.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rseq,
                a,
                core::mem::size_of::<Area>() as u32,
                0,
                RSEQ_SIG,
            )
        };
        if rc != 0 {
            // SAFETY: as above; marks the failure so we do not retry on every call.
            unsafe {
                core::ptr::write_volatile((*a).cpu_id.get(), RSEQ_CPU_ID_REGISTRATION_FAILED);
            };
            return false;
        }
        true
    }

    /// The calling thread's area, registering our own when needed.
    #[inline(always)]
    pub(in crate::rseq) fn area() -> Option<*mut u8> {
        let mut r = REGISTRATION.load(Ordering::Relaxed);
        if r == REG_UNKNOWN {
            r = init_registration();
        }
        if r == REG_GLIBC {
            let a = thread_pointer().wrapping_add_signed(GLIBC_OFFSET.load(Ordering::Relaxed));
            // SAFETY: glibc registered an area of __rseq_size >= 20 bytes at tp + offset for
            // every thread it created; cpu_id is the u32 at offset 4.
            let cpu = unsafe { core::ptr::read_volatile((a + 4) as *const u32) };
            return ((cpu as i32) >= 0).then_some(a as *mut u8);
        }
        if r == REG_OWN {
            return OWN.with(|a| {
                let p = core::ptr::from_ref(a).cast_mut();
                // SAFETY: this thread's own Area; the kernel writes cpu_id once registered.
                let cpu = unsafe { core::ptr::read_volatile((*p).cpu_id.get()) };
                ((cpu as i32) >= 0 || register_own(p)).then_some(p.cast::<u8>())
            });
        }
        None
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
mod imp {
    use super::{REGISTRATION, REG_NONE};
    use core::sync::atomic::Ordering;

    pub(super) fn init_registration() -> u8 {
        REGISTRATION.store(REG_NONE, Ordering::Release);
        REG_NONE
    }
    #[inline(always)]
    pub(in crate::rseq) fn area() -> Option<*mut u8> {
        None
    }
}

pub(super) use imp::area;
