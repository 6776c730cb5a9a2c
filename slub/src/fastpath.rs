//! The lockless fast paths `slab_alloc_node` and `slab_free` → `do_slab_free` over
//! `kmem_cache_cpu {freelist, tid}` (mm/slub.c 6.4 `__slab_alloc_node`, `do_slab_free`).
//!
//! # Transaction ids
//! `tid` starts at the CPU (slot) number ([`init_tid`]) and advances by [`TID_STEP`], a power of
//! two at least `NR_CPUS`, on every change of the slot's `freelist`: so `tid % TID_STEP` names the
//! CPU and `tid / TID_STEP` counts events ([`tid_to_cpu`], [`tid_to_event`]).
//!
//! # Why a thread that migrates mid-sequence is still correct
//! The sequence is: pick the slot `c` of the CPU we run on; read `tid`, then `freelist` and
//! `slab`; compute; `cmpxchg16b` `(freelist, tid) → (new, tid + TID_STEP)` on *that same slot*.
//! If the thread is preempted or migrated anywhere in between, either nothing happened to `c`
//! meanwhile — then the values it read are still the slot's state and the commit is exactly as
//! if it had not moved — or something changed `c->freelist` (another thread's pop/push, or a
//! slow path), which always moved `tid` on, so the commit fails and the sequence restarts on the
//! CPU it now runs on. Because the tid counts events it cannot come back to an old value (no
//! ABA), and because it encodes the slot a value read from one slot never matches another's.
//! The instruction is `lock cmpxchg16b`, atomic across CPUs, which the kernel's CPU-local
//! `this_cpu_cmpxchg_double` does not need but user space does: two threads can be on the same
//! slot at once. Slow paths that change the slot mark the tid busy first ([`TID_BUSY`], see the
//! crate header), so they never interleave with a commit.
//!
//! # rseq mode ([`crate::FastPath::Rseq`], the default where available)
//! The same protocol over the same `{freelist, tid}` pair, with the compare-and-commit done by a
//! restartable sequence (`common::rseq`) instead of `lock cmpxchg16b`:
//! - **Fast paths.** Read the CPU id `X` from the rseq area, then `tid`, `freelist`, `slab` of
//!   slot `X` and make the kernel's checks (not busy, object, slab, node; `X < nr_cpu_ids` so no
//!   two CPUs share a slot). Then one sequence on CPU `X`: `cpu_id == X`; `tid == tid read`;
//!   pop: load head and its free pointer (decoded if hardened) / push: link the chain's tail to
//!   the head (hardened: refuse a tail that heads the list); store `tid + TID_STEP`
//!   (speculative); store the new head (the commit). A sequence preempted, migrated or
//!   signalled before the commit is aborted and retried from the top: at worst it left the tid
//!   one event further on with the list unchanged, which only makes other compares against the
//!   old tid fail. So `tid` still counts events and names the slot, the stat counters mean what
//!   they meant (`cmpxchg_double_cpu_fail` counts rseq retries), and a tid compare that
//!   succeeds inside the sequence proves the slot (freelist, slab) is as it was read.
//! - **Who else writes the slot.** Only code holding `c->lock` (`___slab_alloc`,
//!   `deactivate_slab` via flush, `flush_all` of any CPU, the bulk allocator), through
//!   [`KmemCacheCpu::begin_update`] / [`KmemCacheCpu::end_update`]. `begin_update` must leave
//!   the slot with `TID_BUSY` set *and* no sequence in flight that compared the old tid:
//!   - running on the slot's own CPU (the common case: a fast path that ran dry) it sets
//!     `TID_BUSY` as the commit of its own sequence on that CPU. Sequences on one CPU never
//!     interleave, so every fast-path sequence on `X` either finished before it or starts after
//!     it and sees the mark. No system call.
//!   - anywhere else (the thread migrated since reading `X`, a remote `flush_all`) it sets
//!     `TID_BUSY` with `cmpxchg16b`, then fences CPU `X` with
//!     `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, FLAG_CPU, X)`, as tcmalloc stops a CPU:
//!     after it, every sequence that was in flight on `X` has committed or aborted. One of them
//!     may have compared the old tid and stored `tid + TID_STEP` over the mark before that; so
//!     `begin_update` re-reads the tid and starts again unless it still reads `tid | TID_BUSY`.
//!     If it does, no sequence overwrote it (the tid only grows, and only `c->lock` holders set
//!     the busy value), so every sequence since the mark saw it.
//!
//!   With the mark in place no sequence can store (each compares the whole tid first), so the
//!   slow path changes `slab`/`freelist` freely and `end_update` publishes the new freelist
//!   with `next_tid`, which no earlier read can match.
//! - **Why not plain `cmpxchg` against rseq.** The two are never mixed on one instance: a
//!   `lock cmpxchg16b` from another CPU could land between a sequence's compare and its commit.
//!   A thread without an rseq area in an rseq instance (another library registered one first)
//!   takes the locked slow path every time: slow, but correct.
//! - **Fallback.** Where glibc did not register rseq (`GLIBC_TUNABLES=glibc.pthread.rseq=0`),
//!   `common::rseq` registers one area per thread itself and rseq mode still runs
//!   (`tests/rseq.rs` checks this in a child process); without rseq or membarrier at all
//!   (valgrind, other targets, Miri) [`crate::FastPath::Auto`] resolves to cmpxchg.
//! - **Model.** `model.rs` explores every interleaving of rseq alloc/free on the slot's CPU
//!   with a local and a remote slow path (preemption aborts the other sections of that CPU,
//!   signals abort any section, the fence aborts all of them) and finds no lost or doubly
//!   owned object; it finds the race when the remote slow path skips the fence or the
//!   re-check of the mark.

