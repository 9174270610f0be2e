//! Running a validated model on an activation arena.
//!
//! The host and the firmware both run models through [`Plan::run_layer`], so
//! the host's outputs are the device's, bit for bit. The firmware times each
//! call; the host simply loops with [`Plan::run`].

use crate::kernels::reference as k;
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

/// Split the arena into the output range and the rest. The planner never lets
/// a live input overlap the output, so every input lies wholly on one side.
fn split(arena: &mut [i8], out: Range<usize>) -> (&mut [i8], Inputs<'_>) {
    let (lo, rest) = arena.split_at_mut(out.start);
    let (o, hi) = rest.split_at_mut(out.end - out.start);
    (o, Inputs { lo, hi, hi_start: out.end })
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

    /// Run layer `i`. The arena must have passed [`Self::check_arena`] (or
    /// [`Self::load_input`]) and earlier layers must have run.
    pub fn run_layer(&self, i: usize, arena: &mut [i8]) {
        let layer = &self.model.layers[i];
        let out_t = &self.tensors[i + 1];
        let in_t = &self.tensors[layer.input() as usize];
        if let Layer::Reshape(_) = layer {
            return; // aliases its input
        }
        let (out, rest) = split(arena, out_t.range());
        let input = rest.get(in_t.range());
        let in_zp = in_t.quant.zero_point;
        match layer {
            Layer::Conv2d(l) => k::conv2d(l, in_t.shape, in_zp, input, out_t.shape, out),
            Layer::DepthwiseConv2d(l) => k::depthwise_conv2d(l, in_t.shape, in_zp, input, out_t.shape, out),
            Layer::Dense(l) => k::dense(l, in_zp, input, out),
            Layer::MaxPool2d(p) => k::max_pool(p, in_t.shape, input, out_t.shape, out),
            Layer::AvgPool2d(p) => k::avg_pool(p, in_t.shape, input, out_t.shape, out),
            Layer::Add(a) => {
                let o_t = &self.tensors[a.other as usize];
                let other = rest.get(o_t.range());
                k::add(a, in_zp, input, o_t.quant.zero_point, other, out)
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
        self.load_input(arena, input)?;
        for i in 0..self.model.layers.len() {
            self.run_layer(i, arena);
        }
        Ok(self.output_of(arena))
    }
}
