//! Worker placement: one thread per chosen CPU, pinned with `core_affinity`, its CPU verified
//! with `sched_getcpu()` (a mismatch aborts the run), its memory preferred on its node, started
//! together from a barrier. When it finishes, `getcpu()` is read again and logged (the run
//! directory's `placement.csv`, checked by `scripts/numa-vm.sh harness`).

use common::Topology;
use std::sync::{Barrier, Mutex};

/// Where one worker was pinned and where the kernel said it was when it finished
/// (`getcpu()`), for `placement.csv`.
#[derive(Clone, Debug)]
pub(crate) struct Placed {
    /// What ran (`workload/allocator`, set by [`set_context`]).
    pub context: String,
    /// Worker index.
    pub worker: usize,
    /// The CPU it was pinned to (verified with `sched_getcpu()` when pinned).
    pub pinned_cpu: usize,
    /// `getcpu()` CPU after the work.
    pub cpu_after: usize,
    /// The kernel node the pinned CPU belongs to (the real node behind its logical node).
    pub expected_node: usize,
    /// `getcpu()` node after the work.
    pub node_after: usize,
}

static LOG: Mutex<Vec<Placed>> = Mutex::new(Vec::new());
static CONTEXT: Mutex<String> = Mutex::new(String::new());

/// Names what the next workers run (for [`Placed::context`]).
pub(crate) fn set_context(s: &str) {
    *CONTEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = s.to_string();
}

/// Every worker placement recorded so far (the log is emptied).
pub(crate) fn take_log() -> Vec<Placed> {
    std::mem::take(
        &mut *LOG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

fn record(index: usize, cpu: usize, topo: &Topology) {
    let (cpu_after, node_after) = common::sys::getcpu().unwrap_or((usize::MAX, usize::MAX));
    let context = CONTEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    LOG.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Placed {
            context,
            worker: index,
            pinned_cpu: cpu,
            cpu_after,
            expected_node: topo.real_node(topo.cpu_to_node(cpu)),
            node_after,
        });
}

/// What a worker knows about where it runs.
pub(crate) struct Worker<'a> {
    /// Index among the workers (0-based).
    pub index: usize,
    /// The CPU it is pinned to.
    pub cpu: usize,
    /// Its logical (possibly fake) node.
    pub node: usize,
    /// All workers wait here before the timed part.
    pub barrier: &'a Barrier,
}

/// Runs `f` on one pinned thread per entry of `cpus` and returns the results in order.
/// With a real multi-node machine each thread's memory policy prefers its own node, so baseline
/// allocators (glibc, mimalloc) also get node-local pages; the slab allocators place memory by
/// node themselves through the page provider.
pub(crate) fn run_pinned<T: Send>(
    cpus: &[usize],
    topo: &Topology,
    f: impl Fn(&Worker<'_>) -> T + Sync,
) -> Result<Vec<T>, String> {
    let barrier = Barrier::new(cpus.len());
    let real_numa = topo.fake_numa().is_none() && topo.nr_real_nodes() > 1;
    std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter()
            .enumerate()
            .map(|(index, &cpu)| {
                let barrier = &barrier;
                let f = &f;
                s.spawn(move || -> Result<T, String> {
                    let pinned = common::pin::pin_to_cpu(cpu);
                    let node = topo.cpu_to_node(cpu);
                    if real_numa {
                        let _ = crate::sysinfo::set_preferred_node(topo.real_node(node));
                    }
                    let w = Worker {
                        index,
                        cpu,
                        node,
                        barrier,
                    };
                    // Every worker reaches the barrier even when pinning failed, so the others
                    // are not left waiting; the error is returned after.
                    match pinned {
                        Ok(()) => {
                            let v = f(&w);
                            record(index, cpu, topo);
                            Ok(v)
                        }
                        Err(e) => {
                            barrier.wait();
                            Err(format!("worker {index}: {e}"))
                        }
                    }
                })
            })
            .collect();
        let mut out = Vec::with_capacity(cpus.len());
        let mut err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(v)) => out.push(v),
                Ok(Err(e)) => err = Some(e),
                Err(_) => err = Some("a worker thread panicked".to_string()),
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    })
}
