//! Settings from the environment, read without the heap: `libc::getenv` on static C strings,
//! bytes parsed by hand. A bad value is a [`ConfigError`]; the caller prints it as one line and
//! exits (never a silent default).

use crate::out::{FdWriter, STDERR};
use core::ffi::CStr;
use core::fmt::Write;
use slab_classic::{SlabSettings, Tunables};
use slub::{Era, SlubSettings};

/// Which allocator serves the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// slab-classic (Linux 2.6.32 SLAB).
    Slab,
    /// slub (Linux 6.4 SLUB).
    Slub,
}

impl Kind {
    /// The value `SLABWORKS_ALLOCATOR` takes for it.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Slab => "slab",
            Kind::Slub => "slub",
        }
    }
}

/// Longest `SLABWORKS_SLABINFO` path kept.
pub const PATH_MAX: usize = 512;

/// Everything the environment decides.
#[derive(Clone, Copy)]
pub struct Config {
    /// `SLABWORKS_ALLOCATOR`.
    pub kind: Kind,
    /// `SLABWORKS_FAKE_NUMA` (0: off).
    pub fake_numa: usize,
    /// `SLABWORKS_ARENA_MIB` (address space per node, MiB).
    pub arena_mib: usize,
    /// SLAB settings (`SLABWORKS_SLAB`, `SLABWORKS_STATS`).
    pub slab: SlabSettings,
    /// SLUB settings (`SLABWORKS_SLUB`, `SLABWORKS_STATS`).
    pub slub: SlubSettings,
    /// `SLABWORKS_SLABINFO` as bytes (`-` is stderr), `len == 0`: no report.
    pub slabinfo: [u8; PATH_MAX],
    /// Length of `slabinfo`.
    pub slabinfo_len: usize,
    /// `SLABWORKS_FORK_GATE` (default on).
    pub fork_gate: bool,
}

/// A bad environment value: which variable, what it held, what was expected.
#[derive(Clone, Copy, Debug)]
pub struct ConfigError {
    /// The variable.
    pub var: &'static str,
    /// Its value (truncated to 64 bytes).
    pub value: [u8; 64],
    /// Bytes of `value` used.
    pub value_len: usize,
    /// What is wrong / expected.
    pub msg: &'static str,
}

impl ConfigError {
    fn new(var: &'static str, value: &[u8], msg: &'static str) -> Self {
        let mut v = [0u8; 64];
        let n = value.len().min(64);
        v[..n].copy_from_slice(&value[..n]);
        Self {
            var,
            value: v,
            value_len: n,
            msg,
        }
    }

    /// Prints the error as one line on stderr (no heap).
    pub fn print(&self) {
        let mut w = FdWriter::new(STDERR);
        let _ = write!(w, "slabworks: {}=\"", self.var);
        w.write_bytes(&self.value[..self.value_len]);
        let _ = writeln!(w, "\": {}", self.msg);
        w.flush();
    }
}

/// Environment variable names (also the documentation's table).
pub mod vars {
    /// `slab` or `slub`.
    pub const ALLOCATOR: &core::ffi::CStr = c"SLABWORKS_ALLOCATOR";
    /// Fake NUMA node count.
    pub const FAKE_NUMA: &core::ffi::CStr = c"SLABWORKS_FAKE_NUMA";
    /// Topology source (only `sysfs` here).
    pub const TOPOLOGY: &core::ffi::CStr = c"SLABWORKS_TOPOLOGY";
    /// Arena MiB per node.
    pub const ARENA_MIB: &core::ffi::CStr = c"SLABWORKS_ARENA_MIB";
    /// SLAB options.
    pub const SLAB: &core::ffi::CStr = c"SLABWORKS_SLAB";
    /// SLUB options.
    pub const SLUB: &core::ffi::CStr = c"SLABWORKS_SLUB";
    /// Statistics counters on/off.
    pub const STATS: &core::ffi::CStr = c"SLABWORKS_STATS";
    /// Report path at exit.
    pub const SLABINFO: &core::ffi::CStr = c"SLABWORKS_SLABINFO";
    /// Fork gate on/off.
    pub const FORK_GATE: &core::ffi::CStr = c"SLABWORKS_FORK_GATE";
}

fn name_of(v: &'static CStr) -> &'static str {
    v.to_str().unwrap_or("SLABWORKS_?")
}

pub use common::sys::getenv;

/// Parses a decimal `usize` (no sign, no spaces, at most 18 digits).
pub fn parse_usize(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 18 {
        return None;
    }
    let mut v = 0usize;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as usize;
    }
    Some(v)
}

fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && s[a].is_ascii_whitespace() {
        a += 1;
    }
    while b > a && s[b - 1].is_ascii_whitespace() {
        b -= 1;
    }
    &s[a..b]
}

/// Splits an option string at spaces and commas into `key[=value]` tokens.
fn tokens(s: &[u8]) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    s.split(|&c| c == b' ' || c == b',')
        .filter(|t| !t.is_empty())
        .map(|t| match t.iter().position(|&c| c == b'=') {
            Some(i) => (&t[..i], Some(&t[i + 1..])),
            None => (t, None),
        })
}

/// Parses `SLABWORKS_SLAB`: `limit=N batchcount=N shared=N` (all three together: every cache's
/// tunables), `break_order=N` (`slab_break_gfp_order`), `noaliencache`, `noreap`, `stats`.
pub fn parse_slab(s: &[u8], mut out: SlabSettings) -> Result<SlabSettings, ConfigError> {
    let var = name_of(vars::SLAB);
    let (mut limit, mut batch, mut shared) = (None, None, None);
    for (k, v) in tokens(s) {
        let num = |what: &'static str| {
            v.and_then(parse_usize)
                .ok_or(ConfigError::new(var, s, what))
        };
        match k {
            b"limit" => limit = Some(num("limit=N needs a number")?),
            b"batchcount" => batch = Some(num("batchcount=N needs a number")?),
            b"shared" => shared = Some(num("shared=N needs a number")?),
            b"break_order" => {
                let o = num("break_order=N needs a number")?;
                if o >= common::MAX_ORDER {
                    return Err(ConfigError::new(var, s, "break_order must be below 11"));
                }
                out.slab_break_gfp_order = Some(o);
            }
            b"noaliencache" if v.is_none() => out.use_alien_caches = false,
            b"noreap" if v.is_none() => out.reap = false,
            b"stats" if v.is_none() => out.stats = true,
            _ => {
                return Err(ConfigError::new(
                    var,
                    s,
                    "unknown option; expected limit=N batchcount=N shared=N break_order=N noaliencache noreap stats",
                ))
            }
        }
    }
    match (limit, batch, shared) {
        (None, None, None) => {}
        (Some(l), Some(b), Some(sh)) => {
            let t = Tunables {
                limit: u32::try_from(l).unwrap_or(u32::MAX),
                batchcount: u32::try_from(b).unwrap_or(u32::MAX),
                shared: u32::try_from(sh).unwrap_or(u32::MAX),
            };
            if t.check().is_err() {
                return Err(ConfigError::new(
                    var,
                    s,
                    "tunables need 1 <= batchcount <= limit <= 1048576 and shared <= 1024",
                ));
            }
            out.tunables = Some(t);
        }
        _ => {
            return Err(ConfigError::new(
                var,
                s,
                "limit=, batchcount= and shared= must be given together",
            ))
        }
    }
    Ok(out)
}

