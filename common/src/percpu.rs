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
//! - Lockless per-CPU fast paths (SLUB's freelist + tid; SLAB's and the sheaves' arrays in rseq
//!   mode) rely instead on a restartable sequence on the slot's CPU ([`crate::rseq`]) or, without
//!   rseq, on a double-word compare-exchange with the lock prefix ([`crate::dword`]).
//!
//! Slots are one cache line (or more) each, so CPUs never share a line, and they are allocated
//! from the page provider, never from the Rust heap: the `nr_cpus` slots of one `PerCpu` are one
//! contiguous area packed with other instances' areas into shared chunks of pages
//! ([`crate::pcpu_alloc`], the kernel's `alloc_percpu`), so a `PerCpu` of a few lines no longer
//! costs a page of its own.

use crate::pcpu_alloc::{free_percpu, pcpu_alloc, PcpuArea};
use crate::provider::PageProvider;
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
use crate::rseq::{glibc_rseq, thread_pointer};

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
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

/// Looks up glibc's rseq registration; returns the offset of the rseq area from the thread
/// pointer if this thread has one registered.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
fn probe_rseq() -> Option<isize> {
    let (off, size) = glibc_rseq()?;
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

/// One `T` per possible CPU, each in its own cache line(s), in memory from the page provider
/// (an area of a shared per-CPU chunk, see [`crate::pcpu_alloc`]).
pub struct PerCpu<T> {
    /// The slots: `area.addr`.
    area: PcpuArea,
    nr: usize,
    provider: PageProvider,
    /// Owns `nr` Ts.
    _owns: PhantomData<T>,
}

// Same size as with one page block per instance (slots, nr, order, provider): `kmem_cache`
// embeds PerCpus, and its size decides how many fit in a slab.
const _: () =
    assert!(core::mem::size_of::<PerCpu<u8>>() == 3 * 8 + core::mem::size_of::<PageProvider>());

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
        const { assert!(core::mem::align_of::<Slot<T>>() <= crate::pcpu_alloc::UNIT) };
        let area = pcpu_alloc(provider.pcpu(), provider, bytes)?;
        let slots = area.addr.cast::<Slot<T>>();
        // A panicking `init` leaks the area (as it leaked the page before packing): nothing
        // frees it with slots half written.
        let provider = provider.clone();
        for cpu in 0..nr_cpus {
            // SAFETY: the area holds nr_cpus slots and is 64-byte aligned (Slot's alignment, see
            // the assertion above), so each slot is aligned; the memory is ours and
            // uninitialised, so write, not assign.
            unsafe { slots.as_ptr().add(cpu).write(Slot(init(cpu))) };
        }
        Some(Self {
            area,
            nr: nr_cpus,
            provider,
            _owns: PhantomData,
        })
    }

    #[inline(always)]
    fn slots(&self) -> *mut Slot<T> {
        self.area.addr.as_ptr().cast::<Slot<T>>()
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
        unsafe { &self.slots().add(cpu).as_ref().unwrap_unchecked().0 }
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
            unsafe { core::ptr::drop_in_place(self.slots().add(cpu)) };
        }
        // SAFETY: the area was allocated in `new` from this provider, is freed only here, and
        // its slots were just dropped, so nobody uses it any more.
        unsafe { free_percpu(self.provider.pcpu(), &self.provider, self.area) };
    }
}

/// The kernel's `local_lock_t`: a lock per CPU slot (see the module header for why a real lock).
/// The workspace's one spinlock, so it keeps the debug lock depth like every allocator lock.
pub type LocalLock = crate::sync::RawSpinLock;

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
    use crate::page::Owner;
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
        // 4 slots of 64 B: 4 units of one per-CPU chunk. The topology has 2 CPUs, so chunks are
        // order 0 (see pcpu_alloc): one page, as with the unpacked PerCpu.
        assert_eq!(p.percpu_stats().chunk_order, 0);
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

/// The packed allocator seen through `PerCpu`: sharing, alignment, no overlap, give-back.
#[cfg(test)]
mod packed_tests {
    use super::*;
    use crate::pcpu_alloc::UNIT;
    use crate::provider::{ProviderConfig, PAGE_SIZE};
    use crate::topology::Topology;

    fn provider(page_limit: Option<usize>) -> PageProvider {
        let mut cfg = ProviderConfig::small(Topology::uniform(1, 2).unwrap(), 8);
        cfg.bind = false;
        cfg.page_limit = page_limit;
        PageProvider::new(&cfg).unwrap()
    }

    /// A `PerCpu` of `[u64; K]` whose words hold a pattern of its seed, behind a trait so
    /// instances of different sizes sit in one list.
    trait Inst: Send + Sync {
        /// (first byte, bytes) of the whole slot array.
        fn range(&self) -> (usize, usize);
        /// Every slot 64-byte aligned and still holding its pattern.
        fn verify(&self);
    }

    struct Patterned<const K: usize> {
        pc: PerCpu<[u64; K]>,
        seed: u64,
    }

    fn word(seed: u64, cpu: usize, j: usize) -> u64 {
        seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((cpu as u64) << 32 | j as u64)
    }

