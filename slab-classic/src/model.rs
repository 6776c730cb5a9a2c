//! An exhaustive interleaving model of the rseq array-cache protocol of `fastpath.rs`, in the
//! style of `slub/src/model.rs`: plain Rust, no `loom` (it cannot interrupt a restartable
//! sequence). Every schedule of two to four threads' atomic steps on one CPU slot is explored
//! by the shared explorer (`common::testing::explore`: breadth-first, with visited-state
//! pruning); an object-ownership invariant is checked in every reachable state, and a
//! violation comes back with the shortest schedule that reaches it.
//!
//! # What is modelled
//! The slot of CPU X — `{lock, busy, ac}` — two `array_cache`s `{avail, limit, touched,
//! entry[2]}` (`OLD`, the slot's array at the start, and `NEW`, the one `RemoteTune` allocated
//! before taking the lock), the node's lists ("slab": a set of free objects; each slab
//! operation is `list_lock`ed, so one step per object) and four objects. `limit` is 2 and
//! `batchcount` 1 in both arrays. The threads:
//! - `Pop` on X: `cpu_cache_alloc` — `array_pop`, retried while aborted; any other failure
//!   (busy, empty) goes to `cache_alloc_locked`: `slot_lock` (own-CPU `mark_busy`),
//!   `____cache_alloc` (a hit, or `cache_alloc_refill` when the array is empty), the `SlotGuard`'s drop.
//! - `Push` on X: `cpu_cache_free` of an object it owns (4, or 3 for a second `Push`) —
//!   `array_push`, retried while aborted; busy, full or `DoubleFree` go to `cache_free_locked`:
//!   `slot_lock`, `__cache_free` (`cache_flusharray` first when the array is full),
//!   the `SlotGuard`'s drop.
//! - `LocalRefill` on X: `cache_alloc_locked` itself (the own-CPU mark is an rseq commit
//!   of `busy = 1`): a hit, or `cache_alloc_refill` whenever it finds the array empty.
//! - `RemoteDrain` on another CPU: `cache_reap`'s `slot_lock(slot, X)` (`busy = 1`, then
//!   `fence_cpu(X)`), `drain_array(force = false)`, the `SlotGuard`'s drop.
//! - `RemoteTune` on another CPU: `do_tune_cpucache` for slot X — `slot_lock` (store + fence),
//!   `slot.ac` swapped from `OLD` to `NEW`, the `SlotGuard`'s drop, then `free_block` of the old array's
//!   entries and `kfree` of it: `OLD` is *retired*, and any later access to it is a
//!   use-after-free.
//!
//! Each thread set is explored from every initial fill of the slot's array (0, 1 or 2 entries:
//! objects 1 and 2), the objects no one holds being on the slab.
//!
//! # Which crate code each step mirrors
//! A step is one load or store of shared memory (or one `list_lock`ed slab operation); compares
//! and arithmetic on registers are folded into the step that loads the value.
//!
//! | thread: steps | crate code |
//! |---|---|
//! | `Pop`: `CheckBusy` `LoadAc` `LoadAvail` `LoadTop` `Speculate` `Commit` | `RseqThread::array_pop` (`common/src/rseq/array.rs`): `cmp [area+4], cpu` and `cmp [busy], 0`; `mov t, [arr]`; `mov n, [t]`, `jz` (`Fail::Empty`); `mov obj, [entry + (n-1)*8]`; `mov [t+touched], 1` (speculative); `mov [t], n-1` (the commit) |
//! | `Push`: the same names | `array_push`: the cpu and busy compares; `mov t, [arr]`; `mov n, [t]`, `cmp n, [t+4]`, `jae` (full: `Fail::Mismatch`); `cmp [e+(n-1)*8], obj`, `je` (`Fail::DoubleFree`); `mov [e+n*8], obj` (speculative); `mov [t], n+1` (the commit) |
//! | abort → `CheckBusy`; failure → `Lock` | the loops of `cpu_cache_alloc` / `cpu_cache_free`: `Aborted` retries, any other failure breaks to `cache_alloc_locked` / `cache_free_locked` |
//! | `Lock` | `slot_lock`: `(*slot).lock.lock()` (a thread waits while another holds it) |
//! | `MarkLoad` `MarkCommit` | `mark_busy` on the slot's CPU: `cmpeq_store(cpu, busy, 0, 1)` (its compare; its commit), retried while aborted |
//! | `MarkStore` `Fence` | `mark_busy` from another CPU: `busy.store(1, SeqCst)`; `fence_cpu(cpu)` |
//! | `LoadAcLocked` `LoadAvailLocked` | `(*slot).ac`, `(*ac).avail` in `____cache_alloc`, `__cache_free`, `drain_array` |
//! | `RefillGet` `RefillStore` `RefillAvail` | `cache_alloc_refill`'s loop: `slab_get_obj`; `entry[avail] = obj`; `avail += 1` |
//! | `HitTouch` `HitAvail` `HitTake` | `____cache_alloc`'s hit, and `cache_alloc_refill`'s tail: `touched = 1`; `avail -= 1`; `entry[avail]` |
//! | `FreeTop` `FreeStore` `FreeAvail` | `__cache_free`: the top-entry double-free check and `avail < limit` (else `cache_flusharray`); `entry[avail] = objp`; `avail += 1` |
//! | `BlockEntry` `ShiftAvail` `MoveLoad` `MoveStore` | `free_block` of the oldest entries, one object per step; `ac_shift_down`: `avail -= n`, then the `copy` down, a load and a store per entry (in `cache_flusharray` and `drain_array_locked`) |
//! | `DrainTouched` `DrainClear` | `drain_array(force = false)`: a touched array is only un-touched, else `drain_array_count` entries are freed |
//! | `SwapLoad` `SwapStore` | `do_tune_cpucache`: `old = (*slot).ac`; `(*slot).ac = new` |
//! | `Unmark` `Unlock` | the `SlotGuard`'s drop: `busy.store(0, Release)`; `lock.unlock()` |
//! | `OldAvail` `OldEntry` `Retire` | `do_tune_cpucache` after the unlock: `free_block(ccold, (*ccold).avail)`; `kfree(ccold)` |
//!
//! Simplifications: an array's `limit` never changes, so it is read with `avail`; a locked path
//! keeps `avail` in a register once loaded, as compiled code may; the slab hands out its
//! lowest-numbered free object; the shared and alien arrays are left out (they are under
//! `list_lock`/alien locks, never touched by a sequence); memory is sequentially consistent
//! (the orderings the protocol relies on — `busy` stored SeqCst before the fence and released
//! after the slow path's stores, x86's load-load order in a sequence — are argued in
//! `fastpath.rs`, not checked here).
//!
//! # rseq semantics assumed
//! A thread is in its critical section from the step after its first (the cpu and busy
//! compares) through its commit. Whenever a thread on X takes a step, every *other* thread on X
//! in its critical section is aborted (it can only have lost the CPU by being preempted); any
//! thread in a critical section may also be aborted spontaneously (a signal, or preemption by
//! another process); the `Fence` step aborts every thread on X in its critical section
//! (membarrier `PRIVATE_EXPEDITED_RSEQ` on X). An aborted sequence restarts at its first step
//! with its registers cleared, without a bound, as the crate's retry loops do (slub's model
//! bounds the retries; here the visited set alone keeps the search finite: a restart clears
//! the registers, so there are finitely many states). Speculative stores (`touched = 1`, `entry[avail] = obj`)
//! stay in memory when the sequence is aborted. A thread that migrates is aborted and then
//! runs on another CPU's slot (not modelled: its cpu compare fails there) or takes the locked
//! path from another CPU, which is what the remote threads do; the remote threads' steps run in
//! parallel with X's and abort nothing but through the fence.
//!
//! # The invariant, two ways
//! Each object must be in exactly one place: a thread's hands, the slab, or the slot's live
//! array (`entry[0..avail]` of the array `slot.ac` names). A slow path's plain stores pass
//! through states where the real array is half-updated, so every run is checked twice:
//! - `Check::Claim` (the claim `fastpath.rs` proves: while a slow path holds the mark, no
//!   sequence commits on the array), in every state. From the moment the protocol says the array
//!   is the slow path's (its own-CPU `MarkCommit`, or its `Fence`) until its `Unmark`, the live
//!   array is counted as that thread's *ghost* view, snapshotted at the claim and changed as
//!   the slow path means to change it, and `Unmark` requires the real array to equal the ghost.
//!   `do_tune_cpucache`'s swapped-out objects are in its ghost `transit` until `free_block`.
//!   A sequence that commits on a claimed array is caught at its commit (a popped object is
//!   then in two places, a pushed one in none), one that only stores speculatively when the
//!   slow path reads the damage or at `Unmark`.
//! - `Check::Damage` (only real corruption), in every quiescent state — no slot lock held, no
//!   `free_block` of the swapped-out array half done — counting the real places, the
//!   swapped-out array until it is freed included.
//!
//! In both, any access to a retired array is a use-after-free — stricter than "in a step that
//! can commit": an aborted sequence that read freed memory could have faulted on what it read.
//! When every thread is done, the lock is free, `busy` is 0, nothing is in transit and no
//! allocation got two objects.
//!
//! # Negative controls
//! Each removes one element of the protocol; both checks must find a violation, and the one
//! `Check::Damage` finds must be an object lost or duplicated, or a use-after-free:
//! - `Flaw::NoFence`: a remote `mark_busy` that stores `busy = 1` without `fence_cpu`. A
//!   sequence that compared `busy == 0` before the store is still running: a push's speculative
//!   `entry[avail] = obj` lands in the slot that `drain_array`'s `ac_shift_down` copies from
//!   (one object lost, the pushed one in two places), or a pop reads the array that
//!   `do_tune_cpucache` swapped out and freed.
//! - `Flaw::NoBusyCheck`: sequences that skip the `busy` compare run inside a slow path — a
//!   push's speculative store between `cache_alloc_refill`'s `entry[avail] = obj` and its
//!   `avail += 1` makes the refill hand out the pusher's object (one object lost, one in two
//!   hands); after a remote fence, the same as without the fence.
//! - `Flaw::AcOutsideSection`: `slot.ac` loaded before the sequence starts, with
//!   `do_tune_cpucache`: the pop commits on the swapped-out array, or reads it after its
//!   `kfree`.
//! - `Flaw::PlainRefill`: `cache_alloc_refill` under the slot lock but without the busy mark,
//!   as the kernel's code (safe there under `local_irq_save`) would be ported: the same race
//!   as the sequence that skips the busy compare, with the lock taken.
//!
//! Run `cargo test -p slab-classic --lib model -- --nocapture` to see the state counts and the
//! counterexamples.

