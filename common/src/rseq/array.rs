//! The array-stack primitives (SLAB's `array_cache`): `array_pop` / `array_push`.

use super::{status, ArrayLayout, Fail, RseqThread};

impl RseqThread {
    /// On `cpu`, over an array stack reached through `*array` (SLAB's `array_cache`: a u32
    /// `avail` at offset 0, a u32 `limit` at offset 4, a u32 `touched` at `layout.touched`,
    /// pointer entries from `layout.entries`): if `*busy == 0` and `avail > 0`, reads
    /// `entry[avail - 1]`, stores `touched = 1` (speculatively) and commits `avail - 1`.
    /// The array pointer is loaded inside the section, so a slow path that swaps the array
    /// (after marking `busy` and fencing) is never raced by a sequence holding the old one.
    ///
    /// # Errors
    /// [`Fail::WrongCpu`], [`Fail::Mismatch`] (`busy` set), [`Fail::Empty`], [`Fail::Aborted`].
    ///
    /// # Safety
    /// `*array` is a valid array of that layout whenever `*busy == 0`, written only by
    /// sequences on `cpu` and by code that marked `busy` (inside a commit on `cpu`, or with a
    /// store followed by [`fence_cpu`](super::fence_cpu)).
    #[inline(always)]
    pub unsafe fn array_pop(
        &self,
        cpu: usize,
        busy: &core::sync::atomic::AtomicUsize,
        array: *const *mut u8,
        layout: ArrayLayout,
    ) -> Result<usize, Fail> {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
        {
            let st: u32;
            let obj: usize;
            // SAFETY: `area` is this thread's registered area. The section checks cpu_id ==
            // cpu, then busy == 0 (else the array may be under a slow path); per the contract
            // the array read through `*array` is then valid and only sequences on `cpu` write
            // it, and those never interleave with this one. Loads, one speculative store of
            // `touched` (harmless if aborted: it only delays a reap), and the committing store
            // of `avail` as the last instruction before label 5.
            unsafe {
                core::arch::asm!(
                    rseq_prologue!("{area}", "{t}"),
                    "4:",
                    "mov {st:e}, 1",
                    "cmp dword ptr [{area} + 4], {cpu:e}",
                    "jne 7f",
                    "mov {st:e}, 2",
                    "cmp qword ptr [{busy}], 0",
                    "jne 7f",
                    "mov {st:e}, 3",
                    "mov {t}, qword ptr [{arr}]",
                    "mov {n:e}, dword ptr [{t}]",
                    "test {n:e}, {n:e}",
                    "jz 7f",
                    "sub {n:e}, 1",
                    "lea {obj}, [{t} + {ent}]",
                    "mov {obj}, qword ptr [{obj} + {n} * 8]",
                    "mov dword ptr [{t} + {tch}], 1",
                    "mov dword ptr [{t}], {n:e}",
                    "5:",
                    "xor {st:e}, {st:e}",
                    "jmp 7f",
                    rseq_epilogue!("{st:e}"),
                    area = in(reg) self.area,
                    cpu = in(reg) cpu,
                    busy = in(reg) busy.as_ptr(),
                    arr = in(reg) array,
                    ent = in(reg) layout.entries,
                    tch = in(reg) layout.touched,
                    t = out(reg) _,
                    n = out(reg) _,
                    obj = out(reg) obj,
                    st = out(reg) st,
                    options(nostack),
                );
            }
            status(st).map(|()| obj)
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
        {
            let _ = (cpu, busy, array, layout);
            Err(Fail::WrongCpu)
        }
    }

    /// On `cpu`, over an array stack as [`Self::array_pop`]: if `*busy == 0`,
    /// `avail < limit` and `obj` is not already `entry[avail - 1]`, stores
    /// `entry[avail] = obj` (speculatively) and commits `avail + 1`.
    ///
    /// # Errors
    /// [`Fail::WrongCpu`], [`Fail::Mismatch`] (`busy` set, or the array is full),
    /// [`Fail::DoubleFree`] (`obj` is the top entry), [`Fail::Aborted`].
    ///
    /// # Safety
    /// As [`Self::array_pop`]; `obj` is the caller's to give away.
    #[inline(always)]
    pub unsafe fn array_push(
        &self,
        cpu: usize,
        busy: &core::sync::atomic::AtomicUsize,
        array: *const *mut u8,
        layout: ArrayLayout,
        obj: usize,
    ) -> Result<(), Fail> {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
        {
            let st: u32;
            // SAFETY: as array_pop for the area, cpu check, busy check and array. The store of
            // `entry[avail]` is speculative: the slot above `avail` is not part of the stack,
            // so if aborted nobody has seen it (a later push overwrites it). The committing
            // store of `avail + 1` is the last instruction before label 5.
            unsafe {
                core::arch::asm!(
                    rseq_prologue!("{area}", "{t}"),
                    "4:",
                    "mov {st:e}, 1",
                    "cmp dword ptr [{area} + 4], {cpu:e}",
                    "jne 7f",
                    "mov {st:e}, 2",
                    "cmp qword ptr [{busy}], 0",
                    "jne 7f",
                    "mov {t}, qword ptr [{arr}]",
                    "mov {n:e}, dword ptr [{t}]",
                    "cmp {n:e}, dword ptr [{t} + 4]",
                    "jae 7f",
                    "lea {e}, [{t} + {ent}]",
                    "test {n:e}, {n:e}",
                    "jz 8f",
                    "mov {st:e}, 5",
                    "cmp qword ptr [{e} + {n} * 8 - 8], {obj}",
                    "je 7f",
                    "8:",
                    "mov qword ptr [{e} + {n} * 8], {obj}",
                    "add {n:e}, 1",
                    "mov dword ptr [{t}], {n:e}",
                    "5:",
                    "xor {st:e}, {st:e}",
                    "jmp 7f",
                    rseq_epilogue!("{st:e}"),
                    area = in(reg) self.area,
                    cpu = in(reg) cpu,
                    busy = in(reg) busy.as_ptr(),
                    arr = in(reg) array,
                    ent = in(reg) layout.entries,
                    obj = in(reg) obj,
                    t = out(reg) _,
                    n = out(reg) _,
                    e = out(reg) _,
                    st = out(reg) st,
                    options(nostack),
                );
            }
            status(st)
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
        {
            let _ = (cpu, busy, array, layout, obj);
            Err(Fail::WrongCpu)
        }
    }
}
