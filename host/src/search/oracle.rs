//! The accuracy oracle: the validation accuracy of a bitwidth configuration,
//! computed by the host's integer inference (bit-exact with the device) after
//! calibration and, optionally, a short quantization-aware fine-tune.
//!
//! Calibration ranges and the batch-norm-folded float weights are computed
//! once. Each configuration is exported to an integer model and evaluated on
//! the validation split (never the test set) with the fast, bit-exact host
//! path. Results are cached by configuration (bits and fine-tune steps).

use crate::data::Images;
use crate::eval::{argmax, quantize_image};
use crate::fastinfer::FastModel;
use crate::nn::calib::calibrate;
use crate::nn::qplan::QuantPlan;
use crate::nn::spec::Spec;
use crate::quantize::{export, ExportError};
use crate::train::{self, DataSplit, QatOptions};
use releq_common::builder::OwnedModel;
use std::collections::HashMap;
use std::path::PathBuf;

/// Why an accuracy could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// Training-side failure (calibration, checkpoint, fine-tune).
    #[error(transparent)]
    Train(#[from] train::TrainError),
    /// Candle failure.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The plan could not be built.
    #[error(transparent)]
    Plan(#[from] crate::nn::qplan::PlanError),
    /// Export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The exported model did not validate.
    #[error(transparent)]
    Build(#[from] releq_common::builder::BuildError),
    /// Inference failed.
    #[error(transparent)]
    Run(#[from] releq_common::runtime::RunError),
}

/// The oracle's settings.
#[derive(Debug, Clone)]
pub struct OracleOptions {
    /// The float checkpoint.
    pub checkpoint: PathBuf,
    /// Calibration batches (of 64 training images).
    pub calib_batches: usize,
    /// Evaluate on at most this many validation images.
    pub val_limit: usize,
    /// QAT steps per configuration (0: post-training quantization only).
    pub finetune_steps: usize,
}

/// Accuracy of configurations, cached.
pub struct Oracle {
    spec: Spec,
    folded: Vec<Option<(Vec<f32>, Vec<f32>)>>,
    ranges: Vec<(f32, f32)>,
    split: DataSplit,
    val: Images,
    opts: OracleOptions,
    cache: HashMap<(Vec<u8>, Vec<u8>), f64>,
    /// Float validation accuracy (candle, same images).
    pub float_acc: f64,
    /// Evaluations computed (cache misses).
    pub computed: usize,
}

impl Oracle {
    /// Load the checkpoint, calibrate, fold and measure the float accuracy.
    pub fn new(split: DataSplit, opts: OracleOptions) -> Result<Self, OracleError> {
        let (_vm, net) = train::load_checkpoint(&opts.checkpoint, None)?;
        let spec = net.spec().clone();
        let n = split.train.len().min(opts.calib_batches.max(1) * 64);
        let calib = train::subset(&split.images, &split.train[..n]);
        let ranges = calibrate(&net, &calib, opts.calib_batches, 64)?;
        let folded = (0..spec.ops.len())
            .map(|i| if spec.ops[i].is_weighted() { net.folded(i).map(Some) } else { Ok(None) })
            .collect::<Result<Vec<_>, _>>()?;
        let val_idx = &split.val[..opts.val_limit.min(split.val.len())];
        let val = train::subset(&split.images, val_idx);
        let float_acc = train::accuracy(&net, &split.images, val_idx, 256, None)?;
        Ok(Self { spec, folded, ranges, split, val, opts, cache: HashMap::new(), float_acc, computed: 0 })
    }

    /// The network.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// The batch-norm-folded float weights and bias of weighted op `op`.
    pub fn model_weights(&self, op: usize) -> (&[f32], &[f32]) {
        match &self.folded[op] {
            Some((w, b)) => (w, b),
            None => (&[], &[]),
        }
    }

    /// Validation images used.
    pub fn val_len(&self) -> usize {
        self.val.len()
    }

    /// Remember a result (e.g. from a resumed run's log).
    pub fn insert(&mut self, wbits: &[u8], abits: &[u8], acc: f64) {
        self.cache.insert((wbits.to_vec(), abits.to_vec()), acc);
    }

    /// Whether a configuration is already known.
    pub fn known(&self, wbits: &[u8], abits: &[u8]) -> Option<f64> {
        self.cache.get(&(wbits.to_vec(), abits.to_vec())).copied()
    }

    /// The integer model of a configuration (fine-tuned if the oracle does
    /// QAT), and its plan.
    pub fn model(&self, wbits: &[u8], abits: &[u8]) -> Result<(OwnedModel, QuantPlan), OracleError> {
        if self.opts.finetune_steps > 0 {
            let (vm, net) = train::load_checkpoint(&self.opts.checkpoint, None)?;
            let o = QatOptions {
                wbits: wbits.to_vec(),
                abits: abits.to_vec(),
                steps: self.opts.finetune_steps,
                calib_batches: self.opts.calib_batches,
                val_limit: Some(64),
                ..QatOptions::default()
            };
            let out = train::finetune(&vm, &net, &self.split, &o)?;
            let m = export(&self.spec, &out.plan, |op| net.folded(op).map_err(|e| e.to_string()))?;
            return Ok((m, out.plan));
        }
        let plan = QuantPlan::new(&self.spec, &self.ranges, wbits, abits)?;
        let m =
            export(&self.spec, &plan, |op| self.folded[op].clone().ok_or_else(|| format!("op {op} has no weights")))?;
        Ok((m, plan))
    }

    /// Validation accuracy of a configuration (cached).
    pub fn accuracy(&mut self, wbits: &[u8], abits: &[u8]) -> Result<f64, OracleError> {
        if let Some(a) = self.known(wbits, abits) {
            return Ok(a);
        }
        let (m, _) = self.model(wbits, abits)?;
        let acc = accuracy_of(&m, &self.val)?;
        self.computed += 1;
        self.insert(wbits, abits, acc);
        Ok(acc)
    }
}

/// Accuracy of an integer model on images, by the fast host path.
pub fn accuracy_of(m: &OwnedModel, images: &Images) -> Result<f64, OracleError> {
    let plan = m.plan()?;
    let mut fast = FastModel::new(&plan);
    let mut correct = 0usize;
    for i in 0..images.len() {
        let input = quantize_image(images.image(i), &plan.input().quant);
        correct += usize::from(argmax(fast.run(&input)?) == images.labels[i] as usize);
    }
    Ok(correct as f64 / images.len().max(1) as f64)
}
