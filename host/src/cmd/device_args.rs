//! Flags shared by every command that talks to a device.

use clap::Args;
use releq_host::boards::{self, Board};
use releq_host::device::any::AnyDevice;
use releq_host::device::QemuOptions;
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
        Ok(AnyDevice::start(board, blob, &self.qemu_options(), self.probe.as_deref())?)
    }

    /// The QEMU options (firmware, timeout, verbosity; a probe takes the same).
    pub fn qemu_options(&self) -> QemuOptions {
        QemuOptions {
            firmware: self.firmware.clone(),
            timeout: Duration::from_secs(self.timeout),
            verbose: self.verbose,
            features: Vec::new(),
        }
    }
}
