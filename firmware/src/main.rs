//! releq device firmware.
//!
//! Boots, finds the model blob at the board's blob address and validates it
//! once ([`blob`]), then serves the host's requests over the link forever
//! ([`serve`]): `Info`, `Run` (the model, every layer timed alone),
//! `TimeLayer` (a synthetic layer of a given shape, [`synth`]) and `Stats`
//! (peak stack since boot, from the paint [`stack`] puts at boot). Layer costs
//! come from the board's counter ([`counter`]); frames travel over the CMSDK
//! UART ([`uart`]). Logs are defmt over semihosting, never on the UART.
//!
//! Every board fact comes from `boards/<RELEQ_BOARD>.toml` through
//! `build.rs` ([`board`]). A panic prints its message on the semihosting
//! stderr and exits QEMU with a failure status: the firmware never hangs on a
//! panic.

#![no_std]
#![no_main]

mod blob;
mod board;
mod counter;
mod serve;
mod stack;
mod synth;
mod uart;

#[cfg(not(releq_link = "qemu-uart"))]
compile_error!("this firmware implements only the `qemu-uart` link; see boards/README.md");

use core::panic::PanicInfo;
use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, heprintln};
use defmt_semihosting as _;

/// The activation arena, word aligned.
#[repr(C, align(4))]
struct Arena([i8; board::ARENA_BYTES]);
static mut ARENA: Arena = Arena([0; board::ARENA_BYTES]);

/// Parameters of synthetic layers.
#[repr(C, align(4))]
struct Params([u8; board::SYNTH_BYTES]);
static mut PARAMS: Params = Params([0; board::SYNTH_BYTES]);

#[cfg(feature = "selftest-counter")]
mod selftest;

#[entry]
fn main() -> ! {
    // First, while the stack holds only this frame: paint the rest.
    stack::paint();
    defmt::info!(
        "{} on {} ({}), counter {}, link {}",
        board::FIRMWARE,
        board::NAME,
        board::CORE,
        board::COUNTER,
        board::LINK
    );
    // SAFETY: `main` runs once and these are the only references ever taken
    // to the two buffers.
    let (arena, params): (&'static mut [i8], &'static mut [u8]) =
        unsafe { (&mut (*core::ptr::addr_of_mut!(ARENA)).0, &mut (*core::ptr::addr_of_mut!(PARAMS)).0) };
    let counter = counter::Counter::init();
    #[cfg(feature = "selftest-counter")]
    selftest::run(&counter);
    let blob = blob::load();
    match &blob.status {
        releq_common::protocol::ModelStatus::Absent => defmt::info!("no model blob at {=usize:#x}", board::BLOB_ADDR),
        releq_common::protocol::ModelStatus::Invalid(e) => {
            defmt::warn!("invalid model blob: {}", defmt::Debug2Format(e))
        }
        releq_common::protocol::ModelStatus::Loaded { layers, blob_bytes, arena_bytes, .. } => {
            defmt::info!("model: {} layers, {} blob bytes, arena {} bytes", layers, blob_bytes, arena_bytes)
        }
    }
    defmt::info!("timer overhead {} {}", counter.overhead(), counter::UNIT.name());
    let uart = uart::Uart::init();
    serve::serve(uart, serve::State { counter, arena, params, blob })
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    heprintln!("releq-firmware panicked: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    heprintln!("releq-firmware hard fault at pc {:#010x}", frame.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}
