//! Times the alloc+free pair through the cache API on pinned threads: SLUB with the rseq fast
//! path and with the `lock cmpxchg16b` one, at 64 and 256 B, against the system allocator
//! (glibc malloc) and the floor of two `lock cmpxchg16b`; then 2 threads on 2 CPUs against 1.
//! Not a benchmark suite (the harness is, and compares mimalloc/jemalloc too); a quick check:
//! `cargo run --release -p slub --example slub_fastpath_pair`.

use common::{Gfp, PageProvider, ProviderConfig, SlabAllocator, SlabFlags, Topology};
use slub::{FastPath, Slub, SlubSettings};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Instant;

const N: usize = 200_000;

/// This thread's CPU time in ns (`CLOCK_THREAD_CPUTIME_ID`): the machine is shared, and time
/// spent descheduled must not count.
fn thread_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Best of 31 runs, in thread CPU ns per iteration.
fn best(mut f: impl FnMut(), iters: usize) -> f64 {
    (0..31)
        .map(|_| {
            let t = thread_ns();
            f();
            (thread_ns() - t) as f64 / iters as f64
        })
        .fold(f64::MAX, f64::min)
}

fn slub_pair(s: &Slub, c: common::CacheHandle) -> f64 {
    best(
        || {
            for _ in 0..N {
                let o = s.kmem_cache_alloc(c, Gfp::KERNEL).expect("alloc");
                black_box(o);
                // SAFETY: just allocated, freed once.
                unsafe { s.kmem_cache_free(c, o) }.expect("free");
            }
        },
        N,
    )
}

fn system_pair(size: usize) -> f64 {
    let l = Layout::from_size_align(size, 8).expect("layout");
    best(
        || {
            for _ in 0..N {
                // SAFETY: non-zero layout, freed with the same layout.
                unsafe {
                    let o = System.alloc(l);
                    black_box(o);
                    System.dealloc(o, l);
                }
            }
        },
        N,
    )
}

/// Pairs per second of `threads` threads, thread i pinned to CPU i, same work per thread.
fn slub_threads(s: &Slub, c: common::CacheHandle, threads: usize) -> f64 {
    let t = Instant::now();
    std::thread::scope(|sc| {
        for i in 0..threads {
            sc.spawn(move || {
                let _ = common::pin::pin_to_cpu(i);
                for _ in 0..20 * N {
                    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).expect("alloc");
                    black_box(o);
                    // SAFETY: just allocated, freed once.
                    unsafe { s.kmem_cache_free(c, o) }.expect("free");
                }
            });
        }
    });
    (threads * 20 * N) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let _ = common::pin::pin_to_cpu(0);
    let t = Topology::detect().expect("topology");
    let p = PageProvider::new(&ProviderConfig::new(t)).expect("provider");
    let mk = |f| {
        Slub::new(
            &p,
            SlubSettings {
                fastpath: f,
                ..SlubSettings::default()
            },
        )
        .expect("slub")
    };
    let (rs, cx) = (mk(FastPath::Rseq), mk(FastPath::Cmpxchg));
    println!(
        "rseq registration {:?}; modes: {} / {}",
        common::rseq::registration(),
        rs.fastpath().name(),
        cx.fastpath().name()
    );
    if let Some(mode) = std::env::args().nth(1) {
        // `slub_fastpath_pair rseq|cmpxchg`: only that mode's 64 B pair loop, for perf.
        let s = if mode == "rseq" { &rs } else { &cx };
        let c = s
            .kmem_cache_create("prof64", 64, 0, SlabFlags::NO_MERGE, None)
            .expect("cache");
        println!("{mode} 64 B pair: {:.2} ns", slub_pair(s, c));
        return;
    }
    let d = common::dword::DoubleWord::new(0, 0);
    let floor = best(
        || {
            for i in 0..N {
                let (a, b) = d.load_pair();
                black_box(d.cmpxchg((a, b), (i, b + 1)));
                let (a, b) = d.load_pair();
                black_box(d.cmpxchg((a, b), (a, b + 1)));
            }
        },
        N,
    );
    let rfloor = common::rseq::this_thread().map_or(f64::NAN, |t| {
        let pair = common::dword::DoubleWord::new(0, 0);
        let obj = Box::leak(Box::new([0usize; 8])).as_mut_ptr() as usize;
        let link = common::rseq::Link {
            offset: 0,
            key: None,
        };
        best(
            || {
                let mut tid = pair.hi(std::sync::atomic::Ordering::Relaxed);
                for _ in 0..N {
                    let cpu = t.cpu();
                    // SAFETY: obj is ours (leaked), pushed then popped.
                    while unsafe { t.pair_push(cpu, &pair, tid, tid + 1, obj, obj, link) }.is_err()
                    {
                        tid = pair.hi(std::sync::atomic::Ordering::Relaxed);
                    }
                    tid += 1;
                    // SAFETY: the list holds only obj.
                    while unsafe { t.pair_pop(t.cpu(), &pair, tid, tid + 1, link) }.is_err() {
                        tid = pair.hi(std::sync::atomic::Ordering::Relaxed);
                    }
                    tid += 1;
                }
            },
            N,
        )
    });
    println!("two lock cmpxchg16b: {floor:.2} ns; rseq pair_push + pair_pop: {rfloor:.2} ns");
    let cpus = common::sys::nprocs_conf();
    for size in [64usize, 256] {
        let name = format!("pair{size}");
        let cr = rs
            .kmem_cache_create(&name, size, 0, SlabFlags::NO_MERGE, None)
            .expect("cache");
        let cc = cx
            .kmem_cache_create(&name, size, 0, SlabFlags::NO_MERGE, None)
            .expect("cache");
        let a0 = common::rseq::abort_count();
        let r = slub_pair(&rs, cr);
        let aborts = common::rseq::abort_count() - a0;
        let c = slub_pair(&cx, cc);
        let sys = system_pair(size);
        println!(
            "{size} B pair, 1 pinned thread, ns: slub rseq {r:.2}, slub cmpxchg {c:.2}, system malloc {sys:.2}; rseq/cmpxchg {:.2}, rseq/system {:.2} ({aborts} aborts)",
            r / c,
            r / sys
        );
        if cpus >= 2 {
            for (mode, s, h) in [("rseq", &rs, cr), ("cmpxchg", &cx, cc)] {
                let one = slub_threads(s, h, 1);
                let two = slub_threads(s, h, 2);
                println!(
                    "{size} B pairs/s, {mode}: 1 thread {:.1} M, 2 threads on 2 CPUs {:.1} M, scaling {:.2}x",
                    one / 1e6,
                    two / 1e6,
                    two / one
                );
            }
        }
    }
}
