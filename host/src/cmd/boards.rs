//! `releq boards`: list the boards releq knows.

use clap::Parser;

/// List the boards releq knows.
///
/// List the boards described in `boards/` (name, core, target, counter,
/// whether emulated).
#[derive(Debug, Parser)]
pub struct Boards {
    /// Print JSON (every field of every board).
    #[arg(long)]
    pub json: bool,
}

impl Boards {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let boards = releq_host::boards::list()?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&boards)?);
            return Ok(());
        }
        println!(
            "{:<14} {:<13} {:<22} {:>8} {:<14} {:<9} description",
            "name", "core", "target", "MHz", "counter", "kind"
        );
        for b in boards {
            println!(
                "{:<14} {:<13} {:<22} {:>8} {:<14} {:<9} {}",
                b.name,
                b.core,
                b.target,
                b.clock_hz / 1_000_000,
                serde_json::to_value(b.counter)?.as_str().unwrap_or("?"),
                if b.emulated { "QEMU" } else { "hardware" },
                b.description
            );
        }
        Ok(())
    }
}
