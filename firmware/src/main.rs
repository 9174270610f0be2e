//! releq device firmware.
//!
//! Boots, finds the model blob at the board's blob address and validates it
//! once ([`blob`]), then serves the host's requests over the link forever
//! ([`serve`]): `Info`, `Run` (the model, every layer timed alone),
//! `TimeLayer` (a synthetic layer of a given shape, [`synth`]) and `Stats`
//! (peak stack since boot, from the paint [`stack`] puts at boot). Layer costs
//! come from the board's counter ([`counter`]); a real board's clock and
//! timing pin are set up by [`clock`]; frames travel over the
//! board's [`link`]: the CMSDK UART ([`uart`], link `qemu-uart`) or RTT
//! ([`rtt`], link `rtt`). Logs are defmt: over semihosting on the UART
//! boards, on RTT up channel 0 on the RTT boards; never on the frame link.
//!
//! Every board fact comes from `boards/<RELEQ_BOARD>.toml` through
//! `build.rs` ([`board`]). On an emulated board a panic prints its message on
//! the semihosting stderr and exits QEMU with a failure status: the firmware
//! never hangs on a panic there. On hardware (no semihosting host) the
//! message goes to the defmt log and the core stops in a loop the probe can
//! see.

#![no_std]
#![no_main]

mod blob;
mod board;
mod clock;
mod counter;
mod link;
#[cfg(releq_link = "rtt")]
mod rtt;
mod serve;
mod stack;
mod synth;
#[cfg(releq_link = "qemu-uart")]
mod uart;

use core::panic::PanicInfo;
use cortex_m_rt::{entry, exception, ExceptionFrame};
#[cfg(releq_emulated)]
use cortex_m_semihosting::{debug, heprintln};
// The defmt transport: semihosting next to the UART link, RTT channel 0 with
// the RTT link (rtt-target's global logger). Only the one named is linked.
#[cfg(releq_link = "qemu-uart")]
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
    // The core clock (real boards; nothing under QEMU).
    clock::init();
    // Then RTT, so that the first log has a channel.
    #[cfg(releq_link = "rtt")]
    let link = rtt::init();
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
    #[cfg(releq_link = "qemu-uart")]
    let link = uart::Uart::init();
    serve::serve(link, serve::State { counter, arena, params, blob, pin: clock::TimingPin::init() })
}

#[cfg(releq_emulated)]
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    heprintln!("releq-firmware panicked: {}", info);
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

#[cfg(releq_emulated)]
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    heprintln!("releq-firmware hard fault at pc {:#010x}", frame.pc());
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

/// On hardware: log the message and stop here (no semihosting host exists;
/// `bkpt` without a debugger would fault again).
#[cfg(not(releq_emulated))]
#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    defmt::error!("releq-firmware panicked: {}", defmt::Display2Format(info));
    loop {
        core::hint::spin_loop();
    }
}

/// On hardware: log the faulting address and stop here.
#[cfg(not(releq_emulated))]
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!("releq-firmware hard fault at pc {=u32:#010x}", frame.pc());
    loop {
        core::hint::spin_loop();
    }
}
