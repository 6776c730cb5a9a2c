//! Worker placement: one thread per chosen CPU, pinned with `core_affinity`, its CPU verified
//! with `sched_getcpu()` (a mismatch aborts the run), its memory preferred on its node, started
//! together from a barrier.

use common::Topology;
use std::sync::Barrier;

/// What a worker knows about where it runs.
pub struct Worker<'a> {
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
pub fn run_pinned<T: Send>(
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
                        Ok(()) => Ok(f(&w)),
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
