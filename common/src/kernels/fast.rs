//! The fast kernels: one body of code generic over [`Mac`], run with
//! [`super::dsp::Dsp`] on Cortex-M4/M7 and [`super::mac::Portable`]
//! elsewhere. Bit-exact with [`super::reference`]: the same accumulator
//! (integer sums do not depend on order) and the same requantisation
//! ([`super::requant`] proves its shortcut).
//!
//! # Convolution and dense: im2col into lane words, blocked dot products
//! For each pair of output pixels the input patch is gathered into two
//! columns of signed 16-bit lanes holding `x - zero_point` (the input offset
//! is folded in here, once per element, shared by every output channel; a
//! padded position holds 0). Then every pair of output channels takes its
//! dot products with both columns at once (2 x 2 blocking: each decoded
//! weight lane word and each column word is used twice), with `SMLAD`:
//! two products per instruction. Dense layers convert the input vector once
//! and take four rows at a time (the backend's loop, if any, two rows at a
//! time with the column words loaded four at a time).
//!
//! On Cortex-M4/M7 the whole groups of 8-, 4- and 2-bit weights run
//! hand-scheduled loops ([`Mac::dot2x2_w8`], [`Mac::dot2x2_w4`],
//! [`Mac::dot2x2_w2`], [`Mac::dot2x1`]); the code here does the rest (a
//! row's last group, odd widths) and is the portable implementation.
//!
//! # Weights are read as stored
//! Rows are [`crate::pack`]'s bit streams, read a group at a time and
//! decoded into lane words in registers:
//! - 8 bits: two words of four weights, split with `SXTB16` and
//!   `SXTB16 ROR 8` into lanes (w0,w2) (w1,w3) (w4,w6) (w5,w7);
//! - 4 bits: one word of eight weights; `(v << s) & 0xf000f000` for
//!   `s` = 12, 4, 8, 0 puts a nibble at the top of each 16-bit lane, so the
//!   lane *is* 4096 times the weight, one `AND` (with shifted operand) per
//!   lane word, no sign extension: (w0,w4) (w2,w6) (w1,w5) (w3,w7);
//! - 2 bits: one word of sixteen weights, `(v << s) & 0xc000c000`, 16384
//!   times the weight;
//! - 3, 5, 6, 7 bits: widened once per call into the scratch to the
//!   nearest even form ([`nearest`]: 3 to 4, the others to 8; a
//!   convolution's whole weights when they take at most [`WIDEN_MAX`]
//!   bytes widened, a fully connected layer's four rows at a time), then run
//!   as those; otherwise eight weights from `bits` bytes, each sign-extended
//!   from its bit field, lanes (w0,w1) (w2,w3) ...
//!
//! The column is written in the matching lane order, so the decode needs no
//! shuffles. The scaled sums (x4096, x16384) are shifted back exactly (every
//! term is a multiple of the scale). A scaled lane reaches 2^15 and a
//! product `255 * 2^15`, so the scaled sum is taken over chunks of at most
//! [`CHUNK`] weights (256 such products fit in `i32`) and each chunk is
//! shifted back before the next is added. A row's last,
//! partial group is read byte by byte into a zero-padded group: the stream's
//! unused bits are zero and so are the column's padded lanes.
//!
//! # Limits
//! Layers with more than [`MAX_K`] weights per output (where the scaled sum
//! could overflow `i32`), or given too little scratch, run the reference
//! kernel instead. [`depthwise_conv2d`] here is a direct loop per channel
//! with weights decoded once, the fallback of [`super::depthwise`] (fewer
//! than 4 channels, windows over [`super::depthwise::MAX_TAPS`]); pooling
//! runs [`super::pool`], add the reference kernel.

use super::gather::Gather;
use super::mac::{pack_lanes, Mac};
use super::packed::{OutClamp, ShortRq};
use super::requant::Requant;
use super::{clamp_bounds, packed, reference};
use crate::model::{Conv2d, Dense, Shape, TensorQuant, Weights};
use crate::pack;

/// Columns are padded to a multiple of this many lanes (the largest group).
pub const COL_ALIGN: usize = 16;

/// Most weights per output the blocked kernels take: `MAX_K * 255 * 128`
/// (the largest scaled sum) fits in `i32`.
pub const MAX_K: usize = (i32::MAX as u32 / (255 * 128)) as usize;

/// Most weights per scaled (4- and 2-bit) partial sum: `CHUNK * 255 * 2^15`
/// fits in `i32`.
pub const CHUNK: usize = 256;

/// Longest depthwise window the fast depthwise kernel takes.
pub const MAX_DW_WINDOW: usize = 64;

fn padded(k: usize) -> usize {
    k.div_ceil(COL_ALIGN) * COL_ALIGN
}

/// Scratch bytes [`conv2d`] needs for `k` weights per output: two columns
/// of 16-bit lanes and a gather table of `u32` offsets, plus alignment slack.
pub const fn conv2d_scratch(k: usize) -> usize {
    let kp = k.div_ceil(COL_ALIGN) * COL_ALIGN;
    2 * 2 * kp + 4 * kp + 4
}

