//! Fast depthwise convolution (channel multiplier 1), four channels at a
//! time, after CMSIS-NN's `arm_depthwise_conv_s8_opt`.
//!
//! Bit-exact with [`super::reference::depthwise_conv2d`]. Channels are taken
//! in groups of four adjacent ones (NHWC: one 32-bit word of input per
//! window position). For each group:
//! - the group's weights are decoded once from the packed rows into lane
//!   words, two per window tap: `(w[c], w[c + 2])` and `(w[c + 1], w[c + 3])`,
//!   the order `SXTB16` and `SXTB16 ROR 8` split an input word into;
//! - the input zero point is folded into the bias once: `sum (x - zp) * w =
//!   sum x * w - zp * sum w`, so the inner loop multiplies raw input codes;
//! - per output pixel and tap: one word load, `SXTB16`, `SXTB16 ROR 8`, and
//!   four `SMLABB` / `SMLATT` (one product per channel lane; depthwise has
//!   no sum across channels for `SMLAD` to exploit);
//! - on ARMv7E-M the whole window of an interior pixel runs a
//!   hand-scheduled loop ([`Mac::dw_window4`], 11 instructions per position
//!   and four channels); elsewhere the same steps in Rust;
//! - pixels whose window crosses the padding take a separate loop that
//!   gives each padded tap the zero point in both lanes (its `x - zp` is 0,
//!   as the reference's skipped tap).
//!
//! The accumulator differs from the reference's only in summation order and
//! by the wrapping of intermediate sums, so it is the same `i32`, and so is
//! the requantised output ([`super::requant::Requant`]).
//!
//! With `c >= 4` channels the groups start at `0, 4, 8, ...` and, when `c`
//! is not a multiple of 4, a last group at `c - 4` overlaps the one before:
//! the overlapping channels are computed twice and written twice with the
//! same value. Fewer than 4 channels, or windows of more than [`MAX_TAPS`]
//! positions, run [`super::fast::depthwise_conv2d`].

use super::mac::{pack_lanes, Mac};
use super::requant::Requant;
use super::{clamp_bounds, fast};
use crate::model::{Conv2d, Shape};
use crate::pack;

/// Most window positions (`kh * kw`) this kernel takes (7 x 7); the decoded
/// weights of one group live on the stack (`8 * MAX_TAPS` bytes).
pub const MAX_TAPS: usize = 49;

#[inline(always)]
fn load(x: &[i8], at: usize) -> u32 {
    let b: [i8; 4] = x[at..at + 4].try_into().unwrap_or([0; 4]);
    u32::from_le_bytes(b.map(|v| v as u8))
}

/// Group starts covering `c >= 4` channels (see the module doc).
#[inline(always)]
fn starts(c: usize) -> impl Iterator<Item = usize> {
    let whole = c / 4 * 4;
    (0..whole).step_by(4).chain(if whole < c { Some(c - 4) } else { None })
}

/// The four channel accumulators of one group, in lane order
/// `[c, c + 2, c + 1, c + 3]`.
#[inline(always)]
fn mac4<M: Mac>(x: u32, w: &[u32], a: &mut [i32; 4]) {
    let (xe, xo) = (M::sxtb16(x), M::sxtb16_ror8(x));
    a[0] = M::smlabb(xe, w[0], a[0]);
    a[1] = M::smlatt(xe, w[0], a[1]);
    a[2] = M::smlabb(xo, w[1], a[2]);
    a[3] = M::smlatt(xo, w[1], a[3]);
}

/// Same as [`mac4`] with `x` already split into lanes (`xe == xo`: a padded
/// tap, the zero point in every lane).
#[inline(always)]
fn mac4_lanes<M: Mac>(x: u32, w: &[u32], a: &mut [i32; 4]) {
    a[0] = M::smlabb(x, w[0], a[0]);
    a[1] = M::smlatt(x, w[0], a[1]);
    a[2] = M::smlabb(x, w[1], a[2]);
    a[3] = M::smlatt(x, w[1], a[3]);
}

