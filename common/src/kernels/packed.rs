//! Packed low-bit products: four multiply-accumulates per `SMLAD` for
//! 2- or 4-bit weights with 2-, 3- or 4-bit input activations.
//!
//! Both operands are made unsigned, `a = x - act_min` (0..2^b) and
//! `u = w + h` (`h` = 2 for 2-bit weights, 8 for 4-bit), and two values
//! share each 16-bit lane, `S` bits apart: the activation lane holds
//! `a0 + a1 * 2^S`, the weight lane the reversed pair `u1 + u0 * 2^S`. A
//! lane product's field at bit `S` is then `a0 * u0 + a1 * u1`, and `SMLAD`
//! adds two lanes: four products in one instruction, accumulated in bits
//! `S..2S` of a plain `i32`. Below that field collect the cross terms, above
//! it the rest wraps harmlessly; the field is extracted (`(acc >> S) & (2^S
//! - 1)`) before it can overflow or the cross terms can carry into it:
//! every [`cap`] `SMLAD`s.
//!
//! | weight bits | input bits | `S` | lane maximum | products per field | `SMLAD`s per extraction |
//! | ---: | ---: | ---: | ---: | ---: | ---: |
//! | 2 | 2 | 13 | 3 + 3 * 2^13 = 24,579 | 4 * 3 * 3 = 36 | 227 |
//! | 2 | 3 | 12 | 7 + 7 * 2^12 = 28,679 | 4 * 7 * 3 = 84 | 48 |
//! | 2 | 4 | 11 | 15 + 15 * 2^11 = 30,735 | 4 * 15 * 3 = 180 | 11 |
//! | 4 | 2 | 11 | 15 + 15 * 2^11 = 30,735 | 4 * 3 * 15 = 180 | 11 |
//! | 4 | 3 | 11 | 15 + 15 * 2^11 = 30,735 | 4 * 7 * 15 = 420 | 4 |
//! | 4 | 4 | 11 | 15 + 15 * 2^11 = 30,735 | 4 * 15 * 15 = 900 | 2 |
//!
//! (lanes stay below 2^15, as `SMLAD`'s signed lanes need.) The true sum is
//! `sum (a - z)(u - h) = P - h * sum(a) - z * sum(w)` with `z` the input zero
//! point's unsigned code: `sum(a)` is taken once per im2col column and shared
//! by every output channel, `z * sum(w)` once per channel and call (zero for
//! inputs after a ReLU, whose zero point is the lowest code). Padded
//! positions hold `a = z` (they contribute `(z - z) * w = 0`), lanes past the
//! row's end hold `a = 0`.
//!
//! The weights are stored as packed rows ([`crate::pack`]), so the flash
//! stays at 2 or 4 bits per weight: each 2-bit byte (four weights) becomes
//! one spaced weight word through a 256-entry table per spacing, each 4-bit
//! byte (two weights) one lane through another, built at compile time. The
//! convolution spaces a block of rows once per call into the scratch (4
//! bytes per four weights, interleaved by pairs of channels, padded to a
//! whole number of word pairs), so its inner loop reads ready words; the
//! fully connected layer (2-bit weights only) uses each weight once and
//! spaces it as it reads it.
//!
//! # The columns
//! A patch is first copied into a byte buffer as unsigned codes (whole rows
//! of `kw * in_c` contiguous input bytes in the interior, four at a time;
//! `(x ^ h) & (2h - 1)` per byte makes a code unsigned without carries),
//! the zero point's code at padded positions and 0 after the last weight;
//! then each word `v` of four codes becomes the activation word `(v &
//! 0x00ff00ff) + (((v >> 8) & 0x00ff00ff) << S)`. The column's `sum(a)` comes
//! from the same words ([`PackedOps::sum_bytes`]). Output channels are
//! prepared [`BLOCK`] at a time (bias with the zero-point term folded in,
//! requantisation on the stack, spaced rows in the scratch).

use super::clamp_bounds;
use super::mac::Mac;
use super::requant::Requant;
use crate::model::{Conv2d, Dense, Shape, Weights};
use crate::quant::act_min;

