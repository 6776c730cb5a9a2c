//! The list primitives: `list_pop` / `list_push` on a bare head, `pair_pop` / `pair_push` on a
//! `{head, tid}` pair (SLUB's `kmem_cache_cpu {freelist, tid}`), all two sequences (`pop_impl`,
//! `push_impl`) assembled per form.

use super::{status, Fail, Link, RseqThread};

impl RseqThread {
    /// On `cpu`: pops the head of the list `*head` (links per `link`) and returns it.
    ///
    /// # Errors
    /// [`Fail::WrongCpu`], [`Fail::Empty`], [`Fail::Aborted`].
    ///
    /// # Safety
    /// Every object on the list is readable at `link.offset` (a stale read of an object just
    /// popped by someone else must not fault either: the memory stays mapped).
    #[inline(always)]
    pub unsafe fn list_pop(
        &self,
        cpu: usize,
        head: &core::sync::atomic::AtomicUsize,
        link: Link,
    ) -> Result<usize, Fail> {
        // SAFETY: forwarded contract.
        unsafe { self.pop_link::<false>(cpu, head.as_ptr(), (0, 0), link) }
    }

    /// On `cpu`: pushes `obj` on the list `*head` (writing its link word).
    ///
    /// # Errors
    /// [`Fail::WrongCpu`], [`Fail::Aborted`], [`Fail::DoubleFree`] (only with a hardening key:
    /// `obj` already heads the list).
    ///
    /// # Safety
    /// `obj` is the caller's, writable at `link.offset`, and not on the list.
    #[inline(always)]
    pub unsafe fn list_push(
        &self,
        cpu: usize,
        head: &core::sync::atomic::AtomicUsize,
        obj: usize,
        link: Link,
    ) -> Result<(), Fail> {
        // SAFETY: forwarded contract; a one-object chain.
        unsafe { self.push_link::<false>(cpu, head.as_ptr(), (0, 0), (obj, obj), link) }
    }

    /// On `cpu`, over a 16-byte `{head, tid}` pair (SLUB's `kmem_cache_cpu {freelist, tid}`):
    /// if `tid == expected_tid` and the list is not empty, pops its head, stores `new_tid`
    /// (speculatively) and commits `head = next`.
    ///
    /// # Errors
    /// [`Fail::WrongCpu`], [`Fail::Mismatch`], [`Fail::Empty`], [`Fail::Aborted`].
    ///
    /// # Safety
    /// As [`Self::list_pop`].
    #[inline(always)]
    pub unsafe fn pair_pop(
        &self,
        cpu: usize,
        pair: &crate::dword::DoubleWord,
        expected_tid: usize,
        new_tid: usize,
        link: Link,
    ) -> Result<usize, Fail> {
        let p = core::ptr::from_ref(pair).cast::<usize>().cast_mut();
        // SAFETY: forwarded contract.
        unsafe { self.pop_link::<true>(cpu, p, (expected_tid, new_tid), link) }
    }

    /// On `cpu`, over a `{head, tid}` pair: if `tid == expected_tid`, links the chain
    /// `first … last` in front of the list (writing `last`'s link), stores `new_tid`
    /// (speculatively) and commits `head = first`.
    ///
    /// # Errors
    /// [`Fail::WrongCpu`], [`Fail::Mismatch`], [`Fail::Aborted`], [`Fail::DoubleFree`] (with a
    /// hardening key: `last` already heads the list).
    ///
    /// # Safety
    /// The chain `first … last` is the caller's, already linked, `last` writable at
    /// `link.offset`, and no object of it is on the list.
    #[inline(always)]
    pub unsafe fn pair_push(
        &self,
        cpu: usize,
        pair: &crate::dword::DoubleWord,
        expected_tid: usize,
        new_tid: usize,
        first: usize,
        last: usize,
        link: Link,
    ) -> Result<(), Fail> {
        let p = core::ptr::from_ref(pair).cast::<usize>().cast_mut();
        // SAFETY: forwarded contract.
        unsafe { self.push_link::<true>(cpu, p, (expected_tid, new_tid), (first, last), link) }
    }

    /// [`Self::pop_impl`] in the form `link` needs (plain or hardened free pointers).
    ///
    /// # Safety
    /// As [`Self::list_pop`].
    #[inline(always)]
    unsafe fn pop_link<const TID: bool>(
        &self,
        cpu: usize,
        head: *mut usize,
        tid: (usize, usize),
        link: Link,
    ) -> Result<usize, Fail> {
        // SAFETY: forwarded contract.
        unsafe {
            match link.key {
                None => self.pop_impl::<TID, false>(cpu, head, tid, link.offset, 0),
                Some(key) => self.pop_impl::<TID, true>(cpu, head, tid, link.offset, key),
            }
        }
    }

    /// [`Self::push_impl`] in the form `link` needs.
    ///
    /// # Safety
    /// As [`Self::pair_push`].
    #[inline(always)]
    unsafe fn push_link<const TID: bool>(
        &self,
        cpu: usize,
        head: *mut usize,
        tid: (usize, usize),
        chain: (usize, usize),
        link: Link,
    ) -> Result<(), Fail> {
        // SAFETY: forwarded contract.
        unsafe {
            match link.key {
                None => self.push_impl::<TID, false>(cpu, head, tid, chain, link.offset, 0),
                Some(key) => self.push_impl::<TID, true>(cpu, head, tid, chain, link.offset, key),
            }
        }
    }

