//! Percpu sheaves and per-node barns: SLUB as Linux 6.18 (opt-in per cache through
//! `sheaf_capacity`) and 7.0 (every cache but the boot caches) have it — "SLUB percpu sheaves"
//! by Vlastimil Babka, and "slab: replace cpu (partial) slabs with sheaves" for 7.0.
//!
//! A *sheaf* ([`SlabSheaf`]) is an array of object pointers, not a slab: free pushes
//! `objects[size++]`, allocation pops `objects[--size]`. Each CPU has a `main` sheaf (never
//! null while unlocked: a zero-size static `bootstrap_sheaf` before the cache has sheaves) and
//! a `spare` (empty, full or null). Each node has a *barn* ([`NodeBarn`]) of full and empty
//! sheaves that CPUs swap whole sheaves with. Bonwick's magazines and depot, as SLAB's
//! `array_cache` + shared array had them.
//!
//! ## Call tree, fast to slow
//! ```text
//! slab_alloc_node ─ alloc_from_pcs                   local_trylock; pop main
//!     │               └ __pcs_replace_empty_main     (1) spare has objects → swap
//!     │                                              (2) barn_replace_empty_sheaf → BARN_GET
//!     │                                              (3) may block: spare / barn_get_empty_sheaf /
//!     │                                                  alloc_empty_sheaf, unlock, refill_sheaf,
//!     │                                                  relock and re-examine everything
//!     │                                              (4) else NULL
//!     └ (NULL) 6.18: the 6.4 CPU-slab path; 7.0: refill.rs ___slab_alloc
//! slab_free ─ can_free_to_pcs (object of this node) ─ free_to_pcs   local_trylock; push main
//!     │               └ __pcs_replace_full_main      (1) no spare → barn_get_empty_sheaf
//!     │                                              (2) spare not full → swap
//!     │                                              (3) barn_replace_full_sheaf: empty, or
//!     │                                                  -E2BIG → sheaf_flush_unused(spare), or
//!     │                                                  -ENOMEM → alloc_empty_sheaf(GFP_NOWAIT)
//!     │                                              (4) sheaf_flush_main: ≤ PCS_BATCH_MAX out
//!     └ (fail) 6.18: the 6.4 free path; 7.0: __slab_free
//! kmem_cache_alloc_bulk → alloc_from_pcs_bulk, rest from slabs; free_bulk → free_to_pcs_bulk
//! shrink / destroy → pcs_flush_all (every CPU) + barn_shrink (every node)
//! kmem_cache_prefill_sheaf / _alloc_from_sheaf / _refill_sheaf / _return_sheaf / _sheaf_size
//! ```
//!
//! ## Lock order (the 7.x header's 2a–2c)
//! 1. `slab_mutex` (creation, destroy). 2a. `cpu_sheaves->lock` ([`SlubPercpuSheaves`],
//!    `main`/`spare`/`rcu_free` of one CPU slot). 2b. `barn->lock` (both lists, `nr_full`,
//!    `nr_empty` writes; the counts are read racily before locking, as `data_race()` does).
//!    2c. `list_lock` and below (the slab paths), **never** with 2a held: refill and flush of
//!    objects run with the pcs lock dropped, as in the kernel. Sheaf and barn memory comes from
//!    the kmalloc caches through their *slab* path (`alloc_sheaf_mem`), never through sheaves:
//!    that is the recursion guard (a kmalloc cache's sheaf allocation cannot need a sheaf).
//!
//! ## The per-CPU lock, and what differs from the kernel
//! The kernel's `local_trylock` disables preemption and fails only on same-CPU re-entry (an
//! IRQ/NMI interrupting the holder). A user-space thread can be preempted or migrated while it
//! holds a slot, and two threads can run on one slot. Two forms, chosen per cache at creation
//! with the instance's fast path ([`crate::FastPath`]: `auto` = rseq where this process has
//! rseq areas and the membarrier CPU fence):
//! - **rseq mode**: `common::rseq_lock::RseqLocalLock`, the kernel's `acquired` byte as a word
//!   on restartable sequences. A thread on the slot's CPU sets it in one sequence (compare 0,
//!   commit), so it fails only when the lock is held: same-CPU re-entry, a holder of that CPU
//!   that was preempted or migrated, or a remote holder. A thread elsewhere (`pcs_flush_all`,
//!   the census, a thread that read its CPU id and migrated before locking) takes it remotely:
//!   cmpxchg a unique token, `membarrier` fence of the slot's CPU, re-check the token. The
//!   holder clears it with a release store from wherever it runs. `model.rs` ("the sheaf
//!   lock") explores that protocol exhaustively, with negative controls.
//! - **lock mode** (`fastpath=cmpxchg`, or no rseq): a `RawSpinLock` per slot, taken with one
//!   `compare_exchange`, released with a store.
//!
//! In both forms:
//! - the fast paths only ever **try** it; a failed try takes the slab path (alloc) or frees
//!   to the slab (free), never spins — so a holder that was descheduled costs the others a
//!   slower path, never a wait.
//! - paths where the kernel uses a plain `local_lock` (prefill, return, flushing another CPU's
//!   slot where the kernel queues work on that CPU) wait for it (try, spin, then yield).
//! - like the kernel's code after `local_unlock`, every path that dropped the lock re-reads
//!   `this_cpu_ptr` after relocking and re-examines `main`/`spare`: the thread may be on
//!   another CPU, or another thread used the slot meanwhile.
//! - a held lock counts in the debug lock depth (`common::sync`), so a heap allocation under
//!   it aborts the test binaries.
//!
//! ## rseq mode's hits
//! The *hits* take no lock at all: `alloc_from_pcs` is one restartable sequence on the CPU's
//! slot (`common::rseq::RseqThread::array_pop`: check `cpu_id`, check the slot's `acquired`
//! word is 0, load `main` inside the section, load `size`, read `objects[size-1]`, commit
//! `size - 1`), `free_to_pcs` one `array_push` (also refusing an object already on top: the
//! naive double-free check). The sheaf header is laid out for those primitives (`size` at 0,
//! `capacity` at 4). A miss (main empty or full), a held lock, a node-specific request or a
//! thread without an rseq area takes the locked path above, unchanged. Every other writer of
//! a slot — the ladders, bulk, prefill/return, flush, census — holds the lock, and the lock
//! word *is* the busy word the hits compare: a local lock is an rseq commit on the slot's CPU
//! (ordered before or after every hit there), a remote one fences that CPU before it touches
//! the slot. That is slab-classic's array-cache busy-mark protocol
//! (`slab-classic/src/fastpath.rs`, model in `slab-classic/src/model.rs`) with the lock and
//! the mark made one word.
//!
//! ## kfree_rcu sheaves
//! Not ported: the project has no user-space grace-period scheme yet. `rcu_free` exists in
//! the per-CPU structure (always null) so the layout reads like the kernel's.
//!
//! ## Invariants (checked by `validate()`, see [`validate_sheaves`])
//! - `main` is never null while the slot is unlocked; `0 ≤ size ≤ capacity` for every sheaf.
//! - Every object in a sheaf is an allocated object (not on its slab's freelist) of a slab of
//!   this cache; objects on this CPU's sheaves are mostly, not always, of the CPU's node (a
//!   migrated thread may free to another node's CPU; the node check on allocation catches it).
//! - A barn's `nr_full`/`nr_empty` equal its list lengths (under `barn->lock`); sheaves on the
//!   empty list hold no object. `MAX_FULL_SHEAVES`/`MAX_EMPTY_SHEAVES` are loose limits
//!   exactly where the kernel's are (`barn_put_*` do not check them).

use crate::cache::KmemCache;
use crate::refill;
use crate::stats::StatItem::{
    ALLOC_FASTPATH, ALLOC_NODE_MISMATCH, ALLOC_PCS, BARN_GET, BARN_GET_FAIL, BARN_PUT,
    BARN_PUT_FAIL, FREE_FASTPATH, FREE_PCS, SHEAF_ALLOC, SHEAF_FLUSH, SHEAF_FREE,
    SHEAF_PREFILL_FAST, SHEAF_PREFILL_OVERSIZE, SHEAF_PREFILL_SLOW, SHEAF_REFILL,
    SHEAF_RETURN_FAST, SHEAF_RETURN_SLOW,
};
use crate::{Era, SlabState, Slub, NUMA_NO_NODE};
use common::check::Violation;
use common::percpu::{cpu_id, PerCpu};
use common::rseq::{self, ArrayLayout, Fail};
use common::rseq_lock::RseqLocalLock;
use common::sizes::slub_index::{find_position, KMALLOC_MAX_CACHE_SIZE};
use common::sync::RawSpinLock;
use common::sync::{relax, SpinLock};
use common::{Gfp, Page, SlabError, SlabFlags, PAGE_SIZE};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

/// `MAX_FULL_SHEAVES`: full sheaves a barn takes from `barn_replace_full_sheaf` and returns.
pub const MAX_FULL_SHEAVES: usize = 10;
/// `MAX_EMPTY_SHEAVES`: checked only by `rcu_free_sheaf` in the kernel (not ported).
pub const MAX_EMPTY_SHEAVES: usize = 10;
/// `PCS_BATCH_MAX`: objects moved per batch by `sheaf_flush_main` and remote bulk frees.
pub const PCS_BATCH_MAX: usize = 32;

/// `struct_size(sheaf, objects, 0)`: the header before `objects[]`.
pub(crate) const SHEAF_HEADER: usize = core::mem::size_of::<SlabSheaf>();

/// `struct slab_sheaf`: `{barn_list | capacity}`, `cache`, `size`, `node`, `objects[]`. Here
/// `capacity` has its own word beside the list link (the kernel's union keeps it only while a
/// caller owns a prefilled sheaf; we keep it always, same 32-byte header).
///
/// Field order differs from the kernel's so the rseq array primitives of `common::rseq`
/// (SLAB's `array_cache` layout: `avail` at 0, `limit` at 4) can pop and push a sheaf.
#[repr(C)]
pub(crate) struct SlabSheaf {
    /// `size`: objects held (the primitives' `avail`).
    size: u32,
    /// `capacity`: slots in `objects[]` (the primitives' `limit`).
    capacity: u32,
    /// Written to 1 by every rseq pop (SLAB's `touched`); read by nobody here.
    touched: u32,
    /// `node` (the rcu sheaf's; unused).
    node: u32,
    /// `barn_list`: next sheaf on a barn list (LIFO).
    barn_next: *mut SlabSheaf,
    /// `cache`.
    cache: *const KmemCache,
}

const _: () = assert!(SHEAF_HEADER == 32);
const _: () = assert!(core::mem::offset_of!(SlabSheaf, size) == 0);
const _: () = assert!(core::mem::offset_of!(SlabSheaf, capacity) == 4);

