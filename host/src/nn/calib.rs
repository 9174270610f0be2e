//! Calibration: the real range of every tensor of a network, from which a
//! [`super::qplan::QuantPlan`] is built.
//!
//! Method: the network runs in eval mode (float, batch norm with running
//! statistics) on the first `batches` batches of `batch_size` images taken
//! in order; for every tensor (0 = input) each batch gives its minimum and
//! maximum, and the range is the mean over batches of the per-batch minimum
//! and of the per-batch maximum (TensorFlow's "moving average min/max"
//! without decay). Averaging tames outliers a global min/max would keep,
//! while still covering almost all of each tensor's values.

use super::net::Net;
use crate::data::Images;
use candle_core::{Device, Result, Tensor};

/// A batch of images as an NCHW `f32` tensor with values `pixel / 255`.
pub fn batch_tensor(images: &Images, idx: &[usize], dev: &Device) -> Result<Tensor> {
    let size = images.image_size();
    let mut v = Vec::with_capacity(idx.len() * size);
    for &i in idx {
        v.extend(images.image(i).iter().map(|&p| p as f32 / 255.0));
    }
    Tensor::from_vec(v, (idx.len(), 1, images.rows, images.cols), dev)
}

/// The mean over the first `batches` batches of each tensor's per-batch
/// `(min, max)`; index 0 is the input. Fewer batches are used if the images
/// run out (at least one image is needed).
pub fn calibrate(net: &Net, images: &Images, batches: usize, batch_size: usize) -> Result<Vec<(f32, f32)>> {
    let batch_size = batch_size.max(1);
    let n = images.len().min(batches.max(1) * batch_size);
    if n == 0 {
        candle_core::bail!("calibration needs at least one image");
    }
    let mut sums = vec![(0f64, 0f64); net.spec().ops.len() + 1];
    let mut count = 0usize;
    for start in (0..n).step_by(batch_size) {
        let idx: Vec<usize> = (start..(start + batch_size).min(n)).collect();
        let all = net.forward_all(&batch_tensor(images, &idx, &Device::Cpu)?)?;
        for (s, t) in sums.iter_mut().zip(&all) {
            let t = t.flatten_all()?;
            s.0 += f64::from(t.min(0)?.to_scalar::<f32>()?);
            s.1 += f64::from(t.max(0)?.to_scalar::<f32>()?);
        }
        count += 1;
    }
    Ok(sums.into_iter().map(|(lo, hi)| ((lo / count as f64) as f32, (hi / count as f64) as f32)).collect())
}
