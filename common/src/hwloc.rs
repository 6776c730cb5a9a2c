//! Topology from libhwloc (cargo feature `hwloc`, through `hwlocality`).

use crate::topology::{CpuMask, Topology, TopologyError, TopologySource, NR_CPUS};
use hwlocality::object::attributes::ObjectAttributes;
use hwlocality::object::types::ObjectType;

/// The machine as hwloc sees it: NUMA nodes with their CPU sets, distances from sysfs (hwloc's
/// distance matrices need a kind query that varies by version; the kernel's table is the same
/// source hwloc reads on Linux), cache line size from hwloc's L1 data cache.
pub fn topology() -> Result<Topology, TopologyError> {
    let topo = hwlocality::Topology::new().map_err(|_| TopologyError::Hwloc)?;
    let mut nodes: Vec<(usize, CpuMask)> = Vec::new();
    for obj in topo.objects_with_type(ObjectType::NUMANode) {
        let id = obj.os_index().ok_or(TopologyError::Hwloc)?;
        let mut mask = CpuMask::new();
        if let Some(cpuset) = obj.cpuset() {
            for pu in cpuset.iter_set() {
                let c = usize::from(pu);
                if c >= NR_CPUS {
                    return Err(TopologyError::TooBig);
                }
                mask.set(c);
            }
        }
        nodes.push((id, mask));
    }
    nodes.sort_by_key(|(id, _)| *id);
    let line = topo
        .objects_with_type(ObjectType::L1Cache)
        .find_map(|o| match o.attributes() {
            Some(ObjectAttributes::Cache(c)) => c.line_size(),
            _ => None,
        })
        .map_or(64, std::num::NonZeroUsize::get);
    // Distances as the kernel reports them (hwloc reads the same sysfs files).
    let sys = Topology::from_sysfs().ok();
    let dist: Option<Vec<u8>> = sys
        .as_ref()
        .filter(|s| s.nr_nodes() == nodes.len())
        .map(|s| {
            let n = nodes.len();
            (0..n * n).map(|k| s.node_distance(k / n, k % n)).collect()
        });
    Topology::from_parts(TopologySource::Hwloc, &nodes, dist.as_deref(), line)
}
