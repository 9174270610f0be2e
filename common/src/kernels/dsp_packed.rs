//! [`PackedOps`] on ARMv7E-M: `USADA8` for the column sums and
//! hand-scheduled loops for the packed products (the compiler spills the
//! row pointers of the 2 x 2 loop).
//!
//! # Safety
//! `USADA8` is one data-processing instruction on registers: it reads its
//! input registers, writes its output register, touches no memory, stack
//! or flags, so the block is sound for any inputs (`pure, nomem, nostack,
//! preserves_flags`). The two loops are naked functions following the
//! AAPCS (every callee-saved register they use is saved and restored); each
//! reads exactly the bytes and words its safety section lists, and the
//! safe wrappers check those bounds before calling.
#![allow(unsafe_code)]

use super::dsp::Dsp;
use super::packed::{Extract, OutClamp, PackedOps, ShortRq};
use core::arch::asm;

impl PackedOps for Dsp {
    #[inline(always)]
    fn store_short(acc: &[i32], out: &mut [i8], q: &[ShortRq], c: &OutClamp) -> bool {
        let n = acc.len();
        if n == 0 || out.len() < n || q.len() < n {
            return false;
        }
        // A clamp that is the whole signed `b`-bit range takes one `SSAT`.
        let top = c.hi.wrapping_add(1);
        let full = top > 0 && top.count_ones() == 1 && c.lo == -top;
        let f = match (full, top) {
            (true, 2) => store_short_sat2,
            (true, 4) => store_short_sat3,
            (true, 8) => store_short_sat4,
            (true, 16) => store_short_sat5,
            (true, 32) => store_short_sat6,
            (true, 64) => store_short_sat7,
            (true, 128) => store_short_sat8,
            _ => store_short_clamp,
        };
        // SAFETY: `n >= 1`; `acc[..n]`, `q[..n]` are readable and
        // `out[..n]` writable (checked above); `c` is a live reference.
        unsafe { f(acc.as_ptr(), out.as_mut_ptr(), n, q.as_ptr(), c) };
        true
    }

    #[inline(always)]
    fn sum_bytes(v: u32, acc: u32) -> u32 {
        let r: u32;
        // SAFETY: see the module doc: one register-only instruction.
        unsafe {
            asm!("usada8 {r}, {v}, {z}, {a}", r = lateout(reg) r, v = in(reg) v, z = in(reg) 0u32, a = in(reg) acc,
                 options(pure, nomem, nostack, preserves_flags));
        }
        r
    }

    #[inline(always)]
    fn dot2x2(w: &[u32], n: usize, cols: &[u32], k: &Extract, out: &mut [i32; 4]) -> bool {
        if n == 0 || n % 2 != 0 || w.len() < 2 * n || cols.len() < 2 * n {
            return false;
        }
        let f = match (k.s, k.cap / 2) {
            (13, 113) => packed_dot2x2_s13,
            (12, 24) => packed_dot2x2_s12,
            (11, 5) => packed_dot2x2_s11,
            (11, 2) => packed_dot2x2_s11_p2,
            (11, 1) => packed_dot2x2_s11_p1,
            _ => return false,
        };
        // SAFETY: `n` is even and at least 2; `w[..2 * n]` and
        // `cols[..2 * n]` are in bounds (checked above) and `u32` slices
        // (word aligned, as `LDRD` needs); `out` is a live exclusive
        // reference to four words.
        unsafe { f(w.as_ptr(), cols.as_ptr(), n / 2, out) };
        true
    }

    #[inline(always)]
    fn dot4x1(rows: [&[u8]; 4], col: &[u32], k: &Extract, out: &mut [i32; 4]) -> bool {
        let n = rows[0].len();
        if n == 0 || k.cap == 0 || rows.iter().any(|r| r.len() != n) || col.len() < n {
            return false;
        }
        let ptrs = rows.map(|r| r.as_ptr());
        let p = Params::new(k, out);
        // SAFETY: `n >= 1`, `cap >= 1`; each of the four rows holds `n`
        // bytes and `col` at least `n` words (checked above); the table has
        // 256 entries; `p.out` is a live exclusive reference.
        unsafe { packed_dot4x1(&ptrs, col.as_ptr(), n, &p) };
        true
    }
}

