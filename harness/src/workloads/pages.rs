//! The page provider against raw `mmap`/`munmap`: one pinned thread per CPU, each doing
//! alloc+free pairs of one order (node-local provider arena vs a fresh anonymous mapping), the
//! first byte touched as a user would. Reported per thread; pages per second = ops/s × 2^order.

use super::{Ctx, Workload};
use crate::placement::run_pinned;
use crate::record::Row;
use crate::tsc::rdtsc;
use common::page::Owner;
use common::{PageProvider, ProviderConfig, PAGE_SIZE};

/// Orders measured.
pub(crate) fn orders(quick: bool) -> Vec<usize> {
    if quick {
        vec![0, 3]
    } else {
        vec![0, 1, 2, 3, 4, 6, 8, 10]
    }
}

/// Runs provider and mmap for each order and repetition.
pub(crate) fn run(ctx: &Ctx<'_>) -> Result<Vec<Row>, String> {
    let provider = PageProvider::new(&ProviderConfig::small(ctx.topo.clone(), 256))
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    let cpus = &ctx.cfg.cpus;
    for rep in 0..ctx.cfg.reps {
        for order in orders(ctx.cfg.quick) {
            for kind in ["provider", "mmap"] {
                let n = if kind == "mmap" {
                    (ctx.cfg.ops / 10).max(100)
                } else {
                    ctx.cfg.ops * 2
                };
                let bytes = PAGE_SIZE << order;
                let res = run_pinned(cpus, ctx.topo, |w| {
                    w.barrier.wait();
                    let t0 = rdtsc();
                    for _ in 0..n {
                        if kind == "provider" {
                            let Some(pg) = provider.alloc_pages(w.node, order, Owner::Other) else {
                                return Err(format!("provider out of memory at order {order}"));
                            };
                            let a = provider.page_address(pg);
                            // SAFETY: our block: touch it, then free it once.
                            unsafe {
                                a.as_ptr().write_volatile(1);
                                provider.free_pages(pg, order).map_err(|e| e.to_string())?;
                            }
                        } else {
                            let a = common::sys::mmap_reserve(bytes)
                                .map_err(|e| format!("mmap failed: errno {e}"))?;
                            // SAFETY: our fresh mapping: touch it, then unmap it whole.
                            unsafe {
                                a.as_ptr().write_volatile(1);
                                common::sys::munmap(a, bytes);
                            }
                        }
                    }
                    Ok((w.cpu, w.node, rdtsc() - t0))
                })?;
                for r in res {
                    let (cpu, node, cyc) = r?;
                    let mut row = Row::new(ctx.meta);
                    row.allocator = kind.to_string();
                    row.api = "pages".into();
                    row.settings = if kind == "provider" {
                        format!("buddy, {} node arenas", provider.nr_nodes())
                    } else {
                        "mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)+munmap".into()
                    };
                    row.workload = Workload::Pages.name().into();
                    row.phase = format!("order{order}");
                    row.size = bytes;
                    row.threads = cpus.len();
                    row.cpu = cpu as i64;
                    row.node = node as i64;
                    row.repetition = rep;
                    let mut row = row.timed(n as u64, cyc, ctx.tsc_ghz);
                    row.note = format!(
                        "pages_per_s={:.0}",
                        row.ops_per_s * f64::from(1u32 << order)
                    );
                    rows.push(row);
                }
            }
            ctx.progress.inc(1);
        }
    }
    if provider.stats().pages_in_use != 0 {
        return Err("page provider leaked pages in the pages workload".into());
    }
    Ok(rows)
}