use crate::cache::{KmemCache, KmemCacheCpu};
use crate::freeptr::{get_freepointer, naive_double_free, set_freepointer};
use crate::slowpath::node_match;
use crate::stats::StatItem::{ALLOC_FASTPATH, CMPXCHG_DOUBLE_CPU_FAIL, FREE_FASTPATH};
use crate::{Slub, NUMA_NO_NODE};
use common::rseq::{self, Fail, Link};
use common::{Gfp, Page, SlabError, NR_CPUS};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `TID_STEP = roundup_pow_of_two(CONFIG_NR_CPUS)` (preemptible kernels).
pub const TID_STEP: usize = NR_CPUS.next_power_of_two();
/// Set in `tid` while a slow path rewrites the slot (user-space addition, see crate header).
pub(crate) const TID_BUSY: usize = 1 << (usize::BITS - 1);

/// `init_tid(cpu)`.
pub const fn init_tid(cpu: usize) -> usize {
    cpu
}
/// `next_tid(tid)`.
pub const fn next_tid(tid: usize) -> usize {
    tid + TID_STEP
}
/// `tid_to_cpu(tid)`.
pub const fn tid_to_cpu(tid: usize) -> usize {
    (tid & !TID_BUSY) % TID_STEP
}
/// `tid_to_event(tid)`.
pub const fn tid_to_event(tid: usize) -> usize {
    (tid & !TID_BUSY) / TID_STEP
}

impl KmemCacheCpu {
    /// Under `self.lock`: marks the `{freelist, tid}` pair busy so no fast path can commit on it,
    /// and returns `(freelist, tid)` as they were.
    #[inline]
    pub(crate) fn begin_update(&self) -> (usize, usize) {
        debug_assert!(self.lock.is_locked());
        if self.rseq {
            return self.begin_update_rseq();
        }
        loop {
            let tid = self.fl_tid.hi(Ordering::Acquire);
            let fl = self.fl_tid.lo(Ordering::Acquire);
            debug_assert_eq!(tid & TID_BUSY, 0, "nested slow-path update of a CPU slot");
            if self.fl_tid.cmpxchg((fl, tid), (fl, tid | TID_BUSY)) {
                return (fl, tid);
            }
        }
    }

    /// The tid word as an atomic of its own.
    fn tid_word(&self) -> &AtomicUsize {
        let p = core::ptr::from_ref(&self.fl_tid).cast::<AtomicUsize>();
        // SAFETY: DoubleWord is repr(C) {lo: AtomicUsize, hi: AtomicUsize}; `p + 1` is `hi`,
        // borrowed for as long as `self`.
        unsafe { &*p.add(1) }
    }

