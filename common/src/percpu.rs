//! Per-CPU data: `cpu_id()`, `PerCpu<T>` and the per-CPU lock.
//!
//! # Which CPU am I on?
//! [`cpu_id`] reads `cpu_id` from the rseq area glibc (2.35+) registered for this thread: the
//! thread pointer plus `__rseq_offset`, one load. The kernel rewrites that field whenever the
//! thread is scheduled, so it is always a CPU the thread ran on very recently. Where no rseq area
//! is registered (valgrind, `GLIBC_TUNABLES=glibc.pthread.rseq=0`, old glibc, non-x86-64) it
//! falls back to `sched_getcpu()` (a vDSO call). The rseq symbols are looked up with `dlsym` once,
//! so the binary does not need a glibc that exports them.
//!
//! # Migration and the per-CPU lock
//! In the kernel, code that uses a per-CPU structure disables preemption or interrupts first, so
//! "my CPU" cannot change under it. A user-space thread can be preempted and migrated at any
//! instruction, so the CPU id it read may be stale by the time it touches the slot, and two threads
//! can be inside the same CPU's slot at once. Every per-CPU structure therefore stays correct
//! when shared:
//! - [`LocalLock`] (the kernel's `local_lock` / `local_irq_save` stand-in) is a real lock on the
//!   *slot*, not on the CPU: [`PerCpuLocked::lock_this_cpu`] reads the CPU id, locks that slot and
//!   returns a guard that names the slot it locked. If the thread migrates after reading the id,
//!   it still holds exactly the slot it uses; another thread arriving on that CPU waits for the
//!   lock (correct, merely slower). With pinned threads no two threads ever share a slot, so the
//!   lock is an uncontended atomic exchange on a cache line the CPU already owns.
//! - Lockless per-CPU fast paths (SLUB's freelist + tid) rely on their double-word
//!   compare-exchange with the lock prefix instead, as `common::dword` explains.
//!
//! Slots are one cache line (or more) each, so CPUs never share a line, and they are allocated
//! from the page provider, never from the Rust heap.

use crate::page::Owner;
use crate::provider::{get_order, PageProvider, PAGE_SIZE};
use crate::sync::relax;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicIsize, AtomicU8, Ordering};

/// Where the CPU id comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuIdSource {
    /// glibc's registered rseq area.
    Rseq,
    /// `sched_getcpu()`.
    SchedGetcpu,
}

const SRC_UNKNOWN: u8 = 0;
const SRC_RSEQ: u8 = 1;
const SRC_GETCPU: u8 = 2;
static SOURCE: AtomicU8 = AtomicU8::new(SRC_UNKNOWN);
static RSEQ_OFFSET: AtomicIsize = AtomicIsize::new(0);
/// Tests can force the fallback.
static FORCE_FALLBACK: AtomicBool = AtomicBool::new(false);

/// The thread pointer (`%fs:0` on x86-64: the TCB's self pointer).
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
#[inline(always)]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux the word at %fs:0 is the TCB's pointer to itself (glibc's
    // `tcbhead_t.tcb`); reading it has no side effects.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
    }
    tp
}

/// Looks up glibc's rseq registration; returns the offset of the rseq area from the thread
/// pointer if this thread has one registered.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
fn probe_rseq() -> Option<isize> {
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names only reads the symbol tables.
    let (off, size) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
        )
    };
    if off.is_null() || size.is_null() {
        return None;
    }
    // SAFETY: glibc defines __rseq_offset as a const ptrdiff_t and __rseq_size as a const
    // unsigned int; dlsym gave their addresses.
    let (off, size) = unsafe { (*off.cast::<isize>(), *size.cast::<u32>()) };
    if size < 8 {
        return None; // not registered (size 0), or no cpu_id field
    }
    // The area is registered for every thread glibc creates; check this one has a valid id.
    let area = thread_pointer().wrapping_add_signed(off);
    // SAFETY: glibc registered an rseq area of at least __rseq_size bytes at tp + offset; cpu_id
    // is the u32 at offset 4, written by the kernel.
    let cpu = unsafe { core::ptr::read_volatile((area + 4) as *const u32) };
    (cpu as i32 >= 0).then_some(off)
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
fn probe_rseq() -> Option<isize> {
    None
}

#[cold]
fn init_source() -> u8 {
    let src = match probe_rseq() {
        Some(off) => {
            RSEQ_OFFSET.store(off, Ordering::Relaxed);
            SRC_RSEQ
        }
        None => SRC_GETCPU,
    };
    SOURCE.store(src, Ordering::Release);
    src
}

/// Where [`cpu_id`] gets its answer in this process.
pub fn cpu_id_source() -> CpuIdSource {
    let mut s = SOURCE.load(Ordering::Acquire);
    if s == SRC_UNKNOWN {
        s = init_source();
    }
    if s == SRC_RSEQ && !FORCE_FALLBACK.load(Ordering::Relaxed) {
        CpuIdSource::Rseq
    } else {
        CpuIdSource::SchedGetcpu
    }
}

