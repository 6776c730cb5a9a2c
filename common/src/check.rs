//! `Violation`: what a checker found, recorded without the heap so it can be taken while an
//! allocator lock is held and formatted only after the lock is released.
//!
//! Every `validate()` / `check_invariants()` in the workspace follows one pattern: walk and
//! compare under the lock that guards what is compared, record the first violation as a
//! [`Violation`] (a `&'static str` template and up to four numbers, `Copy`), release every
//! lock, and only then build the `String` the API returns (`to_string()` may allocate from the
//! allocator under check when it is the process's global allocator). The debug-build lock depth
//! of [`crate::sync`] turns a slip into an abort with a report.
//!
//! [`FixedLog`] is the same idea for callbacks that run under a lock (a debug-report hook):
//! a fixed array of `Copy` records filled there and read after.

use core::fmt;

/// One invariant violation: a message template whose `{}` placeholders take the numbers in
/// order (`{x}` prints one in hex), and an optional owner name (a cache), copied inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    what: &'static str,
    args: [usize; 4],
    nargs: u8,
    name: [u8; 32],
    name_len: u8,
    detail: &'static str,
}

impl Violation {
    /// `what` with its placeholders filled from `args` (at most four).
    pub fn new(what: &'static str, args: &[usize]) -> Self {
        let mut a = [0usize; 4];
        let n = args.len().min(4);
        a[..n].copy_from_slice(&args[..n]);
        Self {
            what,
            args: a,
            nargs: n as u8,
            name: [0; 32],
            name_len: 0,
            detail: "",
        }
    }

    /// The same violation, followed by `: detail` when shown (a reason chosen at run time from
    /// static texts).
    #[must_use]
    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.detail = detail;
        self
    }

    /// The same violation, prefixed with `name: ` when shown (truncated to 32 bytes).
    #[must_use]
    pub fn in_named(mut self, name: &str) -> Self {
        let mut take = name.len().min(self.name.len());
        while !name.is_char_boundary(take) {
            take -= 1;
        }
        self.name[..take].copy_from_slice(&name.as_bytes()[..take]);
        self.name_len = take as u8;
        self
    }

    /// The template (without its numbers): for tests that match on the kind of violation.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name_len > 0 {
            let name = core::str::from_utf8(&self.name[..self.name_len as usize]).unwrap_or("?");
            write!(f, "{name}: ")?;
        }
        let mut rest = self.what;
        let mut i = 0;
        while let Some(pos) = rest.find('{') {
            f.write_str(&rest[..pos])?;
            let tail = &rest[pos..];
            let (hex, skip) = if tail.starts_with("{x}") {
                (true, 3)
            } else if tail.starts_with("{}") {
                (false, 2)
            } else {
                f.write_str("{")?;
                rest = &tail[1..];
                continue;
            };
            match (i < self.nargs as usize, hex) {
                (true, true) => write!(f, "{:#x}", self.args[i])?,
                (true, false) => write!(f, "{}", self.args[i])?,
                (false, _) => f.write_str("?")?,
            }
            i += 1;
            rest = &tail[skip..];
        }
        f.write_str(rest)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

/// A heap-free log of up to `N` `Copy` records: [`FixedLog::push`] may run where no heap
/// allocation is allowed (under an allocator lock, e.g. in a debug-report callback); records
/// past `N` are counted, not kept. Read it with no lock held.
#[derive(Clone, Copy, Debug)]
pub struct FixedLog<T: Copy, const N: usize> {
    items: [Option<T>; N],
    seen: usize,
}

impl<T: Copy, const N: usize> FixedLog<T, N> {
    /// An empty log (usable in a `const` thread-local initialiser).
    pub const fn new() -> Self {
        Self {
            items: [None; N],
            seen: 0,
        }
    }

    /// Records `t` (counts it only, once `N` records are kept). Never allocates.
    pub fn push(&mut self, t: T) {
        if let Some(slot) = self.items.get_mut(self.seen) {
            *slot = Some(t);
        }
        self.seen += 1;
    }

    /// Records pushed since the last [`FixedLog::take`], kept or not.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// The kept records in order, emptying the log. Allocates: call with no lock held.
    ///
    /// # Panics
    /// If more than `N` records were pushed (some were lost).
    pub fn take(&mut self) -> Vec<T> {
        assert!(
            self.seen <= N,
            "{} records pushed, only {N} kept",
            self.seen
        );
        let out = self.items[..self.seen].iter().flatten().copied().collect();
        *self = Self::new();
        out
    }
}

impl<T: Copy, const N: usize> Default for FixedLog<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::FixedLog;

    #[test]
    fn fixed_log_keeps_n_and_counts_the_rest() {
        let mut l: FixedLog<u32, 3> = FixedLog::new();
        l.push(1);
        l.push(2);
        assert_eq!(l.seen(), 2);
        assert_eq!(l.take(), vec![1, 2]);
        assert_eq!(l.seen(), 0);
        for x in 0..4 {
            l.push(x);
        }
        assert_eq!(l.seen(), 4);
        let lost = std::panic::catch_unwind(move || l.take());
        assert!(
            lost.is_err(),
            "a log that dropped records must not pass as complete"
        );
    }

    use super::*;

    #[test]
    fn placeholders_take_numbers_in_order() {
        let v = Violation::new("node {}: block {x} order {}", &[1, 255, 3]);
        assert_eq!(v.to_string(), "node 1: block 0xff order 3");
        assert_eq!(
            Violation::new("a {} b {}", &[7])
                .in_named("kmalloc-64")
                .to_string(),
            "kmalloc-64: a 7 b ?"
        );
        assert_eq!(
            Violation::new("object {x}", &[16])
                .with_detail("not allocated")
                .to_string(),
            "object 0x10: not allocated"
        );
    }
}
