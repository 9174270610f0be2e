//! The core clock and the timing pin of a real board, per chip family (the
//! board file's `hardware.family`, the `releq_family` cfg). Each family's
//! module sets the core clock to the board's `clock_hz` by direct,
//! documented register writes (no HAL: about 50 lines a family), with the
//! board's flash wait states and caches, and drives the board's
//! `hardware.timing_pin` as an embedded-hal [`OutputPin`] that the serve loop
//! raises for the length of each inference, so a logic analyser can check
//! the counter against the clock.
//!
//! QEMU boards have no `[hardware]` table: nothing to set up, no pin.
//!
//! Every family is compiled in CI (`cargo xtask test` builds every board);
//! none has run on its board yet (see `docs/boards.md`).

#[cfg(releq_family = "nrf52")]
mod nrf52;
#[cfg(releq_family = "rp2040")]
mod rp2040;
#[cfg(releq_family = "stm32f4")]
mod stm32f4;
#[cfg(releq_family = "stm32h7")]
mod stm32h7;
#[cfg(releq_family = "stm32l4")]
mod stm32l4;

#[cfg(releq_family = "nrf52")]
use nrf52 as family;
#[cfg(releq_family = "rp2040")]
use rp2040 as family;
#[cfg(releq_family = "stm32f4")]
use stm32f4 as family;
#[cfg(releq_family = "stm32h7")]
use stm32h7 as family;
#[cfg(releq_family = "stm32l4")]
use stm32l4 as family;

use core::convert::Infallible;
#[allow(unused_imports)]
pub use embedded_hal::digital::OutputPin;

/// Set the core clock (and flash, caches) for the board. Call once, first.
pub fn init() {
    #[cfg(releq_hardware)]
    family::init_clock();
}

/// The timing pin, or a pin that does nothing on boards without one.
pub struct TimingPin {
    #[cfg(releq_pin)]
    pin: family::Pin,
}

impl TimingPin {
    /// Configure the board's timing pin as a low output.
    pub fn init() -> Self {
        Self {
            #[cfg(releq_pin)]
            pin: family::Pin::init(crate::board::PIN_PORT, crate::board::PIN_NUMBER),
        }
    }
}

impl embedded_hal::digital::ErrorType for TimingPin {
    type Error = Infallible;
}

impl OutputPin for TimingPin {
    fn set_high(&mut self) -> Result<(), Infallible> {
        #[cfg(releq_pin)]
        self.pin.set_high()?;
        Ok(())
    }
    fn set_low(&mut self) -> Result<(), Infallible> {
        #[cfg(releq_pin)]
        self.pin.set_low()?;
        Ok(())
    }
}

/// Volatile register access for the family modules.
#[allow(dead_code)]
mod reg {
    use core::ptr::{read_volatile, write_volatile};

    /// Read the register at `addr`.
    #[inline(always)]
    pub fn read(addr: usize) -> u32 {
        // SAFETY: the family modules pass only addresses of memory-mapped
        // registers of their chip, from its reference manual; every caller
        // runs before or outside the code that could use them otherwise.
        unsafe { read_volatile(addr as *const u32) }
    }

    /// Write the register at `addr`.
    #[inline(always)]
    pub fn write(addr: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { write_volatile(addr as *mut u32, value) }
    }

    /// Read-modify-write: clear `clear`, then set `set`.
    #[inline(always)]
    pub fn modify(addr: usize, clear: u32, set: u32) {
        write(addr, (read(addr) & !clear) | set);
    }

    /// Wait until `(reg & mask) == value`.
    #[inline(always)]
    pub fn wait(addr: usize, mask: u32, value: u32) {
        while read(addr) & mask != value {}
    }
}
