//! [`Mac`] on ARMv7E-M (Cortex-M4, Cortex-M7): one DSP instruction per
//! operation, through inline assembly (the `core::arch::arm` DSP intrinsics
//! are not stable).
//!
//! Compiled only where the build script sets `releq_dsp` (thumbv7em
//! targets). The same tests that check [`super::mac::Portable`] on the host
//! run these under QEMU (`tests/tests/kernels_qemu.rs`), comparing every
//! layer with the reference kernels bit for bit.
//!
//! # Safety
//! Each `asm!` block is a single data-processing instruction on registers
//! (`SMLAD`, `SMLABB`, `SMLATT`, `SXTB16`), or the pair `SSUB8` + `SEL`: it
//! reads only its input registers, writes only its output register, touches
//! no memory, no stack and no flags other than the sticky Q flag (`SMLAD`,
//! `SMLABB`, `SMLATT` set Q on overflow; nothing in this crate reads Q) and
//! the GE flags (`SSUB8` sets them, the `SEL` right after it in the same
//! block consumes them; nothing else in this crate reads GE, and the
//! compiler does not keep values in GE). So the blocks are sound for any
//! input values, and are declared `pure, nomem, nostack`.
//!
//! The hand-scheduled loops (`dot2x2_*` for convolution, `dot2x1_*` for
//! dense layers) are naked functions, each with its own safety contract:
//! they read only the rows and columns their wrapper in `impl Mac for Dsp`
//! has checked are in bounds, write only the accumulator array, and save
//! and restore every callee-saved register they use. The QEMU tests pick
//! layers of every width these loops take (`blocked_seeds`); a wrong
//! instruction in any of them makes those tests fail.
#![allow(unsafe_code)]

use super::mac::Mac;
use core::arch::asm;

/// The ARMv7E-M DSP instructions.
pub struct Dsp;

