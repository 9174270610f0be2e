//! Packed low-bit products: four multiply-accumulates per `SMLAD` for
//! 2-bit weights with 2-, 3- or 4-bit input activations.
//!
//! Both operands are made unsigned, `a = x - act_min` (0..2^b) and
//! `u = w + 2` (0..=3), and two values share each 16-bit lane, `S` bits
//! apart: the activation lane holds `a0 + a1 * 2^S`, the weight lane the
//! reversed pair `u1 + u0 * 2^S`. A lane product's field at bit `S` is then
//! `a0 * u0 + a1 * u1`, and `SMLAD` adds two lanes: four products in one
//! instruction, accumulated in bits `S..2S` of a plain `i32`. Below that
//! field collect the cross terms, above it the rest wraps harmlessly; the
//! field is extracted (`(acc >> S) & (2^S - 1)`) before it can overflow or
//! the cross terms can carry into it: every [`cap`] `SMLAD`s.
//!
//! | input bits | `S` | lane maximum | products per field | `SMLAD`s per extraction |
//! | --- | ---: | ---: | ---: | ---: |
//! | 2 | 13 | 3 + 3 * 2^13 = 24,579 | 4 * 3 * 3 = 36 | 227 |
//! | 3 | 12 | 7 + 7 * 2^12 = 28,679 | 4 * 7 * 3 = 84 | 48 |
//! | 4 | 11 | 15 + 15 * 2^11 = 30,735 | 4 * 15 * 3 = 180 | 11 |
//!
//! (lanes stay below 2^15, as `SMLAD`'s signed lanes need.) The true sum is
//! `sum (a - z)(u - 2) = P - 2 * sum(a) - z * sum(w)` with `z` the input zero
//! point's unsigned code: `sum(a)` is taken once per im2col column and shared
//! by every output channel, `z * sum(w)` once per channel and call (zero for
//! inputs after a ReLU, whose zero point is the lowest code). Padded
//! positions hold `a = z` (they contribute `(z - z) * w = 0`), lanes past the
//! row's end hold `a = 0`.
//!
//! The weights are read as stored (2-bit rows, [`crate::pack`]): each byte
//! (four weights) becomes one spaced weight word through a 256-entry table
//! per spacing, built at compile time. So the flash stays at 2 bits per
//! weight and the decode is one load per four weights.

use super::clamp_bounds;
use super::gather::Gather;
use super::mac::Mac;
use super::requant::Requant;
use crate::model::{Conv2d, Dense, Shape};
use crate::pack;
use crate::quant::act_min;

/// Field spacing for `in_bits` input activations.
const fn spacing(in_bits: u8) -> u32 {
    match in_bits {
        2 => 13,
        3 => 12,
        _ => 11,
    }
}

/// `SMLAD`s between extractions: the field must hold the products, and the
/// cross terms below must not carry into it (see the module doc).
pub const fn cap(in_bits: u8) -> usize {
    let s = spacing(in_bits);
    let amax = (1u32 << in_bits) - 1;
    let field = ((1u32 << s) - 1) / (4 * amax * 3);
    let cross = (1u32 << s) / (2 * amax * 3);
    if field < cross {
        field as usize
    } else {
        cross as usize
    }
}

const fn lut(s: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        // Weight i of the byte is bits 2i..2i+2, two's complement; u = w + 2.
        let mut u = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            let f = ((b >> (2 * i)) & 3) as i32;
            let w = if f >= 2 { f - 4 } else { f };
            u[i] = (w + 2) as u32;
            i += 1;
        }
        let lo = u[1] + (u[0] << s);
        let hi = u[3] + (u[2] << s);
        t[b] = lo | (hi << 16);
        b += 1;
    }
    t
}

static LUT13: [u32; 256] = lut(13);
static LUT12: [u32; 256] = lut(12);
static LUT11: [u32; 256] = lut(11);

fn spaced_table(s: u32) -> &'static [u32; 256] {
    match s {
        13 => &LUT13,
        12 => &LUT12,
        _ => &LUT11,
    }
}

/// Whether the packed path takes a layer with these bits.
pub fn applies(wbits: u8, in_bits: u8) -> bool {
    wbits == 2 && (2..=4).contains(&in_bits)
}

/// Most output channels the packed path takes when the input's zero point
/// is not its lowest code (the per-channel weight sums live on the stack).
pub const MAX_SUM_CHANNELS: usize = 64;

/// One activation word from four unsigned codes.
#[inline(always)]
fn aword(a: [u32; 4], s: u32) -> u32 {
    (a[0] + (a[1] << s)) | ((a[2] + (a[3] << s)) << 16)
}

