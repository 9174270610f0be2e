//! The hand-scheduled row loops of [`super::first`] on ARMv7E-M (Cortex-M4,
//! Cortex-M7): one output row of one output channel, four adjacent output
//! pixels per pass, for stride 1, one input channel and `nw` = three lane
//! words per kernel row and phase (kernels 4 and 5 wide) or two (kernels 2
//! and 3 wide: 3x3, the usual first convolution; 14 instructions per kernel
//! row for 12 MACs, 12 with three kernel rows unrolled).
//!
//! Per kernel row: one `LDM` of the four input words, one `LDM` of the `A`
//! words, six `SMLAD`, one `LDM` of the `B` words and the row stride, six
//! `SMLAD`, `ADD` + `CMP` + `BNE`: 18 instructions for 20 MACs (5x5); five
//! kernel rows (5x5 kernels) have the loop unrolled, 16. Per pass: 9 more
//! (reload the pointers and the bias with one `LDM`, store the four
//! accumulators with one `STM`, advance, count).
//!
//! The store loop requantises with `SMMULR` and one rounding add; where the
//! clamp is the whole signed `b`-bit range (ReLU outputs whose zero point
//! is the lowest code, unclamped outputs) one `SSAT #b` clamps: 12
//! instructions per output instead of 17.
//!
//! Compiled only where the build script sets `releq_dsp`. The same tests
//! that check the portable pass on the host run this one under QEMU
//! (`tests/tests/kernels_qemu.rs`), bit for bit against the reference.
//!
//! # Safety
//! Per pass `b < blocks`, the loop reads `taps.kh()` kernel rows of `2 * nw +
//! 1` words (7 or 5) from the weights pointer (post-incremented from the
//! start of `taps`) and, per kernel row, `nw + 1` words from the input
//! pointer (starting at word `2 * b`),
//! which then advances by the row's stride word, the pass ending after the
//! row whose stride word is 0; then it writes 4 accumulators at `acc[4 *
//! b..]`. [`Taps`] (private fields, checked constructor) guarantees `kh >=
//! 1`, `kh * (2 * nw + 1)` words, every stride word but the last `4 * rw`
//! and the last 0; so the weights reads are in bounds and the input reads
//! are words `2 * b + ky * rw .. + nw + 1` for `ky < kh`: `Dsp::row_s1`
//! checks, before the
//! call, that `blocks >= 1`, that these end inside `x` and that `acc` holds
//! `4 * blocks` values. The slices are `u32` / `i32` slices, so word aligned
//! (`LDM`/`STM` need it). The function writes nothing else but its own stack
//! frame (40 bytes below the 9 saved registers), saves and restores every
//! callee-saved register it uses (AAPCS) and calls nothing. `SMLAD` may set
//! the sticky Q flag; nothing reads it.
//!
//! The store loop ([`store_right`]) reads `n >= 1` accumulators and the six
//! words of a [`RightParams`], and writes bytes `i * stride` (`i < n`) of
//! the output row, which [`Dsp::store_right`] checks are inside `out`; it
//! saves and restores the registers it uses and calls nothing.
#![allow(unsafe_code)]

use super::dsp::Dsp;
use super::first::{FirstPass, RightParams, Taps, PIX};

impl FirstPass for Dsp {
    const HAS_ROW_S1: bool = true;

    #[inline(always)]
    fn row_s1(x: &[u32], taps: &Taps<'_>, bias: i32, acc: &mut [i32]) -> bool {
        let blocks = acc.len() / PIX;
        // Input words read per kernel row and pass: `nw + 1`.
        let span = taps.nw() + 1;
        if blocks == 0 || x.len() < 2 * (blocks - 1) + (taps.kh() - 1) * taps.rw() + span {
            return false;
        }
        // SAFETY: see the module doc: `taps` holds its invariants, the input
        // reads end inside `x` and `acc` holds `4 * blocks` values (checked
        // above); each loop reads the `nw` its name says, which is `taps.nw()`.
        let f = match (taps.nw(), taps.kh()) {
            (3, 5) => row_s1_nw3_kh5,
            (3, _) => row_s1_nw3,
            (_, 3) => row_s1_nw2_kh3,
            _ => row_s1_nw2,
        };
        unsafe { f(x.as_ptr(), taps.words().as_ptr(), acc.as_mut_ptr(), blocks, bias) };
        true
    }

