//! Thread placement: pin to a CPU with `core_affinity` and verify with `sched_getcpu()`.

use core::fmt;

/// Why a thread could not be placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinError {
    /// `sched_setaffinity` refused (CPU offline, outside our cpuset, or no such CPU).
    Refused(usize),
    /// The thread runs on another CPU after pinning.
    Mismatch {
        /// Wanted.
        wanted: usize,
        /// Where `sched_getcpu` says we are.
        got: usize,
    },
}

impl fmt::Display for PinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinError::Refused(c) => write!(
                f,
                "cannot pin thread to CPU {c} (not in our affinity mask?)"
            ),
            PinError::Mismatch { wanted, got } => {
                write!(f, "pinned to CPU {wanted} but sched_getcpu() says {got}")
            }
        }
    }
}

impl std::error::Error for PinError {}

/// CPUs this process may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Vec<usize> {
    let mut v: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    v.sort_unstable();
    v
}

/// Pins the calling thread to `cpu` and checks with `sched_getcpu()` that it runs there.
pub fn pin_to_cpu(cpu: usize) -> Result<(), PinError> {
    // core_affinity indexes a fixed-size cpu_set_t and panics beyond it.
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(PinError::Refused(cpu));
    }
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        return Err(PinError::Refused(cpu));
    }
    // The migration happens at the latest at the next scheduling point; yield once so it has.
    std::thread::yield_now();
    match crate::sys::sched_getcpu() {
        Some(got) if got == cpu => Ok(()),
        Some(got) => Err(PinError::Mismatch { wanted: cpu, got }),
        None => Err(PinError::Refused(cpu)),
    }
}

#[cfg(all(test, not(miri)))]
mod tests {
    use super::*;

    #[test]
    fn pin_each_allowed_cpu_and_verify() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        for &c in &cpus {
            std::thread::spawn(move || {
                pin_to_cpu(c).unwrap();
                assert_eq!(
                    crate::percpu::cpu_id(),
                    c,
                    "rseq/sched_getcpu id after pinning"
                );
            })
            .join()
            .unwrap();
        }
        assert!(pin_to_cpu(100_000).is_err());
    }
}
