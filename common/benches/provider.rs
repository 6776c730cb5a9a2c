//! Page provider vs raw mmap/munmap: one alloc + free of order 0, 1 and 3, side by side in one
//! run (the ratio is what to read; absolute times on a shared VM are noise).

use common::page::Owner;
use common::{PageProvider, ProviderConfig, Topology, PAGE_SIZE};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::hint::black_box;
use std::ptr::NonNull;

fn provider_vs_mmap(c: &mut Criterion) {
    let topo = Topology::from_sysfs().expect("topology");
    let p = PageProvider::new(&ProviderConfig::small(topo, 256)).expect("provider");
    let mut g = c.benchmark_group("page_alloc_free");
    for order in [0usize, 1, 3] {
        let bytes = PAGE_SIZE << order;
        g.bench_with_input(BenchmarkId::new("provider", order), &order, |b, &order| {
            b.iter(|| {
                let pg = p.alloc_pages(0, order, Owner::Other).expect("page");
                let a = p.page_address(pg);
                // SAFETY: our block; touch the first byte as a user would, then free it once.
                unsafe {
                    a.as_ptr().write_volatile(1);
                    p.free_pages(black_box(pg), order).expect("free");
                }
            });
        });
        g.bench_with_input(BenchmarkId::new("mmap", order), &order, |b, _| {
            b.iter(|| {
                let a: NonNull<u8> = common::sys::mmap_reserve(bytes).expect("mmap");
                // SAFETY: our fresh mapping; touch it, then unmap it whole.
                unsafe {
                    a.as_ptr().write_volatile(1);
                    common::sys::munmap(black_box(a), bytes);
                }
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = provider_vs_mmap
}
criterion_main!(benches);
