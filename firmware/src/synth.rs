//! Synthetic layers for `TimeLayer`: a layer of the requested shape and bits
//! with made-up parameters, validated by common's validator as a one-layer
//! model, its input filled with made-up codes.
//!
//! Time does not depend on the values, but they are kept valid: weights are
//! pseudo-random codes in the symmetric range of their bits, multipliers in
//! `[2^30, 2^31)`, shifts in `-8..=-5`, small biases, input codes in range.
//!
//! Sizes are checked in 64 bits before anything is built (common's `usize`
//! arithmetic is 32 bits here): a spec whose tensors or parameters do not fit
//! the device's buffers gets [`DeviceError::OutOfMemory`], a spec that does not
//! describe a valid layer [`DeviceError::Spec`].

use releq_common::model::{Add, Clamp, Conv2d, Dense, Pool, TensorQuant, Weights};
use releq_common::pack::{pack_row, row_bytes};
use releq_common::protocol::{DeviceError, LayerSpec, SpecKind};
use releq_common::quant::{act_max, act_min, add_params, weight_max, MAX_BITS, MIN_BITS};
use releq_common::validate::{Field, Problem, ARENA_ALIGN};
use releq_common::{Layer, Model, ModelError, Plan};

/// A small xorshift generator: deterministic made-up values.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    /// A value in `lo..=hi`.
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % (hi - lo + 1) as u32) as i32
    }
}

fn bits_ok(bits: u8) -> bool {
    (MIN_BITS..=MAX_BITS).contains(&bits)
}

fn oom(needed: u64, available: usize) -> DeviceError {
    DeviceError::OutOfMemory { needed: needed.min(u32::MAX as u64) as u32, available: available as u32 }
}

/// Output length of a window along one axis (as the validator computes it).
fn window_out(len: u16, k: u8, stride: u8, pad_a: u8, pad_b: u8) -> Option<u64> {
    let padded = len as u64 + pad_a as u64 + pad_b as u64;
    if k == 0 || stride == 0 || padded < k as u64 {
        return None;
    }
    Some((padded - k as u64) / stride as u64 + 1)
}

/// Output elements of the layer, if its window is valid.
fn output_elems(spec: &LayerSpec) -> Option<u64> {
    let i = spec.input;
    let window = |c: u64| {
        let h = window_out(i.h, spec.kh, spec.stride_h, spec.pad.top, spec.pad.bottom)?;
        let w = window_out(i.w, spec.kw, spec.stride_w, spec.pad.left, spec.pad.right)?;
        Some(h * w * c)
    };
    match spec.kind {
        SpecKind::Conv2d => window(spec.out_c as u64),
        SpecKind::DepthwiseConv2d | SpecKind::MaxPool2d | SpecKind::AvgPool2d => window(i.c as u64),
        SpecKind::Dense => Some(spec.out_c as u64),
        SpecKind::Add => Some(i.h as u64 * i.w as u64 * i.c as u64),
    }
}

/// Rows and weights per row of a weighted layer.
fn weight_shape(spec: &LayerSpec) -> Option<(u64, u64)> {
    let i = spec.input;
    let window = spec.kh as u64 * spec.kw as u64;
    match spec.kind {
        SpecKind::Conv2d => Some((spec.out_c as u64, window * i.c as u64)),
        SpecKind::DepthwiseConv2d => Some((i.c as u64, window)),
        SpecKind::Dense => Some((spec.out_c as u64, i.h as u64 * i.w as u64 * i.c as u64)),
        _ => None,
    }
}

/// Fill `params` with `rows` rows of `k` weights at `bits` bits followed by
/// the per-row bias, multiplier and shift arrays; returns the borrowed view.
fn make_weights<'a>(params: &'a mut [u8], rows: usize, k: usize, bits: u8, rng: &mut Rng) -> Weights<'a> {
    let rb = row_bytes(k, bits);
    let (packed, rest) = params.split_at_mut(rows * rb);
    let (bias, rest) = rest.split_at_mut(rows * 4);
    let (multiplier, rest) = rest.split_at_mut(rows * 4);
    let shift = &mut rest[..rows];
    let wmax = weight_max(bits);
    // Eight weights always take exactly `bits` bytes, so a row is packed in
    // chunks of eight without a row-sized scratch buffer.
    for row in packed.chunks_exact_mut(rb) {
        for (n, start) in (0..k).step_by(8).enumerate() {
            let len = (k - start).min(8);
            let mut chunk = [0i8; 8];
            for v in &mut chunk[..len] {
                *v = rng.range(-wmax, wmax) as i8;
            }
            let at = n * bits as usize;
            // Cannot fail: the values are in range and the slice is row_bytes(len) long.
            let _ = pack_row(&chunk[..len], bits, &mut row[at..at + row_bytes(len, bits)]);
        }
    }
    for c in 0..rows {
        bias[c * 4..c * 4 + 4].copy_from_slice(&rng.range(-1000, 1000).to_le_bytes());
        let m = (1i32 << 30) + (rng.next() >> 2) as i32;
        multiplier[c * 4..c * 4 + 4].copy_from_slice(&m.to_le_bytes());
        shift[c] = rng.range(-8, -5) as i8 as u8;
    }
    Weights { bits, packed, bias, multiplier, shift }
}

