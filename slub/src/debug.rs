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

use crate::cache::KmemCache;
use crate::freeptr::{get_freepointer, set_freepointer};
use crate::node::{counters_of, KmemCacheNode};
use crate::slowpath::{cmpxchg_double_slab, free_slab, new_slab, slab_nid};
use crate::stats::StatItem::{ALLOC_SLAB, ALLOC_SLOWPATH, FREE_ADD_PARTIAL, FREE_REMOVE_PARTIAL};
use crate::{Slub, NUMA_NO_NODE};
use common::api::CacheName;
use common::{Gfp, Page, SlabCounters, SlabError, SlabFlags, PAGE_SIZE};
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::Ordering;

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
pub const SLAB_DEBUG_FLAGS: SlabFlags = SlabFlags(DEBUG_DEFAULT_FLAGS.0 | SlabFlags::TRACE.0);
/// `DEBUG_METADATA_FLAGS`: the flags that change the object layout.
pub const DEBUG_METADATA_FLAGS: SlabFlags =
    SlabFlags(SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0 | SlabFlags::STORE_USER.0);
/// `sizeof(struct track)` here.
pub const TRACK_SIZE: usize = 32;
const WORD: usize = core::mem::size_of::<usize>();

// ---------------------------------------------------------------------------------------------
// slub_debug= option
// ---------------------------------------------------------------------------------------------

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
/// `kmem_cache_node` are left alone: see the crate doc).
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

// ---------------------------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------------------------

/// `struct track`: who allocated or freed an object last.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Track {
    /// Caller word: always 0 here (stable Rust has no return-address intrinsic, and
    /// `#[track_caller]` would add a hidden argument to every fast path; see the crate doc).
    pub addr: usize,
    /// CPU the call ran on.
    pub cpu: u32,
    /// Thread id (`gettid`).
    pub pid: u32,
    /// `CLOCK_MONOTONIC` nanoseconds.
    pub when: u64,
    /// Unused (`handle` of the stack depot in the kernel).
    pub handle: u64,
}
const _: () = assert!(core::mem::size_of::<Track>() == TRACK_SIZE);

/// What a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// `check_bytes_and_report`: "<what> overwritten" with the faulting range.
    Overwritten,
    /// `object_err`: a problem with one object.
    Object,
    /// `slab_err`: a problem with a slab (or a cache).
    Slab,
    /// `slab_fix` / `restore_bytes`: what was done about the previous report.
    Fix,
}

/// One `slub_debug` report (heap-free; `Display` prints it in the kernel's words).
#[derive(Clone, Copy, Debug)]
pub struct DebugReport {
    /// The cache.
    pub cache: CacheName,
    /// Kind of report.
    pub kind: ReportKind,
    /// The kernel's words: "Redzone", "Poison", "Freepointer corrupt", "Object already free"…
    pub what: &'static str,
    /// Slab start address (0 if none).
    pub slab: usize,
    /// Object address (0 for slab-level reports).
    pub object: usize,
    /// First faulting address (or the restored range's start), 0 if none.
    pub start: usize,
    /// One past the last faulting address.
    pub end: usize,
    /// Expected byte.
    pub expected: u8,
    /// First byte found instead.
    pub found: u8,
    /// Two numbers some messages carry (counter vs counted, inuse vs objects…).
    pub nums: (usize, usize),
    /// The object's alloc track (if `STORE_USER`).
    pub alloc: Option<Track>,
    /// The object's free track (if `STORE_USER`).
    pub free: Option<Track>,
}

