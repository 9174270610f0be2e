//! The quantization plan of a network: every tensor's scale, zero point and
//! bits, and every weighted layer's weight bits. Both the fake-quantized
//! candle forward pass (QAT) and the exporter to `.releq` use this one plan,
//! so the exported integer model computes what QAT trained.
//!
//! Rules:
//! - tensor 0 (the input image, real values in `[0, 1]`) is 8-bit with scale
//!   1/255 and zero point -128 (code = pixel - 128);
//! - the output of weighted layer `j` has `abits[j]` bits over its calibrated
//!   range (after the fused activation), widened to contain 0;
//! - pooling and flatten keep their input's quantization (TFLite requires it);
//! - a residual add's output has the larger of its inputs' bits over its
//!   calibrated range;
//! - weights are symmetric per output channel over a clipping range chosen
//!   to minimise the squared quantization error of that channel's (batch-norm
//!   folded) float weights: [`weight_scale`].

use super::spec::{Op, Spec};
use releq_common::quant::{choose_act_params, weight_max, MAX_BITS, MIN_BITS};
use releq_common::TensorQuant;
use serde::{Deserialize, Serialize};

/// Every tensor's quantization and every weighted layer's weight bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantPlan {
    /// Weight bits per weighted layer, in order.
    pub wbits: Vec<u8>,
    /// Activation bits per weighted layer, in order.
    pub abits: Vec<u8>,
    /// Quantization of every tensor (0 = input).
    pub tensors: Vec<TensorQuant>,
}

/// Why a plan cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A bits list of the wrong length.
    #[error("--{flag} has {got} values but {model} has {want} weighted layers (give one value, or one per layer)")]
    BitsCount {
        /// Flag name.
        flag: &'static str,
        /// Values given.
        got: usize,
        /// Weighted layers.
        want: usize,
        /// Model name.
        model: String,
    },
    /// A bitwidth outside 2..=8.
    #[error("--{flag}: {bits} is outside {MIN_BITS}..={MAX_BITS}")]
    Bits {
        /// Flag name.
        flag: &'static str,
        /// Value.
        bits: u8,
    },
    /// Calibration ranges for the wrong number of tensors.
    #[error("calibration has {got} tensor ranges, the model has {want} tensors")]
    Ranges {
        /// Given.
        got: usize,
        /// Needed.
        want: usize,
    },
}

/// Expand a bits list (one value, or one per weighted layer) and check it.
pub fn expand_bits(flag: &'static str, bits: &[u8], spec: &Spec) -> Result<Vec<u8>, PlanError> {
    let want = spec.weighted().len();
    let v = match bits.len() {
        1 => vec![bits[0]; want],
        n if n == want => bits.to_vec(),
        got => return Err(PlanError::BitsCount { flag, got, want, model: spec.name.clone() }),
    };
    if let Some(&b) = v.iter().find(|b| !(MIN_BITS..=MAX_BITS).contains(*b)) {
        return Err(PlanError::Bits { flag, bits: b });
    }
    Ok(v)
}

/// The input tensor's fixed quantization.
pub const INPUT_QUANT: TensorQuant = TensorQuant { scale: 1.0 / 255.0, zero_point: -128, bits: 8 };

impl QuantPlan {
    /// Build a plan from calibrated `(min, max)` ranges of every tensor.
    pub fn new(spec: &Spec, ranges: &[(f32, f32)], wbits: &[u8], abits: &[u8]) -> Result<Self, PlanError> {
        let want = spec.ops.len() + 1;
        if ranges.len() != want {
            return Err(PlanError::Ranges { got: ranges.len(), want });
        }
        let wbits = expand_bits("wbits", wbits, spec)?;
        let abits = expand_bits("abits", abits, spec)?;
        let mut tensors = vec![INPUT_QUANT];
        let mut j = 0;
        for (i, op) in spec.ops.iter().enumerate() {
            let (lo, hi) = ranges[i + 1];
            let q = match *op {
                Op::Conv { .. } | Op::Dense { .. } => {
                    let bits = abits[j];
                    j += 1;
                    let (scale, zero_point) = choose_act_params(lo, hi, bits);
                    TensorQuant { scale, zero_point, bits }
                }
                Op::MaxPool { input, .. } | Op::AvgPool { input, .. } | Op::Flatten { input } => tensors[input],
                Op::Add { a, b, .. } => {
                    let bits = tensors[a].bits.max(tensors[b].bits);
                    let (scale, zero_point) = choose_act_params(lo, hi, bits);
                    TensorQuant { scale, zero_point, bits }
                }
            };
            tensors.push(q);
        }
        Ok(Self { wbits, abits, tensors })
    }
}

