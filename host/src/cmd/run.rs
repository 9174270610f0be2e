//! `releq run MODEL --board B --dataset D --count N`: run test images on the
//! device and compare every output with the host's integer inference.

use super::device_args::DeviceArgs;
use anyhow::Context as _;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use releq_common::validate::Plan;
use releq_host::data::{self, Dataset, Split};
use releq_host::device::Device as _;
use releq_host::eval::{argmax, check_input, quantize_image};
use serde::Serialize;
use std::path::PathBuf;

/// Run test images on the device and compare with the host bit for bit.
///
/// Run N test images on the device, compare each output bit for bit with the
/// host's reference inference (there must be no mismatch), and report the
/// device's accuracy and mean latency.
#[derive(Debug, Parser)]
pub struct Run {
    /// The .releq model.
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Data set whose test split is used.
    #[arg(long, value_enum, default_value = "mnist")]
    pub dataset: Dataset,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// How many test images (from the first).
    #[arg(long, default_value_t = 100)]
    pub count: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One image whose device output differs from the host's.
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
    count: usize,
    mismatches: usize,
    accuracy: f64,
    host_accuracy: f64,
    unit: String,
    mean_total_count: f64,
    first_mismatches: Vec<Mismatch>,
    wall_seconds: f64,
}

impl Run {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let plan = Plan::from_bytes(&bytes)
            .with_context(|| format!("{} is not a valid .releq model", self.model.display()))?;
        let dir = self.data_dir.clone().unwrap_or_else(data::default_data_dir);
        let images = data::load(&dir, self.dataset, Split::Test)?;
        check_input(&plan, &images, &self.dataset.to_string())?;
        let count = self.count.min(images.len());

        let board = self.device.board()?;
        let started = std::time::Instant::now();
        let mut dev = self.device.start(&board, Some(&self.model))?;
        let info = dev.info()?;
        let bar = if self.json { ProgressBar::hidden() } else { ProgressBar::new(count as u64) };
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} images, {msg} [{elapsed} < {eta}]")
                .expect("valid template"),
        );
        let mut arena = vec![0i8; plan.arena_bytes];
        let (mut mismatches, mut correct, mut host_correct, mut total_count) = (0usize, 0usize, 0usize, 0f64);
        let mut first = Vec::new();
        for i in 0..count {
            let input = quantize_image(images.image(i), &plan.input().quant);
            let host = plan.run_with::<releq_common::kernels::Reference>(&mut arena, &input)?.to_vec();
            let out = dev.run(&input).with_context(|| format!("running test image {i} on the device"))?;
            let label = images.labels[i] as usize;
            correct += usize::from(argmax(&out.output) == label);
            host_correct += usize::from(argmax(&host) == label);
            total_count += out.counts.iter().map(|&c| c as f64).sum::<f64>();
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
        let report = RunReport {
            model: plan.model.name.into(),
            board: board.name.clone(),
            dataset: self.dataset.to_string(),
            count,
            mismatches,
            accuracy: correct as f64 / count.max(1) as f64,
            host_accuracy: host_correct as f64 / count.max(1) as f64,
            unit: info.counter.name().into(),
            mean_total_count: total_count / count.max(1) as f64,
            first_mismatches: first,
            wall_seconds: started.elapsed().as_secs_f64(),
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "{} on {}: {} {} test images, {} mismatches with the host reference",
                report.model, report.board, report.count, report.dataset, report.mismatches
            );
            println!(
                "device accuracy {:.2} % (host {:.2} %), mean {:.0} {} per inference, {:.1} s wall",
                report.accuracy * 100.0,
                report.host_accuracy * 100.0,
                report.mean_total_count,
                report.unit,
                report.wall_seconds
            );
            for m in &report.first_mismatches {
                println!("  image {}: host {:?} device {:?}", m.image, m.host, m.device);
            }
        }
        if mismatches > 0 {
            anyhow::bail!("{mismatches} of {count} outputs differ between the device and the host reference");
        }
        Ok(())
    }
}