    impl<const K: usize> Inst for Patterned<K> {
        fn range(&self) -> (usize, usize) {
            let a = core::ptr::from_ref(self.pc.get(0)) as usize;
            (
                a,
                self.pc.len().max(1) * core::mem::size_of::<Slot<[u64; K]>>(),
            )
        }
        fn verify(&self) {
            for (cpu, v) in self.pc.iter() {
                assert_eq!(core::ptr::from_ref(v) as usize % UNIT, 0, "slot alignment");
                for (j, w) in v.iter().enumerate() {
                    assert_eq!(
                        *w,
                        word(self.seed, cpu, j),
                        "seed {} cpu {cpu} word {j}",
                        self.seed
                    );
                }
            }
        }
    }

    fn make<const K: usize>(p: &PageProvider, nr: usize, seed: u64) -> Option<Box<dyn Inst>> {
        let pc =
            PerCpu::<[u64; K]>::new(p, nr, |cpu| core::array::from_fn(|j| word(seed, cpu, j)))?;
        Some(Box::new(Patterned { pc, seed }))
    }

    /// An instance of one of four slot sizes (1, 2, 3 or 5 lines) with 1..=4 CPUs.
    fn make_any(p: &PageProvider, seed: u64) -> Option<Box<dyn Inst>> {
        let nr = 1 + (seed as usize % 4);
        match (seed / 4) % 4 {
            0 => make::<1>(p, nr, seed),
            1 => make::<9>(p, nr, seed),
            2 => make::<20>(p, nr, seed),
            _ => make::<33>(p, nr, seed),
        }
    }

    fn verify_all(insts: &[Box<dyn Inst>]) {
        for i in insts {
            i.verify();
        }
    }

    fn assert_disjoint(insts: &[Box<dyn Inst>]) {
        let mut r: Vec<(usize, usize)> = insts.iter().map(|i| i.range()).collect();
        r.sort_unstable();
        for w in r.windows(2) {
            assert!(
                w[0].0 + w[0].1 <= w[1].0,
                "areas {:x?} and {:x?} overlap",
                w[0],
                w[1]
            );
        }
    }

    /// xorshift: a reproducible shuffle without a dependency.
    fn shuffle<T>(v: &mut [T], mut x: u64) {
        for i in (1..v.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.swap(i, (x % (i as u64 + 1)) as usize);
        }
    }

    const N: usize = if cfg!(miri) { 24 } else { 300 };

    #[test]
    fn many_instances_share_chunks_and_never_overlap() {
        let p = provider(None);
        let mut insts: Vec<Box<dyn Inst>> =
            (0..N as u64).map(|s| make_any(&p, s).unwrap()).collect();
        let units: usize = insts.iter().map(|i| i.range().1 / UNIT).sum();
        let st = p.percpu_stats();
        assert_eq!(st.units_in_use, units);
        assert_eq!(st.big_areas, 0);
        // First fit with a few sizes keeps the chunks nearly full: far fewer pages than one per
        // instance, and at most a third more chunks than a perfect packing.
        let pages = p.stats().pages_in_use;
        assert_eq!(pages, st.chunks << st.chunk_order);
        assert!(pages * 4 < N, "{pages} pages for {N} instances");
        assert!(
            st.chunks <= units.div_ceil(st.chunk_capacity) * 4 / 3 + 1,
            "{st:?}"
        );
        assert_disjoint(&insts);
        verify_all(&insts);
        p.check_invariants().unwrap();

        // Free in random order, re-checking the rest as holes open up.
        shuffle(&mut insts, 0x1234_5678);
        while let Some(i) = insts.pop() {
            drop(i);
            if insts.len() % 16 == 0 {
                verify_all(&insts);
                p.check_invariants().unwrap();
            }
        }
        assert_eq!(p.stats().pages_in_use, 0, "every chunk given back");
        assert_eq!(p.percpu_stats().chunks, 0);
        p.check_invariants().unwrap();
    }

    #[test]
    fn holes_are_reused_first_fit() {
        let p = provider(None);
        let a = make::<1>(&p, 2, 1).unwrap();
        let b = make::<1>(&p, 2, 2).unwrap();
        let c = make::<1>(&p, 2, 3).unwrap();
        let hole = b.range();
        drop(b);
        // A 1-unit request takes the start of the hole, the next one its end.
        let d = make::<1>(&p, 1, 4).unwrap();
        assert_eq!(d.range().0, hole.0);
        let e = make::<1>(&p, 1, 5).unwrap();
        assert_eq!(e.range().0, hole.0 + UNIT);
        // Nothing bigger than the hole lands in it.
        let f = make::<1>(&p, 2, 6).unwrap();
        assert!(f.range().0 > c.range().0);
        assert_eq!(p.percpu_stats().chunks, 1);
        let all = vec![a, c, d, e, f];
        assert_disjoint(&all);
        verify_all(&all);
        drop(all);
        assert_eq!(p.stats().pages_in_use, 0);
    }