    /// The pop sequence. `TID`: the list head is the first word of a `{head, tid}` pair whose
    /// tid must equal `tid.0` (and becomes `tid.1`); `HARD`: links are stored as
    /// `next ^ key ^ swab(link address)` (SLUB's `freelist_ptr`). Both are assembled in or out
    /// (`.if`), so each form carries only its own instructions.
    ///
    /// # Safety
    /// As [`Self::list_pop`].
    #[inline(always)]
    unsafe fn pop_impl<const TID: bool, const HARD: bool>(
        &self,
        cpu: usize,
        head: *mut usize,
        tid: (usize, usize),
        offset: usize,
        key: usize,
    ) -> Result<usize, Fail> {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
        {
            let st: u32;
            let obj: usize;
            // SAFETY: `area` is this thread's registered area; `head` (and `head + 8` with TID)
            // are live words of the caller's per-CPU slot, written only by sequences on `cpu`
            // and by code that fenced `cpu` first. The section checks cpu_id == cpu first; its
            // loads (tid, head, the head object's link word: readable per the caller's contract)
            // and its speculative tid store are followed by one committing store of the new
            // head, the last instruction before label 5. Preemption, migration or a signal
            // anywhere in 4..5 sends us to label 6 with the head untouched. Flags and the listed
            // registers are the only other state changed.
            unsafe {
                core::arch::asm!(
                    rseq_prologue!("{area}", "{t2}"),
                    "4:",
                    "mov {st:e}, 1",
                    "cmp dword ptr [{area} + 4], {cpu:e}",
                    "jne 7f",
                    ".if {wt}",
                    "mov {st:e}, 2",
                    "cmp qword ptr [{head} + 8], {exp}",
                    "jne 7f",
                    ".endif",
                    "mov {st:e}, 3",
                    "mov {obj}, qword ptr [{head}]",
                    "test {obj}, {obj}",
                    "jz 7f",
                    ".if {hard}",
                    "lea {t3}, [{obj} + {off}]",
                    "mov {t2}, qword ptr [{t3}]",
                    "xor {t2}, {key}",
                    "bswap {t3}",
                    "xor {t2}, {t3}",
                    ".else",
                    "mov {t2}, qword ptr [{obj} + {off}]",
                    ".endif",
                    ".if {wt}",
                    "mov qword ptr [{head} + 8], {new}",
                    ".endif",
                    "mov qword ptr [{head}], {t2}",
                    "5:",
                    "xor {st:e}, {st:e}",
                    "jmp 7f",
                    rseq_epilogue!("{st:e}"),
                    area = in(reg) self.area,
                    cpu = in(reg) cpu,
                    head = in(reg) head,
                    exp = in(reg) tid.0,
                    new = in(reg) tid.1,
                    off = in(reg) offset,
                    key = in(reg) key,
                    wt = const TID as u8,
                    hard = const HARD as u8,
                    obj = out(reg) obj,
                    t2 = out(reg) _,
                    t3 = out(reg) _,
                    st = out(reg) st,
                    options(nostack),
                );
            }
            status(st).map(|()| obj)
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
        {
            let _ = (cpu, head, tid, offset, key);
            Err(Fail::WrongCpu)
        }
    }

    /// The push sequence of the chain `chain.0 … chain.1`; `TID` and `HARD` as in
    /// [`Self::pop_impl`]. Hardened, it refuses a `last` that already heads the list (the
    /// naive double-free check).
    ///
    /// # Safety
    /// As [`Self::pair_push`].
    #[inline(always)]
    unsafe fn push_impl<const TID: bool, const HARD: bool>(
        &self,
        cpu: usize,
        head: *mut usize,
        tid: (usize, usize),
        chain: (usize, usize),
        offset: usize,
        key: usize,
    ) -> Result<(), Fail> {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
        {
            let st: u32;
            let (first, last) = chain;
            // SAFETY: as in pop_impl for the area, cpu check and head/tid words. The store of
            // `last`'s link word is speculative but harmless if aborted: the chain is still the
            // caller's (contract) until the commit publishes it, and the retry rewrites it. The
            // committing store of the new head is the last instruction before label 5.
            unsafe {
                core::arch::asm!(
                    rseq_prologue!("{area}", "{t2}"),
                    "4:",
                    "mov {st:e}, 1",
                    "cmp dword ptr [{area} + 4], {cpu:e}",
                    "jne 7f",
                    ".if {wt}",
                    "mov {st:e}, 2",
                    "cmp qword ptr [{head} + 8], {exp}",
                    "jne 7f",
                    ".endif",
                    "mov {t2}, qword ptr [{head}]",
                    ".if {hard}",
                    "mov {st:e}, 5",
                    "cmp {t2}, {last}",
                    "je 7f",
                    "xor {t2}, {key}",
                    "mov {t4}, {link}",
                    "bswap {t4}",
                    "xor {t2}, {t4}",
                    ".endif",
                    "mov qword ptr [{link}], {t2}",
                    ".if {wt}",
                    "mov qword ptr [{head} + 8], {new}",
                    ".endif",
                    "mov qword ptr [{head}], {first}",
                    "5:",
                    "xor {st:e}, {st:e}",
                    "jmp 7f",
                    rseq_epilogue!("{st:e}"),
                    area = in(reg) self.area,
                    cpu = in(reg) cpu,
                    head = in(reg) head,
                    exp = in(reg) tid.0,
                    new = in(reg) tid.1,
                    first = in(reg) first,
                    last = in(reg) last,
                    link = in(reg) last + offset,
                    key = in(reg) key,
                    wt = const TID as u8,
                    hard = const HARD as u8,
                    t2 = out(reg) _,
                    t4 = out(reg) _,
                    st = out(reg) st,
                    options(nostack),
                );
            }
            status(st)
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
        {
            let _ = (cpu, head, tid, chain, offset, key);
            Err(Fail::WrongCpu)
        }
    }
}
