//! `slub_debug` (mm/slub.c 6.4, "Debug settings" and "Object debugging"): the `slub_debug=`
//! option, red zones, poisoning, alloc/free tracks, `check_object`, `on_freelist`, the debug
//! alloc and free paths that run under the node's `list_lock`, and the per-slab part of
//! `validate_slab_cache`.
//!
//! Object layout of a debug cache (offsets from the slot start; `object = slot + red_left_pad`):
//! ```text
//! [ left red zone: red_left_pad ][ object: object_size ][ right red zone .. inuse ]
//! [ free pointer (if outside the object) ][ track alloc | track free (U) ][ orig_size (U+kmalloc) ]
//! [ padding 0x5a .. size ]
//! ```
//! Red zones hold `0xbb` while the object is free, `0xcc` while allocated; a poisoned free
//! object is `0x6b … 0x6b 0xa5`; padding is `0x5a`. Every detection is *reported* (one
//! [`DebugReport`], counted) and then *fixed* (one more report of kind [`ReportKind::Fix`],
//! counted), which is why the kernel's kunit tests expect 2 per corruption.
//!
//! Every function here runs on a cold path: debug caches never use CPU slabs (see
//! `slowpath::__slab_alloc` / `__slab_free`), and all their slab changes happen under the
//! node's `list_lock`.
//!
//! ## Files (each uses only those below it)
//! ```text
//!   paths.rs   alloc_debug / free_to_partial_list: the debug alloc and free paths (list_lock held)
//!   check.rs   check_object, check_slab, on_freelist, validate_slab
//!   report.rs  DebugReport, slab_err / slab_fix / object_err
//!   layout.rs  struct track, get_info_end, orig_size, set_track, init_object, setup_object_debug
//!   option.rs  slub_debug=: SlubDebug, kmem_cache_flags
//! ```

mod check;
mod layout;
mod option;
mod paths;
mod report;

use common::SlabFlags;

pub(crate) use check::validate_slab;
pub use layout::Track;
pub(crate) use layout::{
    get_info_end, get_orig_size, kmalloc_debug_orig_size, set_orig_size, setup_object_debug,
    setup_slab_debug, skip_orig_size_check,
};
pub use option::SlubDebug;
pub(crate) use option::{disable_higher_order_debug, env_slub_debug, kmem_cache_flags};
pub(crate) use paths::{alloc_debug, free_to_partial_list};
pub(crate) use report::{report_count_mismatch, report_leak};
pub use report::{DebugReport, ReportFn, ReportKind};

/// `SLUB_RED_INACTIVE`: red-zone byte of a free object.
pub const SLUB_RED_INACTIVE: u8 = 0xbb;
/// `SLUB_RED_ACTIVE`: red-zone byte of an allocated object.
pub const SLUB_RED_ACTIVE: u8 = 0xcc;
/// `POISON_INUSE`: padding.
pub const POISON_INUSE: u8 = 0x5a;
/// `POISON_FREE`: poison of a free object.
pub const POISON_FREE: u8 = 0x6b;
/// `POISON_END`: last byte of a poisoned object.
pub const POISON_END: u8 = 0xa5;
/// `DEBUG_DEFAULT_FLAGS`: `slub_debug` with no letters (F, Z, P, U).
pub const DEBUG_DEFAULT_FLAGS: SlabFlags = SlabFlags(
    SlabFlags::CONSISTENCY_CHECKS.0
        | SlabFlags::RED_ZONE.0
        | SlabFlags::POISON.0
        | SlabFlags::STORE_USER.0,
);
/// `SLAB_DEBUG_FLAGS`: the flags that make a cache a debug cache.
pub(crate) const SLAB_DEBUG_FLAGS: SlabFlags =
    SlabFlags(DEBUG_DEFAULT_FLAGS.0 | SlabFlags::TRACE.0);
/// `DEBUG_METADATA_FLAGS`: the flags that change the object layout.
pub(crate) const DEBUG_METADATA_FLAGS: SlabFlags =
    SlabFlags(SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0 | SlabFlags::STORE_USER.0);
/// `sizeof(struct track)` here.
pub(crate) const TRACK_SIZE: usize = 32;

#[cfg(test)]
mod tests {
    use super::check::memchr_inv;
    use super::*;

    #[test]
    fn memchr_inv_finds_the_first_other_byte() {
        let mut b = [0x6bu8; 37];
        assert_eq!(memchr_inv(&b, 0x6b), None);
        for i in [0, 7, 8, 15, 31, 32, 36] {
            b[i] = 0;
            assert_eq!(memchr_inv(&b, 0x6b), Some(i), "at {i}");
            b[i] = 0x6b;
        }
        assert_eq!(memchr_inv(&[], 1), None);
    }

    fn f(s: &str) -> SlabFlags {
        let mut x = SlabFlags::NONE;
        for c in s.chars() {
            x = SlabFlags(
                x.0 | match c {
                    'F' => SlabFlags::CONSISTENCY_CHECKS.0,
                    'Z' => SlabFlags::RED_ZONE.0,
                    'P' => SlabFlags::POISON.0,
                    'U' => SlabFlags::STORE_USER.0,
                    'T' => SlabFlags::TRACE.0,
                    _ => 0,
                },
            );
        }
        x
    }

    #[test]
    fn slub_debug_syntax() {
        let d = |t: &str| SlubDebug::new(t.as_bytes()).unwrap();
        assert_eq!(
            SlubDebug::OFF.kmem_cache_flags(SlabFlags::NONE, "a"),
            SlabFlags::NONE
        );
        assert_eq!(d("").kmem_cache_flags(SlabFlags::NONE, "a"), f("FZPU"));
        assert_eq!(d("ZP").kmem_cache_flags(SlabFlags::NONE, "x"), f("ZP"));
        assert_eq!(
            d("-").kmem_cache_flags(SlabFlags::NONE, "x"),
            SlabFlags::NONE
        );
        let both = d("F,kmalloc-*;ZP");
        assert_eq!(both.kmem_cache_flags(SlabFlags::NONE, "kmalloc-64"), f("F"));
        assert_eq!(both.kmem_cache_flags(SlabFlags::NONE, "dentry"), f("ZP"));
        let list = d("U,dentry,inode");
        assert_eq!(list.kmem_cache_flags(SlabFlags::NONE, "inode"), f("U"));
        assert_eq!(
            list.kmem_cache_flags(SlabFlags::NONE, "inodes"),
            SlabFlags::NONE
        );
        assert_eq!(
            d(",foo").kmem_cache_flags(SlabFlags::NONE, "foo"),
            f("FZPU")
        );
        assert_eq!(d("zpo").global_flags(), (f("ZP"), true));
    }
}
