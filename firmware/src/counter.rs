//! Counting what a piece of code costs, with the board's counter.
//!
//! # `icount-timer` (QEMU)
//! QEMU does not emulate the DWT cycle counter. Under
//! `-icount shift=N,align=off,sleep=off` virtual time advances exactly 2^N ns
//! per executed instruction, and the CMSDK APB timer0 (0x4000_0000, a 32-bit
//! down-counter at `CLOCK_HZ`) runs on virtual time. So
//! `instructions = ticks * 1e9 / (CLOCK_HZ * 2^N)`, rounded; the unit is
//! [`CounterUnit::Instructions`], not cycles.
//!
//! Each measurement *restarts* the timer (a write to VALUE) instead of reading
//! a free-running one: QEMU then starts the tick grid at the instruction that
//! wrote VALUE, so the count of a given instruction sequence does not depend
//! on how many instructions ran before (for instance while polling the UART)
//! and is identical from run to run. With 2^N ns per instruction longer than a
//! tick (N >= 6 at 25 MHz) the conversion back to instructions is exact.
//!
//! A measurement longer than the counter's range (2^32 ticks) saturates to
//! `u32::MAX`: the timer's interrupt status flags the wrap.

use crate::board;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};
pub use releq_common::protocol::CounterUnit;

#[cfg(not(releq_counter = "icount-timer"))]
compile_error!("this firmware implements only the `icount-timer` counter; see boards/README.md");

const BASE: usize = 0x4000_0000;
const CTRL: *mut u32 = BASE as *mut u32;
const VALUE: *mut u32 = (BASE + 0x4) as *mut u32;
const RELOAD: *mut u32 = (BASE + 0x8) as *mut u32;
const INTSTATUS: *mut u32 = (BASE + 0xC) as *mut u32;
const CTRL_ENABLE: u32 = 1 << 0;
const CTRL_IRQ_ENABLE: u32 = 1 << 3;

/// What counts mean on this board.
pub const UNIT: CounterUnit = CounterUnit::Instructions;

/// The counter, owned by the serve loop.
pub struct Counter {
    /// Count of an empty measured interval, in [`UNIT`].
    overhead: u32,
}

impl Counter {
    /// Start the timer and measure the overhead of an empty interval.
    pub fn init() -> Self {
        // SAFETY: fixed MMIO registers of CMSDK timer0, used only here. The
        // IRQ enable only latches INTSTATUS on a wrap; the NVIC line stays
        // disabled, so no interrupt is taken.
        unsafe {
            write_volatile(CTRL, 0);
            write_volatile(RELOAD, u32::MAX);
            write_volatile(VALUE, u32::MAX);
            write_volatile(INTSTATUS, 1);
            write_volatile(CTRL, CTRL_ENABLE | CTRL_IRQ_ENABLE);
        }
        let mut c = Self { overhead: 0 };
        c.overhead = c.measure_raw(|| {});
        c
    }

    /// Count of an empty measured interval (already subtracted by [`Self::measure`]).
    pub fn overhead(&self) -> u32 {
        self.overhead
    }

    /// Count `f`, the overhead of an empty interval not subtracted.
    #[inline(always)]
    pub fn measure_raw(&self, f: impl FnOnce()) -> u32 {
        // SAFETY: see `init`.
        unsafe {
            write_volatile(INTSTATUS, 1);
            write_volatile(VALUE, u32::MAX);
        }
        compiler_fence(Ordering::SeqCst);
        f();
        compiler_fence(Ordering::SeqCst);
        // SAFETY: see `init`.
        let (value, wrapped) = unsafe { (read_volatile(VALUE), read_volatile(INTSTATUS) & 1 != 0) };
        if wrapped {
            return u32::MAX;
        }
        ticks_to_units(u32::MAX - value)
    }

    /// Count `f`, overhead subtracted.
    #[inline(always)]
    pub fn measure(&self, f: impl FnOnce()) -> u32 {
        let raw = self.measure_raw(f);
        if raw == u32::MAX {
            return raw;
        }
        raw.saturating_sub(self.overhead)
    }
}

/// Timer ticks to instructions, rounded to nearest.
pub fn ticks_to_units(ticks: u32) -> u32 {
    // 1e9 / CLOCK_HZ ns per tick, 2^N ns per instruction.
    let den = (board::CLOCK_HZ as u64) << board::ICOUNT_SHIFT;
    let num = ticks as u64 * 1_000_000_000;
    ((num * 2 + den) / (den * 2)).min(u32::MAX as u64) as u32
}
