//! Reading a `.tflite` flatbuffer into a small, owned [`Graph`].
//!
//! The file is checked by the flatbuffers verifier (with bounded depth and
//! table count, see [`verifier_options`]) before any field is read, so a
//! malformed file is an [`ImportError`], never a panic. Every vector copied
//! out of the file is as long as the file says, so nothing is allocated
//! beyond the file's own size. Only the first subgraph is read (TFLite Micro
//! runs subgraph 0); only what the conversion needs is kept: tensors (shape,
//! type, quantisation, constant data) and operators with the options of the
//! ops the importer knows.

use super::schema::tflite as fb;
use super::ImportError;

/// Largest `.tflite` file read (bytes). Flatbuffers address 2 GiB at most.
pub const MAX_FILE: usize = 1 << 30;

/// The verifier's bounds: nesting depth, number of tables, apparent size.
pub fn verifier_options() -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions {
        max_depth: 64,
        max_tables: 1 << 20,
        max_apparent_size: MAX_FILE,
        ignore_missing_null_terminator: false,
    }
}

/// A tensor's element type (the ones the importer tells apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// int8.
    I8,
    /// int32 (biases, shapes, axes).
    I32,
    /// float32 (model boundaries).
    F32,
    /// Any other type, by its schema name.
    Other(&'static str),
}

impl DType {
    /// Schema name of the type.
    pub fn name(self) -> &'static str {
        match self {
            DType::I8 => "INT8",
            DType::I32 => "INT32",
            DType::F32 => "FLOAT32",
            DType::Other(n) => n,
        }
    }
}

/// Affine quantisation: `real = scale[i] * (q - zero_point[i])`, one entry
/// per tensor or per slice along `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Quant {
    /// Scales.
    pub scale: Vec<f32>,
    /// Zero points.
    pub zero_point: Vec<i64>,
    /// Quantised dimension (per-channel).
    pub dim: i32,
}

/// One tensor of the subgraph.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name in the file (may be empty).
    pub name: String,
    /// Shape (batch first); a dynamic dimension is 1 here and -1 in
    /// [`Self::signature`].
    pub shape: Vec<i32>,
    /// The shape signature, when the file has one.
    pub signature: Option<Vec<i32>>,
    /// Element type.
    pub dtype: DType,
    /// Quantisation, when present.
    pub quant: Option<Quant>,
    /// Constant data (little-endian bytes), when the tensor has a buffer.
    pub data: Option<Vec<u8>>,
}

impl Tensor {
    /// Number of elements of [`Self::shape`], or `None` for a negative
    /// dimension or an overflow.
    pub fn elems(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |n, &d| if d < 0 { None } else { n.checked_mul(d as u64) })
    }
}

/// A fused activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// NONE.
    None,
    /// RELU.
    Relu,
    /// RELU6.
    Relu6,
    /// Any other (RELU_N1_TO_1, TANH, ...), by name.
    Other(&'static str),
}

/// SAME or VALID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    /// Output `ceil(in / stride)`, padding split with the odd one at the end.
    Same,
    /// No padding.
    Valid,
}

/// The options of the operators the importer converts.
#[derive(Debug, Clone, PartialEq)]
pub enum Options {
    /// CONV_2D / DEPTHWISE_CONV_2D.
    Conv {
        /// Padding.
        pad: Pad,
        /// Strides (h, w).
        stride: (i32, i32),
        /// Dilations (h, w).
        dilation: (i32, i32),
        /// Depthwise channel multiplier (1 for CONV_2D).
        depth_multiplier: i32,
        /// Fused activation.
        act: Act,
    },
    /// MAX_POOL_2D / AVERAGE_POOL_2D.
    Pool {
        /// Padding.
        pad: Pad,
        /// Strides (h, w).
        stride: (i32, i32),
        /// Window (h, w).
        filter: (i32, i32),
        /// Fused activation.
        act: Act,
    },
    /// FULLY_CONNECTED.
    FullyConnected {
        /// Fused activation.
        act: Act,
        /// Weights format other than DEFAULT, by name.
        shuffled: Option<&'static str>,
    },
    /// ADD.
    Add {
        /// Fused activation.
        act: Act,
    },
    /// Any other op, or an op whose options are missing.
    None,
}

/// One operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// Position in the subgraph's operator list.
    pub index: usize,
    /// Builtin operator name (`CONV_2D`), or `CUSTOM(name)`.
    pub name: String,
    /// Options of the known ops.
    pub options: Options,
    /// Input tensor indices (-1: omitted optional input).
    pub inputs: Vec<i32>,
    /// Output tensor indices.
    pub outputs: Vec<i32>,
}

