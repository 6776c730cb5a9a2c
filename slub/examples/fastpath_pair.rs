//! Times the 64-byte alloc+free pair through the cache API on one pinned thread against the
//! system allocator (glibc malloc) and against the floor of two `lock cmpxchg16b`, which the
//! user-space fast path pays per pair. Not a benchmark suite (the harness is); a quick check:
//! `cargo run --release -p slub --example fastpath_pair`.

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

fn best(mut f: impl FnMut(), iters: usize) -> f64 {
    (0..7)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let _ = common::pin::pin_to_cpu(0);
    let t = Topology::detect().expect("topology");
    let p = PageProvider::new(&ProviderConfig::new(t)).expect("provider");
    let s = slub::Slub::new(&p, slub::SlubSettings::default()).expect("slub");
    let c = s
        .kmem_cache_create("pair64", 64, 0, SlabFlags::NO_MERGE, None)
        .expect("cache");
    let n = 5_000_000;
    let slub = best(
        || {
            for _ in 0..n {
                let o = s.kmem_cache_alloc(c, Gfp::KERNEL).expect("alloc");
                black_box(o);
                // SAFETY: just allocated, freed once.
                unsafe { s.kmem_cache_free(c, o) }.expect("free");
            }
        },
        n,
    );
    let l = Layout::from_size_align(64, 8).expect("layout");
    let sys = best(
        || {
            for _ in 0..n {
                // SAFETY: non-zero layout, freed with the same layout.
                unsafe {
                    let o = System.alloc(l);
                    black_box(o);
                    System.dealloc(o, l);
                }
            }
        },
        n,
    );
    let d = common::dword::DoubleWord::new(0, 0);
    let floor = best(
        || {
            for i in 0..n {
                let (a, b) = d.load_pair();
                black_box(d.cmpxchg((a, b), (i, b + 1)));
                let (a, b) = d.load_pair();
                black_box(d.cmpxchg((a, b), (a, b + 1)));
            }
        },
        n,
    );
    println!("64 B alloc+free pair, ns: slub {slub:.2}, system malloc {sys:.2}, two lock cmpxchg16b {floor:.2}");
    println!("ratio slub / system: {:.2}", slub / sys);
}