use common::testing::{
    explore, Counterexample as Violation, ExploreStats as Stats, Model, Transition,
};
use std::time::Instant;

/// Objects are `1..=NOBJ`; 0 is an entry never written.
const NOBJ: u8 = 4;
/// `limit` of both arrays.
const LIMIT: u8 = 2;
/// `batchcount` of both arrays (`cache_alloc_refill` moves one, `cache_flusharray` frees one).
const BATCHCOUNT: u8 = 1;
/// The slot's array at the start.
const OLD: u8 = 0;
/// The array `RemoteTune` swaps in (allocated empty before it takes the lock).
const NEW: u8 = 1;
/// Threads per run.
const MAXTH: usize = 4;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    /// `cpu_cache_alloc` on X: `array_pop`, else `cache_alloc_locked`.
    Pop,
    /// `cpu_cache_free` on X of the object it owns (`Th::mine`): `array_push`, else
    /// `cache_free_locked`.
    Push,
    /// `cache_alloc_locked` on X: own-CPU mark, a hit or `cache_alloc_refill`.
    LocalRefill,
    /// `cache_reap`'s `drain_array` of slot X from another CPU (store + fence).
    RemoteDrain,
    /// `do_tune_cpucache` of slot X from another CPU (store + fence, swap, free the old array).
    RemoteTune,
}

