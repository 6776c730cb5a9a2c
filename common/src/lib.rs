//! # common — the ground both slab allocators stand on
//!
//! ```text
//!   testing     (feature `testing`) stress helpers, child-process tests, state explorer
//!   api/        SlabAllocator, SlabError, SlabFlags, CacheHandle, GlobalSlab
//!                 ◄── slab-classic and slub implement it; the harness drives it
//!   stats       one list → per-CPU counters          pin  core_affinity + sched_getcpu
//!   percpu      cpu_id, PerCpu, PerCpuLocked, LocalLock
//!   provider    buddy allocator per node; holds pcpu_alloc's state and lends it pages
//!   pcpu_alloc  chunks of 64-byte units behind PerCpu (pages through `ChunkPages`)
//!   page        struct page, mem_map, PAGE_SIZE, get_order ──► list (list_head)
//!   topology    sysfs | hwloc (feature; calls back into topology) | fake NUMA
//!   sysfs_fixtures  server topologies as small sysfs trees, for tests and the harness
//!   rseq_lock   local_trylock: one acquired word set in a sequence ──► rseq/, sync
//!   rseq/       restartable sequences, membarrier CPU fence, glibc's rseq area (also cpu_id's)
//!   dword       DoubleWord: 16-byte cmpxchg            exactdiv  object-start test (ExactDiv)
//!   sync        SpinLock, lockdep                      check     Violation: heap-free reports
//!   sizes       kmalloc tables                         sys       raw calls: mmap, mbind, getcpu
//! ```
//! A module uses only modules below it (the one exception is drawn: `hwloc` builds a
//! `Topology`). Every byte the allocators use comes from
//! [`provider::PageProvider`], which takes its own memory from `mmap` — never from the Rust heap —
//! so both allocators can serve as the process's global allocator and their memory overhead is
//! the provider's exact page count.

pub mod api;
pub mod check;
pub mod dword;
pub mod exactdiv;
#[cfg(feature = "hwloc")]
pub mod hwloc;
pub mod list;
pub mod page;
pub mod pcpu_alloc;
pub mod percpu;
pub mod pin;
pub mod provider;
pub mod rseq;
pub mod rseq_lock;
pub mod sizes;
pub mod stats;
pub mod sync;
pub mod sys;
pub mod sysfs_fixtures;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod topology;

pub use api::{
    CacheHandle, CacheName, Ctor, GlobalSlab, KernelConfig, MemoryUsage, SlabAllocator, SlabError,
    SlabFlags, SlabInfo,
};
pub use exactdiv::ExactDiv;
pub use page::{Owner, Page, SlabCounters};
pub use provider::{
    Gfp, PageError, PageProvider, ProviderConfig, MAX_ORDER, PAGE_SHIFT, PAGE_SIZE,
};
pub use topology::{Topology, MAX_NUMNODES, NR_CPUS};

/// Heap allocations under an allocator lock abort the unit-test binary (debug builds).
#[cfg(test)]
#[global_allocator]
static LOCK_CHECKED: crate::sync::LockCheckedAlloc = crate::sync::LockCheckedAlloc;
