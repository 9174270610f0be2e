//! The `rtt` link: SEGGER RTT ring buffers in RAM, through rtt-target.
//!
//! [`init`] runs first thing at boot and sets up the control block
//! `_SEGGER_RTT` with three channels:
//!
//! | channel | name | mode | carries |
//! | --- | --- | --- | --- |
//! | up 0 | `defmt` | `NoBlockSkip` | the defmt log (dropped when nobody reads) |
//! | up 1 | `releq` | `BlockIfFull` | response frames |
//! | down 0 | `releq` | - | request frames |
//!
//! The host finds the control block by the `_SEGGER_RTT` symbol of the ELF
//! and reads and writes the rings with plain memory accesses: a debug probe
//! on a board, QEMU's gdbstub on `qemu-m4-rtt` (see `host/src/device/rtt.rs`).
//! The frame buffers hold one whole frame (`MAX_FRAME`) each way.

use crate::link::Link;
use releq_common::protocol::MAX_FRAME;
use rtt_target::{rtt_init, ChannelMode, DownChannel, UpChannel};

/// Size of the defmt log ring.
const LOG_BYTES: usize = 1024;

/// RTT's frame channels as a [`Link`].
pub struct RttLink {
    up: UpChannel,
    down: DownChannel,
}

/// Set up the control block and its channels, hand channel 0 to defmt and
/// return the frame channels. Call once, before any log (rtt_init! panics on
/// a second call).
pub fn init() -> RttLink {
    let channels = rtt_init! {
        up: {
            0: { size: LOG_BYTES, mode: ChannelMode::NoBlockSkip, name: "defmt" }
            1: { size: MAX_FRAME, mode: ChannelMode::BlockIfFull, name: "releq" }
        }
        down: {
            0: { size: MAX_FRAME, name: "releq" }
        }
    };
    let (log, up) = channels.up;
    rtt_target::set_defmt_channel(log);
    RttLink { up, down: channels.down.0 }
}

impl Link for RttLink {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        if buf.is_empty() {
            return 0;
        }
        loop {
            let n = self.down.read(buf);
            if n > 0 {
                return n;
            }
            // Busy-wait: `wfi` would stop the debug port's memory access on
            // some STM32 parts (and nothing here raises an interrupt).
            core::hint::spin_loop();
        }
    }

    fn write_all(&mut self, bytes: &[u8]) {
        // BlockIfFull: `write` returns once every byte is in the ring.
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.up.write(rest);
            rest = &rest[n..];
        }
    }
}
