//! The host <-> device protocol: message types and framing.
//!
//! # Framing
//! Every message is a postcard-serialized [`Request`] or [`Response`],
//! COBS-encoded and terminated by one `0x00` byte. A frame on the wire is at
//! most [`MAX_FRAME`] bytes including the terminator. A receiver feeds bytes
//! to a [`FrameReader`], which yields one complete frame at a time and turns
//! garbage (an oversized frame, bad COBS, bad postcard) into a
//! [`FrameError`] without losing sync: the next `0x00` starts a new frame.
//!
//! # Why not postcard-rpc
//! postcard-rpc gives typed endpoints with schema hashes, but its device side
//! is built around async executors and USB/embassy transports. Our device
//! serves one request at a time over a UART (QEMU) or RTT (probes), blocking,
//! with no executor; the host always waits for exactly one answer. A single
//! request enum and a response enum, versioned with [`PROTOCOL_VERSION`] and
//! checked in the `Info` handshake, are all that needs; the COBS + postcard
//! encoding is the same one postcard-rpc uses, so moving later is cheap.
//!
//! # Exchange
//! The host sends a request; the device answers with exactly one response,
//! either the matching variant or [`Response::Error`]. Errors are plain data.

use crate::model::{Padding, Shape, MAX_LAYERS};
use crate::runtime::RunError;
use crate::validate::ModelError;
use serde::{Deserialize, Serialize};

/// Version of this protocol; bumped on any change to the types below.
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest frame on the wire in bytes, terminator included.
pub const MAX_FRAME: usize = 4096;

/// What the host asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request<'a> {
    /// Handshake: the device answers [`Response::Info`], or
    /// [`DeviceError::ProtocolMismatch`] if `protocol` differs from its own.
    Info {
        /// The host's [`PROTOCOL_VERSION`].
        protocol: u16,
    },
    /// Run the loaded model on one input (`i8` codes sent as bytes).
    Run {
        /// Input codes, `input_shape.len()` of them.
        #[serde(borrow)]
        input: &'a [u8],
    },
    /// Time one synthetic layer whose weights the device makes up.
    TimeLayer {
        /// The layer.
        spec: LayerSpec,
        /// How many timed runs; the answer gives the minimum and maximum.
        repeat: u16,
    },
    /// The device's resource statistics: answered by [`Response::Stats`].
    Stats,
}

/// The kind of a synthetic layer to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum SpecKind {
    Conv2d,
    DepthwiseConv2d,
    Dense,
    MaxPool2d,
    AvgPool2d,
    Add,
}

/// A layer described by shape and bits only, for timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Kind.
    pub kind: SpecKind,
    /// Input shape.
    pub input: Shape,
    /// Output channels (Conv2d), output features (Dense); ignored otherwise.
    pub out_c: u16,
    /// Kernel height (1 for Dense and Add).
    pub kh: u8,
    /// Kernel width.
    pub kw: u8,
    /// Vertical stride.
    pub stride_h: u8,
    /// Horizontal stride.
    pub stride_w: u8,
    /// Padding.
    pub pad: Padding,
    /// Weight bits (weighted layers).
    pub wbits: u8,
    /// Activation bits of the input.
    pub in_bits: u8,
    /// Activation bits of the output.
    pub out_bits: u8,
}

/// How the device counts time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CounterUnit {
    /// Executed instructions (QEMU with `-icount`: 1 instruction = 1 tick).
    Instructions,
    /// Core clock cycles (DWT CYCCNT or SysTick on hardware).
    Cycles,
}

impl CounterUnit {
    /// Lowercase plural name for tables.
    pub fn name(self) -> &'static str {
        match self {
            CounterUnit::Instructions => "instructions",
            CounterUnit::Cycles => "cycles",
        }
    }
}

/// State of the model blob on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelStatus {
    /// No blob at the blob address (no magic).
    Absent,
    /// A blob that failed decoding or validation.
    Invalid(ModelError),
    /// A valid model.
    Loaded {
        /// Layers.
        layers: u16,
        /// Blob bytes.
        blob_bytes: u32,
        /// CRC from the blob header.
        crc: u32,
        /// Arena bytes the model needs.
        arena_bytes: u32,
    },
}

/// The device's answer to [`Request::Info`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo<'a> {
    /// The device's [`PROTOCOL_VERSION`].
    pub protocol: u16,
    /// Firmware version string.
    #[serde(borrow)]
    pub firmware: &'a str,
    /// Board name (as in `boards/`).
    #[serde(borrow)]
    pub board: &'a str,
    /// Core, e.g. `cortex-m4`.
    #[serde(borrow)]
    pub core: &'a str,
    /// Core clock in Hz.
    pub clock_hz: u32,
    /// What counts mean.
    pub counter: CounterUnit,
    /// Activation arena available, bytes.
    pub arena_bytes: u32,
    /// Largest frame the device accepts.
    pub max_frame: u32,
    /// The model blob.
    pub model: ModelStatus,
}

