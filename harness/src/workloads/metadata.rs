//! Queue memory at scale: for each server topology of `common::sysfs_fixtures` (2-socket 128
//! CPUs, AMD-style 8 nodes 256 CPUs, 4-socket 448 CPUs with SMT, memoryless + CPU-less nodes)
//! and this run's topology, build the allocator (the kernel's kmalloc caches), then add
//! kernel-typical custom caches, then use them from this CPU (alloc/free bursts, and objects of
//! every node freed here: SLAB's alien arrays, SLUB's remote frees), and report after each step
//! what the object queues and the per-CPU/per-node structures hold
//! (`SlabAllocator::for_each_queue_stat`): SLAB's per-CPU, shared and alien arrays, SLUB's
//! `kmem_cache_cpu`, `kmem_cache_node` and the slabs they hold, plus what they *could* hold with
//! every CPU's queues full (`*_capacity_bytes`). No thread runs on the fixture machines' CPUs:
//! structure sizes are exact, "objects now" reflect one CPU's use.
//!
//! Rows: `phase` = step (`boot`, `caches`, `used`), `note` = `topology=NAME cpus=N nodes=M
//! item=ITEM`, `bytes_held` = the value, `held_measure` = `bytes` or `count`. Baselines have no
//! queues to report and give no rows. Lameter's claim it tests: reference `kernel.md` §3.6.

use super::{validate, Ctx, Workload};
use crate::alloc::{BenchAllocator, BenchCache};
use crate::placement::run_pinned;
use crate::record::Row;
use common::sysfs_fixtures::SysfsFixture;
use common::Topology;

/// Kernel-typical custom caches: (name, object size).
pub(crate) const CUSTOM_CACHES: &[(&str, usize)] = &[
    ("buffer_head", 104),
    ("dentry", 192),
    ("skbuff_head_cache", 232),
    ("filp", 256),
    ("inode_cache", 600),
    ("names_cache", 4096),
];

/// Objects per cache in the alloc/free burst of the `used` step (more than a SLAB per-CPU
/// array's largest limit, 120, so the burst also reaches the shared array).
const BURST: usize = 300;
/// Objects per cache and node allocated on that node and freed from this CPU.
const PER_NODE: usize = 40;

/// The topologies measured: the fixtures (written under the run directory) and this run's.
pub(crate) fn topologies(ctx: &Ctx<'_>) -> Result<Vec<(String, Topology)>, String> {
    let mut v = Vec::new();
    for f in SysfsFixture::servers() {
        let dir = ctx.cfg.out.join("sysfs-fixtures").join(&f.name);
        f.write(&dir)
            .map_err(|e| format!("metadata: writing {}: {e}", dir.display()))?;
        let t = Topology::from_sysfs_root(dir.as_os_str().as_encoded_bytes())
            .map_err(|e| format!("metadata: fixture {}: {e}", f.name))?;
        v.push((f.name.clone(), t));
    }
    let this = match ctx.topo.fake_numa() {
        Some(n) => format!("this-machine-fake{n}"),
        None => "this-machine".to_string(),
    };
    v.push((this, ctx.topo.clone()));
    Ok(v)
}

/// Runs the three steps on every topology.
pub(crate) fn run<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    make: &dyn Fn(&Topology) -> Result<A, String>,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (name, topo) in topologies(ctx)? {
        let a = make(&topo)?;
        if a.queue_stats().is_empty() {
            // A baseline: nothing to report (said once, in the summary).
            return Ok(rows);
        }
        let cpu = ctx.cfg.cpus[0];
        let out = run_pinned(&[cpu], ctx.topo, |w| {
            w.barrier.wait();
            steps(ctx, &a, &name, &topo)
        })?;
        rows.extend(out.into_iter().next().expect("one worker")?);
        validate(&a, Workload::Metadata)?;
        ctx.progress.inc(1);
    }
    Ok(rows)
}

