//! Statistics counters generated from one list (the kernel's `enum stat_item`).
//!
//! [`define_stats!`] declares an enum of counter items with their printable names; a
//! [`StatCounters`] holds one row of `AtomicU64`s per CPU slot (memory from the page provider).
//! Counting is per CPU and summed on read, as `CONFIG_SLUB_STATS` does; when disabled (the
//! default) [`StatCounters::inc`] is one predictable branch and touches no counter memory.
//!
//! ```
//! common::define_stats! {
//!     /// Example items.
//!     pub enum Item { ALLOC_FASTPATH => "alloc_fastpath", FREE_FASTPATH => "free_fastpath" }
//! }
//! assert_eq!(Item::NAMES, &["alloc_fastpath", "free_fastpath"]);
//! assert_eq!(Item::COUNT, 2);
//! ```

use crate::percpu::{cpu_id, PerCpu};
use crate::provider::PageProvider;
use core::sync::atomic::{AtomicU64, Ordering};

/// Declares a stat-item enum: variants, `COUNT`, `NAMES` and `ALL`.
#[macro_export]
macro_rules! define_stats {
    ($(#[$m:meta])* $vis:vis enum $name:ident { $($item:ident => $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(usize)]
        $vis enum $name { $($item),+ }

        #[allow(dead_code)]
        impl $name {
            /// Number of items.
            pub const COUNT: usize = [$($name::$item),+].len();
            /// Printable names (CSV columns, sysfs file names), in order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            /// All items, in order.
            pub const ALL: &'static [$name] = &[$($name::$item),+];
            /// The printable name.
            pub const fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }
        }
    };
}

/// Per-CPU counter rows for `N` items.
pub struct StatCounters<const N: usize> {
    enabled: bool,
    rows: Option<PerCpu<[AtomicU64; N]>>,
}

impl<const N: usize> StatCounters<N> {
    /// Counters for `nr_cpus` CPUs; with `enabled == false` no memory is taken and every
    /// increment is a no-op. `None` if the provider has no memory for the rows.
    pub fn new(provider: &PageProvider, nr_cpus: usize, enabled: bool) -> Option<Self> {
        let rows = if enabled {
            Some(PerCpu::new(provider, nr_cpus, |_| {
                core::array::from_fn(|_| AtomicU64::new(0))
            })?)
        } else {
            None
        };
        Some(Self { enabled, rows })
    }

    /// Whether counting is on.
    #[inline(always)]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `stat(s, item)`: adds one on the current CPU's row.
    #[inline(always)]
    pub fn inc(&self, item: usize) {
        if self.enabled {
            self.add_slow(cpu_id(), item, 1);
        }
    }

    /// Adds `n` on the current CPU's row.
    #[inline(always)]
    pub fn add(&self, item: usize, n: u64) {
        if self.enabled {
            self.add_slow(cpu_id(), item, n);
        }
    }

    /// Adds one on `cpu`'s row (when the caller already knows its CPU).
    #[inline(always)]
    pub fn inc_on(&self, cpu: usize, item: usize) {
        if self.enabled {
            self.add_slow(cpu, item, 1);
        }
    }

    #[inline(never)]
    fn add_slow(&self, cpu: usize, item: usize, n: u64) {
        if let Some(rows) = &self.rows {
            rows.get(cpu)[item].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The sum over CPUs of one item.
    pub fn sum(&self, item: usize) -> u64 {
        self.rows.as_ref().map_or(0, |r| {
            r.iter()
                .map(|(_, row)| row[item].load(Ordering::Relaxed))
                .sum()
        })
    }

    /// One item on one CPU.
    pub fn get(&self, cpu: usize, item: usize) -> u64 {
        self.rows
            .as_ref()
            .map_or(0, |r| r.get(cpu)[item].load(Ordering::Relaxed))
    }

    /// All items summed over CPUs.
    pub fn totals(&self) -> [u64; N] {
        core::array::from_fn(|i| self.sum(i))
    }

    /// Sets every counter to zero.
    pub fn clear(&self) {
        if let Some(r) = &self.rows {
            for (_, row) in r.iter() {
                for c in row {
                    c.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::ProviderConfig;
    use crate::topology::Topology;

    // The macro's items are `pub` for the allocators' public stat enums; this one is local.
    #[allow(unreachable_pub)]
    mod t {
        crate::define_stats! {
            pub(super) enum T { A => "a", B => "b", C => "c" }
        }
    }
    use t::T;

    #[test]
    fn counts_summed_and_free_when_off() {
        let p =
            PageProvider::new(&ProviderConfig::small(Topology::uniform(1, 2).unwrap(), 4)).unwrap();
        let on = StatCounters::<{ T::COUNT }>::new(&p, 2, true).unwrap();
        on.inc_on(0, T::B as usize);
        on.inc_on(1, T::B as usize);
        on.inc(T::A as usize);
        on.add(T::C as usize, 5);
        assert_eq!(on.totals(), [1, 2, 5]);
        assert_eq!(on.get(1, T::B as usize), 1);
        on.clear();
        assert_eq!(on.sum(T::B as usize), 0);
        let before = p.stats().pages_in_use;
        let off = StatCounters::<{ T::COUNT }>::new(&p, 2, false).unwrap();
        off.inc(T::A as usize);
        assert_eq!(off.sum(T::A as usize), 0);
        assert_eq!(
            p.stats().pages_in_use,
            before,
            "disabled counters take no memory"
        );
        assert_eq!(T::C.name(), "c");
    }
}
