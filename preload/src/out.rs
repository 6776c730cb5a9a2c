//! Formatted output without the heap: a fixed buffer flushed with `write(2)`.

use core::fmt;

/// File descriptor of stderr.
pub const STDERR: i32 = 2;

/// A `fmt::Write` over a file descriptor with a 4 KiB stack buffer.
pub struct FdWriter {
    fd: i32,
    buf: [u8; 4096],
    len: usize,
}

impl FdWriter {
    /// A writer to `fd` (not closed on drop).
    pub const fn new(fd: i32) -> Self {
        Self {
            fd,
            buf: [0; 4096],
            len: 0,
        }
    }

    /// Appends raw bytes.
    pub fn write_bytes(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.len == self.buf.len() {
                self.flush();
            }
            let n = b.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&b[..n]);
            self.len += n;
            b = &b[n..];
        }
    }

    /// Writes out what is buffered (retrying short writes and EINTR).
    pub fn flush(&mut self) {
        let mut off = 0;
        while off < self.len {
            // SAFETY: the range is inside buf.
            let r =
                unsafe { libc::write(self.fd, self.buf[off..].as_ptr().cast(), self.len - off) };
            if r < 0 {
                // SAFETY: errno is thread-local and always readable.
                if unsafe { *libc::__errno_location() } == libc::EINTR {
                    continue;
                }
                break;
            }
            if r == 0 {
                break;
            }
            off += r as usize;
        }
        self.len = 0;
    }
}

impl fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

impl Drop for FdWriter {
    fn drop(&mut self) {
        self.flush();
    }
}