/// Result of [`Request::Run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult<'a> {
    /// Output codes (`i8` as bytes).
    #[serde(borrow)]
    pub output: &'a [u8],
    /// Count of each layer, the measurement overhead already subtracted.
    pub counts: heapless::Vec<u32, MAX_LAYERS>,
    /// The overhead of an empty measured interval, subtracted above.
    pub overhead: u32,
}

/// Result of [`Request::TimeLayer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerTime {
    /// Smallest count over the repeats, overhead subtracted.
    pub min: u32,
    /// Largest count over the repeats, overhead subtracted.
    pub max: u32,
    /// Repeats made.
    pub repeat: u16,
    /// The overhead subtracted.
    pub overhead: u32,
}

/// The answer to [`Request::Stats`].
///
/// The stack is painted with a pattern at boot; the peak is how far below
/// the top of the stack the deepest overwritten word lies, since boot (it
/// only grows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStats {
    /// Deepest stack use since boot, bytes.
    pub stack_peak_bytes: u32,
    /// The whole stack region, bytes.
    pub stack_size_bytes: u32,
}

/// What the device answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response<'a> {
    /// Answer to `Info`.
    Info(#[serde(borrow)] DeviceInfo<'a>),
    /// Answer to `Run`.
    Run(#[serde(borrow)] RunResult<'a>),
    /// Answer to `TimeLayer`.
    LayerTime(LayerTime),
    /// Anything that went wrong.
    Error(DeviceError),
    /// Answer to `Stats`.
    Stats(DeviceStats),
}

/// Errors the device reports, as plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DeviceError {
    /// The request frame could not be read.
    #[error("device could not read the request: {0}")]
    Frame(FrameError),
    /// Host and device speak different protocol versions.
    #[error("protocol mismatch: device speaks {device}, host {host}")]
    ProtocolMismatch {
        /// Device version.
        device: u16,
        /// Host version.
        host: u16,
    },
    /// `Run` without a valid model.
    #[error("no valid model is loaded on the device")]
    NoModel,
    /// The model blob is invalid.
    #[error("model blob rejected by the device: {0}")]
    Model(ModelError),
    /// The input or arena did not fit the model.
    #[error("device could not run the model: {0}")]
    Run(RunError),
    /// A synthetic layer spec that does not describe a valid layer.
    #[error("invalid layer spec: {0}")]
    Spec(ModelError),
    /// The request needs more device memory than it has.
    #[error("needs {needed} bytes of device memory, {available} available")]
    OutOfMemory {
        /// Bytes needed.
        needed: u32,
        /// Bytes available.
        available: u32,
    },
    /// The answer would exceed the frame size.
    #[error("response would exceed the {MAX_FRAME}-byte frame limit")]
    ResponseTooLarge,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FrameError {
    /// More than [`MAX_FRAME`] bytes without a terminator.
    #[error("frame longer than {MAX_FRAME} bytes")]
    Overflow,
    /// Not valid COBS.
    #[error("bad COBS encoding")]
    Cobs,
    /// Valid COBS, but not a valid message.
    #[error("bad message encoding ({0})")]
    Decode(crate::model::DecodeErrorKind),
    /// The message does not fit in the output buffer.
    #[error("message does not fit the frame buffer")]
    TooLarge,
}

/// Encode a message as one frame (COBS + terminating zero) into `buf`.
pub fn encode_frame<'b, T: Serialize>(msg: &T, buf: &'b mut [u8]) -> Result<&'b mut [u8], FrameError> {
    postcard::to_slice_cobs(msg, buf).map_err(|_| FrameError::TooLarge)
}

/// Decode one frame's bytes (without the terminator), in place.
pub fn decode_frame<'b, T: Deserialize<'b>>(frame: &'b mut [u8]) -> Result<T, FrameError> {
    let len = cobs::decode_in_place(frame).map_err(|_| FrameError::Cobs)?;
    postcard::from_bytes(&frame[..len]).map_err(|e| FrameError::Decode(e.into()))
}

/// Accumulates bytes from a stream into frames.
pub struct FrameReader<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// What [`FrameReader::push`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Push {
    /// Need more bytes.
    Pending,
    /// A complete frame of this many bytes (call [`FrameReader::take`]).
    Frame(usize),
    /// The frame that just ended was too long; it was dropped.
    Overflow,
}

impl<const N: usize> FrameReader<N> {
    /// An empty reader.
    pub const fn new() -> Self {
        Self { buf: [0; N], len: 0, overflowed: false }
    }

    /// Feed one byte.
    pub fn push(&mut self, byte: u8) -> Push {
        if byte == 0 {
            let len = self.len;
            self.len = 0;
            if core::mem::take(&mut self.overflowed) {
                return Push::Overflow;
            }
            return if len == 0 { Push::Pending } else { Push::Frame(len) };
        }
        if self.len == N {
            self.overflowed = true;
            return Push::Pending;
        }
        self.buf[self.len] = byte;
        self.len += 1;
        Push::Pending
    }