/// What the loops read besides rows and columns, in the order they load it.
#[repr(C)]
struct Params<'a> {
    lut: *const u32,
    cap: usize,
    s: u32,
    mask: u32,
    out: &'a mut [i32; 4],
}

impl<'a> Params<'a> {
    fn new(k: &Extract, out: &'a mut [i32; 4]) -> Self {
        Self { lut: k.lut.as_ptr(), cap: k.cap, s: k.s, mask: k.mask, out }
    }
}

/// `out = [r0.c0, r0.c1, r1.c0, r1.c1]`: packed sums over `2 * pairs`
/// prepared weight words of two rows (interleaved: `w[2t]` row 0,
/// `w[2t + 1]` row 1) and column words `col[2t]`, `col[2t + 1]`, with the
/// field at bit `S` (`S` bits wide) extracted by one `UBFX` per total every
/// `P` pairs of words (`2 * P` at most the spacing's [`cap`](super::packed::cap)).
///
/// Inner loop, per two words of both rows (32 products): 4 `LDRD`, 8
/// `SMLAD`, `SUBS` + `BNE`: 14 instructions. The first pair of each
/// extraction uses `SMUAD` (no accumulators to clear); about 20 more per
/// extraction.
///
/// # Safety
/// `pairs >= 1`; `w[0..4 * pairs]` and `col[0..4 * pairs]` readable and
/// word aligned; `out[0..4]` writable.
macro_rules! packed_dot2x2 {
    ($name:ident, $s:literal, $p:literal) => {
        #[unsafe(naked)]
        unsafe extern "C" fn $name(w: *const u32, col: *const u32, pairs: usize, out: *mut [i32; 4]) {
            core::arch::naked_asm!(
                "push {{r4-r11, lr}}",
                // [sp, #0..16]: the four totals.
                "sub sp, sp, #16",
                "movs r4, #0",
                "movs r5, #0",
                "strd r4, r5, [sp]",
                "strd r4, r5, [sp, #8]",
                "1:",
                "movs r12, #{p}",
                "cmp r2, r12",
                "it lo",
                "movlo r12, r2",
                "subs r2, r2, r12",
                "ldrd r8, r9, [r0], #8",
                "ldrd r10, r11, [r1], #8",
                "smuad r4, r8, r10",
                "smuad r5, r8, r11",
                "smuad r6, r9, r10",
                "smuad r7, r9, r11",
                "ldrd r8, r9, [r0], #8",
                "ldrd r10, r11, [r1], #8",
                "smlad r4, r8, r10, r4",
                "smlad r5, r8, r11, r5",
                "smlad r6, r9, r10, r6",
                "smlad r7, r9, r11, r7",
                "subs r12, r12, #1",
                "beq 3f",
                "2:",
                "ldrd r8, r9, [r0], #8",
                "ldrd r10, r11, [r1], #8",
                "smlad r4, r8, r10, r4",
                "smlad r5, r8, r11, r5",
                "smlad r6, r9, r10, r6",
                "smlad r7, r9, r11, r7",
                "ldrd r8, r9, [r0], #8",
                "ldrd r10, r11, [r1], #8",
                "smlad r4, r8, r10, r4",
                "smlad r5, r8, r11, r5",
                "smlad r6, r9, r10, r6",
                "smlad r7, r9, r11, r7",
                "subs r12, r12, #1",
                "bne 2b",
                "3:",
                "ldm sp, {{r8-r11}}",
                "ubfx r4, r4, #{s}, #{s}",
                "add r8, r8, r4",
                "ubfx r5, r5, #{s}, #{s}",
                "add r9, r9, r5",
                "ubfx r6, r6, #{s}, #{s}",
                "add r10, r10, r6",
                "ubfx r7, r7, #{s}, #{s}",
                "add r11, r11, r7",
                "stm sp, {{r8-r11}}",
                "cmp r2, #0",
                "bne 1b",
                "ldm sp, {{r4-r7}}",
                "stm r3, {{r4-r7}}",
                "add sp, sp, #16",
                "pop {{r4-r11, pc}}",
                s = const $s,
                p = const $p,
            )
        }
    };
}

