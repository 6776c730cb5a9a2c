//! The tidy CSV schema: one row per measurement, with the machine and run facts repeated in every
//! row so CSVs from several machines can simply be concatenated. The first column,
//! `schema_version`, says which layout a row follows ([`SCHEMA_VERSION`]; README "CSV schema");
//! [`read_csv`] reads this version and version 1 (the layout before the column existed).

use serde::{Deserialize, Serialize};

/// Facts about the run, the same for every row.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub(crate) struct RunMeta {
    /// Unique id of the run (host + start time).
    pub run_id: String,
    /// Start time, UTC.
    pub utc_time: String,
    /// Git commit of the tree that was built.
    pub git_commit: String,
    /// Host name.
    pub host: String,
    /// CPU model.
    pub cpu_model: String,
    /// CPUs used by the run.
    pub cpus: usize,
    /// Real NUMA nodes.
    pub nodes_real: usize,
    /// Fake NUMA nodes (0 = real topology).
    pub nodes_fake: usize,
    /// Kernel release.
    pub kernel: String,
    /// TSC ticks per nanosecond.
    pub tsc_ghz: f64,
}

/// The layout version written in every row's `schema_version` column. History: 1 = no
/// `schema_version`, `metric`, `value`, `config`, `percpu`, `stats` columns; 2 = those added
/// (latency quantiles and per-10 000-op counters of the latency workload; the kernel
/// configuration, per-CPU mechanism and statistics setting of the ablation workload).
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// One measurement.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub(crate) struct Row {
    /// Layout version of this row ([`SCHEMA_VERSION`]; 1 when read from a version-1 file).
    #[serde(default = "schema_v1")]
    pub schema_version: u32,
    /// See [`RunMeta`].
    pub run_id: String,
    /// See [`RunMeta`].
    pub utc_time: String,
    /// See [`RunMeta`].
    pub git_commit: String,
    /// See [`RunMeta`].
    pub host: String,
    /// See [`RunMeta`].
    pub cpu_model: String,
    /// See [`RunMeta`].
    pub cpus: usize,
    /// See [`RunMeta`].
    pub nodes_real: usize,
    /// See [`RunMeta`].
    pub nodes_fake: usize,
    /// See [`RunMeta`].
    pub kernel: String,
    /// Allocator registry name.
    pub allocator: String,
    /// How it was driven: kmalloc, cache, malloc, pages.
    pub api: String,
    /// Allocator settings in force.
    pub settings: String,
    /// Workload.
    pub workload: String,
    /// Phase within the workload (e.g. `A_alloc`, `grow`).
    pub phase: String,
    /// Object size in bytes (0 if not applicable).
    pub size: usize,
    /// Threads taking part.
    pub threads: usize,
    /// CPU of the thread this row measures (-1: the whole run).
    pub cpu: i64,
    /// Logical node of that CPU (-1: the whole run).
    pub node: i64,
    /// Repetition number.
    pub repetition: usize,
    /// What `value` holds, for rows that carry one statistic rather than a mean: a latency
    /// quantile (`p50`, `p90`, `p99`, `p99.9`, `p99.99`, `max`, and the CDF points `p75`, `p95`,
    /// `p99.5`, `p99.95`, `p99.999`), `timer` rows' own cost, `stat:NAME` (an allocator counter
    /// per 10 000 operations), or `census:PART` (the memory workload's census: objects a
    /// per-CPU or per-node cache holds). Empty for ordinary rows.
    #[serde(default)]
    pub metric: String,
    /// The statistic named by `metric` (cycles for quantiles; events per 10 000 ops for
    /// `stat:`; objects for `census:`); 0 when `metric` is empty.
    #[serde(default)]
    pub value: f64,
    /// Operations measured.
    pub ops: u64,
    /// TSC cycles per operation.
    pub cycles_per_op: f64,
    /// Nanoseconds per operation.
    pub ns_per_op: f64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// Bytes the workload holds live (requested sizes).
    pub bytes_live: u64,
    /// Bytes the allocator holds (provider pages, or RSS delta for baselines).
    pub bytes_held: u64,
    /// bytes_held / bytes_live (0 when bytes_live is 0).
    pub overhead: f64,
    /// How bytes_held was measured: provider or rss.
    pub held_measure: String,
    /// Bytes of objects sitting in allocator queues (in use for the allocator, free for the
    /// workload): SLAB per-CPU/shared/alien arrays, SLUB CPU slabs.
    pub queued_bytes: u64,
    /// Free-form note.
    pub note: String,
    /// Kernel configuration of a slab allocator in the `ablation` workload (`kernel`,
    /// `hardened`, `checked`; empty elsewhere).
    #[serde(default)]
    pub config: String,
    /// Per-CPU mechanism in the `ablation` workload (`rseq`, `cmpxchg`, `lock`; empty
    /// elsewhere).
    #[serde(default)]
    pub percpu: String,
    /// Statistics counters in the `ablation` workload (`on`, `off`; empty elsewhere).
    #[serde(default)]
    pub stats: String,
}

