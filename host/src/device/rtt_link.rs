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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::framed::Requester;
    use crate::device::link::{FrameLink, Peer};
    use crate::device::{Device, Reply};
    use releq_common::protocol::{
        encode_frame, CounterUnit, DeviceInfo, FrameReader, ModelStatus, Push, Request, Response, MAX_FRAME,
    };

    const BASE: u32 = 0x2000_0000;

    /// 64 KiB of RAM holding a control block like the firmware's, and a fake
    /// firmware that answers every `Info` request in down 0 with an `Info`
    /// frame in up 1 (run whenever the host "halts" the target), writing a
    /// log line in up 0 too. Memory is reached without halting, as through
    /// a probe.
    struct FakeBoard {
        ram: Vec<u8>,
        reader: Box<FrameReader<MAX_FRAME>>,
        answered: usize,
    }

    fn w(ram: &mut [u8], at: u32, v: u32) {
        let a = (at - BASE) as usize;
        ram[a..a + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn r(ram: &[u8], at: u32) -> u32 {
        let a = (at - BASE) as usize;
        u32::from_le_bytes(ram[a..a + 4].try_into().unwrap())
    }

    impl FakeBoard {
        fn new() -> Self {
            let mut ram = vec![0u8; 0x1_0000];
            ram[..16].copy_from_slice(rtt::ID);
            w(&mut ram, BASE + 16, 2);
            w(&mut ram, BASE + 20, 1);
            for (i, buf) in [0x1000u32, 0x2000, 0x3000].into_iter().enumerate() {
                let d = BASE + 24 + 24 * i as u32;
                w(&mut ram, d + 4, BASE + buf);
                w(&mut ram, d + 8, 1024);
            }
            Self { ram, reader: Box::new(FrameReader::new()), answered: 0 }
        }

        /// Append `bytes` to up channel `n` (ring of 1024 at its buffer).
        fn put_up(&mut self, n: u32, bytes: &[u8]) {
            let d = BASE + 24 + 24 * n;
            let (buf, mut wr) = (r(&self.ram, d + 4), r(&self.ram, d + 12));
            for &b in bytes {
                self.ram[(buf - BASE + wr) as usize] = b;
                wr = (wr + 1) % 1024;
            }
            w(&mut self.ram, d + 12, wr);
        }

        /// The firmware's turn: take request bytes from down 0, answer.
        fn step(&mut self) {
            let d = BASE + 24 + 48;
            let (buf, wr, mut rd) = (r(&self.ram, d + 4), r(&self.ram, d + 12), r(&self.ram, d + 16));
            while rd != wr {
                let b = self.ram[(buf - BASE + rd) as usize];
                rd = (rd + 1) % 1024;
                if let Push::Frame(len) = self.reader.push(b) {
                    let req: Request<'_> = self.reader.take(len).unwrap();
                    assert!(matches!(req, Request::Info { .. }));
                    let info = DeviceInfo {
                        protocol: 1,
                        firmware: "fake",
                        board: "nucleo-f446re",
                        core: "cortex-m4",
                        clock_hz: 180_000_000,
                        counter: CounterUnit::Cycles,
                        arena_bytes: 40_960,
                        max_frame: MAX_FRAME as u32,
                        model: ModelStatus::Absent,
                    };
                    let mut out = vec![0u8; MAX_FRAME];
                    let frame = encode_frame(&Response::Info(info), &mut out).unwrap().to_vec();
                    self.put_up(0, b"log");
                    self.put_up(1, &frame);
                    self.answered += 1;
                }
            }
            w(&mut self.ram, d + 16, rd);
        }
    }

    impl Memory for FakeBoard {
        fn read(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
            let a = (addr - BASE) as usize;
            Ok(self.ram[a..a + len].to_vec())
        }
        fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), LinkError> {
            let a = (addr - BASE) as usize;
            self.ram[a..a + data.len()].copy_from_slice(data);
            Ok(())
        }
    }

    impl RttTarget for FakeBoard {
        fn halt(&mut self) -> Result<(), TransportError> {
            self.step();
            Ok(())
        }
        fn resume(&mut self) -> Result<(), TransportError> {
            Ok(())
        }
    }

    struct Alive;
    impl Peer for Alive {
        fn is_running(&mut self) -> bool {
            true
        }
        fn exited(&mut self, when: String) -> LinkError {
            LinkError::Rtt { reason: when }
        }
    }

    struct Dev(FrameLink<RttLink<FakeBoard>>);
    impl Requester for Dev {
        fn request(&mut self, request: &Request<'_>) -> Result<Reply, LinkError> {
            self.0.request(request, Duration::from_secs(5), &mut Alive)
        }
    }

    #[derive(Clone, Default)]
    struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Log {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The probe backend's path without a probe: an RTT target that needs no
    /// halting, the shared rings, framing and `Device` requests.
    #[test]
    fn a_handshake_goes_through_the_rings_of_a_target_that_needs_no_halt() {
        let log = Log::default();
        let link = RttLink::attach(FakeBoard::new(), BASE, Box::new(log.clone()), Duration::from_secs(1)).ok().unwrap();
        let mut dev = Dev(FrameLink::new(link));
        let info = dev.info().unwrap();
        assert_eq!((info.board.as_str(), info.clock_hz), ("nucleo-f446re", 180_000_000));
        let info = dev.info().unwrap();
        assert_eq!(info.counter, CounterUnit::Cycles);
        assert_eq!(dev.0.transport_mut().target().answered, 2);
        assert_eq!(log.0.lock().unwrap().as_slice(), b"loglog", "the defmt channel is copied to the log");
    }
}