/// Scratch bytes [`dense`] needs for `k` inputs: one column.
pub const fn dense_scratch(k: usize) -> usize {
    2 * k.div_ceil(COL_ALIGN) * COL_ALIGN + 4
}

/// Weights per group.
const fn group_weights(bits: u8) -> usize {
    if bits == 2 {
        16
    } else {
        8
    }
}

/// Bytes per group.
const fn group_bytes(bits: u8) -> usize {
    match bits {
        2 | 4 => 4,
        8 => 8,
        b => b as usize,
    }
}

/// Lane words per group.
const fn group_lanes(bits: u8) -> usize {
    group_weights(bits) / 2
}

/// Exact right shift undoing the decode's scale.
const fn scale_shift(bits: u8) -> u32 {
    match bits {
        2 => 14,
        4 => 12,
        _ => 0,
    }
}

/// Lane (16-bit position in the group's column words) of weight `r` of a group.
const fn slot(bits: u8, r: usize) -> usize {
    match bits {
        8 => {
            let (q, rr) = (r / 4, r % 4);
            2 * (2 * q + rr % 2) + rr / 2
        }
        2 | 4 => {
            let n = 8 / bits as usize;
            let (b, s) = (r / n, r % n);
            2 * (2 * s + b % 2) + b / 2
        }
        _ => r,
    }
}

#[inline(always)]
fn word(g: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([g[at], g[at + 1], g[at + 2], g[at + 3]])
}

/// Left shifts putting the weights of lane words 0..4 of a 4-bit group at the
/// top of their 16-bit lanes: lane word `i` holds weights `slot^-1`.
const W4_SHIFTS: [u32; 4] = [12, 4, 8, 0];

/// The same for the eight lane words of a 2-bit group.
const W2_SHIFTS: [u32; 8] = [14, 6, 12, 4, 10, 2, 8, 0];

/// Decode one group (`group_bytes(BITS)` bytes; for the odd widths `BITS` is
/// 0 and `bits` the width) into lane words.
#[inline(always)]
fn decode<M: Mac, const BITS: u8>(g: &[u8], bits: u8) -> [u32; 8] {
    let mut l = [0u32; 8];
    match BITS {
        8 => {
            let (v0, v1) = (word(g, 0), word(g, 4));
            l[0] = M::sxtb16(v0);
            l[1] = M::sxtb16_ror8(v0);
            l[2] = M::sxtb16(v1);
            l[3] = M::sxtb16_ror8(v1);
        }
        4 => {
            let v = word(g, 0);
            for (lane, s) in l.iter_mut().zip(W4_SHIFTS) {
                *lane = (v << s) & 0xf000_f000;
            }
        }
        2 => {
            let v = word(g, 0);
            for (lane, s) in l.iter_mut().zip(W2_SHIFTS) {
                *lane = (v << s) & 0xc000_c000;
            }
        }
        _ => {
            let mut v = 0u64;
            for (i, &b) in g.iter().enumerate().take(bits as usize) {
                v |= (b as u64) << (8 * i);
            }
            let field = |i: usize| {
                let f = (v >> (i * bits as usize)) as u32;
                ((f << (32 - bits as u32)) as i32) >> (32 - bits as u32)
            };
            for (j, lane) in l.iter_mut().enumerate().take(4) {
                *lane = pack_lanes(field(2 * j), field(2 * j + 1));
            }
        }
    }
    l
}

/// The form that runs `bits`-bit weights when the scratch has room for
/// them widened: their own for 2, 4 and 8; the next wider one for the
/// others (3 to 4, 5, 6 and 7 to 8).
pub const fn nearest(bits: u8) -> u8 {
    match bits {
        2 | 4 | 8 => bits,
        3 => 4,
        _ => 8,
    }
}

/// Most bytes of widened weights a convolution keeps in its scratch; a
/// larger odd-width layer runs the odd-width form, decoding as it goes.
pub const WIDEN_MAX: usize = 16 * 1024;

/// Rows a fully connected layer widens at a time.
const WIDEN_ROWS: usize = 4;

/// Scratch bytes for the widened weights of an odd-width layer with `rows`
/// rows of `k` weights (0 for 2, 4 and 8 bits, or when over the limit); a
/// convolution widens every row, a fully connected layer four at a time.
pub const fn widen_scratch(bits: u8, k: usize, rows: usize, conv: bool) -> usize {
    if form(bits) != 0 {
        return 0;
    }
    let rb = pack::row_bytes(k, nearest(bits));
    let n = if conv { rows * rb } else { WIDEN_ROWS * rb };
    if n > WIDEN_MAX {
        0
    } else {
        n.div_ceil(4) * 4
    }
}

