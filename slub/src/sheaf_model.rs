//! An exhaustive model of the sheaves' per-CPU lock in rseq mode — `local_trylock` as
//! `common::rseq_lock::RseqLocalLock` builds it — in the style of `model.rs` and on the same
//! explorer (`common::testing::explore`): every schedule of up to four threads' atomic steps
//! around one CPU slot X is explored, and mutual exclusion, the rseq hits' claim and "no lost
//! unlock" are checked in every reachable state.
//!
//! # What is modelled
//! Shared memory: the slot's `acquired` word and one word of slot data (`main`'s `size`,
//! say), plus a ghost count of completed increments. The threads:
//! - `Owner`: a thread of CPU X that takes X's lock, increments the data in two plain steps
//!   (load, store) and unlocks — `alloc_from_pcs_locked`, a ladder. While on X it uses the
//!   local form: one sequence (cpu compare, `acquired == 0` compare, commit `acquired =
//!   LOCAL`); after a migration it uses the remote form (below) with its own token. It may
//!   migrate (X ↔ Y, twice at most) at any point: before locking, inside the lock sequence
//!   (which aborts it), or while holding the lock (it then unlocks from Y).
//! - `Hit`: an rseq hit on X (`array_pop`/`array_push` with the lock word as `busy`): one
//!   sequence that compares `acquired == 0`, loads the data and commits `data + 1`.
//! - `Remote`: a thread on CPU Y that takes X's lock (`pcs_flush_all`, the census):
//!   `cmpxchg(acquired, 0 → token)`, `membarrier` fence of X, re-check `acquired == token`,
//!   then the same critical section and unlock. Tokens are fresh per acquisition.
//!
//! A failed try falls back (the slab path) and the thread is done; a remote try that fails is
//! retried (a `local_lock` waits), a bounded number of times to keep the space finite.
//!
//! # rseq semantics assumed (as in `model.rs` and slab-classic's model)
//! A thread is in its critical section from its cpu compare through its commit. When a thread
//! on X takes a step, every *other* thread on X inside its section is aborted (it can only
//! have lost the CPU by preemption); any thread in its section may be aborted spontaneously (a
//! signal) or by migrating; the fence aborts every thread on X in its section. An aborted
//! sequence restarts at its cpu compare (after two aborts it gives up and falls back). Threads
//! on Y run in parallel with X's and abort nothing but through the fence. Memory is
//! sequentially consistent (the orderings are argued in `common/src/rseq_lock.rs`).
//!
//! # Checked
//! - In every state: at most one holder, and each holder's value (LOCAL, or its token) is
//!   still in `acquired` — nobody overwrote or cleared a held lock.
//! - At each hit's commit: no holder is in its critical section.
//! - At the end: `acquired == 0` (no lost unlock), and the data equals the completed
//!   increments (no lost update).
//! - Coverage: across the runs of a test, an owner held the lock by the local form and by the
//!   remote form (after migrating), a remote thread held it, and a hit committed.
//!
//! # Negative controls ([`Flaw`]); each must be caught
//! - `NoFence`: the remote form without the fence — a local locker that compared 0 before the
//!   cmpxchg commits LOCAL after the remote re-check passed: two holders.
//! - `NoRecheck`: the remote form without the re-check after the fence: the same.
//! - `BackoffClears`: a remote try that lost to a local commit clears the word on its way out:
//!   the local holder's lock is gone.
//! - `SharedToken`: every remote acquisition uses the same value: a remote try whose token was
//!   overwritten by a local commit, then unlocked, then set again by a second remote thread,
//!   passes its re-check (ABA): two holders.
//! - `SetOutsideSection`: the local lock as a compare and a store that are not one sequence:
//!   two owners of X both see 0.
//! - `HitIgnoresLock`: a hit that does not compare the lock word commits inside a holder's
//!   critical section.
//!
//! Not a control: clearing `acquired` outside a sequence (the example). The holder is
//! the only writer while it holds the word (local commits need 0 inside their own sequence, a
//! remote cmpxchg needs 0), so its plain release store from any CPU loses nothing — and the
//! protocol relies on it, since a holder that migrated cannot run a sequence on X. The model
//! has owners migrate while holding and unlock from Y, and passes.
//!
//! The tests run thread sets of two and three (13 k – 500 k states, 4 s in all in a debug
//! build); `[Owner, Owner, Hit, Remote]` passes too (9.6 M states, about a minute: too slow
//! for every `cargo test`). Run `cargo test -p slub --lib sheaf_model -- --nocapture` to see
//! the state counts and the counterexamples.

