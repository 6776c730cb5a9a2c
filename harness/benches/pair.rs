//! The issues' benchmark targets, side by side in one run: an alloc+free pair of 64 B and 256 B
//! through the cache API (`kmem_cache_alloc`/`kmem_cache_free` of a dedicated cache) for
//! slab-classic and SLUB, against mimalloc and glibc `malloc`/`free` of the same size, on one
//! thread pinned to the first allowed CPU. Read the ratios, not the absolute times.
//!
//! `cargo bench -p harness --bench pair`

use common::api::{SlabAllocator, SlabFlags};
use common::{Gfp, PageProvider, ProviderConfig, Topology};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

fn provider() -> PageProvider {
    PageProvider::new(&ProviderConfig::small(Topology::from_sysfs().unwrap(), 256)).unwrap()
}

fn cache_pair<A: SlabAllocator>(c: &mut Criterion, name: &str, a: &A, size: usize) {
    let h = a
        .kmem_cache_create(
            &format!("bench-{size}"),
            size,
            0,
            SlabFlags::HWCACHE_ALIGN,
            None,
        )
        .unwrap();
    c.bench_with_input(
        BenchmarkId::new(format!("pair{size}"), name),
        &size,
        |b, _| {
            b.iter(|| {
                let p = a.kmem_cache_alloc(h, Gfp::KERNEL).unwrap();
                // SAFETY: freed once, right after its allocation.
                unsafe { a.kmem_cache_free(h, black_box(p)).unwrap() };
            });
        },
    );
}

fn pairs(c: &mut Criterion) {
    if let Some(&cpu) = common::pin::allowed_cpus().first() {
        let _ = common::pin::pin_to_cpu(cpu);
    }
    for size in [64usize, 256] {
        let p = provider();
        let slab = slab_classic::Slab::new(&p, slab_classic::SlabSettings::default()).unwrap();
        cache_pair(c, "slab", &slab, size);
        let q = provider();
        let slub = slub::Slub::new(&q, slub::SlubSettings::default()).unwrap();
        cache_pair(c, "slub", &slub, size);
        let layout = Layout::from_size_align(size, 8).unwrap();
        c.bench_with_input(
            BenchmarkId::new(format!("pair{size}"), "mimalloc"),
            &size,
            |b, _| {
                b.iter(|| {
                    // SAFETY: non-zero size; freed once with the same layout.
                    unsafe {
                        let p = mimalloc::MiMalloc.alloc(layout);
                        mimalloc::MiMalloc.dealloc(black_box(p), layout);
                    }
                });
            },
        );
        c.bench_with_input(
            BenchmarkId::new(format!("pair{size}"), "glibc"),
            &size,
            |b, &s| {
                b.iter(|| {
                    // SAFETY: malloc/free of a fresh block, freed once.
                    unsafe {
                        let p = libc::malloc(s);
                        libc::free(black_box(p));
                    }
                });
            },
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = pairs
}
criterion_main!(benches);
