//! The debug-build lock depth (`common::sync`): a heap allocation while an allocator lock is held
//! aborts with a report, whether it reaches the system allocator through `LockCheckedAlloc` (this
//! binary's global allocator) or a slab allocator through `GlobalSlab`; and the checkers of a
//! live allocator (`validate`, slabinfo) run their callbacks and format their errors unlocked.

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::sync::{lock_depth, ChainMutex, RawSpinLock, SpinLock, LOCKDEP};
use common::testing::{is_child, run_child, skip};
use common::{GlobalSlab, PageProvider, ProviderConfig, SlabAllocator, Topology};
use core::alloc::{GlobalAlloc, Layout};
use slub::{Slub, SlubSettings};
use util::*;

/// Runs the child role of `test` and checks it died of SIGABRT with the lockdep report naming
/// `site`.
fn expect_lockdep_abort(test: &str, site: &str) {
    if !LOCKDEP {
        skip(test, "lockdep", "a release build keeps no lock depth");
        return;
    }
    let out = run_child(test, &[], &[]);
    assert_lockdep_abort(test, &out, Some(site));
}

#[test]
fn depth_counts_every_lock_kind() {
    let base = lock_depth();
    let raw = RawSpinLock::new();
    let spin = SpinLock::new(0u32);
    let chain = ChainMutex::new();
    raw.lock();
    {
        let _g = spin.lock();
        let _c = chain.lock();
        assert!(spin.try_lock().is_none());
        assert!(!raw.try_lock());
        if LOCKDEP {
            assert_eq!(lock_depth(), base + 3, "a failed try_lock counts nothing");
        }
    }
    if LOCKDEP {
        assert_eq!(lock_depth(), base + 1);
    }
    raw.unlock();
    assert_eq!(lock_depth(), base);
    assert!(raw.try_lock());
    raw.unlock();
    assert_eq!(lock_depth(), 0);
}

#[test]
fn allocating_under_a_spinlock_aborts() {
    const TEST: &str = "allocating_under_a_spinlock_aborts";
    if is_child(TEST) {
        let l = SpinLock::new(());
        let _g = l.lock();
        let v = std::hint::black_box(vec![1u8; 100]);
        drop(v);
        unreachable!("the allocation above must abort");
    }
    expect_lockdep_abort(TEST, "LockCheckedAlloc::alloc");
}

fn boot() -> Option<Slub> {
    let t = Topology::uniform(1, 2).ok()?;
    let mut cfg = ProviderConfig::small(t, 16);
    cfg.bind = false;
    Slub::new(&PageProvider::new(&cfg).ok()?, SlubSettings::default()).ok()
}

/// Not this binary's global allocator: called directly, as the process's would be.
static ON_SLUB: GlobalSlab<Slub> = GlobalSlab::new(boot);

/// The child role of `global_slab_asserts_no_lock_is_held`.
fn global_slab_under_a_lock() -> ! {
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a valid layout; the block is freed below.
    let p = unsafe { ON_SLUB.alloc(layout) };
    assert!(!p.is_null(), "GlobalSlab works with no lock held");
    // SAFETY: p came from ON_SLUB.alloc with this layout.
    unsafe { ON_SLUB.dealloc(p, layout) };
    let raw = RawSpinLock::new();
    raw.lock();
    // SAFETY: a valid layout.
    let q = unsafe { ON_SLUB.alloc(layout) };
    std::hint::black_box(q);
    unreachable!("GlobalSlab::alloc under a lock must abort");
}

#[test]
fn global_slab_asserts_no_lock_is_held() {
    const TEST: &str = "global_slab_asserts_no_lock_is_held";
    if is_child(TEST) {
        global_slab_under_a_lock();
    }
    expect_lockdep_abort(TEST, "GlobalSlab::alloc");
}

/// The slabinfo callback runs with no lock held, so it may allocate (it would abort here if
/// it ran under `slab_mutex`); more caches than one stack batch are all shown once.
#[test]
fn slabinfo_callback_runs_unlocked_over_many_batches() {
    let p = provider(1, 64);
    let s = slub(&p);
    let before = s.slabinfo().len();
    let mut hs = Vec::new();
    for i in 0..40 {
        let name = format!("batch-{i}");
        hs.push(
            s.kmem_cache_create(&name, 40 + i, 0, common::SlabFlags::NO_MERGE, None)
                .unwrap(),
        );
    }
    let mut names = Vec::new();
    s.for_each_slabinfo(&mut |r| {
        assert_eq!(lock_depth(), 0);
        names.push(r.name.as_str().to_string());
    });
    assert_eq!(names.len(), before + 40);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), before + 40, "no row twice");
    s.validate().unwrap();
}
