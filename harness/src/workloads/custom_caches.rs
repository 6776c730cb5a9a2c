//! Custom caches: `kmem_cache_create` of kernel-typical objects — dentry-like 192 B,
//! skbuff-like 256 B, inode-like 704 B, a 4 KiB buffer — used in a mixed pattern: every CPU
//! allocates from all four (weighted 4:3:2:1), keeps a window of live objects, frees the oldest
//! itself or (one in four) hands it to the next CPU to free. Also a single-CPU alloc/free pair per
//! cache.

use super::{oom, validate, Ctx, Rng, Workload};
use crate::alloc::{BenchAllocator, BenchCache};
use crate::placement::run_pinned;
use crate::record::Row;
use crate::tsc::rdtsc;
use common::Topology;
use std::collections::VecDeque;
use std::sync::Mutex;

/// The caches: (name, object size, weight).
pub(crate) const CACHES: [(&str, usize, usize); 4] = [
    ("dentry", 192, 4),
    ("skbuff_head_cache", 256, 3),
    ("inode_cache", 704, 2),
    ("buffer-4k", 4096, 1),
];

const WINDOW: usize = 512;

/// Runs the pairs and the mixed pattern for each repetition.
pub(crate) fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let cpus = &ctx.cfg.cpus;
    for rep in 0..ctx.cfg.reps {
        let a = make(ctx.topo)?;
        let caches: Vec<BenchCache> = CACHES
            .iter()
            .map(|(n, s, _)| a.create_cache(n, *s, false))
            .collect::<Result<_, _>>()?;
        let api = match caches[0] {
            BenchCache::Slab(..) => "cache",
            BenchCache::Size(_) => "malloc",
        };
        // Single-CPU pairs per cache.
        let n = ctx.cfg.ops;
        let pairs = run_pinned(&cpus[..1], ctx.topo, |w| {
            w.barrier.wait();
            caches
                .iter()
                .map(|&c| {
                    let t0 = rdtsc();
                    let mut ok = true;
                    for _ in 0..n {
                        let p = a.cache_alloc(c);
                        ok &= !p.is_null();
                        if !p.is_null() {
                            // SAFETY: freed once, right after allocation.
                            unsafe { a.cache_free(c, std::hint::black_box(p)) };
                        }
                    }
                    (ok, rdtsc() - t0)
                })
                .collect::<Vec<_>>()
        })?;
        for (i, (ok, cyc)) in pairs[0].iter().enumerate() {
            if !ok {
                return Err(oom(a.name(), CACHES[i].1));
            }
            let mut r = ctx.row(&a, api, Workload::CustomCaches, "pair");
            r.size = CACHES[i].1;
            r.threads = 1;
            r.cpu = cpus[0] as i64;
            r.node = ctx.topo.cpu_to_node(cpus[0]) as i64;
            r.repetition = rep;
            r.note = CACHES[i].0.to_string();
            rows.push(r.timed(n as u64, *cyc, ctx.tsc_ghz));
        }
        // Mixed pattern on 1 … all CPUs.
        for t in 1..=cpus.len() {
            let inboxes: Vec<Mutex<Vec<(usize, usize)>>> =
                (0..t).map(|_| Mutex::new(Vec::new())).collect();
            let ops = ctx.cfg.ops * 4;
            let res = run_pinned(&cpus[..t], ctx.topo, |w| {
                w.barrier.wait();
                mixed(&a, &caches, &inboxes, w.index, ops, ctx.cfg.seed)
            })?;
            // Whatever is still in the inboxes is freed after the timed part.
            for inbox in &inboxes {
                for (ci, p) in inbox.lock().expect("inbox").drain(..) {
                    // SAFETY: handed over once, freed once.
                    unsafe { a.cache_free(caches[ci], p as *mut u8) };
                }
            }
            for (i, (ok, cyc)) in res.into_iter().enumerate() {
                if !ok {
                    return Err(oom(a.name(), 0));
                }
                let mut r = ctx.row(&a, api, Workload::CustomCaches, "mixed");
                r.threads = t;
                r.cpu = cpus[i] as i64;
                r.node = ctx.topo.cpu_to_node(cpus[i]) as i64;
                r.repetition = rep;
                r.note = "alloc+free per op; weights 4:3:2:1; 1/4 freed remotely".into();
                rows.push(r.timed(ops as u64, cyc, ctx.tsc_ghz));
            }
        }
        for c in caches {
            a.destroy_cache(c)?;
        }
        validate(&a, Workload::CustomCaches)?;
        ctx.progress.inc(1);
    }
    Ok(rows)
}

fn mixed<A: BenchAllocator>(
    a: &A,
    caches: &[BenchCache],
    inboxes: &[Mutex<Vec<(usize, usize)>>],
    me: usize,
    ops: usize,
    seed: u64,
) -> (bool, u64) {
    let mut rng = Rng::new(seed ^ (me as u64 + 1));
    let mut window: VecDeque<(usize, usize)> = VecDeque::with_capacity(WINDOW + 1);
    let mut outgoing: Vec<(usize, usize)> = Vec::with_capacity(64);
    let mut incoming: Vec<(usize, usize)> = Vec::with_capacity(1024);
    let total_weight: usize = CACHES.iter().map(|c| c.2).sum();
    let next = (me + 1) % inboxes.len();
    let mut ok = true;
    let t0 = rdtsc();
    for i in 0..ops {
        let mut pick = rng.below(total_weight);
        let mut ci = 0;
        while pick >= CACHES[ci].2 {
            pick -= CACHES[ci].2;
            ci += 1;
        }
        let p = a.cache_alloc(caches[ci]);
        if p.is_null() {
            ok = false;
            break;
        }
        // SAFETY: fresh object of at least 192 bytes.
        unsafe { p.cast::<u64>().write(i as u64) };
        window.push_back((ci, p as usize));
        if window.len() > WINDOW {
            let (oc, op) = window.pop_front().expect("non-empty");
            if inboxes.len() > 1 && rng.below(4) == 0 {
                outgoing.push((oc, op));
                if outgoing.len() == outgoing.capacity() {
                    inboxes[next].lock().expect("inbox").append(&mut outgoing);
                }
            } else {
                // SAFETY: ours, freed once.
                unsafe { a.cache_free(caches[oc], op as *mut u8) };
            }
        }
        if i % 64 == 63 {
            std::mem::swap(&mut *inboxes[me].lock().expect("inbox"), &mut incoming);
            for (oc, op) in incoming.drain(..) {
                // SAFETY: handed to us once by a neighbour, freed once.
                unsafe { a.cache_free(caches[oc], op as *mut u8) };
            }
        }
    }
    for (oc, op) in window.drain(..).chain(outgoing.drain(..)) {
        // SAFETY: ours, freed once.
        unsafe { a.cache_free(caches[oc], op as *mut u8) };
    }
    (ok, rdtsc() - t0)
}
