//! A host-optimised integer inference path for the accuracy oracle.
//!
//! Bit-exact with common's reference kernels (tests run both on the same
//! models and inputs and require identical outputs), but faster on a PC:
//! weights are unpacked once into `i16` rows, each output position's input
//! patch is copied row by row from the input converted once to
//! `x - zero_point` in `i16`, and every output
//! channel is a contiguous `i16 x i16 -> i32` dot product, which the compiler
//! vectorises. The accumulation and requantization are exactly the
//! reference's (common's `quant`), so only the loop order differs; integer
//! addition is associative, so the sums are the same. Depthwise convolution,
//! pooling, add and reshape call the reference kernels directly.

use releq_common::kernels::{clamp_bounds, reference as k};
use releq_common::model::Layer;
use releq_common::pack;
use releq_common::quant::QuantizedMultiplier;
use releq_common::runtime::RunError;
use releq_common::validate::Plan;

/// Unpacked parameters of one conv or dense layer.
struct Unpacked {
    rows: Vec<i16>,
    k: usize,
    bias: Vec<i32>,
    rq: Vec<QuantizedMultiplier>,
}

/// A validated model prepared for fast host inference.
pub struct FastModel<'p, 'a> {
    plan: &'p Plan<'a>,
    unpacked: Vec<Option<Unpacked>>,
    tensors: Vec<Vec<i8>>,
    patch: Vec<i16>,
}

fn unpack(w: &releq_common::model::Weights<'_>, out: usize, k: usize, standard: bool) -> Option<Unpacked> {
    if !standard {
        return None;
    }
    let rb = pack::row_bytes(k, w.bits);
    let mut rows = vec![0i16; out * k];
    for c in 0..out {
        let row = w.row(c, rb);
        for (j, r) in rows[c * k..(c + 1) * k].iter_mut().enumerate() {
            *r = pack::get(row, w.bits, j) as i16;
        }
    }
    Some(Unpacked {
        rows,
        k,
        bias: (0..out).map(|c| w.bias(c)).collect(),
        rq: (0..out).map(|c| w.requant(c)).collect(),
    })
}

#[inline]
fn dot(a: &[i16], b: &[i16]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x as i32 * y as i32).sum()
}

