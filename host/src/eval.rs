//! Host-side integer inference over a data set: the same arithmetic the
//! device runs (common's runtime), used for accuracy and as the reference
//! that device outputs are compared with bit for bit.

use crate::data::Images;
use releq_common::quant::quantize_act;
use releq_common::validate::Plan;
use releq_common::TensorQuant;

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

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1, 5, 5, -3]), 1);
        assert_eq!(argmax(&[-128]), 0);
    }
}
