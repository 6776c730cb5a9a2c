//! Census of one cache's object queues (issue 17, the memory side of the sheaves question):
//! how many objects — allocated on their slabs, free for users — sit in this cache's per-CPU
//! head arrays, per-node shared arrays and alien arrays right now. [`queues`](crate::queues)
//! sums the same arrays over every cache as bytes; this is one cache, in objects, with the
//! largest per-CPU and per-node figures beside the totals, so the harness's `memory` workload
//! can set SLAB's magazines beside SLUB's per-CPU slabs and sheaves.
//!
//! Every object a census counts is an `active_objs` object of the cache's slabinfo row that no
//! user holds: with the cache quiescent, `census.objects() == active_objs − live objects`
//! (the tests check exactly that).
//!
//! Locks: the chain mutex (the cache cannot be destroyed meanwhile), then, one at a time, each
//! CPU slot lock (with the busy mark, so rseq fast paths on that CPU stay out), each alien
//! array's lock and each node's `list_lock` for its shared array — the crate's lock order.
//! Only integers are written while they are held.

use crate::Slab;
use common::{CacheHandle, SlabError};

/// Objects held in one cache's queues (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCensus {
    /// CPU slots (`nr_cpu_ids`).
    pub nr_cpus: usize,
    /// Nodes (`nr_node_ids`).
    pub nr_nodes: usize,
    /// Object stride (`buffer_size`).
    pub object_size: usize,
    /// Per-CPU head arrays walked (not the boot caches' static one-entry arrays).
    pub cpu_arrays: usize,
    /// Objects in the per-CPU head arrays (Σ `avail`).
    pub cpu_objects: usize,
    /// Most objects in one CPU's head array.
    pub cpu_max_objects: usize,
    /// Σ `limit` of the per-CPU head arrays.
    pub cpu_limit: usize,
    /// Shared arrays (`l3->shared`).
    pub shared_arrays: usize,
    /// Objects in the shared arrays.
    pub shared_objects: usize,
    /// Alien arrays (`l3->alien[other node]`).
    pub alien_arrays: usize,
    /// Objects in the alien arrays (frees of other nodes' objects, not yet sent home).
    pub alien_objects: usize,
    /// Most objects held on one node (its shared array plus its alien arrays).
    pub node_max_objects: usize,
}

impl QueueCensus {
    /// Every object the queues hold.
    pub fn objects(&self) -> usize {
        self.cpu_objects + self.shared_objects + self.alien_objects
    }
}

