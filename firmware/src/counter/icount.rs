//! The `icount-timer` counter (QEMU boards).
//!
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
//! and is identical from run to run. With 2^N ns per instruction at least one
//! tick (N >= 6 at 25 MHz) the conversion back to instructions is exact
//! ([`ticks_to_units`]); the `selftest-counter` feature checks it on loops of
//! known length.
//!
//! A measurement longer than the counter's range (2^32 ticks) saturates to
//! `u32::MAX`: the timer's interrupt status flags the wrap.

use crate::board;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering};
use releq_common::protocol::CounterUnit;

const BASE: usize = 0x4000_0000;
const CTRL: *mut u32 = BASE as *mut u32;
const VALUE: *mut u32 = (BASE + 0x4) as *mut u32; // `measure_ticks` addresses it as [BASE, #4]
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

    /// Timer ticks of `f`, `None` if the timer wrapped.
    ///
    /// The measured window is exactly: the store that restarts the timer,
    /// a call to `f` through a trampoline, and the load of the timer, all
    /// in one `asm!` block, so the compiler cannot move other work into it
    /// and an empty `f` always costs the same ([`Self::overhead`]).
    #[inline(always)]
    pub fn measure_ticks<F: FnMut()>(&self, mut f: F) -> Option<u32> {
        extern "C" fn trampoline<F: FnMut()>(ctx: *mut ()) {
            // SAFETY: `ctx` is the `&mut F` passed below, alive for the call.
            let f = unsafe { &mut *(ctx as *mut F) };
            f();
        }
        let value: u32;
        compiler_fence(Ordering::SeqCst);
        // SAFETY: INTSTATUS and VALUE are timer0's registers (see `init`);
        // the asm calls `trampoline::<F>` with the C ABI (see the clobbers), the
        // timer's base in callee-saved r4, and reads VALUE back into r5.
        unsafe {
            write_volatile(INTSTATUS, 1);
            // The caller-saved registers of the AAPCS are clobbered by the
            // call: r0-r3, r12, lr, and d0-d7 where there is an FPU. (Not
            // `clobber_abi("C")`: it names d16-d31, which these FPUs lack.)
            macro_rules! timed_call {
                ($($fpu:tt)*) => {
                    core::arch::asm!(
                        "str {max}, [r4, #4]",
                        "blx {f}",
                        "ldr r5, [r4, #4]",
                        max = in(reg) u32::MAX,
                        f = in(reg) trampoline::<F> as extern "C" fn(*mut ()),
                        inout("r0") &mut f as *mut F as *mut () => _,
                        in("r4") BASE,
                        out("r5") value,
                        out("r1") _, out("r2") _, out("r3") _, out("r12") _, out("lr") _,
                        $($fpu)*
                    )
                };
            }
            #[cfg(target_abi = "eabihf")]
            timed_call!(
                out("d0") _, out("d1") _, out("d2") _, out("d3") _,
                out("d4") _, out("d5") _, out("d6") _, out("d7") _,
            );
            #[cfg(not(target_abi = "eabihf"))]
            timed_call!();
        }
        compiler_fence(Ordering::SeqCst);
        // SAFETY: see `init`.
        let wrapped = unsafe { read_volatile(INTSTATUS) & 1 != 0 };
        if wrapped {
            None
        } else {
            Some(u32::MAX - value)
        }
    }

    /// Count `f`, the overhead of an empty interval not subtracted.
    #[inline(always)]
    pub fn measure_raw(&self, f: impl FnMut()) -> u32 {
        self.measure_ticks(f).map_or(u32::MAX, ticks_to_units)
    }

    /// Count `f`, overhead subtracted.
    #[inline(always)]
    pub fn measure(&self, f: impl FnMut()) -> u32 {
        let raw = self.measure_raw(f);
        if raw == u32::MAX {
            return raw;
        }
        raw.saturating_sub(self.overhead)
    }
}

/// Timer ticks to instructions.
///
/// With `r = CLOCK_HZ * 2^N / 1e9` ticks per instruction (1.6 at 25 MHz and
/// N = 6), QEMU 7.2 reports `T = ceil(r * M) - 1` ticks for an interval of `M`
/// instructions after the restart (measured: see `selftest.rs`). So
/// `(T + 1) / r` lies in `[M, M + 1/r)` and, for `r >= 1`, its floor is `M`
/// exactly: no rounding error, whatever the interval.
pub fn ticks_to_units(ticks: u32) -> u32 {
    let den = (board::CLOCK_HZ as u64) << board::ICOUNT_SHIFT;
    ((ticks as u64 + 1) * 1_000_000_000 / den).min(u32::MAX as u64) as u32
}
