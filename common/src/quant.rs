//! Integer-only quantization arithmetic: the contract between host and device.
//!
//! Every function here is bit-exact and platform independent; the host's
//! accuracy oracle and the firmware call the same code, so their outputs agree
//! to the bit. The rules follow TFLite / gemmlowp ("double rounding"):
//!
//! # Tensors
//! - An activation tensor with `b` bits (2..=8) holds signed values in
//!   `[-2^(b-1), 2^(b-1) - 1]`, one `i8` per value in RAM. A real value is
//!   `scale * (q - zero_point)`, `zero_point` in the same range.
//! - Weights with `b` bits (2..=8) are symmetric per output channel, values in
//!   `[-(2^(b-1) - 1), 2^(b-1) - 1]` (the most negative code is never used, as
//!   TFLite's int8 weights), zero point 0: `w_real = w_scale[c] * q`.
//! - Bias is `i32` in units of `in_scale * w_scale[c]`, zero point 0.
//!
//! # Accumulate and requantize
//! `acc = bias[c] + sum((x - in_zp) * w)` in `i32` (wrapping never happens on a
//! validated model: the validator bounds `K * 255 * 127 + |bias|`).
//! `out = clamp(multiply_by_quantized_multiplier(acc, m[c], shift[c]) + out_zp)`
//! (the zero point is added with saturation)
//! where the real multiplier `in_scale * w_scale[c] / out_scale = m * 2^(shift - 31)`
//! with `m` in `[2^30, 2^31)` (or 0).
//!
//! [`multiply_by_quantized_multiplier`] is, exactly:
//! 1. `left = max(shift, 0)`, `right = max(-shift, 0)`;
//! 2. `x' = x * 2^left`, **saturating** to `i32` (C's version is undefined on
//!    overflow; we saturate and say so);
//! 3. `y = saturating_rounding_doubling_high_mul(x', m)`: `2 * x' * m / 2^32`
//!    computed in `i64` as `(x' * m + nudge) / 2^31` with C's truncating
//!    division and `nudge = 2^30` if `x' * m >= 0` else `1 - 2^30`, which
//!    rounds to nearest with ties toward +infinity (1.5 -> 2, -1.5 -> -1);
//!    the single overflow case `i32::MIN * i32::MIN` saturates to `i32::MAX`;
//! 4. `rounding_divide_by_pot(y, right)`: arithmetic shift right, rounding to
//!    nearest, ties away from zero.
//!
//! The final clamp is to `[max(qmin, clamp.min), min(qmax, clamp.max)]` where
//! the layer's clamp carries a fused ReLU / ReLU6.
//!
//! # Average pooling
//! `round(sum / n)` with ties away from zero (TFLite's reference rule).
//!
//! # Residual add (TFLite int8 `Add`)
//! Both inputs are brought to a common scale with a left shift of
//! [`ADD_LEFT_SHIFT`] = 20: `a = mbqm((x1 - zp1) << 20, m1, s1)`,
//! `b = mbqm((x2 - zp2) << 20, m2, s2)`, `out = mbqm(a + b, mo, so) + out_zp`,
//! then the clamp. The multipliers come from [`add_params`].

use serde::{Deserialize, Serialize};

/// Left shift applied to both inputs of a residual add (TFLite's value).
pub const ADD_LEFT_SHIFT: i32 = 20;

/// Smallest and largest bitwidth a weight or activation may have.
pub const MIN_BITS: u8 = 2;
/// See [`MIN_BITS`].
pub const MAX_BITS: u8 = 8;

/// Lowest code of a `bits`-bit activation: `-2^(bits-1)`.
#[inline]
pub const fn act_min(bits: u8) -> i32 {
    -(1 << (bits - 1))
}

/// Highest code of a `bits`-bit activation or weight: `2^(bits-1) - 1`.
#[inline]
pub const fn act_max(bits: u8) -> i32 {
    (1 << (bits - 1)) - 1
}

/// Largest magnitude of a `bits`-bit symmetric weight: `2^(bits-1) - 1`.
#[inline]
pub const fn weight_max(bits: u8) -> i32 {
    (1 << (bits - 1)) - 1
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Division truncates toward zero, as in C.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent`, rounding to nearest,
/// ties away from zero. `exponent` is clamped to `0..=31`.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let exponent = exponent.clamp(0, 31);
    let mask: i32 = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding), with a
/// saturating left shift. See the module doc for the exact rule.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, 31);
    let right = (-shift).clamp(0, 31);
    let shifted = (x as i64) << left;
    let shifted = shifted.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)
}

/// A fixed-point multiplier: real value `multiplier * 2^(shift - 31)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantizedMultiplier {
    /// Q31 mantissa in `[2^30, 2^31)`, or 0 for a zero multiplier.
    pub multiplier: i32,
    /// Power-of-two exponent, in `-31..=30`.
    pub shift: i8,
}

impl QuantizedMultiplier {
    /// Apply to an accumulator: [`multiply_by_quantized_multiplier`].
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        multiply_by_quantized_multiplier(x, self.multiplier, self.shift as i32)
    }
}

