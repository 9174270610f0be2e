//! Converting a `.tflite` [`Graph`] into a `.releq` model, bit-exact with
//! TFLite Micro's int8 kernels.
//!
//! The `.releq` layers already run TFLite's double-rounding arithmetic
//! (`releq_common::quant`); what the importer must reproduce is how TFLite
//! Micro derives each op's constants from the file:
//!
//! - CONV_2D, DEPTHWISE_CONV_2D, per-channel FULLY_CONNECTED: the multiplier
//!   of channel `c` is `QuantizeMultiplier((double)s_in * (double)s_w[c] /
//!   (double)s_out)`; a per-tensor filter scale is used for every channel.
//! - Per-tensor FULLY_CONNECTED: `s_in * s_w` is multiplied in `f32` first,
//!   then divided by `s_out` in `f64` (`GetQuantizedConvolutionMultipler`).
//! - Fused ReLU / ReLU6: the clamp `[max(-128, z), min(127, z + round(6 /
//!   s))]`, rounded in `f32` (`builder::activation_clamp`).
//! - SAME padding: `out = ceil(in / s)`, `total = max((out - 1) * s + k -
//!   in, 0)`, `floor(total / 2)` before and the rest after, so stride 2 on an
//!   even input pads only the bottom / right.
//! - PAD (constant, with the zero point): folded into the padding of the
//!   CONV_2D / DEPTHWISE_CONV_2D that reads it, whose padded positions hold
//!   the input's zero point too.
//! - AVERAGE_POOL_2D: the in-image codes summed and divided rounding half away
//!   from zero, which is the `.releq` average pool.
//! - MEAN over height and width (global average pooling) has its own rule:
//!   `(m, sh) = QuantizeMultiplier(s_in / s_out)`, `k = min(floor(log2 N), 32,
//!   31 + sh)`, `m' = (m << k) / N`, `sh' = sh - k`, `y = MBQM(sum(x) - z_in *
//!   N, m', sh') + z_out`. That is exactly a depthwise convolution over the
//!   whole `H x W` window with every weight 1, bias 0 and the per-channel
//!   requantisation `(m', sh')`, which is how it is written.
//! - ADD: `releq_common::quant::add_params` (left shift 20, `2 * max(s1,
//!   s2)`), TFLite's own computation.
//! - RESHAPE: a `.releq` reshape; with a dynamic batch dimension the new shape
//!   is computed by SHAPE / STRIDED_SLICE / PACK ops, which are dropped (the
//!   file's static shape is the batch-1 one).
//! - QUANTIZE at the input (float -> int8), SOFTMAX and DEQUANTIZE at the
//!   output are not converted: the `.releq` model reads the int8 codes that
//!   QUANTIZE would write and outputs the codes SOFTMAX would read. They are
//!   listed in the [`Summary`].

use super::tflite::{self, Act, DType, Graph, Op, Options, Pad, Tensor};
use super::ImportError;
use releq_common::builder::{activation_clamp, OwnedModel, OwnedWeights, NO_WEIGHTS};
use releq_common::model::{self, Activation, Clamp, Layer, Padding, Shape, TensorQuant};
use releq_common::quant::{add_params, quantize_multiplier, QuantizedMultiplier};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// The TFLite operators the importer accepts.
pub const SUPPORTED: &[&str] = &[
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "MEAN",
    "ADD",
    "RESHAPE",
    "PAD",
    "QUANTIZE (model input)",
    "DEQUANTIZE (model output)",
    "SOFTMAX (model output)",
    "SHAPE / STRIDED_SLICE / PACK (shape computation)",
];

/// What became of one TFLite operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpReport {
    /// Operator index in subgraph 0.
    pub index: usize,
    /// TFLite operator name.
    pub op: String,
    /// `converted`, `folded` or `boundary`.
    pub fate: &'static str,
    /// The `.releq` layer kind written, or what the op was folded into.
    pub detail: String,
}

/// A tensor at the boundary of the converted model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Boundary {
    /// Tensor index in the `.tflite` file.
    pub tensor: usize,
    /// Tensor name.
    pub name: String,
    /// Shape `[h, w, c]` of the `.releq` tensor.
    pub shape: [u16; 3],
    /// Layout of the codes (TFLite's NHWC, batch 1).
    pub layout: &'static str,
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
    /// Element type of the file's own input / output tensor (`FLOAT32` when a
    /// QUANTIZE / DEQUANTIZE sits at the boundary).
    pub file_dtype: &'static str,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The `.releq` model's input.
    pub input: Boundary,
    /// The `.releq` model's output.
    pub output: Boundary,
    /// Every operator of the file, in order.
    pub ops: Vec<OpReport>,
    /// Number of `.releq` layers written.
    pub layers: usize,
}

