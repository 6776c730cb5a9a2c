//! An exhaustive interleaving model of the fast path's `{freelist, tid}` protocol, written by
//! hand rather than with loom: loom cannot preempt a restartable sequence or run a
//! `membarrier` fence (the loom models of the cmpxchg protocol are `tests/loom.rs`). Every
//! schedule of three threads' atomic steps on one CPU slot is explored (the shared explorer,
//! `common::testing::explore`: breadth-first, with visited-state pruning) and the
//! object-ownership invariant checked.
//!
//! Threads: a fast-path allocation (`slab_alloc_node`: read tid, read freelist, read the free
//! pointer, `cmpxchg16b`, retry), a fast-path free of an object it owns (`do_slab_free`: read
//! tid, read freelist, write the free pointer, `cmpxchg16b`, retry; a busy tid sends it to
//! `__slab_free`), and a slow path that detaches the CPU freelist (`flush_slab`). The slow path
//! is modelled twice: as this crate does it (`begin_update`/`end_update`, the `TID_BUSY` mark)
//! and as the kernel does it with plain stores — which is only safe when the fast path cannot
//! run concurrently on that CPU. The model shows the first correct and finds the lost update in
//! the second, which is why a user-space port needs the busy mark.
//!
//! # The rseq protocol
//! `RAlloc`, `RFree` and `LocalFlush` run on the slot's CPU X; `RemoteFlush*` on another CPU.
//! Restartable-sequence semantics: whenever a thread on X takes a step, every *other* thread on
//! X that is inside its critical section is aborted (it can only have lost the CPU by being
//! preempted), and any thread in a critical section may also be aborted spontaneously (a
//! signal). The fence step of `RemoteFlush` aborts every thread in a critical section on X
//! (membarrier). Variants without the fence, or without the re-check of the busy mark after
//! it, must be caught.

use common::testing::{explore, Model, Transition};

const NOBJ: usize = 3;
const STEP: u32 = 4;
const BUSY: u32 = 1;
/// Owner codes.
const ON_CPU_LIST: u8 = 0;
const TO_SLAB: u8 = 250;
const FLUSHED: u8 = 251;
const UNUSED: u8 = 252;

#[derive(Clone, Copy, Hash, PartialEq, Eq, Debug)]
enum Kind {
    Alloc,
    Free,
    Flush,
    FlushKernelStyle,
    /// rseq `slab_alloc_node` on X: tid and freelist read outside; in the section: compare
    /// tid, load head, load its next, store tid + STEP, commit head.
    RAlloc,
    /// rseq `do_slab_free` of `FREE_OBJ` on X: tid read outside; in the section: compare tid,
    /// load head, link the object, store tid + STEP, commit head.
    RFree,
    /// rseq-mode `flush_slab` on X: `begin_update` sets BUSY as an rseq commit.
    LocalFlush,
    /// rseq-mode `flush_slab` from another CPU: cmpxchg BUSY, fence X, re-check, flush.
    RemoteFlush,
    /// The same without the membarrier fence (must fail).
    RemoteFlushNoFence,
    /// The same without re-checking the mark after the fence (must fail).
    RemoteFlushNoRecheck,
}

impl Kind {
    fn on_cpu_x(self) -> bool {
        matches!(self, Kind::RAlloc | Kind::RFree | Kind::LocalFlush)
    }
}

/// Whether `t` is inside a restartable critical section.
fn in_cs(t: &Th) -> bool {
    !t.done
        && match t.kind {
            Kind::RAlloc => (2..=6).contains(&t.pc),
            Kind::RFree => (1..=5).contains(&t.pc),
            Kind::LocalFlush => (1..=2).contains(&t.pc),
            _ => false,
        }
}

/// The kernel moves `t` to its abort handler; the retry loop starts again (and gives up to
/// the slow path after a few tries, to keep the model finite).
fn abort(w: &mut World, i: usize) {
    let t = &mut w.th[i];
    t.pc = 0;
    t.retries += 1;
    if t.retries > 2 {
        t.done = true;
        if t.kind == Kind::RFree {
            w.owner[FREE_OBJ as usize] = TO_SLAB;
        }
    }
}

