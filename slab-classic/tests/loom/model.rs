//! The SLAB (2.6.32) array-cache handoff model that `tests/loom.rs` runs under loom: per-CPU
//! `array_cache`s under their CPU slot lock, the node's `shared` array and slab lists under
//! `list_lock`, and alien arrays under their own lock, written with loom's mutexes and cells.
//!
//! # Why a model and not the crate itself
//! The crate's arrays, `kmem_list3`s and slab descriptors live in provider memory (`mmap`) and
//! are reached through raw pointers, and its locks (`RawLock`, `LocalLock`) spin on std
//! atomics: loom can see none of it. So this file re-states the protocol with **the same
//! function names and the same order of lock/unlock and array operations** as the code it
//! mirrors, over loom types. Representation only differs:
//! - every lock is a loom `Mutex<()>` taken and released where the crate calls `lock()` /
//!   `unlock()`; the data each lock protects is in a *separate* loom `UnsafeCell`, as in the
//!   crate (lock and data paired by convention, not by type), so an access that the locks do
//!   not order is reported by loom as a causality violation;
//! - an `array_cache` is `{avail, limit, batchcount, touched, entry[limit]}` in one cell;
//! - slabs are page numbers `1..`; objects are numbers `1..` (object `o` lies in page
//!   `(o - 1) / num + 1`); a slab's bufctl chain is a stack of its free objects; the three
//!   lists are `Vec`s of page numbers; pages `node * pages_per_node + 1 ..` belong to `node`;
//! - no colouring (so `cache_grow`'s first `list_lock` section, for `colour_next`, is left
//!   out), no off-slab descriptors, no debug, no stats, no rseq mode (this is the lock-mode
//!   fast path, `SLAB_FASTPATH=lock`), no `cache_reap`/`drain_array` (the checker's drain does
//!   what `drain_array` does), no tunables;
//! - added, not in the crate: the `assert!`s that make the model fail, the `live` flag of a
//!   slab, and [`Held`] guards that are leaked rather than released while a failing thread
//!   unwinds.
//!
//! # Side by side (model function → crate function, slab-classic/src/…)
//! | model | crate |
//! |---|---|
//! | [`Slab::____cache_alloc`], [`Slab::__cache_free`] | `fastpath.rs`, same names (callers `cache_alloc_locked`, `cache_free_locked` take the slot lock: [`Slab::kmem_cache_alloc`], [`Slab::kmem_cache_free`]) |
//! | [`Slab::cache_alloc_refill`], [`Slab::cache_flusharray`], [`Slab::cache_grow`], [`Slab::slab_destroy`] | `refill.rs`, same names |
//! | [`transfer_objects`], [`ac_shift_down`] | `arraycache.rs`, same names |
//! | [`Slab::free_block`] | `node.rs: free_block` |
//! | [`slab_get_obj`], [`slab_put_obj`] | `slabmgmt.rs`, same names |
//! | [`Slab::cache_free_alien`], [`Slab::__drain_alien_cache`] | `numa.rs`, same names |
//!
//! # Negative controls
//! [`Bug`] drops one lock of the handoff; the tests show loom finds each.

use loom::cell::UnsafeCell;
use loom::sync::{Mutex, MutexGuard};
use std::cell::Cell;

/// Branches of the handoff, counted so a test can assert that the explored executions reached
/// them (the crate's `StatItem` names where it has one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    /// `ALLOCHIT`: popped from the CPU array.
    AllocHit,
    /// `ALLOCMISS`: `cache_alloc_refill`.
    AllocMiss,
    /// The refill took objects from the shared array (`transfer_objects`).
    RefillFromShared,
    /// The refill took objects from the slab lists (`LISTALLOCS`).
    RefillFromSlabs,
    /// `GROWN`: `cache_grow` added a slab.
    Grown,
    /// `FREEHIT`: pushed on the CPU array.
    FreeHit,
    /// `FREEMISS`: `cache_flusharray`.
    FreeMiss,
    /// The flush moved the batch to the shared array.
    FlushToShared,
    /// The flush gave the batch to `free_block` (shared array full).
    FlushFreeBlock,
    /// `NODEFREES`: an object of another node went to an alien array.
    NodeFrees,
    /// `ACOVERFLOW`: a full alien array was drained.
    AlienOverflow,
    /// The alien drain moved objects to the remote shared array.
    DrainToShared,
    /// The alien drain gave objects to `free_block`.
    DrainFreeBlock,
    /// `free_block` destroyed an empty slab (`free_objects > free_limit`).
    SlabDestroy,
}

