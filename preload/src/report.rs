//! The exit report (`SLABWORKS_SLABINFO=path|-`): slabinfo rows, statistics counters and the
//! memory held, written by an `atexit` handler with stack buffers only.
//!
//! Format (one process per block; a path without `%p` is appended to, so a program and the
//! children it runs under the same environment each add their block):
//! ```text
//! # slabworks pid=<pid> allocator=<slab|slub> settings=<settings_summary>
//! slabinfo - version: 2.1
//! # name            <active_objs> <num_objs> ...
//! <one row per cache>
//! stat <name> <value>            (every counter; zero unless SLABWORKS_STATS=1 / "stats")
//! memory pages=<n> peak_pages=<n> slab_pages=<n> large_pages=<n> metadata_pages=<n> mmap_live=<n> mmap_bytes=<n> mmap_peak_bytes=<n> bump_bytes=<n>
//! # end pid=<pid>
//! ```

use crate::out::{FdWriter, STDERR};
use common::api::{SlabAllocator, SlabInfo};
use core::fmt::Write;
use core::sync::atomic::{AtomicI32, Ordering};

/// A duplicate of fd 2 made at start-up for `SLABWORKS_SLABINFO=-` (-1: none).
pub static STDERR_COPY: AtomicI32 = AtomicI32::new(-1);

/// Opens the report destination: `-` is stderr, `%p` in a path becomes the pid. `None` if the
/// file cannot be opened (a line on stderr says so).
fn open(path: &[u8], pid: i32) -> Option<i32> {
    if path == b"-" {
        let fd = STDERR_COPY.load(Ordering::Relaxed);
        return Some(if fd >= 0 { fd } else { STDERR });
    }
    let mut buf = [0u8; crate::config::PATH_MAX + 24];
    let mut n = 0;
    let mut i = 0;
    let mut per_pid = false;
    while i < path.len() {
        if path[i] == b'%' && path.get(i + 1) == Some(&b'p') {
            let mut digits = [0u8; 12];
            let mut d = digits.len();
            let mut v = pid.unsigned_abs();
            loop {
                d -= 1;
                digits[d] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            for &c in &digits[d..] {
                buf[n] = c;
                n += 1;
            }
            per_pid = true;
            i += 2;
        } else {
            buf[n] = path[i];
            n += 1;
            i += 1;
        }
        if n >= buf.len() - 13 {
            break;
        }
    }
    buf[n] = 0;
    let flags = libc::O_WRONLY
        | libc::O_CREAT
        | libc::O_CLOEXEC
        | if per_pid {
            libc::O_TRUNC
        } else {
            libc::O_APPEND
        };
    // SAFETY: buf is NUL-terminated.
    let fd = unsafe { libc::open(buf.as_ptr().cast(), flags, 0o644) };
    if fd < 0 {
        let mut w = FdWriter::new(STDERR);
        let _ = write!(w, "slabworks: cannot open SLABWORKS_SLABINFO file \"");
        w.write_bytes(&buf[..n]);
        let _ = writeln!(w, "\"");
        return None;
    }
    Some(fd)
}

/// Writes the report for `inst` to `fd`.
pub fn write_report(inst: &crate::instance::Instance, fd: i32) {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    // settings_summary builds a String: our own malloc serves it, outside the gate.
    let settings = inst.settings_summary();
    let mut w = FdWriter::new(fd);
    let _ = writeln!(
        w,
        "# slabworks pid={pid} allocator={} settings={settings}",
        inst.kind().name()
    );
    drop(settings);
    {
        let _g = crate::gate::Gate::enter();
        let _ = writeln!(w, "{}", SlabInfo::HEADER);
        inst.for_each_slabinfo(&mut |r| {
            let _ = writeln!(w, "{r}");
        });
        inst.for_each_stat(&mut |name, v| {
            let _ = writeln!(w, "stat {name} {v}");
        });
    }
    let m = inst.memory_usage();
    let (live, bytes, peak) = crate::huge::stats();
    let _ = writeln!(
        w,
        "memory pages={} peak_pages={} slab_pages={} large_pages={} metadata_pages={} mmap_live={live} mmap_bytes={bytes} mmap_peak_bytes={peak} bump_bytes={}",
        m.pages,
        m.peak_pages,
        m.slab_pages,
        m.large_pages,
        m.metadata_pages,
        crate::state::bump_used()
    );
    let _ = writeln!(w, "# end pid={pid}");
    w.flush();
}

/// The `atexit` handler.
pub extern "C" fn at_exit() {
    let (Some(inst), Some(cfg)) = (crate::state::instance(), crate::state::config()) else {
        return;
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let Some(fd) = open(&cfg.slabinfo[..cfg.slabinfo_len], pid) else {
        return;
    };
    write_report(inst, fd);
    if fd != STDERR && fd != STDERR_COPY.load(Ordering::Relaxed) {
        // SAFETY: our own descriptor.
        unsafe { libc::close(fd) };
    }
}