use common::testing::{explore, must_fail, ExploreStats, Model, Transition};
use std::cell::Cell;
use std::time::Instant;

/// Threads per run.
const MAXTH: usize = 4;
/// `acquired` of a local holder.
const LOCAL: u8 = 1;
/// The first remote token.
const FIRST_TOKEN: u8 = 2;
/// Aborted or failed attempts a thread makes before it falls back.
const RETRIES: u8 = 2;
/// Migrations per thread.
const MIGRATIONS: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    /// A thread of X that locks X's slot (local form on X, remote form after migrating).
    Owner,
    /// An rseq hit on X that compares the lock word.
    Hit,
    /// A thread on Y that locks X's slot.
    Remote,
}

/// The step of the protocol a negative control removes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Flaw {
    /// The protocol as `common::rseq_lock` implements it.
    None,
    NoFence,
    NoRecheck,
    BackoffClears,
    SharedToken,
    SetOutsideSection,
    HitIgnoresLock,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Pc {
    /// Where the thread is: on X → the local form (owner) or the hit's sequence; else the
    /// remote form (owner, remote) or nothing (a hit would use another slot).
    Start,
    /// Local form, in the sequence: `acquired == 0`?
    LCmp,
    /// Local form: commit `acquired = LOCAL`.
    LCommit,
    /// Remote form: `cmpxchg(acquired, 0 → token)`.
    RCas,
    /// Remote form: `fence_cpu(X)`.
    RFence,
    /// Remote form: `acquired == token`?
    RRecheck,
    /// Holder: `r = data`.
    CsLoad,
    /// Holder: `data = r + 1`.
    CsStore,
    /// Holder: `acquired = 0` (release), from wherever it runs.
    Unlock,
    /// Hit, in the sequence: `acquired == 0`?
    HChk,
    /// Hit: `r = data`.
    HLoad,
    /// Hit: commit `data = r + 1`.
    HCommit,
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Th {
    kind: Kind,
    pc: Pc,
    on_x: bool,
    /// A loaded value.
    r: u8,
    /// The value this thread's lock put in `acquired` (LOCAL or a token); 0 if none.
    mine: u8,
    tries: u8,
    migrations: u8,
    /// In its critical section (between taking and releasing the lock).
    holds: bool,
    /// How it took the lock last (for coverage): 0 none, 1 local, 2 remote.
    how: u8,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct World {
    acquired: u8,
    data: u8,
    /// Ghost: completed increments.
    incs: u8,
    next_token: u8,
    th: [Th; MAXTH],
}

fn in_cs(t: &Th, flaw: Flaw) -> bool {
    match t.pc {
        Pc::LCmp | Pc::LCommit => flaw != Flaw::SetOutsideSection,
        Pc::HChk | Pc::HLoad | Pc::HCommit => true,
        _ => false,
    }
}

/// What the runs reached (coverage).
#[derive(Default)]
struct Reached {
    local_hold: Cell<bool>,
    remote_form_owner_hold: Cell<bool>,
    remote_hold: Cell<bool>,
    hit_commit: Cell<bool>,
    unlock_after_migration: Cell<bool>,
}

struct LockModel<'a> {
    flaw: Flaw,
    reached: &'a Reached,
}

impl LockModel<'_> {
    /// The thread's try failed or gave up: it falls back to the slab path.
    fn retry_or_fall_back(t: &mut Th) {
        t.tries += 1;
        t.r = 0;
        t.pc = if t.tries > RETRIES {
            Pc::Done
        } else {
            Pc::Start
        };
    }

    fn abort(w: &mut World, j: usize) {
        Self::retry_or_fall_back(&mut w.th[j]);
    }

    fn take(&self, t: &mut Th, value: u8, remote_form: bool) {
        t.holds = true;
        t.mine = value;
        t.how = if remote_form { 2 } else { 1 };
        if remote_form {
            if t.kind == Kind::Owner {
                self.reached.remote_form_owner_hold.set(true);
            } else {
                self.reached.remote_hold.set(true);
            }
        } else {
            self.reached.local_hold.set(true);
        }
        t.pc = Pc::CsLoad;
    }

    fn step(&self, w: &mut World, i: usize) -> Result<(), String> {
        let flaw = self.flaw;
        if w.th[i].on_x {
            // Thread i runs on X: any other thread of X inside its sequence was preempted.
            for j in 0..MAXTH {
                if j != i && w.th[j].on_x && in_cs(&w.th[j], flaw) {
                    Self::abort(w, j);
                }
            }
        }
        let mut t = w.th[i];
        match t.pc {
            Pc::Start => {
                t.pc = match (t.kind, t.on_x) {
                    (Kind::Owner, true) => Pc::LCmp,
                    (Kind::Hit, true) => Pc::HChk,
                    (Kind::Hit, false) => Pc::Done,
                    _ => Pc::RCas,
                };
            }
            Pc::LCmp => {
                if w.acquired == 0 {
                    t.pc = Pc::LCommit;
                } else {
                    t.pc = Pc::Done; // held: the slab path
                }
            }
            Pc::LCommit => {
                w.acquired = LOCAL;
                self.take(&mut t, LOCAL, false);
            }
            Pc::RCas => {
                let token = if flaw == Flaw::SharedToken {
                    FIRST_TOKEN
                } else {
                    let k = w.next_token;
                    w.next_token += 1;
                    k
                };
                if w.acquired == 0 {
                    w.acquired = token;
                    t.mine = token;
                    t.pc = match flaw {
                        Flaw::NoFence => Pc::RRecheck,
                        _ => Pc::RFence,
                    };
                } else {
                    Self::retry_or_fall_back(&mut t);
                }
            }
            Pc::RFence => {
                for j in 0..MAXTH {
                    if w.th[j].on_x && in_cs(&w.th[j], flaw) {
                        Self::abort(w, j);
                    }
                }
                if flaw == Flaw::NoRecheck {
                    let m = t.mine;
                    self.take(&mut t, m, true);
                } else {
                    t.pc = Pc::RRecheck;
                }
            }
            Pc::RRecheck => {
                if w.acquired == t.mine {
                    let m = t.mine;
                    self.take(&mut t, m, true);
                } else {
                    if flaw == Flaw::BackoffClears {
                        w.acquired = 0;
                    }
                    t.mine = 0;
                    Self::retry_or_fall_back(&mut t);
                }
            }
            Pc::CsLoad => {
                t.r = w.data;
                t.pc = Pc::CsStore;
            }
            Pc::CsStore => {
                w.data = t.r + 1;
                w.incs += 1;
                t.pc = Pc::Unlock;
            }
            Pc::Unlock => {
                if t.kind == Kind::Owner && t.how == 1 && !t.on_x {
                    self.reached.unlock_after_migration.set(true);
                }
                w.acquired = 0;
                t.holds = false;
                t.mine = 0;
                t.pc = Pc::Done;
            }
            Pc::HChk => {
                if flaw == Flaw::HitIgnoresLock || w.acquired == 0 {
                    t.pc = Pc::HLoad;
                } else {
                    t.pc = Pc::Done; // held: the locked path (an Owner)
                }
            }
            Pc::HLoad => {
                t.r = w.data;
                t.pc = Pc::HCommit;
            }
            Pc::HCommit => {
                if let Some(h) = w.th.iter().position(|h| h.holds) {
                    return Err(format!(
                        "a hit committed on the slot while t{h} {:?} holds its lock",
                        w.th[h].kind
                    ));
                }
                w.data = t.r + 1;
                w.incs += 1;
                self.reached.hit_commit.set(true);
                t.pc = Pc::Done;
            }
            Pc::Done => unreachable!("a finished thread takes no step"),
        }
        w.th[i] = t;
        Ok(())
    }
}