impl fmt::Display for DebugReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.cache.as_str();
        match self.kind {
            ReportKind::Overwritten => {
                writeln!(f, "BUG {c} (Not tainted): {} overwritten", self.what)?;
                write!(
                    f,
                    "0x{:x}-0x{:x} @offset={}. First byte 0x{:x} instead of 0x{:x}",
                    self.start,
                    self.end - 1,
                    self.start.wrapping_sub(self.slab),
                    self.found,
                    self.expected
                )?;
            }
            ReportKind::Object => {
                writeln!(f, "BUG {c} (Not tainted): {}", self.what)?;
                write!(
                    f,
                    "Object 0x{:x} @offset={}",
                    self.object,
                    self.object.wrapping_sub(self.slab)
                )?;
            }
            ReportKind::Slab => {
                write!(f, "BUG {c} (Not tainted): {}", self.what)?;
                if self.nums != (0, 0) {
                    write!(f, " ({} / {})", self.nums.0, self.nums.1)?;
                }
            }
            ReportKind::Fix => {
                write!(f, "FIX {c}: {}", self.what)?;
                if self.start != 0 {
                    write!(
                        f,
                        " 0x{:x}-0x{:x}=0x{:x}",
                        self.start,
                        self.end - 1,
                        self.expected
                    )?;
                }
            }
        }
        for (name, t) in [("Allocated", self.alloc), ("Freed", self.free)] {
            if let Some(t) = t {
                if t.when != 0 {
                    write!(
                        f,
                        "\n{name} in 0x{:x} age={}ns cpu={} pid={}",
                        t.addr,
                        now_ns().saturating_sub(t.when),
                        t.cpu,
                        t.pid
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Report callback ([`crate::SlubSettings::debug_report`]): a plain function pointer, called
/// with every report (it must not allocate from this allocator).
#[derive(Clone, Copy, Debug)]
pub struct ReportFn(pub fn(&DebugReport));

impl PartialEq for ReportFn {
    fn eq(&self, other: &Self) -> bool {
        core::ptr::fn_addr_eq(self.0, other.0)
    }
}
impl Eq for ReportFn {}

fn blank(s: &KmemCache, kind: ReportKind, what: &'static str, slab: usize) -> DebugReport {
    DebugReport {
        cache: s.name,
        kind,
        what,
        slab,
        object: 0,
        start: 0,
        end: 0,
        expected: 0,
        found: 0,
        nums: (0, 0),
        alloc: None,
        free: None,
    }
}

/// Counts the report (`slab_add_kunit_errors`: instance and cache), hands it to the callback
/// (or stderr), and aborts if the settings ask for it.
#[cold]
fn report(sl: &Slub, s: &KmemCache, r: &DebugReport) {
    s.errors.fetch_add(1, Ordering::Relaxed);
    sl.slab_errors.fetch_add(1, Ordering::Relaxed);
    match sl.settings.debug_report {
        Some(f) => (f.0)(r),
        None => print_report(r),
    }
    if sl.settings.debug_abort && r.kind != ReportKind::Fix {
        std::process::abort();
    }
}

/// A fixed stack buffer for formatting a report without the heap (the report may come from
/// inside the allocator, under `list_lock`, in a process whose global allocator is this one).
struct StackBuf {
    buf: [u8; 1024],
    len: usize,
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Writes a report to fd 2 (not `eprintln!`, which allocates under test capture).
fn print_report(r: &DebugReport) {
    use core::fmt::Write as _;
    let mut b = StackBuf {
        buf: [0; 1024],
        len: 0,
    };
    let _ = writeln!(b, "{r}");
    // SAFETY: writes b.len initialised bytes of b.buf to stderr.
    unsafe { libc::write(2, b.buf.as_ptr().cast(), b.len) };
}

fn slab_err(sl: &Slub, s: &KmemCache, slab: usize, what: &'static str, nums: (usize, usize)) {
    let mut r = blank(s, ReportKind::Slab, what, slab);
    r.nums = nums;
    report(sl, s, &r);
}

fn slab_fix(sl: &Slub, s: &KmemCache, slab: usize, what: &'static str) {
    report(sl, s, &blank(s, ReportKind::Fix, what, slab));
}

fn object_err(sl: &Slub, s: &KmemCache, slab: usize, object: usize, what: &'static str) {
    let mut r = blank(s, ReportKind::Object, what, slab);
    r.object = object;
    (r.alloc, r.free) = tracks_of(s, object);
    report(sl, s, &r);
}

// ---------------------------------------------------------------------------------------------
// Layout helpers
// ---------------------------------------------------------------------------------------------

fn byte_slice<'a>(addr: usize, len: usize) -> &'a mut [u8] {
    // SAFETY: callers pass ranges inside one slab of the cache (object slots, their metadata or
    // the slab tail), which stay mapped while the cache lives; debug caches change them only
    // under the node's list_lock or while the object is owned by the caller.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// `freeptr_outside_object`.
fn freeptr_outside_object(s: &KmemCache) -> bool {
    s.offset >= s.inuse.load(Ordering::Relaxed)
}

/// `get_info_end`: end of the object plus the free pointer if that lies after it.
pub(crate) fn get_info_end(s: &KmemCache) -> usize {
    if freeptr_outside_object(s) {
        s.offset + WORD
    } else {
        s.inuse.load(Ordering::Relaxed)
    }
}

/// `slub_debug_orig_size`: kmalloc caches with `STORE_USER` keep the requested size.
pub(crate) fn slub_debug_orig_size(s: &KmemCache) -> bool {
    s.flags.contains(SlabFlags::STORE_USER) && s.flags.contains(SlabFlags::KMALLOC)
}

/// `size_from_object`.
fn size_from_object(s: &KmemCache) -> usize {
    if s.flags.contains(SlabFlags::RED_ZONE) {
        s.size - s.red_left_pad
    } else {
        s.size
    }
}

/// `__OBJECT_POISON`: poison objects (not with a constructor or RCU).
fn object_poison(s: &KmemCache) -> bool {
    s.flags.contains(SlabFlags::POISON)
        && s.ctor.is_none()
        && !s.flags.contains(SlabFlags::TYPESAFE_BY_RCU)
}

fn object_size(s: &KmemCache) -> usize {
    s.object_size.load(Ordering::Relaxed)
}

fn orig_size_addr(s: &KmemCache, object: usize) -> usize {
    object + get_info_end(s) + 2 * TRACK_SIZE
}

/// `get_orig_size`.
pub(crate) fn get_orig_size(s: &KmemCache, object: usize) -> usize {
    if !slub_debug_orig_size(s) {
        return object_size(s);
    }
    // SAFETY: the orig_size word is inside the object's metadata (slub_debug_orig_size layout).
    unsafe { (orig_size_addr(s, object) as *const u32).read_unaligned() as usize }
}

/// `set_orig_size`.
pub(crate) fn set_orig_size(s: &KmemCache, object: usize, orig_size: usize) {
    if !slub_debug_orig_size(s) {
        return;
    }
    let v = orig_size.min(object_size(s)) as u32;
    // SAFETY: as get_orig_size.
    unsafe { (orig_size_addr(s, object) as *mut u32).write_unaligned(v) };
}

fn track_addr(s: &KmemCache, object: usize, free: bool) -> usize {
    object + get_info_end(s) + if free { TRACK_SIZE } else { 0 }
}

fn tracks_of(s: &KmemCache, object: usize) -> (Option<Track>, Option<Track>) {
    if !s.flags.contains(SlabFlags::STORE_USER) || object == 0 {
        return (None, None);
    }
    // SAFETY: the two tracks lie after the free pointer of every STORE_USER object.
    unsafe {
        (
            Some((track_addr(s, object, false) as *const Track).read_unaligned()),
            Some((track_addr(s, object, true) as *const Track).read_unaligned()),
        )
    }
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `set_track`.
fn set_track(s: &KmemCache, object: usize, free: bool, addr: usize) {
    if !s.flags.contains(SlabFlags::STORE_USER) {
        return;
    }
    let pid = current_tid();
    let t = Track {
        addr,
        cpu: common::percpu::cpu_id() as u32,
        pid,
        when: now_ns(),
        handle: 0,
    };
    // SAFETY: as tracks_of.
    unsafe { (track_addr(s, object, free) as *mut Track).write_unaligned(t) };
}

/// `init_tracking`.
fn init_tracking(s: &KmemCache, object: usize) {
    if s.flags.contains(SlabFlags::STORE_USER) {
        byte_slice(track_addr(s, object, false), 2 * TRACK_SIZE).fill(0);
    }
}

/// `init_object`: red zones to `val`, poison a free or freshly allocated object.
pub(crate) fn init_object(s: &KmemCache, object: usize, val: u8) {
    let osize = object_size(s);
    let inuse = s.inuse.load(Ordering::Relaxed);
    let mut poison_size = osize;
    if s.flags.contains(SlabFlags::RED_ZONE) {
        byte_slice(object - s.red_left_pad, s.red_left_pad).fill(val);
        if slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
            poison_size = get_orig_size(s, object);
        }
    }
    if object_poison(s) && poison_size > 0 {
        let p = byte_slice(object, poison_size);
        p[..poison_size - 1].fill(POISON_FREE);
        p[poison_size - 1] = POISON_END;
    }
    if s.flags.contains(SlabFlags::RED_ZONE) {
        byte_slice(object + poison_size, inuse - poison_size).fill(val);
    }
}

/// `setup_slab_debug`: a new slab of a poisoning cache is `0x5a` throughout.
pub(crate) fn setup_slab_debug(s: &KmemCache, base: usize, order: usize) {
    if s.flags.contains(SlabFlags::POISON) {
        byte_slice(base, PAGE_SIZE << order).fill(POISON_INUSE);
    }
}

/// `setup_object_debug`.
pub(crate) fn setup_object_debug(s: &KmemCache, object: usize) {
    if s.flags.intersects(SlabFlags(
        SlabFlags::STORE_USER.0 | SlabFlags::RED_ZONE.0 | SlabFlags::POISON.0,
    )) {
        init_object(s, object, SLUB_RED_INACTIVE);
        init_tracking(s, object);
    }
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

struct SlabRef {
    page: *mut Page,
    base: usize,
}

fn slab_ref(sl: &Slub, page: *mut Page) -> SlabRef {
    let base = sl
        .provider
        .page_address(NonNull::new(page).expect("slab"))
        .as_ptr() as usize;
    SlabRef { page, base }
}

/// `check_valid_pointer`: `object` is 0 or an object start inside the slab.
fn check_valid_pointer(s: &KmemCache, sr: &SlabRef, object: usize) -> bool {
    if object == 0 {
        return true;
    }
    let objects = counters_of(sr.page).objects as usize;
    let start = sr.base + s.red_left_pad;
    object >= start && (object - start) % s.size == 0 && (object - start) / s.size < objects
}

/// `check_bytes_and_report`: the bytes `[start, start + bytes)` must all be `value`; else
/// report "<what> overwritten" and restore them (`restore_bytes`).
#[allow(clippy::too_many_arguments)]
/// `current->pid`: the thread id, cached per thread (a `gettid` system call on every tracked
/// allocation and free was a third of a debug pair's time). A child of `fork` keeps its
/// parent's cached id in the forking thread; tracks there name the parent thread.
fn current_tid() -> u32 {
    thread_local! {
        static TID: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
    }
    TID.with(|t| {
        if t.get() == 0 {
            // SAFETY: gettid has no preconditions.
            t.set(unsafe { libc::gettid() } as u32);
        }
        t.get()
    })
}

/// `memchr_inv(b, value)`: the first byte of `b` that is not `value`, eight bytes at a time
/// while they all match.
fn memchr_inv(b: &[u8], value: u8) -> Option<usize> {
    let word = u64::from_ne_bytes([value; 8]);
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in chunks.by_ref() {
        if u64::from_ne_bytes(c.try_into().expect("8 bytes")) != word {
            break;
        }
        at += 8;
    }
    b[at..].iter().position(|&x| x != value).map(|i| at + i)
}

fn check_bytes_and_report(
    sl: &Slub,
    s: &KmemCache,
    sr: &SlabRef,
    object: usize,
    what: &'static str,
    start: usize,
    value: u8,
    bytes: usize,
) -> bool {
    let b = byte_slice(start, bytes);
    let Some(first) = memchr_inv(b, value) else {
        return true;
    };
    let last = b.iter().rposition(|&x| x != value).unwrap_or(first);
    let mut r = blank(s, ReportKind::Overwritten, what, sr.base);
    r.object = object;
    r.start = start + first;
    r.end = start + last + 1;
    r.expected = value;
    r.found = b[first];
    (r.alloc, r.free) = tracks_of(s, object);
    report(sl, s, &r);
    // restore_bytes
    b[first..=last].fill(value);
    let mut f = blank(s, ReportKind::Fix, "Restoring", sr.base);
    f.object = object;
    f.start = r.start;
    f.end = r.end;
    f.expected = value;
    report(sl, s, &f);
    false
}

/// `check_pad_bytes`: the padding after the metadata is `0x5a`.
fn check_pad_bytes(sl: &Slub, s: &KmemCache, sr: &SlabRef, p: usize) -> bool {
    let mut off = get_info_end(s);
    if s.flags.contains(SlabFlags::STORE_USER) {
        off += 2 * TRACK_SIZE;
        if s.flags.contains(SlabFlags::KMALLOC) {
            off += 4;
        }
    }
    let end = size_from_object(s);
    if end <= off {
        return true;
    }
    check_bytes_and_report(
        sl,
        s,
        sr,
        p,
        "Object padding",
        p + off,
        POISON_INUSE,
        end - off,
    )
}

/// `slab_pad_check`: the slab tail after the last object is `0x5a` (poisoning caches).
fn slab_pad_check(sl: &Slub, s: &KmemCache, sr: &SlabRef) {
    if !s.flags.contains(SlabFlags::POISON) {
        return;
    }
    let c = counters_of(sr.page);
    let length = PAGE_SIZE << slab_ref_order(sr);
    let used = c.objects as usize * s.size;
    if used >= length {
        return;
    }
    let b = byte_slice(sr.base + used, length - used);
    let Some(first) = b.iter().position(|&x| x != POISON_INUSE) else {
        return;
    };
    let last = b.iter().rposition(|&x| x != POISON_INUSE).unwrap_or(first);
    let mut r = blank(s, ReportKind::Slab, "Padding overwritten", sr.base);
    r.start = sr.base + used + first;
    r.end = sr.base + used + last + 1;
    r.expected = POISON_INUSE;
    r.found = b[first];
    report(sl, s, &r);
    b[first..=last].fill(POISON_INUSE);
    let mut f = blank(s, ReportKind::Fix, "Restoring", sr.base);
    f.start = r.start;
    f.end = r.end;
    f.expected = POISON_INUSE;
    report(sl, s, &f);
}

fn slab_ref_order(sr: &SlabRef) -> usize {
    // SAFETY: sr.page is a slab descriptor in mem_map.
    unsafe { (*sr.page).order as usize }
}

/// `check_object`: red zones, kmalloc red zone, poison, padding and (free objects, or a free
/// pointer outside the object) the free pointer. Returns false after reporting and fixing.
fn check_object(sl: &Slub, s: &KmemCache, sr: &SlabRef, p: usize, val: u8) -> bool {
    let osize = object_size(s);
    let inuse = s.inuse.load(Ordering::Relaxed);
    let endobject = p + osize;
    if s.flags.contains(SlabFlags::RED_ZONE) {
        if !check_bytes_and_report(
            sl,
            s,
            sr,
            p,
            "Left Redzone",
            p - s.red_left_pad,
            val,
            s.red_left_pad,
        ) {
            return false;
        }
        if !check_bytes_and_report(sl, s, sr, p, "Right Redzone", endobject, val, inuse - osize) {
            return false;
        }
        if slub_debug_orig_size(s) && val == SLUB_RED_ACTIVE {
            let orig = get_orig_size(s, p);
            if osize > orig
                && !check_bytes_and_report(
                    sl,
                    s,
                    sr,
                    p,
                    "kmalloc Redzone",
                    p + orig,
                    val,
                    osize - orig,
                )
            {
                return false;
            }
        }
    } else if s.flags.contains(SlabFlags::POISON) && osize < inuse {
        check_bytes_and_report(
            sl,
            s,
            sr,
            p,
            "Alignment padding",
            endobject,
            POISON_INUSE,
            inuse - osize,
        );
    }
    if s.flags.contains(SlabFlags::POISON) {
        if val != SLUB_RED_ACTIVE
            && object_poison(s)
            && osize > 0
            && (!check_bytes_and_report(sl, s, sr, p, "Poison", p, POISON_FREE, osize - 1)
                || !check_bytes_and_report(
                    sl,
                    s,
                    sr,
                    p,
                    "End Poison",
                    p + osize - 1,
                    POISON_END,
                    1,
                ))
        {
            return false;
        }
        check_pad_bytes(sl, s, sr, p);
    }
    if !freeptr_outside_object(s) && val == SLUB_RED_ACTIVE {
        // Object and free pointer overlap: nothing to check while allocated.
        return true;
    }
    if !check_valid_pointer(s, sr, get_freepointer(s, p)) {
        object_err(sl, s, sr.base, p, "Freepointer corrupt");
        // No choice but to zap it and thus lose the remainder of the free objects.
        set_freepointer(s, p, 0);
        return false;
    }
    true
}

/// `check_slab`: objects within the order, inuse within objects, slab tail padding.
fn check_slab(sl: &Slub, s: &KmemCache, sr: &SlabRef) -> bool {
    let c = counters_of(sr.page);
    let maxobj = (PAGE_SIZE << slab_ref_order(sr)) / s.size;
    if c.objects as usize > maxobj {
        slab_err(
            sl,
            s,
            sr.base,
            "objects > max",
            (c.objects as usize, maxobj),
        );
        return false;
    }
    if c.inuse > c.objects {
        slab_err(
            sl,
            s,
            sr.base,
            "inuse > max",
            (c.inuse as usize, c.objects as usize),
        );
        return false;
    }
    slab_pad_check(sl, s, sr);
    true
}

/// Rewrites a listed slab's `{freelist, counters}` (list_lock held; debug caches change
/// slabs only under it).
fn set_slab(s: &KmemCache, slab: *mut Page, freelist: usize, c: SlabCounters) {
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*slab };
    loop {
        let old = p.freelist_counters.load_pair();
        if cmpxchg_double_slab(s, slab, old, (freelist, c.pack())) {
            return;
        }
    }
}

/// `on_freelist`: is `search` on the slab's freelist? Walking it also repairs a corrupt chain
/// (truncated at the last good object, or cleared) and a wrong `inuse`.
fn on_freelist(sl: &Slub, s: &KmemCache, sr: &SlabRef, search: usize) -> bool {
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*sr.page };
    let (head, counters) = p.freelist_counters.load_pair();
    let mut c = SlabCounters::unpack(counters);
    let mut fp = head;
    let mut object = 0;
    let mut nr = 0usize;
    while fp != 0 && nr <= c.objects as usize {
        if fp == search {
            return true;
        }
        if !check_valid_pointer(s, sr, fp) {
            if object != 0 {
                object_err(sl, s, sr.base, object, "Freechain corrupt");
                set_freepointer(s, object, 0);
            } else {
                slab_err(sl, s, sr.base, "Freepointer corrupt", (0, 0));
                c.inuse = c.objects;
                set_slab(s, sr.page, 0, c);
                slab_fix(sl, s, sr.base, "Freelist cleared");
                return false;
            }
            break;
        }
        object = fp;
        fp = get_freepointer(s, object);
        nr += 1;
    }
    let max_objects = (PAGE_SIZE << slab_ref_order(sr)) / s.size;
    let mut changed = false;
    if c.objects as usize != max_objects {
        slab_err(
            sl,
            s,
            sr.base,
            "Wrong number of objects",
            (c.objects as usize, max_objects),
        );
        c.objects = max_objects as u16;
        slab_fix(sl, s, sr.base, "Number of objects adjusted");
        changed = true;
    }
    let nr = nr.min(c.objects as usize);
    if c.inuse as usize != c.objects as usize - nr {
        slab_err(
            sl,
            s,
            sr.base,
            "Wrong object count. Counter is / counted were",
            (c.inuse as usize, c.objects as usize - nr),
        );
        c.inuse = (c.objects as usize - nr) as u16;
        slab_fix(sl, s, sr.base, "Object count adjusted");
        changed = true;
    }
    if changed {
        set_slab(s, sr.page, p.freelist_counters.lo(Ordering::Relaxed), c);
    }
    search == 0
}

/// `validate_slab` of a debug cache: `check_slab`, `on_freelist`, then `check_object` of
/// every object with the red-zone value its state asks for. Errors are reported, counted and
/// fixed; the walk goes on.
pub(crate) fn validate_slab(sl: &Slub, s: &KmemCache, page: *mut Page) {
    let sr = slab_ref(sl, page);
    if !check_slab(sl, s, &sr) || !on_freelist(sl, s, &sr, 0) {
        return;
    }
    // __fill_map
    let mut map = [0u64; 512];
    let objects = counters_of(page).objects as usize;
    // SAFETY: slab descriptor in mem_map.
    let mut fp = unsafe { &*page }.freelist_counters.lo(Ordering::Relaxed);
    let mut n = 0;
    while fp != 0 && n < objects {
        let idx = (fp - sr.base - s.red_left_pad) / s.size;
        map[idx / 64] |= 1 << (idx % 64);
        fp = get_freepointer(s, fp);
        n += 1;
    }
    for idx in 0..objects {
        let p = sr.base + s.red_left_pad + idx * s.size;
        let val = if map[idx / 64] & (1 << (idx % 64)) != 0 {
            SLUB_RED_INACTIVE
        } else {
            SLUB_RED_ACTIVE
        };
        if !check_object(sl, s, &sr, p, val) {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The debug alloc and free paths
// ---------------------------------------------------------------------------------------------

/// `alloc_debug_processing` (list_lock held or slab not yet published).
fn alloc_debug_processing(
    sl: &Slub,
    s: &KmemCache,
    sr: &SlabRef,
    object: usize,
    orig_size: usize,
) -> bool {
    if s.flags.contains(SlabFlags::CONSISTENCY_CHECKS) {
        let ok = check_slab(sl, s, sr)
            && if check_valid_pointer(s, sr, object) {
                check_object(sl, s, sr, object, SLUB_RED_INACTIVE)
            } else {
                object_err(sl, s, sr.base, object, "Freelist Pointer check fails");
                false
            };
        if !ok {
            // Mark every object used so the corrupt ones are never touched again.
            slab_fix(sl, s, sr.base, "Marking all objects used");
            let mut c = counters_of(sr.page);
            c.inuse = c.objects;
            set_slab(s, sr.page, 0, c);
            return false;
        }
    }
    set_orig_size(s, object, orig_size);
    init_object(s, object, SLUB_RED_ACTIVE);
    true
}

/// Pops one object off an unfrozen listed slab (list_lock held): `alloc_single_from_partial`.
fn alloc_single_from_partial(
    sl: &Slub,
    s: &KmemCache,
    n: &KmemCacheNode,
    g: &crate::node::ListGuard<'_>,
    slab: *mut Page,
    orig_size: usize,
) -> usize {
    let sr = slab_ref(sl, slab);
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*slab };
    let (object, counters) = p.freelist_counters.load_pair();
    let mut c = SlabCounters::unpack(counters);
    if object == 0 || c.inuse >= c.objects {
        // A full slab on the partial list (not expected): where it belongs.
        n.remove_partial(g, slab);
        n.add_full(s, g, slab);
        return 0;
    }
    let next = if check_valid_pointer(s, &sr, object) {
        get_freepointer(s, object)
    } else {
        0
    };
    c.inuse += 1;
    set_slab(s, slab, next, c);
    if !alloc_debug_processing(sl, s, &sr, object, orig_size) {
        // Every object is marked used now: the kernel leaves the slab on no list; with
        // STORE_USER it goes on the full list here, so every slab stays listed (validate's
        // count) and a later free's remove_full finds it there.
        n.remove_partial(g, slab);
        n.add_full(s, g, slab);
        return 0;
    }
    if c.inuse == c.objects {
        n.remove_partial(g, slab);
        n.add_full(s, g, slab);
    }
    object
}

/// The first slab on a node's partial list.
fn first_partial(g: &crate::node::ListGuard<'_>) -> Option<*mut Page> {
    // SAFETY: the guard proves list_lock is held for the walk.
    let link = unsafe { common::list::ListHead::iter(g.partial()) }.next()?;
    Some(crate::node::slab_of(link))
}

/// The debug branch of `___slab_alloc`: an object from a node partial slab or a new slab,
/// under the node's `list_lock`, through `alloc_debug_processing`; never a CPU slab.
#[cold]
#[inline(never)]
pub(crate) fn alloc_debug(
    sl: &Slub,
    s: &KmemCache,
    gfp: Gfp,
    node: usize,
    orig_size: usize,
) -> usize {
    s.stat(ALLOC_SLOWPATH);
    let first = if node == NUMA_NO_NODE || node >= s.nr_nodes {
        sl.numa_mem_id().min(s.nr_nodes - 1)
    } else {
        node
    };
    let any = node == NUMA_NO_NODE && !gfp.contains(Gfp::THISNODE);
    for i in 0..s.nr_nodes {
        let nid = (first + i) % s.nr_nodes;
        if i > 0 && !any {
            break;
        }
        let n = s.get_node(nid);
        let g = n.lock();
        while let Some(slab) = first_partial(&g) {
            let object = alloc_single_from_partial(sl, s, n, &g, slab, orig_size);
            if object != 0 {
                drop(g);
                set_track(s, object, false, 0);
                return object;
            }
        }
    }
    // alloc_single_from_new_slab
    loop {
        let Some(slab) = new_slab(s, gfp, node) else {
            return 0;
        };
        s.stat(ALLOC_SLAB);
        let sr = slab_ref(sl, slab);
        // SAFETY: slab descriptor, not published yet.
        let p = unsafe { &*slab };
        let (object, counters) = p.freelist_counters.load_pair();
        let mut c = SlabCounters::unpack(counters);
        c.inuse = 1;
        p.freelist_counters
            .set_lo(get_freepointer(s, object), Ordering::Relaxed);
        p.freelist_counters.set_hi(c.pack(), Ordering::Release);
        let ok = alloc_debug_processing(sl, s, &sr, object, orig_size);
        let n = s.get_node(slab_nid(s, slab));
        let g = n.lock();
        n.inc_slabs_node(c.objects as usize);
        if counters_of(slab).inuse < c.objects {
            n.add_partial(&g, slab, false);
        } else {
            n.add_full(s, &g, slab);
        }
        drop(g);
        if ok {
            set_track(s, object, false, 0);
            return object;
        }
    }
}

/// `free_consistency_checks`.
fn free_consistency_checks(sl: &Slub, s: &KmemCache, sr: &SlabRef, object: usize) -> bool {
    if !check_valid_pointer(s, sr, object) {
        let mut r = blank(s, ReportKind::Slab, "Invalid object pointer", sr.base);
        r.object = object;
        report(sl, s, &r);
        return false;
    }
    if on_freelist(sl, s, sr, object) {
        object_err(sl, s, sr.base, object, "Object already free");
        return false;
    }
    check_object(sl, s, sr, object, SLUB_RED_ACTIVE)
}

/// `free_to_partial_list`: the whole free of a debug cache under the node's `list_lock`
/// (`free_debug_processing`, then the slab's freelist and counters, partial list, discard).
/// A chain that fails the checks is not freed (reported "Object at … not freed", as the
/// kernel leaks it); an object already free gives `DoubleFree`.
#[cold]
#[inline(never)]
pub(crate) fn free_to_partial_list(
    sl: &Slub,
    s: &KmemCache,
    slab: *mut Page,
    head: usize,
    tail: usize,
    cnt: u16,
) -> Result<(), SlabError> {
    let sr = slab_ref(sl, slab);
    let n = s.get_node(slab_nid(s, slab));
    let g = n.lock();
    // free_debug_processing
    let mut ok = true;
    let mut double = false;
    if s.flags.contains(SlabFlags::CONSISTENCY_CHECKS) && !check_slab(sl, s, &sr) {
        ok = false;
    }
    let c0 = counters_of(slab);
    if ok && c0.inuse < cnt {
        slab_err(
            sl,
            s,
            sr.base,
            "Slab has allocated objects but more are to be freed",
            (c0.inuse as usize, cnt as usize),
        );
        ok = false;
        double = true;
    }
    let mut object = head;
    let mut seen = 0u16;
    while ok {
        seen += 1;
        if seen > cnt {
            break;
        }
        if s.flags.contains(SlabFlags::CONSISTENCY_CHECKS)
            && !free_consistency_checks(sl, s, &sr, object)
        {
            ok = false;
            double = on_freelist_quiet(s, &sr, object);
            break;
        }
        let next = if object == tail {
            0
        } else {
            get_freepointer(s, object)
        };
        set_track(s, object, true, 0);
        init_object(s, object, SLUB_RED_INACTIVE);
        if object == tail {
            break;
        }
        object = next;
    }
    if !ok {
        let mut f = blank(s, ReportKind::Fix, "Object not freed", sr.base);
        f.object = object;
        report(sl, s, &f);
        return if double {
            Err(SlabError::DoubleFree(object))
        } else {
            Ok(())
        };
    }
    // SAFETY: slab descriptor in mem_map.
    let p = unsafe { &*slab };
    let (prior, counters) = p.freelist_counters.load_pair();
    let mut c = SlabCounters::unpack(counters);
    c.inuse -= cnt;
    set_freepointer(s, tail, prior);
    set_slab(s, slab, head, c);
    // An empty slab goes away once the node keeps min_partial others, from the full list or
    // the partial one.
    let discard = c.inuse == 0
        && n.nr_partial.load(Ordering::Relaxed) >= s.min_partial.load(Ordering::Relaxed);
    if prior == 0 || c0.inuse == c0.objects {
        // Was full: off the full list (STORE_USER), onto the partial list unless it goes away.
        n.remove_full(s, &g, slab);
        if !discard {
            n.add_partial(&g, slab, true);
            s.stat(FREE_ADD_PARTIAL);
        }
    } else if discard {
        n.remove_partial(&g, slab);
        s.stat(FREE_REMOVE_PARTIAL);
    }
    if discard {
        // dec_slabs_node still under list_lock, so validate never counts more listed slabs
        // than nr_slabs says exist.
        n.dec_slabs_node(c.objects as usize);
    }
    drop(g);
    if discard {
        s.stat(crate::stats::StatItem::FREE_SLAB);
        // SAFETY: empty, unfrozen, off every list and already uncounted; no CPU slot holds
        // debug slabs.
        unsafe { free_slab(s, slab) };
    }
    Ok(())
}

/// `on_freelist` without reports (to classify a failed free as a double free).
fn on_freelist_quiet(s: &KmemCache, sr: &SlabRef, search: usize) -> bool {
    // SAFETY: slab descriptor in mem_map.
    let mut fp = unsafe { &*sr.page }.freelist_counters.lo(Ordering::Relaxed);
    let objects = counters_of(sr.page).objects as usize;
    let mut nr = 0;
    while fp != 0 && nr <= objects && check_valid_pointer(s, sr, fp) {
        if fp == search {
            return true;
        }
        fp = get_freepointer(s, fp);
        nr += 1;
    }
    false
}

/// The kmalloc side of orig-size tracking: record the request and red-zone the slack
/// (`set_orig_size` and the "kmalloc Redzone" part of `init_object`), done after the object is
/// taken (and zeroed for `__GFP_ZERO`) so the non-debug kmalloc path carries no size argument.
pub(crate) fn kmalloc_debug_orig_size(s: &KmemCache, object: usize, orig_size: usize) {
    if slub_debug_orig_size(s) {
        set_orig_size(s, object, orig_size);
        let orig = get_orig_size(s, object);
        let osize = object_size(s);
        if s.flags.contains(SlabFlags::RED_ZONE) && orig < osize {
            byte_slice(object + orig, osize - orig).fill(SLUB_RED_ACTIVE);
        }
    }
}

/// `skip_orig_size_check`: after `ksize()` the whole object may be used.
pub(crate) fn skip_orig_size_check(s: &KmemCache, object: usize) {
    set_orig_size(s, object, object_size(s));
}

/// `validate_slab_node`'s count checks: "<n> partial slabs counted but counter=<m>" and, for
/// `SLAB_STORE_USER` caches, "<n> slabs counted but counter=<m>" (partial + full against
/// `nr_slabs`). Counted like the other reports (`slab_add_kunit_errors`), one each.
pub(crate) fn report_count_mismatch(
    sl: &Slub,
    s: &KmemCache,
    what: &'static str,
    counted: usize,
    counter: usize,
) {
    slab_err(sl, s, 0, what, (counted, counter));
}

/// Reports the live objects a destroy finds (`list_slab_objects` + the destroy warning).
pub(crate) fn report_leak(sl: &Slub, s: &KmemCache, objects: usize) {
    slab_err(
        sl,
        s,
        0,
        "Objects remaining on __kmem_cache_shutdown()",
        (objects, 0),
    );
    slab_err(
        sl,
        s,
        0,
        "kmem_cache_destroy: Slab cache still has objects",
        (objects, 0),
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn memchr_inv_finds_the_first_other_byte() {
        let mut b = [0x6bu8; 37];
        assert_eq!(super::memchr_inv(&b, 0x6b), None);
        for i in [0, 7, 8, 15, 31, 32, 36] {
            b[i] = 0;
            assert_eq!(super::memchr_inv(&b, 0x6b), Some(i), "at {i}");
            b[i] = 0x6b;
        }
        assert_eq!(super::memchr_inv(&[], 1), None);
    }

    use super::*;

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