/// An imported model and what the import did.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The model (validated).
    pub model: OwnedModel,
    /// The report.
    pub summary: Summary,
}

/// A converted int8 tensor.
#[derive(Debug, Clone, Copy)]
struct Val {
    id: u16,
    shape: Shape,
    quant: TensorQuant,
}

fn op_err(op: &Op, reason: impl Into<String>) -> ImportError {
    ImportError::Op { index: op.index, op: op.name.clone(), reason: reason.into() }
}

fn tensor_err(index: usize, t: &Tensor, reason: impl Into<String>) -> ImportError {
    ImportError::Tensor { index, name: t.name.clone(), reason: reason.into() }
}

/// The `.releq` shape of a batch-1 tensor: `[1, h, w, c]`, `[1, n]` (1 x 1 x
/// n), `[1, w, c]` (1 x w x c) or `[n]`.
fn shape_of(index: usize, t: &Tensor) -> Result<Shape, ImportError> {
    let shape = shape_dims(index, t)?;
    if shape.len() > MAX_ELEMS {
        return Err(tensor_err(index, t, format!("has {} elements, more than the {MAX_ELEMS} converted", shape.len())));
    }
    Ok(shape)
}

/// Most elements an activation tensor may have (far above what fits a
/// microcontroller; it bounds what the conversion allocates).
pub const MAX_ELEMS: usize = 1 << 24;

fn shape_dims(index: usize, t: &Tensor) -> Result<Shape, ImportError> {
    let d = &t.shape;
    let dims: Vec<i32> = match d.len() {
        1 => vec![1, 1, d[0]],
        2..=4 => {
            if d[0] != 1 {
                return Err(tensor_err(
                    index,
                    t,
                    format!("has batch {} (shape {d:?}); only batch 1 is converted", d[0]),
                ));
            }
            let mut v = vec![1; 4 - d.len()];
            v.extend_from_slice(&d[1..]);
            v
        }
        _ => {
            return Err(tensor_err(index, t, format!("has rank {} (shape {d:?}); ranks 1 to 4 are converted", d.len())))
        }
    };
    let dim = |x: i32| {
        u16::try_from(x)
            .ok()
            .filter(|&x| x > 0)
            .ok_or_else(|| tensor_err(index, t, format!("has dimension {x} (shape {d:?}), outside 1..=65535")))
    };
    Ok(Shape::new(dim(dims[0])?, dim(dims[1])?, dim(dims[2])?))
}

/// The per-tensor int8 quantisation of an activation tensor.
fn act_quant(index: usize, t: &Tensor) -> Result<TensorQuant, ImportError> {
    if t.dtype != DType::I8 {
        return Err(tensor_err(index, t, format!("is {}, only INT8 activations are converted", t.dtype.name())));
    }
    let q = t.quant.as_ref().ok_or_else(|| tensor_err(index, t, "has no quantisation parameters"))?;
    if q.scale.len() != 1 || q.zero_point.len() != 1 {
        return Err(tensor_err(
            index,
            t,
            format!(
                "has {} scales and {} zero points; an activation needs one of each",
                q.scale.len(),
                q.zero_point.len()
            ),
        ));
    }
    let (scale, zp) = (q.scale[0], q.zero_point[0]);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(tensor_err(index, t, format!("has scale {scale}; it must be positive and finite")));
    }
    if !(-128..=127).contains(&zp) {
        return Err(tensor_err(index, t, format!("has zero point {zp}, outside -128..=127")));
    }
    Ok(TensorQuant { scale, zero_point: zp as i32, bits: 8 })
}

fn same_quant(a: &TensorQuant, b: &TensorQuant) -> bool {
    a.scale.to_bits() == b.scale.to_bits() && a.zero_point == b.zero_point
}

/// SAME / VALID padding of one dimension: (before, after).
fn pad_1d(pad: Pad, input: u32, k: u32, stride: u32) -> (u32, u32) {
    match pad {
        Pad::Valid => (0, 0),
        Pad::Same => {
            let out = input.div_ceil(stride);
            let total = ((out.saturating_sub(1)) * stride + k).saturating_sub(input);
            (total / 2, total - total / 2)
        }
    }
}

fn activation(op: &Op, a: Act) -> Result<Activation, ImportError> {
    match a {
        Act::None => Ok(Activation::None),
        Act::Relu => Ok(Activation::Relu),
        Act::Relu6 => Ok(Activation::Relu6),
        Act::Other(n) => Err(op_err(op, format!("has fused activation {n}; NONE, RELU and RELU6 are supported"))),
    }
}

fn byte(op: &Op, what: &str, v: u32) -> Result<u8, ImportError> {
    u8::try_from(v).map_err(|_| op_err(op, format!("{what} {v} is larger than 255")))
}