    #[inline(always)]
    fn store_right(accs: &[i32], out: &mut [i8], stride: usize, p: &RightParams) -> bool {
        let n = accs.len();
        if n == 0 || stride == 0 || out.len() <= (n - 1) * stride {
            return false;
        }
        // The clamp is the whole signed `b`-bit range (every ReLU or
        // unclamped output: `lo = -2^(b-1)`, `hi = 2^(b-1) - 1`): one `SSAT`.
        let top = p.hi.wrapping_add(1);
        let full = top > 0 && top.count_ones() == 1 && p.lo == -top;
        let f = match (full, top) {
            (true, 2) => store_right_sat2,
            (true, 4) => store_right_sat3,
            (true, 8) => store_right_sat4,
            (true, 16) => store_right_sat5,
            (true, 32) => store_right_sat6,
            (true, 64) => store_right_sat7,
            (true, 128) => store_right_sat8,
            _ => store_right,
        };
        // SAFETY: `n >= 1` accumulators are read; the writes are bytes `i *
        // stride` for `i < n`, inside `out` (checked above); see the module
        // doc.
        unsafe { f(accs.as_ptr(), out.as_mut_ptr(), n, stride, p) };
        true
    }
}

/// `out[i * stride] = clamp(((y + half - [y < 0]) >> right) + zp, lo, hi)`
/// for `i < n`, where `y = SMMULR(2 * accs[i], m) = (accs[i] * m + 2^30) >>
/// 31` (exact: `|accs[i]| < 2^30`, so `2 * accs[i]` does not overflow, and
/// `(2a * m + 2^31) >> 32 = (a * m + 2^30) >> 31`); the rounding add is
/// [`super::first`]'s `RightRequant`, exact for these accumulators.
/// 17 instructions per output.
///
/// # Safety
/// `n >= 1`; `accs[0..n]` readable; `out[i * stride]` writable for `i < n`;
/// `p` readable. The values are not safety conditions (wrong ones give wrong
/// outputs, nothing else).
#[unsafe(naked)]
unsafe extern "C" fn store_right(accs: *const i32, out: *mut i8, n: usize, stride: usize, p: &RightParams) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "ldm r12, {{r4-r9}}",
        "2:",
        "ldr r10, [r0], #4",
        "lsl r10, r10, #1",
        "smmulr r10, r10, r4",
        "add r11, r10, r5",
        "sub r11, r11, r10, lsr #31",
        "asr r11, r11, r6",
        "add r11, r11, r7",
        "cmp r11, r8",
        "it lt",
        "movlt r11, r8",
        "cmp r11, r9",
        "it gt",
        "movgt r11, r9",
        "strb r11, [r1]",
        "add r1, r1, r3",
        "subs r2, r2, #1",
        "bne 2b",
        "pop {{r4-r11, pc}}",
    )
}

/// [`store_right`] for a clamp that is the whole signed `B`-bit range
/// (`lo = -2^(B-1)`, `hi = 2^(B-1) - 1`), which `SSAT #B` is: 12
/// instructions per output. Same safety conditions; reads `p`'s first four
/// words.
macro_rules! store_right_sat {
    ($name:ident, $b:literal) => {
        /// See [`store_right_sat`].
        ///
        /// # Safety
        /// As [`store_right`].
        #[unsafe(naked)]
        unsafe extern "C" fn $name(accs: *const i32, out: *mut i8, n: usize, stride: usize, p: &RightParams) {
            core::arch::naked_asm!(
                "push {{r4-r11, lr}}",
                "ldr r12, [sp, #36]",
                "ldm r12, {{r4-r7}}",
                "2:",
                "ldr r10, [r0], #4",
                "lsl r10, r10, #1",
                "smmulr r10, r10, r4",
                "add r11, r10, r5",
                "sub r11, r11, r10, lsr #31",
                "asr r11, r11, r6",
                "add r11, r11, r7",
                concat!("ssat r11, #", $b, ", r11"),
                "strb r11, [r1]",
                "add r1, r1, r3",
                "subs r2, r2, #1",
                "bne 2b",
                "pop {{r4-r11, pc}}",
            )
        }
    };
}

