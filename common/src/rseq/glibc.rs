//! glibc's rseq registration, looked up once by `percpu::cpu_id` and by [`super::registration`]:
//! the thread pointer and the `__rseq_offset` / `__rseq_size` symbols (with `dlsym`, so the
//! binary does not need a glibc that exports them).

/// The thread pointer (`%fs:0` on x86-64: the TCB's self pointer).
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
#[inline(always)]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86-64 Linux the word at %fs:0 is the TCB's pointer to itself (glibc's
    // `tcbhead_t.tcb`); reading it has no side effects.
    unsafe {
        core::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
    }
    tp
}

/// glibc's `(__rseq_offset, __rseq_size)`: the offset of every glibc thread's rseq area from
/// its thread pointer, and the registered size (0: glibc did not register). `None` if this
/// glibc does not export them (before 2.35).
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
#[cold]
pub(crate) fn glibc_rseq() -> Option<(isize, u32)> {
    // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names only reads the symbol tables.
    let (off, size) = unsafe {
        (
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()),
            libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()),
        )
    };
    if off.is_null() || size.is_null() {
        return None;
    }
    // SAFETY: glibc defines __rseq_offset as a const ptrdiff_t and __rseq_size as a const
    // unsigned int; dlsym gave their addresses.
    Some(unsafe { (*off.cast::<isize>(), *size.cast::<u32>()) })
}