/// [`packed_dot2x2!`] with the four totals in registers and each extraction
/// period (`$p` pairs of words, at most the spacing's
/// [`cap`](super::packed::cap) `SMLAD`s) unrolled, for the short periods
/// (4-bit weights with 4-bit inputs: 1 pair; with 3-bit inputs: 2 pairs;
/// 11-bit spacing: 5 pairs).
/// Per period: `4 * $p` `LDRD`, `8 * $p` `SMUAD`/`SMLAD`, 4 `UBFX` + 4
/// `ADD`, `LDR` + `CMP` + `BNE` of the period's end: 35 instructions for
/// `$p = 2` (64 products), against 47 with the totals on the stack. The
/// pairs left over after whole periods (`pairs % $p`) run one per
/// extraction. Registers: `r2..r5` totals, `r6..r9` accumulators, `r10`,
/// `r11` weights, `r12`, `lr` columns; the stack holds the ends and `out`.
///
/// # Safety
/// As [`packed_dot2x2!`]: `pairs >= 1`; `w[0..4 * pairs]` and `col[0..4 *
/// pairs]` readable and word aligned; `out[0..4]` writable.
macro_rules! packed_dot2x2_regs {
    ($name:ident, $s:literal, $p:literal, $($more:literal),*) => {
        #[unsafe(naked)]
        unsafe extern "C" fn $name(w: *const u32, col: *const u32, pairs: usize, out: *mut [i32; 4]) {
            core::arch::naked_asm!(
                "push {{r4-r11, lr}}",
                // [sp]: end of the whole periods; [sp, #4]: end; [sp, #8]: out.
                "sub sp, sp, #16",
                "add r12, r0, r2, lsl #4",
                "movs lr, #{p}",
                "udiv r4, r2, lr",
                "mul r4, r4, lr",
                "add r4, r0, r4, lsl #4",
                "strd r4, r12, [sp]",
                "str r3, [sp, #8]",
                "movs r2, #0",
                "movs r3, #0",
                "movs r4, #0",
                "movs r5, #0",
                "ldr r10, [sp]",
                "cmp r0, r10",
                "beq 4f",
                "1:",
                "ldrd r10, r11, [r0], #8",
                "ldrd r12, lr, [r1], #8",
                "smuad r6, r10, r12",
                "smuad r7, r10, lr",
                "smuad r8, r11, r12",
                "smuad r9, r11, lr",
                "ldrd r10, r11, [r0], #8",
                "ldrd r12, lr, [r1], #8",
                "smlad r6, r10, r12, r6",
                "smlad r7, r10, lr, r7",
                "smlad r8, r11, r12, r8",
                "smlad r9, r11, lr, r9",
                $($more,)*
                "ubfx r10, r6, #{s}, #{s}",
                "add r2, r2, r10",
                "ubfx r10, r7, #{s}, #{s}",
                "add r3, r3, r10",
                "ubfx r10, r8, #{s}, #{s}",
                "add r4, r4, r10",
                "ubfx r10, r9, #{s}, #{s}",
                "add r5, r5, r10",
                "ldr r10, [sp]",
                "cmp r0, r10",
                "bne 1b",
                "4:",
                "ldr r10, [sp, #4]",
                "cmp r0, r10",
                "beq 5f",
                "3:",
                "ldrd r10, r11, [r0], #8",
                "ldrd r12, lr, [r1], #8",
                "smuad r6, r10, r12",
                "smuad r7, r10, lr",
                "smuad r8, r11, r12",
                "smuad r9, r11, lr",
                "ldrd r10, r11, [r0], #8",
                "ldrd r12, lr, [r1], #8",
                "smlad r6, r10, r12, r6",
                "smlad r7, r10, lr, r7",
                "smlad r8, r11, r12, r8",
                "smlad r9, r11, lr, r9",
                "ubfx r10, r6, #{s}, #{s}",
                "add r2, r2, r10",
                "ubfx r10, r7, #{s}, #{s}",
                "add r3, r3, r10",
                "ubfx r10, r8, #{s}, #{s}",
                "add r4, r4, r10",
                "ubfx r10, r9, #{s}, #{s}",
                "add r5, r5, r10",
                "ldr r10, [sp, #4]",
                "cmp r0, r10",
                "bne 3b",
                "5:",
                "ldr r10, [sp, #8]",
                "stm r10, {{r2-r5}}",
                "add sp, sp, #16",
                "pop {{r4-r11, pc}}",
                s = const $s,
                p = const $p,
            )
        }
    };
}

