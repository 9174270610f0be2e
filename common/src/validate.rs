//! Validation of a decoded model, and its memory plan.
//!
//! [`Plan::new`] checks a [`Model`] once: every layer reads an earlier tensor,
//! shapes chain, bitwidths and zero points are in range, every byte array has
//! exactly the length its shape implies, requantization shifts are in range
//! and no accumulator can overflow `i32`. Each failure is a [`ModelError`]
//! naming the layer and the field. After that, nothing in the kernels or the
//! runtime can index out of bounds on the model.
//!
//! It also computes, exactly, the memory a model needs:
//! - **flash**: the blob (header + payload) as stored, and per layer the bytes
//!   of its parameter arrays;
//! - **arena**: activations are one `i8` per value. Each tensor lives from the
//!   step that writes it to the last step that reads it (the model output to
//!   the end). A [`Reshape`](crate::model::Reshape) aliases its input. Tensors
//!   are placed largest first (ties in production order) at the lowest
//!   4-byte-aligned offset that does not overlap any tensor alive at the same
//!   time, as TFLite Micro's greedy planner does; the arena size is the
//!   highest end offset, rounded up to 4. After the tensors comes the
//!   scratch region the fast kernels use (im2col columns, gather tables:
//!   [`crate::kernels::scratch_bytes`], the largest over the layers), and it
//!   is counted in the arena. The firmware runs this same code, so the
//!   host's figure is the device's.

use crate::model::{Layer, Model, Shape, TensorQuant, Weights, MAX_LAYERS, MAX_NAME};
use crate::quant::{act_max, act_min, MAX_BITS, MIN_BITS};
use serde::{Deserialize, Serialize};

/// Most tensors a model has: the input plus one per layer.
pub const MAX_TENSORS: usize = MAX_LAYERS + 1;
/// Alignment of every tensor in the arena.
pub const ARENA_ALIGN: usize = 4;
/// Most elements one tensor may have (16 Mi): keeps every size and offset
/// computation far from overflow on 32-bit targets.
pub const MAX_TENSOR_LEN: u64 = 1 << 24;

fn check_shape(s: Shape, err: impl Fn(Problem) -> ModelError) -> Result<(), ModelError> {
    let len = s.elems();
    if len == 0 {
        return Err(err(Problem::EmptyOutput));
    }
    range_check(len as i64, 1, MAX_TENSOR_LEN as i64, err)
}

/// The field a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Field {
    Name,
    Layers,
    InputShape,
    InputQuant,
    Input,
    Other,
    OutChannels,
    Kernel,
    Stride,
    Padding,
    WeightBits,
    ActBits,
    ZeroPoint,
    Scale,
    Clamp,
    Weights,
    Bias,
    Multiplier,
    Shift,
    Shape,
}

impl Field {
    /// The field's name as written in docs and `releq inspect`.
    pub fn name(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Layers => "layers",
            Field::InputShape => "input_shape",
            Field::InputQuant => "input_quant",
            Field::Input => "input",
            Field::Other => "other",
            Field::OutChannels => "out_channels",
            Field::Kernel => "kernel",
            Field::Stride => "stride",
            Field::Padding => "padding",
            Field::WeightBits => "wbits",
            Field::ActBits => "abits",
            Field::ZeroPoint => "zero_point",
            Field::Scale => "scale",
            Field::Clamp => "clamp",
            Field::Weights => "weights",
            Field::Bias => "bias",
            Field::Multiplier => "multiplier",
            Field::Shift => "shift",
            Field::Shape => "shape",
        }
    }
}

