//! `RawLock`: a bare spinlock word for structures that live in page-provider memory and are
//! reached through raw pointers (`kmem_list3.list_lock`, the `array_cache.lock` of shared and
//! alien arrays). It never allocates; waiting spins briefly, then yields (see
//! [`common::sync::relax`]).

use core::sync::atomic::{AtomicBool, Ordering};

/// `spinlock_t` without a guard: callers pair `lock`/`unlock` by hand, as the kernel does.
#[derive(Debug, Default)]
pub struct RawLock {
    locked: AtomicBool,
}

impl RawLock {
    /// Unlocked.
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// `spin_lock`.
    #[inline(always)]
    pub fn lock(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                common::sync::relax(&mut spins);
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// `spin_trylock`.
    #[inline]
    pub fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// `spin_unlock`.
    #[inline(always)]
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Re-initialises the lock after its bytes were copied (`spin_lock_init` after a memcpy).
    pub fn init(&self) {
        self.locked.store(false, Ordering::Relaxed);
    }
}