#[derive(Clone)]
struct Label {
    th: u8,
    kind: Kind,
    pc: Pc,
    what: &'static str,
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{}:{:?}:{:?}{}", self.th, self.kind, self.pc, self.what)
    }
}

impl Model for LockModel<'_> {
    type State = World;
    type Label = Label;

    fn check(&self, w: &World) -> Result<(), String> {
        let mut holders = w.th.iter().enumerate().filter(|(_, t)| t.holds);
        if let Some((i, t)) = holders.next() {
            if let Some((j, u)) = holders.next() {
                return Err(format!(
                    "two holders: t{i} {:?} (value {}) and t{j} {:?} (value {}), acquired {}",
                    t.kind, t.mine, u.kind, u.mine, w.acquired
                ));
            }
            if w.acquired != t.mine {
                return Err(format!(
                    "t{i} {:?} holds the lock but acquired is {}, not its {}: overwritten",
                    t.kind, w.acquired, t.mine
                ));
            }
        }
        Ok(())
    }

    fn successors(&self, w: &World, out: &mut Vec<Transition<World, Label>>) {
        for i in 0..MAXTH {
            let t = w.th[i];
            if t.pc == Pc::Done {
                continue;
            }
            let label = |what| Label {
                th: i as u8,
                kind: t.kind,
                pc: t.pc,
                what,
            };
            let mut next = *w;
            let result = self.step(&mut next, i);
            out.push(Transition {
                label: label(""),
                next,
                result,
            });
            if in_cs(&t, self.flaw) {
                // A signal (or preemption by another process) aborts the sequence.
                let mut next = *w;
                Self::abort(&mut next, i);
                out.push(Transition {
                    label: label(":aborted"),
                    next,
                    result: Ok(()),
                });
            }
            if t.kind != Kind::Remote && t.migrations < MIGRATIONS {
                let mut next = *w;
                let m = &mut next.th[i];
                m.on_x = !m.on_x;
                m.migrations += 1;
                if in_cs(&t, self.flaw) {
                    Self::abort(&mut next, i);
                }
                out.push(Transition {
                    label: label(if t.on_x {
                        ":migrated to Y"
                    } else {
                        ":migrated to X"
                    }),
                    next,
                    result: Ok(()),
                });
            }
        }
    }

    fn terminal(&self, w: &World) -> Result<(), String> {
        if w.acquired != 0 {
            return Err(format!(
                "every thread finished but acquired is {}: a lost unlock",
                w.acquired
            ));
        }
        if w.data != w.incs {
            return Err(format!(
                "data {} after {} increments: a lost update",
                w.data, w.incs
            ));
        }
        Ok(())
    }

    fn describe(&self, w: &World) -> String {
        format!("acquired {} data {} incs {}", w.acquired, w.data, w.incs)
    }
}