/// The values of an int8 constant tensor with `expected` elements.
fn const_i8(index: usize, t: &Tensor, expected: u64) -> Result<Vec<i8>, ImportError> {
    if t.dtype != DType::I8 {
        return Err(tensor_err(index, t, format!("is {}; only INT8 weights are converted", t.dtype.name())));
    }
    let data = t.data.as_ref().ok_or_else(|| tensor_err(index, t, "has no constant data"))?;
    if data.len() as u64 != expected {
        return Err(tensor_err(
            index,
            t,
            format!("has {} bytes of data, its shape {:?} needs {expected}", data.len(), t.shape),
        ));
    }
    Ok(data.iter().map(|&b| b as i8).collect())
}

/// The values of an int32 constant tensor with `expected` elements.
fn const_i32(index: usize, t: &Tensor, expected: Option<u64>) -> Result<Vec<i32>, ImportError> {
    if t.dtype != DType::I32 {
        return Err(tensor_err(index, t, format!("is {}, expected INT32", t.dtype.name())));
    }
    let data = t.data.as_ref().ok_or_else(|| tensor_err(index, t, "has no constant data"))?;
    let n = expected.unwrap_or(t.elems().unwrap_or(u64::MAX));
    if data.len() as u64 != n.saturating_mul(4) {
        return Err(tensor_err(
            index,
            t,
            format!("has {} bytes of data, {n} INT32 values need {}", data.len(), n.saturating_mul(4)),
        ));
    }
    Ok(data.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Per-channel (or per-tensor) symmetric weight scales along `dim`.
fn weight_scales(index: usize, t: &Tensor, channels: usize, dim: i32) -> Result<Vec<f32>, ImportError> {
    let q = t.quant.as_ref().ok_or_else(|| tensor_err(index, t, "has no quantisation parameters"))?;
    if q.zero_point.iter().any(|&z| z != 0) {
        return Err(tensor_err(index, t, "has a non-zero zero point; weights must be symmetric"));
    }
    if let Some(s) = q.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(tensor_err(index, t, format!("has scale {s}; scales must be positive and finite")));
    }
    match q.scale.len() {
        1 => Ok(vec![q.scale[0]; channels]),
        n if n == channels && q.dim == dim => Ok(q.scale.clone()),
        n => Err(tensor_err(
            index,
            t,
            format!("has {n} scales on dimension {}; expected 1, or {channels} on dimension {dim}", q.dim),
        )),
    }
}

struct Converter<'g> {
    g: &'g Graph,
    vals: HashMap<usize, Val>,
    /// PAD outputs waiting to be folded: (PAD input, padding, PAD op index).
    pads: HashMap<usize, (usize, [u32; 4], usize)>,
    model: OwnedModel,
    /// For each layer: the op it came from and TFLite's output shape.
    layer_ops: Vec<(usize, Shape)>,
    reports: Vec<OpReport>,
}

impl<'g> Converter<'g> {
    fn tidx(&self, op: &Op, slot: usize) -> Result<usize, ImportError> {
        let i = *op.inputs.get(slot).ok_or_else(|| op_err(op, format!("has no input {slot}")))?;
        self.g.tensor(op, i)?;
        Ok(i as usize)
    }

    fn out_idx(&self, op: &Op) -> Result<usize, ImportError> {
        if op.outputs.len() != 1 {
            return Err(op_err(op, format!("has {} outputs, expected 1", op.outputs.len())));
        }
        self.g.tensor(op, op.outputs[0])?;
        Ok(op.outputs[0] as usize)
    }

    fn val(&self, op: &Op, t: usize) -> Result<Val, ImportError> {
        if let Some(v) = self.vals.get(&t) {
            return Ok(*v);
        }
        let tensor = &self.g.tensors[t];
        if self.pads.contains_key(&t) {
            return Err(op_err(
                op,
                format!(
                    "reads tensor {t} ({:?}) from a PAD; a PAD is only folded into CONV_2D / DEPTHWISE_CONV_2D",
                    tensor.name
                ),
            ));
        }
        Err(op_err(
            op,
            format!("reads tensor {t} ({:?}), which is not an activation computed by a converted op", tensor.name),
        ))
    }

    fn push(
        &mut self,
        op: &Op,
        layer: Layer<'static>,
        w: Option<OwnedWeights>,
        out: usize,
        shape: Shape,
        q: TensorQuant,
    ) {
        let id = self.model.push(layer, w);
        self.vals.insert(out, Val { id, shape, quant: q });
        self.layer_ops.push((op.index, shape));
        self.reports.push(OpReport {
            index: op.index,
            op: op.name.clone(),
            fate: "converted",
            detail: layer.kind().into(),
        });
    }

