//! Test support shared by the allocator crates' integration tests (feature `testing`, enabled
//! only from their `[dev-dependencies]`): the oversubscribed signal-storm stress of the rseq
//! fast paths and the re-run of a test binary with glibc's rseq registration turned off. Both
//! run over any [`SlabAllocator`], so SLAB and SLUB are stressed by the same code and differ only
//! in what they pass in. Also the real-NUMA checks both `tests/numa_real.rs` use, the one state
//! explorer behind the hand-written protocol models ([`explore`], [`Model`]: `slub/src/model.rs`,
//! `slub/src/sheaf_model.rs`, `slab-classic/src/model.rs`) and, with `--cfg loom`, the loom
//! helpers of both `tests/loom.rs` (`loom_helpers`).

use crate::api::{CacheHandle, SlabAllocator, SlabFlags};
use crate::{rseq, Gfp};
use core::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

/// Byte `i` of the pattern for `seed`.
fn stamp_byte(seed: u64, i: usize) -> u8 {
    (seed.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8
}

/// Writes a pattern derived from `seed` into `len` bytes at `p`.
///
/// # Safety
/// `p` is valid for writes of `len` bytes.
pub unsafe fn stamp(p: *mut u8, len: usize, seed: u64) {
    for i in 0..len {
        // SAFETY: in bounds per the contract.
        unsafe { p.add(i).write(stamp_byte(seed, i)) };
    }
}

/// Whether the pattern of [`stamp`] is still there.
///
/// # Safety
/// `p` is valid for reads of `len` bytes.
pub unsafe fn stamp_intact(p: *const u8, len: usize, seed: u64) -> bool {
    (0..len).all(|i| {
        // SAFETY: in bounds per the contract.
        unsafe { p.add(i).read() == stamp_byte(seed, i) }
    })
}

extern "C" fn on_signal(_: libc::c_int) {}

/// The threads a storm may signal. A thread is listed from [`SignalTargets::enter`] until the
/// returned guard drops at its end, and [`SignalTargets::signal_all`] signals under the same
/// lock, so every thread it signals is still running. (A `pthread_t` outlives its thread only
/// until the thread is joined: glibc then frees the descriptor with the stack, or unmaps it
/// once its stack cache is full, and `pthread_kill` on it is a use after free. A storm that
/// joined its workers before it stopped signalling them died of SIGSEGV with 32 workers, where
/// 64 MiB of stacks overflowed the cache, and passed with 16.)
#[derive(Default)]
pub struct SignalTargets(Mutex<Vec<libc::pthread_t>>);

/// A thread's place in a [`SignalTargets`]: dropped when the thread is done being signalled.
pub struct SignalTarget<'a> {
    set: &'a SignalTargets,
    me: libc::pthread_t,
}

impl SignalTargets {
    /// Lists the calling thread until the guard drops.
    pub fn enter(&self) -> SignalTarget<'_> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.0.lock().unwrap().push(me);
        SignalTarget { set: self, me }
    }

    /// Sends `sig` to every listed thread; returns how many were sent.
    pub fn signal_all(&self, sig: libc::c_int) -> u64 {
        let listed = self.0.lock().unwrap();
        for &t in listed.iter() {
            // SAFETY: t is listed, so its thread has not yet dropped its guard (it is removed
            // under this lock): it is running, and its descriptor is valid.
            unsafe { libc::pthread_kill(t, sig) };
        }
        listed.len() as u64
    }
}

impl Drop for SignalTarget<'_> {
    fn drop(&mut self) {
        let mut listed = self
            .set
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // SAFETY: pthread_equal compares two thread ids; no other precondition.
        listed.retain(|&t| unsafe { libc::pthread_equal(t, self.me) } == 0);
    }
}

/// Installs a SIGUSR1 handler that does nothing (with `SA_RESTART`).
fn install_sigusr1_handler() {
    // SAFETY: a zeroed sigaction with a valid, async-signal-safe handler and SA_RESTART is well
    // formed; the old action is not asked for.
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &raw const sa, core::ptr::null_mut());
    }
}

