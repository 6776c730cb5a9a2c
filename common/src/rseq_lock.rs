//! `local_trylock` on restartable sequences: a per-CPU lock word (the kernel's `acquired`
//! byte of `local_trylock_t`) that is taken without a lock prefix by a thread on the lock's
//! CPU and fails only when the lock is held — on same-CPU re-entry, by a thread of that CPU
//! that was preempted or migrated while holding it, or by a remote holder. It never spins: a
//! failed try is the caller's cue to take a slower path (SLUB's sheaves fall back to the slab
//! path, as the kernel's `alloc_from_pcs`/`free_to_pcs` do when `local_trylock` fails).
//!
//! ```text
//!   RseqLocalLock { acquired }           one per CPU slot; 0 = free
//!     try_lock(cpu, fence)               the right one of the two below
//!     ├─ try_lock_local(t, cpu)          on `cpu`: rseq cmpeq_store(acquired, 0 → LOCAL)
//!     └─ try_lock_remote(cpu, fence)     anywhere: cmpxchg(0 → token), fence_cpu, re-check
//!     unlock()                           acquired.store(0, Release), by the holder, anywhere
//!     word()                             for sequences that must not commit while it is held
//! ```
//!
//! # The protocol
//! - **Local lock** (the thread runs on `cpu`): one restartable sequence on `cpu` — compare
//!   `cpu_id`, compare `acquired == 0`, commit `acquired = LOCAL`
//!   ([`RseqThread::cmpeq_store`]). Sequences on one CPU never interleave, so two local lockers
//!   cannot both see 0 and both commit: the later one is aborted (it lost the CPU) or sees
//!   LOCAL. An abort is retried a bounded number of times (an abort is not a holder; a signal
//!   storm must still not make a try spin), then the try fails.
//! - **Remote lock** (the thread runs elsewhere: `pcs_flush_all`, a census, `barn_shrink`'s
//!   callers, or a thread that read its CPU id and migrated before locking):
//!   1. `cmpxchg(acquired, 0 → token)` with a token unique to this acquisition (≥ 2, from a
//!      global counter); failure → the lock is held, the try fails;
//!   2. [`rseq::fence_cpu`]`(cpu)`: a local locker that compared `acquired == 0` *before* step 1 may
//!      still be in its sequence; its commit is a plain store that would overwrite the token.
//!      When the fence returns it has committed or been aborted, and later sequences see the
//!      token;
//!   3. re-check `acquired == token`: if a local commit overwrote the token, the local locker
//!      holds the lock; the remote try fails **without writing** (writing 0 would unlock the
//!      local holder). The token is unique, so a value equal to it cannot be another remote
//!      holder's (no ABA between two remote holders and a local lock/unlock in between).
//! - **Unlock**: the holder stores 0 (release), from whatever CPU it now runs on. While the
//!   lock is held nobody else writes the word: local sequences commit only after comparing 0
//!   inside the same sequence, a remote cmpxchg only succeeds on 0. So a plain release store
//!   cannot lose anyone's update, and it need not be a sequence on `cpu` (the holder may have
//!   migrated). `slub/src/sheaf_model.rs` checks all of this exhaustively, with negative
//!   controls for each step left out (no fence, no re-check, a back-off that clears, a local
//!   lock that sets the word outside a sequence).
//!
//! # What the lock protects and how sequences use it
//! Plain data of the slot is read and written only by the holder. Restartable sequences that
//! work on the slot *without* taking the lock (SLUB's sheaf hits: `array_pop`/`array_push`)
//! pass [`RseqLocalLock::word`] as their `busy` word: they compare it with 0 inside the
//! section before loading anything, so they never commit while a holder is in its critical
//! section (a local lock is an rseq commit on the CPU: ordered before or after every such
//! sequence; a remote one fences the CPU before it touches the data).
//!
//! Memory ordering: the remote cmpxchg and re-check are SeqCst and `membarrier` orders the
//! fenced CPU's earlier commit before the re-check; unlock is a release store after every
//! write of the critical section; a sequence's load of the word is a plain `mov` in an `asm!`
//! block (a compiler barrier), ordered before its later loads by x86's load-load order.
//!
//! # Lock depth
//! A successful lock counts as an allocator lock in debug builds
//! ([`crate::sync::lockdep_acquired`]), so a heap allocation while it is held aborts the test
//! binaries exactly as under a `RawSpinLock`. The holder must be the thread that unlocks.
//!
//! Everything here needs rseq ([`crate::rseq`]) for the local form and `membarrier` for the
//! remote form where `fence` is asked for; without rseq the callers use `RawSpinLock` (SLUB's
//! `fastpath=cmpxchg`).

use crate::rseq::{self, Fail, RseqThread};
use crate::sync::{lockdep_acquired, lockdep_released, relax};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The word's value while a local (on-CPU) locker holds it.
pub const LOCAL: usize = 1;

/// Aborted local tries before a try gives up (an abort is preemption or a signal, not a
/// holder: retrying a few times keeps the try exact under light interference and finite
/// under a storm).
const ABORT_RETRIES: u32 = 8;

/// Remote tokens: every remote acquisition gets a fresh value ≥ 2.
static NEXT_TOKEN: AtomicUsize = AtomicUsize::new(2);

fn next_token() -> usize {
    // Wraps after 2^64 acquisitions; skip 0 and LOCAL.
    loop {
        let t = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        if t > LOCAL {
            return t;
        }
    }
}