impl core::fmt::Display for Field {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Problem {
    /// A number outside its allowed range.
    #[error("{value} is outside {min}..={max}")]
    OutOfRange {
        /// The value.
        value: i64,
        /// Lowest allowed.
        min: i64,
        /// Highest allowed.
        max: i64,
    },
    /// A byte array of the wrong length.
    #[error("has {actual} bytes, the shape implies exactly {expected}")]
    Length {
        /// Implied length.
        expected: u32,
        /// Actual length.
        actual: u32,
    },
    /// Reads a tensor that is not produced before this layer.
    #[error("reads tensor {tensor}, which is not produced before this layer (tensor 0 is the input, layer i writes tensor i+1)")]
    NotYetProduced {
        /// The tensor id.
        tensor: u16,
    },
    /// Two shapes that must agree do not.
    #[error("shape {actual_h}x{actual_w}x{actual_c} does not chain: expected {expected_h}x{expected_w}x{expected_c}")]
    ShapeMismatch {
        #[allow(missing_docs)]
        expected_h: u16,
        #[allow(missing_docs)]
        expected_w: u16,
        #[allow(missing_docs)]
        expected_c: u16,
        #[allow(missing_docs)]
        actual_h: u16,
        #[allow(missing_docs)]
        actual_w: u16,
        #[allow(missing_docs)]
        actual_c: u16,
    },
    /// Element counts that must agree do not.
    #[error("has {actual} elements, expected {expected}")]
    SizeMismatch {
        /// Expected count.
        expected: u32,
        /// Actual count.
        actual: u32,
    },
    /// A window larger than the padded input, or an empty shape.
    #[error("gives an empty or oversized output")]
    EmptyOutput,
    /// The worst-case accumulator exceeds `i32`.
    #[error("worst-case accumulator {bound} overflows i32")]
    AccumulatorOverflow {
        /// The bound computed.
        bound: i64,
    },
    /// A scale that is not a finite positive number.
    #[error("is not a finite positive number")]
    NotPositive,
    /// Clamp bounds with min > max.
    #[error("min {min} > max {max}")]
    Inverted {
        /// Lower bound.
        min: i16,
        /// Upper bound.
        max: i16,
    },
}

/// A model that cannot be used, and exactly why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ModelError {
    /// The bytes are not a well-formed `.releq` file.
    #[error(transparent)]
    Format(#[from] crate::model::FormatError),
    /// A model-level field is wrong.
    #[error("model field `{field}`: {problem}")]
    Model {
        /// The field.
        field: Field,
        /// What is wrong.
        problem: Problem,
    },
    /// A layer's field is wrong.
    #[error("layer {layer} field `{field}`: {problem}")]
    Layer {
        /// Layer index (0-based).
        layer: u16,
        /// The field.
        field: Field,
        /// What is wrong.
        problem: Problem,
    },
}

/// What the validator knows about one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TensorInfo {
    /// Shape.
    pub shape: Shape,
    /// Quantization.
    pub quant: TensorQuant,
    /// Byte offset in the arena.
    pub offset: u32,
}

impl TensorInfo {
    /// The arena range of this tensor.
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset as usize..self.offset as usize + self.shape.len()
    }
}

/// A validated model with its tensor table and arena plan.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The model.
    pub model: Model<'a>,
    /// Tensor 0 is the input, tensor `i + 1` the output of layer `i`.
    pub tensors: heapless::Vec<TensorInfo, MAX_TENSORS>,
    /// Bytes of arena the model needs: tensors, then the kernels' scratch.
    pub arena_bytes: usize,
    /// Where the scratch region starts (the end of the tensors, aligned).
    pub scratch_offset: usize,
}

fn range_check(v: i64, min: i64, max: i64, err: impl Fn(Problem) -> ModelError) -> Result<(), ModelError> {
    if v < min || v > max {
        Err(err(Problem::OutOfRange { value: v, min, max }))
    } else {
        Ok(())
    }
}

fn check_quant(q: &TensorQuant, err: impl Fn(Field, Problem) -> ModelError) -> Result<(), ModelError> {
    range_check(q.bits as i64, MIN_BITS as i64, MAX_BITS as i64, |p| err(Field::ActBits, p))?;
    range_check(q.zero_point as i64, act_min(q.bits) as i64, act_max(q.bits) as i64, |p| err(Field::ZeroPoint, p))?;
    if !(q.scale.is_finite() && q.scale > 0.0) {
        return Err(err(Field::Scale, Problem::NotPositive));
    }
    Ok(())
}

/// A clamp must be ordered and lie within the output's code range (so the
/// kernels' bounds `max(qmin, min) ..= min(qmax, max)` are never empty).
fn check_clamp(
    c: &crate::model::Clamp,
    bits: u8,
    err: impl Fn(Field, Problem) -> ModelError,
) -> Result<(), ModelError> {
    if c.min > c.max {
        return Err(err(Field::Clamp, Problem::Inverted { min: c.min, max: c.max }));
    }
    let (lo, hi) = (act_min(bits) as i64, act_max(bits) as i64);
    range_check(c.min as i64, lo, hi, |p| err(Field::Clamp, p))?;
    range_check(c.max as i64, lo, hi, |p| err(Field::Clamp, p))
}

fn check_len(
    actual: usize,
    expected: u64,
    field: Field,
    err: &impl Fn(Field, Problem) -> ModelError,
) -> Result<(), ModelError> {
    if actual as u64 != expected {
        let expected = expected.min(u32::MAX as u64) as u32;
        return Err(err(field, Problem::Length { expected, actual: actual as u32 }));
    }
    Ok(())
}

