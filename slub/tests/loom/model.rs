//! The SLUB protocol model that `tests/loom.rs` runs under loom: the lock-free `{freelist, tid}`
//! fast path, `___slab_alloc` with `TID_BUSY`, `__slab_free`'s cmpxchg loop and
//! `deactivate_slab`, written with loom's atomics, mutexes and cells.
//!
//! # Why a model and not the crate itself
//! The real paths run on provider memory (`mmap`), `lock cmpxchg16b` through portable-atomic
//! on 16-byte words, raw `*mut Page` lists and `ListHead`s, none of which loom can see. So this
//! file re-states the protocol with **the same function names, the same order of loads, stores
//! and compare-exchanges, and the same memory orderings** as the code it mirrors, over loom
//! types. What differs is representation only:
//! - `common::dword::DoubleWord` → [`DoubleWord`]: the two 64-bit words packed as two 32-bit
//!   halves of one loom `AtomicU64` (each half-load is a load of the whole word, the pair
//!   `cmpxchg` is one `compare_exchange(AcqRel, Relaxed)` as in `dword.rs`). So `TID_BUSY` is
//!   bit 31 of the tid half here (bit 63 in the crate); the tid values are the crate's own
//!   (`slub::init_tid`/`slub::next_tid`, steps of `slub::TID_STEP`).
//! - counters: the crate's `common::SlabCounters::pack/unpack` (they fit 32 bits).
//! - slab pointers are page numbers `1..` (0 = NULL), objects are numbers `1..` (0 = NULL);
//!   object `o` lies in page `(o - 1) / objs + 1`. The free pointer word of each object is a
//!   loom `AtomicUsize` accessed `Relaxed`, as `freeptr.rs` accesses it.
//! - `kmem_cache_cpu.lock` (a `LocalLock`) and the node's `list_lock` are loom `Mutex`es; the
//!   partial list is a `Vec` of page numbers inside `list_lock` (head first);
//!   `Page::private`/`Page::slabs` (the per-CPU partial chain) and the page's `PG_slab` state
//!   are loom `UnsafeCell`s, so an access not ordered by the locks is reported by loom.
//! - One node, no debug, no node match, no hardened free pointers (so no naive double-free
//!   check), no bulk paths, no stats beyond the branch counts; `kmem_cache_cpu` slots are
//!   chosen by the caller (a thread "on" CPU `cpu`; two threads on one slot are the
//!   user-space case of a migrated thread). `get_partial_node` walks a copy of the list (the
//!   crate's walk tolerates removing the entry it yields).
//! - Added, not in the crate: the `assert!`s that make the model fail (the checks the crate
//!   makes with `debug_assert!` are plain asserts here), the `PG_slab` cell, and [`Held`]
//!   guards that are leaked rather than released while a failing thread unwinds.
//!
//! # Side by side (model function → crate function)
//! | model | crate (slub/src/…) |
//! |---|---|
//! | [`KmemCacheCpu::begin_update`] / [`KmemCacheCpu::end_update`] | `fastpath.rs: KmemCacheCpu::begin_update / end_update` (cmpxchg mode) |
//! | [`slab_alloc_node`] | `fastpath.rs: slab_alloc_cmpxchg` |
//! | [`do_slab_free`] | `fastpath.rs: do_slab_free` (cmpxchg mode, one object) |
//! | [`___slab_alloc`] | `slowpath.rs: ___slab_alloc` (labels `RereadSlab`, `Redo`, `NewSlab`, `NewObjects`, `RetryLoadSlab`) |
//! | [`get_freelist`], [`acquire_slab`], [`get_partial_node`] | `slowpath.rs`, same names |
//! | [`new_slab`], [`discard_slab`] | `slowpath.rs: new_slab / discard_slab / free_slab` |
//! | [`deactivate_slab`] | `slowpath.rs: deactivate_slab` (6.4 rules, not `era_2_6_32`) |
//! | [`put_cpu_partial`], [`__unfreeze_partials`] | `slowpath.rs`, same names |
//! | [`__slab_free`] | `slowpath.rs: __slab_free` (non-debug) |
//! | [`__flush_cpu_slab`] | `slowpath.rs: __flush_cpu_slab` |
//! | [`KmemCacheNode::add_partial`] / [`KmemCacheNode::remove_partial`] | `node.rs`, same names |
//!
//! # Negative controls
//! [`Bug`] switches one step of the protocol to a broken form; the tests show loom finds each.

use common::SlabCounters;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use loom::sync::{Mutex, MutexGuard};
use slub::StatItem::{
    self, ALLOC_FASTPATH, ALLOC_FROM_PARTIAL, ALLOC_REFILL, ALLOC_SLAB, ALLOC_SLOWPATH,
    CMPXCHG_DOUBLE_CPU_FAIL, CMPXCHG_DOUBLE_FAIL, CPUSLAB_FLUSH, CPU_PARTIAL_ALLOC,
    CPU_PARTIAL_DRAIN, CPU_PARTIAL_FREE, CPU_PARTIAL_NODE, DEACTIVATE_BYPASS, DEACTIVATE_EMPTY,
    DEACTIVATE_FULL, DEACTIVATE_REMOTE_FREES, DEACTIVATE_TO_HEAD, DEACTIVATE_TO_TAIL,
    FREE_ADD_PARTIAL, FREE_FASTPATH, FREE_FROZEN, FREE_REMOVE_PARTIAL, FREE_SLAB, FREE_SLOWPATH,
};
use slub::{init_tid, next_tid};
use std::cell::Cell;

/// The busy bit of the model's 32-bit tid half (the crate's `TID_BUSY` is bit 63).
pub const TID_BUSY: usize = 1 << 31;

