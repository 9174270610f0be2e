//! A `.tflite` model's dequantized weights as a float checkpoint
//! (`releq import model.tflite --float --out runs/NAME`), so that a
//! quantized model from TFLite can be re-quantized, fine-tuned and searched
//! at other bitwidths.
//!
//! The graph is read by [`super::tflite::read`] (verified first). Weights
//! become `scale[c] * (q - zero_point[c])` (per channel along the tensor's
//! quantized dimension, or per tensor), int32 biases `b * s_in * s_w[c]`;
//! float32 tensors are taken as they are. Layouts: TFLite is NHWC like
//! releq, so a flatten needs no permutation; convolution filters OHWI become
//! OIHW, depthwise filters `[1, H, W, C]` the `(C, 1, H, W)` weights of a
//! depthwise convolution (exported as `.releq`'s `DepthwiseConv2d`).
//! `SAME` padding must be the same on every side (odd kernels at stride 1);
//! a `PAD` is merged into the convolution that reads it. `QUANTIZE` at the
//! input and `SOFTMAX` / `DEQUANTIZE` at the output are left out (the
//! checkpoint's outputs are the logits). The input is taken as pixel / 255:
//! a note says when the file's input quantisation does not span [0, 1].

use super::onnx::Param;
use super::tflite::{self, Act as TAct, DType, Graph, Op as TOp, Options, Pad};
use super::ImportError;
use crate::checkpoint::{GraphFile, InputInfo, GRAPH_FORMAT};
use crate::data::Dataset;
use crate::nn::spec::{Act, Op, Spec};
use std::collections::HashMap;

/// The `.tflite` ops `--float` converts.
pub const SUPPORTED: &[&str] = &[
    "CONV_2D",
    "DEPTHWISE_CONV_2D (multiplier 1)",
    "FULLY_CONNECTED",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "MEAN (axes 1, 2)",
    "ADD",
    "PAD (before a convolution)",
    "RESHAPE (flatten)",
    "QUANTIZE (input)",
    "DEQUANTIZE, SOFTMAX (output)",
];

/// A `.tflite` model as a float checkpoint.
#[derive(Debug, Clone)]
pub struct FloatImport {
    /// The graph (`graph.json`).
    pub graph: GraphFile,
    /// Its float parameters.
    pub params: Vec<Param>,
    /// What was dropped, merged or rewritten, one line each.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Val {
    /// Spec tensor `t` of shape `[h, w, c]`.
    Act { t: usize, shape: [usize; 3] },
    /// Spec tensor `t` zero-padded by `p` on every side (a PAD not yet
    /// merged into its convolution).
    Padded { t: usize, shape: [usize; 3], p: usize },
}

fn op_err(op: &TOp, reason: impl Into<String>) -> ImportError {
    ImportError::Op { index: op.index, op: op.name.clone(), reason: reason.into() }
}

/// The real values of a constant tensor.
fn real(g: &Graph, op: &TOp, index: i32, what: &str) -> Result<(Vec<f32>, Vec<usize>), ImportError> {
    let t = g.tensor(op, index)?;
    let terr = |reason: String| ImportError::Tensor { index: index as usize, name: t.name.clone(), reason };
    let data = t.data.as_ref().ok_or_else(|| terr(format!("({what}) has no constant data")))?;
    let shape: Vec<usize> = t.shape.iter().map(|&d| d.max(0) as usize).collect();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = match t.dtype {
        DType::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        DType::I8 => {
            let q = t.quant.as_ref().ok_or_else(|| terr(format!("({what}) is int8 without quantisation")))?;
            dequant(q, data.iter().map(|&b| f64::from(b as i8)), &shape).map_err(terr)?
        }
        other => {
            return Err(terr(format!("({what}) has type {}; INT8 and FLOAT32 weights are supported", other.name())))
        }
    };
    if v.len() != n {
        return Err(terr(format!("({what}) has {} values for shape {shape:?}", v.len())));
    }
    Ok((v, shape))
}