    fn out_val(&self, op: &Op) -> Result<(usize, Shape, TensorQuant), ImportError> {
        let o = self.out_idx(op)?;
        let t = &self.g.tensors[o];
        Ok((o, shape_of(o, t)?, act_quant(o, t)?))
    }

    fn conv(&mut self, op: &Op, depthwise: bool) -> Result<(), ImportError> {
        let Options::Conv { pad, stride, dilation, depth_multiplier, act } = op.options else {
            return Err(op_err(op, "has no options"));
        };
        if dilation != (1, 1) {
            return Err(op_err(op, format!("has dilation {dilation:?}; only 1 is supported")));
        }
        let (sh, sw) = stride;
        if !(1..=255).contains(&sh) || !(1..=255).contains(&sw) {
            return Err(op_err(op, format!("has stride {stride:?}, outside 1..=255")));
        }
        let x = self.tidx(op, 0)?;
        let (src, extra) = match self.pads.get(&x) {
            Some(&(src, p, _)) => (src, p),
            None => (x, [0; 4]),
        };
        let xin = self.val(op, src)?;
        let fi = self.tidx(op, 1)?;
        let f = &self.g.tensors[fi];
        if f.shape.len() != 4 || f.shape.iter().any(|&d| d <= 0) {
            return Err(tensor_err(fi, f, format!("has shape {:?}; a filter has 4 positive dimensions", f.shape)));
        }
        let (o, i) = (f.shape[0] as u32, f.shape[3] as u32);
        let (kh, kw) =
            (byte(op, "kernel height", f.shape[1] as u32)? as u32, byte(op, "kernel width", f.shape[2] as u32)? as u32);
        let in_c = xin.shape.c as u32;
        let (out_c, per_row) = if depthwise {
            if o != 1 || i != in_c || depth_multiplier != 1 {
                return Err(op_err(
                    op,
                    format!(
                        "has filter shape {:?} and depth multiplier {depth_multiplier} on {in_c} channels; only multiplier 1 is supported",
                        f.shape
                    ),
                ));
            }
            (i, kh * kw)
        } else {
            if i != in_c {
                return Err(op_err(
                    op,
                    format!(
                        "has filter shape {:?} on {in_c} input channels (grouped convolution is not supported)",
                        f.shape
                    ),
                ));
            }
            (o, kh * kw * i)
        };
        // Each factor is below 2^31, kh and kw below 2^8: no overflow.
        let values = const_i8(fi, f, o as u64 * i as u64 * kh as u64 * kw as u64)?;
        let rows: Vec<i8> = if depthwise {
            // [1, kh, kw, c] -> one row of kh * kw per channel.
            (0..out_c as usize)
                .flat_map(|c| (0..per_row as usize).map(move |j| (c, j)))
                .map(|(c, j)| values[j * out_c as usize + c])
                .collect()
        } else {
            values // OHWI: already one HWC row per output channel.
        };
        let scales = weight_scales(fi, f, out_c as usize, if depthwise { 3 } else { 0 })?;
        let bias = self.bias(op, out_c as usize)?;
        let (out, oshape, oq) = self.out_val(op)?;
        let ph = xin.shape.h as u32 + extra[0] + extra[2];
        let pw = xin.shape.w as u32 + extra[1] + extra[3];
        let (top, bottom) = pad_1d(pad, ph, kh, sh as u32);
        let (left, right) = pad_1d(pad, pw, kw, sw as u32);
        let padding = Padding {
            top: byte(op, "top padding", top + extra[0])?,
            left: byte(op, "left padding", left + extra[1])?,
            bottom: byte(op, "bottom padding", bottom + extra[2])?,
            right: byte(op, "right padding", right + extra[3])?,
        };
        let s_in = xin.quant.scale as f64;
        let rq: Vec<QuantizedMultiplier> =
            scales.iter().map(|&s| quantize_multiplier(s_in * s as f64 / oq.scale as f64)).collect();
        let activation = activation(op, act)?;
        let conv = model::Conv2d {
            input: xin.id,
            out_c: u16::try_from(out_c).map_err(|_| op_err(op, format!("has {out_c} output channels")))?,
            kh: byte(op, "kernel height", kh)?,
            kw: byte(op, "kernel width", kw)?,
            stride_h: sh as u8,
            stride_w: sw as u8,
            pad: padding,
            act: activation,
            clamp: activation_clamp(activation, &oq),
            out: oq,
            w: NO_WEIGHTS,
        };
        let w = OwnedWeights::new(8, &rows, per_row as usize, &bias, &rq)
            .map_err(|e| tensor_err(fi, &self.g.tensors[fi], format!("cannot be packed: {e}")))?;
        let layer = if depthwise { Layer::DepthwiseConv2d(conv) } else { Layer::Conv2d(conv) };
        self.push(op, layer, Some(w), out, oshape, oq);
        if src != x {
            let pad_op = self.pads[&x].2;
            if let Some(r) = self.reports.iter_mut().find(|r| r.index == pad_op) {
                r.detail = format!("padding of operator {} ({})", op.index, op.name);
            }
        }
        Ok(())
    }