impl Mac for Dsp {
    const NAME: &'static str = "arm-dsp";
    #[inline(always)]
    fn smlad(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: see the module doc: one register-only instruction.
        unsafe {
            asm!("smlad {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, c = in(reg) acc,
                 options(pure, nomem, nostack));
        }
        r
    }
    #[inline(always)]
    fn smlabb(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: see the module doc: one register-only instruction.
        unsafe {
            asm!("smlabb {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, c = in(reg) acc,
                 options(pure, nomem, nostack));
        }
        r
    }
    #[inline(always)]
    fn smlatt(a: u32, b: u32, acc: i32) -> i32 {
        let r: i32;
        // SAFETY: see the module doc: one register-only instruction.
        unsafe {
            asm!("smlatt {r}, {a}, {b}, {c}", r = lateout(reg) r, a = in(reg) a, b = in(reg) b, c = in(reg) acc,
                 options(pure, nomem, nostack));
        }
        r
    }
    #[inline(always)]
    fn max8(a: u32, b: u32) -> u32 {
        let r: u32;
        // SAFETY: see the module doc: `SSUB8` sets GE[i] where byte i of
        // `a` >= byte i of `b` (signed), `SEL` then takes those bytes from
        // `a` and the others from `b`. `SSUB8` writes `r` before `SEL`
        // reads `a` and `b`, so `r` is an `out` (not `lateout`) operand: it
        // never shares a register with an input.
        unsafe {
            asm!("ssub8 {r}, {a}, {b}", "sel {r}, {a}, {b}", r = out(reg) r, a = in(reg) a, b = in(reg) b,
                 options(pure, nomem, nostack));
        }
        r
    }
    #[inline(always)]
    fn sxtb16(a: u32) -> u32 {
        let r: u32;
        // SAFETY: see the module doc.
        unsafe {
            asm!("sxtb16 {r}, {a}", r = lateout(reg) r, a = in(reg) a, options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[inline(always)]
    fn sxtb16_ror8(a: u32) -> u32 {
        let r: u32;
        // SAFETY: see the module doc.
        unsafe {
            asm!("sxtb16 {r}, {a}, ror #8", r = lateout(reg) r, a = in(reg) a,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }
    #[inline(always)]
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
        // The last word read starts at `at + (kh - 1) * rs + (kw - 1) * ic`.
        let last = (kh.wrapping_sub(1))
            .checked_mul(rs)
            .and_then(|r| (kw.wrapping_sub(1)).checked_mul(ic).and_then(|q| r.checked_add(q)))
            .and_then(|o| o.checked_add(at))
            .and_then(|o| o.checked_add(4));
        let skip = kw.checked_mul(ic).and_then(|row| rs.checked_sub(row));
        let (Some(last), Some(skip)) = (last, skip) else { return false };
        if kh == 0 || kw == 0 || last > x.len() || w.len() < 2 * kh * kw {
            return false;
        }
        // SAFETY: `kh, kw >= 1`; every word read, `at + r * rs + q * ic`
        // for `r < kh`, `q < kw`, ends at or before `last <= x.len()`
        // (`rs >= kw * ic`, so the offsets grow monotonically and the
        // largest is the one checked); `2 * kh * kw` weight words are in
        // bounds (checked above); `w` is a `u32` slice, so word aligned.
        unsafe { dw_window4(x.as_ptr().add(at), ic, w.as_ptr(), kw, acc, kh, skip) };
        true
    }
    #[inline(always)]
    fn dot2x2_w8(w: &[u8], r0: usize, stride: usize, cols: &[u32], words: usize, acc: &mut [i32; 4]) -> usize {
        let end = r0.checked_add(stride).and_then(|e| e.checked_add(4 * words));
        if words == 0 || end.is_none_or(|e| e > w.len()) || cols.len() < 4 * words {
            return 0;
        }
        // SAFETY: `words >= 1`; both rows' `4 * words` bytes and `4 * words`
        // column words are in bounds (checked above); `cols` is a `u32`
        // slice, so word aligned.
        unsafe { dot2x2_w8(w.as_ptr().add(r0), stride, cols.as_ptr(), words, acc) };
        words
    }
    #[inline(always)]
    fn dot2x1(bits: u8, r0: &[u8], r1: &[u8], col: &[u32], blocks: usize, acc: &mut [i32; 2]) -> usize {
        let bytes = blocks.saturating_mul(2 * bits as usize);
        if blocks == 0 || r0.len() < bytes || r1.len() < bytes || col.len() < blocks.saturating_mul(8) {
            return 0;
        }
        let (r0, r1, col) = (r0.as_ptr(), r1.as_ptr(), col.as_ptr());
        // SAFETY: `blocks >= 1`; both rows hold `2 * bits * blocks` bytes and
        // the column `8 * blocks` words (checked above); `col` is a `u32`
        // slice, so word aligned.
        match bits {
            8 => unsafe { dot2x1_w8(r0, r1, col, blocks, acc) },
            4 => unsafe { dot2x1_w4(r0, r1, col, blocks, acc) },
            2 => unsafe { dot2x1_w2(r0, r1, col, blocks, acc) },
            _ => return 0,
        }
        blocks
    }
    #[inline(always)]
    fn dot2x2_w4(w: &[u8], r0: usize, stride: usize, cols: &[u32], groups: usize, acc: &mut [i32; 4]) -> usize {
        let end = r0.checked_add(stride).and_then(|e| e.checked_add(4 * groups));
        if groups == 0 || end.is_none_or(|e| e > w.len()) || cols.len() < 8 * groups {
            return 0;
        }
        // SAFETY: `groups >= 1`; both rows' `4 * groups` bytes and
        // `8 * groups` column words are in bounds (checked above); `cols` is
        // a `u32` slice, so word aligned.
        unsafe { dot2x2_w4(w.as_ptr().add(r0), stride, cols.as_ptr(), groups, acc) };
        groups
    }
    #[inline(always)]
    fn dot2x2_w2(w: &[u8], r0: usize, stride: usize, cols: &[u32], groups: usize, acc: &mut [i32; 4]) -> usize {
        let end = r0.checked_add(stride).and_then(|e| e.checked_add(4 * groups));
        if groups == 0 || end.is_none_or(|e| e > w.len()) || cols.len() < 16 * groups {
            return 0;
        }
        // SAFETY: `groups >= 1`; both rows' `4 * groups` bytes and
        // `16 * groups` column words are in bounds (checked above); `cols`
        // is a `u32` slice, so word aligned.
        unsafe { dot2x2_w2(w.as_ptr().add(r0), stride, cols.as_ptr(), groups, acc) };
        groups
    }
}

/// `acc[0..4] += [r0.c0, r0.c1, r1.c0, r1.c1]` over `words` words of 8-bit
/// weights (four per word), where `r1 = r0 + stride` and `col` holds the two
/// columns interleaved lane word by lane word: per weight word,
/// `[c0 (x0,x2), c1 (x0,x2), c0 (x1,x3), c1 (x1,x3)]`.
///
/// Inner loop, per four weights of both rows and both columns (16 MACs):
/// 2 `LDR`, 2 `LDRD`, 4 `SXTB16`, 8 `SMLAD`, `SUBS` + `BNE`: 18 instructions.
///
/// # Safety
/// `words >= 1`; `r0[0..4 * words]` and `r0[stride..stride + 4 * words]`
/// are readable (any alignment: Cortex-M4/M7 `LDR` takes unaligned
/// addresses); `col[0..4 * words]` is readable and 4-byte aligned (`LDRD`
/// needs word alignment). The function saves and restores every callee-saved
/// register it uses (AAPCS).
#[unsafe(naked)]
pub unsafe extern "C" fn dot2x2_w8(r0: *const u8, stride: usize, col: *const u32, words: usize, acc: *mut [i32; 4]) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "ldm r12, {{r4-r7}}",
        "2:",
        "ldr r9, [r0, r1]",
        "ldr r8, [r0], #4",
        "ldrd r10, r11, [r2], #8",
        "sxtb16 lr, r8",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "sxtb16 lr, r9",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "sxtb16 lr, r8, ror #8",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "sxtb16 lr, r9, ror #8",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "subs r3, r3, #1",
        "bne 2b",
        "stm r12, {{r4-r7}}",
        "pop {{r4-r11, pc}}",
    )
}

/// `acc[0..4] += ` one depthwise window of four channels: `kh` rows of
/// `kw` positions, position words at `x`, `x + ic`, ... within a row, rows
/// `kw * ic + skip` bytes apart; weights two lane words per position,
/// `(w[c], w[c + 2])`, `(w[c + 1], w[c + 3])`, consecutive. Accumulators in
/// lane order `[c, c + 2, c + 1, c + 3]`.
///
/// Inner loop, per position (4 MACs): `LDR`, `ADD`, `LDRD`, 2 `SXTB16`,
/// `SMLABB`, `SMLATT`, `SMLABB`, `SMLATT`, `SUBS` + `BNE`: 11 instructions.
///
/// # Safety
/// `kh >= 1`, `kw >= 1`; every position word (any alignment: Cortex-M4/M7
/// `LDR` takes unaligned addresses) is readable; `w[0..2 * kh * kw]` is
/// readable and 4-byte aligned (`LDRD` needs word alignment); `acc` is
/// valid. The function saves and restores every callee-saved register it
/// uses (AAPCS) and writes only `acc` and its own incoming stack argument
/// `kh` (which the callee owns under AAPCS).
#[unsafe(naked)]
pub unsafe extern "C" fn dw_window4(
    x: *const i8,
    ic: usize,
    w: *const u32,
    kw: usize,
    acc: *mut [i32; 4],
    kh: usize,
    skip: usize,
) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "ldm r12, {{r4-r7}}",
        "3:",
        "mov r8, r3",
        "2:",
        "ldr r9, [r0]",
        "add r0, r0, r1",
        "ldrd r10, r11, [r2], #8",
        "sxtb16 r12, r9",
        "sxtb16 lr, r9, ror #8",
        "smlabb r4, r12, r10, r4",
        "smlatt r5, r12, r10, r5",
        "smlabb r6, lr, r11, r6",
        "smlatt r7, lr, r11, r7",
        "subs r8, r8, #1",
        "bne 2b",
        "ldr r12, [sp, #44]",
        "add r0, r0, r12",
        "ldr r12, [sp, #40]",
        "subs r12, r12, #1",
        "str r12, [sp, #40]",
        "bne 3b",
        "ldr r12, [sp, #36]",
        "stm r12, {{r4-r7}}",
        "pop {{r4-r11, pc}}",
    )
}

