//! Export of a float network to a `.releq` integer model (post-training
//! quantization, or the last step after QAT).
//!
//! For each weighted layer, with `s_in` / `s_out` the plan's input and output
//! scales and the batch-norm-folded float weights `w` and bias `b`:
//! - per output channel `c`: `s_w = qplan::weight_scale(w_c, wbits)` (the
//!   clipping with the least squared error), weight codes
//!   `clamp(round(w / s_w))` (half away from zero), laid out HWC;
//! - bias `round(b_c / (s_in * s_w))` as `i32`;
//! - requantization `quantize_multiplier(s_in * s_w / s_out)`;
//! - the fused ReLU becomes the output clamp.
//!
//! A depthwise convolution (`depthwise` in [`Op::Conv`]) becomes a
//! `DepthwiseConv2d` layer: one row of `k * k` weights per channel, in
//! `(ky, kx)` order (its `(C, 1, k, k)` weights as they are), quantized per
//! channel like a convolution's output channels.
//!
//! Residual adds get TFLite's multipliers from their three scales; pooling and
//! flatten copy through. The result validates with common's validator before
//! it is returned.

use crate::nn::qplan::{weight_scale, QuantPlan};
use crate::nn::spec::{Act, Op, Spec};
use releq_common::builder::{activation_clamp, BuildError, OwnedModel, OwnedWeights, NO_WEIGHTS};
use releq_common::model::{Activation, Add, Conv2d, Dense, Layer, Padding, Pool, Reshape, Shape};
use releq_common::quant::{add_params, quantize_multiplier, weight_max};

