//! The `.releq` model format: types, header, encoding and decoding.
//!
//! # File layout (format version 1)
//! ```text
//! offset  size  field
//! 0       4     magic  b"RELQ"
//! 4       2     format version, u16 little-endian (= FORMAT_VERSION)
//! 6       2     reserved, zero
//! 8       4     payload length in bytes, u32 little-endian
//! 12      4     CRC-32 (ISO-HDLC, as zlib) of the payload, u32 little-endian
//! 16      ...   payload: a postcard-serialized [`Model`]
//! ```
//! The header is fixed-size plain bytes so a reader can reject a wrong file or
//! version before decoding anything. Nothing may follow the payload.
//!
//! # Graph
//! A model is a list of layers in execution order. Tensor 0 is the model
//! input; layer `i` writes tensor `i + 1`; the model output is the last
//! tensor. Each layer names the tensor it reads (`input`), and a residual
//! [`Add`] a second one (`other`), so skip connections and branches (a 1x1
//! convolution on a shortcut) are expressed without a separate graph section.
//! Layers must only read earlier tensors.
//!
//! # Tensors in RAM
//! Activations are NHWC with N = 1, one `i8` per value whatever the
//! activation bitwidth (2..=8): low-bit activations are not packed in RAM,
//! which keeps every kernel's addressing trivial. The arena size reported by
//! the validator counts them that way.
//!
//! # Zero copy
//! [`Model::decode`] borrows every byte array (weights, bias, requantization)
//! from the input buffer and needs no allocator: the layer list is a
//! `heapless::Vec` bounded by [`MAX_LAYERS`]. Multi-byte per-channel values
//! are stored as little-endian byte arrays (the blob has no alignment
//! guarantee) and read with the accessors on [`Weights`].

use crc::{Crc, CRC_32_ISO_HDLC};
use serde::{Deserialize, Serialize};

/// First four bytes of every `.releq` file.
pub const MAGIC: [u8; 4] = *b"RELQ";
/// Version of the layout described in this module.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;
/// Most layers a model may have.
pub const MAX_LAYERS: usize = 64;
/// Longest model name in bytes.
pub const MAX_NAME: usize = 64;

/// The CRC used for the payload (CRC-32/ISO-HDLC, the one zlib and PNG use).
pub const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// A tensor shape: height, width, channels (batch is always 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    /// Height.
    pub h: u16,
    /// Width.
    pub w: u16,
    /// Channels.
    pub c: u16,
}

impl Shape {
    /// Build a shape.
    pub const fn new(h: u16, w: u16, c: u16) -> Self {
        Self { h, w, c }
    }
    /// Number of elements.
    pub const fn len(&self) -> usize {
        self.h as usize * self.w as usize * self.c as usize
    }
    /// Number of elements, computed without overflow on any target.
    pub const fn elems(&self) -> u64 {
        self.h as u64 * self.w as u64 * self.c as u64
    }
    /// True when some dimension is zero.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a tensor's integer codes map to real values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TensorQuant {
    /// Real value of one step.
    pub scale: f32,
    /// Code of real 0, within the `bits` range.
    pub zero_point: i32,
    /// Activation bitwidth, 2..=8.
    pub bits: u8,
}

/// A fused activation, applied as a clamp in the output's integer domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// No activation.
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
}

/// Clamp bounds in output codes; the kernel clamps to
/// `[max(qmin, min), min(qmax, max)]`. They carry the fused activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clamp {
    /// Lowest output code.
    pub min: i16,
    /// Highest output code.
    pub max: i16,
}

/// Padding in pixels on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Padding {
    /// Rows added above.
    pub top: u8,
    /// Columns added to the left.
    pub left: u8,
    /// Rows added below.
    pub bottom: u8,
    /// Columns added to the right.
    pub right: u8,
}

impl Padding {
    /// The same padding on every side.
    pub const fn same(p: u8) -> Self {
        Self { top: p, left: p, bottom: p, right: p }
    }
}

/// The parameters of a weighted layer, all borrowed from the blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights<'a> {
    /// Weight bitwidth, 2..=8.
    pub bits: u8,
    /// Packed weights, one row per output channel (see [`crate::pack`]).
    #[serde(borrow)]
    pub packed: &'a [u8],
    /// One `i32` per output channel, little-endian.
    #[serde(borrow)]
    pub bias: &'a [u8],
    /// One requantization multiplier (`i32`, little-endian) per output channel.
    #[serde(borrow)]
    pub multiplier: &'a [u8],
    /// One requantization shift (`i8`) per output channel.
    #[serde(borrow)]
    pub shift: &'a [u8],
}

