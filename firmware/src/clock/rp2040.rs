//! RP2040 (Raspberry Pi Pico): 125 MHz from the 12 MHz crystal (RP2040
//! datasheet §2.16 XOSC, §2.18 PLL, §2.15 clocks).
//!
//! XOSC on (1-15 MHz range, about 1 ms start-up delay); PLL_SYS: 12 MHz /
//! REFDIV 1 x FBDIV 125 = 1500 MHz VCO, / POSTDIV1 6 / POSTDIV2 2 =
//! 125 MHz; clk_ref from XOSC, then clk_sys glitch-free from clk_ref to the
//! PLL (AUXSRC = pll_sys, SRC = aux). Code runs from external flash through
//! the XIP cache, which the boot ROM and boot2 (`rp2040-boot2`, W25Q080)
//! leave enabled; there are no flash wait states to set (`flash_wait_states`
//! is 0). The boot2 image sits in the first 256 bytes of flash (the
//! `.boot2` section; `build.rs` adds the BOOT2 region to `memory.x`).
//!
//! Timing pin: GPIO `PIN_NUMBER` (bank 0) as a SIO output.

use super::reg;
use crate::board;
use core::convert::Infallible;

/// The second-stage bootloader for the Pico's W25Q080-compatible flash.
#[link_section = ".boot2"]
#[used]
pub static BOOT2: [u8; 256] = rp2040_boot2::BOOT_LOADER_W25Q080;

const XOSC: usize = 0x4002_4000;
const PLL_SYS: usize = 0x4002_8000;
const CLOCKS: usize = 0x4000_8000;
const RESETS: usize = 0x4000_C000;
const SET: usize = 0x2000; // atomic bit-set alias
const CLR: usize = 0x3000; // atomic bit-clear alias
const IO_BANK0: usize = 0x4001_4000;
const SIO: usize = 0xD000_0000;

const XOSC_HZ: u32 = 12_000_000;
const FBDIV: u32 = 125;
const POSTDIV1: u32 = 6;
const POSTDIV2: u32 = 2;
const _: () = assert!(XOSC_HZ * FBDIV / POSTDIV1 / POSTDIV2 == board::CLOCK_HZ, "PLL_SYS does not give clock_hz");
const _: () = assert!(board::FLASH_WAIT_STATES == 0, "the RP2040 has no flash wait-state setting");

/// Reset blocks (whatever state a debugger or an earlier run left them
/// in), take them out of reset and wait until they are.
fn unreset(bits: u32) {
    reg::write(RESETS + SET, bits);
    reg::write(RESETS + CLR, bits);
    reg::wait(RESETS + 0x8, bits, bits); // RESET_DONE
}

pub fn init_clock() {
    reg::write(XOSC + 0x0C, (XOSC_HZ / 1000).div_ceil(256)); // STARTUP: ~1 ms
    reg::write(XOSC, (0xFAB << 12) | 0xAA0); // CTRL: ENABLE, 1-15 MHz
    reg::wait(XOSC + 0x04, 1 << 31, 1 << 31); // STATUS.STABLE
                                              // clk_ref from XOSC (SRC = 2), and clk_sys back on clk_ref while the PLL
                                              // is changed.
    reg::modify(CLOCKS + 0x30, 0b11, 0b10);
    reg::wait(CLOCKS + 0x38, 0b111, 1 << 2);
    reg::modify(CLOCKS + 0x3C, 1, 0);
    reg::wait(CLOCKS + 0x44, 0b11, 1);
    unreset(1 << 12); // pll_sys
    reg::write(PLL_SYS, 1); // CS.REFDIV = 1
    reg::write(PLL_SYS + 0x08, FBDIV); // FBDIV_INT
    reg::modify(PLL_SYS + 0x04, (1 << 0) | (1 << 5), 0); // PWR: PD, VCOPD off
    reg::wait(PLL_SYS, 1 << 31, 1 << 31); // CS.LOCK
    reg::write(PLL_SYS + 0x0C, (POSTDIV1 << 16) | (POSTDIV2 << 12)); // PRIM
    reg::modify(PLL_SYS + 0x04, 1 << 3, 0); // PWR: POSTDIVPD off
                                            // clk_sys: AUXSRC = pll_sys (0), then SRC = clksrc_clk_sys_aux (1).
    reg::modify(CLOCKS + 0x3C, 0b111 << 5, 0);
    reg::modify(CLOCKS + 0x3C, 1, 1);
    reg::wait(CLOCKS + 0x44, 0b11, 1 << 1);
}

/// A GPIO output pin (SIO).
pub struct Pin {
    mask: u32,
}

impl Pin {
    pub fn init(_port: u32, pin: u32) -> Self {
        unreset((1 << 5) | (1 << 8)); // io_bank0, pads_bank0
        reg::write(IO_BANK0 + 8 * pin as usize + 4, 5); // GPIOn_CTRL.FUNCSEL = SIO
        let p = Self { mask: 1 << pin };
        reg::write(SIO + 0x18, p.mask); // GPIO_OUT_CLR
        reg::write(SIO + 0x24, p.mask); // GPIO_OE_SET
        p
    }
    pub fn set_high(&mut self) -> Result<(), Infallible> {
        reg::write(SIO + 0x14, self.mask); // GPIO_OUT_SET
        Ok(())
    }
    pub fn set_low(&mut self) -> Result<(), Infallible> {
        reg::write(SIO + 0x18, self.mask); // GPIO_OUT_CLR
        Ok(())
    }
}
