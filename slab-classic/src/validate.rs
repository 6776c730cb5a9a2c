//! `s_show`'s accounting (slabinfo rows) and `validate()`: walks every list of every cache the
//! way `s_show` does and reports each of its errors by name, plus `check_slabp` on every slab,
//! the page marks of every slab, and every array entry (it must be an object start of the cache,
//! of the array's node, handed out from its slab). In poisoned or red-zoned caches every free
//! object (on a free chain or in an array) is also checked, reported and repaired
//! (`check_free_obj`), so a use after free shows in the next `validate()` and not only when the
//! object is reused.
//!
//! # On a live allocator
//! Exact while other threads allocate and free: every list is walked, every array checked and
//! every count compared (`free_objects` against the lists) under the lock that guards it — the
//! node's `list_lock`, the CPU slot lock, the alien array's lock — as 2.6.32's `s_show` does.
//! Nothing allocates under a lock: findings go into fixed arrays (`Found`) and are formatted
//! after the chain mutex is released, and callbacks run on stack batches with no lock held
//! (`for_each_cache_batched`).

use crate::arraycache::{ac_entry, ArrayCache};
use crate::bootstrap::SlabGlobals;
use crate::cache::{KmemCache, CFLGS_OFF_SLAB};
use crate::slabmgmt::{
    check_slabp, index_to_obj, obj_to_index, slab_bufctl, slab_from_list, BUFCTL_END, BUFCTL_FREE,
};
use common::api::SlabFlags;
use common::api::{CacheName, SlabInfo, SlabInfo as Row};
use common::list::ListHead;
use common::page::flags::{PG_OFF_SLAB, PG_SLAB};
use core::fmt::Write;
use core::ptr::addr_of_mut;
use core::sync::atomic::Ordering;

