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
//! (`SMLAD`, `SXTB16`): it reads only its input registers, writes only its
//! output register, touches no memory, no stack and no flags other than the
//! sticky Q flag (`SMLAD` sets Q on overflow; nothing in this crate reads
//! Q). So the blocks are sound for any input values, and are declared
//! `pure, nomem, nostack`.
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
}
