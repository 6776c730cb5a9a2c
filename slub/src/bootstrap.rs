//! The self-bootstrap (mm/slub.c 6.4 `kmem_cache_init`, `bootstrap`,
//! `early_kmem_cache_node_alloc`, `create_boot_cache`, `create_kmalloc_caches`) and the
//! instance teardown.
//!
//! ```text
//! DOWN     boot kmem_cache_node (on the stack of kmem_cache_init): its per-node structures come
//!          from slabs of itself, made by early_kmem_cache_node_alloc
//! PARTIAL  boot kmem_cache (stack): nodes from the kmem_cache_node cache
//!          bootstrap(kmem_cache), bootstrap(kmem_cache_node): each copied into an object of
//!          the kmem_cache cache, CPU slabs flushed, slab->slab_cache re-pointed
//! UP       kmalloc-8 … kmalloc-8k created (96 after 64, 192 after 128)
//! FULL     (no sysfs here)
//! ```

use crate::cache::{calculate_alignment, kmem_cache_open, KmemCache, ARCH_SLAB_MINALIGN};
use crate::fastpath::slab_alloc_node;
use crate::freeptr::get_freepointer;
use crate::merge::{list_add, release_cache};
use crate::node::{init_kmem_cache_node, slab_of, KmemCacheNode};
use crate::slowpath::{flush_all, free_slab, new_slab, slab_nid};
use crate::{SlabState, Slub, NUMA_NO_NODE};
use common::list::ListHead;
use common::sizes::slub as kmalloc_sizes;
use common::{CacheName, Gfp, Page, SlabCounters, SlabError, SlabFlags};
use core::mem::MaybeUninit;
use core::sync::atomic::Ordering;

/// `early_kmem_cache_node_alloc(node)`: while `slab_state == DOWN`, the `kmem_cache_node` cache
/// (`s`) makes a slab on `node` and takes its first object as that node's structure.
pub(crate) fn early_kmem_cache_node_alloc(
    _sl: &Slub,
    s: &KmemCache,
    node: usize,
) -> Option<*mut KmemCacheNode> {
    let slab = new_slab(s, Gfp::THISNODE, node)?;
    debug_assert_eq!(slab_nid(s, slab), node);
    // SAFETY: the slab is fresh and unpublished.
    let p = unsafe { &*slab };
    let n = p.freelist_counters.lo(Ordering::Relaxed);
    let mut c = SlabCounters::unpack(p.freelist_counters.hi(Ordering::Relaxed));
    p.freelist_counters
        .set_lo(get_freepointer(s, n), Ordering::Relaxed);
    c.inuse = 1;
    c.frozen = false;
    p.freelist_counters.set_hi(c.pack(), Ordering::Release);
    let n = n as *mut KmemCacheNode;
    // SAFETY: the first object of a kmem_cache_node slab, sized for a KmemCacheNode.
    unsafe { init_kmem_cache_node(n, node) };
    // SAFETY: just initialised; nobody else sees it yet.
    let nr = unsafe { &*n };
    nr.inc_slabs_node(c.objects as usize);
    // __add_partial (the lock is free; take it for form).
    let g = nr.lock();
    nr.add_partial(&g, slab, false);
    drop(g);
    Some(n)
}

/// `create_boot_cache`: opens a cache in place, unmergeable (`refcount = -1`).
///
/// # Safety
/// As `kmem_cache_open`.
unsafe fn create_boot_cache(
    sl: &Slub,
    s: *mut KmemCache,
    name: &str,
    size: usize,
    flags: SlabFlags,
) -> Result<(), SlabError> {
    let mut align = ARCH_SLAB_MINALIGN;
    if size.is_power_of_two() {
        align = align.max(size);
    }
    let align = calculate_alignment(flags, align, size);
    let name = CacheName::new(name)?;
    // SAFETY: forwarded.
    unsafe { kmem_cache_open(sl, s, name, size, align, flags, None)? };
    // SAFETY: just opened.
    unsafe { (*s).refcount.store(-1, Ordering::Relaxed) };
    Ok(())
}