fn le_i32(bytes: &[u8], i: usize) -> i32 {
    let b = &bytes[i * 4..i * 4 + 4];
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

impl Weights<'_> {
    /// Bias of output channel `c`.
    #[inline]
    pub fn bias(&self, c: usize) -> i32 {
        le_i32(self.bias, c)
    }
    /// Requantization of output channel `c`.
    #[inline]
    pub fn requant(&self, c: usize) -> crate::quant::QuantizedMultiplier {
        crate::quant::QuantizedMultiplier { multiplier: le_i32(self.multiplier, c), shift: self.shift[c] as i8 }
    }
    /// Packed row of output channel `c`, `row_bytes` long.
    #[inline]
    pub fn row(&self, c: usize, row_bytes: usize) -> &[u8] {
        &self.packed[c * row_bytes..(c + 1) * row_bytes]
    }
    /// Bytes these parameters take in the blob's byte arrays.
    pub fn param_bytes(&self) -> usize {
        self.packed.len() + self.bias.len() + self.multiplier.len() + self.shift.len()
    }
}

/// A 2-D convolution (also used for depthwise convolution, where
/// `out_c` must equal the input channels and each row has `kh * kw` weights).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Conv2d<'a> {
    /// Tensor read.
    pub input: u16,
    /// Output channels.
    pub out_c: u16,
    /// Kernel height.
    pub kh: u8,
    /// Kernel width.
    pub kw: u8,
    /// Vertical stride.
    pub stride_h: u8,
    /// Horizontal stride.
    pub stride_w: u8,
    /// Zero padding (with the input's zero point).
    pub pad: Padding,
    /// Fused activation (informational; [`Self::clamp`] is what runs).
    pub act: Activation,
    /// Output clamp in output codes.
    pub clamp: Clamp,
    /// Output tensor quantization (its bits are the layer's activation bits).
    pub out: TensorQuant,
    /// Weights, bias and requantization.
    #[serde(borrow)]
    pub w: Weights<'a>,
}

/// A fully connected layer; its input is read flattened in HWC order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Dense<'a> {
    /// Tensor read.
    pub input: u16,
    /// Output features.
    pub out_features: u16,
    /// Fused activation (informational).
    pub act: Activation,
    /// Output clamp in output codes.
    pub clamp: Clamp,
    /// Output tensor quantization.
    pub out: TensorQuant,
    /// Weights, bias and requantization.
    #[serde(borrow)]
    pub w: Weights<'a>,
}

/// Max or average pooling; the output has the input's quantization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// Tensor read.
    pub input: u16,
    /// Window height.
    pub kh: u8,
    /// Window width.
    pub kw: u8,
    /// Vertical stride.
    pub stride_h: u8,
    /// Horizontal stride.
    pub stride_w: u8,
    /// Padding; padded positions are ignored (not counted in averages).
    pub pad: Padding,
}

/// Residual add of two tensors of the same shape (TFLite int8 arithmetic).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Add {
    /// First tensor.
    pub input: u16,
    /// Second tensor.
    pub other: u16,
    /// Fused activation (informational).
    pub act: Activation,
    /// Output clamp.
    pub clamp: Clamp,
    /// Output quantization.
    pub out: TensorQuant,
    /// Rescaling of both inputs and of the sum.
    pub params: crate::quant::AddParams,
}

/// Reinterpret a tensor with a new shape of the same size (Flatten is a
/// reshape to `1 x 1 x N`). It costs nothing: the output aliases the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reshape {
    /// Tensor read.
    pub input: u16,
    /// New shape.
    pub shape: Shape,
}

