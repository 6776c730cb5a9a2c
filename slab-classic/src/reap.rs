//! Reaping — 2.6.32 `cache_reap`, `drain_array`, `start_cpu_timer` — on a fake clock.
//!
//! The kernel runs `cache_reap` from a per-CPU delayed work every `REAPTIMEOUT_CPUC` (2 s); the
//! per-node part of each cache runs when its staggered `next_reap` (every `REAPTIMEOUT_LIST3`,
//! 4 s) has passed. Here time is the instance's own `jiffies` counter (`HZ` = 1000): tests move
//! it with `Slab::advance_jiffies` and call `Slab::cache_reap(cpu)` by hand, so every run is
//! deterministic; the optional background reaper thread (`Slab::start_reaper`) sleeps 2 s,
//! advances the clock by 2 s and reaps every CPU.

use crate::arraycache::ArrayRef;
use crate::cache::KmemCache;
use crate::instance::SlabGlobals;
use crate::node::ListGuard;
use crate::stats::StatItem;
use core::sync::atomic::Ordering;

/// Jiffies per second.
pub const HZ: usize = 1000;
/// `REAPTIMEOUT_CPUC`: per-CPU reaping every 2 s.
pub const REAPTIMEOUT_CPUC: usize = 2 * HZ;

/// `REAPTIMEOUT_LIST3`: per-node reaping every 4 s (in jiffies).
pub(crate) const REAPTIMEOUT_LIST3: usize = 4 * HZ;

/// `time_after(a, b)`: `a` is later than `b` (wrapping).
#[inline]
pub const fn time_after(a: usize, b: usize) -> bool {
    (b.wrapping_sub(a) as isize) < 0
}

/// How many entries `drain_array` frees: all when forced, else `(limit + 4) / 5`, halved
/// (rounded up) when that is more than what the array holds.
pub const fn drain_array_count(avail: u32, limit: u32, force: bool) -> u32 {
    let mut tofree = if force { avail } else { (limit + 4) / 5 };
    if tofree > avail {
        tofree = avail.div_ceil(2);
    }
    tofree
}

/// `drain_freelist`'s share per node reap: ⌈free_limit / (5 × num)⌉ slabs.
pub const fn reap_freelist_count(free_limit: usize, num: usize) -> usize {
    (free_limit + 5 * num - 1) / (5 * num)
}

impl SlabGlobals {
    /// The locked half of `drain_array`: `free_block` of up to a fifth of `limit` (all with
    /// `force`) of the oldest objects.
    fn drain_array_locked(
        &self,
        cachep: &KmemCache,
        l3: &ListGuard<'_>,
        ac: ArrayRef<'_>,
        force: bool,
    ) {
        if ac.avail() == 0 {
            return;
        }
        let tofree = drain_array_count(ac.avail(), ac.limit(), force);
        // SAFETY: the array holds handed-out objects of this cache on l3's node.
        unsafe { self.free_block(cachep, l3, ac.entries(), tofree as usize) };
        ac.shift_down(tofree);
    }

    /// `drain_array` of a (locked) CPU array: a touched array is only untouched; else part of
    /// it goes back under `node`'s `list_lock`.
    pub(crate) fn drain_array(
        &self,
        cachep: &KmemCache,
        ac: ArrayRef<'_>,
        force: bool,
        node: usize,
    ) {
        if ac.avail() == 0 {
            return;
        }
        if ac.touched() && !force {
            ac.set_touched(false);
        } else {
            let l3 = self.lock_list(cachep, node);
            self.drain_array_locked(cachep, &l3, ac, force);
        }
    }

    /// `drain_array` of `node`'s shared array (under `list_lock`, which protects it).
    pub(crate) fn drain_shared(&self, cachep: &KmemCache, force: bool, node: usize) {
        let l3 = self.lock_list(cachep, node);
        let Some(ac) = l3.shared() else {
            return;
        };
        if ac.avail() > 0 {
            if ac.touched() && !force {
                ac.set_touched(false);
            } else {
                self.drain_array_locked(cachep, &l3, ac, force);
            }
        }
    }

    /// `cache_reap` as CPU `cpu` runs it: for every cache, reap one alien array, drain the
    /// CPU's array; every 4 s per node also the shared array and, unless a slab was taken from
    /// `slabs_free` since the last time, ⌈free_limit/(5·num)⌉ free slabs. Gives up at once if
    /// the chain mutex is busy. Returns the number of slabs given back.
    pub(crate) fn cache_reap(&self, cpu: usize) -> usize {
        if !self.settings.reap {
            return 0;
        }
        let cpu = cpu % self.nr_cpus;
        let Some(chain) = self.chain_try_lock() else {
            return 0;
        };
        let node = self.cpu_node[cpu] as usize;
        let mut total = 0;
        for searchp in self.caches(&chain) {
            total += self.reap_one(searchp, cpu, node);
        }
        drop(chain);
        self.next_reap_node(cpu);
        total
    }

    /// `cache_reap`'s body for one cache. Locks in the documented order (CPU slot →
    /// list_lock; alien lock → list_lock).
    fn reap_one(&self, searchp: &KmemCache, cpu: usize, node: usize) -> usize {
        self.reap_alien(searchp, node, cpu);
        {
            let slot = self.slot_lock(searchp, cpu);
            self.drain_array(searchp, slot.ac(), false, node);
        }
        let now = self.jiffies();
        {
            let l3 = self.lock_list(searchp, node);
            if time_after(l3.next_reap(), now) {
                return 0;
            }
            l3.set_next_reap(now.wrapping_add(REAPTIMEOUT_LIST3));
        }
        self.drain_shared(searchp, false, node);
        let tofree = {
            let l3 = self.lock_list(searchp, node);
            if l3.free_touched() {
                l3.set_free_touched(false);
                0
            } else {
                reap_freelist_count(l3.free_limit(), searchp.num as usize)
            }
        };
        if tofree == 0 {
            return 0;
        }
        let freed = self.drain_freelist(searchp, node, tofree);
        self.stat_add(searchp, StatItem::REAPED, freed as u64);
        freed
    }

    /// The background reaper: every `REAPTIMEOUT_CPUC`, advance the clock and reap every CPU.
    pub(crate) fn reaper_loop(&self) {
        while !self.reaper_stop.load(Ordering::Acquire) {
            std::thread::park_timeout(std::time::Duration::from_millis(REAPTIMEOUT_CPUC as u64));
            if self.reaper_stop.load(Ordering::Acquire) {
                break;
            }
            self.advance_jiffies(REAPTIMEOUT_CPUC);
            for cpu in 0..self.nr_cpus {
                self.cache_reap(cpu);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaper_arithmetic() {
        assert_eq!(drain_array_count(100, 120, false), 24);
        assert_eq!(drain_array_count(10, 120, false), 5);
        assert_eq!(drain_array_count(11, 120, false), 6);
        assert_eq!(drain_array_count(7, 120, true), 7);
        assert_eq!(drain_array_count(1, 1, false), 1);
        // free_limit 3*60+59 = 239 for size-64 on a 2-CPU node: ceil(239/295) = 1.
        assert_eq!(reap_freelist_count(239, 59), 1);
        assert_eq!(reap_freelist_count(600, 10), 12);
        assert!(time_after(5, 4));
        assert!(!time_after(4, 4));
        assert!(time_after(1, usize::MAX));
    }
}