/// `acc[0..4] += [r0.c0, r0.c1, r1.c0, r1.c1]` over `groups` four-byte
/// groups of 4-bit weights (eight per group), where `r1 = r0 + stride` and
/// `col` holds the two columns interleaved lane word by lane word (eight
/// words per group, in [`super::fast`]'s 4-bit lane order).
///
/// Each lane word of weights is one `AND` of the mask `0xf000f000` with the
/// group word shifted left by 12, 4, 8, 0: the nibble lands at the top of
/// the 16-bit lane, which then holds 4096 times the weight. Inner loop, per
/// group of both rows and both columns (32 MACs): 2 `LDR`, 4 `LDRD`,
/// 8 `AND`, 16 `SMLAD`, `SUBS` + `BNE`: 32 instructions. The scaled sums
/// are taken over chunks of at most 32 groups ([`super::fast::CHUNK`]
/// weights, so they fit in `i32`), each shifted back into `acc`.
///
/// # Safety
/// `groups >= 1`; `r0[0..4 * groups]` and `r0[stride..stride + 4 * groups]`
/// are readable (any alignment: Cortex-M4/M7 `LDR` takes unaligned
/// addresses); `col[0..8 * groups]` is readable and 4-byte aligned (`LDRD`
/// needs word alignment); `acc` is valid for reads and writes. The function
/// saves and restores every callee-saved register it uses (AAPCS) and
/// leaves `sp` as it found it.
#[unsafe(naked)]
pub unsafe extern "C" fn dot2x2_w4(r0: *const u8, stride: usize, col: *const u32, groups: usize, acc: *mut [i32; 4]) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "sub sp, sp, #4",
        "mov r12, #0xf000f000",
        // Chunk loop: r3 groups left, at most 32 this chunk.
        "3:",
        "cmp r3, #32",
        "ite hi",
        "movhi lr, #32",
        "movls lr, r3",
        "sub r3, r3, lr",
        "str r3, [sp]",
        "mov r3, lr",
        "movs r4, #0",
        "movs r5, #0",
        "movs r6, #0",
        "movs r7, #0",
        "2:",
        "ldr r9, [r0, r1]",
        "ldr r8, [r0], #4",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #12",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #12",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #4",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #4",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #8",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #8",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "subs r3, r3, #1",
        "bne 2b",
        // acc += chunk sums >> 12 (exact: every term is a multiple of 2^12).
        "ldr lr, [sp, #40]",
        "ldm lr, {{r8-r11}}",
        "add r8, r8, r4, asr #12",
        "add r9, r9, r5, asr #12",
        "add r10, r10, r6, asr #12",
        "add r11, r11, r7, asr #12",
        "stm lr, {{r8-r11}}",
        "ldr r3, [sp]",
        "cmp r3, #0",
        "bne 3b",
        "add sp, sp, #4",
        "pop {{r4-r11, pc}}",
    )
}