/// Why a network could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The folded weights have the wrong size.
    #[error("layer {name}: {got} weights, expected {want}")]
    WeightCount {
        /// Layer name.
        name: String,
        /// Values given.
        got: usize,
        /// Values expected.
        want: usize,
    },
    /// Reading the float parameters failed.
    #[error("reading the parameters of layer {name}: {message}")]
    Params {
        /// Layer name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The exported model does not validate (a bug, or an unsupported shape).
    #[error("exported model is invalid: {0}")]
    Invalid(#[from] BuildError),
}

fn activation(a: Act) -> Activation {
    match a {
        Act::None => Activation::None,
        Act::Relu => Activation::Relu,
        Act::Relu6 => Activation::Relu6,
    }
}

/// Quantize one weighted layer. `w` is `[out][k]` with each row already in
/// the kernel's order (HWC for conv).
fn quantize_weights(w: &[f32], b: &[f32], out: usize, s_in: f32, s_out: f32, bits: u8) -> OwnedWeights {
    let k = w.len() / out;
    let wmax = weight_max(bits) as f32;
    let mut codes = Vec::with_capacity(w.len());
    let mut bias = Vec::with_capacity(out);
    let mut requant = Vec::with_capacity(out);
    for c in 0..out {
        let row = &w[c * k..(c + 1) * k];
        let s_w = weight_scale(row, bits);
        codes.extend(row.iter().map(|&v| (v / s_w).round().clamp(-wmax, wmax) as i8));
        let bq = (b[c] as f64 / (s_in as f64 * s_w as f64)).round();
        bias.push(bq.clamp(i32::MIN as f64 / 2.0, i32::MAX as f64 / 2.0) as i32);
        requant.push(quantize_multiplier(s_in as f64 * s_w as f64 / s_out as f64));
    }
    OwnedWeights::new(bits, &codes, k, &bias, &requant).expect("codes are clamped to the bit range")
}

/// OIHW -> O[kh][kw][I] (the kernel's row order).
pub fn oihw_to_ohwi(w: &[f32], o: usize, i: usize, k: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for oc in 0..o {
        for ic in 0..i {
            for y in 0..k {
                for x in 0..k {
                    out[((oc * k + y) * k + x) * i + ic] = w[((oc * i + ic) * k + y) * k + x];
                }
            }
        }
    }
    out
}

/// Export `spec` with the plan's bits and scales. `folded(op)` returns the
/// op's batch-norm-folded float weights (OIHW for conv, `[out][in]` for
/// dense) and bias.
pub fn export(
    spec: &Spec,
    plan: &QuantPlan,
    mut folded: impl FnMut(usize) -> Result<(Vec<f32>, Vec<f32>), String>,
) -> Result<OwnedModel, ExportError> {
    let shapes = spec.shapes();
    let t = &plan.tensors;
    let [h, w, c] = spec.input;
    let mut m = OwnedModel::new(spec.name.clone(), Shape::new(h as u16, w as u16, c as u16), t[0]);
    let mut j = 0;
    for (i, op) in spec.ops.iter().enumerate() {
        let out_q = t[i + 1];
        match op {
            Op::Conv { name, input, in_c, out_c, k, stride, pad, act, depthwise, .. } => {
                let (wf, bf) = folded(i).map_err(|message| ExportError::Params { name: name.clone(), message })?;
                let want = op.weight_count();
                if wf.len() != want || bf.len() != *out_c {
                    return Err(ExportError::WeightCount { name: name.clone(), got: wf.len(), want });
                }
                // Depthwise rows are already [c][ky][kx].
                let rows = if *depthwise { wf } else { oihw_to_ohwi(&wf, *out_c, *in_c, *k) };
                let ow = quantize_weights(&rows, &bf, *out_c, t[*input].scale, out_q.scale, plan.wbits[j]);
                j += 1;
                let conv = Conv2d {
                    input: *input as u16,
                    out_c: *out_c as u16,
                    kh: *k as u8,
                    kw: *k as u8,
                    stride_h: *stride as u8,
                    stride_w: *stride as u8,
                    pad: Padding::same(*pad as u8),
                    act: activation(*act),
                    clamp: activation_clamp(activation(*act), &out_q),
                    out: out_q,
                    w: NO_WEIGHTS,
                };
                let layer = if *depthwise { Layer::DepthwiseConv2d(conv) } else { Layer::Conv2d(conv) };
                m.push(layer, Some(ow));
            }
            Op::Dense { name, input, in_f, out_f, act } => {
                let (wf, bf) = folded(i).map_err(|message| ExportError::Params { name: name.clone(), message })?;
                if wf.len() != in_f * out_f || bf.len() != *out_f {
                    return Err(ExportError::WeightCount { name: name.clone(), got: wf.len(), want: in_f * out_f });
                }
                let ow = quantize_weights(&wf, &bf, *out_f, t[*input].scale, out_q.scale, plan.wbits[j]);
                j += 1;
                let dense = Dense {
                    input: *input as u16,
                    out_features: *out_f as u16,
                    act: activation(*act),
                    clamp: activation_clamp(activation(*act), &out_q),
                    out: out_q,
                    w: NO_WEIGHTS,
                };
                m.push(Layer::Dense(dense), Some(ow));
            }
            Op::MaxPool { input, k, stride } | Op::AvgPool { input, k, stride } => {
                let p = Pool {
                    input: *input as u16,
                    kh: *k as u8,
                    kw: *k as u8,
                    stride_h: *stride as u8,
                    stride_w: *stride as u8,
                    pad: Padding::default(),
                };
                let layer = if matches!(op, Op::MaxPool { .. }) { Layer::MaxPool2d(p) } else { Layer::AvgPool2d(p) };
                m.push(layer, None);
            }
            Op::Add { a, b, act } => {
                let add = Add {
                    input: *a as u16,
                    other: *b as u16,
                    act: activation(*act),
                    clamp: activation_clamp(activation(*act), &out_q),
                    out: out_q,
                    params: add_params(t[*a].scale, t[*b].scale, out_q.scale),
                };
                m.push(Layer::Add(add), None);
            }
            Op::Flatten { input } => {
                let [_, _, n] = shapes[i + 1];
                m.push(Layer::Reshape(Reshape { input: *input as u16, shape: Shape::new(1, 1, n as u16) }), None);
            }
        }
    }
    m.plan()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oihw_to_ohwi_moves_channels_last() {
        // o=1, i=2, k=2: OIHW [c0: a b / c d, c1: e f / g h] -> HWC [a e b f c g d h].
        let w = [1., 2., 3., 4., 5., 6., 7., 8.];
        assert_eq!(oihw_to_ohwi(&w, 1, 2, 2), vec![1., 5., 2., 6., 3., 7., 4., 8.]);
    }
}
