//! The few SIMD-within-a-register operations the fast kernels are written
//! in, and their portable implementation.
//!
//! The fast kernels ([`super::fast`]) are one body of code generic over
//! [`Mac`]: on ARMv7E-M (Cortex-M4/M7) [`super::dsp::Dsp`] maps each
//! operation to one DSP instruction (`SMLAD`, `SXTB16`); everywhere else
//! [`Portable`] computes exactly the same values in plain Rust (the compiler
//! turns them into a few multiply-accumulates on a Cortex-M3 or M0+). A
//! "lane word" is a `u32` holding two signed 16-bit lanes, low lane in bits
//! 0..16.

/// The operations, with the semantics of the ARM instructions of the same
/// name.
pub trait Mac {
    /// Name, for tests and benchmarks.
    const NAME: &'static str;
    /// `acc + lo(a) * lo(b) + hi(a) * hi(b)`, lanes signed 16-bit, wrapping.
    fn smlad(a: u32, b: u32, acc: i32) -> i32;
    /// Sign-extend bytes 0 and 2 of `a` into the low and high lanes.
    fn sxtb16(a: u32) -> u32;
    /// Sign-extend bytes 1 and 3 of `a` into the low and high lanes
    /// (`SXTB16` with `ROR #8`).
    fn sxtb16_ror8(a: u32) -> u32;
    /// `acc + lo(a) * lo(b)`, lanes signed 16-bit, wrapping (`SMLABB`).
    fn smlabb(a: u32, b: u32, acc: i32) -> i32;
    /// `acc + hi(a) * hi(b)`, lanes signed 16-bit, wrapping (`SMLATT`).
    fn smlatt(a: u32, b: u32, acc: i32) -> i32;
    /// Per-byte signed maximum of the four bytes of `a` and `b` (`SSUB8`
    /// then `SEL`).
    fn max8(a: u32, b: u32) -> u32;
    /// An optional hand-scheduled loop for the depthwise kernel
    /// ([`super::depthwise`]): adds one whole `kh x kw` window of four
    /// channels to `acc` (lane order `[c, c + 2, c + 1, c + 3]`). Window
    /// row `r`, column `q` is the word at `x[at + r * rs + q * ic..][..4]`,
    /// its weights lane words `w[2 * (r * kw + q)..][..2]`. Returns whether
    /// it did (false: not available, the generic code does it).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn dw_window4(
        x: &[i8],
        at: usize,
        ic: usize,
        rs: usize,
        kh: usize,
        kw: usize,
        w: &[u32],
        acc: &mut [i32; 4],
    ) -> bool {
        let _ = (x, at, ic, rs, kh, kw, w, acc);
        false
    }
    /// An optional hand-scheduled loop for the 2 x 2 block of 8-bit weights:
    /// rows `w[r0..]` and `w[r0 + stride..]`, interleaved columns `cols` (see
    /// [`super::fast`]); adds the products of the first `words` four-weight
    /// words to `acc` and returns how many words it did (0: not available,
    /// the generic code does them).
    #[inline(always)]
    fn dot2x2_w8(w: &[u8], r0: usize, stride: usize, cols: &[u32], words: usize, acc: &mut [i32; 4]) -> usize {
        let _ = (w, r0, stride, cols, words, acc);
        0
    }
    /// The same for 4-bit weights: `groups` four-byte groups of eight
    /// weights (eight column words each); unlike the others it adds *exact*
    /// sums (it decodes the lane words as `(v << s) & 0xf000f000`, 4096
    /// times the weight, see [`super::fast`], and shifts each partial sum
    /// of at most [`super::fast::CHUNK`] weights back itself).
    #[inline(always)]
    fn dot2x2_w4(w: &[u8], r0: usize, stride: usize, cols: &[u32], groups: usize, acc: &mut [i32; 4]) -> usize {
        let _ = (w, r0, stride, cols, groups, acc);
        0
    }
    /// An optional hand-scheduled loop for two rows of `bits`-bit weights
    /// (8, 4 or 2) against one column (dense layers): adds the products of
    /// the first `blocks` blocks of sixteen weights (`2 * bits` bytes of each
    /// row, eight column words) to `acc`, exact (the 4- and 2-bit loops
    /// shift their scaled partial sums back as [`Mac::dot2x2_w4`] does), and
    /// returns how many blocks it did (0: not available).
    #[inline(always)]
    fn dot2x1(bits: u8, r0: &[u8], r1: &[u8], col: &[u32], blocks: usize, acc: &mut [i32; 2]) -> usize {
        let _ = (bits, r0, r1, col, blocks, acc);
        0
    }
    /// The same for 2-bit weights: four-byte groups of sixteen weights
    /// (sixteen column words each), exact sums as [`Mac::dot2x2_w4`].
    #[inline(always)]
    fn dot2x2_w2(w: &[u8], r0: usize, stride: usize, cols: &[u32], groups: usize, acc: &mut [i32; 4]) -> usize {
        let _ = (w, r0, stride, cols, groups, acc);
        0
    }
}

/// Plain Rust, any target.
pub struct Portable;

#[inline(always)]
fn lo(a: u32) -> i32 {
    a as u16 as i16 as i32
}

#[inline(always)]
fn hi(a: u32) -> i32 {
    (a >> 16) as u16 as i16 as i32
}

impl Mac for Portable {
    const NAME: &'static str = "portable";
    #[inline(always)]
    fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(lo(a).wrapping_mul(lo(b))).wrapping_add(hi(a).wrapping_mul(hi(b)))
    }
    #[inline(always)]
    fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(lo(a).wrapping_mul(lo(b)))
    }
    #[inline(always)]
    fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
        acc.wrapping_add(hi(a).wrapping_mul(hi(b)))
    }
    #[inline(always)]
    fn max8(a: u32, b: u32) -> u32 {
        let (x, y) = (a.to_le_bytes(), b.to_le_bytes());
        let m = |i: usize| (x[i] as i8).max(y[i] as i8) as u8;
        u32::from_le_bytes([m(0), m(1), m(2), m(3)])
    }
    #[inline(always)]
    fn sxtb16(a: u32) -> u32 {
        (a as u8 as i8 as i16 as u16 as u32) | (((a >> 16) as u8 as i8 as i16 as u16 as u32) << 16)
    }
    #[inline(always)]
    fn sxtb16_ror8(a: u32) -> u32 {
        Self::sxtb16(a.rotate_right(8))
    }
}

/// Two signed 16-bit values as one lane word.
#[inline(always)]
pub fn pack_lanes(lo: i32, hi: i32) -> u32 {
    (lo as u16 as u32) | ((hi as u16 as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portable_semantics_pinned() {
        assert_eq!(Portable::sxtb16(0x80_7f_ff_01), 0x007f_0001);
        assert_eq!(Portable::sxtb16_ror8(0x80_7f_ff_01), 0xff80_ffff);
        let a = pack_lanes(-3, 100);
        let b = pack_lanes(7, -2);
        assert_eq!(Portable::smlad(a, b, 1000), 1000 - 21 - 200);
        assert_eq!(Portable::smlabb(a, b, 10), 10 - 21);
        assert_eq!(Portable::smlatt(a, b, 10), 10 - 200);
        assert_eq!(Portable::max8(0x80_7f_ff_01, 0x7f_80_00_ff), 0x7f_7f_00_01);
        assert_eq!(Portable::smlad(pack_lanes(-32768, -32768), pack_lanes(-32768, -32768), 0), i32::MIN);
        // wraps
    }
}
