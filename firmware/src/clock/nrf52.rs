//! nRF52840 (nRF52840-DK): the CPU always runs at 64 MHz (nRF52840 PS
//! §5.4); the set-up starts the 32 MHz crystal (HFXO) so that the clock is
//! crystal-accurate rather than the +-1.5 % internal oscillator, and turns on
//! the NVMC instruction cache (ICACHECNF.CACHEEN) per the board file. Flash
//! has no wait-state setting (`flash_wait_states` is 0).
//!
//! Timing pin: GPIO port `PIN_PORT` (P0 or P1) pin `PIN_NUMBER`, through
//! OUTSET/OUTCLR.

use super::reg;
use crate::board;
use core::convert::Infallible;

const CLOCK_TASKS_HFCLKSTART: usize = 0x4000_0000;
const CLOCK_EVENTS_HFCLKSTARTED: usize = 0x4000_0100;
const NVMC_ICACHECNF: usize = 0x4001_E540;
const P0: usize = 0x5000_0000;
const P1: usize = 0x5000_0300;

const _: () = assert!(board::CLOCK_HZ == 64_000_000, "the nRF52840 runs at 64 MHz only");
const _: () = assert!(board::FLASH_WAIT_STATES == 0, "the nRF52840 has no flash wait-state setting");

pub fn init_clock() {
    reg::write(CLOCK_EVENTS_HFCLKSTARTED, 0);
    reg::write(CLOCK_TASKS_HFCLKSTART, 1);
    reg::wait(CLOCK_EVENTS_HFCLKSTARTED, 1, 1);
    reg::modify(NVMC_ICACHECNF, 1, board::ICACHE as u32);
}

/// A GPIO output pin.
pub struct Pin {
    base: usize,
    bit: u32,
}

impl Pin {
    pub fn init(port: u32, pin: u32) -> Self {
        let base = if port == 0 { P0 } else { P1 };
        let p = Self { base, bit: pin };
        reg::write(base + 0x50C, 1 << pin); // OUTCLR
        reg::write(base + 0x518, 1 << pin); // DIRSET
        p
    }
    pub fn set_high(&mut self) -> Result<(), Infallible> {
        reg::write(self.base + 0x508, 1 << self.bit); // OUTSET
        Ok(())
    }
    pub fn set_low(&mut self) -> Result<(), Infallible> {
        reg::write(self.base + 0x50C, 1 << self.bit); // OUTCLR
        Ok(())
    }
}