/// Forces (or stops forcing) the `sched_getcpu()` fallback, process-wide. For tests and for
/// measuring the difference.
pub fn force_cpu_id_fallback(on: bool) {
    FORCE_FALLBACK.store(on, Ordering::Relaxed);
}

/// The CPU this thread is running on (or ran on a moment ago), from rseq or `sched_getcpu()`.
#[inline(always)]
pub fn cpu_id() -> usize {
    #[cfg(miri)]
    {
        0
    }
    #[cfg(not(miri))]
    {
        let s = SOURCE.load(Ordering::Relaxed);
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        if s == SRC_RSEQ && !FORCE_FALLBACK.load(Ordering::Relaxed) {
            let area = thread_pointer().wrapping_add_signed(RSEQ_OFFSET.load(Ordering::Relaxed));
            // SAFETY: SRC_RSEQ is only set after probe_rseq found glibc's registration; the
            // area of every glibc thread lives at tp + __rseq_offset, cpu_id at offset 4.
            let cpu = unsafe { core::ptr::read_volatile((area + 4) as *const u32) };
            if (cpu as i32) >= 0 {
                return cpu as usize;
            }
        }
        cpu_id_slow(s)
    }
}

#[cold]
#[inline(never)]
fn cpu_id_slow(s: u8) -> usize {
    if s == SRC_UNKNOWN {
        init_source();
        return cpu_id();
    }
    crate::sys::sched_getcpu().unwrap_or(0)
}

/// One cache-line-aligned slot.
#[repr(C, align(64))]
struct Slot<T>(T);

/// One `T` per possible CPU, each in its own cache line(s), in memory from the page provider.
pub struct PerCpu<T> {
    slots: NonNull<Slot<T>>,
    nr: usize,
    order: usize,
    provider: PageProvider,
}

// SAFETY: PerCpu hands out `&T` to any thread (like a `[T]` shared between threads), so it is
// Sync when T is Sync, and Send when T is Send (it owns its Ts).
unsafe impl<T: Sync> Sync for PerCpu<T> {}
// SAFETY: see Sync.
unsafe impl<T: Send> Send for PerCpu<T> {}

impl<T> PerCpu<T> {
    /// Allocates `nr_cpus` slots on node 0 (falling back to any node) and fills each with
    /// `init(cpu)`. `None` if the provider has no memory.
    pub fn new(provider: &PageProvider, nr_cpus: usize, init: impl Fn(usize) -> T) -> Option<Self> {
        let bytes = core::mem::size_of::<Slot<T>>() * nr_cpus.max(1);
        let order = get_order(bytes.max(PAGE_SIZE));
        let page = provider.alloc_pages_gfp(0, order, Owner::Metadata, crate::Gfp::KERNEL)?;
        let slots = provider.page_address(page).cast::<Slot<T>>();
        for cpu in 0..nr_cpus {
            // SAFETY: the block holds nr_cpus slots and is 4 KiB-aligned, so each slot is
            // aligned; the memory is ours and uninitialised, so write, not assign.
            unsafe { slots.as_ptr().add(cpu).write(Slot(init(cpu))) };
        }
        Some(Self {
            slots,
            nr: nr_cpus,
            order,
            provider: provider.clone(),
        })
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.nr
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.nr == 0
    }

    /// `per_cpu_ptr(p, cpu)`: the slot of `cpu` (ids beyond the slots wrap around, so a CPU
    /// hot-added after creation still gets a valid, if shared, slot).
    #[inline(always)]
    pub fn get(&self, cpu: usize) -> &T {
        let cpu = if cpu < self.nr { cpu } else { cpu % self.nr };
        // SAFETY: cpu < nr, and every slot was initialised in `new`.
        unsafe { &self.slots.as_ptr().add(cpu).as_ref().unwrap_unchecked().0 }
    }

    /// `this_cpu_ptr`: the slot of the CPU we are running on now.
    #[inline(always)]
    pub fn this_cpu(&self) -> &T {
        self.get(cpu_id())
    }

    /// All slots with their CPU id.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        (0..self.nr).map(move |c| (c, self.get(c)))
    }
}

impl<T> Drop for PerCpu<T> {
    fn drop(&mut self) {
        for cpu in 0..self.nr {
            // SAFETY: each slot was initialised once in `new` and is dropped once here.
            unsafe { core::ptr::drop_in_place(self.slots.as_ptr().add(cpu)) };
        }
        let page = self
            .provider
            .virt_to_page(self.slots.as_ptr() as usize)
            .expect("per-CPU block comes from this provider");
        // SAFETY: the block was allocated in `new` with this order and nobody uses it any more.
        let r = unsafe { self.provider.free_pages(page, self.order) };
        debug_assert!(r.is_ok());
    }
}

