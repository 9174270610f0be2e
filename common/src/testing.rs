//! Random models, layers and inputs for tests, benchmarks and fuzz seeds
//! (feature `testing`).
//!
//! Scales are chosen so that outputs spread over the output codes rather
//! than saturate: the output scale of a weighted layer covers about four
//! standard deviations of its accumulator for uniform random inputs.

use crate::builder::{activation_clamp, OwnedModel, OwnedWeights, NO_WEIGHTS};
use crate::model::{Activation, Add, Conv2d, Dense, Layer, Padding, Pool, Reshape, Shape, TensorQuant};
use crate::quant::{act_max, act_min, add_params, quantize_multiplier, weight_max, MAX_BITS, MIN_BITS};
use crate::validate::Plan;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::string::ToString;
use std::vec::Vec;

/// The float parameters a random weighted layer was made from.
#[derive(Debug, Clone)]
pub struct WeightedParams {
    /// Owned, packed parameters.
    pub weights: OwnedWeights,
    /// Weight codes, `rows x k` row-major.
    pub codes: Vec<i8>,
    /// Per-row weight scale.
    pub w_scale: Vec<f32>,
    /// Bias codes (units of `in_scale * w_scale`).
    pub bias: Vec<i32>,
}

/// A random activation quantization at `bits` bits; with `relu` the zero
/// point is the lowest code (non-negative range).
pub fn random_quant(rng: &mut impl Rng, bits: u8, relu: bool) -> TensorQuant {
    let zero_point = if relu { act_min(bits) } else { rng.gen_range(act_min(bits)..=act_max(bits)) / 2 };
    TensorQuant { scale: rng.gen_range(0.01f32..0.1), zero_point, bits }
}

/// Random weights for `rows` rows of `k` inputs at `wbits`, and the output
/// quantization that fits them (see the module doc).
pub fn random_weighted(
    rng: &mut impl Rng,
    in_q: &TensorQuant,
    rows: usize,
    k: usize,
    wbits: u8,
    out_bits: u8,
    relu: bool,
) -> (WeightedParams, TensorQuant) {
    let wmax = weight_max(wbits);
    let codes: Vec<i8> = (0..rows * k).map(|_| rng.gen_range(-wmax..=wmax) as i8).collect();
    let w_scale: Vec<f32> = (0..rows).map(|_| rng.gen_range(0.5f32..2.0) / wmax as f32 * 0.1).collect();
    // Accumulator spread in real units, for uniform inputs over the code range.
    let x_std = (1u32 << in_q.bits) as f32 / 3.5 * in_q.scale;
    let w_std = 0.1 * 0.6;
    let acc_std = (k as f32).sqrt() * x_std * w_std;
    let out_scale = (8.0 * acc_std / (1u32 << out_bits) as f32).max(1e-6);
    let zero_point = if relu { act_min(out_bits) } else { 0 };
    let out_q = TensorQuant { scale: out_scale, zero_point, bits: out_bits };
    let bias: Vec<i32> =
        (0..rows).map(|r| (rng.gen_range(-1.0f32..1.0) * acc_std / (in_q.scale * w_scale[r])) as i32).collect();
    let requant: Vec<_> =
        (0..rows).map(|r| quantize_multiplier(in_q.scale as f64 * w_scale[r] as f64 / out_scale as f64)).collect();
    let weights = OwnedWeights::new(wbits, &codes, k, &bias, &requant).expect("codes are in range");
    (WeightedParams { weights, codes, w_scale, bias }, out_q)
}

/// Which weighted layer kind [`conv_layer`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKind {
    /// Standard convolution.
    Standard,
    /// Depthwise convolution.
    Depthwise,
}

/// Geometry of a convolution for [`conv_layer`].
#[derive(Debug, Clone, Copy)]
pub struct ConvGeom {
    /// Output channels (ignored for depthwise).
    pub out_c: u16,
    /// Square kernel size.
    pub k: u8,
    /// Stride (both axes).
    pub stride: u8,
    /// Padding (every side).
    pub pad: u8,
}