impl Kind {
    fn on_x(self) -> bool {
        matches!(self, Kind::Pop | Kind::Push | Kind::LocalRefill)
    }
}

/// The element of the protocol a negative control removes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flaw {
    /// The protocol as `fastpath.rs` implements it.
    None,
    /// Remote `mark_busy` without `fence_cpu`.
    NoFence,
    /// `array_pop`/`array_push` without the `busy` compare.
    NoBusyCheck,
    /// `slot.ac` loaded before the sequence (the pointer reused by every retry of it).
    AcOutsideSection,
    /// `LocalRefill` takes the slot lock but sets no busy mark.
    PlainRefill,
}

/// How a state is judged.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Check {
    /// The protocol's claim, in every state: from its mark (own-CPU commit, or the fence)
    /// until the `SlotGuard`'s drop, a slow path has the array to itself — its ghost view counts, and
    /// the real array must equal it at `Unmark`.
    Claim,
    /// Only real damage: the real places are counted in every quiescent state (no slot lock
    /// held, no `free_block` of a retired array half done), use-after-free everywhere.
    Damage,
}

#[derive(Clone, Copy)]
struct Ctx {
    flaw: Flaw,
    check: Check,
}

/// Where a thread is: the step it takes next.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Pc {
    /// Only with `Flaw::AcOutsideSection`: `slot.ac` loaded outside the sequence.
    Start,
    /// First step of `array_pop`/`array_push`: cpu compare, `busy == 0` compare.
    CheckBusy,
    LoadAc,
    LoadAvail,
    LoadTop,
    Speculate,
    Commit,
    Lock,
    MarkLoad,
    MarkCommit,
    MarkStore,
    Fence,
    LoadAcLocked,
    LoadAvailLocked,
    RefillGet,
    RefillStore,
    RefillAvail,
    HitTouch,
    HitAvail,
    HitTake,
    FreeTop,
    FreeStore,
    FreeAvail,
    DrainTouched,
    DrainClear,
    BlockEntry,
    ShiftAvail,
    MoveLoad,
    MoveStore,
    SwapLoad,
    SwapStore,
    Unmark,
    Unlock,
    OldAvail,
    OldEntry,
    Retire,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Arr {
    avail: u8,
    limit: u8,
    touched: u8,
    /// `kfree`d by `do_tune_cpucache`.
    retired: bool,
    entry: [u8; LIMIT as usize],
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Th {
    kind: Kind,
    pc: Pc,
    /// Registers: the array pointer, `avail`, an object, a loop index, a count.
    ac: u8,
    n: u8,
    obj: u8,
    i: u8,
    cnt: u8,
    /// The object a `Push` thread frees (0 for the others).
    mine: u8,
    /// Objects the thread owns (a bit per object).
    hand: u8,
    /// Ghost: objects it moves between places (`do_tune_cpucache`'s old array).
    transit: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct World {
    /// Slot lock holder (thread index + 1), 0 when free.
    lock: u8,
    busy: u8,
    /// `slot.ac`: which array.
    ac: u8,
    arrays: [Arr; 2],
    /// Free objects on the node's slabs (a bit per object).
    slab: u8,
    /// Ghost: the thread (index + 1) that has claimed the live array, 0 if none, and its view.
    owner: u8,
    ghost: [u8; LIMIT as usize],
    ghost_len: u8,
    th: [Th; MAXTH],
}

fn bit(o: u8) -> u8 {
    1 << o
}

fn is_obj(o: u8) -> bool {
    (1..=NOBJ).contains(&o)
}

fn arr(w: &mut World, a: u8) -> Result<&mut Arr, String> {
    let r = &mut w.arrays[a as usize];
    if r.retired {
        return Err(format!(
            "use-after-free: array {} accessed after do_tune_cpucache freed it",
            arr_name(a)
        ));
    }
    Ok(r)
}

fn arr_name(a: u8) -> &'static str {
    if a == OLD {
        "OLD"
    } else {
        "NEW"
    }
}

fn idx(n: u8) -> Result<usize, String> {
    if n < LIMIT {
        Ok(n as usize)
    } else {
        Err(format!("entry index {n} out of bounds (limit {LIMIT})"))
    }
}

/// Puts object `o` into the set `set` (a thread's hands, the slab).
fn put(set: &mut u8, o: u8, what: &str) -> Result<(), String> {
    if !is_obj(o) {
        return Err(format!("{what} receives entry value {o}, not an object"));
    }
    if *set & bit(o) != 0 {
        return Err(format!("{what} receives object {o} twice"));
    }
    *set |= bit(o);
    Ok(())
}

/// The real contents of the slot's live array.
fn real_live(w: &World) -> Result<&[u8], String> {
    let a = &w.arrays[w.ac as usize];
    if a.retired {
        return Err("the slot's live array is retired".into());
    }
    if a.avail > a.limit {
        return Err(format!("avail {} above limit", a.avail));
    }
    Ok(&a.entry[..a.avail as usize])
}

/// The live array's contents as the invariant counts them: the claiming slow path's ghost
/// view, else the real array.
fn live(w: &World) -> Result<&[u8], String> {
    if w.owner != 0 {
        Ok(&w.ghost[..w.ghost_len as usize])
    } else {
        real_live(w)
    }
}

/// The protocol says the live array is now `i`'s alone: snapshot it as the ghost view.
fn claim(w: &mut World, i: usize, cx: Ctx) -> Result<(), String> {
    if cx.check == Check::Damage {
        return Ok(());
    }
    let mut ghost = [0; LIMIT as usize];
    let real = real_live(w)?;
    ghost[..real.len()].copy_from_slice(real);
    w.ghost_len = real.len() as u8;
    w.ghost = ghost;
    w.owner = i as u8 + 1;
    Ok(())
}

/// the `SlotGuard`'s drop: the real array must be what the slow path made of it.
fn unclaim(w: &mut World) -> Result<(), String> {
    if w.owner == 0 {
        return Ok(());
    }
    let ghost = &w.ghost[..w.ghost_len as usize];
    let real = real_live(w)?;
    if real != ghost {
        return Err(format!(
            "the array changed under the busy mark: it holds {real:?}, the slow path made {ghost:?}"
        ));
    }
    w.owner = 0;
    Ok(())
}

fn ghost_push(w: &mut World, o: u8) -> Result<(), String> {
    if w.owner == 0 {
        return Ok(());
    }
    let n = w.ghost_len;
    w.ghost[idx(n)?] = o;
    w.ghost_len = n + 1;
    Ok(())
}

fn ghost_pop(w: &mut World) -> Result<(), String> {
    if w.owner == 0 {
        return Ok(());
    }
    if w.ghost_len == 0 {
        return Err("the slow path takes from an array it emptied".into());
    }
    w.ghost_len -= 1;
    Ok(())
}

fn ghost_remove(w: &mut World, o: u8) {
    let n = w.ghost_len as usize;
    if let Some(k) = w.ghost[..n].iter().position(|&x| x == o) {
        w.ghost.copy_within(k + 1..n, k);
        w.ghost_len -= 1;
    }
}

/// Whether `t` is inside a critical section (past its first step, before its commit).
fn in_cs(t: &Th) -> bool {
    matches!(
        t.pc,
        Pc::LoadAc | Pc::LoadAvail | Pc::LoadTop | Pc::Speculate | Pc::Commit | Pc::MarkCommit
    )
}

fn first_pc(kind: Kind, flaw: Flaw) -> Pc {
    match kind {
        Kind::Pop | Kind::Push if flaw == Flaw::AcOutsideSection => Pc::Start,
        Kind::Pop | Kind::Push => Pc::CheckBusy,
        _ => Pc::Lock,
    }
}

fn clear_regs(t: &mut Th) {
    t.ac = 0;
    t.n = 0;
    t.obj = 0;
    t.i = 0;
    t.cnt = 0;
}

/// The kernel moves thread `j` to its abort handler: the retry loop starts again.
fn abort(w: &mut World, j: usize, flaw: Flaw) {
    let t = &mut w.th[j];
    if t.pc == Pc::MarkCommit {
        t.pc = Pc::MarkLoad;
    } else {
        t.pc = first_pc(t.kind, flaw);
        // With the pointer loaded outside the sequence, the retry reloads it (Start).
        clear_regs(t);
    }
}

/// A sequence failed for another reason than an abort: the locked path.
fn to_locked(t: &mut Th) -> Pc {
    clear_regs(t);
    Pc::Lock
}

fn enabled(w: &World, i: usize) -> bool {
    let t = &w.th[i];
    t.pc != Pc::Done && (t.pc != Pc::Lock || w.lock == 0)
}

/// `drain_array_count(avail, limit, false)`.
fn drain_count(avail: u8, limit: u8) -> u8 {
    let mut tofree = (limit + 4) / 5;
    if tofree > avail {
        tofree = avail.div_ceil(2);
    }
    tofree
}

/// Thread `i` takes its next step.
fn step(w: &mut World, i: usize, cx: Ctx) -> Result<(), String> {
    let flaw = cx.flaw;
    if w.th[i].kind.on_x() {
        // Thread i runs on X: any other thread of X inside its section was preempted.
        for j in 0..MAXTH {
            if j != i && w.th[j].kind.on_x() && in_cs(&w.th[j]) {
                abort(w, j, flaw);
            }
        }
    }
    let mut t = w.th[i];
    let plain = flaw == Flaw::PlainRefill && t.kind == Kind::LocalRefill;
    t.pc = match t.pc {
        Pc::Start => {
            t.ac = w.ac;
            Pc::CheckBusy
        }
        Pc::CheckBusy => {
            if flaw != Flaw::NoBusyCheck && w.busy != 0 {
                to_locked(&mut t) // Fail::Mismatch
            } else if flaw == Flaw::AcOutsideSection {
                Pc::LoadAvail
            } else {
                Pc::LoadAc
            }
        }
        Pc::LoadAc => {
            t.ac = w.ac;
            Pc::LoadAvail
        }
        Pc::LoadAvail => {
            let a = arr(w, t.ac)?;
            t.n = a.avail;
            match t.kind {
                Kind::Pop if t.n == 0 => to_locked(&mut t), // Fail::Empty
                Kind::Push if t.n >= a.limit => to_locked(&mut t), // full: Fail::Mismatch
                Kind::Push if t.n == 0 => Pc::Speculate,
                _ => Pc::LoadTop,
            }
        }
        Pc::LoadTop => {
            let top = arr(w, t.ac)?.entry[idx(t.n - 1)?];
            if t.kind == Kind::Pop {
                t.obj = top;
                Pc::Speculate
            } else if top == t.mine {
                to_locked(&mut t) // Fail::DoubleFree
            } else {
                Pc::Speculate
            }
        }
        Pc::Speculate => {
            let a = arr(w, t.ac)?;
            if t.kind == Kind::Pop {
                a.touched = 1;
            } else {
                a.entry[idx(t.n)?] = t.mine;
            }
            Pc::Commit
        }
        Pc::Commit => {
            let a = arr(w, t.ac)?;
            if t.kind == Kind::Pop {
                a.avail = t.n - 1;
                put(&mut t.hand, t.obj, "array_pop's caller")?;
            } else {
                a.avail = t.n + 1;
                t.hand &= !bit(t.mine);
            }
            Pc::Done
        }
        Pc::Lock => {
            w.lock = i as u8 + 1;
            if !t.kind.on_x() {
                Pc::MarkStore
            } else if plain {
                claim(w, i, cx)?;
                Pc::LoadAcLocked
            } else {
                Pc::MarkLoad
            }
        }
        Pc::MarkLoad | Pc::MarkStore if w.busy != 0 => {
            // mark_busy's debug_assert: only the lock holder writes busy.
            return Err("busy set while the slot lock was free".into());
        }
        Pc::MarkLoad => Pc::MarkCommit,
        Pc::MarkCommit => {
            w.busy = 1;
            claim(w, i, cx)?;
            Pc::LoadAcLocked
        }
        Pc::MarkStore => {
            w.busy = 1;
            Pc::Fence
        }
        Pc::Fence => {
            if flaw != Flaw::NoFence {
                for j in 0..MAXTH {
                    if w.th[j].kind.on_x() && in_cs(&w.th[j]) {
                        abort(w, j, flaw);
                    }
                }
            }
            claim(w, i, cx)?;
            if t.kind == Kind::RemoteTune {
                Pc::SwapLoad
            } else {
                Pc::LoadAcLocked
            }
        }
        Pc::LoadAcLocked => {
            t.ac = w.ac;
            Pc::LoadAvailLocked
        }
        Pc::LoadAvailLocked => {
            t.n = arr(w, t.ac)?.avail;
            match t.kind {
                Kind::Pop | Kind::LocalRefill if t.n > 0 => Pc::HitTouch,
                Kind::Pop | Kind::LocalRefill => {
                    t.cnt = BATCHCOUNT;
                    Pc::RefillGet
                }
                Kind::Push if t.n > 0 => Pc::FreeTop,
                Kind::Push => Pc::FreeStore,
                Kind::RemoteDrain if t.n == 0 => Pc::Unmark,
                Kind::RemoteDrain => Pc::DrainTouched,
                Kind::RemoteTune => unreachable!("do_tune_cpucache swaps"),
            }
        }
        Pc::RefillGet => {
            if t.cnt > 0 && w.slab != 0 {
                let o = w.slab.trailing_zeros() as u8;
                w.slab &= !bit(o);
                ghost_push(w, o)?;
                t.obj = o;
                Pc::RefillStore
            } else if t.n == 0 {
                Pc::Unmark // nothing anywhere: NULL
            } else {
                Pc::HitTouch
            }
        }
        Pc::RefillStore => {
            arr(w, t.ac)?.entry[idx(t.n)?] = t.obj;
            Pc::RefillAvail
        }
        Pc::RefillAvail => {
            arr(w, t.ac)?.avail = t.n + 1;
            t.n += 1;
            t.cnt -= 1;
            Pc::RefillGet
        }
        Pc::HitTouch => {
            arr(w, t.ac)?.touched = 1;
            Pc::HitAvail
        }
        Pc::HitAvail => {
            arr(w, t.ac)?.avail = t.n - 1;
            t.n -= 1;
            Pc::HitTake
        }
        Pc::HitTake => {
            let o = arr(w, t.ac)?.entry[idx(t.n)?];
            ghost_pop(w)?;
            put(&mut t.hand, o, "____cache_alloc's caller")?;
            Pc::Unmark
        }
        Pc::FreeTop => {
            let a = arr(w, t.ac)?;
            let top = a.entry[idx(t.n - 1)?];
            if top == t.mine {
                Pc::Unmark // refused as a double free: the object stays the caller's
            } else if t.n < a.limit {
                Pc::FreeStore
            } else {
                t.cnt = BATCHCOUNT.min(t.n);
                t.i = 0;
                Pc::BlockEntry
            }
        }
        Pc::FreeStore => {
            arr(w, t.ac)?.entry[idx(t.n)?] = t.mine;
            Pc::FreeAvail
        }
        Pc::FreeAvail => {
            arr(w, t.ac)?.avail = t.n + 1;
            t.hand &= !bit(t.mine);
            ghost_push(w, t.mine)?;
            Pc::Unmark
        }
        Pc::DrainTouched => {
            let a = arr(w, t.ac)?;
            if a.touched != 0 {
                Pc::DrainClear
            } else {
                t.cnt = drain_count(t.n, a.limit);
                t.i = 0;
                Pc::BlockEntry
            }
        }
        Pc::DrainClear => {
            arr(w, t.ac)?.touched = 0;
            Pc::Unmark
        }
        Pc::BlockEntry => {
            let o = arr(w, t.ac)?.entry[idx(t.i)?];
            ghost_remove(w, o);
            put(&mut w.slab, o, "free_block")?;
            t.i += 1;
            if t.i == t.cnt {
                Pc::ShiftAvail
            } else {
                Pc::BlockEntry
            }
        }
        Pc::ShiftAvail => {
            arr(w, t.ac)?.avail = t.n - t.cnt;
            t.n -= t.cnt;
            t.i = 0;
            if t.n > 0 {
                Pc::MoveLoad
            } else {
                after_shift(t.kind)
            }
        }
        Pc::MoveLoad => {
            t.obj = arr(w, t.ac)?.entry[idx(t.i + t.cnt)?];
            Pc::MoveStore
        }
        Pc::MoveStore => {
            arr(w, t.ac)?.entry[idx(t.i)?] = t.obj;
            t.i += 1;
            if t.i < t.n {
                Pc::MoveLoad
            } else {
                after_shift(t.kind)
            }
        }
        Pc::SwapLoad => {
            t.ac = w.ac;
            Pc::SwapStore
        }
        Pc::SwapStore => {
            if t.ac != OLD {
                return Err("do_tune_cpucache found an unexpected array".into());
            }
            w.ac = NEW;
            // The old array's objects are the tuner's until free_block; the new one is empty.
            for k in 0..w.ghost_len as usize {
                put(&mut t.transit, w.ghost[k], "do_tune_cpucache")?;
            }
            w.ghost_len = 0;
            Pc::Unmark
        }
        Pc::Unmark => {
            unclaim(w)?;
            if !plain {
                w.busy = 0;
            }
            Pc::Unlock
        }
        Pc::Unlock => {
            w.lock = 0;
            if t.kind == Kind::RemoteTune {
                Pc::OldAvail
            } else {
                Pc::Done
            }
        }
        Pc::OldAvail => {
            t.n = arr(w, t.ac)?.avail;
            t.i = 0;
            if t.n > 0 {
                Pc::OldEntry
            } else {
                Pc::Retire
            }
        }
        Pc::OldEntry => {
            let o = arr(w, t.ac)?.entry[idx(t.i)?];
            put(&mut w.slab, o, "free_block")?;
            t.transit &= !bit(o);
            t.i += 1;
            if t.i == t.n {
                Pc::Retire
            } else {
                Pc::OldEntry
            }
        }
        Pc::Retire => {
            arr(w, t.ac)?.retired = true;
            Pc::Done
        }
        Pc::Done => unreachable!("a finished thread takes no step"),
    };
    w.th[i] = t;
    Ok(())
}

/// Where `ac_shift_down` returns to: `__cache_free` pushes, `drain_array` is done.
fn after_shift(kind: Kind) -> Pc {
    if kind == Kind::Push {
        Pc::FreeStore
    } else {
        Pc::Unmark
    }
}

/// A place an object can be in.
#[derive(Clone, Copy)]
enum Place {
    Array,
    SwappedOut,
    Slab,
    Hand(usize),
    Transit(usize),
}

/// Calls `f` for every (object, place) of `w` that `cx` counts; `Ok(false)` when the state is
/// not judged (`Check::Damage` and not quiescent).
fn places(w: &World, cx: Ctx, mut f: impl FnMut(u8, Place)) -> Result<bool, String> {
    let mut arrays = [(Place::Array, live(w)?), (Place::SwappedOut, &[][..])];
    if cx.check == Check::Damage {
        // Judge only states in which no plain slow-path code is half-way.
        let freeing = |t: &Th| matches!(t.pc, Pc::OldEntry | Pc::Retire);
        if w.lock != 0 || w.th.iter().any(freeing) {
            return Ok(false);
        }
        // do_tune_cpucache's old array until its free_block.
        let old = &w.arrays[OLD as usize];
        if w.ac != OLD && !old.retired {
            arrays[1].1 = &old.entry[..old.avail as usize];
        }
    }
    for (place, contents) in arrays {
        for &o in contents {
            if !is_obj(o) {
                return Err(format!(
                    "{} holds entry value {o} below avail",
                    place_name(w, place)
                ));
            }
            f(o, place);
        }
    }
    for o in 1..=NOBJ {
        if w.slab & bit(o) != 0 {
            f(o, Place::Slab);
        }
        for (i, t) in w.th.iter().enumerate() {
            if t.hand & bit(o) != 0 {
                f(o, Place::Hand(i));
            }
            if t.transit & bit(o) != 0 {
                f(o, Place::Transit(i));
            }
        }
    }
    Ok(true)
}

fn place_name(w: &World, p: Place) -> String {
    match p {
        Place::Array => "array".into(),
        Place::SwappedOut => "the swapped-out array".into(),
        Place::Slab => "slab".into(),
        Place::Hand(i) => format!("t{i} {:?}'s hands", w.th[i].kind),
        Place::Transit(i) => format!("t{i} {:?}'s transit", w.th[i].kind),
    }
}

/// The invariant: every object in exactly one place.
fn check(w: &World, cx: Ctx) -> Result<(), String> {
    let mut count = [0u8; NOBJ as usize + 1];
    if !places(w, cx, |o, _| count[o as usize] += 1)? || count[1..].iter().all(|&c| c == 1) {
        return Ok(());
    }
    // Say where each object is.
    let mut names: [Vec<String>; NOBJ as usize + 1] = Default::default();
    places(w, cx, |o, p| names[o as usize].push(place_name(w, p)))?;
    let mut bad = Vec::new();
    for (o, p) in names.iter().enumerate().skip(1) {
        match p.len() {
            1 => {}
            0 => bad.push(format!("object {o} lost")),
            _ => bad.push(format!(
                "object {o} in {} places: {}",
                p.len(),
                p.join(", ")
            )),
        }
    }
    Err(bad.join("; "))
}

/// When every thread is done.
fn final_check(w: &World) -> Result<(), String> {
    if w.lock != 0 || w.busy != 0 || w.owner != 0 {
        return Err(format!(
            "finished with lock {} busy {} claimed by {}",
            w.lock, w.busy, w.owner
        ));
    }
    for (i, t) in w.th.iter().enumerate() {
        if t.transit != 0 {
            return Err(format!("t{i} finished with objects in transit"));
        }
        if matches!(t.kind, Kind::Pop | Kind::LocalRefill) && t.hand.count_ones() > 1 {
            return Err(format!("t{i} allocated more than one object"));
        }
    }
    Ok(())
}

#[derive(Clone, Copy)]
struct Label {
    th: u8,
    kind: Kind,
    pc: Pc,
    /// A spontaneous abort rather than a step.
    signal: bool,
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.signal {
            write!(f, "t{}:{:?}:aborted", self.th, self.kind)
        } else {
            write!(f, "t{}:{:?}:{:?}", self.th, self.kind, self.pc)
        }
    }
}

