//! SLAB statistics (`STATS`: `globalstat` and `cpustat` of `/proc/slabinfo`), from one list.
//!
//! Counters live in each `kmem_cache` as atomics (the kernel keeps them there too); with stats
//! off (the default) every update is one predictable branch.

use crate::cache::KmemCache;
use crate::instance::SlabGlobals;
use core::fmt;
use core::sync::atomic::{AtomicI64, AtomicU64, Ordering};

common::define_stats! {
    /// The counting items (the "max" columns `maxobjs`/`maxfreeable` are kept beside them).
    pub enum StatItem {
        LISTALLOCS => "listallocs",
        GROWN => "grown",
        REAPED => "reaped",
        ERRORS => "error",
        NODEALLOCS => "nodeallocs",
        NODEFREES => "remotefrees",
        ACOVERFLOW => "alienoverflow",
        ALLOCHIT => "allochit",
        ALLOCMISS => "allocmiss",
        FREEHIT => "freehit",
        FREEMISS => "freemiss",
    }
}

/// Per-cache counters (all-zero bytes are a valid, empty state).
#[derive(Debug, Default)]
pub(crate) struct CacheStats {
    counters: [AtomicU64; StatItem::COUNT],
    num_active: AtomicI64,
    high_mark: AtomicU64,
    max_freeable: AtomicU64,
}

impl CacheStats {
    /// `STATS_SET_FREEABLE`.
    pub(crate) fn set_freeable(&self, n: u64) {
        self.max_freeable.fetch_max(n, Ordering::Relaxed);
    }
    /// One item.
    pub(crate) fn get(&self, item: StatItem) -> u64 {
        self.counters[item as usize].load(Ordering::Relaxed)
    }
}

/// The `(statistics)` columns of one slabinfo row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlabStats {
    /// `listallocs`: objects taken from slab lists.
    pub listallocs: u64,
    /// `maxobjs`: high mark of active objects.
    pub maxobjs: u64,
    /// `grown`: slabs created.
    pub grown: u64,
    /// `reaped`: slabs given back by the reaper.
    pub reaped: u64,
    /// `error`: double frees caught.
    pub error: u64,
    /// `maxfreeable`: most free slabs seen at a flush.
    pub maxfreeable: u64,
    /// `nodeallocs`: objects from `____cache_alloc_node`.
    pub nodeallocs: u64,
    /// `remotefrees`: frees of other nodes' objects.
    pub remotefrees: u64,
    /// `alienoverflow`: full alien arrays drained.
    pub alienoverflow: u64,
    /// `allochit`.
    pub allochit: u64,
    /// `allocmiss`.
    pub allocmiss: u64,
    /// `freehit`.
    pub freehit: u64,
    /// `freemiss`.
    pub freemiss: u64,
}

impl fmt::Display for SlabStats {
    /// The columns as `s_show` prints them under `STATS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            " : globalstat {:7} {:6} {:5} {:4} {:4} {:4} {:4} {:4} {:4} : cpustat {:6} {:6} {:6} {:6}",
            self.listallocs,
            self.maxobjs,
            self.grown,
            self.reaped,
            self.error,
            self.maxfreeable,
            self.nodeallocs,
            self.remotefrees,
            self.alienoverflow,
            self.allochit,
            self.allocmiss,
            self.freehit,
            self.freemiss
        )
    }
}

/// The header with `STATS`.
pub const STATS_HEADER: &str = "slabinfo - version: 2.1 (statistics)\n# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail> : globalstat <listallocs> <maxobjs> <grown> <reaped> <error> <maxfreeable> <nodeallocs> <remotefrees> <alienoverflow> : cpustat <allochit> <allocmiss> <freehit> <freemiss>";

impl SlabGlobals {
    /// `STATS_INC_*`.
    #[inline(always)]
    pub(crate) fn stat_inc(&self, cachep: &KmemCache, item: StatItem) {
        if self.stats {
            self.stat_add(cachep, item, 1);
        }
    }

    /// `STATS_ADD_*`.
    #[inline(never)]
    pub(crate) fn stat_add(&self, cachep: &KmemCache, item: StatItem, n: u64) {
        if self.stats {
            cachep.stats.counters[item as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `STATS_INC_ACTIVE` / `STATS_DEC_ACTIVE` with `STATS_SET_HIGH`.
    #[inline(always)]
    pub(crate) fn stat_active(&self, cachep: &KmemCache, delta: i64) {
        if self.stats {
            let s = &cachep.stats;
            let now = s.num_active.fetch_add(delta, Ordering::Relaxed) + delta;
            if delta > 0 {
                s.high_mark.fetch_max(now.max(0) as u64, Ordering::Relaxed);
            }
        }
    }

    /// The statistics columns of a cache.
    pub(crate) fn cache_stats(&self, cachep: &KmemCache) -> SlabStats {
        let s = &cachep.stats;
        SlabStats {
            listallocs: s.get(StatItem::LISTALLOCS),
            maxobjs: s.high_mark.load(Ordering::Relaxed),
            grown: s.get(StatItem::GROWN),
            reaped: s.get(StatItem::REAPED),
            error: s.get(StatItem::ERRORS),
            maxfreeable: s.max_freeable.load(Ordering::Relaxed),
            nodeallocs: s.get(StatItem::NODEALLOCS),
            remotefrees: s.get(StatItem::NODEFREES),
            alienoverflow: s.get(StatItem::ACOVERFLOW),
            allochit: s.get(StatItem::ALLOCHIT),
            allocmiss: s.get(StatItem::ALLOCMISS),
            freehit: s.get(StatItem::FREEHIT),
            freemiss: s.get(StatItem::FREEMISS),
        }
    }
}
