//! loom model of SLAB's (2.6.32) array-cache handoff.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p slab-classic --test loom --release`
//! (`.ci/run` does). The model, with the table of which crate function each model function
//! mirrors and why the crate's own code cannot run under loom, is in `loom/model.rs`.
//!
//! 1. [`array_cache_handoff_with_alien_free`]: a thread on CPU 0 (node 0) frees into its full
//!    one-entry array (`cache_flusharray` → the node's shared array, or `free_block` when it is
//!    full) and allocates from an empty one (`cache_alloc_refill` → `transfer_objects` from the
//!    shared array, else the slab lists, else `cache_grow`), while a thread on CPU 1 (node 1)
//!    frees two objects of node 0: the first into its alien array, the second finds it full
//!    and drains it (`cache_free_alien` → `__drain_alien_cache` → node 0's shared array /
//!    `free_block`, under node 0's `list_lock`).
//! 2. [`array_cache_two_threads_on_one_slot`]: two threads on CPU slot 0 (a thread migrated
//!    after reading its CPU id) allocate and free through the same array under the slot lock.
//!
//! After every execution `Slab::check` verifies that each object is in exactly one place
//! (thread, CPU array, shared array, alien array, slab free chain; none lost, none twice,
//! none of a destroyed slab), each slab is on the list its `inuse` says, and each node's
//! `free_objects` is the number of free objects on its slabs; `Slab::drain_and_check` then
//! frees and drains everything and checks that every object is back on its slab. The
//! negative controls drop one lock each (`model::Bug`) and require loom to fail.

#![cfg(loom)]
// The model is shared through a std `Arc` (a loom `Arc` touches loom's state when dropped,
// which aborts the process while a failing negative control unwinds). Its types are !Sync only
// because loom's `UnsafeCell` is, and `loom::thread::spawn` runs every model thread on this
// OS thread, without a `Send` bound.
#![allow(clippy::arc_with_non_send_sync)]

#[path = "loom/model.rs"]
mod model;

use loom::thread;
use model::{events_on, take_events, Bug, Ev, Geometry, Slab};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Two nodes of one CPU each; two-object slabs; CPU, shared and alien arrays of one entry
/// (batch 1), so a second free flushes or drains and a second allocation refills; empty slabs
/// destroyed above one free object on the node.
const GEOMETRY: Geometry = Geometry {
    nodes: 2,
    cpus_per_node: 1,
    pages_per_node: 3,
    num: 2,
    limit: 1,
    batchcount: 1,
    shared: 1,
    alien: 1,
    free_limit: 1,
};

fn nonzero(v: &[usize]) -> Vec<usize> {
    v.iter().copied().filter(|&o| o != 0).collect()
}

/// Scenario 1. Set-up on CPU 0: objects 1, 2 (slab 1) and 3 (slab 2) allocated. A (CPU 0)
/// holds 3: frees it, allocates three objects, frees them. B (CPU 1) frees 1 and 2 (alien).
fn handoff(bug: Bug, yield_first: bool) {
    let s = Arc::new(Slab::new(bug, GEOMETRY));
    let objs = [
        s.kmem_cache_alloc(0),
        s.kmem_cache_alloc(0),
        s.kmem_cache_alloc(0),
    ];
    assert_eq!(objs, [1, 2, 3]);
    events_on(true);
    let s1 = s.clone();
    let a = thread::spawn(move || {
        s1.kmem_cache_free(0, 3);
        let got = [
            s1.kmem_cache_alloc(0),
            s1.kmem_cache_alloc(0),
            s1.kmem_cache_alloc(0),
        ];
        for o in nonzero(&got) {
            s1.kmem_cache_free(0, o);
        }
    });
    if yield_first {
        thread::yield_now();
    }
    s.kmem_cache_free(1, 1);
    s.kmem_cache_free(1, 2);
    a.join().unwrap();
    events_on(false);
    s.check(&[]);
    s.drain_and_check(&[]);
}