/// One layer of a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Layer<'a> {
    /// Standard convolution.
    Conv2d(#[serde(borrow)] Conv2d<'a>),
    /// Depthwise convolution (channel multiplier 1).
    DepthwiseConv2d(#[serde(borrow)] Conv2d<'a>),
    /// Fully connected.
    Dense(#[serde(borrow)] Dense<'a>),
    /// Max pooling.
    MaxPool2d(Pool),
    /// Average pooling.
    AvgPool2d(Pool),
    /// Residual add.
    Add(Add),
    /// Flatten / reshape.
    Reshape(Reshape),
}

impl<'a> Layer<'a> {
    /// Short lowercase name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv2d(_) => "conv2d",
            Layer::DepthwiseConv2d(_) => "dwconv2d",
            Layer::Dense(_) => "dense",
            Layer::MaxPool2d(_) => "maxpool2d",
            Layer::AvgPool2d(_) => "avgpool2d",
            Layer::Add(_) => "add",
            Layer::Reshape(_) => "reshape",
        }
    }
    /// The (first) tensor this layer reads.
    pub fn input(&self) -> u16 {
        match self {
            Layer::Conv2d(l) | Layer::DepthwiseConv2d(l) => l.input,
            Layer::Dense(l) => l.input,
            Layer::MaxPool2d(l) | Layer::AvgPool2d(l) => l.input,
            Layer::Add(l) => l.input,
            Layer::Reshape(l) => l.input,
        }
    }
    /// Weights of a weighted layer.
    pub fn weights(&self) -> Option<&Weights<'a>> {
        match self {
            Layer::Conv2d(l) | Layer::DepthwiseConv2d(l) => Some(&l.w),
            Layer::Dense(l) => Some(&l.w),
            _ => None,
        }
    }
    /// Mutable weights of a weighted layer (host-side editing).
    pub fn weights_mut(&mut self) -> Option<&mut Weights<'a>> {
        match self {
            Layer::Conv2d(l) | Layer::DepthwiseConv2d(l) => Some(&mut l.w),
            Layer::Dense(l) => Some(&mut l.w),
            _ => None,
        }
    }
    /// Output quantization set by this layer, if it sets one (pooling and
    /// reshape keep their input's).
    pub fn out_quant(&self) -> Option<&TensorQuant> {
        match self {
            Layer::Conv2d(l) | Layer::DepthwiseConv2d(l) => Some(&l.out),
            Layer::Dense(l) => Some(&l.out),
            Layer::Add(l) => Some(&l.out),
            _ => None,
        }
    }
}

/// A whole model as stored in a `.releq` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model<'a> {
    /// Free-form name, at most [`MAX_NAME`] bytes.
    #[serde(borrow)]
    pub name: &'a str,
    /// Input shape.
    pub input_shape: Shape,
    /// Input quantization: the host quantizes real inputs with it.
    pub input_quant: TensorQuant,
    /// Layers in execution order.
    #[serde(borrow)]
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
}

/// Why a byte buffer is not a `.releq` model (before layer validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than the fixed header.
    #[error("file is {len} bytes, shorter than the {HEADER_LEN}-byte header")]
    TooShortForHeader {
        /// Bytes present.
        len: u32,
    },
    /// The first four bytes are not `RELQ`.
    #[error("bad magic at byte 0: found {found:02x?}, expected \"RELQ\" (not a .releq file)")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A version this build cannot read.
    #[error("format version {found} at byte 4 is not supported (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// Version in the file.
        found: u16,
    },
    /// Reserved header bytes are not zero.
    #[error("reserved header bytes 6..8 are not zero")]
    Reserved,
    /// The payload is shorter than the header says: the file was truncated.
    #[error("truncated: header (byte 8) declares a {declared}-byte payload, only {available} bytes follow the header")]
    Truncated {
        /// Declared payload length.
        declared: u32,
        /// Bytes actually after the header.
        available: u32,
    },
    /// Bytes after the declared payload.
    #[error("{extra} unexpected bytes after the {declared}-byte payload")]
    TrailingBytes {
        /// Declared payload length.
        declared: u32,
        /// Extra bytes.
        extra: u32,
    },
    /// The payload's CRC does not match the header: the file is corrupt.
    #[error("CRC mismatch: header (byte 12) says {expected:#010x}, payload computes {actual:#010x} (file corrupt)")]
    Crc {
        /// CRC in the header.
        expected: u32,
        /// CRC of the payload.
        actual: u32,
    },
    /// The payload passed the CRC but does not decode as a model.
    #[error("payload does not decode as a model ({0}); it was written by an incompatible encoder")]
    Decode(DecodeErrorKind),
    /// Bytes left over inside the payload after the model.
    #[error("{extra} bytes left in the payload after the model")]
    PayloadTrailing {
        /// Extra bytes.
        extra: u32,
    },
}

