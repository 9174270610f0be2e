//! The `systick` counter: SysTick on a Cortex-M0/M0+, counting core clock
//! **cycles**, its wraps counted.
//!
//! SysTick is a 24-bit down-counter on the processor clock (CLKSOURCE = 1).
//! Its exception fires on every wrap (every 2^24 cycles: 134 ms at
//! 125 MHz) and counts it in [`WRAPS`], so a measurement is
//! `wraps * 2^24 + (start - end)`, exact up to 2^32 cycles (34 s at
//! 125 MHz) and saturated to `u32::MAX` beyond. Each wrap inside a measured
//! interval adds the handler's own few dozen cycles to it (about 0.00002 %).
//! QEMU's `microbit` has a SysTick but no releq board uses it yet: this
//! counter is compiled in CI, run on the boards.
//!
//! The `dwt` counter ([`super::dwt`]) runs the same wrap-counted SysTick
//! ([`start`], [`now`], [`elapsed`]) beside CYCCNT, to tell how many times
//! CYCCNT wrapped during a long interval.

#[cfg(releq_counter = "systick")]
use core::sync::atomic::compiler_fence;
use core::sync::atomic::{AtomicU32, Ordering};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;
use cortex_m_rt::exception;
#[cfg(releq_counter = "systick")]
use releq_common::protocol::CounterUnit;

/// What counts mean on this board.
#[cfg(releq_counter = "systick")]
pub const UNIT: CounterUnit = CounterUnit::Cycles;

/// SysTick wraps since [`start`] (only the exception handler
/// writes it; load and store are single instructions on the M0+).
static WRAPS: AtomicU32 = AtomicU32::new(0);

const RELOAD: u32 = 0x00FF_FFFF;

#[exception]
fn SysTick() {
    WRAPS.store(WRAPS.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// The counter, owned by the serve loop.
#[cfg(releq_counter = "systick")]
pub struct Counter {
    overhead: u32,
}

/// (wraps, current value), read consistently: a wrap between the two reads
/// is seen as a changed wrap count and the pair read again.
#[inline(always)]
pub fn now() -> (u32, u32) {
    loop {
        let w = WRAPS.load(Ordering::Relaxed);
        let v = SYST::get_current();
        if WRAPS.load(Ordering::Relaxed) == w {
            return (w, v);
        }
    }
}

/// Start SysTick on the core clock with its wrap exception. Called once at
/// boot, by the counter that uses it.
pub fn start() {
    // SAFETY: called once at boot; SYST is used by nothing else.
    let mut syst = unsafe { cortex_m::Peripherals::steal().SYST };
    syst.disable_counter();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Cycles from `a` to `b` (two [`now`] readings), exact in 64 bits (up to
/// 2^32 wraps).
#[inline(always)]
pub fn elapsed(a: (u32, u32), b: (u32, u32)) -> u64 {
    // Down-counter: elapsed = wraps * (RELOAD + 1) + v0 - v1.
    (b.0.wrapping_sub(a.0) as u64 * (RELOAD as u64 + 1) + a.1 as u64).wrapping_sub(b.1 as u64)
}

#[cfg(releq_counter = "systick")]
impl Counter {
    /// Start SysTick ([`start`]) and measure the overhead of an empty
    /// interval.
    pub fn init() -> Self {
        start();
        let mut c = Self { overhead: 0 };
        c.overhead = (0..8).map(|_| c.measure_raw(|| {})).min().unwrap_or(0);
        c
    }

    /// Count of an empty measured interval (already subtracted by [`Self::measure`]).
    pub fn overhead(&self) -> u32 {
        self.overhead
    }

    /// Cycles of `f`, the overhead not subtracted.
    #[inline(never)]
    pub fn measure_raw(&self, mut f: impl FnMut()) -> u32 {
        let (w0, v0) = now();
        compiler_fence(Ordering::SeqCst);
        f();
        compiler_fence(Ordering::SeqCst);
        let (w1, v1) = now();
        elapsed((w0, v0), (w1, v1)).min(u32::MAX as u64) as u32
    }

    /// Cycles of `f`, overhead subtracted.
    #[inline(always)]
    pub fn measure(&self, f: impl FnMut()) -> u32 {
        let raw = self.measure_raw(f);
        if raw == u32::MAX {
            return raw;
        }
        raw.saturating_sub(self.overhead)
    }
}
