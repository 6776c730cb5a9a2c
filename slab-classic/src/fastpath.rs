//! The per-CPU fast paths — 2.6.32 `____cache_alloc`, `__cache_free`, and their callers
//! `__cache_alloc` and `__cache_alloc_node` — with the slot lock ([`SlotGuard`], the
//! `local_irq_save` stand-in) and the rseq entries in front of them (`cpu_cache_alloc`,
//! `cpu_cache_free`).
//!
//! Two designs, chosen per instance at creation ([`FastPath`]; `SLAB_FASTPATH=rseq|lock`
//! overrides `Auto` only; `Slab::fastpath()` and `settings_summary()` say which one runs).
//!
//! # Lock mode
//! The CPU's [`CpuSlot`] lock stands in for `local_irq_save`: it is taken around every use of
//! the per-CPU array, so a thread migrated after reading its CPU id still uses exactly the
//! slot it locked. With pinned threads it is uncontended.
//!
//! # rseq mode
//! The hits are restartable sequences on the current CPU's `array_cache`
//! ([`common::rseq::RseqThread::array_pop`] / `array_push`): check `cpu_id`, check the slot's
//! `busy` word is 0, load `slot.ac`, load `avail` (and `entry[avail-1]`, or store
//! `entry[avail] = obj` speculatively), commit `avail ∓ 1` with one store. A miss (empty or
//! full array), a busy slot, an object already on top, a remote-node object, or no rseq area
//! on this thread goes to the locked path above, unchanged. rseq is used only when every CPU
//! id of the machine has its own slot (`nr_cpus >= sysconf(_SC_NPROCESSORS_CONF)`), so slot
//! `i` is touched by sequences on CPU `i` only.
//!
//! Every other writer of a slot's array — refill and flusharray (under the locked path),
//! `drain_array` from `cache_reap` of any CPU, `do_tune_cpucache` swapping the arrays,
//! `drain_cpu_caches` (shrink/destroy), `validate`, `array_state` — goes through
//! [`SlabGlobals::slot_lock`], which takes the slot lock and then sets the **busy mark**:
//! - on the slot's own CPU, as an rseq commit (`cmpeq_store(cpu, busy, 0, 1)`);
//! - from anywhere else (another CPU, or migrated meanwhile: the commit reports `WrongCpu`),
//!   `busy.store(1, SeqCst)` and then `fence_cpu(cpu)` (membarrier
//!   `PRIVATE_EXPEDITED_RSEQ`). A failing fence for an existing CPU aborts the process (it
//!   cannot happen once the fence registered; forked children re-register in `common`).
//!
//! Dropping the [`SlotGuard`] stores `busy = 0` (release) and drops the lock. Only the lock
//! holder writes `busy`, so it is 0 whenever the lock is free and the mark never needs a
//! compare-and-swap or a re-check (slub's re-check exists because its fast path itself
//! changes the compared word; ours never writes `busy`).
//!
//! ## Why a refill (or any slow path) is not raced by a fast path on that CPU
//! Claim: while a slow path holds the mark, no sequence commits on that slot's array. A
//! sequence commits only if, running on CPU `i` without being preempted, migrated or
//! signalled between its start and its commit, it read `busy == 0`.
//! 1. Own-CPU mark: the mark is itself a commit on CPU `i`. Two sequences on one CPU never
//!    interleave (another thread ran on `i` in between ⇒ the kernel preempted the first one
//!    ⇒ it aborts). So a sequence either committed entirely before the mark — its effect is
//!    visible to the slow path, which reads the array after — or started after it, and then
//!    reads `busy == 1` (same CPU, program/coherence order; a context switch is a full
//!    barrier) and falls back to the lock, where it waits.
//! 2. Remote mark: after `busy = 1` (SeqCst) the fence returns only once every sequence in
//!    flight on CPU `i` has committed or aborted, and later sequences on `i` start after the
//!    membarrier IPI's full barrier on `i`, so they read `busy == 1`. A sequence that read
//!    `busy == 0` before the store either committed before the fence returned (its commit is
//!    ordered before our reads of the array by the fence) or was aborted.
//! 3. Until `busy = 0`, every sequence on `i` reads the mark (the slow path is the only
//!    writer), so the slow path's plain loads and stores of `avail`, `entry[]`, `touched`
//!    and `slot.ac` have no concurrent writer: the lock excludes every other slow path, and
//!    the claim excludes the fast paths. The refill's plain stores are therefore as safe as
//!    under `local_irq_save`.
//! 4. After `busy = 0` (release, after all of the slow path's stores), a sequence that reads
//!    `busy == 0` (x86: loads are not reordered with older loads) also reads the new `ac`,
//!    `avail` and entries. The array pointer is loaded inside the sequence after the busy
//!    check, so a sequence never uses an array that `do_tune_cpucache` swapped out and freed.
//! 5. A thread migrated between reading `cpu_id` and the commit aborts (the section starts
//!    with the cpu check and the kernel aborts on migration): it never commits on a slot of
//!    a CPU it is not on. The alien check (node of the object vs the slot's node) is made
//!    before the sequence on the slot it then pushes to; a migration in between aborts it.
//! 6. The speculative stores (`touched = 1` on pop, `entry[avail] = obj` on push) touch only
//!    a flag whose loss delays a reap and a slot above `avail` that no one reads, and only
//!    when `busy` was 0, i.e. not under a slow path.
//!
//! The design is the one slub's fastpath.rs uses (own-CPU commit or store + fence), minus the
//! re-check; tcmalloc fences CPUs the same way (`StopCpu`). `model.rs` checks the protocol
//! exhaustively in slub's style (every schedule of rseq pops and pushes against a local
//! refill, a remote `drain_array` and a remote `do_tune_cpucache`), with negative controls
//! that drop the fence, the busy compare, the in-section `ac` load or the refill's busy mark.
//! The locked array-cache handoff (refill, flush, alien drain, two threads on one slot) is
//! model-checked under loom in `tests/loom.rs`.

