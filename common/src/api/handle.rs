//! [`CacheHandle`]: an opaque cache name that carries its allocator instance's id.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

static NEXT_INSTANCE: AtomicU32 = AtomicU32::new(1);

/// A fresh allocator-instance id for [`CacheHandle`]s.
pub fn new_instance_id() -> u32 {
    NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed)
}

/// An opaque reference to a cache of one allocator instance.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CacheHandle {
    ptr: NonNull<u8>,
    instance: u32,
}

// SAFETY: a handle is an address and an id; all use goes through the allocator, which checks the
// instance and synchronises internally.
unsafe impl Send for CacheHandle {}
// SAFETY: see Send.
unsafe impl Sync for CacheHandle {}

impl CacheHandle {
    /// Made by an allocator for its cache structure at `ptr`.
    pub fn new(ptr: NonNull<u8>, instance: u32) -> Self {
        Self { ptr, instance }
    }
    /// The cache structure's address.
    pub fn ptr(self) -> NonNull<u8> {
        self.ptr
    }
    /// The instance that made it.
    pub fn instance(self) -> u32 {
        self.instance
    }
}