/// What a [`signal_storm`] run did.
#[derive(Clone, Copy, Debug)]
pub struct StormReport {
    /// Worker threads (four per CPU, at least eight).
    pub threads: usize,
    /// CPUs the machine has.
    pub cpus: usize,
    /// SIGUSR1s sent.
    pub signals: u64,
    /// Times the meddler closure ran.
    pub meddles: u64,
    /// rseq aborts counted process-wide during the run.
    pub aborts: u64,
    /// Allocations (each freed again) the workers made.
    pub pairs: u64,
}

/// A hook the storm calls with the allocator and a count (the round, or the meddler's call).
pub type StormHook<'a, A> = &'a (dyn Fn(&A, u64) + Sync);

/// Rounds each worker runs.
const STORM_ROUNDS: u64 = 300;

/// (address, size, seed, from the custom cache?)
type Batch = Vec<(usize, usize, u64, bool)>;

/// More threads than CPUs, unpinned, yielding, under a SIGUSR1 storm: each round a worker runs
/// 200 kmalloc/kfree pairs (the fast path), then sends a stamped batch of 32 objects (every
/// fourth from `custom`, a cache of 72-byte objects) to its neighbour and frees the batch it
/// receives, checking the stamps; then `after_round(s, round)` runs on the worker (e.g. a flush
/// of every CPU's slab). Meanwhile, when given, `meddler(s, k)` runs on its own thread every
/// millisecond until the workers are done (e.g. reaps and retunes: slow paths from elsewhere).
///
/// Panics on a corrupted stamp or a failed allocator call. The caller validates afterwards.
pub fn signal_storm<A>(
    s: &A,
    custom: CacheHandle,
    after_round: StormHook<'_, A>,
    meddler: Option<StormHook<'_, A>>,
) -> StormReport
where
    A: SlabAllocator + Sync,
{
    let _watchdog = watchdog("signal_storm");
    install_sigusr1_handler();
    let cpus = std::thread::available_parallelism().map_or(2, usize::from);
    let n = 4 * cpus.max(2);
    let before = rseq::abort_count();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| mpsc::channel::<Batch>()).unzip();
    let targets = SignalTargets::default();
    let stop = AtomicBool::new(false);
    let (signals, meddles) = std::thread::scope(|sc| {
        let workers: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(i, rx)| {
                let tx = txs[(i + 1) % n].clone();
                let targets = &targets;
                sc.spawn(move || {
                    let _listed = targets.enter();
                    storm_worker(s, custom, i, tx, rx, after_round);
                })
            })
            .collect();
        let storm = sc.spawn(|| {
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                sent += targets.signal_all(libc::SIGUSR1);
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
            sent
        });
        let side = meddler.map(|m| {
            let stop = &stop;
            sc.spawn(move || {
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    m(s, k);
                    k += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                k
            })
        });
        for w in workers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        (storm.join().unwrap(), side.map_or(0, |h| h.join().unwrap()))
    });
    StormReport {
        threads: n,
        cpus,
        signals,
        meddles,
        aborts: rseq::abort_count() - before,
        pairs: n as u64 * STORM_ROUNDS * (200 + 32),
    }
}