/// A random convolution reading `input` (a tensor id) of shape `in_shape`.
#[allow(clippy::too_many_arguments)]
pub fn conv_layer(
    rng: &mut impl Rng,
    kind: ConvKind,
    input: u16,
    in_shape: Shape,
    in_q: &TensorQuant,
    g: ConvGeom,
    wbits: u8,
    out_bits: u8,
    act: Activation,
) -> (Layer<'static>, WeightedParams, TensorQuant) {
    let (out_c, k) = match kind {
        ConvKind::Standard => (g.out_c, g.k as usize * g.k as usize * in_shape.c as usize),
        ConvKind::Depthwise => (in_shape.c, g.k as usize * g.k as usize),
    };
    let (params, out) = random_weighted(rng, in_q, out_c as usize, k, wbits, out_bits, act != Activation::None);
    let conv = Conv2d {
        input,
        out_c,
        kh: g.k,
        kw: g.k,
        stride_h: g.stride,
        stride_w: g.stride,
        pad: Padding::same(g.pad),
        act,
        clamp: activation_clamp(act, &out),
        out,
        w: NO_WEIGHTS,
    };
    let layer = match kind {
        ConvKind::Standard => Layer::Conv2d(conv),
        ConvKind::Depthwise => Layer::DepthwiseConv2d(conv),
    };
    (layer, params, out)
}

/// A random dense layer.
#[allow(clippy::too_many_arguments)]
pub fn dense_layer(
    rng: &mut impl Rng,
    input: u16,
    in_len: usize,
    in_q: &TensorQuant,
    out_features: u16,
    wbits: u8,
    out_bits: u8,
    act: Activation,
) -> (Layer<'static>, WeightedParams, TensorQuant) {
    let (params, out) =
        random_weighted(rng, in_q, out_features as usize, in_len, wbits, out_bits, act != Activation::None);
    let dense = Dense { input, out_features, act, clamp: activation_clamp(act, &out), out, w: NO_WEIGHTS };
    (Layer::Dense(dense), params, out)
}

fn bits(rng: &mut impl Rng, mixed: bool) -> u8 {
    if mixed {
        rng.gen_range(MIN_BITS..=MAX_BITS)
    } else {
        8
    }
}

/// A model with every layer kind (conv, depthwise, 1x1 conv, residual add,
/// max and average pooling, reshape, dense), random weights and, when
/// `mixed`, random weight and activation bits per layer.
///
/// Graph (tensor shapes): input 10x10x3 -> conv3x3 8 -> dw3x3/2 -> conv1x1 8
/// -> add(dw) -> maxpool2/1 -> avgpool2/2 -> reshape 1x1x32 -> dense 16 ->
/// dense 10.
pub fn random_model(seed: u64, mixed: bool) -> OwnedModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let in_q = TensorQuant { scale: 1.0 / 255.0, zero_point: -128, bits: 8 };
    let in_q = TensorQuant { bits: bits(&mut rng, mixed), ..in_q };
    let in_q = TensorQuant { zero_point: act_min(in_q.bits), ..in_q };
    let mut m = OwnedModel::new(std::format!("random-{seed}"), Shape::new(10, 10, 3), in_q);
    let (wb, ab) = (bits(&mut rng, mixed), bits(&mut rng, mixed));
    let g = ConvGeom { out_c: 8, k: 3, stride: 1, pad: 1 };
    let (l, p, q1) =
        conv_layer(&mut rng, ConvKind::Standard, 0, Shape::new(10, 10, 3), &in_q, g, wb, ab, Activation::Relu);
    let t1 = m.push(l, Some(p.weights));
    let (wb, ab) = (bits(&mut rng, mixed), bits(&mut rng, mixed));
    let g = ConvGeom { out_c: 8, k: 3, stride: 2, pad: 1 };
    let (l, p, q2) =
        conv_layer(&mut rng, ConvKind::Depthwise, t1, Shape::new(10, 10, 8), &q1, g, wb, ab, Activation::Relu6);
    let t2 = m.push(l, Some(p.weights));
    let (wb, ab) = (bits(&mut rng, mixed), bits(&mut rng, mixed));
    let g = ConvGeom { out_c: 8, k: 1, stride: 1, pad: 0 };
    let (l, p, q3) =
        conv_layer(&mut rng, ConvKind::Standard, t2, Shape::new(5, 5, 8), &q2, g, wb, ab, Activation::None);
    let t3 = m.push(l, Some(p.weights));
    let ab = bits(&mut rng, mixed);
    let out = TensorQuant { scale: q2.scale.max(q3.scale) * 1.5, zero_point: act_min(ab), bits: ab };
    let add = Add {
        input: t3,
        other: t2,
        act: Activation::Relu,
        clamp: activation_clamp(Activation::Relu, &out),
        out,
        params: add_params(q3.scale, q2.scale, out.scale),
    };
    let t4 = m.push(Layer::Add(add), None);
    let pool = Pool { input: t4, kh: 2, kw: 2, stride_h: 1, stride_w: 1, pad: Padding::default() };
    let t5 = m.push(Layer::MaxPool2d(pool), None);
    let pool = Pool { input: t5, kh: 2, kw: 2, stride_h: 2, stride_w: 2, pad: Padding::default() };
    let t6 = m.push(Layer::AvgPool2d(pool), None);
    let t7 = m.push(Layer::Reshape(Reshape { input: t6, shape: Shape::new(1, 1, 32) }), None);
    let (wb, ab) = (bits(&mut rng, mixed), bits(&mut rng, mixed));
    let (l, p, q8) = dense_layer(&mut rng, t7, 32, &out, 16, wb, ab, Activation::Relu);
    let t8 = m.push(l, Some(p.weights));
    let (wb, ab) = (bits(&mut rng, mixed), bits(&mut rng, mixed));
    let (l, p, _) = dense_layer(&mut rng, t8, 16, &q8, 10, wb, ab, Activation::None);
    m.push(l, Some(p.weights));
    m
}