store_right_sat!(store_right_sat2, 2);
store_right_sat!(store_right_sat3, 3);
store_right_sat!(store_right_sat4, 4);
store_right_sat!(store_right_sat5, 5);
store_right_sat!(store_right_sat6, 6);
store_right_sat!(store_right_sat7, 7);
store_right_sat!(store_right_sat8, 8);

/// For `b < blocks`: `acc[4 * b + i] = bias + sum over kernel rows ky of
/// dot(x[2 * b + ky * rw + i / 2 ..][..3], f_i)` where `f_i` is the row's
/// `A` (even `i`) or `B` (odd `i`) words.
///
/// Stack frame: `[sp]` input pointer of the pass, `[sp + 4]` weights,
/// `[sp + 8 .. 24]` the bias four times, `[sp + 24]` output pointer, `[sp +
/// 28]` passes left, `[sp + 32]` padding (8-byte alignment).
///
/// # Safety
/// `blocks >= 1`; `w` points at a kernel as [`Taps`] guarantees it; `x` at
/// `2 * (blocks - 1) + (kh - 1) * rw + 4` readable, word-aligned words;
/// `acc` at `4 * blocks` writable `i32`.
#[unsafe(naked)]
unsafe extern "C" fn row_s1_nw3(x: *const u32, w: *const u32, acc: *mut i32, blocks: usize, bias: i32) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "sub sp, #40",
        "strd r0, r1, [sp]",
        "strd r12, r12, [sp, #8]",
        "strd r12, r12, [sp, #16]",
        "strd r2, r3, [sp, #24]",
        "3:",
        "ldm sp, {{r0, r1, r4, r5, r6, r7}}",
        "2:",
        "ldm r0, {{r8-r11}}",
        "ldm r1!, {{r2, r3, r12}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r4, r10, r12, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "smlad r6, r11, r12, r6",
        "ldm r1!, {{r2, r3, r12, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r5, r10, r12, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "smlad r7, r11, r12, r7",
        "add r0, r0, lr",
        "cmp lr, #0",
        "bne 2b",
        "ldr r0, [sp]",
        "ldrd r2, r3, [sp, #24]",
        "stm r2!, {{r4-r7}}",
        "adds r0, #8",
        "str r0, [sp]",
        "subs r3, #1",
        "strd r2, r3, [sp, #24]",
        "bne 3b",
        "add sp, #40",
        "pop {{r4-r11, pc}}",
    )
}

/// [`row_s1_nw3`] for `nw = 2` (kernels 2 or 3 wide): per kernel row one
/// `LDM` of the three input words, one of the `A` words, four `SMLAD`, one
/// `LDM` of the `B` words and the stride, four `SMLAD`, `ADD` + `CMP` +
/// `BNE`: 14 instructions for 12 MACs (3x3).
///
/// # Safety
/// As [`row_s1_nw3`], with kernel rows of 5 words and 3 input words read
/// per kernel row.
#[unsafe(naked)]
unsafe extern "C" fn row_s1_nw2(x: *const u32, w: *const u32, acc: *mut i32, blocks: usize, bias: i32) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "sub sp, #40",
        "strd r0, r1, [sp]",
        "strd r12, r12, [sp, #8]",
        "strd r12, r12, [sp, #16]",
        "strd r2, r3, [sp, #24]",
        "3:",
        "ldm sp, {{r0, r1, r4, r5, r6, r7}}",
        "2:",
        "ldm r0, {{r8-r10}}",
        "ldm r1!, {{r2, r3}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "ldm r1!, {{r2, r3, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "add r0, r0, lr",
        "cmp lr, #0",
        "bne 2b",
        "ldr r0, [sp]",
        "ldrd r2, r3, [sp, #24]",
        "stm r2!, {{r4-r7}}",
        "adds r0, #8",
        "str r0, [sp]",
        "subs r3, #1",
        "strd r2, r3, [sp, #24]",
        "bne 3b",
        "add sp, #40",
        "pop {{r4-r11, pc}}",
    )
}

