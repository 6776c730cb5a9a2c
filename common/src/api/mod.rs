//! The API both allocators implement, so the harness, the tests and the `GlobalAlloc` adapter
//! drive SLAB and SLUB the same way.
//!
//! An allocator is an *instance* (tests build many side by side, each on its own or a shared
//! [`PageProvider`](crate::provider::PageProvider)). Caches are named by an opaque
//! [`CacheHandle`] that carries the id of the instance that made it, so a handle given to the
//! wrong instance is refused with [`SlabError::ForeignCache`] instead of being dereferenced.
//!
//! Allocation returns `None` when the page provider cannot supply memory (the kernel's NULL);
//! frees return `Err` for input that is provably wrong (a pointer outside the allocator, into the
//! wrong cache, not at an object's start, or — in debug modes — a double free). Frees stay
//! `unsafe`: a pointer that *is* a live object of ours but still in use elsewhere cannot be
//! detected.
//!
//! That error contract is the `checked` [`KernelConfig`], the default. An instance created in the
//! `kernel` or `hardened` configuration does what the kernel does instead (see [`KernelConfig`]):
//! there a bad pointer is the caller's undefined behaviour, as in the kernel.
//!
//! ## Files (each uses only those below it; `error` and `name` use each other)
//! ```text
//!   global.rs     GlobalSlab: #[global_allocator] over a SlabAllocator; huge_alloc (own mapping)
//!   allocator.rs  trait SlabAllocator
//!   slabinfo.rs   SlabInfo (/proc/slabinfo row), MemoryUsage
//!   handle.rs     CacheHandle, new_instance_id
//!   name.rs       CacheName, check_cache_args          error.rs  SlabError
//!   flags.rs      SlabFlags, Ctor                       config.rs KernelConfig
//! ```

mod allocator;
mod config;
mod error;
mod flags;
mod global;
mod handle;
mod name;
mod slabinfo;

pub use allocator::SlabAllocator;
pub use config::KernelConfig;
pub use error::SlabError;
pub use flags::{Ctor, SlabFlags};
pub use global::{GlobalSlab, KMALLOC_GUARANTEED_ALIGN};
pub use handle::{new_instance_id, CacheHandle};
pub use name::{check_cache_args, CacheName};
pub use slabinfo::{MemoryUsage, SlabInfo};
