//! Reference kernels against a straightforward float computation of the same
//! quantized layer (within one output unit), at every weight and activation
//! bitwidth, plus outputs pinned by hand.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use releq_common::builder::{activation_clamp, OwnedWeights, NO_WEIGHTS};
use releq_common::kernels::reference as k;
use releq_common::model::{Activation, Add, Clamp, Conv2d, Dense, Padding, Pool, Shape, TensorQuant};
use releq_common::quant::{act_max, act_min, add_params, quantize_multiplier};
use releq_common::testing::{random_quant, random_weighted, WeightedParams};

fn random_codes(rng: &mut impl Rng, n: usize, bits: u8) -> Vec<i8> {
    (0..n).map(|_| rng.gen_range(act_min(bits)..=act_max(bits)) as i8).collect()
}

/// Float value of one output, quantized the ideal way (round half away from zero).
fn ideal(acc_real: f64, out: &TensorQuant, clamp: &Clamp) -> i32 {
    let q = (acc_real / out.scale as f64).round() as i32 + out.zero_point;
    let lo = (clamp.min as i32).max(act_min(out.bits));
    let hi = (clamp.max as i32).min(act_max(out.bits));
    q.clamp(lo, hi)
}

/// Float convolution (standard or depthwise) of the same quantized layer.
fn float_conv(
    l: &Conv2d<'_>,
    p: &WeightedParams,
    depthwise: bool,
    in_shape: Shape,
    in_q: &TensorQuant,
    x: &[i8],
    out_shape: Shape,
) -> Vec<i32> {
    let mut out = vec![0; out_shape.len()];
    let ic = in_shape.c as usize;
    let k = if depthwise { (l.kh * l.kw) as usize } else { (l.kh * l.kw) as usize * ic };
    for oy in 0..out_shape.h as i64 {
        for ox in 0..out_shape.w as i64 {
            for oc in 0..out_shape.c as usize {
                let s_w = p.w_scale[oc] as f64;
                let s_in = in_q.scale as f64;
                let mut acc = s_in * s_w * p.bias[oc] as f64;
                for ky in 0..l.kh as i64 {
                    for kx in 0..l.kw as i64 {
                        let iy = oy * l.stride_h as i64 + ky - l.pad.top as i64;
                        let ix = ox * l.stride_w as i64 + kx - l.pad.left as i64;
                        if iy < 0 || ix < 0 || iy >= in_shape.h as i64 || ix >= in_shape.w as i64 {
                            continue;
                        }
                        let chans: Vec<usize> = if depthwise { vec![oc] } else { (0..ic).collect() };
                        for c in chans {
                            let xv = x[(iy as usize * in_shape.w as usize + ix as usize) * ic + c] as i32;
                            let widx = if depthwise {
                                (ky * l.kw as i64 + kx) as usize
                            } else {
                                (ky * l.kw as i64 + kx) as usize * ic + c
                            };
                            let w = p.codes[oc * k + widx] as f64;
                            acc += s_in * (xv - in_q.zero_point) as f64 * s_w * w;
                        }
                    }
                }
                out[(oy as usize * out_shape.w as usize + ox as usize) * out_shape.c as usize + oc] =
                    ideal(acc, &l.out, &l.clamp);
            }
        }
    }
    out
}

fn assert_close(got: &[i8], want: &[i32], what: &str) {
    assert_eq!(got.len(), want.len());
    let mut max_diff = 0;
    for (g, w) in got.iter().zip(want) {
        max_diff = max_diff.max((*g as i32 - w).abs());
    }
    assert!(max_diff <= 1, "{what}: max difference {max_diff} > 1 unit");
    // The comparison is not vacuous: outputs are spread, not all clamped.
    let distinct = want.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert!(distinct >= 2.min(want.len()), "{what}: degenerate outputs {want:?}");
}