/// The 2-bit form of [`dot2x2_w4`]: exact sums over `groups` four-byte
/// groups of sixteen weights (sixteen column words each); mask
/// `0xc000c000` (16384 times the weight), shifts 14, 6, 12, 4, 10, 2, 8, 0,
/// chunks of 16 groups. Per group (64 MACs): 2 `LDR`, 8 `LDRD`, 16 `AND`,
/// 32 `SMLAD`, 2 loop: 60 instructions.
///
/// # Safety
/// As [`dot2x2_w4`], with `col[0..16 * groups]` readable.
#[unsafe(naked)]
pub unsafe extern "C" fn dot2x2_w2(r0: *const u8, stride: usize, col: *const u32, groups: usize, acc: *mut [i32; 4]) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "sub sp, sp, #4",
        "mov r12, #0xc000c000",
        // Chunk loop: r3 groups left, at most 16 this chunk.
        "3:",
        "cmp r3, #16",
        "ite hi",
        "movhi lr, #16",
        "movls lr, r3",
        "sub r3, r3, lr",
        "str r3, [sp]",
        "mov r3, lr",
        "movs r4, #0",
        "movs r5, #0",
        "movs r6, #0",
        "movs r7, #0",
        "2:",
        "ldr r9, [r0, r1]",
        "ldr r8, [r0], #4",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #14",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #14",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #6",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #6",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #12",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #12",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #4",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #4",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #10",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #10",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #2",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #2",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8, lsl #8",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9, lsl #8",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "ldrd r10, r11, [r2], #8",
        "and lr, r12, r8",
        "smlad r4, lr, r10, r4",
        "smlad r5, lr, r11, r5",
        "and lr, r12, r9",
        "smlad r6, lr, r10, r6",
        "smlad r7, lr, r11, r7",
        "subs r3, r3, #1",
        "bne 2b",
        // acc += chunk sums >> 14 (exact: every term is a multiple of 2^14).
        "ldr lr, [sp, #40]",
        "ldm lr, {{r8-r11}}",
        "add r8, r8, r4, asr #14",
        "add r9, r9, r5, asr #14",
        "add r10, r10, r6, asr #14",
        "add r11, r11, r7, asr #14",
        "stm lr, {{r8-r11}}",
        "ldr r3, [sp]",
        "cmp r3, #0",
        "bne 3b",
        "add sp, sp, #4",
        "pop {{r4-r11, pc}}",
    )
}

