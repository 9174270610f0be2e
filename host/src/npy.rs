//! A small reader and writer of NumPy `.npy` files: the subset releq needs
//! for users' inputs, outputs and labels.
//!
//! Read: format versions 1.0, 2.0 and 3.0 (3.0 is 2.0 with a UTF-8 header),
//! C order only, little-endian (or byte-order-free) `i1`, `u1`, `f4`, `i4`
//! and `i8`. Written: int8 (`|i1`) and float32 (`<f4`), format 1.0.
//!
//! The reader never panics and allocates only what the file itself holds:
//! the data size the header announces is checked (with overflow checks)
//! against the bytes present before anything is converted. Every error
//! names the byte offset or the header field that is wrong.

use std::path::{Path, PathBuf};

/// The six bytes every `.npy` file starts with.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element type of an array (`descr` without the byte-order character).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `i1`: int8.
    I8,
    /// `u1`: uint8.
    U8,
    /// `f4`: float32.
    F32,
    /// `i4`: int32.
    I32,
    /// `i8`: int64.
    I64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 | Dtype::U8 => 1,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::I64 => 8,
        }
    }

    /// NumPy's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::F32 => "float32",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The values of an array, in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// int8 values.
    I8(Vec<i8>),
    /// uint8 values.
    U8(Vec<u8>),
    /// float32 values.
    F32(Vec<f32>),
    /// int32 values.
    I32(Vec<i32>),
    /// int64 values.
    I64(Vec<i64>),
}

