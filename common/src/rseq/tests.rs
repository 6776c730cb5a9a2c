//! Tests of the primitives on this machine's rseq, fence and signals.

use super::*;
use crate::dword::DoubleWord;
use core::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

const SLOTS: usize = 256;

/// One cache line per CPU: a `{head, tid}` pair.
#[repr(C, align(64))]
struct Slot {
    pair: DoubleWord,
    count: AtomicUsize,
}

fn slots() -> Arc<Vec<Slot>> {
    Arc::new(
        (0..SLOTS)
            .map(|c| Slot {
                pair: DoubleWord::new(0, c),
                count: AtomicUsize::new(0),
            })
            .collect(),
    )
}

/// Objects of 4 words, link at word 1; leaked so stale reads stay mapped.
fn objects(n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| Box::leak(Box::new([0usize; 4])).as_mut_ptr() as usize)
        .collect()
}

const LINK: Link = Link {
    offset: 8,
    key: None,
};

fn rt() -> RseqThread {
    this_thread().expect("rseq registered on this machine")
}

extern "C" fn on_signal(_: libc::c_int) {}

fn install_handler() {
    // SAFETY: a zeroed sigaction with a valid handler and SA_RESTART is well formed.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &raw const sa, core::ptr::null_mut());
    }
}

#[test]
fn registration_is_found() {
    let r = registration();
    assert_ne!(r, Registration::Unavailable);
    let t = rt();
    assert!(t.cpu() < crate::sys::nprocs_conf());
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains("glibc.pthread.rseq=0")) {
        assert_eq!(r, Registration::Own);
    }
    eprintln!("rseq registration: {r:?}");
}

