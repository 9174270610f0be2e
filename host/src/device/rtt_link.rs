//! RTT as a byte [`Transport`] over any [`RttTarget`]: QEMU's gdbstub
//! ([`super::gdb_rtt`]) or a debug probe ([`super::probe`]).
//!
//! An [`RttTarget`] is target memory ([`Memory`]) plus halt and resume (a
//! gdbstub must stop the guest to reach memory; a probe's background memory
//! access needs neither, so its halt and resume do nothing). [`RttLink`]
//! waits for the firmware's control block, moves request bytes into down
//! channel 0 and response bytes out of up channel 1, and copies the defmt log
//! (up channel 0) to a writer on every poll. Between polls the host sleeps a
//! little, starting at [`MIN_WAIT`] and doubling while nothing comes up to
//! [`MAX_WAIT`], so a quiet device is not polled thousands of times a second
//! and an answer that is arriving is picked up quickly. The frames on top are
//! [`super::link::FrameLink`]'s.

use super::link::{Transport, TransportError};
use super::rtt::{self, BlockState, ControlBlock, Memory};
use super::LinkError;
use std::io::Write;
use std::time::{Duration, Instant};

/// Shortest pause between two polls.
pub const MIN_WAIT: Duration = Duration::from_micros(50);
/// Longest pause between two polls.
pub const MAX_WAIT: Duration = Duration::from_millis(2);

/// Target memory that RTT can be run over.
pub trait RttTarget: Memory + Send {
    /// Make memory reachable (stop the core if the access path needs it).
    fn halt(&mut self) -> Result<(), TransportError>;
    /// Let the core run again after [`RttTarget::halt`].
    fn resume(&mut self) -> Result<(), TransportError>;
}

/// RTT over an [`RttTarget`].
pub struct RttLink<T> {
    target: T,
    /// Address of `_SEGGER_RTT`.
    block: u32,
    /// Where the defmt bytes of up channel 0 go.
    log: Box<dyn Write + Send>,
    /// Current pause between polls.
    wait: Duration,
}

impl<T: RttTarget> RttLink<T> {
    /// Resume the target (halted) and wait up to `timeout` for the firmware
    /// to set up the control block at `block`.
    pub fn attach(
        mut target: T,
        block: u32,
        log: Box<dyn Write + Send>,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let deadline = Instant::now() + timeout;
        let mut wait = MIN_WAIT;
        loop {
            target.halt()?;
            match ControlBlock::read(&mut target, block, 2, 1) {
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
            target.resume()?;
            std::thread::sleep(wait);
            wait = (wait * 2).min(MAX_WAIT);
        }
        target.resume()?;
        Ok(Self { target, block, log, wait: MIN_WAIT })
    }

    /// The target, e.g. to reset it.
    pub fn target(&mut self) -> &mut T {
        &mut self.target
    }

    /// Halt, read the control block, run `f` on it, resume.
    fn with_block<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Memory, &ControlBlock) -> Result<R, LinkError>,
    ) -> Result<R, TransportError> {
        self.target.halt()?;
        let mem: &mut dyn Memory = &mut self.target;
        let block = ControlBlock::read(mem, self.block, 2, 1).map_err(|s| match s {
            BlockState::NotInitialised => {
                LinkError::Rtt { reason: format!("the RTT control block at {:#010x} was overwritten", self.block) }
            }
            BlockState::Bad(reason) => LinkError::Rtt { reason },
        })?;
        let log = rtt::read_up(mem, &block.up[rtt::UP_LOG], 64 * 1024)?;
        let out = f(mem, &block)?;
        self.target.resume()?;
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

impl<T: RttTarget> Transport for RttLink<T> {
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