/// Check a weighted layer's arrays for `out_c` rows of `k` weights, and the
/// accumulator bound. Lengths are computed in `u64` so a hostile shape cannot
/// overflow them on a 32-bit device.
fn check_weights(
    w: &Weights<'_>,
    out_c: usize,
    k: u64,
    err: &impl Fn(Field, Problem) -> ModelError,
) -> Result<(), ModelError> {
    range_check(w.bits as i64, MIN_BITS as i64, MAX_BITS as i64, |p| err(Field::WeightBits, p))?;
    let row = (k * w.bits as u64).div_ceil(8);
    check_len(w.packed.len(), out_c as u64 * row, Field::Weights, err)?;
    // The unused high bits of each row's last byte are zero (the fast
    // kernels multiply whole bytes, so they must not hold stray bits).
    let used = (k * w.bits as u64) % 8;
    if used != 0 && row > 0 {
        let mask = (1u32 << used) - 1;
        for c in 0..out_c {
            let last = w.packed[(c as u64 * row + row - 1) as usize] as u32;
            if last & !mask != 0 {
                return Err(err(Field::Weights, Problem::OutOfRange { value: last as i64, min: 0, max: mask as i64 }));
            }
        }
    }
    check_len(w.bias.len(), out_c as u64 * 4, Field::Bias, err)?;
    check_len(w.multiplier.len(), out_c as u64 * 4, Field::Multiplier, err)?;
    check_len(w.shift.len(), out_c as u64, Field::Shift, err)?;
    let mut max_bias: i64 = 0;
    for c in 0..out_c {
        let rq = w.requant(c);
        range_check(rq.multiplier as i64, 0, i32::MAX as i64, |p| err(Field::Multiplier, p))?;
        range_check(rq.shift as i64, -31, 30, |p| err(Field::Shift, p))?;
        max_bias = max_bias.max((w.bias(c) as i64).abs());
    }
    // |x - zp| <= 255 and |w| <= 2^(bits-1).
    let bound = (k as i64).saturating_mul(255 * (1i64 << (w.bits - 1))).saturating_add(max_bias);
    if bound > i32::MAX as i64 {
        return Err(err(Field::Weights, Problem::AccumulatorOverflow { bound }));
    }
    Ok(())
}

/// Output size of a sliding window along one axis, or `None` if empty.
fn window_out(len: u16, k: u8, stride: u8, pad_a: u8, pad_b: u8) -> Option<u16> {
    let padded = len as u32 + pad_a as u32 + pad_b as u32;
    if k == 0 || stride == 0 || padded < k as u32 {
        return None;
    }
    let out = (padded - k as u32) / stride as u32 + 1;
    u16::try_from(out).ok()
}

struct Window {
    kh: u8,
    kw: u8,
    sh: u8,
    sw: u8,
    pad: crate::model::Padding,
}

fn check_window(
    input: Shape,
    win: &Window,
    out_c: u16,
    err: &impl Fn(Field, Problem) -> ModelError,
) -> Result<Shape, ModelError> {
    range_check(win.kh as i64, 1, 255, |p| err(Field::Kernel, p))?;
    range_check(win.kw as i64, 1, 255, |p| err(Field::Kernel, p))?;
    range_check(win.sh as i64, 1, 255, |p| err(Field::Stride, p))?;
    range_check(win.sw as i64, 1, 255, |p| err(Field::Stride, p))?;
    // Padding of a full kernel or more would create outputs that see no input.
    let maxp = |k: u8| k as i64 - 1;
    range_check(win.pad.top as i64, 0, maxp(win.kh), |p| err(Field::Padding, p))?;
    range_check(win.pad.bottom as i64, 0, maxp(win.kh), |p| err(Field::Padding, p))?;
    range_check(win.pad.left as i64, 0, maxp(win.kw), |p| err(Field::Padding, p))?;
    range_check(win.pad.right as i64, 0, maxp(win.kw), |p| err(Field::Padding, p))?;
    let h = window_out(input.h, win.kh, win.sh, win.pad.top, win.pad.bottom);
    let w = window_out(input.w, win.kw, win.sw, win.pad.left, win.pad.right);
    match (h, w) {
        (Some(h), Some(w)) if out_c > 0 => Ok(Shape::new(h, w, out_c)),
        _ => Err(err(Field::Kernel, Problem::EmptyOutput)),
    }
}

/// Per-layer facts for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// Multiply-accumulates of one inference (0 for layers without weights).
    pub macs: u64,
    /// Bytes of this layer's parameter arrays.
    pub param_bytes: usize,
}

