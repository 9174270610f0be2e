//! Requantisation prepared once per output channel, for the fast kernels.
//!
//! Computes exactly [`crate::quant::multiply_by_quantized_multiplier`] (the
//! TFLite double rounding) with fewer instructions, relying on what the
//! validator guarantees: the multiplier is in `0..=i32::MAX` (never
//! `i32::MIN`, so the high multiply never saturates) and the shift in
//! `-31..=30`.
//!
//! Why the high multiply is one rounding shift: the reference computes
//! `trunc((ab + nudge) / 2^31)` with `nudge = 2^30` for `ab >= 0` and
//! `1 - 2^30` otherwise. For `ab >= 0` that is `(ab + 2^30) >> 31`. For
//! `ab < 0` the numerator `n = ab + 1 - 2^30` is negative, truncation is the
//! ceiling, and `ceil(n / 2^31) = floor((n + 2^31 - 1) / 2^31) =
//! (ab + 2^30) >> 31`: the same expression. The rounding divide keeps the
//! reference's mask-and-threshold form, with the mask and half computed once.

use crate::quant::QuantizedMultiplier;

/// One channel's requantisation, ready to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requant {
    m: i32,
    left: u32,
    right: u32,
    mask: i32,
    half: i32,
}

impl Requant {
    /// Prepare `q` (a validated multiplier: `q.multiplier >= 0`).
    #[inline]
    pub fn new(q: QuantizedMultiplier) -> Self {
        let shift = q.shift as i32;
        let left = shift.clamp(0, 31) as u32;
        let right = (-shift).clamp(0, 31) as u32;
        let mask = ((1i64 << right) - 1) as i32;
        Self { m: q.multiplier, left, right, mask, half: mask >> 1 }
    }

    /// `multiply_by_quantized_multiplier(x, m, shift)`, bit for bit.
    #[inline(always)]
    pub fn apply(&self, x: i32) -> i32 {
        let x =
            if self.left > 0 { ((x as i64) << self.left).clamp(i32::MIN as i64, i32::MAX as i64) as i32 } else { x };
        let y = ((x as i64 * self.m as i64 + (1i64 << 30)) >> 31) as i32;
        let rem = y & self.mask;
        let threshold = self.half + (y < 0) as i32;
        (y >> self.right) + (rem > threshold) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::multiply_by_quantized_multiplier;
    use proptest::prelude::*;

    fn same(x: i32, m: i32, shift: i8) {
        let r = Requant::new(QuantizedMultiplier { multiplier: m, shift });
        assert_eq!(r.apply(x), multiply_by_quantized_multiplier(x, m, shift as i32), "x={x} m={m} shift={shift}");
    }

    #[test]
    fn edges() {
        let xs = [0, 1, -1, 2, -2, i32::MAX, i32::MIN, i32::MIN + 1, 1 << 30, -(1 << 30), 12345, -12345];
        let ms = [0, 1, 1 << 30, (1 << 30) + 1, i32::MAX, i32::MAX - 1, 1_500_000_000];
        for &x in &xs {
            for &m in &ms {
                for shift in -31..=30 {
                    same(x, m, shift);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn matches_reference(x in any::<i32>(), m in 0..=i32::MAX, shift in -31i8..=30) {
            same(x, m, shift);
        }
        #[test]
        fn matches_reference_small(x in -300_000i32..300_000, m in (1i32 << 30)..=i32::MAX, shift in -20i8..=2) {
            same(x, m, shift);
        }
    }
}