impl Data {
    /// The element type.
    pub fn dtype(&self) -> Dtype {
        match self {
            Data::I8(_) => Dtype::I8,
            Data::U8(_) => Dtype::U8,
            Data::F32(_) => Dtype::F32,
            Data::I32(_) => Dtype::I32,
            Data::I64(_) => Dtype::I64,
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Data::I8(v) => v.len(),
            Data::U8(v) => v.len(),
            Data::F32(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as `i64` if the type is an integer type.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self {
            Data::I8(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Data::U8(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Data::I32(v) => Some(v.iter().map(|&x| x.into()).collect()),
            Data::I64(v) => Some(v.clone()),
            Data::F32(_) => None,
        }
    }
}

/// A parsed `.npy` array.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// The shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// The values, C order.
    pub data: Data,
}

/// What is wrong with a `.npy` file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NpyError {
    /// Not a `.npy` file.
    #[error("bytes 0..6: not a .npy file (it does not start with \\x93NUMPY)")]
    Magic,
    /// The file ends inside the preamble or the header.
    #[error("truncated: the {part} needs bytes {start}..{end}, the file has {len} bytes")]
    TruncatedHeader {
        /// `"preamble"` or `"header"`.
        part: &'static str,
        /// First byte of the part.
        start: usize,
        /// End of the part.
        end: usize,
        /// File length.
        len: usize,
    },
    /// A format version this reader does not know.
    #[error("byte 6: format version {major}.{minor} is not supported (1.0, 2.0, 3.0 are)")]
    Version {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// The header dictionary cannot be parsed or misses a field.
    #[error("header (bytes {start}..{end}): {reason}")]
    Header {
        /// First byte of the header.
        start: usize,
        /// End of the header.
        end: usize,
        /// What is wrong.
        reason: String,
    },
    /// A `descr` this reader does not read.
    #[error("header field 'descr' is {0:?}: supported are int8 '|i1', uint8 '|u1', float32 '<f4', int32 '<i4', int64 '<i8' (little-endian)")]
    Dtype(String),
    /// Fortran order.
    #[error("header field 'fortran_order' is True: only C-order arrays are read (save with np.ascontiguousarray)")]
    FortranOrder,
    /// The shape's element count overflows.
    #[error("header field 'shape' {0:?} is too large")]
    TooLarge(Vec<usize>),
    /// The data is shorter or longer than the header says.
    #[error("data (from byte {start}): shape {shape:?} of {dtype} needs {expected} bytes, the file has {found}")]
    DataLength {
        /// First data byte.
        start: usize,
        /// The shape.
        shape: Vec<usize>,
        /// The type.
        dtype: Dtype,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
}

/// A [`NpyError`] or an I/O error, with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum NpyFileError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not a readable `.npy`.
    #[error("{}: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: NpyError,
    },
}

/// Read and parse a `.npy` file.
pub fn read(path: &Path) -> Result<Array, NpyFileError> {
    let bytes = std::fs::read(path).map_err(|source| NpyFileError::Io { path: path.into(), source })?;
    parse(&bytes).map_err(|source| NpyFileError::Format { path: path.into(), source })
}

/// Parse the bytes of a `.npy` file.
pub fn parse(b: &[u8]) -> Result<Array, NpyError> {
    if b.len() < 6 || &b[..6] != MAGIC {
        return Err(if b.len() < 6 && MAGIC.starts_with(b) && !b.is_empty() {
            NpyError::TruncatedHeader { part: "preamble", start: 0, end: 10, len: b.len() }
        } else {
            NpyError::Magic
        });
    }
    let pre = |end: usize| {
        if b.len() < end {
            Err(NpyError::TruncatedHeader { part: "preamble", start: 0, end, len: b.len() })
        } else {
            Ok(())
        }
    };
    pre(8)?;
    let (major, minor) = (b[6], b[7]);
    let (hlen, start): (usize, usize) = match (major, minor) {
        (1, 0) => {
            pre(10)?;
            (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
        }
        (2 | 3, 0) => {
            pre(12)?;
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        _ => return Err(NpyError::Version { major, minor }),
    };
    let end = start.checked_add(hlen).filter(|&e| e <= b.len()).ok_or(NpyError::TruncatedHeader {
        part: "header",
        start,
        end: start.saturating_add(hlen),
        len: b.len(),
    })?;
    let bad = |reason: String| NpyError::Header { start, end, reason };
    let text = std::str::from_utf8(&b[start..end]).map_err(|e| bad(format!("not text: {e}")))?;
    let header = parse_header(text).map_err(bad)?;
    let dtype = match header.descr.as_str() {
        "|i1" | "<i1" | "i1" => Dtype::I8,
        "|u1" | "<u1" | "u1" => Dtype::U8,
        "<f4" => Dtype::F32,
        "<i4" => Dtype::I32,
        "<i8" => Dtype::I64,
        other => return Err(NpyError::Dtype(other.into())),
    };
    if header.fortran_order {
        return Err(NpyError::FortranOrder);
    }
    let expected = header
        .shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| NpyError::TooLarge(header.shape.clone()))?;
    let data = &b[end..];
    if data.len() != expected {
        return Err(NpyError::DataLength { start: end, shape: header.shape, dtype, expected, found: data.len() });
    }
    let data = match dtype {
        Dtype::I8 => Data::I8(data.iter().map(|&x| x as i8).collect()),
        Dtype::U8 => Data::U8(data.to_vec()),
        Dtype::F32 => Data::F32(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        Dtype::I32 => Data::I32(data.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        Dtype::I64 => Data::I64(
            data.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
    };
    Ok(Array { shape: header.shape, data })
}

/// The three fields of a header.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parse the header dictionary, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_header(text: &str) -> Result<Header, String> {
    let body = text.trim_end_matches(['\n', ' ', '\0']).trim();
    let body = body
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .ok_or_else(|| format!("not a dictionary: {body:?}"))?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    let mut rest = body.trim_start();
    while !rest.is_empty() {
        let (key, after) = quoted(rest).ok_or_else(|| format!("expected a quoted key at {rest:?}"))?;
        let after = after.trim_start().strip_prefix(':').ok_or_else(|| format!("expected ':' after '{key}'"))?;
        let after = after.trim_start();
        let after = match key {
            "descr" => {
                let (v, a) =
                    quoted(after).ok_or("field 'descr' is not a quoted string (structured dtypes are not read)")?;
                descr = Some(v.to_string());
                a
            }
            "fortran_order" => {
                if let Some(a) = after.strip_prefix("True") {
                    fortran = Some(true);
                    a
                } else if let Some(a) = after.strip_prefix("False") {
                    fortran = Some(false);
                    a
                } else {
                    return Err("field 'fortran_order' is neither True nor False".into());
                }
            }
            "shape" => {
                let inner = after.strip_prefix('(').ok_or("field 'shape' is not a tuple")?;
                let close = inner.find(')').ok_or("field 'shape' has no closing ')'")?;
                let dims = inner[..close]
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.trim_end_matches('L').parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("field 'shape' ({}) has a bad dimension: {e}", &inner[..close]))?;
                shape = Some(dims);
                &inner[close + 1..]
            }
            other => return Err(format!("unknown field '{other}'")),
        };
        let after = after.trim_start();
        rest = after.strip_prefix(',').unwrap_or(after).trim_start();
        if !after.starts_with(',') && !rest.is_empty() {
            return Err(format!("expected ',' before {rest:?}"));
        }
    }
    Ok(Header {
        descr: descr.ok_or("no field 'descr'")?,
        fortran_order: fortran.ok_or("no field 'fortran_order'")?,
        shape: shape.ok_or("no field 'shape'")?,
    })
}

/// A `'...'` or `"..."` string at the start of `s`: (content, rest).
fn quoted(s: &str) -> Option<(&str, &str)> {
    let q = s.chars().next().filter(|&c| c == '\'' || c == '"')?;
    let inner = &s[1..];
    let close = inner.find(q)?;
    Some((&inner[..close], &inner[close + 1..]))
}

/// Encode an array as a format 1.0 `.npy` (the header padded so the data
/// starts at a multiple of 64 bytes, as NumPy does).
///
/// # Panics
/// If `data.len()` is not the product of `shape`.
pub fn encode(shape: &[usize], data: &Data) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "shape {shape:?} does not hold {} values", data.len());
    let descr = match data.dtype() {
        Dtype::I8 => "|i1",
        Dtype::U8 => "|u1",
        Dtype::F32 => "<f4",
        Dtype::I32 => "<i4",
        Dtype::I64 => "<i8",
    };
    let dims: String = match shape {
        [d] => format!("{d},"),
        _ => shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({dims}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * data.dtype().size());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    match data {
        Data::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
        Data::U8(v) => out.extend_from_slice(v),
        Data::F32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        Data::I64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
    }
    out
}

/// Write an array to a `.npy` file.
///
/// # Panics
/// If `data.len()` is not the product of `shape`.
pub fn write(path: &Path, shape: &[usize], data: &Data) -> Result<(), NpyFileError> {
    std::fs::write(path, encode(shape, data)).map_err(|source| NpyFileError::Io { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite").join(name)
    }

    #[test]
    fn reads_the_fixture_script_files() {
        let a = read(&fixture("lenet.input.npy")).unwrap();
        assert_eq!(a.shape, [200, 14, 14, 1]);
        assert_eq!(a.data.dtype(), Dtype::I8);
        let raw = std::fs::read(fixture("lenet.input.npy")).unwrap();
        let Data::I8(v) = &a.data else { unreachable!() };
        assert_eq!(v.iter().map(|&x| x as u8).collect::<Vec<_>>(), raw[raw.len() - 200 * 196..]);
    }

    #[test]
    fn round_trips_every_type_and_shape() {
        let cases = [
            (vec![2, 3], Data::I8(vec![-128, -1, 0, 1, 2, 127])),
            (vec![4], Data::U8(vec![0, 1, 254, 255])),
            (vec![1, 2, 1], Data::F32(vec![-1.5, f32::MAX])),
            (vec![3], Data::I32(vec![i32::MIN, 0, 7])),
            (vec![2, 1], Data::I64(vec![i64::MAX, -9])),
            (vec![0, 5], Data::I8(vec![])),
            (vec![], Data::F32(vec![0.25])),
        ];
        for (shape, data) in cases {
            let b = encode(&shape, &data);
            assert_eq!(b[8..10], ((b.len() - data.len() * data.dtype().size() - 10) as u16).to_le_bytes());
            assert_eq!((b.len() - data.len() * data.dtype().size()) % 64, 0, "data aligned to 64");
            assert_eq!(parse(&b).unwrap(), Array { shape: shape.clone(), data: data.clone() }, "{shape:?}");
        }
    }

    fn with_header(version: u8, header: &str, data: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[version, 0]);
        if version == 1 {
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_version_2_and_other_spellings() {
        let b = with_header(2, "{\"shape\": (2L,), \"fortran_order\": False, \"descr\": \"<i8\"}\n", &[1; 16]);
        let a = parse(&b).unwrap();
        assert_eq!(a.shape, [2]);
        assert_eq!(a.data, Data::I64(vec![0x0101_0101_0101_0101; 2]));
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let good = encode(&[2, 2], &Data::F32(vec![1.0; 4]));
        let e = parse(b"PK\x03\x04 a zip").unwrap_err();
        assert_eq!(e, NpyError::Magic);
        assert!(e.to_string().contains("bytes 0..6"), "{e}");
        let e = parse(&good[..9]).unwrap_err();
        assert!(e.to_string().contains("preamble needs bytes 0..10, the file has 9"), "{e}");
        let e = parse(&good[..40]).unwrap_err();
        assert!(matches!(e, NpyError::TruncatedHeader { part: "header", start: 10, len: 40, .. }), "{e}");
        let e = parse(&good[..good.len() - 3]).unwrap_err();
        assert_eq!(e.to_string(), "data (from byte 128): shape [2, 2] of float32 needs 16 bytes, the file has 13");
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(parse(&long).unwrap_err(), NpyError::DataLength { expected: 16, found: 17, .. }));
        let mut v = good.clone();
        v[6] = 4;
        assert_eq!(
            parse(&v).unwrap_err().to_string(),
            "byte 6: format version 4.0 is not supported (1.0, 2.0, 3.0 are)"
        );
        let e = parse(&with_header(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", &[0; 4]));
        assert!(e.unwrap_err().to_string().contains("'descr' is \">f4\""));
        let e = parse(&with_header(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", &[0; 8]));
        assert!(matches!(e.unwrap_err(), NpyError::Dtype(d) if d == "<f8"));
        let e = parse(&with_header(1, "{'descr': '|i1', 'fortran_order': True, 'shape': (1,), }", &[0]));
        assert_eq!(e.unwrap_err(), NpyError::FortranOrder);
        let e = parse(&with_header(1, "{'descr': '|i1', 'fortran_order': False, }", &[0]));
        assert!(e.unwrap_err().to_string().contains("no field 'shape'"));
        let e = parse(&with_header(1, "{'descr': '|i1', 'fortran_order': False, 'shape': (-1,), }", &[0]));
        assert!(e.unwrap_err().to_string().contains("bad dimension"));
        let huge = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}", usize::MAX, 2);
        assert!(matches!(parse(&with_header(1, &huge, &[])).unwrap_err(), NpyError::TooLarge(_)));
        // Large but representable: an error from the lengths, no allocation.
        let big = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000), }";
        assert!(matches!(parse(&with_header(1, big, &[0; 8])).unwrap_err(), NpyError::DataLength { found: 8, .. }));
        // A header length past the end of the file.
        let mut h = good.clone();
        h[8..10].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(parse(&h).unwrap_err(), NpyError::TruncatedHeader { part: "header", .. }));
    }

    #[test]
    fn no_cut_or_byte_flip_panics() {
        let good = encode(&[3, 2], &Data::I64(vec![1, 2, 3, 4, 5, 6]));
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut} parsed");
        }
        for i in 0..good.len() {
            for v in [0u8, b'(', b')', b',', b'\'', b'{', b'}', 0xff, b'9'] {
                let mut m = good.clone();
                m[i] = v;
                let _ = parse(&m);
            }
        }
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let e = read(&p).unwrap_err();
        assert!(matches!(e, NpyFileError::Io { .. }) && e.to_string().contains("x.npy"), "{e}");
        std::fs::write(&p, b"nope").unwrap();
        let e = read(&p).unwrap_err();
        assert!(e.to_string().starts_with(&format!("{}: bytes 0..6", p.display())), "{e}");
        write(&p, &[1], &Data::I8(vec![5])).unwrap();
        assert_eq!(read(&p).unwrap().data, Data::I8(vec![5]));
    }
}