    /// [`Self::begin_update`] in rseq mode (see the module header, "rseq mode"): on the slot's
    /// own CPU, set `TID_BUSY` by an rseq commit; anywhere else, set it by `cmpxchg16b`, fence
    /// the slot's CPU with membarrier, and check that no sequence in flight overwrote it.
    #[cold]
    fn begin_update_rseq(&self) -> (usize, usize) {
        loop {
            let tid = self.fl_tid.hi(Ordering::Acquire);
            debug_assert_eq!(tid & TID_BUSY, 0, "nested slow-path update of a CPU slot");
            let cpu = tid_to_cpu(tid);
            if let Some(t) = rseq::this_thread() {
                if t.cpu() == cpu {
                    match t.cmpeq_store(cpu, self.tid_word(), tid, tid | TID_BUSY) {
                        Ok(()) => return (self.fl_tid.lo(Ordering::Acquire), tid),
                        Err(_) => continue,
                    }
                }
            }
            let fl = self.fl_tid.lo(Ordering::Acquire);
            if !self.fl_tid.cmpxchg((fl, tid), (fl, tid | TID_BUSY)) {
                continue;
            }
            let fenced = rseq::fence_cpu(cpu);
            assert!(
                fenced,
                "membarrier(PRIVATE_EXPEDITED_RSEQ) failed after registration"
            );
            if self.fl_tid.hi(Ordering::Acquire) == tid | TID_BUSY {
                return (self.fl_tid.lo(Ordering::Acquire), tid);
            }
            // A sequence that had compared the old tid stored tid + TID_STEP over our mark
            // before the fence aborted or completed it: start again from the new tid.
        }
    }

    /// Ends [`Self::begin_update`]: publishes `freelist` with `next_tid(tid)`.
    #[inline]
    pub(crate) fn end_update(&self, old: (usize, usize), freelist: usize) {
        let ok = self
            .fl_tid
            .cmpxchg((old.0, old.1 | TID_BUSY), (freelist, next_tid(old.1)));
        assert!(ok, "kmem_cache_cpu changed while marked busy");
    }

    /// The slot's current tid (for tests and introspection).
    pub(crate) fn tid(&self) -> usize {
        self.fl_tid.hi(Ordering::Acquire)
    }
}

/// The free-pointer codec of `s` for the rseq primitives (`PLAIN`: never hardened).
#[inline(always)]
fn link<const PLAIN: bool>(s: &KmemCache) -> Link {
    Link {
        offset: s.offset,
        key: (!PLAIN && s.hardened).then_some(s.random),
    }
}

/// `s.debug`, known false in the `PLAIN` form.
#[inline(always)]
fn debug<const PLAIN: bool>(s: &KmemCache) -> bool {
    !PLAIN && s.debug
}

/// `stat(s, item)`, compiled out in the `PLAIN` form (statistics off).
#[inline(always)]
fn stat<const PLAIN: bool>(s: &KmemCache, item: crate::stats::StatItem) {
    if !PLAIN {
        s.stat(item);
    }
}

/// `slab_alloc_node`: pop the CPU freelist, or go to the slow path.
#[inline(always)]
pub(crate) fn slab_alloc_node(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    node: usize,
) -> Option<NonNull<u8>> {
    // Sheaves: a cache with percpu sheaves (era 6.18 opt-in, every 7.0 cache) allocates
    // from them first (`sheaf.rs`).
    let object = if s.has_sheaves() {
        crate::sheaf::slab_alloc_node(sl, s, gfp, node)?
    } else {
        slab_alloc_node_6_4(sl, s, gfp, node)?
    };
    if s.plain {
        crate::hooks::slab_post_alloc_hook_plain(s, gfp, object);
    } else {
        crate::hooks::slab_post_alloc_hook(s, gfp, object);
    }
    NonNull::new(object as *mut u8)
}

/// The 6.4 CPU-freelist pop (without the post-alloc hooks).
#[inline(always)]
pub(crate) fn slab_alloc_node_6_4(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    node: usize,
) -> Option<usize> {
    // One test picks the specialised form (see `KmemCache::plain`).
    match (sl.rseq, s.plain) {
        (true, true) => slab_alloc_rseq::<true>(sl, s, gfp, node),
        (true, false) => slab_alloc_rseq::<false>(sl, s, gfp, node),
        (false, true) => slab_alloc_cmpxchg::<true>(sl, s, gfp, node),
        (false, false) => slab_alloc_cmpxchg::<false>(sl, s, gfp, node),
    }
}