fn initial(kinds: &[Kind]) -> World {
    assert!(kinds.len() <= MAXTH);
    let idle = Th {
        kind: Kind::Hit,
        pc: Pc::Done,
        on_x: false,
        r: 0,
        mine: 0,
        tries: 0,
        migrations: 0,
        holds: false,
        how: 0,
    };
    let mut th = [idle; MAXTH];
    for (t, &kind) in th.iter_mut().zip(kinds) {
        t.kind = kind;
        t.pc = Pc::Start;
        t.on_x = kind != Kind::Remote;
    }
    World {
        acquired: 0,
        data: 0,
        incs: 0,
        next_token: FIRST_TOKEN,
        th,
    }
}

fn run(kinds: &[Kind], reached: &Reached) -> ExploreStats {
    let t0 = Instant::now();
    let m = LockModel {
        flaw: Flaw::None,
        reached,
    };
    let s = explore(&m, initial(kinds)).unwrap_or_else(|v| panic!("{kinds:?}: {v}"));
    eprintln!(
        "{kinds:?}: {} states, {} terminal, {:.2?}",
        s.states,
        s.terminal,
        t0.elapsed()
    );
    assert!(s.states > 100 && s.terminal > 5, "{s:?}");
    s
}

fn caught(kinds: &[Kind], flaw: Flaw) -> String {
    let reached = Reached::default();
    let m = LockModel {
        flaw,
        reached: &reached,
    };
    must_fail(&format!("{kinds:?} {flaw:?}"), &m, initial(kinds)).msg
}