fn conv_case(rng: &mut StdRng, depthwise: bool, wbits: u8, in_bits: u8, out_bits: u8) {
    let in_shape = Shape::new(7, 6, 3);
    let in_q = random_quant(rng, in_bits, false);
    let (out_c, k) = if depthwise { (3u16, 9) } else { (4u16, 27) };
    let act = [Activation::None, Activation::Relu, Activation::Relu6][rng.gen_range(0..3)];
    let (p, out) = random_weighted(rng, &in_q, out_c as usize, k, wbits, out_bits, act != Activation::None);
    let stride = rng.gen_range(1..=2);
    let pad = Padding { top: 1, left: 0, bottom: 2, right: 1 };
    let l = Conv2d {
        input: 0,
        out_c,
        kh: 3,
        kw: 3,
        stride_h: stride,
        stride_w: 1,
        pad,
        act,
        clamp: activation_clamp(act, &out),
        out,
        w: p.weights.borrow(),
    };
    let out_shape = Shape::new((7 + 3 - 3) / stride as u16 + 1, 6 + 1 - 3 + 1, out_c);
    let x = random_codes(rng, in_shape.len(), in_bits);
    let mut y = vec![0i8; out_shape.len()];
    if depthwise {
        k::depthwise_conv2d(&l, in_shape, in_q.zero_point, &x, out_shape, &mut y);
    } else {
        k::conv2d(&l, in_shape, in_q.zero_point, &x, out_shape, &mut y);
    }
    let want = float_conv(&l, &p, depthwise, in_shape, &in_q, &x, out_shape);
    assert_close(&y, &want, &format!("conv dw={depthwise} w{wbits} a{in_bits}->{out_bits}"));
}

#[test]
fn conv_matches_float_at_every_bitwidth() {
    let mut rng = StdRng::seed_from_u64(1);
    for wbits in 2..=8 {
        for in_bits in 2..=8 {
            for out_bits in 2..=8 {
                conv_case(&mut rng, false, wbits, in_bits, out_bits);
            }
        }
    }
}

#[test]
fn depthwise_matches_float_at_every_bitwidth() {
    let mut rng = StdRng::seed_from_u64(2);
    for wbits in 2..=8 {
        for in_bits in 2..=8 {
            for out_bits in 2..=8 {
                conv_case(&mut rng, true, wbits, in_bits, out_bits);
            }
        }
    }
}

#[test]
fn dense_matches_float_at_every_bitwidth() {
    let mut rng = StdRng::seed_from_u64(3);
    for wbits in 2..=8 {
        for in_bits in 2..=8 {
            for out_bits in 2..=8 {
                let n = 37;
                let in_q = random_quant(&mut rng, in_bits, false);
                let (p, out) = random_weighted(&mut rng, &in_q, 11, n, wbits, out_bits, false);
                let l = Dense {
                    input: 0,
                    out_features: 11,
                    act: Activation::None,
                    clamp: activation_clamp(Activation::None, &out),
                    out,
                    w: p.weights.borrow(),
                };
                let x = random_codes(&mut rng, n, in_bits);
                let mut y = vec![0i8; 11];
                k::dense(&l, in_q.zero_point, &x, &mut y);
                let want: Vec<i32> = (0..11)
                    .map(|o| {
                        let s = in_q.scale as f64 * p.w_scale[o] as f64;
                        let acc: f64 = p.bias[o] as f64 * s
                            + (0..n)
                                .map(|j| s * (x[j] as i32 - in_q.zero_point) as f64 * p.codes[o * n + j] as f64)
                                .sum::<f64>();
                        ideal(acc, &l.out, &l.clamp)
                    })
                    .collect();
                assert_close(&y, &want, &format!("dense w{wbits} a{in_bits}->{out_bits}"));
            }
        }
    }
}

