//! `releq flash`: put the firmware and a model on a real board.

use anyhow::Context as _;
use clap::Parser;
use releq_common::validate::Plan;
use releq_host::device::fit;
use releq_host::device::probe::{self, ProbeDevice, ProbeOptions, UsbProbes};
use releq_host::device::{build_firmware, Device as _};
use std::path::PathBuf;
use std::time::Duration;

/// Flash the board's firmware and a model, and start it.
///
/// Builds the firmware for the board (or takes --firmware), checks that the
/// firmware, the model blob and the model's arena fit the board's flash, RAM
/// and blob region (the size table), then flashes through the probe, writes
/// the model into RAM, runs it and checks the handshake over RTT. With
/// --dry-run it stops after the size table and touches no probe.
#[derive(Debug, Parser)]
pub struct Flash {
    /// The model (`.releq`).
    pub model: PathBuf,
    /// Board name from `boards/` (a real board: `releq boards` lists them).
    #[arg(long, env = "RELEQ_BOARD")]
    pub board: String,
    /// Check sizes only: build the firmware, print the size table, touch no probe.
    #[arg(long)]
    pub dry_run: bool,
    /// The probe to use, `VID:PID[:SERIAL]` (`releq boards --probes` lists them).
    #[arg(long)]
    pub probe: Option<String>,
    /// Use this firmware ELF instead of building the firmware for the board.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Seconds to wait for the firmware's handshake.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Print JSON (the size table, and the handshake when flashed).
    #[arg(long)]
    pub json: bool,
    /// Show the firmware's log (defmt).
    #[arg(short, long)]
    pub verbose: bool,
}

impl Flash {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let board = releq_host::boards::load(&self.board)?;
        if board.emulated {
            anyhow::bail!(
                "board {} is emulated: there is nothing to flash; `releq profile`/`run` start it under QEMU",
                board.name
            );
        }
        let blob = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let plan =
            Plan::from_bytes(&blob).with_context(|| format!("{} is not a valid .releq model", self.model.display()))?;
        let target = probe::chip_target(&board)?;
        let elf = match &self.firmware {
            Some(p) => p.clone(),
            None => build_firmware(&board, &[])?,
        };
        let elf_bytes = std::fs::read(&elf).with_context(|| format!("cannot read {}", elf.display()))?;
        let usage = fit::elf_usage(&board, &elf.display().to_string(), &elf_bytes)?;
        let (ram, nvm) = probe::chip_memory(&target);
        let layout = fit::layout_errors(&board, &ram, &nvm);
        let table = fit::fit(&board, &target.name, usage, blob.len() as u64, plan.arena_bytes as u64, layout);
        if self.json {
            let mut v = serde_json::to_value(&table)?;
            v["fits"] = serde_json::json!(table.ok());
            v["firmware"] = serde_json::json!(elf.display().to_string());
            v["dry_run"] = serde_json::json!(self.dry_run);
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", table.render());
        }
        if !table.ok() {
            anyhow::bail!(
                "{} does not fit board {}; nothing was flashed:\n  {}",
                self.model.display(),
                board.name,
                table.problems().join("\n  ")
            );
        }
        if self.dry_run {
            if !self.json {
                println!("dry run: everything fits; no probe was touched");
            }
            return Ok(());
        }
        let opts = ProbeOptions {
            probe: self.probe.clone(),
            firmware: Some(elf),
            timeout: Duration::from_secs(self.timeout),
            verbose: self.verbose,
        };
        let mut dev = ProbeDevice::start(&UsbProbes::new(), &board, Some(&self.model), &opts)?;
        let info = dev.info()?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&info)?);
        } else {
            println!(
                "flashed and running: {} on {} ({} at {} MHz), model {:?}",
                info.firmware,
                info.board,
                info.core,
                info.clock_hz / 1_000_000,
                info.model
            );
        }
        Ok(())
    }
}
