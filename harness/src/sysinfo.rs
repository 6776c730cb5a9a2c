//! Facts about the machine and the run recorded with every row: host, CPU model, kernel, git
//! commit, time, RSS; and the NUMA memory policy call for baseline allocators.

use std::time::{SystemTime, UNIX_EPOCH};

/// Host name.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `uname -r`.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
}

/// The CPU model from /proc/cpuinfo.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The git commit of the working tree (`+dirty` if tracked files changed outside the run's
/// own output directory `out_dir` — a re-run into `results/` rewrites the files it replaces), or
/// "unknown".
pub(crate) fn git_commit(out_dir: &std::path::Path) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("git")
        .args(["-C", dir, "rev-parse", "--short=12", "HEAD"])
        .output();
    let Ok(out) = out else {
        return "unknown".into();
    };
    if !out.status.success() {
        return "unknown".into();
    }
    let mut c = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut args = vec![
        "-C".to_string(),
        dir.to_string(),
        "status".into(),
        "--porcelain".into(),
        "--untracked-files=no".into(),
        "--".into(),
        ":/".into(),
    ];
    let top = std::process::Command::new("git")
        .args(["-C", dir, "rev-parse", "--show-toplevel"])
        .output()
        .ok()
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let (Some(top), Ok(out)) = (top, out_dir.canonicalize()) {
        if out.starts_with(&top) && out != top {
            args.push(format!(":(exclude){}", out.display()));
        }
    }
    let dirty = std::process::Command::new("git")
        .args(&args)
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty());
    if dirty {
        c.push_str("+dirty");
    }
    c
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_from_unix(secs)
}

/// Formats Unix seconds as UTC (civil-from-days).
pub(crate) fn utc_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// `set_mempolicy(MPOL_PREFERRED, {node})` for the calling thread (raw syscall).
pub(crate) fn set_preferred_node(node: usize) -> Result<(), i32> {
    if node >= 1024 {
        return Err(libc::EINVAL);
    }
    let mut mask = [0u64; 16];
    mask[node / 64] |= 1 << (node % 64);
    // SAFETY: the mask outlives the call and holds 1024 bits, the maxnode passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_set_mempolicy,
            common::sys::MPOL_PREFERRED,
            mask.as_ptr(),
            1025usize,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formatting() {
        assert_eq!(super::utc_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc_from_unix(1_795_000_000), "2026-11-18T11:06:40Z");
    }
}
