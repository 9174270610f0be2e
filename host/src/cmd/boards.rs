//! `releq boards`: list the boards releq knows, and the debug probes attached.

use clap::Parser;
use releq_host::device::probe::{Probes as _, UsbProbes};

/// List the boards releq knows (and, with --probes, the debug probes).
///
/// List the boards described in `boards/` (name, core, target, counter,
/// whether emulated). With --probes, list the debug probes on USB instead,
/// with the `--probe` selector of each and whether this user may open it.
#[derive(Debug, Parser)]
pub struct Boards {
    /// Print JSON (every field of every board, or of every probe).
    #[arg(long)]
    pub json: bool,
    /// List the debug probes on USB (probe-rs) instead of the boards.
    #[arg(long)]
    pub probes: bool,
}

impl Boards {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        if self.probes {
            return self.list_probes();
        }
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

    fn list_probes(&self) -> anyhow::Result<()> {
        let found = UsbProbes::new().list();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&found)?);
            return Ok(());
        }
        if found.is_empty() {
            println!("no debug probes found on USB");
            return Ok(());
        }
        println!("{:<40} {:<10} name", "--probe", "access");
        for p in &found {
            println!("{:<40} {:<10} {}", p.selector(), if p.accessible { "ok" } else { "denied" }, p.name);
        }
        if let Some(p) = found.iter().find(|p| !p.accessible) {
            println!(
                "\nno permission for some probes: on Linux add a udev rule such as\n  {}\n(or all of {})",
                p.udev_rule(),
                releq_host::device::probe::UDEV_RULES_URL
            );
        }
        Ok(())
    }
}