/// Write rows `r0..r1` of `w` (odd width) at `to` bits (4 or 8, packed as
/// [`crate::pack`] says) into `dst`, one after another.
#[inline(never)]
fn widen_rows(w: &Weights<'_>, r0: usize, r1: usize, k: usize, to: u8, dst: &mut [u8]) {
    let (rb, rt) = (pack::row_bytes(k, w.bits), pack::row_bytes(k, to));
    for (r, d) in (r0..r1).zip(dst.chunks_exact_mut(rt)) {
        let row = w.row(r, rb);
        match w.bits {
            3 => widen_row::<3>(row, k, to, d),
            5 => widen_row::<5>(row, k, to, d),
            6 => widen_row::<6>(row, k, to, d),
            _ => widen_row::<7>(row, k, to, d),
        }
    }
}

/// Field `i` of a group of eight `B`-bit weights, sign-extended.
#[inline(always)]
fn field<const B: usize>(v: u64, i: usize) -> u8 {
    ((((v >> (B * i)) as u32) << (32 - B)) as i32 >> (32 - B)) as u8
}

/// One row of `B`-bit weights to `to` bits: eight weights from each `B`
/// bytes, with constant shifts in whole groups.
#[inline(always)]
fn widen_row<const B: usize>(row: &[u8], k: usize, to: u8, dst: &mut [u8]) {
    let full = k / 8;
    for (g, bytes) in row.chunks_exact(B).take(full).enumerate() {
        let mut v = 0u64;
        for (i, &b) in bytes.iter().enumerate() {
            v |= (b as u64) << (8 * i);
        }
        let f: [u8; 8] = core::array::from_fn(|i| field::<B>(v, i));
        if to == 8 {
            dst[8 * g..8 * g + 8].copy_from_slice(&f);
        } else {
            for (i, d) in dst[4 * g..4 * g + 4].iter_mut().enumerate() {
                *d = (f[2 * i] & 15) | (f[2 * i + 1] << 4);
            }
        }
    }
    // The last, partial group (the stream's unused bits are zero).
    if full * 8 < k {
        let mut v = 0u64;
        for (i, &b) in row[full * B..].iter().enumerate() {
            v |= (b as u64) << (8 * i);
        }
        let tail = if to == 8 { &mut dst[8 * full..] } else { &mut dst[4 * full..] };
        tail.fill(0);
        for i in 0..k - 8 * full {
            let f = field::<B>(v, i);
            if to == 8 {
                tail[i] = f;
            } else {
                tail[i / 2] |= (f & 15) << (4 * (i % 2));
            }
        }
    }
}

/// Bits parameter of the generic code: the width, or 0 for the odd widths.
const fn form(bits: u8) -> u8 {
    match bits {
        2 | 4 | 8 => bits,
        _ => 0,
    }
}

/// The last, partial group of a row, zero-padded (empty when none).
#[inline(always)]
fn tail_group(row: &[u8], gb: usize) -> ([u8; 8], usize) {
    let full = row.len() / gb * gb;
    let mut t = [0u8; 8];
    let rest = &row[full..];
    t[..rest.len()].copy_from_slice(rest);
    (t, rest.len())
}

/// Bytes of a row taken per scaled partial sum (the whole row when the
/// decode does not scale).
#[inline(always)]
fn chunk_bytes(bits: u8, rb: usize) -> usize {
    match form(bits) {
        2 | 4 => CHUNK / group_weights(bits) * group_bytes(bits),
        _ => rb.max(1),
    }
}

/// Dot products of two rows with two interleaved columns (`cols` word
/// `2 * i + q` is lane word `i` of column q): `[r0.c0, r0.c1, r1.c0,
/// r1.c1]`, exact (the decode's scale shifted back). The rows are
/// `w[r0..r0 + rb]` and `w[r1..r1 + rb]`, `r1 >= r0`.
#[inline(always)]
fn dot2x2<M: Mac, const BITS: u8>(bits: u8, w: &[u8], r0: usize, r1: usize, rb: usize, cols: &[u32]) -> [i32; 4] {
    if !matches!(BITS, 4 | 2) {
        return dot2x2_part::<M, BITS>(bits, w, r0, r1, rb, cols);
    }
    // Whole groups through the backend's own loop (exact sums), if any.
    let mut total = [0i32; 4];
    let groups = match BITS {
        4 => M::dot2x2_w4(w, r0, r1 - r0, cols, rb / 4, &mut total),
        _ => M::dot2x2_w2(w, r0, r1 - r0, cols, rb / 4, &mut total),
    };
    let (gb, lanes) = (group_bytes(bits), group_lanes(bits));
    let (step, shift) = (chunk_bytes(bits, rb), scale_shift(bits));
    let mut at = 4 * groups;
    while at < rb {
        let n = step.min(rb - at);
        let part = dot2x2_part::<M, BITS>(bits, w, r0 + at, r1 + at, n, &cols[at / gb * 2 * lanes..]);
        for (t, p) in total.iter_mut().zip(part) {
            *t = t.wrapping_add(p >> shift);
        }
        at += n;
    }
    total
}

