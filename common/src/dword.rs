//! A 16-byte-aligned pair of machine words with a double-word compare-exchange: the user-space
//! stand-in for the kernel's `cmpxchg_double` / `this_cpu_cmpxchg_double`.
//!
//! SLUB keeps two such pairs: `kmem_cache_cpu {freelist, tid}` and `slab {freelist, counters}`.
//! Each half is read on its own with a relaxed/acquire word load (as the kernel's `READ_ONCE` of
//! each field), and the pair is replaced together with one `lock cmpxchg16b` (x86-64 built with
//! `+cmpxchg16b`, see `.cargo/config.toml`), or portable-atomic's run-time detected or locked
//! fallback elsewhere.
//!
//! Mixed-size access: the halves are read as `AtomicUsize` and the pair is swapped as one
//! `AtomicU128` on the same bytes. The hardware keeps both coherent (x86 guarantees atomicity of
//! aligned 8- and 16-byte locked accesses). Miri flags *racing* mixed-size accesses, so the
//! multi-threaded tests that exercise this do not run under Miri.

use core::sync::atomic::{AtomicUsize, Ordering};
use portable_atomic::AtomicU128;

/// Two words, `lo` at the lower address, updated together by [`DoubleWord::cmpxchg`].
#[repr(C, align(16))]
#[derive(Debug, Default)]
pub struct DoubleWord {
    lo: AtomicUsize,
    hi: AtomicUsize,
}

const _: () = assert!(core::mem::size_of::<DoubleWord>() == 16);
const _: () = assert!(
    core::mem::size_of::<usize>() == 8,
    "slabworks targets 64-bit machines"
);

#[inline(always)]
fn pack(lo: usize, hi: usize) -> u128 {
    (lo as u128) | ((hi as u128) << 64)
}

impl DoubleWord {
    /// A pair holding `(lo, hi)`.
    pub const fn new(lo: usize, hi: usize) -> Self {
        Self {
            lo: AtomicUsize::new(lo),
            hi: AtomicUsize::new(hi),
        }
    }

    /// The low word (the freelist pointer in both SLUB pairs).
    #[inline(always)]
    pub fn lo(&self, order: Ordering) -> usize {
        self.lo.load(order)
    }

    /// The high word (tid, or the slab's counters).
    #[inline(always)]
    pub fn hi(&self, order: Ordering) -> usize {
        self.hi.load(order)
    }

    /// Stores the low word alone (only where no concurrent cmpxchg can run, e.g. under a lock
    /// every writer takes, or on a structure not yet published).
    #[inline(always)]
    pub fn set_lo(&self, v: usize, order: Ordering) {
        self.lo.store(v, order);
    }

    /// Stores the high word alone (same rule as [`Self::set_lo`]).
    #[inline(always)]
    pub fn set_hi(&self, v: usize, order: Ordering) {
        self.hi.store(v, order);
    }

    #[inline(always)]
    fn as_u128(&self) -> &AtomicU128 {
        // SAFETY: `self` is 16 bytes, 16-aligned (repr(C, align(16))), and lives as long as the
        // returned reference; AtomicU128 has the same size and alignment. All accesses to these
        // bytes are atomic (word or double-word), see the module header on mixed sizes.
        unsafe { AtomicU128::from_ptr(core::ptr::from_ref(self).cast_mut().cast::<u128>()) }
    }

    /// Both words read as one atomic 16-byte load.
    #[inline]
    pub fn load_pair(&self) -> (usize, usize) {
        let v = self.as_u128().load(Ordering::Acquire);
        (v as usize, (v >> 64) as usize)
    }

    /// Replaces `(lo, hi)` by `new` if it still holds `old`, atomically for both words
    /// (acquire-release). Returns whether it did.
    #[inline(always)]
    pub fn cmpxchg(&self, old: (usize, usize), new: (usize, usize)) -> bool {
        self.as_u128()
            .compare_exchange(
                pack(old.0, old.1),
                pack(new.0, new.1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Whether the 16-byte compare-exchange is a single lock-free instruction here
    /// (`lock cmpxchg16b` on x86-64), rather than portable-atomic's locked fallback.
    pub fn is_lock_free() -> bool {
        AtomicU128::is_lock_free()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmpxchg_swaps_both_or_neither() {
        let d = DoubleWord::new(1, 2);
        assert!(!d.cmpxchg((1, 3), (5, 6)));
        assert_eq!(d.load_pair(), (1, 2));
        assert!(d.cmpxchg((1, 2), (5, 6)));
        assert_eq!((d.lo(Ordering::Relaxed), d.hi(Ordering::Relaxed)), (5, 6));
    }

    #[cfg(not(miri))]
    #[test]
    fn concurrent_counter_pairs_never_tear() {
        use std::sync::Arc;
        let d = Arc::new(DoubleWord::new(0, 0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let d = Arc::clone(&d);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        loop {
                            let old = (d.lo(Ordering::Acquire), d.hi(Ordering::Acquire));
                            if d.cmpxchg(old, (old.0 + 1, old.1 + 2)) {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(d.load_pair(), (80_000, 160_000));
    }

    #[test]
    fn lock_free_on_x86_64() {
        if cfg!(all(target_arch = "x86_64", target_feature = "cmpxchg16b")) {
            assert!(DoubleWord::is_lock_free());
        }
    }
}