    /// Decode the frame that [`Push::Frame`] announced.
    pub fn take<'b, T: Deserialize<'b>>(&'b mut self, len: usize) -> Result<T, FrameError> {
        decode_frame(&mut self.buf[..len.min(N)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip_req(req: &Request<'_>) {
        let mut buf = [0u8; MAX_FRAME];
        let frame = encode_frame(req, &mut buf).unwrap();
        assert_eq!(*frame.last().unwrap(), 0);
        assert!(!frame[..frame.len() - 1].contains(&0));
        let bytes = frame.to_vec();
        let mut reader = FrameReader::<MAX_FRAME>::new();
        let mut got = None;
        for &b in &bytes {
            if let Push::Frame(n) = reader.push(b) {
                let r: Request<'_> = reader.take(n).unwrap();
                got = Some(format!("{r:?}"));
            }
        }
        assert_eq!(got.unwrap(), format!("{req:?}"));
    }

    #[test]
    fn requests_roundtrip() {
        roundtrip_req(&Request::Info { protocol: PROTOCOL_VERSION });
        roundtrip_req(&Request::Run { input: &[0, 1, 2, 0, 255, 0] });
        roundtrip_req(&Request::TimeLayer {
            spec: LayerSpec {
                kind: SpecKind::Conv2d,
                input: Shape::new(28, 28, 1),
                out_c: 6,
                kh: 5,
                kw: 5,
                stride_h: 1,
                stride_w: 1,
                pad: Padding::default(),
                wbits: 3,
                in_bits: 8,
                out_bits: 4,
            },
            repeat: 3,
        });
        roundtrip_req(&Request::Stats);
    }

    #[test]
    fn responses_roundtrip() {
        let mut counts = heapless::Vec::new();
        counts.extend_from_slice(&[1, 2, 3]).unwrap();
        let resp = Response::Run(RunResult { output: &[1, 2, 0xff], counts, overhead: 7 });
        let mut buf = [0u8; 256];
        let n = encode_frame(&resp, &mut buf).unwrap().len();
        let back: Response<'_> = decode_frame(&mut buf[..n - 1]).unwrap();
        assert_eq!(back, resp);
        let err = Response::Error(DeviceError::Run(RunError::InputLength { expected: 784, actual: 3 }));
        let n = encode_frame(&err, &mut buf).unwrap().len();
        assert_eq!(decode_frame::<Response<'_>>(&mut buf[..n - 1]).unwrap(), err);
    }

    #[test]
    fn stats_roundtrip() {
        let mut buf = [0u8; 64];
        let n = encode_frame(&Request::Stats, &mut buf).unwrap().len();
        assert_eq!(decode_frame::<Request<'_>>(&mut buf[..n - 1]).unwrap(), Request::Stats);
        let resp = Response::Stats(DeviceStats { stack_peak_bytes: 1234, stack_size_bytes: 2_400_000 });
        let n = encode_frame(&resp, &mut buf).unwrap().len();
        assert_eq!(decode_frame::<Response<'_>>(&mut buf[..n - 1]).unwrap(), resp);
    }

    #[test]
    fn garbage_is_an_error_and_sync_recovers() {
        let mut reader = FrameReader::<16>::new();
        // 20 non-zero bytes overflow a 16-byte reader.
        for _ in 0..20 {
            assert_eq!(reader.push(7), Push::Pending);
        }
        assert_eq!(reader.push(0), Push::Overflow);
        // A bad COBS frame: code byte 5 promises 4 more bytes, only 1 follows.
        reader.push(5);
        reader.push(1);
        let Push::Frame(n) = reader.push(0) else { panic!() };
        assert_eq!(reader.take::<Request<'_>>(n), Err(FrameError::Cobs));
        // A valid COBS frame with an unknown enum tag.
        reader.push(2);
        reader.push(9);
        let Push::Frame(n) = reader.push(0) else { panic!() };
        assert!(matches!(reader.take::<Request<'_>>(n), Err(FrameError::Decode(_))));
        // And a good frame after all that still decodes.
        let mut buf = [0u8; 16];
        let frame = encode_frame(&Request::Info { protocol: 1 }, &mut buf).unwrap().to_vec();
        let mut ok = false;
        for b in frame {
            if let Push::Frame(n) = reader.push(b) {
                ok = reader.take::<Request<'_>>(n).unwrap() == Request::Info { protocol: 1 };
            }
        }
        assert!(ok);
    }

    #[test]
    fn encode_too_large_is_an_error() {
        let mut buf = [0u8; 4];
        assert_eq!(encode_frame(&Request::Run { input: &[1; 10] }, &mut buf).unwrap_err(), FrameError::TooLarge);
    }
}
