//! Memory overhead: a dedicated cache's working set grown to N live objects with seeded random
//! frees, then 90 % freed at random, then `kmem_cache_shrink`-ed, then emptied and destroyed.
//! Overhead = bytes held ÷ bytes live. Slab allocators report the page provider's exact count
//! (their metadata included); baselines report their own count of memory held from the OS
//! (glibc `mallinfo2`; mimalloc: process RSS) as a delta over the workload — a different
//! measure, marked so in `held_measure`.
//! Objects the allocator still counts as in use though the workload freed them (SLAB's per-CPU,
//! shared and alien arrays; SLUB's CPU slabs) are reported as `queued_bytes`.

use super::{validate, Ctx, Rng, Workload};
use crate::alloc::{BenchAllocator, BenchCache};
use crate::placement::run_pinned;
use crate::record::Row;
use common::Topology;

/// Samples taken while growing.
const SAMPLES: usize = 20;

/// Object sizes measured (the first requested size ≤ 4 KiB, default 64 B).
pub fn sizes(ctx: &Ctx<'_>) -> Vec<usize> {
    ctx.cfg.memory_sizes.clone()
}

/// Runs the working-set life cycle for each size.
pub fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &size in &sizes(ctx) {
        let a = make(ctx.topo)?;
        let cpu = ctx.cfg.cpus[0];
        let out = run_pinned(&[cpu], ctx.topo, |w| {
            w.barrier.wait();
            life_cycle(ctx, &a, size)
        })?;
        let mut r = out.into_iter().next().expect("one worker")?;
        for row in &mut r {
            row.cpu = cpu as i64;
            row.node = ctx.topo.cpu_to_node(cpu) as i64;
        }
        rows.extend(r);
        validate(&a, Workload::Memory)?;
        ctx.progress.inc(1);
    }
    Ok(rows)
}

fn life_cycle<A: BenchAllocator>(ctx: &Ctx<'_>, a: &A, size: usize) -> Result<Vec<Row>, String> {
    let n = ctx.cfg.live_objects;
    // The bookkeeping vector is made (and touched) before the baseline is read, so an RSS
    // measure does not count it.
    let mut live: Vec<usize> = vec![0; n];
    live.clear();
    let cache = a.create_cache(&format!("memtest-{size}"), size, true)?;
    // Baselines give back what they kept from earlier workloads first (malloc_trim,
    // mi_collect), so the delta below starts from as clean a state as they allow.
    a.shrink(cache);
    let (base, measure) = a.held_bytes();
    // Provider counts are this instance's alone; the baselines' counts are process-wide, so
    // their delta over the workload is taken (memory they kept from earlier workloads and
    // reuse here makes that delta an underestimate: the summary says so).
    let base = if measure == crate::alloc::HeldMeasure::Provider {
        0
    } else {
        base
    };
    let mut rng = Rng::new(ctx.cfg.seed ^ size as u64);
    let mut rows = Vec::new();
    let api = match cache {
        BenchCache::Slab(..) => "cache",
        BenchCache::Size(_) => "malloc",
    };
    let sample = |phase: &str, live_n: usize, step: usize| -> Row {
        let (held, m) = a.held_bytes();
        let mut r = ctx.row(a, api, Workload::Memory, phase);
        r.size = size;
        r.threads = 1;
        r.ops = step as u64;
        if let Some((active, _stride)) = a.cache_active_objects(cache) {
            r.queued_bytes = (active.saturating_sub(live_n) * size) as u64;
        }
        r.note = format!("live_objects={live_n}");
        r.memory(
            (live_n * size) as u64,
            held.saturating_sub(base) as u64,
            m.name(),
        )
    };
    let every = (n / SAMPLES).max(1);
    let mut step = 0usize;
    // Grow: 3 of 4 operations allocate, 1 frees a random live object.
    while live.len() < n {
        step += 1;
        if live.is_empty() || rng.below(4) != 0 {
            let p = a.cache_alloc(cache);
            if p.is_null() {
                return Err(super::oom(a.name(), size));
            }
            // SAFETY: a fresh object of `size` bytes: write its first and last byte as a user
            // would, so RSS-measured baselines really commit the memory.
            unsafe {
                p.write(1);
                p.add(size - 1).write(1);
            }
            live.push(p as usize);
            if live.len() % every == 0 {
                rows.push(sample("grow", live.len(), step));
            }
        } else {
            let i = rng.below(live.len());
            let p = live.swap_remove(i);
            // SAFETY: a live object of this cache, freed once.
            unsafe { a.cache_free(cache, p as *mut u8) };
        }
    }
    // Free 90 % at random.
    let keep = n / 10;
    while live.len() > keep {
        let i = rng.below(live.len());
        let p = live.swap_remove(i);
        // SAFETY: freed once.
        unsafe { a.cache_free(cache, p as *mut u8) };
    }
    rows.push(sample("freed90", live.len(), step));
    a.shrink(cache);
    rows.push(sample("shrunk", live.len(), step));
    for p in live.drain(..) {
        // SAFETY: freed once.
        unsafe { a.cache_free(cache, p as *mut u8) };
    }
    a.shrink(cache);
    rows.push(sample("empty", 0, step));
    a.destroy_cache(cache)?;
    rows.push(sample("destroyed", 0, step));
    for (i, r) in rows.iter_mut().enumerate() {
        r.repetition = 0;
        if r.phase == "grow" {
            r.note = format!("{} sample={i}", r.note);
        }
    }
    Ok(rows)
}
