//! Debug on under memory pressure and property tests over random
//! operation sequences against a model (item 7), with debug off and on.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::testing::{run_model, ModelOp};
use common::{CacheHandle, Gfp, SlabAllocator, SlabFlags};
use proptest::prelude::*;
use slab_classic::{Slab, SlabSettings};
use std::ptr::NonNull;

fn debug_settings() -> SlabSettings {
    SlabSettings {
        forced_debug: true,
        debug: SlabFlags::CONSISTENCY_CHECKS,
        ..SlabSettings::default()
    }
}

#[test]
fn debug_bootstrap_fails_cleanly_at_every_limit() {
    let f = util::footprint(debug_settings());
    let (_p, s) = util::bootstrap_fails_cleanly_below(debug_settings(), f, 2);
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0);
}

/// New slab (and off-slab descriptor) allocation fails; the array (fast path) and partial
/// slabs (refill) keep serving without new pages; everything works again when memory returns.
#[test]
fn debug_allocation_paths_under_oom() {
    let f = util::footprint(debug_settings());
    let p = util::limited_provider(64, f + 60);
    let s = Slab::new(&p, debug_settings()).unwrap();
    s.shrink_all();
    let baseline = p.stats().pages_in_use;
    // 3000 B objects: red zone + user word + poison, off-slab descriptors from size-N.
    let big = s
        .kmem_cache_create("oom-dbg-3000", 3000, 0, SlabFlags::NONE, None)
        .unwrap();
    let small = s
        .kmem_cache_create("oom-dbg-100", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let mut objs: Vec<(CacheHandle, NonNull<u8>)> = Vec::new();
    while let Some(o) = s.kmem_cache_alloc(big, Gfp::KERNEL) {
        util::fill(o.as_ptr(), 3000, objs.len() as u64);
        objs.push((big, o));
        assert!(objs.len() < 10_000);
    }
    while let Some(o) = s.kmem_cache_alloc(small, Gfp::KERNEL) {
        util::fill(o.as_ptr(), 100, objs.len() as u64);
        objs.push((small, o));
        assert!(objs.len() < 100_000);
    }
    assert!(
        s.kmem_cache_alloc(big, Gfp::KERNEL).is_none(),
        "new slab fails"
    );
    assert!(s.kmalloc(3000, Gfp::KERNEL).is_none() || s.kmalloc(70_000, Gfp::KERNEL).is_none());
    assert!(s.kmem_cache_alloc_node(small, Gfp::THISNODE, 0).is_none());
    s.validate().unwrap();
    let pages = p.stats().pages_in_use;
    // Free every other small object: the next ones come from the CPU array (fast path), then
    // from partial slabs (refill), with no page allocated.
    let mut freed = Vec::new();
    let mut i = 0;
    objs.retain(|&(c, o)| {
        i += 1;
        if c == small && i % 2 == 0 {
            freed.push(o);
            false
        } else {
            true
        }
    });
    let n = freed.len();
    assert!(n > 5, "{n}");
    for o in freed {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(small, o) }.unwrap();
    }
    for k in 0..n {
        let o = s
            .kmem_cache_alloc(small, Gfp::KERNEL)
            .expect("served from the array or a partial slab");
        util::fill(o.as_ptr(), 100, 1_000_000 + k as u64);
        objs.push((small, o));
    }
    assert_eq!(p.stats().pages_in_use, pages, "no new page");
    assert!(s.kmem_cache_alloc(small, Gfp::KERNEL).is_none());
    s.validate().unwrap();
    for (c, o) in objs.drain(..) {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    // Memory is back: the big cache grows again.
    let o = s
        .kmem_cache_alloc(big, Gfp::KERNEL)
        .expect("memory came back");
    // SAFETY: freed once; then both caches are empty.
    unsafe {
        s.kmem_cache_free(big, o).unwrap();
        s.kmem_cache_destroy(big).unwrap();
        s.kmem_cache_destroy(small).unwrap();
    }
    s.shrink_all();
    assert_eq!(p.stats().pages_in_use, baseline, "nothing leaked");
    s.validate().unwrap();
    assert_eq!(s.slab_errors(), 0, "no corruption reported under OOM");
}

fn op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (0usize..4).prop_map(ModelOp::Alloc),
        3 => (1usize..9000).prop_map(ModelOp::Kmalloc),
        4 => any::<usize>().prop_map(ModelOp::Free),
    ]
}

fn run(ops: &[ModelOp], debug: bool) -> Result<(), TestCaseError> {
    let p = util::provider(1, 32);
    let settings = if debug {
        SlabSettings {
            debug: SlabFlags::RED_ZONE
                | SlabFlags::POISON
                | SlabFlags::STORE_USER
                | SlabFlags::CONSISTENCY_CHECKS,
            ..SlabSettings::default()
        }
    } else {
        SlabSettings::default()
    };
    let s = Slab::new(&p, settings).unwrap();
    // After a shrink (arrays drained) a cache's active objects are its objects in use.
    let active = |s: &Slab, _, name: &str| {
        s.slabinfo()
            .into_iter()
            .find(|r| r.name.as_str() == name)
            .map_or(usize::MAX, |r| r.active_objs)
    };
    run_model(&s, ops, active).map_err(TestCaseError::fail)?;
    prop_assert_eq!(s.slab_errors(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_match_the_model(ops in prop::collection::vec(op(), 1..300), debug in any::<bool>()) {
        run(&ops, debug)?;
    }
}
