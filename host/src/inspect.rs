//! `releq inspect`: a human and a JSON summary of a `.releq` model file.
//!
//! The report is built from the same decoder and validator the device runs,
//! so every figure (flash bytes, arena bytes, MACs) is computed, not guessed.

use releq_common::model::{parse_header, Activation, Layer};
use releq_common::validate::{ModelError, Plan};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// One layer in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerReport {
    /// Index in the model.
    pub index: usize,
    /// Kind (`conv2d`, `dwconv2d`, `dense`, ...).
    pub kind: String,
    /// Tensor read (0 = model input).
    pub input: u16,
    /// Second tensor read by a residual add.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other: Option<u16>,
    /// Output shape `[h, w, c]`.
    pub out_shape: [u16; 3],
    /// Weight bits of a weighted layer.
    pub wbits: Option<u8>,
    /// Activation bits of the output.
    pub abits: u8,
    /// Fused activation.
    pub activation: Option<String>,
    /// Kernel `[kh, kw]`, stride `[sh, sw]` of windowed layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<[u8; 4]>,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Bytes of parameter arrays (weights, bias, requantization).
    pub param_bytes: usize,
    /// Output tensor's arena offset.
    pub arena_offset: u32,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelReport {
    /// File inspected.
    pub file: String,
    /// Model name.
    pub name: String,
    /// Format version from the header.
    pub format_version: u16,
    /// CRC-32 of the payload (checked: a mismatch is an error, not a report).
    pub crc32: String,
    /// Whether the CRC matched (always true in a report).
    pub crc_ok: bool,
    /// Input `[h, w, c]`.
    pub input_shape: [u16; 3],
    /// Input bits.
    pub input_bits: u8,
    /// Input scale.
    pub input_scale: f32,
    /// Input zero point.
    pub input_zero_point: i32,
    /// Layers.
    pub layers: Vec<LayerReport>,
    /// Total MACs.
    pub total_macs: u64,
    /// Flash the model takes: the whole blob, as stored on the device.
    pub flash_bytes: usize,
    /// Of which parameter arrays.
    pub param_bytes: usize,
    /// Arena the model needs: peak live activations (one byte per value),
    /// then the kernels' scratch.
    pub arena_bytes: usize,
    /// Of which peak live activations.
    pub tensor_bytes: usize,
}

fn act_name(a: Activation) -> Option<String> {
    match a {
        Activation::None => None,
        Activation::Relu => Some("relu".into()),
        Activation::Relu6 => Some("relu6".into()),
    }
}

/// Decode, validate and summarise a model blob.
pub fn report(file: &Path, bytes: &[u8]) -> Result<ModelReport, ModelError> {
    let plan = Plan::from_bytes(bytes)?;
    let (header, _) = parse_header(bytes).expect("validated above");
    let mut layers = Vec::new();
    for (i, l) in plan.model.layers.iter().enumerate() {
        let out = plan.tensors[i + 1];
        let stats = plan.layer_stats(i);
        let (activation, kernel) = match l {
            Layer::Conv2d(c) | Layer::DepthwiseConv2d(c) => {
                (act_name(c.act), Some([c.kh, c.kw, c.stride_h, c.stride_w]))
            }
            Layer::Dense(d) => (act_name(d.act), None),
            Layer::Add(a) => (act_name(a.act), None),
            Layer::MaxPool2d(p) | Layer::AvgPool2d(p) => (None, Some([p.kh, p.kw, p.stride_h, p.stride_w])),
            Layer::Reshape(_) => (None, None),
        };
        layers.push(LayerReport {
            index: i,
            kind: l.kind().into(),
            input: l.input(),
            other: if let Layer::Add(a) = l { Some(a.other) } else { None },
            out_shape: [out.shape.h, out.shape.w, out.shape.c],
            wbits: l.weights().map(|w| w.bits),
            abits: out.quant.bits,
            activation,
            kernel,
            macs: stats.macs,
            param_bytes: stats.param_bytes,
            arena_offset: out.offset,
        });
    }
    let input = plan.input();
    Ok(ModelReport {
        file: file.display().to_string(),
        name: plan.model.name.into(),
        format_version: header.version,
        crc32: format!("{:#010x}", header.crc),
        crc_ok: true,
        input_shape: [input.shape.h, input.shape.w, input.shape.c],
        input_bits: input.quant.bits,
        input_scale: input.quant.scale,
        input_zero_point: input.quant.zero_point,
        total_macs: layers.iter().map(|l| l.macs).sum(),
        param_bytes: layers.iter().map(|l| l.param_bytes).sum(),
        layers,
        flash_bytes: bytes.len(),
        arena_bytes: plan.arena_bytes,
        tensor_bytes: plan.scratch_offset,
    })
}

/// Render a report as an aligned text table.
pub fn render(r: &ModelReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model   {}  ({})", r.name, r.file);
    let _ = writeln!(s, "format  v{}, CRC {} ok", r.format_version, r.crc32);
    let [h, w, c] = r.input_shape;
    let _ = writeln!(
        s,
        "input   {h}x{w}x{c}, {}-bit, scale {:.6}, zero point {}",
        r.input_bits, r.input_scale, r.input_zero_point
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>3}  {:<10} {:>4}  {:<11} {:>5} {:>5}  {:<6} {:>10} {:>10}",
        "#", "layer", "in", "output", "wbits", "abits", "act", "MACs", "flash B"
    );
    for l in &r.layers {
        let [h, w, c] = l.out_shape;
        let input = match l.other {
            Some(o) => format!("{}+{}", l.input, o),
            None => l.input.to_string(),
        };
        let _ = writeln!(
            s,
            "{:>3}  {:<10} {:>4}  {:<11} {:>5} {:>5}  {:<6} {:>10} {:>10}",
            l.index,
            l.kind,
            input,
            format!("{h}x{w}x{c}"),
            l.wbits.map_or("-".into(), |b| b.to_string()),
            l.abits,
            l.activation.as_deref().unwrap_or("-"),
            l.macs,
            l.param_bytes
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "MACs    {}", r.total_macs);
    let _ = writeln!(
        s,
        "flash   {} bytes ({} in parameter arrays, {} header and layer descriptions)",
        r.flash_bytes,
        r.param_bytes,
        r.flash_bytes - r.param_bytes
    );
    let _ = writeln!(
        s,
        "arena   {} bytes ({} peak live activations, 1 byte per value; {} kernel scratch)",
        r.arena_bytes,
        r.tensor_bytes,
        r.arena_bytes - r.tensor_bytes
    );
    s
}
