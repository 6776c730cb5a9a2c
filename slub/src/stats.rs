//! `CONFIG_SLUB_STATS`: the 26 `enum stat_item` counters of 6.4 from one list, and the
//! sysfs-style attributes of a cache (`/sys/kernel/slab/<cache>/…`) as [`CacheAttrs`].

use crate::cache::KmemCache;
use crate::Slub;
use core::sync::atomic::Ordering;

common::define_stats! {
    /// `enum stat_item` (include/linux/slub_def.h, 6.4), in kernel order.
    pub enum StatItem {
        ALLOC_FASTPATH => "alloc_fastpath",
        ALLOC_SLOWPATH => "alloc_slowpath",
        FREE_FASTPATH => "free_fastpath",
        FREE_SLOWPATH => "free_slowpath",
        FREE_FROZEN => "free_frozen",
        FREE_ADD_PARTIAL => "free_add_partial",
        FREE_REMOVE_PARTIAL => "free_remove_partial",
        ALLOC_FROM_PARTIAL => "alloc_from_partial",
        ALLOC_SLAB => "alloc_slab",
        ALLOC_REFILL => "alloc_refill",
        ALLOC_NODE_MISMATCH => "alloc_node_mismatch",
        FREE_SLAB => "free_slab",
        CPUSLAB_FLUSH => "cpuslab_flush",
        DEACTIVATE_FULL => "deactivate_full",
        DEACTIVATE_EMPTY => "deactivate_empty",
        DEACTIVATE_TO_HEAD => "deactivate_to_head",
        DEACTIVATE_TO_TAIL => "deactivate_to_tail",
        DEACTIVATE_REMOTE_FREES => "deactivate_remote_frees",
        DEACTIVATE_BYPASS => "deactivate_bypass",
        ORDER_FALLBACK => "order_fallback",
        CMPXCHG_DOUBLE_CPU_FAIL => "cmpxchg_double_cpu_fail",
        CMPXCHG_DOUBLE_FAIL => "cmpxchg_double_fail",
        CPU_PARTIAL_ALLOC => "cpu_partial_alloc",
        CPU_PARTIAL_FREE => "cpu_partial_free",
        CPU_PARTIAL_NODE => "cpu_partial_node",
        CPU_PARTIAL_DRAIN => "cpu_partial_drain",
        // The sheaf items (`sheaf.rs`). 6.18 appends them to the 6.4 list with
        // `alloc_cpu_sheaf`/`free_cpu_sheaf`; 7.0 drops the CPU-slab items and counts sheaf
        // hits as `alloc_fastpath`/`free_fastpath` (here: era 7.0 counts there too).
        ALLOC_PCS => "alloc_cpu_sheaf",
        FREE_PCS => "free_cpu_sheaf",
        SHEAF_FLUSH => "sheaf_flush",
        SHEAF_REFILL => "sheaf_refill",
        SHEAF_ALLOC => "sheaf_alloc",
        SHEAF_FREE => "sheaf_free",
        BARN_GET => "barn_get",
        BARN_GET_FAIL => "barn_get_fail",
        BARN_PUT => "barn_put",
        BARN_PUT_FAIL => "barn_put_fail",
        SHEAF_PREFILL_FAST => "sheaf_prefill_fast",
        SHEAF_PREFILL_SLOW => "sheaf_prefill_slow",
        SHEAF_PREFILL_OVERSIZE => "sheaf_prefill_oversize",
        SHEAF_RETURN_FAST => "sheaf_return_fast",
        SHEAF_RETURN_SLOW => "sheaf_return_slow",
    }
}

const _: () = assert!(StatItem::COUNT == 26 + 15);