fn emit<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    a: &A,
    topo_name: &str,
    topo: &Topology,
    step: &str,
    rows: &mut Vec<Row>,
) {
    for (item, v) in a.queue_stats() {
        let mut r = ctx.row(a, "cache", Workload::Metadata, step);
        r.threads = 1;
        r.cpu = -1;
        r.node = -1;
        r.bytes_held = v;
        r.held_measure = if item.ends_with("bytes") {
            "bytes"
        } else {
            "count"
        }
        .into();
        r.note = format!(
            "topology={topo_name} cpus={} nodes={} item={item}",
            topo.nr_cpu_ids(),
            topo.nr_nodes()
        );
        rows.push(r);
    }
}

fn steps<A: BenchAllocator>(
    ctx: &Ctx<'_>,
    a: &A,
    name: &str,
    topo: &Topology,
) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    emit(ctx, a, name, topo, "boot", &mut rows);
    let caches: Vec<BenchCache> = CUSTOM_CACHES
        .iter()
        .map(|&(n, size)| a.create_cache(n, size, true))
        .collect::<Result<_, _>>()?;
    emit(ctx, a, name, topo, "caches", &mut rows);
    let mut objs: Vec<*mut u8> = Vec::with_capacity(BURST.max(PER_NODE * topo.nr_nodes()));
    for &c in &caches {
        for _ in 0..BURST {
            let p = a.cache_alloc(c);
            if p.is_null() {
                return Err(super::oom(a.name(), c.size()));
            }
            objs.push(p);
        }
        for p in objs.drain(..) {
            // SAFETY: allocated just above from this cache, freed once.
            unsafe { a.cache_free(c, p) };
        }
        for node in 0..topo.nr_nodes() {
            for _ in 0..PER_NODE {
                let p = a.cache_alloc_node(c, node);
                if p.is_null() {
                    return Err(super::oom(a.name(), c.size()));
                }
                objs.push(p);
            }
        }
        for p in objs.drain(..) {
            // SAFETY: as above; objects of other nodes take the remote-free paths.
            unsafe { a.cache_free(c, p) };
        }
    }
    emit(ctx, a, name, topo, "used", &mut rows);
    // Empty and destroy the caches so validate() and the provider see a clean instance.
    for c in caches {
        a.shrink(c);
        a.destroy_cache(c)?;
    }
    Ok(rows)
}

/// The `key=value` fields of a metadata row's note.
pub(crate) fn note_field<'a>(note: &'a str, key: &str) -> Option<&'a str> {
    note.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// One topology's numbers at one step, for one allocator family.
#[derive(Clone, Debug, Default)]
struct Point {
    topology: String,
    cpus: usize,
    nodes: usize,
    items: std::collections::BTreeMap<String, u64>,
}

impl Point {
    fn get(&self, item: &str) -> u64 {
        self.items.get(item).copied().unwrap_or(0)
    }
}

/// The allocator of a family (`slab`, `slub`) whose rows are shown: the family's own name if it
/// ran, else its first variant.
fn family_allocator(rows: &[&Row], family: &str) -> Option<String> {
    if rows.iter().any(|r| r.allocator == family) {
        return Some(family.to_string());
    }
    rows.iter()
        .map(|r| &r.allocator)
        .find(|a| a.starts_with(family))
        .cloned()
}

/// Points of `allocator` at `step`, ordered by CPUs then nodes.
fn points(rows: &[&Row], allocator: &str, step: &str) -> Vec<Point> {
    let mut by: std::collections::BTreeMap<(usize, usize, String), Point> =
        std::collections::BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.allocator == allocator && r.phase == step)
    {
        let (Some(t), Some(c), Some(n), Some(item)) = (
            note_field(&r.note, "topology"),
            note_field(&r.note, "cpus").and_then(|v| v.parse().ok()),
            note_field(&r.note, "nodes").and_then(|v| v.parse().ok()),
            note_field(&r.note, "item"),
        ) else {
            continue;
        };
        let p = by.entry((c, n, t.to_string())).or_insert_with(|| Point {
            topology: t.to_string(),
            cpus: c,
            nodes: n,
            ..Point::default()
        });
        p.items.insert(item.to_string(), r.bytes_held);
    }
    by.into_values().collect()
}

