//! Aggregation shared by plots and the summary: per repetition, the rows of one measurement
//! (one per thread) are averaged; across repetitions, median, minimum and maximum.

use crate::record::Row;
use std::collections::BTreeMap;

/// Median, min and max over repetitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stat {
    /// Median.
    pub med: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Repetitions.
    pub n: usize,
}

impl Stat {
    /// From samples (must be non-empty).
    pub(crate) fn of(mut v: Vec<f64>) -> Option<Stat> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let med = if n % 2 == 1 {
            v[n / 2]
        } else {
            f64::midpoint(v[n / 2 - 1], v[n / 2])
        };
        Some(Stat {
            med,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// Groups `rows` by (allocator, key), averaging `value` over the rows of one repetition, then
/// taking median/min/max over repetitions. `key` returns `None` to skip a row.
pub(crate) fn aggregate<K: Ord + Clone>(
    rows: &[&Row],
    key: impl Fn(&Row) -> Option<K>,
    value: impl Fn(&Row) -> f64,
) -> BTreeMap<(String, K), Stat> {
    let mut per_rep: BTreeMap<(String, K, usize), (f64, usize)> = BTreeMap::new();
    for r in rows {
        if let Some(k) = key(r) {
            let e = per_rep
                .entry((r.allocator.clone(), k, r.repetition))
                .or_insert((0.0, 0));
            e.0 += value(r);
            e.1 += 1;
        }
    }
    let mut samples: BTreeMap<(String, K), Vec<f64>> = BTreeMap::new();
    for ((a, k, _), (sum, n)) in per_rep {
        samples.entry((a, k)).or_default().push(sum / n as f64);
    }
    samples
        .into_iter()
        .filter_map(|(k, v)| Stat::of(v).map(|s| (k, s)))
        .collect()
}

/// Paired ratios `value(key b) / value(key a)` per allocator, one per repetition that has
/// both (rows of one key and repetition averaged first), summarised. Measured side by side
/// in the same repetition, the two share that moment's machine speed, so on a noisy VM the
/// median of these ratios is a steadier estimate than a ratio of two separate medians.
pub(crate) fn paired_ratio<K: Ord + Clone>(
    rows: &[&Row],
    key: impl Fn(&Row) -> Option<K>,
    value: impl Fn(&Row) -> f64,
    a: &K,
    b: &K,
) -> BTreeMap<String, Stat> {
    let mut per_rep: BTreeMap<(String, usize), [(f64, usize); 2]> = BTreeMap::new();
    for r in rows {
        let Some(k) = key(r) else { continue };
        let slot = if &k == a {
            0
        } else if &k == b {
            1
        } else {
            continue;
        };
        let e = per_rep
            .entry((r.allocator.clone(), r.repetition))
            .or_insert([(0.0, 0); 2]);
        e[slot].0 += value(r);
        e[slot].1 += 1;
    }
    let mut samples: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for ((alloc, _), [(sa, na), (sb, nb)]) in per_rep {
        if na > 0 && nb > 0 && sa > 0.0 {
            samples
                .entry(alloc)
                .or_default()
                .push((sb / nb as f64) / (sa / na as f64));
        }
    }
    samples
        .into_iter()
        .filter_map(|(k, v)| Stat::of(v).map(|s| (k, s)))
        .collect()
}

/// Rows of one workload and phase.
pub(crate) fn select<'a>(rows: &'a [Row], workload: &str, phase: &str) -> Vec<&'a Row> {
    rows.iter()
        .filter(|r| r.workload == workload && r.phase == phase)
        .collect()
}

/// Allocator names present, in registry order first, then any others.
pub(crate) fn allocators(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for known in crate::registry::names()
        .into_iter()
        .chain(["provider", "mmap"])
    {
        if rows.iter().any(|r| r.allocator == known) {
            v.push(known.to_string());
        }
    }
    for r in rows {
        if !v.contains(&r.allocator) {
            v.push(r.allocator.clone());
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stat::of(vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!(s.n, 3);
        assert!((s.med - 2.0).abs() + (s.min - 1.0).abs() + (s.max - 3.0).abs() < 1e-12);
        let s = Stat::of(vec![4.0, 1.0]).unwrap();
        assert!((s.med - 2.5).abs() < 1e-12);
        assert!(Stat::of(vec![]).is_none());
    }

    #[test]
    fn paired_ratio_pairs_within_repetitions() {
        let mk = |rep, threads, v| Row {
            allocator: "x".into(),
            repetition: rep,
            threads,
            ops_per_s: v,
            ..Row::default()
        };
        // Rep 0 ran on a fast machine, rep 1 on a slow one, rep 2 lost its 2-thread row:
        // the ratios of the pairs are 2.0 and 1.5; a ratio of medians would say 20/10 = 2.0
        // only by luck of which values sit in the middle.
        let rows = [
            mk(0, 1, 100.0),
            mk(0, 2, 200.0),
            mk(1, 1, 10.0),
            mk(1, 2, 15.0),
            mk(2, 1, 50.0),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let m = paired_ratio(&refs, |r| Some(r.threads), |r| r.ops_per_s, &1, &2);
        let s = m["x"];
        assert_eq!(s.n, 2);
        assert!((s.min - 1.5).abs() < 1e-12 && (s.max - 2.0).abs() < 1e-12);
        assert!((s.med - 1.75).abs() < 1e-12);
    }

    #[test]
    fn threads_averaged_then_reps_summarised() {
        let mk = |a: &str, rep, v| Row {
            allocator: a.into(),
            repetition: rep,
            cycles_per_op: v,
            size: 64,
            ..Row::default()
        };
        let rows = [
            mk("x", 0, 10.0),
            mk("x", 0, 20.0),
            mk("x", 1, 30.0),
            mk("x", 1, 30.0),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let m = aggregate(&refs, |r| Some(r.size), |r| r.cycles_per_op);
        let s = m[&("x".to_string(), 64)];
        assert_eq!(s.n, 2);
        assert!((s.min - 15.0).abs() + (s.max - 30.0).abs() < 1e-12);
    }
}
