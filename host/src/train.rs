//! Float training and quantization-aware fine-tuning (QAT) of zoo models with
//! candle, on the CPU.
//!
//! - [`train`]: seeded training with Adam (no weight decay), cross entropy and
//!   a cosine learning-rate decay; 10 % of the training split is held out for
//!   validation (a seeded shuffle, [`load_split`]); `graph.json` records the
//!   network ([`GraphFile`]); the shuffle of epoch `k`
//!   depends only on the seed and `k`, so `resume` replays the same data
//!   order. Every epoch writes `epoch-<k>.safetensors`, `last.safetensors` and
//!   `train.json`; the end writes `summary.json` with the float test accuracy.
//!   On resume Adam's moments start again from zero (they are not saved).
//! - [`finetune`]: calibrate ([`calibrate`]), build a [`QuantPlan`], train with
//!   [`Net::forward_fq`] for a number of steps with the plan fixed (Adam,
//!   constant learning rate).
//!
//! Checkpoints, their graphs and the data splits are in [`crate::checkpoint`].

use crate::checkpoint::{self, load_split, subset, DataSplit, GraphFile};
use crate::data::{self, DataError, Dataset, Images, Split};
use crate::nn::calib::{batch_tensor, calibrate};
use crate::nn::net::Net;
use crate::nn::qplan::{PlanError, QuantPlan};
use crate::nn::spec::Spec;
use crate::zoo::Arch;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why training, fine-tuning or loading failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The data set could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The quantization plan could not be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file could not be parsed.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// The loss became NaN or infinite.
    #[error("loss is {loss} at epoch {epoch}, step {step}: training diverged (try a lower --lr)")]
    NonFinite {
        /// Epoch (1-based; 0 for fine-tuning).
        epoch: usize,
        /// Step within the epoch (1-based).
        step: usize,
        /// The loss value.
        loss: f32,
    },
    /// A checkpoint does not match the model.
    #[error("checkpoint {} does not match {arch}: tensor `{tensor}` {problem}", path.display())]
    Mismatch {
        /// The checkpoint.
        path: PathBuf,
        /// The model.
        arch: String,
        /// The tensor.
        tensor: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A user's `.npy` data set could not be read.
    #[error(transparent)]
    Input(#[from] crate::eval::InputError),
    /// A user's images do not fit.
    #[error("{}: {problem}", path.display())]
    Images {
        /// The images file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A graph.json is malformed or unsupported.
    #[error("{}: {problem}", path.display())]
    Graph {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// No model given and no sidecar names one.
    #[error("cannot tell the model of {}: no graph.json, train.json or qat.json next to it; give the model", path.display())]
    NoArch {
        /// The checkpoint.
        path: PathBuf,
    },
    /// `--resume` with settings that differ from the run's.
    #[error("cannot resume {}: it was trained with {what} {was}, not {given}", dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// The setting.
        what: &'static str,
        /// The run's value.
        was: String,
        /// The value given now.
        given: String,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Settings of a training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Model.
    pub arch: Arch,
    /// Data set.
    pub dataset: Dataset,
    /// Data directory (holding `mnist/` and `fashion-mnist/`).
    pub data_dir: PathBuf,
    /// Total epochs (on resume, the target count including those done).
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate (cosine decay to 0 over all epochs).
    pub lr: f64,
    /// Seed of the initialisation, the validation split and the shuffles.
    pub seed: u64,
    /// Run directory.
    pub out: PathBuf,
    /// Continue from `out/last.safetensors` and `out/train.json`.
    pub resume: bool,
    /// Use only the first this many training images (quick runs, tests).
    pub limit: Option<usize>,
    /// Show progress bars.
    pub progress: bool,
}

impl TrainOptions {
    /// Defaults for a model: epochs, batch 64, learning rate, seed 1.
    pub fn new(arch: Arch, dataset: Dataset, data_dir: PathBuf, out: PathBuf) -> Self {
        let (epochs, lr) = default_schedule(arch);
        Self {
            arch,
            dataset,
            data_dir,
            epochs,
            batch: 64,
            lr,
            seed: 1,
            out,
            resume: false,
            limit: None,
            progress: true,
        }
    }
}

/// Default epochs and peak learning rate of a model.
pub fn default_schedule(arch: Arch) -> (usize, f64) {
    match arch {
        Arch::Lenet5 => (12, 2e-3),
        Arch::FashionCnn => (10, 2e-3),
        Arch::Resnet8 => (8, 2e-3),
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Epoch (1-based).
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Running training accuracy (train-mode forward passes).
    pub train_acc: f64,
    /// Validation accuracy.
    pub val_acc: f64,
    /// Seconds of training (without validation).
    pub seconds: f64,
    /// Training images per second.
    pub images_per_sec: f64,
}

/// `train.json`: the state of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Model.
    pub arch: Arch,
    /// Data set.
    pub dataset: Dataset,
    /// Seed.
    pub seed: u64,
    /// Batch size.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Target epochs.
    pub epochs: usize,
    /// Epochs done.
    pub epochs_done: usize,
    /// Training images used (before the validation split).
    pub limit: Option<usize>,
    /// One entry per epoch done.
    pub history: Vec<EpochStats>,
}

/// `summary.json`: the result of a finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Model.
    pub arch: Arch,
    /// Data set.
    pub dataset: Dataset,
    /// Epochs.
    pub epochs: usize,
    /// Float accuracy on the test split.
    pub test_acc: f64,
    /// Validation accuracy after the last epoch.
    pub val_acc: f64,
    /// Mean seconds per epoch.
    pub seconds_per_epoch: f64,
    /// Mean training images per second.
    pub images_per_sec: f64,
}

/// The RNG of `stream` (e.g. an epoch) under `seed`.
pub(crate) fn rng(seed: u64, stream: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream)
}

/// A fresh model with parameters initialised from `seed` (He uniform weights,
/// zero biases, batch norm at identity).
pub fn new_model(spec: &Spec, seed: u64) -> Result<(VarMap, Net)> {
    let vm = VarMap::new();
    let net = Net::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), spec)?;
    let mut r = rng(seed, u64::MAX - 1);
    for (name, var) in sorted_vars(&vm) {
        if name.ends_with(".weight") && !name.ends_with(".bn.weight") {
            let dims = var.dims().to_vec();
            let bound = (6.0 / dims[1..].iter().product::<usize>() as f32).sqrt();
            let v: Vec<f32> = (0..var.elem_count()).map(|_| r.gen_range(-bound..bound)).collect();
            var.set(&Tensor::from_vec(v, dims, &Device::Cpu)?)?;
        }
    }
    Ok((vm, net))
}