fn clamp_of(bits: u8) -> Clamp {
    if bits_ok(bits) {
        Clamp { min: act_min(bits) as i16, max: act_max(bits) as i16 }
    } else {
        Clamp { min: 0, max: 0 } // the validator rejects the bits first
    }
}

fn layer_of<'a>(spec: &LayerSpec, w: Weights<'a>) -> Layer<'a> {
    let out = TensorQuant { scale: 1.0, zero_point: 0, bits: spec.out_bits };
    let clamp = clamp_of(spec.out_bits);
    let act = releq_common::model::Activation::None;
    let conv = |out_c| Conv2d {
        input: 0,
        out_c,
        kh: spec.kh,
        kw: spec.kw,
        stride_h: spec.stride_h,
        stride_w: spec.stride_w,
        pad: spec.pad,
        act,
        clamp,
        out,
        w,
    };
    let pool =
        Pool { input: 0, kh: spec.kh, kw: spec.kw, stride_h: spec.stride_h, stride_w: spec.stride_w, pad: spec.pad };
    match spec.kind {
        SpecKind::Conv2d => Layer::Conv2d(conv(spec.out_c)),
        SpecKind::DepthwiseConv2d => Layer::DepthwiseConv2d(conv(spec.input.c)),
        SpecKind::Dense => Layer::Dense(Dense { input: 0, out_features: spec.out_c, act, clamp, out, w }),
        SpecKind::MaxPool2d => Layer::MaxPool2d(pool),
        SpecKind::AvgPool2d => Layer::AvgPool2d(pool),
        SpecKind::Add => Layer::Add(Add { input: 0, other: 0, act, clamp, out, params: add_params(1.0, 1.0, 2.0) }),
    }
}

fn model_of<'a>(spec: &LayerSpec, layer: Layer<'a>) -> Model<'a> {
    let mut layers = heapless::Vec::new();
    let _ = layers.push(layer); // capacity MAX_LAYERS >= 1
    Model {
        name: "synthetic",
        input_shape: spec.input,
        input_quant: TensorQuant { scale: 1.0, zero_point: 0, bits: spec.in_bits },
        layers,
    }
}

/// Build the synthetic layer of `spec` with parameters in `params`, and fill
/// its input in `arena`. The returned plan is ready for `run_layer(0, arena)`.
pub fn build<'a>(spec: &LayerSpec, params: &'a mut [u8], arena: &mut [i8]) -> Result<Plan<'a>, DeviceError> {
    let in_elems = spec.input.h as u64 * spec.input.w as u64 * spec.input.c as u64;
    if let Some(out_elems) = output_elems(spec) {
        let needed = in_elems.next_multiple_of(ARENA_ALIGN as u64) + out_elems;
        if needed > arena.len() as u64 {
            return Err(oom(needed, arena.len()));
        }
    } else if in_elems > arena.len() as u64 {
        return Err(oom(in_elems, arena.len()));
    }
    let mut rng = Rng(0x1234_5678 ^ in_elems as u32);
    let empty = Weights { bits: spec.wbits, packed: &[], bias: &[], multiplier: &[], shift: &[] };
    let weights = match weight_shape(spec) {
        None => empty,
        Some((rows, k)) => {
            // Validate everything but the arrays first (the validator checks
            // the window and the bits before the array lengths).
            match Plan::new(model_of(spec, layer_of(spec, empty))) {
                Err(ModelError::Layer { field: Field::Weights, problem: Problem::Length { .. }, .. }) => {}
                Err(e) => return Err(DeviceError::Spec(e)),
                Ok(_) => {} // cannot happen: rows >= 1 need non-empty arrays
            }
            let needed = rows * (k * spec.wbits as u64).div_ceil(8) + rows * 9;
            if needed > params.len() as u64 {
                return Err(oom(needed, params.len()));
            }
            make_weights(params, rows as usize, k as usize, spec.wbits, &mut rng)
        }
    };
    let plan = Plan::new(model_of(spec, layer_of(spec, weights))).map_err(DeviceError::Spec)?;
    if plan.arena_bytes > arena.len() {
        return Err(oom(plan.arena_bytes as u64, arena.len()));
    }
    let bits = spec.in_bits;
    for v in &mut arena[plan.input().range()] {
        *v = rng.range(act_min(bits), act_max(bits)) as i8;
    }
    Ok(plan)
}