const NEV: usize = Ev::SlabDestroy as usize + 1;

thread_local! {
    /// Per test thread (loom runs all model threads on it): counting on/off and the counts.
    static EVENTS: (Cell<bool>, [Cell<u64>; NEV]) =
        const { (Cell::new(false), [const { Cell::new(0) }; NEV]) };
}

fn ev(e: Ev) {
    EVENTS.with(|(on, c)| {
        if on.get() {
            c[e as usize].set(c[e as usize].get() + 1);
        }
    });
}

/// Starts or stops counting events (on only while the threads of a scenario run).
pub fn events_on(on: bool) {
    EVENTS.with(|(o, _)| o.set(on));
}

/// The counts since the last call (by `Ev as usize`), reset.
pub fn take_events() -> [u64; NEV] {
    EVENTS.with(|(_, c)| core::array::from_fn(|i| c[i].replace(0)))
}

/// A deliberately dropped lock, for the negative controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// The protocol as the crate implements it.
    None,
    /// `kmem_cache_alloc`/`kmem_cache_free` use the CPU array without the CPU slot lock.
    NoSlotLock,
    /// `cache_flusharray` moves the batch to the shared array without `list_lock`.
    FlushNoListLock,
    /// `__drain_alien_cache` moves the alien objects to the remote node without its
    /// `list_lock`.
    DrainAlienNoListLock,
}

/// `BATCHREFILL_LIMIT`.
const BATCHREFILL_LIMIT: usize = 16;

/// `struct array_cache` without its lock.
#[derive(Debug)]
pub struct Ac {
    pub avail: usize,
    pub limit: usize,
    pub batchcount: usize,
    pub touched: bool,
    pub entry: Vec<usize>,
}

/// `struct array_cache`: `lock` (taken for shared and alien arrays) and the array.
pub struct ArrayCache {
    pub lock: Mutex<()>,
    data: UnsafeCell<Ac>,
}

impl ArrayCache {
    fn new(limit: usize, batchcount: usize) -> Self {
        Self {
            lock: Mutex::new(()),
            data: UnsafeCell::new(Ac {
                avail: 0,
                limit,
                batchcount,
                touched: false,
                entry: vec![0; limit],
            }),
        }
    }

    /// The array, for a caller that holds the lock protecting it (loom checks that it does).
    pub fn with<R>(&self, f: impl FnOnce(&mut Ac) -> R) -> R {
        // SAFETY: loom tracks the access and reports it if no lock orders it against another.
        self.data.with_mut(|p| f(unsafe { &mut *p }))
    }
}

/// `struct slab`: `inuse` and the bufctl chain (a stack of free objects, head last).
#[derive(Debug, Default)]
pub struct SlabDesc {
    pub inuse: usize,
    pub free: Vec<usize>,
    pub nodeid: usize,
    /// `PG_slab` of its page: set by `cache_grow`, cleared by `slab_destroy`.
    pub live: bool,
}

/// The list-lock-protected part of `struct kmem_list3`.
#[derive(Debug, Default)]
pub struct L3 {
    pub slabs_partial: Vec<usize>,
    pub slabs_full: Vec<usize>,
    pub slabs_free: Vec<usize>,
    pub free_objects: usize,
    pub free_limit: usize,
}

/// `struct kmem_list3`.
pub struct KmemList3 {
    pub list_lock: Mutex<()>,
    data: UnsafeCell<L3>,
    /// `shared` (contents under `list_lock`).
    pub shared: Option<ArrayCache>,
    /// `alien[node]` (each under its own lock).
    pub alien: Vec<Option<ArrayCache>>,
}

impl KmemList3 {
    /// The lists, for a holder of `list_lock`.
    pub fn with<R>(&self, f: impl FnOnce(&mut L3) -> R) -> R {
        // SAFETY: loom tracks the access (see ArrayCache::with).
        self.data.with_mut(|p| f(unsafe { &mut *p }))
    }
}

/// `CpuSlot`: the CPU slot lock (the `local_irq_save` stand-in), its node, its array.
pub struct CpuSlot {
    pub lock: Mutex<()>,
    pub node: usize,
    pub ac: ArrayCache,
}