pub(crate) fn sorted_vars(vm: &VarMap) -> Vec<(String, Var)> {
    let mut v: Vec<(String, Var)> = vm.data().lock().expect("var map lock").clone().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// The parameters an optimizer updates (all but batch norm running statistics).
fn trainable(vm: &VarMap) -> Vec<Var> {
    sorted_vars(vm).into_iter().filter(|(n, _)| !n.contains(".running_")).map(|(_, v)| v).collect()
}

/// Fraction of `idx` images classified correctly (float, or fake-quantized
/// under `plan`), in eval mode.
pub fn accuracy(net: &Net, images: &Images, idx: &[usize], batch: usize, plan: Option<&QuantPlan>) -> Result<f64> {
    let mut correct = 0usize;
    for chunk in idx.chunks(batch.max(1)) {
        let x = batch_tensor(images, chunk, &Device::Cpu)?;
        let logits = match plan {
            Some(p) => net.forward_fq(&x, false, p)?,
            None => net.forward(&x, false)?,
        };
        correct += count_correct(&logits, &labels(images, chunk)?)?;
    }
    Ok(if idx.is_empty() { 0.0 } else { correct as f64 / idx.len() as f64 })
}

fn labels(images: &Images, idx: &[usize]) -> Result<Tensor> {
    let v: Vec<u32> = idx.iter().map(|&i| u32::from(images.labels[i])).collect();
    Ok(Tensor::from_vec(v, idx.len(), &Device::Cpu)?)
}

/// Correct predictions, the prediction being the first largest logit (as
/// the integer path's `eval::argmax`: fake-quantized logits tie often at
/// low bits, and both sides must break ties the same way).
fn count_correct(logits: &Tensor, labels: &Tensor) -> Result<usize> {
    let rows = logits.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let labels = labels.to_vec1::<u32>()?;
    Ok(rows.iter().zip(&labels).filter(|(r, &l)| crate::eval::argmax(r) == l as usize).count())
}

fn bar(len: usize, progress: bool) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed}<{eta} {msg}")
        .expect("valid template")
        .progress_chars("=> ");
    pb.set_style(style);
    pb
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    std::fs::write(path, text + "\n").map_err(|source| TrainError::Io { path: path.into(), source })
}

/// Read a JSON file.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io { path: path.into(), source })?;
    serde_json::from_str(&text).map_err(|source| TrainError::Json { path: path.into(), source })
}

fn save(vm: &VarMap, path: &Path) -> Result<()> {
    Ok(vm.save(path)?)
}

