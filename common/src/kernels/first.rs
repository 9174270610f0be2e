//! The first convolution of image models: 1 to 3 input channels, as a
//! FIR-style filter over 16-bit lane words.
//!
//! # When it applies
//! Standard convolutions with `in_c <= 3` ([`MAX_IN_C`]), at most
//! [`super::fast::MAX_K`] weights per output, whose scratch ([`scratch`])
//! is at most [`MAX_SCRATCH`] bytes ([`applies`]). These layers have tiny
//! dot products (`K = 25` for a 5x5 kernel on one channel), so the generic
//! im2col kernel spends its time gathering, on the partial last weight word
//! and on requantising every `K` MACs; this kernel has no gather and no
//! partial words. The decision depends only on the layer and its input
//! shape, so the arena size is the same on every target.
//!
//! # What it does
//! Once per call:
//! - the input is converted to `x - zero_point` in signed 16-bit lanes, into
//!   a zero-padded copy in scratch: `hp` rows of `rw` words, row `r` holding
//!   input row `r - pad.top`, element `e` of a row being channel `e % C` of
//!   padded column `e / C` (padding and everything past the input are 0, so
//!   there are no border cases);
//! - the weights of every output channel are decoded (any bitwidth, with
//!   [`crate::pack::get`]) into lane words: per kernel row `ky`, the `L =
//!   kw * C` taps `w0..w(L-1)` of that row twice, `A = (w0,w1) (w2,w3) ..`
//!   and `B = (0,w0) (w1,w2) ..`, both [`nw`] words long, zero padded, then
//!   one word with the byte stride between padded rows (0 after the last
//!   kernel row; only the assembly loop reads it).
//!
//! In HWC order the taps of one kernel row are `L` consecutive elements of a
//! padded row, starting at element `x * sw * C` for output column `x`. An
//! output whose window starts at an even element takes its dot product with
//! the aligned words from there and `A`; one starting at an odd element
//! takes the words from the element before and `B`. Then four adjacent
//! output pixels of one output channel are computed per pass, sharing the
//! input word loads (for stride 1 and one channel, the four windows start at
//! elements 0, 1, 2, 3: words 0..nw with `A`, `B`, words 1..nw+1 with `A`,
//! `B`), with `SMLAD` (two products per instruction) through [`Mac`],
//! starting at the channel's bias, for a whole output row of one output
//! channel into a row of `i32` accumulators; then the row is requantised
//! and stored. Requantisation is [`Requant`] (prepared once per channel),
//! or, for a right shift and accumulators provably below `2^30` (every
//! practical layer), an exact shortcut with one rounding add
//! (`RightRequant`, proof at its definition).
//!
//! On the DSP set two loops are hand-scheduled (`dsp_first.rs`): the
//! row of passes for stride 1, one channel and `nw = 3` (4- and 5-wide
//! kernels; per kernel row 3 `LDM`, 12 `SMLAD` and 3 loop instructions for
//! 20 MACs), and the shortcut requantisation (`SMMULR`, 17 instructions per
//! output). Every other shape, and the portable set, runs plain Rust.
//!
//! # Scratch
//! `4 * (hp * rw + out_c * kh * (2 * nw + 1) + ow4) + 4` bytes
//! ([`scratch`]):
//! `hp = (out_h - 1) * stride_h + kh` padded rows of `rw = ((ow4 - 1) *
//! stride_w * C) / 2 + nw` words, `ow4` being the output width rounded up
//! to 4 (the last pass's extra pixels read inside the row and are not
//! stored), then the decoded weights, then one row of accumulators, plus
//! alignment slack. Capped at [`MAX_SCRATCH`]: the whole padded input is
//! converted at once (a band of `kh` rows would bound it; not done).

use super::mac::{pack_lanes, Mac};
use super::requant::Requant;
use super::{clamp_bounds, fast};
use crate::model::{Conv2d, Shape};
use crate::pack;

/// Most input channels the kernel takes.
pub const MAX_IN_C: usize = 3;

/// Most scratch bytes the kernel may ask for (larger inputs run the generic
/// kernel, which needs far less).
pub const MAX_SCRATCH: usize = 16 * 1024;

/// Output pixels per pass.
pub const PIX: usize = 4;

/// Largest [`nw`] whose taps [`fill_weights`] decodes on the stack (a
/// kernel row of up to 31 taps); wider rows decode each tap where it is used.
const MAX_NW: usize = 16;

