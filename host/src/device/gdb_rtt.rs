//! The `rtt` link under QEMU: RTT's rings read and written through QEMU's
//! gdbstub ([`GdbClient`]), the way a probe would on a board.
//!
//! Every access halts the guest (the stub is all-stop), does its `m`/`M`
//! packets and resumes it. Between polls the guest runs: the host sleeps a
//! little, starting at [`MIN_WAIT`] and doubling while nothing comes up to
//! [`MAX_WAIT`], so a quiet device is not halted thousands of times a second
//! and an answer that is arriving is picked up quickly. The defmt log (up
//! channel 0) is read on every poll and written to `log`, where QEMU's
//! log reader decodes it.

use super::gdb::{GdbClient, GdbError};
use super::link::{Transport, TransportError};
use super::rtt::{self, BlockState, ControlBlock, Memory};
use super::LinkError;
use std::io::Write;
use std::time::{Duration, Instant};

/// Shortest pause between two polls.
pub const MIN_WAIT: Duration = Duration::from_micros(50);
/// Longest pause between two polls.
pub const MAX_WAIT: Duration = Duration::from_millis(2);

/// RTT over a gdbstub.
pub struct GdbRtt {
    gdb: GdbClient,
    /// Address of `_SEGGER_RTT`.
    block: u32,
    /// Where the defmt bytes of up channel 0 go.
    log: Box<dyn Write + Send>,
    /// Current pause between polls.
    wait: Duration,
}

impl From<GdbError> for TransportError {
    fn from(e: GdbError) -> Self {
        match e {
            GdbError::Closed => TransportError::Closed,
            e => TransportError::Link(e.into()),
        }
    }
}

impl From<GdbError> for LinkError {
    fn from(e: GdbError) -> Self {
        match e {
            GdbError::Timeout { what, after } => {
                LinkError::NotAnswering { what: format!("QEMU's gdbstub ({what})"), after }
            }
            e => LinkError::Rtt { reason: e.to_string() },
        }
    }
}

struct Halted<'a>(&'a mut GdbClient);

impl Memory for Halted<'_> {
    fn read(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
        Ok(self.0.read_memory(addr, len)?)
    }
    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), LinkError> {
        Ok(self.0.write_memory(addr, data)?)
    }
}

impl GdbRtt {
    /// Resume the guest (halted by `-S`) and wait up to `timeout` for the
    /// firmware to set up the control block at `block`.
    pub fn attach(
        mut gdb: GdbClient,
        block: u32,
        log: Box<dyn Write + Send>,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut wait = MIN_WAIT;
        loop {
            gdb.halt()?;
            match ControlBlock::read(&mut Halted(&mut gdb), block, 2, 1) {
                Ok(_) => break,
                Err(BlockState::Bad(reason)) => {
                    return Err(LinkError::Rtt { reason }.into());
                }
                Err(BlockState::NotInitialised) if Instant::now() >= deadline => {
                    return Err(LinkError::Rtt {
                        reason: format!(
                            "the firmware did not set up its RTT control block at {block:#010x} (`_SEGGER_RTT`) within {} s",
                            timeout.as_secs_f64()
                        ),
                    }
                    .into())
                }
                Err(BlockState::NotInitialised) => {}
            }
            gdb.resume()?;
            std::thread::sleep(wait);
            wait = (wait * 2).min(MAX_WAIT);
        }
        gdb.resume()?;
        Ok(Self { gdb, block, log, wait: MIN_WAIT })
    }

    /// Halt, read the control block, run `f` on it, resume.
    fn with_block<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Memory, &ControlBlock) -> Result<R, LinkError>,
    ) -> Result<R, TransportError> {
        self.gdb.halt()?;
        let mut mem = Halted(&mut self.gdb);
        let block = ControlBlock::read(&mut mem, self.block, 2, 1).map_err(|s| match s {
            BlockState::NotInitialised => {
                LinkError::Rtt { reason: format!("the RTT control block at {:#010x} was overwritten", self.block) }
            }
            BlockState::Bad(reason) => LinkError::Rtt { reason },
        })?;
        let log = rtt::read_up(&mut mem, &block.up[rtt::UP_LOG], 64 * 1024)?;
        let out = f(&mut mem, &block)?;
        self.gdb.resume()?;
        if !log.is_empty() {
            let _ = self.log.write_all(&log);
        }
        Ok(out)
    }

    fn pause(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(self.wait.min(left));
        self.wait = (self.wait * 2).min(MAX_WAIT);
    }
}

impl Transport for GdbRtt {
    fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), TransportError> {
        let started = Instant::now();
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = self.with_block(|mem, b| rtt::write_down(mem, &b.down[rtt::DOWN_FRAMES], rest))?;
            rest = &rest[n..];
            if n > 0 {
                self.wait = MIN_WAIT;
            } else if Instant::now() >= deadline {
                return Err(LinkError::NotAnswering {
                    what: "the firmware (its RTT down channel stayed full)".into(),
                    after: started.elapsed(),
                }
                .into());
            } else {
                self.pause(deadline);
            }
        }
        self.wait = MIN_WAIT;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, TransportError> {
        loop {
            let max = buf.len();
            let got = self.with_block(|mem, b| rtt::read_up(mem, &b.up[rtt::UP_FRAMES], max))?;
            if !got.is_empty() {
                buf[..got.len()].copy_from_slice(&got);
                self.wait = MIN_WAIT;
                return Ok(got.len());
            }
            if Instant::now() >= deadline {
                return Ok(0);
            }
            self.pause(deadline);
        }
    }

    fn discard(&mut self) -> Result<(), TransportError> {
        self.with_block(|mem, b| rtt::skip_up(mem, &b.up[rtt::UP_FRAMES]))
    }
}