/// [`dot2x2`] over `n` bytes of each row (at most [`chunk_bytes`]), scaled
/// by `2^scale_shift`, without the backend's 4- and 2-bit loops.
#[inline(always)]
fn dot2x2_part<M: Mac, const BITS: u8>(bits: u8, w: &[u8], r0: usize, r1: usize, n: usize, cols: &[u32]) -> [i32; 4] {
    let (gb, lanes) = (group_bytes(bits), group_lanes(bits));
    let mut acc = [0i32; 4];
    // Whole words of 8-bit weights through the backend's own loop, if any.
    let stride = r1 - r0;
    let done = if BITS == 8 { 4 * M::dot2x2_w8(w, r0, stride, cols, n / 4, &mut acc) } else { 0 };
    let [mut a00, mut a01, mut a10, mut a11] = acc;
    let mut step = |w0: [u32; 8], w1: [u32; 8], x: &[u32], nl: usize| {
        for j in 0..nl {
            let (x0, x1) = (x[2 * j], x[2 * j + 1]);
            a00 = M::smlad(w0[j], x0, a00);
            a01 = M::smlad(w0[j], x1, a01);
            a10 = M::smlad(w1[j], x0, a10);
            a11 = M::smlad(w1[j], x1, a11);
        }
    };
    // Column words per weight byte.
    let per_byte = 2 * lanes / gb;
    let (row0, row1) = (&w[r0 + done..r0 + n], &w[r1 + done..r1 + n]);
    let cols = &cols[done * per_byte..];
    let groups = row0.chunks_exact(gb).zip(row1.chunks_exact(gb)).zip(cols.chunks_exact(2 * lanes));
    for ((g0, g1), x) in groups {
        step(decode::<M, BITS>(g0, bits), decode::<M, BITS>(g1, bits), x, lanes);
    }
    let (t0, rest) = tail_group(row0, gb);
    if rest > 0 {
        let (t1, _) = tail_group(row1, gb);
        // The last group fits in the padded column, except after the
        // backend's 8-bit words, where fewer than four weights are left.
        let nl = if BITS == 8 && done > 0 { 2 } else { lanes };
        let at = row0.len() / gb * 2 * lanes;
        step(decode::<M, BITS>(&t0, bits), decode::<M, BITS>(&t1, bits), &cols[at..at + 2 * nl], nl);
    }
    [a00, a01, a10, a11]
}

/// Dot products of four rows with one column, exact.
#[inline(always)]
fn dot4x1<M: Mac, const BITS: u8>(bits: u8, r: [&[u8]; 4], c: &[u32]) -> [i32; 4] {
    if !matches!(BITS, 4 | 2) {
        return dot4x1_part::<M, BITS>(bits, r, c);
    }
    // Whole blocks through the backend's own loop (exact sums), if any.
    let (gb, lanes) = (group_bytes(bits), group_lanes(bits));
    let rb = r[0].len();
    let mut total = [0i32; 4];
    let mut at = 2 * BITS as usize * dot2x1_pairs::<M, BITS>(r, c, &mut total);
    let (step, shift) = (chunk_bytes(bits, rb), scale_shift(bits));
    while at < rb {
        let n = step.min(rb - at);
        let rows = [&r[0][at..at + n], &r[1][at..at + n], &r[2][at..at + n], &r[3][at..at + n]];
        let part = dot4x1_part::<M, BITS>(bits, rows, &c[at / gb * lanes..]);
        for (t, p) in total.iter_mut().zip(part) {
            *t = t.wrapping_add(p >> shift);
        }
        at += n;
    }
    total
}

/// The backend's two-row loop ([`Mac::dot2x1`]) over the whole blocks of
/// sixteen weights of four rows: adds the sums to `acc`, returns the blocks
/// done (0 when there is no such loop).
#[inline(always)]
fn dot2x1_pairs<M: Mac, const BITS: u8>(r: [&[u8]; 4], c: &[u32], acc: &mut [i32; 4]) -> usize {
    let blocks = r[0].len() / (2 * BITS as usize);
    let (mut a01, mut a23) = ([0i32; 2], [0i32; 2]);
    let done = M::dot2x1(BITS, r[0], r[1], c, blocks, &mut a01);
    if done == 0 || M::dot2x1(BITS, r[2], r[3], c, done, &mut a23) != done {
        return 0;
    }
    *acc = [
        acc[0].wrapping_add(a01[0]),
        acc[1].wrapping_add(a01[1]),
        acc[2].wrapping_add(a23[0]),
        acc[3].wrapping_add(a23[1]),
    ];
    done
}