fn dequant(q: &tflite::Quant, codes: impl Iterator<Item = f64>, shape: &[usize]) -> Result<Vec<f32>, String> {
    let d = q.dim.max(0) as usize;
    let per = q.scale.len();
    let (stride, len) = if per > 1 {
        if d >= shape.len() || shape[d] != per {
            return Err(format!("has {per} scales along dimension {d} of shape {shape:?}"));
        }
        (shape[d + 1..].iter().product::<usize>(), shape[d])
    } else {
        (1, 1)
    };
    Ok(codes
        .enumerate()
        .map(|(i, v)| {
            let c = (i / stride) % len;
            let z = q.zero_point.get(c).or(q.zero_point.first()).copied().unwrap_or(0) as f64;
            (f64::from(q.scale[c]) * (v - z)) as f32
        })
        .collect())
}

/// The bias of a layer with `out` outputs: int32 codes times `s_in * s_w[c]`,
/// or float32 as it is; zeros if omitted.
fn bias(g: &Graph, op: &TOp, out: usize, s_w: &[f32]) -> Result<Vec<f32>, ImportError> {
    let Some(&bi) = op.inputs.get(2).filter(|&&i| i >= 0) else { return Ok(vec![0.0; out]) };
    let t = g.tensor(op, bi)?;
    let terr = |reason: String| ImportError::Tensor { index: bi as usize, name: t.name.clone(), reason };
    let data = t.data.as_ref().ok_or_else(|| terr("(bias) has no constant data".into()))?;
    let v: Vec<f32> = match t.dtype {
        DType::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        DType::I32 => {
            let s_in = g.tensor(op, op.inputs[0])?.quant.as_ref().map(|q| q.scale[0]);
            let s_in = s_in.ok_or_else(|| op_err(op, "has an int32 bias but an unquantised input"))?;
            data.chunks_exact(4)
                .enumerate()
                .map(|(c, b)| {
                    let sw = s_w.get(c).or(s_w.first()).copied().unwrap_or(1.0);
                    (f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])) * f64::from(s_in) * f64::from(sw)) as f32
                })
                .collect()
        }
        other => return Err(terr(format!("(bias) has type {}; INT32 and FLOAT32 are supported", other.name()))),
    };
    if v.len() != out {
        return Err(terr(format!("(bias) has {} values for {out} outputs", v.len())));
    }
    Ok(v)
}

fn weight_scales(g: &Graph, op: &TOp) -> Result<Vec<f32>, ImportError> {
    Ok(g.tensor(op, op.inputs[1])?.quant.as_ref().map_or(vec![1.0], |q| q.scale.clone()))
}

fn act(op: &TOp, a: TAct) -> Result<Act, ImportError> {
    match a {
        TAct::None => Ok(Act::None),
        TAct::Relu => Ok(Act::Relu),
        TAct::Relu6 => Ok(Act::Relu6),
        TAct::Other(n) => Err(op_err(op, format!("has fused activation {n}; NONE, RELU and RELU6 are supported"))),
    }
}

/// Padding on every side for `pad` (the same on every side, or an error).
fn same_pad(op: &TOp, pad: Pad, [h, w]: [usize; 2], k: usize, s: usize) -> Result<usize, ImportError> {
    if pad == Pad::Valid {
        return Ok(0);
    }
    let side = |n: usize| {
        let out = n.div_ceil(s);
        let total = ((out - 1) * s + k).saturating_sub(n);
        (total / 2, total - total / 2)
    };
    match (side(h), side(w)) {
        ((a, b), (c, d)) if a == b && c == d && a == c => Ok(a),
        (hh, ww) => Err(op_err(
            op,
            format!(
                "has SAME padding of (top, bottom) {hh:?}, (left, right) {ww:?}; releq convolutions pad every side the same"
            ),
        )),
    }
}

/// A weighted op's float weights, their shape and its bias.
type LayerWeights = (Vec<f32>, Vec<usize>, Vec<f32>);

/// Whether tensor `t` is a vector in the candle graph (written by a dense
/// layer or a flatten). Anything else, a `1 x 1 x C` pooling or convolution
/// output included, is an NCHW image that a dense layer must read through a
/// flatten.
fn is_vector(ops: &[Op], t: usize) -> bool {
    t > 0 && matches!(ops[t - 1], Op::Dense { .. } | Op::Flatten { .. })
}

/// Append `o` writing `out` (of `shape`); returns its op index.
fn emit(ops: &mut Vec<Op>, vals: &mut HashMap<i32, Val>, out: i32, o: Op, shape: [usize; 3]) -> usize {
    ops.push(o);
    vals.insert(out, Val::Act { t: ops.len(), shape });
    ops.len() - 1
}

