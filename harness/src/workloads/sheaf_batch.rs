//! The sheaves series' own microbenchmark, in shape (issue 17; opt-in): on one pinned CPU, a
//! cache of 64-byte objects (`kmem_cache_create`, unmerged), objects allocated in batches of
//! 1, 10, 100 and 1000 and then freed in order or in a seeded shuffle; ns per alloc+free pair.
//! Compare `slub-sheaves` with `slub` (6.4) rows of the same run. The published numbers
//! (v7 cover letter, Ryzen 7 5700, 6.18 with `sheaf_capacity` 32 vs none): faster by 17.2,
//! 15.3, 31.0, 30.2 % in order and 12.6, 28.6, 6.3 % shuffled (batches 10, 100, 1000).
//! `cargo run --release -p slub --example sheaf_batch` runs the 6.18 capacity-32 variant too.

use super::{oom, validate, Ctx, Rng, Workload};
use crate::alloc::BenchAllocator;
use crate::placement::run_pinned;
use crate::record::Row;
use crate::tsc::rdtsc;
use common::Topology;

/// Batch sizes (the series').
pub const BATCHES: [usize; 4] = [1, 10, 100, 1000];
/// Object size.
pub const SIZE: usize = 64;

/// Runs every batch size × order × repetition on the first CPU.
pub fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let pairs = (ctx.cfg.ops * 20).max(BATCHES[BATCHES.len() - 1]);
    for rep in 0..ctx.cfg.reps {
        let a = make(ctx.topo)?;
        let c = a.create_cache("sheaf_batch", SIZE, true)?;
        for batch in BATCHES {
            for shuffled in [false, true] {
                let mut order: Vec<usize> = (0..batch).collect();
                if shuffled {
                    let mut rng = Rng::new(ctx.cfg.seed ^ batch as u64);
                    for i in (1..batch).rev() {
                        order.swap(i, rng.below(i + 1));
                    }
                }
                let rounds = pairs / batch;
                let res = run_pinned(&ctx.cfg.cpus[..1], ctx.topo, |w| {
                    let mut objs = vec![0usize; batch];
                    w.barrier.wait();
                    let t0 = rdtsc();
                    let mut ok = true;
                    for _ in 0..rounds {
                        for o in &mut objs {
                            *o = std::hint::black_box(a.cache_alloc(c)) as usize;
                        }
                        for &i in &order {
                            if objs[i] == 0 {
                                ok = false;
                            } else {
                                // SAFETY: allocated just above from c, freed once.
                                unsafe { a.cache_free(c, objs[i] as *mut u8) };
                            }
                        }
                    }
                    (ok, rdtsc() - t0)
                })?;
                if res.iter().any(|r| !r.0) {
                    return Err(oom(a.name(), SIZE));
                }
                let phase = format!(
                    "batch{batch}_{}",
                    if shuffled { "shuffled" } else { "in_order" }
                );
                let mut r = ctx.row(&a, "cache", Workload::SheafBatch, &phase);
                r.size = SIZE;
                r.threads = 1;
                r.repetition = rep;
                let mut r = r.timed((rounds * batch) as u64, res[0].1, ctx.tsc_ghz);
                r.note = "ops = alloc+free pairs on one pinned CPU".into();
                rows.push(r);
            }
        }
        a.destroy_cache(c)?;
        validate(&a, Workload::SheafBatch)?;
        ctx.progress.inc(1);
    }
    Ok(rows)
}