    /// Bias (input 2, optional) of `n` channels.
    fn bias(&self, op: &Op, n: usize) -> Result<Vec<i32>, ImportError> {
        match op.inputs.get(2) {
            None | Some(-1) => Ok(vec![0; n]),
            Some(_) => {
                let bi = self.tidx(op, 2)?;
                const_i32(bi, &self.g.tensors[bi], Some(n as u64))
            }
        }
    }

    fn fully_connected(&mut self, op: &Op) -> Result<(), ImportError> {
        let Options::FullyConnected { act, shuffled } = op.options else {
            return Err(op_err(op, "has no options"));
        };
        if let Some(f) = shuffled {
            return Err(op_err(op, format!("has weights format {f}; only DEFAULT is supported")));
        }
        let xin = self.val(op, self.tidx(op, 0)?)?;
        let wi = self.tidx(op, 1)?;
        let w = &self.g.tensors[wi];
        if w.shape.len() != 2 || w.shape.iter().any(|&d| d <= 0) {
            return Err(tensor_err(wi, w, format!("has shape {:?}; FULLY_CONNECTED weights are [out, in]", w.shape)));
        }
        let (o, n) = (w.shape[0] as usize, w.shape[1] as usize);
        if n != xin.shape.len() {
            return Err(op_err(
                op,
                format!("has {n} inputs per output, its input tensor has {} values", xin.shape.len()),
            ));
        }
        let values = const_i8(wi, w, o as u64 * n as u64)?;
        let scales = weight_scales(wi, w, o, 0)?;
        let per_tensor = w.quant.as_ref().is_some_and(|q| q.scale.len() == 1);
        let bias = self.bias(op, o)?;
        let (out, oshape, oq) = self.out_val(op)?;
        if oshape.len() != o {
            return Err(op_err(op, format!("has output shape {:?}, expected {o} values", self.g.tensors[out].shape)));
        }
        let s_in = xin.quant.scale;
        let rq: Vec<QuantizedMultiplier> = scales
            .iter()
            .map(|&s| {
                // TFLite Micro: per-tensor multiplies the scales in f32.
                let prod = if per_tensor { (s_in * s) as f64 } else { s_in as f64 * s as f64 };
                quantize_multiplier(prod / oq.scale as f64)
            })
            .collect();
        let activation = activation(op, act)?;
        let dense = model::Dense {
            input: xin.id,
            out_features: u16::try_from(o).map_err(|_| op_err(op, format!("has {o} outputs")))?,
            act: activation,
            clamp: activation_clamp(activation, &oq),
            out: oq,
            w: NO_WEIGHTS,
        };
        let wts = OwnedWeights::new(8, &values, n, &bias, &rq)
            .map_err(|e| tensor_err(wi, &self.g.tensors[wi], format!("cannot be packed: {e}")))?;
        self.push(op, Layer::Dense(dense), Some(wts), out, oshape, oq);
        Ok(())
    }

