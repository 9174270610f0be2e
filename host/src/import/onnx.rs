//! Float ONNX graphs into a checkpoint graph ([`GraphFile`]) and its float
//! parameters, so that every command taking a checkpoint (calibrate,
//! quantize, finetune, eval, search) takes an imported model.
//!
//! The file is decoded with prost (messages in `onnx_proto`, no `protoc`)
//! and converted node by node, in the file's (topological) order:
//!
//! - `Conv` (square kernel, equal strides, the same padding on every side,
//!   dilation 1; `group` 1, or depthwise with one filter per channel
//!   (`group` = channels, weights `(C, 1, k, k)`), which becomes a depthwise
//!   convolution, exported as `.releq`'s `DepthwiseConv2d`);
//! - `BatchNormalization` after a convolution is folded into it
//!   (`w' = w * g / sqrt(v + eps)`, `b' = (b - m) * g / sqrt(v + eps) + beta`);
//! - `Relu`, and `Clip` with bounds (0, 6) (attributes before opset 11,
//!   inputs after) as ReLU6, are fused into the convolution, dense layer or
//!   (ReLU only) add that produces their input, which nothing else may read;
//! - `MaxPool`, `AveragePool` (square window, no padding), `GlobalAveragePool`
//!   (square input);
//! - `Gemm` (`alpha` 1, `beta` 1, `transA` 0, either `transB`), `MatMul` by a
//!   constant matrix (a following `Add` of a constant vector is its bias);
//! - `Flatten` (axis 1) and `Reshape` to `[N, -1]`: ONNX flattens NCHW in CHW
//!   order, releq in HWC order, so the columns of the dense layer that reads
//!   a flattened image are permuted from CHW to HWC;
//! - `Add` of two activations (residual), `Identity`, `Dropout` (inference),
//!   `Constant`.
//!
//! The input must be one float NCHW tensor (`[N, C, H, W]`, `N` 1 or
//! symbolic) and the output the last value computed. Errors name the node
//! (index, name, op) or tensor and why; an unsupported op lists the
//! supported ones ([`SUPPORTED`]).

use super::onnx_proto::{AttributeProto, ModelProto, NodeProto, TensorProto};
use crate::checkpoint::{GraphFile, InputInfo, GRAPH_FORMAT};
use crate::data::Dataset;
use crate::nn::spec::{Act, Op, Spec};
use prost::Message as _;
use std::collections::HashMap;

/// The ONNX ops the importer converts.
pub const SUPPORTED: &[&str] = &[
    "Conv (group 1 or depthwise)",
    "BatchNormalization (after Conv)",
    "Relu",
    "Clip (0, 6)",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Gemm",
    "MatMul",
    "Add",
    "Flatten",
    "Reshape (to [N, -1])",
    "Identity",
    "Dropout",
    "Constant",
];

/// Why an ONNX file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// Not a protobuf ModelProto.
    #[error("not an ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    /// A node is malformed or cannot be converted.
    #[error("node {index} ({name:?}, {op}): {reason}")]
    Node {
        /// Index in the graph's node list.
        index: usize,
        /// Node name.
        name: String,
        /// Operator.
        op: String,
        /// What is wrong.
        reason: String,
    },
    /// An op the importer does not convert.
    #[error("node {index} ({name:?}): op {op} is not supported; supported: {}", SUPPORTED.join(", "))]
    Unsupported {
        /// Index in the graph's node list.
        index: usize,
        /// Node name.
        name: String,
        /// Operator.
        op: String,
    },
    /// A tensor (initializer, input, output) is malformed or unsupported.
    #[error("tensor {name:?}: {reason}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The graph as a whole cannot be expressed.
    #[error("{0}")]
    Graph(String),
}

/// One float parameter of the checkpoint: name, shape, values.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// E.g. `conv1.weight`.
    pub name: String,
    /// Shape (OIHW for convolutions, `[out, in]` for dense layers).
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// Name the weighted ops of `ops` in order (`conv1`, `conv2`, ... and
/// `fc1`, ...) and return their checkpoint parameters, `<name>.bias` then
/// `<name>.weight`, from `take(op index)` = (weight dims, weight values,
/// bias). Shared by the ONNX and the `.tflite --float` imports.
pub(crate) fn named_params(
    ops: &mut [Op],
    mut take: impl FnMut(usize) -> (Vec<usize>, Vec<f32>, Vec<f32>),
) -> Vec<Param> {
    let mut params = vec![];
    let (mut nc, mut nd) = (0, 0);
    for (i, op) in ops.iter_mut().enumerate() {
        let pname = match op {
            Op::Conv { name, .. } => {
                nc += 1;
                *name = format!("conv{nc}");
                name.clone()
            }
            Op::Dense { name, .. } => {
                nd += 1;
                *name = format!("fc{nd}");
                name.clone()
            }
            _ => continue,
        };
        let (dims, w, b) = take(i);
        params.push(Param { name: format!("{pname}.bias"), dims: vec![b.len()], data: b });
        params.push(Param { name: format!("{pname}.weight"), dims, data: w });
    }
    params
}

