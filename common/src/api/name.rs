//! Cache names ([`CacheName`], inline, no heap) and the shared check of `kmem_cache_create`'s
//! arguments ([`check_cache_args`]).

use super::error::SlabError;
use crate::provider::PAGE_SIZE;
use core::fmt;

/// Validates the arguments of `kmem_cache_create` the same way for both allocators.
pub fn check_cache_args(
    name: &str,
    size: usize,
    align: usize,
    max: usize,
) -> Result<CacheName, SlabError> {
    let n = CacheName::new(name)?;
    if size == 0 {
        return Err(SlabError::ZeroSize);
    }
    if size > max {
        return Err(SlabError::TooLarge { size, max });
    }
    if align != 0 && (!align.is_power_of_two() || align > PAGE_SIZE) {
        return Err(SlabError::BadAlign(align));
    }
    Ok(n)
}

/// A cache name stored inline (no heap), at most [`CacheName::CAPACITY`] bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheName {
    buf: [u8; Self::CAPACITY],
    len: u8,
}

impl CacheName {
    /// Longest name (the kernel's slabinfo column is 17 wide; names run to ~32 in practice).
    pub const CAPACITY: usize = 48;

    /// Checks and stores `s`.
    pub fn new(s: &str) -> Result<Self, SlabError> {
        if s.is_empty()
            || s.len() > Self::CAPACITY
            || !s.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        {
            return Err(SlabError::BadName);
        }
        let mut buf = [0; Self::CAPACITY];
        buf[..s.len()].copy_from_slice(s.as_bytes());
        Ok(Self {
            buf,
            len: s.len() as u8,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only printable ASCII is ever stored.
        core::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SlabError;

    #[test]
    fn names_checked() {
        assert!(CacheName::new("dentry").is_ok());
        assert_eq!(CacheName::new(""), Err(SlabError::BadName));
        assert_eq!(CacheName::new("a\nb"), Err(SlabError::BadName));
        assert_eq!(CacheName::new(&"x".repeat(49)), Err(SlabError::BadName));
        assert_eq!(CacheName::new("kmalloc-96").unwrap().as_str(), "kmalloc-96");
    }

    #[test]
    fn cache_args_checked() {
        assert_eq!(check_cache_args("a", 0, 0, 100), Err(SlabError::ZeroSize));
        assert_eq!(
            check_cache_args("a", 101, 0, 100),
            Err(SlabError::TooLarge {
                size: 101,
                max: 100
            })
        );
        assert_eq!(
            check_cache_args("a", 8, 3, 100),
            Err(SlabError::BadAlign(3))
        );
        assert_eq!(
            check_cache_args("a", 8, 8192, 100),
            Err(SlabError::BadAlign(8192))
        );
        assert!(check_cache_args("a", 8, 64, 100).is_ok());
    }
}