/// `bootstrap(static_cache)`: moves a boot cache into an object of the `kmem_cache` cache.
///
/// # Safety
/// `static_cache` is an opened boot cache; afterwards it is moved-from and must not be dropped.
unsafe fn bootstrap(sl: &Slub, static_cache: *mut KmemCache) -> Result<*mut KmemCache, SlabError> {
    // SAFETY: kmem_cache (boot or real) is open.
    let kc = unsafe { &*sl.kmem_cache };
    let obj = slab_alloc_node(sl, kc, Gfp::ZERO, NUMA_NO_NODE).ok_or(SlabError::NoMemory)?;
    let s = obj.as_ptr().cast::<KmemCache>();
    // SAFETY: memcpy of the whole structure into a fresh object; the source is not used again.
    unsafe { core::ptr::copy_nonoverlapping(static_cache, s, 1) };
    // SAFETY: now a valid KmemCache.
    let sr = unsafe { &*s };
    // The boot thread may have run on several CPUs: flush them all (the kernel flushes its one
    // boot CPU).
    flush_all(sr);
    for node in 0..sr.nr_nodes {
        let n = sr.get_node(node);
        let g = n.lock();
        // SAFETY: list_lock held for the walk.
        for link in unsafe { ListHead::iter(g.partial()) } {
            // SAFETY: slabs on the list are ours.
            let slab = unsafe { &*slab_of(link) };
            slab.slab_cache.store(s as usize, Ordering::Relaxed);
        }
    }
    Ok(s)
}

/// Re-points the slab holding `obj` to `cache` (full slabs are on no list for `bootstrap` to
/// find; the boot caches' live objects are all known, so fix their slabs directly).
fn fix_slab_cache(sl: &Slub, obj: usize, cache: *mut KmemCache) {
    if let Some(page) = sl.provider.virt_to_head_page(obj) {
        // SAFETY: the descriptor of a slab of a boot cache.
        unsafe { page.as_ref() }
            .slab_cache
            .store(cache as usize, Ordering::Relaxed);
    }
}

/// `kmem_cache_init`. On failure everything taken is given back.
pub(crate) fn kmem_cache_init(sl: &mut Slub) -> Result<(), SlabError> {
    let mut boot_kmem_cache_node = MaybeUninit::<KmemCache>::uninit();
    let mut boot_kmem_cache = MaybeUninit::<KmemCache>::uninit();
    let r = kmem_cache_init_inner(
        sl,
        boot_kmem_cache_node.as_mut_ptr(),
        boot_kmem_cache.as_mut_ptr(),
    );
    if r.is_err() {
        // The boot structures may still live in this frame: tear down now, not in Drop.
        teardown(sl);
    }
    r
}

fn kmem_cache_init_inner(
    sl: &mut Slub,
    boot_node: *mut KmemCache,
    boot_cache: *mut KmemCache,
) -> Result<(), SlabError> {
    sl.kmem_cache_node = boot_node;
    // SAFETY: boot_node is uninitialised stack memory of this frame's caller.
    if let Err(e) = unsafe {
        create_boot_cache(
            sl,
            boot_node,
            "kmem_cache_node",
            core::mem::size_of::<KmemCacheNode>(),
            SlabFlags::HWCACHE_ALIGN,
        )
    } {
        sl.kmem_cache_node = core::ptr::null_mut();
        return Err(e);
    }
    sl.set_state(SlabState::Partial);
    sl.kmem_cache = boot_cache;
    // SAFETY: as above.
    if let Err(e) = unsafe {
        create_boot_cache(
            sl,
            boot_cache,
            "kmem_cache",
            core::mem::size_of::<KmemCache>(),
            SlabFlags::HWCACHE_ALIGN,
        )
    } {
        sl.kmem_cache = core::ptr::null_mut();
        return Err(e);
    }
    // SAFETY: both boot caches are open; each is moved-from after its bootstrap.
    sl.kmem_cache = unsafe { bootstrap(sl, boot_cache)? };
    // SAFETY: as above.
    sl.kmem_cache_node = unsafe { bootstrap(sl, boot_node)? };
    {
        let mut list = sl.slab_mutex.lock();
        list_add(&mut list, sl.kmem_cache_node);
        list_add(&mut list, sl.kmem_cache);
    }
    // Fix the owners of every slab holding a boot object.
    for &cache in &[sl.kmem_cache, sl.kmem_cache_node] {
        fix_slab_cache(sl, cache as usize, sl.kmem_cache);
        // SAFETY: live caches.
        let c = unsafe { &*cache };
        for node in 0..c.nr_nodes {
            fix_slab_cache(
                sl,
                c.node[node].load(Ordering::Relaxed) as usize,
                sl.kmem_cache_node,
            );
        }
    }
    create_kmalloc_caches(sl)?;
    sl.set_state(SlabState::Up);
    // 7.0's kmalloc caches get their sheaves once all kmalloc caches exist.
    crate::sheaf::bootstrap_kmalloc_sheaves(sl)?;
    sl.set_state(SlabState::Full);
    Ok(())
}

