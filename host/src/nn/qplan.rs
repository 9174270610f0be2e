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
//! - weights are symmetric per output channel: `scale = max|w| / (2^(b-1) - 1)`
//!   of the (batch-norm folded) float weights of that channel.

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

/// Symmetric per-channel weight scale of one output channel's weights.
pub fn weight_scale(row: &[f32], bits: u8) -> f32 {
    let m = row.iter().fold(0f32, |m, w| m.max(w.abs()));
    (m / weight_max(bits) as f32).max(1e-12)
}