/// The rseq pop: checks as the cmpxchg path does, then `pair_pop` on this CPU's slot, which
/// commits only if the slot's tid is still the one read (so `c->slab` is still the one
/// checked).
#[inline(always)]
fn slab_alloc_rseq<const PLAIN: bool>(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    node: usize,
) -> Option<usize> {
    let Some(t) = rseq::this_thread() else {
        return crate::slowpath::__slab_alloc(sl, s, gfp, node, s.cpu_slab.this_cpu());
    };
    let link = link::<PLAIN>(s);
    loop {
        let cpu = t.cpu();
        let c = s.cpu_slab.get(cpu);
        let tid = c.fl_tid.hi(Ordering::Acquire);
        let object = c.fl_tid.lo(Ordering::Acquire);
        let slab = c.slab.load(Ordering::Acquire);
        if debug::<PLAIN>(s)
            || tid & TID_BUSY != 0
            || object == 0
            || slab.is_null()
            || cpu >= s.cpu_slab.len()
            || !node_match(s, slab, node)
        {
            return crate::slowpath::__slab_alloc(sl, s, gfp, node, c);
        }
        // SAFETY: the list is c->freelist: objects of c->slab, whose memory stays mapped (a
        // stale read of an object just taken by a slow path is harmless: the commit fails).
        match unsafe { t.pair_pop(cpu, &c.fl_tid, tid, next_tid(tid), link) } {
            Ok(object) => {
                stat::<PLAIN>(s, ALLOC_FASTPATH);
                return Some(object);
            }
            Err(_) => s.stat(CMPXCHG_DOUBLE_CPU_FAIL),
        }
    }
}

/// The `lock cmpxchg16b` pop (`__slab_alloc_node` of 6.4).
#[inline(always)]
fn slab_alloc_cmpxchg<const PLAIN: bool>(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    node: usize,
) -> Option<usize> {
    Some(loop {
        let c = s.cpu_slab.this_cpu();
        // tid first (acquire), then freelist and slab: a value of either newer than the tid
        // makes the commit fail.
        let tid = c.fl_tid.hi(Ordering::Acquire);
        let object = c.fl_tid.lo(Ordering::Acquire);
        let slab = c.slab.load(Ordering::Acquire);
        if debug::<PLAIN>(s)
            || tid & TID_BUSY != 0
            || object == 0
            || slab.is_null()
            || !node_match(s, slab, node)
        {
            break crate::slowpath::__slab_alloc(sl, s, gfp, node, c)?;
        }
        let next = if PLAIN {
            crate::freeptr::get_freepointer_plain(s, object)
        } else {
            get_freepointer(s, object)
        };
        if c.fl_tid.cmpxchg((object, tid), (next, next_tid(tid))) {
            stat::<PLAIN>(s, ALLOC_FASTPATH);
            break object;
        }
        // note_cmpxchg_failure
        s.stat(CMPXCHG_DOUBLE_CPU_FAIL);
    })
}

/// `slab_free` of one object (`kmem_cache_free` → `slab_free(s, slab, x, x, NULL, 1)` in 6.4;
/// with sheaves, 6.18's `slab_free` in `sheaf.rs`).
///
/// # Safety
/// `object` is the start of an allocated object of `slab`, a slab of `s`, and is not used after.
#[inline(always)]
pub(crate) unsafe fn slab_free(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    object: usize,
) -> Result<(), SlabError> {
    if s.has_sheaves() {
        // SAFETY: forwarded contract.
        return unsafe { crate::sheaf::slab_free(sl, s, slab, object) };
    }
    // SAFETY: forwarded contract; a one-object chain.
    unsafe { slab_free_bulk(sl, s, slab, object, object, 1) }
}

/// `slab_free(s, slab, head, tail, p, cnt)` of 6.4 (6.18's `slab_free_bulk`): the free hooks
/// (`slab_free_freelist_hook`), then [`do_slab_free`] of the chain.
///
/// # Safety
/// As [`do_slab_free`].
#[inline(always)]
pub(crate) unsafe fn slab_free_bulk(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    // One test picks the specialised form (see `KmemCache::plain`); only the general one has
    // free hooks to run.
    // SAFETY: the chain is the caller's; every call forwards that contract unchanged.
    unsafe {
        if s.plain {
            return do_slab_free_form::<true>(sl, s, slab, head, tail, cnt);
        }
        crate::hooks::slab_free_freelist_hook(s, head, tail);
        do_slab_free_form::<false>(sl, s, slab, head, tail, cnt)
    }
}

/// `do_slab_free(s, slab, head, tail, cnt)`: frees the chain `head … tail` of `cnt` objects of
/// `slab` (linked through their free pointers), whose free hooks already ran: pushed on the CPU
/// freelist if `slab` is the CPU slab, else `__slab_free`.
///
/// # Safety
/// The chain holds `cnt` distinct allocated objects of `slab`, a slab of `s`, none used after.
#[inline(always)]
pub(crate) unsafe fn do_slab_free(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    // SAFETY: forwarded contract.
    unsafe {
        if s.plain {
            do_slab_free_form::<true>(sl, s, slab, head, tail, cnt)
        } else {
            do_slab_free_form::<false>(sl, s, slab, head, tail, cnt)
        }
    }
}