/// Geometry of the model cache.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub nodes: usize,
    pub cpus_per_node: usize,
    pub pages_per_node: usize,
    /// `num`: objects per slab.
    pub num: usize,
    /// CPU arrays: `limit`, `batchcount`.
    pub limit: usize,
    pub batchcount: usize,
    /// Shared array limit (0: none).
    pub shared: usize,
    /// Alien array limit (0: none).
    pub alien: usize,
    pub free_limit: usize,
}

/// One `kmem_cache` of a SLAB instance (with its page provider).
pub struct Slab {
    pub bug: Bug,
    pub g: Geometry,
    /// `array[cpu]`; CPU `c` is on node `c / cpus_per_node`.
    pub cpu: Vec<CpuSlot>,
    /// `nodelists[node]`.
    pub l3: Vec<KmemList3>,
    /// Slab descriptors by page number − 1, each under its node's `list_lock`.
    slabs: Vec<UnsafeCell<SlabDesc>>,
    /// The provider: next page per node (its node lock).
    provider: Mutex<Vec<usize>>,
}

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

/// `spin_lock` (the guard is dropped where the crate calls `spin_unlock`).
fn lock(m: &Mutex<()>) -> Held<'_, ()> {
    acquire(m)
}

/// `spin_lock`, or nothing for the negative control that drops this lock.
fn lock_unless(m: &Mutex<()>, dropped: bool) -> Option<Held<'_, ()>> {
    (!dropped).then(|| lock(m))
}

impl Slab {
    pub fn new(bug: Bug, g: Geometry) -> Self {
        let l3 = (0..g.nodes)
            .map(|_| KmemList3 {
                list_lock: Mutex::new(()),
                data: UnsafeCell::new(L3 {
                    free_limit: g.free_limit,
                    ..L3::default()
                }),
                shared: (g.shared > 0).then(|| ArrayCache::new(g.shared, g.batchcount)),
                alien: (0..g.nodes)
                    .map(|_| (g.alien > 0 && g.nodes > 1).then(|| ArrayCache::new(g.alien, 1)))
                    .collect(),
            })
            .collect();
        Self {
            bug,
            g,
            cpu: (0..g.nodes * g.cpus_per_node)
                .map(|c| CpuSlot {
                    lock: Mutex::new(()),
                    node: c / g.cpus_per_node,
                    ac: ArrayCache::new(g.limit, g.batchcount),
                })
                .collect(),
            l3,
            slabs: (0..g.nodes * g.pages_per_node)
                .map(|_| UnsafeCell::new(SlabDesc::default()))
                .collect(),
            provider: Mutex::new((0..g.nodes).map(|n| n * g.pages_per_node + 1).collect()),
        }
    }

    /// The descriptor of page `slabp`, for a holder of its node's `list_lock`.
    pub fn slab<R>(&self, slabp: usize, f: impl FnOnce(&mut SlabDesc) -> R) -> R {
        // SAFETY: loom tracks the access (see ArrayCache::with).
        self.slabs[slabp - 1].with_mut(|p| f(unsafe { &mut *p }))
    }

    /// `virt_to_slab`.
    pub fn virt_to_slab(&self, objp: usize) -> usize {
        (objp - 1) / self.g.num + 1
    }

    /// The node of an object (`slabp->nodeid`, a constant of its page).
    pub fn obj_node(&self, objp: usize) -> usize {
        (self.virt_to_slab(objp) - 1) / self.g.pages_per_node
    }

    fn pages(&self) -> usize {
        self.g.nodes * self.g.pages_per_node
    }

    // -----------------------------------------------------------------------------------------
    // fastpath.rs
    // -----------------------------------------------------------------------------------------

    /// `cache_alloc_locked` (lock mode): the slot lock around `____cache_alloc`. 0 when
    /// the node is out of pages.
    pub fn kmem_cache_alloc(&self, cpu: usize) -> usize {
        let slot = &self.cpu[cpu];
        let g = lock_unless(&slot.lock, self.bug == Bug::NoSlotLock);
        let objp = self.____cache_alloc(slot);
        drop(g);
        objp
    }

