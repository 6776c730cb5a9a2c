//! Reports: [`DebugReport`] and its `Display` (the kernel's `BUG`/`FIX`
//! lines), `slab_err` / `slab_fix` / `object_err`, written from a stack buffer (no heap).

use super::layout::{now_ns, tracks_of, Track};
use crate::cache::KmemCache;
use crate::Slub;
use common::api::CacheName;
use core::fmt;
use core::sync::atomic::Ordering;

/// What a report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// `check_bytes_and_report`: "`<what>` overwritten" with the faulting range.
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

pub(super) fn blank(
    s: &KmemCache,
    kind: ReportKind,
    what: &'static str,
    slab: usize,
) -> DebugReport {
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
pub(super) fn report(sl: &Slub, s: &KmemCache, r: &DebugReport) {
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

pub(super) fn slab_err(
    sl: &Slub,
    s: &KmemCache,
    slab: usize,
    what: &'static str,
    nums: (usize, usize),
) {
    let mut r = blank(s, ReportKind::Slab, what, slab);
    r.nums = nums;
    report(sl, s, &r);
}

pub(super) fn slab_fix(sl: &Slub, s: &KmemCache, slab: usize, what: &'static str) {
    report(sl, s, &blank(s, ReportKind::Fix, what, slab));
}

pub(super) fn object_err(sl: &Slub, s: &KmemCache, slab: usize, object: usize, what: &'static str) {
    let mut r = blank(s, ReportKind::Object, what, slab);
    r.object = object;
    (r.alloc, r.free) = tracks_of(s, object);
    report(sl, s, &r);
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
