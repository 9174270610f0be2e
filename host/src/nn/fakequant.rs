//! Fake quantization for quantization-aware training, with a straight-through
//! estimator (STE).
//!
//! - Activations, per tensor: `s * (clamp(round(x / s) + zp, qmin, qmax) - zp)`,
//!   computed element by element with `releq_common::quant::quantize_act`
//!   itself (round half away from zero, as `libm::roundf`), so a fake-quantized
//!   value is exactly the dequantized code the integer kernels use.
//! - Weights, symmetric per output channel (dimension 0):
//!   `s_c * clamp(round(w / s_c), -wmax, wmax)` with
//!   `s_c = qplan::weight_scale(row_c, bits)`, the exporter's own scale.
//! - Biases, per output channel, onto the int32 accumulator grid the exporter
//!   rounds them to: `round(b_c / (s_in * s_c)) * s_in * s_c`.
//! - Outputs of weighted layers ([`fq_requant`]): the accumulator recovered
//!   from the float result and requantized with the integer kernel's own
//!   fixed-point multiplier, so the values are the device's codes.
//! - Average pooling ([`fq_avg`]) and residual adds ([`fq_add`]) likewise
//!   compute the integer kernels' codes from the fake-quantized inputs.
//!
//! Both are candle custom ops whose forward pass writes the quantized values
//! and whose backward pass passes the gradient through unchanged: the same
//! gradient as `x + (q(x) - x).detach()`, but with a forward value that is
//! exactly `q(x)` (the sum `x + (q - x)` is not always exact in `f32`).
//! Only contiguous or strided `f32` CPU tensors are supported.

use super::qplan::weight_scale;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use releq_common::quant::{
    act_max, act_min, add_element, add_params, quantize_act, quantize_multiplier, rounded_average, weight_max,
    QuantizedMultiplier,
};
use releq_common::TensorQuant;

/// Fake-quantize an activation tensor with the tensor's quantization (STE).
pub fn fq_act(x: &Tensor, q: &TensorQuant) -> Result<Tensor> {
    x.apply_op1(ActFq(*q))
}

/// Fake-quantize weights per output channel (dimension 0) to `bits` (STE).
pub fn fq_weight(w: &Tensor, bits: u8) -> Result<Tensor> {
    w.apply_op1(WeightFq(bits))
}

/// Fake-quantize a weighted layer's bias `b` to the grid the exporter rounds
/// it to: per output channel `c`, `round(b_c / (s_in * s_c)) * s_in * s_c`,
/// where `s_c` is the weight scale of row `c` of `w` at `bits` and `s_in`
/// the input tensor's scale (computed in f64 as the exporter does). The
/// gradient passes straight through to `b`; `w` gets none from this op.
pub fn fq_bias(b: &Tensor, w: &Tensor, bits: u8, s_in: f32) -> Result<Tensor> {
    b.apply_op2(w, BiasFq { bits, s_in })
}

/// Requantize a weighted layer's output exactly as the integer kernel does:
/// `y` is the layer's output after its activation, computed from
/// fake-quantized inputs, weights and bias (so `y / (s_in * s_c)` is the
/// integer accumulator up to `f32` rounding); per output channel `c`
/// (dimension 1 of `y`, dimension 0 of `w`), the accumulator is recovered
/// by rounding, requantized with the exporter's fixed-point multiplier
/// `quantize_multiplier(s_in * s_c / s_out)` (gemmlowp double rounding),
/// offset by the zero point, clamped to the output's bits and dequantized.
/// This replaces [`fq_act`] on weighted layers' outputs: rounding `y / s_out`
/// in float disagrees with the fixed-point path near ties (double rounding
/// at a resolution of `2^-shift` codes), which moved accuracy by tenths of
/// a point. The gradient passes straight through to `y`.
pub fn fq_requant(y: &Tensor, w: &Tensor, wbits: u8, s_in: f32, out: &TensorQuant) -> Result<Tensor> {
    y.apply_op2(w, Requant { wbits, s_in, out: *out })
}