/// Lane words per kernel row and phase for `l` taps per row: enough for the
/// `B` form, one tap later.
pub const fn nw(l: usize) -> usize {
    l / 2 + 1
}

/// The layout of the scratch for one layer.
#[derive(Debug, Clone, Copy)]
struct Geom {
    c: usize,
    kh: usize,
    /// Taps per kernel row, `kw * C`.
    l: usize,
    /// Elements between the windows of adjacent output columns, `sw * C`.
    s: usize,
    nw: usize,
    /// Words per padded row.
    rw: usize,
    /// Padded rows.
    hp: usize,
    oh: usize,
    ow: usize,
    out_c: usize,
}

impl Geom {
    fn new(l: &Conv2d<'_>, in_shape: Shape) -> Option<Self> {
        let (kh, kw) = (l.kh as usize, l.kw as usize);
        let (sh, sw) = (l.stride_h as usize, l.stride_w as usize);
        let out = |len: u16, k: usize, s: usize, a: u8, b: u8| {
            let p = len as usize + a as usize + b as usize;
            (p >= k && s > 0).then(|| (p - k) / s + 1)
        };
        let oh = out(in_shape.h, kh, sh, l.pad.top, l.pad.bottom)?;
        let ow = out(in_shape.w, kw, sw, l.pad.left, l.pad.right)?;
        let c = in_shape.c as usize;
        let (lt, s) = (kw * c, sw * c);
        let nw = nw(lt);
        let ow4 = ow.div_ceil(PIX) * PIX;
        let rw = (ow4 - 1) * s / 2 + nw;
        let hp = (oh - 1) * sh + kh;
        Some(Self { c, kh, l: lt, s, nw, rw, hp, oh, ow, out_c: l.out_c as usize })
    }

    /// Words per kernel row in the decoded weights.
    fn wrow(&self) -> usize {
        2 * self.nw + 1
    }

    fn weight_words(&self) -> usize {
        self.out_c * self.kh * self.wrow()
    }

    fn input_words(&self) -> usize {
        self.hp * self.rw
    }

    /// Passes per output row.
    fn blocks(&self) -> usize {
        self.ow.div_ceil(PIX)
    }

    /// Accumulators of one output row (whole passes).
    fn acc_words(&self) -> usize {
        self.blocks() * PIX
    }

    fn bytes(&self) -> usize {
        4 * (self.input_words() + self.weight_words() + self.acc_words()) + 4
    }
}

/// Scratch bytes [`conv2d`] needs for `l` reading `in_shape` (0 when the
/// shape has no output).
pub fn scratch(l: &Conv2d<'_>, in_shape: Shape) -> usize {
    Geom::new(l, in_shape).map_or(0, |g| g.bytes())
}

/// Whether [`conv2d`] takes `l` reading `in_shape` (it also needs
/// [`scratch`] bytes of scratch).
pub fn applies(l: &Conv2d<'_>, in_shape: Shape) -> bool {
    let c = in_shape.c as usize;
    let k = l.kh as usize * l.kw as usize * c;
    (1..=MAX_IN_C).contains(&c) && k <= fast::MAX_K && Geom::new(l, in_shape).is_some_and(|g| g.bytes() <= MAX_SCRATCH)
}

/// One output channel's decoded weights for the stride-1, one-channel,
/// `nw = 2` or `3` shapes (kernels 2-3 or 4-5 wide), checked once: `kh >=
/// 1` kernel rows of `2 * nw + 1` words (`A`, `B`, stride word), every
/// stride word but the last `4 * rw` and the last 0. The fields are
/// private, so a `Taps` always holds these invariants (the assembly passes
/// rely on them to stay in bounds).
#[derive(Debug, Clone, Copy)]
pub struct Taps<'a> {
    w: &'a [u32],
    rw: usize,
    kh: usize,
    nw: usize,
}

impl<'a> Taps<'a> {
    /// Check `w` (`kh` rows of `nw` words per phase, `nw` 2 or 3) against
    /// `rw` words per padded row.
    pub fn new(w: &'a [u32], rw: usize, kh: usize, nw: usize) -> Option<Self> {
        let row = 2 * nw + 1;
        let ok = (2..=3).contains(&nw)
            && kh >= 1
            && w.len() == kh * row
            && (4 * rw) as u64 <= u32::MAX as u64
            && w.chunks_exact(row)
                .enumerate()
                .all(|(ky, r)| r[row - 1] == if ky + 1 < kh { (4 * rw) as u32 } else { 0 });
        ok.then_some(Self { w, rw, kh, nw })
    }