/// One worker of [`signal_storm`].
fn storm_worker<A: SlabAllocator>(
    s: &A,
    custom: CacheHandle,
    i: usize,
    tx: mpsc::Sender<Batch>,
    rx: mpsc::Receiver<Batch>,
    after_round: StormHook<'_, A>,
) {
    let mut seed = i as u64 * 1_000_003;
    for r in 0..STORM_ROUNDS {
        for k in 0..200 {
            seed += 1;
            let size = [64, 256, 24][k % 3];
            let o = s.kmalloc(size, Gfp::KERNEL).unwrap().as_ptr();
            // SAFETY: a fresh object of `size` bytes, freed once right after.
            unsafe {
                stamp(o, size, seed);
                assert!(stamp_intact(o, size, seed), "stamp overwritten");
                s.kfree(o).unwrap();
            }
            if k % 64 == 0 {
                std::thread::yield_now();
            }
        }
        let mut batch = Batch::new();
        for k in 0..32 {
            seed += 1;
            let (o, size, cust) = if k % 4 == 0 {
                (s.kmem_cache_alloc(custom, Gfp::KERNEL).unwrap(), 72, true)
            } else {
                let size = [64, 256, 700][k % 3];
                (s.kmalloc(size, Gfp::KERNEL).unwrap(), size, false)
            };
            // SAFETY: a fresh object of `size` bytes.
            unsafe { stamp(o.as_ptr(), size, seed) };
            batch.push((o.as_ptr() as usize, size, seed, cust));
        }
        tx.send(batch).unwrap();
        for (a, size, sd, cust) in rx.recv().unwrap() {
            let p = a as *mut u8;
            // SAFETY: each object is live until freed here, once, by the thread that received
            // it.
            unsafe {
                assert!(stamp_intact(p, size, sd), "object {a:#x} corrupted");
                if cust {
                    s.kmem_cache_free(custom, NonNull::new(p).unwrap()).unwrap();
                } else {
                    s.kfree(p).unwrap();
                }
            }
        }
        after_round(s, r);
    }
}

/// One node with a CPU slot for every CPU id of this machine (at least 2): the topology of the
/// rseq storms, so that rseq mode — which the allocators choose only when every CPU id has its
/// own slot — is what they stress on a machine of any size, not just on a 2-CPU one.
pub fn machine_topology() -> crate::Topology {
    crate::Topology::uniform(1, crate::sys::nprocs_conf().max(2))
        .expect("a one-node topology of the machine's CPU count")
}

/// Creates the 72-byte cache the storm's batches use.
pub fn storm_cache<A: SlabAllocator>(s: &A) -> CacheHandle {
    s.kmem_cache_create("rseq-storm", 72, 0, SlabFlags::NONE, None)
        .unwrap()
}

/// The child half of a fallback test: 4000 objects allocated and stamped here, freed by four
/// other threads that then run 10 000 kmalloc/kfree pairs each; `validate()` at the end.
pub fn fallback_child_workload<A: SlabAllocator + Sync>(s: &A) {
    let ptrs: Vec<Vec<usize>> = (0..4u64)
        .map(|i| {
            (0..1000u64)
                .map(|k| {
                    let o = s.kmalloc(64, Gfp::KERNEL).unwrap();
                    // SAFETY: a fresh 64-byte object.
                    unsafe { stamp(o.as_ptr(), 64, i * 10_000 + k) };
                    o.as_ptr() as usize
                })
                .collect()
        })
        .collect();
    std::thread::scope(|sc| {
        for (i, ptrs) in ptrs.into_iter().enumerate() {
            sc.spawn(move || {
                for (k, a) in ptrs.into_iter().enumerate() {
                    // SAFETY: allocated above, checked and freed once (on another thread).
                    unsafe {
                        assert!(stamp_intact(
                            a as *const u8,
                            64,
                            i as u64 * 10_000 + k as u64
                        ));
                        s.kfree(a as *mut u8).unwrap();
                    }
                }
                for _ in 0..10_000 {
                    let o = s.kmalloc(256, Gfp::KERNEL).unwrap();
                    // SAFETY: freed once.
                    unsafe { s.kfree(o.as_ptr()) }.unwrap();
                }
            });
        }
    });
    s.validate().unwrap();
}