use crate::arraycache::{ArrayCache, ArrayRef};
use crate::cache::{CpuSlot, KmemCache};
use crate::instance::SlabGlobals;
use crate::stats::StatItem;
use crate::FastPath;
use common::percpu::cpu_id;
use common::rseq::{self, ArrayLayout, Fail, RseqThread};
use common::Gfp;
use core::panic::Location;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Where `array_cache`'s fields lie for the rseq array primitives (`avail` at 0, `limit` at 4
/// are theirs too).
const AC_LAYOUT: ArrayLayout = ArrayLayout {
    entries: core::mem::size_of::<ArrayCache>(),
    touched: core::mem::offset_of!(ArrayCache, touched),
};
const _: () = assert!(core::mem::offset_of!(ArrayCache, avail) == 0);
const _: () = assert!(core::mem::offset_of!(ArrayCache, limit) == 4);

/// Resolves the fast path at instance creation. `SLAB_FASTPATH=rseq|lock` overrides `Auto`
/// only (an explicit setting wins; the rule slub's `SLUB_FASTPATH` follows too). rseq if
/// asked for (`Rseq` or `Auto`) and usable — an rseq area on the creating thread, the
/// membarrier fence registered, and one slot per CPU id the machine can have (so slot `i` is
/// touched by rseq sequences on CPU `i` only).
pub(crate) fn resolve_fastpath(setting: FastPath, nr_cpus: usize) -> bool {
    let table: &[(&[u8], FastPath)] = &[(b"rseq", FastPath::Rseq), (b"lock", FastPath::Lock)];
    let wanted = match setting {
        FastPath::Auto => {
            common::sys::fastpath_env(c"SLAB_FASTPATH", table).unwrap_or(FastPath::Auto)
        }
        explicit => explicit,
    };
    match wanted {
        FastPath::Lock => false,
        FastPath::Rseq | FastPath::Auto => {
            rseq::this_thread().is_some()
                && rseq::fence_available()
                && nr_cpus >= common::sys::nprocs_conf()
        }
    }
}

