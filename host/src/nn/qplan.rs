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

/// Clipping candidates tried by [`weight_scale`]: `max|w| * i / CLIP_STEPS`
/// for `i` in `1..=CLIP_STEPS`.
pub const CLIP_STEPS: u32 = 100;

/// Symmetric weight scale of one output channel's weights at `bits`.
///
/// Of the scales `c / (2^(b-1) - 1)` for clipping values
/// `c = max|w| * i / CLIP_STEPS`, this returns the one whose codes
/// `clamp(round(w / s))` reconstruct `w` with the least squared error (the
/// largest `c` on ties, so `i = CLIP_STEPS`, plain max-abs scaling, wins
/// when clipping does not help). At 8 bits that is nearly always max-abs; at
/// 2 bits (codes -1, 0, 1) max-abs rounds most weights to 0, and the best
/// clip is typically well under half the maximum. QAT and the exporter both
/// call this, so they agree on every scale.
pub fn weight_scale(row: &[f32], bits: u8) -> f32 {
    let m = row.iter().fold(0f32, |m, w| m.max(w.abs()));
    let qmax = weight_max(bits) as f32;
    if m == 0.0 {
        return 1e-12;
    }
    let mut best = (f32::INFINITY, m / qmax);
    for i in (1..=CLIP_STEPS).rev() {
        let s = (m * i as f32 / CLIP_STEPS as f32 / qmax).max(1e-12);
        let err: f32 = row
            .iter()
            .map(|&w| {
                let d = w - s * (w / s).round().clamp(-qmax, qmax);
                d * d
            })
            .sum();
        if err < best.0 {
            best = (err, s);
        }
    }
    best.1
}
