//! Exporting a `.releq` model as a `.tflite` file that TFLite Micro runs with
//! the same integer outputs.
//!
//! Every `.releq` layer becomes the TFLite operator whose TFLite Micro int8
//! kernel computes the same thing; what has to be reconstructed is the
//! constants TFLite Micro derives from the file (the importer,
//! [`crate::import::convert`], documents the same arithmetic the other way):
//!
//! - **Filter scales.** A `.releq` layer stores each channel's requantisation
//!   `(multiplier, shift)`, not the scales it came from. TFLite Micro computes
//!   `QuantizeMultiplier((double)s_in * (double)s_w[c] / (double)s_out)`
//!   (per-tensor FULLY_CONNECTED: `s_in * s_w` in `f32` first), so for every
//!   channel the exporter searches the `f32` values around
//!   `multiplier * 2^(shift - 31) * s_out / s_in` for one that TFLite Micro
//!   maps back to exactly the stored pair. releq's quantizer and importer
//!   derive their multipliers that way from `f32` scales, so one exists; a
//!   pair that no `f32` scale reaches is an error naming layer and channel.
//! - **Weights.** Codes are written as they are: as `INT4` (two per byte, low
//!   nibble first, the order `tensor_utils::UnpackDenseInt4IntoInt8` reads)
//!   when the layer has at most 4 weight bits and TFLite Micro has an int4
//!   kernel for it (CONV_2D, DEPTHWISE_CONV_2D, and FULLY_CONNECTED with a
//!   per-tensor filter, i.e. every channel has the same requantisation),
//!   otherwise as `INT8`. Bias `INT32` with scale `s_in * s_w[c]`.
//! - **Clamps and sub-8-bit activations.** A `.releq` kernel clamps its
//!   output to `[max(qmin_b, clamp.min), min(qmax_b, clamp.max)]` for a
//!   `b`-bit output. TFLite Micro clamps to the fused activation's range
//!   (NONE, RELU, RELU6 computed from the output's scale and zero point) in
//!   int8. The exporter picks the fused activation whose range contains the
//!   `.releq` range with the fewest extra bounds and adds a MAXIMUM and / or
//!   MINIMUM against a constant int8 tensor (same scale and zero point) for
//!   the bounds it does not reach. Clamps commute with nothing in between, so
//!   the result is the `.releq` clamp exactly; a `b`-bit activation is an
//!   int8 tensor holding only `b`-bit codes, which every later TFLite Micro
//!   kernel reads as it reads any int8 code.
//! - **Padding.** Explicit `(top, left, bottom, right)` padding that equals
//!   TFLite's SAME padding (`total = max((ceil(in / s) - 1) * s + k - in,
//!   0)`, top/left `floor(total / 2)`) is written as SAME, none as VALID,
//!   anything else as a PAD (which pads with the zero point, as `.releq`
//!   convolutions do) before a VALID convolution. Pooling ignores padded
//!   positions in both; other padding of a max pool is a PADV2 with -128
//!   (which never wins a max) before a VALID pool, when every window keeps
//!   an input pixel (padding below the window on each side); other padding
//!   of an average pool (whose divisor counts in-image positions) is refused.
//! - **Global mean.** The importer turns MEAN into a depthwise convolution
//!   with all-ones weights over the whole input and TFLite's MEAN multiplier;
//!   such a layer is written back as MEAN over axes 1, 2 (its multiplier is
//!   not one a filter scale reaches).
//! - ADD: TFLite Micro recomputes the multipliers from the three scales, so
//!   the layer's must be `quant::add_params`' (checked). RESHAPE: a constant
//!   shape tensor. Pools: MAX_POOL_2D / AVERAGE_POOL_2D.
//!
//! Activations are `[1, h, w, c]`; a fully connected output (and a reshape
//! to `1 x 1 x n` not read by a convolution or pool) is `[1, n]`, as the
//! TFLite converter writes them. Buffer data is 16-byte aligned in the file.

use crate::import::schema::tflite as tfl;
use flatbuffers::{FlatBufferBuilder, WIPOffset};
use releq_common::model::{Activation, Layer, Padding, Shape, TensorQuant};
use releq_common::pack;
use releq_common::quant::{act_max, act_min, add_params, quantize_multiplier, QuantizedMultiplier};
use releq_common::validate::Plan;
use serde::Serialize;

/// Why a model could not be exported.
#[derive(Debug, thiserror::Error)]
pub enum TflExportError {
    /// The model does not validate.
    #[error("invalid model: {0}")]
    Model(#[from] releq_common::ModelError),
    /// A layer's requantisation cannot be expressed with an `f32` filter scale.
    #[error(
        "layer {layer} ({kind}) channel {channel}: requantisation (multiplier {multiplier}, shift {shift}) is not \
         what TFLite Micro computes from any f32 filter scale (input scale {s_in}, output scale {s_out})"
    )]
    NoFilterScale {
        /// Layer index.
        layer: usize,
        /// Layer kind.
        kind: &'static str,
        /// Output channel.
        channel: usize,
        /// Stored multiplier.
        multiplier: i32,
        /// Stored shift.
        shift: i8,
        /// Input scale.
        s_in: f32,
        /// Output scale.
        s_out: f32,
    },
    /// A layer has no TFLite Micro equivalent as it is.
    #[error("layer {layer} ({kind}): {reason}")]
    Unsupported {
        /// Layer index.
        layer: usize,
        /// Layer kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
}

/// What one `.releq` layer became.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LayerReport {
    /// Layer index.
    pub index: usize,
    /// `.releq` layer kind.
    pub kind: &'static str,
    /// TFLite operators written for it, in order.
    pub ops: Vec<&'static str>,
    /// Weight bits of the `.releq` layer (weighted layers).
    pub weight_bits: Option<u8>,
    /// TFLite type the weights were written as (`INT4` or `INT8`).
    pub weight_type: Option<&'static str>,
    /// Bits of the output activation.
    pub act_bits: u8,
    /// Output clamp `[lo, hi]` in codes as the `.releq` kernel applies it.
    pub clamp: Option<[i32; 2]>,
    /// Why a choice was made (int8 instead of int4, extra ops).
    pub note: String,
}

