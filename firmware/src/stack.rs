//! Peak stack use, by stack painting.
//!
//! cortex-m-rt's `link.x` puts the stack at the top of RAM: it starts at
//! `_stack_start` (the initial SP) and grows down to `_stack_end`, the first
//! word after `.bss` and `.uninit` (the heap would start there too; this
//! firmware has none). At boot [`paint`] fills every word from `_stack_end`
//! up to the current stack pointer with [`PATTERN`]; [`stats`] later finds the
//! lowest word that no longer holds it. Everything from there up to
//! `_stack_start` has been used at some point since boot, so that distance is
//! the peak (a frame that happened to write the pattern itself would be
//! missed; the chance is negligible).

use core::ptr::{addr_of, read_volatile};
use releq_common::protocol::DeviceStats;

/// The paint.
const PATTERN: u32 = 0xACE5_57AC;

extern "C" {
    /// Top of the stack (cortex-m-rt `link.x`): the initial stack pointer.
    static _stack_start: u32;
    /// Lowest address the stack may use (cortex-m-rt `link.x`).
    static _stack_end: u32;
}

/// The stack region `[bottom, top)` as addresses.
fn region() -> (usize, usize) {
    // Only the addresses of the linker symbols are taken, never their values
    // (taking the address of an extern static is safe).
    (addr_of!(_stack_end) as usize, addr_of!(_stack_start) as usize)
}

/// Paint the unused stack, from its bottom up to the current stack pointer.
///
/// Call once, early in `main`. The loop is assembly that reads the stack
/// pointer itself and touches no stack: compiled code could push its frame
/// after reading SP (shrink-wrapping), into words it then paints.
pub fn paint() {
    let (bottom, _) = region();
    // Thumb-1 instructions only (valid on every Cortex-M, the M0+ too), on
    // fixed low registers as Thumb-1 requires: r0 the pointer, r1 the
    // word-aligned stack pointer, r2 the pattern.
    // SAFETY: writes `PATTERN` to the words of `[bottom, sp)`: RAM reserved
    // for the stack by the linker script, word aligned (`link.x` asserts
    // `_stack_end % 4 == 0`; SP is rounded down to a word), strictly below
    // the stack pointer, so no live frame, static or heap (there is none) is
    // there. `nostack`: the asm itself pushes nothing.
    unsafe {
        core::arch::asm!(
            "mov r1, sp",
            "lsrs r1, r1, #2",
            "lsls r1, r1, #2",
            "2:",
            "cmp r0, r1",
            "bhs 3f",
            "str r2, [r0]",
            "adds r0, #4",
            "b 2b",
            "3:",
            inout("r0") bottom => _,
            out("r1") _,
            in("r2") PATTERN,
            options(nostack),
        );
    }
}

/// The peak stack use since [`paint`], and the stack's size.
pub fn stats() -> DeviceStats {
    let (bottom, top) = region();
    let mut p = bottom;
    // SAFETY: reads whole words of the stack region `[bottom, top)` (word
    // aligned, RAM, see `paint`); the words at and above the stack pointer
    // belong to live frames but are only read, volatile, as plain `u32`s
    // (every bit pattern is valid).
    while p < top && unsafe { read_volatile(p as *const u32) } == PATTERN {
        p += 4;
    }
    DeviceStats { stack_peak_bytes: (top - p) as u32, stack_size_bytes: (top - bottom) as u32 }
}