/// Field spacing for `wbits` weights (2 or 4) and `in_bits` input
/// activations: the widest that keeps both operands' lanes below 2^15.
const fn spacing(wbits: u8, in_bits: u8) -> u32 {
    match (wbits, in_bits) {
        (2, 2) => 13,
        (2, 3) => 12,
        _ => 11,
    }
}

/// `SMLAD`s between extractions: the field must hold the products, and the
/// cross terms below must not carry into it (see the module doc).
pub const fn cap(wbits: u8, in_bits: u8) -> usize {
    let s = spacing(wbits, in_bits);
    let amax = (1u32 << in_bits) - 1;
    let umax = (1u32 << wbits) - 1;
    let field = ((1u32 << s) - 1) / (4 * amax * umax);
    let cross = (1u32 << s) / (2 * amax * umax);
    if field < cross {
        field as usize
    } else {
        cross as usize
    }
}

/// The weights' offset: `u = w + woff(wbits)` is unsigned.
const fn woff(wbits: u8) -> i32 {
    1 << (wbits - 1)
}

/// Unsigned weight `u = w + 2` of field `i` of byte `b`.
const fn unsigned(b: usize, i: usize) -> u32 {
    let f = ((b >> (2 * i)) & 3) as i32;
    let w = if f >= 2 { f - 4 } else { f };
    (w + 2) as u32
}

const fn lut(s: u32) -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        // Weight i of the byte is bits 2i..2i+2, two's complement.
        let lo = unsigned(b, 1) + (unsigned(b, 0) << s);
        let hi = unsigned(b, 3) + (unsigned(b, 2) << s);
        t[b] = lo | (hi << 16);
        b += 1;
    }
    t
}

/// Sum of the four unsigned weights of each byte.
const fn byte_sums() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (unsigned(b, 0) + unsigned(b, 1) + unsigned(b, 2) + unsigned(b, 3)) as u8;
        b += 1;
    }
    t
}

static LUT13: [u32; 256] = lut(13);
static LUT12: [u32; 256] = lut(12);
static LUT11: [u32; 256] = lut(11);
static USUM: [u8; 256] = byte_sums();

/// Unsigned weight `u = w + 8` of a 4-bit field.
const fn nibble_u(f: usize) -> u16 {
    ((((f as i32) << 28) >> 28) + 8) as u16
}

/// Lane of one byte of two 4-bit weights at spacing 11: `u1 + u0 * 2^11`.
const fn lut4() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = nibble_u(b >> 4) + (nibble_u(b & 15) << 11);
        b += 1;
    }
    t
}

/// Sum of the two signed 4-bit weights of each byte.
const fn nibble_sums() -> [i8; 256] {
    let mut t = [0i8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = ((((b as i32) << 28) >> 28) + (((b as i32) << 24) >> 28)) as i8;
        b += 1;
    }
    t
}

static LUT4: [u16; 256] = lut4();
static NSUM: [i8; 256] = nibble_sums();

fn spaced_table(s: u32) -> &'static [u32; 256] {
    match s {
        13 => &LUT13,
        12 => &LUT12,
        _ => &LUT11,
    }
}

/// Whether the packed convolution takes a layer with these bits.
pub fn applies(wbits: u8, in_bits: u8) -> bool {
    (wbits == 2 || wbits == 4) && (2..=4).contains(&in_bits)
}

/// Whether the packed fully connected layer takes a layer with these bits.
pub fn applies_dense(wbits: u8, in_bits: u8) -> bool {
    wbits == 2 && (2..=4).contains(&in_bits)
}

/// Word `t` of a spaced row of `wbits`-bit weights (`row`: the packed row).
#[inline(always)]
fn spaced_word(row: &[u8], wbits: u8, t: usize, lut: &[u32; 256]) -> u32 {
    if wbits == 2 {
        lut[row[t] as usize]
    } else {
        // Past the row's last byte: lane 0, whose column lanes are zero.
        let lane = |i: usize| row.get(i).map_or(0, |&b| LUT4[b as usize] as u32);
        lane(2 * t) | (lane(2 * t + 1) << 16)
    }
}

