//! [`SlabError`]: every error of the slab API, with its message.

use super::name::CacheName;
use core::fmt;

/// Errors of the slab API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// `kmem_cache_create` with size 0.
    ZeroSize,
    /// A size above what the allocator can serve.
    TooLarge {
        /// Requested.
        size: usize,
        /// Largest possible.
        max: usize,
    },
    /// An alignment that is not a power of two, or larger than a page.
    BadAlign(usize),
    /// A cache name that is empty, too long (over [`CacheName::CAPACITY`] bytes) or not
    /// printable.
    BadName,
    /// The page provider could not supply memory.
    NoMemory,
    /// The address is not memory of this allocator.
    NotOurs(usize),
    /// The address is an object of another cache than the one named.
    WrongCache(usize),
    /// The address lies inside an object but not at its start.
    NotObjectStart(usize),
    /// The object is already free (detected in debug modes).
    DoubleFree(usize),
    /// A cache handle from another allocator instance, or of a destroyed cache.
    ForeignCache,
    /// `kmem_cache_destroy` of a cache that still has objects in use.
    Busy {
        /// Objects still allocated.
        objects: usize,
    },
    /// Debug checks found corrupted memory at this address.
    Corrupted(usize),
    /// A setting or tunable outside what the allocator accepts (what the kernel answers with
    /// `-EINVAL`); the text says which rule was broken.
    InvalidArgument(&'static str),
    /// `kmem_cache_destroy` of a cache the allocator itself owns (a kmalloc cache or the cache
    /// of `kmem_cache` objects), which is never destroyed.
    BootCache,
    /// A node index at or above the allocator's node count.
    NoSuchNode(usize),
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlabError::ZeroSize => write!(f, "object size 0 is not allowed"),
            SlabError::TooLarge { size, max } => {
                write!(f, "size {size} is larger than the largest possible ({max})")
            }
            SlabError::BadAlign(a) => write!(
                f,
                "alignment {a} is not a power of two no larger than the page size"
            ),
            SlabError::BadName => write!(
                f,
                "cache name must be 1..={} printable ASCII bytes",
                CacheName::CAPACITY
            ),
            SlabError::NoMemory => write!(f, "out of memory: the page provider refused"),
            SlabError::NotOurs(a) => {
                write!(f, "address {a:#x} was not allocated by this allocator")
            }
            SlabError::WrongCache(a) => write!(f, "object {a:#x} belongs to a different cache"),
            SlabError::NotObjectStart(a) => {
                write!(f, "address {a:#x} is inside an object, not at its start")
            }
            SlabError::DoubleFree(a) => write!(f, "double free of object {a:#x}"),
            SlabError::ForeignCache => {
                write!(
                    f,
                    "cache handle belongs to another allocator instance or was destroyed"
                )
            }
            SlabError::Busy { objects } => {
                write!(f, "cache still has {objects} objects in use")
            }
            SlabError::Corrupted(a) => write!(f, "memory corruption detected at {a:#x}"),
            SlabError::InvalidArgument(why) => write!(f, "invalid argument: {why}"),
            SlabError::BootCache => write!(f, "kmalloc and boot caches are never destroyed"),
            SlabError::NoSuchNode(n) => write!(f, "node {n} does not exist"),
        }
    }
}

impl std::error::Error for SlabError {}