/// Packed sums `P = sum a * u` of rows `w[r0..]` and `w[r1..]` (`nw` bytes
/// each) with the two interleaved columns, extracted every `cap` words.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn dot2x2<M: Mac>(
    w: &[u8],
    r0: usize,
    r1: usize,
    nw: usize,
    cols: &[u32],
    lut: &[u32; 256],
    s: u32,
    cap: usize,
) -> [i32; 4] {
    let mask = (1i32 << s) - 1;
    let mut total = [0i32; 4];
    let (row0, row1) = (&w[r0..r0 + nw], &w[r1..r1 + nw]);
    let cols = &cols[..2 * nw];
    for ((c0, c1), x) in row0.chunks(cap).zip(row1.chunks(cap)).zip(cols.chunks(2 * cap)) {
        let (mut a00, mut a01, mut a10, mut a11) = (0i32, 0i32, 0i32, 0i32);
        for ((&b0, &b1), xx) in c0.iter().zip(c1).zip(x.chunks_exact(2)) {
            let (w0, w1) = (lut[b0 as usize], lut[b1 as usize]);
            a00 = M::smlad(w0, xx[0], a00);
            a01 = M::smlad(w0, xx[1], a01);
            a10 = M::smlad(w1, xx[0], a10);
            a11 = M::smlad(w1, xx[1], a11);
        }
        total[0] += (a00 >> s) & mask;
        total[1] += (a01 >> s) & mask;
        total[2] += (a10 >> s) & mask;
        total[3] += (a11 >> s) & mask;
    }
    total
}

/// Sum of the true weights of each row, when the zero point needs it.
fn weight_sums(w: &crate::model::Weights<'_>, rows: usize, k: usize, zu: i32) -> Option<[i32; MAX_SUM_CHANNELS]> {
    let mut sums = [0i32; MAX_SUM_CHANNELS];
    if zu != 0 {
        if rows > MAX_SUM_CHANNELS {
            return None;
        }
        let rb = pack::row_bytes(k, 2);
        for (c, s) in sums.iter_mut().enumerate().take(rows) {
            let row = w.row(c, rb);
            *s = (0..k).map(|j| pack::get(row, 2, j) as i32).sum();
        }
    }
    Some(sums)
}

/// Standard convolution by packed products; false (nothing written) when
/// the layer is not one it takes or the scratch is short.
#[allow(clippy::too_many_arguments)]
pub fn conv2d<M: Mac>(
    l: &Conv2d<'_>,
    in_shape: Shape,
    in_bits: u8,
    in_zp: i32,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    scratch: &mut [u32],
) -> bool {
    if !applies(l.w.bits, in_bits) {
        return false;
    }
    let (ih, iw, ic) = (in_shape.h as usize, in_shape.w as usize, in_shape.c as usize);
    let (kh, kw) = (l.kh as usize, l.kw as usize);
    let k = kh * kw * ic;
    let nw = k.div_ceil(4);
    if scratch.len() < 2 * nw + k {
        return false;
    }
    let oc_n = out_shape.c as usize;
    let h = -act_min(in_bits);
    let zu = in_zp + h;
    let Some(sums) = weight_sums(&l.w, oc_n, k, zu) else {
        return false;
    };
    let (cols, table) = scratch.split_at_mut(2 * nw);
    let table = &mut table[..k];
    for ky in 0..kh {
        for kx in 0..kw {
            for c in 0..ic {
                table[(ky * kw + kx) * ic + c] = ((ky * iw + kx) * ic + c) as u32;
            }
        }
    }
    let gather = Gather::new(table);
    let s = spacing(in_bits);
    let cap = cap(in_bits);
    let lut = spaced_table(s);
    let cst = aword([h as u32; 4], s);
    let (oh, ow) = (out_shape.h as usize, out_shape.w as usize);
    let (sh, sw) = (l.stride_h as usize, l.stride_w as usize);
    let (pt, pl) = (l.pad.top as isize, l.pad.left as isize);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let rb = nw;
    // Column `q` for pixel `pix`; returns sum(a) over the K lanes.
    let fill = |cols: &mut [u32], q: usize, pix: usize| -> i32 {
        let (oy, ox) = (pix / ow, pix % ow);
        let (iy0, ix0) = ((oy * sh) as isize - pt, (ox * sw) as isize - pl);
        let full = k / 4;
        let mut sum = 0i32;
        let interior = iy0 >= 0 && ix0 >= 0 && iy0 as usize + kh <= ih && ix0 as usize + kw <= iw;
        let base = if interior { (iy0 as usize * iw + ix0 as usize) * ic } else { 0 };
        let patch = &input[base..];
        if interior
            && gather.words(patch, |t, x| {
                sum += x[0] as i32 + x[1] as i32 + x[2] as i32 + x[3] as i32;
                let v = (x[0] as i32 + ((x[1] as i32) << s)) + ((x[2] as i32 + ((x[3] as i32) << s)) << 16);
                cols[2 * t + q] = (v as u32).wrapping_add(cst);
            })
        {
            if full < nw {
                let mut a = [0u32; 4];
                for (i, &o) in table[4 * full..].iter().enumerate() {
                    let x = patch[o as usize] as i32;
                    sum += x;
                    a[i] = (x + h) as u32;
                }
                cols[2 * full + q] = aword(a, s);
            }
            sum + k as i32 * h
        } else {
            for t in 0..nw {
                let mut a = [0u32; 4];
                for (i, v) in a.iter_mut().enumerate() {
                    let kk = 4 * t + i;
                    if kk >= k {
                        break;
                    }
                    let (ky, rest) = (kk / (kw * ic), kk % (kw * ic));
                    let (kx, c) = (rest / ic, rest % ic);
                    let (iy, ix) = (iy0 + ky as isize, ix0 + kx as isize);
                    *v = if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                        zu as u32
                    } else {
                        (input[(iy as usize * iw + ix as usize) * ic + c] as i32 + h) as u32
                    };
                    sum += *v as i32;
                }
                cols[2 * t + q] = aword(a, s);
            }
            sum
        }
    };
    let npix = oh * ow;
    let out_zp = l.out.zero_point;
    let mut pix = 0;
    while pix < npix {
        let pair = pix + 1 < npix;
        let s0 = fill(cols, 0, pix);
        let s1 = fill(cols, 1, if pair { pix + 1 } else { pix });
        let o0 = pix * oc_n;
        let mut oc = 0;
        while oc < oc_n {
            let oc1 = if oc + 1 < oc_n { oc + 1 } else { oc };
            let p = dot2x2::<M>(l.w.packed, oc * rb, oc1 * rb, nw, cols, lut, s, cap);
            let fin = |c: usize, p: i32, sa: i32| {
                let acc = l.w.bias(c) + p - 2 * sa - zu * sums[c];
                Requant::new(l.w.requant(c)).apply(acc).saturating_add(out_zp).clamp(lo, hi) as i8
            };
            output[o0 + oc] = fin(oc, p[0], s0);
            if pair {
                output[o0 + oc_n + oc] = fin(oc, p[1], s1);
            }
            if oc1 != oc {
                output[o0 + oc1] = fin(oc1, p[2], s0);
                if pair {
                    output[o0 + oc_n + oc1] = fin(oc1, p[3], s1);
                }
            }
            oc += 2;
        }
        pix += 2;
    }
    true
}

