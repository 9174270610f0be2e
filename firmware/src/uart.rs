//! Minimal polled driver for the CMSDK APB UART0 of the MPS2 boards (the
//! `qemu-uart` link, a [`Link`]). It carries only protocol frames: logs go
//! elsewhere.
//!
//! Registers: DATA (+0x0), STATE (+0x4: bit 0 TX full, bit 1 RX full), CTRL
//! (+0x8: bit 0 TX enable, bit 1 RX enable), BAUDDIV (+0x10, at least 16).

use crate::link::Link;
use core::ptr::{read_volatile, write_volatile};

const BASE: usize = 0x4000_4000;
const DATA: *mut u32 = BASE as *mut u32;
const STATE: *mut u32 = (BASE + 0x4) as *mut u32;
const CTRL: *mut u32 = (BASE + 0x8) as *mut u32;
const BAUDDIV: *mut u32 = (BASE + 0x10) as *mut u32;
const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// The UART, owned by one place (the serve loop).
pub struct Uart {
    _owned: (),
}

impl Uart {
    /// Enable transmit and receive. Call once.
    pub fn init() -> Self {
        // SAFETY: fixed, always-mapped MMIO registers of the MPS2 UART0; only
        // this driver touches them.
        unsafe {
            write_volatile(BAUDDIV, 16);
            write_volatile(CTRL, CTRL_TX_EN | CTRL_RX_EN);
            // An (empty) read of DATA makes QEMU poll its chardev again. QEMU
            // stops polling the socket while the receiver is disabled (as it
            // is when the host connects, before boot) and enabling it does not
            // wake QEMU's main loop: without this read the first request
            // waits for QEMU's next periodic wake-up, about a second.
            let _ = read_volatile(DATA);
        }
        Self { _owned: () }
    }

    /// Send one byte, waiting while the transmit buffer is full.
    pub fn write_byte(&mut self, byte: u8) {
        // SAFETY: see `init`.
        unsafe {
            while read_volatile(STATE) & STATE_TX_FULL != 0 {}
            write_volatile(DATA, byte as u32);
        }
    }

    /// Receive one byte, waiting until one arrives.
    pub fn read_byte(&mut self) -> u8 {
        // SAFETY: see `init`.
        unsafe {
            while read_volatile(STATE) & STATE_RX_FULL == 0 {}
            read_volatile(DATA) as u8
        }
    }
}

impl Link for Uart {
    fn read(&mut self, buf: &mut [u8]) -> usize {
        match buf.first_mut() {
            Some(b) => {
                *b = self.read_byte();
                1
            }
            None => 0,
        }
    }

    fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}
