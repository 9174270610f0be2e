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
    /// Board name from `boards/` (`releq boards` lists them). `releq profile`
    /// and `releq search` take it more than once (`--board qemu-m4 --board
    /// qemu-m7`): every board is measured, the first is the one searched for.
    #[arg(long = "board", default_value = "qemu-m4", env = "RELEQ_BOARD")]
    pub boards: Vec<String>,
    /// Use this firmware ELF instead of building the firmware for the board.
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// The debug probe of a real board, `VID:PID[:SERIAL]` (`releq boards
    /// --probes`); repeat it for several real boards, in the order of their
    /// `--board`s.
    #[arg(long = "probe")]
    pub probes: Vec<String>,
    /// Seconds to wait for each answer from the device.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    /// Show the firmware's log (defmt) and QEMU's output.
    #[arg(short, long)]
    pub verbose: bool,
}

/// One board of the command line and the probe that reaches it (None for an
/// emulated board, or a real one with the only probe attached).
#[derive(Debug, Clone)]
pub struct BoardLink {
    /// The board's description.
    pub board: Board,
    /// `VID:PID[:SERIAL]`.
    pub probe: Option<String>,
}

impl DeviceArgs {
    /// The one board of a command that measures on one device: an error if
    /// `--board` was given more than once.
    pub fn link(&self) -> anyhow::Result<BoardLink> {
        anyhow::ensure!(
            self.boards.len() == 1,
            "this command runs on one board, not {} (--board {}): give one --board",
            self.boards.len(),
            self.boards.join(" --board ")
        );
        Ok(self.links()?.remove(0))
    }

    /// Every `--board` with its probe: the `--probe`s go, in order, to the
    /// boards that are not emulated.
    pub fn links(&self) -> anyhow::Result<Vec<BoardLink>> {
        let mut seen = std::collections::HashSet::new();
        let mut probes = self.probes.iter();
        let mut links = Vec::new();
        for name in &self.boards {
            anyhow::ensure!(seen.insert(name), "--board {name} is given twice");
            let board = boards::load(name)?;
            let probe = if board.emulated { None } else { probes.next().cloned() };
            links.push(BoardLink { board, probe });
        }
        let left: Vec<_> = probes.collect();
        anyhow::ensure!(
            left.is_empty(),
            "--probe is for real boards: {} has no non-emulated --board to go to (each --probe goes to one, in order)",
            left.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
        );
        Ok(links)
    }

    /// Start the device with a model blob: under QEMU for an emulated board,
    /// else flashed through a debug probe.
    pub fn start(&self, link: &BoardLink, blob: Option<&Path>) -> anyhow::Result<AnyDevice> {
        Ok(AnyDevice::start(&link.board, blob, &self.qemu_options(), link.probe.as_deref())?)
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
