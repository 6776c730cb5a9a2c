//! loom models of SLUB's lock-free protocols.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p slub --test loom --release` (`.ci/run` does).
//! The model itself, with the table of which crate function each model function mirrors, is
//! in `loom/model.rs`; see its header for why the crate's own code cannot run under loom.
//!
//! 1. [`fast_path_two_threads_on_one_slot`]: two threads on one `kmem_cache_cpu` (the
//!    user-space case of a thread migrated mid-sequence) pop and push with the
//!    `{freelist, tid}` cmpxchg; the freelist runs dry, so `___slab_alloc` runs under
//!    `c->lock` with `TID_BUSY` (`get_freelist`, deactivate bypass, `new_slab`), and frees of
//!    the old CPU slab go through `__slab_free` onto the node list.
//! 2. [`fast_path_against_remote_free`]: a thread on CPU 0 pops until its freelist runs dry
//!    and refills from the remotely freed objects (`get_freelist`), while a thread on CPU 1
//!    frees an object of CPU 0's slab (`__slab_free` on a frozen slab) and then allocates on
//!    its own slot (`get_partial_node`/`acquire_slab` or `new_slab`).
//! 3. [`slab_free_against_deactivate`] (three configurations): two remote freers of objects of
//!    CPU 0's slab race with `__flush_cpu_slab` → `deactivate_slab` (unfreeze, full slab left
//!    unlisted) and the freeing of the last object (slab put on the partial list when it was
//!    full, discarded when empty; or frozen onto a CPU partial list with `cpu_partial`).
//!
//! After every execution `model::check` verifies ownership (no object lost or held twice), the
//! counters (`inuse` = objects held by threads + on CPU freelists = objects − free), frozen ⇔
//! owned by a CPU slot, no frozen slab on the node list, `nr_partial`/`nr_slabs`; then
//! `model::drain_and_check` flushes and frees everything and checks that every object is back
//! on exactly one slab freelist. The negative controls run the same scenarios with one
//! protocol step broken (`model::Bug`) and require loom to find a failing execution.

#![cfg(loom)]
// The model is shared through a std `Arc` (a loom `Arc` touches loom's state when dropped,
// which aborts the process while a failing negative control unwinds). Its types are !Sync only
// because loom's `UnsafeCell` is, and `loom::thread::spawn` runs every model thread on this
// OS thread, without a `Send` bound.
#![allow(clippy::arc_with_non_send_sync)]

#[path = "loom/model.rs"]
mod model;

use common::testing::loom_helpers::{must_fail, pass_both_ways};
use loom::thread;
use model::{
    __flush_cpu_slab, check, drain_and_check, kmem_cache_free, set_freepointer, slab_alloc_node,
    stats_on, take_stats, Bug, KmemCache, IN_USE,
};
use slub::StatItem::{
    self, ALLOC_FASTPATH, ALLOC_FROM_PARTIAL, ALLOC_REFILL, ALLOC_SLAB, ALLOC_SLOWPATH,
    CMPXCHG_DOUBLE_CPU_FAIL, CMPXCHG_DOUBLE_FAIL, CPU_PARTIAL_FREE, DEACTIVATE_BYPASS,
    DEACTIVATE_EMPTY, DEACTIVATE_FULL, DEACTIVATE_TO_HEAD, DEACTIVATE_TO_TAIL, FREE_ADD_PARTIAL,
    FREE_FASTPATH, FREE_FROZEN, FREE_REMOVE_PARTIAL, FREE_SLAB, FREE_SLOWPATH,
};
use std::sync::Arc;

/// `kmem_cache_alloc` by a thread on `cpu`, which then writes into the object (over its free
/// pointer), as an owner does. 0 if the model's provider ran out of pages.
fn alloc(s: &KmemCache, cpu: usize) -> usize {
    let o = slab_alloc_node(s, cpu);
    if o != 0 {
        set_freepointer(s, o, IN_USE);
    }
    o
}

fn nonzero(v: &[usize]) -> Vec<usize> {
    v.iter().copied().filter(|&o| o != 0).collect()
}

