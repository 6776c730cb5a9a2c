//! slabworks as this program's `#[global_allocator]`: `common::GlobalSlab` over
//! `slabworks_preload::Shared`, the same process-wide instance the library's C `malloc` uses,
//! chosen by `SLABWORKS_ALLOCATOR=slab|slub` (and the other `SLABWORKS_*` variables).
//!
//! A multi-threaded cross-thread-free stress with content checks: producer threads build
//! `Vec<u8>`s of seeded random sizes (16 B .. 64 KiB, a few of 5 MiB) filled with a pattern and
//! send them over channels to consumer threads, which check the pattern, sometimes grow the
//! vector (realloc), check again and drop it (the free happens on another thread than the
//! allocation). Rounds start fresh threads. First, every power-of-two alignment up to 16 MiB is
//! allocated, checked and freed. Prints a deterministic summary line, then the
//! allocator's name and memory figures; exits 1 on any mismatch.
//!
//! ```sh
//! SLABWORKS_ALLOCATOR=slab cargo run --release -p preload --example global -- [rounds] [threads] [per_thread]
//! ```

use common::api::SlabAllocator;
use common::GlobalSlab;
use slabworks_preload::Shared;
use std::sync::mpsc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: GlobalSlab<Shared> = GlobalSlab::new(Shared::get);

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn pick_size(s: &mut u64) -> usize {
    let r = splitmix(s);
    match r % 1000 {
        0 => 5 << 20,
        1..20 => 16384 + (r >> 20) as usize % 49152,
        20..200 => 1024 + (r >> 20) as usize % 7168,
        _ => 16 + (r >> 20) as usize % 1000,
    }
}

fn byte(seed: u64, i: usize) -> u8 {
    (seed as usize).wrapping_add(i.wrapping_mul(131)) as u8
}

struct Block {
    seed: u64,
    data: Vec<u8>,
}

fn make(seed: u64, size: usize) -> Block {
    let data: Vec<u8> = (0..size).map(|i| byte(seed, i)).collect();
    Block { seed, data }
}

/// Checks the pattern; returns the block's checksum.
fn check(b: &Block, n: usize) -> Result<u64, String> {
    let mut sum = 0u64;
    for (i, &v) in b.data[..n].iter().enumerate() {
        if v != byte(b.seed, i) {
            return Err(format!("byte {i} of a {}-byte block is {v}", b.data.len()));
        }
        sum += u64::from(v);
    }
    Ok(sum + n as u64)
}

/// Every power-of-two alignment up to 16 MiB through the global allocator, sizes below, at and
/// above the alignment and above 4 MiB (the mmap path).
fn alignments() -> Result<(), String> {
    for k in 0..=24 {
        let align = 1usize << k;
        for size in [1, align, align + 1, 3 * align, (5 << 20) + 1] {
            let l = std::alloc::Layout::from_size_align(size, align).map_err(|e| e.to_string())?;
            // SAFETY: a non-zero-size layout; the block is written inside its size and freed
            // once with the same layout.
            unsafe {
                let p = std::alloc::alloc(l);
                if p.is_null() || p as usize % align != 0 {
                    return Err(format!("alloc(size {size}, align {align}) gave {p:?}"));
                }
                p.write_bytes(0xa5, size);
                std::alloc::dealloc(p, l);
            }
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = alignments() {
        eprintln!("global: {e}");
        std::process::exit(1);
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let rounds = args.first().copied().unwrap_or(3);
    let threads = args.get(1).copied().unwrap_or(4).max(1);
    let per = args.get(2).copied().unwrap_or(20_000);
    let start = Instant::now();
    let (mut produced, mut consumed, mut blocks) = (0u64, 0u64, 0usize);
    for round in 0..rounds {
        let mut senders = Vec::new();
        let mut consumers = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = mpsc::sync_channel::<Block>(64);
            senders.push(tx);
            consumers.push(std::thread::spawn(
                move || -> Result<(u64, usize), String> {
                    let (mut sum, mut n) = (0u64, 0usize);
                    for mut b in rx {
                        let len = b.data.len();
                        let c = check(&b, len)?;
                        if b.seed % 8 == 0 {
                            b.data.reserve_exact(len + 100);
                            if check(&b, len)? != c {
                                return Err("content changed by realloc".into());
                            }
                        }
                        sum += c;
                        n += 1;
                    }
                    Ok((sum, n))
                },
            ));
        }
        let producers: Vec<_> = (0..threads)
            .map(|t| {
                let txs = senders.clone();
                std::thread::spawn(move || {
                    let mut s = (round as u64) * 7919 + (t as u64) * 104_729 + 1;
                    let mut sum = 0u64;
                    for i in 0..per {
                        let size = pick_size(&mut s);
                        let b = make(splitmix(&mut s), size);
                        sum += check(&b, size).expect("fresh block");
                        // Always to another thread's consumer than this producer's index.
                        txs[(t + 1 + i % threads.max(2)) % threads]
                            .send(b)
                            .expect("consumer alive");
                    }
                    sum
                })
            })
            .collect();
        drop(senders);
        for p in producers {
            produced += p.join().expect("producer");
        }
        for c in consumers {
            match c.join().expect("consumer") {
                Ok((s, n)) => {
                    consumed += s;
                    blocks += n;
                }
                Err(e) => {
                    eprintln!("global: content check failed: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
    if produced != consumed {
        eprintln!("global: checksum mismatch: produced {produced}, consumed {consumed}");
        std::process::exit(1);
    }
    println!("global rounds={rounds} threads={threads} blocks={blocks} checksum={consumed}");
    let inst = Shared::get().expect("the allocator is up");
    let m = inst.memory_usage();
    eprintln!(
        "allocator={} elapsed={:.2}s pages_held={} peak_pages={} settings: {}",
        inst.name(),
        start.elapsed().as_secs_f64(),
        m.pages,
        m.peak_pages,
        inst.settings_summary()
    );
}