/// Output channels prepared at once.
pub const BLOCK: usize = 32;

/// Output channels a convolution with `out_c` outputs prepares at once:
/// [`BLOCK`], or all of them rounded up to a pair.
const fn block(out_c: usize) -> usize {
    let even = out_c.div_ceil(2) * 2;
    if even < BLOCK {
        even
    } else {
        BLOCK
    }
}

/// Scratch bytes [`conv2d`] needs for `k` weights per output and `out_c`
/// outputs: two interleaved columns, the raw patch, and one block of
/// prepared (spaced) weight words, plus alignment slack.
pub const fn conv2d_scratch(k: usize, out_c: usize) -> usize {
    let nw = k.div_ceil(4);
    let np = nw.div_ceil(2) * 2;
    4 * (2 * np + nw + 1 + block(out_c) * np) + 4
}

/// The operations the packed path adds to [`Mac`], with a plain-Rust
/// default; a backend overrides what it has instructions for.
pub trait PackedOps: Mac {
    /// `acc + b0 + b1 + b2 + b3` for the bytes of `v`, when those four sum
    /// to at most 255 (the packed path's unsigned codes are at most 15).
    #[inline(always)]
    fn sum_bytes(v: u32, acc: u32) -> u32 {
        acc.wrapping_add(v.wrapping_mul(0x0101_0101) >> 24)
    }

    /// An optional hand-scheduled loop: set `out` to the packed sums
    /// `[r0.c0, r0.c1, r1.c0, r1.c1]` over `n` weight words of each of two
    /// rows, interleaved (`w[2t]` row 0, `w[2t + 1]` row 1, already spaced)
    /// and `2 * n` interleaved column words, extracted as `k` says; returns
    /// false (nothing done) where the backend has none or where it needs
    /// `n` even and it is not (the convolution passes whole pairs).
    #[inline(always)]
    fn dot2x2(w: &[u32], n: usize, cols: &[u32], k: &Extract, out: &mut [i32; 4]) -> bool {
        let _ = (w, n, cols, k, out);
        false
    }

    /// An optional hand-scheduled loop: set `out[i]` to the packed sum of
    /// `rows[i]` (all the same length, each byte spaced through `k.lut`)
    /// with column word `col[t]` for byte `t`, extracted as `k` says;
    /// returns false (nothing done) where the backend has none.
    #[inline(always)]
    fn dot4x1(rows: [&[u8]; 4], col: &[u32], k: &Extract, out: &mut [i32; 4]) -> bool {
        let _ = (rows, col, k, out);
        false
    }

    /// An optional store loop: `out[i] = clamp(q[i].apply(acc[i]) +
    /// c.zp, c.lo, c.hi)` for `i < acc.len()` (`out` and `q` at least as
    /// long), every accumulator below `2^30` in magnitude (the condition
    /// [`ShortRq::apply`] is exact under); returns false (nothing done)
    /// where the backend has none.
    #[inline(always)]
    fn store_short(acc: &[i32], out: &mut [i8], q: &[ShortRq], c: &OutClamp) -> bool {
        let _ = (acc, out, q, c);
        false
    }
}

/// A requantisation for accumulators whose shifted value stays below `2^30`
/// in magnitude, in the order the store loops load it: `x = acc << (pre -
/// 1)`, `y = (2x * m + 2^31) >> 32` (`SMMULR` of `acc << pre`; exactly the
/// reference's `(x * m + 2^30) >> 31`, as `2x` does not overflow), then `(y
/// + half - [y < 0]) >> right`.
/// - A right shift (`shift < 0`): `pre = 1`, `half = 2^(right-1)`: exactly
///   the reference's rounding divide (proof in [`super::first`]'s
///   `RightRequant`, which this is).
/// - No right shift (`shift = left >= 0`): `pre = left + 1`, `half = 0`,
///   `right = 0`: the reference's `y`, except `y - 1` for `y < 0`. Used only
///   where the clamp's lowest code is at least the zero point (a ReLU),
///   where every `y < 0` clamps to the lowest code either way.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShortRq {
    /// Multiplier, `0..2^31`.
    pub m: i32,
    /// Rounding addend.
    pub half: i32,
    /// Right shift, `0..=31`.
    pub right: i32,
    /// Left shift of the accumulator, `1..=31`.
    pub pre: i32,
}