/// The initial state: `fill` objects (1, 2) on the slot's array; `Push` threads own the
/// highest objects (4, then 3); the others are on the slab.
fn initial(kinds: &[Kind], fill: u8, flaw: Flaw) -> World {
    assert!(kinds.len() <= MAXTH && fill <= LIMIT);
    assert!(kinds.iter().filter(|&&k| k == Kind::Push).count() <= 2);
    assert!(kinds.iter().filter(|&&k| k == Kind::RemoteTune).count() <= 1);
    let idle = Th {
        kind: Kind::Pop,
        pc: Pc::Done,
        ac: 0,
        n: 0,
        obj: 0,
        i: 0,
        cnt: 0,
        mine: 0,
        hand: 0,
        transit: 0,
    };
    let mut th = [idle; MAXTH];
    let mut slab = 0;
    for o in 1..=NOBJ {
        slab |= bit(o);
    }
    let mut next_own = NOBJ;
    for (t, &kind) in th.iter_mut().zip(kinds) {
        t.kind = kind;
        t.pc = first_pc(kind, flaw);
        if kind == Kind::Push {
            t.mine = next_own;
            t.hand = bit(next_own);
            slab &= !bit(next_own);
            next_own -= 1;
        }
    }
    let empty = Arr {
        avail: 0,
        limit: LIMIT,
        touched: 0,
        retired: false,
        entry: [0; LIMIT as usize],
    };
    let mut old = empty;
    for k in 0..fill {
        old.entry[k as usize] = k + 1;
        slab &= !bit(k + 1);
    }
    old.avail = fill;
    World {
        lock: 0,
        busy: 0,
        ac: OLD,
        arrays: [old, empty],
        slab,
        owner: 0,
        ghost: [0; LIMIT as usize],
        ghost_len: 0,
        th,
    }
}