/// Where a sheaf's fields lie for `array_pop` / `array_push`.
const SHEAF_LAYOUT: ArrayLayout = ArrayLayout {
    entries: SHEAF_HEADER,
    touched: core::mem::offset_of!(SlabSheaf, touched),
};

/// `objects[]` of a sheaf.
#[inline(always)]
fn objects(sheaf: *mut SlabSheaf) -> *mut usize {
    // SAFETY-free: address arithmetic; dereferenced by callers that own the sheaf.
    sheaf
        .cast::<u8>()
        .wrapping_add(SHEAF_HEADER)
        .cast::<usize>()
}

/// The zero-size `bootstrap_sheaf`: `main` of every CPU until the cache has sheaves (7.0's
/// debug and boot caches keep it forever). Its size equals its capacity (0), so the fast paths
/// go to the replace functions, which back off on `!cache_has_sheaves`. Never written.
struct BootstrapSheaf(UnsafeCell<SlabSheaf>);
// SAFETY: never written after construction (every path checks size/capacity first).
unsafe impl Sync for BootstrapSheaf {}
static BOOTSTRAP_SHEAF: BootstrapSheaf = BootstrapSheaf(UnsafeCell::new(SlabSheaf {
    size: 0,
    capacity: 0,
    touched: 0,
    node: 0,
    barn_next: core::ptr::null_mut(),
    cache: core::ptr::null(),
}));

fn bootstrap_sheaf() -> *mut SlabSheaf {
    BOOTSTRAP_SHEAF.0.get()
}

/// `struct slub_percpu_sheaves`: `lock`, `main`, `spare`, `rcu_free` (see the module header
/// for the lock).
#[repr(C)]
pub(crate) struct SlubPercpuSheaves {
    /// Lock mode: `cpu_sheaves->lock` is the workspace's one spinlock, only ever *tried* on the
    /// fast paths (it keeps the debug lock depth like every allocator lock). Unused in rseq
    /// mode.
    spin: RawSpinLock,
    /// rseq mode: `cpu_sheaves->lock` is `local_trylock_t` on restartable sequences
    /// (`common::rseq_lock`): its `acquired` word is also the `busy` word the hit sequences
    /// compare with 0, so no hit commits on `main` while anyone holds the lock. Unused (always
    /// 0) in lock mode.
    acquired: RseqLocalLock,
    main: UnsafeCell<*mut SlabSheaf>,
    spare: UnsafeCell<*mut SlabSheaf>,
    /// Always null: kfree_rcu sheaves are not ported.
    rcu_free: UnsafeCell<*mut SlabSheaf>,
    /// The slot's CPU.
    cpu: usize,
    /// rseq mode for this cache (fixed at creation).
    rseq: bool,
    /// A CPU with this id can exist (`cpu < sysconf(_SC_NPROCESSORS_CONF)`): fence it.
    fence: bool,
}

// SAFETY: the cells are read and written only by the holder of the lock.
unsafe impl Sync for SlubPercpuSheaves {}
// SAFETY: see Sync.
unsafe impl Send for SlubPercpuSheaves {}

impl SlubPercpuSheaves {
    fn new(cpu: usize, rseq: bool, nprocs_conf: usize) -> Self {
        Self {
            spin: RawSpinLock::new(),
            acquired: RseqLocalLock::new(),
            main: UnsafeCell::new(bootstrap_sheaf()),
            spare: UnsafeCell::new(core::ptr::null_mut()),
            rcu_free: UnsafeCell::new(core::ptr::null_mut()),
            cpu,
            rseq,
            fence: cpu < nprocs_conf,
        }
    }

    /// `local_trylock`: fails only when the lock is held (never spins). rseq mode: one
    /// sequence on the slot's CPU when we run there, else the remote form (cmpxchg, fence,
    /// re-check); lock mode: one `compare_exchange`.
    #[inline(always)]
    fn trylock(&self) -> Option<Pcs<'_>> {
        let ok = if self.rseq {
            self.acquired.try_lock(self.cpu, self.fence)
        } else {
            self.spin.try_lock()
        };
        // `then`, not `then_some`: a guard built eagerly would unlock on drop after a failure.
        ok.then(|| Pcs { pcs: self })
    }

    /// The rseq pop from `main` on `cpu` (this slot's CPU).
    #[inline(always)]
    fn rseq_pop(&self, t: &rseq::RseqThread) -> Result<usize, Fail> {
        // SAFETY: `main` is written only by sequences on `self.cpu` and by holders of the
        // lock, whose `acquired` word the sequence compares with 0 before loading `main`,
        // inside the section (`common::rseq_lock`: a local holder set it in a sequence on
        // `self.cpu`, a remote one fenced `self.cpu` after setting it); every sheaf `main`
        // names is valid for SHEAF_LAYOUT (the bootstrap sheaf too: size 0, capacity 0, so
        // neither primitive writes it).
        unsafe {
            t.array_pop(
                self.cpu,
                self.acquired.word(),
                self.main.get().cast(),
                SHEAF_LAYOUT,
            )
        }
    }

    /// The rseq push of `obj` on `main` on this slot's CPU.
    #[inline(always)]
    fn rseq_push(&self, t: &rseq::RseqThread, obj: usize) -> Result<(), Fail> {
        // SAFETY: as rseq_pop; `obj` is the caller's to give away.
        unsafe {
            t.array_push(
                self.cpu,
                self.acquired.word(),
                self.main.get().cast(),
                SHEAF_LAYOUT,
                obj,
            )
        }
    }

    /// `local_lock` (waits: only where the kernel may block or queues work on the CPU).
    fn lock(&self) -> Pcs<'_> {
        let mut spins = 0;
        loop {
            if let Some(g) = self.trylock() {
                return g;
            }
            relax(&mut spins);
        }
    }
}

/// A held `cpu_sheaves->lock` of one slot; unlocks on drop (`local_unlock`).
struct Pcs<'a> {
    pcs: &'a SlubPercpuSheaves,
}

impl Pcs<'_> {
    #[inline(always)]
    fn main(&self) -> *mut SlabSheaf {
        // SAFETY: the lock is held.
        unsafe { *self.pcs.main.get() }
    }
    #[inline(always)]
    fn set_main(&self, p: *mut SlabSheaf) {
        // SAFETY: the lock is held.
        unsafe { *self.pcs.main.get() = p }
    }
    #[inline(always)]
    fn spare(&self) -> *mut SlabSheaf {
        // SAFETY: the lock is held.
        unsafe { *self.pcs.spare.get() }
    }
    #[inline(always)]
    fn set_spare(&self, p: *mut SlabSheaf) {
        // SAFETY: the lock is held.
        unsafe { *self.pcs.spare.get() = p }
    }
    fn swap_main_spare(&self) {
        let m = self.main();
        self.set_main(self.spare());
        self.set_spare(m);
    }
}

impl Drop for Pcs<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        if self.pcs.rseq {
            // After every store of the critical section (release): a sequence that reads
            // `acquired == 0` reads the new main and its size too.
            self.pcs.acquired.unlock();
        } else {
            self.pcs.spin.unlock();
        }
    }
}

/// `sheaf->size` (the caller owns the sheaf or holds the lock it hangs from).
#[inline(always)]
fn size(sheaf: *mut SlabSheaf) -> usize {
    // SAFETY: sheaves handled here are live (provider memory or the static).
    unsafe { (*sheaf).size as usize }
}
#[inline(always)]
fn set_size(sheaf: *mut SlabSheaf, v: usize) {
    debug_assert!(sheaf != bootstrap_sheaf());
    // SAFETY: as `size`, and the caller has exclusive use of this sheaf.
    unsafe { (*sheaf).size = v as u32 }
}
#[inline(always)]
fn capacity(sheaf: *mut SlabSheaf) -> usize {
    // SAFETY: as `size`.
    unsafe { (*sheaf).capacity as usize }
}
#[inline(always)]
fn get_obj(sheaf: *mut SlabSheaf, i: usize) -> usize {
    debug_assert!(i < capacity(sheaf));
    // SAFETY: i < capacity: inside the sheaf's allocation.
    unsafe { objects(sheaf).add(i).read() }
}
#[inline(always)]
fn put_obj(sheaf: *mut SlabSheaf, i: usize, obj: usize) {
    debug_assert!(i < capacity(sheaf));
    // SAFETY: as get_obj; the caller has exclusive use of this sheaf.
    unsafe { objects(sheaf).add(i).write(obj) }
}
/// `objects[from..from + n]` as a slice (exclusive use of the sheaf).
fn objs_mut<'a>(sheaf: *mut SlabSheaf, from: usize, n: usize) -> &'a mut [usize] {
    debug_assert!(from + n <= capacity(sheaf));
    // SAFETY: inside the allocation; the caller owns the sheaf for the slice's use.
    unsafe { core::slice::from_raw_parts_mut(objects(sheaf).add(from), n) }
}

/// The barn lists (under `barn->lock`).
struct BarnLists {
    sheaves_full: *mut SlabSheaf,
    sheaves_empty: *mut SlabSheaf,
}
// SAFETY: the pointers name sheaves in provider memory; only followed under the lock.
unsafe impl Send for BarnLists {}

/// `struct node_barn`.
#[repr(C)]
pub(crate) struct NodeBarn {
    lock: SpinLock<BarnLists>,
    /// `nr_full`: written under `lock`, read racily.
    nr_full: AtomicUsize,
    /// `nr_empty`: written under `lock`, read racily.
    nr_empty: AtomicUsize,
}

fn push(list: &mut *mut SlabSheaf, sheaf: *mut SlabSheaf) {
    // SAFETY: a sheaf owned by the caller, being handed to the barn under its lock.
    unsafe { (*sheaf).barn_next = *list };
    *list = sheaf;
}
fn pop(list: &mut *mut SlabSheaf) -> *mut SlabSheaf {
    let s = *list;
    if !s.is_null() {
        // SAFETY: a sheaf on the barn list, under its lock.
        *list = unsafe { (*s).barn_next };
    }
    s
}

impl NodeBarn {
    fn nr_full(&self) -> usize {
        self.nr_full.load(Ordering::Relaxed)
    }
    fn nr_empty(&self) -> usize {
        self.nr_empty.load(Ordering::Relaxed)
    }
}

/// `barn_get_empty_sheaf`.
fn barn_get_empty_sheaf(barn: &NodeBarn) -> *mut SlabSheaf {
    if barn.nr_empty() == 0 {
        return core::ptr::null_mut();
    }
    let mut l = barn.lock.lock();
    let e = pop(&mut l.sheaves_empty);
    if !e.is_null() {
        barn.nr_empty.fetch_sub(1, Ordering::Relaxed);
    }
    e
}

/// `barn_put_empty_sheaf` (no limit check, as in the kernel).
fn barn_put_empty_sheaf(barn: &NodeBarn, sheaf: *mut SlabSheaf) {
    debug_assert_eq!(size(sheaf), 0);
    let mut l = barn.lock.lock();
    push(&mut l.sheaves_empty, sheaf);
    barn.nr_empty.fetch_add(1, Ordering::Relaxed);
}

