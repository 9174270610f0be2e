//! `releq run MODEL --board B [--dataset D | --data I,L | --inputs X
//! [--labels L]] --count N`: run inputs on the device and compare every
//! output with the host's integer inference bit for bit.

use super::device_args::DeviceArgs;
use super::input_args::InputArgs;
use anyhow::Context as _;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use releq_common::validate::Plan;
use releq_host::data::Dataset;
use releq_host::device::Device as _;
use releq_host::eval::argmax;
use serde::Serialize;
use std::path::PathBuf;

/// Run inputs on the device and compare with the host bit for bit.
///
/// Run N inputs (test images of a built-in data set, a user's .npy data set
/// with --data, or .npy inputs with --inputs) on the device, compare each
/// output bit for bit with the host's reference inference (there must be no
/// mismatch), and report the device's accuracy (when labels are known) and
/// mean latency; --save-outputs writes the device's int8 outputs.
#[derive(Debug, Parser)]
pub struct Run {
    /// The .releq model.
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// How many inputs (from the first).
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One input whose device output differs from the host's.
#[derive(Debug, Serialize)]
struct Mismatch {
    image: usize,
    host: Vec<i8>,
    device: Vec<i8>,
}

#[derive(Debug, Serialize)]
struct RunReport {
    model: String,
    board: String,
    dataset: String,
    split: String,
    count: usize,
    mismatches: usize,
    accuracy: Option<f64>,
    host_accuracy: Option<f64>,
    unit: String,
    mean_total_count: f64,
    first_mismatches: Vec<Mismatch>,
    outputs: Option<String>,
    wall_seconds: f64,
}

impl Run {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let plan = Plan::from_bytes(&bytes)
            .with_context(|| format!("{} is not a valid .releq model", self.model.display()))?;
        let chosen = self.input.load(&plan, &self.model, Some(Dataset::Mnist))?;
        let mut samples = chosen.samples;
        samples.truncate(self.count);
        let count = samples.len();
        let width = plan.output().shape.len();

        let link = self.device.link()?;
        let board = &link.board;
        let started = std::time::Instant::now();
        let mut dev = self.device.start(&link, Some(&self.model))?;
        let info = dev.info()?;
        let bar = if self.json { ProgressBar::hidden() } else { ProgressBar::new(count as u64) };
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} inputs, {msg} [{elapsed} < {eta}]")
                .expect("valid template"),
        );
        let mut arena = vec![0i8; plan.arena_bytes];
        let (mut mismatches, mut correct, mut host_correct, mut total_count) = (0usize, 0usize, 0usize, 0f64);
        let mut first = Vec::new();
        let mut outputs = Vec::with_capacity(count * width);
        for i in 0..count {
            let input = samples.input(i);
            let host = plan.run_with::<releq_common::kernels::Reference>(&mut arena, input)?.to_vec();
            let out = dev.run(input).with_context(|| format!("running input {i} on the device"))?;
            if let Some(label) = samples.label(i) {
                correct += usize::from(argmax(&out.output) == label);
                host_correct += usize::from(argmax(&host) == label);
            }
            total_count += out.counts.iter().map(|&c| c as f64).sum::<f64>();
            outputs.extend_from_slice(&out.output);
            if out.output != host {
                mismatches += 1;
                if first.len() < 5 {
                    first.push(Mismatch { image: i, host, device: out.output });
                }
            }
            bar.inc(1);
            bar.set_message(format!("{mismatches} mismatches"));
        }
        bar.finish_and_clear();
        let labelled = samples.labels.is_some();
        let fraction = |c: usize| labelled.then(|| c as f64 / count.max(1) as f64);
        let report = RunReport {
            model: plan.model.name.into(),
            board: board.name.clone(),
            dataset: chosen.source,
            split: chosen.split,
            count,
            mismatches,
            accuracy: fraction(correct),
            host_accuracy: fraction(host_correct),
            unit: info.counter.name().into(),
            mean_total_count: total_count / count.max(1) as f64,
            first_mismatches: first,
            outputs: self.input.save(outputs, width)?,
            wall_seconds: started.elapsed().as_secs_f64(),
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "{} on {}: {} inputs of {} ({}), {} mismatches with the host reference",
                report.model, report.board, report.count, report.dataset, report.split, report.mismatches
            );
            let acc = match (report.accuracy, report.host_accuracy) {
                (Some(d), Some(h)) => format!("device accuracy {:.2} % (host {:.2} %), ", d * 100.0, h * 100.0),
                _ => "no labels, so no accuracy; ".into(),
            };
            println!(
                "{acc}mean {:.0} {} per inference, {:.1} s wall",
                report.mean_total_count, report.unit, report.wall_seconds
            );
            for m in &report.first_mismatches {
                println!("  input {}: host {:?} device {:?}", m.image, m.host, m.device);
            }
            if let Some(p) = &report.outputs {
                println!("device outputs (int8 [{count}, {width}]) saved to {p}");
            }
        }
        if mismatches > 0 {
            anyhow::bail!("{mismatches} of {count} outputs differ between the device and the host reference");
        }
        Ok(())
    }
}