    /// `____cache_alloc`: pop from the CPU array, or refill. Slot lock held.
    pub fn ____cache_alloc(&self, slot: &CpuSlot) -> usize {
        let hit = slot.ac.with(|ac| {
            if ac.avail > 0 {
                ac.touched = true;
                ac.avail -= 1;
                Some(ac.entry[ac.avail])
            } else {
                None
            }
        });
        if hit.is_some() {
            ev(Ev::AllocHit);
        }
        hit.unwrap_or_else(|| {
            ev(Ev::AllocMiss);
            self.cache_alloc_refill(&slot.ac, slot.node)
        })
    }

    /// `cache_free_locked` (lock mode): the slot lock around `__cache_free`.
    pub fn kmem_cache_free(&self, cpu: usize, objp: usize) {
        let slot = &self.cpu[cpu];
        let g = lock_unless(&slot.lock, self.bug == Bug::NoSlotLock);
        self.__cache_free(slot, objp);
        drop(g);
    }

    /// `__cache_free`: remote objects to the alien path, else push on the CPU array, flushing
    /// a batch first when it is full. Slot lock held.
    pub fn __cache_free(&self, slot: &CpuSlot, objp: usize) {
        let node = slot.node;
        if self.g.nodes > 1 && self.cache_free_alien(objp, node) {
            return;
        }
        let (on_top, full) = slot.ac.with(|ac| {
            (
                ac.avail > 0 && ac.entry[ac.avail - 1] == objp,
                ac.avail >= ac.limit,
            )
        });
        assert!(
            !on_top,
            "slab model: double free of {objp} (top of the array)"
        );
        if full {
            ev(Ev::FreeMiss);
            self.cache_flusharray(&slot.ac, node);
        } else {
            ev(Ev::FreeHit);
        }
        slot.ac.with(|ac| {
            ac.entry[ac.avail] = objp;
            ac.avail += 1;
        });
    }

    // -----------------------------------------------------------------------------------------
    // refill.rs
    // -----------------------------------------------------------------------------------------

    /// `cache_alloc_refill`: up to `batchcount` objects from the shared array, else from the
    /// partial then free slabs; grows the node and retries when it has none. Slot lock held,
    /// `ac` empty.
    pub fn cache_alloc_refill(&self, ac: &ArrayCache, node: usize) -> usize {
        loop {
            let mut batchcount = ac.with(|a| {
                if !a.touched && a.batchcount > BATCHREFILL_LIMIT {
                    BATCHREFILL_LIMIT
                } else {
                    a.batchcount
                }
            });
            let l3 = &self.l3[node];
            let g = lock(&l3.list_lock);
            let from_shared = l3
                .shared
                .as_ref()
                .is_some_and(|shared| transfer_objects(ac, shared, batchcount) > 0);
            if from_shared {
                ev(Ev::RefillFromShared);
            } else {
                l3.with(|n| {
                    while batchcount > 0 {
                        let slabp = if let Some(&p) = n.slabs_partial.first() {
                            n.slabs_partial.remove(0);
                            p
                        } else if let Some(&p) = n.slabs_free.first() {
                            n.slabs_free.remove(0);
                            p
                        } else {
                            break; // must_grow
                        };
                        self.slab(slabp, |sl| {
                            while sl.inuse < self.g.num && batchcount > 0 {
                                batchcount -= 1;
                                ev(Ev::RefillFromSlabs);
                                let o = slab_get_obj(sl);
                                ac.with(|a| {
                                    a.entry[a.avail] = o;
                                    a.avail += 1;
                                });
                            }
                            if sl.free.is_empty() {
                                n.slabs_full.insert(0, slabp);
                            } else {
                                n.slabs_partial.insert(0, slabp);
                            }
                        });
                    }
                    let avail = ac.with(|a| a.avail);
                    assert!(
                        n.free_objects >= avail,
                        "slab model: free_objects {} < {avail} taken",
                        n.free_objects
                    );
                    n.free_objects -= avail;
                });
            }
            drop(g);
            if ac.with(|a| a.avail) == 0 {
                let grown = self.cache_grow(node);
                if !grown && ac.with(|a| a.avail) == 0 {
                    return 0;
                }
                if ac.with(|a| a.avail) == 0 {
                    continue;
                }
            }
            return ac.with(|a| {
                a.touched = true;
                a.avail -= 1;
                a.entry[a.avail]
            });
        }
    }

