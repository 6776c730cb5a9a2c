//! Restartable sequences: per-CPU operations that are atomic against every other
//! thread *on the same CPU* without a lock prefix, as the kernel's `this_cpu_*` operations are
//! with preemption off.
//!
//! # What a restartable sequence is
//! A thread registers a `struct rseq` area with the kernel. The kernel keeps `cpu_id` in it up to
//! date, and if the thread is preempted, migrated or interrupted by a signal while its
//! instruction pointer lies inside the range named by the `struct rseq_cs` descriptor currently
//! stored in `area.rseq_cs`, the kernel moves the instruction pointer to that descriptor's
//! `abort_ip` before the thread runs another user instruction. A critical section is therefore:
//! store the descriptor address in `area.rseq_cs`; (start_ip) compare `area.cpu_id` with the CPU
//! whose data we are about to touch; plain loads and compares; at most one *committing* store as
//! the last instruction; (post_commit_ip). Every sequence touching CPU X's data runs on CPU X and
//! either completes without any other user code running on X in between, or does not reach its
//! commit. So sequences on the same CPU never interleave.
//!
//! # Files (each uses only those below it)
//! ```text
//!   word.rs          cmpeq_store                       (this_cpu_cmpxchg)
//!   list.rs          list_pop / list_push, pair_pop / pair_push ({head, tid}: SLUB's freelist)
//!   array.rs         array_pop / array_push            (SLAB's array_cache)
//!   asm.rs           rseq_prologue! / rseq_epilogue!: descriptor, signature, abort handler
//!   fence.rs         fence_cpu: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, FLAG_CPU)
//!   registration.rs  this thread's area: glibc's or our own
//!   glibc.rs         thread_pointer, __rseq_offset / __rseq_size (also used by percpu::cpu_id)
//! ```
//! Primitives return [`Fail`]; an abort is counted ([`abort_count`]) and the caller retries.
//!
//! Everything here is x86-64 Linux. Elsewhere, and under Miri, [`this_thread`] returns `None`.

#![cfg_attr(
    not(all(target_arch = "x86_64", target_os = "linux", not(miri))),
    allow(dead_code, unused_imports)
)]

use core::sync::atomic::{AtomicU64, Ordering};

#[macro_use]
mod asm;
mod array;
mod fence;
mod glibc;
mod list;
mod registration;
mod word;

pub use fence::{fence_available, fence_cpu};
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
pub(crate) use glibc::{glibc_rseq, thread_pointer};
pub use registration::{registration, Registration};

/// The abort signature (glibc's and librseq's on x86).
pub const RSEQ_SIG: u32 = 0x5305_3053;

/// Why a primitive did not commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fail {
    /// The thread is not on the CPU named (it was migrated since reading its CPU id).
    WrongCpu,
    /// A compared word did not hold the expected value.
    Mismatch,
    /// `pop` found the list empty.
    Empty,
    /// The kernel aborted the sequence (preemption, migration, signal, fence).
    Aborted,
    /// `push` of an object that already heads the list (the naive double-free check).
    DoubleFree,
}

const ST_OK: u32 = 0;
const ST_WRONG_CPU: u32 = 1;
const ST_MISMATCH: u32 = 2;
const ST_EMPTY: u32 = 3;
const ST_ABORTED: u32 = 4;
const ST_DOUBLE_FREE: u32 = 5;

static ABORTS: AtomicU64 = AtomicU64::new(0);

/// The outcome of a sequence: success is tested alone on the hot path (no jump table over
/// the codes); the failure codes are decoded out of line.
#[inline(always)]
fn status(st: u32) -> Result<(), Fail> {
    if st == ST_OK {
        Ok(())
    } else {
        Err(status_fail(st))
    }
}

#[cold]
#[inline(never)]
fn status_fail(st: u32) -> Fail {
    match st {
        ST_WRONG_CPU => Fail::WrongCpu,
        ST_MISMATCH => Fail::Mismatch,
        ST_EMPTY => Fail::Empty,
        ST_DOUBLE_FREE => Fail::DoubleFree,
        st => {
            debug_assert_eq!(st, ST_ABORTED);
            ABORTS.fetch_add(1, Ordering::Relaxed);
            Fail::Aborted
        }
    }
}

/// Sequences aborted by the kernel so far, process-wide.
pub fn abort_count() -> u64 {
    ABORTS.load(Ordering::Relaxed)
}

/// A free-pointer codec for the list primitives: the link of object `o` is the word at
/// `o + offset`, stored plain or, with a hardening key, as `next ^ key ^ swab(o + offset)`
/// (SLUB's `CONFIG_SLAB_FREELIST_HARDENED` encoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Byte offset of the link word inside an object (word aligned).
    pub offset: usize,
    /// Hardening key (`s->random`), or `None` for plain pointers.
    pub key: Option<usize>,
}

/// Where the fields of an array stack (SLAB's `array_cache`) lie, for
/// [`RseqThread::array_pop`] / [`RseqThread::array_push`]: `avail` (u32) at offset 0 and
/// `limit` (u32) at offset 4 are fixed; these are the others, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArrayLayout {
    /// Offset of `entry[0]` (pointer-sized entries).
    pub entries: usize,
    /// Offset of the u32 `touched` flag that a pop sets.
    pub touched: usize,
}

/// The registered rseq area of the calling thread. Not `Send`: it names this thread's area.
#[derive(Debug)]
pub struct RseqThread {
    area: *mut u8,
}

/// This thread's rseq area, registering one if glibc did not. `None` where rseq is unavailable
/// (other targets, Miri, valgrind, or another library registered an area we do not know).
#[inline(always)]
pub fn this_thread() -> Option<RseqThread> {
    registration::area().map(|area| RseqThread { area })
}

/// Whether the calling thread has a usable rseq area.
pub fn available() -> bool {
    this_thread().is_some()
}

impl RseqThread {
    /// The CPU this thread runs on, as the kernel last wrote it into the area.
    #[inline(always)]
    pub fn cpu(&self) -> usize {
        // SAFETY: `area` is this thread's registered area (at least 20 bytes); cpu_id is the u32
        // at offset 4, written by the kernel.
        unsafe { core::ptr::read_volatile(self.area.add(4).cast::<u32>()) as usize }
    }
}

#[cfg(all(test, not(miri), target_arch = "x86_64", target_os = "linux"))]
mod tests;
