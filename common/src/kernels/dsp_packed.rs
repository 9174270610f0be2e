//! [`PackedOps`] on ARMv7E-M: `USADA8` for the column sums.
//!
//! # Safety
//! `USADA8` is one data-processing instruction on registers: it reads its
//! input registers, writes its output register, touches no memory, stack
//! or flags, so the block is sound for any inputs (`pure, nomem, nostack,
//! preserves_flags`).
#![allow(unsafe_code)]

use super::dsp::Dsp;
use super::packed::PackedOps;
use core::arch::asm;

impl PackedOps for Dsp {
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
}