    /// The words.
    pub fn words(&self) -> &'a [u32] {
        self.w
    }

    /// Words per padded input row.
    pub fn rw(&self) -> usize {
        self.rw
    }

    /// Kernel rows.
    pub fn kh(&self) -> usize {
        self.kh
    }

    /// Lane words per kernel row and phase (2 or 3).
    pub fn nw(&self) -> usize {
        self.nw
    }
}

/// One output row's passes with a hand-scheduled loop, where the kernel
/// set has one.
pub trait FirstPass: Mac {
    /// Whether [`FirstPass::row_s1`] is hand-scheduled here (then the
    /// plain-Rust constant passes for its shapes are not compiled in: they
    /// would only run if its bounds check failed, and the generic pass
    /// covers that).
    const HAS_ROW_S1: bool = false;

    /// Stride 1, one channel, `nw = taps.nw()` (2 or 3): for every pass `b` (`acc.len() /
    /// 4` of them, at least one), set `acc[4 * b + i]` to `bias` plus the dot
    /// product of window `i` starting at word `2 * b` of `x` (rows
    /// `taps.rw()` words apart) with `taps` (see the module doc), and return
    /// true; or return false (not available: the generic pass runs).
    #[inline(always)]
    fn row_s1(x: &[u32], taps: &Taps<'_>, bias: i32, acc: &mut [i32]) -> bool {
        let _ = (x, taps, bias, acc);
        false
    }

    /// Store `out[i * stride] = clamp(right_requant(accs[i]) + zp, lo, hi)`
    /// for every accumulator (all below `2^30` in magnitude; see
    /// [`RightParams`]) and return true; or return false (not available:
    /// the plain-Rust loop runs).
    #[inline(always)]
    fn store_right(accs: &[i32], out: &mut [i8], stride: usize, p: &RightParams) -> bool {
        let _ = (accs, out, stride, p);
        false
    }
}

/// A right-shift requantisation (`RightRequant`) and the output's zero
/// point and clamp, in the order the assembly store loop loads them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RightParams {
    /// Multiplier, `0..2^31`.
    pub m: i32,
    /// `2^(right - 1)`.
    pub half: i32,
    /// Right shift, `1..=31`.
    pub right: i32,
    /// Output zero point.
    pub zp: i32,
    /// Lowest output code.
    pub lo: i32,
    /// Highest output code.
    pub hi: i32,
}

impl FirstPass for super::mac::Portable {}

/// The plain-Rust pass: `acc[i] += dot(window i, kernel)` where window `i`
/// starts at word `d[i]` of `x` and takes the `A` (`p[i] = 0`) or `B`
/// (`p[i] = 1`) form of the weights.
#[inline(always)]
fn pass<M: Mac>(g: &Geom, x: &[u32], w: &[u32], d: &[usize; PIX], p: &[usize; PIX], acc: &mut [i32; PIX]) {
    let (nw, rw) = (g.nw, g.rw);
    for (ky, wk) in w.chunks_exact(g.wrow()).enumerate() {
        let xr = &x[ky * rw..];
        for i in 0..PIX {
            let (xs, ws) = (&xr[d[i]..d[i] + nw], &wk[p[i] * nw..p[i] * nw + nw]);
            let mut a = acc[i];
            for (&xv, &wv) in xs.iter().zip(ws) {
                a = M::smlad(xv, wv, a);
            }
            acc[i] = a;
        }
    }
}