/// Scenario 1: threads A and B both on CPU slot 0; slot 0 starts with slab 1 (objects 1, 2)
/// and `c->freelist = 1 → 2`. A: alloc, free. B: alloc x, alloc y, free x. Two objects per
/// slab, two pages: somebody always finds the freelist dry and takes the slow path.
fn one_slot(bug: Bug, yield_first: bool) {
    let s = Arc::new(KmemCache::new(bug, 1, 2, 2));
    let o = slab_alloc_node(&s, 0);
    kmem_cache_free(&s, 0, o);
    stats_on(true);
    let s1 = s.clone();
    let a = thread::spawn(move || {
        let a = alloc(&s1, 0);
        if a != 0 {
            kmem_cache_free(&s1, 0, a);
        }
    });
    if yield_first {
        thread::yield_now();
    }
    let x = alloc(&s, 0);
    let y = alloc(&s, 0);
    if x != 0 {
        kmem_cache_free(&s, 0, x);
    }
    a.join().unwrap();
    stats_on(false);
    let owned = nonzero(&[y]);
    check(&s, &owned);
    drain_and_check(&s, &owned);
}

/// Scenario 2: CPU 0's slab 1 has objects 1, 2 on `c->freelist`, object 3 held by B.
/// A on CPU 0: alloc ×3 (the third refills or replaces the slab), free the first.
/// B on CPU 1: frees object 3 (remote: `__slab_free`), then allocates on CPU 1.
fn remote_free(bug: Bug, yield_first: bool) {
    let s = Arc::new(KmemCache::new(bug, 2, 3, 3));
    let objs = [
        slab_alloc_node(&s, 0),
        slab_alloc_node(&s, 0),
        slab_alloc_node(&s, 0),
    ];
    kmem_cache_free(&s, 0, objs[0]);
    kmem_cache_free(&s, 0, objs[1]);
    stats_on(true);
    let s1 = s.clone();
    let a = thread::spawn(move || {
        let got = [alloc(&s1, 0), alloc(&s1, 0), alloc(&s1, 0)];
        if got[0] != 0 {
            kmem_cache_free(&s1, 0, got[0]);
        }
        nonzero(&got[1..])
    });
    if yield_first {
        thread::yield_now();
    }
    kmem_cache_free(&s, 1, objs[2]);
    let x = alloc(&s, 1);
    let mut owned = a.join().unwrap();
    stats_on(false);
    owned.extend(nonzero(&[x]));
    check(&s, &owned);
    drain_and_check(&s, &owned);
}

/// Scenario 3: CPU 0's slab 1 (objects 1, 2, 3) fully allocated: 1 by A, 2 by B, 3 by C, and
/// CPU 0's freelist empty. A on CPU 1 and B on CPU 2 free theirs (`__slab_free`); C, on CPU 0,
/// flushes CPU 0 (`__flush_cpu_slab` → `deactivate_slab`) and then frees object 3 (which goes
/// to `__slab_free`), or with `free_first` frees it first (a fast-path push onto CPU 0's
/// freelist, which `deactivate_slab` then splices).
fn free_vs_deactivate(
    bug: Bug,
    has_cpu_partial: bool,
    min_partial: usize,
    free_first: bool,
    yield_first: bool,
) {
    let mut cache = KmemCache::new(bug, 3, 1, 3);
    cache.has_cpu_partial = has_cpu_partial;
    cache.min_partial = min_partial;
    let s = Arc::new(cache);
    let objs = [
        slab_alloc_node(&s, 0),
        slab_alloc_node(&s, 0),
        slab_alloc_node(&s, 0),
    ];
    stats_on(true);
    let freer = |cpu: usize, o: usize| {
        let s = s.clone();
        thread::spawn(move || kmem_cache_free(&s, cpu, o))
    };
    let a = freer(1, objs[0]);
    let b = freer(2, objs[1]);
    if free_first {
        kmem_cache_free(&s, 0, objs[2]);
        if yield_first {
            thread::yield_now();
        }
        __flush_cpu_slab(&s, 0);
    } else {
        if yield_first {
            thread::yield_now();
        }
        __flush_cpu_slab(&s, 0);
        kmem_cache_free(&s, 0, objs[2]);
    }
    a.join().unwrap();
    b.join().unwrap();
    stats_on(false);
    check(&s, &[]);
    drain_and_check(&s, &[]);
}