/// [`dot4x1`] over at most [`chunk_bytes`] of each row, scaled by
/// `2^scale_shift`.
#[inline(always)]
fn dot4x1_part<M: Mac, const BITS: u8>(bits: u8, mut r: [&[u8]; 4], mut c: &[u32]) -> [i32; 4] {
    let (gb, lanes) = (group_bytes(bits), group_lanes(bits));
    let mut a = [0i32; 4];
    // Whole blocks of 8-bit weights through the backend's own loop, if any.
    if BITS == 8 {
        let done = dot2x1_pairs::<M, BITS>(r, c, &mut a);
        let bb = 2 * BITS as usize;
        r = [&r[0][done * bb..], &r[1][done * bb..], &r[2][done * bb..], &r[3][done * bb..]];
        c = &c[done * 8..];
    }
    let groups = r[0]
        .chunks_exact(gb)
        .zip(r[1].chunks_exact(gb))
        .zip(r[2].chunks_exact(gb))
        .zip(r[3].chunks_exact(gb))
        .zip(c.chunks_exact(lanes));
    for ((((g0, g1), g2), g3), x) in groups {
        let w = [
            decode::<M, BITS>(g0, bits),
            decode::<M, BITS>(g1, bits),
            decode::<M, BITS>(g2, bits),
            decode::<M, BITS>(g3, bits),
        ];
        for j in 0..lanes {
            for i in 0..4 {
                a[i] = M::smlad(w[i][j], x[j], a[i]);
            }
        }
    }
    let (_, n) = tail_group(r[0], gb);
    if n > 0 {
        let at = r[0].len() / gb * lanes;
        let x = &c[at..at + lanes];
        for i in 0..4 {
            let (t, _) = tail_group(r[i], gb);
            let w = decode::<M, BITS>(&t[..gb], bits);
            for j in 0..lanes {
                a[i] = M::smlad(w[j], x[j], a[i]);
            }
        }
    }
    a
}

/// Requantise an accumulator of output channel `c` and clamp it.
#[inline(always)]
fn finish(w: &Weights<'_>, c: usize, sum: i32, out_zp: i32, lo: i32, hi: i32) -> i8 {
    let acc = w.bias(c).wrapping_add(sum);
    Requant::new(w.requant(c)).apply(acc).saturating_add(out_zp).clamp(lo, hi) as i8
}

/// Most output channels a convolution collects a pixel pair's accumulators
/// of, on the stack, for the short store (16 + 8 bytes each).
const SHORT_MAX: usize = 64;

/// The scratch as aligned words, if it holds at least `words` of them
/// (`usize::MAX`: all there are).
fn words(scratch: &mut [i8], words: usize) -> Option<&mut [u32]> {
    let (_, mid, _) = bytemuck::pod_align_to_mut::<i8, u32>(scratch);
    if words == usize::MAX {
        Some(mid)
    } else if mid.len() >= words {
        Some(&mut mid[..words])
    } else {
        None
    }
}

/// The lane permutation of one group: position of each weight index.
fn perm(bits: u8) -> [u8; 16] {
    let mut p = [0u8; 16];
    for (r, v) in p.iter_mut().enumerate().take(group_weights(bits)) {
        *v = slot(bits, r) as u8;
    }
    p
}

/// Column lane of weight `k`.
#[inline(always)]
fn lane_of(k: usize, g: usize, perm: &[u8; 16]) -> usize {
    (k & !(g - 1)) | perm[k & (g - 1)] as usize
}

/// Standard 2-D convolution; `scratch` must hold [`conv2d_scratch`] bytes
/// (otherwise the reference kernel runs).
pub fn conv2d<M: packed::PackedOps>(
    l: &Conv2d<'_>,
    in_shape: Shape,
    in_q: TensorQuant,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    scratch: &mut [i8],
) {
    let in_zp = in_q.zero_point;
    let k = l.kh as usize * l.kw as usize * in_shape.c as usize;
    if padded(k) > MAX_K || scratch.len() < conv2d_scratch(k) {
        return reference::conv2d(l, in_shape, in_zp, input, out_shape, output);
    }
    let wide = widen_scratch(l.w.bits, k, l.out_c as usize, true);
    if wide > 0 && scratch.len() >= wide + conv2d_scratch(k) {
        // Odd widths: the nearest even form over the rows widened once.
        let (buf, rest) = scratch.split_at_mut(wide);
        let buf: &mut [u8] = bytemuck::cast_slice_mut(buf);
        let to = nearest(l.w.bits);
        widen_rows(&l.w, 0, l.out_c as usize, k, to, buf);
        let l2 = Conv2d { w: Weights { bits: to, packed: buf, ..l.w }, ..*l };
        return conv2d::<M>(&l2, in_shape, in_q, input, out_shape, output, rest);
    }
    if let Some(buf) = words(scratch, usize::MAX) {
        if packed::conv2d::<M>(l, in_shape, in_q.bits, in_zp, input, out_shape, output, buf) {
            return;
        }
    }
    match l.w.bits {
        8 => conv2d_form::<M, 8>(l, in_shape, in_zp, input, out_shape, output, scratch),
        4 => conv2d_form::<M, 4>(l, in_shape, in_zp, input, out_shape, output, scratch),
        2 => conv2d_form::<M, 2>(l, in_shape, in_zp, input, out_shape, output, scratch),
        _ => conv2d_form::<M, 0>(l, in_shape, in_zp, input, out_shape, output, scratch),
    }
}