/// `barn_put_full_sheaf` (no limit check, as in the kernel).
fn barn_put_full_sheaf(barn: &NodeBarn, sheaf: *mut SlabSheaf) {
    let mut l = barn.lock.lock();
    push(&mut l.sheaves_full, sheaf);
    barn.nr_full.fetch_add(1, Ordering::Relaxed);
}

/// `barn_get_full_or_empty_sheaf`.
fn barn_get_full_or_empty_sheaf(barn: &NodeBarn) -> *mut SlabSheaf {
    if barn.nr_full() == 0 && barn.nr_empty() == 0 {
        return core::ptr::null_mut();
    }
    let mut l = barn.lock.lock();
    let f = pop(&mut l.sheaves_full);
    if !f.is_null() {
        barn.nr_full.fetch_sub(1, Ordering::Relaxed);
        return f;
    }
    let e = pop(&mut l.sheaves_empty);
    if !e.is_null() {
        barn.nr_empty.fetch_sub(1, Ordering::Relaxed);
    }
    e
}

/// `barn_replace_empty_sheaf`: a full sheaf for `empty` (which joins the empty list, limit
/// ignored: the number of sheaves does not change), or null.
fn barn_replace_empty_sheaf(barn: &NodeBarn, empty: *mut SlabSheaf) -> *mut SlabSheaf {
    if barn.nr_full() == 0 {
        return core::ptr::null_mut();
    }
    let mut l = barn.lock.lock();
    let full = pop(&mut l.sheaves_full);
    if !full.is_null() {
        push(&mut l.sheaves_empty, empty);
        barn.nr_full.fetch_sub(1, Ordering::Relaxed);
        barn.nr_empty.fetch_add(1, Ordering::Relaxed);
    }
    full
}

/// Why `barn_replace_full_sheaf` gave no empty sheaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplaceFull {
    /// `-E2BIG`: the barn already holds `MAX_FULL_SHEAVES` full sheaves.
    TooBig,
    /// `-ENOMEM`: the barn has no empty sheaf.
    NoMem,
}

/// `barn_replace_full_sheaf`: an empty sheaf for `full`.
fn barn_replace_full_sheaf(
    barn: &NodeBarn,
    full: *mut SlabSheaf,
) -> Result<*mut SlabSheaf, ReplaceFull> {
    if barn.nr_full() >= MAX_FULL_SHEAVES {
        return Err(ReplaceFull::TooBig);
    }
    if barn.nr_empty() == 0 {
        return Err(ReplaceFull::NoMem);
    }
    let mut l = barn.lock.lock();
    let empty = pop(&mut l.sheaves_empty);
    if empty.is_null() {
        return Err(ReplaceFull::NoMem);
    }
    push(&mut l.sheaves_full, full);
    barn.nr_empty.fetch_sub(1, Ordering::Relaxed);
    barn.nr_full.fetch_add(1, Ordering::Relaxed);
    Ok(empty)
}

// ---------------------------------------------------------------------------------------------
// Sheaf memory: the allocator's own kmalloc, slab path only (the recursion guard)
// ---------------------------------------------------------------------------------------------

/// `kmalloc_size_roundup(n)`: the bucket a `kmalloc(n)` is served from.
pub(crate) fn kmalloc_size_roundup(n: usize) -> usize {
    if n <= KMALLOC_MAX_CACHE_SIZE {
        find_position(n.max(1)).map_or(n, |pos| common::sizes::slub::SIZES[pos])
    } else {
        PAGE_SIZE << common::provider::get_order(n)
    }
}

/// `calculate_sheaf_capacity()` (7.0): 4 / 12 / 26 / 60 by stride, raised so the sheaf fills
/// its kmalloc bucket, then at least the requested capacity; 0 for debug and
/// `SLAB_NOLEAKTRACE` caches (and the boot caches, which the caller skips).
pub fn calculate_sheaf_capacity(size: usize, flags: SlabFlags, requested: usize) -> usize {
    if flags.intersects(crate::debug::SLAB_DEBUG_FLAGS) || flags.contains(SlabFlags::NOLEAKTRACE) {
        return 0;
    }
    let capacity = if size >= PAGE_SIZE {
        4
    } else if size >= 1024 {
        12
    } else if size >= 256 {
        26
    } else {
        60
    };
    let bytes = kmalloc_size_roundup(SHEAF_HEADER + capacity * 8);
    ((bytes - SHEAF_HEADER) / 8).max(requested)
}

/// Memory for a sheaf or barn: `kmalloc_node` through the kmalloc cache's slab path (never
/// its sheaves), or whole pages above `KMALLOC_MAX_CACHE_SIZE`.
fn alloc_sheaf_mem(sl: &Slub, bytes: usize, gfp: Gfp, node: usize) -> Option<NonNull<u8>> {
    let gfp = Gfp(gfp.0 & !(Gfp::ZERO.0 | Gfp::NOWAIT.0));
    if bytes > KMALLOC_MAX_CACHE_SIZE {
        return crate::kmalloc::kmalloc_large_node(sl, bytes, gfp, node);
    }
    let kc = crate::kmalloc::kmalloc_slab(sl, bytes)?;
    let p = if kc.era_7_0 {
        let o = refill::___slab_alloc(sl, kc, gfp, node);
        if o == 0 {
            return None;
        }
        crate::hooks::slab_post_alloc_hook(kc, gfp, o);
        NonNull::new(o as *mut u8)?
    } else {
        // 6.18: kmalloc caches have no sheaves; this is the 6.4 path.
        debug_assert!(!kc.has_sheaves());
        crate::fastpath::slab_alloc_node(sl, kc, gfp, node)?
    };
    if kc.debug {
        crate::debug::kmalloc_debug_orig_size(kc, p.as_ptr() as usize, bytes);
    }
    Some(p)
}

/// Frees memory of [`alloc_sheaf_mem`] (slab path only).
fn free_sheaf_mem(sl: &Slub, p: *mut u8) {
    let addr = p as usize;
    let page = sl.provider.virt_to_head_page(addr).expect("sheaf memory");
    // SAFETY: a descriptor of the provider's mem_map.
    let pg = unsafe { page.as_ref() };
    let kc = pg.slab_cache.load(Ordering::Relaxed) as *const KmemCache;
    if !pg.is_slab() || kc.is_null() {
        // SAFETY: a large kmalloc block of ours, given up.
        let r = unsafe { crate::kmalloc::kfree(sl, p) };
        debug_assert!(r.is_ok(), "free sheaf memory: {r:?}");
        return;
    }
    // SAFETY: the slab's cache is a live kmalloc cache of this instance.
    let kc = unsafe { &*kc };
    // SAFETY: an object of kc we allocated, given up now.
    let r = unsafe {
        if kc.era_7_0 {
            if !kc.plain {
                crate::hooks::slab_free_freelist_hook(kc, addr, addr);
            }
            crate::slowpath::__slab_free(sl, kc, page, addr, addr, 1)
        } else {
            debug_assert!(!kc.has_sheaves());
            crate::fastpath::slab_free(sl, kc, page, addr)
        }
    };
    debug_assert!(r.is_ok(), "free sheaf memory: {r:?}");
}

/// `alloc_empty_sheaf` of `capacity` slots (SHEAF_ALLOC).
fn alloc_empty_sheaf_cap(sl: &Slub, s: &KmemCache, gfp: Gfp, capacity: usize) -> *mut SlabSheaf {
    let Some(p) = alloc_sheaf_mem(sl, SHEAF_HEADER + capacity * 8, gfp, NUMA_NO_NODE) else {
        return core::ptr::null_mut();
    };
    let sheaf = p.as_ptr().cast::<SlabSheaf>();
    // SAFETY: fresh memory of the right size and (8-byte) alignment, ours alone.
    unsafe {
        sheaf.write(SlabSheaf {
            size: 0,
            capacity: capacity as u32,
            touched: 0,
            node: 0,
            barn_next: core::ptr::null_mut(),
            cache: core::ptr::from_ref(s),
        });
    }
    s.stat(SHEAF_ALLOC);
    sheaf
}

/// `alloc_empty_sheaf` (`s->sheaf_capacity` slots).
fn alloc_empty_sheaf(sl: &Slub, s: &KmemCache, gfp: Gfp) -> *mut SlabSheaf {
    alloc_empty_sheaf_cap(sl, s, gfp, sheaf_capacity(s))
}

/// `free_empty_sheaf` (SHEAF_FREE).
fn free_empty_sheaf(sl: &Slub, s: &KmemCache, sheaf: *mut SlabSheaf) {
    debug_assert_eq!(size(sheaf), 0);
    debug_assert!(sheaf != bootstrap_sheaf());
    s.stat(SHEAF_FREE);
    free_sheaf_mem(sl, sheaf.cast());
}

/// What `kmem_cache.sheaves` points to: `cpu_sheaves` and `sheaf_capacity` (kmalloc'ed, or
/// the static [`NO_SHEAVES`] for 7.0 caches that have none).
pub(crate) struct CacheSheaves {
    /// `cpu_sheaves` (None only in `NO_SHEAVES`).
    pcs: Option<PerCpu<SlubPercpuSheaves>>,
    /// `sheaf_capacity` (0: no sheaves). Published (Release) only after every CPU has a real
    /// `main` (the kmalloc caches of 7.0 get theirs after bootstrap).
    sheaf_capacity: AtomicUsize,
}

/// The 7.0 boot and debug caches (and the kmalloc caches until their bootstrap step): every
/// path through sheaves backs off to the slab path at once, like the kernel's
/// `bootstrap_sheaf`.
static NO_SHEAVES: CacheSheaves = CacheSheaves {
    pcs: None,
    sheaf_capacity: AtomicUsize::new(0),
};

impl KmemCache {
    /// The cache takes the sheaf paths (`sheaf.rs`): 6.18 with sheaves, every 7.0 cache.
    #[inline(always)]
    pub(crate) fn has_sheaves(&self) -> bool {
        !self.sheaves.load(Ordering::Acquire).is_null()
    }
}

/// `s->sheaves` of a cache that [`KmemCache::has_sheaves`].
#[inline(always)]
fn sheaves(s: &KmemCache) -> &CacheSheaves {
    let p = s.sheaves.load(Ordering::Acquire);
    debug_assert!(!p.is_null());
    // SAFETY: published after initialisation; freed only when the cache is released (nobody
    // uses it any more).
    unsafe { &*p }
}

/// `s->sheaf_capacity` (0 for a cache without sheaves).
#[inline(always)]
pub(crate) fn sheaf_capacity(s: &KmemCache) -> usize {
    let p = s.sheaves.load(Ordering::Acquire);
    if p.is_null() {
        return 0;
    }
    // SAFETY: as `sheaves`.
    unsafe { &*p }.sheaf_capacity.load(Ordering::Acquire)
}

