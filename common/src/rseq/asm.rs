//! The `asm!` text every critical section shares (used by `word`, `list` and `array`).
//!
//! # The critical sections
//! Each primitive is one `asm!` block laid out as librseq and tcmalloc do on x86-64: the 32-byte
//! `struct rseq_cs {version, flags, start_ip, post_commit_offset, abort_ip}` in section
//! `__rseq_cs` (writable: the linker fills in the addresses), a pointer to it in
//! `__rseq_cs_ptr_array`, and the abort handler in `__rseq_failure` preceded by the signature
//! bytes `0f b9 3d 53 30 05 53` (`ud1 0x53053053(%rip), %edi`: the kernel checks the 4 bytes
//! before `abort_ip` equal the registered signature [`RSEQ_SIG`](super::RSEQ_SIG), and the instruction traps if
//! ever executed). The abort handler returns [`Fail::Aborted`](super::Fail::Aborted); the Rust caller counts it
//! ([`abort_count`](super::abort_count)) and retries. Nothing is retried inside the asm.
//!
//! Two stores cannot be one commit. The `{head, tid}` pair operations store the new tid first
//! (a *speculative* store inside the section) and commit by storing the head. If aborted between
//! the two, the tid has moved on with the head unchanged: a spurious event, which makes
//! concurrent compares against the old tid fail but loses nothing. Pushes also write the pushed
//! object's link word speculatively: the object is still the caller's until the commit.

/// The string pieces every critical section shares: descriptor, pointer array entry, and the
/// store of the descriptor into `area.rseq_cs`. Labels: 3 = descriptor, 4 = start_ip,
/// 5 = post_commit_ip, 6 = abort_ip, 7 = exit. (Label 1 is avoided: `binary_asm_labels`.)
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
macro_rules! rseq_prologue {
    ($area:literal, $scratch:literal) => {
        concat!(
            ".pushsection __rseq_cs, \"aw\"\n",
            ".balign 32\n",
            "3:\n",
            ".long 0, 0\n",
            ".quad 4f, (5f - 4f), 6f\n",
            ".popsection\n",
            ".pushsection __rseq_cs_ptr_array, \"aw\"\n",
            ".quad 3b\n",
            ".popsection\n",
            "lea ",
            $scratch,
            ", [rip + 3b]\n",
            "mov qword ptr [",
            $area,
            " + 8], ",
            $scratch,
            "\n",
        )
    };
}

/// The abort handler (in `__rseq_failure`, after the signature) and the exit label.
#[cfg(all(target_arch = "x86_64", target_os = "linux", not(miri)))]
macro_rules! rseq_epilogue {
    ($st:literal) => {
        concat!(
            ".pushsection __rseq_failure, \"ax\"\n",
            ".byte 0x0f, 0xb9, 0x3d\n",
            ".long 0x53053053\n",
            "6:\n",
            "mov ",
            $st,
            ", 4\n",
            "jmp 7f\n",
            ".popsection\n",
            "7:\n",
        )
    };
}
