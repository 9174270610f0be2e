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
//!
//! Both are candle custom ops whose forward pass writes the quantized values
//! and whose backward pass passes the gradient through unchanged: the same
//! gradient as `x + (q(x) - x).detach()`, but with a forward value that is
//! exactly `q(x)` (the sum `x + (q - x)` is not always exact in `f32`).
//! Only contiguous or strided `f32` CPU tensors are supported.

use super::qplan::weight_scale;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use releq_common::quant::{quantize_act, weight_max};
use releq_common::TensorQuant;

/// Fake-quantize an activation tensor with the tensor's quantization (STE).
pub fn fq_act(x: &Tensor, q: &TensorQuant) -> Result<Tensor> {
    x.apply_op1(ActFq(*q))
}

/// Fake-quantize weights per output channel (dimension 0) to `bits` (STE).
pub fn fq_weight(w: &Tensor, bits: u8) -> Result<Tensor> {
    w.apply_op1(WeightFq(bits))
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
}
