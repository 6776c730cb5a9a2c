//! Refill, flush, free_limit, colouring, tunables, shrink and destroy — exact counts.
/// Heap allocations under an allocator lock abort this test binary (debug builds).
#[global_allocator]
static LOCK_CHECKED: common::sync::LockCheckedAlloc = common::sync::LockCheckedAlloc;

mod util;

use common::{Gfp, SlabAllocator, SlabError, SlabFlags};
use slab_classic::{ArrayState, Slab, SlabSettings, Tunables, TuneError};

#[test]
fn refill_takes_16_when_untouched_then_a_full_batch() {
    let p = util::provider(1, 32);
    let s = util::slab(&p);
    util::pin_first();
    let cpu = s.current_cpu();
    let c = s
        .kmem_cache_create("refill", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let g = s.cache_geometry(c).unwrap();
    assert_eq!(
        (g.num, g.tunables),
        (
            37,
            Tunables {
                limit: 120,
                batchcount: 60,
                shared: 8
            }
        )
    );
    let mut objs = vec![s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap()];
    // Untouched array: BATCHREFILL_LIMIT = 16 objects from one new slab, one handed out.
    assert_eq!(
        s.array_state(c, cpu).unwrap(),
        ArrayState {
            avail: 15,
            limit: 120,
            batchcount: 60,
            touched: true
        }
    );
    let n = s.node_state(c, 0).unwrap();
    assert_eq!(
        (n.partial, n.full, n.free, n.free_objects),
        (1, 0, 0, 37 - 16)
    );
    for _ in 0..15 {
        objs.push(s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap());
    }
    assert_eq!(s.array_state(c, cpu).unwrap().avail, 0);
    // Touched now: a full batch of 60 is wanted; the partial slab has 21, then nothing is
    // left on the lists, so the refill stops there (no grow while it got objects).
    objs.push(s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap());
    assert_eq!(s.array_state(c, cpu).unwrap().avail, 20);
    let n = s.node_state(c, 0).unwrap();
    assert_eq!((n.partial, n.full, n.free, n.free_objects), (0, 1, 0, 0));
    let st = s.cache_stats(c).unwrap();
    assert_eq!(
        (st.allochit, st.allocmiss, st.grown, st.listallocs),
        (15, 2, 1, 37)
    );
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn flush_goes_to_the_shared_array_first_oldest_entries() {
    let p = util::provider(1, 32);
    let s = util::slab(&p);
    util::pin_first();
    let cpu = s.current_cpu();
    let c = s
        .kmem_cache_create("flush", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let objs: Vec<_> = (0..200)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    let before = s.array_state(c, cpu).unwrap().avail;
    let mut freed = 0;
    for &o in &objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
        freed += 1;
        if before + freed == 120 {
            break;
        }
    }
    assert_eq!(s.array_state(c, cpu).unwrap().avail, 120);
    assert_eq!(s.node_state(c, 0).unwrap().shared_avail, 0);
    // One more free: FREEMISS, 60 oldest move to the shared array (room 480), then the push.
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, objs[freed as usize]) }.unwrap();
    assert_eq!(s.array_state(c, cpu).unwrap().avail, 61);
    let n = s.node_state(c, 0).unwrap();
    assert_eq!((n.shared_avail, n.shared_limit), (60, 480));
    // The hottest objects stayed: the next allocation returns the object just freed (LIFO).
    let again = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    assert_eq!(again, objs[freed as usize]);
    assert_eq!(s.cache_stats(c).unwrap().freemiss, 1);
    // SAFETY: freed once each.
    unsafe {
        s.kmem_cache_free(c, again).unwrap();
        for &o in &objs[freed as usize + 1..] {
            s.kmem_cache_free(c, o).unwrap();
        }
    }
    s.validate().unwrap();
}