/// Parses `SLABWORKS_SLUB`, the language of `SlubSettings::from_boot_options` (re-implemented
/// here because that one builds its error message on the heap): `slub_min_order=N
/// slub_max_order=N slub_min_objects=N slab_nomerge slab_merge slub_cpu_partial=N
/// slub_min_partial=N era=6.4|2.6.32|6.18|7.0 hardened stats remote_node_defrag_ratio=N seed=N
/// init_on_alloc[=0|1] init_on_free[=0|1]`.
pub fn parse_slub(s: &[u8], mut out: SlubSettings) -> Result<SlubSettings, ConfigError> {
    let var = name_of(vars::SLUB);
    for (k, v) in tokens(s) {
        let num = || {
            v.and_then(parse_usize).ok_or(ConfigError::new(
                var,
                s,
                "option needs =N with a decimal number",
            ))
        };
        match k {
            b"slub_min_order" => {
                let o = num()?;
                if o >= common::MAX_ORDER {
                    return Err(ConfigError::new(var, s, "slub_min_order must be below 11"));
                }
                out.slub_min_order = o;
            }
            b"slub_max_order" => out.slub_max_order = num()?,
            b"slub_min_objects" => out.slub_min_objects = num()?,
            b"slab_nomerge" | b"slub_nomerge" if v.is_none() => out.slab_nomerge = true,
            b"slab_merge" | b"slub_merge" if v.is_none() => out.slab_nomerge = false,
            b"slub_cpu_partial" | b"cpu_partial" => out.cpu_partial = Some(num()?),
            b"slub_min_partial" | b"min_partial" => out.min_partial = Some(num()?),
            b"remote_node_defrag_ratio" => out.remote_node_defrag_ratio = num()?.min(100),
            b"hardened" | b"freelist_hardened" if v.is_none() => out.freelist_hardened = true,
            b"stats" | b"slub_stats" if v.is_none() => out.stats = true,
            b"seed" => out.random_seed = num()? as u64,
            b"init_on_alloc" => out.init_on_alloc = v.map_or(Ok(true), |v| parse_bool(vars::SLUB, v))?,
            b"init_on_free" => out.init_on_free = v.map_or(Ok(true), |v| parse_bool(vars::SLUB, v))?,
            b"era" => {
                out.era = match v {
                    Some(b"6.4") => Era::V6_4,
                    Some(b"2.6.32") => Era::V2_6_32,
                    Some(b"6.18") => Era::V6_18,
                    Some(b"7.0") => Era::V7_0,
                    _ => return Err(ConfigError::new(var, s, "era must be 6.4, 2.6.32, 6.18 or 7.0")),
                }
            }
            _ => {
                return Err(ConfigError::new(
                    var,
                    s,
                    "unknown option; expected slub_min_order= slub_max_order= slub_min_objects= slab_nomerge slab_merge slub_cpu_partial= slub_min_partial= era=6.4|2.6.32|6.18|7.0 hardened stats remote_node_defrag_ratio= seed= init_on_alloc[=0|1] init_on_free[=0|1]",
                ))
            }
        }
    }
    Ok(out)
}

/// Parses a `0`/`1` switch.
fn parse_bool(var: &'static CStr, s: &[u8]) -> Result<bool, ConfigError> {
    match trim(s) {
        b"1" | b"yes" | b"on" | b"true" => Ok(true),
        b"0" | b"no" | b"off" | b"false" | b"" => Ok(false),
        _ => Err(ConfigError::new(name_of(var), s, "expected 0 or 1")),
    }
}

/// Reads every `SLABWORKS_*` variable the preload library knows.
pub fn from_env() -> Result<Config, ConfigError> {
    from_lookup(&|v| getenv(v))
}