    fn pool(&mut self, op: &Op, max: bool) -> Result<(), ImportError> {
        let Options::Pool { pad, stride, filter, act } = op.options else {
            return Err(op_err(op, "has no options"));
        };
        if act != Act::None {
            return Err(op_err(op, format!("has fused activation {act:?}; pooling supports NONE only")));
        }
        let xin = self.val(op, self.tidx(op, 0)?)?;
        let (out, oshape, oq) = self.out_val(op)?;
        if !same_quant(&xin.quant, &oq) {
            return Err(op_err(op, "has different input and output quantisation; int8 pooling needs them equal"));
        }
        let b = |what, v: i32| {
            u8::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| op_err(op, format!("has {what} {v}, outside 1..=255")))
        };
        let (kh, kw, sh, sw) = (
            b("filter height", filter.0)?,
            b("filter width", filter.1)?,
            b("stride", stride.0)?,
            b("stride", stride.1)?,
        );
        let (top, bottom) = pad_1d(pad, xin.shape.h as u32, kh as u32, sh as u32);
        let (left, right) = pad_1d(pad, xin.shape.w as u32, kw as u32, sw as u32);
        let p = model::Pool {
            input: xin.id,
            kh,
            kw,
            stride_h: sh,
            stride_w: sw,
            pad: Padding {
                top: byte(op, "padding", top)?,
                left: byte(op, "padding", left)?,
                bottom: byte(op, "padding", bottom)?,
                right: byte(op, "padding", right)?,
            },
        };
        self.push(op, if max { Layer::MaxPool2d(p) } else { Layer::AvgPool2d(p) }, None, out, oshape, oq);
        Ok(())
    }

    fn mean(&mut self, op: &Op) -> Result<(), ImportError> {
        let x = self.tidx(op, 0)?;
        let xin = self.val(op, x)?;
        let ai = self.tidx(op, 1)?;
        let rank = self.g.tensors[x].shape.len() as i32;
        let mut axes: Vec<i32> =
            const_i32(ai, &self.g.tensors[ai], None)?.into_iter().map(|a| if a < 0 { a + rank } else { a }).collect();
        axes.sort_unstable();
        if rank != 4 || axes != [1, 2] {
            return Err(op_err(op, format!("reduces axes {axes:?} of a rank-{rank} tensor; only axes 1 and 2 of NHWC (global average pooling) are supported")));
        }
        let (out, oshape, oq) = self.out_val(op)?;
        let (h, w, c) = (xin.shape.h, xin.shape.w, xin.shape.c);
        let n = h as i64 * w as i64;
        // TFLite Micro's reference_ops::QuantizedMeanOrSum.
        let base = quantize_multiplier(xin.quant.scale as f64 / oq.scale as f64);
        let k = (63 - (n as u64).leading_zeros() as i32).min(32).min(31 + base.shift as i32);
        let rq = QuantizedMultiplier {
            multiplier: (((base.multiplier as i64) << k) / n) as i32,
            shift: (base.shift as i32 - k) as i8,
        };
        let conv = model::Conv2d {
            input: xin.id,
            out_c: c,
            kh: byte(op, "input height", h as u32)?,
            kw: byte(op, "input width", w as u32)?,
            stride_h: 1,
            stride_w: 1,
            pad: Padding::default(),
            act: Activation::None,
            clamp: Clamp { min: -128, max: 127 },
            out: oq,
            w: NO_WEIGHTS,
        };
        let k_len = h as usize * w as usize;
        let wts =
            OwnedWeights::new(8, &vec![1i8; k_len * c as usize], k_len, &vec![0; c as usize], &vec![rq; c as usize])
                .map_err(|e| op_err(op, format!("cannot be written: {e}")))?;
        if oshape.len() != c as usize {
            return Err(op_err(op, format!("has output shape {:?}, expected {c} values", self.g.tensors[out].shape)));
        }
        self.push(op, Layer::DepthwiseConv2d(conv), Some(wts), out, oshape, oq);
        if let Some(r) = self.reports.last_mut() {
            r.detail = "dwconv2d (global mean: weights 1, TFLite's MEAN multiplier)".into();
        }
        Ok(())
    }

    fn add(&mut self, op: &Op) -> Result<(), ImportError> {
        let Options::Add { act } = op.options else {
            return Err(op_err(op, "has no options"));
        };
        let a = self.val(op, self.tidx(op, 0)?)?;
        let b = self.val(op, self.tidx(op, 1)?)?;
        if a.shape != b.shape {
            return Err(op_err(
                op,
                format!("adds shapes {:?} and {:?}; broadcasting is not supported", a.shape, b.shape),
            ));
        }
        let (out, oshape, oq) = self.out_val(op)?;
        let activation = activation(op, act)?;
        let l = model::Add {
            input: a.id,
            other: b.id,
            act: activation,
            clamp: activation_clamp(activation, &oq),
            out: oq,
            params: add_params(a.quant.scale, b.quant.scale, oq.scale),
        };
        self.push(op, Layer::Add(l), None, out, oshape, oq);
        Ok(())
    }

    fn reshape(&mut self, op: &Op) -> Result<(), ImportError> {
        let xin = self.val(op, self.tidx(op, 0)?)?;
        let (out, oshape, oq) = self.out_val(op)?;
        if !same_quant(&xin.quant, &oq) {
            return Err(op_err(op, "has different input and output quantisation"));
        }
        if oshape.len() != xin.shape.len() {
            return Err(op_err(
                op,
                format!("reshapes {} values into {:?}", xin.shape.len(), self.g.tensors[out].shape),
            ));
        }
        self.push(op, Layer::Reshape(model::Reshape { input: xin.id, shape: oshape }), None, out, oshape, oq);
        Ok(())
    }

    fn pad(&mut self, op: &Op) -> Result<(), ImportError> {
        let x = self.tidx(op, 0)?;
        let xin = self.val(op, x)?;
        let pi = self.tidx(op, 1)?;
        let rank = self.g.tensors[x].shape.len();
        let p = const_i32(pi, &self.g.tensors[pi], Some(rank as u64 * 2))?;
        if rank != 4 || p[0] != 0 || p[1] != 0 || p[6] != 0 || p[7] != 0 || p.iter().any(|&v| !(0..=255).contains(&v)) {
            return Err(op_err(op, format!("pads {p:?} on a rank-{rank} tensor; only height and width padding of NHWC, each 0..=255, is supported")));
        }
        let out = self.out_idx(op)?;
        let oq = act_quant(out, &self.g.tensors[out])?;
        if !same_quant(&xin.quant, &oq) {
            return Err(op_err(op, "has different input and output quantisation"));
        }
        let readers: Vec<&Op> = self.g.ops.iter().filter(|o| o.inputs.contains(&(out as i32))).collect();
        if readers.is_empty()
            || readers
                .iter()
                .any(|o| !matches!(o.name.as_str(), "CONV_2D" | "DEPTHWISE_CONV_2D") || o.inputs[0] != out as i32)
        {
            return Err(op_err(
                op,
                "is read by an op other than CONV_2D / DEPTHWISE_CONV_2D; a PAD is only folded into their padding",
            ));
        }
        // [top, left, bottom, right]
        self.pads.insert(out, (x, [p[2] as u32, p[4] as u32, p[3] as u32, p[5] as u32], op.index));
        self.reports.push(OpReport { index: op.index, op: op.name.clone(), fate: "folded", detail: "padding".into() });
        Ok(())
    }
}