/// Runs the child role of this test binary's test `child_test` in a child process (see
/// [`run_child`]) with glibc's rseq registration turned off (`GLIBC_TUNABLES=glibc.pthread.rseq=0`)
/// and `fastpath_env` removed; asserts that it succeeded and returns its standard output.
pub fn run_child_without_glibc_rseq(child_test: &str, fastpath_env: &str) -> String {
    let out = run_child(
        child_test,
        &[("GLIBC_TUNABLES", "glibc.pthread.rseq=0")],
        &[fastpath_env],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// xorshift64 (13, 7, 17): the seeded generator of the deterministic stress and sequence tests.
/// The seed must not be 0.
#[derive(Clone, Debug)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

// --- Real NUMA (both crates' tests/numa_real.rs) ---

/// One line on stderr, written directly so the test harness does not capture it: the guest
/// runs the binary bare and its log must show what was checked.
pub fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// The CPUs this process may run on, read once (pinning narrows the thread's own mask).
pub fn allowed() -> &'static [usize] {
    static ALLOWED: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    ALLOWED.get_or_init(crate::pin::allowed_cpus)
}

/// The first CPU of `node` this thread may run on, pinned to.
pub fn pin_to_node(topo: &crate::Topology, node: usize) -> Option<usize> {
    let allowed = allowed();
    let cpu = topo
        .cpus_of_node(node)
        .iter()
        .find(|c| allowed.contains(c))?;
    crate::pin::pin_to_cpu(cpu).ok()?;
    Some(cpu)
}

/// Checks every page of `[p, p + len)` is on logical node `node`, and with `real`, in the
/// kernel's view too (`get_mempolicy`). Touches the memory first (a page is placed when first
/// written).
pub fn check_on_node(
    pv: &crate::PageProvider,
    p: NonNull<u8>,
    len: usize,
    node: usize,
    real: bool,
    what: &str,
) {
    let a = p.as_ptr() as usize;
    // SAFETY: the caller owns len bytes at p.
    unsafe { p.as_ptr().write_bytes(0x5c, len) };
    assert_eq!(
        pv.page_to_nid(pv.virt_to_head_page(a).unwrap()),
        node,
        "{what}"
    );
    if !real {
        return;
    }
    let want = pv.topology().real_node(node);
    let mut page = a & !(crate::PAGE_SIZE - 1);
    while page < a + len {
        assert_eq!(
            crate::sys::node_of_address(page.max(a)),
            Ok(want),
            "{what}: page {page:#x} not on real node {want}"
        );
        page += crate::PAGE_SIZE;
    }
}

// --- Property test against a live-set model (both crates' property tests) ---

/// One step of a random sequence: a cache allocation (index into [`MODEL_CACHES`]), a kmalloc
/// of that many bytes, or the free of the live object at that index (modulo the live count).
#[derive(Clone, Debug)]
pub enum ModelOp {
    /// `kmem_cache_alloc` from `MODEL_CACHES[i]`.
    Alloc(usize),
    /// `kmalloc(n)`.
    Kmalloc(usize),
    /// Free the live object `k % live`.
    Free(usize),
}

/// (name, size, align, flags): alignment and layout variety for [`run_model`].
pub const MODEL_CACHES: [(&str, usize, usize, SlabFlags); 4] = [
    ("prop-24", 24, 0, SlabFlags::NONE),
    ("prop-100-hw", 100, 0, SlabFlags::HWCACHE_ALIGN),
    ("prop-200-a64", 200, 64, SlabFlags::NONE),
    ("prop-1000", 1000, 0, SlabFlags::NONE),
];

struct Live {
    ptr: usize,
    len: usize,
    cache: Option<usize>,
    seed: u64,
}

/// Runs `ops` on `a` against a model (the set of live objects): no two live objects overlap,
/// alignment is kept, `ksize` is at least the request, contents survive until the free, and
/// after `kmem_cache_shrink` each cache's objects in use (`in_use`, the allocator's own
/// count) equal the model's; `validate()` is clean before and after everything is freed and
/// the caches destroyed. The first failed check is the error.
pub fn run_model<A: SlabAllocator>(
    a: &A,
    ops: &[ModelOp],
    in_use: impl Fn(&A, CacheHandle, &str) -> usize,
) -> Result<(), String> {
    macro_rules! ensure {
        ($c:expr, $($m:tt)*) => {
            if !$c {
                return Err(format!($($m)*));
            }
        };
    }
    let caches: Vec<CacheHandle> = MODEL_CACHES
        .iter()
        .map(|&(n, sz, al, fl)| a.kmem_cache_create(n, sz, al, fl, None))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let free = |l: &Live| {
        let ptr = NonNull::new(l.ptr as *mut u8).expect("live objects are not null");
        // SAFETY: a live object of the model, freed once.
        unsafe {
            match l.cache {
                Some(i) => a.kmem_cache_free(caches[i], ptr),
                None => a.kfree(ptr.as_ptr()),
            }
        }
    };
    let mut live: Vec<Live> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let (o, len, cache) = match *op {
            ModelOp::Alloc(i) => (
                a.kmem_cache_alloc(caches[i], Gfp::KERNEL),
                MODEL_CACHES[i].1,
                Some(i),
            ),
            ModelOp::Kmalloc(n) => (a.kmalloc(n, Gfp::KERNEL), n, None),
            ModelOp::Free(k) => {
                if live.is_empty() {
                    continue;
                }
                let l = live.swap_remove(k % live.len());
                // SAFETY: the model\'s object of l.len bytes, still live.
                let intact = unsafe { stamp_intact(l.ptr as *const u8, l.len, l.seed) };
                ensure!(intact, "contents lost at step {step}");
                ensure!(free(&l).is_ok(), "free refused at step {step}");
                continue;
            }
        };
        let o = o.ok_or_else(|| format!("allocation of {len} B failed at step {step}"))?;
        let p = o.as_ptr() as usize;
        let align = match cache {
            Some(i) if MODEL_CACHES[i].2 > 0 => MODEL_CACHES[i].2,
            _ => 8,
        };
        ensure!(p % align == 0, "{p:#x} not aligned to {align}");
        // SAFETY: a live object of this instance.
        let ks = unsafe { a.ksize(o) }.map_err(|e| e.to_string())?;
        ensure!(ks >= len, "ksize {ks} < {len}");
        for l in &live {
            ensure!(
                p + len <= l.ptr || l.ptr + l.len <= p,
                "{p:#x}+{len} overlaps {:#x}+{}",
                l.ptr,
                l.len
            );
        }
        let seed = step as u64;
        // SAFETY: a fresh object of at least len bytes.
        unsafe { stamp(o.as_ptr(), len, seed) };
        live.push(Live {
            ptr: p,
            len,
            cache,
            seed,
        });
    }
    for (i, &c) in caches.iter().enumerate() {
        a.kmem_cache_shrink(c).map_err(|e| e.to_string())?;
        let want = live.iter().filter(|l| l.cache == Some(i)).count();
        let got = in_use(a, c, MODEL_CACHES[i].0);
        ensure!(
            got == want,
            "{}: {got} objects in use, model {want}",
            MODEL_CACHES[i].0
        );
    }
    a.validate()?;
    for l in live.drain(..) {
        // SAFETY: as above.
        let intact = unsafe { stamp_intact(l.ptr as *const u8, l.len, l.seed) };
        ensure!(intact, "contents lost");
        ensure!(free(&l).is_ok(), "free refused");
    }
    for c in caches {
        // SAFETY: nothing live.
        unsafe { a.kmem_cache_destroy(c) }.map_err(|e| e.to_string())?;
    }
    a.validate()
}