/// [`do_slab_free`] in the form `PLAIN` names, by rseq or `cmpxchg16b` as the instance chose.
///
/// # Safety
/// As [`do_slab_free`].
#[inline(always)]
unsafe fn do_slab_free_form<const PLAIN: bool>(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    // SAFETY: forwarded contract.
    unsafe {
        if sl.rseq {
            do_slab_free_rseq::<PLAIN>(sl, s, slab, head, tail, cnt)
        } else {
            do_slab_free_cmpxchg::<PLAIN>(sl, s, slab, head, tail, cnt)
        }
    }
}

/// The `lock cmpxchg16b` push of `do_slab_free`.
///
/// # Safety
/// As [`do_slab_free`].
#[inline(always)]
unsafe fn do_slab_free_cmpxchg<const PLAIN: bool>(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    loop {
        let c = s.cpu_slab.this_cpu();
        let tid = c.fl_tid.hi(Ordering::Acquire);
        if debug::<PLAIN>(s)
            || tid & TID_BUSY != 0
            || slab.as_ptr() != c.slab.load(Ordering::Acquire)
        {
            // SAFETY: forwarded contract.
            return unsafe { crate::slowpath::__slab_free(sl, s, slab, head, tail, cnt) };
        }
        let freelist = c.fl_tid.lo(Ordering::Acquire);
        if !PLAIN && naive_double_free(s, tail, freelist) {
            return Err(SlabError::DoubleFree(tail));
        }
        if PLAIN {
            crate::freeptr::set_freepointer_plain(s, tail, freelist);
        } else {
            set_freepointer(s, tail, freelist);
        }
        if c.fl_tid.cmpxchg((freelist, tid), (head, next_tid(tid))) {
            stat::<PLAIN>(s, FREE_FASTPATH);
            return Ok(());
        }
        s.stat(CMPXCHG_DOUBLE_CPU_FAIL);
    }
}

/// The rseq push of `do_slab_free`: `pair_push` of the chain on this CPU's slot if `slab` is
/// its CPU slab and the tid is still the one read.
///
/// # Safety
/// As [`do_slab_free`].
#[inline(always)]
unsafe fn do_slab_free_rseq<const PLAIN: bool>(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    let link = link::<PLAIN>(s);
    while let Some(t) = rseq::this_thread() {
        let cpu = t.cpu();
        let c = s.cpu_slab.get(cpu);
        let tid = c.fl_tid.hi(Ordering::Acquire);
        if debug::<PLAIN>(s)
            || tid & TID_BUSY != 0
            || cpu >= s.cpu_slab.len()
            || slab.as_ptr() != c.slab.load(Ordering::Acquire)
        {
            break;
        }
        // SAFETY: the chain is the caller's (contract), linked, tail writable at s->offset.
        match unsafe { t.pair_push(cpu, &c.fl_tid, tid, next_tid(tid), head, tail, link) } {
            Ok(()) => {
                stat::<PLAIN>(s, FREE_FASTPATH);
                return Ok(());
            }
            Err(Fail::DoubleFree) => return Err(SlabError::DoubleFree(tail)),
            Err(_) => s.stat(CMPXCHG_DOUBLE_CPU_FAIL),
        }
    }
    // SAFETY: forwarded contract.
    unsafe { crate::slowpath::__slab_free(sl, s, slab, head, tail, cnt) }
}

/// `__kmem_cache_alloc_bulk`: fills `p` under the CPU slot's lock, popping the CPU freelist
/// and calling `___slab_alloc` when it runs dry. Returns `p.len()`, or 0 (everything given
/// back) when out of memory.
pub(crate) fn kmem_cache_alloc_bulk(sl: &Slub, s: &KmemCache, gfp: Gfp, p: &mut [usize]) -> usize {
    if s.has_sheaves() {
        // Sheaves: `alloc_from_pcs_bulk` first.
        return crate::sheaf::kmem_cache_alloc_bulk(sl, s, gfp, p);
    }
    __kmem_cache_alloc_bulk(sl, s, gfp, p)
}