impl ShortRq {
    /// `q` as a short requantisation, if every accumulator is at most
    /// `bound` in magnitude with `bound * 2^left < 2^30`; a shift `>= 0`
    /// only where `relu` (the clamp's lowest code is at least the zero
    /// point).
    pub fn new(q: crate::quant::QuantizedMultiplier, bound: i64, relu: bool) -> Option<Self> {
        let shift = q.shift as i32;
        if q.multiplier < 0 || bound < 0 {
            return None;
        }
        if shift < 0 {
            let right = -shift;
            (right <= 31 && bound < 1 << 30).then(|| Self { m: q.multiplier, half: 1 << (right - 1), right, pre: 1 })
        } else {
            (relu && shift <= 30 && bound < (1i64 << 30) >> shift).then(|| Self {
                m: q.multiplier,
                half: 0,
                right: 0,
                pre: shift + 1,
            })
        }
    }

    /// The requantised value of `acc` (see the type's doc for when it is
    /// exact).
    #[inline(always)]
    pub fn apply(&self, acc: i32) -> i32 {
        let x = (acc as i64) << (self.pre - 1);
        let y = ((x * self.m as i64 + (1i64 << 30)) >> 31) as i32;
        (y + self.half - ((y as u32 >> 31) as i32)) >> self.right
    }
}

/// An output's zero point and clamp, in the order the store loops load them.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutClamp {
    /// Output zero point.
    pub zp: i32,
    /// Lowest output code.
    pub lo: i32,
    /// Highest output code.
    pub hi: i32,
}

/// How packed sums are extracted: the spacing table, and every `cap` bytes
/// `(acc >> s) & mask` added to the total.
#[derive(Clone, Copy)]
pub struct Extract {
    /// Byte of four weights to spaced weight word.
    pub lut: &'static [u32; 256],
    /// Bytes between extractions.
    pub cap: usize,
    /// Field position.
    pub s: u32,
    /// Field mask, `2^s - 1`.
    pub mask: u32,
}

impl Extract {
    /// The field of a raw accumulator.
    #[inline(always)]
    fn field(&self, acc: i32) -> i32 {
        (acc >> self.s) & self.mask as i32
    }
}

impl PackedOps for super::mac::Portable {}

/// The input's codes and spacing for one call.
struct Codes {
    ex: Extract,
    /// Unsigned code of the zero point.
    zu: i32,
    flip: u32,
    mask: u32,
}

impl Codes {
    fn new(wbits: u8, in_bits: u8, in_zp: i32) -> Self {
        let h = -act_min(in_bits);
        let s = spacing(wbits, in_bits);
        Self {
            ex: Extract { lut: spaced_table(s), cap: cap(wbits, in_bits), s, mask: (1 << s) - 1 },
            zu: in_zp + h,
            flip: h as u32 * 0x0101_0101,
            mask: (2 * h - 1) as u32 * 0x0101_0101,
        }
    }

    /// The activation word of four unsigned codes (code `i` in byte `i`).
    #[inline(always)]
    fn aword(&self, v: u32) -> u32 {
        (v & 0x00ff_00ff) + (((v >> 8) & 0x00ff_00ff) << self.ex.s)
    }

    /// Spread unsigned codes (`n` words of four) into activation words
    /// `cols[2t + Q]`; returns the sum of the codes.
    #[inline(always)]
    fn spread<M: PackedOps, const Q: usize>(&self, raw: &[u32], cols: &mut [u32]) -> i32 {
        let mut sum = 0u32;
        for (c, &w) in cols.chunks_exact_mut(2).zip(raw) {
            // Little-endian bytes: byte i of the word is code 4t + i.
            let v = u32::from_le(w);
            sum = M::sum_bytes(v, sum);
            c[Q] = self.aword(v);
        }
        sum as i32
    }
}