/// [`pass`] for a shape known at compile time: `NW` words per kernel row and
/// phase, `S` elements between adjacent windows (`sw * C`), `KH` kernel
/// rows, `SPAN = 3 * S / 2 + NW` input words read per kernel row. The window
/// offsets and phases are then constants and every loop unrolls, so the
/// accumulators stay in registers, each input word is loaded once per
/// kernel row and the slices' lengths are known (no bounds checks inside).
/// Returns false, touching nothing, if `x` or `w` is too short (the caller
/// then runs [`pass`]).
#[inline(always)]
fn pass_const<M: Mac, const NW: usize, const S: usize, const SPAN: usize, const KH: usize>(
    rw: usize,
    x: &[u32],
    w: &[u32],
    acc: &mut [i32; PIX],
) -> bool {
    let wrow = 2 * NW + 1;
    if x.len() < (KH - 1) * rw + SPAN || w.len() < KH * wrow {
        return false;
    }
    let mut a = *acc;
    for ky in 0..KH {
        let xr = &x[ky * rw..ky * rw + SPAN];
        let wk = &w[ky * wrow..ky * wrow + 2 * NW];
        for (i, ai) in a.iter_mut().enumerate() {
            let (d, p) = (i * S / 2, i * S % 2);
            for j in 0..NW {
                *ai = M::smlad(xr[d + j], wk[p * NW + j], *ai);
            }
        }
    }
    *acc = a;
    true
}

/// One output row's passes in plain Rust: [`pass_const`] for the common
/// first convolutions (3x3 and 5x5 kernels on one channel at stride 1 or 2,
/// and on three channels at stride 1; 3x3 on three at stride 2), else the
/// generic [`pass`].
#[inline(always)]
fn row_passes<M: FirstPass>(
    g: &Geom,
    xr: &[u32],
    w: &[u32],
    bias: i32,
    d: &[usize; PIX],
    p: &[usize; PIX],
    accs: &mut [i32],
) {
    let block_words = PIX * g.s / 2;
    let rw = g.rw;
    macro_rules! each {
        ($nw:literal, $s:literal, $kh:literal) => {
            for (b, acc) in accs.chunks_exact_mut(PIX).enumerate() {
                let mut a = [bias; PIX];
                let x = &xr[b * block_words..];
                if !pass_const::<M, $nw, $s, { 3 * $s / 2 + $nw }, $kh>(rw, x, w, &mut a) {
                    pass::<M>(g, x, w, d, p, &mut a);
                }
                acc.copy_from_slice(&a);
            }
        };
    }
    match (g.nw, g.s, g.kh) {
        (2, 1, 3) if !M::HAS_ROW_S1 => each!(2, 1, 3),
        (2, 2, 3) => each!(2, 2, 3),
        (3, 1, 5) if !M::HAS_ROW_S1 => each!(3, 1, 5),
        (3, 2, 5) => each!(3, 2, 5),
        (5, 3, 3) => each!(5, 3, 3),
        (5, 6, 3) => each!(5, 6, 3),
        (8, 3, 5) => each!(8, 3, 5),
        _ => {
            for (b, acc) in accs.chunks_exact_mut(PIX).enumerate() {
                let mut a = [bias; PIX];
                pass::<M>(g, &xr[b * block_words..], w, d, p, &mut a);
                acc.copy_from_slice(&a);
            }
        }
    }
}

/// The scratch as aligned words, if it holds at least `words` of them.
fn words(scratch: &mut [i8], words: usize) -> Option<&mut [u32]> {
    let (_, mid, _) = bytemuck::pod_align_to_mut::<i8, u32>(scratch);
    mid.get_mut(..words)
}

/// Convert the input into the zero-padded 16-bit copy.
fn fill_input(g: &Geom, l: &Conv2d<'_>, in_shape: Shape, in_zp: i32, input: &[i8], buf: &mut [u32]) {
    let (ih, iw) = (in_shape.h as usize, in_shape.w as usize);
    let (pt, pl) = (l.pad.top as usize, l.pad.left as usize);
    let lanes: &mut [u16] = bytemuck::cast_slice_mut(buf);
    let row_len = 2 * g.rw;
    let start = (pl * g.c).min(row_len);
    let end = ((pl + iw) * g.c).min(row_len);
    for (r, row) in lanes.chunks_exact_mut(row_len).enumerate() {
        let iy = r.wrapping_sub(pt);
        if iy >= ih {
            row.fill(0);
            continue;
        }
        row[..start].fill(0);
        row[end..].fill(0);
        let src = &input[iy * iw * g.c..iy * iw * g.c + (end - start)];
        for (d, &v) in row[start..end].iter_mut().zip(src) {
            *d = (v as i32 - in_zp) as u16;
        }
    }
}