/// A step of `RAlloc`/`RFree`/`LocalFlush`/`RemoteFlush*`.
fn step_rseq(w: &mut World, i: usize, t: &mut Th) -> Result<(), String> {
    let id = i as u8 + 1;
    let mismatch = |t: &mut Th| {
        t.pc = 0;
        t.retries += 1;
        t.retries > 2
    };
    match t.kind {
        Kind::RAlloc => match t.pc {
            0 => {
                t.tid = w.tid;
                t.pc = 1;
            }
            1 => {
                if t.tid & BUSY != 0 || w.fl == 0 {
                    t.done = true; // slow path
                } else {
                    t.pc = 2;
                }
            }
            2 => {
                if w.tid == t.tid {
                    t.pc = 3;
                } else {
                    t.done = mismatch(t);
                }
            }
            3 => {
                t.fl = w.fl;
                if t.fl == 0 {
                    t.done = mismatch(t);
                } else {
                    t.pc = 4;
                }
            }
            4 => {
                t.nx = w.next[t.fl as usize];
                t.pc = 5;
            }
            5 => {
                w.tid = t.tid + STEP;
                t.pc = 6;
            }
            _ => {
                w.fl = t.nx;
                let o = &mut w.owner[t.fl as usize];
                if *o != ON_CPU_LIST {
                    return Err(format!("object {} allocated while owned by {}", t.fl, *o));
                }
                *o = id;
                t.done = true;
            }
        },
        Kind::RFree => match t.pc {
            0 => {
                t.tid = w.tid;
                if t.tid & BUSY != 0 {
                    w.owner[FREE_OBJ as usize] = TO_SLAB; // __slab_free
                    t.done = true;
                } else {
                    t.pc = 1;
                }
            }
            1 => {
                if w.tid == t.tid {
                    t.pc = 2;
                } else if mismatch(t) {
                    w.owner[FREE_OBJ as usize] = TO_SLAB;
                    t.done = true;
                }
            }
            2 => {
                t.fl = w.fl;
                t.pc = 3;
            }
            3 => {
                w.next[FREE_OBJ as usize] = t.fl;
                t.pc = 4;
            }
            4 => {
                w.tid = t.tid + STEP;
                t.pc = 5;
            }
            _ => {
                w.fl = FREE_OBJ;
                w.owner[FREE_OBJ as usize] = ON_CPU_LIST;
                t.done = true;
            }
        },
        Kind::LocalFlush => match t.pc {
            0 => {
                t.tid = w.tid;
                t.pc = 1;
            }
            1 => {
                t.pc = if w.tid == t.tid { 2 } else { 0 };
            }
            2 => {
                w.tid = t.tid | BUSY;
                t.pc = 3;
            }
            3 => {
                t.fl = w.fl;
                t.pc = 4;
            }
            4 => {
                walk_flush(w, t.fl)?;
                t.pc = 5;
            }
            _ => end_update(w, t)?,
        },
        Kind::RemoteFlush | Kind::RemoteFlushNoFence | Kind::RemoteFlushNoRecheck => match t.pc {
            0 => {
                t.tid = w.tid;
                t.pc = 1;
            }
            1 => {
                t.fl = w.fl;
                t.pc = 2;
            }
            2 => {
                if (w.fl, w.tid) == (t.fl, t.tid) && t.tid & BUSY == 0 {
                    w.tid |= BUSY;
                    t.pc = 3;
                } else {
                    t.pc = 0;
                }
            }
            3 => {
                if t.kind != Kind::RemoteFlushNoFence {
                    for j in 0..w.th.len() {
                        if in_cs(&w.th[j]) {
                            abort(w, j);
                        }
                    }
                }
                t.pc = 4;
            }
            4 => {
                if t.kind == Kind::RemoteFlushNoRecheck || w.tid == t.tid | BUSY {
                    t.fl = w.fl;
                    t.pc = 5;
                } else {
                    t.pc = 0;
                }
            }
            5 => {
                walk_flush(w, t.fl)?;
                t.pc = 6;
            }
            _ => end_update(w, t)?,
        },
        _ => unreachable!("not an rseq-model thread"),
    }
    Ok(())
}

/// `end_update`: nobody may have changed the busy pair.
fn end_update(w: &mut World, t: &mut Th) -> Result<(), String> {
    if (w.fl, w.tid) != (t.fl, t.tid | BUSY) {
        return Err("CPU freelist changed while busy".into());
    }
    w.fl = 0;
    w.tid = t.tid + STEP;
    t.done = true;
    Ok(())
}

#[derive(Clone, Copy, Hash, PartialEq, Eq, Debug)]
struct Th {
    kind: Kind,
    pc: u8,
    tid: u32,
    fl: u8,
    nx: u8,
    retries: u8,
    done: bool,
}

#[derive(Clone, Hash, PartialEq, Eq, Debug)]
struct World {
    fl: u8,
    tid: u32,
    next: [u8; NOBJ + 1],
    owner: [u8; NOBJ + 1],
    th: Vec<Th>,
}

/// The object the free thread owns.
const FREE_OBJ: u8 = 3;