/// Fully connected layer by packed products; false (nothing written) when
/// it is not one the path takes or the scratch is short.
pub fn dense<M: Mac>(
    l: &Dense<'_>,
    in_bits: u8,
    in_zp: i32,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [u32],
) -> bool {
    if !applies(l.w.bits, in_bits) {
        return false;
    }
    let k = input.len();
    let nw = k.div_ceil(4);
    if scratch.len() < 2 * nw {
        return false;
    }
    let n = (l.out_features as usize).min(output.len());
    let h = -act_min(in_bits);
    let zu = in_zp + h;
    let s = spacing(in_bits);
    let cap = cap(in_bits);
    let lut = spaced_table(s);
    // The input column in the first interleaved slot and a column of ones
    // (over the K real lanes) in the second: the 2 x 2 loop then yields each
    // row's products and, for free, its sum of unsigned weights.
    let cols = &mut scratch[..2 * nw];
    let mut sa = 0i32;
    for (t, x) in input.chunks(4).enumerate() {
        let (mut a, mut one) = ([0u32; 4], [0u32; 4]);
        for ((v, o), &xi) in a.iter_mut().zip(one.iter_mut()).zip(x) {
            *v = (xi as i32 + h) as u32;
            *o = 1;
            sa += *v as i32;
        }
        cols[2 * t] = aword(a, s);
        cols[2 * t + 1] = aword(one, s);
    }
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let rb = nw;
    let mut o = 0;
    while o < n {
        let o1 = if o + 1 < n { o + 1 } else { o };
        let p = dot2x2::<M>(l.w.packed, o * rb, o1 * rb, nw, cols, lut, s, cap);
        for (c, pv, su) in [(o, p[0], p[1]), (o1, p[2], p[3])] {
            // sum(w) = sum(u) - 2K.
            let acc = l.w.bias(c) + pv - 2 * sa - zu * (su - 2 * k as i32);
            output[c] = Requant::new(l.w.requant(c)).apply(acc).saturating_add(l.out.zero_point).clamp(lo, hi) as i8;
        }
        o += 2;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_match_the_table() {
        assert_eq!([cap(2), cap(3), cap(4)], [227, 48, 11]);
    }

    /// Brute force: the worst case of every lane stays exact for `cap` SMLADs.
    #[test]
    fn worst_case_stays_exact() {
        use super::super::mac::{Mac, Portable};
        for bits in 2..=4u8 {
            let s = spacing(bits);
            let amax = (1u32 << bits) - 1;
            let x = aword([amax; 4], s);
            let w = lut(s)[0b0101_0101]; // every weight 1: u = 3
            let mut acc = 0;
            for n in 1..=cap(bits) {
                acc = Portable::smlad(w, x, acc);
                assert_eq!((acc >> s) & ((1 << s) - 1), (n as u32 * 4 * amax * 3) as i32, "bits {bits} n {n}");
            }
        }
    }
}
