//! Queue memory: what SLAB's object queues hold, summed over every cache — the per-CPU head
//! arrays, the per-node shared arrays and the alien arrays (one per other node on each node:
//! `nodes × (nodes − 1)` per cache) — as the bytes of the arrays themselves (each is a kmalloc
//! object, counted at its size class), the objects they could hold (`limit` entries) and the
//! objects they hold now. The structure behind Lameter's 2007 claim that SLAB's queues grow
//! with CPUs × nodes (reference `kernel.md` §3.6); the harness's `metadata` workload prints it.
//!
//! Locks: the chain mutex for the walk, then per cache each CPU slot lock in turn, each alien
//! array's lock, each node's `list_lock` for its shared array — the crate's lock order, one at a
//! time. Nothing is allocated while they are held: only numbers are added up.

use crate::arraycache::{arraycache_bytes, ArrayRef};
use crate::cache::KmemCache;
use crate::instance::SlabGlobals;

/// One kind of queue, summed over caches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueBytes {
    /// Arrays of this kind.
    pub arrays: usize,
    /// Bytes of the arrays (kmalloc size class of `sizeof(array_cache) + limit` pointers).
    pub bytes: usize,
    /// Object pointers they can hold (Σ `limit`).
    pub capacity: usize,
    /// Bytes of the objects they can hold (Σ `limit × buffer_size`).
    pub capacity_bytes: usize,
    /// Objects they hold now (Σ `avail`).
    pub objects: usize,
    /// Bytes of the objects they hold now.
    pub object_bytes: usize,
}

impl QueueBytes {
    fn add(&mut self, g: &SlabGlobals, ac: ArrayRef<'_>, buffer_size: usize) {
        let (limit, avail) = (ac.limit() as usize, ac.avail() as usize);
        self.arrays += 1;
        self.bytes += kmalloc_bytes(g, arraycache_bytes(limit));
        self.capacity += limit;
        self.capacity_bytes += limit * buffer_size;
        self.objects += avail;
        self.object_bytes += avail * buffer_size;
    }
}

/// SLAB's queues and per-CPU/per-node structures, over every cache of an instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueMemory {
    /// Caches walked.
    pub caches: usize,
    /// CPU slots per cache (`nr_cpu_ids`).
    pub nr_cpus: usize,
    /// Nodes (`nr_node_ids`).
    pub nr_nodes: usize,
    /// Per-CPU head arrays (`cachep->array[cpu]`).
    pub cpu: QueueBytes,
    /// Per-node shared arrays (`l3->shared`).
    pub shared: QueueBytes,
    /// Alien arrays (`l3->alien[other node]`); `alien_tables` are the pointer tables.
    pub alien: QueueBytes,
    /// Bytes of the `l3->alien` pointer tables (kmalloc of `nr_nodes` pointers per node).
    pub alien_tables_bytes: usize,
    /// Bytes of the `kmem_list3` structures (one per cache and node, kmalloc size class).
    pub node_struct_bytes: usize,
    /// Bytes of the `kmem_cache` objects, whose `array[]` holds one 64-byte slot per CPU.
    pub cache_struct_bytes: usize,
}

impl QueueMemory {
    /// Bytes of every array and table (not the objects in them).
    pub fn queue_bytes(&self) -> usize {
        self.cpu.bytes + self.shared.bytes + self.alien.bytes + self.alien_tables_bytes
    }
}

/// The kmalloc size class that holds `size` bytes (what an `alloc_arraycache` really takes).
fn kmalloc_bytes(g: &SlabGlobals, size: usize) -> usize {
    g.find_general_cachep(size).map_or(size, |c| c.buffer_size)
}

impl SlabGlobals {
    /// The queue memory of every cache (see [`QueueMemory`]).
    pub(crate) fn queue_memory(&self) -> QueueMemory {
        let mut q = QueueMemory {
            nr_cpus: self.nr_cpus,
            nr_nodes: self.nr_nodes,
            ..QueueMemory::default()
        };
        let chain = self.chain_lock();
        for cachep in self.caches(&chain) {
            self.cache_queues(cachep, &mut q);
        }
        q
    }

    /// One cache's arrays, each read under the lock that protects it.
    fn cache_queues(&self, cachep: &KmemCache, q: &mut QueueMemory) {
        let bs = cachep.buffer_size;
        q.caches += 1;
        q.cache_struct_bytes += self.cache_cache().buffer_size;
        for cpu in 0..self.nr_cpus {
            let slot = self.slot_lock(cachep, cpu);
            if !slot.ac_ptr().is_null() && !self.is_static_array(slot.ac_ptr()) {
                q.cpu.add(self, slot.ac(), bs);
            }
        }
        for node in 0..self.nr_nodes {
            let l3 = self.l3(cachep, node);
            if l3.is_null() {
                continue;
            }
            if !self.is_static_l3(l3) {
                q.node_struct_bytes +=
                    kmalloc_bytes(self, core::mem::size_of::<crate::node::KmemList3>());
            }
            // SAFETY: a live list3 of a live cache.
            if !unsafe { crate::node::alien_table(l3) }.is_null() {
                q.alien_tables_bytes += kmalloc_bytes(self, self.nr_nodes * 8);
                self.for_each_alien(cachep, node, |ac, _| q.alien.add(self, ac, bs));
            }
            if let Some(shared) = self.lock_list(cachep, node).shared() {
                q.shared.add(self, shared, bs);
            }
        }
    }
}
