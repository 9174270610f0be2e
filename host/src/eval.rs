//! Host-side integer inference over a data set: the same arithmetic the
//! device runs (common's runtime), used for accuracy and as the reference
//! that device outputs are compared with bit for bit.
//!
//! [`Samples`] are a model's input codes (with labels if known), made from a
//! built-in data set ([`samples_from_images`]) or from users' `.npy` files
//! ([`load_inputs`]): int8 arrays are input codes as they are, float32
//! arrays real values quantized with the model's input scale and zero point
//! (as TFLite's QUANTIZE does: `round(x / scale) + zero_point`, half away
//! from zero, clamped), uint8 arrays 0..255 pixels read as `pixel / 255`
//! (as the built-in data sets are); layout NHWC, `[N, H, W, C]`,
//! `[N, H * W * C]`, or `[N, H, W]` when `C` is 1.

use crate::data::Images;
use crate::npy::{self, Array, Data, NpyFileError};
use releq_common::quant::{act_max, act_min, quantize_act};
use releq_common::validate::Plan;
use releq_common::TensorQuant;
use std::path::{Path, PathBuf};

/// Quantize an 8-bit grey image (real value `pixel / 255`) to the model's
/// input codes.
pub fn quantize_image(pixels: &[u8], q: &TensorQuant) -> Vec<i8> {
    pixels.iter().map(|&p| quantize_act(p as f32 / 255.0, q.scale, q.zero_point, q.bits)).collect()
}

/// Index of the largest value (the first one on ties): the prediction rule
/// of every path (integer codes, fake-quantized logits, the agent's policy).
pub fn argmax<T: PartialOrd>(out: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in out.iter().enumerate() {
        if *v > out[best] {
            best = i;
        }
    }
    best
}

/// Error from evaluating a model on a data set.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The model's input does not take the data set's images.
    #[error("model input {model} values does not match {dataset} {rows}x{cols} images")]
    InputShape {
        /// Values the model takes.
        model: usize,
        /// Data set name.
        dataset: String,
        /// Image rows.
        rows: usize,
        /// Image columns.
        cols: usize,
    },
    /// The run failed.
    #[error(transparent)]
    Run(#[from] releq_common::runtime::RunError),
}

/// Check a model takes a data set's images.
pub fn check_input(plan: &Plan<'_>, images: &Images, dataset: &str) -> Result<(), EvalError> {
    let n = plan.input().shape.len();
    if n != images.rows * images.cols {
        return Err(EvalError::InputShape { model: n, dataset: dataset.into(), rows: images.rows, cols: images.cols });
    }
    Ok(())
}

/// Run the model on one image with the host's integer inference.
pub fn infer(plan: &Plan<'_>, arena: &mut [i8], pixels: &[u8]) -> Result<Vec<i8>, EvalError> {
    let input = quantize_image(pixels, &plan.input().quant);
    Ok(plan.run(arena, &input)?.to_vec())
}

/// Input codes for a model, one sample after another, with labels if known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Samples {
    /// Codes of every sample, `len() * size` values.
    pub codes: Vec<i8>,
    /// Codes per sample (the model's input size).
    pub size: usize,
    /// One class index per sample, if known.
    pub labels: Option<Vec<usize>>,
}