fn conv2d_form<M: packed::PackedOps, const BITS: u8>(
    l: &Conv2d<'_>,
    in_shape: Shape,
    in_zp: i32,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
    scratch: &mut [i8],
) {
    let bits = l.w.bits;
    debug_assert_eq!(form(bits), BITS);
    let (ih, iw, ic) = (in_shape.h as usize, in_shape.w as usize, in_shape.c as usize);
    let (kh, kw) = (l.kh as usize, l.kw as usize);
    let k = kh * kw * ic;
    let kp = padded(k);
    let g = group_weights(bits);
    let p = perm(bits);
    let Some(buf) = words(scratch, kp + kp) else {
        return reference::conv2d(l, in_shape, in_zp, input, out_shape, output);
    };
    let (cols, table) = buf.split_at_mut(kp);
    // Gather table: input offset (relative to the patch origin) of every
    // column lane; padded lanes point at the origin (their weights are 0).
    table.fill(0);
    for ky in 0..kh {
        for kx in 0..kw {
            for c in 0..ic {
                let kk = (ky * kw + kx) * ic + c;
                table[lane_of(kk, g, &p)] = ((ky * iw + kx) * ic + c) as u32;
            }
        }
    }
    let gather = Gather::new(table);
    let rb = pack::row_bytes(k, bits);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let out_zp = l.out.zero_point;
    let (oh, ow, oc_n) = (out_shape.h as usize, out_shape.w as usize, out_shape.c as usize);
    let (sh, sw) = (l.stride_h as usize, l.stride_w as usize);
    let (pt, pl) = (l.pad.top as usize, l.pad.left as usize);
    let npix = oh * ow;
    let zp = in_zp;
    // Fill column `q` (0 or 1) for output pixel `pix`: lane `p` of the
    // column is 16-bit lane `4 * (p / 2) + 2 * q + p % 2` of the interleaved
    // pair.
    let fill = |cols: &mut [u32], q: usize, pix: usize| {
        let (oy, ox) = (pix / ow, pix % ow);
        let (iy0, ix0) = ((oy * sh) as isize - pt as isize, (ox * sw) as isize - pl as isize);
        let lanes: &mut [u16] = bytemuck::cast_slice_mut(cols);
        let at = |p: usize| 4 * (p / 2) + 2 * q + p % 2;
        let interior = iy0 >= 0 && ix0 >= 0 && iy0 as usize + kh <= ih && ix0 as usize + kw <= iw;
        let base = if interior { (iy0 as usize * iw + ix0 as usize) * ic } else { 0 };
        if interior
            && gather.words(&input[base..], |t, x| {
                lanes[8 * t + 2 * q] = (x[0] as i32 - zp) as u16;
                lanes[8 * t + 2 * q + 1] = (x[1] as i32 - zp) as u16;
                lanes[8 * t + 4 + 2 * q] = (x[2] as i32 - zp) as u16;
                lanes[8 * t + 4 + 2 * q + 1] = (x[3] as i32 - zp) as u16;
            })
        {
        } else {
            for pair in lanes.chunks_exact_mut(4) {
                pair[2 * q] = 0;
                pair[2 * q + 1] = 0;
            }
            for ky in 0..kh {
                let iy = iy0 + ky as isize;
                if iy < 0 || iy >= ih as isize {
                    continue;
                }
                for kx in 0..kw {
                    let ix = ix0 + kx as isize;
                    if ix < 0 || ix >= iw as isize {
                        continue;
                    }
                    let src = (iy as usize * iw + ix as usize) * ic;
                    for c in 0..ic {
                        let kk = (ky * kw + kx) * ic + c;
                        lanes[at(lane_of(kk, g, &p))] = (input[src + c] as i32 - zp) as u16;
                    }
                }
            }
        }
    };
    // The short requantisation of every channel, where all have one and
    // there are at most SHORT_MAX: then a pixel pair's accumulators are
    // collected and stored by one loop per pixel. Bound: |x - z| <= 2^8,
    // |w| <= 2^(bits - 1).
    let mut shorts = [ShortRq::default(); SHORT_MAX];
    let relu = lo >= out_zp;
    let short = oc_n <= SHORT_MAX
        && (0..oc_n).all(|c| {
            let bound = (l.w.bias(c) as i64).abs() + ((k as i64) << (7 + bits as u32));
            ShortRq::new(l.w.requant(c), bound, relu).map(|q| shorts[c] = q).is_some()
        });
    let clamp = OutClamp { zp: out_zp, lo, hi };
    let mut acc = [[0i32; SHORT_MAX]; 2];
    let mut pix = 0;
    while pix < npix {
        let pair = pix + 1 < npix;
        fill(cols, 0, pix);
        fill(cols, 1, if pair { pix + 1 } else { pix });
        let o0 = pix * oc_n;
        let (out0, out1) = output[o0..].split_at_mut(oc_n);
        // Channels SHORT_MAX at a time: collect the pixel pair's
        // accumulators, then store each pixel.
        let mut cb = 0;
        while cb < oc_n {
            let ce = (cb + SHORT_MAX).min(oc_n);
            let mut oc = cb;
            while oc < ce {
                let oc1 = if oc + 1 < ce { oc + 1 } else { oc };
                let [a00, a01, a10, a11] = dot2x2::<M, BITS>(bits, l.w.packed, oc * rb, oc1 * rb, rb, cols);
                let (b0, b1) = (l.w.bias(oc), l.w.bias(oc1));
                // The odd last channel is paired with itself: a10 = a00.
                acc[0][oc - cb] = b0.wrapping_add(a00);
                acc[1][oc - cb] = b0.wrapping_add(a01);
                acc[0][oc1 - cb] = b1.wrapping_add(a10);
                acc[1][oc1 - cb] = b1.wrapping_add(a11);
                oc += 2;
            }
            let n = ce - cb;
            let store = |a: &[i32], out: &mut [i8]| {
                if short {
                    packed::store_short::<M>(a, out, &shorts[..n], &clamp);
                } else {
                    for (c, (o, &a)) in (cb..).zip(out.iter_mut().zip(a)) {
                        *o = Requant::new(l.w.requant(c)).apply(a).saturating_add(out_zp).clamp(lo, hi) as i8;
                    }
                }
            };
            store(&acc[0][..n], &mut out0[cb..ce]);
            if pair {
                store(&acc[1][..n], &mut out1[cb..ce]);
            }
            cb = ce;
        }
        pix += 2;
    }
}

