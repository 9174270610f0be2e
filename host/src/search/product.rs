//! Accuracy of every configuration of a product space at once, sharing
//! prefixes: the fast path behind `--strategy exhaustive` and `releq
//! compare`.
//!
//! With post-training quantization and fixed activation bits, weighted layer
//! `j`'s integer parameters depend only on its own weight bits (activation
//! ranges come from the float model's calibration), so the integer model of
//! a configuration is the *splice* of layer `j` taken from the uniform model
//! at bits `w_j` ([`splice`]; `Oracle` tests check it is byte-identical to
//! exporting the configuration). Evaluating configurations depth first, the
//! tensors computed for a prefix of layers are reused by every configuration
//! that shares it: for LeNet-5 with 7 choices per layer, the 16,807
//! evaluations cost about what 250 single ones do.
//!
//! Configurations are indexed in mixed radix with layer 0 the least
//! significant digit, the order `exhaustive` enumerates them.

use crate::data::Images;
use crate::eval::{argmax, quantize_image};
use crate::fastinfer::FastModel;
use indicatif::ProgressBar;
use releq_common::builder::{BuildError, OwnedModel};
use releq_common::model::Layer;

/// Why the space could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    /// The uniform models differ in structure.
    #[error("uniform model {index} has a different layer structure than model 0 (layer {layer})")]
    Structure {
        /// Which model.
        index: usize,
        /// First differing layer.
        layer: usize,
    },
    /// No models, or no weighted layers.
    #[error("nothing to evaluate: {0}")]
    Empty(&'static str),
    /// A model did not validate.
    #[error(transparent)]
    Build(#[from] BuildError),
}

fn weighted(l: &Layer<'_>) -> bool {
    matches!(l, Layer::Conv2d(_) | Layer::DepthwiseConv2d(_) | Layer::Dense(_))
}

/// Positions of the weighted layers of a model.
fn weighted_positions(m: &OwnedModel) -> Vec<usize> {
    m.layers.iter().enumerate().filter(|(_, (l, _))| weighted(l)).map(|(i, _)| i).collect()
}

/// Per weighted layer, the model layers it owns: itself and the unweighted
/// layers after it, up to the next weighted layer.
fn segments(m: &OwnedModel) -> Vec<std::ops::Range<usize>> {
    let pos = weighted_positions(m);
    (0..pos.len()).map(|j| pos[j]..pos.get(j + 1).copied().unwrap_or(m.layers.len())).collect()
}

/// The model of configuration `choice` (per weighted layer, an index into
/// `uniform`): each weighted layer's segment taken from `uniform[choice[j]]`.
pub fn splice(uniform: &[OwnedModel], choice: &[usize]) -> OwnedModel {
    let mut m = uniform[0].clone();
    for (j, seg) in segments(&uniform[0]).into_iter().enumerate() {
        for i in seg {
            m.layers[i] = uniform[choice[j]].layers[i].clone();
        }
    }
    m
}

/// Fraction of `images` each configuration classifies correctly, indexed in
/// mixed radix (layer 0 least significant). `uniform[a]` is the model with
/// every weighted layer at choice `a`.
pub fn accuracies(uniform: &[OwnedModel], images: &Images, bar: &ProgressBar) -> Result<Vec<f64>, ProductError> {
    let first = uniform.first().ok_or(ProductError::Empty("no models"))?;
    for (index, m) in uniform.iter().enumerate() {
        if m.layers.len() != first.layers.len() {
            return Err(ProductError::Structure { index, layer: m.layers.len().min(first.layers.len()) });
        }
        for (layer, ((a, _), (b, _))) in m.layers.iter().zip(&first.layers).enumerate() {
            if std::mem::discriminant(a) != std::mem::discriminant(b) || a.input() != b.input() {
                return Err(ProductError::Structure { index, layer });
            }
        }
    }
    let segs = segments(first);
    if segs.is_empty() {
        return Err(ProductError::Empty("no weighted layers"));
    }
    let n = uniform.len();
    let total = n.pow(segs.len() as u32);
    let plans = uniform.iter().map(|m| m.plan()).collect::<Result<Vec<_>, _>>()?;
    let fast: Vec<FastModel<'_, '_>> = plans.iter().map(FastModel::new).collect();
    let mut tensors = fast[0].new_tensors();
    let mut patch = Vec::new();
    let mut correct = vec![0u32; total];
    let input_q = plans[0].input().quant;
    bar.set_length(images.len() as u64);
    for i in 0..images.len() {
        tensors[0] = quantize_image(images.image(i), &input_q);
        fast[0].exec(0..segs[0].start, &mut tensors, &mut patch);
        let label = images.labels[i] as usize;
        let mut walk = Walk { fast: &fast, segs: &segs, label, correct: &mut correct, patch: &mut patch };
        walk.go(0, 0, 1, &mut tensors);
        bar.inc(1);
    }
    let count = images.len().max(1) as f64;
    Ok(correct.into_iter().map(|c| c as f64 / count).collect())
}

struct Walk<'w, 'p, 'a> {
    fast: &'w [FastModel<'p, 'a>],
    segs: &'w [std::ops::Range<usize>],
    label: usize,
    correct: &'w mut [u32],
    patch: &'w mut Vec<i16>,
}

