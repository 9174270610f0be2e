//! `releq quantize CKPT --wbits .. --abits .. --out MODEL.releq`: export a
//! float (or QAT) checkpoint to an integer `.releq` model.

use anyhow::Context as _;
use clap::Parser;
use releq_host::checkpoint;
use releq_host::data::{self, Dataset};
use releq_host::nn::calib::calibrate;
use releq_host::nn::qplan::QuantPlan;
use releq_host::quantize::export;
use releq_host::train;
use releq_host::zoo::Arch;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Export a checkpoint to an integer .releq model (PTQ, or after QAT).
///
/// Post-training quantization to a .releq file: per-channel symmetric
/// weights, activations calibrated on training batches, batch norm folded.
/// For a QAT checkpoint (qat.safetensors with its qat.json), the plan fixed
/// during fine-tuning is used as is, so the integer model computes what QAT
/// trained.
#[derive(Debug, Parser)]
pub struct Quantize {
    /// Checkpoint (safetensors) written by `releq train` or `releq finetune`.
    pub ckpt: PathBuf,
    /// Weight bits: one value for every weighted layer, or one per layer.
    #[arg(long, value_delimiter = ',')]
    pub wbits: Option<Vec<u8>>,
    /// Activation bits: one value, or one per weighted layer.
    #[arg(long, value_delimiter = ',')]
    pub abits: Option<Vec<u8>>,
    /// Output .releq file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Zoo model (default: graph.json, train.json or qat.json next to the checkpoint).
    #[arg(long, value_enum)]
    pub model: Option<Arch>,
    /// Data set for calibration (default: from train.json or graph.json).
    #[arg(long, value_enum, conflicts_with = "data")]
    pub dataset: Option<Dataset>,
    /// Calibrate on a user's `.npy` data set instead: `IMAGES.npy,LABELS.npy`
    /// or a directory holding `images.npy` and `labels.npy` (uint8 pixels
    /// [N, H, W] or float32 pixel / 255); the images outside its seeded 10 %
    /// validation split are used.
    #[arg(long)]
    pub data: Option<String>,
    /// Calibration batches of training images.
    #[arg(long, default_value_t = 20)]
    pub calib_batches: usize,
    /// Calibration batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// The part of `qat.json` quantize needs.
#[derive(Deserialize)]
struct QatPlan {
    plan: QuantPlan,
}

fn sidecar(ckpt: &Path, name: &str) -> PathBuf {
    ckpt.parent().unwrap_or(Path::new(".")).join(name)
}

impl Quantize {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let net = checkpoint::load(&self.ckpt, self.model)?.net;
        let spec = net.spec().clone();
        let qat = sidecar(&self.ckpt, "qat.json");
        let plan = if self.ckpt.file_name().is_some_and(|f| f == "qat.safetensors") && qat.is_file() {
            let q: QatPlan = train::read_json(&qat)?;
            for (flag, given, planned) in [("wbits", &self.wbits, &q.plan.wbits), ("abits", &self.abits, &q.plan.abits)]
            {
                if let Some(g) = given {
                    let g =
                        releq_host::nn::qplan::expand_bits(if flag == "wbits" { "wbits" } else { "abits" }, g, &spec)?;
                    anyhow::ensure!(
                        &g == planned,
                        "--{flag} {g:?} differs from the {planned:?} this checkpoint was fine-tuned for ({})",
                        qat.display()
                    );
                }
            }
            eprintln!("using the quantization plan fixed during fine-tuning ({})", qat.display());
            q.plan
        } else {
            let meta = checkpoint::Meta::of(&self.ckpt);
            let seed = meta.seed.unwrap_or(1);
            let source = match &self.data {
                Some(d) => checkpoint::DataSource::Npy(data::NpyFiles::parse(d)?),
                None => checkpoint::DataSource::Builtin {
                    dir: self.data_dir.clone().unwrap_or_else(data::default_data_dir),
                    dataset: self.dataset.or(meta.dataset).context(
                        "no train.json or graph.json next to the checkpoint tells the calibration data set: give --dataset or --data",
                    )?,
                },
            };
            let split = source.split(seed, None)?;
            checkpoint::check_images(&spec, &split.images, &source.name())?;
            let n = split.train.len().min(self.calib_batches.max(1) * self.batch.max(1));
            let calib = checkpoint::subset(&split.images, &split.train[..n]);
            let ranges = calibrate(&net, &calib, self.calib_batches, self.batch)?;
            let wbits = self.wbits.clone().unwrap_or_else(|| vec![8]);
            let abits = self.abits.clone().unwrap_or_else(|| vec![8]);
            QuantPlan::new(&spec, &ranges, &wbits, &abits)?
        };
        let owned = export(&spec, &plan, |op| net.folded(op).map_err(|e| e.to_string()))?;
        let bytes = owned.encode()?;
        if let Some(d) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        std::fs::write(&self.out, &bytes).with_context(|| format!("cannot write {}", self.out.display()))?;
        let plan_view = owned.plan()?;
        println!(
            "wrote {} ({} bytes flash, {} bytes arena), wbits {:?}, abits {:?}",
            self.out.display(),
            bytes.len(),
            plan_view.arena_bytes,
            plan.wbits,
            plan.abits
        );
        Ok(())
    }
}
