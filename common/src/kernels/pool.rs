//! Fast max and average pooling, four channels per 32-bit word.
//!
//! Bit-exact with [`super::reference::max_pool`] and
//! [`super::reference::avg_pool`]: the window of each output pixel is
//! clipped to the input once (padded positions take no part in the maximum
//! and are not counted in the average's divisor, as in the reference), then
//! every in-bounds position is read as whole words of four channels.
//!
//! - Max: the running maximum starts at `i8::MIN` in every byte (the
//!   reference's start) and takes the per-byte signed maximum
//!   ([`Mac::max8`]: `SSUB8` + `SEL` on ARMv7E-M) with each position's word.
//! - Average: each byte is biased to unsigned (`x ^ 0x80`, i.e. `x + 128`)
//!   and the even and odd bytes are summed in the two 16-bit halves of two
//!   words (`v & 0x00ff00ff`, `(v >> 8) & 0x00ff00ff`), which cannot carry
//!   across halves for windows of at most [`MAX_AVG_WINDOW`] positions
//!   (`257 * 255 < 2^16`). The bias is removed per channel (`- 128 * n`) and
//!   the sum divided with the reference's rounding
//!   ([`crate::quant::rounded_average`]).
//!
//! With `c >= 4` channels the words start at `0, 4, 8, ...` and, when `c` is
//! not a multiple of 4, a last word at `c - 4` overlaps the one before: the
//! overlapping channels are computed twice and written twice with the same
//! value. Fewer than 4 channels take a byte loop. Larger average windows run
//! the reference kernel.

use super::mac::Mac;
use super::reference;
use crate::model::{Pool, Shape};
use crate::quant::rounded_average;

/// Most positions per window the word-wise average pool takes.
pub const MAX_AVG_WINDOW: usize = 257;

#[inline(always)]
fn load(x: &[i8], at: usize) -> u32 {
    let b: [i8; 4] = x[at..at + 4].try_into().unwrap_or([0; 4]);
    u32::from_le_bytes(b.map(|v| v as u8))
}

#[inline(always)]
fn store(y: &mut [i8], at: usize, v: u32) {
    let b = v.to_le_bytes().map(|v| v as i8);
    y[at..at + 4].copy_from_slice(&b);
}

/// One output pixel's clipped window: output offset, input offset of the
/// first in-bounds position, rows and columns in bounds.
#[derive(Clone, Copy)]
struct Win {
    out: usize,
    base: usize,
    rows: usize,
    cols: usize,
}

/// Call `f` for every output pixel with its clipped window.
#[inline(always)]
fn windows(p: &Pool, in_shape: Shape, out_shape: Shape, mut f: impl FnMut(Win)) {
    let (ih, iw, c) = (in_shape.h as isize, in_shape.w as isize, in_shape.c as usize);
    let (kh, kw) = (p.kh as isize, p.kw as isize);
    let (sh, sw) = (p.stride_h as isize, p.stride_w as isize);
    let (pt, pl) = (p.pad.top as isize, p.pad.left as isize);
    let ow = out_shape.w as usize;
    for oy in 0..out_shape.h as usize {
        let iy0 = oy as isize * sh - pt;
        let (y0, y1) = (iy0.max(0), (iy0 + kh).min(ih));
        // A validated window has at least one in-bounds position.
        let rows = (y1 - y0).max(0) as usize;
        for ox in 0..ow {
            let ix0 = ox as isize * sw - pl;
            let (x0, x1) = (ix0.max(0), (ix0 + kw).min(iw));
            let cols = (x1 - x0).max(0) as usize;
            let base = (y0 as usize * iw as usize + x0 as usize) * c;
            f(Win { out: (oy * ow + ox) * c, base, rows, cols });
        }
    }
}

/// Word starts covering `c >= 4` channels (see the module doc).
#[inline(always)]
fn starts(c: usize) -> impl Iterator<Item = usize> {
    let whole = c / 4 * 4;
    (0..whole).step_by(4).chain(if whole < c { Some(c - 4) } else { None })
}

