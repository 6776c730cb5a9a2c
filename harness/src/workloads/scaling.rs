//! Scaling: alloc/free pairs (batches of 16 allocations then 16 frees, so the per-CPU caches
//! are exercised beyond a single LIFO slot) with 1 … all CPUs, the same total work split among
//! them; throughput = total operations ÷ the slowest thread's time.

use super::{kmalloc_api, oom, validate, Ctx, Workload};
use crate::alloc::BenchAllocator;
use crate::placement::run_pinned;
use crate::record::Row;
use crate::tsc::rdtsc;
use common::Topology;

const BURST: usize = 16;

/// Sizes used.
pub(crate) fn sizes(requested: &[usize]) -> Vec<usize> {
    let v: Vec<usize> = [64usize, 256]
        .into_iter()
        .filter(|s| requested.contains(s))
        .collect();
    if v.is_empty() {
        vec![requested.first().copied().unwrap_or(64)]
    } else {
        v
    }
}

/// Runs each thread count × size × repetition.
pub(crate) fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let total = ctx.cfg.ops * 20;
    for rep in 0..ctx.cfg.reps {
        for &size in &sizes(&ctx.cfg.sizes) {
            for t in 1..=ctx.cfg.cpus.len() {
                let a = make(ctx.topo)?;
                let per = total / t;
                let res = run_pinned(&ctx.cfg.cpus[..t], ctx.topo, |w| {
                    let mut burst = [0usize; BURST];
                    w.barrier.wait();
                    let t0 = rdtsc();
                    let mut ok = true;
                    for _ in 0..per / BURST {
                        for b in &mut burst {
                            *b = std::hint::black_box(a.alloc(size)) as usize;
                        }
                        for &b in &burst {
                            if b == 0 {
                                ok = false;
                            } else {
                                // SAFETY: allocated just above, freed once.
                                unsafe { a.free(b as *mut u8) };
                            }
                        }
                    }
                    (ok, rdtsc() - t0)
                })?;
                if res.iter().any(|r| !r.0) {
                    return Err(oom(a.name(), size));
                }
                let slowest = res.iter().map(|r| r.1).max().unwrap_or(0);
                let mut r = ctx.row(&a, kmalloc_api(&a), Workload::Scaling, "pairs");
                r.size = size;
                r.threads = t;
                r.repetition = rep;
                let done = (per / BURST * BURST * t) as u64;
                let mut r = r.timed(done, slowest, ctx.tsc_ghz);
                r.note = "ops = alloc+free pairs, all threads; time = slowest thread".into();
                rows.push(r);
                validate(&a, Workload::Scaling)?;
            }
            ctx.progress.inc(1);
        }
    }
    Ok(rows)
}