/// Runs a model that must pass, twice: as written, and with the main thread yielding once
/// after spawning (`f(true)`). Loom's partial-order reduction explores different schedules
/// in the two (without the yield it never let a remote free complete before the flush's first
/// load in scenario 3, and `DEACTIVATE_REMOTE_FREES` was never reached). Prints how many
/// executions loom explored, how long it took and how often each `StatItem` branch was taken;
/// panics unless every one of `reached` was taken in some execution.
fn pass(
    name: &str,
    preemptions: usize,
    reached: &[StatItem],
    f: impl Fn(bool) + Sync + Send + Clone + 'static,
) {
    take_stats();
    let (n, took) = pass_both_ways(preemptions, f);
    let stats = take_stats();
    let shown: Vec<String> = stats
        .iter()
        .filter(|(_, c)| *c > 0)
        .map(|(i, c)| format!("{}={c}", i.name()))
        .collect();
    eprintln!(
        "{name}: {n} executions passed in {took:.1?}; branches taken: {}",
        shown.join(" ")
    );
    for r in reached {
        assert!(
            stats.iter().any(|(i, c)| i == r && *c > 0),
            "{name}: no execution reached {}",
            r.name()
        );
    }
}

#[test]
fn fast_path_two_threads_on_one_slot() {
    pass(
        "one slot",
        3,
        &[
            ALLOC_FASTPATH,
            FREE_FASTPATH,
            CMPXCHG_DOUBLE_CPU_FAIL,
            ALLOC_SLOWPATH,
            DEACTIVATE_BYPASS,
            ALLOC_SLAB,
            FREE_SLOWPATH,
            FREE_ADD_PARTIAL,
        ],
        |y| one_slot(Bug::None, y),
    );
}

#[test]
fn fast_path_against_remote_free() {
    pass(
        "remote free",
        3,
        &[
            ALLOC_FASTPATH,
            ALLOC_REFILL,
            DEACTIVATE_BYPASS,
            ALLOC_FROM_PARTIAL,
            FREE_FROZEN,
            FREE_ADD_PARTIAL,
            CMPXCHG_DOUBLE_FAIL,
        ],
        |y| remote_free(Bug::None, y),
    );
}

#[test]
fn slab_free_against_deactivate() {
    pass(
        "free vs deactivate: flush, then free; node partial list, min_partial 0",
        3,
        &[
            FREE_FROZEN,
            DEACTIVATE_FULL,
            FREE_ADD_PARTIAL,
            FREE_REMOVE_PARTIAL,
            FREE_SLAB,
            CMPXCHG_DOUBLE_FAIL,
        ],
        |y| free_vs_deactivate(Bug::None, false, 0, false, y),
    );
    pass(
        "free vs deactivate: free, then flush; node partial list, min_partial 0",
        3,
        &[
            FREE_FASTPATH,
            FREE_FROZEN,
            DEACTIVATE_EMPTY,
            DEACTIVATE_TO_HEAD,
            DEACTIVATE_TO_TAIL,
            FREE_REMOVE_PARTIAL,
            FREE_SLAB,
        ],
        |y| free_vs_deactivate(Bug::None, false, 0, true, y),
    );
    pass(
        "free vs deactivate: flush, then free; per-CPU partial lists, min_partial 0",
        3,
        &[FREE_FROZEN, DEACTIVATE_FULL, CPU_PARTIAL_FREE],
        |y| free_vs_deactivate(Bug::None, true, 0, false, y),
    );
}

#[test]
fn negative_pop_without_cmpxchg() {
    let m = must_fail("pop: plain store", 3, || {
        one_slot(Bug::PopPlainStore, false);
    });
    assert!(m.contains("slub model"), "{m}");
}

#[test]
fn negative_pop_without_tid_bump() {
    let m = must_fail("pop: no tid bump", 3, || one_slot(Bug::NoTidBump, false));
    assert!(m.contains("slub model"), "{m}");
}

#[test]
fn negative_slow_path_without_busy_mark() {
    let m = must_fail("slow path: no TID_BUSY", 3, || {
        one_slot(Bug::NoBusyMark, false);
    });
    assert!(m.contains("slub model"), "{m}");
}

#[test]
fn negative_slab_free_without_cmpxchg() {
    let m = must_fail("__slab_free: plain store (remote)", 3, || {
        remote_free(Bug::SlabFreePlainStore, false);
    });
    assert!(m.contains("slub model"), "{m}");
    let m = must_fail("__slab_free: plain store (deactivate)", 3, || {
        free_vs_deactivate(Bug::SlabFreePlainStore, false, 0, false, false);
    });
    assert!(m.contains("slub model"), "{m}");
}

#[test]
fn negative_slab_free_ignoring_frozen() {
    let m = must_fail("__slab_free: ignores frozen", 3, || {
        remote_free(Bug::SlabFreeIgnoresFrozen, false);
    });
    assert!(m.contains("slub model"), "{m}");
}
