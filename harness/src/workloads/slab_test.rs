//! Lameter's `slab_test`, as the published tables use it (reference/kernel.md §3.1/§3.2):
//! per size, (A) N kmallocs timed, then (B) the N kfrees timed, (C) N alloc/free pairs — on one
//! CPU; (D) A+B and (E) C on all CPUs at once; (F) N objects allocated on each of all but one CPU
//! and all freed by the last one. Cycles per operation from the TSC, per CPU. Each timed round
//! follows an untimed one on the same instance, so page faults of fresh memory are not counted.

use super::{kmalloc_api, oom, validate, Ctx, Workload};
use crate::alloc::BenchAllocator;
use crate::placement::run_pinned;
use crate::record::Row;
use crate::tsc::rdtsc;
use common::Topology;
use std::sync::{Barrier, Mutex};

/// Runs every test for every size and repetition on fresh instances from `make`.
pub(crate) fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let n = ctx.cfg.ops;
    let cpus = &ctx.cfg.cpus;
    for rep in 0..ctx.cfg.reps {
        for &size in &ctx.cfg.sizes {
            let a = make(ctx.topo)?;
            let api = kmalloc_api(&a);
            // A, B, C on the first CPU.
            let single = run_pinned(&cpus[..1], ctx.topo, |w| {
                let mut v = vec![0usize; n];
                // One untimed round first, so the timed one runs on memory that is already
                // mapped, as the in-kernel test does on a running system (the kernel's pages
                // come from the buddy allocator, never from a page fault).
                let _ = alloc_free(&a, size, &mut v);
                w.barrier.wait();
                alloc_free(&a, size, &mut v)
            })?;
            let ((ca, cb, cc), err) = single.into_iter().next().expect("one worker");
            if let Some(e) = err {
                return Err(e);
            }
            for (phase, cyc) in [("A_alloc", ca), ("B_free", cb), ("C_pair", cc)] {
                let mut r = ctx.row(&a, api, Workload::SlabTest, phase);
                r.size = size;
                r.threads = 1;
                r.cpu = cpus[0] as i64;
                r.node = ctx.topo.cpu_to_node(cpus[0]) as i64;
                r.repetition = rep;
                rows.push(r.timed(n as u64, cyc, ctx.tsc_ghz));
            }
            if cpus.len() > 1 {
                // D and E: every CPU at once.
                let smp = run_pinned(cpus, ctx.topo, |w| {
                    let mut v = vec![0usize; n];
                    let _ = alloc_free(&a, size, &mut v);
                    w.barrier.wait();
                    (w.cpu, w.node, alloc_free(&a, size, &mut v))
                })?;
                for (cpu, node, ((ca, cb, cc), err)) in smp {
                    if let Some(e) = err {
                        return Err(e);
                    }
                    for (phase, cyc) in [("D_alloc", ca), ("D_free", cb), ("E_pair", cc)] {
                        let mut r = ctx.row(&a, api, Workload::SlabTest, phase);
                        r.size = size;
                        r.threads = cpus.len();
                        r.cpu = cpu as i64;
                        r.node = node as i64;
                        r.repetition = rep;
                        rows.push(r.timed(n as u64, cyc, ctx.tsc_ghz));
                    }
                }
                rows.extend(remote_free(ctx, &a, size, rep, n)?);
            }
            validate(&a, Workload::SlabTest)?;
            // Allocator statistics (SLUB's stat_items, SLAB's STATS), when enabled.
            for (name, value) in a.stats() {
                let mut r = ctx.row(&a, api, Workload::SlabTest, &format!("stat:{name}"));
                r.size = size;
                r.threads = cpus.len();
                r.repetition = rep;
                r.ops = value;
                r.note = "allocator counter summed over CPUs, whole size run".into();
                rows.push(r);
            }
            ctx.progress.inc(1);
        }
    }
    Ok(rows)
}

/// Tests A, B, C on the calling thread: cycles for N allocs, N frees, N pairs.
pub(crate) fn alloc_free<A: BenchAllocator>(
    a: &A,
    size: usize,
    v: &mut [usize],
) -> ((u64, u64, u64), Option<String>) {
    let t0 = rdtsc();
    for slot in v.iter_mut() {
        *slot = a.alloc(size) as usize;
    }
    let t1 = rdtsc();
    let failed = v.contains(&0);
    for &p in v.iter() {
        if p != 0 {
            // SAFETY: p came from a.alloc and is freed once.
            unsafe { a.free(p as *mut u8) };
        }
    }
    let t2 = rdtsc();
    let mut null = false;
    for _ in 0..v.len() {
        let p = a.alloc(size);
        null |= p.is_null();
        if !p.is_null() {
            // SAFETY: freed once, right after its allocation.
            unsafe { a.free(std::hint::black_box(p)) };
        }
    }
    let t3 = rdtsc();
    let err = (failed || null).then(|| oom(a.name(), size));
    ((t1 - t0, t2 - t1, t3 - t2), err)
}

/// Test F: `n` objects allocated on each CPU but the last, all freed by the last.
pub(crate) fn remote_free<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    a: &A,
    size: usize,
    rep: usize,
    n: usize,
) -> Result<Vec<Row>, String> {
    let cpus = &ctx.cfg.cpus;
    let producers = cpus.len() - 1;
    let handoff = Barrier::new(cpus.len());
    let slots: Mutex<Vec<Vec<usize>>> = Mutex::new(Vec::new());
    let res = run_pinned(cpus, ctx.topo, |w| {
        if w.index < producers {
            let mut v = vec![0usize; n];
            w.barrier.wait();
            let t0 = rdtsc();
            for s in &mut v {
                *s = a.alloc(size) as usize;
            }
            let c = rdtsc() - t0;
            let ok = !v.contains(&0);
            slots.lock().expect("slots").push(v);
            handoff.wait();
            (w.cpu, w.node, "F_alloc", n, c, ok)
        } else {
            w.barrier.wait();
            handoff.wait();
            let all = std::mem::take(&mut *slots.lock().expect("slots"));
            let total: usize = all.iter().map(Vec::len).sum();
            let t0 = rdtsc();
            for v in &all {
                for &p in v {
                    if p != 0 {
                        // SAFETY: allocated by a producer, freed once here.
                        unsafe { a.free(p as *mut u8) };
                    }
                }
            }
            let c = rdtsc() - t0;
            drop(all);
            (w.cpu, w.node, "F_remote_free", total, c, true)
        }
    })?;
    let api = kmalloc_api(a);
    let mut rows = Vec::new();
    for (cpu, node, phase, ops, cyc, ok) in res {
        if !ok {
            return Err(oom(a.name(), size));
        }
        let mut r = ctx.row(a, api, Workload::SlabTest, phase);
        r.size = size;
        r.threads = cpus.len();
        r.cpu = cpu as i64;
        r.node = node as i64;
        r.repetition = rep;
        rows.push(r.timed(ops as u64, cyc, ctx.tsc_ghz));
    }
    Ok(rows)
}