/// One output channel, prepared: bias with `-z * sum(w)` folded in, and
/// the requantisation.
#[derive(Clone, Copy)]
struct Chan {
    bias: i32,
    rq: Requant,
}

impl Chan {
    /// Channel `c`, whose packed row is `rb` bytes.
    fn new(w: &Weights<'_>, c: usize, rb: usize, zu: i32) -> Self {
        let mut bias = w.bias(c);
        if zu != 0 {
            // Unused fields of the last byte hold w = 0.
            let row = w.row(c, rb);
            let sw: i32 = if w.bits == 2 {
                row.iter().map(|&b| USUM[b as usize] as i32).sum::<i32>() - 8 * rb as i32
            } else {
                row.iter().map(|&b| NSUM[b as usize] as i32).sum()
            };
            bias = bias.wrapping_sub(zu.wrapping_mul(sw));
        }
        Self { bias, rq: Requant::new(w.requant(c)) }
    }

    /// Channel `c`'s short requantisation ([`ShortRq::new`]; `relu`: the
    /// clamp's lowest code is at least the zero point), with the bound
    /// `|bias + sum (a - z) w| <= |bias| + k * 2^in_bits * 2^(wbits - 1)`
    /// for `k` products of `in_bits`-bit inputs.
    fn short(&self, w: &Weights<'_>, c: usize, k: usize, in_bits: u8, relu: bool) -> Option<ShortRq> {
        let bound = (self.bias as i64).abs() + ((k as i64) << (in_bits + w.bits - 1));
        ShortRq::new(w.requant(c), bound, relu)
    }

    #[inline(always)]
    fn finish(&self, part: i32, zp: i32, lo: i32, hi: i32) -> i8 {
        self.rq.apply(self.bias.wrapping_add(part)).saturating_add(zp).clamp(lo, hi) as i8
    }
}

/// Packed sums `P = sum a * u` of two prepared rows (`w`: `2 * nw`
/// interleaved spaced words) with the two interleaved columns, extracted
/// every `cap` words.
#[inline(always)]
fn dot2x2<M: PackedOps>(w: &[u32], nw: usize, cols: &[u32], c: &Codes) -> [i32; 4] {
    let ex = &c.ex;
    let mut total = [0i32; 4];
    if M::dot2x2(w, nw, cols, ex, &mut total) {
        return total;
    }
    for (ww, x) in w[..2 * nw].chunks(2 * ex.cap).zip(cols[..2 * nw].chunks(2 * ex.cap)) {
        let mut a = [0i32; 4];
        for (wp, xx) in ww.chunks_exact(2).zip(x.chunks_exact(2)) {
            a[0] = M::smlad(wp[0], xx[0], a[0]);
            a[1] = M::smlad(wp[0], xx[1], a[1]);
            a[2] = M::smlad(wp[1], xx[0], a[2]);
            a[3] = M::smlad(wp[1], xx[1], a[3]);
        }
        for (t, v) in total.iter_mut().zip(a) {
            *t += ex.field(v);
        }
    }
    total
}

/// Packed sums of four rows (`nw` bytes each) with one column.
#[inline(always)]
fn dot4x1<M: PackedOps>(rows: [&[u8]; 4], col: &[u32], c: &Codes) -> [i32; 4] {
    let ex = &c.ex;
    let mut total = [0i32; 4];
    let nw = rows[0].len();
    if M::dot4x1(rows, &col[..nw], ex, &mut total) {
        return total;
    }
    let mut at = 0;
    while at < nw {
        let n = ex.cap.min(nw - at);
        let mut a = [0i32; 4];
        for (t, &xx) in col[at..at + n].iter().enumerate() {
            for (ai, ri) in a.iter_mut().zip(&rows) {
                *ai = M::smlad(ex.lut[ri[at + t] as usize], xx, *ai);
            }
        }
        for (t, v) in total.iter_mut().zip(a) {
            *t += ex.field(v);
        }
        at += n;
    }
    total
}