/// An imported graph.
#[derive(Debug, Clone)]
pub struct OnnxImport {
    /// The graph description (`graph.json`).
    pub graph: GraphFile,
    /// Its float parameters.
    pub params: Vec<Param>,
    /// What was folded, fused or rewritten, one line each.
    pub notes: Vec<String>,
    /// The ONNX producer and opset (`pytorch 2.5, opset 17`).
    pub producer: String,
}

impl OnnxImport {
    /// Fold an input normalization `x = (pixel / 255 - mean) / std` (one
    /// mean and standard deviation, e.g. torchvision's `Normalize((0.1307,),
    /// (0.3081,))` for MNIST) into the first layer, so that the checkpoint
    /// takes `pixel / 255` as every releq command feeds it: `w' = w / std`,
    /// `b' = b - mean / std * sum(w)` per output. Exact when that layer is a
    /// convolution without padding, or a dense layer after a flatten, and
    /// nothing else reads the input; anything else is an error (a padded
    /// convolution would pad with `-mean / std`, which a zero-padding
    /// convolution cannot reproduce).
    pub fn fold_input_normalization(&mut self, mean: f32, std: f32) -> Result<(), OnnxError> {
        if !(std.is_finite() && std > 0.0 && mean.is_finite()) {
            return Err(OnnxError::Graph(format!(
                "--mean {mean} --std {std}: the standard deviation must be positive"
            )));
        }
        let ops = &self.graph.spec.ops;
        let reads = |t: usize| {
            ops.iter()
                .filter(|o| match o {
                    Op::Conv { input, .. }
                    | Op::Dense { input, .. }
                    | Op::MaxPool { input, .. }
                    | Op::AvgPool { input, .. }
                    | Op::Flatten { input } => *input == t,
                    Op::Add { a, b, .. } => *a == t || *b == t,
                })
                .count()
        };
        let target = match ops.first() {
            Some(Op::Conv { name, pad: 0, .. }) if reads(0) == 1 => name.clone(),
            Some(Op::Flatten { .. }) if reads(0) == 1 && reads(1) == 1 => match ops.get(1) {
                Some(Op::Dense { name, input: 1, .. }) => name.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        if target.is_empty() {
            return Err(OnnxError::Graph(
                "cannot fold the input normalization: the first layer must be a convolution without padding, or a dense layer after a flatten, that alone reads the input".into(),
            ));
        }
        let out = self.params.iter().find(|p| p.name == format!("{target}.bias")).map_or(0, |p| p.data.len());
        let w = self.params.iter_mut().find(|p| p.name == format!("{target}.weight")).expect("the layer's weights");
        let per = w.data.len() / out.max(1);
        let sums: Vec<f32> = w.data.chunks(per).map(|r| r.iter().sum()).collect();
        w.data.iter_mut().for_each(|v| *v /= std);
        let b = self.params.iter_mut().find(|p| p.name == format!("{target}.bias")).expect("the layer's bias");
        b.data.iter_mut().zip(&sums).for_each(|(b, s)| *b -= mean / std * s);
        self.notes.push(format!("input normalization (pixel / 255 - {mean}) / {std} folded into {target}"));
        Ok(())
    }
}

/// A constant tensor.
#[derive(Debug, Clone)]
struct Const {
    dims: Vec<usize>,
    f: Vec<f32>,
    i: Vec<i64>,
}

/// Layout of an activation: an image `[c, h, w]` (NCHW in ONNX) or a
/// vector whose ONNX order is CHW of `from` (`[c, h, w]`; `[f, 1, 1]` when
/// it never was an image).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    Image { c: usize, h: usize, w: usize },
    Flat { from: [usize; 3] },
}

impl Layout {
    fn size(self) -> usize {
        match self {
            Layout::Image { c, h, w } => c * h * w,
            Layout::Flat { from } => from.iter().product(),
        }
    }
}

#[derive(Debug, Clone)]
enum Val {
    /// Spec tensor `t`.
    Act {
        t: usize,
        layout: Layout,
    },
    Const(Const),
}

/// Parameters of a weighted op, by op index.
struct Weights {
    w: Vec<f32>,
    dims: Vec<usize>,
    b: Vec<f32>,
}

fn tensor_err(name: &str, reason: impl Into<String>) -> OnnxError {
    OnnxError::Tensor { name: name.into(), reason: reason.into() }
}

fn le_chunks<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(|c| c.try_into().expect("chunk of N bytes"))
}