/// A per-CPU `local_trylock_t` on restartable sequences (see the module header).
#[derive(Debug, Default)]
#[repr(C)]
pub struct RseqLocalLock {
    /// `acquired`: 0 free, [`LOCAL`], or a remote holder's token.
    acquired: AtomicUsize,
}

/// Why a try failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryFail {
    /// Someone holds the lock (same-CPU re-entry, a descheduled holder, a remote holder).
    Held,
    /// A local try: the thread is not on the lock's CPU.
    WrongCpu,
    /// A local try: aborted 8 times in a row (`ABORT_RETRIES`).
    Aborted,
}

impl RseqLocalLock {
    /// A free lock.
    pub const fn new() -> Self {
        Self {
            acquired: AtomicUsize::new(0),
        }
    }

    /// The word sequences compare with 0 (`busy` of the rseq array primitives).
    #[inline(always)]
    pub fn word(&self) -> &AtomicUsize {
        &self.acquired
    }

    /// Whether someone holds it (racy unless the caller is the holder).
    pub fn is_locked(&self) -> bool {
        self.acquired.load(Ordering::Relaxed) != 0
    }

    /// Local `local_trylock` on `cpu`, which the calling thread must run on: one sequence sets
    /// `acquired` from 0 to [`LOCAL`].
    ///
    /// # Errors
    /// [`TryFail::Held`], [`TryFail::WrongCpu`], [`TryFail::Aborted`].
    #[inline(always)]
    pub fn try_lock_local(&self, t: &RseqThread, cpu: usize) -> Result<(), TryFail> {
        let mut aborts = 0;
        loop {
            match t.cmpeq_store(cpu, &self.acquired, 0, LOCAL) {
                Ok(()) => {
                    lockdep_acquired();
                    return Ok(());
                }
                Err(Fail::Aborted) => {
                    aborts += 1;
                    if aborts >= ABORT_RETRIES {
                        return Err(TryFail::Aborted);
                    }
                }
                Err(Fail::WrongCpu) => return Err(TryFail::WrongCpu),
                Err(_) => return Err(TryFail::Held),
            }
        }
    }

    /// Remote `local_trylock` of the lock of `cpu` from any CPU: cmpxchg a fresh token, fence
    /// `cpu` (when `fence`: a CPU id no thread can run on needs none), re-check. Returns
    /// whether it is now held. Never writes the word unless it takes the lock.
    ///
    /// Aborts the process if `fence` is asked for and `membarrier` fails (a sequence might be
    /// in flight on `cpu`: nothing safe is left to do); callers choose this form only where
    /// [`rseq::fence_available`].
    #[cold]
    pub fn try_lock_remote(&self, cpu: usize, fence: bool) -> bool {
        let token = next_token();
        if self
            .acquired
            .compare_exchange(0, token, Ordering::SeqCst, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        if fence && !rseq::fence_cpu(cpu) {
            std::process::abort();
        }
        if self.acquired.load(Ordering::SeqCst) != token {
            // A local locker that compared 0 before our cmpxchg committed after it: it holds.
            return false;
        }
        lockdep_acquired();
        true
    }

    /// `local_trylock` of the lock of `cpu` from the calling thread: the local form when the
    /// thread has an rseq area and runs on `cpu`, else the remote one. Fails only if held (or
    /// a local try was aborted 8 times in a row).
    #[inline(always)]
    pub fn try_lock(&self, cpu: usize, fence: bool) -> bool {
        if let Some(t) = rseq::this_thread() {
            match self.try_lock_local(&t, cpu) {
                Ok(()) => return true,
                Err(TryFail::WrongCpu) => {}
                Err(TryFail::Held | TryFail::Aborted) => return false,
            }
        }
        self.try_lock_remote(cpu, fence)
    }

    /// `local_lock`: waits (spin, then yield) until [`Self::try_lock`] succeeds. Only for
    /// paths where the kernel may block or queues work on the CPU; never for fast paths.
    pub fn lock(&self, cpu: usize, fence: bool) {
        let mut spins = 0;
        while !self.try_lock(cpu, fence) {
            relax(&mut spins);
        }
    }

    /// `local_unlock`, by the holder, from any CPU: after every write of the critical section.
    #[inline(always)]
    pub fn unlock(&self) {
        debug_assert!(self.is_locked(), "unlock of a free RseqLocalLock");
        lockdep_released();
        self.acquired.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::lock_depth;

    #[test]
    fn remote_lock_excludes_remote_and_unlock_frees() {
        let l = RseqLocalLock::new();
        let d = lock_depth();
        assert!(l.try_lock_remote(0, false));
        assert!(l.is_locked());
        assert_eq!(lock_depth(), d + u32::from(crate::sync::LOCKDEP));
        assert!(!l.try_lock_remote(0, false), "a second holder");
        l.unlock();
        assert_eq!(lock_depth(), d);
        assert!(!l.is_locked());
        assert!(l.try_lock_remote(0, false));
        l.unlock();
    }

    #[test]
    fn remote_tokens_are_unique_and_not_local() {
        let a = next_token();
        let b = next_token();
        assert!(a > LOCAL && b > LOCAL && a != b);
    }

    #[test]
    fn remote_try_that_loses_to_a_local_commit_leaves_the_word_alone() {
        // The local commit landing between the cmpxchg and the re-check is simulated by a
        // word that already holds LOCAL: the remote try must fail and not clear it.
        let l = RseqLocalLock::new();
        l.acquired.store(LOCAL, Ordering::Relaxed);
        assert!(!l.try_lock_remote(0, false));
        assert_eq!(l.acquired.load(Ordering::Relaxed), LOCAL);
    }
}