/// An exported file and what was written.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The `.tflite` flatbuffer.
    pub bytes: Vec<u8>,
    /// One entry per `.releq` layer.
    pub layers: Vec<LayerReport>,
    /// Operators in the file.
    pub operators: usize,
    /// Bytes of weight data (filter buffers) in the file.
    pub weight_bytes: usize,
}

#[derive(Clone)]
struct QuantSpec {
    scale: Vec<f32>,
    zero_point: Vec<i64>,
    dim: i32,
}

struct TensorSpec {
    name: String,
    shape: Vec<i32>,
    dtype: tfl::TensorType,
    buffer: u32,
    quant: Option<QuantSpec>,
}

#[derive(Clone, Copy)]
enum Opts {
    Conv { pad: tfl::Padding, sh: u8, sw: u8, act: tfl::ActivationFunctionType },
    Depthwise { pad: tfl::Padding, sh: u8, sw: u8, act: tfl::ActivationFunctionType },
    Fc { act: tfl::ActivationFunctionType },
    Pool { pad: tfl::Padding, sh: u8, sw: u8, kh: u8, kw: u8 },
    Add { act: tfl::ActivationFunctionType },
    Reshape,
    Reducer { keep_dims: bool },
    Pad,
    PadV2,
    MaxMin,
}

struct OpSpec {
    code: tfl::BuiltinOperator,
    inputs: Vec<i32>,
    outputs: Vec<i32>,
    opts: Opts,
}

#[derive(Default)]
struct Graph {
    tensors: Vec<TensorSpec>,
    buffers: Vec<Vec<u8>>,
    ops: Vec<OpSpec>,
    weight_bytes: usize,
}

impl Graph {
    fn tensor(&mut self, name: String, shape: Vec<i32>, dtype: tfl::TensorType, q: Option<QuantSpec>) -> i32 {
        self.tensors.push(TensorSpec { name, shape, dtype, buffer: 0, quant: q });
        (self.tensors.len() - 1) as i32
    }

    fn constant(
        &mut self,
        name: String,
        shape: Vec<i32>,
        dtype: tfl::TensorType,
        q: Option<QuantSpec>,
        data: Vec<u8>,
    ) -> i32 {
        self.buffers.push(data);
        let buffer = (self.buffers.len() - 1) as u32;
        self.tensors.push(TensorSpec { name, shape, dtype, buffer, quant: q });
        (self.tensors.len() - 1) as i32
    }

    fn op(&mut self, code: tfl::BuiltinOperator, inputs: Vec<i32>, outputs: Vec<i32>, opts: Opts) {
        self.ops.push(OpSpec { code, inputs, outputs, opts });
    }
}

fn act_quant(q: &TensorQuant) -> QuantSpec {
    QuantSpec { scale: vec![q.scale], zero_point: vec![q.zero_point as i64], dim: 0 }
}

/// TFLite Micro's `[min, max]` for a fused activation on an int8 output.
fn fused_range(act: tfl::ActivationFunctionType, q: &TensorQuant) -> (i32, i32) {
    let zp = q.zero_point;
    match act {
        tfl::ActivationFunctionType::RELU => (zp.max(-128), 127),
        tfl::ActivationFunctionType::RELU6 => {
            (zp.max(-128), zp.saturating_add((6.0f32 / q.scale).round() as i32).min(127))
        }
        _ => (-128, 127),
    }
}

fn fused_name(act: tfl::ActivationFunctionType) -> &'static str {
    match act {
        tfl::ActivationFunctionType::RELU => "RELU",
        tfl::ActivationFunctionType::RELU6 => "RELU6",
        _ => "NONE",
    }
}

/// The fused activation and the extra (MAXIMUM bound, MINIMUM bound) that
/// give exactly the clamp `[lo, hi]`.
fn plan_clamp(
    act: Activation,
    lo: i32,
    hi: i32,
    q: &TensorQuant,
) -> (tfl::ActivationFunctionType, Option<i32>, Option<i32>) {
    let preferred = match act {
        Activation::None => tfl::ActivationFunctionType::NONE,
        Activation::Relu => tfl::ActivationFunctionType::RELU,
        Activation::Relu6 => tfl::ActivationFunctionType::RELU6,
    };
    let mut best: Option<(usize, tfl::ActivationFunctionType, Option<i32>, Option<i32>)> = None;
    for a in [
        preferred,
        tfl::ActivationFunctionType::RELU6,
        tfl::ActivationFunctionType::RELU,
        tfl::ActivationFunctionType::NONE,
    ] {
        let (flo, fhi) = fused_range(a, q);
        if flo > lo || fhi < hi {
            continue;
        }
        let max_b = (flo < lo).then_some(lo);
        let min_b = (fhi > hi).then_some(hi);
        let cost = max_b.is_some() as usize + min_b.is_some() as usize;
        if best.as_ref().is_none_or(|b| cost < b.0) {
            best = Some((cost, a, max_b, min_b));
        }
    }
    // NONE's range [-128, 127] contains every clamp, so `best` is set.
    let (_, a, mx, mn) = best.unwrap_or((2, tfl::ActivationFunctionType::NONE, Some(lo), Some(hi)));
    (a, mx, mn)
}