/// A random input for a planned model, within its input bit range.
pub fn random_input(rng: &mut impl Rng, plan: &Plan<'_>) -> Vec<i8> {
    let t = plan.input();
    let bits = t.quant.bits;
    (0..t.shape.len()).map(|_| rng.gen_range(act_min(bits)..=act_max(bits)) as i8).collect()
}

/// The LeNet-5 topology of releq's zoo (and of the CMSIS-NN anchor figures)
/// with random weights: 28x28x1 -> conv 6@5x5 -> maxpool 2 -> conv 16@5x5 ->
/// maxpool 2 -> flatten 256 -> dense 120 -> dense 84 -> dense 10, ReLU after
/// every weighted layer but the last; 281,640 MACs. `wbits` and `abits` give
/// the five weighted layers' bits. The input is 8-bit MNIST pixels shifted to
/// signed codes (`pixel - 128`, scale 1/255).
pub fn lenet5_random(seed: u64, wbits: [u8; 5], abits: [u8; 5]) -> OwnedModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let in_q = TensorQuant { scale: 1.0 / 255.0, zero_point: -128, bits: 8 };
    let mut m = OwnedModel::new(std::format!("lenet5-random-{seed}"), Shape::new(28, 28, 1), in_q);
    let g = ConvGeom { out_c: 6, k: 5, stride: 1, pad: 0 };
    let (l, p, q) = conv_layer(
        &mut rng,
        ConvKind::Standard,
        0,
        Shape::new(28, 28, 1),
        &in_q,
        g,
        wbits[0],
        abits[0],
        Activation::Relu,
    );
    let t = m.push(l, Some(p.weights));
    let pool = |input| Pool { input, kh: 2, kw: 2, stride_h: 2, stride_w: 2, pad: Padding::default() };
    let t = m.push(Layer::MaxPool2d(pool(t)), None);
    let g = ConvGeom { out_c: 16, k: 5, stride: 1, pad: 0 };
    let (l, p, q) =
        conv_layer(&mut rng, ConvKind::Standard, t, Shape::new(12, 12, 6), &q, g, wbits[1], abits[1], Activation::Relu);
    let t = m.push(l, Some(p.weights));
    let t = m.push(Layer::MaxPool2d(pool(t)), None);
    let t = m.push(Layer::Reshape(Reshape { input: t, shape: Shape::new(1, 1, 256) }), None);
    let (l, p, q) = dense_layer(&mut rng, t, 256, &q, 120, wbits[2], abits[2], Activation::Relu);
    let t = m.push(l, Some(p.weights));
    let (l, p, q) = dense_layer(&mut rng, t, 120, &q, 84, wbits[3], abits[3], Activation::Relu);
    let t = m.push(l, Some(p.weights));
    let (l, p, _) = dense_layer(&mut rng, t, 84, &q, 10, wbits[4], abits[4], Activation::None);
    m.push(l, Some(p.weights));
    m
}

