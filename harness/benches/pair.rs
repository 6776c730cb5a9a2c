//! The issues' benchmark targets, side by side in one run: an alloc+free pair of 64 B and 256 B
//! through the cache API (`kmem_cache_alloc`/`kmem_cache_free` of a dedicated cache) for
//! slab-classic and SLUB in both fast-path modes (`slab` = rseq, `slab-lock`; `slub` = rseq,
//! `slub-cmpxchg`), against mimalloc, glibc `malloc`/`free` and (with `--features jemalloc`)
//! jemalloc of the same size, on one thread pinned to the first allowed CPU. Read the ratios,
//! not the absolute times.
//!
//! `cargo bench -p harness --bench pair [--features jemalloc]`

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
        for (name, fastpath) in [
            ("slab", slab_classic::FastPath::Rseq),
            ("slab-lock", slab_classic::FastPath::Lock),
        ] {
            let p = provider();
            let settings = slab_classic::SlabSettings {
                fastpath,
                ..Default::default()
            };
            let slab = slab_classic::Slab::new(&p, settings).unwrap();
            cache_pair(c, name, &slab, size);
        }
        for (name, fastpath) in [
            ("slub", slub::FastPath::Rseq),
            ("slub-cmpxchg", slub::FastPath::Cmpxchg),
        ] {
            let q = provider();
            let settings = slub::SlubSettings {
                fastpath,
                ..Default::default()
            };
            let slub = slub::Slub::new(&q, settings).unwrap();
            cache_pair(c, name, &slub, size);
        }
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
        #[cfg(feature = "jemalloc")]
        c.bench_with_input(
            BenchmarkId::new(format!("pair{size}"), "jemalloc"),
            &size,
            |b, &s| {
                b.iter(|| {
                    // SAFETY: jemalloc's own malloc/free of a fresh block, freed once.
                    unsafe {
                        let p = tikv_jemalloc_sys::malloc(s);
                        tikv_jemalloc_sys::free(black_box(p));
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