/// The int8 tensor the `.releq` model starts from, and the QUANTIZE op (if
/// any) that writes it from the file's float input.
fn find_input(g: &Graph) -> Result<(usize, Option<usize>), ImportError> {
    let &[i] = g.inputs.as_slice() else {
        return Err(ImportError::Graph(format!("the subgraph has {} inputs; exactly 1 is supported", g.inputs.len())));
    };
    let t = usize::try_from(i)
        .ok()
        .filter(|&i| i < g.tensors.len())
        .ok_or_else(|| ImportError::Graph(format!("the subgraph input is tensor {i}, which does not exist")))?;
    match g.tensors[t].dtype {
        DType::I8 => Ok((t, None)),
        DType::F32 => {
            let readers: Vec<&Op> = g.ops.iter().filter(|o| o.inputs.contains(&i)).collect();
            match readers.as_slice() {
                [q] if q.name == "QUANTIZE" && q.outputs.len() == 1 => {
                    let o = usize::try_from(q.outputs[0])
                        .ok()
                        .filter(|&o| o < g.tensors.len())
                        .ok_or_else(|| op_err(q, "writes a tensor that does not exist"))?;
                    Ok((o, Some(q.index)))
                }
                _ => {
                    Err(tensor_err(t, &g.tensors[t], "is the FLOAT32 model input but is not read by a single QUANTIZE"))
                }
            }
        }
        d => Err(tensor_err(
            t,
            &g.tensors[t],
            format!("is the model input of type {}; INT8 or FLOAT32 (with a QUANTIZE) is supported", d.name()),
        )),
    }
}

/// The int8 tensor the `.releq` model ends with, and the boundary ops
/// (SOFTMAX, DEQUANTIZE) after it.
fn find_output(g: &Graph) -> Result<(usize, Vec<usize>), ImportError> {
    let &[o] = g.outputs.as_slice() else {
        return Err(ImportError::Graph(format!(
            "the subgraph has {} outputs; exactly 1 is supported",
            g.outputs.len()
        )));
    };
    if usize::try_from(o).map_or(true, |o| o >= g.tensors.len()) {
        return Err(ImportError::Graph(format!("the subgraph output is tensor {o}, which does not exist")));
    }
    let mut t = o;
    let mut boundary = Vec::new();
    while let Some(op) = g.ops.iter().find(|op| op.outputs.contains(&t)) {
        if !matches!(op.name.as_str(), "DEQUANTIZE" | "SOFTMAX") || boundary.len() >= 2 {
            break;
        }
        boundary.push(op.index);
        t = *op.inputs.first().ok_or_else(|| op_err(op, "has no input"))?;
    }
    let t = usize::try_from(t)
        .ok()
        .filter(|&t| t < g.tensors.len())
        .ok_or_else(|| ImportError::Graph(format!("the model output is tensor {t}, which does not exist")))?;
    Ok((t, boundary))
}

fn boundary(g: &Graph, t: usize, file_t: usize, v: &Val) -> Boundary {
    Boundary {
        tensor: t,
        name: g.tensors[t].name.clone(),
        shape: [v.shape.h, v.shape.w, v.shape.c],
        layout: "NHWC",
        scale: v.quant.scale,
        zero_point: v.quant.zero_point,
        file_dtype: g.tensors[file_t].dtype.name(),
    }
}

