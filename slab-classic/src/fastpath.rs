//! The per-CPU fast paths — 2.6.32 `____cache_alloc`, `__cache_free`, and their callers
//! `__cache_alloc` (`__do_cache_alloc`) and `__cache_alloc_node`.
//!
//! Two designs, chosen per instance at creation ([`FastPath`], `SLAB_FASTPATH=rseq|lock|auto`;
//! `Slab::fastpath()` and `settings_summary()` say which one runs).
//!
//! # Lock mode
//! The CPU's [`CpuSlot`] lock stands in for `local_irq_save`: it is taken around every use of
//! the per-CPU array, so a thread migrated after reading its CPU id still uses exactly the
//! slot it locked. With pinned threads it is uncontended.
//!
//! # rseq mode (issue 9)
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
//! [`SlabGlobals::slot_unlock`] stores `busy = 0` (release) and drops the lock. Only the lock
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

use crate::arraycache::{ac_entry, ArrayCache};
use crate::bootstrap::SlabGlobals;
use crate::cache::{CpuSlot, KmemCache, CFLGS_DEBUG_PATH};
use crate::stats::StatItem;
use crate::FastPath;
use common::percpu::cpu_id;
use common::rseq::{self, ArrayLayout, Fail};
use common::Gfp;
use core::panic::Location;
use core::ptr::{addr_of, NonNull};
use core::sync::atomic::Ordering;

/// Where `array_cache`'s fields lie for the rseq array primitives (`avail` at 0, `limit` at 4
/// are theirs too).
const AC_LAYOUT: ArrayLayout = ArrayLayout {
    entries: core::mem::size_of::<ArrayCache>(),
    touched: core::mem::offset_of!(ArrayCache, touched),
};
const _: () = assert!(core::mem::offset_of!(ArrayCache, avail) == 0);
const _: () = assert!(core::mem::offset_of!(ArrayCache, limit) == 4);

extern "C" {
    fn sysconf(name: core::ffi::c_int) -> core::ffi::c_long;
}

/// `SLAB_FASTPATH=rseq|lock|auto`, read without allocating (`getenv`).
fn env_fastpath() -> Option<FastPath> {
    match common::sys::getenv(c"SLAB_FASTPATH")? {
        b"rseq" => Some(FastPath::Rseq),
        b"lock" => Some(FastPath::Lock),
        b"auto" => Some(FastPath::Auto),
        _ => None,
    }
}

/// `sysconf(_SC_NPROCESSORS_CONF)`: CPU ids a thread can ever run on are below it.
pub(crate) fn nprocs_conf() -> usize {
    #[cfg(miri)]
    {
        1
    }
    #[cfg(not(miri))]
    {
        const SC_NPROCESSORS_CONF: core::ffi::c_int = 83;
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { sysconf(SC_NPROCESSORS_CONF) };
        usize::try_from(n).unwrap_or(usize::MAX).max(1)
    }
}

/// Resolves the fast path at instance creation (the environment wins over the setting): rseq
/// if asked for (`Rseq` or `Auto`) and usable — an rseq area on the creating thread, the
/// membarrier fence registered, and one slot per CPU id the machine can have (so slot `i` is
/// touched by rseq sequences on CPU `i` only).
pub(crate) fn resolve_fastpath(setting: FastPath, nr_cpus: usize) -> bool {
    match env_fastpath().unwrap_or(setting) {
        FastPath::Lock => false,
        FastPath::Rseq | FastPath::Auto => {
            rseq::this_thread().is_some() && rseq::fence_available() && nr_cpus >= nprocs_conf()
        }
    }
}

impl SlabGlobals {
    /// Takes `cpu`'s slot lock for a slow path and, in rseq mode, marks the slot busy so that
    /// no rseq fast path commits on its array until [`Self::slot_unlock`] (see the header).
    ///
    /// # Safety
    /// `slot` is the live slot of index `cpu` of some cache of this instance.
    #[inline(always)]
    pub(crate) unsafe fn slot_lock(&self, slot: *mut CpuSlot, cpu: usize) {
        // SAFETY: live slot.
        unsafe {
            (*slot).lock.lock();
            if self.rseq {
                self.mark_busy(slot, cpu);
            }
        }
    }

