//! The hand-scheduled pass of [`super::first`] on ARMv7E-M (Cortex-M4,
//! Cortex-M7): four adjacent output pixels of one output channel, stride 1,
//! one input channel, three lane words per kernel row and phase (kernels 4
//! and 5 wide).
//!
//! Per kernel row: one `LDM` of the four input words, one `LDM` of the `A`
//! words, six `SMLAD`, one `LDM` of the `B` words and the row stride, six
//! `SMLAD`, `ADD` + `CMP` + `BNE`: 18 instructions for 20 MACs (5x5).
//!
//! Compiled only where the build script sets `releq_dsp`. The same tests
//! that check the portable pass on the host run this one under QEMU
//! (`tests/tests/kernels_qemu.rs`), bit for bit against the reference.
//!
//! # Safety
//! The loop reads `taps.kh()` kernel rows of 7 words from the weights
//! pointer (post-incremented) and, per kernel row, 4 words from the input
//! pointer, which then advances by the row's stride word, the loop ending
//! after the row whose stride word is 0. [`Taps`] (private fields, checked
//! constructor) guarantees `kh >= 1`, `kh * 7` words, every stride word but
//! the last `4 * rw` and the last 0; so the weights reads are in bounds and
//! the input reads are words `ky * rw .. ky * rw + 4` for `ky < kh`, which
//! [`Dsp::pass_s1_nw3`] checks against the input slice before the call.
//! Both slices are `u32` slices, so word aligned (`LDM` needs it). The
//! function writes only the four accumulators behind `acc`, saves and
//! restores every callee-saved register it uses (AAPCS) and keeps the stack
//! 8-byte aligned. `SMLAD` may set the sticky Q flag; nothing reads it.
#![allow(unsafe_code)]

use super::dsp::Dsp;
use super::first::{FirstPass, Taps, PIX};

impl FirstPass for Dsp {
    #[inline(always)]
    fn pass_s1_nw3(x: &[u32], taps: &Taps<'_>, acc: &mut [i32; PIX]) -> bool {
        if x.len() < (taps.kh() - 1) * taps.rw() + 4 {
            return false;
        }
        // SAFETY: see the module doc: `taps` holds its invariants and the
        // input reads end inside `x` (checked above).
        unsafe { pass_s1_nw3(x.as_ptr(), taps.words().as_ptr(), acc) };
        true
    }
}

/// `acc[i] += sum over kernel rows ky of dot(x[ky*rw + i/2 ..][..3], f_i)`
/// where `f_i` is the row's `A` (even `i`) or `B` (odd `i`) words.
///
/// # Safety
/// `w` points at a kernel as [`Taps`] guarantees it; `x` at `(kh - 1) * rw
/// + 4` readable, word-aligned words; `acc` at four writable `i32`.
#[unsafe(naked)]
unsafe extern "C" fn pass_s1_nw3(x: *const u32, w: *const u32, acc: *mut [i32; PIX]) {
    core::arch::naked_asm!(
        "push {{r2, r4-r11, lr}}",
        "ldm r2, {{r4-r7}}",
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
        "ldr r2, [sp]",
        "stm r2, {{r4-r7}}",
        "pop {{r2, r4-r11, pc}}",
    )
}
