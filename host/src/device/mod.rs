//! Talking to a device that runs the releq firmware.
//!
//! A [`Device`] answers four requests (see `releq_common::protocol`): its
//! facts and model status ([`Device::info`]), a run of the loaded model with
//! every layer timed ([`Device::run`]), the time of a synthetic layer
//! ([`Device::time_layer`]), and its resource statistics, the peak stack
//! since boot ([`Device::stats`]). Backends:
//!
//! - [`qemu::QemuDevice`]: the firmware under QEMU (the default device), the
//!   model blob put in RAM by QEMU's loader device. Frames travel over the
//!   board's link: the emulated UART (a unix socket, [`uart`]) for
//!   `qemu-uart` boards, or RTT read and written through QEMU's gdbstub
//!   ([`gdb_rtt`], [`rtt`], [`gdb`]) for `qemu-m4-rtt`, which runs the
//!   firmware code of the real boards.
//! - [`probe::ProbeDevice`]: a real board through a debug probe (probe-rs):
//!   flashed, the blob written into RAM, frames over RTT with the same ring
//!   code ([`rtt_link`]) as under QEMU. Compiled and tested against fakes.
//!
//! The request/response framing is shared by every link ([`link`]). Every
//! failure is a [`LinkError`] that says what to do about it.

pub mod any;
pub mod fit;
pub mod framed;
pub mod gdb;
pub mod gdb_rtt;
pub mod link;
pub mod probe;
pub mod qemu;
pub mod rtt;
pub mod rtt_link;
pub mod uart;

pub use qemu::{build_firmware, firmware_dir, QemuDevice, QemuOptions};
use releq_common::protocol::{CounterUnit, DeviceError, DeviceInfo, FrameError, LayerSpec, ModelStatus, Response};
pub use releq_common::protocol::{DeviceStats, LayerTime};
use serde::Serialize;
use std::time::Duration;

/// A device running the releq firmware.
pub trait Device {
    /// The device's facts and the state of its model.
    fn info(&mut self) -> Result<DeviceInfoOwned, LinkError>;
    /// Run the loaded model on one input (`i8` codes); every layer is timed.
    fn run(&mut self, input: &[i8]) -> Result<RunOutput, LinkError>;
    /// Time a synthetic layer of this shape `repeat` times.
    fn time_layer(&mut self, spec: &LayerSpec, repeat: u16) -> Result<LayerTime, LinkError>;
    /// The device's statistics: peak stack use since boot and stack size.
    fn stats(&mut self) -> Result<DeviceStats, LinkError>;
}

/// An owned copy of [`DeviceInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfoOwned {
    /// The device's protocol version.
    pub protocol: u16,
    /// Firmware name, version and source hash.
    pub firmware: String,
    /// Board name (as in `boards/`).
    pub board: String,
    /// Core, e.g. `cortex-m4`.
    pub core: String,
    /// Core clock in Hz.
    pub clock_hz: u32,
    /// What counts mean (instructions under QEMU, cycles on hardware).
    pub counter: CounterUnit,
    /// Activation arena available, bytes.
    pub arena_bytes: u32,
    /// Largest frame the device accepts.
    pub max_frame: u32,
    /// The model blob's state.
    pub model: ModelStatus,
}

impl From<&DeviceInfo<'_>> for DeviceInfoOwned {
    fn from(i: &DeviceInfo<'_>) -> Self {
        Self {
            protocol: i.protocol,
            firmware: i.firmware.into(),
            board: i.board.into(),
            core: i.core.into(),
            clock_hz: i.clock_hz,
            counter: i.counter,
            arena_bytes: i.arena_bytes,
            max_frame: i.max_frame,
            model: i.model,
        }
    }
}

/// The answer to [`Device::run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunOutput {
    /// Output codes.
    pub output: Vec<i8>,
    /// Count of each layer (in the device's [`CounterUnit`]), overhead subtracted.
    pub counts: Vec<u32>,
    /// The count of an empty measured interval, already subtracted.
    pub overhead: u32,
}

/// Any response, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer to `Info`.
    Info(DeviceInfoOwned),
    /// Answer to `Run`.
    Run(RunOutput),
    /// Answer to `TimeLayer`.
    LayerTime(LayerTime),
    /// Answer to `Stats`.
    Stats(DeviceStats),
    /// The device's error.
    Error(DeviceError),
}