fn check_resume(o: &TrainOptions, s: &TrainState) -> Result<()> {
    let err = |what, was: String, given: String| Err(TrainError::Resume { dir: o.out.clone(), what, was, given });
    if s.arch != o.arch {
        return err("model", s.arch.name().into(), o.arch.name().into());
    }
    if s.dataset != o.dataset {
        return err("data set", s.dataset.to_string(), o.dataset.to_string());
    }
    if s.seed != o.seed {
        return err("seed", s.seed.to_string(), o.seed.to_string());
    }
    if s.limit != o.limit {
        return err("image limit", format!("{:?}", s.limit), format!("{:?}", o.limit));
    }
    Ok(())
}

/// One optimisation step on `idx`: returns (loss, correct).
fn step(net: &Net, opt: &mut AdamW, images: &Images, idx: &[usize], plan: Option<&QuantPlan>) -> Result<(f32, usize)> {
    let x = batch_tensor(images, idx, &Device::Cpu)?;
    let y = labels(images, idx)?;
    let logits = match plan {
        Some(p) => net.forward_fq(&x, true, p)?,
        None => net.forward(&x, true)?,
    };
    let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
    let value = loss.to_scalar::<f32>()?;
    if value.is_finite() {
        opt.backward_step(&loss)?;
    }
    Ok((value, count_correct(&logits, &y)?))
}

/// Cosine decay from `lr` at step 0 to 0 at step `total`.
fn cosine(lr: f64, t: usize, total: usize) -> f64 {
    0.5 * lr * (1.0 + (std::f64::consts::PI * t as f64 / total.max(1) as f64).cos())
}

/// Train (or resume) a run; returns the summary written to `summary.json`.
pub fn train(o: &TrainOptions) -> Result<Summary> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(&o.out).map_err(io(&o.out))?;
    let state_path = o.out.join("train.json");
    let (vm, net, mut state) = if o.resume {
        let state: TrainState = read_json(&state_path)?;
        check_resume(o, &state)?;
        let c = checkpoint::load(&o.out.join("last.safetensors"), Some(o.arch))?;
        (c.vm, c.net, state)
    } else {
        let (vm, net) = new_model(&o.arch.spec(), o.seed)?;
        let state = TrainState {
            arch: o.arch,
            dataset: o.dataset,
            seed: o.seed,
            batch: o.batch,
            lr: o.lr,
            epochs: o.epochs,
            epochs_done: 0,
            limit: o.limit,
            history: vec![],
        };
        (vm, net, state)
    };
    state.epochs = o.epochs;
    GraphFile::zoo(o.arch).write(&o.out)?;
    let split = load_split(&o.data_dir, o.dataset, o.seed, o.limit)?;
    let steps_per_epoch = split.train.len().div_ceil(o.batch.max(1));
    let total = o.epochs * steps_per_epoch;
    let params = ParamsAdamW { lr: o.lr, weight_decay: 0.0, ..Default::default() };
    let mut opt = AdamW::new(trainable(&vm), params)?;
    for epoch in state.epochs_done + 1..=o.epochs {
        let mut order = split.train.clone();
        order.shuffle(&mut rng(o.seed, epoch as u64));
        let pb = bar(steps_per_epoch, o.progress);
        pb.set_prefix(format!("epoch {epoch}/{}", o.epochs));
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0usize, 0usize);
        let start = Instant::now();
        for (s, chunk) in order.chunks(o.batch.max(1)).enumerate() {
            opt.set_learning_rate(cosine(o.lr, (epoch - 1) * steps_per_epoch + s, total));
            let (loss, c) = step(&net, &mut opt, &split.images, chunk, None)?;
            if !loss.is_finite() {
                pb.abandon();
                return Err(TrainError::NonFinite { epoch, step: s + 1, loss });
            }
            loss_sum += f64::from(loss) * chunk.len() as f64;
            (correct, seen) = (correct + c, seen + chunk.len());
            pb.set_message(format!(
                "loss {:.4} acc {:.2}%",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64
            ));
            pb.inc(1);
        }
        let seconds = start.elapsed().as_secs_f64();
        pb.finish();
        let val_acc = accuracy(&net, &split.images, &split.val, 256, None)?;
        let stats = EpochStats {
            epoch,
            loss: loss_sum / seen.max(1) as f64,
            train_acc: correct as f64 / seen.max(1) as f64,
            val_acc,
            seconds,
            images_per_sec: seen as f64 / seconds.max(1e-9),
        };
        if o.progress {
            eprintln!(
                "epoch {epoch}: loss {:.4}, train {:.2}%, val {:.2}%, {:.1} s, {:.0} images/s",
                stats.loss,
                100.0 * stats.train_acc,
                100.0 * val_acc,
                seconds,
                stats.images_per_sec
            );
        }
        save(&vm, &o.out.join(format!("epoch-{epoch}.safetensors")))?;
        save(&vm, &o.out.join("last.safetensors"))?;
        state.history.push(stats);
        state.epochs_done = epoch;
        write_json(&state_path, &state)?;
    }
    write_json(&state_path, &state)?;
    let test = data::load(&o.data_dir, o.dataset, Split::Test)?;
    let test_idx: Vec<usize> = (0..test.len()).collect();
    let n = state.history.len().max(1) as f64;
    let summary = Summary {
        arch: o.arch,
        dataset: o.dataset,
        epochs: state.epochs_done,
        test_acc: accuracy(&net, &test, &test_idx, 256, None)?,
        val_acc: state.history.last().map_or(0.0, |h| h.val_acc),
        seconds_per_epoch: state.history.iter().map(|h| h.seconds).sum::<f64>() / n,
        images_per_sec: state.history.iter().map(|h| h.images_per_sec).sum::<f64>() / n,
    };
    write_json(&o.out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Settings of a QAT fine-tune.
#[derive(Debug, Clone)]
pub struct QatOptions {
    /// Weight bits (one value, or one per weighted layer).
    pub wbits: Vec<u8>,
    /// Activation bits (same form).
    pub abits: Vec<u8>,
    /// Optimisation steps (0: post-training quantization only).
    pub steps: usize,
    /// Peak learning rate (Adam), decayed to 0 over the steps by a cosine.
    pub lr: f64,
    /// Batch size (also of calibration).
    pub batch: usize,
    /// Calibration batches.
    pub calib_batches: usize,
    /// Seed of the batch order.
    pub seed: u64,
    /// Evaluate on at most this many validation images.
    pub val_limit: Option<usize>,
    /// Show a progress bar.
    pub progress: bool,
}

impl Default for QatOptions {
    fn default() -> Self {
        Self {
            wbits: vec![8],
            abits: vec![8],
            steps: 300,
            lr: 1e-3,
            batch: 64,
            calib_batches: 20,
            seed: 1,
            val_limit: None,
            progress: false,
        }
    }
}

/// What a fine-tune produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QatOutcome {
    /// The plan, fixed during fine-tuning.
    pub plan: QuantPlan,
    /// Calibrated `(min, max)` of every tensor.
    pub ranges: Vec<(f32, f32)>,
    /// Fake-quantized validation accuracy before fine-tuning.
    pub fq_val_acc_before: f64,
    /// Fake-quantized validation accuracy after fine-tuning.
    pub fq_val_acc: f64,
}

