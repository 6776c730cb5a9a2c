//! Census of one cache's per-CPU and per-node object caches (the memory side of the
//! sheaves question that Lameter raised): how many objects — taken from their slabs' node
//! lists, free for users — this cache holds right now in
//! - 6.4's (and 6.18's) **CPU slabs**: the free objects of each CPU's slab (`c->freelist`,
//!   plus remote frees waiting on the frozen slab's own freelist: `objects − inuse`);
//! - 6.4's **per-CPU partial slabs**: the free objects of the frozen slabs on `c->partial`;
//! - 6.18/7.0's **sheaves and barns**: [`SheafCensus`] (`main` and `spare` per CPU, full and
//!   empty sheaves in each node's barn).
//!
//! These are the objects SLUB's slabinfo counts as active though no user holds them: with the
//! cache quiescent, `census.objects() == active_objs − live objects` (the tests check it, and
//! that the sheaf part equals what `validate()` counts).
//!
//! Locks: each CPU's `kmem_cache_cpu` lock in turn (no slow path swaps the CPU slab or the
//! partial chain meanwhile), then the sheaf census's own (each `cpu_sheaves->lock`, each
//! `barn->lock`), never two at once. Only integers are written while one is held. The
//! `c->freelist` walk is exact when no thread allocates from or frees to the cache on that
//! CPU (the rseq and cmpxchg fast paths take no lock): the harness takes its census between
//! phases, with its workers joined. The walk is bounded by the slab's object count and stops
//! at the first pointer outside the slab, so a racing fast path can skew the count, never
//! send the walk outside the slab.

use crate::cache::KmemCache;
use crate::freeptr::get_freepointer;
use crate::node::counters_of;
use crate::{SheafCensus, Slub};
use common::{CacheHandle, Page, SlabError};
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

/// Objects held in one cache's per-CPU and per-node caches (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCensus {
    /// CPU slots of the cache.
    pub nr_cpus: usize,
    /// Nodes.
    pub nr_nodes: usize,
    /// Object stride.
    pub object_size: usize,
    /// Bytes of one slab of the cache's preferred order.
    pub slab_bytes: usize,
    /// CPUs that have a CPU slab.
    pub cpu_slabs: usize,
    /// Free objects on the CPU slabs.
    pub cpu_slab_objects: usize,
    /// Slabs on the per-CPU partial lists.
    pub cpu_partial_slabs: usize,
    /// Free objects on the per-CPU partial slabs.
    pub cpu_partial_objects: usize,
    /// Most objects held by one CPU in its CPU slab and partial slabs.
    pub cpu_max_objects: usize,
    /// Sheaves and barns (all zero for a cache without sheaves).
    pub sheaves: SheafCensus,
}

impl CacheCensus {
    /// Every object the per-CPU and per-node caches hold.
    pub fn objects(&self) -> usize {
        self.cpu_slab_objects + self.cpu_partial_objects + self.sheaves.objects()
    }
}

/// Free objects on `c->freelist`, a chain inside `slab`: at most `objects` steps, stopping at
/// a pointer that is not an object start of the slab.
fn cpu_freelist_len(sl: &Slub, s: &KmemCache, slab: *mut Page, head: usize) -> usize {
    let Some(page) = NonNull::new(slab) else {
        return 0;
    };
    let objects = counters_of(slab).objects as usize;
    let start = sl.provider.page_address(page).as_ptr() as usize + s.red_left_pad;
    let mut n = 0;
    let mut p = head;
    while p != 0 && n < objects {
        if p < start || (p - start) % s.size != 0 || (p - start) / s.size >= objects {
            break;
        }
        n += 1;
        p = get_freepointer(s, p);
    }
    n
}