// Spacings and extraction periods (pairs of words: half of
// `packed::cap(wbits, in_bits)`): 2-bit weights with 2-, 3-, 4-bit inputs,
// 4-bit weights with 2-bit (the same period as 2 with 4), 3- and 4-bit inputs.
packed_dot2x2!(packed_dot2x2_s13, 13, 113);
packed_dot2x2!(packed_dot2x2_s12, 12, 24);
packed_dot2x2_regs!(
    packed_dot2x2_s11,
    11,
    5,
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9"
);
packed_dot2x2_regs!(
    packed_dot2x2_s11_p2,
    11,
    2,
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9",
    "ldrd r10, r11, [r0], #8",
    "ldrd r12, lr, [r1], #8",
    "smlad r6, r10, r12, r6",
    "smlad r7, r10, lr, r7",
    "smlad r8, r11, r12, r8",
    "smlad r9, r11, lr, r9"
);
// 4-bit weights with 4-bit inputs: an extraction after every pair of words
// (two `SMLAD`s per field), the totals in registers: 23 instructions per
// pair (32 products) against 24 with the totals on the stack.
packed_dot2x2_regs!(packed_dot2x2_s11_p1, 11, 1,);

/// `out[i] = rows[i] . col`: packed sums over `n` weight bytes of each of
/// four rows (each byte spaced through `p.lut`) with column word `col[t]`
/// for byte `t`, extracted every `p.cap` bytes and summed.
///
/// Inner loop, per byte of the four rows (16 products): 1 `LDR` (column),
/// 4 `LDRB`, 4 `LDR` (table), 4 `SMLAD`, `SUBS` + `BNE`: 15 instructions;
/// about 30 more per extraction.
///
/// # Safety
/// `n >= 1`, `p.cap >= 1`; `rows[i][0..n]` readable for each `i`;
/// `col[0..n]` readable and word aligned; `p.lut[0..256]` readable.
#[unsafe(naked)]
unsafe extern "C" fn packed_dot4x1(rows: *const [*const u8; 4], col: *const u32, n: usize, p: *const Params<'_>) {
    core::arch::naked_asm!(
        "push {{r4-r11, lr}}",
        // [sp, #0..16]: totals; [sp, #16]: bytes left after this chunk;
        // [sp, #20]: `p`.
        "sub sp, sp, #24",
        "mov r8, r1",
        "mov r10, r2",
        "str r3, [sp, #20]",
        "ldr r9, [r3]",
        "movs r4, #0",
        "movs r5, #0",
        "strd r4, r5, [sp]",
        "strd r4, r5, [sp, #8]",
        "ldm r0, {{r0-r3}}",
        "1:",
        "ldr r12, [sp, #20]",
        "ldr r12, [r12, #4]",
        "cmp r10, r12",
        "it lo",
        "movlo r12, r10",
        "sub r10, r10, r12",
        "str r10, [sp, #16]",
        "mov r10, r12",
        "movs r4, #0",
        "movs r5, #0",
        "movs r6, #0",
        "movs r7, #0",
        "2:",
        "ldr r11, [r8], #4",
        "ldrb r12, [r0], #1",
        "ldrb lr, [r1], #1",
        "ldr r12, [r9, r12, lsl #2]",
        "ldr lr, [r9, lr, lsl #2]",
        "smlad r4, r12, r11, r4",
        "smlad r5, lr, r11, r5",
        "ldrb r12, [r2], #1",
        "ldrb lr, [r3], #1",
        "ldr r12, [r9, r12, lsl #2]",
        "ldr lr, [r9, lr, lsl #2]",
        "smlad r6, r12, r11, r6",
        "smlad r7, lr, r11, r7",
        "subs r10, r10, #1",
        "bne 2b",
        "ldr r12, [sp, #20]",
        "ldrd r12, lr, [r12, #8]",
        "asr r4, r4, r12",
        "and r4, r4, lr",
        "asr r5, r5, r12",
        "and r5, r5, lr",
        "asr r6, r6, r12",
        "and r6, r6, lr",
        "asr r7, r7, r12",
        "and r7, r7, lr",
        "ldrd r12, lr, [sp]",
        "add r12, r12, r4",
        "add lr, lr, r5",
        "strd r12, lr, [sp]",
        "ldrd r12, lr, [sp, #8]",
        "add r12, r12, r6",
        "add lr, lr, r7",
        "strd r12, lr, [sp, #8]",
        "ldr r10, [sp, #16]",
        "cmp r10, #0",
        "bne 1b",
        "ldr r12, [sp, #20]",
        "ldr r12, [r12, #16]",
        "ldm sp, {{r4-r7}}",
        "stm r12, {{r4-r7}}",
        "add sp, sp, #24",
        "pop {{r4-r11, pc}}",
    )
}

