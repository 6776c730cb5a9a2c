//! NUMA — 2.6.32 `____cache_alloc_node`, `fallback_alloc`, `cache_free_alien`,
//! `__drain_alien_cache`, `drain_alien_cache`, `reap_alien`, `init_reap_node`/`next_reap_node`.
//!
//! Alien arrays: `nodelists[here].alien[there]` collects objects of node `there` freed by CPUs
//! of node `here` (12 entries); when full it is drained under `there`'s `list_lock`, first into
//! `there`'s shared array, the rest with `free_block`. Lock order: CPU slot → alien lock →
//! remote node's `list_lock`.

use crate::arraycache::{ArrayCache, ArrayRef};
use crate::cache::KmemCache;
use crate::instance::SlabGlobals;
use crate::node::{alien_table, List};
use crate::slabmgmt::BUFCTL_END;
use crate::stats::StatItem;
use common::Gfp;
use core::ptr::null_mut;
use core::sync::atomic::Ordering;

impl SlabGlobals {
    /// `____cache_alloc_node`: one object straight from `nodeid`'s lists, growing that node
    /// (THISNODE) when empty, then `fallback_alloc` unless the caller said `THISNODE`.
    /// `here` is the node of the CPU whose slot the caller holds (`numa_node_id()`). The
    /// caller may hold its CPU slot lock but no list_lock.
    #[cold]
    pub(crate) fn ____cache_alloc_node(
        &self,
        cachep: &KmemCache,
        gfp: Gfp,
        nodeid: usize,
        here: usize,
    ) -> *mut u8 {
        loop {
            let l3 = self.lock_list(cachep, nodeid);
            let slabp = l3.first(List::Partial).or_else(|| {
                l3.set_free_touched(true);
                l3.first(List::Free)
            });
            if let Some(slabp) = slabp {
                self.stat_inc(cachep, StatItem::NODEALLOCS);
                self.stat_active(cachep, 1);
                let debug = cachep.is_debug();
                if debug {
                    self.debug_check_slabp(cachep, slabp);
                }
                let obj = slabp.get_obj(cachep);
                if debug {
                    self.debug_check_slabp(cachep, slabp);
                }
                l3.set_free_objects(l3.free_objects() - 1);
                let list = if slabp.free() == BUFCTL_END {
                    List::Full
                } else {
                    List::Partial
                };
                // SAFETY: the slab is on one of this node's lists.
                unsafe { l3.move_to(slabp, list) };
                return obj;
            }
            drop(l3);
            if !self.cache_grow(cachep, Gfp(gfp.0 | Gfp::THISNODE.0), nodeid, None) {
                break;
            }
        }
        self.fallback_alloc(cachep, gfp, here)
    }

    /// `fallback_alloc`: any node with free objects, nearest first; else a slab from wherever
    /// the page provider finds memory, linked on the node it came from (nothing with
    /// `THISNODE`).
    #[cold]
    pub(crate) fn fallback_alloc(&self, cachep: &KmemCache, gfp: Gfp, here: usize) -> *mut u8 {
        if gfp.contains(Gfp::THISNODE) {
            return null_mut();
        }
        let order = self.provider.topology().nodes_by_distance(here);
        let thisnode = Gfp(gfp.0 | Gfp::THISNODE.0);
        loop {
            for &nid in &order[..self.nr_nodes] {
                let nid = nid as usize;
                if self.l3(cachep, nid).is_null() {
                    continue;
                }
                let has = self.lock_list(cachep, nid).free_objects() > 0;
                if has {
                    let obj = self.____cache_alloc_node(cachep, thisnode, nid, here);
                    if !obj.is_null() {
                        return obj;
                    }
                }
            }
            let Some(page) = self.kmem_getpages(cachep, Gfp(gfp.0 & !Gfp::THISNODE.0), here) else {
                return null_mut();
            };
            let nid = self.provider.page_to_nid(page);
            if !self.cache_grow(cachep, gfp, nid, Some(page)) {
                return null_mut();
            }
            let obj = self.____cache_alloc_node(cachep, thisnode, nid, here);
            if !obj.is_null() {
                return obj;
            }
        }
    }

    /// `nodelists[node].alien[other]` of `cachep` (null without one).
    fn alien_array(&self, cachep: &KmemCache, node: usize, other: usize) -> *mut ArrayCache {
        let l3 = self.l3(cachep, node);
        // SAFETY: a live list3 of a live cache.
        let tab = unsafe { alien_table(l3) };
        if tab.is_null() {
            return null_mut();
        }
        assert!(other < self.nr_nodes);
        // SAFETY: the table has nr_nodes entries, set before it was published.
        unsafe { *tab.add(other) }
    }

