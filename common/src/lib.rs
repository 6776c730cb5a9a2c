//! # common — the ground both slab allocators stand on
//!
//! ```text
//!   api (SlabAllocator, GlobalSlab)        ◄── slab-classic, slub implement it; harness drives it
//!   sizes (kmalloc tables)   stats (one list → per-CPU counters)
//!   percpu (cpu_id, PerCpu, LocalLock)     sync (SpinLock)
//!   rseq_lock (local_trylock: acquired word) ──► rseq (restartable sequences, membarrier fence)
//!   pcpu_alloc (chunks of 64-byte units behind PerCpu, state in the provider)
//!   provider (buddy allocator per node) ──► page (struct page, mem_map) ──► list (list_head)
//!   topology (sysfs | hwloc | fake NUMA)   pin (core_affinity + sched_getcpu)
//!   sysfs_fixtures (server topologies as small sysfs trees, for tests and the harness)
//!   sys (mmap, madvise, mbind, get_mempolicy, getcpu: raw calls, no heap)
//!   testing (feature `testing`: stress helpers for the allocators' integration tests)
//! ```
//! Dependencies only point down. Every byte the allocators use comes from
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
#[cfg(feature = "testing")]
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