/// `create_kmalloc_caches`: `kmalloc-8` … `kmalloc-8k` in the kernel's order (96 right after
/// 64, 192 right after 128), mergeable (`refcount = 1`).
fn create_kmalloc_caches(sl: &mut Slub) -> Result<(), SlabError> {
    for pos in 0..kmalloc_sizes::NR {
        let size = kmalloc_sizes::SIZES[pos];
        // SAFETY: the kmem_cache cache is up.
        let kc = unsafe { &*sl.kmem_cache };
        let obj = slab_alloc_node(sl, kc, Gfp::ZERO, NUMA_NO_NODE).ok_or(SlabError::NoMemory)?;
        let s = obj.as_ptr().cast::<KmemCache>();
        let name = kmalloc_sizes::NAMES[pos];
        // SAFETY: a fresh kmem_cache object.
        let opened = unsafe { create_boot_cache(sl, s, name, size, SlabFlags::KMALLOC) };
        if let Err(e) = opened {
            let r = crate::kmalloc::kmem_cache_free_internal(sl, kc, s as usize);
            debug_assert!(r.is_ok());
            return Err(e);
        }
        // SAFETY: opened above.
        unsafe { (*s).refcount.store(1, Ordering::Relaxed) };
        let mut list = sl.slab_mutex.lock();
        list_add(&mut list, s);
        drop(list);
        sl.kmalloc_caches[pos] = s;
    }
    Ok(())
}

/// Gives every page of the instance back: ordinary caches first (their slabs, nodes, per-CPU
/// memory, `kmem_cache` objects), then the two boot caches, whose structures live in their own
/// slabs. Slabs that are full of leaked objects are on no list and cannot be found (as in the
/// kernel without a full list); they stay with the provider.
pub(crate) fn teardown(sl: &mut Slub) {
    let head = {
        let mut list = sl.slab_mutex.lock();
        core::mem::replace(&mut list.head, core::ptr::null_mut())
    };
    // Sheaves live in kmalloc caches, so every cache gives its sheaves back before
    // any cache is released.
    let mut p = head;
    while !p.is_null() {
        // SAFETY: caches of this instance, unused from now on.
        let c = unsafe { &*p };
        crate::sheaf::free_cache_sheaves(sl, c);
        p = c.next.load(Ordering::Relaxed);
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: caches of this instance, unused from now on.
        let next = unsafe { (*p).next.load(Ordering::Relaxed) };
        if p != sl.kmem_cache && p != sl.kmem_cache_node {
            // SAFETY: off the list, nobody uses the instance any more.
            unsafe { release_cache(sl, p, true) };
        }
        p = next;
    }
    sl.kmalloc_caches = [core::ptr::null_mut(); kmalloc_sizes::NR];
    // The boot caches: copy both structures out, gather all their slabs, then free.
    let kc = sl.kmem_cache;
    let kcn = sl.kmem_cache_node;
    sl.kmem_cache = core::ptr::null_mut();
    sl.kmem_cache_node = core::ptr::null_mut();
    let mut chain: *mut Page = core::ptr::null_mut();
    let mut copies: [MaybeUninit<KmemCache>; 2] = [MaybeUninit::uninit(), MaybeUninit::uninit()];
    let mut nr = 0;
    for &c in &[kc, kcn] {
        if c.is_null() {
            continue;
        }
        // SAFETY: a live cache structure; it is read out before any of its slabs is freed.
        let cr = unsafe { &*c };
        flush_all(cr);
        copies[nr].write(
            // SAFETY: moved out; the original memory is freed below without a drop.
            unsafe { core::ptr::read(c) },
        );
        nr += 1;
    }
    for copy in &copies[..nr] {
        // SAFETY: written above.
        let cr = unsafe { copy.assume_init_ref() };
        for node in 0..cr.nr_nodes {
            let n = cr.node[node].load(Ordering::Relaxed);
            if n.is_null() {
                continue;
            }
            // SAFETY: node structures are still live (no slab freed yet).
            let n = unsafe { &*n };
            let g = n.lock();
            // SAFETY: list_lock held; entries are unlinked one by one into our chain.
            for link in unsafe { ListHead::iter(g.partial()) } {
                let slab = slab_of(link);
                n.remove_partial(&g, slab);
                // SAFETY: the slab is ours now; `private` links the chain.
                unsafe { core::ptr::addr_of_mut!((*slab).private).write(chain as usize) };
                chain = slab;
            }
        }
    }
    while !chain.is_null() {
        let slab = chain;
        // SAFETY: a descriptor of our chain.
        chain = unsafe { (*slab).private } as *mut Page;
        // SAFETY: every object of these slabs belongs to the instance being torn down.
        let cr = unsafe { copies[0].assume_init_ref() };
        // SAFETY: as above.
        unsafe { free_slab(cr, slab) };
    }
    for copy in &mut copies[..nr] {
        // SAFETY: written above and dropped once.
        unsafe { copy.assume_init_drop() };
    }
}
