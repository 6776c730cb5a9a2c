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

use crate::arraycache::ArrayRef;
use crate::cache::KmemCache;
use crate::instance::SlabGlobals;
use crate::node::{List, ListGuard};
use crate::slabmgmt::{SlabRef, BUFCTL_FREE};
use common::api::SlabFlags;
use common::api::{CacheName, SlabInfo, SlabInfo as Row};
use common::page::flags::{PG_OFF_SLAB, PG_SLAB};
use core::fmt::Write;
use core::sync::atomic::Ordering;

/// With these flags `validate` also checks every free object's poison and red zones.
const FREE_CHECKS: u32 = SlabFlags::POISON.0 | SlabFlags::RED_ZONE.0;

/// The counts `s_show` gathers over a cache's nodes.
#[derive(Default)]
struct Tally {
    active_objs: usize,
    active_slabs: usize,
    num_slabs: usize,
    free_objects: usize,
    shared_avail: usize,
    error: Option<&'static str>,
}

impl Tally {
    fn error(&mut self, cond: bool, what: &'static str) {
        if cond && self.error.is_none() {
            self.error = Some(what);
        }
    }

    /// One node's lists (under its lock), as `s_show` walks them.
    fn add_node(&mut self, l3: &ListGuard<'_>, num: usize) {
        for s in l3.slabs(List::Full) {
            self.error(s.inuse() as usize != num, "slabs_full accounting error");
            self.active_objs += num;
            self.active_slabs += 1;
        }
        for s in l3.slabs(List::Partial) {
            self.error(
                s.inuse() as usize == num,
                "slabs_partial inuse accounting error",
            );
            self.error(s.inuse() == 0, "slabs_partial/inuse accounting error");
            self.active_objs += s.inuse() as usize;
            self.active_slabs += 1;
        }
        for s in l3.slabs(List::Free) {
            self.error(s.inuse() != 0, "slabs_free/inuse accounting error");
            self.num_slabs += 1;
        }
        self.free_objects += l3.free_objects();
        self.shared_avail += l3.shared().map_or(0, |sh| sh.avail() as usize);
    }
}

impl SlabGlobals {
    /// `s_show`: the slabinfo row of a cache and the first accounting error found.
    pub(crate) fn s_show(&self, cachep: &KmemCache) -> (SlabInfo, Option<&'static str>) {
        let num = cachep.num as usize;
        let mut t = Tally::default();
        for node in 0..self.nr_nodes {
            if !self.l3(cachep, node).is_null() {
                t.add_node(&self.lock_list(cachep, node), num);
            }
        }
        t.num_slabs += t.active_slabs;
        let num_objs = t.num_slabs * num;
        t.error(
            num_objs.wrapping_sub(t.active_objs) != t.free_objects,
            "free_objects accounting error",
        );
        let row = Row {
            name: cachep.name,
            active_objs: t.active_objs,
            num_objs,
            objsize: cachep.buffer_size,
            objperslab: num,
            pagesperslab: 1 << cachep.gfporder,
            limit: cachep.limit.load(Ordering::Relaxed) as usize,
            batchcount: cachep.batchcount.load(Ordering::Relaxed) as usize,
            sharedfactor: cachep.shared.load(Ordering::Relaxed) as usize,
            active_slabs: t.active_slabs,
            num_slabs: t.num_slabs,
            sharedavail: t.shared_avail,
        };
        (row, t.error)
    }

    /// Every entry of a (locked) array must be an object start of `cachep` on `node`, handed
    /// out from its slab (its bufctl `BUFCTL_FREE`), and in a debug cache intact as free.
    fn check_array(&self, cachep: &KmemCache, ac: ArrayRef<'_>, node: usize, found: &mut Found) {
        if ac.avail() > ac.limit() {
            found.add("array avail above its limit", ac.as_ptr() as usize);
            return;
        }
        for i in 0..ac.avail() {
            let obj = ac.entry(i);
            match self.lookup_object_raw(obj) {
                Ok(c) if core::ptr::eq(c, cachep) => {
                    self.check_array_object(cachep, obj, node, found);
                }
                Ok(_) => found.add("array holds an object of another cache", obj as usize),
                Err(_) => found.add("array holds a pointer that is no object", obj as usize),
            }
        }
    }

