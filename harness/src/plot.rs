//! Plots from result rows (separate from measuring: `harness plot DIR` redraws from a CSV).
//! plotters with a bundled DejaVu Sans font (ab_glyph), so no system font library is needed;
//! every figure is written as SVG and PNG. Lines are medians over repetitions, whiskers span
//! minimum to maximum.

use crate::analysis::{aggregate, allocators, select, Stat};
use crate::record::Row;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let ok = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../assets/DejaVuSans.ttf"),
        );
        debug_assert!(ok.is_ok(), "bundled font parses");
    });
}

/// One line of a chart.
pub(crate) struct Series {
    /// Legend label.
    pub label: String,
    /// Colour.
    pub color: RGBColor,
    /// (x, statistics) points.
    pub points: Vec<(f64, Stat)>,
}

/// A chart panel.
pub(crate) struct Panel {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X values are log2 of a byte size (labels print the size).
    pub x_log2_bytes: bool,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// X tick labels for categorical axes (index → label).
    pub x_categories: Vec<String>,
    /// The lines.
    pub series: Vec<Series>,
}

impl Panel {
    /// A panel with linear axes and numeric x ticks; see the `log2_bytes`, `log_y` and
    /// `categories` modifiers.
    pub(crate) fn new(
        title: impl Into<String>,
        x_label: &str,
        y_label: &str,
        series: Vec<Series>,
    ) -> Self {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log2_bytes: false,
            y_log: false,
            x_categories: vec![],
            series,
        }
    }

    /// X values are log2 of a byte size.
    fn log2_bytes(mut self) -> Self {
        self.x_log2_bytes = true;
        self
    }

    /// Logarithmic y axis.
    pub(crate) fn log_y(mut self) -> Self {
        self.y_log = true;
        self
    }

    /// Categorical x axis with these tick labels.
    pub(crate) fn categories(mut self, labels: Vec<String>) -> Self {
        self.x_categories = labels;
        self
    }
}

/// The colour of an allocator, the same in every figure.
pub(crate) fn color_of(name: &str) -> RGBColor {
    match name {
        "slab" => RGBColor(214, 39, 40),
        "slub" | "provider" => RGBColor(31, 119, 180),
        "slub-2.6.32" => RGBColor(23, 190, 207),
        "slub-cmpxchg" => RGBColor(127, 127, 127),
        "slub-sheaves" => RGBColor(230, 85, 13),
        "slub-6.18" => RGBColor(188, 189, 34),
        "slab-lock" => RGBColor(255, 152, 150),
        "system" => RGBColor(44, 160, 44),
        "mimalloc" => RGBColor(148, 103, 189),
        "jemalloc" => RGBColor(140, 86, 75),
        "mmap" => RGBColor(60, 60, 60),
        _ => RGBColor(255, 127, 14),
    }
}