/// The model for the shared explorer: each enabled thread's step, and a signal's abort of a
/// thread inside its critical section.
struct ArrayCacheModel {
    cx: Ctx,
}

impl Model for ArrayCacheModel {
    type State = World;
    type Label = Label;

    fn check(&self, w: &World) -> Result<(), String> {
        check(w, self.cx)
    }

    fn successors(&self, w: &World, out: &mut Vec<Transition<World, Label>>) {
        for i in 0..MAXTH {
            let t = w.th[i];
            let label = Label {
                th: i as u8,
                kind: t.kind,
                pc: t.pc,
                signal: false,
            };
            if enabled(w, i) {
                let mut next = *w;
                let result = step(&mut next, i, self.cx);
                out.push(Transition {
                    label,
                    next,
                    result,
                });
            }
            if in_cs(&t) {
                // A signal (or preemption by another process) aborts the section.
                let mut next = *w;
                abort(&mut next, i, self.cx.flaw);
                out.push(Transition {
                    label: Label {
                        signal: true,
                        ..label
                    },
                    next,
                    result: Ok(()),
                });
            }
        }
    }

    fn terminal(&self, w: &World) -> Result<(), String> {
        if w.th.iter().all(|t| t.pc == Pc::Done) {
            final_check(w)
        } else {
            Err("deadlock".into())
        }
    }

