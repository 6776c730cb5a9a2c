//! The allocator's "static" data and the six-step `kmem_cache_init` of 2.6.32.
//!
//! What the kernel keeps in `.data`/`.bss` — `cache_cache`, `initarray_cache`,
//! `initarray_generic`, `initkmem_list3[]`, `malloc_sizes[]`, `cache_chain`,
//! `g_cpucache_up` — lives in [`SlabGlobals`], one block taken from the page provider
//! (`Owner::Metadata`) when the instance is built. Everything else (every other `kmem_cache`,
//! every `array_cache`, `kmem_list3`, alien table and off-slab descriptor) is allocated by the
//! allocator from its own caches, exactly as the kernel bootstraps itself:
//!
//! 1. `cache_cache` (the cache of `kmem_cache` objects) is set up by hand with the static
//!    `initarray_cache` and the `CACHE_CACHE` list3s.
//! 2. The `INDEX_AC` kmalloc cache (`size-32`, holds an `arraycache_init`) is created: state
//!    `NONE` gives it the static `initarray_generic` and `SIZE_AC` list3s → `PARTIAL_AC`.
//! 3. The `INDEX_L3` cache (`size-128`, holds a `kmem_list3`) gets kmalloc'd arrays and the static
//!    `SIZE_L3` list3s → `PARTIAL_L3`; off-slab is allowed from now on; every other `size-N`
//!    cache is created with kmalloc'd arrays and kmalloc_node'd list3s.
//! 4. The static head arrays of `cache_cache` and the `INDEX_AC` cache are replaced by kmalloc'd
//!    copies.
//! 5. `init_list` replaces every static list3 with a kmalloc_node'd copy, splicing the slab
//!    lists across → `EARLY`.
//! 6. (`kmem_cache_init_late`) `enable_cpucache` on every cache → `FULL`.
//!
//! Deviation: user space has every CPU from the start, so where the kernel's `cpuup_prepare`
//! gives late CPUs their arrays, the bootstrap gives every CPU slot an array at once (during
//! bootstrap all slots of the first two caches share the static array; only one thread runs).

use crate::arraycache::{ac_init, ArrayCache, ARRAYCACHE_INIT_SIZE};
use crate::cache::{cache_estimate, kmem_cache_layout, CpuSlot, KmemCache, CACHE_MAGIC};
use crate::instance::SlabGlobals;
use crate::kmalloc::{INDEX_AC, INDEX_L3};
use crate::node::{kmem_list3_init, list_splice_init, KmemList3};
use crate::slabmgmt::{align_up, reciprocal_value, BUFCTL_SIZE, SLAB_DESC_SIZE};
use crate::stats::CacheStats;
use common::api::{CacheName, SlabError, SlabFlags};
use common::list::ListHead;
use common::sizes::slab as sizes;
use core::cell::UnsafeCell;
use core::ptr::{addr_of_mut, null_mut};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// `g_cpucache_up`.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CpuCacheUp {
    /// Nothing yet.
    None = 0,
    /// The `INDEX_AC` cache exists.
    PartialAc = 1,
    /// The `INDEX_L3` cache exists.
    PartialL3 = 2,
    /// Every kmalloc cache exists, static structures replaced.
    Early = 3,
    /// Tunables applied.
    Full = 4,
}

impl CpuCacheUp {
    /// From its `u8` value (anything above `EARLY` is `FULL`).
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => CpuCacheUp::None,
            1 => CpuCacheUp::PartialAc,
            2 => CpuCacheUp::PartialL3,
            3 => CpuCacheUp::Early,
            _ => CpuCacheUp::Full,
        }
    }
}

/// `CACHE_CACHE` index into `initkmem_list3`.
pub(crate) const CACHE_CACHE: usize = 0;
/// `SIZE_AC` block of `initkmem_list3` (times the node count).
pub(crate) const SIZE_AC: usize = 1;
/// `SIZE_L3` block.
pub(crate) const SIZE_L3: usize = 2;
/// `NUM_INIT_LISTS` = 3 × nodes.
pub(crate) const NUM_INIT_LIST_BLOCKS: usize = 3;

