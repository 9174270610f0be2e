//! Host-side construction of models from owned arrays (feature `std`).
//!
//! [`Model`] borrows its byte arrays, which is what the device wants. On the
//! host the arrays are built at run time, so an [`OwnedModel`] keeps each
//! layer as a template (`Layer<'static>` whose weights are empty) plus the
//! owned [`OwnedWeights`], and lends out a borrowed [`Model`] view with
//! [`OwnedModel::view`]. The view encodes, validates and runs exactly like a
//! decoded blob.

use crate::model::{Clamp, Layer, Model, Shape, TensorQuant, Weights, MAX_LAYERS};
use crate::pack::{pack_rows, PackError};
use crate::quant::{act_max, act_min, QuantizedMultiplier};
use crate::validate::{ModelError, Plan};
use std::string::String;
use std::vec::Vec;

/// Owned parameters of a weighted layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedWeights {
    /// Weight bits.
    pub bits: u8,
    /// Packed rows.
    pub packed: Vec<u8>,
    /// `i32` LE per channel.
    pub bias: Vec<u8>,
    /// `i32` LE per channel.
    pub multiplier: Vec<u8>,
    /// `i8` per channel.
    pub shift: Vec<u8>,
}

impl OwnedWeights {
    /// Pack `values` (`bias.len()` rows of `k` weights, row-major) at `bits`
    /// bits, with one bias and requantization per row.
    pub fn new(
        bits: u8,
        values: &[i8],
        k: usize,
        bias: &[i32],
        requant: &[QuantizedMultiplier],
    ) -> Result<Self, PackError> {
        Ok(Self {
            bits,
            packed: pack_rows(values, k, bits)?,
            bias: bias.iter().flat_map(|b| b.to_le_bytes()).collect(),
            multiplier: requant.iter().flat_map(|q| q.multiplier.to_le_bytes()).collect(),
            shift: requant.iter().map(|q| q.shift as u8).collect(),
        })
    }

    /// Copy borrowed weights.
    pub fn from_weights(w: &Weights<'_>) -> Self {
        Self {
            bits: w.bits,
            packed: w.packed.to_vec(),
            bias: w.bias.to_vec(),
            multiplier: w.multiplier.to_vec(),
            shift: w.shift.to_vec(),
        }
    }

    /// Borrow as [`Weights`].
    pub fn borrow(&self) -> Weights<'_> {
        Weights {
            bits: self.bits,
            packed: &self.packed,
            bias: &self.bias,
            multiplier: &self.multiplier,
            shift: &self.shift,
        }
    }
}

/// Empty weights for a layer template.
pub const NO_WEIGHTS: Weights<'static> = Weights { bits: 8, packed: &[], bias: &[], multiplier: &[], shift: &[] };

/// A model whose arrays the host owns.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedModel {
    /// Name.
    pub name: String,
    /// Input shape.
    pub input_shape: Shape,
    /// Input quantization.
    pub input_quant: TensorQuant,
    /// Layer templates and the weights of weighted layers.
    pub layers: Vec<(Layer<'static>, Option<OwnedWeights>)>,
}

/// Errors building a model.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// More layers than the format allows.
    #[error("model has {0} layers, the format allows at most {MAX_LAYERS}")]
    TooManyLayers(usize),
    /// The model does not validate.
    #[error(transparent)]
    Invalid(#[from] ModelError),
}

impl OwnedModel {
    /// An empty model.
    pub fn new(name: impl Into<String>, input_shape: Shape, input_quant: TensorQuant) -> Self {
        Self { name: name.into(), input_shape, input_quant, layers: Vec::new() }
    }

    /// Append a layer; weighted layers need `Some(weights)`. Returns the id of
    /// the tensor the layer writes.
    pub fn push(&mut self, layer: Layer<'static>, weights: Option<OwnedWeights>) -> u16 {
        self.layers.push((layer, weights));
        self.layers.len() as u16
    }

    /// The id of the last tensor (0 = input).
    pub fn last(&self) -> u16 {
        self.layers.len() as u16
    }

    /// Borrow as a [`Model`].
    pub fn view(&self) -> Result<Model<'_>, BuildError> {
        let mut layers = heapless::Vec::new();
        for (template, owned) in &self.layers {
            let mut l: Layer<'_> = *template;
            if let (Some(w), Some(o)) = (l.weights_mut(), owned) {
                *w = o.borrow();
            }
            layers.push(l).map_err(|_| BuildError::TooManyLayers(self.layers.len()))?;
        }
        Ok(Model { name: &self.name, input_shape: self.input_shape, input_quant: self.input_quant, layers })
    }

    /// Validate and plan.
    pub fn plan(&self) -> Result<Plan<'_>, BuildError> {
        Ok(Plan::new(self.view()?)?)
    }

    /// Encode as a `.releq` file (validating first).
    pub fn encode(&self) -> Result<Vec<u8>, BuildError> {
        let plan = self.plan()?;
        Ok(plan.model.encode())
    }

    /// Copy a borrowed model.
    pub fn from_model(m: &Model<'_>) -> Self {
        let layers = m
            .layers
            .iter()
            .map(|l| {
                let owned = l.weights().map(OwnedWeights::from_weights);
                let t: Layer<'static> = match *l {
                    Layer::Conv2d(c) => Layer::Conv2d(crate::model::Conv2d { w: NO_WEIGHTS, ..c }),
                    Layer::DepthwiseConv2d(c) => Layer::DepthwiseConv2d(crate::model::Conv2d { w: NO_WEIGHTS, ..c }),
                    Layer::Dense(d) => Layer::Dense(crate::model::Dense { w: NO_WEIGHTS, ..d }),
                    Layer::MaxPool2d(p) => Layer::MaxPool2d(p),
                    Layer::AvgPool2d(p) => Layer::AvgPool2d(p),
                    Layer::Add(a) => Layer::Add(a),
                    Layer::Reshape(r) => Layer::Reshape(r),
                };
                (t, owned)
            })
            .collect();
        Self { name: m.name.into(), input_shape: m.input_shape, input_quant: m.input_quant, layers }
    }
}

/// The clamp of a fused activation for an output with this quantization.
pub fn activation_clamp(act: crate::model::Activation, out: &TensorQuant) -> Clamp {
    let (lo, hi) = (act_min(out.bits), act_max(out.bits));
    let (min, max) = match act {
        crate::model::Activation::None => (lo, hi),
        crate::model::Activation::Relu => (out.zero_point.max(lo), hi),
        crate::model::Activation::Relu6 => {
            let six = out.zero_point.saturating_add(libm::roundf(6.0 / out.scale) as i32);
            (out.zero_point.max(lo), six.min(hi))
        }
    };
    Clamp { min: min as i16, max: max as i16 }
}