/// The store loop of [`PackedOps::store_short`]: per output one `LDR` of
/// the accumulator, one `LDM` of its [`ShortRq`], `LSL` (by `pre`) +
/// `SMMULR`, the
/// rounding add (`ADD`, `SUB` with `LSR #31`), `ASR`, the zero point, the
/// clamp (`$clamp`: one `SSAT`, or two compare-and-moves) and `STRB` with
/// post-increment, `SUBS` + `BNE`: 13 instructions with `SSAT`, 17
/// without.
///
/// # Safety
/// `n >= 1`; `acc[0..n]` and `q[0..n]` readable (`i32`, `ShortRq` are
/// word-aligned, as `LDM` needs); `out[0..n]` writable; `c` readable. The
/// values are not safety conditions (wrong ones give wrong outputs).
macro_rules! store_short {
    ($name:ident, $($clamp:literal),+) => {
        /// See [`store_short`].
        ///
        /// # Safety
        /// As [`store_short`].
        #[unsafe(naked)]
        unsafe extern "C" fn $name(acc: *const i32, out: *mut i8, n: usize, q: *const ShortRq, c: &OutClamp) {
            core::arch::naked_asm!(
                "push {{r4-r11, lr}}",
                "ldr r12, [sp, #36]",
                "ldm r12, {{r7, r8, r9}}",
                "2:",
                "ldr r10, [r0], #4",
                "ldm r3!, {{r4, r5, r6, r12}}",
                "lsl r10, r10, r12",
                "smmulr r10, r10, r4",
                "add r11, r10, r5",
                "sub r11, r11, r10, lsr #31",
                "asr r11, r11, r6",
                "add r11, r11, r7",
                $($clamp,)+
                "strb r11, [r1], #1",
                "subs r2, r2, #1",
                "bne 2b",
                "pop {{r4-r11, pc}}",
            )
        }
    };
}

store_short!(store_short_sat2, "ssat r11, #2, r11");
store_short!(store_short_sat3, "ssat r11, #3, r11");
store_short!(store_short_sat4, "ssat r11, #4, r11");
store_short!(store_short_sat5, "ssat r11, #5, r11");
store_short!(store_short_sat6, "ssat r11, #6, r11");
store_short!(store_short_sat7, "ssat r11, #7, r11");
store_short!(store_short_sat8, "ssat r11, #8, r11");
store_short!(store_short_clamp, "cmp r11, r8", "it lt", "movlt r11, r8", "cmp r11, r9", "it gt", "movgt r11, r9");
