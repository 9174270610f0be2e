//! `releq finetune CKPT`: calibrate, plan and fine-tune with fake quantization.

use anyhow::Context as _;
use clap::Parser;
use releq_host::checkpoint;
use releq_host::data::{self, Dataset};
use releq_host::train::{self, QatOptions};
use releq_host::zoo::Arch;
use serde::Serialize;
use std::path::PathBuf;

/// Calibrate and fine-tune a checkpoint with fake quantization (QAT).
///
/// Quantization-aware fine-tuning: calibrate the checkpoint's tensor ranges,
/// build the quantization plan for the given bits, train with fake
/// quantization for --steps steps (plan fixed), and write DIR/qat.safetensors
/// and DIR/qat.json (plan, bits, fake-quantized validation accuracy) with
/// the network's DIR/graph.json.
#[derive(Debug, Parser)]
pub struct Finetune {
    /// Float checkpoint (safetensors), e.g. runs/lenet5-mnist/last.safetensors.
    pub ckpt: PathBuf,
    /// Zoo model (default: graph.json, train.json or qat.json next to the checkpoint).
    #[arg(long, value_enum)]
    pub model: Option<Arch>,
    /// Data set (default: from train.json or graph.json next to the checkpoint).
    #[arg(long, value_enum, conflicts_with = "data")]
    pub dataset: Option<Dataset>,
    /// A user's `.npy` data set instead: `IMAGES.npy,LABELS.npy` or a
    /// directory holding `images.npy` and `labels.npy` (uint8 pixels [N, H,
    /// W] or float32 pixel / 255); a seeded 10 % is the validation split, the
    /// rest is trained on.
    #[arg(long)]
    pub data: Option<String>,
    /// Weight bits: one value, or one per weighted layer.
    #[arg(long, default_value = "8", value_delimiter = ',')]
    pub wbits: Vec<u8>,
    /// Activation bits: one value, or one per weighted layer.
    #[arg(long, default_value = "8", value_delimiter = ',')]
    pub abits: Vec<u8>,
    /// Fine-tuning steps (0: calibrate and evaluate only).
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Peak learning rate (Adam), decayed to 0 over the steps by a cosine.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Calibration batches.
    #[arg(long, default_value_t = 20)]
    pub calib_batches: usize,
    /// Seed of the validation split (default: the training run's) and batch order.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `qat.json`.
#[derive(Serialize)]
struct QatJson<'a> {
    /// The zoo model, if the network is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<Arch>,
    /// The network's name.
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset: Option<Dataset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<String>,
    seed: u64,
    checkpoint: PathBuf,
    wbits: &'a [u8],
    abits: &'a [u8],
    steps: usize,
    lr: f64,
    calib_batches: usize,
    #[serde(flatten)]
    outcome: &'a train::QatOutcome,
}

impl Finetune {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        super::train::rerun_with_malloc_tunables()?;
        let meta = checkpoint::Meta::of(&self.ckpt);
        let source = match &self.data {
            Some(d) => checkpoint::DataSource::Npy(data::NpyFiles::parse(d)?),
            None => checkpoint::DataSource::Builtin {
                dir: self.data_dir.clone().unwrap_or_else(data::default_data_dir),
                dataset: self.dataset.or(meta.dataset).context(
                    "no train.json or graph.json next to the checkpoint tells the data set: give --dataset or --data",
                )?,
            },
        };
        let seed = self.seed.or(meta.seed).unwrap_or(1);
        let checkpoint::Checkpoint { vm, net, graph } = checkpoint::load(&self.ckpt, self.model)?;
        let name = net.spec().name.clone();
        let arch = Arch::from_name(&name).filter(|a| a.spec() == *net.spec());
        let split = source.split(seed, meta.limit)?;
        checkpoint::check_images(net.spec(), &split.images, &source.name())?;
        let o = QatOptions {
            wbits: self.wbits,
            abits: self.abits,
            steps: self.steps,
            lr: self.lr,
            batch: self.batch.max(1),
            calib_batches: self.calib_batches,
            seed,
            val_limit: None,
            progress: true,
        };
        let outcome = train::finetune(&vm, &net, &split, &o)?;
        std::fs::create_dir_all(&self.out).with_context(|| format!("cannot create {}", self.out.display()))?;
        vm.save(self.out.join("qat.safetensors"))?;
        graph.write(&self.out)?;
        let json = QatJson {
            arch,
            model: &name,
            dataset: source.dataset(),
            data: self.data.clone(),
            seed,
            checkpoint: self.ckpt.clone(),
            wbits: &outcome.plan.wbits,
            abits: &outcome.plan.abits,
            steps: o.steps,
            lr: o.lr,
            calib_batches: o.calib_batches,
            outcome: &outcome,
        };
        let path = self.out.join("qat.json");
        std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "{} w{:?} a{:?}: fake-quantized validation accuracy {:.2}% before, {:.2}% after {} steps; wrote {}",
            name,
            outcome.plan.wbits,
            outcome.plan.abits,
            100.0 * outcome.fq_val_acc_before,
            100.0 * outcome.fq_val_acc,
            o.steps,
            self.out.display()
        );
        Ok(())
    }
}
