//! Bit-packing of weights at any bitwidth 2..=8.
//!
//! # Layout (format version 1)
//! A weight tensor is a sequence of *rows*, one per output channel, in output
//! channel order. Row `c` holds the `K` weights that produce output channel
//! `c`, in the order the kernel's inner loop reads them:
//! - Conv2d: `[kh][kw][in_c]` (HWC, input channel fastest);
//! - DepthwiseConv2d: `[kh][kw]`;
//! - Dense: `[in]`, the input flattened in HWC order.
//!
//! Each row is a little-endian bit stream: weight `j` is a `bits`-bit two's
//! complement field occupying stream bits `j*bits .. (j+1)*bits`, and stream
//! bit `i` is bit `i % 8` (LSB first) of byte `i / 8` of the row. A row takes
//! [`row_bytes`]`(K, bits) = ceil(K * bits / 8)` bytes; the unused high bits of
//! its last byte are zero. Rows are concatenated with no further padding, so a
//! tensor takes exactly `out_c * row_bytes(K, bits)` bytes. Odd widths (3, 5,
//! 7) straddle byte boundaries; a field never spans more than two bytes.

/// Bytes one packed row of `len` weights at `bits` bits takes.
#[inline]
pub const fn row_bytes(len: usize, bits: u8) -> usize {
    (len * bits as usize).div_ceil(8)
}

/// Read weight `index` of a packed row, sign-extended.
///
/// `row` must hold at least [`row_bytes`]`(index + 1, bits)` bytes (a
/// validated model guarantees it); `bits` must be in 2..=8.
#[inline]
pub fn get(row: &[u8], bits: u8, index: usize) -> i8 {
    let bit = index * bits as usize;
    let byte = bit / 8;
    let lo = row[byte] as u16;
    let hi = if (bit % 8) + bits as usize > 8 { row[byte + 1] as u16 } else { 0 };
    let word = (lo | (hi << 8)) >> (bit % 8);
    let mask = (1u16 << bits) - 1;
    let field = word & mask;
    // Sign-extend a `bits`-bit field.
    let shift = 16 - bits as u32;
    (((field << shift) as i16) >> shift) as i8
}

/// Unpack a whole row into `out` (`out.len()` weights).
pub fn unpack_row(row: &[u8], bits: u8, out: &mut [i8]) {
    for (j, w) in out.iter_mut().enumerate() {
        *w = get(row, bits, j);
    }
}

/// Error from [`pack_row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// A value does not fit in `bits` bits two's complement.
    #[error("weight {index} = {value} does not fit in {bits} bits")]
    OutOfRange {
        /// Position in the row.
        index: usize,
        /// The offending value.
        value: i8,
        /// Target width.
        bits: u8,
    },
    /// The output slice has the wrong length.
    #[error("packed row needs {expected} bytes, buffer has {actual}")]
    BufferLength {
        /// [`row_bytes`] of the row.
        expected: usize,
        /// Given length.
        actual: usize,
    },
    /// A matrix whose length is not a multiple of its row length.
    #[error("{len} values do not make whole rows of {cols}")]
    Ragged {
        /// Values given.
        len: usize,
        /// Row length.
        cols: usize,
    },
    /// `bits` outside 2..=8.
    #[error("bitwidth {0} is outside 2..=8")]
    Bits(u8),
}

/// Pack `values` into `out`, which must be exactly [`row_bytes`] long.
pub fn pack_row(values: &[i8], bits: u8, out: &mut [u8]) -> Result<(), PackError> {
    if !(2..=8).contains(&bits) {
        return Err(PackError::Bits(bits));
    }
    let expected = row_bytes(values.len(), bits);
    if out.len() != expected {
        return Err(PackError::BufferLength { expected, actual: out.len() });
    }
    let lo = -(1i16 << (bits - 1));
    let hi = (1i16 << (bits - 1)) - 1;
    out.fill(0);
    let mask = (1u16 << bits) - 1;
    for (j, &v) in values.iter().enumerate() {
        if (v as i16) < lo || (v as i16) > hi {
            return Err(PackError::OutOfRange { index: j, value: v, bits });
        }
        let bit = j * bits as usize;
        let field = ((v as i16 as u16) & mask) << (bit % 8);
        out[bit / 8] |= field as u8;
        if (bit % 8) + bits as usize > 8 {
            out[bit / 8 + 1] |= (field >> 8) as u8;
        }
    }
    Ok(())
}

