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

/// Count `spin(n)`; not inlined, so every `n` runs the same code.
#[inline(never)]
fn time_spin(counter: &Counter, n: u32) -> u32 {
    counter.measure(|| spin(n))
}

/// Run the test and exit QEMU (returns only where semihosting cannot exit).
pub fn run(counter: &Counter) {
    let mut ok = true;
    let base = time_spin(counter, 1);
    // `base` is spin(1) (2 instructions) plus what it takes to get `n` into
    // the loop's register: at most a few instructions.
    if !(2..=6).contains(&base) {
        ok = false;
    }
    // Every residue of the tick grid (5 instructions = 8 ticks), then long loops.
    for n in (2..=41u32).chain([1000, 123_457, 1_000_000]) {
        let expected = base + 2 * (n - 1);
        // Shift the start by 1..=8 instructions: the count must not move.
        for pre in 1..=8u32 {
            spin(core::hint::black_box(pre));
            let count = time_spin(counter, n);
            if count != expected {
                ok = false;
            }
            if (pre == 1 && n > 41) || count != expected {
                heprintln!("counter selftest: spin({}) = {} instructions (expected {})", n, count, expected);
            }
        }
    }
    heprintln!(
        "counter selftest: overhead {} instructions, spin(1) = {}; {}",
        counter.overhead(),
        base,
        if ok { "PASS" } else { "FAIL" }
    );
    debug::exit(if ok { debug::EXIT_SUCCESS } else { debug::EXIT_FAILURE });
}