/// Clipping candidates of [`weight_scale`]: `max|w| * i / CLIP_STEPS`.
pub const CLIP_STEPS: u32 = 100;

/// Symmetric weight scale of one output channel's weights at `bits`.
///
/// Of the scales `c / (2^(b-1) - 1)` for clipping values
/// `c = max|w| * i / CLIP_STEPS`, this returns the one whose codes
/// `clamp(round(w / s))` reconstruct `w` with the least squared error: every
/// fifth `i` first, then the four either side of the best of those (the
/// error is smooth enough in `c`; the search is deterministic, and QAT and
/// the exporter both call this, so they agree on every scale). Ties keep the
/// larger clip, so plain max-abs scaling (`i = CLIP_STEPS`) wins when
/// clipping does not help. At 8 bits that is nearly always max-abs; at
/// 2 bits (codes -1, 0, 1) max-abs rounds most weights to 0, and the best
/// clip is typically well under half the maximum.
pub fn weight_scale(row: &[f32], bits: u8) -> f32 {
    let m = row.iter().fold(0f32, |m, w| m.max(w.abs()));
    if m == 0.0 {
        return 1e-12;
    }
    let qmax = weight_max(bits);
    let scale = |i: u32| (m * i as f32 / CLIP_STEPS as f32 / qmax as f32).max(1e-12);
    // Squared error at scale s; rounding half away from zero on |w| / s
    // (the cast truncates a non-negative value).
    let err = |s: f32| -> f32 {
        let inv = 1.0 / s;
        row.iter()
            .map(|&w| {
                let q = ((w.abs() * inv + 0.5) as i32).min(qmax) as f32;
                let d = w.abs() - s * q;
                d * d
            })
            .sum()
    };
    let mut best = (f32::INFINITY, CLIP_STEPS);
    let consider = |i: u32, best: &mut (f32, u32)| {
        let e = err(scale(i));
        if e < best.0 || (e == best.0 && i > best.1) {
            *best = (e, i);
        }
    };
    for i in (1..=CLIP_STEPS / 5).rev().map(|k| k * 5) {
        consider(i, &mut best);
    }
    let centre = best.1;
    for i in centre.saturating_sub(4).max(1)..=(centre + 4).min(CLIP_STEPS) {
        consider(i, &mut best);
    }
    scale(best.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Squared error of quantizing `row` at scale `s` (exporter's rounding).
    fn sq_err(row: &[f32], s: f32, bits: u8) -> f32 {
        let q = weight_max(bits) as f32;
        row.iter().map(|&w| (w - s * (w / s).round().clamp(-q, q)).powi(2)).sum()
    }

    #[test]
    fn weight_scale_is_near_the_best_clip_and_never_worse_than_max_abs() {
        let mut rng = StdRng::seed_from_u64(1);
        for trial in 0..20 {
            // Bell-shaped weights (sum of uniforms) with an outlier or two.
            let mut row: Vec<f32> = (0..200).map(|_| (0..4).map(|_| rng.gen_range(-0.1f32..0.1)).sum()).collect();
            row[trial] = 0.6;
            for bits in [2u8, 3, 4, 8] {
                let m = row.iter().fold(0f32, |m, w| m.max(w.abs()));
                let q = weight_max(bits) as f32;
                let s = weight_scale(&row, bits);
                let best =
                    (1..=CLIP_STEPS).map(|i| sq_err(&row, m * i as f32 / 100.0 / q, bits)).fold(f32::MAX, f32::min);
                let got = sq_err(&row, s, bits);
                assert!(got <= sq_err(&row, m / q, bits) * 1.000_01, "bits {bits}: worse than max-abs");
                assert!(got <= best * 1.02, "bits {bits}: {got} vs best {best}");
                if bits == 2 {
                    assert!(s < 0.5 * m, "2-bit clip should be well under the maximum: {s} vs {m}");
                }
            }
        }
        assert_eq!(weight_scale(&[0.0; 4], 4), 1e-12);
        // A row of equal magnitudes is exact at max-abs.
        assert_eq!(weight_scale(&[0.5, -0.5, 0.5], 2), 0.5);
    }
}