/// A cache's sysfs attributes (read side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheAttrs {
    /// `slab_size`: object stride.
    pub slab_size: usize,
    /// `object_size`.
    pub object_size: usize,
    /// Free-pointer offset (`offset`, not a sysfs file but shown by `slabinfo -r`).
    pub offset: usize,
    /// `inuse` (metadata offset).
    pub inuse: usize,
    /// `align`.
    pub align: usize,
    /// `objs_per_slab`.
    pub objs_per_slab: usize,
    /// `order`.
    pub order: usize,
    /// Objects per slab at the fallback `min` order.
    pub min_objects: usize,
    /// `min_partial`.
    pub min_partial: usize,
    /// `cpu_partial` (objects).
    pub cpu_partial: usize,
    /// `cpu_partial_slabs` (internal).
    pub cpu_partial_slabs: usize,
    /// `partial`: slabs on node partial lists.
    pub partial: usize,
    /// Slabs on node full lists (`SLAB_STORE_USER` debug caches only; 0 for the others).
    pub full: usize,
    /// `cpu_slabs`: CPU slabs plus per-CPU partial slabs.
    pub cpu_slabs: usize,
    /// `slabs_cpu_partial`: per-CPU partial slabs only.
    pub slabs_cpu_partial: usize,
    /// `objects`: objects in use (including those on CPU freelists).
    pub objects: usize,
    /// `objects_partial`: objects in use on partial slabs.
    pub objects_partial: usize,
    /// `slabs`.
    pub slabs: usize,
    /// `total_objects`.
    pub total_objects: usize,
    /// `aliases`.
    pub aliases: usize,
    /// `remote_node_defrag_ratio` (sysfs unit).
    pub remote_node_defrag_ratio: usize,
    /// Per-node `(nr_partial, nr_slabs, total_objects)`.
    pub nodes: Vec<(usize, usize, usize)>,
    /// `sheaf_capacity` (0: no percpu sheaves).
    pub sheaf_capacity: usize,
}

pub(crate) fn cache_attrs(_sl: &Slub, s: &KmemCache) -> CacheAttrs {
    let mut partial = 0;
    let mut full = 0;
    let mut slabs = 0;
    let mut total = 0;
    let mut free = 0;
    let mut nodes = Vec::new();
    let mut objects_partial = 0;
    for node in 0..s.nr_nodes {
        let n = s.get_node(node);
        let np = n.nr_partial.load(Ordering::Relaxed);
        let (ns, nt) = n.slabs_snapshot();
        partial += np;
        full += n.count_full();
        slabs += ns;
        total += nt;
        let f = n.count_partial_free();
        free += f;
        objects_partial += n.count_partial_inuse();
        nodes.push((np, ns, nt));
    }
    let mut cpu_slabs = 0;
    let mut slabs_cpu_partial = 0;
    for (_, c) in s.cpu_slab.iter() {
        c.lock.lock();
        if !c.slab.load(Ordering::Relaxed).is_null() {
            cpu_slabs += 1;
        }
        let p = c.partial.load(Ordering::Relaxed);
        if !p.is_null() {
            // SAFETY: the chain head is frozen for this slot; `slabs` is read under its lock.
            slabs_cpu_partial += unsafe { (*p).slabs } as usize;
        }
        c.lock.unlock();
    }
    CacheAttrs {
        slab_size: s.size,
        object_size: s.object_size.load(Ordering::Relaxed),
        offset: s.offset,
        inuse: s.inuse.load(Ordering::Relaxed),
        align: s.align,
        objs_per_slab: s.oo.objects(),
        order: s.oo.order(),
        min_objects: s.min.objects(),
        min_partial: s.min_partial.load(Ordering::Relaxed),
        cpu_partial: s.cpu_partial.load(Ordering::Relaxed),
        cpu_partial_slabs: s.cpu_partial_slabs.load(Ordering::Relaxed),
        partial,
        cpu_slabs: cpu_slabs + slabs_cpu_partial,
        slabs_cpu_partial,
        objects: total - free,
        objects_partial,
        slabs,
        total_objects: total,
        aliases: (s.refcount.load(Ordering::Relaxed) - 1).max(0) as usize,
        remote_node_defrag_ratio: s.remote_node_defrag_ratio.load(Ordering::Relaxed) / 10,
        nodes,
        sheaf_capacity: crate::sheaf::sheaf_capacity(s),
        full,
    }
}