/// As [`from_env`] with another source of values (tests).
pub fn from_lookup(get: &dyn Fn(&'static CStr) -> Option<&[u8]>) -> Result<Config, ConfigError> {
    let kind = match get(vars::ALLOCATOR).map(trim) {
        None | Some(b"slub") => Kind::Slub,
        Some(b"slab") => Kind::Slab,
        Some(v) => {
            return Err(ConfigError::new(
                name_of(vars::ALLOCATOR),
                v,
                "expected slab or slub",
            ))
        }
    };
    let fake_numa = match get(vars::FAKE_NUMA) {
        None => 0,
        Some(v) => match parse_usize(trim(v)) {
            Some(n) if n <= common::MAX_NUMNODES => n,
            _ => {
                return Err(ConfigError::new(
                    name_of(vars::FAKE_NUMA),
                    v,
                    "expected a node count from 0 (off) to 64",
                ))
            }
        },
    };
    match get(vars::TOPOLOGY).map(trim) {
        None | Some(b"" | b"sysfs") => {}
        Some(v) => {
            return Err(ConfigError::new(
                name_of(vars::TOPOLOGY),
                v,
                "the preload library reads topology from sysfs only (hwloc would allocate)",
            ))
        }
    }
    let arena_mib = match get(vars::ARENA_MIB) {
        None => 4096,
        Some(v) => match parse_usize(trim(v)) {
            Some(n) if (4..=1 << 20).contains(&n) => n,
            _ => {
                return Err(ConfigError::new(
                    name_of(vars::ARENA_MIB),
                    v,
                    "expected MiB of address space per node, 4 to 1048576",
                ))
            }
        },
    };
    let stats = match get(vars::STATS) {
        None => false,
        Some(v) => parse_bool(vars::STATS, v)?,
    };
    let mut slab = SlabSettings {
        stats,
        reaper_thread: false,
        ..SlabSettings::default()
    };
    if let Some(v) = get(vars::SLAB) {
        slab = parse_slab(v, slab)?;
    }
    slab.reaper_thread = false;
    let mut slub = SlubSettings {
        stats,
        ..SlubSettings::default()
    };
    if let Some(v) = get(vars::SLUB) {
        slub = parse_slub(v, slub)?;
    }
    let fork_gate = match get(vars::FORK_GATE) {
        None => true,
        Some(v) => parse_bool(vars::FORK_GATE, v)?,
    };
    let mut slabinfo = [0u8; PATH_MAX];
    let mut slabinfo_len = 0;
    if let Some(v) = get(vars::SLABINFO) {
        let v = trim(v);
        if v.len() >= PATH_MAX {
            return Err(ConfigError::new(
                name_of(vars::SLABINFO),
                v,
                "path longer than 511 bytes",
            ));
        }
        slabinfo[..v.len()].copy_from_slice(v);
        slabinfo_len = v.len();
    }
    Ok(Config {
        kind,
        fake_numa,
        arena_mib,
        slab,
        slub,
        slabinfo,
        slabinfo_len,
        fork_gate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&'static CStr, &'static str)]) -> Result<Config, ConfigError> {
        from_lookup(&|v| {
            pairs
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, s)| s.as_bytes())
        })
    }

    #[test]
    fn defaults_and_choices() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.kind, Kind::Slub);
        assert_eq!(c.fake_numa, 0);
        assert_eq!(c.slabinfo_len, 0);
        assert_eq!(cfg(&[(vars::ALLOCATOR, "slab")]).unwrap().kind, Kind::Slab);
        let e = cfg(&[(vars::ALLOCATOR, "jemalloc")]).err().unwrap();
        assert_eq!(e.var, "SLABWORKS_ALLOCATOR");
        assert!(cfg(&[(vars::FAKE_NUMA, "x")]).is_err());
        assert!(cfg(&[(vars::FAKE_NUMA, "65")]).is_err());
        assert_eq!(cfg(&[(vars::FAKE_NUMA, "2")]).unwrap().fake_numa, 2);
        assert!(cfg(&[(vars::STATS, "maybe")]).is_err());
        assert!(cfg(&[(vars::TOPOLOGY, "hwloc")]).is_err());
        assert!(c.fork_gate);
        assert!(!cfg(&[(vars::FORK_GATE, "0")]).unwrap().fork_gate);
        assert!(cfg(&[(vars::FORK_GATE, "sometimes")]).is_err());
    }

    #[test]
    fn slab_options() {
        let c = cfg(&[(
            vars::SLAB,
            "limit=54,batchcount=27 shared=8 break_order=0 noaliencache stats",
        )])
        .unwrap();
        let t = c.slab.tunables.unwrap();
        assert_eq!((t.limit, t.batchcount, t.shared), (54, 27, 8));
        assert_eq!(c.slab.slab_break_gfp_order, Some(0));
        assert!(!c.slab.use_alien_caches && c.slab.stats && !c.slab.reaper_thread);
        assert!(cfg(&[(vars::SLAB, "limit=5")]).is_err());
        assert!(cfg(&[(vars::SLAB, "limit=5 batchcount=6 shared=0")]).is_err());
        assert!(cfg(&[(vars::SLAB, "bogus")]).is_err());
    }

    #[test]
    fn slub_options_match_boot_options() {
        let s = "slub_min_order=1 slub_max_order=2,slub_min_objects=8 slab_nomerge era=2.6.32 hardened stats seed=7 slub_cpu_partial=3 min_partial=4 remote_node_defrag_ratio=50 init_on_alloc init_on_free=1";
        let ours = cfg(&[(vars::SLUB, s)]).unwrap().slub;
        let theirs = SlubSettings::from_boot_options(s).unwrap();
        assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
        assert!(cfg(&[(vars::SLUB, "era=5")]).is_err());
        // The sheaves eras.
        assert_eq!(cfg(&[(vars::SLUB, "era=7.0")]).unwrap().slub.era, Era::V7_0);
        assert_eq!(
            cfg(&[(vars::SLUB, "era=6.18")]).unwrap().slub.era,
            Era::V6_18
        );
        assert!(cfg(&[(vars::SLUB, "slub_min_order=x")]).is_err());
        assert!(cfg(&[(vars::SLUB, "nonsense")]).is_err());
        assert!(cfg(&[(vars::SLUB, "init_on_free=2")]).is_err());
        let off = cfg(&[(vars::SLUB, "init_on_alloc=0")]).unwrap().slub;
        assert!(!off.init_on_alloc && !off.init_on_free);
    }
}
