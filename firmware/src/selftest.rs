//! Counter self-test (feature `selftest-counter`): counts loops of a known
//! number of instructions, prints the figures on the semihosting stderr and
//! exits QEMU with success only if every count is exact and independent of
//! the instructions that ran before the measurement. The host's test suite
//! runs it (`counter_counts_a_known_loop_exactly`).

use crate::counter::Counter;
use core::arch::asm;
use cortex_m_semihosting::{debug, heprintln};

/// `n` (>= 1) iterations of `subs; bne`: exactly `2 n` instructions.
#[inline(always)]
fn spin(n: u32) {
    // SAFETY: a register-only loop.
    unsafe { asm!("2:", "subs {0}, {0}, #1", "bne 2b", inout(reg) n => _, options(nomem, nostack)) };
}

/// Run the test and exit QEMU (returns only where semihosting cannot exit).
pub fn run(counter: &Counter) {
    let mut ok = true;
    let base = counter.measure(|| spin(core::hint::black_box(1)));
    for n in [10u32, 1000, 123_457, 1_000_000] {
        let mut first = None;
        // Shift the start by 0..8 instructions: the count must not move.
        for pre in 1..=8u32 {
            spin(core::hint::black_box(pre));
            let n = core::hint::black_box(n);
            let count = counter.measure(|| spin(n));
            let expected = base + 2 * (n - 1);
            if count != expected || first.is_some_and(|f| f != count) {
                ok = false;
            }
            first.get_or_insert(count);
            if pre == 1 {
                heprintln!("counter selftest: spin({}) = {} instructions (expected {})", n, count, expected);
            }
        }
    }
    heprintln!("counter selftest: overhead {} instructions, spin(1) = {}; {}", counter.overhead(), base, if ok { "PASS" } else { "FAIL" });
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
}
