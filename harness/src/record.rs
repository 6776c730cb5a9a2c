//! The tidy CSV schema: one row per measurement, with the machine and run facts repeated in every
//! row so CSVs from several machines can simply be concatenated.

use serde::{Deserialize, Serialize};

/// Facts about the run, the same for every row.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
pub struct RunMeta {
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

/// One measurement.
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq)]
pub struct Row {
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
    pub fn new(meta: &RunMeta) -> Self {
        Self {
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
    pub fn timed(mut self, ops: u64, cycles: u64, tsc_ghz: f64) -> Self {
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
    pub fn memory(mut self, live: u64, held: u64, measure: &str) -> Self {
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
pub const COLUMNS: &[&str] = &[
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

/// Columns of files written before the `ablation` workload added its three (still readable).
const COLUMNS_BEFORE_ABLATION: usize = 29;

/// Reads rows from a CSV file written by the harness (or several concatenated).
pub fn read_csv(path: &std::path::Path) -> Result<Vec<Row>, String> {
    // Flexible: rows of files written before the ablation columns (29 fields) may follow a
    // newer header when runs are merged (`scripts/merge.sh`); their missing columns are empty.
    let mut r = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| e.to_string())?
        .iter()
        .map(str::to_string)
        .collect();
    if header != COLUMNS && header[..] != COLUMNS[..COLUMNS_BEFORE_ABLATION] {
        return Err(format!(
            "{}: not a slabworks results CSV (unexpected header)",
            path.display()
        ));
    }
    let full = csv::StringRecord::from(COLUMNS.to_vec());
    r.records()
        .map(|rec| {
            let mut rec = rec.map_err(|e| format!("{}: {e}", path.display()))?;
            while rec.len() < COLUMNS.len() {
                rec.push_field("");
            }
            rec.deserialize(Some(&full))
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csvs_without_the_ablation_columns_still_read_alone_and_merged() {
        let row = Row {
            allocator: "slub".into(),
            config: "kernel".into(),
            percpu: "rseq".into(),
            stats: "off".into(),
            ..Row::default()
        };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.serialize(&row).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        let new_row = lines.next().unwrap();
        let cut = |l: &str| {
            let f: Vec<&str> = l.split(',').collect();
            f[..COLUMNS_BEFORE_ABLATION].join(",")
        };
        let dir = tempfile::tempdir().unwrap();
        // An old file alone.
        let old = dir.path().join("old.csv");
        std::fs::write(&old, format!("{}\n{}\n", cut(header), cut(new_row))).unwrap();
        let rows = read_csv(&old).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].allocator, "slub");
        assert!(rows[0].config.is_empty());
        // A new file with an old one's rows appended (scripts/merge.sh).
        let merged = dir.path().join("merged.csv");
        std::fs::write(&merged, format!("{header}\n{new_row}\n{}\n", cut(new_row))).unwrap();
        let rows = read_csv(&merged).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].config.as_str(), rows[1].config.as_str()),
            ("kernel", "")
        );
        // Anything else is refused.
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "a,b\n1,2\n").unwrap();
        assert!(read_csv(&bad).is_err());
    }
}