#[test]
fn cmpeq_store_single_thread() {
    let t = rt();
    let w = AtomicUsize::new(5);
    loop {
        match t.cmpeq_store(t.cpu(), &w, 4, 9) {
            Err(Fail::Mismatch) => break,
            Err(Fail::WrongCpu | Fail::Aborted) => {}
            r => panic!("{r:?}"),
        }
    }
    loop {
        match t.cmpeq_store(t.cpu(), &w, 5, 9) {
            Ok(()) => break,
            Err(Fail::WrongCpu | Fail::Aborted) => {}
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(w.load(Ordering::Relaxed), 9);
    let other = (t.cpu() + 1) % SLOTS;
    assert_eq!(t.cmpeq_store(other, &w, 9, 1), Err(Fail::WrongCpu));
    assert_eq!(w.load(Ordering::Relaxed), 9);
}

fn retry<T>(mut f: impl FnMut(usize) -> Result<T, Fail>) -> Result<T, Fail> {
    let t = rt();
    loop {
        match f(t.cpu()) {
            Err(Fail::WrongCpu | Fail::Aborted) => {}
            r => return r,
        }
    }
}

#[test]
fn list_push_pop_single_thread() {
    let t = rt();
    let head = AtomicUsize::new(0);
    let objs = objects(100);
    for &o in &objs {
        // SAFETY: o is ours, 32 bytes, not on the list.
        retry(|cpu| unsafe { t.list_push(cpu, &head, o, LINK) }).unwrap();
    }
    let mut got = Vec::new();
    // SAFETY: the list holds only our leaked objects.
    while let Ok(o) = retry(|cpu| unsafe { t.list_pop(cpu, &head, LINK) }) {
        got.push(o);
    }
    // SAFETY: the list is empty.
    let r = retry(|cpu| unsafe { t.list_pop(cpu, &head, LINK) });
    assert_eq!(r, Err(Fail::Empty));
    got.reverse();
    assert_eq!(got, objs, "LIFO order");
}

#[test]
fn pair_ops_check_tid_encode_links_and_refuse_double_free() {
    let t = rt();
    let pair = DoubleWord::new(0, 7);
    let key = 0x1234_5678_9abc_def0;
    let link = Link {
        offset: 16,
        key: Some(key),
    };
    let objs = objects(3);
    // Chain objs[0] -> objs[1] (hardened encoding), pushed as one.
    let enc = |next: usize, at: usize| next ^ key ^ at.swap_bytes();
    // SAFETY: our leaked object, link word at +16.
    unsafe { ((objs[0] + 16) as *mut usize).write(enc(objs[1], objs[0] + 16)) };
    // SAFETY: chain of our objects, not on the list.
    let r = retry(|cpu| unsafe { t.pair_push(cpu, &pair, 6, 99, objs[0], objs[1], link) });
    assert_eq!(r, Err(Fail::Mismatch));
    assert_eq!(pair.hi(Ordering::Relaxed), 7);
    // SAFETY: as above.
    retry(|cpu| unsafe { t.pair_push(cpu, &pair, 7, 8, objs[0], objs[1], link) }).unwrap();
    assert_eq!(
        (pair.lo(Ordering::Relaxed), pair.hi(Ordering::Relaxed)),
        (objs[0], 8)
    );
    // SAFETY: objs[2] ours.
    retry(|cpu| unsafe { t.pair_push(cpu, &pair, 8, 9, objs[2], objs[2], link) }).unwrap();
    // SAFETY: objs[2] heads the list: the hardened check refuses it.
    let r = retry(|cpu| unsafe { t.pair_push(cpu, &pair, 9, 10, objs[2], objs[2], link) });
    assert_eq!(r, Err(Fail::DoubleFree));
    let mut tid = 9;
    let mut got = Vec::new();
    loop {
        // SAFETY: the list holds our objects.
        match retry(|cpu| unsafe { t.pair_pop(cpu, &pair, tid, tid + 1, link) }) {
            Ok(o) => {
                got.push(o);
                tid += 1;
            }
            Err(Fail::Empty) => break,
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(got, vec![objs[2], objs[0], objs[1]]);
    assert_eq!(pair.hi(Ordering::Relaxed), 12);
    // A stale tid never pops.
    // SAFETY: empty list anyway.
    let r = retry(|cpu| unsafe { t.pair_pop(cpu, &pair, 5, 6, link) });
    assert_eq!(r, Err(Fail::Mismatch));
}

#[test]
fn array_push_pop_single_thread() {
    #[repr(C)]
    struct Arr {
        avail: u32,
        limit: u32,
        touched: u32,
        pad: u32,
        entry: [usize; 4],
    }
    const L: ArrayLayout = ArrayLayout {
        entries: 16,
        touched: 8,
    };
    let t = rt();
    let busy = AtomicUsize::new(0);
    let mut arr = Arr {
        avail: 0,
        limit: 3,
        touched: 0,
        pad: 0,
        entry: [0; 4],
    };
    let p: *mut u8 = (&raw mut arr).cast();
    let pp: *const *mut u8 = &raw const p;
    let pop = |busy: &AtomicUsize| {
        // SAFETY: `arr` is a valid array of layout L, used by this thread only.
        retry(|cpu| unsafe { t.array_pop(cpu, busy, pp, L) })
    };
    let push = |busy: &AtomicUsize, o: usize| {
        // SAFETY: as above; the objects are plain numbers never dereferenced.
        retry(|cpu| unsafe { t.array_push(cpu, busy, pp, L, o) })
    };
    let r = pop(&busy);
    assert_eq!(r, Err(Fail::Empty));
    for o in [10, 20, 30] {
        push(&busy, o).unwrap();
    }
    let r = push(&busy, 40);
    assert_eq!(r, Err(Fail::Mismatch), "full");
    let r = pop(&busy);
    assert_eq!(r, Ok(30));
    let r = push(&busy, 20);
    assert_eq!(r, Err(Fail::DoubleFree));
    busy.store(1, Ordering::Relaxed);
    let r = pop(&busy);
    assert_eq!(r, Err(Fail::Mismatch), "busy");
    let r = push(&busy, 50);
    assert_eq!(r, Err(Fail::Mismatch), "busy");
    busy.store(0, Ordering::Relaxed);
    // SAFETY: read back our own array.
    let (avail, touched, e) = unsafe {
        (
            (*p.cast::<Arr>()).avail,
            (*p.cast::<Arr>()).touched,
            (*p.cast::<Arr>()).entry,
        )
    };
    assert_eq!((avail, touched, &e[..2]), (2, 1, &[10, 20][..]));
    assert_eq!(pop(&busy), Ok(20));
    assert_eq!(pop(&busy), Ok(10));
    assert_eq!(pop(&busy), Err(Fail::Empty));
}

#[test]
fn fence_cpu_works() {
    assert!(fence_available());
    assert!(fence_cpu(0));
}

#[test]
fn fence_and_sequences_work_in_a_forked_child() {
    assert!(fence_available());
    // SAFETY: the child only makes raw system calls and rseq sequences (no locks, no heap)
    // before _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let raw = super::fence::membarrier_cpu(0);
        let ok = fence_cpu(0)
            && this_thread().is_some_and(|t| {
                let w = AtomicUsize::new(1);
                loop {
                    match t.cmpeq_store(t.cpu(), &w, 1, 2) {
                        Ok(()) => break w.load(Ordering::Relaxed) == 2,
                        Err(Fail::WrongCpu | Fail::Aborted) => {}
                        Err(_) => break false,
                    }
                }
            });
        // SAFETY: _exit in the forked child.
        unsafe { libc::_exit(i32::from(!ok) | (i32::from(raw) << 1)) };
    }
    let mut status = 0;
    // SAFETY: waits for our child.
    unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert!(libc::WIFEXITED(status));
    let code = libc::WEXITSTATUS(status);
    eprintln!(
        "forked child: membarrier without re-registering works: {}",
        code & 2 != 0
    );
    assert_eq!(code & 1, 0, "fence or sequence failed in the child");
}

/// Threads ≫ CPUs, unpinned, yielding, with SIGUSR1 storms: per-CPU counters incremented
/// by cmpeq_store never lose an increment, objects moved between per-CPU lists are never
/// lost or duplicated, and the kernel aborted sequences.
/// One storm round: correctness is asserted every round; returns the rseq aborts seen.
fn storm_round() -> u64 {
    install_handler();
    let threads = 4 * std::thread::available_parallelism()
        .map_or(2, usize::from)
        .max(2);
    let iters = 300_000;
    let s = slots();
    let objs = objects(threads * 8);
    {
        let t = rt();
        for &o in &objs {
            // SAFETY: our objects, pushed once.
            retry(|cpu| unsafe { t.list_push(cpu, &s[cpu].count, o, LINK) }).unwrap();
        }
    }
    // `count` doubles as a list head for the object test; the pair's lo is the counter.
    let before = abort_count();
    let stop = Arc::new(AtomicBool::new(false));
    let tids: Arc<crate::testing::SignalTargets> = Arc::default();
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let s = Arc::clone(&s);
            let tids = Arc::clone(&tids);
            std::thread::spawn(move || {
                let _listed = tids.enter();
                let t = rt();
                let mut held = Vec::new();
                for k in 0..iters {
                    loop {
                        let cpu = t.cpu();
                        let w = &s[cpu].pair;
                        let (v, tid) = (w.lo(Ordering::Relaxed), w.hi(Ordering::Relaxed));
                        // Increment the counter in the pair's lo word, moving the tid.
                        let lo = core::ptr::from_ref(w).cast::<AtomicUsize>();
                        // SAFETY: DoubleWord is repr(C) with lo first.
                        let lo = unsafe { &*lo };
                        if t.cmpeq_store(cpu, lo, v, v + 1).is_ok() {
                            let _ = tid;
                            break;
                        }
                    }
                    if k % 3 == 0 {
                        // SAFETY: lists hold leaked objects.
                        let r = retry(|cpu| unsafe { t.list_pop(cpu, &s[cpu].count, LINK) });
                        if let Ok(o) = r {
                            // SAFETY: we own o now.
                            unsafe { (o as *mut usize).write(i) };
                            held.push(o);
                        }
                    } else if k % 3 == 1 {
                        if let Some(o) = held.pop() {
                            // SAFETY: stamp intact while we held it.
                            assert_eq!(unsafe { (o as *const usize).read() }, i);
                            // SAFETY: ours, not on any list.
                            retry(|cpu| unsafe { t.list_push(cpu, &s[cpu].count, o, LINK) })
                                .unwrap();
                        }
                    }
                    if k % 1000 == 0 {
                        std::thread::yield_now();
                    }
                }
                for o in held {
                    // SAFETY: ours.
                    retry(|cpu| unsafe { t.list_push(cpu, &s[cpu].count, o, LINK) }).unwrap();
                }
            })
        })
        .collect();
    let stopper = {
        let stop = Arc::clone(&stop);
        let tids = Arc::clone(&tids);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                tids.signal_all(libc::SIGUSR1);
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        })
    };
    for h in hs {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    stopper.join().unwrap();
    let total: usize = s.iter().map(|x| x.pair.lo(Ordering::Relaxed)).sum();
    assert_eq!(total, threads * iters, "lost increments");
    let t = rt();
    let mut back = Vec::new();
    for cpu_list in s.iter() {
        let mut o = cpu_list.count.load(Ordering::Relaxed);
        while o != 0 {
            back.push(o);
            // SAFETY: objects on the lists are ours; link at +8.
            o = unsafe { ((o + 8) as *const usize).read() };
        }
    }
    let _ = t;
    back.sort_unstable();
    let mut want = objs.clone();
    want.sort_unstable();
    assert_eq!(back, want, "objects lost or duplicated");
    let aborts = abort_count() - before;
    eprintln!("aborts: {aborts} over {} sequences", threads * iters * 2);
    aborts
}

/// Under a CPU hog a round sometimes sees no abort at all (the signals land outside the
/// short sequences): rounds are repeated, up to five, until one does, as the allocators'
/// storm tests do. Every round checks that nothing was lost or duplicated.
#[test]
fn oversubscribed_signal_storm() {
    let aborted = (0..5).map(|_| storm_round()).find(|&a| a > 0);
    assert!(
        aborted.is_some(),
        "the signal storm aborted no sequence in 5 rounds"
    );
}
