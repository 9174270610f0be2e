//! Integer kernels, one function per layer kind, in interchangeable sets.
//!
//! - [`reference`]: plain scalar loops, the oracle every faster kernel is
//!   tested against, bit for bit, with the same test body;
//! - [`fast`]: im2col into 16-bit lane words and blocked dot products,
//!   written once over the [`mac::Mac`] operations and instantiated as
//!   [`Fast<Portable>`](mac::Portable) (plain Rust: the host, Cortex-M3,
//!   M0+) and, on ARMv7E-M, [`Fast<Dsp>`](dsp::Dsp) (`SMLAD`, `SXTB16`);
//!   its convolutions with 1 to 3 input channels (the first layer of image
//!   models) run [`first`] instead, a FIR-style kernel over a padded 16-bit
//!   copy of the input, when [`first::applies`]; depthwise convolution runs
//!   [`depthwise`] and pooling [`pool`] (both four channels per word).
//!
//! [`Native`] is the set a build runs: the DSP set on thumbv7em targets,
//! the portable one elsewhere (chosen by `build.rs`). Every set follows the
//! arithmetic in [`crate::quant`] exactly, reads the packed weights as
//! stored, and takes already-validated layers and correctly sized slices
//! (the runtime guarantees both); none allocates. The fast kernels use a
//! scratch region of the arena whose size the validator computes
//! ([`scratch_bytes`]).

use crate::model::{Add, Conv2d, Dense, Layer, Pool, Shape, TensorQuant};
use core::marker::PhantomData;

pub mod depthwise;
#[cfg(releq_dsp)]
pub mod dsp;
#[cfg(releq_dsp)]
pub mod dsp_first;
#[cfg(releq_dsp)]
pub mod dsp_packed;
pub mod fast;
pub mod first;
pub mod gather;
pub mod mac;
pub mod packed;
pub mod pool;
pub mod reference;
pub mod requant;

/// Output code bounds of a layer: its clamp intersected with the bit range.
#[inline]
pub fn clamp_bounds(clamp: &crate::model::Clamp, bits: u8) -> (i32, i32) {
    let lo = (clamp.min as i32).max(crate::quant::act_min(bits));
    let hi = (clamp.max as i32).min(crate::quant::act_max(bits));
    (lo, hi)
}

/// Scratch bytes the fast kernels need for `layer` reading `in_shape`.
pub fn scratch_bytes(layer: &Layer<'_>, in_shape: Shape) -> usize {
    match layer {
        Layer::Conv2d(l) => {
            let k = l.kh as usize * l.kw as usize * in_shape.c as usize;
            let mut generic = fast::conv2d_scratch(k);
            if matches!(fast::nearest(l.w.bits), 2 | 4) {
                generic = generic.max(packed::conv2d_scratch(k, l.out_c as usize));
            }
            generic += fast::widen_scratch(l.w.bits, k, l.out_c as usize, true);
            if first::applies(l, in_shape) {
                generic.max(first::scratch(l, in_shape))
            } else {
                generic
            }
        }
        Layer::Dense(l) => {
            fast::dense_scratch(in_shape.len()) + fast::widen_scratch(l.w.bits, in_shape.len(), 0, false)
        }
        _ => 0,
    }
}

/// A complete set of kernels. `scratch` is the plan's scratch region.
#[allow(missing_docs)]
pub trait Kernels {
    /// Name, for tests and benchmarks.
    const NAME: &'static str;
    fn conv2d(
        l: &Conv2d<'_>,
        in_shape: Shape,
        in_q: TensorQuant,
        input: &[i8],
        out_shape: Shape,
        output: &mut [i8],
        scratch: &mut [i8],
    );
    fn depthwise_conv2d(l: &Conv2d<'_>, in_shape: Shape, in_zp: i32, input: &[i8], out_shape: Shape, output: &mut [i8]);
    fn dense(l: &Dense<'_>, in_q: TensorQuant, input: &[i8], output: &mut [i8], scratch: &mut [i8]);
    fn max_pool(p: &Pool, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
        reference::max_pool(p, in_shape, input, out_shape, output)
    }
    fn avg_pool(p: &Pool, in_shape: Shape, input: &[i8], out_shape: Shape, output: &mut [i8]) {
        reference::avg_pool(p, in_shape, input, out_shape, output)
    }
    fn add(l: &Add, zp1: i32, a: &[i8], zp2: i32, b: &[i8], output: &mut [i8]) {
        reference::add(l, zp1, a, zp2, b, output)
    }
}

/// The scalar reference kernels.
pub struct Reference;

impl Kernels for Reference {
    const NAME: &'static str = "reference";
    fn conv2d(l: &Conv2d<'_>, s: Shape, q: TensorQuant, x: &[i8], os: Shape, y: &mut [i8], _: &mut [i8]) {
        reference::conv2d(l, s, q.zero_point, x, os, y)
    }
    fn depthwise_conv2d(l: &Conv2d<'_>, s: Shape, zp: i32, x: &[i8], os: Shape, y: &mut [i8]) {
        reference::depthwise_conv2d(l, s, zp, x, os, y)
    }
    fn dense(l: &Dense<'_>, q: TensorQuant, x: &[i8], y: &mut [i8], _: &mut [i8]) {
        reference::dense(l, q.zero_point, x, y)
    }
}

/// The fast kernels over the operations `M`.
pub struct Fast<M>(PhantomData<M>);

impl<M: first::FirstPass + packed::PackedOps> Kernels for Fast<M> {
    const NAME: &'static str = M::NAME;
    fn conv2d(l: &Conv2d<'_>, s: Shape, q: TensorQuant, x: &[i8], os: Shape, y: &mut [i8], scratch: &mut [i8]) {
        if first::applies(l, s) && scratch.len() >= first::scratch(l, s) {
            first::conv2d::<M>(l, s, q, x, os, y, scratch)
        } else {
            fast::conv2d::<M>(l, s, q, x, os, y, scratch)
        }
    }
    fn depthwise_conv2d(l: &Conv2d<'_>, s: Shape, zp: i32, x: &[i8], os: Shape, y: &mut [i8]) {
        depthwise::depthwise_conv2d::<M>(l, s, zp, x, os, y)
    }
    fn dense(l: &Dense<'_>, q: TensorQuant, x: &[i8], y: &mut [i8], scratch: &mut [i8]) {
        fast::dense::<M>(l, q, x, y, scratch)
    }
    fn max_pool(p: &Pool, s: Shape, x: &[i8], os: Shape, y: &mut [i8]) {
        pool::max_pool::<M>(p, s, x, os, y)
    }
    fn avg_pool(p: &Pool, s: Shape, x: &[i8], os: Shape, y: &mut [i8]) {
        pool::avg_pool::<M>(p, s, x, os, y)
    }
}

/// The portable fast kernels.
pub type Portable = Fast<mac::Portable>;

/// The kernels this build runs.
#[cfg(releq_dsp)]
pub type Native = Fast<dsp::Dsp>;
/// The kernels this build runs.
#[cfg(not(releq_dsp))]
pub type Native = Portable;