/// Subgraph 0 of a `.tflite` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Tensors.
    pub tensors: Vec<Tensor>,
    /// Operators in execution order.
    pub ops: Vec<Op>,
    /// Graph input tensors.
    pub inputs: Vec<i32>,
    /// Graph output tensors.
    pub outputs: Vec<i32>,
}

impl Graph {
    /// The tensor at `index`, or an error naming `op` when out of range.
    pub fn tensor(&self, op: &Op, index: i32) -> Result<&Tensor, ImportError> {
        usize::try_from(index).ok().and_then(|i| self.tensors.get(i)).ok_or_else(|| ImportError::Op {
            index: op.index,
            op: op.name.clone(),
            reason: format!("refers to tensor {index}, the subgraph has {} tensors", self.tensors.len()),
        })
    }
}

fn act(a: fb::ActivationFunctionType) -> Act {
    match a {
        fb::ActivationFunctionType::NONE => Act::None,
        fb::ActivationFunctionType::RELU => Act::Relu,
        fb::ActivationFunctionType::RELU6 => Act::Relu6,
        other => Act::Other(other.variant_name().unwrap_or("UNKNOWN")),
    }
}

fn pad(p: fb::Padding) -> Pad {
    if p == fb::Padding::SAME {
        Pad::Same
    } else {
        Pad::Valid
    }
}

fn dtype(t: fb::TensorType) -> DType {
    match t {
        fb::TensorType::INT8 => DType::I8,
        fb::TensorType::INT32 => DType::I32,
        fb::TensorType::FLOAT32 => DType::F32,
        other => DType::Other(other.variant_name().unwrap_or("UNKNOWN")),
    }
}

fn options(op: &fb::Operator<'_>, code: fb::BuiltinOperator) -> Options {
    match code {
        fb::BuiltinOperator::CONV_2D => {
            op.builtin_options_as_conv_2_doptions().map_or(Options::None, |o| Options::Conv {
                pad: pad(o.padding()),
                stride: (o.stride_h(), o.stride_w()),
                dilation: (o.dilation_h_factor(), o.dilation_w_factor()),
                depth_multiplier: 1,
                act: act(o.fused_activation_function()),
            })
        }
        fb::BuiltinOperator::DEPTHWISE_CONV_2D => {
            op.builtin_options_as_depthwise_conv_2_doptions().map_or(Options::None, |o| Options::Conv {
                pad: pad(o.padding()),
                stride: (o.stride_h(), o.stride_w()),
                dilation: (o.dilation_h_factor(), o.dilation_w_factor()),
                depth_multiplier: o.depth_multiplier(),
                act: act(o.fused_activation_function()),
            })
        }
        fb::BuiltinOperator::MAX_POOL_2D | fb::BuiltinOperator::AVERAGE_POOL_2D => {
            op.builtin_options_as_pool_2_doptions().map_or(Options::None, |o| Options::Pool {
                pad: pad(o.padding()),
                stride: (o.stride_h(), o.stride_w()),
                filter: (o.filter_height(), o.filter_width()),
                act: act(o.fused_activation_function()),
            })
        }
        // Missing FULLY_CONNECTED / ADD options mean the defaults.
        fb::BuiltinOperator::FULLY_CONNECTED => match op.builtin_options_as_fully_connected_options() {
            Some(o) => Options::FullyConnected {
                act: act(o.fused_activation_function()),
                shuffled: (o.weights_format() != fb::FullyConnectedOptionsWeightsFormat::DEFAULT)
                    .then(|| o.weights_format().variant_name().unwrap_or("UNKNOWN")),
            },
            None => Options::FullyConnected { act: Act::None, shuffled: None },
        },
        fb::BuiltinOperator::ADD => Options::Add {
            act: op.builtin_options_as_add_options().map_or(Act::None, |o| act(o.fused_activation_function())),
        },
        _ => Options::None,
    }
}