/// `acc[0..2] += [r0.c, r1.c]` over `n` blocks of sixteen 8-bit weights of
/// two rows (dense layers), `col` one column of lane words in
/// [`super::fast`]'s 8-bit lane order (eight words per block).
///
/// Per block (32 MACs): 2 `LDM` of four column words, 8 `LDR` (rows need
/// not be aligned, so no `LDRD`), 16 `SXTB16`, 16 `SMLAD`, 2 loop: 44
/// instructions.
///
/// # Safety
/// `n >= 1`; `r0[0..16 * n]`, `r1[0..16 * n]` readable (any alignment);
/// `col[0..8 * n]` readable and 4-byte aligned (`LDM` needs word
/// alignment). Saves and restores every callee-saved register it uses.
#[unsafe(naked)]
pub unsafe extern "C" fn dot2x1_w8(r0: *const u8, r1: *const u8, col: *const u32, n: usize, acc: *mut [i32; 2]) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "ldr r12, [sp, #36]",
        "ldm r12, {{r4, r5}}",
        "2:",
        "ldm r2!, {{r6-r9}}",
        "ldr r10, [r0], #4",
        "ldr r11, [r0], #4",
        "sxtb16 lr, r10",
        "smlad r4, lr, r6, r4",
        "sxtb16 lr, r10, ror #8",
        "smlad r4, lr, r7, r4",
        "sxtb16 lr, r11",
        "smlad r4, lr, r8, r4",
        "sxtb16 lr, r11, ror #8",
        "smlad r4, lr, r9, r4",
        "ldr r10, [r1], #4",
        "ldr r11, [r1], #4",
        "sxtb16 lr, r10",
        "smlad r5, lr, r6, r5",
        "sxtb16 lr, r10, ror #8",
        "smlad r5, lr, r7, r5",
        "sxtb16 lr, r11",
        "smlad r5, lr, r8, r5",
        "sxtb16 lr, r11, ror #8",
        "smlad r5, lr, r9, r5",
        "ldm r2!, {{r6-r9}}",
        "ldr r10, [r0], #4",
        "ldr r11, [r0], #4",
        "sxtb16 lr, r10",
        "smlad r4, lr, r6, r4",
        "sxtb16 lr, r10, ror #8",
        "smlad r4, lr, r7, r4",
        "sxtb16 lr, r11",
        "smlad r4, lr, r8, r4",
        "sxtb16 lr, r11, ror #8",
        "smlad r4, lr, r9, r4",
        "ldr r10, [r1], #4",
        "ldr r11, [r1], #4",
        "sxtb16 lr, r10",
        "smlad r5, lr, r6, r5",
        "sxtb16 lr, r10, ror #8",
        "smlad r5, lr, r7, r5",
        "sxtb16 lr, r11",
        "smlad r5, lr, r8, r5",
        "sxtb16 lr, r11, ror #8",
        "smlad r5, lr, r9, r5",
        "subs r3, r3, #1",
        "bne 2b",
        "stm r12, {{r4, r5}}",
        "pop {{r4-r11, pc}}",
    )
}

