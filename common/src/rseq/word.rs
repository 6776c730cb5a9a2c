//! The one-word primitive: `cmpeq_store` (`this_cpu_cmpxchg`).

use super::{status, Fail, RseqThread};

impl RseqThread {
    /// On `cpu`: if `*word == expected`, store `new` (the commit). `this_cpu_cmpxchg` without a
    /// lock prefix.
    ///
    /// # Errors
    /// [`Fail::WrongCpu`], [`Fail::Mismatch`], [`Fail::Aborted`].
    #[inline(always)]
    pub fn cmpeq_store(
        &self,
        cpu: usize,
        word: &core::sync::atomic::AtomicUsize,
        expected: usize,
        new: usize,
    ) -> Result<(), Fail> {
        #[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
        {
            let st: u32;
            // SAFETY: `area` is this thread's registered rseq area (its rseq_cs field at offset
            // 8 is ours to write). `word` is a live AtomicUsize, so reading and writing its 8
            // bytes is allowed (interior mutability). The section compares cpu_id with `cpu`
            // first, so the single committing store `mov [word], new` happens on `cpu` with no
            // other user code run on that CPU since the compare of `*word` (else the kernel
            // moved us to label 6). Only the listed registers are written; flags are clobbered.
            unsafe {
                core::arch::asm!(
                    rseq_prologue!("{area}", "{t}"),
                    "4:",
                    "mov {st:e}, 1",
                    "cmp dword ptr [{area} + 4], {cpu:e}",
                    "jne 7f",
                    "mov {st:e}, 2",
                    "cmp qword ptr [{word}], {exp}",
                    "jne 7f",
                    "mov qword ptr [{word}], {new}",
                    "5:",
                    "xor {st:e}, {st:e}",
                    "jmp 7f",
                    rseq_epilogue!("{st:e}"),
                    area = in(reg) self.area,
                    cpu = in(reg) cpu,
                    word = in(reg) word.as_ptr(),
                    exp = in(reg) expected,
                    new = in(reg) new,
                    t = out(reg) _,
                    st = out(reg) st,
                    options(nostack),
                );
            }
            status(st)
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(miri))))]
        {
            let _ = (cpu, word, expected, new);
            Err(Fail::WrongCpu)
        }
    }
}
