//! Exact-division tests by a run-time constant, for the object-start check of checked frees
//! (a user-space addition: the kernel trusts `kmem_cache_free`'s pointer unless debugging).

/// An exact-division test by a constant `d` (Granlund–Montgomery): `x % d == 0` iff
/// `(x * inv).rotate_right(shift) <= limit`, with `d = m << shift`, `m` odd, `inv` its inverse
/// modulo 2^32 and `limit = u32::MAX / d`. Three instructions, no division: the object-start
/// check of every checked free (both allocators). 32 bits wide (12 bytes, so it fits in a
/// cache's first cache line): offsets inside one slab (at most 4 MiB) are what it tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExactDiv {
    inv: u32,
    shift: u32,
    limit: u32,
}

impl ExactDiv {
    /// The test for divisor `d` (> 0).
    pub const fn new(d: u32) -> Self {
        assert!(d > 0, "ExactDiv of 0");
        let shift = d.trailing_zeros();
        let m = d >> shift;
        // Newton's iteration doubles the correct low bits each step: 3 -> 6 -> ... -> 48.
        let mut inv = m;
        let mut i = 0;
        while i < 5 {
            inv = inv.wrapping_mul(2u32.wrapping_sub(m.wrapping_mul(inv)));
            i += 1;
        }
        ExactDiv {
            inv,
            shift,
            limit: u32::MAX / d,
        }
    }

    /// Whether `x` is a multiple of the divisor.
    #[inline(always)]
    pub const fn divides(self, x: u32) -> bool {
        x.wrapping_mul(self.inv).rotate_right(self.shift) <= self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::ExactDiv;

    #[test]
    fn exact_div_agrees_with_remainder() {
        for d in [
            1u32,
            8,
            24,
            64,
            96,
            192,
            200,
            700,
            1000,
            4096,
            8192,
            12345,
            4 << 20,
        ] {
            let t = ExactDiv::new(d);
            for x in (0..4 * d.min(100_000) + 3).chain([u32::MAX - 7, u32::MAX, 1 << 30]) {
                assert_eq!(t.divides(x), x % d == 0, "d {d} x {x}");
            }
        }
    }
}