#[test]
fn pools_match_float_at_every_bitwidth() {
    let mut rng = StdRng::seed_from_u64(4);
    for bits in 2..=8 {
        let shape = Shape::new(5, 6, 2);
        let x = random_codes(&mut rng, shape.len(), bits);
        let p = Pool {
            input: 0,
            kh: 2,
            kw: 3,
            stride_h: 2,
            stride_w: 2,
            pad: Padding { top: 0, left: 1, bottom: 1, right: 1 },
        };
        let out_shape = Shape::new((5 + 1 - 2) / 2 + 1, (6 + 2 - 3) / 2 + 1, 2);
        let mut ymax = vec![0i8; out_shape.len()];
        let mut yavg = vec![0i8; out_shape.len()];
        k::max_pool(&p, shape, &x, out_shape, &mut ymax);
        k::avg_pool(&p, shape, &x, out_shape, &mut yavg);
        for oy in 0..out_shape.h as i32 {
            for ox in 0..out_shape.w as i32 {
                for c in 0..2 {
                    let mut vals = vec![];
                    for ky in 0..2 {
                        for kx in 0..3 {
                            let (iy, ix) = (oy * 2 + ky, ox * 2 + kx - 1);
                            if (0..5).contains(&iy) && (0..6).contains(&ix) {
                                vals.push(x[((iy * 6 + ix) * 2 + c) as usize] as f64);
                            }
                        }
                    }
                    let o = ((oy * out_shape.w as i32 + ox) * 2 + c) as usize;
                    let max = vals.iter().cloned().fold(f64::MIN, f64::max);
                    assert_eq!(ymax[o] as f64, max);
                    let avg = vals.iter().sum::<f64>() / vals.len() as f64;
                    assert!((yavg[o] as f64 - avg).abs() <= 0.5, "avg {} vs {avg}", yavg[o]);
                    assert_eq!(yavg[o] as f64, avg.round(), "ties away from zero");
                }
            }
        }
    }
}

#[test]
fn add_matches_float_at_every_bitwidth() {
    let mut rng = StdRng::seed_from_u64(5);
    for b1 in 2..=8 {
        for b2 in 2..=8 {
            for bo in 2..=8 {
                let q1 = random_quant(&mut rng, b1, false);
                let q2 = random_quant(&mut rng, b2, false);
                let range = q1.scale * (1 << b1) as f32 + q2.scale * (1 << b2) as f32;
                let out = TensorQuant { scale: range / (1 << bo) as f32, zero_point: 0, bits: bo };
                let l = Add {
                    input: 0,
                    other: 0,
                    act: Activation::None,
                    clamp: activation_clamp(Activation::None, &out),
                    out,
                    params: add_params(q1.scale, q2.scale, out.scale),
                };
                let a = random_codes(&mut rng, 50, b1);
                let b = random_codes(&mut rng, 50, b2);
                let mut y = vec![0i8; 50];
                k::add(&l, q1.zero_point, &a, q2.zero_point, &b, &mut y);
                let want: Vec<i32> = (0..50)
                    .map(|i| {
                        let r = q1.scale as f64 * (a[i] as i32 - q1.zero_point) as f64
                            + q2.scale as f64 * (b[i] as i32 - q2.zero_point) as f64;
                        ideal(r, &out, &l.clamp)
                    })
                    .collect();
                assert_close(&y, &want, &format!("add {b1}+{b2}->{bo}"));
            }
        }
    }
}

fn pinned_conv(wbits: u8, codes: &[i8], mult: f64) -> Vec<i8> {
    let rq = quantize_multiplier(mult);
    let w = OwnedWeights::new(wbits, codes, 4, &[0], &[rq]).unwrap();
    let out = TensorQuant { scale: 1.0, zero_point: 0, bits: 8 };
    let l = Conv2d {
        input: 0,
        out_c: 1,
        kh: 2,
        kw: 2,
        stride_h: 1,
        stride_w: 1,
        pad: Padding::default(),
        act: Activation::None,
        clamp: Clamp { min: -128, max: 127 },
        out,
        w: w.borrow(),
    };
    let x: Vec<i8> = (1..=9).collect();
    let mut y = vec![0i8; 4];
    k::conv2d(&l, Shape::new(3, 3, 1), 0, &x, Shape::new(2, 2, 1), &mut y);
    y
}

