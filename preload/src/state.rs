//! First-call initialisation: a static state machine, the bump area that serves re-entrant
//! calls while the allocator is being built, and the process-wide [`Instance`].
//!
//! ```text
//!   UNINIT ──(CAS, inside the fork gate)──► INITING ──► READY
//!                                            │  └──► (bad environment / no memory: message, _exit)
//!                                            └ malloc from the initialising thread: bump area
//!                                              malloc from another thread: waits for READY
//! ```

use crate::config::{self, Config, Kind};
use crate::instance::Instance;
use crate::out::{FdWriter, STDERR};
use common::{PageProvider, ProviderConfig, Topology, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use slab_classic::Slab;
use slub::Slub;

const UNINIT: u8 = 0;
const INITING: u8 = 1;
const READY: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(UNINIT);
static INIT_OWNER: AtomicUsize = AtomicUsize::new(0);

struct Cell<T>(UnsafeCell<MaybeUninit<T>>);
// SAFETY: written once by the thread that moved STATE to INITING, read only after READY is
// published with Release (and read with Acquire).
unsafe impl<T> Sync for Cell<T> {}

static INSTANCE: Cell<Instance> = Cell(UnsafeCell::new(MaybeUninit::uninit()));
static CONFIG: Cell<Config> = Cell(UnsafeCell::new(MaybeUninit::uninit()));

fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// The allocator, built on first use. `None` only while this very thread is building it (the
/// caller then serves from the bump area). Never returns on a bad environment or when the
/// allocator cannot be built: prints one line and exits.
#[inline(always)]
pub fn instance() -> Option<&'static Instance> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: READY is stored (Release) after the instance was written.
        return Some(unsafe { (*INSTANCE.0.get()).assume_init_ref() });
    }
    instance_slow()
}

/// The configuration in force (after [`instance`] returned `Some`).
pub fn config() -> Option<&'static Config> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: written before READY.
        Some(unsafe { (*CONFIG.0.get()).assume_init_ref() })
    } else {
        None
    }
}

#[cold]
#[inline(never)]
fn instance_slow() -> Option<&'static Instance> {
    loop {
        match STATE.load(Ordering::Acquire) {
            READY => {
                // SAFETY: as in `instance`.
                return Some(unsafe { (*INSTANCE.0.get()).assume_init_ref() });
            }
            INITING => {
                if INIT_OWNER.load(Ordering::Acquire) == this_thread() {
                    return None;
                }
                let mut spins = 0;
                while STATE.load(Ordering::Acquire) == INITING {
                    common::sync::relax(&mut spins);
                }
            }
            _ => {
                let _g = crate::gate::Gate::enter();
                if STATE
                    .compare_exchange(UNINIT, INITING, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    INIT_OWNER.store(this_thread(), Ordering::Release);
                    let (cfg, inst) = build();
                    // SAFETY: this thread won UNINIT→INITING, so it is the only writer; nobody
                    // reads before READY.
                    unsafe {
                        (*CONFIG.0.get()).write(cfg);
                        (*INSTANCE.0.get()).write(inst);
                    }
                    STATE.store(READY, Ordering::Release);
                }
            }
        }
    }
}

/// Reads the environment and builds the allocator; exits the process on failure.
fn build() -> (Config, Instance) {
    let cfg = match config::from_env() {
        Ok(c) => c,
        Err(e) => {
            e.print();
            // SAFETY: _exit has no preconditions; no atexit handler may run half-built.
            unsafe { libc::_exit(2) }
        }
    };
    // The CPU-id source is probed once here (dlsym), not inside an allocation later.
    let _ = common::percpu::cpu_id();
    let fail = |what: &dyn core::fmt::Display| -> ! {
        let mut w = FdWriter::new(STDERR);
        let _ = writeln!(
            w,
            "slabworks: cannot start the {} allocator: {what}",
            cfg.kind.name()
        );
        w.flush();
        // SAFETY: as above.
        unsafe { libc::_exit(2) }
    };
    let mut topo = Topology::from_sysfs().unwrap_or_else(|e| fail(&e));
    if cfg.fake_numa > 0 {
        topo = topo
            .with_fake_numa(cfg.fake_numa)
            .unwrap_or_else(|e| fail(&e));
    }
    let mut pc = ProviderConfig::new(topo);
    pc.node_pages = (cfg.arena_mib << 20) / PAGE_SIZE;
    let provider = PageProvider::new(&pc).unwrap_or_else(|e| fail(&e));
    crate::gate::set_enabled(cfg.fork_gate);
    let inst = match cfg.kind {
        Kind::Slab => Instance::Slab(Slab::new(&provider, cfg.slab).unwrap_or_else(|e| fail(&e))),
        Kind::Slub => Instance::Slub(Slub::new(&provider, cfg.slub).unwrap_or_else(|e| fail(&e))),
    };
    (cfg, inst)
}

