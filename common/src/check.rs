//! `Violation`: what a checker found, recorded without the heap so it can be taken while an
//! allocator lock is held and formatted only after the lock is released.
//!
//! Every `validate()` / `check_invariants()` in the workspace follows one pattern: walk and
//! compare under the lock that guards what is compared, record the first violation as a
//! [`Violation`] (a `&'static str` template and up to four numbers, `Copy`), release every
//! lock, and only then build the `String` the API returns (`to_string()` may allocate from the
//! allocator under check when it is the process's global allocator). The debug-build lock depth
//! of [`crate::sync`] turns a slip into an abort with a report.

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

#[cfg(test)]
mod tests {
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
