//! The rseq fast path of the per-CPU arrays. Mode selection (an explicit setting wins;
//! `SLAB_FASTPATH` overrides `Auto` only), an oversubscribed
//! signal-storm stress (more threads than CPUs, unpinned, `sched_yield`, SIGUSR1 thrown at the
//! threads, cross-thread frees, content stamps, concurrent reaps and tunes from other threads,
//! `validate()` clean, the abort counter moved) in both modes, and the fallback when glibc did
//! not register rseq (a child with `GLIBC_TUNABLES=glibc.pthread.rseq=0`).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{rseq, testing, SlabAllocator};
use slab_classic::{FastPath, Slab, SlabSettings};
use util::*;

/// `SLAB_FASTPATH=lock` turns an `Auto` instance to the lock (an explicit setting wins).
fn env_forces_lock() -> bool {
    std::env::var("SLAB_FASTPATH").is_ok_and(|v| v == "lock")
}

fn rseq_possible() -> bool {
    rseq::available() && rseq::fence_available()
}

/// An instance over a topology with a slot for every CPU id of the machine, so rseq mode is
/// possible on a machine of any size.
fn slab_with(fastpath: FastPath) -> (common::PageProvider, Slab) {
    let p = machine_provider(256);
    let s = Slab::new(
        &p,
        SlabSettings {
            fastpath,
            stats: true,
            ..SlabSettings::default()
        },
    )
    .unwrap();
    (p, s)
}

#[test]
fn mode_is_chosen_and_recorded() {
    for f in [FastPath::Lock, FastPath::Rseq, FastPath::Auto] {
        let (_p, s) = slab_with(f);
        let asked = match f {
            FastPath::Lock => false,
            FastPath::Rseq => true,
            FastPath::Auto => !env_forces_lock(),
        };
        let want_rseq = rseq_possible() && asked;
        assert_eq!(SlabSettings::default().fastpath, FastPath::Auto);
        let want = if want_rseq {
            FastPath::Rseq
        } else {
            FastPath::Lock
        };
        assert_eq!(s.fastpath(), want, "{f:?}");
        let name = if want_rseq { "rseq" } else { "lock" };
        assert!(
            s.settings_summary().ends_with(&format!("fastpath={name}")),
            "{}",
            s.settings_summary()
        );
    }
}

/// The shared storm ([`common::testing::signal_storm`]) with slow paths from another thread
/// meanwhile: reaps of every CPU's arrays and array swaps by retuning the custom cache. Returns
/// the aborts counted.
fn signal_storm_stress(fastpath: FastPath) -> u64 {
    let (_p, s) = slab_with(fastpath);
    let custom = testing::storm_cache(&s);
    let meddle = |s: &Slab, k: u64| {
        for cpu in 0..s.nr_cpu_ids() {
            s.advance_jiffies(1000);
            s.cache_reap(cpu);
        }
        let (limit, batch) = if k % 2 == 0 { (32, 16) } else { (120, 60) };
        s.kmem_cache_tune(custom, limit, batch, 8).unwrap();
    };
    let r = testing::signal_storm(&s, custom, &|_, _| {}, Some(&meddle));
    s.validate().unwrap();
    eprintln!(
        "{:?}: {} threads on {} CPUs, {} signals, {} tunes, {} rseq aborts in {} alloc/free pairs",
        s.fastpath(),
        r.threads,
        r.cpus,
        r.signals,
        r.meddles,
        r.aborts,
        r.pairs
    );
    r.aborts
}

#[test]
fn oversubscribed_signal_storm_rseq() {
    if rseq_skipped("oversubscribed_signal_storm_rseq") {
        return;
    }
    let aborts: u64 = (0..5)
        .map(|_| signal_storm_stress(FastPath::Rseq))
        .find(|&a| a > 0)
        .unwrap_or(0);
    assert!(aborts > 0, "no sequence was aborted in 5 runs");
}

#[test]
fn oversubscribed_signal_storm_lock() {
    signal_storm_stress(FastPath::Lock);
}

/// Whether the rseq mode cannot run here (reported as a skip, or a failure where required):
/// no rseq area, or no membarrier fence.
fn rseq_skipped(test: &str) -> bool {
    testing::skip_unless(
        test,
        "rseq",
        rseq::available(),
        "this process has no rseq area",
    ) || testing::skip_unless(
        test,
        "membarrier",
        rseq::fence_available(),
        "no MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ fence",
    )
}

/// With glibc's rseq turned off, the process registers its own per-thread areas and `Auto`
/// still chooses rseq.
#[test]
fn fallback_without_glibc_rseq() {
    if testing::is_child("fallback_without_glibc_rseq") {
        let (_p, s) = slab_with(FastPath::Auto);
        println!(
            "CHILD registration={:?} fastpath={:?}",
            rseq::registration(),
            s.fastpath()
        );
        testing::fallback_child_workload(&s);
        println!("CHILD ok");
        return;
    }
    if rseq_skipped("fallback_without_glibc_rseq") {
        return;
    }
    let stdout =
        testing::run_child_without_glibc_rseq("fallback_without_glibc_rseq", "SLAB_FASTPATH");
    assert!(
        stdout.contains("CHILD registration=Own fastpath=Rseq"),
        "{stdout}"
    );
    assert!(stdout.contains("CHILD ok"), "{stdout}");
}
