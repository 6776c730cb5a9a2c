//! The sheaves series' own microbenchmark, in shape (in the default sweep): on one pinned CPU, a
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
pub(crate) const BATCHES: [usize; 4] = [1, 10, 100, 1000];
/// Object size.
pub(crate) const SIZE: usize = 64;

/// Runs every batch size × order × repetition on the first CPU.
pub(crate) fn run<A: BenchAllocator>(
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

/// The series' published numbers (v7 cover letter; reference `sheaves.md` §7): % faster with
/// sheaves, (batch, in order, shuffled). Batch 1 has no shuffled figure.
pub(crate) const PUBLISHED: [(usize, f64, Option<f64>); 4] = [
    (1, 17.2, None),
    (10, 15.3, Some(12.6)),
    (100, 31.0, Some(28.6)),
    (1000, 30.2, Some(6.3)),
];

/// The `summary.md` section: ns per pair for every allocator, and ours beside theirs.
pub(crate) fn summary(rows: &[Row], allocs: &[String]) -> String {
    use crate::analysis::{aggregate, select};
    use std::fmt::Write;
    let mut s = String::new();
    let mut m = std::collections::BTreeMap::new();
    for batch in BATCHES {
        for order in ["in_order", "shuffled"] {
            let sel = select(rows, "sheaf_batch", &format!("batch{batch}_{order}"));
            for ((a, _), st) in aggregate(&sel, |_| Some(0usize), |r| r.ns_per_op) {
                m.insert((a, batch, order), st.med);
            }
        }
    }
    if m.is_empty() {
        return s;
    }
    let present: Vec<&String> = allocs
        .iter()
        .filter(|a| m.keys().any(|k| &k.0 == *a))
        .collect();
    let get = |a: &str, b: usize, o: &str| m.get(&(a.to_string(), b, o)).copied();
    let _ = writeln!(
        s,
        "## sheaf_batch: the sheaves series' benchmark (ns per alloc+free pair, lower is better)\n"
    );
    let _ = writeln!(
        s,
        "One pinned CPU, a {SIZE} B cache, objects allocated in batches then freed in order or in \
         a seeded shuffle; medians over repetitions.\n"
    );
    let _ = writeln!(
        s,
        "| batch | order | {} |",
        present
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---|---|{}", "---|".repeat(present.len()));
    for batch in BATCHES {
        for order in ["in_order", "shuffled"] {
            let cells: Vec<String> = present
                .iter()
                .map(|a| get(a, batch, order).map_or("–".into(), |v| format!("{v:.1}")))
                .collect();
            let _ = writeln!(s, "| {batch} | {order} | {} |", cells.join(" | "));
        }
    }
    let pct = |b: usize, o: &str, base: &str| -> Option<f64> {
        match (get("slub-sheaves", b, o), get(base, b, o)) {
            (Some(x), Some(y)) if y > 0.0 => Some((1.0 - x / y) * 100.0),
            _ => None,
        }
    };
    let f = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:+.1} %"));
    let _ = writeln!(
        s,
        "\n### Sheaves against no sheaves: theirs (published) beside ours (this run)\n"
    );
    let _ = writeln!(
        s,
        "**Theirs**: the series' v7 cover letter, an in-kernel microbenchmark on a Ryzen 7 5700, \
         Linux 6.18 with opt-in sheaves of capacity 32 against the same cache without sheaves, \
         \"faster by\" read as time saved per pair. **Ours**: this run, `slub-sheaves` (era 7.0, \
         capacity from `calculate_sheaf_capacity` for {SIZE} B) against `slub` (6.4: CPU slab, per-CPU partials, tid \
         fast path), time saved = 1 − ns(slub-sheaves) / ns(slub); positive = sheaves faster. \
         The last columns set sheaves against 2.6.32 SLAB's per-CPU arrays (the magazines \
         sheaves are compared with) the same way. User space on a shared VM: read directions \
         and rough sizes, not digits.\n"
    );
    let _ = writeln!(
        s,
        "| batch | order | theirs: sheaves vs none | ours: slub-sheaves vs slub | ours: slub-sheaves vs slab |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (b, ino, shuf) in PUBLISHED {
        for (order, theirs) in [("in_order", Some(ino)), ("shuffled", shuf)] {
            let _ = writeln!(
                s,
                "| {b} | {order} | {} | {} | {} |",
                theirs.map_or("– (not published)".to_string(), |v| format!("{v:+.1} %")),
                f(pct(b, order, "slub")),
                f(pct(b, order, "slab")),
            );
        }
    }
    let _ = writeln!(s);
    s
}