impl Slub {
    /// The census of `cache`'s CPU slabs, per-CPU partial slabs, sheaves and barns (module
    /// documentation). Exact while the cache is quiescent.
    pub fn cache_census(&self, cache: CacheHandle) -> Result<CacheCensus, SlabError> {
        let s = self.cache_of(cache)?;
        let mut k = CacheCensus {
            nr_nodes: s.nr_nodes,
            object_size: s.size,
            slab_bytes: common::PAGE_SIZE << s.oo.order(),
            ..CacheCensus::default()
        };
        for (_, c) in s.cpu_slab.iter() {
            k.nr_cpus += 1;
            c.lock.lock();
            let slab = c.slab.load(Ordering::Acquire);
            let head = c.fl_tid.lo(Ordering::Acquire);
            let mut mine = 0;
            if !slab.is_null() {
                let cnt = counters_of(slab);
                let remote = (cnt.objects as usize).saturating_sub(cnt.inuse as usize);
                let n = cpu_freelist_len(self, s, slab, head) + remote;
                k.cpu_slabs += 1;
                k.cpu_slab_objects += n;
                mine += n;
            }
            let mut p = c.partial.load(Ordering::Acquire);
            let mut steps = 0;
            while !p.is_null() && steps < 1 << 16 {
                let cnt = counters_of(p);
                let n = (cnt.objects as usize).saturating_sub(cnt.inuse as usize);
                k.cpu_partial_slabs += 1;
                k.cpu_partial_objects += n;
                mine += n;
                // SAFETY: a frozen slab of this CPU's partial chain, read under its lock.
                p = unsafe { (*p).private } as *mut Page;
                steps += 1;
            }
            c.lock.unlock();
            k.cpu_max_objects = k.cpu_max_objects.max(mine);
        }
        k.sheaves = self.sheaf_census(cache)?;
        Ok(k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Era, KmemCacheArgs, SlubSettings};
    use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};

    fn provider() -> PageProvider {
        let mut cfg = ProviderConfig::small(Topology::uniform(1, 2).unwrap(), 32);
        cfg.bind = false;
        PageProvider::new(&cfg).unwrap()
    }

    fn slub(p: &PageProvider, era: Era) -> Slub {
        Slub::new(
            p,
            SlubSettings {
                era,
                ..SlubSettings::default()
            },
        )
        .unwrap()
    }

    fn active_objs(s: &Slub, name: &str) -> usize {
        let mut n = None;
        s.for_each_slabinfo(&mut |r| {
            if r.name.as_str() == name {
                n = Some(r.active_objs);
            }
        });
        n.expect("slabinfo row")
    }

    fn pinned(test: &str) -> bool {
        let ok = common::pin::pin_to_cpu(0).is_ok();
        if !ok {
            common::testing::skip(test, "pin", "cannot pin to CPU 0");
        }
        ok
    }

