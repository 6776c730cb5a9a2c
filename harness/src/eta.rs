//! Wall-time estimate before a run: a short calibration (alloc+free pairs of glibc malloc on
//! this thread) sets how fast this machine is against the one the per-unit costs below were
//! measured on; each workload's estimate = its progress units × seconds per unit there × the
//! run's scale (`--ops`, `--live-objects`) × that speed ratio. Printed when the whole run is
//! expected to take more than a minute. The progress bars show the ETA as they go.

use crate::cli::RunConfig;
use crate::workloads::Workload;
use std::time::Instant;

/// ns of one 64 B malloc+free pair on the reference run (the two-core VM of the measurements
/// in `seconds_per_unit`).
pub const REFERENCE_PAIR_NS: f64 = 5.4;

/// Seconds per progress unit on the reference run at the default `--ops 10000` and
/// `--live-objects 1000000` (`cargo run --release -p harness`, each workload's wall time ÷ its
/// units; the run prints both as `done in`).
fn seconds_per_unit(w: Workload) -> f64 {
    match w {
        Workload::SlabTest => 0.05,
        Workload::Latency => 0.24,
        Workload::RemoteFree => 0.035,
        Workload::Memory => 0.9,
        Workload::CustomCaches => 0.016,
        Workload::Scaling => 0.01,
        Workload::Pages => 0.07,
        Workload::Programs => 1.5,
        Workload::Ablation => 0.25,
    }
}

/// How the workload's cost grows with the run's configuration (1 at the defaults).
fn scale(w: Workload, cfg: &RunConfig) -> f64 {
    match w {
        Workload::Memory => cfg.live_objects as f64 / 1e6,
        Workload::Programs => 1.0,
        _ => cfg.ops as f64 / 10_000.0,
    }
}

/// ns per 64 B malloc+free pair on this thread (best of three short rounds).
pub fn calibrate_pair_ns() -> f64 {
    const N: u32 = 200_000;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..N {
            // SAFETY: malloc has no preconditions; free gets what malloc returned (or null).
            unsafe {
                let p = libc::malloc(std::hint::black_box(64));
                libc::free(std::hint::black_box(p));
            }
        }
        best = best.min(t.elapsed().as_nanos() as f64 / f64::from(N));
    }
    best
}

/// Estimated seconds for `w` with `units` progress units, on a machine whose pair costs
/// `pair_ns`.
pub fn estimate(w: Workload, units: u64, cfg: &RunConfig, pair_ns: f64) -> f64 {
    let speed = (pair_ns / REFERENCE_PAIR_NS).clamp(0.25, 8.0);
    units as f64 * seconds_per_unit(w) * scale(w, cfg) * speed
}

/// A duration for people: `42 s`, `3 min 5 s`, `1 h 2 min`.
pub fn human(s: f64) -> String {
    let s = s.round().max(0.0) as u64;
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s / 60 % 60)
    }
}
