//! Allocations above what the page provider can hand out in one block (4 MiB, `MAX_ORDER` 11)
//! come straight from `mmap`, recorded in a fixed table (no heap) so `free` can recognise them
//! without reading memory in front of a pointer it does not know.

use common::sync::SpinLock;
use common::PAGE_SIZE;
use core::sync::atomic::{AtomicUsize, Ordering};

const BITS: u32 = 14;
/// Most live `mmap` allocations at once.
pub const CAPACITY: usize = 1 << BITS;
const MASK: usize = CAPACITY - 1;

struct Table {
    addr: [usize; CAPACITY],
    len: [usize; CAPACITY],
}

static TABLE: SpinLock<Table> = SpinLock::new(Table {
    addr: [0; CAPACITY],
    len: [0; CAPACITY],
});
static LIVE: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn home(addr: usize) -> usize {
    ((addr >> 12).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - BITS)) & MASK
}

impl Table {
    fn find(&self, addr: usize) -> Option<usize> {
        let mut i = home(addr);
        for _ in 0..CAPACITY {
            match self.addr[i] {
                0 => return None,
                a if a == addr => return Some(i),
                _ => i = (i + 1) & MASK,
            }
        }
        None
    }

    fn insert(&mut self, addr: usize, len: usize) -> bool {
        // Keep a quarter free so probes stay short.
        if LIVE.load(Ordering::Relaxed) >= CAPACITY * 3 / 4 {
            return false;
        }
        let mut i = home(addr);
        while self.addr[i] != 0 {
            i = (i + 1) & MASK;
        }
        self.addr[i] = addr;
        self.len[i] = len;
        LIVE.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Linear-probing removal with backward shift (no tombstones).
    fn remove_at(&mut self, mut i: usize) {
        self.addr[i] = 0;
        let mut j = i;
        loop {
            j = (j + 1) & MASK;
            if self.addr[j] == 0 {
                break;
            }
            let k = home(self.addr[j]);
            // Move j into the hole at i if its home is not in (i, j] cyclically.
            let in_between = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !in_between {
                self.addr[i] = self.addr[j];
                self.len[i] = self.len[j];
                self.addr[j] = 0;
                i = j;
            }
        }
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

fn add_bytes(n: usize) {
    let now = BYTES.fetch_add(n, Ordering::Relaxed) + n;
    PEAK_BYTES.fetch_max(now, Ordering::Relaxed);
}

/// `size` bytes aligned to `align` (power of two) from `mmap`, zero-filled; null on failure.
pub fn alloc(size: usize, align: usize) -> *mut u8 {
    let Some(len) = size.checked_next_multiple_of(PAGE_SIZE) else {
        return core::ptr::null_mut();
    };
    let extra = if align > PAGE_SIZE { align } else { 0 };
    let Some(map_len) = len.checked_add(extra) else {
        return core::ptr::null_mut();
    };
    // SAFETY: a fresh anonymous private mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    let base = p as usize;
    let start = base.next_multiple_of(align.max(PAGE_SIZE));
    if extra > 0 {
        // SAFETY: both trimmed ranges are parts of the mapping just made, outside [start, len).
        unsafe {
            if start > base {
                libc::munmap(base as *mut _, start - base);
            }
            let tail = base + map_len - (start + len);
            if tail > 0 {
                libc::munmap((start + len) as *mut _, tail);
            }
        }
    }
    if !TABLE.lock().insert(start, len) {
        // SAFETY: the mapping is ours and unpublished.
        unsafe { libc::munmap(start as *mut _, len) };
        return core::ptr::null_mut();
    }
    add_bytes(len);
    start as *mut u8
}

/// The mapping length of a live `mmap` allocation starting at `p`, or `None`.
pub fn usable(p: usize) -> Option<usize> {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return None;
    }
    let t = TABLE.lock();
    t.find(p).map(|i| t.len[i])
}

/// Unmaps the allocation at `p`; `false` if `p` is not one.
///
/// # Safety
/// Nobody may use the memory afterwards.
pub unsafe fn free(p: usize) -> bool {
    if LIVE.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let len = {
        let mut t = TABLE.lock();
        let Some(i) = t.find(p) else {
            return false;
        };
        let len = t.len[i];
        t.remove_at(i);
        len
    };
    BYTES.fetch_sub(len, Ordering::Relaxed);
    // SAFETY: the caller gives the mapping up; it was ours (found in the table).
    unsafe { libc::munmap(p as *mut _, len) };
    true
}

/// `mremap` of a live allocation to `new_size` (> 4 MiB), possibly moving; null on failure (the
/// old allocation is untouched then).
///
/// # Safety
/// `p` must be a live allocation of this module.
pub unsafe fn realloc(p: usize, new_size: usize) -> *mut u8 {
    let Some(new_len) = new_size.checked_next_multiple_of(PAGE_SIZE) else {
        return core::ptr::null_mut();
    };
    let mut t = TABLE.lock();
    let Some(i) = t.find(p) else {
        return core::ptr::null_mut();
    };
    let old_len = t.len[i];
    // SAFETY: the mapping [p, p + old_len) is ours; the table lock keeps others off it.
    let q = unsafe { libc::mremap(p as *mut _, old_len, new_len, libc::MREMAP_MAYMOVE) };
    if q == libc::MAP_FAILED {
        return core::ptr::null_mut();
    }
    t.remove_at(i);
    let ok = t.insert(q as usize, new_len);
    debug_assert!(ok, "a slot was just freed");
    BYTES.fetch_sub(old_len, Ordering::Relaxed);
    add_bytes(new_len);
    q.cast()
}

/// (live allocations, bytes mapped now, peak bytes).
pub fn stats() -> (usize, usize, usize) {
    (
        LIVE.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        PEAK_BYTES.load(Ordering::Relaxed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_insert_find_remove_with_collisions() {
        // The unit-test binary does not export malloc, so nothing else uses the table.
        let mut t = TABLE.lock();
        LIVE.store(0, Ordering::Relaxed);
        // Addresses sharing a home slot collide on purpose.
        let addrs: Vec<usize> = (1..200usize).map(|i| i << 30).collect();
        for &a in &addrs {
            assert!(t.insert(a, a >> 20));
        }
        for (n, &a) in addrs.iter().enumerate() {
            if n % 3 == 0 {
                let i = t.find(a).unwrap();
                t.remove_at(i);
            }
        }
        for (n, &a) in addrs.iter().enumerate() {
            let f = t.find(a);
            if n % 3 == 0 {
                assert!(f.is_none());
            } else {
                assert_eq!(t.len[f.unwrap()], a >> 20);
            }
        }
        for &a in &addrs {
            if let Some(i) = t.find(a) {
                t.remove_at(i);
            }
        }
        assert_eq!(LIVE.load(Ordering::Relaxed), 0);
        assert!(t.addr.iter().all(|&a| a == 0));
    }
}
