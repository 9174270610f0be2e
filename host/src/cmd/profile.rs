//! `releq profile MODEL --board B [--board C ...]`: per-layer latency
//! measured on one device or on several at once (one thread per device), with
//! a side-by-side comparison.

use super::device_args::DeviceArgs;
use anyhow::Context as _;
use clap::Parser;
use releq_common::validate::Plan;
use releq_host::data::{self, Dataset, Split};
use releq_host::profile::ProfileReport;
use std::path::PathBuf;

/// Measure each layer's latency on the device.
///
/// Run a model on the device and print each layer's measured count (executed
/// instructions under QEMU, cycles on hardware), MACs, count per MAC and share
/// of the total. Counts are the device's own; the overhead of the measurement
/// itself is subtracted.
#[derive(Debug, Parser)]
pub struct Profile {
    /// The .releq model.
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Runs to make (the table shows the minimum; variation is reported).
    #[arg(long, default_value_t = 2)]
    pub repeat: usize,
    /// Profile on this data set's first test image instead of a blank input.
    #[arg(long, value_enum)]
    pub dataset: Option<Dataset>,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl Profile {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let plan = Plan::from_bytes(&bytes)
            .with_context(|| format!("{} is not a valid .releq model", self.model.display()))?;
        let input = match self.dataset {
            Some(ds) => {
                let dir = self.data_dir.clone().unwrap_or_else(data::default_data_dir);
                let images = data::load(&dir, ds, Split::Test)?;
                releq_host::eval::check_input(&plan, &images, &ds.to_string())?;
                releq_host::eval::quantize_image(images.image(0), &plan.input().quant)
            }
            None => vec![plan.input().quant.zero_point as i8; plan.input().shape.len()],
        };
        let links = self.device.links()?;
        let started = std::time::Instant::now();
        // One thread per device: QEMU instances (or probes) run side by side.
        let results: Vec<anyhow::Result<(ProfileReport, f64)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = links
                .iter()
                .map(|link| {
                    let (input, plan, device, model, repeat) = (&input, &plan, &self.device, &self.model, self.repeat);
                    scope.spawn(move || -> anyhow::Result<(ProfileReport, f64)> {
                        let mut dev = device.start(link, Some(model))?;
                        let report = releq_host::profile::profile(plan, &mut dev, input, repeat)
                            .with_context(|| format!("profiling on {}", link.board.name))?;
                        Ok((report, started.elapsed().as_secs_f64()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a device thread panicked"))))
                .collect()
        });
        let mut reports = Vec::new();
        for (link, r) in links.iter().zip(results) {
            reports.push(r.with_context(|| format!("board {}", link.board.name))?);
        }
        if self.json {
            let mut all = Vec::new();
            for (report, wall) in &reports {
                let mut v = serde_json::to_value(report)?;
                v["wall_seconds"] = serde_json::json!(wall);
                all.push(v);
            }
            let v = if all.len() == 1 { all.remove(0) } else { serde_json::Value::Array(all) };
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for ((report, wall), link) in reports.iter().zip(&links) {
                print!("{}", releq_host::profile::render(report));
                let start = if link.board.emulated { "QEMU start" } else { "attach, flash, blob write" };
                println!("wall time {wall:.2} s ({start}, firmware handshake and {} run(s))\n", report.repeats);
            }
            if reports.len() > 1 {
                let only: Vec<ProfileReport> = reports.iter().map(|(r, _)| r.clone()).collect();
                print!("{}", releq_host::profile::render_comparison(&only));
            }
        }
        Ok(())
    }
}