/// Max pooling, bit-exact with [`reference::max_pool`].
#[inline(never)]
pub fn max_pool<M: Mac>(p: &Pool, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
    let c = in_shape.c as usize;
    let rs = in_shape.w as usize * c;
    if c < 4 {
        return windows(p, in_shape, out_shape, |w| {
            for ch in 0..c {
                let mut m = i8::MIN;
                for r in 0..w.rows {
                    let row = w.base + r * rs + ch;
                    for j in 0..w.cols {
                        m = m.max(input[row + j * c]);
                    }
                }
                output[w.out + ch] = m;
            }
        });
    }
    let pad = p.pad;
    if p.kh == 2 && p.kw == 2 && pad.top == 0 && pad.left == 0 && pad.bottom == 0 && pad.right == 0 {
        return max_pool_2x2::<M>(p, in_shape, input, out_shape, output);
    }
    windows(p, in_shape, out_shape, |w| {
        let mut s = 0;
        loop {
            let mut m = 0x8080_8080u32;
            let mut row = w.base;
            for _ in 0..w.rows {
                for px in input[row..row + w.cols * c].chunks_exact(c) {
                    m = M::max8(m, load(px, s));
                }
                row += rs;
            }
            store(output, w.out + s, m);
            if s + 4 >= c {
                break;
            }
            s = (s + 4).min(c - 4);
        }
    })
}

/// Max pooling over 2 x 2 windows without padding (every window is whole),
/// `c >= 4`: the four positions' channel vectors are walked together a word
/// at a time.
fn max_pool_2x2<M: Mac>(p: &Pool, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
    let c = in_shape.c as usize;
    let rs = in_shape.w as usize * c;
    let (sh, sw) = (p.stride_h as usize, p.stride_w as usize);
    let ow = out_shape.w as usize;
    for oy in 0..out_shape.h as usize {
        for ox in 0..ow {
            let a = oy * sh * rs + ox * sw * c;
            let (x00, x01) = input[a..a + 2 * c].split_at(c);
            let (x10, x11) = input[a + rs..a + rs + 2 * c].split_at(c);
            let y = &mut output[(oy * ow + ox) * c..][..c];
            let at = |i: usize| {
                let m0 = M::max8(load(x00, i), load(x01, i));
                M::max8(m0, M::max8(load(x10, i), load(x11, i)))
            };
            if c % 4 != 0 {
                store(y, c - 4, at(c - 4));
            }
            let words = x00.chunks_exact(4).zip(x01.chunks_exact(4)).zip(x10.chunks_exact(4).zip(x11.chunks_exact(4)));
            for (o, ((w00, w01), (w10, w11))) in y.chunks_exact_mut(4).zip(words) {
                let m = M::max8(M::max8(load(w00, 0), load(w01, 0)), M::max8(load(w10, 0), load(w11, 0)));
                store(o, 0, m);
            }
        }
    }
}

/// Average pooling, bit-exact with [`reference::avg_pool`].
#[inline(never)]
pub fn avg_pool<M: Mac>(p: &Pool, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
    let c = in_shape.c as usize;
    if p.kh as usize * p.kw as usize > MAX_AVG_WINDOW {
        return reference::avg_pool(p, in_shape, input, out_shape, output);
    }
    let rs = in_shape.w as usize * c;
    if c < 4 {
        return windows(p, in_shape, out_shape, |w| {
            let n = (w.rows * w.cols).max(1) as i32;
            for ch in 0..c {
                let mut sum = 0i32;
                for r in 0..w.rows {
                    let row = w.base + r * rs + ch;
                    for j in 0..w.cols {
                        sum += input[row + j * c] as i32;
                    }
                }
                output[w.out + ch] = rounded_average(sum, n) as i8;
            }
        });
    }
    windows(p, in_shape, out_shape, |w| {
        let n = (w.rows * w.cols).max(1) as i32;
        let bias = 128 * n;
        for s in starts(c) {
            let (mut even, mut odd) = (0u32, 0u32);
            let mut row = w.base;
            for _ in 0..w.rows {
                for px in input[row..row + w.cols * c].chunks_exact(c) {
                    let v = load(px, s) ^ 0x8080_8080;
                    even += v & 0x00ff_00ff;
                    odd += (v >> 8) & 0x00ff_00ff;
                }
                row += rs;
            }
            let avg = |half: u32| rounded_average(half as i32 - bias, n) as u8 as u32;
            let v = avg(even & 0xffff) | avg(odd & 0xffff) << 8 | avg(even >> 16) << 16 | avg(odd >> 16) << 24;
            store(output, w.out + s, v);
        }
    })
}