    /// Allocates `n`, frees `free` of them; returns the census and the live objects.
    fn run(s: &Slub, c: CacheHandle, n: usize, free: usize) -> (CacheCensus, Vec<NonNull<u8>>) {
        let mut v: Vec<NonNull<u8>> = (0..n)
            .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
            .collect();
        for o in v.drain(..free) {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
        (s.cache_census(c).unwrap(), v)
    }

    fn free_all(s: &Slub, c: CacheHandle, v: Vec<NonNull<u8>>) {
        for o in v {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
    }

    #[test]
    #[cfg_attr(miri, ignore)] // pins to a CPU: Miri has no sched_setaffinity/sched_getcpu
    fn cpu_slab_and_partials_of_6_4_are_counted() {
        let p = provider();
        let s = slub(&p, Era::V6_4);
        let c = s
            .kmem_cache_create("census", 64, 0, SlabFlags::NO_MERGE, None)
            .unwrap();
        let pin = pinned("cpu_slab_and_partials_of_6_4_are_counted");
        let fresh = s.cache_census(c).unwrap();
        assert_eq!(fresh.objects(), 0);
        assert_eq!(fresh.nr_cpus, 2);
        // Three slabs' worth, then every object of the first two slabs freed (in order): the
        // first slab goes to the per-CPU partial list, frees of the CPU slab are counted on it.
        let per = s.cache_attrs(c).unwrap().objs_per_slab;
        let (k, live) = run(&s, c, 3 * per, 2 * per + 3);
        assert_eq!(k.objects(), active_objs(&s, "census") - live.len(), "{k:?}");
        assert_eq!(k.sheaves.objects(), 0, "6.4 has no sheaves");
        if pin {
            assert_eq!(k.cpu_slabs, 1, "{k:?}");
            assert!(k.cpu_partial_slabs >= 1, "{k:?}");
            assert_eq!(k.cpu_max_objects, k.objects());
        }
        s.validate().unwrap();
        free_all(&s, c, live);
        s.kmem_cache_shrink(c).unwrap();
        assert_eq!(s.cache_census(c).unwrap().objects(), 0);
        assert_eq!(active_objs(&s, "census"), 0);
        // SAFETY: nothing allocated.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
        assert!(s.cache_census(c).is_err());
    }

    #[test]
    #[cfg_attr(miri, ignore)] // pins to a CPU: Miri has no sched_setaffinity/sched_getcpu
    fn sheaf_frees_on_one_cpu_are_counted_on_its_main_sheaf() {
        let p = provider();
        let s = slub(&p, Era::V7_0);
        let c = s
            .kmem_cache_create("census7", 64, 0, SlabFlags::NO_MERGE, None)
            .unwrap();
        if !pinned("sheaf_frees_on_one_cpu_are_counted_on_its_main_sheaf") {
            return;
        }
        let cap = s.sheaf_census(c).unwrap().sheaf_capacity;
        assert!(cap > 10, "capacity {cap}");
        // Allocate `cap` (the main sheaf refilled then emptied), free 10: all on main.
        let (k, live) = run(&s, c, cap, 0);
        let base = k.sheaves.cpu_main_objects;
        for o in &live[..10] {
            // SAFETY: freed once (the rest below).
            unsafe { s.kmem_cache_free(c, *o) }.unwrap();
        }
        let k = s.cache_census(c).unwrap();
        assert_eq!(k.sheaves.cpu_main_objects, base + 10, "{k:?}");
        assert_eq!(k.cpu_slabs + k.cpu_partial_slabs, 0, "7.0 has no CPU slabs");
        assert_eq!(k.objects(), active_objs(&s, "census7") - (cap - 10));
        // The sheaf part is what validate() counts (the same walk with every object checked).
        s.validate_cache(c).unwrap();
        assert_eq!(k.sheaves, s.sheaf_census(c).unwrap());
        // A burst of frees fills main, the spare, then the barn.
        let (k2, live2) = run(&s, c, 5 * cap, 5 * cap);
        assert!(live2.is_empty());
        assert!(k2.sheaves.barn_full >= 1, "{k2:?}");
        assert_eq!(
            k2.objects(),
            active_objs(&s, "census7") - (cap - 10),
            "{k2:?}"
        );
        free_all(&s, c, live[10..].to_vec());
        s.kmem_cache_shrink(c).unwrap();
        assert_eq!(s.cache_census(c).unwrap().objects(), 0);
        assert_eq!(active_objs(&s, "census7"), 0);
        // SAFETY: nothing allocated.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
    }

    #[test]
    // A whole Slub under Miri: the clock seed and rdtsc are unsupported there, and with those
    // stubbed the nightly interpreter crashed (ICE) in the provider's page setup.
    #[cfg_attr(miri, ignore)]
    fn era_6_18_counts_sheaves_and_cpu_slabs_together() {
        let p = provider();
        let s = slub(&p, Era::V6_18);
        let c = s
            .kmem_cache_create_args(
                "census618",
                64,
                0,
                SlabFlags::NO_MERGE,
                None,
                KmemCacheArgs { sheaf_capacity: 8 },
            )
            .unwrap();
        let (k, live) = run(&s, c, 200, 150);
        assert_eq!(k.sheaves.sheaf_capacity, 8);
        assert_eq!(
            k.objects(),
            active_objs(&s, "census618") - live.len(),
            "{k:?}"
        );
        s.validate().unwrap();
        free_all(&s, c, live);
        s.kmem_cache_shrink(c).unwrap();
        assert_eq!(s.cache_census(c).unwrap().objects(), 0);
    }
}