/// A one-layer model of random kind (convolution, depthwise, dense, or,
/// one time in eight, a pooling layer) with random geometry (kernel 1..=5
/// per axis, strides 1..=3, padding per side, input 1..=12 pixels per axis
/// with 1..=33 channels, including the 1- to 3-channel first convolutions),
/// and random weight, input and output bits 2..=8: the shapes the fast
/// kernels' edge cases (odd channels, odd pixels, partial weight groups,
/// padding) come from.
pub fn random_layer_model(seed: u64) -> OwnedModel {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1a7e);
    let b = |rng: &mut StdRng| rng.gen_range(MIN_BITS..=MAX_BITS);
    let (wbits, in_bits, out_bits) = (b(&mut rng), b(&mut rng), b(&mut rng));
    let act = [Activation::None, Activation::Relu, Activation::Relu6][rng.gen_range(0..3)];
    let relu_in = rng.gen_bool(0.5);
    let in_q = random_quant(&mut rng, in_bits, relu_in);
    let kind = rng.gen_range(0..8);
    let (kh, kw) = (rng.gen_range(1..=5u8), rng.gen_range(1..=5u8));
    let chans = [1u16, 1, 2, 3, 3, 4, 5, 6, 7, 8, 16, 17, 32, 33];
    let c = chans[rng.gen_range(0..chans.len())];
    let pad = |rng: &mut StdRng, k: u8| rng.gen_range(0..k);
    let padding = Padding {
        top: pad(&mut rng, kh),
        left: pad(&mut rng, kw),
        bottom: pad(&mut rng, kh),
        right: pad(&mut rng, kw),
    };
    let (ih, iw) = (rng.gen_range(kh as u16..=12), rng.gen_range(kw as u16..=12));
    let (sh, sw) = (rng.gen_range(1..=3u8), rng.gen_range(1..=3u8));
    let shape = if kind == 2 || kind == 3 { Shape::new(1, 1, rng.gen_range(1..=300)) } else { Shape::new(ih, iw, c) };
    let mut m = OwnedModel::new(std::format!("layer-{seed}"), shape, in_q);
    let conv = |out_c, w_out: TensorQuant| Conv2d {
        input: 0,
        out_c,
        kh,
        kw,
        stride_h: sh,
        stride_w: sw,
        pad: padding,
        act,
        clamp: activation_clamp(act, &w_out),
        out: w_out,
        w: NO_WEIGHTS,
    };
    match kind {
        0 | 1 | 4 => {
            let out_c = [1u16, 2, 3, 5, 6, 8, 16, 17, 33][rng.gen_range(0..9)];
            let k = kh as usize * kw as usize * c as usize;
            let (p, out) =
                random_weighted(&mut rng, &in_q, out_c as usize, k, wbits, out_bits, act != Activation::None);
            m.push(Layer::Conv2d(conv(out_c, out)), Some(p.weights));
        }
        2 | 3 => {
            let out_f = rng.gen_range(1..=13);
            let (l, p, _) = dense_layer(&mut rng, 0, shape.len(), &in_q, out_f, wbits, out_bits, act);
            m.push(l, Some(p.weights));
        }
        5 | 6 => {
            let k = kh as usize * kw as usize;
            let (p, out) = random_weighted(&mut rng, &in_q, c as usize, k, wbits, out_bits, act != Activation::None);
            m.push(Layer::DepthwiseConv2d(conv(c, out)), Some(p.weights));
        }
        _ => {
            let pool = Pool { input: 0, kh, kw, stride_h: sh, stride_w: sw, pad: padding };
            let layer = if rng.gen_bool(0.5) { Layer::MaxPool2d(pool) } else { Layer::AvgPool2d(pool) };
            m.push(layer, None);
        }
    }
    m
}

/// The same test body for every kernel set: run `seed`'s
/// [`random_layer_model`] (and a random input) with `K` and with the
/// reference kernels, and describe the first difference, if any.
pub fn check_kernels<K: crate::kernels::Kernels>(seed: u64) -> Result<(), std::string::String> {
    let owned = random_layer_model(seed);
    let plan = owned.plan().map_err(|e| std::format!("seed {seed}: invalid model: {e}"))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let input = random_input(&mut rng, &plan);
    let mut a = std::vec![0i8; plan.arena_bytes];
    let mut b = std::vec![0x55i8; plan.arena_bytes];
    let want = plan.run_with::<crate::kernels::Reference>(&mut a, &input).map_err(|e| e.to_string())?.to_vec();
    let got = plan.run_with::<K>(&mut b, &input).map_err(|e| e.to_string())?;
    match want.iter().zip(got).position(|(w, g)| w != g) {
        None => Ok(()),
        Some(i) => Err(std::format!(
            "seed {seed}: {} differs from the reference at output {i}: {} vs {} ({:?})",
            K::NAME,
            got[i],
            want[i],
            plan.model.layers[0]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenet5_has_the_anchor_macs() {
        let m = lenet5_random(1, [8; 5], [8; 5]);
        let plan = m.plan().unwrap();
        let macs: std::vec::Vec<u64> = (0..plan.model.layers.len()).map(|i| plan.layer_stats(i).macs).collect();
        assert_eq!(macs, [86_400, 0, 153_600, 0, 0, 30_720, 10_080, 840]);
    }
}