    fn describe(&self, w: &World) -> String {
        describe(w)
    }
}

/// Explores every schedule from `w0`.
fn explore_from(w0: World, cx: Ctx) -> Result<Stats, Violation> {
    explore(&ArrayCacheModel { cx }, w0)
}

/// A one-line summary of a state for counterexamples.
fn describe(w: &World) -> String {
    let a = |k: usize| {
        let r = &w.arrays[k];
        format!(
            "{}{{avail {} entry {:?} touched {}{}}}",
            arr_name(k as u8),
            r.avail,
            r.entry,
            r.touched,
            if r.retired { " retired" } else { "" }
        )
    };
    format!(
        "slot.ac {} busy {} slab {:#b} {} {}",
        arr_name(w.ac),
        w.busy,
        w.slab,
        a(0),
        a(1)
    )
}

/// Runs `kinds` from every initial fill of the array, under both checks.
fn run(kinds: &[Kind]) -> Stats {
    let t0 = Instant::now();
    let mut total = Stats {
        states: 0,
        terminal: 0,
    };
    for check in [Check::Claim, Check::Damage] {
        let cx = Ctx {
            flaw: Flaw::None,
            check,
        };
        for fill in 0..=LIMIT {
            let s = explore_from(initial(kinds, fill, Flaw::None), cx).unwrap_or_else(|v| {
                panic!(
                    "{kinds:?} fill {fill} {check:?}: {}\n  schedule: {}",
                    v.msg, v.trace
                )
            });
            total.states += s.states;
            total.terminal += s.terminal;
        }
    }
    eprintln!(
        "{kinds:?}: {} states, {} terminal (fills 0..={LIMIT}, both checks), {:.2?}",
        total.states,
        total.terminal,
        t0.elapsed()
    );
    total
}