/// Average pooling as the integer kernel rounds it: `y` is candle's float
/// average of `x` (NCHW, fake-quantized with `q`, which pooling keeps) over
/// `k x k` windows at `stride`, no padding. The output code of each window is
/// the [`rounded_average`] of the integer sum of its input codes (ties away
/// from zero in code space), the sum taken from `x`'s codes themselves:
/// recovering it from the `f32` mean `y` is off by one near ties on large
/// windows (a 28 x 28 global pooling: errors of 0.5 in the sum, as `f32`
/// rounding errors of a constant background add up). Straight-through
/// gradient to `y`.
pub fn fq_avg(y: &Tensor, x: &Tensor, q: &TensorQuant, k: usize, stride: usize) -> Result<Tensor> {
    y.apply_op2(x, AvgFq { q: *q, k, stride: stride.max(1) })
}

struct AvgFq {
    q: TensorQuant,
    k: usize,
    stride: usize,
}

impl CustomOp2 for AvgFq {
    fn name(&self) -> &'static str {
        "fake-quant-avg"
    }

    fn cpu_fwd(&self, _s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let TensorQuant { scale, zero_point, bits } = self.q;
        let x = values(s2, l2)?;
        let (Ok((n, c, h, w)), Ok((yn, yc, oh, ow))) = (l2.shape().dims4(), l1.shape().dims4()) else {
            candle_core::bail!("fake-quant-avg: shapes {:?} and {:?} are not NCHW", l1.dims(), l2.dims());
        };
        let (k, s) = (self.k, self.stride);
        if (yn, yc) != (n, c) || h < k || w < k || oh != (h - k) / s + 1 || ow != (w - k) / s + 1 {
            candle_core::bail!(
                "fake-quant-avg: output {:?} is not a {k}x{k} / {s} pooling of {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let codes: Vec<i32> = x.iter().map(|&v| i32::from(quantize_act(v, scale, zero_point, bits))).collect();
        let count = (k * k) as i32;
        let mut out = Vec::with_capacity(n * c * oh * ow);
        for plane in codes.chunks(h * w) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let sum: i32 = (0..k).map(|ky| plane[(oy * s + ky) * w + ox * s..][..k].iter().sum::<i32>()).sum();
                    let code = rounded_average(sum, count).clamp(act_min(bits), act_max(bits));
                    out.push(scale * (code - zero_point) as f32);
                }
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _x: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad_res.clone()), None))
    }
}

/// A residual add as the integer kernel computes it: the codes of the
/// fake-quantized inputs `a` (quantization `qa`) and `b` (`qb`) are added
/// with TFLite's fixed-point rescaling ([`add_element`] with
/// [`add_params`]), clamped to `out`'s bits (and at its zero point after a
/// ReLU) and dequantized. `y` is the float `act(a + b)`, through which the
/// gradient flows straight.
pub fn fq_add(
    y: &Tensor,
    a: &Tensor,
    b: &Tensor,
    qa: &TensorQuant,
    qb: &TensorQuant,
    out: &TensorQuant,
    relu: bool,
) -> Result<Tensor> {
    y.apply_op3(a, b, AddFq { qa: *qa, qb: *qb, out: *out, relu })
}

struct AddFq {
    qa: TensorQuant,
    qb: TensorQuant,
    out: TensorQuant,
    relu: bool,
}

impl CustomOp3 for AddFq {
    fn name(&self) -> &'static str {
        "fake-quant-add"
    }

    fn cpu_fwd(
        &self,
        _s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (values(s2, l2)?, values(s3, l3)?);
        if a.len() != b.len() || a.len() != l1.shape().elem_count() {
            candle_core::bail!("fake-quant-add: shapes {:?}, {:?}, {:?} differ", l1.dims(), l2.dims(), l3.dims());
        }
        let (qa, qb, qo) = (self.qa, self.qb, self.out);
        let p = add_params(qa.scale, qb.scale, qo.scale);
        let lo = if self.relu { qo.zero_point.max(act_min(qo.bits)) } else { act_min(qo.bits) };
        let hi = act_max(qo.bits);
        let code = |x: f32, q: &TensorQuant| i32::from(quantize_act(x, q.scale, q.zero_point, q.bits));
        let out = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| {
                let c = add_element(code(x, &qa), qa.zero_point, code(y, &qb), qb.zero_point, &p, qo.zero_point);
                qo.scale * (c.clamp(lo, hi) - qo.zero_point) as f32
            })
            .collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _a: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad_res.clone()), None, None))
    }
}