/// The kernel's `local_lock_t`: a lock per CPU slot (see the module header for why a real lock).
#[derive(Debug, Default)]
pub struct LocalLock {
    locked: AtomicBool,
}

impl LocalLock {
    /// Unlocked.
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// Takes the lock (spinning, then yielding).
    #[inline(always)]
    pub fn lock(&self) {
        if self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
    }

    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let mut spins = 0;
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

    /// Releases the lock.
    #[inline(always)]
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }

    /// Whether somebody holds it (assertions).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

/// A per-CPU `T` behind a [`LocalLock`] per slot: SLAB's array caches, SLUB's slow-path state.
pub struct PerCpuLocked<T> {
    inner: PerCpu<(LocalLock, UnsafeCell<T>)>,
}

// SAFETY: access to each T is serialised by its slot's LocalLock, so sharing is sound when T can
// be sent between threads.
unsafe impl<T: Send> Sync for PerCpuLocked<T> {}
// SAFETY: owns its Ts.
unsafe impl<T: Send> Send for PerCpuLocked<T> {}

impl<T> PerCpuLocked<T> {
    /// As [`PerCpu::new`].
    pub fn new(provider: &PageProvider, nr_cpus: usize, init: impl Fn(usize) -> T) -> Option<Self> {
        Some(Self {
            inner: PerCpu::new(provider, nr_cpus, |c| {
                (LocalLock::new(), UnsafeCell::new(init(c)))
            })?,
        })
    }

    /// `local_lock(&c->lock)` on the CPU we run on: locks that slot, whatever happens later.
    #[inline(always)]
    pub fn lock_this_cpu(&self) -> LocalGuard<'_, T> {
        self.lock_cpu(cpu_id())
    }

    /// Locks the slot of `cpu` (for remote drains: `cache_reap`, `flush_all`).
    #[inline(always)]
    pub fn lock_cpu(&self, cpu: usize) -> LocalGuard<'_, T> {
        let cpu = if cpu < self.inner.len() {
            cpu
        } else {
            cpu % self.inner.len()
        };
        let (lock, data) = self.inner.get(cpu);
        lock.lock();
        LocalGuard { lock, data, cpu }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// Proof that one per-CPU slot is locked; derefs to its `T`.
pub struct LocalGuard<'a, T> {
    lock: &'a LocalLock,
    data: &'a UnsafeCell<T>,
    cpu: usize,
}

impl<T> LocalGuard<'_, T> {
    /// The CPU whose slot is locked (which may no longer be the CPU we run on).
    pub fn cpu(&self) -> usize {
        self.cpu
    }
}

impl<T> Deref for LocalGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot's lock is held by this guard.
        unsafe { &*self.data.get() }
    }
}

impl<T> DerefMut for LocalGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the slot's lock is held by this guard, and &mut self makes this borrow unique.
        unsafe { &mut *self.data.get() }
    }
}

impl<T> Drop for LocalGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderConfig;
    use crate::topology::Topology;

    fn provider() -> PageProvider {
        PageProvider::new(&ProviderConfig::small(Topology::uniform(1, 2).unwrap(), 8)).unwrap()
    }

    #[cfg(not(miri))]
    #[test]
    fn cpu_id_is_a_cpu() {
        let id = cpu_id();
        assert!(id < crate::sys::nprocs_conf());
    }

    #[test]
    fn percpu_slots_are_separate_lines_from_the_provider() {
        let p = provider();
        let pc = PerCpu::new(&p, 4, |c| core::sync::atomic::AtomicUsize::new(c * 10)).unwrap();
        assert_eq!(pc.len(), 4);
        let a0 = core::ptr::from_ref(pc.get(0)) as usize;
        let a1 = core::ptr::from_ref(pc.get(1)) as usize;
        assert_eq!(a1 - a0, 64);
        assert!(p.contains(a0));
        assert_eq!(pc.get(3).load(Ordering::Relaxed), 30);
        assert_eq!(pc.get(5).load(Ordering::Relaxed), 10, "ids wrap");
        assert_eq!(p.stats().owner(Owner::Metadata), 1);
        drop(pc);
        assert_eq!(p.stats().pages_in_use, 0);
    }

    #[test]
    fn local_lock_guards_a_slot() {
        let p = provider();
        let pc = PerCpuLocked::new(&p, 2, |_| 0u64).unwrap();
        {
            let mut g = pc.lock_cpu(1);
            *g += 5;
            assert_eq!(g.cpu(), 1);
        }
        assert_eq!(*pc.lock_cpu(1), 5);
        let mut g = pc.lock_this_cpu();
        *g += 1;
    }
}