/// TFLite's `QuantizeMultiplier`: the (multiplier, shift) pair closest to a
/// positive real number. Zero, negative or non-finite input gives a zero
/// multiplier; too large a value saturates to the largest representable one.
pub fn quantize_multiplier(real: f64) -> QuantizedMultiplier {
    if real.is_nan() || real <= 0.0 || !real.is_finite() {
        return QuantizedMultiplier { multiplier: 0, shift: 0 };
    }
    let (mantissa, mut shift) = libm::frexp(real); // real = mantissa * 2^shift, mantissa in [0.5, 1)
    let mut q = libm::round(mantissa * (1i64 << 31) as f64) as i64;
    if q == 1i64 << 31 {
        q /= 2;
        shift += 1;
    }
    if shift < -31 {
        return QuantizedMultiplier { multiplier: 0, shift: 0 };
    }
    if shift > 30 {
        return QuantizedMultiplier { multiplier: i32::MAX, shift: 30 };
    }
    QuantizedMultiplier { multiplier: q as i32, shift: shift as i8 }
}

/// The three multipliers of a residual add, as TFLite computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddParams {
    /// Rescales the first input.
    pub in1: QuantizedMultiplier,
    /// Rescales the second input.
    pub in2: QuantizedMultiplier,
    /// Rescales the sum to the output.
    pub out: QuantizedMultiplier,
}

/// Multipliers for `out = in1 + in2` with the given scales.
pub fn add_params(scale1: f32, scale2: f32, out_scale: f32) -> AddParams {
    let twice_max = 2.0 * f64::max(scale1 as f64, scale2 as f64);
    AddParams {
        in1: quantize_multiplier(scale1 as f64 / twice_max),
        in2: quantize_multiplier(scale2 as f64 / twice_max),
        out: quantize_multiplier(twice_max / ((1i64 << ADD_LEFT_SHIFT) as f64 * out_scale as f64)),
    }
}

/// Integer residual add of one element (see the module doc).
#[inline]
pub fn add_element(x1: i32, zp1: i32, x2: i32, zp2: i32, p: &AddParams, out_zp: i32) -> i32 {
    let a = p.in1.apply((x1 - zp1) << ADD_LEFT_SHIFT);
    let b = p.in2.apply((x2 - zp2) << ADD_LEFT_SHIFT);
    p.out.apply(a.saturating_add(b)).saturating_add(out_zp)
}

/// `round(sum / count)`, ties away from zero (TFLite's average pool rule).
/// `count` must be positive.
#[inline]
pub fn rounded_average(sum: i32, count: i32) -> i32 {
    if sum >= 0 {
        (sum + count / 2) / count
    } else {
        (sum - count / 2) / count
    }
}

/// Quantize a real value to a `bits`-bit activation code (host side helper):
/// `clamp(round(x / scale) + zero_point)`, ties away from zero.
pub fn quantize_act(x: f32, scale: f32, zero_point: i32, bits: u8) -> i8 {
    let q = libm::roundf(x / scale) as i64 + zero_point as i64;
    q.clamp(act_min(bits) as i64, act_max(bits) as i64) as i8
}