/// Calibrate `net` on the first training images of `split`, build the plan,
/// fine-tune the parameters in `vm` (in place) with fake quantization for
/// `o.steps` steps, and measure the fake-quantized validation accuracy.
pub fn finetune(vm: &VarMap, net: &Net, split: &DataSplit, o: &QatOptions) -> Result<QatOutcome> {
    let n = split.train.len().min(o.calib_batches.max(1) * o.batch.max(1));
    let calib = subset(&split.images, &split.train[..n]);
    let ranges = calibrate(net, &calib, o.calib_batches, o.batch)?;
    let plan = QuantPlan::new(net.spec(), &ranges, &o.wbits, &o.abits)?;
    let val = &split.val[..o.val_limit.unwrap_or(usize::MAX).min(split.val.len())];
    let fq_val_acc_before = accuracy(net, &split.images, val, 256, Some(&plan))?;
    let mut opt = AdamW::new(trainable(vm), ParamsAdamW { lr: o.lr, weight_decay: 0.0, ..Default::default() })?;
    let pb = bar(o.steps, o.progress);
    pb.set_prefix("qat");
    let mut order: Vec<usize> = vec![];
    let (mut round, mut loss_avg) = (0u64, None::<f32>);
    for s in 0..o.steps {
        if order.len() < o.batch.max(1) {
            order = split.train.clone();
            round += 1;
            order.shuffle(&mut rng(o.seed, round << 32));
        }
        let chunk: Vec<usize> = order.drain(..o.batch.max(1).min(order.len())).collect();
        opt.set_learning_rate(cosine(o.lr, s, o.steps));
        let (loss, _) = step(net, &mut opt, &split.images, &chunk, Some(&plan))?;
        if !loss.is_finite() {
            pb.abandon();
            return Err(TrainError::NonFinite { epoch: 0, step: s + 1, loss });
        }
        let avg = loss_avg.map_or(loss, |a| 0.95 * a + 0.05 * loss);
        loss_avg = Some(avg);
        pb.set_message(format!("loss {avg:.4}"));
        pb.inc(1);
    }
    pb.finish();
    let fq_val_acc = accuracy(net, &split.images, val, 256, Some(&plan))?;
    Ok(QatOutcome { plan, ranges, fq_val_acc_before, fq_val_acc })
}