impl<'a> Plan<'a> {
    /// Decode and validate a `.releq` blob.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, ModelError> {
        Self::new(Model::decode(bytes)?)
    }

    /// Validate a model and plan its arena.
    pub fn new(model: Model<'a>) -> Result<Self, ModelError> {
        let merr = |field, problem| ModelError::Model { field, problem };
        range_check(model.name.len() as i64, 0, MAX_NAME as i64, |p| merr(Field::Name, p))?;
        range_check(model.layers.len() as i64, 1, MAX_LAYERS as i64, |p| merr(Field::Layers, p))?;
        check_shape(model.input_shape, |p| merr(Field::InputShape, p))?;
        check_quant(&model.input_quant, |_, p| merr(Field::InputQuant, p))?;

        let mut tensors: heapless::Vec<TensorInfo, MAX_TENSORS> = heapless::Vec::new();
        // Capacity: layers <= MAX_LAYERS was checked, so pushes cannot fail.
        let _ = tensors.push(TensorInfo { shape: model.input_shape, quant: model.input_quant, offset: 0 });

        for (i, layer) in model.layers.iter().enumerate() {
            let li = i as u16;
            let err = move |field, problem| ModelError::Layer { layer: li, field, problem };
            let get = |t: u16, field: Field| -> Result<TensorInfo, ModelError> {
                tensors.get(t as usize).copied().ok_or(err(field, Problem::NotYetProduced { tensor: t }))
            };
            let input = get(layer.input(), Field::Input)?;
            let (shape, quant) = match layer {
                Layer::Conv2d(l) | Layer::DepthwiseConv2d(l) => {
                    let depthwise = matches!(layer, Layer::DepthwiseConv2d(_));
                    if depthwise && l.out_c != input.shape.c {
                        return Err(err(
                            Field::OutChannels,
                            Problem::OutOfRange {
                                value: l.out_c as i64,
                                min: input.shape.c as i64,
                                max: input.shape.c as i64,
                            },
                        ));
                    }
                    let win = Window { kh: l.kh, kw: l.kw, sh: l.stride_h, sw: l.stride_w, pad: l.pad };
                    let shape = check_window(input.shape, &win, l.out_c, &err)?;
                    let k = l.kh as u64 * l.kw as u64 * if depthwise { 1 } else { input.shape.c as u64 };
                    check_weights(&l.w, l.out_c as usize, k, &err)?;
                    check_quant(&l.out, err)?;
                    check_clamp(&l.clamp, l.out.bits, err)?;
                    (shape, l.out)
                }
                Layer::Dense(l) => {
                    if l.out_features == 0 {
                        return Err(err(
                            Field::OutChannels,
                            Problem::OutOfRange { value: 0, min: 1, max: u16::MAX as i64 },
                        ));
                    }
                    check_weights(&l.w, l.out_features as usize, input.shape.elems(), &err)?;
                    check_quant(&l.out, err)?;
                    check_clamp(&l.clamp, l.out.bits, err)?;
                    (Shape::new(1, 1, l.out_features), l.out)
                }
                Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => {
                    let win = Window { kh: p.kh, kw: p.kw, sh: p.stride_h, sw: p.stride_w, pad: p.pad };
                    (check_window(input.shape, &win, input.shape.c, &err)?, input.quant)
                }
                Layer::Add(a) => {
                    let other = get(a.other, Field::Other)?;
                    if other.shape != input.shape {
                        return Err(err(Field::Other, shape_mismatch(input.shape, other.shape)));
                    }
                    for m in [a.params.in1, a.params.in2, a.params.out] {
                        range_check(m.multiplier as i64, 0, i32::MAX as i64, |p| err(Field::Multiplier, p))?;
                        range_check(m.shift as i64, -31, 30, |p| err(Field::Shift, p))?;
                    }
                    check_quant(&a.out, err)?;
                    check_clamp(&a.clamp, a.out.bits, err)?;
                    (input.shape, a.out)
                }
                Layer::Reshape(r) => {
                    if r.shape.elems() != input.shape.elems() {
                        return Err(err(
                            Field::Shape,
                            Problem::SizeMismatch {
                                expected: input.shape.elems() as u32,
                                actual: r.shape.elems().min(u32::MAX as u64) as u32,
                            },
                        ));
                    }
                    (r.shape, input.quant)
                }
            };
            check_shape(shape, |p| err(Field::Shape, p))?;
            let _ = tensors.push(TensorInfo { shape, quant, offset: 0 });
        }

        let scratch_offset = plan_arena(&model, &mut tensors);
        let scratch = model
            .layers
            .iter()
            .map(|l| crate::kernels::scratch_bytes(l, tensors[l.input() as usize].shape))
            .max()
            .unwrap_or(0);
        let arena_bytes = scratch_offset + scratch.next_multiple_of(ARENA_ALIGN);
        Ok(Plan { model, tensors, arena_bytes, scratch_offset })
    }

    /// The shape of the model's output.
    pub fn output(&self) -> &TensorInfo {
        &self.tensors[self.tensors.len() - 1]
    }

    /// The input tensor.
    pub fn input(&self) -> &TensorInfo {
        &self.tensors[0]
    }

    /// MACs and parameter bytes of layer `i`.
    pub fn layer_stats(&self, i: usize) -> LayerStats {
        let out = self.tensors[i + 1].shape;
        let input = self.tensors[self.model.layers[i].input() as usize].shape;
        let (macs, param_bytes) = match &self.model.layers[i] {
            Layer::Conv2d(l) => (out.len() as u64 * (l.kh as u64 * l.kw as u64 * input.c as u64), l.w.param_bytes()),
            Layer::DepthwiseConv2d(l) => (out.len() as u64 * (l.kh as u64 * l.kw as u64), l.w.param_bytes()),
            Layer::Dense(l) => (out.len() as u64 * input.len() as u64, l.w.param_bytes()),
            _ => (0, 0),
        };
        LayerStats { macs, param_bytes }
    }
}

