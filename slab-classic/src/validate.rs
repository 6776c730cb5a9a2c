//! `s_show`'s accounting (slabinfo rows) and `validate()`: walks every list of every cache the
//! way `s_show` does and reports each of its errors by name, plus `check_slabp` on every slab,
//! the page marks of every slab, and every array entry (it must be an object start of the cache,
//! of the array's node, handed out from its slab).

use crate::arraycache::{ac_entry, ArrayCache};
use crate::bootstrap::SlabGlobals;
use crate::cache::{KmemCache, CFLGS_OFF_SLAB};
use crate::slabmgmt::{check_slabp, obj_to_index, slab_bufctl, slab_from_list, BUFCTL_FREE};
use common::api::{SlabInfo, SlabInfo as Row};
use common::list::ListHead;
use common::page::flags::{PG_OFF_SLAB, PG_SLAB};
use core::fmt::Write;
use core::ptr::addr_of_mut;
use core::sync::atomic::Ordering;

impl SlabGlobals {
    /// `s_show`: the slabinfo row of a cache and the first accounting error found, if any.
    ///
    /// # Safety
    /// `cachep` live.
    pub(crate) unsafe fn s_show(&self, cachep: *mut KmemCache) -> (SlabInfo, Option<&'static str>) {
        let mut error = None;
        let (mut active_objs, mut active_slabs, mut num_slabs) = (0usize, 0usize, 0usize);
        let (mut free_objects, mut shared_avail) = (0usize, 0usize);
        // SAFETY: each node's lists walked under its lock.
        unsafe {
            let num = (*cachep).num as usize;
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                if l3.is_null() {
                    continue;
                }
                (*l3).list_lock.lock();
                for link in ListHead::iter(addr_of_mut!((*l3).slabs_full)) {
                    let s = slab_from_list(link);
                    if (*s).inuse as usize != num && error.is_none() {
                        error = Some("slabs_full accounting error");
                    }
                    active_objs += num;
                    active_slabs += 1;
                }
                for link in ListHead::iter(addr_of_mut!((*l3).slabs_partial)) {
                    let s = slab_from_list(link);
                    if (*s).inuse as usize == num && error.is_none() {
                        error = Some("slabs_partial inuse accounting error");
                    }
                    if (*s).inuse == 0 && error.is_none() {
                        error = Some("slabs_partial/inuse accounting error");
                    }
                    active_objs += (*s).inuse as usize;
                    active_slabs += 1;
                }
                for link in ListHead::iter(addr_of_mut!((*l3).slabs_free)) {
                    let s = slab_from_list(link);
                    if (*s).inuse != 0 && error.is_none() {
                        error = Some("slabs_free/inuse accounting error");
                    }
                    num_slabs += 1;
                }
                free_objects += (*l3).free_objects;
                if !(*l3).shared.is_null() {
                    shared_avail += (*(*l3).shared).avail as usize;
                }
                (*l3).list_lock.unlock();
            }
            num_slabs += active_slabs;
            let num_objs = num_slabs * num;
            if num_objs.wrapping_sub(active_objs) != free_objects && error.is_none() {
                error = Some("free_objects accounting error");
            }
            let row = Row {
                name: (*cachep).name,
                active_objs,
                num_objs,
                objsize: (*cachep).buffer_size,
                objperslab: num,
                pagesperslab: 1 << (*cachep).gfporder,
                limit: (*cachep).limit.load(Ordering::Relaxed) as usize,
                batchcount: (*cachep).batchcount.load(Ordering::Relaxed) as usize,
                sharedfactor: (*cachep).shared.load(Ordering::Relaxed) as usize,
                active_slabs,
                num_slabs,
                sharedavail: shared_avail,
            };
            (row, error)
        }
    }

    /// Checks one array entry: an object start of `cachep`, on `node`, handed out.
    ///
    /// # Safety
    /// `ac` protected by the lock the caller holds.
    unsafe fn check_array(
        &self,
        cachep: *mut KmemCache,
        ac: *mut ArrayCache,
        node: usize,
        what: &str,
        errs: &mut String,
    ) {
        // SAFETY: as documented.
        unsafe {
            if (*ac).avail > (*ac).limit {
                let _ = write!(
                    errs,
                    "{what}: avail {} > limit {}; ",
                    (*ac).avail,
                    (*ac).limit
                );
                return;
            }
            for i in 0..(*ac).avail as usize {
                let obj = *ac_entry(ac).add(i);
                match self.lookup_object(obj) {
                    Ok(c) if c == cachep => {
                        let slabp = self.virt_to_slab(obj);
                        if (*slabp).nodeid as usize != node {
                            let _ = write!(
                                errs,
                                "{what}: object {obj:p} of node {} in node {node}'s array; ",
                                (*slabp).nodeid
                            );
                        }
                        let idx = obj_to_index(cachep, slabp, obj);
                        if *slab_bufctl(slabp).add(idx as usize) != BUFCTL_FREE {
                            let _ = write!(
                                errs,
                                "{what}: object {obj:p} is on its slab's free chain; "
                            );
                        }
                    }
                    Ok(_) => {
                        let _ = write!(errs, "{what}: object {obj:p} of another cache; ");
                    }
                    Err(e) => {
                        let _ = write!(errs, "{what}: bad entry: {e}; ");
                    }
                }
            }
        }
    }

    /// Every check on one cache; errors appended to `errs`.
    ///
    /// # Safety
    /// `cachep` live; chain mutex held.
    unsafe fn validate_cache(&self, cachep: *mut KmemCache, errs: &mut String) {
        // SAFETY: locks taken in the documented order (CPU slot → list_lock; alien → none).
        unsafe {
            let name = (*cachep).name;
            let (_, err) = self.s_show(cachep);
            if let Some(e) = err {
                let _ = write!(errs, "{name}: {e}; ");
            }
            for cpu in 0..self.nr_cpus {
                let slot = self.cpu_slot(cachep, cpu);
                (*slot).lock.lock();
                self.check_array(
                    cachep,
                    (*slot).ac,
                    (*slot).node as usize,
                    &format!("{name} cpu {cpu} array"),
                    errs,
                );
                (*slot).lock.unlock();
            }
            for node in 0..self.nr_nodes {
                let l3 = self.l3(cachep, node);
                let tab = (*l3).alien.load(Ordering::Acquire);
                if !tab.is_null() {
                    for other in 0..self.nr_nodes {
                        let ac = *tab.add(other);
                        if ac.is_null() {
                            continue;
                        }
                        (*ac).lock.lock();
                        self.check_array(
                            cachep,
                            ac,
                            other,
                            &format!("{name} node {node} alien[{other}]"),
                            errs,
                        );
                        (*ac).lock.unlock();
                    }
                }
                (*l3).list_lock.lock();
                if !(*l3).shared.is_null() {
                    self.check_array(
                        cachep,
                        (*l3).shared,
                        node,
                        &format!("{name} node {node} shared"),
                        errs,
                    );
                }
                for head in [
                    addr_of_mut!((*l3).slabs_full),
                    addr_of_mut!((*l3).slabs_partial),
                    addr_of_mut!((*l3).slabs_free),
                ] {
                    for link in ListHead::iter(head) {
                        let s = slab_from_list(link);
                        if let Err(e) = check_slabp(cachep, s) {
                            let _ = write!(errs, "{name} node {node} slab {s:p}: {e}; ");
                        }
                        if (*s).nodeid as usize != node {
                            let _ = write!(
                                errs,
                                "{name}: slab {s:p} of node {} on node {node}'s list; ",
                                (*s).nodeid
                            );
                        }
                        let base = (*s).s_mem as usize - (*s).colouroff;
                        match self.provider.virt_to_page(base) {
                            Some(pg) => {
                                let p = pg.as_ref();
                                let off = (*cachep).flags & CFLGS_OFF_SLAB != 0;
                                if !p.test_flags(PG_SLAB)
                                    || p.test_flags(PG_OFF_SLAB) != off
                                    || p.cache() != cachep as usize
                                    || p.private != s as usize
                                    || self.provider.page_to_nid(pg) != node
                                {
                                    let _ = write!(errs, "{name}: slab {s:p} page marks wrong; ");
                                }
                            }
                            None => {
                                let _ = write!(errs, "{name}: slab {s:p} outside the provider; ");
                            }
                        }
                    }
                }
                (*l3).list_lock.unlock();
            }
        }
    }

    /// `validate()`: every cache; `Err` listing every error found.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let _chain = self.chain_lock();
        let mut errs = String::new();
        // SAFETY: the chain is stable under its mutex.
        unsafe {
            for link in ListHead::iter(self.cache_chain_head()) {
                self.validate_cache(crate::cache_from_chain(link), &mut errs);
            }
        }
        if let Err(e) = self.provider.check_invariants() {
            let _ = write!(errs, "page provider: {e}; ");
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}