/// Decode every output channel's weights into the `A`/`B` lane words.
fn fill_weights(g: &Geom, l: &Conv2d<'_>, buf: &mut [u32]) {
    let bits = l.w.bits;
    let rb = pack::row_bytes(g.kh * g.l, bits);
    let (nw, wrow) = (g.nw, g.wrow());
    // Zero outside `1..=l`, which every kernel row overwrites.
    let mut taps = [0i32; 2 * MAX_NW + 1];
    for (oc, wc) in buf.chunks_exact_mut(g.kh * wrow).enumerate() {
        let row = l.w.row(oc, rb);
        for (ky, wk) in wc.chunks_exact_mut(wrow).enumerate() {
            // The row's taps decoded once, `taps[t + 1]` = tap `t`, zero
            // before the first and after the last (`2 * nw = l + 1` or `l
            // + 2`, so every index below is at most `2 * nw`).
            if nw <= MAX_NW {
                let at = ky * g.l;
                let dst = &mut taps[1..=g.l];
                match bits {
                    8 => {
                        for (v, &b) in dst.iter_mut().zip(&row[at..]) {
                            *v = b as i8 as i32;
                        }
                    }
                    4 => {
                        for (t, v) in dst.iter_mut().enumerate() {
                            let j = at + t;
                            let nib = (row[j / 2] >> (4 * (j % 2))) << 4;
                            *v = (nib as i8 >> 4) as i32;
                        }
                    }
                    _ => {
                        for (t, v) in dst.iter_mut().enumerate() {
                            *v = pack::get(row, bits, at + t) as i32;
                        }
                    }
                }
                for j in 0..nw {
                    wk[j] = pack_lanes(taps[2 * j + 1], taps[2 * j + 2]);
                    wk[nw + j] = pack_lanes(taps[2 * j], taps[2 * j + 1]);
                }
            } else {
                let tap = |t: isize| {
                    if t >= 0 && (t as usize) < g.l {
                        pack::get(row, bits, ky * g.l + t as usize) as i32
                    } else {
                        0
                    }
                };
                for j in 0..nw {
                    let t = 2 * j as isize;
                    wk[j] = pack_lanes(tap(t), tap(t + 1));
                    wk[nw + j] = pack_lanes(tap(t - 1), tap(t));
                }
            }
            wk[2 * nw] = if ky + 1 < g.kh { (4 * g.rw) as u32 } else { 0 };
        }
    }
}

/// Standard 2-D convolution with 1 to 3 input channels; the caller checks
/// [`applies`] and gives at least [`scratch`] bytes of scratch (otherwise
/// the generic kernel runs).
pub fn conv2d<M: FirstPass + super::packed::PackedOps>(
    l: &Conv2d<'_>,
    in_shape: Shape,
    in_q: crate::model::TensorQuant,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    scratch: &mut [i8],
) {
    let in_zp = in_q.zero_point;
    let geom = Geom::new(l, in_shape);
    let Some(g) = geom.filter(|g| g.oh == out_shape.h as usize && g.ow == out_shape.w as usize) else {
        return fast::conv2d::<M>(l, in_shape, in_q, input, out_shape, output, scratch);
    };
    let Some(buf) = words(scratch, g.input_words() + g.weight_words() + g.acc_words()) else {
        return fast::conv2d::<M>(l, in_shape, in_q, input, out_shape, output, scratch);
    };
    let (xbuf, rest) = buf.split_at_mut(g.input_words());
    let (wbuf, accs) = rest.split_at_mut(g.weight_words());
    fill_input(&g, l, in_shape, in_zp, input, xbuf);
    fill_weights(&g, l, wbuf);
    let (xbuf, wbuf) = (&*xbuf, &*wbuf);
    let accs: &mut [i32] = bytemuck::cast_slice_mut(accs);

    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let out_zp = l.out.zero_point;
    let sh = l.stride_h as usize;
    let mut d = [0usize; PIX];
    let mut p = [0usize; PIX];
    for i in 0..PIX {
        d[i] = i * g.s / 2;
        p[i] = i * g.s % 2;
    }
    let wch = g.kh * g.wrow();
    // The largest accumulator magnitude besides the bias.
    let sum_max = (g.kh * g.l) as i64 * 255 * 128;
    for (oc, w) in wbuf.chunks_exact(wch).enumerate() {
        let bias = l.w.bias(oc);
        let q = l.w.requant(oc);
        let rq = Requant::new(q);
        let fast_rq = (q.shift < 0 && (bias as i64).abs() + sum_max < 1 << 30).then(|| RightRequant::new(q));
        let taps = if g.s == 1 && (2..=3).contains(&g.nw) { Taps::new(w, g.rw, g.kh, g.nw) } else { None };
        for oy in 0..g.oh {
            let xr = &xbuf[oy * sh * g.rw..];
            if !taps.is_some_and(|t| M::row_s1(xr, &t, bias, accs)) {
                row_passes::<M>(&g, xr, w, bias, &d, &p, accs);
            }
            let out = &mut output[oy * g.ow * g.out_c + oc..];
            let row = Out { accs: &accs[..g.ow], zp: out_zp, lo, hi, stride: g.out_c };
            match fast_rq {
                Some(f) => {
                    let p = RightParams { m: f.m, half: f.half, right: f.right as i32, zp: out_zp, lo, hi };
                    if !M::store_right(row.accs, out, g.out_c, &p) {
                        row.store(out, |a| f.apply(a))
                    }
                }
                None => row.store(out, |a| rq.apply(a)),
            }
        }
    }
}