/// Scale and zero point that map the real range `[min, max]` (widened to
/// contain 0) onto `bits`-bit activation codes, TFLite style.
pub fn choose_act_params(min: f32, max: f32, bits: u8) -> (f32, i32) {
    let min = min.min(0.0);
    let max = max.max(0.0);
    let qmin = act_min(bits) as f32;
    let qmax = act_max(bits) as f32;
    if max - min <= f32::EPSILON {
        return (1.0, 0);
    }
    let scale = (max - min) / (qmax - qmin);
    let zp = libm::roundf(qmin - min / scale) as i32;
    (scale, zp.clamp(act_min(bits), act_max(bits)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srdhm_matches_gemmlowp_examples() {
        // Values worked by hand from gemmlowp's definition.
        assert_eq!(saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 30, 1 << 30), 1 << 29);
        assert_eq!(saturating_rounding_doubling_high_mul(3, 1 << 30), 2); // 1.5 -> 2
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1); // -1.5 -> -1 (tie toward +inf)
        assert_eq!(saturating_rounding_doubling_high_mul(-5, 1 << 30), -2); // -2.5 -> -2
        assert_eq!(saturating_rounding_doubling_high_mul(-7, 1 << 29), -2); // -1.75 -> -2
        assert_eq!(saturating_rounding_doubling_high_mul(1, 1 << 30), 1); // 0.5 -> 1
        assert_eq!(saturating_rounding_doubling_high_mul(-1, 1 << 30), 0); // -0.5 -> 0
    }

    #[test]
    fn rounding_divide_ties_away_from_zero() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(-5, 2), -1);
        assert_eq!(rounding_divide_by_pot(i32::MAX, 31), 1);
        assert_eq!(rounding_divide_by_pot(i32::MIN, 31), -1);
        assert_eq!(rounding_divide_by_pot(123, 0), 123);
    }

    #[test]
    fn quantize_multiplier_round_trips() {
        for &real in &[0.5, 0.25, 0.001234, 0.99999, 1.0, 3.75, 1e-9, 0.0072] {
            let q = quantize_multiplier(real);
            let back = q.multiplier as f64 * 2f64.powi(q.shift as i32 - 31);
            assert!((back - real).abs() <= real * 1e-9, "{real} -> {q:?} -> {back}");
            assert!(q.multiplier >= 1 << 30);
        }
        assert_eq!(quantize_multiplier(0.0).multiplier, 0);
        assert_eq!(quantize_multiplier(-1.0).multiplier, 0);
        assert_eq!(quantize_multiplier(f64::NAN).multiplier, 0);
        assert_eq!(quantize_multiplier(1e-12), QuantizedMultiplier { multiplier: 0, shift: 0 });
        assert_eq!(quantize_multiplier(1e12).shift, 30);
        // Exactly 0.5: mantissa 0.5 -> 2^30, shift 0.
        assert_eq!(quantize_multiplier(0.5), QuantizedMultiplier { multiplier: 1 << 30, shift: 0 });
    }

    #[test]
    fn mbqm_approximates_real_product() {
        // For every multiplier and many accumulators the integer result is the
        // correctly rounded product, within one unit.
        for &real in &[0.0007, 0.013, 0.25, 0.9, 1.7, 5.0] {
            let q = quantize_multiplier(real);
            for x in (-100_000..100_000).step_by(997) {
                let got = q.apply(x);
                let want = (x as f64 * real).round() as i32;
                assert!((got - want).abs() <= 1, "x={x} real={real}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn mbqm_pinned() {
        // Pinned by hand: 1000 * 0.5 = 500; -1001 * 0.25 = -250.25 -> -250;
        // 3 * 0.5 = 1.5 -> 2; -3 * 0.5 = -1.5 -> -1 (the high multiply's tie
        // goes up); -3 * 0.25: 0.25 is 2^30 with shift -1, so SRDHM(-3) = -1,
        // then rounding_divide_by_pot(-1, 1) = -0.5 -> -1 (ties away from zero).
        let half = quantize_multiplier(0.5);
        let quarter = quantize_multiplier(0.25);
        assert_eq!(half.apply(1000), 500);
        assert_eq!(quarter.apply(-1001), -250);
        assert_eq!(half.apply(3), 2);
        assert_eq!(half.apply(-3), -1);
        assert_eq!(quarter.apply(-3), -1);
        // Double rounding: 5 * 0.25 = 1.25, but SRDHM(5, 2^30) = 2.5 -> 3,
        // then 3 / 2 = 1.5 -> 2. This is gemmlowp's documented behaviour.
        assert_eq!(quarter.apply(5), 2);
        // Saturating left shift: 4.0 is 2^30 (0.5) with shift 3; (2^30 - 1) * 8
        // saturates to i32::MAX before the high multiply halves it.
        let big = quantize_multiplier(4.0);
        assert_eq!(big, QuantizedMultiplier { multiplier: 1 << 30, shift: 3 });
        assert_eq!(big.apply(i32::MAX / 2), 1 << 30);
        assert_eq!(big.apply(-1000), -4000);
    }

    #[test]
    fn rounded_average_ties_away() {
        assert_eq!(rounded_average(5, 2), 3);
        assert_eq!(rounded_average(-5, 2), -3);
        assert_eq!(rounded_average(4, 4), 1);
        assert_eq!(rounded_average(-1, 4), 0);
        assert_eq!(rounded_average(-2, 4), -1);
    }

    #[test]
    fn add_matches_float() {
        let (s1, s2, so) = (0.05f32, 0.11f32, 0.13f32);
        let p = add_params(s1, s2, so);
        for x1 in -128..128 {
            for x2 in (-128..128).step_by(7) {
                let got = add_element(x1, 3, x2, -10, &p, 5);
                let want = ((s1 * (x1 - 3) as f32 + s2 * (x2 + 10) as f32) / so).round() as i32 + 5;
                assert!((got - want).abs() <= 1, "{x1} {x2}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn act_params_cover_range() {
        for bits in MIN_BITS..=MAX_BITS {
            let (s, zp) = choose_act_params(0.0, 6.0, bits);
            assert_eq!(zp, act_min(bits));
            assert_eq!(quantize_act(0.0, s, zp, bits) as i32, act_min(bits));
            assert_eq!(quantize_act(6.0, s, zp, bits) as i32, act_max(bits));
            let (s, zp) = choose_act_params(-1.0, 1.0, bits);
            assert!(zp >= act_min(bits) && zp <= act_max(bits));
            assert_eq!(quantize_act(100.0, s, zp, bits) as i32, act_max(bits));
        }
    }
}
