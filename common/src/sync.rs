//! The one raw spinlock behind every allocator lock, the spin-wait policy, and the debug-build
//! lock-depth counter that enforces "never allocate from the heap while an allocator lock is
//! held" (the kernel's `might_alloc()` / lockdep idea).
//!
//! ```text
//!   RawSpinLock (test-and-test-and-set word; lock / try_lock / unlock by hand)
//!     ├─ SpinLock<T> + SpinLockGuard     (the provider's node locks, the percpu lock, slab_mutex)
//!     ├─ percpu::LocalLock               (= RawSpinLock: SLUB's and SLAB's per-CPU slot locks)
//!     └─ slab-classic RawLock            (= RawSpinLock: list_lock, shared/alien array locks)
//!   ChainMutex (a std Mutex that counts as an allocator lock: slab-classic's cache_chain_mutex)
//!   lock_depth() / might_alloc()         (debug builds; release builds compile them away)
//! ```
//!
//! # Waiting
//! A user-space thread holding a spinlock can be preempted, so a pure spin would burn the rest of
//! a time slice waiting for a thread that is not running. The waiter therefore spins a little
//! (`spin_loop` hints), then yields the CPU (`sched_yield`). With pinned threads and short
//! critical sections (the only kind the allocators have) the lock is almost always taken on the
//! first try. Nothing here allocates, so the locks can live in page-provider memory and guard a
//! global allocator's lists.
//!
//! # Lock depth (debug builds)
//! Every acquisition of an allocator lock adds one to a per-thread counter and every release
//! takes one off. An allocation from the Rust heap while the counter is non-zero is a bug: when
//! the allocator is the process's global allocator, that allocation re-enters it, may need the
//! very lock this thread holds, and deadlocks (seen: a checker formatting its error under a
//! buddy lock). [`might_alloc`] is called on entry to every heap entry point the project owns
//! (`GlobalSlab`, the preload library's `malloc` family, and [`LockCheckedAlloc`], the global
//! allocator of the allocators' test binaries); it reports the held depth on standard error
//! with no allocation of its own and aborts. The counter is a `const`-initialised thread local
//! without a destructor, so reading it never allocates and works during thread exit.
//!
//! A lock must be released by the thread that took it (true of every allocator lock here).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