/// Pack a `rows x cols` matrix (row-major) into the tensor layout above.
#[cfg(feature = "std")]
pub fn pack_rows(values: &[i8], cols: usize, bits: u8) -> Result<std::vec::Vec<u8>, PackError> {
    let rb = row_bytes(cols, bits);
    let rows = values.len().checked_div(cols).unwrap_or(0);
    if rows * cols != values.len() {
        return Err(PackError::Ragged { len: values.len(), cols });
    }
    let mut out = std::vec![0u8; rows * rb];
    for r in 0..rows {
        pack_row(&values[r * cols..(r + 1) * cols], bits, &mut out[r * rb..(r + 1) * rb])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(values: &[i8], bits: u8) {
        let mut packed = vec![0u8; row_bytes(values.len(), bits)];
        pack_row(values, bits, &mut packed).unwrap();
        let mut back = vec![0i8; values.len()];
        unpack_row(&packed, bits, &mut back);
        assert_eq!(back, values);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn pack_unpack_roundtrip(bits in 2u8..=8, raw in proptest::collection::vec(any::<i8>(), 0..300)) {
            let lo = -(1i16 << (bits - 1));
            let hi = (1i16 << (bits - 1)) - 1;
            let values: Vec<i8> = raw.iter().map(|&v| (v as i16).clamp(lo, hi) as i8).collect();
            roundtrip(&values, bits);
        }

        #[test]
        fn padding_bits_are_zero(bits in 2u8..=8, len in 1usize..64) {
            let values = vec![-1i8; len];
            let mut packed = vec![0u8; row_bytes(len, bits)];
            pack_row(&values, bits, &mut packed).unwrap();
            let used = len * bits as usize;
            let total = packed.len() * 8;
            for i in used..total {
                prop_assert_eq!(packed[i / 8] >> (i % 8) & 1, 0);
            }
        }
    }

    #[test]
    fn every_length_and_width_exhaustive_small() {
        for bits in 2..=8u8 {
            let lo = -(1i16 << (bits - 1));
            let hi = (1i16 << (bits - 1)) - 1;
            for len in 0..40 {
                let values: Vec<i8> = (0..len).map(|j| (lo + (j as i16 * 7) % (hi - lo + 1)) as i8).collect();
                roundtrip(&values, bits);
            }
        }
    }

    #[test]
    fn pinned_layouts() {
        // 2 bits: [1, -1, 0, -2] -> fields 01 11 00 10 (LSB first) = 0b10_00_11_01.
        let mut out = [0u8; 1];
        pack_row(&[1, -1, 0, -2], 2, &mut out).unwrap();
        assert_eq!(out, [0b1000_1101]);
        // 3 bits: [3, -4, 1] -> 011, 100, 001 at bits 0,3,6: byte0 = 0b01_100_011, byte1 = 0b0.
        let mut out = [0u8; 2];
        pack_row(&[3, -4, 1], 3, &mut out).unwrap();
        assert_eq!(out, [0b0110_0011, 0b0000_0000]);
        // 5 bits: [-1, 5] -> 11111 then 00101 at bit 5: byte0 = 101_11111, byte1 = 00.
        let mut out = [0u8; 2];
        pack_row(&[-1, 5], 5, &mut out).unwrap();
        assert_eq!(out, [0b1011_1111, 0b0000_0000]);
        // 8 bits is plain two's complement bytes.
        let mut out = [0u8; 3];
        pack_row(&[-128, 127, -1], 8, &mut out).unwrap();
        assert_eq!(out, [0x80, 0x7f, 0xff]);
    }

    #[test]
    fn errors() {
        let mut out = [0u8; 1];
        assert_eq!(pack_row(&[2], 2, &mut out), Err(PackError::OutOfRange { index: 0, value: 2, bits: 2 }));
        assert_eq!(pack_row(&[0], 9, &mut out), Err(PackError::Bits(9)));
        assert_eq!(pack_row(&[0; 5], 2, &mut out), Err(PackError::BufferLength { expected: 2, actual: 1 }));
    }
}