    /// `cache_flusharray`: the `batchcount` oldest objects of a full CPU array to the shared
    /// array if it has room, else `free_block`; the rest slide down. Slot lock held.
    pub fn cache_flusharray(&self, ac: &ArrayCache, node: usize) {
        let mut batchcount = ac.with(|a| a.batchcount.min(a.avail));
        let l3 = &self.l3[node];
        let g = lock_unless(&l3.list_lock, self.bug == Bug::FlushNoListLock);
        let mut done = false;
        if let Some(shared) = &l3.shared {
            shared.with(|sh| {
                let max = sh.limit - sh.avail;
                if max > 0 {
                    batchcount = batchcount.min(max);
                    ac.with(|a| {
                        sh.entry[sh.avail..sh.avail + batchcount]
                            .copy_from_slice(&a.entry[..batchcount]);
                    });
                    sh.avail += batchcount;
                    done = true;
                }
            });
        }
        if done {
            ev(Ev::FlushToShared);
        } else {
            ev(Ev::FlushFreeBlock);
            let objs = ac.with(|a| a.entry[..batchcount].to_vec());
            self.free_block(&objs, node);
        }
        drop(g);
        ac_shift_down(ac, batchcount);
    }

    /// `cache_grow`: one more slab on `node`'s free list. `false` when out of pages.
    pub fn cache_grow(&self, node: usize) -> bool {
        let page = {
            let mut next = acquire(&self.provider);
            if next[node] > (node + 1) * self.g.pages_per_node {
                return false;
            }
            next[node] += 1;
            next[node] - 1
        };
        let first = (page - 1) * self.g.num + 1;
        // The new slab is private until linked.
        self.slab(page, |sl| {
            *sl = SlabDesc {
                inuse: 0,
                free: (first..first + self.g.num).rev().collect(),
                nodeid: node,
                live: true,
            };
        });
        let l3 = &self.l3[node];
        let g = lock(&l3.list_lock);
        l3.with(|n| {
            n.slabs_free.push(page);
            n.free_objects += self.g.num;
        });
        ev(Ev::Grown);
        drop(g);
        true
    }

    /// `slab_destroy`: the page goes back (never reused by the model's provider).
    fn slab_destroy(&self, slabp: usize) {
        self.slab(slabp, |sl| {
            assert!(
                sl.live && sl.inuse == 0,
                "slab model: destroying slab {slabp} ({sl:?})"
            );
            sl.live = false;
        });
        ev(Ev::SlabDestroy);
    }

    // -----------------------------------------------------------------------------------------
    // node.rs
    // -----------------------------------------------------------------------------------------

    /// `free_block`: objects back to their slabs; an empty slab is destroyed above
    /// `free_limit`, else listed free; a slab still in use goes to the partial tail.
    /// `list_lock` of `node` held.
    pub fn free_block(&self, objpp: &[usize], node: usize) {
        let l3 = &self.l3[node];
        l3.with(|n| {
            for &objp in objpp {
                let slabp = self.virt_to_slab(objp);
                for list in [&mut n.slabs_partial, &mut n.slabs_full, &mut n.slabs_free] {
                    list.retain(|&p| p != slabp);
                }
                let empty = self.slab(slabp, |sl| {
                    assert!(sl.live, "slab model: free into destroyed slab {slabp}");
                    assert_eq!(
                        sl.nodeid, node,
                        "slab model: object {objp} on the wrong node"
                    );
                    slab_put_obj(sl, objp);
                    sl.inuse == 0
                });
                n.free_objects += 1;
                if empty {
                    if n.free_objects > n.free_limit {
                        n.free_objects -= self.g.num;
                        self.slab_destroy(slabp);
                    } else {
                        n.slabs_free.insert(0, slabp);
                    }
                } else {
                    n.slabs_partial.push(slabp);
                }
            }
        });
    }

    // -----------------------------------------------------------------------------------------
    // numa.rs
    // -----------------------------------------------------------------------------------------