#[test]
fn pinned_outputs() {
    // Input 3x3 codes 1..9 (zero point 0), one 2x2 filter, multiplier 0.5.
    // Worked by hand. 4-bit weights [1, 2, 3, 4]: window sums
    // 1+4+12+20 = 37, 47, 67, 77; x 0.5 = 18.5, 23.5, 33.5, 38.5 -> ties up.
    assert_eq!(pinned_conv(4, &[1, 2, 3, 4], 0.5), vec![19, 24, 34, 39]);
    // 2-bit weights [1, -1, -1, 0]: 1-2-4 = -5, 2-3-5 = -6, 4-5-7 = -8, 5-6-8 = -9;
    // x 0.5 = -2.5, -3, -4, -4.5 -> the high multiply rounds ties up: -2, -3, -4, -4.
    assert_eq!(pinned_conv(2, &[1, -1, -1, 0], 0.5), vec![-2, -3, -4, -4]);
    // x 0.25 (shift -1, so double rounding): -5 -> SRDHM -2.5 -> -2, then
    // -2 / 2 = -1; -6 -> -3 -> -1.5 -> -2 (ties away); -8 -> -2; -9 -> -4.5 -> -4 -> -2.
    assert_eq!(pinned_conv(2, &[1, -1, -1, 0], 0.25), vec![-1, -2, -2, -2]);
    // 3-bit weights [3, -3, 2, -1] with multiplier 1/3:
    // 3-6+8-5 = 0, 6-9+10-6 = 1, 12-15+14-8 = 3, 15-18+16-9 = 4. 1/3 is
    // m = round(2/3 * 2^31) with shift -1, so double rounding applies:
    // 1 -> SRDHM 0.67 -> 1 -> 1/2 = 0.5 -> 1; 3 -> 2 -> 1; 4 -> 2.67 -> 3 -> 1.5 -> 2.
    // (Real products 0, 0.33, 1, 1.33: double rounding is off by up to one
    // unit, exactly as gemmlowp/TFLite on a device.)
    assert_eq!(pinned_conv(3, &[3, -3, 2, -1], 1.0 / 3.0), vec![0, 1, 1, 2]);

    // Dense, 8-bit, zero points in and out, and a ReLU clamp:
    // x = [10, -20, 30] (zp 5) -> [5, -25, 25]; w = [2, 1, -1] -> 10-25-25 = -40,
    // bias 100 -> 60, x 0.1 = 6, + out zp -3 = 3. Second row w = [-2, 0, 0]: -10 + 0 -> -10 x 0.1 = -1 - 3 = -4 -> ReLU clamps at zp (-3).
    let rq = quantize_multiplier(0.1);
    let w = OwnedWeights::new(8, &[2, 1, -1, -2, 0, 0], 3, &[100, 0], &[rq, rq]).unwrap();
    let out = TensorQuant { scale: 1.0, zero_point: -3, bits: 8 };
    let l = Dense {
        input: 0,
        out_features: 2,
        act: Activation::Relu,
        clamp: activation_clamp(Activation::Relu, &out),
        out,
        w: w.borrow(),
    };
    let mut y = [0i8; 2];
    k::dense(&l, 5, &[10, -20, 30], &mut y);
    assert_eq!(y, [3, -3]);

    // Average pool of [1, 2] -> 1.5 -> 2 and [-1, -2] -> -1.5 -> -2 (ties away from zero).
    let p = Pool { input: 0, kh: 1, kw: 2, stride_h: 1, stride_w: 2, pad: Padding::default() };
    let mut y = [0i8; 2];
    k::avg_pool(&p, Shape::new(1, 4, 1), &[1, 2, -1, -2], Shape::new(1, 2, 1), &mut y);
    assert_eq!(y, [2, -2]);

    // Depthwise weights unused in the template are rejected nowhere: NO_WEIGHTS is empty.
    assert!(NO_WEIGHTS.packed.is_empty());
}
