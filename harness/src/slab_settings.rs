//! `--slab KEY=VALUE` settings for slab-classic and the constructor that applies them.

use common::PageProvider;
use slab_classic::{FastPath, Slab, SlabSettings, Tunables};

/// Keys accepted by `--slab`.
pub(crate) const KEYS: &[&str] = &[
    "limit",
    "batchcount",
    "shared",
    "break_gfp_order",
    "alien",
    "reap",
    "stats",
    "fastpath",
    "config",
];

fn is_flag(k: &str) -> bool {
    matches!(k, "alien" | "reap" | "stats")
}

fn flag(v: &str) -> Option<bool> {
    match v {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// Checks one setting without building anything.
pub(crate) fn check(k: &str, v: &str) -> Result<(), String> {
    if !KEYS.contains(&k) {
        return Err(format!("unknown key '{k}' ({})", KEYS.join(", ")));
    }
    if k == "fastpath" {
        return match v {
            "auto" | "rseq" | "lock" => Ok(()),
            _ => Err(format!("{k}={v}: expected auto, rseq or lock")),
        };
    }
    if k == "config" {
        return common::KernelConfig::parse(v)
            .map(|_| ())
            .ok_or_else(|| format!("{k}={v}: expected kernel, hardened or checked"));
    }
    if is_flag(k) {
        return flag(v)
            .map(|_| ())
            .ok_or_else(|| format!("{k}={v}: expected on/off"));
    }
    let n = v
        .parse::<usize>()
        .map_err(|_| format!("{k}={v}: not a non-negative integer"))?;
    if k == "break_gfp_order" && n >= common::MAX_ORDER {
        return Err(format!(
            "{k}={v}: orders go up to {}",
            common::MAX_ORDER - 1
        ));
    }
    Ok(())
}

/// The settings the pairs describe. `limit` alone sets the whole table like a slabinfo write
/// with the kernel's companions: `batchcount = (limit + 1) / 2`, `shared = 8`.
pub(crate) fn settings(pairs: &[(String, String)]) -> Result<SlabSettings, String> {
    let mut s = SlabSettings::default();
    let (mut limit, mut batch, mut shared) = (None, None, None);
    for (k, v) in pairs {
        check(k, v)?;
        let n = || v.parse::<u32>().unwrap_or(u32::MAX);
        match k.as_str() {
            "limit" => limit = Some(n()),
            "batchcount" => batch = Some(n()),
            "shared" => shared = Some(n()),
            "break_gfp_order" => s.slab_break_gfp_order = v.parse().ok(),
            "alien" => s.use_alien_caches = flag(v).unwrap_or(true),
            "reap" => s.reap = flag(v).unwrap_or(true),
            "stats" => s.stats = flag(v).unwrap_or(false),
            "config" => s.config = common::KernelConfig::parse(v).unwrap_or_default(),
            "fastpath" => {
                s.fastpath = match v.as_str() {
                    "rseq" => FastPath::Rseq,
                    "lock" => FastPath::Lock,
                    _ => FastPath::Auto,
                }
            }
            _ => {}
        }
    }
    if limit.is_some() || batch.is_some() || shared.is_some() {
        let limit = limit.ok_or("batchcount/shared need limit too")?;
        let t = Tunables {
            limit,
            batchcount: batch.unwrap_or(limit.div_ceil(2).max(1)),
            shared: shared.unwrap_or(8),
        };
        s.tunables = Some(t.check().map_err(|e| format!("tunables: {e}"))?);
    }
    Ok(s)
}

/// Builds slab-classic with the lock-based fast path (2.6.32's `local_irq_save` stand-in).
pub(crate) fn build_lock(p: &PageProvider, pairs: &[(String, String)]) -> Result<Slab, String> {
    let s = SlabSettings {
        fastpath: FastPath::Lock,
        ..settings(pairs)?
    };
    Slab::new(p, s).map_err(|e| format!("slab-lock: {e}"))
}

/// Builds a slab-classic instance on `p` with the settings applied.
pub(crate) fn build(p: &PageProvider, pairs: &[(String, String)]) -> Result<Slab, String> {
    Slab::new(p, settings(pairs)?).map_err(|e| format!("slab: {e}"))
}