#[cfg(debug_assertions)]
std::thread_local! {
    static LOCK_DEPTH: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// Records that this thread took an allocator lock (debug builds only).
#[inline(always)]
pub fn lockdep_acquired() {
    #[cfg(debug_assertions)]
    LOCK_DEPTH.with(|d| d.set(d.get() + 1));
}

/// Records that this thread released an allocator lock (debug builds only).
#[inline(always)]
pub fn lockdep_released() {
    #[cfg(debug_assertions)]
    LOCK_DEPTH.with(|d| d.set(d.get().wrapping_sub(1)));
}

/// How many allocator locks this thread holds (always 0 in release builds, which do not count).
#[inline]
pub fn lock_depth() -> u32 {
    #[cfg(debug_assertions)]
    {
        LOCK_DEPTH.with(core::cell::Cell::get)
    }
    #[cfg(not(debug_assertions))]
    {
        0
    }
}

/// Whether lock depths are counted in this build (debug assertions on).
pub const LOCKDEP: bool = cfg!(debug_assertions);

/// `might_alloc()`: called on entry to a heap allocation entry point. In debug builds, if this
/// thread holds an allocator lock, writes `allocation (from <site>) while holding N allocator
/// lock(s)` to standard error — from a stack buffer, no heap — and aborts the process (a panic
/// would allocate and re-enter). Free in release builds.
#[inline(always)]
pub fn might_alloc(site: &'static str) {
    #[cfg(debug_assertions)]
    {
        let depth = lock_depth();
        if depth != 0 {
            lockdep_violation(site, depth);
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = site;
}

#[cold]
#[inline(never)]
#[cfg(debug_assertions)]
fn lockdep_violation(site: &'static str, depth: u32) -> ! {
    let mut buf = StackBuf::<256>::new();
    let _ = core::fmt::write(
        &mut buf,
        format_args!(
            "slabworks lockdep: heap allocation (from {site}) while holding {depth} allocator \
             lock(s): the allocator may be the global allocator, so this can deadlock\n"
        ),
    );
    buf.write_to_stderr();
    std::process::abort();
}

/// A fixed-size text buffer on the stack: `core::fmt::Write` without the heap (truncates).
pub struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// The text written so far.
    pub fn as_str(&self) -> &str {
        // Only whole `&str`s are appended, cut at a char boundary below, so this cannot fail.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    /// Writes the text to file descriptor 2 with `write(2)` (no allocation, no lock).
    pub fn write_to_stderr(&self) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: the range lies inside `buf`; write(2) only reads it.
            let n = unsafe { libc::write(2, self.buf[off..].as_ptr().cast(), self.len - off) };
            if n <= 0 {
                return;
            }
            off += n as usize;
        }
    }
}

impl<const N: usize> Default for StackBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = N - self.len;
        let mut take = s.len().min(room);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// One step of a wait loop: spin for the first iterations, then yield to the scheduler.
#[inline]
pub fn relax(spins: &mut u32) {
    if *spins < 64 {
        *spins += 1;
        core::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// `spinlock_t` without a guard: a test-and-test-and-set word; callers pair [`Self::lock`] and
/// [`Self::unlock`] by hand, as the kernel does. The one spinlock of the workspace: every other
/// lock type is built on it, so every one keeps the lock depth.
#[derive(Debug, Default)]
pub struct RawSpinLock {
    locked: AtomicBool,
}

impl RawSpinLock {
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
        lockdep_acquired();
    }

    #[cold]
    #[inline(never)]
    fn lock_slow(&self) {
        let mut spins = 0u32;
        loop {
            while self.locked.load(Ordering::Relaxed) {
                relax(&mut spins);
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

    /// `spin_trylock`: whether the lock was taken.
    #[inline]
    pub fn try_lock(&self) -> bool {
        let ok = self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if ok {
            lockdep_acquired();
        }
        ok
    }

    /// `spin_unlock`. The caller must hold the lock (taken on this thread).
    #[inline(always)]
    pub fn unlock(&self) {
        lockdep_released();
        self.locked.store(false, Ordering::Release);
    }

    /// Whether somebody holds the lock right now (for assertions only).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    /// Re-initialises the lock after its bytes were copied (`spin_lock_init` after a memcpy).
    /// Only for a lock nobody holds (a copied held lock was never taken through this copy).
    pub fn init(&self) {
        self.locked.store(false, Ordering::Relaxed);
    }
}

/// A lock around a `T`, built on [`RawSpinLock`].
#[derive(Debug)]
pub struct SpinLock<T> {
    raw: RawSpinLock,
    data: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `data` to one thread at a time, so sharing the lock across
// threads is sound whenever `T` may be sent between threads.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: owning the lock means owning the `T`.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock holding `data`.
    pub const fn new(data: T) -> Self {
        Self {
            raw: RawSpinLock::new(),
            data: UnsafeCell::new(data),
        }
    }

    /// `spin_lock`.
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        self.raw.lock();
        SpinLockGuard { lock: self }
    }

    /// `spin_trylock`.
    #[inline]
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        // `then`, not `then_some`: a guard built eagerly would unlock on drop after a failure.
        self.raw.try_lock().then(|| SpinLockGuard { lock: self })
    }

    /// Whether somebody holds the lock right now (for assertions only).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Raw pointer to the data, for code that proves exclusive access some other way.
    pub fn data_ptr(&self) -> *mut T {
        self.data.get()
    }

    /// Mutable access through exclusive ownership of the lock.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

/// Holds a [`SpinLock`]; unlocks on drop.
#[derive(Debug)]
pub struct SpinLockGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves this thread holds the lock, so no one else accesses `data`.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only borrow through the guard.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.raw.unlock();
    }
}

/// A sleeping mutex that counts as an allocator lock (slab-classic's `cache_chain_mutex`, which
/// sleeps in the kernel): a `std::sync::Mutex<()>` whose guard keeps the lock depth.
#[derive(Debug, Default)]
pub struct ChainMutex {
    inner: std::sync::Mutex<()>,
}

/// Holds a [`ChainMutex`].
#[derive(Debug)]
pub struct ChainMutexGuard<'a> {
    _g: std::sync::MutexGuard<'a, ()>,
}

impl ChainMutex {
    /// Unlocked.
    pub const fn new() -> Self {
        Self {
            inner: std::sync::Mutex::new(()),
        }
    }

    /// `mutex_lock` (a poisoned mutex is taken anyway: it guards no data of its own).
    pub fn lock(&self) -> ChainMutexGuard<'_> {
        let g = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lockdep_acquired();
        ChainMutexGuard { _g: g }
    }

    /// `mutex_trylock`.
    pub fn try_lock(&self) -> Option<ChainMutexGuard<'_>> {
        let g = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        lockdep_acquired();
        Some(ChainMutexGuard { _g: g })
    }
}

impl Drop for ChainMutexGuard<'_> {
    fn drop(&mut self) {
        lockdep_released();
    }
}

/// A `GlobalAlloc` over the system allocator that calls [`might_alloc`] on every entry: the
/// global allocator of the allocators' test binaries, so a heap allocation under an allocator
/// lock anywhere in a test aborts with a report instead of passing unnoticed.
#[derive(Debug, Default, Clone, Copy)]
pub struct LockCheckedAlloc;

// SAFETY: forwards every call unchanged to `System`, which upholds the GlobalAlloc contract.
unsafe impl std::alloc::GlobalAlloc for LockCheckedAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        might_alloc("LockCheckedAlloc::alloc");
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        might_alloc("LockCheckedAlloc::alloc_zeroed");
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        might_alloc("LockCheckedAlloc::dealloc");
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        might_alloc("LockCheckedAlloc::realloc");
        // SAFETY: forwarded contract.
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_and_try_lock() {
        let l = SpinLock::new(5u32);
        {
            let mut g = l.lock();
            *g += 1;
            assert!(l.try_lock().is_none());
            assert!(l.is_locked());
        }
        assert_eq!(*l.lock(), 6);
    }

    #[cfg(not(miri))]
    #[test]
    fn counts_under_contention() {
        use std::sync::Arc;
        let l = Arc::new(SpinLock::new(0u64));
        let ts: Vec<_> = (0..4)
            .map(|_| {
                let l = Arc::clone(&l);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(*l.lock(), 40_000);
    }
}