/// A deliberately broken step, for the negative controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The protocol as the crate implements it.
    None,
    /// `slab_alloc_node` commits its pop with a plain store of `(next, next_tid)` instead of
    /// the `cmpxchg` (the read-compute-write is no longer atomic).
    PopPlainStore,
    /// The fast paths (pop and push) commit with the tid they read: it does not move (ABA).
    NoTidBump,
    /// `begin_update` does not set `TID_BUSY` and `end_update` is a plain store: the kernel's
    /// slow path, safe only when the fast path cannot run on that CPU meanwhile.
    NoBusyMark,
    /// `__slab_free` writes the slab's `{freelist, counters}` with a plain store.
    SlabFreePlainStore,
    /// `__slab_free` ignores the `frozen` bit (treats a CPU slab as a node slab).
    SlabFreeIgnoresFrozen,
}

/// `PG_slab` state of a model page.
const PAGE_UNUSED: u8 = 0;
const PAGE_SLAB: u8 = 1;
const PAGE_FREED: u8 = 2;

/// What an owner writes into an object it uses (over the free pointer word).
pub const IN_USE: usize = 0xdead;

// ---------------------------------------------------------------------------------------------
// Coverage: the crate's own `StatItem`s, counted where the crate counts them
// ---------------------------------------------------------------------------------------------

thread_local! {
    /// Per test thread (loom runs every model thread on the test's OS thread): whether events
    /// are counted now, and the counts summed over all executions of a model.
    static STATS: (Cell<bool>, [Cell<u64>; StatItem::COUNT]) =
        const { (Cell::new(false), [const { Cell::new(0) }; StatItem::COUNT]) };
}

/// `stat(s, item)`: counted only while [`stats_on`] is set (the concurrent part of a scenario,
/// not its set-up or the checker's drain), so a test can assert which branches the explored
/// executions reached.
fn stat(item: StatItem) {
    STATS.with(|(on, c)| {
        if on.get() {
            c[item as usize].set(c[item as usize].get() + 1);
        }
    });
}

/// Starts or stops counting [`stat`] events.
pub fn stats_on(on: bool) {
    STATS.with(|(o, _)| o.set(on));
}

/// The counts since the last call, reset.
pub fn take_stats() -> Vec<(StatItem, u64)> {
    STATS.with(|(_, c)| {
        StatItem::ALL
            .iter()
            .map(|&i| (i, c[i as usize].replace(0)))
            .collect()
    })
}

// ---------------------------------------------------------------------------------------------
// common/src/dword.rs
// ---------------------------------------------------------------------------------------------

/// `common::dword::DoubleWord`: `(lo, hi)` packed as the halves of one `AtomicU64`.
pub struct DoubleWord(AtomicU64);

fn pack(lo: usize, hi: usize) -> u64 {
    assert!(lo >> 32 == 0 && hi >> 32 == 0, "model word out of range");
    lo as u64 | (hi as u64) << 32
}

impl DoubleWord {
    pub fn new(lo: usize, hi: usize) -> Self {
        Self(AtomicU64::new(pack(lo, hi)))
    }
    /// `DoubleWord::lo`.
    pub fn lo(&self, order: Ordering) -> usize {
        (self.0.load(order) & 0xffff_ffff) as usize
    }
    /// `DoubleWord::hi`.
    pub fn hi(&self, order: Ordering) -> usize {
        (self.0.load(order) >> 32) as usize
    }
    /// `set_lo` + `set_hi` on a structure not yet published.
    fn set(&self, lo: usize, hi: usize, order: Ordering) {
        self.0.store(pack(lo, hi), order);
    }
    /// `DoubleWord::cmpxchg`: `compare_exchange(AcqRel, Relaxed)`.
    pub fn cmpxchg(&self, old: (usize, usize), new: (usize, usize)) -> bool {
        self.0
            .compare_exchange(
                pack(old.0, old.1),
                pack(new.0, new.1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }
    /// Negative controls only: the pair written without comparing.
    fn store_pair(&self, new: (usize, usize)) {
        self.0.store(pack(new.0, new.1), Ordering::Release);
    }
}

// ---------------------------------------------------------------------------------------------
// Structures (common/src/page.rs Page, slub/src/cache.rs, slub/src/node.rs)
// ---------------------------------------------------------------------------------------------

/// The SLUB fields of `struct page` / `struct slab`.
pub struct Page {
    /// `freelist` (lo) and `counters` (hi).
    pub freelist_counters: DoubleWord,
    /// `private`: next slab of a per-CPU partial chain (page number), under `c->lock`.
    private: UnsafeCell<usize>,
    /// `slabs`: length of the per-CPU partial chain from here, under `c->lock`.
    slabs: UnsafeCell<usize>,
    /// `PG_slab` (set by `new_slab`, cleared by `free_slab`): a use after `discard_slab` that
    /// loom cannot order after it is reported as a causality violation.
    state: UnsafeCell<u8>,
}

/// `struct kmem_cache_cpu`.
pub struct KmemCacheCpu {
    /// `freelist` (lo) and `tid` (hi).
    pub fl_tid: DoubleWord,
    /// `slab` (page number, 0 = NULL).
    pub slab: AtomicUsize,
    /// `partial` (page number of the chain head, 0 = NULL).
    pub partial: AtomicUsize,
    /// `lock` (`local_lock_t`).
    pub lock: Mutex<()>,
}

/// `struct kmem_cache_node`.
pub struct KmemCacheNode {
    /// `list_lock` and the `partial` list it protects (page numbers, head first).
    pub list_lock: Mutex<Vec<usize>>,
    /// `nr_partial`: written under `list_lock`, read racily.
    pub nr_partial: AtomicUsize,
    /// `nr_slabs`.
    pub nr_slabs: AtomicUsize,
}

/// A `list_lock` guard (`ListGuard`).
pub type ListGuard<'a> = Held<'a, Vec<usize>>;

/// A held loom `MutexGuard` that is leaked instead of released while its thread unwinds from a
/// failed check: loom aborts the whole test process when its state is touched during
/// unwinding, and a negative control needs the failure to reach the test as a panic.
pub struct Held<'a, T>(core::mem::ManuallyDrop<MutexGuard<'a, T>>);

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // SAFETY: dropped once, here; the field is never used again.
            unsafe { core::mem::ManuallyDrop::drop(&mut self.0) };
        }
    }
}