impl SlabGlobals {
    /// `kmem_cache_init` (steps 1–5) and `kmem_cache_init_late` (step 6).
    ///
    /// Takes `&self`, not `&mut self`: the pointers it stores into caches (the chain head, the
    /// boot arrays) are used for the instance's whole life, and a unique borrow of the whole
    /// block would make them invalid under Stacked Borrows as soon as it ended. Everything it
    /// writes is therefore in `UnsafeCell`s, atomics, or memory reached through raw pointers.
    ///
    /// # Safety
    /// Called once, by `create`, before the instance is shared.
    pub(crate) unsafe fn kmem_cache_init(&self) -> Result<(), SlabError> {
        // SAFETY: single-threaded bootstrap (contract) for every step below.
        unsafe { self.init_static_list3s() };
        // 1) cache_cache.
        // SAFETY: as above.
        let cc = unsafe { self.setup_cache_cache()? };
        // 2+3) the kmalloc caches, INDEX_AC and INDEX_L3 first.
        // SAFETY: as above.
        let ac_cache = unsafe { self.create_kmalloc_caches()? };
        // 4) replace the bootstrap head arrays.
        // SAFETY: as above.
        unsafe {
            self.replace_boot_arrays(cc, self.initarray_cache_ptr())?;
            self.replace_boot_arrays(ac_cache, self.initarray_generic_ptr())?;
        }
        // 5) replace the bootstrap kmem_list3s.
        let l3_cache = self
            .find_general_cachep(sizes::SIZES[INDEX_L3])
            .ok_or(SlabError::NoMemory)?;
        for nid in 0..self.nr_nodes {
            // SAFETY: as above.
            unsafe {
                self.init_list(cc, self.static_l3(CACHE_CACHE, nid), nid)?;
                self.init_list(ac_cache, self.static_l3(SIZE_AC, nid), nid)?;
                if INDEX_AC != INDEX_L3 {
                    self.init_list(l3_cache, self.static_l3(SIZE_L3, nid), nid)?;
                }
            }
        }
        self.set_cpucache_up(CpuCacheUp::Early);
        // 6) kmem_cache_init_late: final head-array sizes.
        let chain = self.chain_lock();
        for cachep in self.caches(&chain) {
            // SAFETY: as above; the chain mutex is held.
            unsafe { self.enable_cpucache(cachep)? };
        }
        self.set_cpucache_up(CpuCacheUp::Full);
        Ok(())
    }

    /// The static list3 of block `index` for `node`.
    fn static_l3(&self, index: usize, node: usize) -> *mut KmemList3 {
        self.initkmem_list3
            .wrapping_add(index * self.nr_nodes + node)
    }

    /// `kmem_list3_init` of every static list3; each CPU's first `reap_node`.
    ///
    /// # Safety
    /// Bootstrap only.
    unsafe fn init_static_list3s(&self) {
        for i in 0..NUM_INIT_LIST_BLOCKS * self.nr_nodes {
            // SAFETY: inside the globals block, never moved (bootstrap only).
            unsafe { kmem_list3_init(self.initkmem_list3.add(i)) };
        }
        for cpu in 0..self.nr_cpus {
            self.reap_node[cpu].store(
                ((self.cpu_node[cpu] as usize + 1) % self.nr_nodes) as u16,
                Ordering::Relaxed,
            );
        }
        // SAFETY: the chain head lives in the block, not moved.
        unsafe { ListHead::init(self.cache_chain_head()) };
    }

    /// Step 1: `cache_cache` by hand — its geometry, the static `initarray_cache` on every
    /// CPU slot, the `CACHE_CACHE` list3s, on the chain.
    ///
    /// # Safety
    /// Bootstrap only, after [`Self::init_static_list3s`].
    unsafe fn setup_cache_cache(&self) -> Result<&KmemCache, SlabError> {
        // At least 64: the per-CPU slots inside a kmem_cache are cache-line-aligned structs.
        let line = self.cache_line_size.max(64);
        let (cc_size, _, _) = kmem_cache_layout(self.nr_cpus, self.nr_nodes);
        let buffer_size = align_up(cc_size, line);
        let Some((order, (left_over, num))) = (0..common::MAX_ORDER)
            .map(|o| (o, cache_estimate(o, buffer_size, line, false)))
            .find(|(_, (_, n))| *n > 0)
        else {
            return Err(SlabError::TooLarge {
                size: buffer_size,
                max: crate::cache::KMALLOC_MAX_SIZE,
            });
        };
        let raw = self.cache_cache;
        // SAFETY: `create` set `array` and `nodelists` to the trailing arrays of the
        // cache_cache room inside the globals block.
        let (array, nodelists) = unsafe { ((*raw).array, (*raw).nodelists) };
        let value = KmemCache {
            magic: AtomicUsize::new(CACHE_MAGIC),
            array,
            nodelists,
            buffer_size,
            buffer_size_divides: common::ExactDiv::new(buffer_size as u32),
            flags: 0,
            num: num as u32,
            instance: self.instance,
            obj_offset: 0,
            batchcount: AtomicU32::new(1),
            limit: AtomicU32::new(1),
            shared: AtomicU32::new(1),
            reciprocal_buffer_size: reciprocal_value(buffer_size as u32),
            gfporder: order as u32,
            colour: left_over / line,
            colour_off: line,
            slabp_cache: null_mut(),
            slab_size: align_up(num * BUFCTL_SIZE + SLAB_DESC_SIZE, line),
            ctor: None,
            name: CacheName::new("kmem_cache").unwrap_or_else(|_| unreachable!()),
            next: UnsafeCell::new(ListHead::new()),
            obj_size: cc_size,
            debug_errors: AtomicU64::new(0),
            stats: CacheStats::default(),
        };
        // SAFETY: the cache_cache room of the globals block, nobody else's (bootstrap).
        unsafe { raw.write(value) };
        let cc = self.cache_cache();
        let init_ac = self.initarray_cache_ptr();
        // SAFETY: the static array, used by nobody yet; every slot is in `array[]`.
        unsafe {
            ac_init(init_ac, 1, 1);
            for cpu in 0..self.nr_cpus {
                CpuSlot::init(cc.array.add(cpu), self.cpu_node[cpu] as usize, init_ac);
            }
            self.set_up_list3s(cc, CACHE_CACHE);
            ListHead::add(cc.chain_link(), self.cache_chain_head());
        }
        Ok(cc)
    }