#[test]
fn free_block_releases_empty_slabs_above_free_limit() {
    let p = util::provider(1, 32);
    let s = util::slab(&p);
    util::pin_first();
    let c = s
        .kmem_cache_create("limit", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    // limit 1, batch 1, no shared array: every free beyond one goes through free_block.
    s.kmem_cache_tune(c, 1, 1, 0).unwrap();
    let n = s.node_state(c, 0).unwrap();
    assert_eq!(
        n.free_limit,
        (1 + 2) + 37,
        "free_limit = (1 + nr_cpus_node) * batchcount + num"
    );
    let base = p.stats().owner(common::Owner::SlabClassic);
    let objs: Vec<_> = (0..4 * 37)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    assert_eq!(p.stats().owner(common::Owner::SlabClassic), base + 4);
    for &o in &objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    // Slab A empties with 37 free objects (≤ 40): kept. B and C empty with 74 > 40: destroyed
    // at once. D's last object still sits in the CPU array.
    let n = s.node_state(c, 0).unwrap();
    assert_eq!(
        (n.full, n.partial, n.free, n.free_objects),
        (0, 1, 1, 37 + 36)
    );
    assert_eq!(p.stats().owner(common::Owner::SlabClassic), base + 2);
    s.validate().unwrap();
    s.kmem_cache_shrink(c).unwrap();
    assert_eq!(p.stats().owner(common::Owner::SlabClassic), base);
    let n = s.node_state(c, 0).unwrap();
    assert_eq!((n.full, n.partial, n.free, n.free_objects), (0, 0, 0, 0));
}

#[test]
fn colour_cycles_per_node() {
    let p = util::provider(1, 32);
    let s = util::slab(&p);
    util::pin_first();
    let c = s
        .kmem_cache_create("colour", 192, 0, SlabFlags::HWCACHE_ALIGN, None)
        .unwrap();
    let g = s.cache_geometry(c).unwrap();
    assert_eq!(
        (g.num, g.colour, g.colour_off, g.slab_size),
        (20, 2, 64, 128)
    );
    s.kmem_cache_tune(c, 1, 1, 0).unwrap();
    let mut firsts = Vec::new();
    let mut objs = Vec::new();
    for k in 0..6 {
        // Each batch of 20 allocations takes a new slab; record where its objects start.
        let mut lowest = usize::MAX;
        for _ in 0..20 {
            let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
            lowest = lowest.min(o.as_ptr() as usize % 4096);
            objs.push(o);
        }
        firsts.push(lowest);
        assert_eq!(s.node_state(c, 0).unwrap().colour_next, (k + 1) % 2);
    }
    // Colour offsets 0, 64, 0, 64, … then the on-slab descriptor (128 bytes) before s_mem.
    assert_eq!(firsts, vec![128, 192, 128, 192, 128, 192]);
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn tunables_write_and_its_errors() {
    let p = util::provider(1, 16);
    let s = util::slab(&p);
    let c = s
        .kmem_cache_create("tune-me", 64, 0, SlabFlags::NONE, None)
        .unwrap();
    s.slabinfo_write("tune-me 32 16 2").unwrap();
    assert_eq!(
        s.cache_geometry(c).unwrap().tunables,
        Tunables {
            limit: 32,
            batchcount: 16,
            shared: 2
        }
    );
    assert_eq!(s.array_state(c, 0).unwrap().limit, 32);
    assert_eq!(s.node_state(c, 0).unwrap().shared_limit, 32);
    let row = s
        .slabinfo()
        .into_iter()
        .find(|r| r.name.as_str() == "tune-me")
        .unwrap();
    assert_eq!((row.limit, row.batchcount, row.sharedfactor), (32, 16, 2));
    assert!(s.slabinfo_text().contains("tunables   32   16    2"));
    assert_eq!(
        s.slabinfo_write("tune-me 0 1 0"),
        Err(TuneError::BadValue(
            "need limit >= 1, 1 <= batchcount <= limit, shared >= 0"
        ))
    );
    assert!(matches!(
        s.slabinfo_write("tune-me 8 9 0"),
        Err(TuneError::BadValue(_))
    ));
    assert!(matches!(
        s.slabinfo_write("tune-me 8 0 0"),
        Err(TuneError::BadValue(_))
    ));
    assert!(matches!(
        s.slabinfo_write("tune-me 8 4 -1"),
        Err(TuneError::BadValue(_))
    ));
    assert_eq!(s.slabinfo_write("tune-me 8 4"), Err(TuneError::Parse));
    assert_eq!(s.slabinfo_write("tune-me 8 x 0"), Err(TuneError::Parse));
    assert_eq!(
        s.slabinfo_write(&format!("tune-me 8 4 0 {}", " ".repeat(130))),
        Err(TuneError::Parse)
    );
    assert_eq!(s.slabinfo_write("nope 8 4 0"), Err(TuneError::NoSuchCache));
    // Refused writes changed nothing.
    assert_eq!(s.cache_geometry(c).unwrap().tunables.limit, 32);
    // The tuned cache still works, objects survive a retune.
    let objs: Vec<_> = (0..100)
        .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
        .collect();
    s.slabinfo_write("tune-me 120 60 8").unwrap();
    for o in objs {
        // SAFETY: freed once.
        unsafe { s.kmem_cache_free(c, o) }.unwrap();
    }
    s.validate().unwrap();
}

#[test]
fn settings_override_the_tunables_table() {
    let p = util::provider(1, 16);
    let t = Tunables {
        limit: 10,
        batchcount: 5,
        shared: 0,
    };
    let s = Slab::new(
        &p,
        SlabSettings {
            tunables: Some(t),
            ..SlabSettings::default()
        },
    )
    .unwrap();
    let c = s.kmalloc_cache(64).unwrap();
    assert_eq!(s.cache_geometry(c).unwrap().tunables, t);
    assert!(s.settings_summary().contains("tunables=10/5/0"));
}

#[test]
fn invalid_settings_tunables_are_an_invalid_argument() {
    let p = util::provider(1, 16);
    for (limit, batchcount, why) in [
        (0, 1, "limit must be at least 1"),
        (8, 0, "batchcount must be at least 1"),
        (8, 9, "batchcount must not exceed limit"),
    ] {
        let r = Slab::new(
            &p,
            SlabSettings {
                tunables: Some(Tunables {
                    limit,
                    batchcount,
                    shared: 0,
                }),
                ..SlabSettings::default()
            },
        );
        assert_eq!(r.err(), Some(SlabError::InvalidArgument(why)));
    }
    assert_eq!(
        SlabError::InvalidArgument("limit must be at least 1").to_string(),
        "invalid argument: limit must be at least 1"
    );
}

#[test]
fn bootstrap_tunables_follow_the_table() {
    let p = util::provider(1, 16);
    let s = util::slab(&p);
    let rows = s.slabinfo();
    let get = |n: &str| rows.iter().find(|r| r.name.as_str() == n).unwrap();
    assert_eq!(
        (
            get("size-32").limit,
            get("size-32").batchcount,
            get("size-32").sharedfactor
        ),
        (120, 60, 8)
    );
    assert_eq!(
        (get("size-512").limit, get("size-512").batchcount),
        (54, 27)
    );
    assert_eq!(
        (get("size-2048").limit, get("size-2048").batchcount),
        (24, 12)
    );
    assert_eq!(
        (get("size-8192").limit, get("size-8192").sharedfactor),
        (8, 0)
    );
    assert_eq!(get("size-262144").limit, 1);
    assert_eq!(
        (get("size-64").objperslab, get("size-64").objsize),
        (59, 64)
    );
    assert_eq!(get("size-8192").pagesperslab, 2);
    assert!(rows.iter().any(|r| r.name.as_str() == "kmem_cache"));
    assert_eq!(rows.len(), 20);
}

#[test]
fn shrink_and_destroy_return_to_the_bootstrap_footprint() {
    let p = util::provider(1, 64);
    let s = util::slab(&p);
    s.shrink_all();
    let baseline = p.stats().pages_in_use;
    for (name, size) in [
        ("d100", 100),
        ("d1000", 1000),
        ("d4096", 4096),
        ("d20000", 20000),
    ] {
        let c = s
            .kmem_cache_create(name, size, 0, SlabFlags::NONE, None)
            .unwrap();
        let objs: Vec<_> = (0..300)
            .map(|_| s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap())
            .collect();
        assert!(p.stats().pages_in_use > baseline);
        // Destroy refuses while objects are live, and the cache keeps working.
        // SAFETY: nobody else uses the cache.
        let busy = unsafe { s.kmem_cache_destroy(c) };
        assert!(
            matches!(busy, Err(SlabError::Busy { objects }) if objects > 0),
            "{busy:?}"
        );
        for o in objs {
            // SAFETY: freed once.
            unsafe { s.kmem_cache_free(c, o) }.unwrap();
        }
        s.kmem_cache_shrink(c).unwrap();
        let n = s.node_state(c, 0).unwrap();
        assert_eq!((n.full, n.partial, n.free), (0, 0, 0));
        // SAFETY: nobody uses the cache any more.
        unsafe { s.kmem_cache_destroy(c) }.unwrap();
        // SAFETY: stale handle, refused.
        let stale = unsafe { s.kmem_cache_destroy(c) };
        assert_eq!(stale, Err(SlabError::ForeignCache));
        assert!(s.kmem_cache_alloc(c, Gfp::KERNEL).is_none());
        s.validate().unwrap();
    }
    s.shrink_all();
    assert_eq!(p.stats().pages_in_use, baseline);
    // kmalloc caches cannot be destroyed.
    let k = s.kmalloc_cache(64).unwrap();
    // SAFETY: refused before anything happens.
    let r = unsafe { s.kmem_cache_destroy(k) };
    assert_eq!(r, Err(SlabError::BootCache));
}

#[test]
fn dropping_the_instance_gives_every_page_back() {
    let p = util::provider(2, 32);
    {
        let s = util::slab(&p);
        let c = s
            .kmem_cache_create("leaky", 300, 0, SlabFlags::NONE, None)
            .unwrap();
        for node in 0..2 {
            for _ in 0..500 {
                let _ = s.kmem_cache_alloc_node(c, Gfp::KERNEL, node).unwrap();
                let _ = s.kmalloc(3000, Gfp::KERNEL).unwrap();
            }
        }
        assert!(p.stats().pages_in_use > 100);
    }
    assert_eq!(p.stats().pages_in_use, 0);
    p.check_invariants().unwrap();
}

#[test]
fn slabinfo_statistics_columns() {
    let p = util::provider(1, 16);
    let s = util::slab(&p);
    let c = s
        .kmem_cache_create("statsy", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let o = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: freed once.
    unsafe { s.kmem_cache_free(c, o) }.unwrap();
    let text = s.slabinfo_text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("slabinfo - version: 2.1 (statistics)"));
    assert!(lines.next().unwrap().ends_with(
        ": globalstat <listallocs> <maxobjs> <grown> <reaped> <error> <maxfreeable> <nodeallocs> <remotefrees> <alienoverflow> : cpustat <allochit> <allocmiss> <freehit> <freemiss>"
    ));
    let row = text.lines().find(|l| l.starts_with("statsy ")).unwrap();
    assert!(row.contains(": globalstat      16     16     1    0    0    0    0    0    0 : cpustat      0      1      1      0"), "{row}");
    let mut stats = Vec::new();
    s.for_each_stat(&mut |n, v| stats.push((n, v)));
    // maxobjs counts objects moved into CPU arrays as active (STATS_INC_ACTIVE in the refill).
    assert!(
        stats.iter().any(|&(n, v)| n == "grown" && v >= 20),
        "every bootstrap cache grew"
    );
    assert!(stats.iter().any(|&(n, v)| n == "allocmiss" && v >= 1));
    // Without STATS the header has no statistics suffix.
    let plain = slab_classic::Slab::new(&p, SlabSettings::default()).unwrap();
    assert!(plain
        .slabinfo_text()
        .starts_with("slabinfo - version: 2.1\n"));
}

#[test]
fn double_frees_are_caught_where_cheap() {
    let p = util::provider(1, 16);
    let s = util::slab(&p);
    util::pin_first();
    let c = s
        .kmem_cache_create("twice", 100, 0, SlabFlags::NONE, None)
        .unwrap();
    let a = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: the second free is the bug under test; it is refused before anything changes.
    unsafe {
        s.kmem_cache_free(c, a).unwrap();
        assert_eq!(
            s.kmem_cache_free(c, a),
            Err(SlabError::DoubleFree(a.as_ptr() as usize))
        );
        let k = s.kmalloc(64, Gfp::KERNEL).unwrap();
        s.kfree(k.as_ptr()).unwrap();
        assert_eq!(
            s.kfree(k.as_ptr()),
            Err(SlabError::DoubleFree(k.as_ptr() as usize))
        );
    }
    s.validate().unwrap();
    // Deeper in the array only the slab's bufctl marker can tell: with limit 1 the object
    // reaches its slab at the next flush, where slab_put_obj refuses it and counts an error.
    s.kmem_cache_tune(c, 1, 1, 0).unwrap();
    let x = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    let y = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    let z = s.kmem_cache_alloc(c, Gfp::KERNEL).unwrap();
    // SAFETY: x is freed twice on purpose; the allocator must absorb it.
    unsafe {
        s.kmem_cache_free(c, x).unwrap();
        s.kmem_cache_free(c, y).unwrap(); // flushes x to its slab
        s.kmem_cache_free(c, x).unwrap(); // flushes y; x sits in the array again
        s.kmem_cache_free(c, z).unwrap(); // flushes x: already on the chain → refused
    }
    assert_eq!(
        s.cache_stats(c).unwrap().error,
        2,
        "one top-of-array catch + one bufctl catch"
    );
    let k64 = s.kmalloc_cache(64).unwrap();
    assert_eq!(s.cache_stats(k64).unwrap().error, 1);
    s.validate().unwrap();
    let n = s.node_state(c, 0).unwrap();
    assert_eq!(
        n.free_objects + s.array_state(c, s.current_cpu()).unwrap().avail as usize,
        37
    );
}