fn step(w: &mut World, i: usize) -> Result<(), String> {
    let id = i as u8 + 1;
    if w.th[i].kind.on_cpu_x() {
        // Thread i runs on X: any other thread of X inside its section was preempted.
        for j in 0..w.th.len() {
            if j != i && w.th[j].kind.on_cpu_x() && in_cs(&w.th[j]) {
                abort(w, j);
            }
        }
    }
    let mut t = w.th[i];
    match t.kind {
        Kind::Alloc => match t.pc {
            0 => {
                t.tid = w.tid;
                t.pc = 1;
            }
            1 => {
                t.fl = w.fl;
                if t.tid & BUSY != 0 || t.fl == 0 {
                    t.done = true; // slow path (takes the local lock; not modelled)
                } else {
                    t.pc = 2;
                }
            }
            2 => {
                t.nx = w.next[t.fl as usize];
                t.pc = 3;
            }
            _ => {
                if (w.fl, w.tid) == (t.fl, t.tid) {
                    w.fl = t.nx;
                    w.tid += STEP;
                    let o = &mut w.owner[t.fl as usize];
                    if *o != ON_CPU_LIST {
                        return Err(format!("object {} allocated while owned by {}", t.fl, *o));
                    }
                    *o = id;
                    t.done = true;
                } else {
                    t.retries += 1;
                    t.pc = 0;
                    t.done = t.retries > 2;
                }
            }
        },
        Kind::Free => match t.pc {
            0 => {
                t.tid = w.tid;
                if t.tid & BUSY != 0 {
                    w.owner[FREE_OBJ as usize] = TO_SLAB; // __slab_free
                    t.done = true;
                } else {
                    t.pc = 1;
                }
            }
            1 => {
                t.fl = w.fl;
                t.pc = 2;
            }
            2 => {
                w.next[FREE_OBJ as usize] = t.fl;
                t.pc = 3;
            }
            _ => {
                if (w.fl, w.tid) == (t.fl, t.tid) {
                    w.fl = FREE_OBJ;
                    w.tid += STEP;
                    w.owner[FREE_OBJ as usize] = ON_CPU_LIST;
                    t.done = true;
                } else {
                    t.retries += 1;
                    t.pc = 0;
                    if t.retries > 2 {
                        w.owner[FREE_OBJ as usize] = TO_SLAB;
                        t.done = true;
                    }
                }
            }
        },
        Kind::Flush => match t.pc {
            0 => {
                t.tid = w.tid;
                t.pc = 1;
            }
            1 => {
                t.fl = w.fl;
                t.pc = 2;
            }
            2 => {
                // begin_update: cmpxchg (fl, tid) -> (fl, tid | BUSY)
                if (w.fl, w.tid) == (t.fl, t.tid) {
                    w.tid |= BUSY;
                    t.pc = 3;
                } else {
                    t.pc = 0;
                }
            }
            3 => {
                walk_flush(w, t.fl)?;
                t.pc = 4;
            }
            _ => {
                // end_update must succeed: nobody may have changed the busy pair.
                if (w.fl, w.tid) != (t.fl, t.tid | BUSY) {
                    return Err("CPU freelist changed while busy".into());
                }
                w.fl = 0;
                w.tid = t.tid + STEP;
                t.done = true;
            }
        },
        Kind::FlushKernelStyle => match t.pc {
            0 => {
                t.fl = w.fl;
                t.pc = 1;
            }
            1 => {
                walk_flush(w, t.fl)?;
                t.pc = 2;
            }
            2 => {
                w.fl = 0;
                t.pc = 3;
            }
            _ => {
                w.tid += STEP;
                t.done = true;
            }
        },
        _ => step_rseq(w, i, &mut t)?,
    }
    w.th[i] = t;
    Ok(())
}

/// The detached CPU freelist goes to deactivate_slab: every object on it must be free.
fn walk_flush(w: &mut World, head: u8) -> Result<(), String> {
    let mut o = head;
    let mut n = 0;
    while o != 0 {
        if w.owner[o as usize] != ON_CPU_LIST {
            return Err(format!(
                "flushed object {o} is owned by {}",
                w.owner[o as usize]
            ));
        }
        w.owner[o as usize] = FLUSHED;
        o = w.next[o as usize];
        n += 1;
        if n > NOBJ {
            return Err("cycle on the CPU freelist".into());
        }
    }
    Ok(())
}

fn final_check(w: &World) -> Result<(), String> {
    // Objects on the CPU freelist are exactly those marked ON_CPU_LIST.
    let mut on = [false; NOBJ + 1];
    let mut o = w.fl;
    while o != 0 {
        if on[o as usize] {
            return Err("cycle".into());
        }
        on[o as usize] = true;
        o = w.next[o as usize];
    }
    for (obj, &is_on) in on.iter().enumerate().skip(1) {
        if is_on != (w.owner[obj] == ON_CPU_LIST) {
            return Err(format!(
                "object {obj}: on list {is_on}, owner {}",
                w.owner[obj]
            ));
        }
    }
    Ok(())
}