/// Depthwise 2-D convolution with channel multiplier 1, bit-exact with
/// [`super::reference::depthwise_conv2d`].
pub fn depthwise_conv2d<M: Mac>(
    l: &Conv2d<'_>,
    in_shape: Shape,
    in_zp: i32,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) {
    let (kh, kw) = (l.kh as usize, l.kw as usize);
    let kk = kh * kw;
    let ic = in_shape.c as usize;
    if ic < 4 || kk > MAX_TAPS {
        return fast::depthwise_conv2d(l, in_shape, in_zp, input, out_shape, output);
    }
    let bits = l.w.bits;
    let rb = pack::row_bytes(kk, bits);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let out_zp = l.out.zero_point;
    let zp_lanes = pack_lanes(in_zp, in_zp);
    let mut wbuf = [0u32; 2 * MAX_TAPS];
    for s in starts(ic) {
        let mut bias = [0i32; 4];
        let mut rq = [Requant::new(l.w.requant(s)); 4];
        for (j, &d) in CH.iter().enumerate() {
            let row = l.w.row(s + d, rb);
            let (word, shift) = (j / 2, 16 * (j % 2));
            let mut sum_w = 0i32;
            for t in 0..kk {
                let w = pack::get(row, bits, t) as i32;
                let lane = &mut wbuf[2 * t + word];
                *lane = (*lane & !(0xffff << shift)) | ((w as u16 as u32) << shift);
                sum_w += w;
            }
            bias[j] = l.w.bias(s + d).wrapping_sub(in_zp.wrapping_mul(sum_w));
            rq[j] = Requant::new(l.w.requant(s + d));
        }
        let g = Group { s, bias, rq, zp_lanes, lo, hi, out_zp };
        if kw == 3 {
            group::<M, 3>(l, in_shape, out_shape, &g, &wbuf[..2 * kk], input, output);
        } else {
            group::<M, 0>(l, in_shape, out_shape, &g, &wbuf[..2 * kk], input, output);
        }
    }
}

/// One group's prepared constants.
struct Group {
    s: usize,
    bias: [i32; 4],
    rq: [Requant; 4],
    zp_lanes: u32,
    lo: i32,
    hi: i32,
    out_zp: i32,
}

/// Lane order of the accumulators: channel offsets within the group.
const CH: [usize; 4] = [0, 2, 1, 3];

/// Every output pixel of one group. `KW` is the window width when known at
/// compile time (3), or 0.
#[inline(never)]
fn group<M: Mac, const KW: usize>(
    l: &Conv2d<'_>,
    in_shape: Shape,
    out_shape: Shape,
    g: &Group,
    wts: &[u32],
    input: &[i8],
    output: &mut [i8],
) {
    let (kh, kw) = (l.kh as usize, if KW > 0 { KW } else { l.kw as usize });
    let (ih, iw, ic) = (in_shape.h as usize, in_shape.w as usize, in_shape.c as usize);
    let (oh, ow) = (out_shape.h as usize, out_shape.w as usize);
    let (sh, sw) = (l.stride_h as usize, l.stride_w as usize);
    let (pt, pl) = (l.pad.top as usize, l.pad.left as usize);
    let rs = iw * ic;
    let s = g.s;
    for oy in 0..oh {
        let iy0 = (oy * sh) as isize - pt as isize;
        let rows_in = iy0 >= 0 && iy0 as usize + kh <= ih;
        for ox in 0..ow {
            let ix0 = (ox * sw) as isize - pl as isize;
            let mut a = g.bias;
            if rows_in && ix0 >= 0 && ix0 as usize + kw <= iw {
                let mut row = (iy0 as usize * iw + ix0 as usize) * ic;
                if M::dw_window4(input, row + s, ic, rs, kh, kw, wts, &mut a) {
                    // done by the backend's loop
                } else {
                    for wrow in wts.chunks_exact(2 * kw) {
                        for (px, ww) in input[row..row + kw * ic].chunks_exact(ic).zip(wrow.chunks_exact(2)) {
                            mac4::<M>(load(px, s), ww, &mut a);
                        }
                        row += rs;
                    }
                }
            } else {
                let mut w = wts.chunks_exact(2);
                for ky in 0..kh {
                    let iy = iy0 + ky as isize;
                    let row_in = iy >= 0 && iy < ih as isize;
                    for (kx, ww) in w.by_ref().take(kw).enumerate() {
                        let ix = ix0 + kx as isize;
                        if row_in && ix >= 0 && ix < iw as isize {
                            mac4::<M>(load(input, (iy as usize * iw + ix as usize) * ic + s), ww, &mut a);
                        } else {
                            mac4_lanes::<M>(g.zp_lanes, ww, &mut a);
                        }
                    }
                }
            }
            let o = (oy * ow + ox) * ic + s;
            for j in 0..4 {
                let y = g.rq[j].apply(a[j]).saturating_add(g.out_zp).clamp(g.lo, g.hi);
                output[o + CH[j]] = y as i8;
            }
        }
    }
}
