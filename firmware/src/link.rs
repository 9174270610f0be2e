//! The byte link that carries protocol frames between host and device.
//!
//! The serve loop ([`crate::serve`]) sees only this trait; the board file's
//! `link` picks the implementation at build time (`releq_link` cfg):
//! `qemu-uart` is the CMSDK UART of the MPS2 boards ([`crate::uart`]), `rtt`
//! is SEGGER RTT through a debug probe, or QEMU's gdbstub ([`crate::rtt`]).
//! Logs never travel on the frame link.

/// A bidirectional byte stream for frames.
pub trait Link {
    /// Wait until at least one byte has arrived, then copy up to `buf.len()`
    /// of the received bytes into `buf`; returns how many (at least 1 when
    /// `buf` is not empty).
    fn read(&mut self, buf: &mut [u8]) -> usize;
    /// Send all of `bytes`, waiting while the link's buffer is full.
    fn write_all(&mut self, bytes: &[u8]);
}