/// An `f32` filter scale from which TFLite Micro computes exactly `target`.
/// `f32_product`: the per-tensor FULLY_CONNECTED rule (`s_in * s_w` in f32).
pub fn filter_scale(s_in: f32, s_out: f32, target: QuantizedMultiplier, f32_product: bool) -> Option<f32> {
    let qm = |s_w: f32| {
        let prod = if f32_product { (s_in * s_w) as f64 } else { s_in as f64 * s_w as f64 };
        quantize_multiplier(prod / s_out as f64)
    };
    let est = if target.multiplier == 0 {
        // A zero multiplier: any scale small enough (shift below -31).
        (2f64.powi(-40) * s_out as f64 / s_in as f64) as f32
    } else {
        (target.multiplier as f64 * 2f64.powi(target.shift as i32 - 31) * s_out as f64 / s_in as f64) as f32
    };
    if !(est.is_finite() && est > 0.0) {
        return None;
    }
    let bits = est.to_bits();
    for d in 0..=256u32 {
        for b in [bits.wrapping_add(d), bits.wrapping_sub(d)] {
            let s = f32::from_bits(b);
            if s.is_finite() && s > 0.0 && qm(s) == target {
                return Some(s);
            }
        }
    }
    None
}

/// TFLite's SAME padding of one dimension: (before, after).
fn same_1d(input: u32, k: u32, stride: u32) -> (u32, u32) {
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + k).saturating_sub(input);
    (total / 2, total - total / 2)
}

fn same_padding(s: Shape, kh: u8, kw: u8, sh: u8, sw: u8) -> Padding {
    let (t, b) = same_1d(s.h as u32, kh as u32, sh as u32);
    let (l, r) = same_1d(s.w as u32, kw as u32, sw as u32);
    Padding { top: t as u8, left: l as u8, bottom: b as u8, right: r as u8 }
}

/// Int4 packing: two values per byte, low nibble first (odd count: the last
/// high nibble is zero).
pub fn pack_int4(values: &[i8]) -> Vec<u8> {
    values.chunks(2).map(|p| (p[0] as u8 & 0x0f) | ((p.get(1).copied().unwrap_or(0) as u8 & 0x0f) << 4)).collect()
}