/// Fully connected layer; `scratch` must hold [`dense_scratch`] bytes
/// (otherwise the reference kernel runs).
pub fn dense<M: packed::PackedOps>(
    l: &Dense<'_>,
    in_q: TensorQuant,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
) {
    let in_zp = in_q.zero_point;
    let k = input.len();
    if padded(k) > MAX_K || scratch.len() < dense_scratch(k) {
        return reference::dense(l, in_zp, input, output);
    }
    if let Some(buf) = words(scratch, usize::MAX) {
        if packed::dense::<M>(l, in_q.bits, in_zp, input, output, buf) {
            return;
        }
    }
    let ws = widen_scratch(l.w.bits, k, 0, false);
    let wide = ws > 0 && scratch.len() >= dense_scratch(k) + ws;
    match (l.w.bits, wide) {
        (8, _) => dense_form::<M, 8>(l, in_zp, input, output, scratch),
        (4, _) => dense_form::<M, 4>(l, in_zp, input, output, scratch),
        (2, _) => dense_form::<M, 2>(l, in_zp, input, output, scratch),
        (3, true) => dense_widened::<M, 4>(l, in_zp, input, output, scratch),
        (_, true) => dense_widened::<M, 8>(l, in_zp, input, output, scratch),
        _ => dense_form::<M, 0>(l, in_zp, input, output, scratch),
    }
}

fn dense_form<M: Mac, const BITS: u8>(l: &Dense<'_>, in_zp: i32, input: &[i8], output: &mut [i8], scratch: &mut [i8]) {
    let bits = l.w.bits;
    let k = input.len();
    let kp = padded(k);
    let Some(col) = words(scratch, kp / 2) else {
        return reference::dense(l, in_zp, input, output);
    };
    column(input, in_zp, bits, col);
    let rb = pack::row_bytes(k, bits);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let n = (l.out_features as usize).min(output.len());
    let mut o = 0;
    while o < n {
        let idx = [o, (o + 1).min(n - 1), (o + 2).min(n - 1), (o + 3).min(n - 1)];
        let rows = [l.w.row(idx[0], rb), l.w.row(idx[1], rb), l.w.row(idx[2], rb), l.w.row(idx[3], rb)];
        let a = dot4x1::<M, BITS>(bits, rows, col);
        for i in 0..4.min(n - o) {
            output[o + i] = finish(&l.w, o + i, a[i], l.out.zero_point, lo, hi);
        }
        o += 4;
    }
}

/// An odd-width fully connected layer in the form for `BITS` (4 or 8)-bit
/// weights, its rows widened [`WIDEN_ROWS`] at a time into the scratch after
/// the column.
fn dense_widened<M: Mac, const BITS: u8>(
    l: &Dense<'_>,
    in_zp: i32,
    input: &[i8],
    output: &mut [i8],
    scratch: &mut [i8],
) {
    let k = input.len();
    let kp = padded(k);
    let at = (scratch.as_ptr().align_offset(4) + 2 * kp).min(scratch.len());
    let (head, tail) = scratch.split_at_mut(at);
    let rb = pack::row_bytes(k, BITS);
    let tail: &mut [u8] = bytemuck::cast_slice_mut(tail);
    let Some(col) = words(head, kp / 2).filter(|_| tail.len() >= WIDEN_ROWS * rb) else {
        return reference::dense(l, in_zp, input, output);
    };
    column(input, in_zp, BITS, col);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let n = (l.out_features as usize).min(output.len());
    for o in (0..n).step_by(4) {
        let idx = [o, (o + 1).min(n - 1), (o + 2).min(n - 1), (o + 3).min(n - 1)];
        widen_rows(&l.w, o, o + WIDEN_ROWS.min(n - o), k, BITS, tail);
        let t: &[u8] = tail;
        let a = dot4x1::<M, BITS>(BITS, idx.map(|r| &t[(r - o) * rb..(r - o + 1) * rb]), col);
        for i in 0..4.min(n - o) {
            output[o + i] = finish(&l.w, o + i, a[i], l.out.zero_point, lo, hi);
        }
    }
}