/// The value of `a` rounded to the nearest integer as an `i32`, saturating.
fn to_acc(a: f64) -> i32 {
    a.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// Fixed-point requantization of a weighted layer's output.
struct Requant {
    wbits: u8,
    s_in: f32,
    out: TensorQuant,
}

impl CustomOp2 for Requant {
    fn name(&self) -> &'static str {
        "fake-quant-requant"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut y = values(s1, l1)?;
        let w = values(s2, l2)?;
        let dims = l1.shape().dims();
        let rows = l2.shape().dims().first().copied().unwrap_or(1).max(1);
        if dims.len() < 2 || dims[1] != rows {
            candle_core::bail!("fake-quant-requant: output {dims:?} does not have {rows} channels in dimension 1");
        }
        let per_row = w.len() / rows;
        let inner: usize = dims[2..].iter().product();
        let TensorQuant { scale, zero_point, bits } = self.out;
        let (lo, hi) = (act_min(bits), act_max(bits));
        let chans: Vec<(f64, QuantizedMultiplier)> = (0..rows)
            .map(|c| {
                let s = self.s_in as f64 * weight_scale(&w[c * per_row..(c + 1) * per_row], self.wbits) as f64;
                (s, quantize_multiplier(s / scale as f64))
            })
            .collect();
        for (i, v) in y.iter_mut().enumerate() {
            let (s, m) = chans[(i / inner) % rows];
            let q = m.apply(to_acc(*v as f64 / s)).saturating_add(zero_point).clamp(lo, hi);
            *v = scale * (q - zero_point) as f32;
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _y: &Tensor,
        _w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad_res.clone()), None))
    }
}

/// The values of a tensor as a contiguous `Vec<f32>` (any layout).
fn values(storage: &CpuStorage, layout: &Layout) -> Result<Vec<f32>> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("fake quantization supports f32 tensors only");
    };
    if let Some((a, b)) = layout.contiguous_offsets() {
        return Ok(data[a..b].to_vec());
    }
    // Walk a strided layout in row-major order of its dimensions.
    let (dims, strides) = (layout.dims(), layout.stride());
    let mut index = vec![0usize; dims.len()];
    let mut out = Vec::with_capacity(layout.shape().elem_count());
    for _ in 0..layout.shape().elem_count() {
        out.push(data[layout.start_offset() + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>()]);
        for d in (0..dims.len()).rev() {
            index[d] += 1;
            if index[d] < dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// Per-tensor activation fake quantization.
struct ActFq(TensorQuant);

impl CustomOp1 for ActFq {
    fn name(&self) -> &'static str {
        "fake-quant-act"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let TensorQuant { scale, zero_point, bits } = self.0;
        let mut v = values(storage, layout)?;
        for x in &mut v {
            *x = scale * (i32::from(quantize_act(*x, scale, zero_point, bits)) - zero_point) as f32;
        }
        Ok((CpuStorage::F32(v), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.clone()))
    }
}

/// Per-output-channel symmetric weight fake quantization.
struct WeightFq(u8);

impl CustomOp1 for WeightFq {
    fn name(&self) -> &'static str {
        "fake-quant-weight"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let bits = self.0;
        let wmax = weight_max(bits) as f32;
        let mut v = values(storage, layout)?;
        let rows = layout.shape().dims().first().copied().unwrap_or(1).max(1);
        let per_row = v.len() / rows;
        if per_row > 0 {
            for row in v.chunks_mut(per_row) {
                let s = weight_scale(row, bits);
                for w in row.iter_mut() {
                    *w = s * (*w / s).round().clamp(-wmax, wmax);
                }
            }
        }
        Ok((CpuStorage::F32(v), layout.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad_res.clone()))
    }
}