impl Row {
    /// A row carrying the run facts.
    pub(crate) fn new(meta: &RunMeta) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            run_id: meta.run_id.clone(),
            utc_time: meta.utc_time.clone(),
            git_commit: meta.git_commit.clone(),
            host: meta.host.clone(),
            cpu_model: meta.cpu_model.clone(),
            cpus: meta.cpus,
            nodes_real: meta.nodes_real,
            nodes_fake: meta.nodes_fake,
            kernel: meta.kernel.clone(),
            cpu: -1,
            node: -1,
            ..Self::default()
        }
    }

    /// Fills the timing columns from `ops` operations taking `cycles` TSC ticks.
    pub(crate) fn timed(mut self, ops: u64, cycles: u64, tsc_ghz: f64) -> Self {
        self.ops = ops;
        let ops_f = ops.max(1) as f64;
        self.cycles_per_op = cycles as f64 / ops_f;
        self.ns_per_op = self.cycles_per_op / tsc_ghz;
        self.ops_per_s = if self.ns_per_op > 0.0 {
            1e9 / self.ns_per_op
        } else {
            0.0
        };
        self
    }

    /// Fills the memory columns.
    pub(crate) fn memory(mut self, live: u64, held: u64, measure: &str) -> Self {
        self.bytes_live = live;
        self.bytes_held = held;
        self.overhead = if live > 0 {
            held as f64 / live as f64
        } else {
            0.0
        };
        self.held_measure = measure.to_string();
        self
    }
}

/// The CSV header, in schema order (tests check files against it).
pub(crate) const COLUMNS: &[&str] = &[
    "schema_version",
    "run_id",
    "utc_time",
    "git_commit",
    "host",
    "cpu_model",
    "cpus",
    "nodes_real",
    "nodes_fake",
    "kernel",
    "allocator",
    "api",
    "settings",
    "workload",
    "phase",
    "size",
    "threads",
    "cpu",
    "node",
    "repetition",
    "metric",
    "value",
    "ops",
    "cycles_per_op",
    "ns_per_op",
    "ops_per_s",
    "bytes_live",
    "bytes_held",
    "overhead",
    "held_measure",
    "queued_bytes",
    "note",
    "config",
    "percpu",
    "stats",
];

fn schema_v1() -> u32 {
    1
}

/// The columns of a version-1 file (before `schema_version`, `metric`, `value` and the
/// ablation's `config`, `percpu`, `stats`).
fn columns_v1() -> Vec<&'static str> {
    COLUMNS
        .iter()
        .copied()
        .filter(|c| {
            !matches!(
                *c,
                "schema_version" | "metric" | "value" | "config" | "percpu" | "stats"
            )
        })
        .collect()
}

/// Reads rows from a CSV file written by the harness (or several concatenated), of schema
/// version 2 or 1 (version-1 rows read with `schema_version` 1 and empty `metric`).
pub(crate) fn read_csv(path: &std::path::Path) -> Result<Vec<Row>, String> {
    // Rows are read by the file's own header, so a version-1 file's missing columns take their
    // defaults; files of different versions are not concatenated (`scripts/merge.sh` refuses).
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    if header != COLUMNS && header != columns_v1() {
        return Err(format!(
            "{}: not a slabworks results CSV of schema version 1 or {SCHEMA_VERSION} (unexpected header)",
            path.display()
        ));
    }
    r.deserialize()
        .map(|row| row.map_err(|e| format!("{}: {e}", path.display())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_1_files_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = columns_v1();
        let mut text = v1.join(",");
        text.push('\n');
        let vals: Vec<&str> = v1
            .iter()
            .map(|c| match *c {
                "cpus" | "nodes_real" | "nodes_fake" | "size" | "threads" | "repetition"
                | "ops" | "bytes_live" | "bytes_held" | "queued_bytes" => "1",
                "cpu" | "node" => "-1",
                "cycles_per_op" | "ns_per_op" | "ops_per_s" | "overhead" => "1.5",
                "allocator" => "slub",
                _ => "x",
            })
            .collect();
        text.push_str(&vals.join(","));
        text.push('\n');
        let p = dir.path().join("v1.csv");
        std::fs::write(&p, &text).unwrap();
        let rows = read_csv(&p).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].schema_version, 1);
        assert_eq!(rows[0].allocator, "slub");
        assert!(rows[0].metric.is_empty());
        assert!(rows[0].config.is_empty());
        // And a version-2 file round-trips.
        let mut r = Row::new(&RunMeta::default());
        r.metric = "p99".into();
        r.value = 42.0;
        r.config = "kernel".into();
        r.percpu = "rseq".into();
        r.stats = "off".into();
        let p2 = dir.path().join("v2.csv");
        let mut w = csv::Writer::from_path(&p2).unwrap();
        w.serialize(&r).unwrap();
        w.flush().unwrap();
        let back = read_csv(&p2).unwrap();
        assert_eq!(back, vec![r]);
        assert_eq!(back[0].schema_version, SCHEMA_VERSION);
        std::fs::write(&p2, "a,b\n1,2\n").unwrap();
        assert!(read_csv(&p2).unwrap_err().contains("schema version"));
    }
}
