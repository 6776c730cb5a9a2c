//! The fork gate: `fork()` must not copy the allocator while another thread holds one of its
//! locks (a per-CPU slot lock, a node `list_lock`, a provider node lock, SLAB's chain mutex),
//! or the child deadlocks on its first allocation. Neither allocator exposes a "take every lock"
//! call, so instead of taking their locks we make sure no thread is *inside* the allocator:
//!
//! - every operation enters the gate: it adds 1 to a counter slot (one cache line per slot,
//!   chosen by CPU id, 64 slots), then checks `FORKING`; it leaves by subtracting 1 from the
//!   *same* slot (so each slot is balanced and never negative, whatever CPU the thread runs on
//!   when it leaves);
//! - `pthread_atfork` prepare sets `FORKING` (sequentially consistent, so an operation either
//!   saw it and backed off, or its increment is visible), then waits until every slot is 0;
//!   the forking thread itself passes the gate (other prepare handlers may `malloc`);
//! - parent and child handlers clear `FORKING`; the child also zeroes the slots (a thread that
//!   was backing off at the fork does not exist in the child).
//!
//! Since no thread is inside the allocator at the fork, every lock is free and every structure
//! consistent in the child. The price is two uncontended atomic adds per operation.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

const SLOTS: usize = 64;

#[repr(align(128))]
struct Slot(AtomicUsize);

static COUNT: [Slot; SLOTS] = [const { Slot(AtomicUsize::new(0)) }; SLOTS];
static FORKING: AtomicBool = AtomicBool::new(false);
static FORK_OWNER: AtomicUsize = AtomicUsize::new(0);
/// `SLABWORKS_FORK_GATE=0` turns the gate off (for measuring without its two atomic adds; a
/// `fork` while other threads allocate may then deadlock the child).
static ON: AtomicBool = AtomicBool::new(true);

/// Turns the gate on or off (from the configuration, once, at initialisation).
pub fn set_enabled(on: bool) {
    ON.store(on, Ordering::Release);
}

const OFF: usize = usize::MAX;

fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Being inside the allocator; leaving on drop.
pub struct Gate(usize);

impl Gate {
    /// Enters (waits while another thread forks).
    #[inline(always)]
    pub fn enter() -> Gate {
        if !ON.load(Ordering::Relaxed) {
            return Gate(OFF);
        }
        let slot = common::percpu::cpu_id() % SLOTS;
        COUNT[slot].0.fetch_add(1, Ordering::SeqCst);
        if FORKING.load(Ordering::SeqCst) {
            return Self::enter_slow(slot);
        }
        Gate(slot)
    }

    #[cold]
    #[inline(never)]
    fn enter_slow(mut slot: usize) -> Gate {
        loop {
            if FORK_OWNER.load(Ordering::Acquire) == this_thread() {
                return Gate(slot);
            }
            COUNT[slot].0.fetch_sub(1, Ordering::SeqCst);
            let mut spins = 0;
            while FORKING.load(Ordering::Acquire) {
                common::sync::relax(&mut spins);
            }
            slot = common::percpu::cpu_id() % SLOTS;
            COUNT[slot].0.fetch_add(1, Ordering::SeqCst);
            if !FORKING.load(Ordering::SeqCst) {
                return Gate(slot);
            }
        }
    }
}

impl Drop for Gate {
    #[inline(always)]
    fn drop(&mut self) {
        if self.0 != OFF {
            COUNT[self.0].0.fetch_sub(1, Ordering::Release);
        }
    }
}

/// `pthread_atfork` prepare: close the gate and wait until nobody is inside.
pub extern "C" fn prepare() {
    FORK_OWNER.store(this_thread(), Ordering::Release);
    FORKING.store(true, Ordering::SeqCst);
    for s in &COUNT {
        let mut spins = 0;
        while s.0.load(Ordering::SeqCst) != 0 {
            common::sync::relax(&mut spins);
        }
    }
    // Initialisation runs inside the gate, so it is finished too.
}

/// `pthread_atfork` parent: open the gate.
pub extern "C" fn parent() {
    FORK_OWNER.store(0, Ordering::Release);
    FORKING.store(false, Ordering::SeqCst);
}

/// `pthread_atfork` child: open the gate; only this thread exists.
pub extern "C" fn child() {
    for s in &COUNT {
        s.0.store(0, Ordering::Relaxed);
    }
    FORK_OWNER.store(0, Ordering::Release);
    FORKING.store(false, Ordering::SeqCst);
}