fn decode_tensor(t: &TensorProto) -> Result<Const, OnnxError> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        return Err(tensor_err(&t.name, "stores its data in an external file; save the model with the weights inside"));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        dims.push(usize::try_from(d).map_err(|_| tensor_err(&t.name, format!("has a negative dimension {d}")))?);
    }
    let n: usize = dims.iter().product();
    let raw = &t.raw_data;
    let (f, i): (Vec<f32>, Vec<i64>) = match t.data_type {
        1 => {
            let f = if raw.is_empty() {
                t.float_data.clone()
            } else {
                le_chunks::<4>(raw).map(f32::from_le_bytes).collect()
            };
            (f, vec![])
        }
        11 => {
            let f: Vec<f32> = if raw.is_empty() {
                t.double_data.iter().map(|&d| d as f32).collect()
            } else {
                le_chunks::<8>(raw).map(|b| f64::from_le_bytes(b) as f32).collect()
            };
            (f, vec![])
        }
        7 => {
            let i = if raw.is_empty() {
                t.int64_data.clone()
            } else {
                le_chunks::<8>(raw).map(i64::from_le_bytes).collect()
            };
            (vec![], i)
        }
        6 => {
            let i = if raw.is_empty() {
                t.int32_data.iter().map(|&v| i64::from(v)).collect()
            } else {
                le_chunks::<4>(raw).map(|b| i64::from(i32::from_le_bytes(b))).collect()
            };
            (vec![], i)
        }
        other => {
            return Err(tensor_err(
                &t.name,
                format!("has data type {other}; float (1), double (11), int32 (6) and int64 (7) are supported"),
            ))
        }
    };
    let got = f.len().max(i.len());
    if got != n {
        return Err(tensor_err(&t.name, format!("has {got} values for shape {dims:?} ({n})")));
    }
    Ok(Const { dims, f, i })
}

