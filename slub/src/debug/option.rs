//! The `slub_debug=` option: `SlubDebug`, `parse_slub_debug_flags`, `kmem_cache_flags`.

use super::DEBUG_DEFAULT_FLAGS;
use crate::Slub;
use common::SlabFlags;
use core::fmt;

/// The `slub_debug=` option, stored inline (settings are `Copy` and creation must not touch
/// the heap): the text after `=`, at most [`SlubDebug::CAPACITY`] bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SlubDebug {
    buf: [u8; Self::CAPACITY],
    len: u8,
    /// `slub_debug` was given at all (`slub_debug` alone = full debugging).
    on: bool,
}

impl fmt::Debug for SlubDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.on {
            write!(f, "slub_debug={}", String::from_utf8_lossy(self.text()))
        } else {
            f.write_str("off")
        }
    }
}

impl SlubDebug {
    /// Longest option text kept.
    pub const CAPACITY: usize = 120;
    /// Debugging off (the default).
    pub const OFF: SlubDebug = SlubDebug {
        buf: [0; Self::CAPACITY],
        len: 0,
        on: false,
    };

    /// The option text after `slub_debug=` (`""` for a bare `slub_debug`: F, Z, P, U for all
    /// caches). `None` if it is longer than [`SlubDebug::CAPACITY`].
    pub fn new(text: &[u8]) -> Option<SlubDebug> {
        if text.len() > Self::CAPACITY {
            return None;
        }
        let mut d = Self::OFF;
        d.buf[..text.len()].copy_from_slice(text);
        d.len = text.len() as u8;
        d.on = true;
        Some(d)
    }

    fn text(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// `setup_slub_debug`: the flags for caches named by no block, and whether `O` was given.
    pub fn global_flags(&self) -> (SlabFlags, bool) {
        if !self.on {
            return (SlabFlags::NONE, false);
        }
        if self.len == 0 {
            return (DEBUG_DEFAULT_FLAGS, false);
        }
        let mut global = SlabFlags::NONE;
        let mut higher_order = false;
        let mut str = self.text();
        while !str.is_empty() {
            let (flags, slabs, o, next) = parse_slub_debug_flags(str);
            higher_order |= o;
            if slabs.is_none() {
                global = flags;
            }
            str = next;
        }
        (global, higher_order)
    }

    /// `kmem_cache_flags`: `flags` plus the debug flags `slub_debug=` gives the cache `name`.
    pub fn kmem_cache_flags(&self, flags: SlabFlags, name: &str) -> SlabFlags {
        let (global, _) = self.global_flags();
        let mut local = global;
        if flags.contains(SlabFlags::NOLEAKTRACE) {
            local = local.without(SlabFlags::STORE_USER);
        }
        let name = name.as_bytes();
        let mut str = self.text();
        while self.on && !str.is_empty() {
            let (block_flags, slabs, _, next) = parse_slub_debug_flags(str);
            str = next;
            let Some(list) = slabs else { continue };
            for pat in list.split(|&b| b == b',') {
                let matches = match pat.iter().position(|&b| b == b'*') {
                    Some(star) => name.starts_with(&pat[..star]),
                    None => name == pat,
                };
                if matches {
                    return SlabFlags(flags.0 | block_flags.0);
                }
            }
        }
        SlabFlags(flags.0 | local.0)
    }
}

/// `kmem_cache_flags` with this instance's `slub_debug=` (the boot caches `kmem_cache` and
/// `kmem_cache_node` are left alone: see `docs/design-notes.md`, slub, "Debugging").
pub(crate) fn kmem_cache_flags(sl: &Slub, flags: SlabFlags, name: &str) -> SlabFlags {
    match sl.settings.slub_debug {
        Some(d) if d.on && name != "kmem_cache" && name != "kmem_cache_node" => {
            d.kmem_cache_flags(flags, name)
        }
        _ => flags,
    }
}

/// `disable_higher_order_debug` (`O`).
pub(crate) fn disable_higher_order_debug(sl: &Slub) -> bool {
    sl.settings.slub_debug.is_some_and(|d| d.global_flags().1)
}

/// `parse_slub_debug_flags` on one block: `(flags, cache list, 'O' seen, rest)`.
fn parse_slub_debug_flags(mut str: &[u8]) -> (SlabFlags, Option<&[u8]>, bool, &[u8]) {
    while let [b';', rest @ ..] = str {
        str = rest;
    }
    let mut flags = SlabFlags::NONE;
    let mut higher_order = false;
    if str.first() == Some(&b',') {
        // No letters but a cache list: full debugging for those caches.
        flags = DEBUG_DEFAULT_FLAGS;
    } else {
        while let Some(&c) = str.first() {
            if c == b',' || c == b';' {
                break;
            }
            match c.to_ascii_lowercase() {
                b'-' => flags = SlabFlags::NONE,
                b'f' => flags = SlabFlags(flags.0 | SlabFlags::CONSISTENCY_CHECKS.0),
                b'z' => flags = SlabFlags(flags.0 | SlabFlags::RED_ZONE.0),
                b'p' => flags = SlabFlags(flags.0 | SlabFlags::POISON.0),
                b'u' => flags = SlabFlags(flags.0 | SlabFlags::STORE_USER.0),
                b't' => flags = SlabFlags(flags.0 | SlabFlags::TRACE.0),
                b'o' => higher_order = true,
                // 'A' (failslab) and unknown letters are skipped, as the kernel does.
                _ => {}
            }
            str = &str[1..];
        }
    }
    let slabs = if str.first() == Some(&b',') {
        str = &str[1..];
        let end = str.iter().position(|&b| b == b';').unwrap_or(str.len());
        let list = &str[..end];
        str = &str[end..];
        Some(list)
    } else {
        let end = str.iter().position(|&b| b == b';').unwrap_or(str.len());
        str = &str[end..];
        None
    };
    while let [b';', rest @ ..] = str {
        str = rest;
    }
    (flags, slabs, higher_order, str)
}

/// `SLUB_DEBUG`, read with `getenv` (no heap): the `slub_debug=` text for settings that leave
/// [`crate::SlubSettings::slub_debug`] at `None`.
pub(crate) fn env_slub_debug() -> SlubDebug {
    common::sys::getenv(c"SLUB_DEBUG")
        .and_then(SlubDebug::new)
        .unwrap_or(SlubDebug::OFF)
}