/// `cache_has_sheaves(s)`.
#[inline(always)]
fn cache_has_sheaves(s: &KmemCache) -> bool {
    sheaf_capacity(s) != 0
}

/// `get_barn(s)`: the barn of the node we run on.
#[inline]
fn get_barn(s: &KmemCache) -> Option<&NodeBarn> {
    get_barn_node(s, crate::slowpath::numa_mem_id(s))
}

fn get_barn_node(s: &KmemCache, node: usize) -> Option<&NodeBarn> {
    let b = s.get_node(node).barn.load(Ordering::Acquire);
    // SAFETY: barns live from install_sheaves until free_cache_sheaves (cache destruction).
    (!b.is_null()).then(|| unsafe { &*b })
}

#[inline(always)]
fn pcs_of(s: &KmemCache) -> &PerCpu<SlubPercpuSheaves> {
    sheaves(s).pcs.as_ref().expect("a cache with cpu_sheaves")
}

/// `cpu_sheaves`, if the cache has any.
#[inline(always)]
fn pcs_opt(s: &KmemCache) -> Option<&PerCpu<SlubPercpuSheaves>> {
    let p = s.sheaves.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: as `sheaves`.
    unsafe { &*p }.pcs.as_ref()
}

/// `this_cpu_ptr(s->cpu_sheaves)`.
#[inline(always)]
fn this_pcs(s: &KmemCache) -> &SlubPercpuSheaves {
    pcs_of(s).get(cpu_id())
}

// ---------------------------------------------------------------------------------------------
// Slab-level refill and flush (the pcs lock is never held here)
// ---------------------------------------------------------------------------------------------

/// `__kmem_cache_alloc_bulk` of the era: all `out.len()` objects or none (returns 0).
fn __kmem_cache_alloc_bulk(sl: &Slub, s: &KmemCache, gfp: Gfp, out: &mut [usize]) -> usize {
    if out.is_empty() {
        return 0;
    }
    if s.era_7_0 {
        let got = refill::refill_objects(sl, s, gfp, out, out.len());
        if got < out.len() {
            // SAFETY: just allocated, unused.
            unsafe { refill::free_objects_to_slabs(sl, s, &out[..got]) };
            return 0;
        }
        got
    } else {
        crate::fastpath::__kmem_cache_alloc_bulk(sl, s, gfp, out)
    }
}

/// `__kmem_cache_free_bulk` of the era (no free hooks: sheaf objects already ran them).
///
/// # Safety
/// Each entry is a distinct allocated object of `s` (or 0), unused after the call.
unsafe fn __kmem_cache_free_bulk(sl: &Slub, s: &KmemCache, objs: &mut [usize]) {
    // SAFETY: forwarded.
    unsafe {
        if s.era_7_0 {
            refill::free_objects_to_slabs(sl, s, objs);
        } else {
            crate::fastpath::__kmem_cache_free_bulk(sl, s, objs);
        }
    }
}

/// `refill_sheaf`: fills the sheaf to its capacity; `Err` (nothing added) when out of memory.
fn refill_sheaf(sl: &Slub, s: &KmemCache, sheaf: *mut SlabSheaf, gfp: Gfp) -> Result<(), ()> {
    let sz = size(sheaf);
    let to_fill = capacity(sheaf) - sz;
    if to_fill == 0 {
        return Ok(());
    }
    let gfp = Gfp(gfp.0 & !(Gfp::ZERO.0 | Gfp::NOWAIT.0));
    let filled = __kmem_cache_alloc_bulk(sl, s, gfp, objs_mut(sheaf, sz, to_fill));
    if filled == 0 {
        return Err(());
    }
    set_size(sheaf, sz + filled);
    s.stats.add(SHEAF_REFILL as usize, filled as u64);
    Ok(())
}

/// `sheaf_flush_unused`: every object of a sheaf nobody else sees back to its slab.
fn sheaf_flush_unused(sl: &Slub, s: &KmemCache, sheaf: *mut SlabSheaf) {
    let n = size(sheaf);
    if n == 0 {
        return;
    }
    // SAFETY: the sheaf's objects are allocated objects of s owned by the sheaf.
    unsafe { __kmem_cache_free_bulk(sl, s, objs_mut(sheaf, 0, n)) };
    set_size(sheaf, 0);
    s.stats.add(SHEAF_FLUSH as usize, n as u64);
}

/// `sheaf_flush_main` of one CPU slot: moves up to `PCS_BATCH_MAX` pointers off `main` under
/// the lock (try, or wait with `wait`), frees them outside it, until `main` is empty. Returns
/// whether anything was flushed.
fn sheaf_flush_main_slot(sl: &Slub, s: &KmemCache, pcs: &SlubPercpuSheaves, wait: bool) -> bool {
    let mut ret = false;
    loop {
        let g = if wait {
            pcs.lock()
        } else {
            match pcs.trylock() {
                Some(g) => g,
                None => return ret,
            }
        };
        let main = g.main();
        let sz = size(main);
        let batch = sz.min(PCS_BATCH_MAX);
        if batch == 0 {
            return ret;
        }
        let mut buf = [0usize; PCS_BATCH_MAX];
        for (i, b) in buf[..batch].iter_mut().enumerate() {
            *b = get_obj(main, sz - batch + i);
        }
        set_size(main, sz - batch);
        let remaining = sz - batch;
        drop(g);
        // SAFETY: the objects were taken off the sheaf under its lock: ours alone.
        unsafe { __kmem_cache_free_bulk(sl, s, &mut buf[..batch]) };
        s.stats.add(SHEAF_FLUSH as usize, batch as u64);
        ret = true;
        if remaining == 0 {
            return ret;
        }
    }
}

/// `sheaf_try_flush_main` (this CPU, trylock).
fn sheaf_try_flush_main(sl: &Slub, s: &KmemCache) -> bool {
    sheaf_flush_main_slot(sl, s, this_pcs(s), false)
}

// ---------------------------------------------------------------------------------------------
// The allocation ladder
// ---------------------------------------------------------------------------------------------

/// May the allocation block? 6.18 refills only for blocking gfps (`gfpflags_allow_blocking`);
/// 7.x for any that may spin, which is every one in user space.
#[inline]
fn allow_refill(s: &KmemCache, gfp: Gfp) -> bool {
    s.era_7_0 || !gfp.contains(Gfp::NOWAIT)
}

/// `__pcs_replace_empty_main`: with the lock held and `main` empty, makes `main` a sheaf with
/// objects (locked, possibly another CPU's slot) or returns `None` unlocked.
#[cold]
#[inline(never)]
fn __pcs_replace_empty_main<'a>(
    sl: &Slub,
    s: &'a KmemCache,
    g: Pcs<'a>,
    gfp: Gfp,
) -> Option<Pcs<'a>> {
    // Bootstrap or debug cache: back off.
    if !cache_has_sheaves(s) {
        return None;
    }
    // (1) The spare has objects: swap.
    let spare = g.spare();
    if !spare.is_null() && size(spare) > 0 {
        g.swap_main_spare();
        return Some(g);
    }
    let barn = get_barn(s)?;
    // (2) A full sheaf from the barn for our empty main.
    let full = barn_replace_empty_sheaf(barn, g.main());
    if !full.is_null() {
        s.stat(BARN_GET);
        g.set_main(full);
        return Some(g);
    }
    s.stat(BARN_GET_FAIL);
    // (3) Only if the gfp allows it: refill an empty sheaf with the lock dropped.
    if !allow_refill(s, gfp) {
        return None;
    }
    let mut empty = g.spare();
    if !empty.is_null() {
        g.set_spare(core::ptr::null_mut());
    } else {
        empty = barn_get_empty_sheaf(barn);
    }
    drop(g);
    if empty.is_null() {
        empty = alloc_empty_sheaf(sl, s, gfp);
        if empty.is_null() {
            return None;
        }
    }
    if refill_sheaf(sl, s, empty, gfp).is_err() {
        // Very low on memory: do not bother with the barn.
        sheaf_flush_unused(sl, s, empty);
        free_empty_sheaf(sl, s, empty);
        return None;
    }
    let full = empty;
    // Relock — maybe on another CPU — and re-examine everything. Sheaves put in the barn here
    // (a race or a migration) ignore its limits, as in the kernel.
    let pcs = this_pcs(s);
    let Some(g) = pcs.trylock() else {
        barn_put_full_sheaf(barn, full);
        s.stat(BARN_PUT);
        return None;
    };
    let main = g.main();
    if size(main) == 0 {
        if g.spare().is_null() {
            g.set_spare(main);
        } else if main != bootstrap_sheaf() {
            barn_put_empty_sheaf(barn, main);
        }
        g.set_main(full);
        return Some(g);
    }
    let spare = g.spare();
    if spare.is_null() {
        g.set_spare(full);
        return Some(g);
    }
    if size(spare) == 0 {
        barn_put_empty_sheaf(barn, spare);
        g.set_spare(full);
        return Some(g);
    }
    barn_put_full_sheaf(barn, full);
    s.stat(BARN_PUT);
    Some(g)
}

/// `alloc_from_pcs`: an object from this CPU's sheaves, or 0 (the caller takes the slab path).
#[inline(always)]
pub(crate) fn alloc_from_pcs(sl: &Slub, s: &KmemCache, gfp: Gfp, node: usize) -> usize {
    let node_requested = node != NUMA_NO_NODE;
    // Sheaves hold (mostly) local objects: a request for another node goes to the slabs.
    if node_requested && node != crate::slowpath::numa_mem_id(s) {
        s.stat(ALLOC_NODE_MISMATCH);
        return 0;
    }
    let Some(pcs) = pcs_opt(s) else {
        return 0;
    };
    if !node_requested && pcs.get(0).rseq {
        // rseq mode: one sequence on this CPU's main sheaf, no lock (see the module header).
        if let Some(t) = rseq::this_thread() {
            loop {
                let cpu = t.cpu();
                if cpu >= pcs.len() {
                    break;
                }
                match pcs.get(cpu).rseq_pop(&t) {
                    Ok(object) => {
                        s.stat(if s.era_7_0 { ALLOC_FASTPATH } else { ALLOC_PCS });
                        return object;
                    }
                    Err(Fail::Aborted | Fail::WrongCpu) => {}
                    Err(_) => break,
                }
            }
        }
    }
    alloc_from_pcs_locked(sl, s, pcs, gfp, node)
}