    /// `cache_free_alien`: `true` if `objp` belongs to another node than `node` and went to
    /// that node's alien array of `node` (draining it first when full).
    pub fn cache_free_alien(&self, objp: usize, node: usize) -> bool {
        let nodeid = self.obj_node(objp);
        if nodeid == node {
            return false;
        }
        ev(Ev::NodeFrees);
        let alien = self.l3[node].alien[nodeid]
            .as_ref()
            .expect("model caches have alien arrays");
        let g = lock(&alien.lock);
        if alien.with(|a| a.avail == a.limit) {
            ev(Ev::AlienOverflow);
            self.__drain_alien_cache(alien, nodeid);
        }
        alien.with(|a| {
            a.entry[a.avail] = objp;
            a.avail += 1;
        });
        drop(g);
        true
    }

    /// `__drain_alien_cache`: the alien array's objects into `node`'s shared array as far as
    /// it goes, the rest through `free_block`. The alien array's lock held.
    pub fn __drain_alien_cache(&self, ac: &ArrayCache, node: usize) {
        if ac.with(|a| a.avail) == 0 {
            return;
        }
        let rl3 = &self.l3[node];
        let g = lock_unless(&rl3.list_lock, self.bug == Bug::DrainAlienNoListLock);
        if let Some(shared) = &rl3.shared {
            let limit = ac.with(|a| a.limit);
            if transfer_objects(shared, ac, limit) > 0 {
                ev(Ev::DrainToShared);
            }
        }
        let objs = ac.with(|a| a.entry[..a.avail].to_vec());
        if !objs.is_empty() {
            ev(Ev::DrainFreeBlock);
        }
        self.free_block(&objs, node);
        ac.with(|a| a.avail = 0);
        drop(g);
    }

    // -----------------------------------------------------------------------------------------
    // The checker (validate.rs's accounting), run after every thread joined
    // -----------------------------------------------------------------------------------------

    /// Checks, with every thread joined and `owned` the objects the threads hold, that each
    /// object of a live slab is in exactly one place (owned, a CPU array, a shared array, an
    /// alien array of the right node, or its slab's free chain), that no object of a
    /// destroyed slab is anywhere, that every slab is on the list its `inuse` says and
    /// `free_objects` = Σ (num − inuse) over the node's listed slabs.
    pub fn check(&self, owned: &[usize]) {
        let nobj = self.pages() * self.g.num;
        let mut place: Vec<Option<String>> = vec![None; nobj + 1];
        let mut put = |o: usize, w: String| {
            assert!(
                o >= 1 && o <= nobj,
                "slab model: {o} is not an object ({w})"
            );
            if let Some(p) = &place[o] {
                panic!("slab model: object {o} is in two places: {p} and {w}");
            }
            place[o] = Some(w);
        };
        for &o in owned {
            put(o, "owned by a thread".into());
        }
        for (c, slot) in self.cpu.iter().enumerate() {
            slot.ac.with(|a| {
                for &o in &a.entry[..a.avail] {
                    assert_eq!(
                        self.obj_node(o),
                        slot.node,
                        "slab model: remote object {o} in cpu {c}'s array"
                    );
                    put(o, format!("cpu {c} array"));
                }
            });
        }
        for (node, l3) in self.l3.iter().enumerate() {
            if let Some(sh) = &l3.shared {
                sh.with(|a| {
                    for &o in &a.entry[..a.avail] {
                        assert_eq!(self.obj_node(o), node, "slab model: shared array of {node}");
                        put(o, format!("node {node} shared array"));
                    }
                });
            }
            for (there, al) in l3.alien.iter().enumerate() {
                if let Some(al) = al {
                    al.with(|a| {
                        for &o in &a.entry[..a.avail] {
                            assert_eq!(self.obj_node(o), there, "slab model: alien array");
                            put(o, format!("node {node} alien array for {there}"));
                        }
                    });
                }
            }
            l3.with(|n| {
                let mut free = 0;
                for (list, want) in [
                    (&n.slabs_full, "full"),
                    (&n.slabs_partial, "partial"),
                    (&n.slabs_free, "free"),
                ] {
                    for &p in list {
                        self.slab(p, |sl| {
                            assert!(sl.live, "slab model: destroyed slab {p} listed");
                            assert_eq!(sl.nodeid, node);
                            let is = match sl.inuse {
                                0 => "free",
                                x if x == self.g.num => "full",
                                _ => "partial",
                            };
                            assert_eq!(
                                is, want,
                                "slab model: slab {p} ({sl:?}) on the {want} list"
                            );
                            assert_eq!(sl.inuse + sl.free.len(), self.g.num);
                            free += sl.free.len();
                            for &o in &sl.free {
                                assert_eq!(self.virt_to_slab(o), p);
                                put(o, format!("slab {p} free chain"));
                            }
                        });
                    }
                }
                assert_eq!(
                    n.free_objects, free,
                    "slab model: node {node} free_objects {} but {free} free on its slabs",
                    n.free_objects
                );
            });
        }
        let next = self.provider.lock().unwrap().clone();
        for p in 1..=self.pages() {
            let node = (p - 1) / self.g.pages_per_node;
            if p >= next[node] {
                continue; // never handed out
            }
            let live = self.slab(p, |sl| sl.live);
            let first = (p - 1) * self.g.num + 1;
            for (o, w) in place.iter().enumerate().skip(first).take(self.g.num) {
                if live {
                    assert!(w.is_some(), "slab model: object {o} of slab {p} is lost");
                } else {
                    assert!(
                        w.is_none(),
                        "slab model: object {o} of destroyed slab {p} in {w:?}"
                    );
                }
            }
        }
    }