/// The input vector as lane words in the order of `bits`-bit groups.
#[inline(always)]
fn column(input: &[i8], in_zp: i32, bits: u8, col: &mut [u32]) {
    let (g, p) = (group_weights(bits), perm(bits));
    let lanes: &mut [u16] = bytemuck::cast_slice_mut(col);
    lanes[input.len()..].fill(0);
    for (kk, &x) in input.iter().enumerate() {
        lanes[lane_of(kk, g, &p)] = (x as i32 - in_zp) as u16;
    }
}

/// Depthwise 2-D convolution (channel multiplier 1): a direct loop per
/// channel with its weights decoded once. Windows longer than
/// [`MAX_DW_WINDOW`] run the reference kernel.
pub fn depthwise_conv2d(
    l: &Conv2d<'_>,
    in_shape: Shape,
    in_zp: i32,
    input: &[i8],
    out_shape: Shape,
    output: &mut [i8],
) {
    let (kh, kw) = (l.kh as usize, l.kw as usize);
    let kk = kh * kw;
    if kk > MAX_DW_WINDOW {
        return reference::depthwise_conv2d(l, in_shape, in_zp, input, out_shape, output);
    }
    let (ih, iw, ic) = (in_shape.h as isize, in_shape.w as isize, in_shape.c as usize);
    let rb = pack::row_bytes(kk, l.w.bits);
    let (lo, hi) = clamp_bounds(&l.clamp, l.out.bits);
    let (oh, ow) = (out_shape.h as isize, out_shape.w as isize);
    let (sh, sw) = (l.stride_h as isize, l.stride_w as isize);
    let (pt, pl) = (l.pad.top as isize, l.pad.left as isize);
    let mut w = [0i32; MAX_DW_WINDOW];
    for c in 0..ic {
        let row = l.w.row(c, rb);
        for (j, v) in w.iter_mut().enumerate().take(kk) {
            *v = pack::get(row, l.w.bits, j) as i32;
        }
        let bias = l.w.bias(c);
        let rq = Requant::new(l.w.requant(c));
        for oy in 0..oh {
            let iy0 = oy * sh - pt;
            let (ky0, ky1) = ((-iy0).max(0) as usize, ((ih - iy0).min(kh as isize)).max(0) as usize);
            for ox in 0..ow {
                let ix0 = ox * sw - pl;
                let (kx0, kx1) = ((-ix0).max(0) as usize, ((iw - ix0).min(kw as isize)).max(0) as usize);
                let mut acc = bias;
                for ky in ky0..ky1 {
                    let rowbase = ((iy0 + ky as isize) * iw + ix0) as usize;
                    for kx in kx0..kx1 {
                        let x = input[(rowbase + kx) * ic + c] as i32 - in_zp;
                        acc += x * w[ky * kw + kx];
                    }
                }
                let y = rq.apply(acc).saturating_add(l.out.zero_point);
                output[((oy * ow + ox) as usize) * ic + c] = y.clamp(lo, hi) as i8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_permutations() {
        for bits in 2..=8u8 {
            let g = group_weights(bits);
            let mut seen = [false; 16];
            for r in 0..g {
                let s = slot(bits, r);
                assert!(s < g && !seen[s], "bits {bits} r {r}");
                seen[s] = true;
            }
        }
    }

    /// The decode puts weight `r` of a group in lane `slot(bits, r)`, scaled.
    #[test]
    fn decode_matches_slots() {
        use super::super::mac::Portable;
        for bits in 2..=8u8 {
            let g = group_weights(bits);
            let wmax = crate::quant::weight_max(bits);
            let vals: Vec<i8> = (0..g).map(|r| (((r * 5 + 3) as i32 % (2 * wmax + 1)) - wmax) as i8).collect();
            let mut bytes = [0u8; 8];
            let gb = group_bytes(bits);
            pack::pack_row(&vals, bits, &mut bytes[..pack::row_bytes(g, bits)]).unwrap();
            let lanes = match form(bits) {
                8 => decode::<Portable, 8>(&bytes[..gb], bits),
                4 => decode::<Portable, 4>(&bytes[..gb], bits),
                2 => decode::<Portable, 2>(&bytes[..gb], bits),
                _ => decode::<Portable, 0>(&bytes[..gb], bits),
            };
            let lanes16: Vec<i16> = lanes.iter().flat_map(|&w| [w as u16 as i16, (w >> 16) as u16 as i16]).collect();
            for (r, &v) in vals.iter().enumerate() {
                assert_eq!(lanes16[slot(bits, r)] as i32, (v as i32) << scale_shift(bits), "bits {bits} r {r}");
            }
        }
    }
}