/// `alloc_from_pcs` under the slot lock (lock mode; rseq mode when main is empty or busy, or
/// for a node-specific request, whose popped object must be checked before it is taken).
#[inline(never)]
fn alloc_from_pcs_locked(
    sl: &Slub,
    s: &KmemCache,
    pcs: &PerCpu<SlubPercpuSheaves>,
    gfp: Gfp,
    node: usize,
) -> usize {
    let node_requested = node != NUMA_NO_NODE;
    let Some(mut g) = pcs.get(cpu_id()).trylock() else {
        return 0;
    };
    if size(g.main()) == 0 {
        match __pcs_replace_empty_main(sl, s, g, gfp) {
            Some(ng) => g = ng,
            None => return 0,
        }
    }
    let main = g.main();
    let sz = size(main);
    let object = get_obj(main, sz - 1);
    if node_requested && crate::slowpath::slab_nid(s, page_of(s, object)) != node {
        // A migration during an unlocked part of this or an earlier operation.
        drop(g);
        s.stat(ALLOC_NODE_MISMATCH);
        return 0;
    }
    set_size(main, sz - 1);
    drop(g);
    s.stat(if s.era_7_0 { ALLOC_FASTPATH } else { ALLOC_PCS });
    object
}

/// The head page (slab) of an object held by a sheaf.
#[inline(always)]
fn page_of(s: &KmemCache, object: usize) -> *mut Page {
    s.provider
        .virt_to_head_page(object)
        .expect("sheaf objects are slab objects")
        .as_ptr()
}

/// `slab_alloc_node` for a cache with `cpu_sheaves`: `alloc_from_pcs`, then the era's slab
/// path (6.18: the 6.4 CPU-slab path; 7.0: `refill.rs`). Post-alloc hooks are the caller's.
#[inline(always)]
pub(crate) fn slab_alloc_node(sl: &Slub, s: &KmemCache, gfp: Gfp, node: usize) -> Option<usize> {
    let o = alloc_from_pcs(sl, s, gfp, node);
    if o != 0 {
        return Some(o);
    }
    slab_alloc_slow(sl, s, gfp, node)
}

#[cold]
#[inline(never)]
fn slab_alloc_slow(sl: &Slub, s: &KmemCache, gfp: Gfp, node: usize) -> Option<usize> {
    if s.era_7_0 {
        let o = refill::___slab_alloc(sl, s, gfp, node);
        (o != 0).then_some(o)
    } else {
        crate::fastpath::slab_alloc_node_6_4(sl, s, gfp, node)
    }
}

// ---------------------------------------------------------------------------------------------
// The free ladder
// ---------------------------------------------------------------------------------------------

/// `__pcs_install_empty_sheaf`: with the lock held (possibly another slot than before), puts
/// the empty sheaf we obtained with the lock dropped where it belongs.
fn __pcs_install_empty_sheaf(g: &Pcs<'_>, s: &KmemCache, empty: *mut SlabSheaf, barn: &NodeBarn) {
    // What we expect if nobody interrupted us.
    if g.spare().is_null() {
        g.set_spare(g.main());
        g.set_main(empty);
        return;
    }
    let main = g.main();
    // The main sheaf has room after all: give our empty one to the barn.
    if size(main) < capacity(main) {
        barn_put_empty_sheaf(barn, empty);
        return;
    }
    if size(g.spare()) < capacity(g.spare()) {
        g.swap_main_spare();
        barn_put_empty_sheaf(barn, empty);
        return;
    }
    // We failed barn_replace_full_sheaf for lack of an empty sheaf but made one: finish.
    barn_put_full_sheaf(barn, main);
    s.stat(BARN_PUT);
    g.set_main(empty);
}

/// `__pcs_replace_full_main`: with the lock held and `main` full, makes room (locked,
/// possibly another slot) or returns `None` unlocked.
#[cold]
#[inline(never)]
fn __pcs_replace_full_main<'a>(sl: &Slub, s: &'a KmemCache, mut g: Pcs<'a>) -> Option<Pcs<'a>> {
    loop {
        // Bootstrap or debug cache: back off.
        if !cache_has_sheaves(s) {
            return None;
        }
        let barn = get_barn(s)?;
        let mut put_fail = false;
        let empty;
        'alloc: {
            // (1) No spare: an empty sheaf from the barn, main becomes the spare.
            if g.spare().is_null() {
                let e = barn_get_empty_sheaf(barn);
                if !e.is_null() {
                    g.set_spare(g.main());
                    g.set_main(e);
                    return Some(g);
                }
                break 'alloc;
            }
            // (2) The spare has room: swap.
            if size(g.spare()) < capacity(g.spare()) {
                g.swap_main_spare();
                return Some(g);
            }
            // (3) Both full: trade main for an empty sheaf of the barn.
            match barn_replace_full_sheaf(barn, g.main()) {
                Ok(e) => {
                    s.stat(BARN_PUT);
                    g.set_main(e);
                    return Some(g);
                }
                Err(ReplaceFull::TooBig) => {
                    // The barn is at MAX_FULL_SHEAVES: flush the full spare to the slabs and
                    // reuse it as the empty sheaf.
                    s.stat(BARN_PUT_FAIL);
                    let to_flush = g.spare();
                    g.set_spare(core::ptr::null_mut());
                    drop(g);
                    sheaf_flush_unused(sl, s, to_flush);
                    empty = to_flush;
                    let Some(ng) = this_pcs(s).trylock() else {
                        barn_put_empty_sheaf(barn, empty);
                        return None;
                    };
                    __pcs_install_empty_sheaf(&ng, s, empty, barn);
                    return Some(ng);
                }
                Err(ReplaceFull::NoMem) => put_fail = true,
            }
        }
        // alloc_empty: a new empty sheaf without blocking (GFP_NOWAIT).
        drop(g);
        let e = alloc_empty_sheaf(sl, s, Gfp::NOWAIT);
        if !e.is_null() {
            let Some(ng) = this_pcs(s).trylock() else {
                barn_put_empty_sheaf(barn, e);
                return None;
            };
            __pcs_install_empty_sheaf(&ng, s, e, barn);
            return Some(ng);
        }
        if put_fail {
            s.stat(BARN_PUT_FAIL);
        }
        // (4) Out of memory for sheaves: flush main to the slabs in batches.
        if !sheaf_try_flush_main(sl, s) {
            return None;
        }
        let ng = this_pcs(s).trylock()?;
        // Flushed, but we may have been migrated or raced: check again.
        if size(ng.main()) == capacity(ng.main()) {
            g = ng;
            continue;
        }
        return Some(ng);
    }
}

/// What `free_to_pcs` did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PcsFree {
    Done,
    Fallback,
    DoubleFree,
}

/// `free_to_pcs`: pushes `object` (hooks already run) on this CPU's main sheaf.
#[inline(always)]
fn free_to_pcs(sl: &Slub, s: &KmemCache, object: usize) -> PcsFree {
    let Some(pcs) = pcs_opt(s) else {
        return PcsFree::Fallback;
    };
    if pcs.get(0).rseq {
        // rseq mode: one sequence on this CPU's main sheaf (the caller checked the object's
        // node against this CPU's; a migration since aborts the sequence: WrongCpu).
        if let Some(t) = rseq::this_thread() {
            loop {
                let cpu = t.cpu();
                if cpu >= pcs.len() {
                    break;
                }
                match pcs.get(cpu).rseq_push(&t, object) {
                    Ok(()) => {
                        s.stat(if s.era_7_0 { FREE_FASTPATH } else { FREE_PCS });
                        return PcsFree::Done;
                    }
                    Err(Fail::DoubleFree) => return PcsFree::DoubleFree,
                    Err(Fail::Aborted) => {}
                    Err(_) => break,
                }
            }
        }
    }
    free_to_pcs_locked(sl, s, pcs, object)
}

/// `free_to_pcs` under the slot lock (lock mode; rseq mode when main is full or busy).
#[inline(never)]
fn free_to_pcs_locked(
    sl: &Slub,
    s: &KmemCache,
    pcs: &PerCpu<SlubPercpuSheaves>,
    object: usize,
) -> PcsFree {
    let Some(mut g) = pcs.get(cpu_id()).trylock() else {
        return PcsFree::Fallback;
    };
    let mut main = g.main();
    let sz = size(main);
    // The naive double-free check (the freelist-head compare of 6.4, on the sheaf's top).
    if sz > 0 && get_obj(main, sz - 1) == object {
        return PcsFree::DoubleFree;
    }
    if sz == capacity(main) {
        match __pcs_replace_full_main(sl, s, g) {
            Some(ng) => g = ng,
            None => return PcsFree::Fallback,
        }
        main = g.main();
    }
    let sz = size(main);
    put_obj(main, sz, object);
    set_size(main, sz + 1);
    drop(g);
    s.stat(if s.era_7_0 { FREE_FASTPATH } else { FREE_PCS });
    PcsFree::Done
}

/// `can_free_to_pcs`: only objects of the node we run on go to the sheaves.
#[inline(always)]
fn can_free_to_pcs(s: &KmemCache, slab: NonNull<Page>) -> bool {
    // One node: every object is local (saves the CPU id and topology lookups).
    s.nr_nodes == 1
        || crate::slowpath::slab_nid(s, slab.as_ptr()) == crate::slowpath::numa_mem_id(s)
}

/// `slab_free` for a cache with `cpu_sheaves`: free hooks, then `free_to_pcs` for local
/// objects, else (or when it fails) the era's slab free.
///
/// # Safety
/// `object` is an allocated object of `slab`, a slab of `s`, not used after the call.
#[inline(always)]
pub(crate) unsafe fn slab_free(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    object: usize,
) -> Result<(), SlabError> {
    if !s.plain {
        // SAFETY: per the caller (a one-object chain).
        unsafe { crate::hooks::slab_free_freelist_hook(s, object, object) };
    }
    if can_free_to_pcs(s, slab) {
        match free_to_pcs(sl, s, object) {
            PcsFree::Done => return Ok(()),
            PcsFree::DoubleFree => return Err(SlabError::DoubleFree(object)),
            PcsFree::Fallback => {}
        }
    }
    // SAFETY: forwarded.
    unsafe { slab_free_slow(sl, s, slab, object) }
}

