//! Fencing a CPU: `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` ([`fence_cpu`]).
//!
//! # Fencing a CPU
//! [`fence_cpu`] is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU,
//! cpu)`: when it returns, any sequence of this process that was running on `cpu` has either
//! committed or been aborted, and every later one starts afresh. Code that does not run on a CPU
//! but must change its data marks it "busy" (a value its sequences compare against) and then
//! fences it, as tcmalloc's `StopCpu` does.

use core::sync::atomic::{AtomicU8, Ordering};

const FENCE_UNKNOWN: u8 = 0;
const FENCE_OK: u8 = 1;
const FENCE_NONE: u8 = 2;
static FENCE: AtomicU8 = AtomicU8::new(FENCE_UNKNOWN);

/// Registers the process for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` (once);
/// whether [`fence_cpu`] can work.
pub fn fence_available() -> bool {
    match FENCE.load(Ordering::Acquire) {
        FENCE_OK => true,
        FENCE_NONE => false,
        _ => {
            let ok = imp::membarrier_register();
            FENCE.store(if ok { FENCE_OK } else { FENCE_NONE }, Ordering::Release);
            ok
        }
    }
}

/// Fences `cpu`: on return, every rseq sequence of this process that was in flight on `cpu`
/// has committed or aborted. Returns false if membarrier is not available (then nothing is
/// fenced and callers must not rely on it).
pub fn fence_cpu(cpu: usize) -> bool {
    // A forked child has a new mm whose registration state the kernel may not have copied:
    // register again (idempotent) and retry once.
    fence_available()
        && (imp::membarrier_cpu(cpu) || (imp::membarrier_register() && imp::membarrier_cpu(cpu)))
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
mod imp {
    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    const MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ: libc::c_long = 1 << 7;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ: libc::c_long = 1 << 8;
    const MEMBARRIER_CMD_FLAG_CPU: libc::c_long = 1;

    pub(super) fn membarrier_register() -> bool {
        // SAFETY: membarrier takes no pointers.
        let q = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0) };
        if q < 0 || q & MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ == 0 {
            return false;
        }
        // SAFETY: as above.
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ,
                0,
                0,
            )
        };
        r == 0
    }

    pub(in crate::rseq) fn membarrier_cpu(cpu: usize) -> bool {
        // SAFETY: membarrier takes no pointers.
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
                MEMBARRIER_CMD_FLAG_CPU,
                cpu as libc::c_int,
            )
        };
        if r == 0 {
            return true;
        }
        // Kernels before 5.10 lack FLAG_CPU: fence every CPU running a thread of ours.
        // SAFETY: as above.
        let r = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ,
                0,
                0,
            )
        };
        r == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
mod imp {
    pub(super) fn membarrier_register() -> bool {
        false
    }
    pub(in crate::rseq) fn membarrier_cpu(_cpu: usize) -> bool {
        false
    }
}

/// The raw fence, without the re-registration [`fence_cpu`] adds (for the fork test).
#[cfg(test)]
pub(super) use imp::membarrier_cpu;