/// Parse a `.tflite` file (subgraph 0).
pub fn read(bytes: &[u8]) -> Result<Graph, ImportError> {
    if bytes.len() > MAX_FILE {
        return Err(ImportError::Format(format!("file is {} bytes, more than the {MAX_FILE} read", bytes.len())));
    }
    if bytes.len() < 8 {
        return Err(ImportError::Format(format!("file is {} bytes, too short for a flatbuffer", bytes.len())));
    }
    if !fb::model_buffer_has_identifier(bytes) {
        return Err(ImportError::Format(format!(
            "bytes 4..8 are {:02x?}, not the .tflite identifier \"TFL3\"",
            &bytes[4..8]
        )));
    }
    let model = fb::root_as_model_with_opts(&verifier_options(), bytes).map_err(|e| {
        // The verifier's message lists its trace on indented lines.
        let msg = e.to_string().split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(", ");
        ImportError::Format(format!("not a valid .tflite flatbuffer: {msg}"))
    })?;
    let subgraphs = model.subgraphs().ok_or_else(|| ImportError::Format("the model has no subgraphs".into()))?;
    if subgraphs.is_empty() {
        return Err(ImportError::Format("the model has no subgraphs".into()));
    }
    let sg = subgraphs.get(0);
    let buffers = model.buffers();
    let codes = model.operator_codes();

    let fb_tensors = sg.tensors().ok_or_else(|| ImportError::Format("subgraph 0 has no tensors".into()))?;
    let mut tensors = Vec::with_capacity(fb_tensors.len());
    for (i, t) in fb_tensors.iter().enumerate() {
        let name = t.name().unwrap_or("").to_string();
        let err = |reason: String| ImportError::Tensor { index: i, name: name.clone(), reason };
        if t.sparsity().is_some() {
            return Err(err("is sparse; sparse tensors are not supported".into()));
        }
        let quant = t.quantization().and_then(|q| {
            let scale: Vec<f32> = q.scale().map(|v| v.iter().collect()).unwrap_or_default();
            (!scale.is_empty()).then(|| Quant {
                scale,
                zero_point: q.zero_point().map(|v| v.iter().collect()).unwrap_or_default(),
                dim: q.quantized_dimension(),
            })
        });
        let data = match t.buffer() {
            0 => None,
            b => {
                let buffers =
                    buffers.as_ref().ok_or_else(|| err(format!("refers to buffer {b}, the file has none")))?;
                if b as usize >= buffers.len() {
                    return Err(err(format!("refers to buffer {b}, the file has {}", buffers.len())));
                }
                let buf = buffers.get(b as usize);
                if buf.offset() > 1 {
                    // Large models keep the data after the flatbuffer.
                    let (off, size) = (buf.offset(), buf.size());
                    let end = off.checked_add(size).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
                        err(format!("buffer {b} spans bytes {off}..{off}+{size}, past the {}-byte file", bytes.len()))
                    })?;
                    Some(bytes[off as usize..end as usize].to_vec())
                } else {
                    buf.data().filter(|d| !d.is_empty()).map(|d| d.bytes().to_vec())
                }
            }
        };
        tensors.push(Tensor {
            shape: t.shape().map(|v| v.iter().collect()).unwrap_or_default(),
            signature: t.shape_signature().map(|v| v.iter().collect()),
            dtype: dtype(t.type_()),
            quant,
            data,
            name,
        });
    }

    let mut ops = Vec::new();
    for (index, op) in sg.operators().iter().flatten().enumerate() {
        let oc = op.opcode_index() as usize;
        let code = codes.as_ref().filter(|c| oc < c.len()).map(|c| c.get(oc)).ok_or_else(|| ImportError::Op {
            index,
            op: "?".into(),
            reason: format!("refers to operator code {oc}, the file has {}", codes.as_ref().map_or(0, |c| c.len())),
        })?;
        // Files from before builtin_code existed only fill the deprecated field.
        let builtin = fb::BuiltinOperator(code.builtin_code().0.max(code.deprecated_builtin_code() as i32));
        let name = if builtin == fb::BuiltinOperator::CUSTOM {
            format!("CUSTOM({})", code.custom_code().unwrap_or(""))
        } else {
            builtin.variant_name().map_or_else(|| format!("BUILTIN({})", builtin.0), str::to_string)
        };
        ops.push(Op {
            index,
            options: options(&op, builtin),
            name,
            inputs: op.inputs().map(|v| v.iter().collect()).unwrap_or_default(),
            outputs: op.outputs().map(|v| v.iter().collect()).unwrap_or_default(),
        });
    }
    Ok(Graph {
        tensors,
        ops,
        inputs: sg.inputs().map(|v| v.iter().collect()).unwrap_or_default(),
        outputs: sg.outputs().map(|v| v.iter().collect()).unwrap_or_default(),
    })
}