/// With these flags `validate` also checks every free object's poison and red zones.
const FREE_CHECKS: u32 = SlabFlags::POISON.0 | SlabFlags::RED_ZONE.0;

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

    /// Checks every entry of an array: an object start of `cachep`, on `node`, handed out.
    /// Runs under a lock, so it records into `found` instead of allocating.
    ///
    /// # Safety
    /// `ac` protected by the lock the caller holds.
    unsafe fn check_array(
        &self,
        cachep: *mut KmemCache,
        ac: *mut ArrayCache,
        node: usize,
        found: &mut Found,
    ) {
        // SAFETY: as documented.
        unsafe {
            if (*ac).avail > (*ac).limit {
                found.add("array avail above its limit", ac as usize);
                return;
            }
            for i in 0..(*ac).avail as usize {
                let obj = *ac_entry(ac).add(i);
                match self.lookup_object_raw(obj) {
                    Ok(c) if c == cachep => {
                        let slabp = self.virt_to_slab(obj);
                        if (*slabp).nodeid as usize != node {
                            found.add("array holds an object of another node", obj as usize);
                        }
                        let idx = obj_to_index(cachep, slabp, obj);
                        if *slab_bufctl(slabp).add(idx as usize) != BUFCTL_FREE {
                            found.add(
                                "array object is on its slab's free chain (double free)",
                                obj as usize,
                            );
                        } else if (*cachep).flags & FREE_CHECKS != 0
                            && !self.check_free_obj(cachep, obj)
                        {
                            found.add("free object corrupted (reported, repaired)", obj as usize);
                        }
                    }
                    Ok(_) => found.add("array holds an object of another cache", obj as usize),
                    Err(_) => found.add("array holds a pointer that is no object", obj as usize),
                }
            }
        }
    }

    /// Every check on one cache, recorded into `found` (heap-free: it runs under the chain
    /// mutex and list locks; the caller formats after releasing them, because the allocator may
    /// be the process's global allocator).
    ///
    /// # Safety
    /// `cachep` live; chain mutex held.
    unsafe fn validate_cache(&self, cachep: *mut KmemCache, found: &mut Found) {
        // SAFETY: locks taken in the documented order (CPU slot → list_lock; alien → none).
        unsafe {
            let (_, err) = self.s_show(cachep);
            if let Some(e) = err {
                found.add(e, 0);
            }
            for cpu in 0..self.nr_cpus {
                let slot = self.cpu_slot(cachep, cpu);
                self.slot_lock(slot, cpu);
                self.check_array(cachep, (*slot).ac, (*slot).node as usize, found);
                self.slot_unlock(slot);
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
                        self.check_array(cachep, ac, other, found);
                        (*ac).lock.unlock();
                    }
                }
                (*l3).list_lock.lock();
                if !(*l3).shared.is_null() {
                    self.check_array(cachep, (*l3).shared, node, found);
                }
                for head in [
                    addr_of_mut!((*l3).slabs_full),
                    addr_of_mut!((*l3).slabs_partial),
                    addr_of_mut!((*l3).slabs_free),
                ] {
                    for link in ListHead::iter(head) {
                        let s = slab_from_list(link);
                        if let Err(e) = check_slabp(cachep, s) {
                            found.add(e, s as usize);
                        } else if (*cachep).flags & FREE_CHECKS != 0 {
                            // Every object on the (sound) free chain must be poisoned and
                            // red-zoned as free.
                            let mut i = (*s).free;
                            while i != BUFCTL_END {
                                let obj = index_to_obj(cachep, s, i);
                                if !self.check_free_obj(cachep, obj) {
                                    found.add(
                                        "free object corrupted (reported, repaired)",
                                        obj as usize,
                                    );
                                }
                                i = *slab_bufctl(s).add(i as usize);
                            }
                        }
                        if (*s).nodeid as usize != node {
                            found.add("slab on another node's list", s as usize);
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
                                    || p.spare as usize != (*s).colouroff
                                    || self.provider.page_to_nid(pg) != node
                                {
                                    found.add("slab page marks wrong", s as usize);
                                }
                            }
                            None => found.add("slab outside the provider", s as usize),
                        }
                    }
                }
                (*l3).list_lock.unlock();
            }
        }
    }

    /// Calls `each` on a value `gather` makes of every cache, `gather` running under the chain
    /// mutex into a stack batch of 16 and `each` with no lock held (so it may allocate, even
    /// from this allocator). Like a `/proc/slabinfo` read in pieces, a cache created or
    /// destroyed between two batches may be missed or seen twice.
    pub(crate) fn for_each_cache_batched<T: Copy>(
        &self,
        gather: impl Fn(*mut KmemCache) -> T,
        mut each: impl FnMut(&T),
    ) {
        const BATCH: usize = 16;
        let mut done = 0;
        loop {
            let mut batch = [None::<T>; BATCH];
            let mut n = 0;
            {
                let _chain = self.chain_lock();
                // SAFETY: the chain is stable under its mutex.
                for link in unsafe { ListHead::iter(self.cache_chain_head()) }
                    .skip(done)
                    .take(BATCH)
                {
                    batch[n] = Some(gather(crate::cache_from_chain(link)));
                    n += 1;
                }
            }
            batch.iter().flatten().for_each(&mut each);
            done += n;
            if n < BATCH {
                return;
            }
        }
    }

    /// `validate()`: every cache; `Err` listing every error found. Exact on a live allocator:
    /// each list is walked, and each array checked, under the lock that guards it, and the
    /// accounting compared (`s_show`) is `free_objects` and the lists, both kept under
    /// `list_lock`. Findings are recorded heap-free under the locks and formatted after the
    /// chain mutex is released.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut bad: [Option<(CacheName, Found)>; 8] = [None; 8];
        let mut bad_n = 0;
        let mut more_caches = 0;
        {
            let _chain = self.chain_lock();
            // SAFETY: the chain is stable under its mutex.
            unsafe {
                for link in ListHead::iter(self.cache_chain_head()) {
                    let cachep = crate::cache_from_chain(link);
                    let mut found = Found::default();
                    self.validate_cache(cachep, &mut found);
                    if found.n == 0 {
                        continue;
                    }
                    if bad_n < bad.len() {
                        bad[bad_n] = Some(((*cachep).name, found));
                        bad_n += 1;
                    } else {
                        more_caches += 1;
                    }
                }
            }
        }
        // No allocator lock held from here on.
        let mut errs = String::new();
        for (name, found) in bad.iter().flatten() {
            for (what, addr) in found.iter() {
                let _ = write!(errs, "{name}: {what} ({addr:#x}); ");
            }
            if found.more > 0 {
                let _ = write!(errs, "{name}: {} more errors; ", found.more);
            }
        }
        if more_caches > 0 {
            let _ = write!(errs, "{more_caches} more caches with errors; ");
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

/// Up to 8 errors recorded without allocating.
#[derive(Default, Clone, Copy)]
struct Found {
    items: [(&'static str, usize); 8],
    n: usize,
    more: usize,
}

impl Found {
    fn add(&mut self, what: &'static str, addr: usize) {
        if self.n < self.items.len() {
            self.items[self.n] = (what, addr);
            self.n += 1;
        } else {
            self.more += 1;
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        self.items[..self.n].iter().copied()
    }
}