/// A negative control: both checks must find the race; prints what they found and returns
/// the violations `(claim, damage)`.
fn must_fail(kinds: &[Kind], flaw: Flaw, fill: u8) -> (Violation, Violation) {
    let found = [Check::Claim, Check::Damage].map(|check| {
        let t0 = Instant::now();
        let v = explore_from(initial(kinds, fill, flaw), Ctx { flaw, check })
            .expect_err("the model must find the race");
        eprintln!(
            "{kinds:?} {flaw:?} fill {fill} {check:?}: {} ({:.2?})\n  schedule: {}",
            v.msg,
            t0.elapsed(),
            v.trace
        );
        v
    });
    let [claim, damage] = found;
    (claim, damage)
}

/// A negative control's real damage: an object lost or duplicated, or a use-after-free.
fn assert_damage(v: &Violation) {
    assert!(
        ["lost", "places", "use-after-free"]
            .iter()
            .any(|d| v.msg.contains(d)),
        "not an ownership violation: {}",
        v.msg
    );
}

use Kind::{LocalRefill, Pop, Push, RemoteDrain, RemoteTune};

/// Runs every thread set; returns the states explored.
fn run_all(sets: &[&[Kind]]) -> usize {
    let t0 = Instant::now();
    let mut states = 0;
    for kinds in sets {
        let s = run(kinds);
        assert!(s.states > 100 && s.terminal > 10, "{s:?}");
        states += s.states;
    }
    eprintln!("total: {states} states, {:.2?}", t0.elapsed());
    states
}