/// Copy `src` into the start of `dst` as unsigned codes (`(x ^ flip) &
/// mask` per byte), four bytes at a time: whole words, so up to three bytes
/// past `src.len()` of both may be read and written (the caller sizes both
/// for that and overwrites what follows).
#[inline(always)]
fn copy_words(dst: &mut [u8], src: &[u8], c: &Codes) {
    for (d, s) in dst.chunks_exact_mut(4).zip(src.chunks_exact(4)) {
        let v = (u32::from_le_bytes([s[0], s[1], s[2], s[3]]) ^ c.flip) & c.mask;
        d.copy_from_slice(&v.to_le_bytes());
    }
}

/// Copy `src` into `dst` (the same length) as unsigned codes.
#[inline(always)]
fn copy_bytes(dst: &mut [u8], src: &[u8], c: &Codes) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = (s ^ c.flip as u8) & c.mask as u8;
    }
}

/// Convolution geometry.
struct Geom {
    ih: isize,
    iw: isize,
    ic: usize,
    kh: usize,
    kw: usize,
}

impl Geom {
    /// The unsigned codes of the patch whose top left input is `(iy0, ix0)`,
    /// in weight order, into `raw[..k]`; padded positions get `pad`. `raw`
    /// holds at least `k + 3` bytes; what follows `raw[k]` is left undefined.
    #[inline(always)]
    fn patch(&self, input: &[u8], iy0: isize, ix0: isize, raw: &mut [u8], pad: u8, c: &Codes) {
        let (iw, ic) = (self.iw, self.ic);
        let row = self.kw * ic;
        let words = row.div_ceil(4) * 4;
        let interior = iy0 >= 0 && ix0 >= 0 && iy0 + self.kh as isize <= self.ih && ix0 + self.kw as isize <= iw;
        for ky in 0..self.kh {
            let iy = iy0 + ky as isize;
            let dst = &mut raw[ky * row..];
            if interior {
                let at = (iy * iw + ix0) as usize * ic;
                match input.get(at..at + words) {
                    // Whole words; the next row (or the tail) overwrites the overrun.
                    Some(src) => copy_words(&mut dst[..words], src, c),
                    None => copy_bytes(&mut dst[..row], &input[at..at + row], c),
                }
            } else if iy < 0 || iy >= self.ih {
                dst[..row].fill(pad);
            } else {
                for (kx, d) in dst[..row].chunks_exact_mut(ic).enumerate() {
                    let ix = ix0 + kx as isize;
                    if ix < 0 || ix >= iw {
                        d.fill(pad);
                    } else {
                        let at = (iy * iw + ix) as usize * ic;
                        copy_bytes(d, &input[at..at + ic], c);
                    }
                }
            }
        }
    }
}

