//! Running a validated model on an activation arena.
//!
//! The host and the firmware both run models through [`Plan::run_layer`], so
//! the host's outputs are the device's, bit for bit. The firmware times each
//! call; the host simply loops with [`Plan::run`]. Both run the build's
//! [`Native`] kernels; [`Plan::run_layer_with`] runs any other set (tests
//! compare them all with [`crate::kernels::Reference`]).

use crate::kernels::{Kernels, Native};
use crate::model::Layer;
use crate::quant::{act_max, act_min};
use crate::validate::Plan;
use core::ops::Range;
use serde::{Deserialize, Serialize};

/// Why a model could not be run on the given buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum RunError {
    /// The input has the wrong number of values.
    #[error("input has {actual} values, the model takes {expected}")]
    InputLength {
        /// Values the model takes.
        expected: u32,
        /// Values given.
        actual: u32,
    },
    /// An input value outside the input tensor's bit range.
    #[error("input value {value} at index {index} is outside the {bits}-bit range")]
    InputRange {
        /// Position.
        index: u32,
        /// Value.
        value: i8,
        /// Input bits.
        bits: u8,
    },
    /// The arena is smaller than the plan needs.
    #[error("arena has {available} bytes, the model needs {needed}")]
    ArenaTooSmall {
        /// Bytes needed.
        needed: u32,
        /// Bytes given.
        available: u32,
    },
}

/// The arena outside one output range: inputs are read from here.
struct Inputs<'b> {
    lo: &'b [i8],
    hi: &'b [i8],
    hi_start: usize,
}

impl<'b> Inputs<'b> {
    fn get(&self, r: Range<usize>) -> &'b [i8] {
        if r.end <= self.lo.len() {
            &self.lo[r]
        } else {
            &self.hi[r.start - self.hi_start..r.end - self.hi_start]
        }
    }
}

/// Split the arena into the output range, the rest of the tensors and the
/// scratch region (from `scratch` on). The planner never lets a live input
/// overlap the output, so every input lies wholly on one side.
fn split(arena: &mut [i8], out: Range<usize>, scratch: usize) -> (&mut [i8], Inputs<'_>, &mut [i8]) {
    let (arena, tail) = arena.split_at_mut(scratch);
    let (lo, rest) = arena.split_at_mut(out.start);
    let (o, hi) = rest.split_at_mut(out.end - out.start);
    (o, Inputs { lo, hi, hi_start: out.end }, tail)
}

impl Plan<'_> {
    /// Check that an arena is large enough.
    pub fn check_arena(&self, arena: &[i8]) -> Result<(), RunError> {
        if arena.len() < self.arena_bytes {
            return Err(RunError::ArenaTooSmall { needed: self.arena_bytes as u32, available: arena.len() as u32 });
        }
        Ok(())
    }

    /// Check the arena and the input, and copy the input into the arena.
    pub fn load_input(&self, arena: &mut [i8], input: &[i8]) -> Result<(), RunError> {
        self.check_arena(arena)?;
        let t = self.input();
        if input.len() != t.shape.len() {
            return Err(RunError::InputLength { expected: t.shape.len() as u32, actual: input.len() as u32 });
        }
        let bits = t.quant.bits;
        if let Some((index, &value)) =
            input.iter().enumerate().find(|(_, &v)| (v as i32) < act_min(bits) || (v as i32) > act_max(bits))
        {
            return Err(RunError::InputRange { index: index as u32, value, bits });
        }
        arena[t.range()].copy_from_slice(input);
        Ok(())
    }

    /// Run layer `i` with the build's kernels. The arena must have passed
    /// [`Self::check_arena`] (or [`Self::load_input`]) and earlier layers
    /// must have run.
    #[inline]
    pub fn run_layer(&self, i: usize, arena: &mut [i8]) {
        self.run_layer_with::<Native>(i, arena)
    }

    /// Run layer `i` with the kernel set `K` (as [`Self::run_layer`]).
    pub fn run_layer_with<K: Kernels>(&self, i: usize, arena: &mut [i8]) {
        let layer = &self.model.layers[i];
        let out_t = &self.tensors[i + 1];
        let in_t = &self.tensors[layer.input() as usize];
        if let Layer::Reshape(_) = layer {
            return; // aliases its input
        }
        let (out, rest, scratch) = split(arena, out_t.range(), self.scratch_offset);
        let input = rest.get(in_t.range());
        let in_zp = in_t.quant.zero_point;
        match layer {
            Layer::Conv2d(l) => K::conv2d(l, in_t.shape, in_t.quant, input, out_t.shape, out, scratch),
            Layer::DepthwiseConv2d(l) => K::depthwise_conv2d(l, in_t.shape, in_zp, input, out_t.shape, out),
            Layer::Dense(l) => K::dense(l, in_t.quant, input, out, scratch),
            Layer::MaxPool2d(p) => K::max_pool(p, in_t.shape, input, out_t.shape, out),
            Layer::AvgPool2d(p) => K::avg_pool(p, in_t.shape, input, out_t.shape, out),
            Layer::Add(a) => {
                let o_t = &self.tensors[a.other as usize];
                let other = rest.get(o_t.range());
                K::add(a, in_zp, input, o_t.quant.zero_point, other, out)
            }
            Layer::Reshape(_) => {}
        }
    }

    /// The model output, after the last layer has run.
    pub fn output_of<'b>(&self, arena: &'b [i8]) -> &'b [i8] {
        &arena[self.output().range()]
    }

    /// Run the whole model on `input`; returns the output codes.
    pub fn run<'b>(&self, arena: &'b mut [i8], input: &[i8]) -> Result<&'b [i8], RunError> {
        self.run_with::<Native>(arena, input)
    }

    /// Run the whole model with the kernel set `K`.
    pub fn run_with<'b, K: Kernels>(&self, arena: &'b mut [i8], input: &[i8]) -> Result<&'b [i8], RunError> {
        self.load_input(arena, input)?;
        for i in 0..self.model.layers.len() {
            self.run_layer_with::<K>(i, arena);
        }
        Ok(self.output_of(arena))
    }
}
