//! The `dwt` counter: the DWT cycle counter (CYCCNT) of a Cortex-M3/M4/M7,
//! counting core clock **cycles**, its wraps detected.
//!
//! TRCENA (DEMCR) is 0 at boot when no debugger set it, so [`Counter::init`]
//! sets it; on a Cortex-M7 the DWT is also unlocked (its lock access
//! register). CYCCNT is 32 bits and free-running, so the wrapping
//! difference of two reads is exact only modulo 2^32 cycles (8.9 s at
//! 480 MHz, 23.8 s at 180 MHz), and the DWT raises no interrupt when it
//! wraps. So SysTick runs beside it with its wraps counted
//! ([`super::systick`]: every 2^24 cycles): its 64-bit count of the same
//! interval, exact to the few dozen cycles of the handler runs inside it,
//! says how many times CYCCNT wrapped ([`full_count`]). A measurement of
//! 2^32 cycles or more saturates to `u32::MAX`, as on the other counters,
//! instead of reporting the remainder as a short count. The price: each
//! SysTick wrap inside a measured interval adds its handler's few dozen
//! cycles to it (about 0.0003 % of the interval), so two runs of a layer
//! that straddle a different number of wraps can differ by that much.
//!
//! QEMU does not emulate CYCCNT (it reads 0), so this counter is only for
//! hardware: compiled in CI, not yet run on a board; [`full_count`] is
//! checked at compile time (the assertions below).

use super::systick;
use cortex_m::peripheral::DWT;
use releq_common::protocol::CounterUnit;

/// What counts mean on this board.
pub const UNIT: CounterUnit = CounterUnit::Cycles;

/// The interval's cycles from CYCCNT's wrapping difference `low` (exact
/// modulo 2^32) and SysTick's count `coarse` of the same interval (64 bits,
/// off by far less than 2^31): the `low + k * 2^32` nearest `coarse`,
/// saturated to `u32::MAX`.
pub const fn full_count(low: u32, coarse: u64) -> u32 {
    const HALF: u64 = 1 << 31;
    let wraps = (coarse.saturating_sub(low as u64) + HALF) >> 32;
    if wraps == 0 {
        low
    } else {
        u32::MAX
    }
}

// Checked where it is compiled (there is no host test of the firmware).
const _: () = {
    // No wrap: CYCCNT's difference is the count; SysTick a little off either way.
    assert!(full_count(1_000, 1_000) == 1_000);
    assert!(full_count(1_000, 900) == 1_000);
    assert!(full_count(1_000, 1_100) == 1_000);
    assert!(full_count(u32::MAX - 5, u32::MAX as u64 + 40) == u32::MAX - 5);
    // One wrap (4,294,967,296 + 1,000 cycles): CYCCNT alone says 1,000.
    assert!(full_count(1_000, (1 << 32) + 1_000 + 60) == u32::MAX);
    assert!(full_count(1_000, (1 << 32) + 900) == u32::MAX);
    // Many wraps.
    assert!(full_count(7, 10 << 32) == u32::MAX);
};

/// The counter, owned by the serve loop.
pub struct Counter {
    overhead: u32,
}

impl Counter {
    /// Start SysTick with its wraps counted, enable trace and the cycle
    /// counter, and measure the overhead of an empty interval.
    pub fn init() -> Self {
        systick::start();
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

    /// Cycles of `f`, the overhead of an empty interval not subtracted;
    /// `u32::MAX` if 2^32 or more.
    #[inline(never)]
    pub fn measure_raw(&self, mut f: impl FnMut()) -> u32 {
        let tick0 = systick::now();
        let start = DWT::cycle_count();
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        f();
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
        let end = DWT::cycle_count();
        let tick1 = systick::now();
        full_count(end.wrapping_sub(start), systick::elapsed(tick0, tick1))
    }

    /// Cycles of `f`, overhead subtracted (`u32::MAX` stays saturated).
    #[inline(always)]
    pub fn measure(&self, f: impl FnMut()) -> u32 {
        let raw = self.measure_raw(f);
        if raw == u32::MAX {
            return raw;
        }
        raw.saturating_sub(self.overhead)
    }
}