/// Import an ONNX model (the file's bytes) as a checkpoint graph called
/// `name`, for `dataset`; `source` is recorded in the graph file.
pub fn import_onnx(bytes: &[u8], name: &str, source: &str, dataset: Option<Dataset>) -> Result<OnnxImport, OnnxError> {
    let model = ModelProto::decode(bytes)?;
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::Graph("the model has no graph".into()))?;
    let opset =
        model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version);
    let producer = format!("{} {}, opset {opset}", model.producer_name, model.producer_version);
    let mut cv = Converter {
        vals: HashMap::new(),
        ops: vec![],
        weights: HashMap::new(),
        notes: vec![],
        opset,
        uses: HashMap::new(),
    };
    for t in &graph.initializer {
        cv.vals.insert(t.name.clone(), Val::Const(decode_tensor(t)?));
    }
    // Consumers of every value (graph outputs count as one).
    for n in &graph.node {
        for i in n.input.iter().filter(|i| !i.is_empty()) {
            *cv.uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.output {
        *cv.uses.entry(o.name.clone()).or_default() += 1;
    }
    // The input.
    let inputs: Vec<_> = graph.input.iter().filter(|i| !cv.vals.contains_key(&i.name)).collect();
    let [input] = inputs[..] else {
        return Err(OnnxError::Graph(format!(
            "the graph has {} inputs ({}); one image input is supported",
            inputs.len(),
            inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    };
    let tt = input.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let tt = tt.ok_or_else(|| tensor_err(&input.name, "(the graph input) is not a tensor"))?;
    if tt.elem_type != 1 {
        return Err(tensor_err(
            &input.name,
            format!("(the graph input) has element type {}, not float (1)", tt.elem_type),
        ));
    }
    let dims: Vec<Option<i64>> = tt.shape.as_ref().map_or(vec![], |s| s.dim.iter().map(|d| d.dim_value).collect());
    let shape = match dims[..] {
        [n, Some(c), Some(h), Some(w)] if matches!(n, None | Some(1)) && c > 0 && h > 0 && w > 0 => [c, h, w].map(|v| v as usize),
        _ => {
            return Err(tensor_err(
                &input.name,
                format!("(the graph input) has shape {dims:?}; [N, C, H, W] with N 1 or symbolic and fixed C, H, W is supported"),
            ))
        }
    };
    let [c, h, w] = shape;
    cv.vals.insert(input.name.clone(), Val::Act { t: 0, layout: Layout::Image { c, h, w } });
    for (index, node) in graph.node.iter().enumerate() {
        cv.node(index, node)?;
    }
    // The output.
    let [output] = &graph.output[..] else {
        return Err(OnnxError::Graph(format!("the graph has {} outputs; one is supported", graph.output.len())));
    };
    let Some(Val::Act { t, layout }) = cv.vals.get(&output.name).cloned() else {
        return Err(tensor_err(&output.name, "(the graph output) is not computed from the input"));
    };
    if t != cv.ops.len() || t == 0 {
        return Err(tensor_err(
            &output.name,
            "(the graph output) is not the last value computed (a branch of the graph leads nowhere)",
        ));
    }
    let classes = layout.size();
    let mut spec = Spec { name: name.into(), input: [h, w, c], classes, ops: cv.ops };
    // Parameter names and values.
    let params = named_params(&mut spec.ops, |i| {
        let wt = cv.weights.remove(&i).expect("weights of every weighted op");
        (wt.dims, wt.w, wt.b)
    });
    let last = *spec.shapes().last().expect("at least the input");
    if last != [1, 1, classes] {
        return Err(tensor_err(
            &output.name,
            format!("(the graph output) is an image {last:?}, not a vector of class scores"),
        ));
    }
    let input = InputInfo { layout: "NCHW".into(), shape: vec![1, c, h, w], scale: 1.0 / 255.0, mean: 0.0, std: 1.0 };
    let graph = GraphFile { format: GRAPH_FORMAT, spec, input, dataset, source: source.into() };
    Ok(OnnxImport { graph, params, notes: cv.notes, producer })
}

struct Converter {
    vals: HashMap<String, Val>,
    ops: Vec<Op>,
    weights: HashMap<usize, Weights>,
    notes: Vec<String>,
    opset: i64,
    uses: HashMap<String, usize>,
}

/// A node being converted: its place, for errors.
struct At<'a> {
    index: usize,
    node: &'a NodeProto,
}

impl At<'_> {
    fn err(&self, reason: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            index: self.index,
            name: self.node.name.clone(),
            op: self.node.op_type.clone(),
            reason: reason.into(),
        }
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }

    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// Input `i`'s name ("" if omitted).
    fn input(&self, i: usize) -> &str {
        self.node.input.get(i).map_or("", String::as_str)
    }

    fn output(&self) -> Result<&str, OnnxError> {
        self.node.output.first().map(String::as_str).ok_or_else(|| self.err("has no output"))
    }

    /// Only the first output may be read (Dropout's mask, MaxPool's indices).
    fn only_first_output(&self, uses: &HashMap<String, usize>) -> Result<(), OnnxError> {
        match self.node.output.iter().skip(1).find(|o| !o.is_empty() && uses.contains_key(*o)) {
            Some(o) => Err(self.err(format!("output {o:?} is read, only the first output is supported"))),
            None => Ok(()),
        }
    }
}

/// Square kernel, equal strides, same padding on every side, dilation 1.
fn window(at: &At, k: &[usize], pads_allowed: bool) -> Result<(usize, usize, usize), OnnxError> {
    let k = match *k {
        [a, b] if a == b => a,
        _ => return Err(at.err(format!("has kernel {k:?}; square 2-D kernels are supported"))),
    };
    let strides = at.ints("strides").unwrap_or_else(|| vec![1, 1]);
    let s = match strides[..] {
        [a, b] if a == b && a > 0 => a as usize,
        _ => return Err(at.err(format!("has strides {strides:?}; equal strides are supported"))),
    };
    if let Some(d) = at.ints("dilations") {
        if d.iter().any(|&v| v != 1) {
            return Err(at.err(format!("has dilations {d:?}; only 1 is supported")));
        }
    }
    if let Some(p) = at.string("auto_pad").filter(|p| p != "NOTSET" && p != "VALID") {
        return Err(at.err(format!("has auto_pad {p}; give explicit pads (NOTSET) or VALID")));
    }
    let pads = at.ints("pads").unwrap_or_else(|| vec![0; 4]);
    let p = match pads[..] {
        [a, b, c, d] if a == b && b == c && c == d && a >= 0 => a as usize,
        _ => return Err(at.err(format!("has pads {pads:?}; the same padding on every side is supported"))),
    };
    if p > 0 && !pads_allowed {
        return Err(at.err(format!("has pads {pads:?}; pooling without padding is supported")));
    }
    Ok((k, s, p))
}

impl Converter {
    fn act(&self, at: &At, i: usize) -> Result<(usize, Layout), OnnxError> {
        match self.vals.get(at.input(i)) {
            Some(Val::Act { t, layout }) => Ok((*t, *layout)),
            Some(Val::Const(_)) => {
                Err(at.err(format!("input {i} ({:?}) is a constant, an activation is needed", at.input(i))))
            }
            None => Err(at.err(format!("input {i} ({:?}) is not defined before this node", at.input(i)))),
        }
    }

    fn konst(&self, at: &At, i: usize) -> Result<Const, OnnxError> {
        match self.vals.get(at.input(i)) {
            Some(Val::Const(c)) => Ok(c.clone()),
            Some(Val::Act { .. }) => {
                Err(at.err(format!("input {i} ({:?}) is computed; a constant (initializer) is needed", at.input(i))))
            }
            None => Err(at.err(format!("input {i} ({:?}) is not defined before this node", at.input(i)))),
        }
    }

    fn image(&self, at: &At, i: usize) -> Result<(usize, [usize; 3]), OnnxError> {
        match self.act(at, i)? {
            (t, Layout::Image { c, h, w }) => Ok((t, [c, h, w])),
            (_, l) => Err(at.err(format!("input {i} is a vector of {}, an NCHW image is needed", l.size()))),
        }
    }

    /// Emit `op` for this node's output.
    fn emit(&mut self, at: &At, op: Op, layout: Layout) -> Result<usize, OnnxError> {
        self.ops.push(op);
        let t = self.ops.len();
        self.vals.insert(at.output()?.into(), Val::Act { t, layout });
        Ok(t)
    }

    /// The op producing tensor `t` if its output may be changed in place
    /// (only this node reads it).
    fn fusable(&self, at: &At, i: usize, what: &str) -> Result<usize, OnnxError> {
        let (t, _) = self.act(at, i)?;
        if t == 0 || self.uses.get(at.input(i)).copied().unwrap_or(0) != 1 {
            return Err(at.err(format!("{what} must follow a layer whose output nothing else reads")));
        }
        Ok(t - 1)
    }

    fn alias(&mut self, at: &At) -> Result<(), OnnxError> {
        let v = self.vals.get(at.input(0)).cloned().ok_or_else(|| at.err("input 0 is not defined before this node"))?;
        self.vals.insert(at.output()?.into(), v);
        Ok(())
    }

    fn fuse_act(&mut self, at: &At, a: Act) -> Result<(), OnnxError> {
        let what = if a == Act::Relu { "Relu" } else { "Clip (ReLU6)" };
        let op = self.fusable(at, 0, what)?;
        let slot = match &mut self.ops[op] {
            Op::Conv { act, .. } | Op::Dense { act, .. } => act,
            Op::Add { act, .. } if a == Act::Relu => act,
            other => {
                let kind = format!("{other:?}");
                let kind = kind.split([' ', '{']).next().unwrap_or("");
                return Err(at.err(format!(
                    "{what} follows a {kind}; it is supported after Conv, Gemm / MatMul{}",
                    if a == Act::Relu { " and Add" } else { "" }
                )));
            }
        };
        if *slot != Act::None {
            return Err(at.err(format!("{what} follows a layer that already has an activation")));
        }
        *slot = a;
        let (t, layout) = self.act(at, 0)?;
        self.vals.insert(at.output()?.into(), Val::Act { t, layout });
        Ok(())
    }

    fn node(&mut self, index: usize, node: &NodeProto) -> Result<(), OnnxError> {
        let at = At { index, node };
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(at.err(format!("is in domain {:?}; only the default ONNX domain is supported", node.domain)));
        }
        match node.op_type.as_str() {
            "Constant" => {
                let t = at.attr("value").and_then(|a| a.t.as_ref());
                let t =
                    t.ok_or_else(|| at.err("has no tensor `value` (value_float / value_ints are not supported)"))?;
                let c = decode_tensor(t)?;
                self.vals.insert(at.output()?.into(), Val::Const(c));
            }
            "Identity" => self.alias(&at)?,
            "Dropout" => {
                at.only_first_output(&self.uses)?;
                self.alias(&at)?;
            }
            "Conv" => self.conv(&at)?,
            "BatchNormalization" => self.batch_norm(&at)?,
            "Relu" => self.fuse_act(&at, Act::Relu)?,
            "Clip" => {
                let (lo, hi) = if self.opset < 11 {
                    (at.float("min", f32::MIN), at.float("max", f32::MAX))
                } else {
                    let bound = |i: usize, d: f32| -> Result<f32, OnnxError> {
                        if at.input(i).is_empty() {
                            return Ok(d);
                        }
                        let c = self.konst(&at, i)?;
                        c.f.first()
                            .copied()
                            .filter(|_| c.f.len() == 1)
                            .ok_or_else(|| at.err(format!("input {i} is not a float scalar")))
                    };
                    (bound(1, f32::MIN)?, bound(2, f32::MAX)?)
                };
                match (lo, hi) {
                    (0.0, 6.0) => self.fuse_act(&at, Act::Relu6)?,
                    (0.0, f32::MAX) => self.fuse_act(&at, Act::Relu)?,
                    _ => {
                        return Err(at.err(format!("clips to [{lo}, {hi}]; [0, 6] (ReLU6) and [0, inf) are supported")))
                    }
                }
            }
            "MaxPool" | "AveragePool" => {
                at.only_first_output(&self.uses)?;
                let (t, [c, h, w]) = self.image(&at, 0)?;
                let k: Vec<usize> =
                    at.ints("kernel_shape").unwrap_or_default().iter().map(|&v| v.max(0) as usize).collect();
                let (k, s, _) = window(&at, &k, false)?;
                if k > h || k > w {
                    return Err(at.err(format!("has a {k}x{k} window on a {h}x{w} image")));
                }
                let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
                if at.int("ceil_mode", 0) != 0 && ((h - k) % s != 0 || (w - k) % s != 0) {
                    return Err(at.err("has ceil_mode 1 with a partial last window; only floor sizes are supported"));
                }
                if at.int("storage_order", 0) != 0 {
                    return Err(at.err("has storage_order 1; only 0 is supported"));
                }
                let op = if node.op_type == "MaxPool" {
                    Op::MaxPool { input: t, k, stride: s }
                } else {
                    Op::AvgPool { input: t, k, stride: s }
                };
                self.emit(&at, op, Layout::Image { c, h: oh, w: ow })?;
            }
            "GlobalAveragePool" => {
                let (t, [c, h, w]) = self.image(&at, 0)?;
                if h != w {
                    return Err(at.err(format!("pools a {h}x{w} image; square images are supported")));
                }
                self.emit(&at, Op::AvgPool { input: t, k: h, stride: h }, Layout::Image { c, h: 1, w: 1 })?;
            }
            "Flatten" => {
                let axis = at.int("axis", 1);
                if axis != 1 {
                    return Err(at.err(format!("has axis {axis}; only 1 is supported")));
                }
                self.flatten(&at)?;
            }
            "Reshape" => {
                let shape = self.konst(&at, 1)?;
                let (_, layout) = self.act(&at, 0)?;
                let n = layout.size() as i64;
                match shape.i[..] {
                    [b, f] if (b == 1 || b == -1 || b == 0) && (f == -1 || f == n) => self.flatten(&at)?,
                    _ => {
                        return Err(
                            at.err(format!("reshapes to {:?}; only to [N, -1] (a flatten) is supported", shape.i))
                        )
                    }
                }
            }
            "Gemm" => self.gemm(&at)?,
            "MatMul" => {
                let (t, layout) = self.flat(&at)?;
                let b = self.konst(&at, 1)?;
                let [k, n] = b.dims[..] else {
                    return Err(at.err(format!("multiplies by a {:?} tensor; a constant matrix is supported", b.dims)));
                };
                self.dense(&at, t, layout, transpose(&b.f, k, n), n, k, vec![0.0; n])?;
            }
            "Add" => self.add(&at)?,
            _ => return Err(OnnxError::Unsupported { index, name: node.name.clone(), op: node.op_type.clone() }),
        }
        Ok(())
    }

    fn flat(&self, at: &At) -> Result<(usize, Layout), OnnxError> {
        match self.act(at, 0)? {
            (t, l @ Layout::Flat { .. }) => Ok((t, l)),
            (_, Layout::Image { c, h, w }) => {
                Err(at.err(format!("reads a [{c}, {h}, {w}] image; flatten it first (Flatten or Reshape)")))
            }
        }
    }

    fn flatten(&mut self, at: &At) -> Result<(), OnnxError> {
        match self.act(at, 0)? {
            (t, Layout::Image { c, h, w }) => {
                self.emit(at, Op::Flatten { input: t }, Layout::Flat { from: [c, h, w] })?;
            }
            (_, Layout::Flat { .. }) => self.alias(at)?,
        }
        Ok(())
    }

    fn conv(&mut self, at: &At) -> Result<(), OnnxError> {
        let (t, [c, h, w]) = self.image(at, 0)?;
        let wt = self.konst(at, 1)?;
        let [o, ipg, kh, kw] = wt.dims[..] else {
            return Err(at.err(format!("has weights of shape {:?}; 2-D convolutions (OIHW) are supported", wt.dims)));
        };
        if let Some(ks) = at.ints("kernel_shape") {
            if ks != [kh as i64, kw as i64] {
                return Err(at.err(format!("has kernel_shape {ks:?} but weights {:?}", wt.dims)));
            }
        }
        let (k, s, p) = window(at, &[kh, kw], true)?;
        let group = at.int("group", 1);
        let weights = wt.f;
        let depthwise = group != 1;
        if group == 1 {
            if ipg != c {
                return Err(at.err(format!("has weights for {ipg} input channels, its input has {c}")));
            }
        } else if group as usize == c && o == c && ipg == 1 {
            // Depthwise: weights (C, 1, k, k), one filter per channel.
            self.notes.push(format!(
                "node {} ({:?}): depthwise convolution ({c} channels) as a depthwise layer",
                at.index, at.node.name
            ));
        } else {
            return Err(at.err(format!(
                "has group {group} with {c} input and {o} output channels; group 1 and depthwise (group = channels, one filter each) are supported"
            )));
        }
        let b = if at.input(2).is_empty() { vec![0.0; o] } else { self.konst(at, 2)?.f };
        if b.len() != o {
            return Err(at.err(format!("has {} biases for {o} output channels", b.len())));
        }
        if h + 2 * p < k || w + 2 * p < k {
            return Err(at.err(format!("has a {k}x{k} kernel on a {h}x{w} image with padding {p}")));
        }
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        let op = Op::Conv {
            name: String::new(),
            input: t,
            in_c: c,
            out_c: o,
            k,
            stride: s,
            pad: p,
            bn: false,
            act: Act::None,
            depthwise,
        };
        let t = self.emit(at, op, Layout::Image { c: o, h: oh, w: ow })?;
        self.weights.insert(t - 1, Weights { w: weights, dims: vec![o, ipg, k, k], b });
        Ok(())
    }

    fn batch_norm(&mut self, at: &At) -> Result<(), OnnxError> {
        if at.int("training_mode", 0) != 0 {
            return Err(at.err("has training_mode 1; export the model in eval mode"));
        }
        at.only_first_output(&self.uses)?;
        let op = self.fusable(at, 0, "BatchNormalization")?;
        if !matches!(self.ops[op], Op::Conv { act: Act::None, .. }) {
            return Err(at.err("must follow a Conv without activation (it is folded into the convolution)"));
        }
        let eps = at.float("epsilon", 1e-5);
        let [g, beta, mean, var] = [1, 2, 3, 4].map(|i| self.konst(at, i));
        let (g, beta, mean, var) = (g?.f, beta?.f, mean?.f, var?.f);
        let wt = self.weights.get_mut(&op).expect("conv weights");
        let o = wt.b.len();
        if [g.len(), beta.len(), mean.len(), var.len()].iter().any(|&n| n != o) {
            return Err(at.err(format!("has parameters of lengths other than the {o} channels")));
        }
        let per = wt.w.len() / o;
        for ch in 0..o {
            let f = g[ch] / (var[ch] + eps).sqrt();
            wt.w[ch * per..][..per].iter_mut().for_each(|v| *v *= f);
            wt.b[ch] = (wt.b[ch] - mean[ch]) * f + beta[ch];
        }
        self.notes
            .push(format!("node {} ({:?}): BatchNormalization folded into the convolution", at.index, at.node.name));
        let (t, layout) = self.act(at, 0)?;
        self.vals.insert(at.output()?.into(), Val::Act { t, layout });
        Ok(())
    }

    fn gemm(&mut self, at: &At) -> Result<(), OnnxError> {
        let (t, layout) = self.flat(at)?;
        if at.int("transA", 0) != 0 {
            return Err(at.err("has transA 1; only 0 is supported"));
        }
        let (alpha, beta) = (at.float("alpha", 1.0), at.float("beta", 1.0));
        if alpha != 1.0 || (beta != 1.0 && !at.input(2).is_empty()) {
            return Err(at.err(format!("has alpha {alpha}, beta {beta}; only 1 is supported")));
        }
        let b = self.konst(at, 1)?;
        let [r, cl] = b.dims[..] else {
            return Err(at.err(format!("has B of shape {:?}; a matrix is needed", b.dims)));
        };
        let (w, out, inp) = if at.int("transB", 0) != 0 { (b.f, r, cl) } else { (transpose(&b.f, r, cl), cl, r) };
        let bias = if at.input(2).is_empty() {
            vec![0.0; out]
        } else {
            let c = self.konst(at, 2)?;
            match c.f.len() {
                n if n == out => c.f,
                1 => vec![c.f[0]; out],
                n => return Err(at.err(format!("has {n} biases (C) for {out} outputs"))),
            }
        };
        self.dense(at, t, layout, w, out, inp, bias)
    }

    /// A dense layer `w` (`[out][in]` in ONNX's CHW order of the input).
    #[allow(clippy::too_many_arguments)]
    fn dense(
        &mut self,
        at: &At,
        t: usize,
        layout: Layout,
        mut w: Vec<f32>,
        out: usize,
        inp: usize,
        b: Vec<f32>,
    ) -> Result<(), OnnxError> {
        if inp != layout.size() {
            return Err(at.err(format!("has weights for {inp} inputs, its input has {}", layout.size())));
        }
        if let Layout::Flat { from: [c, h, wd] } = layout {
            if h * wd > 1 && c > 1 {
                // Columns from CHW (ONNX) to HWC (releq).
                let src = w.clone();
                for o in 0..out {
                    for ch in 0..c {
                        for y in 0..h {
                            for x in 0..wd {
                                w[o * inp + (y * wd + x) * c + ch] = src[o * inp + (ch * h + y) * wd + x];
                            }
                        }
                    }
                }
                self.notes.push(format!(
                    "node {} ({:?}): dense columns permuted from CHW to HWC ({c}x{h}x{wd})",
                    at.index, at.node.name
                ));
            }
        }
        let op = Op::Dense { name: String::new(), input: t, in_f: inp, out_f: out, act: Act::None };
        let t = self.emit(at, op, Layout::Flat { from: [out, 1, 1] })?;
        self.weights.insert(t - 1, Weights { w, dims: vec![out, inp], b });
        Ok(())
    }

    fn add(&mut self, at: &At) -> Result<(), OnnxError> {
        let is_const = |i: usize| matches!(self.vals.get(at.input(i)), Some(Val::Const(_)));
        match (is_const(0), is_const(1)) {
            (false, false) => {
                let ((a, la), (b, lb)) = (self.act(at, 0)?, self.act(at, 1)?);
                if la != lb {
                    return Err(at.err(format!("adds {la:?} and {lb:?}; equal shapes are supported (no broadcasting)")));
                }
                self.emit(at, Op::Add { a, b, act: Act::None }, la)?;
            }
            (false, true) | (true, false) => {
                // A constant added to a layer's output: into its bias.
                let (ai, ci) = if is_const(1) { (0, 1) } else { (1, 0) };
                let c = self.konst(at, ci)?;
                let op = self.fusable(at, ai, "Add of a constant")?;
                let ok = matches!(self.ops[op], Op::Conv { act: Act::None, .. } | Op::Dense { act: Act::None, .. });
                let wt = self.weights.get_mut(&op).filter(|_| ok);
                let Some(wt) = wt else {
                    return Err(at.err("adds a constant to something else than a Conv or Gemm / MatMul output; only a bias is supported"));
                };
                let o = wt.b.len();
                if c.f.len() == o {
                    wt.b.iter_mut().zip(&c.f).for_each(|(b, v)| *b += v);
                } else if c.f.len() == 1 {
                    wt.b.iter_mut().for_each(|b| *b += c.f[0]);
                } else {
                    return Err(at.err(format!("adds a constant of shape {:?} to {o} channels", c.dims)));
                }
                let (t, layout) = self.act(at, ai)?;
                self.vals.insert(at.output()?.into(), Val::Act { t, layout });
            }
            (true, true) => return Err(at.err("adds two constants (fold them before export)")),
        }
        Ok(())
    }
}

/// `m` (`rows x cols`, row-major) transposed.
fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}