impl Samples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.codes.len().checked_div(self.size).unwrap_or(0)
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The codes of sample `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn input(&self, i: usize) -> &[i8] {
        &self.codes[i * self.size..(i + 1) * self.size]
    }

    /// The label of sample `i`, if labels are known.
    pub fn label(&self, i: usize) -> Option<usize> {
        self.labels.as_ref().map(|l| l[i])
    }

    /// The samples at `idx`, in that order.
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, idx: &[usize]) -> Samples {
        Samples {
            codes: idx.iter().flat_map(|&i| self.input(i).iter().copied()).collect(),
            size: self.size,
            labels: self.labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect()),
        }
    }

    /// The first `n` samples (all if fewer).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.codes.truncate(n * self.size);
        if let Some(l) = &mut self.labels {
            l.truncate(n);
        }
    }
}

/// A built-in data set's images as the model's input codes.
pub fn samples_from_images(plan: &Plan<'_>, images: &Images, dataset: &str) -> Result<Samples, EvalError> {
    check_input(plan, images, dataset)?;
    let q = &plan.input().quant;
    Ok(Samples {
        codes: images.pixels.iter().map(|&p| quantize_act(p as f32 / 255.0, q.scale, q.zero_point, q.bits)).collect(),
        size: images.image_size(),
        labels: Some(images.labels.iter().map(|&l| l as usize).collect()),
    })
}

/// Why users' inputs or labels cannot be used with a model. Every message
/// names the file.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file is missing or not a readable `.npy`.
    #[error(transparent)]
    Npy(#[from] NpyFileError),
    /// The array's shape does not match the model's input.
    #[error(
        "{}: shape {shape:?} does not match the model's input [{h}, {w}, {c}] (NHWC, batch first): expected \
         [N, {h}, {w}, {c}] or [N, {}]{}",
        path.display(), h * w * c, if *c == 1 { format!(" or [N, {h}, {w}]") } else { String::new() }
    )]
    Shape {
        /// The file.
        path: PathBuf,
        /// Its shape.
        shape: Vec<usize>,
        /// Model input height.
        h: usize,
        /// Model input width.
        w: usize,
        /// Model input channels.
        c: usize,
    },
    /// The array's type is not one inputs can have.
    #[error(
        "{}: dtype {dtype} is not an input type: give int8 (input codes as they are), float32 (real values, \
         quantized with the model's input scale and zero point) or uint8 (pixels 0..255, read as pixel / 255)",
        path.display()
    )]
    Dtype {
        /// The file.
        path: PathBuf,
        /// Its type.
        dtype: npy::Dtype,
    },
    /// A float input is NaN or infinite.
    #[error("{}: value {value} at flat index {index} is not finite", path.display())]
    NotFinite {
        /// The file.
        path: PathBuf,
        /// Index in C order.
        index: usize,
        /// The value.
        value: f32,
    },
    /// An int8 code outside the model's input bitwidth.
    #[error("{}: code {value} at flat index {index} is outside the model's {bits}-bit input range {lo}..={hi}", path.display())]
    CodeRange {
        /// The file.
        path: PathBuf,
        /// Index in C order.
        index: usize,
        /// The code.
        value: i8,
        /// Input bitwidth.
        bits: u8,
        /// Smallest code.
        lo: i32,
        /// Largest code.
        hi: i32,
    },
    /// Labels that are not integers in a vector.
    #[error("{}: labels must be an integer vector [N] (or [N, 1]); found {dtype} of shape {shape:?}", path.display())]
    LabelShape {
        /// The file.
        path: PathBuf,
        /// Its type.
        dtype: npy::Dtype,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// As many labels as inputs are needed.
    #[error("{}: {labels} labels, but {} holds {inputs} inputs", path.display(), inputs_path.display())]
    LabelCount {
        /// The label file.
        path: PathBuf,
        /// Labels in it.
        labels: usize,
        /// The input file.
        inputs_path: PathBuf,
        /// Inputs in it.
        inputs: usize,
    },
    /// A label that is not a class of the model.
    #[error("{}: label {value} at index {index} is not a class of the model (0..{classes})", path.display())]
    LabelValue {
        /// The label file.
        path: PathBuf,
        /// Sample index.
        index: usize,
        /// The label.
        value: i64,
        /// The model's outputs.
        classes: usize,
    },
}

/// Number of samples in `a` if its shape fits an input of `(h, w, c)`.
fn sample_count(shape: &[usize], (h, w, c): (usize, usize, usize)) -> Option<usize> {
    match *shape {
        [n, a, b, d] if (a, b, d) == (h, w, c) => Some(n),
        [n, len] if len == h * w * c => Some(n),
        [n, a, b] if c == 1 && (a, b) == (h, w) => Some(n),
        _ => None,
    }
}

/// An array's values as the model's input codes (see the module doc).
pub fn encode_inputs(plan: &Plan<'_>, a: &Array, path: &Path) -> Result<Samples, InputError> {
    let t = plan.input();
    let (h, w, c) = (t.shape.h as usize, t.shape.w as usize, t.shape.c as usize);
    sample_count(&a.shape, (h, w, c)).ok_or_else(|| InputError::Shape {
        path: path.into(),
        shape: a.shape.clone(),
        h,
        w,
        c,
    })?;
    let q = &t.quant;
    let (lo, hi) = (act_min(q.bits), act_max(q.bits));
    let codes = match &a.data {
        Data::I8(v) => {
            if let Some((index, &value)) = v.iter().enumerate().find(|&(_, &x)| (x as i32) < lo || (x as i32) > hi) {
                return Err(InputError::CodeRange { path: path.into(), index, value, bits: q.bits, lo, hi });
            }
            v.clone()
        }
        Data::F32(v) => {
            if let Some((index, &value)) = v.iter().enumerate().find(|&(_, x)| !x.is_finite()) {
                return Err(InputError::NotFinite { path: path.into(), index, value });
            }
            v.iter().map(|&x| quantize_act(x, q.scale, q.zero_point, q.bits)).collect()
        }
        Data::U8(v) => v.iter().map(|&p| quantize_act(p as f32 / 255.0, q.scale, q.zero_point, q.bits)).collect(),
        other => return Err(InputError::Dtype { path: path.into(), dtype: other.dtype() }),
    };
    Ok(Samples { codes, size: h * w * c, labels: None })
}

/// Labels from an array: integers, shape `[n]` or `[n, 1]`, each below
/// `classes`. `inputs_path` names the input file in a count mismatch.
pub fn decode_labels(
    a: &Array,
    path: &Path,
    n: usize,
    classes: usize,
    inputs_path: &Path,
) -> Result<Vec<usize>, InputError> {
    let shape_err = || InputError::LabelShape { path: path.into(), dtype: a.data.dtype(), shape: a.shape.clone() };
    let count = match *a.shape {
        [k] | [k, 1] => k,
        _ => return Err(shape_err()),
    };
    let values = a.data.to_i64().ok_or_else(shape_err)?;
    if count != n {
        return Err(InputError::LabelCount {
            path: path.into(),
            labels: count,
            inputs_path: inputs_path.into(),
            inputs: n,
        });
    }
    values
        .iter()
        .enumerate()
        .map(|(index, &value)| match usize::try_from(value) {
            Ok(l) if l < classes => Ok(l),
            _ => Err(InputError::LabelValue { path: path.into(), index, value, classes }),
        })
        .collect()
}

/// Inputs (and labels) for a model from `.npy` files.
pub fn load_inputs(plan: &Plan<'_>, inputs: &Path, labels: Option<&Path>) -> Result<Samples, InputError> {
    let mut s = encode_inputs(plan, &npy::read(inputs)?, inputs)?;
    if let Some(lp) = labels {
        let classes = plan.output().shape.len();
        s.labels = Some(decode_labels(&npy::read(lp)?, lp, s.len(), classes, inputs)?);
    }
    Ok(s)
}

/// Accuracy (fraction correct) of the first `count` images.
pub fn accuracy(plan: &Plan<'_>, images: &Images, count: usize) -> Result<f64, EvalError> {
    check_input(plan, images, "data set")?;
    let count = count.min(images.len());
    let mut arena = vec![0i8; plan.arena_bytes];
    let mut correct = 0usize;
    for i in 0..count {
        let out = infer(plan, &mut arena, images.image(i))?;
        correct += usize::from(argmax(&out) == images.labels[i] as usize);
    }
    Ok(if count == 0 { 0.0 } else { correct as f64 / count as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_image_maps_range_ends() {
        let q = TensorQuant { scale: 1.0 / 255.0, zero_point: -128, bits: 8 };
        assert_eq!(quantize_image(&[0, 255, 128], &q), vec![-128, 127, 0]);
        let q4 = TensorQuant { scale: 1.0 / 15.0, zero_point: -8, bits: 4 };
        assert_eq!(quantize_image(&[0, 255], &q4), vec![-8, 7]);
    }

    fn arr(shape: &[usize], data: Data) -> Array {
        Array { shape: shape.to_vec(), data }
    }

    #[test]
    fn inputs_in_every_accepted_layout_and_type() {
        let owned = releq_common::testing::lenet5_random(1, [8; 5], [8; 5]);
        let plan = owned.plan().unwrap();
        let p = Path::new("x.npy");
        let codes: Vec<i8> = (0..2 * 784).map(|i| (i % 256) as u8 as i8).collect();
        for shape in [[2, 28, 28, 1].as_slice(), &[2, 784], &[2, 28, 28]] {
            let s = encode_inputs(&plan, &arr(shape, Data::I8(codes.clone())), p).unwrap();
            assert_eq!((s.len(), s.size, &s.codes), (2, 784, &codes), "{shape:?}");
        }
        // float32: round(x / scale) + zero_point, half away from zero, clamped.
        let q = plan.input().quant;
        let reals = [0.0, 1.0, 0.5 * q.scale, -0.5 * q.scale, 2.0, -1.0, 1.5 * q.scale];
        let mut x = vec![0f32; 784];
        x[..reals.len()].copy_from_slice(&reals);
        let s = encode_inputs(&plan, &arr(&[1, 784], Data::F32(x)), p).unwrap();
        assert_eq!(&s.codes[..reals.len()], &[-128, 127, -127, -128, 127, -128, -126]);
        // uint8 pixels as the built-in sets: 0 -> -128, 255 -> 127.
        let mut px = vec![0u8; 784];
        px[1] = 255;
        let s = encode_inputs(&plan, &arr(&[1, 28, 28], Data::U8(px)), p).unwrap();
        assert_eq!(&s.codes[..2], &[-128, 127]);
        // No batch dimension, the wrong side, channels last missing.
        for shape in [[28, 28, 1].as_slice(), &[1, 28, 27, 1], &[1, 1, 28, 28], &[784]] {
            let n: usize = shape.iter().product();
            let e = encode_inputs(&plan, &arr(shape, Data::I8(vec![0; n])), p).unwrap_err();
            assert!(matches!(e, InputError::Shape { h: 28, w: 28, c: 1, .. }), "{shape:?}: {e}");
        }
    }

    #[test]
    fn three_channel_inputs_and_narrow_codes() {
        // A model with a 10x10x3 input of fewer than 8 bits.
        let owned = (0..200)
            .map(|seed| releq_common::testing::random_model(seed, true))
            .find(|m| m.input_quant.bits < 8)
            .unwrap();
        let plan = owned.plan().unwrap();
        let (bits, p) = (plan.input().quant.bits, Path::new("x.npy"));
        let e = encode_inputs(&plan, &arr(&[1, 10, 10], Data::I8(vec![0; 100])), p).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("expected [N, 10, 10, 3] or [N, 300]") && !msg.contains("[N, 10, 10]"), "{msg}");
        let mut v = vec![0i8; 300];
        v[42] = act_max(bits) as i8 + 1;
        let e = encode_inputs(&plan, &arr(&[1, 10, 10, 3], Data::I8(v.clone())), p).unwrap_err();
        assert!(matches!(e, InputError::CodeRange { index: 42, .. }), "{e}");
        assert!(e.to_string().contains(&format!("{bits}-bit input range")), "{e}");
        v[42] = act_max(bits) as i8;
        assert_eq!(encode_inputs(&plan, &arr(&[1, 300], Data::I8(v.clone())), p).unwrap().codes, v);
    }

    #[test]
    fn labels_checked_against_count_and_classes() {
        let (p, x) = (Path::new("l.npy"), Path::new("x.npy"));
        assert_eq!(decode_labels(&arr(&[3], Data::I64(vec![0, 9, 4])), p, 3, 10, x).unwrap(), [0, 9, 4]);
        assert_eq!(decode_labels(&arr(&[2, 1], Data::U8(vec![1, 2])), p, 2, 10, x).unwrap(), [1, 2]);
        let e = decode_labels(&arr(&[3], Data::I8(vec![0, -1, 4])), p, 3, 10, x).unwrap_err();
        assert!(matches!(e, InputError::LabelValue { index: 1, value: -1, classes: 10, .. }), "{e}");
        let e = decode_labels(&arr(&[2, 2], Data::I32(vec![0; 4])), p, 2, 10, x).unwrap_err();
        assert!(matches!(e, InputError::LabelShape { .. }), "{e}");
        let e = decode_labels(&arr(&[2], Data::I32(vec![0; 2])), p, 3, 10, x).unwrap_err();
        assert_eq!(e.to_string(), "l.npy: 2 labels, but x.npy holds 3 inputs");
    }

    #[test]
    fn samples_subset_and_truncate() {
        let mut s = Samples { codes: (0..8).collect(), size: 2, labels: Some(vec![5, 6, 7, 8]) };
        let t = s.subset(&[3, 1]);
        assert_eq!((t.codes, t.labels), (vec![6, 7, 2, 3], Some(vec![8, 6])));
        s.truncate(3);
        assert_eq!((s.len(), s.label(2), s.input(2)), (3, Some(7), &[4i8, 5][..]));
        s.truncate(10);
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1, 5, 5, -3]), 1);
        assert_eq!(argmax(&[-128]), 0);
    }
}