/// Scenario 2. A and B both on CPU 0: each allocates one object and frees it; B also frees
/// object 1, allocated in the set-up.
fn one_slot(bug: Bug, yield_first: bool) {
    let s = Arc::new(Slab::new(bug, GEOMETRY));
    let o = s.kmem_cache_alloc(0);
    events_on(true);
    let s1 = s.clone();
    let a = thread::spawn(move || {
        let a = s1.kmem_cache_alloc(0);
        if a != 0 {
            s1.kmem_cache_free(0, a);
        }
    });
    if yield_first {
        thread::yield_now();
    }
    let b = s.kmem_cache_alloc(0);
    s.kmem_cache_free(0, o);
    let owned = nonzero(&[b]);
    a.join().unwrap();
    events_on(false);
    s.check(&owned);
    s.drain_and_check(&owned);
}

fn builder(preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(preemptions);
    b
}

/// Runs a model that must pass, with and without the main thread yielding once after it
/// spawned (loom's reduction explores different schedules in the two; see slub's loom.rs),
/// prints the executions, the time and the branches taken, and panics unless every one of
/// `reached` was taken in some execution.
fn pass(
    name: &str,
    preemptions: usize,
    reached: &[Ev],
    f: impl Fn(bool) + Sync + Send + Clone + 'static,
) {
    take_events();
    let t = Instant::now();
    let n = Arc::new(AtomicUsize::new(0));
    for yield_first in [false, true] {
        let n1 = n.clone();
        let f = f.clone();
        builder(preemptions).check(move || {
            n1.fetch_add(1, Ordering::Relaxed);
            f(yield_first);
        });
    }
    let n = n.load(Ordering::Relaxed);
    let evs = take_events();
    eprintln!(
        "{name}: {n} executions passed in {:.1?}; branches taken: {:?}",
        t.elapsed(),
        ALL_EVENTS
            .iter()
            .filter(|&&e| evs[e as usize] > 0)
            .map(|&e| (e, evs[e as usize]))
            .collect::<Vec<_>>()
    );
    for &r in reached {
        assert!(evs[r as usize] > 0, "{name}: no execution reached {r:?}");
    }
}

const ALL_EVENTS: [Ev; 14] = [
    Ev::AllocHit,
    Ev::AllocMiss,
    Ev::RefillFromShared,
    Ev::RefillFromSlabs,
    Ev::Grown,
    Ev::FreeHit,
    Ev::FreeMiss,
    Ev::FlushToShared,
    Ev::FlushFreeBlock,
    Ev::NodeFrees,
    Ev::AlienOverflow,
    Ev::DrainToShared,
    Ev::DrainFreeBlock,
    Ev::SlabDestroy,
];

/// Runs a negative control: loom must find a failing execution. Returns the message.
fn must_fail(name: &str, preemptions: usize, f: impl Fn() + Sync + Send + 'static) -> String {
    let t = Instant::now();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        builder(preemptions).check(f);
    }));
    let Err(e) = r else {
        panic!("{name}: the broken protocol passed every execution: the model cannot fail");
    };
    let msg = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_default();
    eprintln!("{name}: failed as it must, in {:.1?}: {msg}", t.elapsed());
    msg
}

#[test]
fn array_cache_handoff_with_alien_free() {
    pass("handoff + alien free", 3, &ALL_EVENTS, |y| {
        handoff(Bug::None, y);
    });
}

#[test]
fn array_cache_two_threads_on_one_slot() {
    pass(
        "one slot",
        3,
        &[Ev::AllocHit, Ev::AllocMiss, Ev::FreeHit, Ev::FreeMiss],
        |y| one_slot(Bug::None, y),
    );
}

#[test]
fn negative_flusharray_without_list_lock() {
    must_fail("cache_flusharray without list_lock", 3, || {
        handoff(Bug::FlushNoListLock, false);
    });
}

#[test]
fn negative_drain_alien_without_list_lock() {
    must_fail("__drain_alien_cache without list_lock", 3, || {
        handoff(Bug::DrainAlienNoListLock, false);
    });
}

#[test]
fn negative_array_without_slot_lock() {
    must_fail("CPU array without the slot lock", 3, || {
        one_slot(Bug::NoSlotLock, false);
    });
}