fn shape_mismatch(expected: Shape, actual: Shape) -> Problem {
    Problem::ShapeMismatch {
        expected_h: expected.h,
        expected_w: expected.w,
        expected_c: expected.c,
        actual_h: actual.h,
        actual_w: actual.w,
        actual_c: actual.c,
    }
}

/// Assign arena offsets (see the module doc); returns the arena size.
#[allow(clippy::needless_range_loop)] // parallel arrays indexed by tensor id
fn plan_arena(model: &Model<'_>, tensors: &mut heapless::Vec<TensorInfo, MAX_TENSORS>) -> usize {
    let n = tensors.len();
    // storage[t]: the tensor whose buffer t uses (itself, or a reshape's source).
    let mut storage = [0u16; MAX_TENSORS];
    // Live interval in steps: tensor t is written at step t (input: step 0).
    let mut first = [0u16; MAX_TENSORS];
    let mut last = [0u16; MAX_TENSORS];
    for t in 0..n {
        storage[t] = t as u16;
        first[t] = t as u16;
        last[t] = t as u16;
    }
    for (i, layer) in model.layers.iter().enumerate() {
        let t = i + 1;
        if let Layer::Reshape(r) = layer {
            storage[t] = storage[r.input as usize];
        }
        let step = t as u16;
        let mut read = |src: u16| {
            let s = storage[src as usize] as usize;
            last[s] = last[s].max(step);
        };
        read(layer.input());
        if let Layer::Add(a) = layer {
            read(a.other);
        }
    }
    let out_store = storage[n - 1] as usize;
    last[out_store] = n as u16;

    // Greedy by size (as TFLite Micro's greedy planner): largest buffers
    // first, each at the lowest aligned offset clear of every placed buffer
    // alive at the same time. Ties keep production order.
    let mut order = [0usize; MAX_TENSORS];
    let mut count = 0;
    for s in 0..n {
        if storage[s] as usize == s {
            order[count] = s;
            count += 1;
        }
    }
    let size = |t: usize| tensors[t].shape.len();
    order[..count].sort_unstable_by(|&a, &b| size(b).cmp(&size(a)).then(a.cmp(&b)));

    let mut arena = 0usize;
    let mut placed = [false; MAX_TENSORS];
    let mut offset = [0usize; MAX_TENSORS];
    for &s in &order[..count] {
        let overlaps = |o: usize| first[o] <= last[s] && first[s] <= last[o];
        let fits = |cand: usize| {
            (0..n).all(|o| !placed[o] || !overlaps(o) || cand + size(s) <= offset[o] || offset[o] + size(o) <= cand)
        };
        // Candidates: 0 and the aligned end of every conflicting placed buffer.
        let mut best = if fits(0) { 0 } else { usize::MAX };
        for o in 0..n {
            if placed[o] && overlaps(o) {
                let cand = (offset[o] + size(o)).next_multiple_of(ARENA_ALIGN);
                if cand < best && fits(cand) {
                    best = cand;
                }
            }
        }
        offset[s] = best;
        placed[s] = true;
        arena = arena.max(best + size(s));
    }
    for t in 0..n {
        tensors[t].offset = offset[storage[t] as usize] as u32;
    }
    arena.next_multiple_of(ARENA_ALIGN)
}
