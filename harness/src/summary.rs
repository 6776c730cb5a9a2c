//! `summary.md`: a table per workload, and our ratios beside the published kernel numbers of
//! reference/kernel.md §3 (same benchmark shape, different machine and decade: the ratios are
//! what can be compared, and the text says where they cannot).

use crate::analysis::{aggregate, allocators, select, Stat};
use crate::record::{Row, RunMeta};
use std::collections::BTreeMap;
use std::fmt::Write;

fn med(m: &BTreeMap<(String, usize), Stat>, a: &str, k: usize) -> Option<f64> {
    m.get(&(a.to_string(), k)).map(|s| s.med)
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// A published SLUB/SLAB comparison: what, where, the published cycles (SLUB, SLAB), and the
/// phase and size of ours to set beside it.
struct Published {
    what: &'static str,
    source: &'static str,
    slub: f64,
    slab: f64,
    phase: &'static str,
    size: usize,
}

const PUBLISHED: &[Published] = &[
    Published {
        what: "alloc+free pair, 256 B (fast path)",
        source: "Brouer 2016, i7-4790K (§3.3)",
        slub: 46.0,
        slab: 87.0,
        phase: "C_pair",
        size: 256,
    },
    Published {
        what: "Test C alloc/free, 8–4096 B",
        source: "Lameter 2007, 8p Xeon E5345 (§3.1), SLUB 2.6.24-rc1",
        slub: 151.0,
        slab: 141.0,
        phase: "C_pair",
        size: 64,
    },
    Published {
        what: "Test A kmalloc, 64 B",
        source: "Lameter 2007 (§3.1)",
        slub: 129.0,
        slab: 102.0,
        phase: "A_alloc",
        size: 64,
    },
    Published {
        what: "Test A kmalloc, 4096 B",
        source: "Lameter 2007 (§3.1)",
        slub: 342.0,
        slab: 1254.0,
        phase: "A_alloc",
        size: 4096,
    },
    Published {
        what: "Test B kfree, 64 B",
        source: "Lameter 2007 (§3.1)",
        slub: 182.0,
        slab: 121.0,
        phase: "B_free",
        size: 64,
    },
    Published {
        what: "Test B kfree, 4096 B",
        source: "Lameter 2007 (§3.1)",
        slub: 342.0,
        slab: 896.0,
        phase: "B_free",
        size: 4096,
    },
    Published {
        what: "Test D concurrent kmalloc, 64 B (8 CPUs there)",
        source: "Lameter 2007 (§3.1)",
        slub: 220.0,
        slab: 1680.0,
        phase: "D_alloc",
        size: 64,
    },
    Published {
        what: "Test F remote free, 64 B",
        source: "Lameter 2007 (§3.1)",
        slub: 2038.0,
        slab: 1619.0,
        phase: "F_remote_free",
        size: 64,
    },
    Published {
        what: "Test F remote free, 4096 B",
        source: "Lameter 2007 (§3.1)",
        slub: 5486.0,
        slab: 9188.0,
        phase: "F_remote_free",
        size: 4096,
    },
];

/// Writes the summary for `rows`.
pub(crate) fn render(rows: &[Row], meta: &RunMeta, command: &str) -> String {
    let mut s = String::new();
    let allocs: Vec<String> = allocators(rows)
        .into_iter()
        .filter(|a| a != "provider" && a != "mmap")
        .collect();
    let _ = writeln!(s, "# slabworks results\n");
    let _ = writeln!(s, "- command: `{command}`");
    let _ = writeln!(
        s,
        "- run `{}` at {} on `{}` ({}), kernel {}, commit `{}`",
        meta.run_id, meta.utc_time, meta.host, meta.cpu_model, meta.kernel, meta.git_commit
    );
    let _ = writeln!(
        s,
        "- {} CPU(s), {} real node(s){}, TSC {:.3} GHz",
        meta.cpus,
        meta.nodes_real,
        if meta.nodes_fake > 0 {
            format!(", {} fake nodes", meta.nodes_fake)
        } else {
            String::new()
        },
        meta.tsc_ghz
    );
    let _ = writeln!(
        s,
        "- {} rows; medians over repetitions, per-thread rows averaged first.\n",
        rows.len()
    );

    // slab_test tables.
    let phases = [
        "A_alloc",
        "B_free",
        "C_pair",
        "D_alloc",
        "D_free",
        "E_pair",
        "F_remote_free",
    ];
    let mut st: BTreeMap<&str, BTreeMap<(String, usize), Stat>> = BTreeMap::new();
    for ph in phases {
        let sel = select(rows, "slab_test", ph);
        if !sel.is_empty() {
            st.insert(ph, aggregate(&sel, |r| Some(r.size), |r| r.cycles_per_op));
        }
    }
    if !st.is_empty() {
        let _ = writeln!(s, "## slab_test (cycles per operation, lower is better)\n");
        for (ph, m) in &st {
            let sizes: std::collections::BTreeSet<usize> = m.keys().map(|k| k.1).collect();
            let _ = writeln!(s, "### {ph}\n");
            let _ = writeln!(s, "| size | {} |", allocs.join(" | "));
            let _ = writeln!(s, "|---|{}", "---|".repeat(allocs.len()));
            for size in sizes {
                let cells: Vec<String> =
                    allocs.iter().map(|a| fmt_opt(med(m, a, size), 0)).collect();
                let _ = writeln!(s, "| {size} | {} |", cells.join(" | "));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "## Published SLUB/SLAB ratios beside ours\n");
        let _ = writeln!(s, "Ratios < 1 mean SLUB is cheaper. The published runs were in-kernel on other CPUs (and D on 8 CPUs where we have {}); ours run in user space, where every per-CPU operation pays an atomic (cmpxchg16b for SLUB, a per-CPU lock for SLAB) that the kernel gets for free by disabling preemption.\n", meta.cpus);
        let _ = writeln!(s, "| comparison | published SLUB/SLAB | ours SLUB/SLAB | ours SLUB, SLAB cycles | source |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for p in PUBLISHED {
            let ours = st
                .get(p.phase)
                .map(|m| (med(m, "slub", p.size), med(m, "slab", p.size)));
            let (u, b) = ours.unwrap_or((None, None));
            let _ = writeln!(
                s,
                "| {} | {:.2} ({:.0}/{:.0}) | {} | {} / {} | {} |",
                p.what,
                p.slub / p.slab,
                p.slub,
                p.slab,
                fmt_opt(ratio(u, b), 2),
                fmt_opt(u, 0),
                fmt_opt(b, 0),
                p.source
            );
        }
        let _ = writeln!(s);
        if let Some(m) = st.get("C_pair") {
            let _ = writeln!(s, "### Pair cost against the baselines (C_pair)\n");
            let _ = writeln!(
                s,
                "| size | slub/slab | slub/mimalloc | slub/glibc | slab/mimalloc | slab/glibc |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            for size in [64usize, 256] {
                let g = |a: &str| med(m, a, size);
                let _ = writeln!(
                    s,
                    "| {size} | {} | {} | {} | {} | {} |",
                    fmt_opt(ratio(g("slub"), g("slab")), 2),
                    fmt_opt(ratio(g("slub"), g("mimalloc")), 2),
                    fmt_opt(ratio(g("slub"), g("system")), 2),
                    fmt_opt(ratio(g("slab"), g("mimalloc")), 2),
                    fmt_opt(ratio(g("slab"), g("system")), 2),
                );
            }
            let _ = writeln!(s);
        }
    }

    // scaling.
    let sel: Vec<&Row> = rows.iter().filter(|r| r.workload == "scaling").collect();
    if !sel.is_empty() {
        let m = aggregate(&sel, |r| Some((r.size, r.threads)), |r| r.ops_per_s / 1e6);
        let threads: std::collections::BTreeSet<usize> = m.keys().map(|k| k.1 .1).collect();
        let sizes: std::collections::BTreeSet<usize> = m.keys().map(|k| k.1 .0).collect();
        let _ = writeln!(
            s,
            "## scaling (M alloc+free pairs per second, higher is better)\n"
        );
        let _ = writeln!(s, "| size | threads | {} |", allocs.join(" | "));
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(allocs.len()));
        for &size in &sizes {
            for &t in &threads {
                let cells: Vec<String> = allocs
                    .iter()
                    .map(|a| fmt_opt(m.get(&(a.clone(), (size, t))).map(|x| x.med), 2))
                    .collect();
                let _ = writeln!(s, "| {size} | {t} | {} |", cells.join(" | "));
            }
        }
        if let (Some(&lo), Some(&hi)) = (threads.first(), threads.last()) {
            if hi > lo {
                let _ = writeln!(
                    s,
                    "\n{hi}-thread / {lo}-thread throughput (median of the per-repetition ratios, \
                     each pair measured back to back; [min–max] over repetitions):\n"
                );
                for &size in &sizes {
                    let pr = crate::analysis::paired_ratio(
                        &sel,
                        |r| Some((r.size, r.threads)),
                        |r| r.ops_per_s,
                        &(size, lo),
                        &(size, hi),
                    );
                    let cells: Vec<String> = allocs
                        .iter()
                        .map(|a| match pr.get(a) {
                            Some(st) => {
                                format!("{a} {:.2} [{:.2}–{:.2}]", st.med, st.min, st.max)
                            }
                            None => format!("{a} –"),
                        })
                        .collect();
                    let _ = writeln!(s, "- {size} B: {}", cells.join(", "));
                }
            }
        }
        let _ = writeln!(s);
    }

    // memory.
    let sel: Vec<&Row> = rows
        .iter()
        .filter(|r| r.workload == "memory" && !r.metric.starts_with("census:"))
        .collect();
    if !sel.is_empty() {
        let _ = writeln!(s, "## memory (bytes held / bytes live)\n");
        let _ = writeln!(s, "Each allocator and size in a fresh child process. `smaps_anon`: the kernel's count, growth of `Anonymous` in `/proc/self/smaps_rollup` since before the allocator was created — the column that compares every allocator. Beside it the allocator's own exact count where it has one: `provider` (slab allocators: page-provider bytes, metadata included), `mallinfo2` (glibc: arena + hblkhd growth).\n");
        if sel
            .iter()
            .any(|r| r.held_measure == "rss" || r.schema_version < 2)
        {
            let _ = writeln!(s, "These rows come from an older harness (CSV schema 1): measured in-process, baselines as process-wide deltas (`mallinfo2`, `rss`) that underestimate when earlier workloads left memory to reuse; `rss` figures are not comparable with the others.\n");
        }
        let _ = writeln!(s, "| allocator | size | measure | at full working set | held MiB | after 90% freed | after shrink | held after destroy (KiB) | queued KiB at full |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        let mut tol: Vec<String> = Vec::new();
        for a in &allocs {
            let mine: Vec<&&Row> = sel.iter().filter(|r| &r.allocator == a).collect();
            let sizes: std::collections::BTreeSet<usize> = mine.iter().map(|r| r.size).collect();
            let measures: std::collections::BTreeSet<&str> =
                mine.iter().map(|r| r.held_measure.as_str()).collect();
            for size in sizes {
                // smaps first: it is the comparable column.
                for m in measures.iter().rev() {
                    let of = |ph: &str| {
                        mine.iter()
                            .rfind(|r| r.size == size && r.phase == ph && r.held_measure == *m)
                            .copied()
                    };
                    let full = of("grow");
                    let f90 = of("freed90");
                    let sh = of("shrunk");
                    let de = of("destroyed");
                    let _ = writeln!(
                        s,
                        "| {a} | {size} | {m} | {} | {} | {} | {} | {} | {} |",
                        fmt_opt(full.map(|r| r.overhead), 3),
                        fmt_opt(full.map(|r| r.bytes_held as f64 / 1048576.0), 1),
                        fmt_opt(f90.map(|r| r.overhead), 3),
                        fmt_opt(sh.map(|r| r.overhead), 3),
                        fmt_opt(de.map(|r| r.bytes_held as f64 / 1024.0), 0),
                        fmt_opt(full.map(|r| r.queued_bytes as f64 / 1024.0), 1),
                    );
                }
                // smaps against the exact provider count, sample by sample.
                let pairs: Vec<(f64, f64)> = mine
                    .iter()
                    .filter(|r| r.size == size && r.held_measure == "provider" && r.phase == "grow")
                    .filter_map(|p| {
                        mine.iter()
                            .find(|k| {
                                k.size == size
                                    && k.held_measure == "smaps_anon"
                                    && k.phase == p.phase
                                    && k.ops == p.ops
                                    && k.bytes_live == p.bytes_live
                            })
                            .map(|k| (k.bytes_held as f64, p.bytes_held as f64))
                    })
                    .collect();
                if let Some(hi) = pairs.iter().map(|p| p.0 - p.1).reduce(f64::max) {
                    let lo = pairs.iter().map(|p| p.0 - p.1).fold(f64::MAX, f64::min);
                    let last = pairs.last().map_or(1.0, |p| p.0 / p.1.max(1.0));
                    tol.push(format!(
                        "{a} {size} B: smaps − provider {:.0}…{:.0} KiB over the {} growth samples; {last:.4}× at the full working set",
                        lo / 1024.0,
                        hi / 1024.0,
                        pairs.len()
                    ));
                }
            }
        }
        if !tol.is_empty() {
            let _ = writeln!(s, "\nThe kernel's count against the exact one while the working set grows (the tolerance of the smaps column; after frees the two part on purpose: the provider keeps free blocks mapped, so they stay resident). Most of the gap is the provider's `mem_map`, one 64 B page descriptor per 4 KiB page (1/64 = 1.6 % of the pages in use), which its count leaves out as the kernel's slabinfo leaves out `struct page`; the rest (≈ 170 KiB) is the child's own start-up pages touched after the baseline:\n");
            for t in tol {
                let _ = writeln!(s, "- {t}");
            }
        }
        let _ = writeln!(s);
    }

    s.push_str(&crate::workloads::memory::census_summary(rows, &allocs));

    // remote free.
    let mut any = false;
    for ph in ["same_node", "cross_node"] {
        let sel = select(rows, "remote_free", ph);
        if sel.is_empty() {
            continue;
        }
        if !any {
            let _ = writeln!(
                s,
                "## remote_free (M objects per second, producer -> consumer)\n"
            );
            any = true;
        }
        let m = aggregate(&sel, |r| Some(r.size), |r| r.ops_per_s / 1e6);
        let sizes: std::collections::BTreeSet<usize> = m.keys().map(|k| k.1).collect();
        let _ = writeln!(s, "### {ph}\n");
        let _ = writeln!(s, "| size | {} |", allocs.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(allocs.len()));
        for &size in &sizes {
            let cells: Vec<String> = allocs
                .iter()
                .map(|a| fmt_opt(med(&m, a, size), 2))
                .collect();
            let _ = writeln!(s, "| {size} | {} |", cells.join(" | "));
        }
        let cross = sizes.iter().find(
            |&&z| matches!((med(&m, "slub", z), med(&m, "slab", z)), (Some(u), Some(b)) if u > b),
        );
        let _ = writeln!(
            s,
            "\nCrossover (smallest size where SLUB moves more objects/s than SLAB): {}\n",
            cross.map_or_else(|| "none in this range".to_string(), |z| format!("{z} B"))
        );
    }

    // custom caches.
    let sel = select(rows, "custom_caches", "pair");
    if !sel.is_empty() {
        let m = aggregate(&sel, |r| Some(r.size), |r| r.ns_per_op);
        let mixed = select(rows, "custom_caches", "mixed");
        let mm = aggregate(&mixed, |r| Some(r.threads), |r| r.ns_per_op);
        let _ = writeln!(s, "## custom_caches (ns per alloc+free)\n");
        let _ = writeln!(s, "| cache | {} |", allocs.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(allocs.len()));
        for (name, size, _) in crate::workloads::custom_caches::CACHES {
            let cells: Vec<String> = allocs
                .iter()
                .map(|a| fmt_opt(med(&m, a, size), 1))
                .collect();
            let _ = writeln!(s, "| {name} ({size} B) | {} |", cells.join(" | "));
        }
        let threads: std::collections::BTreeSet<usize> = mm.keys().map(|k| k.1).collect();
        for t in threads {
            let cells: Vec<String> = allocs.iter().map(|a| fmt_opt(med(&mm, a, t), 1)).collect();
            let _ = writeln!(s, "| mixed, {t} thread(s) | {} |", cells.join(" | "));
        }
        let _ = writeln!(s);
    }

    // programs.
    let sel: Vec<&Row> = rows.iter().filter(|r| r.workload == "programs").collect();
    if !sel.is_empty() {
        let progs: Vec<&str> = crate::workloads::programs::PROGRAMS
            .iter()
            .copied()
            .filter(|p| sel.iter().any(|r| r.phase == *p))
            .collect();
        let idx = |r: &Row| progs.iter().position(|p| *p == r.phase);
        let wall = aggregate(&sel, idx, |r| r.ns_per_op / 1e9);
        let rss = aggregate(&sel, idx, |r| r.bytes_held as f64 / 1048576.0);
        let _ = writeln!(
            s,
            "## programs (real programs under LD_PRELOAD; same output on every allocator)\n"
        );
        let _ = writeln!(
            s,
            "| program | allocator | wall s | / glibc | peak RSS MiB |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (i, p) in progs.iter().enumerate() {
            for a in &allocs {
                let w = med(&wall, a, i);
                if w.is_none() {
                    continue;
                }
                let _ = writeln!(
                    s,
                    "| {p} | {a} | {} | {} | {} |",
                    fmt_opt(w, 3),
                    fmt_opt(ratio(w, med(&wall, "system", i)), 2),
                    fmt_opt(med(&rss, a, i), 1)
                );
            }
        }
        let _ = writeln!(s);
    }

    s.push_str(&crate::workloads::latency::summary(rows, &allocs));

    // pages.
    let sel: Vec<&Row> = rows.iter().filter(|r| r.workload == "pages").collect();
    if !sel.is_empty() {
        let m = aggregate(&sel, |r| Some(r.size / common::PAGE_SIZE), |r| r.ns_per_op);
        let orders: std::collections::BTreeSet<usize> = m.keys().map(|k| k.1).collect();
        let _ = writeln!(s, "## pages (ns per alloc+free pair, every CPU at once)\n");
        let _ = writeln!(s, "| pages | provider | mmap+munmap | mmap / provider |");
        let _ = writeln!(s, "|---|---|---|---|");
        for p in orders {
            let a = med(&m, "provider", p);
            let b = med(&m, "mmap", p);
            let _ = writeln!(
                s,
                "| {p} | {} | {} | {} |",
                fmt_opt(a, 0),
                fmt_opt(b, 0),
                fmt_opt(ratio(b, a), 1)
            );
        }
        let _ = writeln!(s);
    }
    // ablation: SLUB/SLAB by mechanism, and the published gaps attributed.
    let published: Vec<(&str, &str, f64, &str, usize)> = PUBLISHED
        .iter()
        .map(|p| (p.what, p.source, p.slub / p.slab, p.phase, p.size))
        .collect();
    s.push_str(&crate::workloads::ablation::summary(rows, &published));
    s.push_str(&crate::workloads::metadata::summary(rows));
    s.push_str(&crate::workloads::sheaf_batch::summary(rows, &allocs));
    s
}
