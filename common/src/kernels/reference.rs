//! Scalar reference kernels: simple loops, exact arithmetic, no tricks.
//!
//! Layouts: activations NHWC (N = 1), `i8` per value; weights packed per
//! output channel as [`crate::pack`] documents.

use super::clamp_bounds;
use crate::model::{Add, Conv2d, Dense, Pool, Shape};
use crate::pack;
use crate::quant::{add_element, rounded_average};

/// Standard 2-D convolution. `input` is `in_shape`, `output` is `out_shape`.
pub fn conv2d(l: &Conv2d<'_>, in_shape: Shape, in_zp: i32, input: &[i8], out_shape: Shape, output: &mut [i8]) {
    let (ih, iw, ic) = (in_shape.h as isize, in_shape.w as isize, in_shape.c as usize);
    let k = l.kh as usize * l.kw as usize * ic;
    let rb = pack::row_bytes(k, l.w.bits);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let out_zp = l.out.zero_point;
    for oy in 0..out_shape.h as isize {
        for ox in 0..out_shape.w as isize {
            for oc in 0..out_shape.c as usize {
                let row = l.w.row(oc, rb);
                let mut acc = l.w.bias(oc);
                for ky in 0..l.kh as isize {
                    let iy = oy * l.stride_h as isize + ky - l.pad.top as isize;
                    for kx in 0..l.kw as isize {
                        let ix = ox * l.stride_w as isize + kx - l.pad.left as isize;
                        if iy < 0 || iy >= ih || ix < 0 || ix >= iw {
                            continue; // padding holds the zero point: contributes 0
                        }
                        let base = ((iy * iw + ix) as usize) * ic;
                        let wbase = ((ky * l.kw as isize + kx) as usize) * ic;
                        for c in 0..ic {
                            let x = input[base + c] as i32 - in_zp;
                            let w = pack::get(row, l.w.bits, wbase + c) as i32;
                            acc += x * w;
                        }
                    }
                }
                let y = l.w.requant(oc).apply(acc).saturating_add(out_zp);
                let idx = ((oy * out_shape.w as isize + ox) as usize) * out_shape.c as usize + oc;
                output[idx] = y.clamp(lo, hi) as i8;
            }
        }
    }
}

/// Depthwise 2-D convolution with channel multiplier 1.
pub fn depthwise_conv2d(
    l: &Conv2d<'_>,
    in_shape: Shape,
    in_zp: i32,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) {
    let (ih, iw, ic) = (in_shape.h as isize, in_shape.w as isize, in_shape.c as usize);
    let k = l.kh as usize * l.kw as usize;
    let rb = pack::row_bytes(k, l.w.bits);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    for oy in 0..out_shape.h as isize {
        for ox in 0..out_shape.w as isize {
            for c in 0..ic {
                let row = l.w.row(c, rb);
                let mut acc = l.w.bias(c);
                for ky in 0..l.kh as isize {
                    let iy = oy * l.stride_h as isize + ky - l.pad.top as isize;
                    for kx in 0..l.kw as isize {
                        let ix = ox * l.stride_w as isize + kx - l.pad.left as isize;
                        if iy < 0 || iy >= ih || ix < 0 || ix >= iw {
                            continue;
                        }
                        let x = input[((iy * iw + ix) as usize) * ic + c] as i32 - in_zp;
                        let w = pack::get(row, l.w.bits, (ky * l.kw as isize + kx) as usize) as i32;
                        acc += x * w;
                    }
                }
                let y = l.w.requant(c).apply(acc).saturating_add(l.out.zero_point);
                output[((oy * out_shape.w as isize + ox) as usize) * ic + c] = y.clamp(lo, hi) as i8;
            }
        }
    }
}

/// Fully connected layer over the flattened input.
pub fn dense(l: &Dense<'_>, in_zp: i32, input: &[i8], output: &mut [i8]) {
    let k = input.len();
    let rb = pack::row_bytes(k, l.w.bits);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    for (o, out) in output.iter_mut().enumerate().take(l.out_features as usize) {
        let row = l.w.row(o, rb);
        let mut acc = l.w.bias(o);
        for (j, &x) in input.iter().enumerate() {
            acc += (x as i32 - in_zp) * pack::get(row, l.w.bits, j) as i32;
        }
        let y = l.w.requant(o).apply(acc).saturating_add(l.out.zero_point);
        *out = y.clamp(lo, hi) as i8;
    }
}

/// Visit the in-bounds input positions of one pooling window.
fn window(p: &Pool, in_shape: Shape, oy: usize, ox: usize, mut f: impl FnMut(usize)) {
    for ky in 0..p.kh as isize {
        let iy = (oy * p.stride_h as usize) as isize + ky - p.pad.top as isize;
        if iy < 0 || iy >= in_shape.h as isize {
            continue;
        }
        for kx in 0..p.kw as isize {
            let ix = (ox * p.stride_w as usize) as isize + kx - p.pad.left as isize;
            if ix < 0 || ix >= in_shape.w as isize {
                continue;
            }
            f((iy as usize * in_shape.w as usize + ix as usize) * in_shape.c as usize);
        }
    }
}

/// Max pooling; padded positions are ignored.
pub fn max_pool(p: &Pool, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
    let c = in_shape.c as usize;
    for oy in 0..out_shape.h as usize {
        for ox in 0..out_shape.w as usize {
            let o = (oy * out_shape.w as usize + ox) * c;
            for ch in 0..c {
                let mut m = i8::MIN;
                window(p, in_shape, oy, ox, |base| m = m.max(input[base + ch]));
                output[o + ch] = m;
            }
        }
    }
}

/// Average pooling over the in-bounds positions, rounded half away from zero.
pub fn avg_pool(p: &Pool, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
    let c = in_shape.c as usize;
    for oy in 0..out_shape.h as usize {
        for ox in 0..out_shape.w as usize {
            let o = (oy * out_shape.w as usize + ox) * c;
            for ch in 0..c {
                let (mut sum, mut n) = (0i32, 0i32);
                window(p, in_shape, oy, ox, |base| {
                    sum += input[base + ch] as i32;
                    n += 1;
                });
                // A validated window always has at least one in-bounds position.
                output[o + ch] = rounded_average(sum, n.max(1)) as i8;
            }
        }
    }
}

/// Residual add of two same-shaped tensors.
pub fn add(l: &Add, zp1: i32, a: &[i8], zp2: i32, b: &[i8], output: &mut [i8]) {
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    for ((o, &x1), &x2) in output.iter_mut().zip(a).zip(b) {
        *o = add_element(x1 as i32, zp1, x2 as i32, zp2, &l.params, l.out.zero_point).clamp(lo, hi) as i8;
    }
}
