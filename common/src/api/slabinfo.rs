//! Introspection rows: [`SlabInfo`] (`/proc/slabinfo` 2.1) and [`MemoryUsage`].

use super::name::CacheName;
use crate::page::Owner;
use crate::provider::{PageProvider, PAGE_SIZE};
use core::fmt;

/// One row of `/proc/slabinfo` (version 2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlabInfo {
    /// Cache name.
    pub name: CacheName,
    /// Objects in use.
    pub active_objs: usize,
    /// Objects in all slabs.
    pub num_objs: usize,
    /// Object stride in bytes (`buffer_size` / `size`).
    pub objsize: usize,
    /// Objects per slab.
    pub objperslab: usize,
    /// Pages per slab.
    pub pagesperslab: usize,
    /// SLAB tunable `limit` (0 for SLUB).
    pub limit: usize,
    /// SLAB tunable `batchcount` (0 for SLUB).
    pub batchcount: usize,
    /// SLAB tunable `shared` (0 for SLUB).
    pub sharedfactor: usize,
    /// Slabs with at least one object in use.
    pub active_slabs: usize,
    /// All slabs.
    pub num_slabs: usize,
    /// Objects in shared arrays (SLAB), 0 for SLUB.
    pub sharedavail: usize,
}

impl SlabInfo {
    /// The header lines of `/proc/slabinfo` 2.1.
    pub const HEADER: &'static str = "slabinfo - version: 2.1\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>";
}

impl fmt::Display for SlabInfo {
    /// The row exactly as `s_show` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<17} {:6} {:6} {:6} {:4} {:4} : tunables {:4} {:4} {:4} : slabdata {:6} {:6} {:6}",
            self.name.as_str(),
            self.active_objs,
            self.num_objs,
            self.objsize,
            self.objperslab,
            self.pagesperslab,
            self.limit,
            self.batchcount,
            self.sharedfactor,
            self.active_slabs,
            self.num_slabs,
            self.sharedavail
        )
    }
}

/// Memory an allocator holds, from the page provider's exact accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Pages held now, everything included (slabs, large kmallocs, metadata).
    pub pages: usize,
    /// Most pages held at once.
    pub peak_pages: usize,
    /// Pages in slabs.
    pub slab_pages: usize,
    /// Pages of large kmallocs (whole-page allocations).
    pub large_pages: usize,
    /// Pages of the allocator's own structures outside slabs.
    pub metadata_pages: usize,
}

impl MemoryUsage {
    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.pages * PAGE_SIZE
    }
    /// From a provider used by one allocator whose slab pages carry `slab_owner`.
    pub fn from_provider(p: &PageProvider, slab_owner: Owner) -> Self {
        let s = p.stats();
        Self {
            pages: s.pages_in_use,
            peak_pages: s.peak_pages,
            slab_pages: s.owner(slab_owner),
            large_pages: s.owner(Owner::LargeKmalloc),
            metadata_pages: s.owner(Owner::Metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CacheName;

    #[test]
    fn slabinfo_row_format() {
        let r = SlabInfo {
            name: CacheName::new("size-64").unwrap(),
            active_objs: 10,
            num_objs: 59,
            objsize: 64,
            objperslab: 59,
            pagesperslab: 1,
            limit: 120,
            batchcount: 60,
            sharedfactor: 8,
            active_slabs: 1,
            num_slabs: 1,
            sharedavail: 0,
        };
        assert_eq!(
            r.to_string(),
            "size-64               10     59     64   59    1 : tunables  120   60    8 : slabdata      1      1      0"
        );
    }
}
