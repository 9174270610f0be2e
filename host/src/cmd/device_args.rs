//! Flags shared by every command that talks to a device.

use clap::Args;
use releq_host::boards::{self, Board};
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

    /// Start the device with a model blob.
    pub fn start(&self, board: &Board, blob: Option<&Path>) -> anyhow::Result<QemuDevice> {
        if !board.emulated {
            anyhow::bail!(
                "board {} is real hardware: its firmware builds (RELEQ_BOARD={} cargo build --release --target {} in firmware/), \
                 but this build of releq cannot flash or talk to a probe yet; use an emulated board (qemu-m4, or qemu-m4-rtt \
                 for the RTT link)",
                board.name,
                board.name,
                board.target
            );
        }
        let opts = QemuOptions {
            firmware: self.firmware.clone(),
            timeout: Duration::from_secs(self.timeout),
            verbose: self.verbose,
            features: Vec::new(),
        };
        Ok(QemuDevice::start(board, blob, &opts)?)
    }
}