impl<T> core::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> core::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

/// `spin_lock` / `local_lock` (released when the [`Held`] is dropped).
pub fn acquire<T>(m: &Mutex<T>) -> Held<'_, T> {
    Held(core::mem::ManuallyDrop::new(m.lock().unwrap()))
}

/// `struct kmem_cache` with what the model needs, plus the page provider.
pub struct KmemCache {
    pub bug: Bug,
    /// `objects` per slab.
    pub objs: usize,
    pub has_cpu_partial: bool,
    pub min_partial: usize,
    pub cpu_partial_slabs: usize,
    pub cpu_slab: Vec<KmemCacheCpu>,
    pub node: KmemCacheNode,
    pub pages: Vec<Page>,
    /// The free pointer word of each object (index = object number).
    pub fp: Vec<AtomicUsize>,
    /// The provider: the next page number never handed out (its node lock).
    provider: Mutex<usize>,
}

impl KmemCache {
    pub fn new(bug: Bug, cpus: usize, npages: usize, objs: usize) -> Self {
        Self {
            bug,
            objs,
            has_cpu_partial: false,
            min_partial: 0,
            cpu_partial_slabs: 2,
            cpu_slab: (0..cpus)
                .map(|cpu| KmemCacheCpu {
                    fl_tid: DoubleWord::new(0, init_tid(cpu)),
                    slab: AtomicUsize::new(0),
                    partial: AtomicUsize::new(0),
                    lock: Mutex::new(()),
                })
                .collect(),
            node: KmemCacheNode {
                list_lock: Mutex::new(Vec::new()),
                nr_partial: AtomicUsize::new(0),
                nr_slabs: AtomicUsize::new(0),
            },
            pages: (0..npages)
                .map(|_| Page {
                    freelist_counters: DoubleWord::new(0, 0),
                    private: UnsafeCell::new(0),
                    slabs: UnsafeCell::new(0),
                    state: UnsafeCell::new(PAGE_UNUSED),
                })
                .collect(),
            fp: (0..=npages * objs).map(|_| AtomicUsize::new(0)).collect(),
            provider: Mutex::new(1),
        }
    }

    /// The descriptor of page number `slab`.
    pub fn page(&self, slab: usize) -> &Page {
        assert!(slab != 0, "slub model: NULL slab dereferenced");
        &self.pages[slab - 1]
    }

    /// `virt_to_slab(object)`.
    pub fn virt_to_slab(&self, object: usize) -> usize {
        (object - 1) / self.objs + 1
    }

    /// The objects of page `slab`.
    pub fn objects_of(&self, slab: usize) -> core::ops::RangeInclusive<usize> {
        (slab - 1) * self.objs + 1..=slab * self.objs
    }