/// The 6.4 bulk allocation (CPU slab under its lock), all or nothing.
pub(crate) fn __kmem_cache_alloc_bulk(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    p: &mut [usize],
) -> usize {
    let c = s.cpu_slab.this_cpu();
    c.lock.lock();
    let mut old = c.begin_update();
    let mut freelist = old.0;
    let mut i = 0;
    while i < p.len() {
        if freelist == 0 || s.debug {
            c.end_update(old, freelist);
            c.lock.unlock();
            let Some(o) = crate::slowpath::__slab_alloc(sl, s, gfp, NUMA_NO_NODE, c) else {
                // SAFETY: p[..i] are objects of s just allocated and unused.
                unsafe { __kmem_cache_free_bulk(sl, s, &mut p[..i]) };
                return 0;
            };
            p[i] = o;
            i += 1;
            c.lock.lock();
            old = c.begin_update();
            freelist = old.0;
            continue;
        }
        p[i] = freelist;
        freelist = get_freepointer(s, freelist);
        i += 1;
    }
    c.end_update(old, freelist);
    c.lock.unlock();
    crate::hooks::slab_post_alloc_hook_bulk(s, gfp, p);
    p.len()
}

/// `struct detached_freelist`: a chain of objects of one slab.
struct DetachedFreelist {
    slab: NonNull<Page>,
    freelist: usize,
    tail: usize,
    cnt: u16,
}

/// `build_detached_freelist`: chains the last object of `p[..size]` with every object of the
/// same slab found before it (stopping after 3 misses), moving them to the end of the range.
/// Returns the new `size` and the chain `(slab, head, tail, cnt)`.
fn build_detached_freelist(
    sl: &Slub,
    s: &KmemCache,
    mut size: usize,
    p: &mut [usize],
) -> (usize, Option<DetachedFreelist>) {
    let mut object;
    loop {
        size -= 1;
        object = p[size];
        if object != 0 || size == 0 {
            break;
        }
    }
    if object == 0 {
        return (0, None);
    }
    let slab = sl
        .provider
        .virt_to_head_page(object)
        .expect("checked by the caller");
    let (mut head, tail, mut cnt) = (object, object, 1u16);
    set_freepointer(s, object, 0);
    let mut same = size;
    let mut lookahead = 3;
    while size > 0 {
        size -= 1;
        let object = p[size];
        if sl.provider.virt_to_head_page(object) == Some(slab) {
            set_freepointer(s, object, head);
            head = object;
            cnt += 1;
            same -= 1;
            if size != same {
                p.swap(size, same);
            }
            continue;
        }
        lookahead -= 1;
        if lookahead == 0 {
            break;
        }
    }
    let df = DetachedFreelist {
        slab,
        freelist: head,
        tail,
        cnt,
    };
    (same, Some(df))
}

/// `kmem_cache_free_bulk` of objects already checked to be distinct live objects of `s`.
///
/// # Safety
/// Every entry of `p` is a distinct allocated object of `s` (or 0), unused after the call.
pub(crate) unsafe fn kmem_cache_free_bulk(sl: &Slub, s: &KmemCache, p: &mut [usize]) {
    // SAFETY: forwarded contract.
    unsafe {
        if s.has_sheaves() {
            // Sheaves: `free_to_pcs_bulk`.
            crate::sheaf::free_to_pcs_bulk(sl, s, p);
        } else {
            __kmem_cache_free_bulk(sl, s, p);
        }
    }
}

/// The 6.4 bulk free (detached freelists through `slab_free_bulk`).
///
/// # Safety
/// As [`kmem_cache_free_bulk`].
pub(crate) unsafe fn __kmem_cache_free_bulk(sl: &Slub, s: &KmemCache, p: &mut [usize]) {
    let mut size = p.len();
    while size > 0 {
        let (next, df) = build_detached_freelist(sl, s, size, p);
        size = next;
        if let Some(df) = df {
            // SAFETY: a chain of cnt objects of slab, per the caller.
            let r = unsafe { slab_free_bulk(sl, s, df.slab, df.freelist, df.tail, df.cnt) };
            debug_assert!(r.is_ok(), "bulk free: {r:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tid_sequence_encodes_cpu_and_event() {
        assert_eq!(TID_STEP, 512);
        let mut t = init_tid(3);
        assert_eq!((tid_to_cpu(t), tid_to_event(t)), (3, 0));
        for e in 1..=1000 {
            t = next_tid(t);
            assert_eq!(tid_to_cpu(t), 3);
            assert_eq!(tid_to_event(t), e);
        }
        // Distinct CPUs never share a tid.
        assert_ne!(next_tid(init_tid(0)), next_tid(init_tid(1)));
        assert_eq!(tid_to_cpu(t | TID_BUSY), 3);
    }
}
