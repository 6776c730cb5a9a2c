//! Property test (issue 7 item 7): random sequences of cache allocations, kmallocs (small and
//! `kmalloc_large`) and frees against a model (the set of live objects), with and without
//! `slub_debug=FZPU`: no two live objects overlap, alignment is kept, `ksize` is at least the
//! request, contents survive, and after a shrink each cache's `objects` attribute equals the
//! model's count; `validate()` is clean and no debug error is reported.

mod util;

use common::{CacheHandle, Gfp, SlabAllocator, SlabFlags};
use proptest::prelude::*;
use slub::{SlubDebug, SlubSettings};
use std::ptr::NonNull;

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Kmalloc(usize),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..4).prop_map(Op::Alloc),
        3 => prop_oneof![9 => 1usize..9000, 1 => 9000usize..40_000].prop_map(Op::Kmalloc),
        4 => any::<usize>().prop_map(Op::Free),
    ]
}

/// (name, size, align, flags): alignment and layout variety.
const CACHES: [(&str, usize, usize, SlabFlags); 4] = [
    ("prop-24", 24, 0, SlabFlags::NONE),
    ("prop-100-hw", 100, 0, SlabFlags::HWCACHE_ALIGN),
    ("prop-200-a64", 200, 64, SlabFlags::NONE),
    ("prop-1000", 1000, 0, SlabFlags::NONE),
];

struct Live {
    ptr: usize,
    len: usize,
    cache: Option<usize>,
    seed: usize,
}

fn run(ops: &[Op], debug: bool) -> Result<(), TestCaseError> {
    let p = util::provider(2, 32);
    let settings = SlubSettings {
        // Unmerged, so each cache's `objects` is its own.
        slab_nomerge: true,
        slub_debug: Some(if debug {
            SlubDebug::new(b"FZPU").unwrap()
        } else {
            SlubDebug::OFF
        }),
        ..SlubSettings::default()
    };
    let s = util::slub_with(&p, settings);
    let caches: Vec<CacheHandle> = CACHES
        .iter()
        .map(|&(n, sz, al, fl)| s.kmem_cache_create(n, sz, al, fl, None).unwrap())
        .collect();
    let mut live: Vec<Live> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let (o, len, cache) = match *op {
            Op::Alloc(i) => (
                s.kmem_cache_alloc(caches[i], Gfp::KERNEL),
                CACHES[i].1,
                Some(i),
            ),
            Op::Kmalloc(n) => (s.kmalloc(n, Gfp::KERNEL), n, None),
            Op::Free(k) => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(k % live.len());
                prop_assert!(
                    util::check(l.ptr as *mut u8, l.len, l.seed),
                    "contents kept"
                );
                let ptr = NonNull::new(l.ptr as *mut u8).unwrap();
                // SAFETY: a live object of the model, freed once.
                let r = unsafe {
                    match l.cache {
                        Some(i) => s.kmem_cache_free(caches[i], ptr),
                        None => s.kfree(ptr.as_ptr()),
                    }
                };
                prop_assert_eq!(r, Ok(()));
                continue;
            }
        };
        let o = o.expect("32 MiB per node is enough");
        let a = o.as_ptr() as usize;
        let align = match cache {
            Some(i) if CACHES[i].2 > 0 => CACHES[i].2,
            _ => 8,
        };
        prop_assert_eq!(a % align, 0, "alignment");
        // SAFETY: a live object of this instance.
        let ks = unsafe { s.ksize(o) }.unwrap();
        prop_assert!(ks >= len, "ksize {} < {}", ks, len);
        for l in &live {
            prop_assert!(a + len <= l.ptr || l.ptr + l.len <= a, "overlap");
        }
        let seed = step;
        util::fill(o, len, seed);
        live.push(Live {
            ptr: a,
            len,
            cache,
            seed,
        });
    }
    // Counts: after a shrink (CPU slabs flushed) each cache's objects in use are the model's.
    for (i, &c) in caches.iter().enumerate() {
        s.kmem_cache_shrink(c).unwrap();
        let want = live.iter().filter(|l| l.cache == Some(i)).count();
        prop_assert_eq!(s.cache_attrs(c).unwrap().objects, want, "{}", CACHES[i].0);
    }
    s.validate().map_err(TestCaseError::fail)?;
    for l in live.drain(..) {
        prop_assert!(util::check(l.ptr as *mut u8, l.len, l.seed));
        let ptr = NonNull::new(l.ptr as *mut u8).unwrap();
        // SAFETY: freed once.
        unsafe {
            match l.cache {
                Some(i) => s.kmem_cache_free(caches[i], ptr).unwrap(),
                None => s.kfree(ptr.as_ptr()).unwrap(),
            }
        }
    }
    for c in caches {
        // SAFETY: nothing live.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
    }
    s.validate().map_err(TestCaseError::fail)?;
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
