//! Flags shared by every command that talks to a device.

use clap::Args;
use releq_host::boards::{self, Board};
use releq_host::device::any::AnyDevice;
use releq_host::device::probe::{ProbeDevice, ProbeOptions, UsbProbes};
use releq_host::device::{QemuDevice, QemuOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Which device, and how to reach it.
#[derive(Debug, Args)]
pub struct DeviceArgs {
    /// Board name from `boards/` (`releq boards` lists them).
    #[arg(long, default_value = "qemu-m4", env = "RELEQ_BOARD")]
    pub board: String,
    /// Use this firmware ELF instead of building the firmware for the board.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// The debug probe of a real board, `VID:PID[:SERIAL]` (`releq boards --probes`).
    #[arg(long)]
    pub probe: Option<String>,
    /// Seconds to wait for each answer from the device.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Show the firmware's log (defmt) and QEMU's output.
    #[arg(short, long)]
    pub verbose: bool,
}

impl DeviceArgs {
    /// Load the board description.
    pub fn board(&self) -> anyhow::Result<Board> {
        Ok(boards::load(&self.board)?)
    }

    /// Start the device with a model blob: under QEMU for an emulated board,
    /// else flashed through a debug probe.
    pub fn start(&self, board: &Board, blob: Option<&Path>) -> anyhow::Result<AnyDevice> {
        if !board.emulated {
            let opts = ProbeOptions {
                probe: self.probe.clone(),
                firmware: self.firmware.clone(),
                timeout: Duration::from_secs(self.timeout),
                verbose: self.verbose,
            };
            return Ok(AnyDevice::Probe(Box::new(ProbeDevice::start(&UsbProbes::new(), board, blob, &opts)?)));
        }
        if self.probe.is_some() {
            anyhow::bail!("--probe is for real boards; board {} runs under QEMU", board.name);
        }
        let opts = QemuOptions {
            firmware: self.firmware.clone(),
            timeout: Duration::from_secs(self.timeout),
            verbose: self.verbose,
            features: Vec::new(),
        };
        Ok(AnyDevice::Qemu(Box::new(QemuDevice::start(board, blob, &opts)?)))
    }
}
