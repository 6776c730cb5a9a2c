//! NUMA — 2.6.32 `____cache_alloc_node`, `fallback_alloc`, `cache_free_alien`,
//! `__drain_alien_cache`, `drain_alien_cache`, `reap_alien`, `init_reap_node`/`next_reap_node`.
//!
//! Alien arrays: `nodelists[here].alien[there]` collects objects of node `there` freed by CPUs
//! of node `here` (12 entries); when full it is drained under `there`'s `list_lock`, first into
//! `there`'s shared array, the rest with `free_block`. Lock order: CPU slot → alien lock →
//! remote node's `list_lock`.

use crate::arraycache::{ac_entry, transfer_objects, ArrayCache};
use crate::bootstrap::SlabGlobals;
use crate::cache::KmemCache;
use crate::node::KmemList3;
use crate::slabmgmt::{slab_from_list, slab_get_obj, BUFCTL_END};
use crate::stats::StatItem;
use common::list::ListHead;
use common::Gfp;
use core::ptr::{addr_of_mut, null_mut};
use core::sync::atomic::Ordering;

impl SlabGlobals {
    /// `____cache_alloc_node`: one object straight from `nodeid`'s lists, growing that node
    /// (THISNODE) when empty, then `fallback_alloc` unless the caller said `THISNODE`.
    /// `here` is the node of the CPU whose slot the caller holds (`numa_node_id()`).
    ///
    /// # Safety
    /// `cachep` live; the caller may hold its CPU slot lock but no list_lock.
    #[cold]
    pub(crate) unsafe fn ____cache_alloc_node(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        nodeid: usize,
        here: usize,
    ) -> *mut u8 {
        // SAFETY: node lists under list_lock.
        unsafe {
            let l3 = self.l3(cachep, nodeid);
            loop {
                (*l3).list_lock.lock();
                let entry = match ListHead::first(addr_of_mut!((*l3).slabs_partial)) {
                    Some(e) => Some(e),
                    None => {
                        (*l3).free_touched = 1;
                        ListHead::first(addr_of_mut!((*l3).slabs_free))
                    }
                };
                if let Some(entry) = entry {
                    let slabp = slab_from_list(entry);
                    self.stat_inc(cachep, StatItem::NODEALLOCS);
                    self.stat_active(cachep, 1);
                    let debug = crate::debug::is_debug(cachep);
                    if debug {
                        self.debug_check_slabp(cachep, slabp);
                    }
                    let obj = slab_get_obj(cachep, slabp);
                    if debug {
                        self.debug_check_slabp(cachep, slabp);
                    }
                    (*l3).free_objects -= 1;
                    ListHead::del(entry);
                    if (*slabp).free == BUFCTL_END {
                        ListHead::add(entry, addr_of_mut!((*l3).slabs_full));
                    } else {
                        ListHead::add(entry, addr_of_mut!((*l3).slabs_partial));
                    }
                    (*l3).list_lock.unlock();
                    return obj;
                }
                (*l3).list_lock.unlock();
                if !self.cache_grow(cachep, Gfp(gfp.0 | Gfp::THISNODE.0), nodeid, None) {
                    break;
                }
            }
            self.fallback_alloc(cachep, gfp, here)
        }
    }