/// Convert a `.tflite` file's subgraph 0 to a float checkpoint graph.
pub fn import_tflite_float(
    bytes: &[u8],
    name: &str,
    source: &str,
    dataset: Option<Dataset>,
) -> Result<FloatImport, ImportError> {
    let g = tflite::read(bytes)?;
    let [input] = g.inputs[..] else {
        return Err(ImportError::Graph(format!("the model has {} inputs; one is supported", g.inputs.len())));
    };
    let it = g.tensors.get(input as usize).ok_or_else(|| ImportError::Graph("the input tensor is missing".into()))?;
    let [h, w, c] = match it.shape[..] {
        [1, h, w, c] if h > 0 && w > 0 && c > 0 => [h as usize, w as usize, c as usize],
        _ => {
            return Err(ImportError::Tensor {
                index: input as usize,
                name: it.name.clone(),
                reason: format!("(the input) has shape {:?}; [1, H, W, C] is supported", it.shape),
            })
        }
    };
    let mut notes = vec![];
    let mut vals: HashMap<i32, Val> = HashMap::new();
    vals.insert(input, Val::Act { t: 0, shape: [h, w, c] });
    let mut ops: Vec<Op> = vec![];
    let mut weights: HashMap<usize, LayerWeights> = HashMap::new();
    let get = |vals: &HashMap<i32, Val>, op: &TOp, i: usize| -> Result<Val, ImportError> {
        let ti = *op.inputs.get(i).ok_or_else(|| op_err(op, format!("has no input {i}")))?;
        vals.get(&ti)
            .copied()
            .ok_or_else(|| op_err(op, format!("reads tensor {ti}, which is not computed from the input")))
    };
    let plain = |v: Val, op: &TOp| match v {
        Val::Act { t, shape } => Ok((t, shape)),
        Val::Padded { .. } => Err(op_err(op, "reads a PAD output; PAD is supported before a convolution only")),
    };
    for op in &g.ops {
        let out = *op.outputs.first().ok_or_else(|| op_err(op, "has no output"))?;
        match (op.name.as_str(), &op.options) {
            ("QUANTIZE", _) | ("DEQUANTIZE", _) | ("SOFTMAX", _) => {
                let v = get(&vals, op, 0)?;
                notes.push(format!("op {} ({}) left out", op.index, op.name));
                vals.insert(out, v);
            }
            ("CONV_2D" | "DEPTHWISE_CONV_2D", Options::Conv { pad, stride, dilation, depth_multiplier, act: a }) => {
                let (t, [ih, iw, ic], extra) = match get(&vals, op, 0)? {
                    Val::Act { t, shape } => (t, shape, 0),
                    Val::Padded { t, shape, p } => (t, shape, p),
                };
                if *dilation != (1, 1) || stride.0 != stride.1 || stride.0 < 1 {
                    return Err(op_err(op, format!("has strides {stride:?}, dilations {dilation:?}; equal strides and dilation 1 are supported")));
                }
                let s = stride.0 as usize;
                let (wv, ws) = real(&g, op, op.inputs[1], "filter")?;
                let dw = op.name == "DEPTHWISE_CONV_2D";
                let (o, kh, kw, fi) = match ws[..] {
                    [o, kh, kw, fi] => (o, kh, kw, fi),
                    _ => return Err(op_err(op, format!("has a filter of shape {ws:?}"))),
                };
                if kh != kw {
                    return Err(op_err(op, format!("has a {kh}x{kw} kernel; square kernels are supported")));
                }
                let k = kh;
                let p_ih = [ih + 2 * extra, iw + 2 * extra];
                let p = extra + same_pad(op, *pad, p_ih, k, s)?;
                if extra > 0 && *pad == Pad::Same {
                    return Err(op_err(op, "has SAME padding after a PAD"));
                }
                let (out_c, full) = if dw {
                    if *depth_multiplier != 1 || o != 1 || fi != ic {
                        return Err(op_err(
                            op,
                            format!("has depth multiplier {depth_multiplier} (filter {ws:?}); 1 is supported"),
                        ));
                    }
                    // [1, k, k, C] -> (C, 1, k, k), one filter per channel.
                    let mut filters = vec![0.0; ic * k * k];
                    for ch in 0..ic {
                        for y in 0..k {
                            for x in 0..k {
                                filters[(ch * k + y) * k + x] = wv[(y * k + x) * ic + ch];
                            }
                        }
                    }
                    notes.push(format!("op {} (DEPTHWISE_CONV_2D): a depthwise layer ({ic} channels)", op.index));
                    (ic, filters)
                } else {
                    if fi != ic {
                        return Err(op_err(op, format!("has a filter for {fi} input channels, its input has {ic}")));
                    }
                    let mut full = vec![0.0; o * ic * k * k];
                    for oc in 0..o {
                        for y in 0..k {
                            for x in 0..k {
                                for i in 0..ic {
                                    full[((oc * ic + i) * k + y) * k + x] = wv[((oc * k + y) * k + x) * ic + i];
                                }
                            }
                        }
                    }
                    (o, full)
                };
                let b = bias(&g, op, out_c, &weight_scales(&g, op)?)?;
                let [ph, pw] = [ih + 2 * p, iw + 2 * p];
                if ph < k || pw < k {
                    return Err(op_err(op, format!("has a {k}x{k} kernel on a {ih}x{iw} input")));
                }
                let shape = [(ph - k) / s + 1, (pw - k) / s + 1, out_c];
                let conv = Op::Conv {
                    name: String::new(),
                    input: t,
                    in_c: ic,
                    out_c,
                    k,
                    stride: s,
                    pad: p,
                    bn: false,
                    act: act(op, *a)?,
                    depthwise: dw,
                };
                let i = emit(&mut ops, &mut vals, out, conv, shape);
                let per_out = if dw { 1 } else { ic };
                weights.insert(i, (full, vec![out_c, per_out, k, k], b));
            }
            ("FULLY_CONNECTED", Options::FullyConnected { act: a, shuffled }) => {
                if let Some(s) = shuffled {
                    return Err(op_err(op, format!("has weights format {s}; DEFAULT is supported")));
                }
                let (t, shape) = plain(get(&vals, op, 0)?, op)?;
                let t = if !is_vector(&ops, t) {
                    // An image (even 1 x 1) read whole: flatten (HWC, as TFLite).
                    ops.push(Op::Flatten { input: t });
                    ops.len()
                } else {
                    t
                };
                let n: usize = shape.iter().product();
                let (wv, ws) = real(&g, op, op.inputs[1], "weights")?;
                let [out_f, in_f] = ws[..] else { return Err(op_err(op, format!("has weights of shape {ws:?}"))) };
                if in_f != n {
                    return Err(op_err(op, format!("has weights for {in_f} inputs, its input has {n}")));
                }
                let b = bias(&g, op, out_f, &weight_scales(&g, op)?)?;
                let d = Op::Dense { name: String::new(), input: t, in_f, out_f, act: act(op, *a)? };
                let i = emit(&mut ops, &mut vals, out, d, [1, 1, out_f]);
                weights.insert(i, (wv, vec![out_f, in_f], b));
            }
            ("MAX_POOL_2D" | "AVERAGE_POOL_2D", Options::Pool { pad, stride, filter, act: a }) => {
                let (t, [ih, iw, ic]) = plain(get(&vals, op, 0)?, op)?;
                if *a != TAct::None || filter.0 != filter.1 || stride.0 != stride.1 || stride.0 < 1 {
                    return Err(op_err(op, format!("has window {filter:?}, strides {stride:?}, activation {a:?}; square windows, equal strides and no activation are supported")));
                }
                let (k, s) = (filter.0 as usize, stride.0 as usize);
                if k > ih || k > iw || same_pad(op, *pad, [ih, iw], k, s)? != 0 {
                    return Err(op_err(op, "pads its input; pooling without padding is supported"));
                }
                let shape = [(ih - k) / s + 1, (iw - k) / s + 1, ic];
                let o = if op.name == "MAX_POOL_2D" {
                    Op::MaxPool { input: t, k, stride: s }
                } else {
                    Op::AvgPool { input: t, k, stride: s }
                };
                emit(&mut ops, &mut vals, out, o, shape);
            }
            ("MEAN", _) => {
                let (t, [ih, iw, ic]) = plain(get(&vals, op, 0)?, op)?;
                let axes = g.tensor(op, op.inputs[1])?.data.clone().unwrap_or_default();
                let axes: Vec<i32> =
                    axes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                if axes != [1, 2] || ih != iw {
                    return Err(op_err(
                        op,
                        format!(
                            "averages axes {axes:?} of a {ih}x{iw} image; axes [1, 2] of a square image are supported"
                        ),
                    ));
                }
                emit(&mut ops, &mut vals, out, Op::AvgPool { input: t, k: ih, stride: ih }, [1, 1, ic]);
            }
            ("ADD", Options::Add { act: a }) => {
                let (x, sx) = plain(get(&vals, op, 0)?, op)?;
                let (y, sy) = plain(get(&vals, op, 1)?, op)?;
                if sx != sy {
                    return Err(op_err(op, format!("adds {sx:?} and {sy:?}; equal shapes are supported")));
                }
                let a = act(op, *a)?;
                if a == Act::Relu6 {
                    return Err(op_err(op, "has fused RELU6; NONE and RELU are supported after ADD"));
                }
                emit(&mut ops, &mut vals, out, Op::Add { a: x, b: y, act: a }, sx);
            }
            ("PAD", _) => {
                let (t, shape) = plain(get(&vals, op, 0)?, op)?;
                let pads = g.tensor(op, op.inputs[1])?.data.clone().unwrap_or_default();
                let pads: Vec<i32> =
                    pads.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                match pads[..] {
                    [0, 0, a, b, c, d, 0, 0] if a == b && b == c && c == d && a >= 0 => {
                        vals.insert(out, Val::Padded { t, shape, p: a as usize });
                        notes.push(format!("op {} (PAD {a}) merged into the convolution reading it", op.index));
                    }
                    _ => {
                        return Err(op_err(
                            op,
                            format!("pads {pads:?}; the same padding of height and width on every side is supported"),
                        ))
                    }
                }
            }
            ("RESHAPE", _) => {
                let (t, shape) = plain(get(&vals, op, 0)?, op)?;
                if !is_vector(&ops, t) {
                    emit(&mut ops, &mut vals, out, Op::Flatten { input: t }, [1, 1, shape.iter().product()]);
                } else {
                    vals.insert(out, Val::Act { t, shape });
                }
            }
            _ => {
                return Err(ImportError::Op {
                    index: op.index,
                    op: op.name.clone(),
                    reason: format!("is not supported by --float; supported: {}", SUPPORTED.join(", ")),
                })
            }
        }
    }
    let [output] = g.outputs[..] else {
        return Err(ImportError::Graph(format!("the model has {} outputs; one is supported", g.outputs.len())));
    };
    let (t, shape) = match vals.get(&output) {
        Some(Val::Act { t, shape }) => (*t, *shape),
        _ => return Err(ImportError::Graph("the output is not computed from the input".into())),
    };
    if t != ops.len() || t == 0 || shape[0] * shape[1] != 1 {
        return Err(ImportError::Graph("the output is not the last vector computed".into()));
    }
    let mut spec = Spec { name: name.into(), input: [h, w, c], classes: shape[2], ops };
    let params = super::onnx::named_params(&mut spec.ops, |i| {
        let (w, dims, b) = weights.remove(&i).expect("weights of every weighted op");
        (dims, w, b)
    });
    // The file's input range (QUANTIZE's output, or the int8 input).
    let first_q =
        g.ops.first().filter(|o| o.name == "QUANTIZE").and_then(|o| o.outputs.first().copied()).unwrap_or(input);
    if let Some(q) = g.tensors.get(first_q as usize).and_then(|t| t.quant.as_ref()) {
        let z = q.zero_point.first().copied().unwrap_or(0) as f32;
        let (lo, hi) = (q.scale[0] * (-128.0 - z), q.scale[0] * (127.0 - z));
        if lo.abs() > 0.05 || (hi - 1.0).abs() > 0.05 {
            notes.push(format!("the file's input spans [{lo:.3}, {hi:.3}]; releq feeds pixel / 255 in [0, 1]"));
        }
    }
    let input = InputInfo { layout: "NHWC".into(), shape: vec![1, h, w, c], scale: 1.0 / 255.0, mean: 0.0, std: 1.0 };
    let graph = GraphFile { format: GRAPH_FORMAT, spec, input, dataset, source: source.into() };
    Ok(FloatImport { graph, params, notes })
}
