//! Flags that choose what a model is run on (`releq eval`, `releq run`): a
//! built-in data set (`--dataset`), a user's `.npy` data set (`--data`), or
//! `.npy` inputs with optional labels (`--inputs`, `--labels`); and where
//! the outputs go (`--save-outputs`).

use anyhow::Context as _;
use clap::Args;
use releq_common::validate::Plan;
use releq_host::data::{self, Dataset, NpyFiles, Split};
use releq_host::eval::{load_inputs, samples_from_images, Samples};
use releq_host::npy;
use std::path::{Path, PathBuf};

/// What to run the model on.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Built-in data set (default: the one the zoo model of the model's name
    /// is made for: lenet5 -> mnist, fashion-cnn and resnet8 -> fashion-mnist).
    #[arg(long, value_enum, conflicts_with_all = ["data", "inputs"])]
    pub dataset: Option<Dataset>,
    /// A user's data set as `.npy`: `IMAGES.npy,LABELS.npy` or a directory
    /// holding `images.npy` and `labels.npy` (images as for --inputs; labels
    /// integers [N]). `--split val` is a seeded 10 % of it, `test` the rest,
    /// `all` everything.
    #[arg(long, conflicts_with = "inputs")]
    pub data: Option<String>,
    /// Inputs as `.npy`, NHWC: [N, H, W, C], [N, H*W*C] (or [N, H, W] when
    /// C is 1). int8: input codes as they are; float32: real values,
    /// quantized with the model's input scale and zero point; uint8: pixels,
    /// read as pixel / 255.
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// Labels for --inputs (`.npy`, integers, [N]): accuracy is reported.
    #[arg(long, requires = "inputs")]
    pub labels: Option<PathBuf>,
    /// Data directory of the built-in data sets (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Which split: `test`; `val` (of a built-in set, the 10 % of the
    /// training set that `releq train` held out with --seed; of a --data set,
    /// a seeded 10 %); `all` (a --data set whole).
    #[arg(long, default_value = "test", value_parser = ["test", "val", "all"])]
    pub split: String,
    /// Seed of the validation split (as given to `releq train`).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Save the outputs as int8 `.npy` [N, outputs].
    #[arg(long)]
    pub save_outputs: Option<PathBuf>,
}

/// The samples and a name for them.
pub struct Chosen {
    /// The samples.
    pub samples: Samples,
    /// E.g. `mnist`, `x.npy`, `images.npy`.
    pub source: String,
    /// The split, or `all` for --inputs.
    pub split: String,
}

impl InputArgs {
    /// Load the samples for `plan` (`model` names the file in errors;
    /// `fallback` is the data set when the model is not a zoo model).
    pub fn load(&self, plan: &Plan<'_>, model: &Path, fallback: Option<Dataset>) -> anyhow::Result<Chosen> {
        if let Some(inputs) = &self.inputs {
            if self.split != "test" {
                anyhow::bail!("--split applies to --dataset and --data, not to --inputs (which are run whole)");
            }
            let samples = load_inputs(plan, inputs, self.labels.as_deref())?;
            return Ok(Chosen { samples, source: inputs.display().to_string(), split: "all".into() });
        }
        if let Some(spec) = &self.data {
            let files = NpyFiles::parse(spec)?;
            let all = load_inputs(plan, &files.images, Some(&files.labels))?;
            let (rest, val) = data::holdout(all.len(), self.seed);
            let samples = match self.split.as_str() {
                "val" => all.subset(&val),
                "test" => all.subset(&rest),
                _ => all,
            };
            return Ok(Chosen { samples, source: files.images.display().to_string(), split: self.split.clone() });
        }
        let dataset = match (self.dataset, releq_host::zoo::Arch::from_name(plan.model.name), fallback) {
            (Some(d), _, _) => d,
            (None, Some(arch), _) => arch.dataset(),
            (None, None, Some(d)) => d,
            (None, None, None) => anyhow::bail!(
                "{}: model `{}` is not a zoo model, so its data set is unknown: give --dataset, --data or --inputs",
                model.display(),
                plan.model.name
            ),
        };
        let dir = self.data_dir.clone().unwrap_or_else(data::default_data_dir);
        let images = match self.split.as_str() {
            "val" => {
                let split = releq_host::checkpoint::load_split(&dir, dataset, self.seed, None)?;
                releq_host::checkpoint::subset(&split.images, &split.val)
            }
            "test" => data::load(&dir, dataset, Split::Test)?,
            _ => anyhow::bail!("--split all applies to --data sets; built-in sets have `test` and `val`"),
        };
        let samples = samples_from_images(plan, &images, &dataset.to_string())?;
        Ok(Chosen { samples, source: dataset.to_string(), split: self.split.clone() })
    }

    /// Write `outputs` (rows of `width`) to --save-outputs if given;
    /// returns its path.
    pub fn save(&self, outputs: Vec<i8>, width: usize) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.save_outputs else { return Ok(None) };
        let n = outputs.len().checked_div(width).unwrap_or(0);
        npy::write(path, &[n, width], &npy::Data::I8(outputs)).context("saving the outputs")?;
        Ok(Some(path.display().to_string()))
    }
}