fn series(
    label: &str,
    color: plotters::style::RGBColor,
    pts: &[Point],
    x: fn(&Point) -> f64,
    y: impl Fn(&Point) -> u64,
) -> crate::plot::Series {
    let mut points: Vec<(f64, crate::analysis::Stat)> = pts
        .iter()
        .filter_map(|p| {
            let v = y(p) as f64;
            (v > 0.0).then(|| (x(p), crate::analysis::Stat::of(vec![v]).expect("one")))
        })
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    crate::plot::Series {
        label: label.into(),
        color,
        points,
    }
}

/// `metadata.svg`/`.png`: structure bytes against CPUs and against nodes, and the bytes of
/// objects the queues can hold, SLAB beside SLUB, after the custom caches are made.
pub(crate) fn plot(rows: &[Row], dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, String> {
    use plotters::style::RGBColor;
    let sel: Vec<&Row> = rows.iter().filter(|r| r.workload == "metadata").collect();
    let (Some(slab), Some(slub)) = (
        family_allocator(&sel, "slab"),
        family_allocator(&sel, "slub"),
    ) else {
        return Ok(Vec::new());
    };
    let a = points(&sel, &slab, "caches");
    let u = points(&sel, &slub, "caches");
    let cpus = |p: &Point| p.cpus as f64;
    let nodes = |p: &Point| p.nodes as f64;
    let (red, pink, orange) = (
        RGBColor(214, 39, 40),
        RGBColor(255, 152, 150),
        RGBColor(255, 127, 14),
    );
    let (blue, cyan) = (RGBColor(31, 119, 180), RGBColor(23, 190, 207));
    let by = |x: fn(&Point) -> f64| {
        vec![
            series(&format!("{slab} per-CPU arrays"), red, &a, x, |p| {
                p.get("cpu_array_bytes")
            }),
            series(&format!("{slab} shared arrays"), pink, &a, x, |p| {
                p.get("shared_array_bytes")
            }),
            series(&format!("{slab} alien arrays"), orange, &a, x, |p| {
                p.get("alien_array_bytes") + p.get("alien_table_bytes")
            }),
            series(&format!("{slub} kmem_cache_cpu"), blue, &u, x, |p| {
                p.get("cpu_struct_bytes")
            }),
            series(&format!("{slub} kmem_cache_node"), cyan, &u, x, |p| {
                p.get("node_struct_bytes")
            }),
        ]
    };
    let panel = |title: &str, xl: &str, s| crate::plot::Panel {
        title: title.into(),
        x_label: xl.into(),
        y_label: "bytes (all caches)".into(),
        x_log2_bytes: false,
        y_log: true,
        x_categories: vec![],
        series: s,
    };
    let caught = |x: fn(&Point) -> f64| {
        vec![
            series(&format!("{slab} queues full"), red, &a, x, |p| {
                p.get("cpu_capacity_bytes")
                    + p.get("shared_capacity_bytes")
                    + p.get("alien_capacity_bytes")
            }),
            series(&format!("{slub} CPU + partial slabs"), blue, &u, x, |p| {
                p.get("cpu_capacity_bytes") + p.get("node_min_partial_bytes")
            }),
        ]
    };
    let panels = vec![
        panel("Queue structures vs CPUs", "CPUs (nr_cpu_ids)", by(cpus)),
        // Per node: only the structures that grow with nodes (per-CPU ones would zig-zag
        // between machines with the same node count).
        panel(
            "Per-node structures vs nodes",
            "NUMA nodes",
            by(nodes)
                .into_iter()
                .filter(|s| !s.label.contains("per-CPU") && !s.label.ends_with("cpu"))
                .collect(),
        ),
        panel(
            "Most object bytes the queues may hold vs CPUs",
            "CPUs (nr_cpu_ids)",
            caught(cpus),
        ),
    ];
    crate::plot::draw_figure(dir, "metadata", &panels, 3)
}

fn kib(b: u64) -> String {
    let k = b as f64 / 1024.0;
    if k >= 10240.0 {
        format!("{:.1} MiB", k / 1024.0)
    } else {
        format!("{k:.0} KiB")
    }
}

/// The `## metadata` section of summary.md: the queue-memory table and Lameter's claim.
pub(crate) fn summary(rows: &[Row]) -> String {
    use std::fmt::Write;
    let sel: Vec<&Row> = rows.iter().filter(|r| r.workload == "metadata").collect();
    let (Some(slab), Some(slub)) = (
        family_allocator(&sel, "slab"),
        family_allocator(&sel, "slub"),
    ) else {
        return String::new();
    };
    let a = points(&sel, &slab, "caches");
    let u = points(&sel, &slub, "caches");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## metadata (queue memory: {slab} vs {slub}, kmalloc + {} custom caches)\n",
        CUSTOM_CACHES.len()
    );
    let _ = writeln!(
        s,
        "Bytes of the structures themselves after the caches are made (arrays at their kmalloc \
         size class; SLUB's per-CPU areas at 64-byte units), and the object bytes the queues may \
         hold when every CPU's are full. Server machines are sysfs fixtures \
         (`common::sysfs_fixtures`); nothing ran on their CPUs.\n"
    );
    let _ = writeln!(
        s,
        "| topology | CPUs | nodes | SLAB per-CPU arrays | shared | alien (arrays) | SLAB queues | SLUB kmem_cache_cpu | kmem_cache_node | SLAB/SLUB structs | SLAB queues full | SLUB CPU+partial slabs |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for p in &a {
        let Some(q) = u
            .iter()
            .find(|q| q.topology == p.topology && q.cpus == p.cpus)
        else {
            continue;
        };
        let slab_q = p.get("queue_bytes");
        let slub_s = q.get("cpu_struct_bytes") + q.get("node_struct_bytes");
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {:.1} | {} | {} |",
            p.topology,
            p.cpus,
            p.nodes,
            kib(p.get("cpu_array_bytes")),
            kib(p.get("shared_array_bytes")),
            kib(p.get("alien_array_bytes") + p.get("alien_table_bytes")),
            p.get("alien_arrays"),
            kib(slab_q),
            kib(q.get("cpu_struct_bytes")),
            kib(q.get("node_struct_bytes")),
            slab_q as f64 / slub_s.max(1) as f64,
            kib(p.get("cpu_capacity_bytes")
                + p.get("shared_capacity_bytes")
                + p.get("alien_capacity_bytes")),
            kib(q.get("cpu_capacity_bytes") + q.get("node_min_partial_bytes")),
        );
    }
    let used_a = points(&sel, &slab, "used");
    let used_u = points(&sel, &slub, "used");
    if !used_a.is_empty() {
        let _ = writeln!(
            s,
            "\nAfter one CPU used each custom cache ({BURST} alloc+free, and {PER_NODE} objects \
             of every node freed there): object bytes held now.\n"
        );
        let _ = writeln!(
            s,
            "| topology | SLAB per-CPU | shared | alien | SLUB CPU slabs | per-CPU partial | node partial |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for p in &used_a {
            let q = used_u.iter().find(|q| q.topology == p.topology);
            let g = |item: &str| q.map_or(0, |q| q.get(item));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                p.topology,
                kib(p.get("cpu_object_bytes")),
                kib(p.get("shared_object_bytes")),
                kib(p.get("alien_object_bytes")),
                kib(g("cpu_slab_bytes")),
                kib(g("cpu_partial_bytes")),
                kib(g("node_partial_bytes")),
            );
        }
    }
    let _ = writeln!(
        s,
        "\nLameter (SLUB announcement, 2007; reference `kernel.md` §3.6): \"SLAB Object queues \
         exist per node, per CPU. The alien cache queue even has a queue array that contain a \
         queue for each processor on each node. For very large systems the number of queues and \
         the number of objects that may be caught in those queues grows exponentially.\" In the \
         2.6.32 code ported here, per cache: one array per CPU (O(CPUs)), one shared array per \
         node, and nodes × (nodes − 1) alien arrays (O(nodes²), the `alien (arrays)` column); \
         SLUB: one `kmem_cache_cpu` per CPU and one `kmem_cache_node` per node, no object queues.\n"
    );
    s
}