/// [`row_s1_nw2`] for exactly three kernel rows (3x3 kernels), the row loop
/// unrolled: 12 instructions per kernel row.
///
/// # Safety
/// As [`row_s1_nw2`], with `kh = 3`.
#[unsafe(naked)]
unsafe extern "C" fn row_s1_nw2_kh3(x: *const u32, w: *const u32, acc: *mut i32, blocks: usize, bias: i32) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "sub sp, #40",
        "strd r0, r1, [sp]",
        "strd r12, r12, [sp, #8]",
        "strd r12, r12, [sp, #16]",
        "strd r2, r3, [sp, #24]",
        "3:",
        "ldm sp, {{r0, r1, r4, r5, r6, r7}}",
        "ldm r0, {{r8-r10}}",
        "ldm r1!, {{r2, r3}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "ldm r1!, {{r2, r3, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "add r0, r0, lr",
        "ldm r0, {{r8-r10}}",
        "ldm r1!, {{r2, r3}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "ldm r1!, {{r2, r3, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "add r0, r0, lr",
        "ldm r0, {{r8-r10}}",
        "ldm r1!, {{r2, r3}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "ldm r1!, {{r2, r3, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "ldr r0, [sp]",
        "ldrd r2, r3, [sp, #24]",
        "stm r2!, {{r4-r7}}",
        "adds r0, #8",
        "str r0, [sp]",
        "subs r3, #1",
        "strd r2, r3, [sp, #24]",
        "bne 3b",
        "add sp, #40",
        "pop {{r4-r11, pc}}",
    )
}

/// [`row_s1_nw3`] for exactly five kernel rows (5x5 kernels), the row loop
/// unrolled: no compare and branch per kernel row (the last row's stride
/// word, 0, is added as the others). 16 instructions per kernel row.
///
/// # Safety
/// As [`row_s1_nw3`], with `kh = 5`.
#[unsafe(naked)]
unsafe extern "C" fn row_s1_nw3_kh5(x: *const u32, w: *const u32, acc: *mut i32, blocks: usize, bias: i32) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "sub sp, #40",
        "strd r0, r1, [sp]",
        "strd r12, r12, [sp, #8]",
        "strd r12, r12, [sp, #16]",
        "strd r2, r3, [sp, #24]",
        "3:",
        "ldm sp, {{r0, r1, r4, r5, r6, r7}}",
        "ldm r0, {{r8-r11}}",
        "ldm r1!, {{r2, r3, r12}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r4, r10, r12, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "smlad r6, r11, r12, r6",
        "ldm r1!, {{r2, r3, r12, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r5, r10, r12, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "smlad r7, r11, r12, r7",
        "add r0, r0, lr",
        "ldm r0, {{r8-r11}}",
        "ldm r1!, {{r2, r3, r12}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r4, r10, r12, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "smlad r6, r11, r12, r6",
        "ldm r1!, {{r2, r3, r12, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r5, r10, r12, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "smlad r7, r11, r12, r7",
        "add r0, r0, lr",
        "ldm r0, {{r8-r11}}",
        "ldm r1!, {{r2, r3, r12}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r4, r10, r12, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "smlad r6, r11, r12, r6",
        "ldm r1!, {{r2, r3, r12, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r5, r10, r12, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "smlad r7, r11, r12, r7",
        "add r0, r0, lr",
        "ldm r0, {{r8-r11}}",
        "ldm r1!, {{r2, r3, r12}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r4, r10, r12, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "smlad r6, r11, r12, r6",
        "ldm r1!, {{r2, r3, r12, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r5, r10, r12, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "smlad r7, r11, r12, r7",
        "add r0, r0, lr",
        "ldm r0, {{r8-r11}}",
        "ldm r1!, {{r2, r3, r12}}",
        "smlad r4, r8, r2, r4",
        "smlad r4, r9, r3, r4",
        "smlad r4, r10, r12, r4",
        "smlad r6, r9, r2, r6",
        "smlad r6, r10, r3, r6",
        "smlad r6, r11, r12, r6",
        "ldm r1!, {{r2, r3, r12, lr}}",
        "smlad r5, r8, r2, r5",
        "smlad r5, r9, r3, r5",
        "smlad r5, r10, r12, r5",
        "smlad r7, r9, r2, r7",
        "smlad r7, r10, r3, r7",
        "smlad r7, r11, r12, r7",
        "add r0, r0, lr",
        "ldr r0, [sp]",
        "ldrd r2, r3, [sp, #24]",
        "stm r2!, {{r4-r7}}",
        "adds r0, #8",
        "str r0, [sp]",
        "subs r3, #1",
        "strd r2, r3, [sp, #24]",
        "bne 3b",
        "add sp, #40",
        "pop {{r4-r11, pc}}",
    )
}
