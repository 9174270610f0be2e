//! The `dwt` counter: the DWT cycle counter (CYCCNT) of a Cortex-M3/M4/M7,
//! counting core clock **cycles**.
//!
//! TRCENA (DEMCR) is 0 at boot when no debugger set it, so [`Counter::init`]
//! sets it; on a Cortex-M7 the DWT is also unlocked (its lock access
//! register). CYCCNT is 32 bits and free-running: a measurement is the
//! wrapping difference of two reads, exact below 2^32 cycles (8.9 s at
//! 480 MHz, 23.8 s at 180 MHz); a longer one cannot be told from a shorter
//! one and is not detected. QEMU does not emulate CYCCNT (it reads 0), so
//! this counter is only for hardware: compiled in CI, run on the boards.

use cortex_m::peripheral::DWT;
use releq_common::protocol::CounterUnit;

/// What counts mean on this board.
pub const UNIT: CounterUnit = CounterUnit::Cycles;

/// The counter, owned by the serve loop.
pub struct Counter {
    overhead: u32,
}

impl Counter {
    /// Enable trace and the cycle counter, and measure the overhead of an
    /// empty interval.
    pub fn init() -> Self {
        // SAFETY: called once at boot; DCB and DWT are used by nothing else
        // (no other code takes the core peripherals).
        let (mut dcb, mut dwt) = unsafe {
            let p = cortex_m::Peripherals::steal();
            (p.DCB, p.DWT)
        };
        dcb.enable_trace();
        DWT::unlock();
        dwt.set_cycle_count(0);
        dwt.enable_cycle_counter();
        let mut c = Self { overhead: 0 };
        c.overhead = (0..8).map(|_| c.measure_raw(|| {})).min().unwrap_or(0);
        c
    }

    /// Count of an empty measured interval (already subtracted by [`Self::measure`]).
    pub fn overhead(&self) -> u32 {
        self.overhead
    }

    /// Cycles of `f`, the overhead of an empty interval not subtracted.
    #[inline(never)]
    pub fn measure_raw(&self, mut f: impl FnMut()) -> u32 {
        let start = DWT::cycle_count();
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        f();
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        DWT::cycle_count().wrapping_sub(start)
    }

    /// Cycles of `f`, overhead subtracted.
    #[inline(always)]
    pub fn measure(&self, f: impl FnMut()) -> u32 {
        self.measure_raw(f).saturating_sub(self.overhead)
    }
}