impl Slab {
    /// The census of `cache`'s per-CPU, shared and alien arrays (module documentation).
    /// Exact while the cache is quiescent; on a live cache each array is read under its lock.
    pub fn queue_census(&self, cache: CacheHandle) -> Result<QueueCensus, SlabError> {
        let g = self.g();
        let _chain = g.chain_lock();
        // Checked under the chain mutex: no destroy can run between the check and the walk.
        let cachep = self.cache(cache)?;
        let mut c = QueueCensus {
            nr_cpus: g.nr_cpus,
            nr_nodes: g.nr_nodes,
            ..QueueCensus::default()
        };
        c.object_size = cachep.buffer_size;
        // Each array is read under the lock that guards it, one lock at a time.
        for cpu in 0..g.nr_cpus {
            let slot = g.slot_lock(cachep, cpu);
            if !slot.ac_ptr().is_null() && !g.is_static_array(slot.ac_ptr()) {
                let ac = slot.ac();
                let n = ac.avail() as usize;
                c.cpu_arrays += 1;
                c.cpu_objects += n;
                c.cpu_limit += ac.limit() as usize;
                c.cpu_max_objects = c.cpu_max_objects.max(n);
            }
        }
        for node in 0..g.nr_nodes {
            if g.l3(cachep, node).is_null() {
                continue;
            }
            let mut on_node = 0;
            g.for_each_alien(cachep, node, |ac, _| {
                let n = ac.avail() as usize;
                c.alien_arrays += 1;
                c.alien_objects += n;
                on_node += n;
            });
            let shared = g
                .lock_list(cachep, node)
                .shared()
                .map(|ac| ac.avail() as usize);
            if let Some(n) = shared {
                c.shared_arrays += 1;
                c.shared_objects += n;
                on_node += n;
            }
            c.node_max_objects = c.node_max_objects.max(on_node);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
    use std::ptr::NonNull;

    fn provider(nodes: usize) -> PageProvider {
        let t = Topology::uniform(1, 2).unwrap();
        let t = if nodes > 1 {
            t.with_fake_numa(nodes).unwrap()
        } else {
            t
        };
        let mut cfg = ProviderConfig::small(t, 32);
        cfg.bind = false;
        PageProvider::new(&cfg).unwrap()
    }

    fn active_objs(s: &Slab, name: &str) -> usize {
        let mut n = None;
        s.for_each_slabinfo(&mut |r| {
            if r.name.as_str() == name {
                n = Some(r.active_objs);
            }
        });
        n.expect("slabinfo row")
    }

    fn pinned() -> bool {
        let ok = common::pin::pin_to_cpu(0).is_ok();
        if !ok {
            common::testing::skip(
                "frees_on_one_cpu_are_counted_in_its_array (per-CPU part)",
                "pin",
                "cannot pin to CPU 0",
            );
        }
        ok
    }

    #[test]
    #[cfg_attr(miri, ignore)] // pins to a CPU: Miri has no sched_setaffinity/sched_getcpu
    fn frees_on_one_cpu_are_counted_in_its_array() {
        let p = provider(1);
        let s = Slab::new(&p, crate::SlabSettings::default()).unwrap();
        let c = s
            .kmem_cache_create("census", 64, 0, SlabFlags::NONE, None)
            .unwrap();
        let pin = pinned();
        let objs: Vec<NonNull<u8>> = (0..50)
            .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
            .collect();
        let before = s.queue_census(c).unwrap();
        for &o in &objs[..20] {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
        let after = s.queue_census(c).unwrap();
        if pin {
            // 20 frees on one CPU, far below its limit: all in that CPU's array.
            assert_eq!(after.cpu_objects, before.cpu_objects + 20);
            assert_eq!(after.cpu_max_objects, after.cpu_objects);
        }
        assert_eq!(after.objects(), active_objs(&s, "census") - 30);
        assert_eq!((after.nr_cpus, after.nr_nodes), (2, 1));
        assert_eq!(after.cpu_arrays, 2);
        assert!(after.cpu_limit >= 2 * 20, "{after:?}");
        assert_eq!(after.alien_arrays, 0, "one node: no alien arrays");
        s.validate().unwrap();
        for &o in &objs[20..] {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
        let end = s.queue_census(c).unwrap();
        assert_eq!(end.objects(), active_objs(&s, "census"));
        s.kmem_cache_shrink(c).unwrap();
        let shrunk = s.queue_census(c).unwrap();
        assert_eq!(shrunk.objects(), 0, "shrink drains every array: {shrunk:?}");
        assert_eq!(active_objs(&s, "census"), 0);
        // SAFETY: nothing allocated.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
        assert!(s.queue_census(c).is_err(), "a destroyed cache is refused");
    }

    #[test]
    fn overflowing_frees_reach_the_shared_array_and_remote_ones_the_alien_arrays() {
        let p = provider(2);
        let s = Slab::new(&p, crate::SlabSettings::default()).unwrap();
        let c = s
            .kmem_cache_create("census2", 64, 0, SlabFlags::NONE, None)
            .unwrap();
        // Node-1 objects freed here land in an alien array (any CPU is on one of the 2
        // nodes; objects of the other node are remote to it).
        let cpu = common::percpu::cpu_id();
        let here = p.topology().cpu_to_node(cpu);
        let there = 1 - here;
        let remote: Vec<NonNull<u8>> = (0..5)
            .map(|_| s.kmem_cache_alloc_node(c, Gfp::KERNEL, there).unwrap())
            .collect();
        let local: Vec<NonNull<u8>> = (0..2000)
            .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
            .collect();
        for &o in local.iter().chain(&remote) {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
        let k = s.queue_census(c).unwrap();
        assert_eq!(k.nr_nodes, 2);
        assert_eq!(k.objects(), active_objs(&s, "census2"), "{k:?}");
        assert!(k.cpu_objects <= k.cpu_limit);
        // 2000 frees overflow a head array (limit 120 at 64 B): flushed batches go to the
        // shared array until it is full, the rest to the slabs.
        assert!(k.shared_objects > 0, "{k:?}");
        assert!(k.alien_arrays > 0, "{k:?}");
        // The remote frees either wait in the alien array or were drained home by an
        // overflow; either way they are counted once.
        assert!(k.alien_objects <= 5, "{k:?}");
        assert!(k.node_max_objects >= k.shared_objects / 2);
        s.validate().unwrap();
        s.kmem_cache_shrink(c).unwrap();
        assert_eq!(s.queue_census(c).unwrap().objects(), 0);
        // SAFETY: nothing allocated.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
    }
}