    /// Steps 2 and 3: the `INDEX_AC` cache, the `INDEX_L3` cache, then (off-slab allowed from
    /// now on) every other `size-N` cache. Returns the `INDEX_AC` cache.
    ///
    /// # Safety
    /// Bootstrap only, after step 1.
    unsafe fn create_kmalloc_caches(&self) -> Result<&KmemCache, SlabError> {
        let kflags = SlabFlags::HWCACHE_ALIGN | SlabFlags::KMALLOC;
        let create = |i: usize| -> Result<&KmemCache, SlabError> {
            let c = self.kmem_cache_create(sizes::NAMES[i], sizes::SIZES[i], 8, kflags, None)?;
            // SAFETY: single-threaded bootstrap (contract).
            unsafe { self.malloc_sizes[i].set_cachep(c) };
            Ok(c)
        };
        let ac_cache = create(INDEX_AC)?;
        if INDEX_AC != INDEX_L3 {
            create(INDEX_L3)?;
        }
        self.slab_early_init.store(false, Ordering::Relaxed);
        for i in 0..sizes::NR {
            if self.malloc_sizes[i].cachep().is_null() {
                create(i)?;
            }
        }
        Ok(ac_cache)
    }

    /// Step 4 for one cache: kmalloc'd head arrays replace the static `init` on every CPU
    /// slot (the first takes over its contents).
    ///
    /// # Safety
    /// Bootstrap only; `init` is the static array every slot of `cachep` uses.
    unsafe fn replace_boot_arrays(
        &self,
        cachep: &KmemCache,
        init: *mut ArrayCache,
    ) -> Result<(), SlabError> {
        // Allocate every replacement before installing any (the INDEX_AC cache allocates
        // them from its own static array).
        let tmp = self
            .alloc_ptr_table::<ArrayCache>(self.nr_cpus, None)
            .ok_or(SlabError::NoMemory)?;
        // SAFETY: a fresh table of nr_cpus pointers, ours alone.
        let table = unsafe { core::slice::from_raw_parts_mut(tmp, self.nr_cpus) };
        for e in table.iter_mut() {
            let p = self
                .kmalloc_internal(ARRAYCACHE_INIT_SIZE)
                .ok_or(SlabError::NoMemory)?;
            *e = p.as_ptr().cast();
        }
        for (cpu, &p) in table.iter().enumerate() {
            // SAFETY: fresh boot-sized arrays; `init` is live; single-threaded (contract).
            unsafe {
                if cpu == 0 {
                    core::ptr::copy_nonoverlapping(
                        init.cast::<u8>(),
                        p.cast::<u8>(),
                        ARRAYCACHE_INIT_SIZE,
                    );
                    (*p).lock.init();
                } else {
                    ac_init(p, 1, 1);
                }
                self.cpu_slot(cachep, cpu).set_ac_unshared(p);
            }
        }
        // SAFETY: the static array is used by no slot any more; the table is ours.
        unsafe {
            (*init).avail = 0;
            self.kfree_internal(tmp.cast());
        }
        Ok(())
    }

    /// `init_list`: a kmalloc_node'd copy of a static list3, lists spliced across.
    ///
    /// # Safety
    /// Bootstrap only.
    unsafe fn init_list(
        &self,
        cachep: &KmemCache,
        list: *mut KmemList3,
        nid: usize,
    ) -> Result<(), SlabError> {
        let p = self
            .kmalloc_node_internal(core::mem::size_of::<KmemList3>(), nid)
            .ok_or(SlabError::NoMemory)?;
        let ptr = p.as_ptr().cast::<KmemList3>();
        // SAFETY: fresh object of the INDEX_L3 cache; `list` is the live static list3.
        unsafe {
            core::ptr::copy_nonoverlapping(list, ptr, 1);
            (*ptr).list_lock.init();
            list_splice_init(
                addr_of_mut!((*list).slabs_full),
                addr_of_mut!((*ptr).slabs_full),
            );
            list_splice_init(
                addr_of_mut!((*list).slabs_partial),
                addr_of_mut!((*ptr).slabs_partial),
            );
            list_splice_init(
                addr_of_mut!((*list).slabs_free),
                addr_of_mut!((*ptr).slabs_free),
            );
            cachep.set_nodelist(nid, ptr);
        }
        Ok(())
    }

    /// `set_up_list3s(cachep, index)`: the static list3s of block `index` for every node.
    ///
    /// # Safety
    /// Bootstrap only.
    pub(crate) unsafe fn set_up_list3s(&self, cachep: &KmemCache, index: usize) {
        for node in 0..self.nr_nodes {
            let l3 = self.static_l3(index, node);
            // SAFETY: a static list3 inside the globals block; bootstrap only.
            unsafe {
                cachep.set_nodelist(node, l3);
                (*l3).next_reap = self.next_reap_initial(cachep);
            }
        }
    }
}