/// Why postcard could not decode a payload (a plain-data mirror of postcard's
/// error, so it can travel in an error frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DecodeErrorKind {
    /// Ran out of bytes.
    #[error("unexpected end of payload")]
    UnexpectedEnd,
    /// A bounded list (layers, name) is longer than its capacity.
    #[error("a list is longer than its capacity (at most {MAX_LAYERS} layers)")]
    TooLong,
    /// Any other malformed value (bad enum tag, bad varint, bad UTF-8).
    #[error("malformed value")]
    Malformed,
}

impl From<postcard::Error> for DecodeErrorKind {
    fn from(e: postcard::Error) -> Self {
        match e {
            postcard::Error::DeserializeUnexpectedEnd => DecodeErrorKind::UnexpectedEnd,
            // heapless reports an over-long list through serde's custom error.
            postcard::Error::SerdeDeCustom => DecodeErrorKind::TooLong,
            _ => DecodeErrorKind::Malformed,
        }
    }
}

/// The parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u16,
    /// Payload length.
    pub payload_len: u32,
    /// CRC of the payload.
    pub crc: u32,
}

/// Check the header and CRC and return the payload slice.
pub fn parse_header(bytes: &[u8]) -> Result<(Header, &[u8]), FormatError> {
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::TooShortForHeader { len: bytes.len() as u32 });
    }
    let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if found != MAGIC {
        return Err(FormatError::BadMagic { found });
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion { found: version });
    }
    if bytes[6] != 0 || bytes[7] != 0 {
        return Err(FormatError::Reserved);
    }
    let payload_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    let available = bytes.len() - HEADER_LEN;
    if (available as u64) < payload_len as u64 {
        return Err(FormatError::Truncated { declared: payload_len, available: available as u32 });
    }
    if available as u64 > payload_len as u64 {
        return Err(FormatError::TrailingBytes {
            declared: payload_len,
            extra: (available as u64 - payload_len as u64) as u32,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    let actual = CRC32.checksum(payload);
    if actual != crc {
        return Err(FormatError::Crc { expected: crc, actual });
    }
    Ok((Header { version, payload_len, crc }, payload))
}

impl<'a> Model<'a> {
    /// Decode a whole `.releq` file (header, CRC, payload), borrowing from
    /// `bytes`. This does not validate the layers: see
    /// [`crate::validate::Plan::new`].
    pub fn decode(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let (_, payload) = parse_header(bytes)?;
        let (model, rest) =
            postcard::take_from_bytes::<Model<'a>>(payload).map_err(|e| FormatError::Decode(e.into()))?;
        if !rest.is_empty() {
            return Err(FormatError::PayloadTrailing { extra: rest.len() as u32 });
        }
        Ok(model)
    }

    /// Encode into `buf` (header + payload); returns the used prefix.
    pub fn encode_to_slice<'b>(&self, buf: &'b mut [u8]) -> Result<&'b mut [u8], postcard::Error> {
        if buf.len() < HEADER_LEN {
            return Err(postcard::Error::SerializeBufferFull);
        }
        let (head, body) = buf.split_at_mut(HEADER_LEN);
        let payload_len = postcard::to_slice(self, body)?.len();
        let crc = CRC32.checksum(&body[..payload_len]);
        write_header(head, payload_len as u32, crc);
        Ok(&mut buf[..HEADER_LEN + payload_len])
    }

    /// Encode into a new vector (header + payload).
    #[cfg(feature = "std")]
    pub fn encode(&self) -> std::vec::Vec<u8> {
        let payload = postcard::to_stdvec(self).expect("serializing to a Vec cannot fail");
        let mut out = std::vec![0u8; HEADER_LEN];
        write_header(&mut out, payload.len() as u32, CRC32.checksum(&payload));
        out.extend_from_slice(&payload);
        out
    }
}

fn write_header(head: &mut [u8], payload_len: u32, crc: u32) {
    head[0..4].copy_from_slice(&MAGIC);
    head[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    head[6..8].copy_from_slice(&[0, 0]);
    head[8..12].copy_from_slice(&payload_len.to_le_bytes());
    head[12..16].copy_from_slice(&crc.to_le_bytes());
}
