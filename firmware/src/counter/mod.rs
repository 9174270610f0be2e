//! Counting what a piece of code costs, with the board's counter (the board
//! file's `counter`, the `releq_counter` cfg):
//!
//! - [`icount`] (`icount-timer`, QEMU): CMSDK timer0 on `-icount` virtual
//!   time, exact **instructions**.
//! - [`dwt`] (`dwt`, real Cortex-M3/M4/M7): the DWT cycle counter, **cycles**,
//!   with the wrap-counted SysTick beside it to detect CYCCNT wraps.
//! - [`systick`] (`systick`, real Cortex-M0/M0+): the 24-bit SysTick with its
//!   wraps counted, **cycles**.
//!
//! Each exports the same `Counter` (`init`, `overhead`, `measure`,
//! `measure_raw`) and `UNIT`; a measurement the counter cannot represent
//! saturates to `u32::MAX`.

#[cfg(releq_counter = "dwt")]
pub mod dwt;
#[cfg(releq_counter = "icount-timer")]
pub mod icount;
// Also the `dwt` counter's wrap detector.
#[cfg(any(releq_counter = "systick", releq_counter = "dwt"))]
pub mod systick;

#[cfg(releq_counter = "dwt")]
pub use dwt::{Counter, UNIT};
#[cfg(releq_counter = "icount-timer")]
pub use icount::{Counter, UNIT};
#[cfg(releq_counter = "systick")]
pub use systick::{Counter, UNIT};