// --- Skips, required capabilities and child processes (every crate's tests) ---

/// The environment variable that lists what this machine must be able to run
/// (`SLABWORKS_REQUIRE=rseq,membarrier,pin,python3,sqlite3,git`, or `all`). `.ci/run` sets it,
/// so a test that would skip for lack of a listed capability fails there instead.
pub const REQUIRE_ENV: &str = "SLABWORKS_REQUIRE";

/// Whether `cap` is listed in [`REQUIRE_ENV`] (or the list is `all`).
pub fn required(cap: &str) -> bool {
    std::env::var(REQUIRE_ENV)
        .is_ok_and(|v| v.split(',').map(str::trim).any(|c| c == cap || c == "all"))
}

/// A test that cannot run here for lack of `cap`: prints `SKIPPED <test>: <why>` on stderr
/// (uncaptured, so it shows in every log), or, when `cap` is required by [`REQUIRE_ENV`],
/// fails the test. Call it, then `return`.
#[track_caller]
pub fn skip(test: &str, cap: &str, why: &str) {
    assert!(
        !required(cap),
        "{test}: capability `{cap}` is required by {REQUIRE_ENV} but missing: {why}"
    );
    say(&format!(
        "SKIPPED {test}: {why} (capability `{cap}`; set {REQUIRE_ENV}={cap} to make this a failure)"
    ));
}