impl From<&Response<'_>> for Reply {
    fn from(r: &Response<'_>) -> Self {
        match r {
            Response::Info(i) => Reply::Info(i.into()),
            Response::Run(r) => Reply::Run(RunOutput {
                output: r.output.iter().map(|&b| b as i8).collect(),
                counts: r.counts.to_vec(),
                overhead: r.overhead,
            }),
            Response::LayerTime(t) => Reply::LayerTime(*t),
            Response::Stats(s) => Reply::Stats(*s),
            Response::Error(e) => Reply::Error(*e),
        }
    }
}

impl Reply {
    /// Short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Reply::Info(_) => "Info",
            Reply::Run(_) => "Run",
            Reply::LayerTime(_) => "LayerTime",
            Reply::Stats(_) => "Stats",
            Reply::Error(_) => "Error",
        }
    }
}

/// Why talking to a device failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The device answered with an error.
    #[error("the device answered: {0}")]
    Device(#[from] DeviceError),
    /// No answer in time.
    #[error(
        "no answer to {request} within {} s: the device is stuck or the work is slower than that (raise the timeout)",
        after.as_secs_f64()
    )]
    Timeout {
        /// The request.
        request: &'static str,
        /// How long the host waited.
        after: Duration,
    },
    /// An earlier request timed out, so the link cannot tell a late answer
    /// from the next one: the device must be started again.
    #[error(
        "an earlier {request} request timed out; its late answer could be taken for this one's: start the device again"
    )]
    Desynced {
        /// The request that timed out.
        request: &'static str,
    },
    /// QEMU exited (the firmware panicked or faulted, or QEMU failed to start).
    #[error("QEMU exited ({status}) {when}; last lines of its output:\n{stderr}")]
    QemuExited {
        /// Exit status.
        status: String,
        /// What the host was doing.
        when: String,
        /// The last lines of QEMU's stderr and of the firmware's log.
        stderr: String,
    },
    /// The device's answer was not a valid frame.
    #[error("bad frame from the device: {0}")]
    Frame(#[from] FrameError),
    /// A valid frame, but not the answer to the request.
    #[error("unexpected answer to {request}: {got}")]
    Unexpected {
        /// The request.
        request: &'static str,
        /// The answer's kind.
        got: &'static str,
    },
    /// The request does not fit in one frame.
    #[error("the {request} request needs {bytes} bytes, more than the {max}-byte frame limit")]
    RequestTooLarge {
        /// The request.
        request: &'static str,
        /// Its encoded size (at least).
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What the host was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// QEMU is not installed.
    #[error("`qemu-system-arm` was not found on PATH; install it with: sudo apt-get install qemu-system-arm")]
    QemuMissing,
    /// The firmware's Rust target is not installed.
    #[error("the Rust target `{target}` is not installed; install it with: rustup target add {target}")]
    TargetMissing {
        /// The target triple.
        target: String,
    },
    /// Building the firmware failed.
    #[error("building the firmware for board {board} failed ({status}); the end of cargo's output:\n{stderr_tail}")]
    Build {
        /// The board.
        board: String,
        /// cargo's exit status.
        status: String,
        /// The last lines cargo printed.
        stderr_tail: String,
    },
    /// The RTT control block is missing, never set up, or inconsistent.
    #[error("RTT: {reason}")]
    Rtt {
        /// What is wrong, naming the address or field.
        reason: String,
    },
    /// The target (or the emulator's debug stub) stopped answering.
    #[error("{what} did not answer within {} s", after.as_secs_f64())]
    NotAnswering {
        /// Who did not answer, and to what.
        what: String,
        /// How long the host waited.
        after: Duration,
    },
    /// The debug probe (listing, attaching, flashing, memory access).
    #[error(transparent)]
    Probe(#[from] probe::ProbeError),
    /// The board cannot be run the way asked.
    #[error("board {board}: {reason}")]
    Board {
        /// The board.
        board: String,
        /// Why.
        reason: String,
    },
}

impl LinkError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LinkError::Io { context: context.into(), source }
    }
}
