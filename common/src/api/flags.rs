//! Cache creation flags ([`SlabFlags`], the kernel's `SLAB_*`) and the constructor type [`Ctor`].

/// A constructor run on every object when its slab is created (`void (*ctor)(void *)`).
pub type Ctor = unsafe fn(*mut u8);

/// Cache creation flags, with the kernel's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct SlabFlags(pub u32);

impl SlabFlags {
    /// No flags.
    pub const NONE: SlabFlags = SlabFlags(0);
    /// `SLAB_CONSISTENCY_CHECKS` (2.6.32: `SLAB_DEBUG_FREE`): extra checks on free (`F`).
    pub const CONSISTENCY_CHECKS: SlabFlags = SlabFlags(1 << 0);
    /// `SLAB_RED_ZONE` (`Z`).
    pub const RED_ZONE: SlabFlags = SlabFlags(1 << 1);
    /// `SLAB_POISON` (`P`).
    pub const POISON: SlabFlags = SlabFlags(1 << 2);
    /// `SLAB_STORE_USER` (`U`).
    pub const STORE_USER: SlabFlags = SlabFlags(1 << 3);
    /// `SLAB_TRACE` (`T`).
    pub const TRACE: SlabFlags = SlabFlags(1 << 4);
    /// `SLAB_HWCACHE_ALIGN`: align objects on cache lines.
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(1 << 5);
    /// `SLAB_CACHE_DMA`.
    pub const CACHE_DMA: SlabFlags = SlabFlags(1 << 6);
    /// `SLAB_RECLAIM_ACCOUNT`.
    pub const RECLAIM_ACCOUNT: SlabFlags = SlabFlags(1 << 7);
    /// `SLAB_PANIC`: creation failure is fatal (here: still an `Err`, the caller decides).
    pub const PANIC: SlabFlags = SlabFlags(1 << 8);
    /// `SLAB_TYPESAFE_BY_RCU` (2.6.32: `SLAB_DESTROY_BY_RCU`).
    pub const TYPESAFE_BY_RCU: SlabFlags = SlabFlags(1 << 9);
    /// `SLAB_MEM_SPREAD`.
    pub const MEM_SPREAD: SlabFlags = SlabFlags(1 << 10);
    /// `SLAB_NOLEAKTRACE`.
    pub const NOLEAKTRACE: SlabFlags = SlabFlags(1 << 11);
    /// `SLAB_ACCOUNT`.
    pub const ACCOUNT: SlabFlags = SlabFlags(1 << 12);
    /// `SLAB_KMALLOC`: the cache is one of the kmalloc caches.
    pub const KMALLOC: SlabFlags = SlabFlags(1 << 13);
    /// `SLAB_NO_MERGE`: never merge this cache with another (6.4's `SLAB_NO_MERGE`).
    pub const NO_MERGE: SlabFlags = SlabFlags(1 << 14);

    /// Whether all bits of `other` are set.
    pub const fn contains(self, other: SlabFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: SlabFlags) -> bool {
        self.0 & other.0 != 0
    }
    /// `self` without the bits of `other`.
    pub const fn without(self, other: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 & !other.0)
    }
    /// `self` with the bits of `other`.
    pub const fn with(self, other: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | other.0)
    }
}

impl core::ops::BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, rhs: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for SlabFlags {
    fn bitor_assign(&mut self, rhs: SlabFlags) {
        self.0 |= rhs.0;
    }
}
