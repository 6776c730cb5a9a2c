//! `struct kmem_cache`, `struct kmem_cache_cpu` and cache creation: `kmem_cache_open`,
//! `calculate_sizes`, `calculate_order`/`calc_slab_order`, the `oo` encoding, `min_partial`
//! and `set_cpu_partial` (mm/slub.c 6.4, "kmem_cache_open" section).
//!
//! The sizing functions are pure (`calculate_sizes` returns a [`CacheLayout`]) so the unit tests
//! can check them against hand-computed kernel values without building a cache.

use crate::fastpath::init_tid;
use crate::node::KmemCacheNode;
use crate::stats::StatItem;
use crate::{Era, Slub, SlubSettings};
use common::dword::DoubleWord;
use common::percpu::{LocalLock, PerCpu};
use common::provider::get_order;
use common::sizes::slub_index::fls;
use common::stats::StatCounters;
use common::{CacheName, Ctor, Page, PageProvider, SlabError, SlabFlags, MAX_NUMNODES, PAGE_SIZE};
use core::sync::atomic::{AtomicIsize, AtomicPtr, AtomicUsize, Ordering};

/// `OO_SHIFT`: `oo = order << OO_SHIFT | objects`.
pub const OO_SHIFT: usize = 16;
/// `OO_MASK`.
pub(crate) const OO_MASK: usize = (1 << OO_SHIFT) - 1;
/// `MAX_OBJS_PER_PAGE` of 6.4 (15-bit `objects`).
pub(crate) const MAX_OBJS_PER_PAGE: usize = 32767;
/// `MIN_PARTIAL`.
pub(crate) const MIN_PARTIAL: usize = 5;
/// `MAX_PARTIAL`.
pub(crate) const MAX_PARTIAL: usize = 10;
/// `sizeof(void *)`.
pub(crate) const WORD: usize = core::mem::size_of::<usize>();
/// `ARCH_SLAB_MINALIGN` / `ARCH_KMALLOC_MINALIGN` on x86-64.
pub(crate) const ARCH_SLAB_MINALIGN: usize = 8;
/// Cache line size assumed for `SLAB_HWCACHE_ALIGN` (`cache_line_size()`).
pub(crate) const CACHE_LINE: usize = 64;

/// `struct kmem_cache_order_objects`: one word, `order << OO_SHIFT | objects`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct KmemCacheOrderObjects {
    /// The encoded word.
    pub x: usize,
}

impl KmemCacheOrderObjects {
    /// `oo_make(order, size)`.
    pub const fn oo_make(order: usize, size: usize) -> Self {
        Self {
            x: (order << OO_SHIFT) + order_objects(order, size),
        }
    }
    /// `oo_order`.
    pub const fn order(self) -> usize {
        self.x >> OO_SHIFT
    }
    /// `oo_objects`.
    pub const fn objects(self) -> usize {
        self.x & OO_MASK
    }
}

/// `order_objects(order, size)`.
pub(crate) const fn order_objects(order: usize, size: usize) -> usize {
    (PAGE_SIZE << order) / size
}

/// `calculate_alignment` (mm/slab_common.c).
pub fn calculate_alignment(flags: SlabFlags, align: usize, size: usize) -> usize {
    let mut align = align;
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = CACHE_LINE;
        while size <= ralign / 2 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align = align.max(ARCH_SLAB_MINALIGN);
    align.next_multiple_of(WORD)
}

/// What `calculate_sizes` decides for a cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLayout {
    /// `object_size`.
    pub object_size: usize,
    /// `size`: the stride, metadata included.
    pub size: usize,
    /// `offset`: where the free pointer lives.
    pub offset: usize,
    /// `inuse`: offset of the metadata after the object.
    pub inuse: usize,
    /// `align`.
    pub align: usize,
    /// `red_left_pad`.
    pub red_left_pad: usize,
    /// `oo`.
    pub oo: KmemCacheOrderObjects,
    /// `min`.
    pub min: KmemCacheOrderObjects,
}