/// The 4-bit form of [`dot2x1_w8`], exact sums over `n` blocks
/// of sixteen weights (two four-byte groups of each row, eight column words).
/// Each lane word is one `AND` with the mask `0xf000f000` (see
/// [`dot2x2_w4`]). Per block (32 MACs): 2 `LDM`, 4 `LDR`, 16 `AND`, 16
/// `SMLAD`, 2 loop: 40 instructions. The scaled (x4096) sums are taken over
/// chunks of at most 16 blocks ([`super::fast::CHUNK`] weights), each
/// shifted back into `acc`.
///
/// # Safety
/// `n >= 1`; `r0[0..8 * n]`, `r1[0..8 * n]` readable; `col[0..8 * n]`
/// readable and 4-byte aligned; `acc` valid for reads and writes. Leaves
/// `sp` as it found it.
#[unsafe(naked)]
pub unsafe extern "C" fn dot2x1_w4(r0: *const u8, r1: *const u8, col: *const u32, n: usize, acc: *mut [i32; 2]) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "sub sp, sp, #4",
        // Chunk loop: r3 blocks left, at most 16 (256 weights) this chunk.
        "3:",
        "cmp r3, #16",
        "ite hi",
        "movhi lr, #16",
        "movls lr, r3",
        "sub r3, r3, lr",
        "str r3, [sp]",
        "mov r3, lr",
        "movs r4, #0",
        "movs r5, #0",
        "mov r12, #0xf000f000",
        "2:",
        "ldm r2!, {{r6-r9}}",
        "ldr r10, [r0], #4",
        "and lr, r12, r10, lsl #12",
        "smlad r4, lr, r6, r4",
        "and lr, r12, r10, lsl #4",
        "smlad r4, lr, r7, r4",
        "and lr, r12, r10, lsl #8",
        "smlad r4, lr, r8, r4",
        "and lr, r12, r10",
        "smlad r4, lr, r9, r4",
        "ldr r10, [r1], #4",
        "and lr, r12, r10, lsl #12",
        "smlad r5, lr, r6, r5",
        "and lr, r12, r10, lsl #4",
        "smlad r5, lr, r7, r5",
        "and lr, r12, r10, lsl #8",
        "smlad r5, lr, r8, r5",
        "and lr, r12, r10",
        "smlad r5, lr, r9, r5",
        "ldm r2!, {{r6-r9}}",
        "ldr r10, [r0], #4",
        "and lr, r12, r10, lsl #12",
        "smlad r4, lr, r6, r4",
        "and lr, r12, r10, lsl #4",
        "smlad r4, lr, r7, r4",
        "and lr, r12, r10, lsl #8",
        "smlad r4, lr, r8, r4",
        "and lr, r12, r10",
        "smlad r4, lr, r9, r4",
        "ldr r10, [r1], #4",
        "and lr, r12, r10, lsl #12",
        "smlad r5, lr, r6, r5",
        "and lr, r12, r10, lsl #4",
        "smlad r5, lr, r7, r5",
        "and lr, r12, r10, lsl #8",
        "smlad r5, lr, r8, r5",
        "and lr, r12, r10",
        "smlad r5, lr, r9, r5",
        "subs r3, r3, #1",
        "bne 2b",
        // acc += chunk sums >> 12 (exact: every term is a multiple of 2^12).
        "ldr lr, [sp, #40]",
        "ldm lr, {{r6, r7}}",
        "add r6, r6, r4, asr #12",
        "add r7, r7, r5, asr #12",
        "stm lr, {{r6, r7}}",
        "ldr r3, [sp]",
        "cmp r3, #0",
        "bne 3b",
        "add sp, sp, #4",
        "pop {{r4-r11, pc}}",
    )
}