/// Proof that a CPU slot's lock is held (and, in rseq mode, its busy mark set): the
/// `local_irq_save` of 2.6.32. Unmarks and unlocks on drop.
pub(crate) struct SlotGuard<'a> {
    slot: &'a CpuSlot,
    rseq: bool,
}

impl SlotGuard<'_> {
    /// The locked CPU array.
    #[inline(always)]
    pub(crate) fn ac(&self) -> ArrayRef<'_> {
        // SAFETY: the slot lock is held and the busy mark set (the rseq sequences stay out,
        // see the header): the array is ours for the guard's life.
        unsafe { ArrayRef::new(*self.slot.ac.get()) }
    }

    /// The array pointer (null only while the cache is created or destroyed).
    pub(crate) fn ac_ptr(&self) -> *mut ArrayCache {
        // SAFETY: the lock holder is the only writer.
        unsafe { *self.slot.ac.get() }
    }

    /// [`Self::ac`] of a set-up cache (the locked fast paths), without the null test.
    ///
    /// # Safety
    /// The slot's cache is set up and not being destroyed, so its array pointer is not null.
    #[inline(always)]
    pub(crate) unsafe fn ac_live(&self) -> ArrayRef<'_> {
        // SAFETY: as `ac`; non-null per the contract.
        unsafe { ArrayRef::new_unchecked(*self.slot.ac.get()) }
    }

    /// Swaps in a new array (`do_ccupdate_local`); returns the old one.
    pub(crate) fn replace_ac(&self, ac: *mut ArrayCache) -> *mut ArrayCache {
        // SAFETY: the lock holder is the only writer, and the busy mark keeps the rseq
        // sequences (which read the pointer inside the sequence) out.
        unsafe { core::mem::replace(&mut *self.slot.ac.get(), ac) }
    }

    /// `cpu_to_node` of the slot.
    #[inline(always)]
    pub(crate) fn node(&self) -> usize {
        self.slot.node as usize
    }
}

impl Drop for SlotGuard<'_> {
    /// Clears the busy mark (rseq mode) and drops the slot lock. The release store publishes
    /// the slow path's array writes to the next sequence that reads `busy == 0`.
    #[inline(always)]
    fn drop(&mut self) {
        if self.rseq {
            self.slot.busy.store(0, Ordering::Release);
        }
        self.slot.lock.unlock();
    }
}