fn size_label(x: f64) -> String {
    let b = 2f64.powf(x).round() as u64;
    if b >= 1 << 20 {
        format!("{}M", b >> 20)
    } else if b >= 1024 {
        format!("{}K", b >> 10)
    } else {
        b.to_string()
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<(), String> {
    let pts: Vec<(f64, Stat)> = p.series.iter().flat_map(|s| s.points.clone()).collect();
    if pts.is_empty() {
        area.titled(&format!("{} (no data)", p.title), ("sans-serif", 18))
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
        (a.min(*x), b.max(*x))
    });
    if (x1 - x0).abs() < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = (x1 - x0) * 0.04;
    let (x0, x1) = (x0 - pad, x1 + pad);
    let ymin = pts.iter().map(|(_, s)| s.min).fold(f64::MAX, f64::min);
    let ymax = pts.iter().map(|(_, s)| s.max).fold(f64::MIN, f64::max);
    let cap_label = |x: &f64| -> String {
        if p.x_log2_bytes {
            size_label(*x)
        } else if !p.x_categories.is_empty() {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                p.x_categories.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        } else if (x - x.round()).abs() < 1e-9 {
            format!("{}", x.round() as i64)
        } else {
            format!("{x:.1}")
        }
    };
    let x_ticks = if p.x_categories.is_empty() {
        ((x1 - x0).round() as usize + 1).clamp(2, 14)
    } else {
        p.x_categories.len() * 2 + 1
    };
    macro_rules! finish {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(p.x_label.as_str())
                .y_desc(p.y_label.as_str())
                .x_labels(x_ticks)
                .x_label_formatter(&cap_label)
                .y_label_formatter(&|v: &f64| {
                    if v.abs() >= 100.0 {
                        format!("{v:.0}")
                    } else if v.abs() >= 1.0 {
                        format!("{v:.1}")
                    } else {
                        format!("{v:.3}")
                    }
                })
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            for s in &p.series {
                let color = s.color;
                let mut line: Vec<(f64, f64)> =
                    s.points.iter().map(|(x, st)| (*x, st.med)).collect();
                line.sort_by(|a, b| a.0.total_cmp(&b.0));
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        line.iter()
                            .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
                    )
                    .map_err(|e| e.to_string())?;
                chart
                    .draw_series(s.points.iter().filter(|(_, st)| st.n > 1).map(|(x, st)| {
                        PathElement::new(vec![(*x, st.min), (*x, st.max)], color.stroke_width(1))
                    }))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(p.title.as_str(), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64);
    if p.y_log {
        let lo = (ymin.max(1e-3) / 1.5).max(1e-3);
        let hi = ymax.max(lo * 10.0) * 1.5;
        finish!(builder
            .build_cartesian_2d(x0..x1, (lo..hi).log_scale())
            .map_err(|e| e.to_string())?);
    } else {
        let hi = if ymax > 0.0 { ymax * 1.12 } else { 1.0 };
        let lo = if ymin < 0.0 { ymin * 1.12 } else { 0.0 };
        finish!(builder
            .build_cartesian_2d(x0..x1, lo..hi)
            .map_err(|e| e.to_string())?);
    }
    Ok(())
}

/// Draws `panels` in a grid of `cols` columns into `<dir>/<name>.svg` and `.png`.
pub(crate) fn draw_figure(
    dir: &Path,
    name: &str,
    panels: &[Panel],
    cols: usize,
) -> Result<Vec<PathBuf>, String> {
    register_font();
    let cols = cols.max(1).min(panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let size = ((560 * cols) as u32, (400 * rows) as u32);
    let svg = dir.join(format!("{name}.svg"));
    let png = dir.join(format!("{name}.png"));
    draw_grid(
        &SVGBackend::new(&svg, size).into_drawing_area(),
        panels,
        (rows, cols),
    )?;
    draw_grid(
        &BitMapBackend::new(&png, size).into_drawing_area(),
        panels,
        (rows, cols),
    )?;
    Ok(vec![svg, png])
}

/// Fills `root` white, draws `panels` into a `(rows, cols)` grid of it and writes it out.
fn draw_grid<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    grid: (usize, usize),
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    for (area, p) in root.split_evenly(grid).iter().zip(panels) {
        draw_panel(area, p)?;
    }
    root.present().map_err(|e| e.to_string())
}

/// Draws the figure `name` unless `panels` is empty.
fn draw_nonempty(
    files: &mut Vec<PathBuf>,
    dir: &Path,
    name: &str,
    panels: &[Panel],
    cols: usize,
) -> Result<(), String> {
    if !panels.is_empty() {
        files.extend(draw_figure(dir, name, panels, cols)?);
    }
    Ok(())
}

/// The object sizes that rows of `workload` were measured at, ascending.
fn sizes_of(rows: &[Row], workload: &str) -> std::collections::BTreeSet<usize> {
    rows.iter()
        .filter(|r| r.workload == workload)
        .map(|r| r.size)
        .collect()
}

/// One panel per phase of `workload` that has rows, y = `value` against the object size.
fn panels_per_phase(
    rows: &[Row],
    allocs: &[String],
    workload: &str,
    phases: &[(&str, String)],
    value: fn(&Row) -> f64,
    make: impl Fn(String, Vec<Series>) -> Panel,
) -> Vec<Panel> {
    phases
        .iter()
        .filter(|(ph, _)| {
            rows.iter()
                .any(|r| r.workload == workload && r.phase == *ph)
        })
        .map(|(ph, title)| {
            let sel = select(rows, workload, ph);
            let m = aggregate(&sel, |r| Some(F64Key(log2(r.size))), value);
            make(title.clone(), series_from(&m, allocs))
        })
        .collect()
}

/// One panel per object size measured in `workload` (rows further filtered by `keep`), y =
/// `value` against `x`.
fn panels_per_size(
    rows: &[Row],
    allocs: &[String],
    workload: &str,
    keep: fn(&Row) -> bool,
    x: impl Fn(&Row, usize) -> f64,
    value: fn(&Row) -> f64,
    make: impl Fn(usize, Vec<Series>) -> Panel,
) -> Vec<Panel> {
    sizes_of(rows, workload)
        .into_iter()
        .map(|size| {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| r.workload == workload && r.size == size && keep(r))
                .collect();
            let m = aggregate(&sel, |r| Some(F64Key(x(r, size))), value);
            make(size, series_from(&m, allocs))
        })
        .collect()
}

fn series_from(m: &BTreeMap<(String, F64Key), Stat>, allocs: &[String]) -> Vec<Series> {
    allocs
        .iter()
        .filter_map(|a| {
            let points: Vec<(f64, Stat)> = m
                .iter()
                .filter(|((al, _), _)| al == a)
                .map(|((_, x), s)| (x.0, *s))
                .collect();
            (!points.is_empty()).then(|| Series {
                label: a.clone(),
                color: color_of(a),
                points,
            })
        })
        .collect()
}

/// An `f64` usable as an ordered map key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct F64Key(pub f64);
impl Eq for F64Key {}
impl PartialOrd for F64Key {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for F64Key {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

fn log2(size: usize) -> f64 {
    (size.max(1) as f64).log2()
}

/// Draws every figure the rows allow; returns the files written.
pub(crate) fn draw_all(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let allocs = allocators(rows);
    let mut files = Vec::new();
    // slab_test: cycles/op vs size, one panel per test.
    let phases = [
        ("A_alloc", "A: kmalloc x N, one CPU"),
        ("B_free", "B: kfree x N, one CPU"),
        ("C_pair", "C: alloc+free pairs, one CPU"),
        ("D_alloc", "D: kmalloc x N, all CPUs at once"),
        ("D_free", "D: kfree x N, all CPUs at once"),
        ("E_pair", "E: alloc+free pairs, all CPUs"),
        ("F_remote_free", "F: remote kfree by the last CPU"),
    ]
    .map(|(ph, title)| (ph, title.to_string()));
    let panels = panels_per_phase(
        rows,
        &allocs,
        "slab_test",
        &phases,
        |r| r.cycles_per_op,
        |title, series| {
            Panel::new(title, "object size (bytes)", "cycles per op (TSC)", series)
                .log2_bytes()
                .log_y()
        },
    );
    draw_nonempty(&mut files, dir, "slab_test", &panels, 3)?;
    // scaling: throughput vs threads, one panel per size.
    let panels = panels_per_size(
        rows,
        &allocs,
        "scaling",
        |_| true,
        |r, _| r.threads as f64,
        |r| r.ops_per_s / 1e6,
        |size, series| {
            Panel::new(
                format!("Scaling: alloc+free pairs of {size} B"),
                "threads (one per CPU)",
                "throughput (M pairs/s)",
                series,
            )
        },
    );
    draw_nonempty(&mut files, dir, "scaling", &panels, 2)?;
    // memory: overhead while growing.
    let panels = panels_per_size(
        rows,
        &allocs,
        "memory",
        |r| r.phase == "grow" && r.held_measure == "smaps_anon",
        |r, size| r.bytes_live as f64 / size as f64 / 1e3,
        |r| r.overhead,
        |size, series| {
            Panel::new(
                format!("Memory: held / live while growing ({size} B objects, smaps)"),
                "live objects (thousands)",
                "bytes held / bytes live",
                series,
            )
        },
    );
    draw_nonempty(&mut files, dir, "memory", &panels, 2)?;
    files.extend(crate::workloads::memory::census_plot(rows, dir)?);
    // remote_free: throughput vs size, one panel per placement.
    let phases = ["same_node", "cross_node"].map(|ph| {
        (
            ph,
            format!(
                "Remote free, producer -> consumer, {}",
                ph.replace('_', " ")
            ),
        )
    });
    let panels = panels_per_phase(
        rows,
        &allocs,
        "remote_free",
        &phases,
        |r| r.ops_per_s / 1e6,
        |title, series| {
            Panel::new(
                title,
                "object size (bytes)",
                "throughput (M objects/s)",
                series,
            )
            .log2_bytes()
        },
    );
    draw_nonempty(&mut files, dir, "remote_free", &panels, 2)?;
    // custom caches: pair cost per cache, and the mixed pattern.
    let sel = select(rows, "custom_caches", "pair");
    if !sel.is_empty() {
        let names: Vec<String> = crate::workloads::custom_caches::CACHES
            .iter()
            .map(|c| format!("{} {}", c.0, c.1))
            .collect();
        let idx = |r: &Row| {
            crate::workloads::custom_caches::CACHES
                .iter()
                .position(|c| c.0 == r.note)
                .map(|i| F64Key(i as f64))
        };
        let m = aggregate(&sel, idx, |r| r.ns_per_op);
        let mixed = select(rows, "custom_caches", "mixed");
        let mm = aggregate(&mixed, |r| Some(F64Key(r.threads as f64)), |r| r.ns_per_op);
        let panels = vec![
            Panel::new(
                "Custom caches: alloc+free pair, one CPU",
                "cache (object size, bytes)",
                "ns per pair",
                series_from(&m, &allocs),
            )
            .categories(names),
            Panel::new(
                "Custom caches: mixed pattern, 1/4 freed remotely",
                "threads",
                "ns per alloc+free",
                series_from(&mm, &allocs),
            ),
        ];
        files.extend(draw_figure(dir, "custom_caches", &panels, 2)?);
    }
    // programs: wall time relative to glibc, and peak RSS, per program.
    let sel: Vec<&Row> = rows.iter().filter(|r| r.workload == "programs").collect();
    if !sel.is_empty() {
        let progs: Vec<String> = crate::workloads::programs::PROGRAMS
            .iter()
            .filter(|p| sel.iter().any(|r| r.phase == **p))
            .map(|p| (*p).to_string())
            .collect();
        let idx = |r: &Row| {
            progs
                .iter()
                .position(|p| *p == r.phase)
                .map(|i| F64Key(i as f64))
        };
        let wall = aggregate(&sel, idx, |r| r.ns_per_op / 1e9);
        let base: BTreeMap<F64Key, f64> = wall
            .iter()
            .filter(|((a, _), _)| a == "system")
            .map(|((_, k), s)| (*k, s.med))
            .collect();
        let rel: BTreeMap<(String, F64Key), Stat> = wall
            .iter()
            .filter_map(|((a, k), s)| {
                base.get(k).filter(|b| **b > 0.0).map(|b| {
                    (
                        (a.clone(), *k),
                        Stat {
                            med: s.med / b,
                            min: s.min / b,
                            max: s.max / b,
                            n: s.n,
                        },
                    )
                })
            })
            .collect();
        let rss = aggregate(&sel, idx, |r| r.bytes_held as f64 / 1048576.0);
        let panels = vec![
            Panel::new(
                "Real programs: wall time relative to glibc malloc",
                "program",
                "wall time / glibc wall time",
                series_from(&rel, &allocs),
            )
            .categories(progs.clone()),
            Panel::new(
                "Real programs: peak RSS",
                "program",
                "peak RSS (MiB)",
                series_from(&rss, &allocs),
            )
            .categories(progs),
        ];
        files.extend(draw_figure(dir, "programs", &panels, 2)?);
    }
    // ablation: SLUB/SLAB per mechanism.
    files.extend(crate::workloads::ablation::plot(rows, dir)?);
    // pages: provider vs mmap.
    let sel: Vec<&Row> = rows.iter().filter(|r| r.workload == "pages").collect();
    if !sel.is_empty() {
        let m = aggregate(
            &sel,
            |r| Some(F64Key(log2(r.size / common::PAGE_SIZE))),
            |r| r.ops_per_s * (r.size / common::PAGE_SIZE) as f64 / 1e6,
        );
        let panels = vec![Panel::new(
            "Page provider vs mmap/munmap (per CPU, all CPUs at once)",
            "order (log2 pages)",
            "M pages per second",
            series_from(&m, &allocs),
        )
        .log_y()];
        files.extend(draw_figure(dir, "pages", &panels, 1)?);
    }
    draw_nonempty(
        &mut files,
        dir,
        "latency",
        &latency_panels(rows, &allocs),
        3,
    )?;
    files.extend(crate::workloads::metadata::plot(rows, dir)?);
    Ok(files)
}

/// The latency workload's percentile plots (log-scale CDF tails): one panel per phase × size,
/// x = the number of nines of the quantile (-log10(1 - q): 1 = p90 … 5 = p99.999), y = cycles
/// on a log axis (0-cycle quantiles drawn at 1).
fn latency_panels(rows: &[Row], allocs: &[String]) -> Vec<Panel> {
    use crate::workloads::latency::{PHASES, QUANTILES};
    let nines = |m: &str| {
        QUANTILES
            .iter()
            .find(|(q, f)| *q == m && *f < 1.0)
            .map(|(_, f)| F64Key(-(1.0 - f).log10()))
    };
    let mut panels = Vec::new();
    for (phase, title) in PHASES {
        for size in sizes_of(rows, "latency") {
            let sel: Vec<&Row> = rows
                .iter()
                .filter(|r| r.workload == "latency" && r.phase == phase && r.size == size)
                .collect();
            if sel.is_empty() {
                continue;
            }
            let m = aggregate(&sel, |r| nines(&r.metric), |r| r.value.max(1.0));
            panels.push(
                Panel::new(
                    format!("{title}, {size} B"),
                    "quantile (nines): 0.3 = p50, 1 = p90, 2 = p99, 3 = p99.9, 4 = p99.99, 5 = p99.999",
                    "cycles (TSC, timer cost subtracted)",
                    series_from(&m, allocs),
                )
                .log_y(),
            );
        }
    }
    panels
}