/// `true` (after reporting the skip) when `have` is false: `if skip_unless(..) { return; }`.
#[track_caller]
pub fn skip_unless(test: &str, cap: &str, have: bool, why: &str) -> bool {
    if !have {
        skip(test, cap, why);
    }
    !have
}

/// The environment variable that marks a child process started by [`run_child`]: it holds the
/// name of the test whose child role the process plays.
pub const CHILD_ENV: &str = "SLABWORKS_CHILD_TEST";

/// Whether this process is the child that `test` started with [`run_child`]. A test that needs
/// a process of its own (an abort, a different environment) is one ordinary test with two
/// roles: `if is_child("name") { child part; return; }`, then the parent part, which runs
/// `run_child("name", ..)` and checks what the child did. Run any other way — alone, filtered,
/// in the whole suite — the test is the parent, so the child part never passes on its own and
/// nothing is ignored or skipped.
pub fn is_child(test: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == test)
}

/// Runs this test binary's test `test` alone in a child process (exact name, one thread, output
/// not captured) with [`CHILD_ENV`]` = test`, so the test plays its child role there (see
/// [`is_child`]); `set` is added to and `remove` removed from the environment. Returns the
/// child's output whatever its status (the caller checks it).
pub fn run_child(test: &str, set: &[(&str, &str)], remove: &[&str]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test);
    for (k, v) in set {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("running 1 test"),
        "child of {test} did not run exactly one test:\n{stdout}"
    );
    out
}

// --- Watchdog (long multi-threaded tests) ---

/// The environment variable that overrides the in-test watchdog bound, in seconds.
pub const WATCHDOG_ENV: &str = "SLABWORKS_TEST_WATCHDOG_SECS";

/// Default bound of [`watchdog`]: far above any test's normal run (a few seconds, even under a
/// CPU hog), far below CI's limit.
pub const WATCHDOG_SECS: u64 = 300;

/// Disarms its watchdog when dropped.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Arms a watchdog for a long multi-threaded test: if the returned guard is not dropped within
/// [`WATCHDOG_SECS`] (or `$SLABWORKS_TEST_WATCHDOG_SECS`), every thread's stack of this process
/// is printed on stderr (gdb, else eu-stack) and the process aborts, so a hang becomes a
/// failure with stacks instead of a stalled CI.
pub fn watchdog(test: &'static str) -> Watchdog {
    let secs = std::env::var(WATCHDOG_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WATCHDOG_SECS);
    let (tx, rx) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("test-watchdog".into())
        .spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) =
                rx.recv_timeout(std::time::Duration::from_secs(secs))
            {
                say(&format!(
                    "WATCHDOG: {test} still running after {secs} s: stacks of every thread follow, then abort"
                ));
                print_all_stacks();
                std::process::abort();
            }
        })
        .expect("spawn the watchdog thread");
    Watchdog {
        done: Some(tx),
        thread: Some(thread),
    }
}

