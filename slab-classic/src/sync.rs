//! `RawLock`: a bare spinlock word for structures that live in page-provider memory and are
//! reached through raw pointers (`kmem_list3.list_lock`, the `array_cache.lock` of shared and
//! alien arrays). It is the workspace's one spinlock ([`common::sync::RawSpinLock`]): it never
//! allocates, waits by spinning briefly then yielding, and keeps the debug-build lock depth
//! that forbids heap allocation while it is held.

/// `spinlock_t` without a guard: callers pair `lock`/`unlock` by hand, as the kernel does.
pub(crate) type RawLock = common::sync::RawSpinLock;