    /// Clears the busy mark (rseq mode) and drops the slot lock. The release store publishes
    /// the slow path's array writes to the next sequence that reads `busy == 0`.
    ///
    /// # Safety
    /// The caller holds `slot`'s lock (taken with [`Self::slot_lock`]).
    #[inline(always)]
    pub(crate) unsafe fn slot_unlock(&self, slot: *mut CpuSlot) {
        // SAFETY: live slot, lock held.
        unsafe {
            if self.rseq {
                (*slot).busy.store(0, Ordering::Release);
            }
            (*slot).lock.unlock();
        }
    }

    /// The busy mark: on the slot's own CPU, an rseq commit of `busy = 1` (every sequence on
    /// that CPU is ordered before or after it); from anywhere else, a store of `busy = 1` then
    /// `fence_cpu(cpu)` (every sequence that may have read `busy == 0` has committed or
    /// aborted when the fence returns; later ones see the mark).
    #[cold]
    #[inline(never)]
    unsafe fn mark_busy(&self, slot: *mut CpuSlot, cpu: usize) {
        // SAFETY: live slot whose lock we hold.
        let busy = unsafe { &(*slot).busy };
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

    /// `____cache_alloc`: pop from the CPU's array, or refill.
    ///
    /// # Safety
    /// `slot` is `cachep`'s slot, locked by the caller.
    #[inline(always)]
    pub(crate) unsafe fn ____cache_alloc(
        &self,
        cachep: *mut KmemCache,
        slot: *mut CpuSlot,
        gfp: Gfp,
    ) -> *mut u8 {
        // SAFETY: the slot lock protects the array.
        unsafe {
            let ac = (*slot).ac;
            if (*ac).avail > 0 {
                self.stat_inc(cachep, StatItem::ALLOCHIT);
                (*ac).touched = 1;
                (*ac).avail -= 1;
                *ac_entry(ac).add((*ac).avail as usize)
            } else {
                self.stat_inc(cachep, StatItem::ALLOCMISS);
                self.cache_alloc_refill(cachep, ac, (*slot).node as usize, gfp)
            }
        }
    }

    /// `__do_cache_alloc`: in rseq mode first an rseq pop on this CPU's array; then (lock
    /// mode, or the array is empty or busy, or no rseq area) [`Self::__do_cache_alloc_locked`].
    #[inline(always)]
    pub(crate) fn __do_cache_alloc(&self, cachep: *mut KmemCache, gfp: Gfp) -> *mut u8 {
        if self.rseq {
            if let Some(t) = rseq::this_thread() {
                loop {
                    let cpu = t.cpu();
                    if cpu >= self.nr_cpus {
                        break;
                    }
                    // SAFETY: live cache, cpu < nr_cpus. Slot `cpu`'s array is written only
                    // by sequences on CPU `cpu` and by holders of its lock that marked it busy
                    // (slot_lock), and the array pointer is read inside the sequence.
                    let r = unsafe {
                        let slot = self.cpu_slot(cachep, cpu);
                        t.array_pop(cpu, &(*slot).busy, addr_of!((*slot).ac).cast(), AC_LAYOUT)
                    };
                    match r {
                        Ok(obj) => {
                            self.stat_inc(cachep, StatItem::ALLOCHIT);
                            return obj as *mut u8;
                        }
                        Err(Fail::Aborted | Fail::WrongCpu) => {}
                        Err(_) => break,
                    }
                }
            }
        }
        self.__do_cache_alloc_locked(cachep, gfp)
    }

    /// `__do_cache_alloc` under the CPU slot lock: the local array, then
    /// `____cache_alloc_node` on the local node (which may fall back to other nodes). Returns
    /// the raw object (null when out of memory).
    #[inline(never)]
    pub(crate) fn __do_cache_alloc_locked(&self, cachep: *mut KmemCache, gfp: Gfp) -> *mut u8 {
        let cpu = self.this_cpu();
        // SAFETY: cachep is a live cache of this instance (callers check handles); the slot
        // lock is held around the array use.
        unsafe {
            let slot = self.cpu_slot(cachep, cpu);
            self.slot_lock(slot, cpu);
            let mut objp = self.____cache_alloc(cachep, slot, gfp);
            if objp.is_null() {
                objp = self.____cache_alloc_node(
                    cachep,
                    gfp,
                    (*slot).node as usize,
                    (*slot).node as usize,
                );
            }
            self.slot_unlock(slot);
            objp
        }
    }

    /// `__cache_alloc`: `__do_cache_alloc`, then a debug cache (decided once, at creation)
    /// goes to [`Self::cache_alloc_debug_after`]; for every other one `__GFP_ZERO` clears the
    /// object.
    #[inline(always)]
    #[track_caller]
    pub(crate) fn cache_alloc_internal(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
    ) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.__do_cache_alloc(cachep, gfp))?;
        // SAFETY: a live cache (callers check handles).
        if unsafe { (*cachep).flags } & CFLGS_DEBUG_PATH != 0 {
            return self.cache_alloc_debug_after(cachep, gfp, p.as_ptr(), Location::caller());
        }
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh object of buffer_size bytes.
            unsafe { p.as_ptr().write_bytes(0, (*cachep).buffer_size) };
        }
        Some(p)
    }

    /// `__cache_alloc` of a cache known not to be a debug cache (the handle's magic said so).
    #[inline(always)]
    pub(crate) fn cache_alloc_nodebug(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
    ) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.__do_cache_alloc(cachep, gfp))?;
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh object of buffer_size bytes.
            unsafe { p.as_ptr().write_bytes(0, (*cachep).buffer_size) };
        }
        Some(p)
    }

    /// `__cache_alloc_node` under the CPU slot lock: the local array when `nodeid` is this
    /// CPU's node, else straight from the node's lists (`____cache_alloc_node`), falling back
    /// unless `THISNODE`. Returns the raw object.
    pub(crate) fn __do_cache_alloc_node(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> *mut u8 {
        let cpu = self.this_cpu();
        // SAFETY: as __do_cache_alloc.
        unsafe {
            let slot = self.cpu_slot(cachep, cpu);
            self.slot_lock(slot, cpu);
            let here = (*slot).node as usize;
            let nodeid = if nodeid >= self.nr_nodes {
                here
            } else {
                nodeid
            };
            let objp = if self.l3(cachep, nodeid).is_null() {
                self.fallback_alloc(cachep, gfp, here)
            } else {
                let mut p = core::ptr::null_mut();
                if nodeid == here {
                    p = self.____cache_alloc(cachep, slot, gfp);
                }
                if p.is_null() {
                    p = self.____cache_alloc_node(cachep, gfp, nodeid, here);
                }
                p
            };
            self.slot_unlock(slot);
            objp
        }
    }

    /// `__cache_alloc_node` with the debug split of [`Self::cache_alloc_internal`].
    #[track_caller]
    pub(crate) fn cache_alloc_node_internal(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        nodeid: usize,
    ) -> Option<NonNull<u8>> {
        let p = NonNull::new(self.__do_cache_alloc_node(cachep, gfp, nodeid))?;
        // SAFETY: a live cache.
        if unsafe { (*cachep).flags } & CFLGS_DEBUG_PATH != 0 {
            return self.cache_alloc_debug_after(cachep, gfp, p.as_ptr(), Location::caller());
        }
        if gfp.contains(Gfp::ZERO) {
            // SAFETY: a fresh object of buffer_size bytes.
            unsafe { p.as_ptr().write_bytes(0, (*cachep).buffer_size) };
        }
        Some(p)
    }

    /// `__cache_free`: remote objects to the alien path, else push on the CPU's array,
    /// flushing a batch first when it is full. Returns `false` (and frees nothing) when `objp`
    /// is already the top of the array — the one-compare double-free check Linux later added
    /// under `CONFIG_SLAB_FREELIST_HARDENED` (6.4 `__free_one`); not in 2.6.32, kept because it
    /// is free.
    ///
    /// # Safety
    /// `slot` is `cachep`'s slot, locked; `objp` a live object start of `cachep`.
    #[inline(always)]
    pub(crate) unsafe fn __cache_free(
        &self,
        cachep: *mut KmemCache,
        slot: *mut CpuSlot,
        objp: *mut u8,
    ) -> bool {
        // SAFETY: slot lock held.
        unsafe {
            let node = (*slot).node as usize;
            if self.nr_nodes > 1 && self.cache_free_alien(cachep, objp, node) {
                return true;
            }
            let ac = (*slot).ac;
            if (*ac).avail > 0 && *ac_entry(ac).add((*ac).avail as usize - 1) == objp {
                self.stat_inc(cachep, StatItem::ERRORS);
                return false;
            }
            if (*ac).avail < (*ac).limit {
                self.stat_inc(cachep, StatItem::FREEHIT);
            } else {
                self.stat_inc(cachep, StatItem::FREEMISS);
                self.cache_flusharray(cachep, ac, node);
            }
            *ac_entry(ac).add((*ac).avail as usize) = objp;
            (*ac).avail += 1;
            true
        }
    }

    /// `__cache_free` of a raw object: in rseq mode first an rseq push on this CPU's array
    /// (objects of this CPU's node only; a full or busy array, an object already on top, or
    /// a remote object go to the locked path), else under this CPU's slot lock.
    ///
    /// # Safety
    /// `objp` a raw object start of `cachep`, handed out, not used afterwards.
    #[inline(always)]
    pub(crate) unsafe fn __cache_free_locked(&self, cachep: *mut KmemCache, objp: *mut u8) -> bool {
        if self.rseq {
            if let Some(t) = rseq::this_thread() {
                loop {
                    let cpu = t.cpu();
                    if cpu >= self.nr_cpus {
                        break;
                    }
                    // SAFETY: as in __do_cache_alloc; objp is the caller's (contract) and a
                    // live object of cachep, so its slab descriptor is readable.
                    let r = unsafe {
                        let slot = self.cpu_slot(cachep, cpu);
                        if self.nr_nodes > 1 && (*self.virt_to_slab(objp)).nodeid != (*slot).node {
                            break;
                        }
                        t.array_push(
                            cpu,
                            &(*slot).busy,
                            addr_of!((*slot).ac).cast(),
                            AC_LAYOUT,
                            objp as usize,
                        )
                    };
                    match r {
                        Ok(()) => {
                            self.stat_inc(cachep, StatItem::FREEHIT);
                            return true;
                        }
                        Err(Fail::Aborted | Fail::WrongCpu) => {}
                        Err(_) => break,
                    }
                }
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.__cache_free_slow(cachep, objp) }
    }

    /// `__cache_free` under this CPU's slot lock.
    ///
    /// # Safety
    /// As [`Self::__cache_free_locked`].
    #[inline(never)]
    unsafe fn __cache_free_slow(&self, cachep: *mut KmemCache, objp: *mut u8) -> bool {
        let cpu = self.this_cpu();
        // SAFETY: forwarded contract; slot lock held around the array use.
        unsafe {
            let slot = self.cpu_slot(cachep, cpu);
            self.slot_lock(slot, cpu);
            let ok = self.__cache_free(cachep, slot, objp);
            self.slot_unlock(slot);
            ok
        }
    }

    /// `kmem_cache_free` after the checks: a debug cache goes to [`Self::cache_free_debug`],
    /// every other one straight to the CPU array.
    ///
    /// # Safety
    /// `objp` a live object start of `cachep` (as the caller sees it), not used afterwards.
    #[inline(always)]
    #[track_caller]
    pub(crate) unsafe fn cache_free_internal(&self, cachep: *mut KmemCache, objp: *mut u8) -> bool {
        // SAFETY: forwarded contract.
        unsafe {
            if (*cachep).flags & CFLGS_DEBUG_PATH != 0 {
                return self.cache_free_debug(cachep, objp, Location::caller());
            }
            self.__cache_free_locked(cachep, objp)
        }
    }
}