impl<'p, 'a> FastModel<'p, 'a> {
    /// Unpack the weights of a validated model.
    pub fn new(plan: &'p Plan<'a>) -> Self {
        let unpacked = plan
            .model
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let in_shape = plan.tensors[l.input() as usize].shape;
                match l {
                    Layer::Conv2d(c) => {
                        unpack(&c.w, c.out_c as usize, c.kh as usize * c.kw as usize * in_shape.c as usize, true)
                    }
                    Layer::Dense(d) => unpack(&d.w, d.out_features as usize, in_shape.len(), true),
                    _ => {
                        let _ = i;
                        None
                    }
                }
            })
            .collect();
        let tensors = plan.tensors.iter().map(|t| vec![0i8; t.shape.len()]).collect();
        Self { plan, unpacked, tensors, patch: Vec::new() }
    }

    /// Fresh tensor buffers for [`Self::exec`] (one per tensor of the plan).
    pub fn new_tensors(&self) -> Vec<Vec<i8>> {
        self.plan.tensors.iter().map(|t| vec![0i8; t.shape.len()]).collect()
    }

    /// Run on one input; returns the output codes.
    pub fn run(&mut self, input: &[i8]) -> Result<&[i8], RunError> {
        let t0 = self.plan.input();
        if input.len() != t0.shape.len() {
            return Err(RunError::InputLength { expected: t0.shape.len() as u32, actual: input.len() as u32 });
        }
        let mut tensors = std::mem::take(&mut self.tensors);
        let mut patch = std::mem::take(&mut self.patch);
        tensors[0].copy_from_slice(input);
        self.exec(0..self.plan.model.layers.len(), &mut tensors, &mut patch);
        self.tensors = tensors;
        self.patch = patch;
        Ok(self.tensors.last().expect("a model has layers"))
    }

    /// Run `layers` of the model on `tensors` (from [`Self::new_tensors`] of
    /// this model or of one with the same tensor shapes), reading the tensors
    /// earlier layers wrote there. `patch` is scratch space.
    pub fn exec(&self, layers: std::ops::Range<usize>, tensors: &mut [Vec<i8>], patch: &mut Vec<i16>) {
        let plan = self.plan;
        for i in layers {
            let layer = &plan.model.layers[i];
            let in_id = layer.input() as usize;
            let in_t = plan.tensors[in_id];
            let out_t = plan.tensors[i + 1];
            // Take the output buffer out so inputs can be borrowed alongside.
            let mut out = std::mem::take(&mut tensors[i + 1]);
            let x = &tensors[in_id];
            let zp = in_t.quant.zero_point;
            match layer {
                Layer::Conv2d(c) => {
                    let u = self.unpacked[i].as_ref().expect("unpacked at construction");
                    let (lo, hi) = clamp_bounds(&c.clamp, c.out.bits);
                    let (ih, iw, ic) = (in_t.shape.h as isize, in_t.shape.w as isize, in_t.shape.c as usize);
                    patch.resize(u.k, 0);
                    let oc_n = out_t.shape.c as usize;
                    // The input as `x - zero_point` once, so patches are copies.
                    let xs: Vec<i16> = x.iter().map(|&v| (v as i32 - zp) as i16).collect();
                    let (kw, row) = (c.kw as isize, c.kw as usize * ic);
                    for oy in 0..out_t.shape.h as isize {
                        for ox in 0..out_t.shape.w as isize {
                            let ix0 = ox * c.stride_w as isize - c.pad.left as isize;
                            for ky in 0..c.kh as isize {
                                let iy = oy * c.stride_h as isize + ky - c.pad.top as isize;
                                let dst = &mut patch[ky as usize * row..(ky as usize + 1) * row];
                                if iy < 0 || iy >= ih {
                                    dst.fill(0);
                                } else if ix0 >= 0 && ix0 + kw <= iw {
                                    let base = ((iy * iw + ix0) as usize) * ic;
                                    dst.copy_from_slice(&xs[base..base + row]);
                                } else {
                                    for kx in 0..kw {
                                        let ix = ix0 + kx;
                                        let d = &mut dst[kx as usize * ic..(kx as usize + 1) * ic];
                                        if ix < 0 || ix >= iw {
                                            d.fill(0);
                                        } else {
                                            let base = ((iy * iw + ix) as usize) * ic;
                                            d.copy_from_slice(&xs[base..base + ic]);
                                        }
                                    }
                                }
                            }
                            let o = ((oy * out_t.shape.w as isize + ox) as usize) * oc_n;
                            for oc in 0..oc_n {
                                let acc = u.bias[oc] + dot(patch, &u.rows[oc * u.k..(oc + 1) * u.k]);
                                out[o + oc] = u.rq[oc].apply(acc).saturating_add(c.out.zero_point).clamp(lo, hi) as i8;
                            }
                        }
                    }
                }
                Layer::Dense(d) => {
                    let u = self.unpacked[i].as_ref().expect("unpacked at construction");
                    let (lo, hi) = clamp_bounds(&d.clamp, d.out.bits);
                    patch.clear();
                    patch.extend(x.iter().map(|&s| (s as i32 - zp) as i16));
                    for (o, y) in out.iter_mut().enumerate() {
                        let acc = u.bias[o] + dot(patch, &u.rows[o * u.k..(o + 1) * u.k]);
                        *y = u.rq[o].apply(acc).saturating_add(d.out.zero_point).clamp(lo, hi) as i8;
                    }
                }
                Layer::DepthwiseConv2d(c) => k::depthwise_conv2d(c, in_t.shape, zp, x, out_t.shape, &mut out),
                Layer::MaxPool2d(p) => k::max_pool(p, in_t.shape, x, out_t.shape, &mut out),
                Layer::AvgPool2d(p) => k::avg_pool(p, in_t.shape, x, out_t.shape, &mut out),
                Layer::Add(a) => {
                    let o = plan.tensors[a.other as usize];
                    k::add(a, zp, x, o.quant.zero_point, &tensors[a.other as usize], &mut out)
                }
                Layer::Reshape(_) => out.copy_from_slice(x),
            }
            tensors[i + 1] = out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use releq_common::builder::OwnedModel;
    use releq_common::testing::{lenet5_random, random_input, random_model};

    /// The same body for every model: fast == reference on several inputs.
    fn same_as_reference(owned: &OwnedModel, seed: u64) {
        let plan = owned.plan().unwrap();
        let mut fast = FastModel::new(&plan);
        let mut arena = vec![0i8; plan.arena_bytes];
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..5 {
            let input = random_input(&mut rng, &plan);
            let want = plan.run_with::<releq_common::kernels::Reference>(&mut arena, &input).unwrap().to_vec();
            assert_eq!(fast.run(&input).unwrap(), &want[..], "{}", plan.model.name);
        }
    }

    #[test]
    fn bit_exact_with_reference_on_every_layer_kind() {
        for seed in 0..40 {
            same_as_reference(&random_model(seed, true), seed);
        }
    }

    #[test]
    fn bit_exact_with_reference_on_lenet5_at_mixed_bits() {
        for (seed, w, a) in [(1, [8; 5], [8; 5]), (2, [2, 3, 4, 5, 6], [7, 6, 5, 4, 3]), (3, [2; 5], [2; 5])] {
            same_as_reference(&lenet5_random(seed, w, a), seed);
        }
    }

    #[test]
    fn wrong_input_length_is_an_error() {
        let owned = random_model(1, false);
        let plan = owned.plan().unwrap();
        let mut fast = FastModel::new(&plan);
        assert!(matches!(fast.run(&[0; 3]), Err(RunError::InputLength { expected: 300, actual: 3 })));
    }
}