static HANDLERS: AtomicBool = AtomicBool::new(false);

/// Registers the fork handlers and the exit report, once (from the library constructor, so
/// never from inside a `malloc` that libc called with one of its own locks held).
pub fn register_handlers() {
    if HANDLERS.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are plain extern "C" functions with static lifetime.
    unsafe {
        libc::pthread_atfork(
            Some(crate::gate::prepare),
            Some(crate::gate::parent),
            Some(crate::gate::child),
        );
    }
    if let Some(c) = config().filter(|c| c.slabinfo_len > 0) {
        if &c.slabinfo[..c.slabinfo_len] == b"-" {
            // A private copy of stderr: programs such as coreutils close fd 2 in their own
            // atexit handler, which runs before ours.
            // SAFETY: fcntl on a descriptor number has no memory-safety preconditions.
            let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 64) };
            crate::report::STDERR_COPY.store(fd, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { libc::atexit(crate::report::at_exit) };
    }
}

// ---------------------------------------------------------------------------------------------
// The bump area: serves `malloc` re-entered while the allocator is being built.

const BUMP_BYTES: usize = 256 << 10;

#[repr(C, align(4096))]
struct Bump(UnsafeCell<[u8; BUMP_BYTES]>);
// SAFETY: disjoint ranges are handed out by an atomic cursor.
unsafe impl Sync for Bump {}

static BUMP: Bump = Bump(UnsafeCell::new([0; BUMP_BYTES]));
static BUMP_NEXT: AtomicUsize = AtomicUsize::new(0);

/// Header before every bump allocation: its usable size.
const BUMP_HDR: usize = 16;

/// `size` bytes aligned to `align` (a power of two, at most a page) from the bump area, or null.
/// Bump memory is never reused; `free` of it is a no-op.
pub fn bump_alloc(size: usize, align: usize) -> *mut u8 {
    let align = align.max(16);
    let base = BUMP.0.get() as usize;
    let mut cur = BUMP_NEXT.load(Ordering::Relaxed);
    loop {
        let start = (base + cur + BUMP_HDR).next_multiple_of(align);
        let Some(end) = start.checked_add(size.max(1)) else {
            return core::ptr::null_mut();
        };
        let end = end.next_multiple_of(16);
        if end > base + BUMP_BYTES {
            return core::ptr::null_mut();
        }
        match BUMP_NEXT.compare_exchange_weak(cur, end - base, Ordering::AcqRel, Ordering::Relaxed)
        {
            Ok(_) => {
                let p = start as *mut u8;
                // SAFETY: [start - 16, end) is ours alone now, inside BUMP.
                unsafe { p.sub(BUMP_HDR).cast::<usize>().write(end - start) };
                return p;
            }
            Err(c) => cur = c,
        }
    }
}

/// Whether `p` lies in the bump area.
#[inline(always)]
pub fn in_bump(p: usize) -> bool {
    p.wrapping_sub(BUMP.0.get() as usize) < BUMP_BYTES
}

/// Usable size of a bump allocation.
///
/// # Safety
/// `p` must have come from [`bump_alloc`].
pub unsafe fn bump_usable(p: *mut u8) -> usize {
    // SAFETY: the header precedes every bump allocation.
    unsafe { p.sub(BUMP_HDR).cast::<usize>().read() }
}

/// Bytes of the bump area used (for the report).
pub fn bump_used() -> usize {
    BUMP_NEXT.load(Ordering::Relaxed)
}