    /// `check_array` of one object start of `cachep`.
    fn check_array_object(&self, cachep: &KmemCache, obj: *mut u8, node: usize, found: &mut Found) {
        // SAFETY: an object start of a live slab of this cache (looked up); its bufctl is read
        // racily, as `validate` reports and does not repair it.
        let slabp = unsafe { self.slab_of_obj(obj) };
        if slabp.nodeid() != node {
            found.add("array holds an object of another node", obj as usize);
        }
        let idx = slabp.obj_to_index(cachep, obj);
        if slabp.bufctl(cachep, idx) != BUFCTL_FREE {
            found.add(
                "array object is on its slab's free chain (double free)",
                obj as usize,
            );
        // SAFETY: a free object in a locked array (the caller holds its lock).
        } else if cachep.flags & FREE_CHECKS != 0 && !unsafe { self.check_free_obj(cachep, obj) } {
            found.add("free object corrupted (reported, repaired)", obj as usize);
        }
    }

    /// One slab of `node`'s lists: `check_slabp`, its free objects in a debug cache, its node
    /// and its page marks.
    fn check_slab(&self, cachep: &KmemCache, s: SlabRef<'_>, node: usize, found: &mut Found) {
        if let Err(e) = s.check(cachep) {
            found.add(e, s.as_ptr() as usize);
        } else if cachep.flags & FREE_CHECKS != 0 {
            // Every object on the (sound) free chain must be poisoned and red-zoned as free.
            for obj in s.free_objects(cachep) {
                // SAFETY: a free object on the chain of a slab whose node lock is held.
                if !unsafe { self.check_free_obj(cachep, obj) } {
                    found.add("free object corrupted (reported, repaired)", obj as usize);
                }
            }
        }
        if s.nodeid() != node {
            found.add("slab on another node's list", s.as_ptr() as usize);
        }
        let Some(pg) = self.provider.virt_to_page(s.mem_start() as usize) else {
            found.add("slab outside the provider", s.as_ptr() as usize);
            return;
        };
        // SAFETY: a descriptor of the provider's mem_map.
        let p = unsafe { pg.as_ref() };
        if !p.test_flags(PG_SLAB)
            || p.test_flags(PG_OFF_SLAB) != cachep.off_slab()
            || p.cache() != core::ptr::from_ref(cachep) as usize
            || p.private != s.as_ptr() as usize
            || p.spare as usize != s.colouroff()
            || self.provider.page_to_nid(pg) != node
        {
            found.add("slab page marks wrong", s.as_ptr() as usize);
        }
    }

    /// Every check on one cache, recorded into `found` (heap-free: it runs under the chain
    /// mutex and list locks; the caller formats after releasing them, because the allocator may
    /// be the process's global allocator). Locks taken in the documented order (CPU slot →
    /// list_lock; alien → none).
    fn validate_cache(&self, cachep: &KmemCache, found: &mut Found) {
        if let (_, Some(e)) = self.s_show(cachep) {
            found.add(e, 0);
        }
        for cpu in 0..self.nr_cpus {
            let slot = self.slot_lock(cachep, cpu);
            self.check_array(cachep, slot.ac(), slot.node(), found);
        }
        for node in 0..self.nr_nodes {
            self.for_each_alien(cachep, node, |ac, other| {
                self.check_array(cachep, ac, other, found);
            });
            let l3 = self.lock_list(cachep, node);
            if let Some(shared) = l3.shared() {
                self.check_array(cachep, shared, node, found);
            }
            for list in [List::Full, List::Partial, List::Free] {
                for s in l3.slabs(list) {
                    self.check_slab(cachep, s, node, found);
                }
            }
        }
    }

    /// Calls `each` on a value `gather` makes of every cache, `gather` running under the chain
    /// mutex into a stack batch of 16 and `each` with no lock held (so it may allocate, even
    /// from this allocator). Like a `/proc/slabinfo` read in pieces, a cache created or
    /// destroyed between two batches may be missed or seen twice.
    pub(crate) fn for_each_cache_batched<T: Copy>(
        &self,
        gather: impl Fn(&KmemCache) -> T,
        mut each: impl FnMut(&T),
    ) {
        const BATCH: usize = 16;
        let mut done = 0;
        loop {
            let mut batch = [None::<T>; BATCH];
            let mut n = 0;
            {
                let chain = self.chain_lock();
                for c in self.caches(&chain).skip(done).take(BATCH) {
                    batch[n] = Some(gather(c));
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

    /// `validate()`: every cache checked under the chain mutex, findings formatted after it.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let mut bad: [Option<(CacheName, Found)>; 8] = [None; 8];
        let mut bad_n = 0;
        let mut more_caches = 0;
        {
            let chain = self.chain_lock();
            for cachep in self.caches(&chain) {
                let mut found = Found::default();
                self.validate_cache(cachep, &mut found);
                if found.n == 0 {
                    continue;
                }
                if bad_n < bad.len() {
                    bad[bad_n] = Some((cachep.name, found));
                    bad_n += 1;
                } else {
                    more_caches += 1;
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