/// Per-channel bias fake quantization onto the accumulator grid.
struct BiasFq {
    bits: u8,
    s_in: f32,
}

impl CustomOp2 for BiasFq {
    fn name(&self) -> &'static str {
        "fake-quant-bias"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let mut b = values(s1, l1)?;
        let w = values(s2, l2)?;
        let rows = l2.shape().dims().first().copied().unwrap_or(1).max(1);
        if rows != b.len() {
            candle_core::bail!("fake-quant-bias: {} biases for {rows} weight rows", b.len());
        }
        let per_row = w.len() / rows;
        for (c, x) in b.iter_mut().enumerate() {
            let s = self.s_in as f64 * weight_scale(&w[c * per_row..(c + 1) * per_row], self.bits) as f64;
            *x = ((*x as f64 / s).round() * s) as f32;
        }
        Ok((CpuStorage::F32(b), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _b: &Tensor,
        _w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad_res.clone()), None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use releq_common::quant::{choose_act_params, MAX_BITS, MIN_BITS};

    #[test]
    fn rust_round_is_half_away_from_zero_like_libm() {
        for x in [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997] {
            assert_eq!(x.round(), libm::roundf(x), "{x}");
        }
    }

    #[test]
    fn act_fq_equals_quantize_act_at_every_bitwidth() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for bits in MIN_BITS..=MAX_BITS {
            for _ in 0..5 {
                let lo = -rng.gen_range(0.0f32..3.0);
                let hi = rng.gen_range(0.1f32..6.0);
                let (scale, zero_point) = choose_act_params(lo, hi, bits);
                let q = TensorQuant { scale, zero_point, bits };
                // Values off the grid, on the grid and exactly half way between codes.
                let mut xs: Vec<f32> = (0..2000).map(|_| rng.gen_range(2.0 * lo..2.0 * hi)).collect();
                xs.extend((-140..140).map(|k| scale * (k as f32 + 0.5)));
                xs.extend((-140..140).map(|k| scale * k as f32));
                let t = Tensor::from_vec(xs.clone(), (4, xs.len() / 4), &Device::Cpu).unwrap();
                // A transposed (strided) view must give the same values.
                let got = fq_act(&t.t().unwrap(), &q).unwrap().t().unwrap().flatten_all().unwrap();
                let got: Vec<f32> = got.to_vec1().unwrap();
                for (x, g) in xs.iter().zip(&got) {
                    let code = i32::from(quantize_act(*x, scale, zero_point, bits));
                    let want = scale * (code - zero_point) as f32;
                    assert_eq!(g.to_bits(), want.to_bits(), "bits {bits} x {x}: {g} vs {want}");
                }
            }
        }
    }