    /// `fallback_alloc`: any node with free objects, nearest first; else a slab from wherever
    /// the page provider finds memory, linked on the node it came from.
    ///
    /// # Safety
    /// As `____cache_alloc_node`.
    #[cold]
    pub(crate) unsafe fn fallback_alloc(
        &self,
        cachep: *mut KmemCache,
        gfp: Gfp,
        here: usize,
    ) -> *mut u8 {
        if gfp.contains(Gfp::THISNODE) {
            return null_mut();
        }
        let order = self.provider.topology().nodes_by_distance(here);
        let thisnode = Gfp(gfp.0 | Gfp::THISNODE.0);
        // SAFETY: l3 reads of free_objects are a racy hint, as in the kernel (taken under the
        // lock inside ____cache_alloc_node).
        unsafe {
            loop {
                for &nid in &order[..self.nr_nodes] {
                    let nid = nid as usize;
                    let l3 = self.l3(cachep, nid);
                    if l3.is_null() {
                        continue;
                    }
                    (*l3).list_lock.lock();
                    let has = (*l3).free_objects > 0;
                    (*l3).list_lock.unlock();
                    if has {
                        let obj = self.____cache_alloc_node(cachep, thisnode, nid, here);
                        if !obj.is_null() {
                            return obj;
                        }
                    }
                }
                let Some(page) = self.kmem_getpages(cachep, Gfp(gfp.0 & !Gfp::THISNODE.0), here)
                else {
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
    }

    /// `cache_free_alien`: `true` if `objp` belongs to another node than `node` and was
    /// handed to that node's alien array (or freed to it directly).
    ///
    /// # Safety
    /// `objp` a live object of `cachep`; the caller holds the CPU slot of `node`.
    #[inline(never)]
    pub(crate) unsafe fn cache_free_alien(
        &self,
        cachep: *mut KmemCache,
        objp: *mut u8,
        node: usize,
    ) -> bool {
        // SAFETY: as documented; alien arrays under their lock, remote lists under list_lock.
        unsafe {
            let slabp = self.virt_to_slab(objp);
            let nodeid = (*slabp).nodeid as usize;
            if nodeid == node {
                return false;
            }
            self.stat_inc(cachep, StatItem::NODEFREES);
            let l3 = self.l3(cachep, node);
            let alien_tab = (*l3).alien.load(Ordering::Acquire);
            let alien = if alien_tab.is_null() {
                null_mut()
            } else {
                *alien_tab.add(nodeid)
            };
            if alien.is_null() {
                let rl3 = self.l3(cachep, nodeid);
                (*rl3).list_lock.lock();
                let mut o = objp;
                self.free_block(cachep, &raw mut o, 1, nodeid);
                (*rl3).list_lock.unlock();
            } else {
                (*alien).lock.lock();
                if (*alien).avail == (*alien).limit {
                    self.stat_inc(cachep, StatItem::ACOVERFLOW);
                    self.__drain_alien_cache(cachep, alien, nodeid);
                }
                *ac_entry(alien).add((*alien).avail as usize) = objp;
                (*alien).avail += 1;
                (*alien).lock.unlock();
            }
            true
        }
    }

    /// `__drain_alien_cache`: the alien array of `node`'s objects into `node`'s shared array
    /// as far as it goes, the rest through `free_block`.
    ///
    /// # Safety
    /// `ac`'s lock held.
    pub(crate) unsafe fn __drain_alien_cache(
        &self,
        cachep: *mut KmemCache,
        ac: *mut ArrayCache,
        node: usize,
    ) {
        // SAFETY: as documented; remote list_lock taken here.
        unsafe {
            if (*ac).avail == 0 {
                return;
            }
            let rl3: *mut KmemList3 = self.l3(cachep, node);
            (*rl3).list_lock.lock();
            if !(*rl3).shared.is_null() {
                transfer_objects((*rl3).shared, ac, (*ac).limit);
            }
            self.free_block(cachep, ac_entry(ac), (*ac).avail as usize, node);
            (*ac).avail = 0;
            (*rl3).list_lock.unlock();
        }
    }

    /// `drain_alien_cache`: every alien array of one node's table.
    ///
    /// # Safety
    /// `alien` a live alien table of `cachep`.
    pub(crate) unsafe fn drain_alien_cache(
        &self,
        cachep: *mut KmemCache,
        alien: *mut *mut ArrayCache,
    ) {
        // SAFETY: as documented.
        unsafe {
            for i in 0..self.nr_nodes {
                let ac = *alien.add(i);
                if !ac.is_null() {
                    (*ac).lock.lock();
                    self.__drain_alien_cache(cachep, ac, i);
                    (*ac).lock.unlock();
                }
            }
        }
    }

    /// `reap_alien`: drains the alien array of this CPU's round-robin `reap_node`, if its lock
    /// is free.
    ///
    /// # Safety
    /// `l3` is `cachep`'s list3 of `cpu`'s node.
    pub(crate) unsafe fn reap_alien(&self, cachep: *mut KmemCache, l3: *mut KmemList3, cpu: usize) {
        let node = self.reap_node[cpu].load(Ordering::Relaxed) as usize;
        // SAFETY: as documented.
        unsafe {
            let tab = (*l3).alien.load(Ordering::Acquire);
            if tab.is_null() {
                return;
            }
            let ac = *tab.add(node);
            if !ac.is_null() && (*ac).lock.try_lock() {
                self.__drain_alien_cache(cachep, ac, node);
                (*ac).lock.unlock();
            }
        }
    }

    /// `next_reap_node`: advances `cpu`'s alien-reap cursor round robin.
    pub(crate) fn next_reap_node(&self, cpu: usize) {
        let n = self.reap_node[cpu].load(Ordering::Relaxed) as usize;
        self.reap_node[cpu].store(((n + 1) % self.nr_nodes) as u16, Ordering::Relaxed);
    }
}
