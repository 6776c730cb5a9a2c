//! kmalloc size classes, listed once each and expanded by one macro — the user-space form of
//! 2.6.32's `include/linux/kmalloc_sizes.h` X-macro.
//!
//! [`kmalloc_sizes!`] takes a table name, a name prefix and the list of `size => "suffix"` entries
//! and expands into: `SIZES` (the array `malloc_sizes[]` is built from), `NAMES` (`cache_names[]`),
//! `NR` and a `const fn index_of(size)` that, in a `const` context, turns a size beyond the last
//! class into a build error — the kernel's call to the undefined `__bad_size()`:
//!
//! ```compile_fail
//! // 64 MiB is above slab-classic's KMALLOC_MAX_SIZE (4 MiB): this does not compile.
//! const BAD: usize = common::sizes::slab::index_of(64 << 20);
//! ```
//! ```
//! const INDEX_AC: usize = common::sizes::slab::index_of(40);
//! assert_eq!(common::sizes::slab::NAMES[INDEX_AC], "size-64");
//! ```
//!
//! The tables are those of x86-64 with 64-byte cache lines and 4 KiB pages
//! (`reference/kernel.md` §1.2).

/// Expands one size-class list into `SIZES`, `NAMES`, `NR`, `MAX_SIZE`, `index_of` and
/// `find_index` (the runtime linear scan, `__find_general_cachep`).
#[macro_export]
macro_rules! kmalloc_sizes {
    ($(#[$m:meta])* $vis:vis mod $table:ident, prefix = $prefix:literal, [ $($size:literal => $suffix:literal),+ $(,)? ]) => {
        $(#[$m])*
        $vis mod $table {
            /// Class sizes in bytes, ascending.
            pub const SIZES: &[usize] = &[$($size),+];
            /// Cache names, in the same order.
            pub const NAMES: &[&str] = &[$(concat!($prefix, $suffix)),+];
            /// Number of classes.
            pub const NR: usize = SIZES.len();
            /// The largest class (`KMALLOC_MAX_SIZE` for the table).
            pub const MAX_SIZE: usize = SIZES[NR - 1];

            /// `index_of(size)`: the first class with `size <= class`. Evaluated at compile time
            /// where used in a `const`; a size above the last class is then a build error.
            pub const fn index_of(size: usize) -> usize {
                let mut i = 0;
                while i < NR {
                    if size <= SIZES[i] {
                        return i;
                    }
                    i += 1;
                }
                panic!("__bad_size: no kmalloc class this large");
            }

            /// Runtime lookup (`__find_general_cachep`'s linear scan): the class index for
            /// `size`, or `None` if it is larger than every class or zero.
            #[inline]
            pub fn find_index(size: usize) -> Option<usize> {
                if size == 0 {
                    return None;
                }
                SIZES.iter().position(|&s| size <= s)
            }
        }
    };
}

kmalloc_sizes! {
    /// SLAB as Linux 2.6.32 ships it on x86-64 (`L1_CACHE_BYTES` 64, so no `size-96`; 192 present;
    /// `KMALLOC_MAX_SIZE = 2^min(MAX_ORDER + PAGE_SHIFT − 1, 25)` = 4 MiB).
    pub mod slab, prefix = "size-", [
        32 => "32", 64 => "64", 128 => "128", 192 => "192", 256 => "256", 512 => "512",
        1024 => "1024", 2048 => "2048", 4096 => "4096", 8192 => "8192", 16384 => "16384",
        32768 => "32768", 65536 => "65536", 131072 => "131072", 262144 => "262144",
        524288 => "524288", 1048576 => "1048576", 2097152 => "2097152", 4194304 => "4194304",
    ]
}

kmalloc_sizes! {
    /// SLUB as Linux 6.4 ships it (`KMALLOC_MIN_SIZE` 8, the 96 and 192 classes,
    /// `KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1`, so the largest cache is `kmalloc-8k`; larger requests
    /// go to the page allocator). Names as `kmalloc_info[]` spells them.
    pub mod slub, prefix = "kmalloc-", [
        8 => "8", 16 => "16", 32 => "32", 64 => "64", 96 => "96", 128 => "128", 192 => "192",
        256 => "256", 512 => "512", 1024 => "1k", 2048 => "2k", 4096 => "4k", 8192 => "8k",
    ]
}

/// SLUB's kernel numbering of kmalloc caches (`kmalloc_caches[type][index]`, index = log2 size,
/// with 1 = 96 B and 2 = 192 B) and its runtime lookup `kmalloc_slab()`.
pub mod slub_index {
    use super::slub;

    /// `KMALLOC_SHIFT_LOW` for SLUB.
    pub const KMALLOC_SHIFT_LOW: usize = 3;
    /// `KMALLOC_SHIFT_HIGH` = `PAGE_SHIFT + 1`.
    pub const KMALLOC_SHIFT_HIGH: usize = 13;
    /// `KMALLOC_MAX_CACHE_SIZE`.
    pub const KMALLOC_MAX_CACHE_SIZE: usize = 1 << KMALLOC_SHIFT_HIGH;
    /// `KMALLOC_MAX_SIZE` = `1 << (MAX_ORDER + PAGE_SHIFT)` with 6.4's inclusive MAX_ORDER 10:
    /// 4 MiB, the largest kmalloc served from whole pages.
    pub const KMALLOC_MAX_SIZE: usize = 1 << 22;

    /// `size_index[]` of `mm/slab_common.c`: the kernel index for sizes 1..=192, by `(size−1)/8`.
    pub const SIZE_INDEX: [u8; 24] = [
        3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2,
    ];

    /// `__kmalloc_index(size)` (compile-time form): the kernel index of the cache for `size`.
    pub const fn kmalloc_index(size: usize) -> usize {
        if size == 0 {
            return 0;
        }
        if size <= 8 {
            return KMALLOC_SHIFT_LOW;
        }
        if size > 64 && size <= 96 {
            return 1;
        }
        if size > 128 && size <= 192 {
            return 2;
        }
        let mut shift = 4;
        while shift <= KMALLOC_SHIFT_HIGH {
            if size <= 1 << shift {
                return shift;
            }
            shift += 1;
        }
        panic!("__bad_size: larger than KMALLOC_MAX_CACHE_SIZE");
    }

    /// `fls`: one-based index of the highest set bit (0 for 0).
    #[inline(always)]
    pub const fn fls(x: usize) -> usize {
        (usize::BITS - x.leading_zeros()) as usize
    }

    /// `kmalloc_slab()`'s index computation: `size_index[(size−1)/8]` up to 192 bytes, else
    /// `fls(size−1)`. `None` for 0 or above `KMALLOC_MAX_CACHE_SIZE`.
    #[inline(always)]
    pub fn kmalloc_slab_index(size: usize) -> Option<usize> {
        if size == 0 || size > KMALLOC_MAX_CACHE_SIZE {
            return None;
        }
        if size <= 192 {
            Some(SIZE_INDEX[(size - 1) / 8] as usize)
        } else {
            Some(fls(size - 1))
        }
    }

    /// Position in [`slub::SIZES`] of the cache with kernel index `index`.
    #[inline(always)]
    pub const fn position_of(index: usize) -> usize {
        match index {
            1 => 4,             // 96
            2 => 6,             // 192
            3..=6 => index - 3, // 8, 16, 32, 64
            7 => 5,             // 128
            _ => index - 1,     // 256 = 8 → 7, …, 8192 = 13 → 12
        }
    }

    /// Runtime lookup of the table position for `size` through the kernel's index.
    #[inline(always)]
    pub fn find_position(size: usize) -> Option<usize> {
        kmalloc_slab_index(size).map(position_of)
    }

    const _: () = assert!(slub::SIZES[position_of(1)] == 96);
    const _: () = assert!(slub::SIZES[position_of(2)] == 192);
    const _: () = assert!(slub::SIZES[position_of(13)] == 8192);
    const _: () = assert!(slub::SIZES[position_of(7)] == 128);
    const _: () = assert!(slub::SIZES[position_of(8)] == 256);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_table_entries_and_names() {
        assert_eq!(slab::NR, 19);
        assert_eq!(slab::SIZES[0], 32);
        assert_eq!(slab::NAMES[0], "size-32");
        assert_eq!(slab::NAMES[3], "size-192");
        assert!(!slab::SIZES.contains(&96), "no size-96 with 64-byte lines");
        assert_eq!(slab::MAX_SIZE, 4 << 20);
        assert_eq!(*slab::NAMES.last().unwrap(), "size-4194304");
        for w in slab::SIZES.windows(2) {
            assert!(w[0] < w[1]);
        }
    }

    #[test]
    fn slab_boundaries() {
        for (i, &s) in slab::SIZES.iter().enumerate() {
            assert_eq!(slab::index_of(s), i);
            assert_eq!(slab::find_index(s), Some(i));
            if i + 1 < slab::NR {
                assert_eq!(slab::find_index(s + 1), Some(i + 1));
            } else {
                assert_eq!(slab::find_index(s + 1), None);
            }
        }
        assert_eq!(slab::find_index(1), Some(0));
        assert_eq!(slab::find_index(0), None);
    }

    #[test]
    fn compile_time_index_of() {
        const I: usize = slab::index_of(100);
        const J: usize = slub::index_of(100);
        assert_eq!(slab::SIZES[I], 128);
        assert_eq!(slub::SIZES[J], 128);
    }

    #[test]
    fn slub_table_and_kernel_indices() {
        assert_eq!(
            slub::NAMES,
            &[
                "kmalloc-8",
                "kmalloc-16",
                "kmalloc-32",
                "kmalloc-64",
                "kmalloc-96",
                "kmalloc-128",
                "kmalloc-192",
                "kmalloc-256",
                "kmalloc-512",
                "kmalloc-1k",
                "kmalloc-2k",
                "kmalloc-4k",
                "kmalloc-8k"
            ]
        );
        // Every size 1..=8192: the runtime size_index/fls path agrees with the smallest fitting
        // class and with the compile-time __kmalloc_index.
        for size in 1..=slub_index::KMALLOC_MAX_CACHE_SIZE {
            let pos = slub_index::find_position(size).unwrap();
            assert_eq!(Some(pos), slub::find_index(size), "size {size}");
            assert_eq!(
                slub_index::position_of(slub_index::kmalloc_index(size)),
                pos
            );
        }
        assert_eq!(slub_index::find_position(8193), None);
        assert_eq!(slub_index::find_position(0), None);
        assert_eq!(slub_index::kmalloc_slab_index(65), Some(1));
        assert_eq!(slub_index::kmalloc_slab_index(193), Some(8));
    }
}