#[test]
#[cfg_attr(miri, ignore)]
fn rseq_pop_push_against_each_other() {
    run_all(&[
        &[Pop, Push],
        &[Pop, Pop, Push],
        &[Pop, Push, Push],
        &[Pop, Pop, Push, Push],
    ]);
}

#[test]
#[cfg_attr(miri, ignore)]
fn rseq_pop_push_against_local_refill() {
    run_all(&[
        &[Pop, Push, LocalRefill],
        &[Pop, Pop, Push, LocalRefill],
        &[Pop, Push, Push, LocalRefill],
    ]);
}

#[test]
#[cfg_attr(miri, ignore)]
fn rseq_pop_push_against_remote_drain() {
    run_all(&[
        &[Pop, Push, RemoteDrain],
        &[Pop, Pop, Push, RemoteDrain],
        &[Pop, Push, Push, RemoteDrain],
    ]);
}

#[test]
#[cfg_attr(miri, ignore)]
fn rseq_pop_push_against_remote_tune() {
    run_all(&[
        &[Pop, Push, RemoteTune],
        &[Pop, Pop, Push, RemoteTune],
        &[Pop, Push, Push, RemoteTune],
    ]);
}

/// The slow paths also against each other: the own-CPU mark against a remote one.
#[test]
#[cfg_attr(miri, ignore)]
fn rseq_pop_push_against_two_slow_paths() {
    run_all(&[
        &[Pop, Push, LocalRefill, RemoteDrain],
        &[Pop, Push, LocalRefill, RemoteTune],
        &[Pop, Push, RemoteDrain, RemoteTune],
    ]);
}

/// (a) A remote slow path without the membarrier fence.
#[test]
#[cfg_attr(miri, ignore)]
fn negative_remote_mark_without_fence() {
    let (_, damage) = must_fail(&[Pop, Push, RemoteDrain], Flaw::NoFence, 2);
    assert_damage(&damage);
    let (_, damage) = must_fail(&[Pop, Push, RemoteTune], Flaw::NoFence, 1);
    assert_damage(&damage);
}

/// (b) Sequences that do not compare `busy`.
#[test]
#[cfg_attr(miri, ignore)]
fn negative_sequence_without_busy_check() {
    let (_, damage) = must_fail(&[Pop, Push, LocalRefill], Flaw::NoBusyCheck, 0);
    assert_damage(&damage);
    let (_, damage) = must_fail(&[Pop, Push, RemoteDrain], Flaw::NoBusyCheck, 2);
    assert_damage(&damage);
}

/// (c) `slot.ac` loaded outside the sequence, against `do_tune_cpucache`.
#[test]
#[cfg_attr(miri, ignore)]
fn negative_array_pointer_outside_section() {
    let (claim, damage) = must_fail(&[Pop, Push, RemoteTune], Flaw::AcOutsideSection, 1);
    assert!(claim.msg.contains("transit"), "{}", claim.msg);
    assert!(damage.msg.contains("use-after-free"), "{}", damage.msg);
}

/// (d) A refill by plain code under the lock, without the busy mark.
#[test]
#[cfg_attr(miri, ignore)]
fn negative_plain_refill() {
    let (_, damage) = must_fail(&[Pop, Push, LocalRefill], Flaw::PlainRefill, 0);
    assert_damage(&damage);
}
