//! Reaping — 2.6.32 `cache_reap`, `drain_array`, `start_cpu_timer` — on a fake clock.
//!
//! The kernel runs `cache_reap` from a per-CPU delayed work every `REAPTIMEOUT_CPUC` (2 s); the
//! per-node part of each cache runs when its staggered `next_reap` (every `REAPTIMEOUT_LIST3`,
//! 4 s) has passed. Here time is the instance's own `jiffies` counter (`HZ` = 1000): tests move
//! it with `Slab::advance_jiffies` and call `Slab::cache_reap(cpu)` by hand, so every run is
//! deterministic; the optional background reaper thread (`Slab::start_reaper`) sleeps 2 s,
//! advances the clock by 2 s and reaps every CPU.

use crate::arraycache::{ac_entry, ac_shift_down, ArrayCache};
use crate::bootstrap::SlabGlobals;
use crate::cache::KmemCache;
use crate::node::{KmemList3, REAPTIMEOUT_LIST3};
use crate::stats::StatItem;
use common::list::ListHead;
use core::sync::atomic::Ordering;

/// Jiffies per second.
pub const HZ: usize = 1000;
/// `REAPTIMEOUT_CPUC`: per-CPU reaping every 2 s.
pub const REAPTIMEOUT_CPUC: usize = 2 * HZ;

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
    /// The body of `drain_array` once the node lock is held: frees the oldest entries.
    ///
    /// # Safety
    /// `ac` protected (CPU slot or list_lock), list_lock of `node` held.
    unsafe fn drain_array_locked(
        &self,
        cachep: *mut KmemCache,
        ac: *mut ArrayCache,
        force: bool,
        node: usize,
    ) {
        // SAFETY: as documented.
        unsafe {
            if (*ac).avail == 0 {
                return;
            }
            let tofree = drain_array_count((*ac).avail, (*ac).limit, force);
            self.free_block(cachep, ac_entry(ac), tofree as usize, node);
            ac_shift_down(ac, tofree);
        }
    }

    /// `drain_array` for a CPU array: a touched array is only un-touched; otherwise part of it
    /// (all if `force`) goes back to the node.
    ///
    /// # Safety
    /// The CPU slot owning `ac` is locked; `l3` is `cachep`'s list3 of `node`.
    pub(crate) unsafe fn drain_array(
        &self,
        cachep: *mut KmemCache,
        l3: *mut KmemList3,
        ac: *mut ArrayCache,
        force: bool,
        node: usize,
    ) {
        // SAFETY: as documented.
        unsafe {
            if ac.is_null() || (*ac).avail == 0 {
                return;
            }
            if (*ac).touched != 0 && !force {
                (*ac).touched = 0;
            } else {
                (*l3).list_lock.lock();
                self.drain_array_locked(cachep, ac, force, node);
                (*l3).list_lock.unlock();
            }
        }
    }

    /// `drain_array` for the node's shared array (protected by the node lock, taken first).
    ///
    /// # Safety
    /// `l3` is `cachep`'s list3 of `node`.
    pub(crate) unsafe fn drain_shared(
        &self,
        cachep: *mut KmemCache,
        l3: *mut KmemList3,
        force: bool,
        node: usize,
    ) {
        // SAFETY: as documented.
        unsafe {
            (*l3).list_lock.lock();
            let ac = (*l3).shared;
            if !ac.is_null() && (*ac).avail > 0 {
                if (*ac).touched != 0 && !force {
                    (*ac).touched = 0;
                } else {
                    self.drain_array_locked(cachep, ac, force, node);
                }
            }
            (*l3).list_lock.unlock();
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
        let Some(_chain) = self.chain_try_lock() else {
            return 0;
        };
        let node = self.cpu_node[cpu] as usize;
        let mut total = 0;
        // SAFETY: the chain is stable under its mutex; every structure is used under its lock
        // in the documented order (CPU slot → list_lock; alien lock → list_lock).
        unsafe {
            for link in ListHead::iter(self.cache_chain_head()) {
                let searchp = crate::cache_from_chain(link);
                let l3 = self.l3(searchp, node);
                self.reap_alien(searchp, l3, cpu);
                let slot = self.cpu_slot(searchp, cpu);
                self.slot_lock(slot, cpu);
                self.drain_array(searchp, l3, (*slot).ac, false, node);
                self.slot_unlock(slot);

                let now = self.jiffies();
                (*l3).list_lock.lock();
                if time_after((*l3).next_reap, now) {
                    (*l3).list_lock.unlock();
                    continue;
                }
                (*l3).next_reap = now.wrapping_add(REAPTIMEOUT_LIST3);
                (*l3).list_lock.unlock();

                self.drain_shared(searchp, l3, false, node);

                (*l3).list_lock.lock();
                let tofree = if (*l3).free_touched != 0 {
                    (*l3).free_touched = 0;
                    0
                } else {
                    reap_freelist_count((*l3).free_limit as usize, (*searchp).num as usize)
                };
                (*l3).list_lock.unlock();
                if tofree > 0 {
                    let freed = self.drain_freelist(searchp, l3, tofree);
                    self.stat_add(searchp, StatItem::REAPED, freed as u64);
                    total += freed;
                }
            }
        }
        self.next_reap_node(cpu);
        total
    }

    /// The background reaper: every `REAPTIMEOUT_CPUC` it advances the clock and reaps every
    /// CPU, until `reaper_stop`.
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