/// The model for the shared explorer: one transition per runnable thread's step, and a
/// signal's abort of every thread inside a critical section.
struct FastPathModel;

#[derive(Clone)]
struct Label {
    th: usize,
    kind: Kind,
    pc: u8,
    signal: bool,
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.signal { ":aborted" } else { "" };
        write!(f, "t{}:{:?}:{}{what}", self.th, self.kind, self.pc)
    }
}

impl Model for FastPathModel {
    type State = World;
    type Label = Label;

    fn successors(&self, w: &World, out: &mut Vec<Transition<World, Label>>) {
        for i in 0..w.th.len() {
            let t = w.th[i];
            if t.done {
                continue;
            }
            let label = |signal| Label {
                th: i,
                kind: t.kind,
                pc: t.pc,
                signal,
            };
            let mut next = w.clone();
            let result = step(&mut next, i).map_err(|e| format!("{e} (threads {:?})", w.th));
            out.push(Transition {
                label: label(false),
                next,
                result,
            });
            if in_cs(&t) {
                // A signal (or preemption by another process) aborts the section.
                let mut next = w.clone();
                abort(&mut next, i);
                out.push(Transition {
                    label: label(true),
                    next,
                    result: Ok(()),
                });
            }
        }
    }

    fn terminal(&self, w: &World) -> Result<(), String> {
        final_check(w)
    }
}

/// Runs the model with the given threads; the free thread (if any) owns object 3. Returns the
/// distinct end states, or the violation with its schedule.
fn run(kinds: &[Kind]) -> Result<usize, String> {
    let th = kinds
        .iter()
        .map(|&kind| Th {
            kind,
            pc: 0,
            tid: 0,
            fl: 0,
            nx: 0,
            retries: 0,
            done: false,
        })
        .collect::<Vec<_>>();
    let mut owner = [ON_CPU_LIST, ON_CPU_LIST, ON_CPU_LIST, UNUSED];
    if let Some(i) = kinds.iter().position(|&k| k == Kind::Free) {
        owner[FREE_OBJ as usize] = i as u8 + 1;
    }
    let w = World {
        fl: 1,
        tid: 0,
        next: [0, 2, 0, 0],
        owner,
        th,
    };
    explore(&FastPathModel, w)
        .map(|s| s.terminal)
        .map_err(|v| v.to_string())
}

#[test]
fn fast_path_against_fast_path_and_remote_free() {
    use Kind::{Alloc, Free};
    assert!(run(&[Alloc, Alloc, Free]).unwrap() > 10);
    assert!(run(&[Alloc, Free]).unwrap() > 1);
}

#[test]
fn fast_path_against_busy_slow_path() {
    use Kind::{Alloc, Flush, Free};
    assert!(run(&[Alloc, Alloc, Flush]).unwrap() > 10);
    assert!(run(&[Alloc, Free, Flush]).unwrap() > 10);
}

#[test]
fn kernel_style_slow_path_is_caught_in_user_space() {
    use Kind::{Alloc, FlushKernelStyle};
    let r = run(&[Alloc, FlushKernelStyle]);
    assert!(r.is_err(), "the model must find the race: {r:?}");
}

#[test]
fn rseq_fast_paths_against_each_other() {
    use Kind::{RAlloc, RFree};
    assert!(run(&[RAlloc, RAlloc, RFree]).unwrap() > 10);
}

#[test]
fn rseq_fast_paths_against_local_and_remote_slow_paths() {
    use Kind::{LocalFlush, RAlloc, RFree, RemoteFlush};
    assert!(run(&[RAlloc, RFree, LocalFlush]).unwrap() > 10);
    assert!(run(&[RAlloc, RAlloc, RemoteFlush]).unwrap() > 10);
    assert!(run(&[RAlloc, RFree, RemoteFlush]).unwrap() > 10);
}

#[test]
fn rseq_remote_slow_path_needs_fence_and_recheck() {
    use Kind::{RAlloc, RFree, RemoteFlushNoFence, RemoteFlushNoRecheck};
    let r = run(&[RAlloc, RFree, RemoteFlushNoFence]);
    assert!(r.is_err(), "no fence must race: {r:?}");
    eprintln!("no fence: {}", r.unwrap_err());
    let r = run(&[RAlloc, RAlloc, RemoteFlushNoRecheck]);
    assert!(r.is_err(), "no re-check must race: {r:?}");
    eprintln!("no re-check: {}", r.unwrap_err());
}
