//! The preload library builds its allocator inside the first `malloc`, so everything on that
//! path must stay off the heap: environment parsing, sysfs topology, the page provider and
//! `Slab::new` / `Slub::new` (with every setting the environment can choose). This binary's
//! global allocator counts allocations while a flag is up.

use common::{PageProvider, ProviderConfig, Topology};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct Counting;

static COUNT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Counting is per thread: the test harness's own threads allocate meanwhile. (A const
    /// initialiser without Drop: reading it never allocates.)
    static WATCH: Cell<bool> = const { Cell::new(false) };
}
/// COUNT is shared: tests that count take turns.
static TURN: Mutex<()> = Mutex::new(());

// SAFETY: forwards to System, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if WATCH.with(Cell::get) {
            COUNT.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Heap allocations made by `f` on this thread.
fn heap_allocs<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let _t = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    COUNT.store(0, Ordering::Relaxed);
    WATCH.with(|w| w.set(true));
    let v = f();
    WATCH.with(|w| w.set(false));
    (COUNT.load(Ordering::Relaxed), v)
}

fn provider(fake: usize) -> PageProvider {
    let mut t = Topology::from_sysfs().unwrap();
    if fake > 0 {
        t = t.with_fake_numa(fake).unwrap();
    }
    PageProvider::new(&ProviderConfig::small(t, 64)).unwrap()
}

#[test]
fn environment_topology_and_provider_without_heap() {
    let (n, cfg) = heap_allocs(slabworks_preload::config::from_env);
    assert_eq!(n, 0, "config::from_env allocated");
    assert!(cfg.is_ok());
    let (n, _) = heap_allocs(|| provider(2));
    assert_eq!(
        n, 0,
        "Topology::from_sysfs + fake NUMA + PageProvider::new allocated"
    );
}

#[test]
fn slab_new_without_heap() {
    for fake in [0, 2] {
        for settings in [
            slab_classic::SlabSettings::default(),
            slab_classic::SlabSettings {
                stats: true,
                tunables: Some(slab_classic::Tunables {
                    limit: 54,
                    batchcount: 27,
                    shared: 8,
                }),
                use_alien_caches: false,
                ..Default::default()
            },
        ] {
            let p = provider(fake);
            let (n, s) = heap_allocs(|| slab_classic::Slab::new(&p, settings));
            assert_eq!(
                n, 0,
                "Slab::new({settings:?}) on {fake} fake nodes allocated"
            );
            drop(s.unwrap());
        }
    }
}

#[test]
fn slub_new_without_heap() {
    for fake in [0, 2] {
        for opts in [
            "",
            "era=2.6.32 stats hardened slub_max_order=1 slab_nomerge",
        ] {
            let settings = slub::SlubSettings::from_boot_options(opts).unwrap();
            let p = provider(fake);
            let (n, s) = heap_allocs(|| slub::Slub::new(&p, settings));
            assert_eq!(n, 0, "Slub::new({opts:?}) on {fake} fake nodes allocated");
            drop(s.unwrap());
        }
    }
}
