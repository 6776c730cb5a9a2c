//! The fast-path measurement: the kmem_cache alloc+free pair of slab-classic in rseq and lock mode
//! at 64 and 256 B, and glibc malloc's pair, on one pinned thread; then two threads pinned to
//! two CPUs (each its own pairs) against one. Interleaved rounds, medians. Prints; asserts
//! nothing. `cargo run --release -p slab-classic --example slab_fastpath_pair`.

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slab_classic::{FastPath, Slab, SlabSettings};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 2_000_000;
const ROUNDS: usize = 11;

#[inline(never)]
fn cache_pairs(s: &Slab, c: common::CacheHandle) {
    for _ in 0..N {
        let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        black_box(o);
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
}

#[inline(never)]
fn malloc_pairs(size: usize) {
    let l = Layout::from_size_align(size, 8).unwrap();
    for _ in 0..N {
        // SAFETY: non-zero size; freed with the same layout.
        unsafe {
            let p = System.alloc(l);
            black_box(p);
            System.dealloc(p, l);
        }
    }
}

fn ns(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e9 / N as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // Both instances name their fast path explicitly, so `SLAB_FASTPATH` (which overrides
    // `Auto` only) does not change them.
    let cpus = common::pin::allowed_cpus();
    let _ = common::pin::pin_to_cpu(cpus[0]);
    let p = PageProvider::new(&ProviderConfig::new(Topology::detect().unwrap())).unwrap();
    let mk = |f| {
        Slab::new(
            &p,
            SlabSettings {
                fastpath: f,
                ..SlabSettings::default()
            },
        )
        .unwrap()
    };
    let (sr, sl) = (mk(FastPath::Rseq), mk(FastPath::Lock));
    println!("rseq instance: {}", sr.settings_summary());
    println!("lock instance: {}", sl.settings_summary());
    for size in [64usize, 256] {
        let cr = sr
            .kmem_cache_create(&format!("pair-{size}"), size, 0, SlabFlags::NONE, None)
            .unwrap();
        let cl = sl
            .kmem_cache_create(&format!("pair-{size}"), size, 0, SlabFlags::NONE, None)
            .unwrap();
        let (mut r, mut l, mut g) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            r.push(ns(|| cache_pairs(&sr, cr)));
            l.push(ns(|| cache_pairs(&sl, cl)));
            g.push(ns(|| malloc_pairs(size)));
        }
        let (r, l, g) = (median(r), median(l), median(g));
        println!(
            "{size:>4} B pair, 1 pinned thread: rseq {r:.2} ns  lock {l:.2} ns  glibc {g:.2} ns  (rseq/lock {:.2}, rseq/glibc {:.2})",
            r / l,
            r / g
        );
        if cpus.len() >= 2 {
            for (name, s, c) in [("rseq", &sr, cr), ("lock", &sl, cl)] {
                let mut one = Vec::new();
                let mut two = Vec::new();
                for _ in 0..5 {
                    one.push(ns(|| cache_pairs(s, c)));
                    let t = Instant::now();
                    std::thread::scope(|sc| {
                        for &cpu in &cpus[..2] {
                            sc.spawn(move || {
                                let _ = common::pin::pin_to_cpu(cpu);
                                cache_pairs(s, c);
                            });
                        }
                    });
                    two.push(t.elapsed().as_secs_f64() * 1e9 / N as f64);
                }
                let (o, t) = (median(one), median(two));
                // Two threads did 2N pairs in wall time t·N: throughput ratio = 2·o/t.
                println!(
                    "{size:>4} B {name}: 2 threads on 2 CPUs give {:.2}x one thread's pairs/s",
                    2.0 * o / t
                );
            }
        }
    }
    println!(
        "rseq aborts during the run: {}",
        common::rseq::abort_count()
    );
}