impl SlabGlobals {
    /// Takes `cpu`'s slot lock of `cachep` for a slow path and, in rseq mode, marks the slot
    /// busy so that no rseq fast path commits on its array until the guard drops (see the
    /// header).
    #[inline(always)]
    pub(crate) fn slot_lock<'a>(&self, cachep: &'a KmemCache, cpu: usize) -> SlotGuard<'a> {
        let slot = self.cpu_slot(cachep, cpu);
        slot.lock.lock();
        if self.rseq {
            self.mark_busy(slot, cpu);
        }
        SlotGuard {
            slot,
            rseq: self.rseq,
        }
    }

    /// The busy mark: on the slot's own CPU, an rseq commit of `busy = 1` (every sequence on
    /// that CPU is ordered before or after it); from anywhere else, a store of `busy = 1` then
    /// `fence_cpu(cpu)` (every sequence that may have read `busy == 0` has committed or
    /// aborted when the fence returns; later ones see the mark).
    #[cold]
    #[inline(never)]
    fn mark_busy(&self, slot: &CpuSlot, cpu: usize) {
        let busy = &slot.busy;
        debug_assert_eq!(
            busy.load(Ordering::Relaxed),
            0,
            "busy is set only under the lock"
        );
        if let Some(t) = rseq::this_thread() {
            loop {
                match t.cmpeq_store(cpu, busy, 0, 1) {
                    Ok(()) => return,
                    Err(Fail::Aborted) => {}
                    Err(_) => break,
                }
            }
        }
        busy.store(1, Ordering::SeqCst);
        // A slot at or above the configured CPU count names no CPU anything runs on: nothing
        // to fence. Below it, a failing fence would leave a sequence possibly in flight.
        if cpu < self.nprocs_conf && !rseq::fence_cpu(cpu) {
            std::process::abort();
        }
    }

    /// The slot index for the CPU this thread runs on.
    #[inline(always)]
    pub(crate) fn this_cpu(&self) -> usize {
        let c = cpu_id();
        if c < self.nr_cpus {
            c
        } else {
            c % self.nr_cpus
        }
    }

    /// The rseq retry loop of both fast paths: runs `op` on this thread's CPU slot of
    /// `cachep` until it commits (`Some`), or gives up (`None`: no rseq area, a CPU id without
    /// a slot, or a failure other than an abort or a migration — the caller takes the locked
    /// path). `op` returns `Err(Fail::Mismatch)` to give up by itself.
    #[inline(always)]
    fn rseq_on_this_cpu<R>(
        &self,
        cachep: &KmemCache,
        mut op: impl FnMut(&RseqThread, usize, &CpuSlot) -> Result<R, Fail>,
    ) -> Option<R> {
        let t = rseq::this_thread()?;
        loop {
            let cpu = t.cpu();
            if cpu >= self.nr_cpus {
                return None;
            }
            // SAFETY: cpu < nr_cpus (checked above), the length of array[].
            let slot = unsafe { cachep.slot_unchecked(cpu) };
            match op(&t, cpu, slot) {
                Ok(r) => return Some(r),
                Err(Fail::Aborted | Fail::WrongCpu) => {}
                Err(_) => return None,
            }
        }
    }

    /// `____cache_alloc`: pop from the CPU's array, or refill.
    #[inline(always)]
    pub(crate) fn ____cache_alloc(
        &self,
        cachep: &KmemCache,
        slot: &SlotGuard<'_>,
        gfp: Gfp,
    ) -> *mut u8 {
        // SAFETY: allocations come from set-up caches only.
        let ac = unsafe { slot.ac_live() };
        if ac.avail() > 0 {
            self.stat_inc(cachep, StatItem::ALLOCHIT);
            ac.set_touched(true);
            ac.pop()
        } else {
            self.stat_inc(cachep, StatItem::ALLOCMISS);
            self.cache_alloc_refill(cachep, ac, slot.node(), gfp)
        }
    }

    /// This CPU's array, raw object out: in rseq mode first an rseq pop on this CPU's array;
    /// then (lock mode, or the array is empty or busy, or no rseq area)
    /// [`Self::cache_alloc_locked`].
    #[inline(always)]
    pub(crate) fn cpu_cache_alloc(&self, cachep: &KmemCache, gfp: Gfp) -> *mut u8 {
        if self.rseq {
            // Slot `cpu`'s array is written only by sequences on CPU `cpu` and by holders of
            // its lock that marked it busy (slot_lock), and the array pointer is read inside
            // the sequence.
            let r = self.rseq_on_this_cpu(cachep, |t, cpu, slot| {
                // SAFETY: as said above: the array's writers are this CPU's sequences and
                // busy-marking lock holders only.
                unsafe {
                    t.array_pop(
                        cpu,
                        &slot.busy,
                        slot.ac.get().cast_const().cast(),
                        AC_LAYOUT,
                    )
                }
            });
            if let Some(obj) = r {
                self.stat_inc(cachep, StatItem::ALLOCHIT);
                return obj as *mut u8;
            }
        }
        self.cache_alloc_locked(cachep, gfp)
    }

    /// 2.6.32 `__do_cache_alloc` under this CPU's slot lock (the `local_irq_save` of
    /// `__cache_alloc`): the local array, then `____cache_alloc_node` on the local node
    /// (which may fall back to other nodes). Returns the raw object (null when out of memory).
    #[inline(never)]
    pub(crate) fn cache_alloc_locked(&self, cachep: &KmemCache, gfp: Gfp) -> *mut u8 {
        let slot = self.slot_lock(cachep, self.this_cpu());
        let objp = self.____cache_alloc(cachep, &slot, gfp);
        if objp.is_null() {
            return self.____cache_alloc_node(cachep, gfp, slot.node(), slot.node());
        }
        objp
    }

    /// The object of a fresh allocation as the caller gets it: a debug cache (decided once,
    /// at creation) goes to [`Self::cache_alloc_debug_after`]; for every other one
    /// `__GFP_ZERO` clears the object.
    #[inline(always)]
    #[track_caller]
    fn cache_alloc_finish(
        &self,
        cachep: &KmemCache,
        gfp: Gfp,
        p: NonNull<u8>,
    ) -> Option<NonNull<u8>> {
        if cachep.debug_path() {
            return self.cache_alloc_debug_after(cachep, gfp, p.as_ptr(), Location::caller());
        }
        self.zero_if_asked(cachep, gfp, p);
        Some(p)
    }

    /// `__GFP_ZERO` on a fresh object of a non-debug cache.
    #[inline(always)]
    fn zero_if_asked(&self, cachep: &KmemCache, gfp: Gfp, p: NonNull<u8>) {
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh object of buffer_size bytes, ours.
            unsafe { p.as_ptr().write_bytes(0, cachep.buffer_size) };
        }
    }

    /// `__cache_alloc`: [`Self::cpu_cache_alloc`], then the debug or zeroing step.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn cache_alloc_internal(&self, cachep: &KmemCache, gfp: Gfp) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.cpu_cache_alloc(cachep, gfp))?;
        self.cache_alloc_finish(cachep, gfp, p)
    }

    /// `__cache_alloc` of a cache known not to be a debug cache (the handle's magic said so).
    #[inline(always)]
    pub(crate) fn cache_alloc_nodebug(&self, cachep: &KmemCache, gfp: Gfp) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.cpu_cache_alloc(cachep, gfp))?;
        self.zero_if_asked(cachep, gfp, p);
        Some(p)
    }

    /// 2.6.32 `__cache_alloc_node` under this CPU's slot lock: the local array when `nodeid`
    /// is this CPU's node, else straight from the node's lists (`____cache_alloc_node`),
    /// falling back unless `THISNODE`. Returns the raw object.
    pub(crate) fn cache_alloc_node_locked(
        &self,
        cachep: &KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> *mut u8 {
        let slot = self.slot_lock(cachep, self.this_cpu());
        let here = slot.node();
        let nodeid = if nodeid >= self.nr_nodes {
            here
        } else {
            nodeid
        };
        if self.l3(cachep, nodeid).is_null() {
            return self.fallback_alloc(cachep, gfp, here);
        }
        if nodeid == here {
            let p = self.____cache_alloc(cachep, &slot, gfp);
            if !p.is_null() {
                return p;
            }
        }
        self.____cache_alloc_node(cachep, gfp, nodeid, here)
    }

    /// `__cache_alloc_node` with the debug split of [`Self::cache_alloc_internal`].
    #[track_caller]
    pub(crate) fn cache_alloc_node_internal(
        &self,
        cachep: &KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.cache_alloc_node_locked(cachep, gfp, nodeid))?;
        self.cache_alloc_finish(cachep, gfp, p)
    }

    /// `__cache_free`: remote objects to the alien path, else push on the CPU's array,
    /// flushing a batch first when it is full. Returns `false` (and frees nothing) when `objp`
    /// is already the top of the array — the one-compare double-free check Linux later added
    /// under `CONFIG_SLAB_FREELIST_HARDENED` (6.4 `__free_one`); not in 2.6.32, kept because it
    /// is free.
    ///
    /// # Safety
    /// `objp` a live object start of `cachep`, handed out, not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn __cache_free(
        &self,
        cachep: &KmemCache,
        slot: &SlotGuard<'_>,
        objp: *mut u8,
    ) -> bool {
        let node = slot.node();
        // SAFETY: forwarded contract.
        if self.nr_nodes > 1 && unsafe { self.cache_free_alien(cachep, objp, node) } {
            return true;
        }
        // SAFETY: frees go to set-up caches only.
        let ac = unsafe { slot.ac_live() };
        if ac.top() == Some(objp) {
            self.stat_inc(cachep, StatItem::ERRORS);
            return false;
        }
        if ac.avail() < ac.limit() {
            self.stat_inc(cachep, StatItem::FREEHIT);
        } else {
            self.stat_inc(cachep, StatItem::FREEMISS);
            self.cache_flusharray(cachep, ac, node);
        }
        // SAFETY: avail < limit: it was, or cache_flusharray just moved out at least one
        // object (its batch is min(batchcount, avail, room in the shared array), each ≥ 1).
        unsafe { ac.push_unchecked(objp) };
        true
    }

    /// This CPU's array, raw object in: in rseq mode first an rseq push on this CPU's array
    /// (objects of this CPU's node only; a full or busy array, an object already on top, or a
    /// remote object go to the locked path), else [`Self::cache_free_locked`].
    ///
    /// # Safety
    /// `objp` a raw object start of `cachep`, handed out, not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn cpu_cache_free(&self, cachep: &KmemCache, objp: *mut u8) -> bool {
        if self.rseq {
            // As in cpu_cache_alloc; a remote object gives up (Mismatch) for the alien path.
            let pushed = self.rseq_on_this_cpu(cachep, |t, cpu, slot| {
                if self.nr_nodes > 1 {
                    // SAFETY: objp is a live object of ours (contract): its slab descriptor
                    // is readable (`nodeid` never changes).
                    let nodeid = unsafe { self.slab_of_obj(objp) }.nodeid();
                    if nodeid != slot.node as usize {
                        return Err(Fail::Mismatch);
                    }
                }
                let ac = slot.ac.get().cast_const().cast();
                // SAFETY: as in cpu_cache_alloc; objp is the caller's to give up.
                unsafe { t.array_push(cpu, &slot.busy, ac, AC_LAYOUT, objp as usize) }
            });
            if pushed.is_some() {
                self.stat_inc(cachep, StatItem::FREEHIT);
                return true;
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.cache_free_locked(cachep, objp) }
    }

    /// [`Self::__cache_free`] under this CPU's slot lock (the `local_irq_save` of 2.6.32
    /// `kmem_cache_free`).
    ///
    /// # Safety
    /// As [`Self::cpu_cache_free`].
    #[inline(never)]
    unsafe fn cache_free_locked(&self, cachep: &KmemCache, objp: *mut u8) -> bool {
        let slot = self.slot_lock(cachep, self.this_cpu());
        // SAFETY: forwarded contract.
        unsafe { self.__cache_free(cachep, &slot, objp) }
    }

    /// `kmem_cache_free` after the checks: a debug cache goes to [`Self::cache_free_debug`],
    /// every other one straight to the CPU array.
    ///
    /// # Safety
    /// `objp` a live object start of `cachep` (as the caller sees it), not used afterwards.
    #[inline(always)]
    #[track_caller]
    pub(crate) unsafe fn cache_free_internal(&self, cachep: &KmemCache, objp: *mut u8) -> bool {
        if cachep.debug_path() {
            // SAFETY: forwarded contract.
            return unsafe { self.cache_free_debug(cachep, objp, Location::caller()) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.cpu_cache_free(cachep, objp) }
    }
}
