//! Integer kernels, one function per layer kind.
//!
//! [`reference`] holds the plain scalar kernels: the oracle that every faster
//! kernel is tested against, bit for bit, with the same test body. They read
//! packed weights directly (see [`crate::pack`]) and follow the arithmetic in
//! [`crate::quant`] exactly.
//!
//! All kernels take already-validated layers and correctly sized slices (the
//! runtime guarantees both); they do not allocate.

pub mod reference;

/// Output code bounds of a layer: its clamp intersected with the bit range.
#[inline]
pub fn clamp_bounds(clamp: &crate::model::Clamp, bits: u8) -> (i32, i32) {
    let lo = (clamp.min as i32).max(crate::quant::act_min(bits));
    let hi = (clamp.max as i32).min(crate::quant::act_max(bits));
    (lo, hi)
}
