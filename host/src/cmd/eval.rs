//! `releq eval MODEL --dataset D`: accuracy by the host's integer inference.

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use releq_common::validate::Plan;
use releq_host::data::{self, Dataset, Split};
use releq_host::eval::{argmax, check_input, quantize_image};
use releq_host::fastinfer::FastModel;
use std::path::PathBuf;

/// Which implementation computes the outputs (both are bit-exact with the
/// device; `reference` runs common's scalar kernels, as the firmware does).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Impl {
    /// The host-optimised path (unpacked weights, vectorised dot products).
    Fast,
    /// common's reference kernels.
    Reference,
}

/// Accuracy of a .releq model by the host's integer inference.
///
/// Accuracy of a .releq model computed by the host's integer inference: the
/// same arithmetic the device runs, bit for bit.
#[derive(Debug, Parser)]
pub struct Eval {
    /// The .releq model.
    pub model: PathBuf,
    /// Data set (default: the one the zoo model of the model's name is made
    /// for: lenet5 -> mnist, fashion-cnn and resnet8 -> fashion-mnist).
    #[arg(long, value_enum)]
    pub dataset: Option<Dataset>,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Which split: `test`, or `val` (the 10 % of the training set that
    /// `releq train` held out with --seed; the search uses only this one).
    #[arg(long, default_value = "test", value_parser = ["test", "val"])]
    pub split: String,
    /// Seed of the validation split (as given to `releq train`).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Evaluate only the first N images.
    #[arg(long)]
    pub count: Option<usize>,
    /// Implementation.
    #[arg(long = "impl", value_enum, default_value = "fast")]
    pub implementation: Impl,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl Eval {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let plan = Plan::from_bytes(&bytes)
            .with_context(|| format!("{} is not a valid .releq model", self.model.display()))?;
        let dataset = match (self.dataset, releq_host::zoo::Arch::from_name(plan.model.name)) {
            (Some(d), _) => d,
            (None, Some(arch)) => arch.dataset(),
            (None, None) => anyhow::bail!(
                "{}: model `{}` is not a zoo model, so its data set is unknown: give --dataset",
                self.model.display(),
                plan.model.name
            ),
        };
        let dir = self.data_dir.clone().unwrap_or_else(data::default_data_dir);
        let images = if self.split == "val" {
            let split = releq_host::train::load_split(&dir, dataset, self.seed, None)?;
            releq_host::train::subset(&split.images, &split.val)
        } else {
            data::load(&dir, dataset, Split::Test)?
        };
        check_input(&plan, &images, &dataset.to_string())?;
        let count = self.count.unwrap_or(images.len()).min(images.len());
        let started = std::time::Instant::now();
        let mut correct = 0usize;
        match self.implementation {
            Impl::Fast => {
                let mut fast = FastModel::new(&plan);
                for i in 0..count {
                    let input = quantize_image(images.image(i), &plan.input().quant);
                    correct += usize::from(argmax(fast.run(&input)?) == images.labels[i] as usize);
                }
            }
            Impl::Reference => {
                let mut arena = vec![0i8; plan.arena_bytes];
                for i in 0..count {
                    let input = quantize_image(images.image(i), &plan.input().quant);
                    correct += usize::from(
                        argmax(plan.run_with::<releq_common::kernels::Reference>(&mut arena, &input)?)
                            == images.labels[i] as usize,
                    );
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let accuracy = correct as f64 / count.max(1) as f64;
        if self.json {
            let v = serde_json::json!({
                "model": plan.model.name, "dataset": dataset.to_string(), "split": self.split,
                "count": count, "correct": correct, "accuracy": accuracy, "seconds": seconds,
                "images_per_second": count as f64 / seconds.max(1e-9),
                "impl": format!("{:?}", self.implementation).to_lowercase(),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            println!(
                "{}: {:.2} % on {count} {} {} images ({correct} correct), integer inference, {:.2} s ({:.0} images/s)",
                plan.model.name,
                accuracy * 100.0,
                dataset,
                self.split,
                seconds,
                count as f64 / seconds.max(1e-9)
            );
        }
        Ok(())
    }
}