fn shape4(s: Shape) -> Vec<i32> {
    vec![1, s.h as i32, s.w as i32, s.c as i32]
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

struct Exporter<'p, 'a> {
    plan: &'p Plan<'a>,
    g: Graph,
    /// TFLite tensor of each `.releq` tensor.
    tmap: Vec<i32>,
    /// `.releq` tensors that must stay 4-D (read by a convolution or pool).
    needs_4d: Vec<bool>,
    reports: Vec<LayerReport>,
}

impl Exporter<'_, '_> {
    /// For an explicit PAD / PADV2 of layer `i`'s input (`shape`, `quant`)
    /// by `p`: the paddings constant and the padded int8 tensor.
    fn padding_tensors(&mut self, i: usize, shape: Shape, quant: &TensorQuant, p: Padding) -> (i32, i32) {
        let padded =
            Shape::new(shape.h + p.top as u16 + p.bottom as u16, shape.w + p.left as u16 + p.right as u16, shape.c);
        let pv = [0, 0, p.top as i32, p.bottom as i32, p.left as i32, p.right as i32, 0, 0];
        let pt =
            self.g.constant(format!("layer{i}/paddings"), vec![4, 2], tfl::TensorType::INT32, None, i32_bytes(&pv));
        let po =
            self.g.tensor(format!("layer{i}/padded"), shape4(padded), tfl::TensorType::INT8, Some(act_quant(quant)));
        (pt, po)
    }

    fn unsupported(&self, i: usize, reason: impl Into<String>) -> TflExportError {
        TflExportError::Unsupported { layer: i, kind: self.plan.model.layers[i].kind(), reason: reason.into() }
    }

    /// Weight codes of a weighted layer, one row per output channel.
    fn codes(w: &releq_common::model::Weights<'_>, rows: usize, k: usize) -> Vec<i8> {
        let rb = pack::row_bytes(k, w.bits);
        let mut out = vec![0i8; rows * k];
        for c in 0..rows {
            pack::unpack_row(w.row(c, rb), w.bits, &mut out[c * k..(c + 1) * k]);
        }
        out
    }

    /// The output tensor of layer `i` (before any clamp ops), and the final
    /// tensor id once clamps are appended (see [`Self::finish_clamp`]).
    fn out_shape(&self, i: usize, flat: bool) -> Vec<i32> {
        let s = self.plan.tensors[i + 1].shape;
        if flat && s.h == 1 && s.w == 1 && !self.needs_4d[i + 1] {
            vec![1, s.c as i32]
        } else {
            shape4(s)
        }
    }

    /// Append MAXIMUM / MINIMUM after `raw` so the output equals the
    /// `.releq` clamp; returns the final tensor and the op names.
    fn clamp_ops(
        &mut self,
        i: usize,
        raw: i32,
        shape: &[i32],
        q: &TensorQuant,
        max_b: Option<i32>,
        min_b: Option<i32>,
    ) -> (i32, Vec<&'static str>) {
        let mut cur = raw;
        let mut names = Vec::new();
        let steps =
            [(max_b, tfl::BuiltinOperator::MAXIMUM, "MAXIMUM"), (min_b, tfl::BuiltinOperator::MINIMUM, "MINIMUM")];
        let n = steps.iter().filter(|s| s.0.is_some()).count();
        let mut done = 0;
        for (bound, code, name) in steps {
            let Some(b) = bound else { continue };
            done += 1;
            let k = self.g.constant(
                format!("layer{i}/{}_bound", name.to_ascii_lowercase()),
                vec![1],
                tfl::TensorType::INT8,
                Some(act_quant(q)),
                vec![b as i8 as u8],
            );
            let out = if done == n {
                self.g.tensor(format!("t{}", i + 1), shape.to_vec(), tfl::TensorType::INT8, Some(act_quant(q)))
            } else {
                self.g.tensor(
                    format!("layer{i}/{}", name.to_ascii_lowercase()),
                    shape.to_vec(),
                    tfl::TensorType::INT8,
                    Some(act_quant(q)),
                )
            };
            self.g.op(code, vec![cur, k], vec![out], Opts::MaxMin);
            names.push(name);
            cur = out;
        }
        (cur, names)
    }

    fn layer(&mut self, i: usize) -> Result<(), TflExportError> {
        let layer = self.plan.model.layers[i];
        let out_info = self.plan.tensors[i + 1];
        let q = out_info.quant;
        let kind = layer.kind();
        let mut rep = LayerReport {
            index: i,
            kind,
            ops: Vec::new(),
            weight_bits: layer.weights().map(|w| w.bits),
            weight_type: None,
            act_bits: q.bits,
            clamp: None,
            note: String::new(),
        };
        let result_tensor = match layer {
            Layer::Conv2d(c) | Layer::DepthwiseConv2d(c) => {
                let dw = matches!(layer, Layer::DepthwiseConv2d(_));
                let xin = self.plan.tensors[c.input as usize];
                if dw {
                    if let Some(t) = self.mean(i, &c, &xin, &mut rep)? {
                        self.reports.push(rep);
                        self.tmap[i + 1] = t;
                        return Ok(());
                    }
                }
                let in_c = xin.shape.c as usize;
                let oc = c.out_c as usize;
                let k = c.kh as usize * c.kw as usize * if dw { 1 } else { in_c };
                let codes = Self::codes(&c.w, oc, k);
                let mut scales = Vec::with_capacity(oc);
                for ch in 0..oc {
                    let rq = c.w.requant(ch);
                    let s = filter_scale(xin.quant.scale, q.scale, rq, false).ok_or(TflExportError::NoFilterScale {
                        layer: i,
                        kind,
                        channel: ch,
                        multiplier: rq.multiplier,
                        shift: rq.shift,
                        s_in: xin.quant.scale,
                        s_out: q.scale,
                    })?;
                    scales.push(s);
                }
                // Filter layout: OHWI (conv) or 1HWC (depthwise).
                let (fshape, flat): (Vec<i32>, Vec<i8>) = if dw {
                    let kk = c.kh as usize * c.kw as usize;
                    let mut v = vec![0i8; kk * oc];
                    for ch in 0..oc {
                        for j in 0..kk {
                            v[j * oc + ch] = codes[ch * kk + j];
                        }
                    }
                    (vec![1, c.kh as i32, c.kw as i32, oc as i32], v)
                } else {
                    (vec![oc as i32, c.kh as i32, c.kw as i32, in_c as i32], codes)
                };
                let int4 = c.w.bits <= 4;
                let fq = QuantSpec { scale: scales.clone(), zero_point: vec![0; oc], dim: if dw { 3 } else { 0 } };
                let fid = self.filter(i, fshape, &flat, int4, fq);
                rep.weight_type = Some(if int4 { "INT4" } else { "INT8" });
                let bid = self.bias(i, &c.w, oc, xin.quant.scale, &scales);
                // Padding: SAME, VALID, or an explicit PAD.
                let same = same_padding(xin.shape, c.kh, c.kw, c.stride_h, c.stride_w);
                let mut x = self.tmap[c.input as usize];
                let pad = if c.pad == Padding::default() {
                    tfl::Padding::VALID
                } else if c.pad == same {
                    tfl::Padding::SAME
                } else {
                    let p = c.pad;
                    let (pt, po) = self.padding_tensors(i, xin.shape, &xin.quant, p);
                    self.g.op(tfl::BuiltinOperator::PAD, vec![x, pt], vec![po], Opts::Pad);
                    rep.ops.push("PAD");
                    rep.note.push_str(&format!(
                        "padding {:?} is neither SAME nor VALID: PAD then VALID; ",
                        [p.top, p.left, p.bottom, p.right]
                    ));
                    x = po;
                    tfl::Padding::VALID
                };
                let (lo, hi) = self.clamp_range(&c.clamp, &q);
                let (fa, mx, mn) = plan_clamp(c.act, lo, hi, &q);
                let shape = self.out_shape(i, false);
                let raw =
                    self.g.tensor(format!("t{}", i + 1), shape.clone(), tfl::TensorType::INT8, Some(act_quant(&q)));
                let (code, opts, name) = if dw {
                    (
                        tfl::BuiltinOperator::DEPTHWISE_CONV_2D,
                        Opts::Depthwise { pad, sh: c.stride_h, sw: c.stride_w, act: fa },
                        "DEPTHWISE_CONV_2D",
                    )
                } else {
                    (
                        tfl::BuiltinOperator::CONV_2D,
                        Opts::Conv { pad, sh: c.stride_h, sw: c.stride_w, act: fa },
                        "CONV_2D",
                    )
                };
                self.g.op(code, vec![x, fid, bid], vec![raw], opts);
                rep.ops.push(name);
                self.finish_clamp(i, raw, &shape, &q, fa, mx, mn, lo, hi, &mut rep)
            }
            Layer::Dense(d) => {
                let xin = self.plan.tensors[d.input as usize];
                let n = xin.shape.len();
                let o = d.out_features as usize;
                let codes = Self::codes(&d.w, o, n);
                let rq0 = d.w.requant(0);
                let uniform = (0..o).all(|c| d.w.requant(c) == rq0);
                let per_tensor = if uniform { filter_scale(xin.quant.scale, q.scale, rq0, true) } else { None };
                let (scales, fq, int4) = if let Some(s) = per_tensor {
                    let int4 = d.w.bits <= 4;
                    (vec![s; o], QuantSpec { scale: vec![s], zero_point: vec![0], dim: 0 }, int4)
                } else {
                    let mut scales = Vec::with_capacity(o);
                    for ch in 0..o {
                        let rq = d.w.requant(ch);
                        scales.push(filter_scale(xin.quant.scale, q.scale, rq, false).ok_or(
                            TflExportError::NoFilterScale {
                                layer: i,
                                kind,
                                channel: ch,
                                multiplier: rq.multiplier,
                                shift: rq.shift,
                                s_in: xin.quant.scale,
                                s_out: q.scale,
                            },
                        )?);
                    }
                    if d.w.bits <= 4 {
                        rep.note.push_str("per-channel requantisation: INT8 (TFLite Micro's int4 FULLY_CONNECTED is per-tensor only); ");
                    }
                    (scales.clone(), QuantSpec { scale: scales, zero_point: vec![0; o], dim: 0 }, false)
                };
                let fid = self.filter(i, vec![o as i32, n as i32], &codes, int4, fq);
                rep.weight_type = Some(if int4 { "INT4" } else { "INT8" });
                let bias_scales: Vec<f32> = if per_tensor.is_some() { vec![scales[0]] } else { scales.clone() };
                let bid = self.bias_with(i, &d.w, o, xin.quant.scale, &bias_scales);
                let (lo, hi) = self.clamp_range(&d.clamp, &q);
                let (fa, mx, mn) = plan_clamp(d.act, lo, hi, &q);
                let shape = self.out_shape(i, true);
                let raw =
                    self.g.tensor(format!("t{}", i + 1), shape.clone(), tfl::TensorType::INT8, Some(act_quant(&q)));
                self.g.op(
                    tfl::BuiltinOperator::FULLY_CONNECTED,
                    vec![self.tmap[d.input as usize], fid, bid],
                    vec![raw],
                    Opts::Fc { act: fa },
                );
                rep.ops.push("FULLY_CONNECTED");
                self.finish_clamp(i, raw, &shape, &q, fa, mx, mn, lo, hi, &mut rep)
            }
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                let xin = self.plan.tensors[p.input as usize];
                let same = same_padding(xin.shape, p.kh, p.kw, p.stride_h, p.stride_w);
                let max = matches!(layer, Layer::MaxPool2d(_));
                let mut x = self.tmap[p.input as usize];
                let pp = p.pad;
                let pad = if p.pad == Padding::default() {
                    tfl::Padding::VALID
                } else if p.pad == same {
                    tfl::Padding::SAME
                } else if max && pp.top < p.kh && pp.bottom < p.kh && pp.left < p.kw && pp.right < p.kw {
                    // Every window keeps a real pixel: padding with -128
                    // (PADV2) never wins the max, as ignored positions.
                    let (pt, po) = self.padding_tensors(i, xin.shape, &xin.quant, pp);
                    let cv = self.g.constant(
                        format!("layer{i}/pad_value"),
                        vec![1],
                        tfl::TensorType::INT8,
                        Some(act_quant(&xin.quant)),
                        vec![(-128i8) as u8],
                    );
                    self.g.op(tfl::BuiltinOperator::PADV2, vec![x, pt, cv], vec![po], Opts::PadV2);
                    rep.ops.push("PADV2");
                    rep.note.push_str(&format!(
                        "padding {:?} is neither SAME nor VALID: PADV2 with -128 then VALID",
                        [pp.top, pp.left, pp.bottom, pp.right]
                    ));
                    x = po;
                    tfl::Padding::VALID
                } else {
                    return Err(self.unsupported(
                        i,
                        format!(
                            "padding {:?} is neither SAME ({:?}) nor none; TFLite pools have no explicit padding \
                             (a max pool is padded by a PADV2 when every window keeps an input pixel; an average \
                             pool's count of in-image positions has no TFLite form)",
                            [p.pad.top, p.pad.left, p.pad.bottom, p.pad.right],
                            [same.top, same.left, same.bottom, same.right]
                        ),
                    ));
                };
                let shape = self.out_shape(i, false);
                let t = self.g.tensor(format!("t{}", i + 1), shape, tfl::TensorType::INT8, Some(act_quant(&q)));
                let (code, name) = if max {
                    (tfl::BuiltinOperator::MAX_POOL_2D, "MAX_POOL_2D")
                } else {
                    (tfl::BuiltinOperator::AVERAGE_POOL_2D, "AVERAGE_POOL_2D")
                };
                self.g.op(
                    code,
                    vec![x],
                    vec![t],
                    Opts::Pool { pad, sh: p.stride_h, sw: p.stride_w, kh: p.kh, kw: p.kw },
                );
                rep.ops.push(name);
                t
            }
            Layer::Add(a) => {
                let (qa, qb) = (self.plan.tensors[a.input as usize].quant, self.plan.tensors[a.other as usize].quant);
                if a.params != add_params(qa.scale, qb.scale, q.scale) {
                    return Err(self.unsupported(i, "its multipliers are not the ones TFLite Micro computes from the three scales (quant::add_params)"));
                }
                let (ta, tb) = (self.tmap[a.input as usize], self.tmap[a.other as usize]);
                let shape = self.g.tensors[ta as usize].shape.clone();
                if self.g.tensors[tb as usize].shape != shape {
                    return Err(self.unsupported(i, "its inputs were written with different TFLite shapes"));
                }
                let (lo, hi) = self.clamp_range(&a.clamp, &q);
                let (fa, mx, mn) = plan_clamp(a.act, lo, hi, &q);
                let raw =
                    self.g.tensor(format!("t{}", i + 1), shape.clone(), tfl::TensorType::INT8, Some(act_quant(&q)));
                self.g.op(tfl::BuiltinOperator::ADD, vec![ta, tb], vec![raw], Opts::Add { act: fa });
                rep.ops.push("ADD");
                self.finish_clamp(i, raw, &shape, &q, fa, mx, mn, lo, hi, &mut rep)
            }
            Layer::Reshape(r) => {
                let shape = self.out_shape(i, true);
                let st = self.g.constant(
                    format!("layer{i}/shape"),
                    vec![shape.len() as i32],
                    tfl::TensorType::INT32,
                    None,
                    i32_bytes(&shape),
                );
                let t = self.g.tensor(format!("t{}", i + 1), shape, tfl::TensorType::INT8, Some(act_quant(&q)));
                self.g.op(tfl::BuiltinOperator::RESHAPE, vec![self.tmap[r.input as usize], st], vec![t], Opts::Reshape);
                rep.ops.push("RESHAPE");
                t
            }
        };
        self.tmap[i + 1] = result_tensor;
        self.reports.push(rep);
        Ok(())
    }

    fn clamp_range(&self, c: &releq_common::model::Clamp, q: &TensorQuant) -> (i32, i32) {
        (act_min(q.bits).max(c.min as i32), act_max(q.bits).min(c.max as i32))
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_clamp(
        &mut self,
        i: usize,
        raw: i32,
        shape: &[i32],
        q: &TensorQuant,
        fa: tfl::ActivationFunctionType,
        mx: Option<i32>,
        mn: Option<i32>,
        lo: i32,
        hi: i32,
        rep: &mut LayerReport,
    ) -> i32 {
        rep.clamp = Some([lo, hi]);
        if mx.is_some() || mn.is_some() {
            // The unclamped tensor gets its own name.
            self.g.tensors[raw as usize].name = format!("layer{i}/unclamped");
        }
        let (t, names) = self.clamp_ops(i, raw, shape, q, mx, mn);
        rep.ops.extend(names);
        rep.note.push_str(&format!("fused {}", fused_name(fa)));
        if mx.is_some() || mn.is_some() {
            rep.note.push_str(&format!(", clamp [{lo}, {hi}] by MAXIMUM/MINIMUM ({}-bit output)", q.bits));
        }
        t
    }

    fn filter(&mut self, i: usize, shape: Vec<i32>, flat: &[i8], int4: bool, q: QuantSpec) -> i32 {
        let (dtype, data) = if int4 {
            (tfl::TensorType::INT4, pack_int4(flat))
        } else {
            (tfl::TensorType::INT8, flat.iter().map(|&v| v as u8).collect())
        };
        self.g.weight_bytes += data.len();
        self.g.constant(format!("layer{i}/filter"), shape, dtype, Some(q), data)
    }

    fn bias(&mut self, i: usize, w: &releq_common::model::Weights<'_>, n: usize, s_in: f32, scales: &[f32]) -> i32 {
        self.bias_with(i, w, n, s_in, scales)
    }

    fn bias_with(
        &mut self,
        i: usize,
        w: &releq_common::model::Weights<'_>,
        n: usize,
        s_in: f32,
        scales: &[f32],
    ) -> i32 {
        let b: Vec<i32> = (0..n).map(|c| w.bias(c)).collect();
        let bq = QuantSpec {
            scale: scales.iter().map(|&s| (s_in as f64 * s as f64) as f32).collect(),
            zero_point: vec![0; scales.len()],
            dim: 0,
        };
        self.g.constant(format!("layer{i}/bias"), vec![n as i32], tfl::TensorType::INT32, Some(bq), i32_bytes(&b))
    }

    /// A depthwise convolution that is the importer's form of MEAN.
    fn mean(
        &mut self,
        i: usize,
        c: &releq_common::model::Conv2d<'_>,
        xin: &releq_common::validate::TensorInfo,
        rep: &mut LayerReport,
    ) -> Result<Option<i32>, TflExportError> {
        let q = self.plan.tensors[i + 1].quant;
        let (h, w) = (xin.shape.h, xin.shape.w);
        if c.kh as u16 != h || c.kw as u16 != w || c.pad != Padding::default() {
            return Ok(None);
        }
        let n = h as i64 * w as i64;
        let base = quantize_multiplier(xin.quant.scale as f64 / q.scale as f64);
        let k = (63 - (n as u64).leading_zeros() as i32).min(32).min(31 + base.shift as i32);
        let rq = QuantizedMultiplier {
            multiplier: (((base.multiplier as i64) << k) / n) as i32,
            shift: (base.shift as i32 - k) as i8,
        };
        let oc = c.out_c as usize;
        let codes = Self::codes(&c.w, oc, n as usize);
        if codes.iter().any(|&v| v != 1) || (0..oc).any(|ch| c.w.bias(ch) != 0 || c.w.requant(ch) != rq) {
            return Ok(None);
        }
        let axes = self.g.constant(format!("layer{i}/axes"), vec![2], tfl::TensorType::INT32, None, i32_bytes(&[1, 2]));
        let (lo, hi) = self.clamp_range(&c.clamp, &q);
        let shape = self.out_shape(i, true);
        let raw = self.g.tensor(format!("t{}", i + 1), shape.clone(), tfl::TensorType::INT8, Some(act_quant(&q)));
        let keep_dims = shape.len() == 4;
        self.g.op(
            tfl::BuiltinOperator::MEAN,
            vec![self.tmap[c.input as usize], axes],
            vec![raw],
            Opts::Reducer { keep_dims },
        );
        rep.ops.push("MEAN");
        rep.weight_type = None;
        rep.note
            .push_str("all-ones depthwise over the whole input with TFLite's MEAN multiplier: MEAN over axes 1, 2; ");
        let t = self.finish_clamp(
            i,
            raw,
            &shape,
            &q,
            tfl::ActivationFunctionType::NONE,
            (lo > -128).then_some(lo),
            (hi < 127).then_some(hi),
            lo,
            hi,
            rep,
        );
        Ok(Some(t))
    }
}

/// Export a validated model.
pub fn export_tflite(plan: &Plan<'_>) -> Result<Exported, TflExportError> {
    let layers = &plan.model.layers;
    let mut needs_4d = vec![false; plan.tensors.len()];
    for l in layers {
        if matches!(l, Layer::Conv2d(_) | Layer::DepthwiseConv2d(_) | Layer::MaxPool2d(_) | Layer::AvgPool2d(_)) {
            needs_4d[l.input() as usize] = true;
        }
    }
    let mut ex =
        Exporter { plan, g: Graph::default(), tmap: vec![-1; plan.tensors.len()], needs_4d, reports: Vec::new() };
    ex.g.buffers.push(Vec::new()); // buffer 0: the empty sentinel
    let inq = plan.tensors[0].quant;
    ex.tmap[0] =
        ex.g.tensor("input".into(), shape4(plan.tensors[0].shape), tfl::TensorType::INT8, Some(act_quant(&inq)));
    for i in 0..layers.len() {
        ex.layer(i)?;
    }
    let output = ex.tmap[layers.len()];
    ex.g.tensors[output as usize].name = "output".into();
    let bytes = serialize(&ex.g, ex.tmap[0], output, plan.model.name);
    Ok(Exported { bytes, operators: ex.g.ops.len(), weight_bytes: ex.g.weight_bytes, layers: ex.reports })
}

/// Read, validate and export a `.releq` file's bytes.
pub fn export_tflite_bytes(blob: &[u8]) -> Result<Exported, TflExportError> {
    let plan = Plan::from_bytes(blob)?;
    export_tflite(&plan)
}

fn serialize(g: &Graph, input: i32, output: i32, name: &str) -> Vec<u8> {
    let mut fbb = FlatBufferBuilder::with_capacity(1024 + g.buffers.iter().map(Vec::len).sum::<usize>() * 2);
    // Buffers first (they are written at the end of the file): data 16-byte
    // aligned relative to the end, fixed up relative to the start below.
    let mut bufs = Vec::with_capacity(g.buffers.len());
    for d in &g.buffers {
        let data = if d.is_empty() {
            None
        } else {
            let used = fbb.unfinished_data().len();
            let pad = (16 - (used + d.len()) % 16) % 16;
            for _ in 0..pad {
                fbb.push(0u8);
            }
            Some(fbb.create_vector(d))
        };
        bufs.push(tfl::Buffer::create(&mut fbb, &tfl::BufferArgs { data, offset: 0, size: 0 }));
    }
    let buffers = fbb.create_vector(&bufs);
    let mut tensors = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let shape = fbb.create_vector(&t.shape);
        let name = fbb.create_string(&t.name);
        let quantization = t.quant.as_ref().map(|q| {
            let scale = fbb.create_vector(&q.scale);
            let zero_point = fbb.create_vector(&q.zero_point);
            tfl::QuantizationParameters::create(
                &mut fbb,
                &tfl::QuantizationParametersArgs {
                    scale: Some(scale),
                    zero_point: Some(zero_point),
                    quantized_dimension: q.dim,
                    ..Default::default()
                },
            )
        });
        tensors.push(tfl::Tensor::create(
            &mut fbb,
            &tfl::TensorArgs {
                shape: Some(shape),
                type_: t.dtype,
                buffer: t.buffer,
                name: Some(name),
                quantization,
                ..Default::default()
            },
        ));
    }
    let tensors = fbb.create_vector(&tensors);
    let mut codes: Vec<tfl::BuiltinOperator> = Vec::new();
    let mut ops = Vec::with_capacity(g.ops.len());
    for op in &g.ops {
        let opcode_index = codes.iter().position(|&c| c == op.code).unwrap_or_else(|| {
            codes.push(op.code);
            codes.len() - 1
        }) as u32;
        let inputs = fbb.create_vector(&op.inputs);
        let outputs = fbb.create_vector(&op.outputs);
        let (ty, opts): (tfl::BuiltinOptions, WIPOffset<flatbuffers::UnionWIPOffset>) = match op.opts {
            Opts::Conv { pad, sh, sw, act } => (
                tfl::BuiltinOptions::Conv2DOptions,
                tfl::Conv2DOptions::create(
                    &mut fbb,
                    &tfl::Conv2DOptionsArgs {
                        padding: pad,
                        stride_w: sw as i32,
                        stride_h: sh as i32,
                        fused_activation_function: act,
                        ..Default::default()
                    },
                )
                .as_union_value(),
            ),
            Opts::Depthwise { pad, sh, sw, act } => (
                tfl::BuiltinOptions::DepthwiseConv2DOptions,
                tfl::DepthwiseConv2DOptions::create(
                    &mut fbb,
                    &tfl::DepthwiseConv2DOptionsArgs {
                        padding: pad,
                        stride_w: sw as i32,
                        stride_h: sh as i32,
                        depth_multiplier: 1,
                        fused_activation_function: act,
                        ..Default::default()
                    },
                )
                .as_union_value(),
            ),
            Opts::Fc { act } => (
                tfl::BuiltinOptions::FullyConnectedOptions,
                tfl::FullyConnectedOptions::create(
                    &mut fbb,
                    &tfl::FullyConnectedOptionsArgs { fused_activation_function: act, ..Default::default() },
                )
                .as_union_value(),
            ),
            Opts::Pool { pad, sh, sw, kh, kw } => (
                tfl::BuiltinOptions::Pool2DOptions,
                tfl::Pool2DOptions::create(
                    &mut fbb,
                    &tfl::Pool2DOptionsArgs {
                        padding: pad,
                        stride_w: sw as i32,
                        stride_h: sh as i32,
                        filter_width: kw as i32,
                        filter_height: kh as i32,
                        fused_activation_function: tfl::ActivationFunctionType::NONE,
                    },
                )
                .as_union_value(),
            ),
            Opts::Add { act } => (
                tfl::BuiltinOptions::AddOptions,
                tfl::AddOptions::create(
                    &mut fbb,
                    &tfl::AddOptionsArgs { fused_activation_function: act, ..Default::default() },
                )
                .as_union_value(),
            ),
            Opts::Reshape => (
                tfl::BuiltinOptions::ReshapeOptions,
                tfl::ReshapeOptions::create(&mut fbb, &tfl::ReshapeOptionsArgs { new_shape: None }).as_union_value(),
            ),
            Opts::Reducer { keep_dims } => (
                tfl::BuiltinOptions::ReducerOptions,
                tfl::ReducerOptions::create(&mut fbb, &tfl::ReducerOptionsArgs { keep_dims }).as_union_value(),
            ),
            Opts::Pad => (
                tfl::BuiltinOptions::PadOptions,
                tfl::PadOptions::create(&mut fbb, &tfl::PadOptionsArgs {}).as_union_value(),
            ),
            Opts::PadV2 => (
                tfl::BuiltinOptions::PadV2Options,
                tfl::PadV2Options::create(&mut fbb, &tfl::PadV2OptionsArgs {}).as_union_value(),
            ),
            Opts::MaxMin => (
                tfl::BuiltinOptions::MaximumMinimumOptions,
                tfl::MaximumMinimumOptions::create(&mut fbb, &tfl::MaximumMinimumOptionsArgs {}).as_union_value(),
            ),
        };
        ops.push(tfl::Operator::create(
            &mut fbb,
            &tfl::OperatorArgs {
                opcode_index,
                inputs: Some(inputs),
                outputs: Some(outputs),
                builtin_options_type: ty,
                builtin_options: Some(opts),
                ..Default::default()
            },
        ));
    }
    let ops = fbb.create_vector(&ops);
    let ins = fbb.create_vector(&[input]);
    let outs = fbb.create_vector(&[output]);
    let sg_name = fbb.create_string(name);
    let sg = tfl::SubGraph::create(
        &mut fbb,
        &tfl::SubGraphArgs {
            tensors: Some(tensors),
            inputs: Some(ins),
            outputs: Some(outs),
            operators: Some(ops),
            name: Some(sg_name),
            ..Default::default()
        },
    );
    let subgraphs = fbb.create_vector(&[sg]);
    let code_offsets: Vec<_> = codes
        .iter()
        .map(|&c| {
            tfl::OperatorCode::create(
                &mut fbb,
                &tfl::OperatorCodeArgs {
                    deprecated_builtin_code: c.0.min(127) as i8,
                    custom_code: None,
                    version: 1,
                    builtin_code: c,
                },
            )
        })
        .collect();
    let operator_codes = fbb.create_vector(&code_offsets);
    let description = fbb.create_string("releq export");
    let root = tfl::Model::create(
        &mut fbb,
        &tfl::ModelArgs {
            version: 3,
            operator_codes: Some(operator_codes),
            subgraphs: Some(subgraphs),
            description: Some(description),
            buffers: Some(buffers),
            ..Default::default()
        },
    );
    tfl::finish_model_buffer(&mut fbb, root);
    let mut out = fbb.finished_data().to_vec();
    // Buffer data sits at multiples of 16 from the end; make the length a
    // multiple of 16 too by inserting zeros after the 8-byte header (root
    // offset and identifier), moving the root offset by as much: every other
    // offset in a flatbuffer is relative, and the padding is a multiple of
    // the builder's 8-byte alignment.
    let pad = (16 - out.len() % 16) % 16;
    if pad != 0 {
        let root_off = u32::from_le_bytes([out[0], out[1], out[2], out[3]]) + pad as u32;
        out.splice(8..8, std::iter::repeat_n(0u8, pad));
        out[0..4].copy_from_slice(&root_off.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int4_packs_low_nibble_first() {
        assert_eq!(pack_int4(&[1, -2, 7, -8, 3]), vec![0xe1, 0x87, 0x03]);
    }

    #[test]
    fn filter_scale_reproduces_quantizer_multipliers() {
        let mut seed = 12345u32;
        for _ in 0..2000 {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let s_in = 1e-3 + (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.1;
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            let s_w = 1e-4 + (seed >> 8) as f32 / (1u32 << 24) as f32 * 0.05;
            let s_out = 0.02f32;
            let rq = quantize_multiplier(s_in as f64 * s_w as f64 / s_out as f64);
            let found = filter_scale(s_in, s_out, rq, false).expect("a scale exists");
            assert_eq!(quantize_multiplier(s_in as f64 * found as f64 / s_out as f64), rq);
            let rq = quantize_multiplier((s_in * s_w) as f64 / s_out as f64);
            let found = filter_scale(s_in, s_out, rq, true).expect("a scale exists");
            assert_eq!(quantize_multiplier((s_in * found) as f64 / s_out as f64), rq);
        }
    }

    #[test]
    fn buffers_are_16_byte_aligned_and_verified() {
        for seed in 1..=8 {
            let m = releq_common::testing::random_model(seed, true);
            let ex = export_tflite(&m.plan().unwrap()).unwrap();
            let model = tfl::root_as_model(&ex.bytes).expect("the flatbuffers verifier accepts the file");
            let mut seen = 0;
            for b in model.buffers().unwrap().iter() {
                if let Some(d) = b.data() {
                    let off = d.bytes().as_ptr() as usize - ex.bytes.as_ptr() as usize;
                    assert_eq!(off % 16, 0, "random-{seed}: buffer data at byte {off}");
                    seen += 1;
                }
            }
            assert!(seen >= 10, "random-{seed}: {seen} buffers");
        }
    }

    #[test]
    fn clamp_plan_adds_only_missing_bounds() {
        let q = TensorQuant { scale: 0.05, zero_point: -8, bits: 4 };
        // 4-bit ReLU: [-8, 7]; fused RELU gives [-8, 127]: only a MINIMUM.
        assert_eq!(plan_clamp(Activation::Relu, -8, 7, &q), (tfl::ActivationFunctionType::RELU, None, Some(7)));
        let q8 = TensorQuant { scale: 0.05, zero_point: -3, bits: 8 };
        assert_eq!(plan_clamp(Activation::Relu, -3, 127, &q8), (tfl::ActivationFunctionType::RELU, None, None));
        assert_eq!(plan_clamp(Activation::None, -128, 127, &q8), (tfl::ActivationFunctionType::NONE, None, None));
        // No activation, 3-bit output: both bounds.
        let q3 = TensorQuant { scale: 0.05, zero_point: 0, bits: 3 };
        assert_eq!(plan_clamp(Activation::None, -4, 3, &q3), (tfl::ActivationFunctionType::NONE, Some(-4), Some(3)));
    }
}
