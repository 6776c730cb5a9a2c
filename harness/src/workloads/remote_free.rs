//! Remote frees, the netperf/hackbench shape that separated SLAB from SLUB: a producer CPU
//! allocates objects and passes them in batches to a consumer CPU that frees them. Run with the
//! two CPUs on the same node and on different (fake, if need be) nodes; throughput by size.
//!
//! Batches travel through two bounded channels (full and empty batch buffers recycled), so the
//! harness allocates nothing in the timed loop.

use super::{kmalloc_api, oom, validate, Ctx, Workload};
use crate::alloc::BenchAllocator;
use crate::placement::run_pinned;
use crate::record::Row;
use crate::tsc::rdtsc;
use common::Topology;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

const BATCH: usize = 256;
const BUFFERS: usize = 8;

/// Sizes the workload uses (64 B … 4 KiB, as the issue asks), limited to those requested.
pub(crate) fn sizes(requested: &[usize]) -> Vec<usize> {
    let v: Vec<usize> = requested
        .iter()
        .copied()
        .filter(|s| (64..=4096).contains(s))
        .collect();
    if v.is_empty() {
        vec![64, 256, 1024, 4096]
    } else {
        v
    }
}

/// The placements to measure: (label, topology, producer cpu, consumer cpu).
pub(crate) fn placements(ctx: &Ctx<'_>) -> Vec<(&'static str, Topology, usize, usize)> {
    let cpus = &ctx.cfg.cpus;
    let mut out = Vec::new();
    if cpus.len() < 2 {
        return out;
    }
    let t = ctx.topo;
    let same = cpus
        .iter()
        .flat_map(|&p| cpus.iter().map(move |&c| (p, c)))
        .find(|&(p, c)| p != c && t.cpu_to_node(p) == t.cpu_to_node(c));
    let cross = cpus
        .iter()
        .flat_map(|&p| cpus.iter().map(move |&c| (p, c)))
        .find(|&(p, c)| t.cpu_to_node(p) != t.cpu_to_node(c));
    match (same, cross) {
        (Some((p, c)), Some((q, d))) => {
            out.push(("same_node", t.clone(), p, c));
            out.push(("cross_node", t.clone(), q, d));
        }
        (Some((p, c)), None) => {
            out.push(("same_node", t.clone(), p, c));
            // One node only: split the machine into two fake nodes so the pair straddles them.
            if let Ok(f) = t.with_fake_numa(2.max(t.nr_real_nodes())) {
                if f.cpu_to_node(p) != f.cpu_to_node(c) {
                    out.push(("cross_node", f, p, c));
                }
            }
        }
        (None, Some((q, d))) => {
            if let Ok(single) = Topology::uniform(1, t.nr_cpu_ids().max(1)) {
                out.push(("same_node", single, q, d));
            }
            out.push(("cross_node", t.clone(), q, d));
        }
        (None, None) => {}
    }
    out
}

/// Runs every placement × size × repetition.
pub(crate) fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let total = ctx.cfg.ops * 10;
    for (label, topo, p, c) in placements(ctx) {
        for rep in 0..ctx.cfg.reps {
            for &size in &sizes(&ctx.cfg.sizes) {
                let a = make(&topo)?;
                let (full_tx, full_rx) = sync_channel::<Vec<usize>>(BUFFERS);
                let (empty_tx, empty_rx) = sync_channel::<Vec<usize>>(BUFFERS);
                for _ in 0..BUFFERS {
                    empty_tx.send(Vec::with_capacity(BATCH)).expect("channel");
                }
                let full_rx = Mutex::new(Some(full_rx));
                let empty_rx = Mutex::new(Some(empty_rx));
                let full_tx = Mutex::new(Some(full_tx));
                let empty_tx = Mutex::new(Some(empty_tx));
                let res = run_pinned(&[p, c], &topo, |w| {
                    if w.index == 0 {
                        let tx = full_tx.lock().expect("tx").take().expect("once");
                        let rx = empty_rx.lock().expect("rx").take().expect("once");
                        w.barrier.wait();
                        produce(&a, size, total, &tx, &rx)
                    } else {
                        let rx = full_rx.lock().expect("rx").take().expect("once");
                        let tx = empty_tx.lock().expect("tx").take().expect("once");
                        w.barrier.wait();
                        consume(&a, &rx, &tx)
                    }
                })?;
                let (ok, prod_cycles) = res[0];
                let (_, cons_cycles) = res[1];
                if !ok {
                    return Err(oom(a.name(), size));
                }
                let cycles = prod_cycles.max(cons_cycles);
                let mut r = ctx.row(&a, kmalloc_api(&a), Workload::RemoteFree, label);
                r.size = size;
                r.threads = 2;
                r.cpu = p as i64;
                r.node = topo.cpu_to_node(p) as i64;
                r.repetition = rep;
                r.note = format!(
                    "producer cpu {p} node {} -> consumer cpu {c} node {}",
                    topo.cpu_to_node(p),
                    topo.cpu_to_node(c)
                );
                rows.push(r.timed(total as u64, cycles, ctx.tsc_ghz));
                validate(&a, Workload::RemoteFree)?;
                ctx.progress.inc(1);
            }
        }
    }
    Ok(rows)
}

fn produce<A: BenchAllocator>(
    a: &A,
    size: usize,
    total: usize,
    tx: &SyncSender<Vec<usize>>,
    rx: &Receiver<Vec<usize>>,
) -> (bool, u64) {
    let t0 = rdtsc();
    let mut left = total;
    let mut ok = true;
    while left > 0 {
        let mut buf = rx.recv().expect("empty buffer");
        buf.clear();
        for _ in 0..BATCH.min(left) {
            let p = a.alloc(size);
            if p.is_null() {
                ok = false;
                break;
            }
            // Touch the object as a real producer fills its buffer.
            // SAFETY: p is a fresh object of at least `size` >= 8 bytes.
            unsafe { p.cast::<u64>().write(size as u64) };
            buf.push(p as usize);
        }
        left -= BATCH.min(left);
        tx.send(buf).expect("full buffer");
        if !ok {
            break;
        }
    }
    (ok, rdtsc() - t0)
}

fn consume<A: BenchAllocator>(
    a: &A,
    rx: &Receiver<Vec<usize>>,
    tx: &SyncSender<Vec<usize>>,
) -> (bool, u64) {
    let t0 = rdtsc();
    while let Ok(mut buf) = rx.recv() {
        for &p in &buf {
            // SAFETY: allocated by the producer, passed here once, freed once.
            unsafe { a.free(p as *mut u8) };
        }
        buf.clear();
        // The producer may have finished and dropped its receiver: then just stop recycling.
        let _ = tx.send(buf);
    }
    (true, rdtsc() - t0)
}
