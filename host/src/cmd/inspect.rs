//! `releq inspect MODEL`: print a model's layers, bits, flash and arena.

use anyhow::Context as _;
use clap::Parser;
use std::path::PathBuf;

/// Print a .releq model's layers, bits, flash and arena sizes.
///
/// Print a .releq model: layers, shapes, weight/activation bits, flash bytes
/// per layer, peak arena and CRC status. Exits non-zero, naming the field or
/// byte, if the file is not a valid model.
#[derive(Debug, Parser)]
pub struct Inspect {
    /// The .releq file.
    pub model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl Inspect {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let report = releq_host::inspect::report(&self.model, &bytes)
            .with_context(|| format!("{} is not a valid .releq model", self.model.display()))?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", releq_host::inspect::render(&report));
        }
        Ok(())
    }
}