/// # Safety
/// As [`slab_free`], hooks already run.
#[cold]
#[inline(never)]
unsafe fn slab_free_slow(
    sl: &Slub,
    s: &KmemCache,
    slab: NonNull<Page>,
    object: usize,
) -> Result<(), SlabError> {
    // SAFETY: forwarded.
    unsafe {
        if s.era_7_0 {
            crate::slowpath::__slab_free(sl, s, slab, object, object, 1)
        } else {
            crate::fastpath::do_slab_free(sl, s, slab, object, object, 1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bulk
// ---------------------------------------------------------------------------------------------

/// `alloc_from_pcs_bulk`: copies from main, swaps in the spare or a full barn sheaf; stops when
/// the barn has none (the rest comes from slabs). Returns how many were taken.
fn alloc_from_pcs_bulk(s: &KmemCache, p: &mut [usize]) -> usize {
    let mut allocated = 0;
    if pcs_opt(s).is_none() {
        return 0;
    }
    while allocated < p.len() {
        let Some(g) = this_pcs(s).trylock() else {
            return allocated;
        };
        if size(g.main()) == 0 {
            if !cache_has_sheaves(s) {
                return allocated;
            }
            let spare = g.spare();
            if !spare.is_null() && size(spare) > 0 {
                g.swap_main_spare();
            } else {
                let Some(barn) = get_barn(s) else {
                    return allocated;
                };
                let full = barn_replace_empty_sheaf(barn, g.main());
                if full.is_null() {
                    s.stat(BARN_GET_FAIL);
                    return allocated;
                }
                s.stat(BARN_GET);
                g.set_main(full);
            }
        }
        let main = g.main();
        let sz = size(main);
        let batch = (p.len() - allocated).min(sz);
        for (i, slot) in p[allocated..allocated + batch].iter_mut().enumerate() {
            *slot = get_obj(main, sz - batch + i);
        }
        set_size(main, sz - batch);
        drop(g);
        s.stats.add(
            if s.era_7_0 { ALLOC_FASTPATH } else { ALLOC_PCS } as usize,
            batch as u64,
        );
        allocated += batch;
    }
    allocated
}

/// `kmem_cache_alloc_bulk` with sheaves: all `p.len()` objects or 0 (nothing kept).
pub(crate) fn kmem_cache_alloc_bulk(sl: &Slub, s: &KmemCache, gfp: Gfp, p: &mut [usize]) -> usize {
    let got = alloc_from_pcs_bulk(s, p);
    if got < p.len() {
        let rest = &mut p[got..];
        let n = if s.era_7_0 {
            __kmem_cache_alloc_bulk(sl, s, gfp, rest)
        } else {
            // The 6.4 bulk path runs the post-alloc hooks itself; run ours on the sheaf part
            // only.
            let n = crate::fastpath::__kmem_cache_alloc_bulk(sl, s, gfp, rest);
            if n != 0 {
                crate::hooks::slab_post_alloc_hook_bulk(s, gfp, &p[..got]);
                return p.len();
            }
            0
        };
        if n == 0 {
            // SAFETY: p[..got] came from our sheaves just now, unused.
            unsafe { __kmem_cache_free_bulk(sl, s, &mut p[..got]) };
            return 0;
        }
    }
    crate::hooks::slab_post_alloc_hook_bulk(s, gfp, p);
    p.len()
}

/// `free_to_pcs_bulk`: hooks, remote objects gathered `PCS_BATCH_MAX` at a time and freed to
/// their slabs, local ones copied into main (swapping with the spare or the barn) while it
/// lasts, the rest to the slabs.
///
/// # Safety
/// Every entry of `p` is a distinct allocated object of `s` (or 0), unused after the call.
pub(crate) unsafe fn free_to_pcs_bulk(sl: &Slub, s: &KmemCache, p: &mut [usize]) {
    let mut remote = [0usize; PCS_BATCH_MAX];
    let mut remote_nr = 0;
    let mut local = 0;
    // Hooks and the node split: local objects are compacted to the front of p.
    for i in 0..p.len() {
        let o = p[i];
        if o == 0 {
            continue;
        }
        if !s.plain {
            // SAFETY: per the caller.
            unsafe { crate::hooks::slab_free_freelist_hook(s, o, o) };
        }
        let slab = sl.provider.virt_to_head_page(o).expect("checked object");
        if can_free_to_pcs(s, slab) {
            p[local] = o;
            local += 1;
        } else {
            remote[remote_nr] = o;
            remote_nr += 1;
            if remote_nr == PCS_BATCH_MAX {
                // SAFETY: ours to free.
                unsafe { __kmem_cache_free_bulk(sl, s, &mut remote[..remote_nr]) };
                remote_nr = 0;
            }
        }
    }
    let mut done = 0;
    while done < local && pcs_opt(s).is_some() {
        let Some(g) = this_pcs(s).trylock() else {
            break;
        };
        let mut main = g.main();
        if size(main) == capacity(main) {
            if !cache_has_sheaves(s) {
                break;
            }
            let Some(barn) = get_barn(s) else {
                break;
            };
            if g.spare().is_null() {
                let e = barn_get_empty_sheaf(barn);
                if e.is_null() {
                    break;
                }
                g.set_spare(main);
                g.set_main(e);
            } else if size(g.spare()) < capacity(g.spare()) {
                g.swap_main_spare();
            } else {
                let Ok(e) = barn_replace_full_sheaf(barn, main) else {
                    s.stat(BARN_PUT_FAIL);
                    break;
                };
                s.stat(BARN_PUT);
                g.set_main(e);
            }
            main = g.main();
        }
        let sz = size(main);
        let batch = (local - done).min(capacity(main) - sz);
        for (i, &o) in p[done..done + batch].iter().enumerate() {
            put_obj(main, sz + i, o);
        }
        set_size(main, sz + batch);
        drop(g);
        s.stats.add(
            if s.era_7_0 { FREE_FASTPATH } else { FREE_PCS } as usize,
            batch as u64,
        );
        done += batch;
    }
    if done < local {
        // No empty sheaf in the barn, or too many full ones: the rest to the slabs.
        // SAFETY: ours to free.
        unsafe { __kmem_cache_free_bulk(sl, s, &mut p[done..local]) };
    }
    if remote_nr > 0 {
        // SAFETY: ours to free.
        unsafe { __kmem_cache_free_bulk(sl, s, &mut remote[..remote_nr]) };
    }
}

// ---------------------------------------------------------------------------------------------
// Flushing, shrinking, creation and destruction
// ---------------------------------------------------------------------------------------------

/// `pcs_flush_all` of one CPU slot (the kernel runs it on that CPU from a work item; here the
/// slot is locked from wherever we are): the spare and main go straight to the slabs.
fn __pcs_flush_all_cpu(sl: &Slub, s: &KmemCache, pcs: &SlubPercpuSheaves) {
    let spare = {
        let g = pcs.lock();
        let sp = g.spare();
        g.set_spare(core::ptr::null_mut());
        sp
    };
    if !spare.is_null() {
        sheaf_flush_unused(sl, s, spare);
        free_empty_sheaf(sl, s, spare);
    }
    sheaf_flush_main_slot(sl, s, pcs, true);
}

/// `pcs_flush_all` on every CPU (`flush_all` of a cache with sheaves).
pub(crate) fn pcs_flush_all(sl: &Slub, s: &KmemCache) {
    if let Some(pcs) = pcs_opt(s) {
        for (_, p) in pcs.iter() {
            __pcs_flush_all_cpu(sl, s, p);
        }
    }
}

/// `barn_shrink`: every full sheaf flushed, every sheaf of the barn freed.
fn barn_shrink(sl: &Slub, s: &KmemCache, barn: &NodeBarn) {
    let (mut full, mut empty) = {
        let mut l = barn.lock.lock();
        let f = core::mem::replace(&mut l.sheaves_full, core::ptr::null_mut());
        let e = core::mem::replace(&mut l.sheaves_empty, core::ptr::null_mut());
        barn.nr_full.store(0, Ordering::Relaxed);
        barn.nr_empty.store(0, Ordering::Relaxed);
        (f, e)
    };
    loop {
        let sh = pop(&mut full);
        if sh.is_null() {
            break;
        }
        sheaf_flush_unused(sl, s, sh);
        free_empty_sheaf(sl, s, sh);
    }
    loop {
        let sh = pop(&mut empty);
        if sh.is_null() {
            break;
        }
        free_empty_sheaf(sl, s, sh);
    }
}

/// Shrink and destroy (`__kmem_cache_shrink`, `__kmem_cache_shutdown`): `pcs_flush_all` and
/// `barn_shrink` of every node. The cache keeps its `main` sheaves and barns.
pub(crate) fn flush_all_sheaves(sl: &Slub, s: &KmemCache) {
    if pcs_opt(s).is_none() {
        return;
    }
    pcs_flush_all(sl, s);
    for node in 0..s.nr_nodes {
        if let Some(b) = get_barn_node(s, node) {
            barn_shrink(sl, s, b);
        }
    }
}

/// Gives back every sheaf and barn of a cache nobody uses any more (`kmem_cache_release`,
/// instance teardown). `main` returns to the bootstrap sheaf; `sheaf_capacity` to 0.
pub(crate) fn free_cache_sheaves(sl: &Slub, s: &KmemCache) {
    let Some(pcs) = pcs_opt(s) else {
        return;
    };
    sheaves(s).sheaf_capacity.store(0, Ordering::Release);
    for (_, p) in pcs.iter() {
        let (main, spare) = {
            let g = p.lock();
            let m = g.main();
            let sp = g.spare();
            g.set_main(bootstrap_sheaf());
            g.set_spare(core::ptr::null_mut());
            (m, sp)
        };
        for sh in [main, spare] {
            if !sh.is_null() && sh != bootstrap_sheaf() {
                sheaf_flush_unused(sl, s, sh);
                free_empty_sheaf(sl, s, sh);
            }
        }
    }
    for node in 0..s.nr_nodes {
        if let Some(b) = get_barn_node(s, node) {
            barn_shrink(sl, s, b);
            s.get_node(node)
                .barn
                .store(core::ptr::null_mut(), Ordering::Release);
            free_sheaf_mem(sl, core::ptr::from_ref(b).cast_mut().cast());
        }
    }
    // The structure itself (its PerCpu area too).
    let p = s.sheaves.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if s.era_7_0 {
        s.sheaves.store(
            core::ptr::from_ref(&NO_SHEAVES).cast_mut(),
            Ordering::Release,
        );
    }
    // SAFETY: a kmalloc'ed CacheSheaves (pcs was Some), unpublished just now and unused: drop
    // it in place (frees the per-CPU area), then give the memory back.
    unsafe { core::ptr::drop_in_place(p) };
    free_sheaf_mem(sl, p.cast());
}

/// Barns on every node and an empty `main` on every CPU, then `sheaf_capacity` published
/// (`init_percpu_sheaves` + the barn part of `init_kmem_cache_nodes`). On failure everything
/// taken is given back and the cache stays without sheaves.
fn install_sheaves(sl: &Slub, s: &KmemCache, capacity: usize) -> Result<(), SlabError> {
    let pcs = pcs_of(s);
    let mut ok = true;
    for node in 0..s.nr_nodes {
        let Some(p) = alloc_sheaf_mem(sl, core::mem::size_of::<NodeBarn>(), Gfp::KERNEL, node)
        else {
            ok = false;
            break;
        };
        let b = p.as_ptr().cast::<NodeBarn>();
        // SAFETY: fresh kmalloc memory sized and aligned (8) for a NodeBarn, ours alone.
        unsafe {
            b.write(NodeBarn {
                lock: SpinLock::new(BarnLists {
                    sheaves_full: core::ptr::null_mut(),
                    sheaves_empty: core::ptr::null_mut(),
                }),
                nr_full: AtomicUsize::new(0),
                nr_empty: AtomicUsize::new(0),
            });
        }
        s.get_node(node).barn.store(b, Ordering::Release);
    }
    if ok {
        for (_, p) in pcs.iter() {
            let e = alloc_empty_sheaf_cap(sl, s, Gfp::KERNEL, capacity);
            if e.is_null() {
                ok = false;
                break;
            }
            let g = p.lock();
            debug_assert!(g.main() == bootstrap_sheaf());
            g.set_main(e);
        }
    }
    if !ok {
        free_cache_sheaves(sl, s);
        return Err(SlabError::NoMemory);
    }
    sheaves(s).sheaf_capacity.store(capacity, Ordering::Release);
    Ok(())
}

/// A fresh [`CacheSheaves`] (kmalloc'ed, every CPU on the bootstrap sheaf) published on `s`,
/// then [`install_sheaves`].
fn attach_sheaves(sl: &Slub, s: &KmemCache, capacity: usize) -> Result<(), SlabError> {
    // rseq mode only when every CPU id has its own slot (slot i is then touched by sequences
    // on CPU i only), as slab-classic decides.
    let nprocs = common::sys::nprocs_conf();
    let rseq = sl.rseq && sl.nr_cpu_ids >= nprocs;
    let pcs = PerCpu::new(&sl.provider, sl.nr_cpu_ids, |c| {
        SlubPercpuSheaves::new(c, rseq, nprocs)
    })
    .ok_or(SlabError::NoMemory)?;
    let Some(mem) = alloc_sheaf_mem(
        sl,
        core::mem::size_of::<CacheSheaves>(),
        Gfp::KERNEL,
        NUMA_NO_NODE,
    ) else {
        return Err(SlabError::NoMemory);
    };
    let p = mem.as_ptr().cast::<CacheSheaves>();
    // SAFETY: fresh kmalloc memory sized and 8-aligned for a CacheSheaves, ours alone.
    unsafe {
        p.write(CacheSheaves {
            pcs: Some(pcs),
            sheaf_capacity: AtomicUsize::new(0),
        });
    }
    s.sheaves.store(p, Ordering::Release);
    install_sheaves(sl, s, capacity)
}

/// Called by `kmem_cache_open`: sheaves for 6.18 caches created with a `sheaf_capacity` and
/// for 7.0 caches once kmalloc works (7.0's kmalloc caches get theirs in
/// [`bootstrap_kmalloc_sheaves`]); every other 7.0 cache points at [`NO_SHEAVES`].
///
/// # Safety
/// `s` is an opened cache nobody else sees yet.
pub(crate) unsafe fn init_cache_sheaves(
    sl: &Slub,
    s: *mut KmemCache,
    requested: usize,
) -> Result<(), SlabError> {
    // SAFETY: per the caller: opened, not yet shared.
    let sr = unsafe { &*s };
    let capacity = match sl.settings.era {
        Era::V6_18 if !sr.debug => requested,
        Era::V7_0 => {
            sr.sheaves.store(
                core::ptr::from_ref(&NO_SHEAVES).cast_mut(),
                Ordering::Release,
            );
            // Bootstrap caches (and the kmalloc caches, until bootstrap_kmalloc_sheaves)
            // have none: slab_state below UP.
            if sl.slab_state() < SlabState::Up || sr.debug {
                0
            } else {
                calculate_sheaf_capacity(sr.size, sr.flags, requested)
            }
        }
        _ => 0,
    };
    if capacity == 0 {
        return Ok(());
    }
    attach_sheaves(sl, sr, capacity)
}

/// 7.0 "handle kmalloc sheaves bootstrap": once every kmalloc cache exists (sheaves come from
/// them), each gets its sheaves.
pub(crate) fn bootstrap_kmalloc_sheaves(sl: &Slub) -> Result<(), SlabError> {
    if sl.settings.era != Era::V7_0 {
        return Ok(());
    }
    for &kc in &sl.kmalloc_caches {
        // SAFETY: kmalloc caches are live for the instance's life.
        let s = unsafe { &*kc };
        if s.debug || cache_has_sheaves(s) {
            continue;
        }
        let cap = calculate_sheaf_capacity(s.size, s.flags, 0);
        if cap > 0 {
            attach_sheaves(sl, s, cap)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Preallocation API (6.18; the maple tree's)
// ---------------------------------------------------------------------------------------------

/// A prefilled sheaf owned by a caller ([`Slub::kmem_cache_prefill_sheaf`]). Give it back
/// with [`Slub::kmem_cache_return_sheaf`]; dropping it leaks its objects and memory (as
/// forgetting to return one does in the kernel).
#[derive(Debug)]
pub struct SlabSheafHandle {
    pub(crate) sheaf: NonNull<u8>,
    pub(crate) instance: u32,
}

// SAFETY: the handle owns its sheaf exclusively; sheaves are plain provider memory.
unsafe impl Send for SlabSheafHandle {}

impl SlabSheafHandle {
    fn ptr(&self) -> *mut SlabSheaf {
        self.sheaf.as_ptr().cast()
    }

    /// `kmem_cache_sheaf_size`: objects the sheaf holds.
    pub fn size(&self) -> usize {
        size(self.ptr())
    }

    /// The sheaf's capacity (`sheaf->capacity`).
    pub fn capacity(&self) -> usize {
        capacity(self.ptr())
    }

    fn cache(&self) -> *const KmemCache {
        // SAFETY: a live sheaf owned by this handle.
        unsafe { (*self.ptr()).cache }
    }
}

fn handle(sl: &Slub, sheaf: *mut SlabSheaf) -> SlabSheafHandle {
    SlabSheafHandle {
        sheaf: NonNull::new(sheaf.cast()).expect("sheaf"),
        instance: sl.instance,
    }
}

/// `kmem_cache_prefill_sheaf(s, gfp, size)`.
pub(crate) fn kmem_cache_prefill_sheaf(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    want: usize,
) -> Option<SlabSheafHandle> {
    if want == 0 {
        return None;
    }
    let cap = sheaf_capacity(s);
    if want > cap {
        // Oversize: a sheaf of its own size, bulk-filled, always flushed and freed on return.
        let sheaf = alloc_empty_sheaf_cap(sl, s, gfp, want);
        if sheaf.is_null() {
            return None;
        }
        s.stat(SHEAF_PREFILL_OVERSIZE);
        let gfp = Gfp(gfp.0 & !Gfp::ZERO.0);
        if __kmem_cache_alloc_bulk(sl, s, gfp, objs_mut(sheaf, 0, want)) == 0 {
            free_empty_sheaf(sl, s, sheaf);
            return None;
        }
        set_size(sheaf, want);
        return Some(handle(sl, sheaf));
    }
    let mut sheaf = core::ptr::null_mut();
    {
        let g = this_pcs(s).lock();
        if !g.spare().is_null() {
            sheaf = g.spare();
            g.set_spare(core::ptr::null_mut());
            s.stat(SHEAF_PREFILL_FAST);
        } else {
            s.stat(SHEAF_PREFILL_SLOW);
            if let Some(barn) = get_barn(s) {
                sheaf = barn_get_full_or_empty_sheaf(barn);
            }
            if !sheaf.is_null() && size(sheaf) > 0 {
                s.stat(BARN_GET);
            } else {
                s.stat(BARN_GET_FAIL);
            }
        }
    }
    if sheaf.is_null() {
        sheaf = alloc_empty_sheaf(sl, s, gfp);
        if sheaf.is_null() {
            return None;
        }
    }
    if size(sheaf) < want && refill_sheaf(sl, s, sheaf, gfp).is_err() {
        sheaf_flush_unused(sl, s, sheaf);
        free_empty_sheaf(sl, s, sheaf);
        return None;
    }
    Some(handle(sl, sheaf))
}

/// Checks that a handle belongs to `s` of this instance.
fn check_handle(sl: &Slub, s: &KmemCache, h: &SlabSheafHandle) -> Result<(), SlabError> {
    if h.instance != sl.instance || !core::ptr::eq(h.cache(), s) {
        return Err(SlabError::ForeignCache);
    }
    Ok(())
}

/// `kmem_cache_alloc_from_sheaf`: pops; never falls back to the cache.
pub(crate) fn kmem_cache_alloc_from_sheaf(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    h: &mut SlabSheafHandle,
) -> Option<NonNull<u8>> {
    check_handle(sl, s, h).ok()?;
    let sheaf = h.ptr();
    let sz = size(sheaf);
    if sz == 0 {
        return None;
    }
    let o = get_obj(sheaf, sz - 1);
    set_size(sheaf, sz - 1);
    crate::hooks::slab_post_alloc_hook(s, gfp, o);
    NonNull::new(o as *mut u8)
}

/// `kmem_cache_refill_sheaf`: at least `want` objects in the sheaf, swapping in an oversize
/// sheaf when `want` exceeds its capacity.
pub(crate) fn kmem_cache_refill_sheaf(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    h: &mut SlabSheafHandle,
    want: usize,
) -> Result<(), SlabError> {
    check_handle(sl, s, h)?;
    let sheaf = h.ptr();
    let sz = size(sheaf);
    if sz >= want {
        return Ok(());
    }
    if capacity(sheaf) >= want {
        if capacity(sheaf) == sheaf_capacity(s) {
            return refill_sheaf(sl, s, sheaf, gfp).map_err(|()| SlabError::NoMemory);
        }
        let n = capacity(sheaf) - sz;
        let gfp = Gfp(gfp.0 & !Gfp::ZERO.0);
        if __kmem_cache_alloc_bulk(sl, s, gfp, objs_mut(sheaf, sz, n)) == 0 {
            return Err(SlabError::NoMemory);
        }
        set_size(sheaf, capacity(sheaf));
        return Ok(());
    }
    // A regular sheaf that needs to be oversize, or an oversize one that must grow.
    let new = kmem_cache_prefill_sheaf(sl, s, gfp, want).ok_or(SlabError::NoMemory)?;
    let old = core::mem::replace(h, new);
    kmem_cache_return_sheaf(sl, s, gfp, old)
}

/// `kmem_cache_return_sheaf`: oversize → flushed and freed; else the spare if the slot has
/// none; else to the barn if it has fewer than `MAX_FULL_SHEAVES` and a refill succeeds; else
/// flushed and freed.
pub(crate) fn kmem_cache_return_sheaf(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    h: SlabSheafHandle,
) -> Result<(), SlabError> {
    // Not ours: refused (the handle is dropped; its sheaf leaks rather than corrupt s).
    check_handle(sl, s, &h)?;
    let sheaf = h.ptr();
    if capacity(sheaf) != sheaf_capacity(s) || pcs_opt(s).is_none() {
        sheaf_flush_unused(sl, s, sheaf);
        free_empty_sheaf(sl, s, sheaf);
        return Ok(());
    }
    let barn = get_barn(s);
    {
        let g = this_pcs(s).lock();
        if g.spare().is_null() {
            g.set_spare(sheaf);
            s.stat(SHEAF_RETURN_FAST);
            return Ok(());
        }
    }
    s.stat(SHEAF_RETURN_SLOW);
    match barn {
        Some(b) if b.nr_full() < MAX_FULL_SHEAVES && refill_sheaf(sl, s, sheaf, gfp).is_ok() => {
            barn_put_full_sheaf(b, sheaf);
            s.stat(BARN_PUT);
        }
        _ => {
            sheaf_flush_unused(sl, s, sheaf);
            free_empty_sheaf(sl, s, sheaf);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Introspection and validation
// ---------------------------------------------------------------------------------------------

/// Objects held in a cache's sheaves and barns (slabinfo, the memory workload, validate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SheafCensus {
    /// `sheaf_capacity` (0: no sheaves).
    pub sheaf_capacity: usize,
    /// Objects on the CPUs' `main` sheaves.
    pub cpu_main_objects: usize,
    /// Objects on the CPUs' `spare` sheaves.
    pub cpu_spare_objects: usize,
    /// Sheaves held by CPUs (`main` and `spare`, the bootstrap sheaf not counted).
    pub cpu_sheaves: usize,
    /// Full sheaves in barns (Σ `nr_full`).
    pub barn_full: usize,
    /// Empty sheaves in barns (Σ `nr_empty`).
    pub barn_empty: usize,
    /// Objects in barn sheaves.
    pub barn_objects: usize,
    /// Bytes of sheaf and barn memory (kmalloc buckets).
    pub bytes: usize,
}

impl SheafCensus {
    /// Every object the sheaves and barns hold (allocated on the slabs, free to users).
    pub fn objects(&self) -> usize {
        self.cpu_main_objects + self.cpu_spare_objects + self.barn_objects
    }
}

fn sheaf_bytes(sheaf: *mut SlabSheaf) -> usize {
    kmalloc_size_roundup(SHEAF_HEADER + capacity(sheaf) * 8)
}

/// What `validate_sheaves` found wrong, gathered under the locks and formatted after.
#[derive(Clone, Copy)]
enum SheafError {
    Oversize {
        cpu: usize,
        size: usize,
        cap: usize,
    },
    BadObject {
        cpu: usize,
        object: usize,
        why: &'static str,
    },
    BarnCount {
        node: usize,
        full: (usize, usize),
        empty: (usize, usize),
    },
    BarnObject {
        node: usize,
        object: usize,
        why: &'static str,
    },
    EmptyNotEmpty {
        node: usize,
        size: usize,
    },
}

/// Checks one object held by a sheaf: a slab of `s`, an object start, not on its slab's
/// freelist (walked only for slabs not frozen, which no other thread pops without the
/// `list_lock` we take).
fn check_sheaf_object(sl: &Slub, s: &KmemCache, object: usize) -> Result<(), &'static str> {
    let Some(page) = sl.provider.virt_to_head_page(object) else {
        return Err("not in the provider's arenas");
    };
    // SAFETY: a descriptor of the provider's mem_map.
    let pg = unsafe { page.as_ref() };
    if !pg.is_slab() || pg.slab_cache.load(Ordering::Relaxed) != core::ptr::from_ref(s) as usize {
        return Err("not on a slab of this cache");
    }
    let base = sl.provider.page_address(page).as_ptr() as usize + s.red_left_pad;
    let c = crate::node::counters_of(page.as_ptr());
    if object < base
        || (object - base) % s.size != 0
        || (object - base) / s.size >= c.objects as usize
    {
        return Err("not an object start");
    }
    if c.frozen {
        return Ok(());
    }
    let n = s.get_node(crate::slowpath::slab_nid(s, page.as_ptr()));
    let _g = n.lock();
    let mut p = pg.freelist_counters.lo(Ordering::Acquire);
    let mut steps = 0;
    while p != 0 && steps <= c.objects as usize {
        if p == object {
            return Err("also on its slab's freelist (free and held)");
        }
        p = crate::freeptr::get_freepointer(s, p);
        steps += 1;
    }
    Ok(())
}

/// Counts (and with `check`, checks) a cache's sheaves. Takes each slot's lock (waiting) and
/// each barn's lock; allocates nothing.
fn census_inner(sl: &Slub, s: &KmemCache, check: bool) -> Result<SheafCensus, SheafError> {
    let mut c = SheafCensus {
        sheaf_capacity: sheaf_capacity(s),
        ..SheafCensus::default()
    };
    let Some(pcs) = pcs_opt(s) else {
        return Ok(c);
    };
    for (cpu, p) in pcs.iter() {
        let g = p.lock();
        for (i, sh) in [g.main(), g.spare()].into_iter().enumerate() {
            if sh.is_null() || sh == bootstrap_sheaf() {
                continue;
            }
            c.cpu_sheaves += 1;
            c.bytes += sheaf_bytes(sh);
            let (sz, cap) = (size(sh), capacity(sh));
            if sz > cap {
                return Err(SheafError::Oversize { cpu, size: sz, cap });
            }
            if i == 0 {
                c.cpu_main_objects += sz;
            } else {
                c.cpu_spare_objects += sz;
            }
            if check {
                for k in 0..sz {
                    let o = get_obj(sh, k);
                    check_sheaf_object(sl, s, o).map_err(|why| SheafError::BadObject {
                        cpu,
                        object: o,
                        why,
                    })?;
                }
            }
        }
    }
    for node in 0..s.nr_nodes {
        let Some(b) = get_barn_node(s, node) else {
            continue;
        };
        c.bytes += kmalloc_size_roundup(core::mem::size_of::<NodeBarn>());
        let l = b.lock.lock();
        let (mut nf, mut ne) = (0, 0);
        let mut p = l.sheaves_full;
        while !p.is_null() {
            nf += 1;
            c.bytes += sheaf_bytes(p);
            c.barn_objects += size(p);
            if check {
                for k in 0..size(p) {
                    let o = get_obj(p, k);
                    check_sheaf_object(sl, s, o).map_err(|why| SheafError::BarnObject {
                        node,
                        object: o,
                        why,
                    })?;
                }
            }
            // SAFETY: a sheaf on the list, under the barn lock.
            p = unsafe { (*p).barn_next };
        }
        let mut p = l.sheaves_empty;
        while !p.is_null() {
            ne += 1;
            c.bytes += sheaf_bytes(p);
            if size(p) != 0 {
                return Err(SheafError::EmptyNotEmpty {
                    node,
                    size: size(p),
                });
            }
            // SAFETY: as above.
            p = unsafe { (*p).barn_next };
        }
        if nf != b.nr_full() || ne != b.nr_empty() {
            return Err(SheafError::BarnCount {
                node,
                full: (nf, b.nr_full()),
                empty: (ne, b.nr_empty()),
            });
        }
        c.barn_full += nf;
        c.barn_empty += ne;
    }
    Ok(c)
}

/// Whether the cache's sheaf fast paths are rseq sequences (else the slot lock).
pub(crate) fn rseq_mode(s: &KmemCache) -> bool {
    pcs_opt(s).is_some_and(|p| p.get(0).rseq)
}

/// The census of a cache's sheaves (no checks).
pub(crate) fn sheaf_census(sl: &Slub, s: &KmemCache) -> SheafCensus {
    census_inner(sl, s, false).unwrap_or_default()
}

/// `validate()` of the sheaves: every held object is an allocated object of a slab of `s`,
/// sizes within capacity, barn counts equal list lengths, empty sheaves empty. Returns the
/// census. Exact when quiescent; under concurrent use each sheaf is checked under its lock.
pub(crate) fn validate_sheaves(sl: &Slub, s: &KmemCache) -> Result<SheafCensus, Violation> {
    // Recorded heap-free (the caller may hold slab_mutex); formatted after unlocking.
    census_inner(sl, s, true).map_err(|e| match e {
        SheafError::Oversize { cpu, size, cap } => Violation::new(
            "cpu {}: sheaf holds {} objects, capacity {}",
            &[cpu, size, cap],
        ),
        SheafError::BadObject { cpu, object, why } => {
            Violation::new("cpu {}: sheaf object {x}", &[cpu, object]).with_detail(why)
        }
        SheafError::BarnObject { node, object, why } => {
            Violation::new("barn of node {}: object {x}", &[node, object]).with_detail(why)
        }
        SheafError::BarnCount { node, full, .. } if full.0 != full.1 => Violation::new(
            "barn of node {}: {} full sheaves listed but nr_full {}",
            &[node, full.0, full.1],
        ),
        SheafError::BarnCount { node, empty, .. } => Violation::new(
            "barn of node {}: {} empty sheaves listed but nr_empty {}",
            &[node, empty.0, empty.1],
        ),
        SheafError::EmptyNotEmpty { node, size } => Violation::new(
            "barn of node {}: an empty sheaf holds {} objects",
            &[node, size],
        ),
    })
}

// ---------------------------------------------------------------------------------------------
// Test access to the per-CPU lock
// ---------------------------------------------------------------------------------------------

/// How [`Slub::with_pcs_locked`] took the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcsLockForm {
    /// rseq mode, from a thread on the slot's CPU: one sequence.
    RseqLocal,
    /// rseq mode, from elsewhere: cmpxchg, fence, re-check.
    RseqRemote,
    /// Lock mode: the `RawSpinLock`.
    Spin,
}

impl Slub {
    /// Runs `f` while this thread holds `cpu`'s `cpu_sheaves->lock` of `cache` (waiting for
    /// it), and says which form took it. For tests of the lock: re-entry from `f` on the same
    /// CPU must fail and take the slab path; a remote holder must exclude the slot's own
    /// threads. `f` runs under an allocator lock: it must not allocate from the heap (debug
    /// builds abort). `Ok(None)` if the cache has no sheaves or `cpu` has no slot.
    ///
    /// # Errors
    /// [`SlabError`] for a bad handle.
    #[doc(hidden)]
    pub fn with_pcs_locked<R>(
        &self,
        cache: common::CacheHandle,
        cpu: usize,
        f: impl FnOnce(PcsLockForm) -> R,
    ) -> Result<Option<R>, SlabError> {
        let s = self.cache_of(cache)?;
        let Some(pcs) = pcs_opt(s) else {
            return Ok(None);
        };
        if cpu >= pcs.len() {
            return Ok(None);
        }
        let p = pcs.get(cpu);
        let (g, form) = if p.rseq {
            // Prefer the local form (a sequence on `cpu`) while we run there.
            let mut local = None;
            if let Some(t) = rseq::this_thread() {
                for _ in 0..8 {
                    if p.acquired.try_lock_local(&t, cpu).is_ok() {
                        local = Some(Pcs { pcs: p });
                        break;
                    }
                }
            }
            if let Some(g) = local {
                (g, PcsLockForm::RseqLocal)
            } else {
                let mut spins = 0;
                while !p.acquired.try_lock_remote(cpu, p.fence) {
                    relax(&mut spins);
                }
                (Pcs { pcs: p }, PcsLockForm::RseqRemote)
            }
        } else {
            (p.lock(), PcsLockForm::Spin)
        };
        let r = f(form);
        drop(g);
        Ok(Some(r))
    }
}
