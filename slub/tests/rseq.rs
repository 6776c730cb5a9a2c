//! Issue 9: the rseq fast path. Mode selection, an oversubscribed signal-storm stress in both
//! modes (more threads than CPUs, unpinned, `sched_yield`, SIGUSR1 thrown at the threads,
//! cross-thread frees, content stamps, `validate()` clean, the abort counter moved), and the
//! fallback when glibc did not register rseq (a child process with
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0`: we register our own area and still run rseq).

/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{rseq, testing};
use common::{Gfp, SlabAllocator, SlabFlags};
use slub::{FastPath, Slub, SlubSettings, StatItem};
use util::*;

fn env_forces_cmpxchg() -> bool {
    std::env::var("SLUB_FASTPATH").is_ok_and(|v| v == "cmpxchg")
}

#[test]
fn mode_is_chosen_and_recorded() {
    let p = machine_provider(16);
    let s = slub(&p);
    let want = if env_forces_cmpxchg() || !rseq::available() {
        FastPath::Cmpxchg
    } else {
        FastPath::Rseq
    };
    assert_eq!(s.fastpath(), want);
    assert!(s
        .settings_summary()
        .contains(&format!("fastpath={}", want.name())));
    for (f, name) in [(FastPath::Cmpxchg, "cmpxchg"), (FastPath::Rseq, "rseq")] {
        let s = slub_with(
            &p,
            SlubSettings {
                fastpath: f,
                ..SlubSettings::default()
            },
        );
        if rseq::available() {
            assert_eq!(s.fastpath(), f);
            assert!(s.settings_summary().ends_with(&format!("fastpath={name}")));
        }
    }
    let o = SlubSettings::from_boot_options("fastpath=rseq").unwrap();
    assert_eq!(o.fastpath, FastPath::Rseq);
    assert!(SlubSettings::from_boot_options("fastpath=lock").is_err());
}

/// Every alloc and free of a pinned thread takes the fast path in rseq mode, and the tid counts
/// the events as in the kernel.
#[test]
fn rseq_fast_path_counts_and_tid() {
    if testing::skip_unless(
        "rseq_fast_path_counts_and_tid",
        "rseq",
        rseq::available(),
        "this process has no rseq area",
    ) {
        return;
    }
    let p = machine_provider(16);
    let s = slub_with(
        &p,
        SlubSettings {
            fastpath: FastPath::Rseq,
            stats: true,
            ..SlubSettings::default()
        },
    );
    let c = s
        .kmem_cache_create("rseq-tid", 64, 0, SlabFlags::NO_MERGE, None)
        .unwrap();
    let _ = common::pin::pin_to_cpu(0);
    let warm = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    let t0 = s.cpu_tid(c, 0).unwrap();
    let fp0 = s.cache_stat(c, StatItem::ALLOC_FASTPATH).unwrap();
    let ff0 = s.cache_stat(c, StatItem::FREE_FASTPATH).unwrap();
    for _ in 0..1000 {
        let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
        fill(o, 64, 7);
        assert!(check(o, 64, 7));
        // SAFETY: allocated above, freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    let fails = s.cache_stat(c, StatItem::CMPXCHG_DOUBLE_CPU_FAIL).unwrap();
    assert_eq!(
        s.cache_stat(c, StatItem::ALLOC_FASTPATH).unwrap() - fp0,
        1000
    );
    assert_eq!(
        s.cache_stat(c, StatItem::FREE_FASTPATH).unwrap() - ff0,
        1000
    );
    let t1 = s.cpu_tid(c, 0).unwrap();
    assert_eq!(slub::tid_to_cpu(t1), 0);
    // Every commit moved the tid by one event; an aborted sequence may have moved it too.
    let events = slub::tid_to_event(t1) - slub::tid_to_event(t0);
    assert!(
        events >= 2000 && events as u64 <= 2000 + fails,
        "{events} events, {fails} fails"
    );
    // SAFETY: allocated above.
    unsafe { s.kmem_cache_free(c, warm) }.unwrap();
    s.validate().unwrap();
}

/// The shared storm ([`common::testing::signal_storm`]) with every CPU's slab of the custom
/// cache flushed every 50 rounds by each worker. Returns the aborts counted during the run.
fn signal_storm_stress(fastpath: FastPath, hardened: bool) -> u64 {
    let p = machine_provider(256);
    let s = slub_with(
        &p,
        SlubSettings {
            fastpath,
            freelist_hardened: hardened,
            stats: true,
            ..SlubSettings::default()
        },
    );
    let custom = testing::storm_cache(&s);
    let flush = |s: &Slub, r: u64| {
        if r % 50 == 0 {
            s.flush_all(custom).unwrap();
        }
    };
    let r = testing::signal_storm(&s, custom, &flush, None);
    s.validate().unwrap();
    s.validate_cache(custom).unwrap();
    let fails = s.stat_totals()[StatItem::CMPXCHG_DOUBLE_CPU_FAIL as usize];
    let fast = s.stat_totals()[StatItem::ALLOC_FASTPATH as usize]
        + s.stat_totals()[StatItem::FREE_FASTPATH as usize];
    eprintln!(
        "{:?} hardened={hardened}: {} threads on {} CPUs, {} signals, {fast} fast-path commits, {fails} retries, {} rseq aborts ({:.4}% of commits)",
        s.fastpath(),
        r.threads,
        r.cpus,
        r.signals,
        r.aborts,
        r.aborts as f64 * 100.0 / fast.max(1) as f64
    );
    r.aborts
}

#[test]
fn oversubscribed_signal_storm_rseq() {
    if rseq_storm_skipped("oversubscribed_signal_storm_rseq") {
        return;
    }
    // The storm usually aborts a handful of sequences per run; a quiet run is repeated.
    let aborts: u64 = (0..5)
        .map(|_| signal_storm_stress(FastPath::Rseq, false))
        .find(|&a| a > 0)
        .unwrap_or(0);
    assert!(aborts > 0, "no sequence was aborted in 5 runs");
}

#[test]
fn oversubscribed_signal_storm_rseq_hardened() {
    if rseq_storm_skipped("oversubscribed_signal_storm_rseq_hardened") {
        return;
    }
    signal_storm_stress(FastPath::Rseq, true);
}

#[test]
fn oversubscribed_signal_storm_cmpxchg() {
    signal_storm_stress(FastPath::Cmpxchg, false);
}

/// Whether an rseq-mode storm cannot run here (reported): no rseq, or the environment forces
/// the other fast path (`.ci/run`'s second pass).
fn rseq_storm_skipped(test: &str) -> bool {
    if env_forces_cmpxchg() {
        testing::skip(
            test,
            "rseq-mode",
            "SLUB_FASTPATH=cmpxchg forces the other fast path",
        );
        return true;
    }
    testing::skip_unless(
        test,
        "rseq",
        rseq::available(),
        "this process has no rseq area",
    )
}

/// With glibc's rseq turned off, the process registers its own per-thread areas (never a
/// second one where glibc did) and `Auto` still chooses rseq. The child role runs the
/// workload in a process started with glibc's registration off.
#[test]
fn fallback_without_glibc_rseq() {
    if testing::is_child("fallback_without_glibc_rseq") {
        let p = machine_provider(64);
        let s = slub(&p);
        println!(
            "CHILD registration={:?} fastpath={}",
            rseq::registration(),
            s.fastpath().name()
        );
        testing::fallback_child_workload(&s);
        println!("CHILD ok");
        return;
    }
    if testing::skip_unless(
        "fallback_without_glibc_rseq",
        "rseq",
        rseq::available(),
        "this process has no rseq area",
    ) {
        return;
    }
    let stdout =
        testing::run_child_without_glibc_rseq("fallback_without_glibc_rseq", "SLUB_FASTPATH");
    assert!(
        stdout.contains("CHILD registration=Own fastpath=rseq"),
        "{stdout}"
    );
    assert!(stdout.contains("CHILD ok"), "{stdout}");
}