impl Walk<'_, '_, '_> {
    fn go(&mut self, depth: usize, index: usize, stride: usize, tensors: &mut [Vec<i8>]) {
        if depth == self.segs.len() {
            let out = tensors.last().expect("a model has layers");
            self.correct[index] += u32::from(argmax(out) == self.label);
            return;
        }
        for a in 0..self.fast.len() {
            self.fast[a].exec(self.segs[depth].clone(), tensors, self.patch);
            self.go(depth + 1, index + a * stride, stride * self.fast.len(), tensors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use releq_common::testing::lenet5_random;

    /// Random 28x28 images labelled by `m`'s own prediction, so accuracies
    /// start at 100 % and fall as bits change the outputs.
    fn images_for(m: &OwnedModel, count: usize, seed: u64) -> Images {
        let mut rng = StdRng::seed_from_u64(seed);
        let pixels: Vec<u8> = (0..count * 784).map(|_| rng.gen()).collect();
        let plan = m.plan().unwrap();
        let mut fast = FastModel::new(&plan);
        let labels = (0..count)
            .map(|i| {
                let x = quantize_image(&pixels[i * 784..(i + 1) * 784], &plan.input().quant);
                argmax(fast.run(&x).unwrap()) as u8
            })
            .collect();
        Images { count, rows: 28, cols: 28, pixels, labels }
    }

    #[test]
    fn every_configuration_matches_its_spliced_model() {
        // Random LeNets at three weight widths: product accuracy of each of
        // the 3^5 configurations equals evaluating its spliced model alone.
        let uniform: Vec<OwnedModel> = [2u8, 5, 8].iter().map(|&b| lenet5_random(7, [b; 5], [8; 5])).collect();
        let images = images_for(&uniform[0], 30, 3);
        let acc = accuracies(&uniform, &images, &ProgressBar::hidden()).unwrap();
        assert_eq!(acc.len(), 243);
        let mut distinct = std::collections::BTreeSet::new();
        for (idx, &a) in acc.iter().enumerate() {
            let choice: Vec<usize> = (0..5).map(|j| idx / 3usize.pow(j as u32) % 3).collect();
            let m = splice(&uniform, &choice);
            let want = crate::search::oracle::accuracy_of(&m, &images).unwrap();
            assert_eq!(a, want, "configuration {choice:?}");
            distinct.insert((a * 1000.0) as i64);
        }
        assert!(distinct.len() > 3, "accuracies should differ between configurations: {distinct:?}");
    }

    #[test]
    fn different_structures_are_rejected() {
        let a = lenet5_random(1, [8; 5], [8; 5]);
        let mut b = a.clone();
        b.layers.pop();
        assert!(matches!(
            accuracies(&[a, b], &images_for(&lenet5_random(1, [8; 5], [8; 5]), 2, 1), &ProgressBar::hidden()),
            Err(ProductError::Structure { index: 1, .. })
        ));
    }
}