    /// `cache_free_alien`: an object of another node than `node` (this CPU's) goes to this
    /// node's alien array for its node (drained when full), or straight back with
    /// `free_block` without alien caches. `false` for an object of `node` itself.
    ///
    /// # Safety
    /// `objp` a live object start of `cachep`, handed out, not used afterwards.
    #[inline(never)]
    pub(crate) unsafe fn cache_free_alien(
        &self,
        cachep: &KmemCache,
        objp: *mut u8,
        node: usize,
    ) -> bool {
        // SAFETY: a live object (contract); `nodeid` never changes.
        let nodeid = unsafe { self.slab_of_obj(objp) }.nodeid();
        if nodeid == node {
            return false;
        }
        self.stat_inc(cachep, StatItem::NODEFREES);
        let alien = self.alien_array(cachep, node, nodeid);
        if alien.is_null() {
            let rl3 = self.lock_list(cachep, nodeid);
            let mut o = objp;
            // SAFETY: a handed-out object of this cache on node `nodeid` (contract).
            unsafe { self.free_block(cachep, &rl3, &raw mut o, 1) };
            return true;
        }
        // SAFETY: a live alien array; its lock is taken here and held until unlock below.
        unsafe { (*alien).lock.lock() };
        // SAFETY: locked above until the unlock below.
        let ac = unsafe { ArrayRef::new(alien) };
        if ac.avail() == ac.limit() {
            self.stat_inc(cachep, StatItem::ACOVERFLOW);
            self.__drain_alien_cache(cachep, ac, nodeid);
        }
        ac.push(objp);
        // SAFETY: locked above.
        unsafe { (*alien).lock.unlock() };
        true
    }

    /// `__drain_alien_cache`: an alien array's objects back to node `node` (its shared array
    /// first, the rest with `free_block`). `ac` is locked.
    pub(crate) fn __drain_alien_cache(&self, cachep: &KmemCache, ac: ArrayRef<'_>, node: usize) {
        if ac.avail() == 0 {
            return;
        }
        let rl3 = self.lock_list(cachep, node);
        if let Some(shared) = rl3.shared() {
            shared.transfer_from(ac, ac.limit());
        }
        // SAFETY: an alien array of node `node` holds handed-out objects of that node.
        unsafe { self.free_block(cachep, &rl3, ac.entries(), ac.avail() as usize) };
        ac.clear();
    }

    /// Runs `f` on `nodelists[node].alien[other]` under its lock: `lock` (or, with `try`,
    /// `trylock`: nothing happens when it is busy). Nothing without such an array.
    fn with_alien(
        &self,
        cachep: &KmemCache,
        node: usize,
        other: usize,
        try_only: bool,
        f: impl FnOnce(ArrayRef<'_>),
    ) {
        let alien = self.alien_array(cachep, node, other);
        if alien.is_null() {
            return;
        }
        // SAFETY: a live alien array; the lock word is used only through lock/unlock.
        let lock = unsafe { &(*alien).lock };
        if try_only {
            if !lock.try_lock() {
                return;
            }
        } else {
            lock.lock();
        }
        // SAFETY: locked above until the unlock below.
        f(unsafe { ArrayRef::new(alien) });
        lock.unlock();
    }

    /// `drain_alien_cache`: every alien array of `node`.
    pub(crate) fn drain_alien_cache(&self, cachep: &KmemCache, node: usize) {
        for i in 0..self.nr_nodes {
            self.with_alien(cachep, node, i, false, |ac| {
                self.__drain_alien_cache(cachep, ac, i);
            });
        }
    }

    /// Runs `f` on every alien array of `node` under its lock, with the array's node.
    pub(crate) fn for_each_alien(
        &self,
        cachep: &KmemCache,
        node: usize,
        mut f: impl FnMut(ArrayRef<'_>, usize),
    ) {
        for i in 0..self.nr_nodes {
            self.with_alien(cachep, node, i, false, |ac| f(ac, i));
        }
    }

    /// `reap_alien`: this CPU's `reap_node` alien array of `node`, if its lock is free.
    pub(crate) fn reap_alien(&self, cachep: &KmemCache, node: usize, cpu: usize) {
        let other = self.reap_node[cpu].load(Ordering::Relaxed) as usize;
        self.with_alien(cachep, node, other, true, |ac| {
            self.__drain_alien_cache(cachep, ac, other);
        });
    }

    /// `next_reap_node`.
    pub(crate) fn next_reap_node(&self, cpu: usize) {
        let n = self.reap_node[cpu].load(Ordering::Relaxed) as usize;
        self.reap_node[cpu].store(((n + 1) % self.nr_nodes) as u16, Ordering::Relaxed);
    }
}