/// SLUB's per-CPU and per-node structures and the slabs they hold, summed over every cache
/// (aliases counted once): the counterpart of slab-classic's `QueueMemory` for the harness's
/// `metadata` workload. SLUB keeps no object queues: what it may hold per CPU is one CPU slab
/// and up to `cpu_partial_slabs` frozen slabs, per node the partial list (of which
/// `min_partial` empty slabs are kept).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueMemory {
    /// Caches walked.
    pub caches: usize,
    /// CPU slots per cache (`nr_cpu_ids`).
    pub nr_cpus: usize,
    /// Nodes.
    pub nr_nodes: usize,
    /// `kmem_cache_cpu` structures (one per cache and CPU).
    pub cpu_structs: usize,
    /// Their bytes (each a packed per-CPU area, rounded up to the per-CPU allocator's unit).
    pub cpu_struct_bytes: usize,
    /// `kmem_cache_node` structures (one per cache and node).
    pub node_structs: usize,
    /// Their bytes (objects of the `kmem_cache_node` cache).
    pub node_struct_bytes: usize,
    /// Bytes of the `kmem_cache` objects.
    pub cache_struct_bytes: usize,
    /// CPU slabs now, and their bytes.
    pub cpu_slabs: usize,
    /// Bytes of the CPU slabs.
    pub cpu_slab_bytes: usize,
    /// Frozen per-CPU partial slabs now.
    pub cpu_partial_slabs: usize,
    /// Their bytes.
    pub cpu_partial_bytes: usize,
    /// Slabs on node partial lists now.
    pub node_partial_slabs: usize,
    /// Their bytes.
    pub node_partial_bytes: usize,
    /// Most bytes of slabs the CPUs may hold: Σ caches `nr_cpus × (1 + cpu_partial_slabs) ×`
    /// slab bytes.
    pub cpu_capacity_bytes: usize,
    /// Bytes of the empty slabs the nodes keep: Σ caches `nr_nodes × min_partial ×` slab bytes.
    pub node_min_partial_bytes: usize,
}

impl QueueMemory {
    /// Bytes of the per-CPU and per-node structures (not the slabs).
    pub fn struct_bytes(&self) -> usize {
        self.cpu_struct_bytes + self.node_struct_bytes
    }
}

pub(crate) fn queue_memory(sl: &Slub) -> QueueMemory {
    let cpu_unit = core::mem::size_of::<crate::cache::KmemCacheCpu>()
        .next_multiple_of(common::pcpu_alloc::UNIT);
    // SAFETY: the two caches of caches live as long as the instance.
    let (cache_bytes, node_bytes) = unsafe { ((*sl.kmem_cache).size, (*sl.kmem_cache_node).size) };
    let mut q = QueueMemory::default();
    sl.for_each_cache(|s| {
        let slab_bytes = common::PAGE_SIZE << s.oo.order();
        let nr_cpus = s.cpu_slab.iter().count();
        q.caches += 1;
        q.nr_cpus = nr_cpus;
        q.nr_nodes = s.nr_nodes;
        q.cpu_structs += nr_cpus;
        q.cpu_struct_bytes += nr_cpus * cpu_unit;
        q.node_structs += s.nr_nodes;
        q.node_struct_bytes += s.nr_nodes * node_bytes;
        q.cache_struct_bytes += cache_bytes;
        let cps = s.cpu_partial_slabs.load(Ordering::Relaxed);
        q.cpu_capacity_bytes += nr_cpus * (1 + cps) * slab_bytes;
        q.node_min_partial_bytes += s.nr_nodes * s.min_partial.load(Ordering::Relaxed) * slab_bytes;
        for (_, c) in s.cpu_slab.iter() {
            c.lock.lock();
            if !c.slab.load(Ordering::Relaxed).is_null() {
                q.cpu_slabs += 1;
                q.cpu_slab_bytes += slab_bytes;
            }
            let p = c.partial.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: the chain head is frozen for this slot; `slabs` is read under its lock.
                let n = unsafe { (*p).slabs } as usize;
                q.cpu_partial_slabs += n;
                q.cpu_partial_bytes += n * slab_bytes;
            }
            c.lock.unlock();
        }
        for node in 0..s.nr_nodes {
            let n = s.get_node(node).nr_partial.load(Ordering::Relaxed);
            q.node_partial_slabs += n;
            q.node_partial_bytes += n * slab_bytes;
        }
    });
    q
}
