//! `releq eval MODEL [--dataset D | --data I,L | --inputs X [--labels L]]`:
//! outputs and accuracy by the host's integer inference.

use super::input_args::InputArgs;
use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use releq_common::validate::Plan;
use releq_host::eval::argmax;
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
/// Outputs and accuracy of a .releq model computed by the host's integer
/// inference: the same arithmetic the device runs, bit for bit. Runs on a
/// built-in data set, a user's .npy data set (--data) or .npy inputs
/// (--inputs, accuracy with --labels); --save-outputs writes the int8 outputs.
#[derive(Debug, Parser)]
pub struct Eval {
    /// The .releq model.
    pub model: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
    /// Evaluate only the first N samples.
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
        let chosen = self.input.load(&plan, &self.model, None)?;
        let mut samples = chosen.samples;
        samples.truncate(self.count.unwrap_or(usize::MAX));
        let count = samples.len();
        let width = plan.output().shape.len();
        let started = std::time::Instant::now();
        let mut outputs = Vec::with_capacity(count * width);
        match self.implementation {
            Impl::Fast => {
                let mut fast = FastModel::new(&plan);
                for i in 0..count {
                    outputs.extend_from_slice(fast.run(samples.input(i))?);
                }
            }
            Impl::Reference => {
                let mut arena = vec![0i8; plan.arena_bytes];
                for i in 0..count {
                    outputs.extend_from_slice(
                        plan.run_with::<releq_common::kernels::Reference>(&mut arena, samples.input(i))?,
                    );
                }
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let correct = samples
            .labels
            .as_ref()
            .map(|labels| (0..count).filter(|&i| argmax(&outputs[i * width..(i + 1) * width]) == labels[i]).count());
        let accuracy = correct.map(|c| c as f64 / count.max(1) as f64);
        let saved = self.input.save(outputs, width)?;
        if self.json {
            let v = serde_json::json!({
                "model": plan.model.name, "dataset": chosen.source, "split": chosen.split,
                "count": count, "correct": correct, "accuracy": accuracy, "seconds": seconds,
                "images_per_second": count as f64 / seconds.max(1e-9),
                "impl": format!("{:?}", self.implementation).to_lowercase(),
                "outputs": saved,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            let what = match (accuracy, correct) {
                (Some(a), Some(c)) => {
                    format!(
                        "{:.2} % on {count} samples of {} ({}), {c} correct",
                        a * 100.0,
                        chosen.source,
                        chosen.split
                    )
                }
                _ => format!("{count} samples of {} ({}), no labels so no accuracy", chosen.source, chosen.split),
            };
            println!(
                "{}: {what}, integer inference, {:.2} s ({:.0} samples/s)",
                plan.model.name,
                seconds,
                count as f64 / seconds.max(1e-9)
            );
            if let Some(p) = saved {
                println!("outputs (int8 [{count}, {width}]) saved to {p}");
            }
        }
        Ok(())
    }
}