/// Prints every thread's stack of this process on stderr with gdb (or eu-stack).
pub fn print_all_stacks() {
    let pid = std::process::id().to_string();
    let gdb = std::process::Command::new("gdb")
        .args([
            "-q",
            "-batch",
            "-p",
            &pid,
            "-ex",
            "set pagination off",
            "-ex",
            "thread apply all bt 40",
        ])
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .status();
    if gdb.is_err() {
        let eu = std::process::Command::new("eu-stack")
            .args(["-p", &pid])
            .status();
        if eu.is_err() {
            say("WATCHDOG: neither gdb nor eu-stack is installed: no stacks");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// State-space exploration: the one explorer behind the hand-written protocol models
// (`slub/src/model.rs`, `slub/src/sheaf_model.rs`, `slab-classic/src/model.rs`)
// ---------------------------------------------------------------------------------------------

/// A protocol model for [`explore`]: a finite state space (threads' program counters and
/// registers, shared memory, ghost state), its transitions, and the checks. loom cannot
/// interrupt a restartable sequence or run a `membarrier` fence, so the rseq protocols are
/// modelled by hand: each transition is one atomic step of one thread (a load, a store, a
/// compare, an abort by preemption, signal or fence).
pub trait Model {
    /// A state; equal states are explored once.
    type State: Clone + Eq + core::hash::Hash;
    /// What a transition did (for counterexample schedules).
    type Label: Clone + core::fmt::Display;
    /// The invariant of every reachable state, the initial one included.
    fn check(&self, _s: &Self::State) -> Result<(), String> {
        Ok(())
    }
    /// Every transition out of `s`, appended to `out`.
    fn successors(&self, s: &Self::State, out: &mut Vec<Transition<Self::State, Self::Label>>);
    /// A state without successors: every thread finished (check the end state), or a
    /// deadlock.
    fn terminal(&self, s: &Self::State) -> Result<(), String>;
    /// A one-line summary of a state, appended to a counterexample reached by a transition.
    fn describe(&self, _s: &Self::State) -> String {
        String::new()
    }
}

/// One transition of a [`Model`].
pub struct Transition<S, L> {
    /// What it did.
    pub label: L,
    /// The state it reached.
    pub next: S,
    /// `Err` if the step itself went wrong (a use-after-free, a broken claim); on `Ok` the
    /// explorer checks [`Model::check`] on `next`.
    pub result: Result<(), String>,
}

/// What [`explore`] covered.
#[derive(Clone, Copy, Debug, Default)]
pub struct ExploreStats {
    /// Distinct reachable states.
    pub states: usize,
    /// Distinct states without successors.
    pub terminal: usize,
}

/// A violation and the shortest schedule that reaches it.
#[derive(Debug)]
pub struct Counterexample {
    /// What went wrong.
    pub msg: String,
    /// The transitions' labels from the initial state, space-separated (with the reached
    /// state's [`Model::describe`] in brackets when the violation was a transition's).
    pub trace: String,
}

impl core::fmt::Display for Counterexample {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}\n  schedule: {}", self.msg, self.trace)
    }
}

/// A reached state, its parent's index and the transition from the parent.
type Node<M> = (<M as Model>::State, u32, Option<<M as Model>::Label>);

/// Explores every state reachable from `init` breadth-first, with visited-state pruning, and
/// checks each; the first violation comes back with the shortest schedule reaching it.
///
/// # Errors
/// The [`Counterexample`].
pub fn explore<M: Model>(m: &M, init: M::State) -> Result<ExploreStats, Counterexample> {
    use std::collections::HashSet;
    // Each state with its parent and the transition that reached it.
    let mut states: Vec<Node<M>> = vec![(init.clone(), 0, None)];
    let mut seen: HashSet<M::State> = HashSet::new();
    let trace = |states: &[Node<M>], mut k: usize, last: Option<&M::Label>| {
        let mut labels: Vec<String> = last.map(ToString::to_string).into_iter().collect();
        while let Some(l) = &states[k].2 {
            labels.push(l.to_string());
            k = states[k].1 as usize;
        }
        labels.reverse();
        labels.join(" ")
    };
    if let Err(msg) = m.check(&init) {
        return Err(Counterexample {
            msg,
            trace: String::new(),
        });
    }
    seen.insert(init);
    let mut terminal = 0;
    let mut head = 0;
    let mut succ = Vec::new();
    while head < states.len() {
        succ.clear();
        m.successors(&states[head].0, &mut succ);
        if succ.is_empty() {
            if let Err(msg) = m.terminal(&states[head].0) {
                return Err(Counterexample {
                    msg,
                    trace: trace(&states, head, None),
                });
            }
            terminal += 1;
        }
        for t in succ.drain(..) {
            if let Err(msg) = t.result.and_then(|()| m.check(&t.next)) {
                let mut s = trace(&states, head, Some(&t.label));
                let d = m.describe(&t.next);
                if !d.is_empty() {
                    s.push_str("  [final: ");
                    s.push_str(&d);
                    s.push(']');
                }
                return Err(Counterexample { msg, trace: s });
            }
            if !seen.contains(&t.next) {
                seen.insert(t.next.clone());
                let parent = u32::try_from(head).expect("under 2^32 states");
                states.push((t.next, parent, Some(t.label)));
            }
        }
        head += 1;
    }
    Ok(ExploreStats {
        states: states.len(),
        terminal,
    })
}

/// A negative control: the model of a protocol with one step removed must fail. Prints the
/// counterexample (with `name` and the time taken) and returns it; panics if every state
/// passed (a model that cannot fail proves nothing).
pub fn must_fail<M: Model>(name: &str, m: &M, init: M::State) -> Counterexample {
    let t0 = std::time::Instant::now();
    match explore(m, init) {
        Ok(s) => panic!(
            "{name}: the broken protocol passed all {} states: the model cannot fail",
            s.states
        ),
        Err(v) => {
            eprintln!("{name}: found ({:.2?}): {v}", t0.elapsed());
            v
        }
    }
}

/// The loom helpers both allocators' `tests/loom.rs` use (built only with `--cfg loom`).
#[cfg(loom)]
pub mod loom_helpers {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// A model builder: every interleaving with at most `preemptions` preemptions (0: no
    /// bound).
    pub fn builder(preemptions: usize) -> loom::model::Builder {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = (preemptions != 0).then_some(preemptions);
        b
    }

    /// Runs a model that must pass, twice: as written (`f(false)`) and with the main thread
    /// yielding once after it spawned (`f(true)`): loom's partial-order reduction explores
    /// different schedules in the two. Returns the executions explored and the time taken.
    pub fn pass_both_ways(
        preemptions: usize,
        f: impl Fn(bool) + Sync + Send + Clone + 'static,
    ) -> (usize, Duration) {
        let t = Instant::now();
        let n = Arc::new(AtomicUsize::new(0));
        for yield_first in [false, true] {
            let n1 = n.clone();
            let f = f.clone();
            builder(preemptions).check(move || {
                n1.fetch_add(1, Ordering::Relaxed);
                f(yield_first);
            });
        }
        (n.load(Ordering::Relaxed), t.elapsed())
    }

    /// Runs a negative control: loom must find a failing execution. Prints and returns the
    /// panic message; panics if every execution passed (the model cannot fail).
    pub fn must_fail(
        name: &str,
        preemptions: usize,
        f: impl Fn() + Sync + Send + 'static,
    ) -> String {
        let t = Instant::now();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            builder(preemptions).check(f);
        }));
        let Err(e) = r else {
            panic!("{name}: the broken protocol passed every execution: the model cannot fail");
        };
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        eprintln!("{name}: failed as it must, in {:.1?}: {msg}", t.elapsed());
        msg
    }
}