/// Standard convolution by packed products; false (nothing written) when
/// the layer is not one it takes or the scratch is short.
#[allow(clippy::too_many_arguments)]
pub fn conv2d<M: PackedOps>(
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
    let g = Geom {
        ih: in_shape.h as isize,
        iw: in_shape.w as isize,
        ic: in_shape.c as usize,
        kh: l.kh as usize,
        kw: l.kw as usize,
    };
    let k = g.kh * g.kw * g.ic;
    let nw = k.div_ceil(4);
    let rb = crate::pack::row_bytes(k, l.w.bits);
    // Words per row in the loops: a whole number of pairs (the pad word of
    // an odd row is zero in both the weights and the columns: no product).
    let np = nw.div_ceil(2) * 2;
    let (oh, ow, oc_n) = (out_shape.h as usize, out_shape.w as usize, out_shape.c as usize);
    let Some(room) = scratch.len().checked_sub(2 * np + nw + 1) else {
        return false;
    };
    // Channels per block: as many pairs of prepared rows as fit.
    let nb = block(oc_n).min(room / (2 * np) * 2);
    if nb < 2 {
        return false;
    }
    let (cols, rest) = scratch.split_at_mut(2 * np);
    cols[2 * nw..].fill(0);
    let (raw, rest) = rest.split_at_mut(nw + 1);
    let prep = &mut rest[..nb * np];
    let input: &[u8] = bytemuck::cast_slice(input);
    let codes = Codes::new(l.w.bits, in_bits, in_zp);
    let (pad, h) = (codes.zu as u8, woff(l.w.bits));
    let (sh, sw) = (l.stride_h as isize, l.stride_w as isize);
    let (pt, pl) = (l.pad.top as isize, l.pad.left as isize);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let out_zp = l.out.zero_point;
    let npix = oh * ow;
    // Column `Q` of pixel `pix`; returns sum(a) over its lanes.
    let fill = |raw: &mut [u32], cols: &mut [u32], q: usize, pix: usize| -> i32 {
        let (oy, ox) = ((pix / ow) as isize, (pix % ow) as isize);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut *raw);
        g.patch(input, oy * sh - pt, ox * sw - pl, bytes, pad, &codes);
        for b in &mut bytes[k..4 * nw] {
            *b = 0;
        }
        let raw = &raw[..nw];
        if q == 0 {
            codes.spread::<M, 0>(raw, cols)
        } else {
            codes.spread::<M, 1>(raw, cols)
        }
    };
    let mut chans = [Chan { bias: 0, rq: Requant::new(l.w.requant(0)) }; BLOCK];
    let mut shorts = [ShortRq::default(); BLOCK];
    let clamp = OutClamp { zp: out_zp, lo, hi };
    // One pixel pair's accumulators (bias included) for the short store.
    let mut acc = [[0i32; BLOCK]; 2];
    for c0 in (0..oc_n).step_by(nb) {
        let c1 = (c0 + nb).min(oc_n);
        let n = c1 - c0;
        let mut short = true;
        for (i, (ch, sq)) in chans.iter_mut().zip(shorts.iter_mut()).take(n).enumerate() {
            *ch = Chan::new(&l.w, c0 + i, rb, codes.zu);
            match ch.short(&l.w, c0 + i, k, in_bits, lo >= out_zp) {
                Some(q) => *sq = q,
                None => short = false,
            }
        }
        // Rows spaced once per call, interleaved by pairs (the odd last
        // channel paired with itself).
        for (i, pair) in prep.chunks_exact_mut(2 * np).take((c1 - c0).div_ceil(2)).enumerate() {
            let ca = c0 + 2 * i;
            let rows = [l.w.row(ca, rb), l.w.row((ca + 1).min(c1 - 1), rb)];
            for (t, wp) in pair[..2 * nw].chunks_exact_mut(2).enumerate() {
                wp[0] = spaced_word(rows[0], l.w.bits, t, codes.ex.lut);
                wp[1] = spaced_word(rows[1], l.w.bits, t, codes.ex.lut);
            }
            pair[2 * nw..].fill(0);
        }
        let mut pix = 0;
        while pix < npix {
            let pair = pix + 1 < npix;
            let s0 = h * fill(raw, cols, 0, pix);
            let s1 = h * fill(raw, cols, 1, if pair { pix + 1 } else { pix });
            let (out0, out1) = output[pix * oc_n..].split_at_mut(oc_n);
            // Collect the pixel pair's accumulators, then store each pixel.
            let mut oc = c0;
            while oc < c1 {
                let oc1 = if oc + 1 < c1 { oc + 1 } else { oc };
                let at = (oc - c0) * np;
                let p = dot2x2::<M>(&prep[at..at + 2 * np], np, cols, &codes);
                let (b0, b1) = (chans[oc - c0].bias, chans[oc1 - c0].bias);
                // For the odd last channel (paired with itself) the second
                // pair of sums equals the first.
                acc[0][oc - c0] = b0.wrapping_add(p[0] - s0);
                acc[1][oc - c0] = b0.wrapping_add(p[1] - s1);
                acc[0][oc1 - c0] = b1.wrapping_add(p[2] - s0);
                acc[1][oc1 - c0] = b1.wrapping_add(p[3] - s1);
                oc += 2;
            }
            let store = |a: &[i32], out: &mut [i8]| {
                if short {
                    store_short::<M>(a, out, &shorts[..n], &clamp);
                } else {
                    for ((o, &a), ch) in out.iter_mut().zip(a).zip(&chans) {
                        *o = ch.rq.apply(a).saturating_add(out_zp).clamp(lo, hi) as i8;
                    }
                }
            };
            store(&acc[0][..n], &mut out0[c0..c1]);
            if pair {
                store(&acc[1][..n], &mut out1[c0..c1]);
            }
            pix += 2;
        }
    }
    true
}

