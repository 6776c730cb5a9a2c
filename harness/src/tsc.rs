//! Cycle counting: the TSC (`rdtsc`), calibrated against the monotonic clock, as Lameter's
//! `slab_test` reports "cycles per op" from `get_cycles()`.

use std::time::Instant;

/// Reads the time-stamp counter (x86-64); elsewhere, nanoseconds from the monotonic clock.
#[inline(always)]
pub(crate) fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions and no memory effects.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<Instant> = OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// TSC ticks per nanosecond, measured over `ms` milliseconds.
pub(crate) fn calibrate(ms: u64) -> f64 {
    let t0 = Instant::now();
    let c0 = rdtsc();
    while t0.elapsed().as_millis() < u128::from(ms) {
        std::hint::spin_loop();
    }
    let c1 = rdtsc();
    let ns = t0.elapsed().as_nanos() as f64;
    ((c1.wrapping_sub(c0)) as f64 / ns).max(1e-6)
}