    #[test]
    fn larger_than_a_chunk_gets_its_own_block() {
        let p = provider(None);
        let cap = p.percpu_stats().chunk_capacity;
        // Exactly a chunk's capacity still comes from a chunk...
        let full = make::<1>(&p, cap, 7).unwrap();
        assert_eq!(p.percpu_stats().chunks, 1);
        assert_eq!(p.percpu_stats().big_areas, 0);
        // ...one slot more does not.
        let big = make::<1>(&p, cap + 1, 8).unwrap();
        let st = p.percpu_stats();
        assert_eq!((st.chunks, st.big_areas), (1, 1));
        assert_eq!(big.range().0 % PAGE_SIZE, 0, "a block of its own");
        let big_order = crate::provider::get_order((cap + 1) * UNIT);
        assert_eq!(
            p.stats().pages_in_use,
            (1 << st.chunk_order) + (1 << big_order)
        );
        full.verify();
        big.verify();
        assert_disjoint(&[full, big]);
        assert_eq!(p.stats().pages_in_use, 0);
        assert_eq!(
            p.percpu_stats(),
            crate::pcpu_alloc::PcpuStats {
                chunks: 0,
                units_in_use: 0,
                big_areas: 0,
                ..st
            }
        );
    }

    #[test]
    fn out_of_memory_returns_none_and_leaks_nothing() {
        const LIMIT: usize = 3;
        let p = provider(Some(LIMIT));
        let cap = p.percpu_stats().chunk_capacity;
        let mut insts = Vec::new();
        let mut seed = 0;
        while let Some(i) = make::<1>(&p, 2, seed) {
            insts.push(i);
            seed += 1;
        }
        // Order-0 chunks (2-CPU topology): LIMIT chunks of cap / 2 two-unit areas each.
        assert_eq!(insts.len(), LIMIT * (cap / 2));
        assert_eq!(p.stats().pages_in_use, LIMIT);
        assert_eq!(p.percpu_stats().chunks, LIMIT);
        p.check_invariants().unwrap();
        // A one-unit request still fits in the odd unit left in each chunk (cap is odd)...
        if cap % 2 == 1 {
            insts.push(make::<1>(&p, 1, 1000).unwrap());
        }
        // ...a big one fails without taking anything.
        assert!(make::<1>(&p, cap + 1, 1001).is_none());
        assert_eq!(p.percpu_stats().big_areas, 0);
        assert_eq!(p.stats().pages_in_use, LIMIT);
        verify_all(&insts);
        // Free one area in the middle: its units, not a new chunk, serve the next request.
        let mid = insts.swap_remove(insts.len() / 2);
        let hole = mid.range();
        drop(mid);
        let again = make::<1>(&p, 2, 1002).unwrap();
        assert_eq!(again.range(), hole);
        insts.push(again);
        drop(insts);
        assert_eq!(p.stats().pages_in_use, 0);
        assert_eq!(p.percpu_stats().chunks, 0);
        p.check_invariants().unwrap();
    }

    #[test]
    fn concurrent_create_and_drop() {
        let threads = if cfg!(miri) { 2 } else { 4 };
        let rounds: u64 = if cfg!(miri) { 12 } else { 2000 };
        let p = provider(None);
        let ts: Vec<_> = (0..threads)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let mut keep: Vec<Box<dyn Inst>> = Vec::new();
                    for r in 0..rounds {
                        let seed = (t as u64) << 32 | r;
                        keep.push(make_any(&p, seed).unwrap());
                        // Keep a few alive so chunks are shared between threads, drop the rest.
                        if keep.len() > 6 {
                            let i = keep.swap_remove((seed as usize * 7) % keep.len());
                            i.verify();
                        }
                    }
                    verify_all(&keep);
                    keep
                })
            })
            .collect();
        let all: Vec<Box<dyn Inst>> = ts.into_iter().flat_map(|t| t.join().unwrap()).collect();
        assert_disjoint(&all);
        verify_all(&all);
        p.check_invariants().unwrap();
        let st = p.percpu_stats();
        assert_eq!(
            st.units_in_use,
            all.iter().map(|i| i.range().1 / UNIT).sum::<usize>()
        );
        assert_eq!(p.stats().pages_in_use, st.chunks << st.chunk_order);
        drop(all);
        assert_eq!(p.stats().pages_in_use, 0);
        p.check_invariants().unwrap();
    }

    #[test]
    fn chunks_are_shared_by_every_handle() {
        let p = provider(None);
        let q = p.clone();
        let a = make::<1>(&p, 2, 1).unwrap();
        let b = make::<1>(&q, 2, 2).unwrap();
        assert_eq!(p.percpu_stats().chunks, 1);
        assert_eq!(b.range().0, a.range().0 + a.range().1);
        drop(p);
        drop(a);
        drop(b);
        assert_eq!(q.stats().pages_in_use, 0);
    }

    #[test]
    fn chunk_order_follows_the_cpu_count() {
        for (cpus, order) in [(1, 0), (3, 0), (4, 1), (16, 3), (64, 4), (256, 4)] {
            let pa = crate::pcpu_alloc::PcpuAlloc::new(cpus);
            assert_eq!(pa.stats().chunk_order, order, "{cpus} CPUs");
        }
    }
}