use Kind::{Hit, Owner, Remote};

#[test]
#[cfg_attr(miri, ignore)]
fn sheaf_lock_owners_and_hits_on_one_cpu_with_migration() {
    let r = Reached::default();
    run(&[Owner, Owner], &r);
    run(&[Owner, Owner, Hit], &r);
    run(&[Owner, Hit, Hit], &r);
    assert!(r.local_hold.get() && r.hit_commit.get());
    assert!(
        r.remote_form_owner_hold.get(),
        "no owner took the lock by the remote form after migrating"
    );
    assert!(
        r.unlock_after_migration.get(),
        "no owner unlocked from Y after migrating while holding"
    );
}

#[test]
#[cfg_attr(miri, ignore)]
fn sheaf_lock_against_remote_holders() {
    let r = Reached::default();
    run(&[Owner, Remote], &r);
    run(&[Owner, Hit, Remote], &r);
    run(&[Owner, Owner, Remote], &r);
    run(&[Owner, Remote, Remote], &r);
    assert!(r.local_hold.get() && r.remote_hold.get() && r.hit_commit.get());
}

#[test]
#[cfg_attr(miri, ignore)]
fn negative_remote_lock_without_fence() {
    let m = caught(&[Owner, Remote], Flaw::NoFence);
    assert!(m.contains("two holders"), "{m}");
}

#[test]
#[cfg_attr(miri, ignore)]
fn negative_remote_lock_without_recheck() {
    let m = caught(&[Owner, Remote], Flaw::NoRecheck);
    assert!(m.contains("two holders"), "{m}");
}

#[test]
#[cfg_attr(miri, ignore)]
fn negative_remote_backoff_that_clears() {
    let m = caught(&[Owner, Remote], Flaw::BackoffClears);
    assert!(m.contains("overwritten"), "{m}");
}

#[test]
#[cfg_attr(miri, ignore)]
fn negative_remote_tokens_not_unique() {
    let m = caught(&[Owner, Remote, Remote], Flaw::SharedToken);
    assert!(m.contains("two holders"), "{m}");
    // One remote thread cannot meet itself: the same flaw passes.
    let r = Reached::default();
    let m = LockModel {
        flaw: Flaw::SharedToken,
        reached: &r,
    };
    assert!(explore(&m, initial(&[Owner, Remote])).is_ok());
}

#[test]
#[cfg_attr(miri, ignore)]
fn negative_local_lock_outside_a_sequence() {
    let m = caught(&[Owner, Owner], Flaw::SetOutsideSection);
    assert!(m.contains("two holders"), "{m}");
}

#[test]
#[cfg_attr(miri, ignore)]
fn negative_hit_that_ignores_the_lock() {
    let m = caught(&[Owner, Hit], Flaw::HitIgnoresLock);
    assert!(m.contains("a hit committed"), "{m}");
}