/// `out[i] = clamp(q[i].apply(acc[i]) + zp, lo, hi)`: the backend's store
/// loop where it has one, else plain Rust (the same arithmetic).
#[inline(always)]
pub(super) fn store_short<M: PackedOps>(acc: &[i32], out: &mut [i8], q: &[ShortRq], c: &OutClamp) {
    if !M::store_short(acc, out, q, c) {
        for ((o, &a), q) in out.iter_mut().zip(acc).zip(q) {
            *o = (q.apply(a) + c.zp).clamp(c.lo, c.hi) as i8;
        }
    }
}

/// Fully connected layer by packed products; false (nothing written) when
/// it is not one the path takes or the scratch is short. Only for inputs
/// whose zero point is their lowest code (after a ReLU): otherwise every
/// row's weight sum is needed, and that pass makes this slower than
/// [`super::fast`]'s 2-bit loop (measured: 2.54 against 1.62 instructions
/// per MAC on `dense 400 -> 120` with a mid-range zero point).
pub fn dense<M: PackedOps>(
    l: &Dense<'_>,
    in_bits: u8,
    in_zp: i32,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [u32],
) -> bool {
    if !applies_dense(l.w.bits, in_bits) {
        return false;
    }
    let k = input.len();
    let nw = k.div_ceil(4);
    if scratch.len() < nw {
        return false;
    }
    let n = (l.out_features as usize).min(output.len());
    let codes = Codes::new(l.w.bits, in_bits, in_zp);
    if codes.zu != 0 {
        return false;
    }
    // The raw codes, then spread in place (word t is read before it is written).
    let col = &mut scratch[..nw];
    {
        let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut *col);
        copy_bytes(&mut raw[..k], bytemuck::cast_slice(input), &codes);
        for b in &mut raw[k..] {
            *b = 0;
        }
    }
    let mut sa = 0u32;
    for w in col.iter_mut() {
        let v = u32::from_le(*w);
        sa = M::sum_bytes(v, sa);
        *w = codes.aword(v);
    }
    let sa = 2 * sa as i32;
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let out_zp = l.out.zero_point;
    let mut o = 0;
    while o < n {
        let idx = [o, (o + 1).min(n - 1), (o + 2).min(n - 1), (o + 3).min(n - 1)];
        let p = dot4x1::<M>(idx.map(|c| l.w.row(c, nw)), col, &codes);
        for i in 0..4.min(n - o) {
            output[o + i] = Chan::new(&l.w, o + i, nw, codes.zu).finish(p[i] - sa, out_zp, lo, hi);
        }
        o += 4;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_match_the_table() {
        assert_eq!([cap(2, 2), cap(2, 3), cap(2, 4)], [227, 48, 11]);
        assert_eq!([cap(4, 2), cap(4, 3), cap(4, 4)], [11, 4, 2]);
    }

    /// Brute force: the worst case of every lane stays exact for `cap` SMLADs.
    #[test]
    fn worst_case_stays_exact() {
        use super::super::mac::{Mac, Portable};
        for (wbits, umax) in [(2u8, 3u32), (4, 15)] {
            for bits in 2..=4u8 {
                let s = spacing(wbits, bits);
                let amax = (1u32 << bits) - 1;
                let x = (amax + (amax << s)) * 0x0001_0001;
                // Every weight at its maximum, u = umax.
                let w = if wbits == 2 { lut(s)[0b0101_0101] } else { LUT4[0x77] as u32 * 0x0001_0001 };
                assert!(x & 0x8000_8000 == 0 && w & 0x8000_8000 == 0, "lanes below 2^15");
                let mut acc = 0;
                for n in 1..=cap(wbits, bits) {
                    acc = Portable::smlad(w, x, acc);
                    let want = (n as u32 * 4 * amax * umax) as i32;
                    assert_eq!((acc >> s) & ((1 << s) - 1), want, "w{wbits} a{bits} n {n}");
                }
            }
        }
    }
}
