//! alloc+free pair of 64 B objects on one pinned thread (slab-classic through the cache API and
//! through kmalloc, glibc malloc through `std::alloc::System`), interleaved rounds so all
//! allocators see the same machine state; and the memory ratio of 1 M live 64 B objects
//! (provider bytes ÷ live bytes); plus the same pair on a debug cache (red zone, poison, user
//! word: the separate debug path). Prints the numbers; asserts nothing.

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slab_classic::{Slab, SlabSettings};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 2_000_000;
const ROUNDS: usize = 15;

fn ns_per_pair(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e9 / N as f64
}

/// N alloc+free pairs through the cache API, in a function of its own so that the code the
/// compiler makes of the inlined fast paths does not depend on the rest of `main`.
#[inline(never)]
fn cache_pairs(s: &Slab, c: common::CacheHandle) {
    for _ in 0..N {
        let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        black_box(o);
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let cpu = common::pin::allowed_cpus()[0];
    let _ = common::pin::pin_to_cpu(cpu);
    let p = PageProvider::new(&ProviderConfig::new(Topology::detect().unwrap())).unwrap();
    let s = Slab::new(&p, SlabSettings::default()).unwrap();
    let c = s
        .kmem_cache_create("bench-64", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    let dbg = s
        .kmem_cache_create(
            "bench-64-debug",
            64,
            0,
            SlabFlags::RED_ZONE | SlabFlags::POISON | SlabFlags::STORE_USER,
            None,
        )
        .unwrap();
    if std::env::args().any(|a| a == "--only-cache") {
        // For `perf stat`: only the kmem_cache pair, ROUNDS × N times.
        for _ in 0..ROUNDS {
            cache_pairs(&s, c);
        }
        return;
    }
    let l = Layout::from_size_align(64, 8).unwrap();
    let (mut cache, mut kmalloc, mut glibc) = (f64::MAX, f64::MAX, f64::MAX);
    let mut debug = f64::MAX;
    for _ in 0..ROUNDS {
        cache = cache.min(ns_per_pair(|| cache_pairs(&s, c)));
        kmalloc = kmalloc.min(ns_per_pair(|| {
            for _ in 0..N {
                let o = s.kmalloc(64, Gfp::KERNEL).unwrap();
                black_box(o);
                // SAFETY: freed once.
                unsafe { s.kfree(o.as_ptr()) }.unwrap();
            }
        }));
        debug = debug.min(ns_per_pair(|| {
            for _ in 0..N {
                let o = s.kmem_cache_alloc(dbg, Gfp::KERNEL).unwrap();
                black_box(o);
                // SAFETY: freed once.
                unsafe { s.kmem_cache_free(dbg, o) }.unwrap();
            }
        }));
        glibc = glibc.min(ns_per_pair(|| {
            for _ in 0..N {
                // SAFETY: allocated and freed with the same layout.
                unsafe {
                    let o = System.alloc(l);
                    black_box(o);
                    System.dealloc(o, l);
                }
            }
        }));
    }
    println!("alloc+free pair, 64 B, best of {ROUNDS} rounds of {N}:");
    println!("  slab-classic kmem_cache_alloc/free {cache:6.2} ns");
    println!("  slab-classic kmalloc/kfree         {kmalloc:6.2} ns");
    println!("  slab-classic debug cache (Z+P+U)   {debug:6.2} ns");
    println!(
        "  glibc malloc/free                  {glibc:6.2} ns   (slab/glibc {:.2})",
        cache / glibc
    );

    s.shrink_all();
    let before = p.stats().pages_in_use;
    let objs: Vec<_> = (0..1_000_000)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    let pages = p.stats().pages_in_use - before;
    println!(
        "1 M live 64 B objects: {pages} pages, provider bytes / live bytes = {:.4}",
        (pages * 4096) as f64 / 64e6
    );
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
}