    /// Asserts that `slab` is a live slab (the `PG_slab` read of `slab_nid`/`counters_of`).
    fn assert_slab(&self, slab: usize, what: &str) {
        let st = self.page(slab).state.with(|p| {
            // SAFETY: loom checks this read against the writes in new_slab / free_slab.
            unsafe { *p }
        });
        assert!(
            st == PAGE_SLAB,
            "slub model: {what} on page {slab} in state {st}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// freeptr.rs
// ---------------------------------------------------------------------------------------------

/// `get_freepointer` (a relaxed word load; never hardened here).
pub fn get_freepointer(s: &KmemCache, object: usize) -> usize {
    assert!(
        object < s.fp.len(),
        "slub model: free pointer of a non-object {object:#x} (corrupt freelist)"
    );
    s.fp[object].load(Ordering::Relaxed)
}

/// `set_freepointer` (a relaxed word store).
pub fn set_freepointer(s: &KmemCache, object: usize, fp: usize) {
    s.fp[object].store(fp, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// fastpath.rs
// ---------------------------------------------------------------------------------------------

impl KmemCacheCpu {
    /// `begin_update` (cmpxchg mode), with the slot's lock held (`_g`).
    pub fn begin_update(&self, bug: Bug, _g: &Held<'_, ()>) -> (usize, usize) {
        loop {
            let tid = self.fl_tid.hi(Ordering::Acquire);
            let fl = self.fl_tid.lo(Ordering::Acquire);
            assert_eq!(tid & TID_BUSY, 0, "slub model: nested slow-path update");
            if bug == Bug::NoBusyMark {
                return (fl, tid);
            }
            if self.fl_tid.cmpxchg((fl, tid), (fl, tid | TID_BUSY)) {
                return (fl, tid);
            }
        }
    }

    /// `end_update`: publishes `freelist` with `next_tid(tid)`.
    pub fn end_update(&self, bug: Bug, old: (usize, usize), freelist: usize) {
        if bug == Bug::NoBusyMark {
            self.fl_tid.store_pair((freelist, next_tid(old.1)));
            return;
        }
        let ok = self
            .fl_tid
            .cmpxchg((old.0, old.1 | TID_BUSY), (freelist, next_tid(old.1)));
        assert!(ok, "slub model: kmem_cache_cpu changed while marked busy");
    }
}

/// `slab_alloc_node` → `slab_alloc_cmpxchg` on the slot of `cpu`. Returns 0 when the provider
/// is out of pages.
pub fn slab_alloc_node(s: &KmemCache, cpu: usize) -> usize {
    loop {
        let c = &s.cpu_slab[cpu];
        // tid first (acquire), then freelist and slab.
        let tid = c.fl_tid.hi(Ordering::Acquire);
        let object = c.fl_tid.lo(Ordering::Acquire);
        let slab = c.slab.load(Ordering::Acquire);
        if tid & TID_BUSY != 0 || object == 0 || slab == 0 {
            return ___slab_alloc(s, c);
        }
        let next = get_freepointer(s, object);
        let new_tid = if s.bug == Bug::NoTidBump {
            tid
        } else {
            next_tid(tid)
        };
        if s.bug == Bug::PopPlainStore {
            c.fl_tid.store_pair((next, new_tid));
            stat(ALLOC_FASTPATH);
            return object;
        }
        if c.fl_tid.cmpxchg((object, tid), (next, new_tid)) {
            stat(ALLOC_FASTPATH);
            return object;
        }
        // note_cmpxchg_failure
        stat(CMPXCHG_DOUBLE_CPU_FAIL);
    }
}

/// `do_slab_free` of one object of `slab` from a thread on `cpu` (cmpxchg mode).
pub fn do_slab_free(s: &KmemCache, cpu: usize, slab: usize, object: usize) {
    let (head, tail) = (object, object);
    loop {
        let c = &s.cpu_slab[cpu];
        let tid = c.fl_tid.hi(Ordering::Acquire);
        if tid & TID_BUSY != 0 || slab != c.slab.load(Ordering::Acquire) {
            return __slab_free(s, cpu, slab, head, tail, 1);
        }
        let freelist = c.fl_tid.lo(Ordering::Acquire);
        set_freepointer(s, tail, freelist);
        let new_tid = if s.bug == Bug::NoTidBump {
            tid
        } else {
            next_tid(tid)
        };
        if c.fl_tid.cmpxchg((freelist, tid), (head, new_tid)) {
            stat(FREE_FASTPATH);
            return;
        }
        stat(CMPXCHG_DOUBLE_CPU_FAIL);
    }
}

/// `kmem_cache_free`: `virt_to_slab` and `do_slab_free`.
pub fn kmem_cache_free(s: &KmemCache, cpu: usize, object: usize) {
    do_slab_free(s, cpu, s.virt_to_slab(object), object);
}

// ---------------------------------------------------------------------------------------------
// node.rs
// ---------------------------------------------------------------------------------------------

impl KmemCacheNode {
    /// `list_lock`.
    pub fn lock(&self) -> ListGuard<'_> {
        acquire(&self.list_lock)
    }

    /// `add_partial`. Checks the invariant that frozen slabs are never on a node list.
    pub fn add_partial(&self, s: &KmemCache, g: &mut ListGuard<'_>, slab: usize, tail: bool) {
        let c = SlabCounters::unpack(s.page(slab).freelist_counters.hi(Ordering::Acquire));
        assert!(
            !c.frozen,
            "slub model: frozen slab {slab} put on a node list"
        );
        assert!(!g.contains(&slab), "slub model: slab {slab} listed twice");
        self.nr_partial.fetch_add(1, Ordering::Relaxed);
        if tail {
            g.push(slab);
        } else {
            g.insert(0, slab);
        }
    }

    /// `remove_partial`.
    pub fn remove_partial(&self, g: &mut ListGuard<'_>, slab: usize) {
        let i = g
            .iter()
            .position(|&x| x == slab)
            .unwrap_or_else(|| panic!("slub model: remove_partial of unlisted slab {slab}"));
        g.remove(i);
        self.nr_partial.fetch_sub(1, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------------------------
// slowpath.rs
// ---------------------------------------------------------------------------------------------

fn slab_freelist_counters(s: &KmemCache, slab: usize) -> (usize, usize) {
    let p = &s.page(slab).freelist_counters;
    (p.lo(Ordering::Acquire), p.hi(Ordering::Acquire))
}

/// `cmpxchg_double_slab`.
fn cmpxchg_double_slab(
    s: &KmemCache,
    slab: usize,
    old: (usize, usize),
    new: (usize, usize),
) -> bool {
    if s.page(slab).freelist_counters.cmpxchg(old, new) {
        true
    } else {
        stat(CMPXCHG_DOUBLE_FAIL);
        false
    }
}

/// `new_slab`/`allocate_slab`: the next page of the provider, objects linked in address order.
pub fn new_slab(s: &KmemCache) -> Option<usize> {
    let slab = {
        let mut next = acquire(&s.provider);
        if *next > s.pages.len() {
            return None;
        }
        *next += 1;
        *next - 1
    };
    let objects = s.objects_of(slab);
    let start = *objects.start();
    for obj in objects.clone() {
        let next = if obj < *objects.end() { obj + 1 } else { 0 };
        set_freepointer(s, obj, next);
    }
    let p = s.page(slab);
    p.state.with_mut(|st| {
        // SAFETY: a page just taken from the provider is ours alone.
        unsafe { *st = PAGE_SLAB }
    });
    let counters = SlabCounters {
        inuse: 0,
        objects: s.objs as u16,
        frozen: false,
    };
    p.freelist_counters
        .set(start, counters.pack(), Ordering::Relaxed);
    Some(slab)
}

/// `discard_slab` (`dec_slabs_node` + `free_slab`).
pub fn discard_slab(s: &KmemCache, slab: usize) {
    let c = SlabCounters::unpack(s.page(slab).freelist_counters.hi(Ordering::Acquire));
    assert!(
        c.inuse == 0 && !c.frozen,
        "slub model: discarding slab {slab} with {c:?}"
    );
    s.node.nr_slabs.fetch_sub(1, Ordering::Relaxed);
    stat(FREE_SLAB);
    s.page(slab).state.with_mut(|st| {
        // SAFETY: free_slab: the slab is off every list and CPU slot (loom checks that no
        // access races with this write).
        unsafe {
            assert_eq!(*st, PAGE_SLAB, "slub model: slab {slab} freed twice");
            *st = PAGE_FREED;
        }
    });
}

/// `get_freelist`: takes the CPU slab's remotely freed objects. Under `c->lock`.
fn get_freelist(s: &KmemCache, slab: usize) -> usize {
    loop {
        let (freelist, counters) = slab_freelist_counters(s, slab);
        let mut new = SlabCounters::unpack(counters);
        assert!(new.frozen, "slub model: CPU slab {slab} not frozen");
        new.inuse = new.objects;
        new.frozen = freelist != 0;
        if cmpxchg_double_slab(s, slab, (freelist, counters), (0, new.pack())) {
            return freelist;
        }
    }
}

/// `acquire_slab`: freezes a partial slab and takes it off the list.
fn acquire_slab(s: &KmemCache, g: &mut ListGuard<'_>, slab: usize, take_all: bool) -> usize {
    s.assert_slab(slab, "acquire_slab");
    let (freelist, counters) = slab_freelist_counters(s, slab);
    let mut new = SlabCounters::unpack(counters);
    let new_freelist = if take_all {
        new.inuse = new.objects;
        0
    } else {
        freelist
    };
    assert!(
        !new.frozen,
        "slub model: frozen slab {slab} on the partial list"
    );
    new.frozen = true;
    if !cmpxchg_double_slab(s, slab, (freelist, counters), (new_freelist, new.pack())) {
        return 0;
    }
    s.node.remove_partial(g, slab);
    assert!(
        freelist != 0,
        "slub model: empty slab {slab} on the partial list"
    );
    freelist
}

/// `get_partial_node` (and `get_partial`: one node).
fn get_partial_node(s: &KmemCache, c: &KmemCacheCpu, pslab: &mut usize) -> usize {
    if s.node.nr_partial.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let mut object = 0;
    let mut partial_slabs = 0;
    let mut g = s.node.lock();
    for slab in g.clone() {
        let t = acquire_slab(s, &mut g, slab, object == 0);
        if t == 0 {
            break;
        }
        if object == 0 {
            *pslab = slab;
            stat(ALLOC_FROM_PARTIAL);
            object = t;
        } else {
            put_cpu_partial(s, c, slab, false);
            stat(CPU_PARTIAL_NODE);
            partial_slabs += 1;
        }
        if !s.has_cpu_partial || partial_slabs > s.cpu_partial_slabs / 2 {
            break;
        }
    }
    object
}

/// States of `___slab_alloc`, named after its labels.
enum Step {
    RereadSlab,
    Redo(usize),
    NewSlab,
    NewObjects,
    RetryLoadSlab(usize, usize),
}

/// `___slab_alloc` (no node constraint, no debug). Returns an object or 0.
pub fn ___slab_alloc(s: &KmemCache, c: &KmemCacheCpu) -> usize {
    stat(ALLOC_SLOWPATH);
    let mut step = Step::RereadSlab;
    loop {
        step = match step {
            Step::RereadSlab => {
                let slab = c.slab.load(Ordering::Acquire);
                if slab == 0 {
                    Step::NewSlab
                } else {
                    Step::Redo(slab)
                }
            }
            Step::Redo(slab) => {
                let g = acquire(&c.lock);
                if slab != c.slab.load(Ordering::Relaxed) {
                    drop(g);
                    step = Step::RereadSlab;
                    continue;
                }
                let old = c.begin_update(s.bug, &g);
                let mut freelist = old.0;
                if freelist == 0 {
                    freelist = get_freelist(s, slab);
                    if freelist == 0 {
                        c.slab.store(0, Ordering::Release);
                        c.end_update(s.bug, old, 0);
                        drop(g);
                        stat(DEACTIVATE_BYPASS);
                        step = Step::NewSlab;
                        continue;
                    }
                    stat(ALLOC_REFILL);
                }
                // load_freelist
                let next = get_freepointer(s, freelist);
                c.end_update(s.bug, old, next);
                drop(g);
                return freelist;
            }
            Step::NewSlab => {
                if c.partial.load(Ordering::Relaxed) == 0 {
                    Step::NewObjects
                } else {
                    let g = acquire(&c.lock);
                    if c.slab.load(Ordering::Relaxed) != 0 {
                        drop(g);
                        Step::RereadSlab
                    } else {
                        let p = c.partial.load(Ordering::Relaxed);
                        if p == 0 {
                            drop(g);
                            Step::NewObjects
                        } else {
                            let old = c.begin_update(s.bug, &g);
                            assert_eq!(old.0, 0, "slub model: CPU freelist without CPU slab");
                            c.slab.store(p, Ordering::Release);
                            let next = s.page(p).private.with(|x| {
                                // SAFETY: the chain is c->lock's (held).
                                unsafe { *x }
                            });
                            c.partial.store(next, Ordering::Relaxed);
                            c.end_update(s.bug, old, old.0);
                            drop(g);
                            stat(CPU_PARTIAL_ALLOC);
                            Step::Redo(p)
                        }
                    }
                }
            }
            Step::NewObjects => {
                let mut pslab = 0;
                let freelist = get_partial_node(s, c, &mut pslab);
                if freelist != 0 {
                    Step::RetryLoadSlab(pslab, freelist)
                } else {
                    let Some(slab) = new_slab(s) else {
                        return 0; // slab_out_of_memory
                    };
                    let p = &s.page(slab).freelist_counters;
                    let freelist = p.lo(Ordering::Relaxed);
                    let mut cnt = SlabCounters::unpack(p.hi(Ordering::Relaxed));
                    cnt.inuse = cnt.objects;
                    cnt.frozen = true;
                    // Not published yet: plain stores (set_lo relaxed, set_hi release).
                    p.set(0, cnt.pack(), Ordering::Release);
                    s.node.nr_slabs.fetch_add(1, Ordering::Relaxed);
                    stat(ALLOC_SLAB);
                    Step::RetryLoadSlab(slab, freelist)
                }
            }
            Step::RetryLoadSlab(slab, freelist) => {
                let g = acquire(&c.lock);
                let cur = c.slab.load(Ordering::Relaxed);
                if cur == 0 {
                    let old = c.begin_update(s.bug, &g);
                    assert_eq!(old.0, 0, "slub model: CPU freelist without CPU slab");
                    c.slab.store(slab, Ordering::Release);
                    let next = get_freepointer(s, freelist);
                    c.end_update(s.bug, old, next);
                    drop(g);
                    return freelist;
                }
                let old = c.begin_update(s.bug, &g);
                c.slab.store(0, Ordering::Release);
                c.end_update(s.bug, old, 0);
                drop(g);
                deactivate_slab(s, cur, old.0);
                stat(CPUSLAB_FLUSH);
                Step::RetryLoadSlab(slab, freelist)
            }
        };
    }
}

/// `deactivate_slab`: the CPU freelist spliced in front of the slab's, unfrozen, then
/// discarded (empty, enough partials), listed (has free objects) or left unlisted (full).
pub fn deactivate_slab(s: &KmemCache, slab: usize, freelist: usize) {
    s.assert_slab(slab, "deactivate_slab");
    let n = &s.node;
    let mut tail = false;
    if s.page(slab).freelist_counters.lo(Ordering::Acquire) != 0 {
        stat(DEACTIVATE_REMOTE_FREES);
        tail = true;
    }
    // Stage one: count the CPU freelist and find its tail.
    let mut free_delta = 0u16;
    let mut freelist_tail = 0;
    let mut iter = freelist;
    let limit = s.objs as u16;
    while iter != 0 && free_delta < limit {
        let next = get_freepointer(s, iter);
        freelist_tail = iter;
        free_delta += 1;
        iter = next;
    }
    // Stage two: unfreeze while splicing.
    loop {
        let (old_fl, old_c) = slab_freelist_counters(s, slab);
        let mut new = SlabCounters::unpack(old_c);
        assert!(new.frozen, "slub model: deactivating unfrozen slab {slab}");
        let new_fl = if freelist_tail != 0 {
            new.inuse -= free_delta;
            set_freepointer(s, freelist_tail, old_fl);
            freelist
        } else {
            old_fl
        };
        new.frozen = false;
        let (free, guard) =
            if new.inuse == 0 && n.nr_partial.load(Ordering::Relaxed) >= s.min_partial {
                (true, None)
            } else if new_fl != 0 {
                (false, Some(n.lock()))
            } else {
                (false, None)
            };
        if !cmpxchg_double_slab(s, slab, (old_fl, old_c), (new_fl, new.pack())) {
            drop(guard);
            continue;
        }
        if let Some(mut g) = guard {
            n.add_partial(s, &mut g, slab, tail);
            drop(g);
            stat(if tail {
                DEACTIVATE_TO_TAIL
            } else {
                DEACTIVATE_TO_HEAD
            });
        } else if free {
            stat(DEACTIVATE_EMPTY);
            discard_slab(s, slab);
        } else {
            stat(DEACTIVATE_FULL);
        }
        return;
    }
}

/// `__unfreeze_partials`: a detached per-CPU partial chain back to the node.
pub fn __unfreeze_partials(s: &KmemCache, partial: usize) {
    let mut partial = partial;
    let mut guard: Option<ListGuard<'_>> = None;
    let mut to_discard = Vec::new();
    while partial != 0 {
        let slab = partial;
        partial = s.page(slab).private.with(|x| {
            // SAFETY: the chain was detached under c->lock and is ours.
            unsafe { *x }
        });
        let g = guard.get_or_insert_with(|| s.node.lock());
        let new = loop {
            let (fl, counters) = slab_freelist_counters(s, slab);
            let mut new = SlabCounters::unpack(counters);
            assert!(
                new.frozen,
                "slub model: unfrozen slab {slab} on a CPU partial list"
            );
            new.frozen = false;
            if cmpxchg_double_slab(s, slab, (fl, counters), (fl, new.pack())) {
                break new;
            }
        };
        if new.inuse == 0 && s.node.nr_partial.load(Ordering::Relaxed) >= s.min_partial {
            to_discard.push(slab);
        } else {
            s.node.add_partial(s, g, slab, true);
            stat(FREE_ADD_PARTIAL);
        }
    }
    drop(guard);
    for slab in to_discard {
        stat(DEACTIVATE_EMPTY);
        discard_slab(s, slab);
    }
}

/// `put_cpu_partial`: a frozen slab onto `c`'s partial chain (draining a full chain).
pub fn put_cpu_partial(s: &KmemCache, c: &KmemCacheCpu, slab: usize, drain: bool) {
    let mut slab_to_unfreeze = 0;
    let g = acquire(&c.lock);
    let mut oldslab = c.partial.load(Ordering::Relaxed);
    let mut slabs = 0;
    if oldslab != 0 {
        // SAFETY: the chain is c->lock's (held).
        let n = s.page(oldslab).slabs.with(|x| unsafe { *x });
        if drain && n >= s.cpu_partial_slabs {
            slab_to_unfreeze = oldslab;
            oldslab = 0;
        } else {
            slabs = n;
        }
    }
    slabs += 1;
    let p = s.page(slab);
    // SAFETY: the slab is frozen for this slot and its chain fields are ours under c->lock.
    p.slabs.with_mut(|x| unsafe { *x = slabs });
    // SAFETY: as above.
    p.private.with_mut(|x| unsafe { *x = oldslab });
    c.partial.store(slab, Ordering::Relaxed);
    drop(g);
    if slab_to_unfreeze != 0 {
        __unfreeze_partials(s, slab_to_unfreeze);
        stat(CPU_PARTIAL_DRAIN);
    }
}

/// `__slab_free` of the chain `head..tail` (`cnt` objects) of `slab`, from a thread on `cpu`.
pub fn __slab_free(s: &KmemCache, cpu: usize, slab: usize, head: usize, tail: usize, cnt: u16) {
    s.assert_slab(slab, "__slab_free");
    stat(FREE_SLOWPATH);
    let n = &s.node;
    let mut guard: Option<ListGuard<'_>>;
    let (prior, new, was_frozen) = loop {
        let (prior, counters) = slab_freelist_counters(s, slab);
        let mut new = SlabCounters::unpack(counters);
        assert!(
            new.inuse >= cnt,
            "slub model: free into slab {slab} with {new:?}"
        );
        set_freepointer(s, tail, prior);
        let was_frozen = new.frozen && s.bug != Bug::SlabFreeIgnoresFrozen;
        new.inuse -= cnt;
        guard = None;
        if (new.inuse == 0 || prior == 0) && !was_frozen {
            if s.has_cpu_partial && prior == 0 {
                new.frozen = true;
            } else {
                guard = Some(n.lock());
            }
        }
        if s.bug == Bug::SlabFreePlainStore {
            s.page(slab)
                .freelist_counters
                .store_pair((head, new.pack()));
            break (prior, new, was_frozen);
        }
        if cmpxchg_double_slab(s, slab, (prior, counters), (head, new.pack())) {
            break (prior, new, was_frozen);
        }
        drop(guard.take());
    };
    let Some(mut g) = guard else {
        if was_frozen {
            stat(FREE_FROZEN);
        } else if new.frozen {
            put_cpu_partial(s, &s.cpu_slab[cpu], slab, true);
            stat(CPU_PARTIAL_FREE);
        }
        return;
    };
    if new.inuse == 0 && n.nr_partial.load(Ordering::Relaxed) >= s.min_partial {
        // slab_empty
        if prior != 0 {
            n.remove_partial(&mut g, slab);
            stat(FREE_REMOVE_PARTIAL);
        }
        drop(g);
        discard_slab(s, slab);
        return;
    }
    if !s.has_cpu_partial && prior == 0 {
        n.add_partial(s, &mut g, slab, true);
        stat(FREE_ADD_PARTIAL);
    }
    drop(g);
}

/// `__flush_cpu_slab`: the slot's slab and partial chain back to the node.
pub fn __flush_cpu_slab(s: &KmemCache, cpu: usize) {
    let c = &s.cpu_slab[cpu];
    let g = acquire(&c.lock);
    let slab = c.slab.load(Ordering::Relaxed);
    let mut freelist = 0;
    if slab != 0 {
        let old = c.begin_update(s.bug, &g);
        freelist = old.0;
        c.slab.store(0, Ordering::Release);
        c.end_update(s.bug, old, 0);
    }
    let partial = c.partial.swap(0, Ordering::Relaxed);
    drop(g);
    if slab != 0 {
        deactivate_slab(s, slab, freelist);
        stat(CPUSLAB_FLUSH);
    }
    if partial != 0 {
        __unfreeze_partials(s, partial);
    }
}

// ---------------------------------------------------------------------------------------------
// The checker (validate.rs's invariants, plus ownership), run after every thread joined
// ---------------------------------------------------------------------------------------------

/// Walks a freelist from `head`, panicking on a cycle or a word that is not an object.
fn walk(s: &KmemCache, head: usize, what: &str) -> Vec<usize> {
    let mut v = Vec::new();
    let mut o = head;
    while o != 0 {
        assert!(
            o < s.fp.len(),
            "slub model: {what} holds {o:#x}, not an object (an owner wrote over it)"
        );
        assert!(!v.contains(&o), "slub model: cycle on {what} at object {o}");
        v.push(o);
        o = s.fp[o].load(Ordering::Relaxed);
    }
    v
}

fn page_state(s: &KmemCache, slab: usize) -> u8 {
    // SAFETY: checker, after every thread joined.
    s.page(slab).state.with(|p| unsafe { *p })
}

/// Checks, with every thread joined and `owned` the objects the threads hold:
/// - each object of a live slab is in exactly one place: owned by one thread, on a CPU
///   freelist, or on its slab's freelist (nothing lost, nothing owned twice); objects of
///   discarded slabs are nowhere;
/// - a CPU freelist holds objects of that CPU's slab only;
/// - `inuse` == the slab's objects owned by threads + those on CPU freelists, and
///   `inuse == objects − |slab freelist|`;
/// - frozen ⇔ a CPU slab or on a CPU partial chain; frozen slabs are never on the node list;
///   listed slabs have free objects; `nr_partial` and `nr_slabs` match.
pub fn check(s: &KmemCache, owned: &[usize]) {
    let npages = s.pages.len();
    let mut seen = vec![0usize; s.fp.len()];
    let mut where_: Vec<String> = vec![String::new(); s.fp.len()];
    let mut put = |o: usize, w: String| {
        seen[o] += 1;
        assert!(
            seen[o] == 1,
            "slub model: object {o} is in two places: {} and {w}",
            where_[o]
        );
        where_[o] = w;
    };
    for &o in owned {
        put(o, "owned by a thread".into());
    }
    let listed = s.node.list_lock.lock().unwrap().clone();
    assert_eq!(
        s.node.nr_partial.load(Ordering::Relaxed),
        listed.len(),
        "slub model: nr_partial"
    );
    let mut cpu_owned = vec![false; npages + 1];
    let mut on_cpu_list = vec![0u16; npages + 1];
    for (cpu, c) in s.cpu_slab.iter().enumerate() {
        let (fl, tid) = (
            c.fl_tid.lo(Ordering::Relaxed),
            c.fl_tid.hi(Ordering::Relaxed),
        );
        assert_eq!(tid & TID_BUSY, 0, "slub model: cpu {cpu} left busy");
        let slab = c.slab.load(Ordering::Relaxed);
        for o in walk(s, fl, &format!("cpu {cpu} freelist")) {
            assert!(
                slab != 0 && s.virt_to_slab(o) == slab,
                "slub model: cpu {cpu} freelist holds object {o} of another slab than {slab}"
            );
            on_cpu_list[slab] += 1;
            put(o, format!("cpu {cpu} freelist"));
        }
        if slab != 0 {
            assert!(
                !cpu_owned[slab],
                "slub model: slab {slab} owned by two CPU slots"
            );
            cpu_owned[slab] = true;
        }
        let mut p = c.partial.load(Ordering::Relaxed);
        while p != 0 {
            assert!(!cpu_owned[p], "slub model: slab {p} owned by two CPU slots");
            cpu_owned[p] = true;
            // SAFETY: checker.
            p = s.page(p).private.with(|x| unsafe { *x });
        }
    }
    let mut nr_slabs = 0;
    for slab in 1..=npages {
        let st = page_state(s, slab);
        if st != PAGE_SLAB {
            assert!(
                !listed.contains(&slab),
                "slub model: freed page {slab} listed"
            );
            assert!(
                !cpu_owned[slab],
                "slub model: freed page {slab} in a CPU slot"
            );
            continue;
        }
        nr_slabs += 1;
        let (fl, counters) = slab_freelist_counters(s, slab);
        let c = SlabCounters::unpack(counters);
        let free = walk(s, fl, &format!("slab {slab} freelist"));
        for &o in &free {
            assert_eq!(
                s.virt_to_slab(o),
                slab,
                "slub model: slab {slab} freelist holds object {o}"
            );
            put(o, format!("slab {slab} freelist"));
        }
        let owned_here = owned.iter().filter(|&&o| s.virt_to_slab(o) == slab).count();
        assert_eq!(
            c.inuse as usize,
            owned_here + on_cpu_list[slab] as usize,
            "slub model: slab {slab}: inuse != objects owned + on a CPU freelist ({c:?})"
        );
        assert_eq!(
            c.inuse as usize,
            s.objs - free.len(),
            "slub model: slab {slab}: inuse != objects - free ({c:?})"
        );
        assert_eq!(
            c.frozen, cpu_owned[slab],
            "slub model: slab {slab}: frozen {} but owned by a CPU slot {}",
            c.frozen, cpu_owned[slab]
        );
        if listed.contains(&slab) {
            assert!(!c.frozen, "slub model: frozen slab {slab} on the node list");
            assert!(
                !free.is_empty(),
                "slub model: full slab {slab} on the partial list"
            );
        }
    }
    assert_eq!(
        s.node.nr_slabs.load(Ordering::Relaxed),
        nr_slabs,
        "slub model: nr_slabs"
    );
    for slab in 1..=npages {
        if page_state(s, slab) == PAGE_SLAB {
            for o in s.objects_of(slab) {
                assert_eq!(seen[o], 1, "slub model: object {o} of slab {slab} is lost");
            }
        }
    }
}

/// After [`check`]: flushes every CPU slot and frees every owned object, then checks that every
/// object is back on exactly one slab freelist (or its empty slab was discarded), no slab is
/// frozen, and every slab left is on the partial list.
pub fn drain_and_check(s: &KmemCache, owned: &[usize]) {
    for cpu in 0..s.cpu_slab.len() {
        __flush_cpu_slab(s, cpu);
    }
    for &o in owned {
        kmem_cache_free(s, 0, o);
    }
    for cpu in 0..s.cpu_slab.len() {
        __flush_cpu_slab(s, cpu);
    }
    check(s, &[]);
    let listed = s.node.list_lock.lock().unwrap().clone();
    for slab in 1..=s.pages.len() {
        if page_state(s, slab) == PAGE_SLAB {
            let c = SlabCounters::unpack(s.page(slab).freelist_counters.hi(Ordering::Relaxed));
            assert_eq!(c.inuse, 0, "slub model: slab {slab} in use after the drain");
            assert!(
                listed.contains(&slab),
                "slub model: empty slab {slab} unlisted"
            );
        }
    }
}