/// One output row's accumulators and where they go.
struct Out<'a> {
    accs: &'a [i32],
    zp: i32,
    lo: i32,
    hi: i32,
    /// Output channels (bytes between adjacent pixels).
    stride: usize,
}

impl Out<'_> {
    /// Requantise with `rq`, add the zero point, clamp and store every
    /// `stride`-th byte of `out`. Not inlined: its loop gets the registers.
    #[inline(never)]
    fn store(&self, out: &mut [i8], rq: impl Fn(i32) -> i32) {
        for (o, &a) in out.chunks_mut(self.stride).zip(self.accs) {
            o[0] = rq(a).saturating_add(self.zp).clamp(self.lo, self.hi) as i8;
        }
    }
}

/// [`Requant`] for a right shift (`shift < 0`) and accumulators below
/// `2^30` in magnitude: one rounding add instead of the mask and threshold.
///
/// With `y` the high multiply, `r = -shift`, `n = [y < 0]` and `y = q *
/// 2^r + rem` (`0 <= rem < 2^r`), the reference adds 1 to `q` iff `rem >
/// 2^(r-1) - 1 + n`; and `(y + 2^(r-1) - n) >> r` is `q + 1` iff `rem +
/// 2^(r-1) - n >= 2^r`, the same condition, else `q` (the sum is never
/// negative, as `2^(r-1) >= 1 >= n`). For `|x| < 2^30` and a multiplier
/// below `2^31`, `|y| < 2^30`, so with `2^(r-1) <= 2^30` the sum does not
/// overflow.
#[derive(Debug, Clone, Copy)]
struct RightRequant {
    m: i32,
    half: i32,
    right: u32,
}

impl RightRequant {
    fn new(q: crate::quant::QuantizedMultiplier) -> Self {
        let right = (-(q.shift as i32)).clamp(1, 31) as u32;
        Self { m: q.multiplier, half: 1 << (right - 1), right }
    }

    #[inline(always)]
    fn apply(&self, x: i32) -> i32 {
        let y = ((x as i64 * self.m as i64 + (1i64 << 30)) >> 31) as i32;
        (y + self.half - ((y as u32 >> 31) as i32)) >> self.right
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::NO_WEIGHTS;
    use crate::model::{Activation, Clamp, Padding, TensorQuant};

    fn layer(k: u8, stride: u8, pad: u8, out_c: u16) -> Conv2d<'static> {
        Conv2d {
            input: 0,
            out_c,
            kh: k,
            kw: k,
            stride_h: stride,
            stride_w: stride,
            pad: Padding::same(pad),
            act: Activation::None,
            clamp: Clamp { min: -128, max: 127 },
            out: TensorQuant { scale: 1.0, zero_point: 0, bits: 8 },
            w: NO_WEIGHTS,
        }
    }

    /// The anchor conv1 (28x28x1 -> 6, 5x5, pad 2): 32 rows of 16 words,
    /// 6 * 5 * 7 weight words and 28 accumulators.
    #[test]
    fn conv1_scratch() {
        let l = layer(5, 1, 2, 6);
        let s = Shape::new(28, 28, 1);
        assert!(applies(&l, s));
        assert_eq!(scratch(&l, s), 4 * (32 * 16 + 6 * 5 * 7 + 28) + 4);
        assert!(!applies(&l, Shape::new(28, 28, 4)));
        assert!(!applies(&l, Shape::new(224, 224, 3)));
    }
}