    #[test]
    fn weight_fq_is_per_channel_symmetric() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for bits in MIN_BITS..=MAX_BITS {
            let (o, i) = (5usize, 37usize);
            let ws: Vec<f32> = (0..o * i).map(|_| rng.gen_range(-1.0f32..1.0) * (1.0 + rng.gen::<f32>())).collect();
            let t = Tensor::from_vec(ws.clone(), (o, i), &Device::Cpu).unwrap();
            let got: Vec<Vec<f32>> = fq_weight(&t, bits).unwrap().to_vec2().unwrap();
            let wmax = weight_max(bits);
            for (c, row) in ws.chunks(i).enumerate() {
                let s = weight_scale(row, bits);
                for (k, w) in row.iter().enumerate() {
                    let code = i32::from(quantize_act(*w, s, 0, bits)).max(-wmax);
                    assert_eq!(got[c][k], s * code as f32, "bits {bits} row {c}");
                }
            }
        }
    }

    #[test]
    fn gradient_passes_straight_through() {
        let v = Var::from_vec(vec![0.3f32, -2.0, 7.0, 1.1], 4, &Device::Cpu).unwrap();
        let q = TensorQuant { scale: 0.5, zero_point: -2, bits: 3 };
        let y = fq_act(v.as_tensor(), &q).unwrap();
        let loss = (y * Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu).unwrap()).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap();
        assert_eq!(g.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![1., 2., 3., 4.]);
    }

    #[test]
    fn bias_fq_is_the_exported_int32_bias_times_its_scale() {
        // The exporter's bias code: round(b / (s_in * s_c)) in f64 (quantize.rs).
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for bits in MIN_BITS..=MAX_BITS {
            let (o, i, s_in) = (6usize, 20usize, 0.037f32);
            let ws: Vec<f32> = (0..o * i).map(|_| rng.gen_range(-0.5f32..0.5)).collect();
            let bs: Vec<f32> = (0..o).map(|_| rng.gen_range(-0.3f32..0.3)).collect();
            let w = Tensor::from_vec(ws.clone(), (o, i), &Device::Cpu).unwrap();
            let b = Var::from_vec(bs.clone(), o, &Device::Cpu).unwrap();
            let got = fq_bias(b.as_tensor(), &w, bits, s_in).unwrap();
            for (c, (&g, &bc)) in got.to_vec1::<f32>().unwrap().iter().zip(&bs).enumerate() {
                let s = s_in as f64 * weight_scale(&ws[c * i..(c + 1) * i], bits) as f64;
                let code = (bc as f64 / s).round();
                assert_eq!(g, (code * s) as f32, "bits {bits} channel {c}");
                assert!((g - bc).abs() as f64 <= s / 2.0 + 1e-7, "moved more than half a step");
            }
            // Straight through to the bias, nothing to the weights.
            let grads = got.sum_all().unwrap().backward().unwrap();
            assert_eq!(grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap(), vec![1.0; o]);
            assert!(grads.get(&w).is_none());
        }
    }
}

#[cfg(test)]
mod avg_tests {
    use super::*;
    use candle_core::Device;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use releq_common::quant::rounded_average;

    /// Global average pooling over 28 x 28 codes, as the integer kernel
    /// computes it (sum of the codes, rounded average), on 64 random channels
    /// per trial whose sums are next to a rounding tie.
    #[test]
    fn avg_fq_equals_the_integer_average_over_a_large_window() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut bad = 0;
        for trial in 0..40 {
            let q = TensorQuant { scale: rng.gen_range(0.001f32..0.05), zero_point: rng.gen_range(-128..0), bits: 8 };
            let (c, h) = (64, 28);
            // After a ReLU: codes from the zero point up, most of an image
            // one background value (a constant's f32 rounding errors add up
            // instead of cancelling).
            let mut codes = vec![0i32; c * h * h];
            for run in codes.chunks_mut(h * h) {
                let background = rng.gen_range(q.zero_point..128);
                for v in run.iter_mut() {
                    *v = if rng.gen_bool(0.7) { background } else { rng.gen_range(q.zero_point..128) };
                }
            }
            // Sums one code either side of a rounding tie (sum = n/2 mod n),
            // where an error of one in the sum changes the average.
            for (ch, run) in codes.chunks_mut(h * h).enumerate() {
                let target = (h * h / 2 - ch % 2) as i32;
                let mut delta = target - run.iter().sum::<i32>().rem_euclid((h * h) as i32);
                for v in run.iter_mut() {
                    let step = delta.clamp(q.zero_point - *v, 127 - *v);
                    *v += step;
                    delta -= step;
                }
            }
            let v: Vec<f32> = codes.iter().map(|&k| q.scale * (k - q.zero_point) as f32).collect();
            let x = Tensor::from_vec(v, (1, c, h, h), &Device::Cpu).unwrap();
            let y = x.avg_pool2d_with_stride(h, h).unwrap();
            let got = fq_avg(&y, &x, &q, h, h).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (ch, g) in got.iter().enumerate() {
                let sum: i32 = codes[ch * h * h..(ch + 1) * h * h].iter().sum();
                let want = rounded_average(sum, (h * h) as i32).clamp(-128, 127);
                let code = (g / q.scale).round() as i32 + q.zero_point;
                if code != want {
                    bad += 1;
                    eprintln!("trial {trial} channel {ch}: code {code}, the integer kernel's {want}");
                }
            }
        }
        assert_eq!(bad, 0, "{bad} of 2560 averages differ");
    }
}