    /// After [`Self::check`]: frees what the threads hold, drains every alien, CPU and shared
    /// array (`drain_alien_cache`, `drain_array`), and checks that every object is back on its
    /// slab's free chain with `free_objects` matching.
    pub fn drain_and_check(&self, owned: &[usize]) {
        for &o in owned {
            let cpu = self.obj_node(o) * self.g.cpus_per_node;
            self.kmem_cache_free(cpu, o);
        }
        for l3 in &self.l3 {
            for (there, al) in l3.alien.iter().enumerate() {
                if let Some(al) = al {
                    let g = lock(&al.lock);
                    self.__drain_alien_cache(al, there);
                    drop(g);
                }
            }
        }
        for slot in &self.cpu {
            let g = lock(&slot.lock);
            let objs = slot.ac.with(|a| a.entry[..a.avail].to_vec());
            let l3 = &self.l3[slot.node];
            let lg = lock(&l3.list_lock);
            self.free_block(&objs, slot.node);
            drop(lg);
            slot.ac.with(|a| a.avail = 0);
            drop(g);
        }
        for (node, l3) in self.l3.iter().enumerate() {
            if let Some(sh) = &l3.shared {
                let g = lock(&l3.list_lock);
                let objs = sh.with(|a| a.entry[..a.avail].to_vec());
                self.free_block(&objs, node);
                sh.with(|a| a.avail = 0);
                drop(g);
            }
        }
        self.check(&[]);
        for l3 in &self.l3 {
            l3.with(|n| {
                assert!(
                    n.slabs_full.is_empty() && n.slabs_partial.is_empty(),
                    "slab model: slabs in use after the drain: {n:?}"
                );
            });
        }
    }
}

/// `slab_get_obj`: the next free object of the slab's bufctl chain.
pub fn slab_get_obj(sl: &mut SlabDesc) -> usize {
    let o = sl.free.pop().expect("slab_get_obj on a full slab");
    sl.inuse += 1;
    o
}

/// `slab_put_obj`, with the `BUFCTL_FREE` double-free check.
pub fn slab_put_obj(sl: &mut SlabDesc, objp: usize) {
    assert!(
        !sl.free.contains(&objp),
        "slab model: double free of {objp} (already on its bufctl chain)"
    );
    sl.free.push(objp);
    sl.inuse -= 1;
}

/// `transfer_objects(to, from, max)`: moves `min(from.avail, max, to.limit − to.avail)`
/// entries from the top of `from` onto `to`. Both arrays' locks held by the caller.
pub fn transfer_objects(to: &ArrayCache, from: &ArrayCache, max: usize) -> usize {
    to.with(|t| {
        from.with(|f| {
            let nr = f.avail.min(max).min(t.limit - t.avail);
            if nr == 0 {
                return 0;
            }
            t.entry[t.avail..t.avail + nr].copy_from_slice(&f.entry[f.avail - nr..f.avail]);
            f.avail -= nr;
            t.avail += nr;
            t.touched = true;
            nr
        })
    })
}

/// `ac_shift_down`: drops the `n` oldest entries, moving the rest down.
pub fn ac_shift_down(ac: &ArrayCache, n: usize) {
    ac.with(|a| {
        a.avail -= n;
        a.entry.copy_within(n..n + a.avail, 0);
    });
}