/// Convert a parsed graph (see the module doc for the arithmetic).
pub fn convert(g: &Graph, name: &str) -> Result<Imported, ImportError> {
    let (tin, quantize) = find_input(g)?;
    let (tout, tail) = find_output(g)?;
    let in_shape = shape_of(tin, &g.tensors[tin])?;
    let in_q = act_quant(tin, &g.tensors[tin])?;
    let mut c = Converter {
        g,
        vals: HashMap::from([(tin, Val { id: 0, shape: in_shape, quant: in_q })]),
        pads: HashMap::new(),
        model: OwnedModel::new(name.chars().take(model::MAX_NAME).collect::<String>(), in_shape, in_q),
        layer_ops: Vec::new(),
        reports: Vec::new(),
    };
    let boundary_ops: HashSet<usize> = quantize.into_iter().chain(tail.iter().copied()).collect();
    for op in &g.ops {
        if boundary_ops.contains(&op.index) {
            let detail = match op.name.as_str() {
                "QUANTIZE" => "model input: the .releq model reads its INT8 output codes",
                "SOFTMAX" => "model output: the .releq model outputs the codes SOFTMAX reads",
                _ => "model output: the .releq model outputs the INT8 codes",
            };
            c.reports.push(OpReport { index: op.index, op: op.name.clone(), fate: "boundary", detail: detail.into() });
            continue;
        }
        match op.name.as_str() {
            "CONV_2D" => c.conv(op, false)?,
            "DEPTHWISE_CONV_2D" => c.conv(op, true)?,
            "FULLY_CONNECTED" => c.fully_connected(op)?,
            "MAX_POOL_2D" => c.pool(op, true)?,
            "AVERAGE_POOL_2D" => c.pool(op, false)?,
            "MEAN" => c.mean(op)?,
            "ADD" => c.add(op)?,
            "RESHAPE" => c.reshape(op)?,
            "PAD" => c.pad(op)?,
            "SHAPE" | "STRIDED_SLICE" | "PACK" => {
                // Shape arithmetic for a dynamic batch: its INT32 results may
                // only feed other shape ops or RESHAPE's shape input.
                for &o in &op.outputs {
                    let t = g.tensor(op, o)?;
                    if t.dtype != DType::I32 || c.vals.contains_key(&(o as usize)) {
                        return Err(op_err(op, "computes data, not a shape; only shape computations are folded"));
                    }
                    if let Some(r) = g.ops.iter().find(|r| {
                        r.inputs.iter().position(|&i| i == o).is_some_and(|slot| {
                            !(matches!(r.name.as_str(), "SHAPE" | "STRIDED_SLICE" | "PACK")
                                || (r.name == "RESHAPE" && slot == 1))
                        })
                    }) {
                        return Err(op_err(
                            op,
                            format!("feeds operator {} ({}), which is not a shape computation", r.index, r.name),
                        ));
                    }
                }
                c.reports.push(OpReport {
                    index: op.index,
                    op: op.name.clone(),
                    fate: "folded",
                    detail: "batch-1 shape of a RESHAPE".into(),
                });
            }
            "QUANTIZE" | "DEQUANTIZE" | "SOFTMAX" => return Err(op_err(
                op,
                "is only supported at the model boundary (QUANTIZE at the input, SOFTMAX / DEQUANTIZE at the output)",
            )),
            _ => return Err(ImportError::Unsupported { index: op.index, op: op.name.clone() }),
        }
    }
    let out_v = *c.vals.get(&tout).ok_or_else(|| {
        ImportError::Graph(format!(
            "the model output tensor {tout} ({:?}) is not computed by a converted op",
            g.tensors[tout].name
        ))
    })?;
    if out_v.id == 0 || out_v.id != c.model.last() {
        return Err(ImportError::Graph(format!(
            "the model output tensor {tout} ({:?}) is not the last tensor computed",
            g.tensors[tout].name
        )));
    }
    {
        let plan = c.model.plan()?;
        for (i, &(op_i, want)) in c.layer_ops.iter().enumerate() {
            let got = plan.tensors[i + 1].shape;
            if got != want {
                let op = &g.ops[op_i];
                return Err(op_err(
                    op,
                    format!("has output shape {want:?} in the file, the converted layer computes {got:?}"),
                ));
            }
        }
    }
    let file_in = g.inputs[0] as usize;
    let file_out = g.outputs[0] as usize;
    let summary = Summary {
        input: boundary(g, tin, file_in, &c.vals[&tin]),
        output: boundary(g, tout, file_out, &out_v),
        ops: c.reports,
        layers: c.model.layers.len(),
    };
    Ok(Imported { model: c.model, summary })
}

/// Read and convert a `.tflite` file; `name` becomes the model's name.
pub fn import_tflite(bytes: &[u8], name: &str) -> Result<Imported, ImportError> {
    convert(&tflite::read(bytes)?, name)
}