/// The 2-bit form of [`dot2x1_w8`], exact sums (x16384 inside, chunks of 16
/// groups, as [`dot2x1_w4`]) over `n`
/// four-byte groups of sixteen weights of each row (eight column words per
/// group); mask `0xc000c000`. Per group (32 MACs): 2 `LDM`, 2 `LDR`,
/// 16 `AND`, 16 `SMLAD`, 2 loop: 38 instructions.
///
/// # Safety
/// `n >= 1`; `r0[0..4 * n]`, `r1[0..4 * n]` readable; `col[0..8 * n]`
/// readable and 4-byte aligned.
#[unsafe(naked)]
pub unsafe extern "C" fn dot2x1_w2(r0: *const u8, r1: *const u8, col: *const u32, n: usize, acc: *mut [i32; 2]) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        "sub sp, sp, #4",
        // Chunk loop: r3 blocks left, at most 16 (256 weights) this chunk.
        "3:",
        "cmp r3, #16",
        "ite hi",
        "movhi lr, #16",
        "movls lr, r3",
        "sub r3, r3, lr",
        "str r3, [sp]",
        "mov r3, lr",
        "movs r4, #0",
        "movs r5, #0",
        "mov r12, #0xc000c000",
        "2:",
        "ldr r10, [r0], #4",
        "ldr r11, [r1], #4",
        "ldm r2!, {{r6-r9}}",
        "and lr, r12, r10, lsl #14",
        "smlad r4, lr, r6, r4",
        "and lr, r12, r10, lsl #6",
        "smlad r4, lr, r7, r4",
        "and lr, r12, r10, lsl #12",
        "smlad r4, lr, r8, r4",
        "and lr, r12, r10, lsl #4",
        "smlad r4, lr, r9, r4",
        "and lr, r12, r11, lsl #14",
        "smlad r5, lr, r6, r5",
        "and lr, r12, r11, lsl #6",
        "smlad r5, lr, r7, r5",
        "and lr, r12, r11, lsl #12",
        "smlad r5, lr, r8, r5",
        "and lr, r12, r11, lsl #4",
        "smlad r5, lr, r9, r5",
        "ldm r2!, {{r6-r9}}",
        "and lr, r12, r10, lsl #10",
        "smlad r4, lr, r6, r4",
        "and lr, r12, r10, lsl #2",
        "smlad r4, lr, r7, r4",
        "and lr, r12, r10, lsl #8",
        "smlad r4, lr, r8, r4",
        "and lr, r12, r10",
        "smlad r4, lr, r9, r4",
        "and lr, r12, r11, lsl #10",
        "smlad r5, lr, r6, r5",
        "and lr, r12, r11, lsl #2",
        "smlad r5, lr, r7, r5",
        "and lr, r12, r11, lsl #8",
        "smlad r5, lr, r8, r5",
        "and lr, r12, r11",
        "smlad r5, lr, r9, r5",
        "subs r3, r3, #1",
        "bne 2b",
        // acc += chunk sums >> 14 (exact: every term is a multiple of 2^14).
        "ldr lr, [sp, #40]",
        "ldm lr, {{r6, r7}}",
        "add r6, r6, r4, asr #14",
        "add r7, r7, r5, asr #14",
        "stm lr, {{r6, r7}}",
        "ldr r3, [sp]",
        "cmp r3, #0",
        "bne 3b",
        "add sp, sp, #4",
        "pop {{r4-r11, pc}}",
    )
}
