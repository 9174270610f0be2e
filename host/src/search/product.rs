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

/// Reads of a model's layers: per layer, the tensors it reads.
fn reads(m: &OwnedModel) -> Vec<Vec<usize>> {
    m.layers
        .iter()
        .map(|(l, _)| match l {
            Layer::Add(a) => vec![a.input as usize, a.other as usize],
            l => vec![l.input() as usize],
        })
        .collect()
}

/// One configuration at a time, reusing the tensors of prefixes evaluated
/// before: the search's evaluations share prefixes too (every configuration
/// with the same first two LeNet-5 layers shares 85 % of the MACs), so the
/// tensors each prefix leaves live for the layers after it are kept, for
/// every image, up to a memory cap. Same splice premise as [`accuracies`].
pub struct PrefixCache {
    /// Per weighted layer, its segment of model layers.
    segs: Vec<std::ops::Range<usize>>,
    /// Per segment boundary `j` (after segment `j`), the tensors read later.
    live: Vec<Vec<usize>>,
    /// Prefix (choices of segments `0..=j`) -> live tensors after segment
    /// `j`, each as all images' codes concatenated.
    cache: std::collections::HashMap<Vec<usize>, Vec<Vec<i8>>>,
    bytes: usize,
    cap: usize,
}

impl PrefixCache {
    /// A cache for models shaped like `m`, holding at most `cap` bytes.
    pub fn new(m: &OwnedModel, cap: usize) -> Self {
        let segs = segments(m);
        let r = reads(m);
        let live = segs
            .iter()
            .map(|s| (0..=s.end).filter(|&t| r[s.end..].iter().any(|rd| rd.contains(&t))).collect())
            .collect();
        Self { segs, live, cache: Default::default(), bytes: 0, cap }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Fraction of `images` the configuration `choice` (an index into
    /// `uniform` per weighted layer) classifies correctly; `uniform` must be
    /// the same models at every call with the same choice index.
    pub fn accuracy(&mut self, uniform: &[OwnedModel], choice: &[usize], images: &Images) -> Result<f64, ProductError> {
        let mut correct = 0usize;
        self.run(uniform, choice, images, |i, out| correct += usize::from(argmax(out) == images.labels[i] as usize))?;
        Ok(correct as f64 / images.len().max(1) as f64)
    }

    /// Run configuration `choice` on every image, handing `each` the image
    /// index and the output codes.
    pub fn run(
        &mut self,
        uniform: &[OwnedModel],
        choice: &[usize],
        images: &Images,
        mut each: impl FnMut(usize, &[i8]),
    ) -> Result<(), ProductError> {
        let l = self.segs.len();
        if l == 0 || choice.len() != l {
            return Err(ProductError::Empty("no weighted layers, or a choice per layer missing"));
        }
        let plans = uniform.iter().map(|m| m.plan()).collect::<Result<Vec<_>, _>>()?;
        let fast: Vec<FastModel<'_, '_>> = plans.iter().map(FastModel::new).collect();
        // Longest cached prefix.
        let start = (1..l).rev().find(|&d| self.cache.contains_key(&choice[..d])).unwrap_or(0);
        // Prefixes to capture on the way (if memory allows).
        let n = images.len();
        let mut capture: Vec<(usize, Vec<Vec<i8>>)> = Vec::new();
        for d in start.max(1)..l {
            if d > start && !self.cache.contains_key(&choice[..d]) {
                let size: usize = self.live[d - 1].iter().map(|&t| fast[0].new_tensors()[t].len() * n).sum();
                if self.bytes + size <= self.cap {
                    self.bytes += size;
                    capture.push((d, self.live[d - 1].iter().map(|_| Vec::new()).collect()));
                }
            }
        }
        let mut tensors = fast[0].new_tensors();
        let mut patch = Vec::new();
        let input_q = plans[0].input().quant;
        for i in 0..n {
            if start == 0 {
                tensors[0] = quantize_image(images.image(i), &input_q);
                fast[choice[0]].exec(0..self.segs[0].start, &mut tensors, &mut patch);
            } else {
                let saved = &self.cache[&choice[..start]];
                for (k, &t) in self.live[start - 1].iter().enumerate() {
                    let len = tensors[t].len();
                    tensors[t].copy_from_slice(&saved[k][i * len..(i + 1) * len]);
                }
            }
            for (j, seg) in self.segs.iter().enumerate().skip(start) {
                fast[choice[j]].exec(seg.clone(), &mut tensors, &mut patch);
                if let Some((_, bufs)) = capture.iter_mut().find(|(d, _)| *d == j + 1) {
                    for (k, &t) in self.live[j].iter().enumerate() {
                        bufs[k].extend_from_slice(&tensors[t]);
                    }
                }
            }
            each(i, tensors.last().expect("a model has layers"));
        }
        for (d, bufs) in capture {
            self.cache.insert(choice[..d].to_vec(), bufs);
        }
        Ok(())
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
        // The prefix cache, in a random order (so prefixes are reused at
        // every depth), gives the same accuracies; and without room to cache.
        for cap in [usize::MAX, 0] {
            let mut cache = PrefixCache::new(&uniform[0], cap);
            let mut rng = StdRng::seed_from_u64(5);
            for _ in 0..120 {
                let idx = rng.gen_range(0..243);
                let choice: Vec<usize> = (0..5).map(|j| idx / 3usize.pow(j as u32) % 3).collect();
                assert_eq!(cache.accuracy(&uniform, &choice, &images).unwrap(), acc[idx], "{choice:?}");
            }
            assert_eq!(cache.bytes() > 0, cap > 0);
        }
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