/// `calc_slab_order(size, min_objects, max_order, fract_leftover)`.
pub fn calc_slab_order(
    size: usize,
    min_objects: usize,
    min_order: usize,
    max_order: usize,
    fract_leftover: usize,
) -> usize {
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE {
        return get_order(size * MAX_OBJS_PER_PAGE) - 1;
    }
    let mut order = min_order.max(get_order(min_objects * size));
    while order <= max_order {
        let slab_size = PAGE_SIZE << order;
        let rem = slab_size % size;
        if rem <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// `calculate_order(size)`: `None` when no order up to `MAX_ORDER` fits (`-ENOSYS`).
/// `nr_cpus` is `num_present_cpus()` (6.4) or `nr_cpu_ids` (2.6.32).
pub fn calculate_order(size: usize, settings: &SlubSettings, nr_cpus: usize) -> Option<usize> {
    let max_order = settings.slub_max_order;
    let min_order = settings.slub_min_order;
    let mut min_objects = settings.slub_min_objects;
    if min_objects == 0 {
        min_objects = 4 * (fls(nr_cpus.max(1)) + 1);
    }
    let max_objects = order_objects(max_order, size);
    min_objects = min_objects.min(max_objects);
    while min_objects > 1 {
        let mut fraction = 16;
        while fraction >= 4 {
            let order = calc_slab_order(size, min_objects, min_order, max_order, fraction);
            if order <= max_order {
                return Some(order);
            }
            fraction /= 2;
        }
        min_objects -= 1;
    }
    // One object per slab, any waste, up to slub_max_order; then up to MAX_ORDER.
    let order = calc_slab_order(size, 1, min_order, max_order, 1);
    if order <= max_order {
        return Some(order);
    }
    let order = calc_slab_order(size, 1, min_order, common::MAX_ORDER - 1, 1);
    (order < common::MAX_ORDER).then_some(order)
}

/// `calculate_sizes`: object layout, free-pointer placement and slab order.
pub fn calculate_sizes(
    object_size: usize,
    align: usize,
    flags: SlabFlags,
    has_ctor: bool,
    settings: &SlubSettings,
    nr_cpus: usize,
) -> Option<CacheLayout> {
    let mut size = object_size.next_multiple_of(WORD);
    let debug = flags.intersects(SlabFlags::RED_ZONE | SlabFlags::POISON);
    if flags.contains(SlabFlags::RED_ZONE) && size == object_size {
        // Room for the right red zone (debug layout, `slub_debug`).
        size += WORD;
    }
    let inuse = size;
    let offset;
    let orig_size = flags.contains(SlabFlags::STORE_USER) && flags.contains(SlabFlags::KMALLOC);
    if flags.intersects(SlabFlags::TYPESAFE_BY_RCU | SlabFlags::POISON)
        || orig_size
        || (flags.contains(SlabFlags::RED_ZONE) && object_size < WORD)
        || has_ctor
    {
        // The free pointer may not overlay the object: put it after.
        offset = size;
        size += WORD;
    } else if settings.era == Era::V2_6_32 {
        offset = 0;
    } else {
        offset = (object_size / 2) / WORD * WORD;
    }
    if flags.contains(SlabFlags::STORE_USER) {
        // Two `struct track` (addr, handle, cpu, pid, when: 32 bytes each here) and the
        // original kmalloc size.
        size += 2 * 32;
        if flags.contains(SlabFlags::KMALLOC) {
            size += 4;
        }
    }
    let mut red_left_pad = 0;
    if debug && flags.contains(SlabFlags::RED_ZONE) {
        size += WORD;
        red_left_pad = WORD.next_multiple_of(align);
        size += red_left_pad;
    }
    size = size.next_multiple_of(align);
    let order = calculate_order(size, settings, nr_cpus)?;
    let oo = KmemCacheOrderObjects::oo_make(order, size);
    if oo.objects() == 0 {
        return None;
    }
    Some(CacheLayout {
        object_size,
        size,
        offset,
        inuse,
        align,
        red_left_pad,
        oo,
        min: KmemCacheOrderObjects::oo_make(get_order(size), size),
    })
}

/// `min_partial` for a cache of stride `size`: 6.4 `clamp(ilog2(size)/2, 5, 10)`, 2.6.32
/// `clamp(ilog2(size), 5, 10)`.
pub fn min_partial_for(size: usize, era: Era) -> usize {
    let l = size.ilog2() as usize;
    let v = match era {
        Era::V6_4 | Era::V6_18 | Era::V7_0 => l / 2,
        Era::V2_6_32 => l,
    };
    v.clamp(MIN_PARTIAL, MAX_PARTIAL)
}

/// `set_cpu_partial`'s table: objects kept on per-CPU partial slabs, and `cpu_partial_slabs =
/// DIV_ROUND_UP(objects·2, objects per slab)`. Returns `(cpu_partial, cpu_partial_slabs)`.
pub fn set_cpu_partial_for(
    size: usize,
    objects_per_slab: usize,
    has_cpu_partial: bool,
) -> (usize, usize) {
    let nr_objects = if !has_cpu_partial {
        0
    } else if size >= PAGE_SIZE {
        6
    } else if size >= 1024 {
        24
    } else if size >= 256 {
        52
    } else {
        120
    };
    (
        nr_objects,
        (nr_objects * 2).div_ceil(objects_per_slab.max(1)),
    )
}

/// `slub_set_cpu_partial`.
pub(crate) fn slub_set_cpu_partial(s: &KmemCache, nr_objects: usize) {
    s.cpu_partial.store(nr_objects, Ordering::Relaxed);
    s.cpu_partial_slabs.store(
        (nr_objects * 2).div_ceil(s.oo.objects().max(1)),
        Ordering::Relaxed,
    );
}

/// `struct reciprocal_value` (lib/math/reciprocal_div.c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ReciprocalValue {
    m: u32,
    sh1: u8,
    sh2: u8,
}

/// `reciprocal_value(d)`.
pub(crate) const fn reciprocal_value(d: u32) -> ReciprocalValue {
    let l = if d <= 1 {
        0
    } else {
        32 - (d - 1).leading_zeros()
    };
    let m = ((1u64 << 32) * ((1u64 << l) - d as u64)) / d as u64 + 1;
    ReciprocalValue {
        m: m as u32,
        sh1: if l < 1 { l as u8 } else { 1 },
        sh2: if l >= 1 { (l - 1) as u8 } else { 0 },
    }
}

/// `reciprocal_divide(a, R)`: `a / d` without a division instruction.
#[inline(always)]
pub(crate) const fn reciprocal_divide(a: u32, r: ReciprocalValue) -> u32 {
    let t = ((a as u64 * r.m as u64) >> 32) as u32;
    (t + ((a - t) >> r.sh1)) >> r.sh2
}

/// `__obj_to_index(cache, addr, obj)`: the index of `obj` in the slab at `addr`, by the
/// cache's reciprocal (no division).
#[inline]
pub(crate) fn obj_to_index(s: &KmemCache, addr: usize, obj: usize) -> usize {
    reciprocal_divide((obj - addr - s.red_left_pad) as u32, s.reciprocal_size) as usize
}

/// `struct kmem_cache_cpu`: the lockless `{freelist, tid}` pair (16-byte aligned, swapped by
/// `cmpxchg16b`), the CPU slab, the per-CPU partial chain and the slow-path local lock.
#[repr(C, align(64))]
pub(crate) struct KmemCacheCpu {
    /// `freelist` (lo) and `tid` (hi).
    pub(crate) fl_tid: DoubleWord,
    /// `slab`: the CPU slab (frozen), or null.
    pub(crate) slab: AtomicPtr<Page>,
    /// `partial`: chain of frozen slabs through `Page::private`.
    pub(crate) partial: AtomicPtr<Page>,
    /// `lock`: local_lock_t.
    pub(crate) lock: LocalLock,
    /// The instance runs the rseq fast path: slow paths fence the slot (`fastpath.rs`).
    pub(crate) rseq: bool,
}

impl KmemCacheCpu {
    fn new(cpu: usize, rseq: bool) -> Self {
        Self {
            fl_tid: DoubleWord::new(0, init_tid(cpu)),
            slab: AtomicPtr::new(core::ptr::null_mut()),
            partial: AtomicPtr::new(core::ptr::null_mut()),
            lock: LocalLock::new(),
            rseq,
        }
    }
}

const _: () = assert!(core::mem::offset_of!(KmemCacheCpu, fl_tid) % 16 == 0);

// The sheaves added one pointer and one bool (in padding): kmem_cache objects keep their
// 960-byte stride, so the boot caches' slab geometry is unchanged.
const _: () = assert!(
    core::mem::size_of::<KmemCache>() <= 960,
    "kmem_cache objects keep their 960-byte stride"
);

/// Magic word of a live `kmem_cache` (cleared by destroy), to refuse stale handles.
pub(crate) const KMEM_CACHE_MAGIC: usize = 0x5a1b_c0de_0000_0000;

/// `struct kmem_cache`. Lives in an object of the `kmem_cache` cache (or, during bootstrap, on
/// the stack of `kmem_cache_init`). Fields that sysfs or aliasing can change are atomics.
#[repr(C)]
pub(crate) struct KmemCache {
    /// `cpu_slab`.
    pub(crate) cpu_slab: PerCpu<KmemCacheCpu>,
    /// Instance id and liveness magic.
    pub(crate) magic: AtomicUsize,
    /// `size`: the object stride.
    pub(crate) size: usize,
    /// `offset`: free pointer offset.
    pub(crate) offset: usize,
    /// `random`: freelist hardening key (0 when hardening is off).
    pub(crate) random: usize,
    /// `CONFIG_SLAB_FREELIST_HARDENED` for this cache.
    pub(crate) hardened: bool,
    /// No debugging, statistics, init hooks or freelist hardening: the fast paths take their
    /// specialised form with every one of those tests compiled out (the kernel gets the same
    /// from static keys and config options). Fixed at creation, as are the four it sums up.
    pub(crate) plain: bool,
    /// 2.6.32 behaviour where it differs on the slow paths (see `slowpath.rs`).
    pub(crate) era_2_6_32: bool,
    /// Debug flags that force the slow path (`kmem_cache_debug`).
    pub(crate) debug: bool,
    /// `init_on_alloc` / `init_on_free` for this cache (`hooks::INIT_ON_ALLOC`, `INIT_ON_FREE`;
    /// `slab_want_init_on_*` decided once): beside `debug`, on the line the fast paths read.
    pub(crate) init_hooks: u32,
    /// `red_left_pad`.
    pub(crate) red_left_pad: usize,
    /// `reciprocal_size`: for `obj_to_index` without a division.
    pub(crate) reciprocal_size: ReciprocalValue,
    /// `size` divides an offset: the object-start test of checked frees.
    pub(crate) size_divides: common::ExactDiv,
    /// `CONFIG_SLUB_STATS` counters.
    pub(crate) stats: StatCounters<{ StatItem::COUNT }>,
    /// `flags`.
    pub(crate) flags: SlabFlags,
    /// `object_size` (raised by aliasing).
    pub(crate) object_size: AtomicUsize,
    /// Provider the slabs come from.
    pub(crate) provider: PageProvider,
    /// Number of logical nodes.
    pub(crate) nr_nodes: usize,
    /// `kmem_cache_has_cpu_partial(s)`.
    pub(crate) has_cpu_partial: bool,
    /// Era 7.0: no `kmem_cache_cpu` in use; the slab path is `refill.rs` (in the
    /// padding after `has_cpu_partial`).
    pub(crate) era_7_0: bool,
    /// `min_partial` (sysfs rw).
    pub(crate) min_partial: AtomicUsize,
    /// `cpu_partial` (objects, sysfs rw).
    pub(crate) cpu_partial: AtomicUsize,
    /// `cpu_partial_slabs`.
    pub(crate) cpu_partial_slabs: AtomicUsize,
    /// `oo`.
    pub(crate) oo: KmemCacheOrderObjects,
    /// `min`.
    pub(crate) min: KmemCacheOrderObjects,
    /// `refcount` (aliases; −1 for boot caches while unmergeable).
    pub(crate) refcount: AtomicIsize,
    /// `ctor`.
    pub(crate) ctor: Option<Ctor>,
    /// `inuse` (raised by aliasing).
    pub(crate) inuse: AtomicUsize,
    /// `align`.
    pub(crate) align: usize,
    /// `name`.
    pub(crate) name: CacheName,
    /// `list`: next (older) cache on `slab_caches`.
    pub(crate) next: AtomicPtr<KmemCache>,
    /// `remote_node_defrag_ratio` (kernel unit: sysfs value × 10).
    pub(crate) remote_node_defrag_ratio: AtomicUsize,
    /// `node[MAX_NUMNODES]`.
    pub(crate) node: [AtomicPtr<KmemCacheNode>; MAX_NUMNODES],
    /// `slub_debug` reports about this cache (the per-cache `slab_errors`); last, so the
    /// fields the fast paths read keep their offsets.
    pub(crate) errors: core::sync::atomic::AtomicU64,
    /// Sheaves: `cpu_sheaves` and `sheaf_capacity` (`sheaf::CacheSheaves`, kmalloc'ed):
    /// null = the 6.4 paths; every 7.0 cache has one (a static without sheaves for the boot
    /// and debug caches). One pointer, so the structure keeps its size class.
    pub(crate) sheaves: AtomicPtr<crate::sheaf::CacheSheaves>,
}

// SAFETY: all mutable state is atomics, per-CPU slots under their locks, or node structures
// under their list locks (see the crate header).
unsafe impl Sync for KmemCache {}
// SAFETY: see Sync.
unsafe impl Send for KmemCache {}

impl KmemCache {
    /// `get_node(s, nid)`.
    #[inline(always)]
    pub(crate) fn get_node(&self, nid: usize) -> &KmemCacheNode {
        let p = self.node[nid].load(Ordering::Relaxed);
        debug_assert!(!p.is_null());
        // SAFETY: node structures are set up by init_kmem_cache_nodes before the cache is used
        // and freed only when the cache is destroyed.
        unsafe { &*p }
    }

    /// `stat(s, item)`.
    #[inline(always)]
    pub(crate) fn stat(&self, item: StatItem) {
        self.stats.inc(item as usize);
    }

    pub(crate) fn is_live(&self, instance: u32) -> bool {
        self.magic.load(Ordering::Relaxed) == KMEM_CACHE_MAGIC | instance as usize
    }
}

/// `kmem_cache_open` (into uninitialised memory at `s`): `calculate_sizes`, `min_partial`,
/// `set_cpu_partial`, `remote_node_defrag_ratio`, `init_kmem_cache_nodes`,
/// `alloc_kmem_cache_cpus`.
///
/// # Safety
/// `s` must point to writable memory for a `KmemCache` that nobody else uses; on `Err` it is
/// left uninitialised (everything taken is given back).
pub(crate) unsafe fn kmem_cache_open(
    sl: &Slub,
    s: *mut KmemCache,
    name: CacheName,
    size: usize,
    align: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
) -> Result<(), SlabError> {
    // SAFETY: forwarded.
    unsafe { kmem_cache_open_args(sl, s, name, size, align, flags, ctor, 0) }
}

/// [`kmem_cache_open`] with `kmem_cache_args.sheaf_capacity`.
///
/// # Safety
/// As [`kmem_cache_open`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kmem_cache_open_args(
    sl: &Slub,
    s: *mut KmemCache,
    name: CacheName,
    size: usize,
    align: usize,
    flags: SlabFlags,
    ctor: Option<Ctor>,
    sheaf_capacity_arg: usize,
) -> Result<(), SlabError> {
    let settings = &sl.settings;
    // 6.4 (and later): num_present_cpus(), or nr_cpu_ids if that is ≤ 1; 2.6.32: nr_cpu_ids.
    let online = sl.provider.topology().num_online_cpus();
    let nr_cpus = if settings.era != Era::V2_6_32 && online > 1 {
        online
    } else {
        sl.nr_cpu_ids
    };
    let mut flags = crate::debug::kmem_cache_flags(sl, flags, name.as_str());
    let too_large = SlabError::TooLarge {
        size,
        max: crate::KMALLOC_MAX_SIZE,
    };
    let mut layout =
        calculate_sizes(size, align, flags, ctor.is_some(), settings, nr_cpus).ok_or(too_large)?;
    if crate::debug::disable_higher_order_debug(sl)
        && flags.intersects(crate::debug::DEBUG_METADATA_FLAGS)
        && get_order(layout.size) > get_order(size)
    {
        // slub_debug=O: no debug metadata where it would raise the minimum order.
        flags = flags.without(crate::debug::DEBUG_METADATA_FLAGS);
        layout = calculate_sizes(size, align, flags, ctor.is_some(), settings, nr_cpus)
            .ok_or(too_large)?;
    }
    let debug = flags.intersects(crate::debug::SLAB_DEBUG_FLAGS);
    // 7.0 removed per-CPU partial slabs (and CPU slabs: `refill.rs`).
    let has_cpu_partial = !debug && matches!(settings.era, Era::V6_4 | Era::V6_18);
    let min_partial = settings
        .min_partial
        .unwrap_or_else(|| min_partial_for(layout.size, settings.era));
    let (cpu_partial, _) = set_cpu_partial_for(layout.size, layout.oo.objects(), has_cpu_partial);
    let cpu_partial = if has_cpu_partial {
        settings.cpu_partial.unwrap_or(cpu_partial)
    } else {
        0
    };
    // alloc_kmem_cache_cpus (done first here so the structure is whole when written).
    let cpu_slab = PerCpu::new(&sl.provider, sl.nr_cpu_ids, |c| {
        KmemCacheCpu::new(c, sl.rseq)
    })
    .ok_or(SlabError::NoMemory)?;
    let stats = StatCounters::new(&sl.provider, sl.nr_cpu_ids, settings.stats)
        .ok_or(SlabError::NoMemory)?;
    let random = if settings.freelist_hardened {
        sl.get_random_long()
    } else {
        0
    };
    let stats_on = stats.enabled();
    let init_hooks = crate::hooks::init_hooks_for(sl, flags, ctor);
    let cache = KmemCache {
        cpu_slab,
        flags,
        errors: core::sync::atomic::AtomicU64::new(0),
        min_partial: AtomicUsize::new(min_partial),
        size: layout.size,
        object_size: AtomicUsize::new(layout.object_size),
        offset: layout.offset,
        cpu_partial: AtomicUsize::new(0),
        cpu_partial_slabs: AtomicUsize::new(0),
        oo: layout.oo,
        min: layout.min,
        refcount: AtomicIsize::new(1),
        ctor,
        inuse: AtomicUsize::new(layout.inuse),
        align: layout.align,
        red_left_pad: layout.red_left_pad,
        name,
        next: AtomicPtr::new(core::ptr::null_mut()),
        random,
        remote_node_defrag_ratio: AtomicUsize::new(settings.remote_node_defrag_ratio.min(100) * 10),
        node: [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_NUMNODES],
        stats,
        provider: sl.provider.clone(),
        has_cpu_partial,
        debug,
        init_hooks,
        hardened: settings.freelist_hardened,
        plain: !debug && init_hooks == 0 && !settings.freelist_hardened && !stats_on,
        era_2_6_32: settings.era == Era::V2_6_32,
        nr_nodes: sl.nr_nodes,
        magic: AtomicUsize::new(KMEM_CACHE_MAGIC | sl.instance as usize),
        reciprocal_size: reciprocal_value(layout.size as u32),
        size_divides: common::ExactDiv::new(layout.size as u32),
        era_7_0: settings.era == Era::V7_0,
        sheaves: AtomicPtr::new(core::ptr::null_mut()),
    };
    // SAFETY: the caller gives us exclusive, writable, uninitialised memory.
    unsafe { s.write(cache) };
    // SAFETY: just initialised.
    let sr = unsafe { &*s };
    slub_set_cpu_partial(sr, cpu_partial);
    if let Err(e) = crate::node::init_kmem_cache_nodes(sl, sr) {
        sr.magic.store(0, Ordering::Relaxed);
        // SAFETY: nodes are freed; drop the per-CPU and stat memory and leave s uninitialised.
        unsafe { core::ptr::drop_in_place(s) };
        return Err(e);
    }
    // Percpu sheaves and barns (6.18 opt-in, 7.0 every cache).
    // SAFETY: s is ours alone until the caller publishes it.
    if let Err(e) = unsafe { crate::sheaf::init_cache_sheaves(sl, s, sheaf_capacity_arg) } {
        crate::node::free_kmem_cache_nodes(sl, sr);
        sr.magic.store(0, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { core::ptr::drop_in_place(s) };
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st() -> SlubSettings {
        SlubSettings::default()
    }

    fn lay(size: usize, align: usize, flags: SlabFlags, ctor: bool, cpus: usize) -> CacheLayout {
        let a = calculate_alignment(flags, align, size);
        calculate_sizes(size, a, flags, ctor, &st(), cpus).unwrap()
    }

    #[test]
    fn oo_encoding_round_trips() {
        let oo = KmemCacheOrderObjects::oo_make(3, 700);
        assert_eq!(oo.x, (3 << 16) + 46);
        assert_eq!(oo.order(), 3);
        assert_eq!(oo.objects(), 46);
        let m = KmemCacheOrderObjects::oo_make(0, 64);
        assert_eq!((m.order(), m.objects()), (0, 64));
    }

    #[test]
    fn free_pointer_in_the_middle_or_after() {
        // 6.4: ALIGN_DOWN(object_size / 2, 8).
        let l = lay(64, 0, SlabFlags::NONE, false, 2);
        assert_eq!((l.size, l.offset, l.inuse), (64, 32, 64));
        let l = lay(24, 0, SlabFlags::NONE, false, 2);
        assert_eq!((l.size, l.offset, l.inuse), (24, 8, 24));
        let l = lay(8, 0, SlabFlags::NONE, false, 2);
        assert_eq!((l.size, l.offset), (8, 0));
        let l = lay(700, 0, SlabFlags::NONE, false, 2);
        assert_eq!((l.size, l.offset), (704, 344));
        // A constructor or poisoning moves it after the object, growing the stride.
        let l = lay(64, 0, SlabFlags::NONE, true, 2);
        assert_eq!((l.size, l.offset, l.inuse), (72, 64, 64));
        let l = lay(64, 0, SlabFlags::TYPESAFE_BY_RCU, false, 2);
        assert_eq!((l.size, l.offset), (72, 64));
        // 2.6.32: offset 0.
        let old = SlubSettings::v2_6_32();
        let l = calculate_sizes(64, 8, SlabFlags::NONE, false, &old, 2).unwrap();
        assert_eq!(l.offset, 0);
    }

    #[test]
    fn alignment_rules() {
        assert_eq!(calculate_alignment(SlabFlags::NONE, 0, 20), 8);
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 20), 32);
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 100), 64);
        assert_eq!(calculate_alignment(SlabFlags::HWCACHE_ALIGN, 0, 8), 8);
        assert_eq!(calculate_alignment(SlabFlags::NONE, 256, 20), 256);
        let l = lay(100, 0, SlabFlags::HWCACHE_ALIGN, false, 2);
        assert_eq!(l.size, 128);
    }

    /// Hand-computed from the 6.4 formulas with 2 CPUs: min_objects = 4·(fls(2)+1) = 12.
    #[test]
    fn calculate_order_table_two_cpus() {
        // (size, order, objects)
        let table = [
            (8, 0, 512),
            (24, 0, 170), // 4096 % 24 = 16 ≤ 256
            (64, 0, 64),
            (96, 0, 42),   // 12·96 = 1152 → order 0; 4096 % 96 = 64 ≤ 256
            (192, 0, 21),  // 12·192 = 2304 → order 0; rem 64 ≤ 256
            (256, 0, 16),  // 12·256 = 3072 → order 0
            (704, 2, 23),  // 12·704 = 8448 → order 2; 16384 % 704 = 192 ≤ 1024
            (1024, 2, 16), // 12 KiB → order 2
            (4096, 3, 8),  // min_objects = min(12, 8) = 8 → 32 KiB
            (8192, 3, 4),  // min(12, 4) = 4 → 32 KiB
        ];
        for (size, order, objects) in table {
            let o = calculate_order(size, &st(), 2).unwrap();
            assert_eq!(o, order, "size {size}");
            assert_eq!(order_objects(o, size), objects, "size {size}");
        }
    }

    #[test]
    fn calculate_order_depends_on_cpus() {
        // 64 CPUs: min_objects = 4·(7+1) = 32; 1024·32 = 32 KiB → order 3.
        assert_eq!(calculate_order(1024, &st(), 64), Some(3));
        // 1 CPU: 4·(1+1) = 8 → 8 KiB → order 1.
        assert_eq!(calculate_order(1024, &st(), 1), Some(1));
        // 256 CPUs: 4·(9+1) = 40 objects of 192 = 7680 → order 1; 8192 % 192 = 128 ≤ 512.
        assert_eq!(calculate_order(192, &st(), 256), Some(1));
        // slub_max_order 0: 4096-byte objects fit one per page.
        let s0 = SlubSettings {
            slub_max_order: 0,
            ..st()
        };
        assert_eq!(calculate_order(4096, &s0, 2), Some(0));
        // Larger than slub_max_order allows: the MAX_ORDER fallback (64 KiB → order 4).
        assert_eq!(calculate_order(65536, &st(), 2), Some(4));
        // slub_min_objects forces bigger slabs.
        let s4 = SlubSettings {
            slub_min_objects: 64,
            ..st()
        };
        assert_eq!(calculate_order(256, &s4, 2), Some(2));
        // slub_min_order.
        let s2 = SlubSettings {
            slub_min_order: 2,
            slub_max_order: 3,
            ..st()
        };
        assert_eq!(calculate_order(64, &s2, 2), Some(2));
    }

    #[test]
    fn calc_slab_order_fractions() {
        // 700-byte stride, 23 objects: order 2 wastes 16384 % 700 = 284 ≤ 16384/16.
        assert_eq!(calc_slab_order(700, 12, 0, 3, 16), 2);
        // 3000 B, 12 objects: 36000 → order 4 > 3 for every fraction.
        assert_eq!(calc_slab_order(3000, 12, 0, 3, 16), 4);
        // 3000 B, 2 objects: order 1: 8192 % 3000 = 2192 > 512 (1/16) → order 2: 16384 % 3000 =
        // 1384 ≤ 1024? no → order 3: 32768 % 3000 = 2768 ≤ 2048? no → 4.
        assert_eq!(calc_slab_order(3000, 2, 0, 3, 16), 4);
        // 1/8: order 2 wastes 1384 ≤ 2048.
        assert_eq!(calc_slab_order(3000, 2, 0, 3, 8), 2);
        // Tiny objects: 32767 objects cap.
        assert_eq!(calc_slab_order(8, 1, 7, 10, 16), get_order(8 * 32767) - 1);
    }

    #[test]
    fn min_partial_both_eras() {
        // 6.4: clamp(ilog2/2, 5, 10).
        assert_eq!(min_partial_for(64, Era::V6_4), 5);
        assert_eq!(min_partial_for(4096, Era::V6_4), 6);
        assert_eq!(min_partial_for(8192, Era::V6_4), 6);
        assert_eq!(min_partial_for(1 << 22, Era::V6_4), 10);
        // 2.6.32: clamp(ilog2, 5, 10).
        assert_eq!(min_partial_for(64, Era::V2_6_32), 6);
        assert_eq!(min_partial_for(8, Era::V2_6_32), 5);
        assert_eq!(min_partial_for(256, Era::V2_6_32), 8);
        assert_eq!(min_partial_for(4096, Era::V2_6_32), 10);
    }

    #[test]
    fn set_cpu_partial_table() {
        assert_eq!(set_cpu_partial_for(64, 64, true), (120, 4));
        assert_eq!(set_cpu_partial_for(192, 21, true), (120, 12));
        assert_eq!(set_cpu_partial_for(256, 16, true), (52, 7));
        assert_eq!(set_cpu_partial_for(704, 23, true), (52, 5));
        assert_eq!(set_cpu_partial_for(1024, 16, true), (24, 3));
        assert_eq!(set_cpu_partial_for(4096, 8, true), (6, 2));
        assert_eq!(set_cpu_partial_for(8192, 4, true), (6, 3));
        assert_eq!(set_cpu_partial_for(64, 64, false), (0, 0));
    }

    #[test]
    fn reciprocal_division_matches() {
        for d in [
            8u32, 24, 64, 72, 96, 192, 704, 1000, 4096, 8192, 65536, 3000,
        ] {
            let r = reciprocal_value(d);
            // Pure arithmetic, nothing for Miri to check but the overflow rules: a coarser
            // sweep there keeps it to seconds instead of minutes.
            let step = if cfg!(miri) { 9973 } else { 97 };
            for a in (0..(1u32 << 22))
                .step_by(step)
                .chain([d, d - 1, 2 * d, (1 << 22) - 1])
            {
                assert_eq!(reciprocal_divide(a, r), a / d, "{a} / {d}");
            }
        }
    }

    #[test]
    fn kmem_cache_cpu_layout() {
        assert_eq!(core::mem::align_of::<KmemCacheCpu>(), 64);
        assert!(core::mem::size_of::<KmemCacheCpu>() <= 64);
    }
}
