//! A real board through a debug probe (probe-rs 0.32): list probes, choose
//! one, attach by the board's chip, flash the firmware ELF, write the model
//! blob into RAM at the board's blob address, reset and run, then exchange
//! frames over RTT.
//!
//! The parts and their seams, so that all but the USB end is tested here:
//!
//! - [`Probes`] lists and opens probes: [`UsbProbes`] is probe-rs's
//!   [`Lister`]; tests give a fake list whose probes open as probe-rs's
//!   `FakeProbe` ([`choose`] is pure and holds the selection rules).
//! - [`attach`] checks the chip against probe-rs's built-in targets, opens
//!   the chosen probe, attaches, and reads the chip's identity back
//!   ([`check_identity`]: the CPUID part number, and the STM32 DEV_ID,
//!   nRF FICR part or RP2040 CHIP_ID) so a wrong board is named as such; [`flash`] downloads the ELF with a
//!   progress bar; [`start_firmware`] resets, clears a stale RTT control
//!   block, writes the blob and runs.
//! - [`ProbeTarget`] is the session as an [`RttTarget`]: the same
//!   [`RttLink`] ring code and [`FrameLink`] framing as the RTT link under
//!   QEMU, which its tests and `qemu-m4-rtt` exercise end to end.
//!
//! Compiled and tested against fakes only: no probe was attached when this
//! was written (docs/boards.md).

use super::framed::Requester;
use super::link::{FrameLink, Peer, TransportError};
use super::rtt::Memory;
use super::rtt_link::{RttLink, RttTarget};
use super::{build_firmware, Device, DeviceInfoOwned, LinkError, Reply};
use crate::boards::{Board, LinkKind};
use probe_rs::flashing::{
    self, DownloadOptions, ElfLoader, ElfOptions, FlashProgress, ProgressEvent, ProgressOperation,
};
use probe_rs::probe::list::{Accessibility, Lister};
use probe_rs::probe::{DebugProbeError, DebugProbeSelector, Probe, ProbeCreationError};
use probe_rs::{MemoryInterface, Permissions, Session};
use releq_common::protocol::Request;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where probe-rs publishes its udev rules.
pub const UDEV_RULES_URL: &str = "https://probe.rs/files/69-probe-rs.rules";

/// Why the probe could not be used. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// No probe on USB.
    #[error(
        "no debug probe found: connect the board's on-board probe (ST-LINK, J-Link OB, CMSIS-DAP v2) over USB; \
         on Linux a probe without access rights may not be listed either, see `releq boards --probes`"
    )]
    NoProbe,
    /// Several probes and no `--probe`.
    #[error("{count} debug probes found and none chosen: pass --probe VID:PID[:SERIAL], one of:\n{list}")]
    Ambiguous {
        /// How many.
        count: usize,
        /// One line per probe, with its selector.
        list: String,
    },
    /// `--probe` matched nothing.
    #[error("no debug probe matches --probe {selector}; found:\n{list}")]
    NoMatch {
        /// What was asked.
        selector: String,
        /// What there is (or "none").
        list: String,
    },
    /// `--probe` is not `VID:PID[:SERIAL]`.
    #[error("--probe {given}: {reason} (expected VID:PID[:SERIAL] in hex, e.g. 0483:374b:066DFF...)")]
    BadSelector {
        /// What was given.
        given: String,
        /// probe-rs's reason.
        reason: String,
    },
    /// The probe is there but this user may not open it.
    #[error(
        "permission denied opening the probe {probe}. On Linux install probe-rs's udev rules ({UDEV_RULES_URL}) or at least:\n\
         {rule}\n\
         into /etc/udev/rules.d/69-probe-rs.rules, then run `sudo udevadm control --reload && sudo udevadm trigger`, \
         add yourself to the plugdev group and plug the probe in again"
    )]
    PermissionDenied {
        /// The probe.
        probe: String,
        /// A udev rule for it.
        rule: String,
    },
    /// The board file's chip is not one of probe-rs's targets.
    #[error(
        "board {board}: probe-rs knows no chip `{chip}` ({reason}); fix `chip` in [hardware] of its board file \
         (names as in `probe-rs chip list`)"
    )]
    UnknownChip {
        /// The board.
        board: String,
        /// The chip name.
        chip: String,
        /// probe-rs's reason.
        reason: String,
    },
    /// The board file has no `[hardware]` table.
    #[error("board {0} has no [hardware] table (chip name): it cannot be reached through a probe")]
    NoHardware(String),
    /// The probe found no target, or it stopped answering.
    #[error(
        "the probe {probe} got no answer from the target ({reason}): check that the board is powered, the USB cable, \
         and the SWD wiring or jumpers (on a Nucleo both CN2 jumpers on); a target in low-power sleep may need \
         the reset button held while attaching"
    )]
    NotAnswering {
        /// The probe.
        probe: String,
        /// probe-rs's reason.
        reason: String,
    },
    /// Attaching failed for another reason; the chip may be the wrong one.
    #[error(
        "attaching the probe {probe} to a {chip} failed: {reason}. Is the board the one named by --board \
         (its chip is set in the board file)?"
    )]
    Attach {
        /// The probe.
        probe: String,
        /// The chip asked for.
        chip: String,
        /// probe-rs's reason.
        reason: String,
    },
    /// The attached chip's identity registers do not match the board's chip.
    #[error(
        "board {board} has a {chip}, but the attached chip's {register} ({address:#010x}) reads {found:#x} \
         where a {chip} has {expected:#x}: is the board the one named by --board (its chip is set in the board file)?"
    )]
    WrongChip {
        /// The board.
        board: String,
        /// The chip its board file names.
        chip: String,
        /// The register read (and the field compared).
        register: &'static str,
        /// Its address.
        address: u64,
        /// The field as read.
        found: u32,
        /// The field the board's chip has.
        expected: u32,
    },
    /// Opening the probe failed.
    #[error("opening the probe {probe} failed: {reason}")]
    Open {
        /// The probe.
        probe: String,
        /// probe-rs's reason.
        reason: String,
    },
    /// Flashing failed.
    #[error("flashing {elf} failed: {reason}")]
    Flash {
        /// The ELF.
        elf: PathBuf,
        /// probe-rs's reason.
        reason: String,
    },
    /// A core or memory operation failed after attaching.
    #[error("{what} failed: {reason}")]
    Core {
        /// What the host was doing.
        what: String,
        /// probe-rs's reason.
        reason: String,
    },
}

/// An error and its sources, `: `-joined (probe-rs's top-level messages
/// alone are often generic).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let t = s.to_string();
        if !out.contains(&t) {
            out += ": ";
            out += &t;
        }
        next = s.source();
    }
    out
}

/// A probe found on USB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundProbe {
    /// Its name (e.g. `STLink V2-1`).
    pub name: String,
    /// USB vendor id.
    pub vendor_id: u16,
    /// USB product id.
    pub product_id: u16,
    /// USB serial number.
    pub serial: Option<String>,
    /// Can this user open it (Linux: the USB device node's permissions).
    pub accessible: bool,
}

impl FoundProbe {
    /// What to pass to `--probe` to choose it.
    pub fn selector(&self) -> String {
        match &self.serial {
            Some(s) => format!("{:04x}:{:04x}:{s}", self.vendor_id, self.product_id),
            None => format!("{:04x}:{:04x}", self.vendor_id, self.product_id),
        }
    }

    /// A udev rule giving the plugdev group (and the logged-in user) access.
    pub fn udev_rule(&self) -> String {
        format!(
            "ATTRS{{idVendor}}==\"{:04x}\", ATTRS{{idProduct}}==\"{:04x}\", MODE=\"660\", GROUP=\"plugdev\", TAG+=\"uaccess\"",
            self.vendor_id, self.product_id
        )
    }

    fn line(&self) -> String {
        format!("  {:<40} {}{}", self.selector(), self.name, if self.accessible { "" } else { " (no permission)" })
    }
}

fn lines(found: &[FoundProbe]) -> String {
    if found.is_empty() {
        return "  none".into();
    }
    found.iter().map(FoundProbe::line).collect::<Vec<_>>().join("\n")
}

/// Lists and opens probes.
pub trait Probes {
    /// The probes there are.
    fn list(&self) -> Vec<FoundProbe>;
    /// Open one of them.
    fn open(&self, probe: &FoundProbe) -> Result<Probe, DebugProbeError>;
}

/// The probes on USB, through probe-rs's [`Lister`].
#[derive(Debug, Default)]
pub struct UsbProbes(Lister);

impl UsbProbes {
    /// probe-rs's default lister (every built-in driver).
    pub fn new() -> Self {
        Self(Lister::new())
    }
}

impl Probes for UsbProbes {
    fn list(&self) -> Vec<FoundProbe> {
        self.0
            .list_all_with_access()
            .into_iter()
            .map(|item| FoundProbe {
                name: item.info.identifier.clone(),
                vendor_id: item.info.vendor_id,
                product_id: item.info.product_id,
                serial: item.info.serial_number.clone(),
                accessible: !matches!(item.accessibility, Accessibility::PermissionDenied),
            })
            .collect()
    }

    fn open(&self, probe: &FoundProbe) -> Result<Probe, DebugProbeError> {
        self.0.open(DebugProbeSelector {
            vendor_id: probe.vendor_id,
            product_id: probe.product_id,
            interface: None,
            serial_number: probe.serial.clone(),
        })
    }
}

/// Choose a probe from `found`: the one `selector` (`VID:PID[:SERIAL]`)
/// names, or the only one there is. A probe this user cannot open is an
/// error carrying its udev rule.
pub fn choose(found: &[FoundProbe], selector: Option<&str>) -> Result<FoundProbe, ProbeError> {
    let matching: Vec<&FoundProbe> = match selector {
        Some(given) => {
            let sel: DebugProbeSelector =
                given.parse().map_err(|e: <DebugProbeSelector as std::str::FromStr>::Err| ProbeError::BadSelector {
                    given: given.into(),
                    reason: chain(&e),
                })?;
            let m: Vec<&FoundProbe> = found
                .iter()
                .filter(|p| {
                    p.vendor_id == sel.vendor_id
                        && p.product_id == sel.product_id
                        && sel.serial_number.as_ref().is_none_or(|s| p.serial.as_ref() == Some(s))
                })
                .collect();
            if m.is_empty() {
                return Err(ProbeError::NoMatch { selector: given.into(), list: lines(found) });
            }
            m
        }
        None => found.iter().collect(),
    };
    let chosen = match matching.as_slice() {
        [] => return Err(ProbeError::NoProbe),
        [one] => *one,
        many => {
            let many: Vec<FoundProbe> = many.iter().map(|p| (*p).clone()).collect();
            return Err(ProbeError::Ambiguous { count: many.len(), list: lines(&many) });
        }
    };
    if !chosen.accessible {
        return Err(ProbeError::PermissionDenied { probe: chosen.selector(), rule: chosen.udev_rule() });
    }
    Ok(chosen.clone())
}

/// The board's probe-rs chip name, checked against probe-rs's built-in
/// targets; returns the target (its memory map is used by the size checks).
pub fn chip_target(board: &Board) -> Result<probe_rs::Target, ProbeError> {
    let hw = board.hardware.as_ref().ok_or_else(|| ProbeError::NoHardware(board.name.clone()))?;
    probe_rs::config::Registry::from_builtin_families()
        .get_target_by_name(&hw.chip)
        .map_err(|e| ProbeError::UnknownChip { board: board.name.clone(), chip: hw.chip.clone(), reason: chain(&e) })
}

/// The chip's RAM and flash (NVM) ranges, from its probe-rs target.
pub fn chip_memory(target: &probe_rs::Target) -> (Vec<std::ops::Range<u64>>, Vec<std::ops::Range<u64>>) {
    let (mut ram, mut nvm) = (Vec::new(), Vec::new());
    for region in &target.memory_map {
        match region {
            probe_rs::config::MemoryRegion::Ram(r) => ram.push(r.range.clone()),
            probe_rs::config::MemoryRegion::Nvm(r) => nvm.push(r.range.clone()),
            _ => {}
        }
    }
    (ram, nvm)
}

fn is_permission(e: &DebugProbeError) -> bool {
    let io = match e {
        DebugProbeError::Usb(io) => Some(io),
        DebugProbeError::ProbeCouldNotBeCreated(ProbeCreationError::Usb(io)) => Some(io),
        _ => None,
    };
    io.is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
}

fn attach_error(probe: &FoundProbe, chip: &str, e: probe_rs::Error) -> ProbeError {
    use probe_rs::Error as E;
    match &e {
        E::Probe(DebugProbeError::TargetNotFound) | E::Probe(DebugProbeError::Timeout) | E::Timeout => {
            ProbeError::NotAnswering { probe: probe.selector(), reason: chain(&e) }
        }
        E::Probe(p) if is_permission(p) => {
            ProbeError::PermissionDenied { probe: probe.selector(), rule: probe.udev_rule() }
        }
        _ => ProbeError::Attach { probe: probe.selector(), chip: chip.into(), reason: chain(&e) },
    }
}

/// One identity register of a chip: `(word at address) & mask == expected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRegister {
    /// Register and field, for messages (`CPUID PARTNO`).
    pub register: &'static str,
    /// Address (read as one 32-bit word through the core's access port).
    pub address: u64,
    /// The field's bits.
    pub mask: u32,
    /// The field's value on the board's chip, already shifted into `mask`.
    pub expected: u32,
}

/// Cortex-M CPUID (0xE000_ED00, the ARMv6-M/v7-M architecture manuals):
/// the core's PARTNO in bits 15:4 (0xC60 Cortex-M0+, 0xC24 M4, 0xC27 M7).
const CPUID: u64 = 0xE000_ED00;

/// The chip-specific identity registers, by probe-rs chip-name prefix:
/// STM32 DBGMCU_IDCODE DEV_ID (RM0390 for the F446, RM0433 for the H74x/H75x,
/// where the core reads it at 0x5C00_1000, RM0432 for the L4R/L4S), the
/// nRF52840's FICR INFO.PART (its product specification) and the RP2040's
/// SYSINFO CHIP_ID (its data sheet: PART 2, MANUFACTURER 0x927).
const CHIP_IDS: [(&str, IdRegister); 5] = [
    ("STM32F446", IdRegister { register: "DBGMCU_IDCODE DEV_ID", address: 0xE004_2000, mask: 0xFFF, expected: 0x421 }),
    ("STM32H7", IdRegister { register: "DBGMCU_IDCODE DEV_ID", address: 0x5C00_1000, mask: 0xFFF, expected: 0x450 }),
    ("STM32L4R", IdRegister { register: "DBGMCU_IDCODE DEV_ID", address: 0xE004_2000, mask: 0xFFF, expected: 0x470 }),
    ("nRF52840", IdRegister { register: "FICR INFO.PART", address: 0x1000_0100, mask: 0xFFFF_FFFF, expected: 0x52840 }),
    (
        "RP2040",
        IdRegister {
            register: "SYSINFO CHIP_ID PART and MANUFACTURER",
            address: 0x4000_0000,
            mask: 0x0FFF_FFFF,
            expected: 0x0000_2927,
        },
    ),
];

/// The registers that identify `board`'s chip: the core's CPUID part number
/// (from `core` in the board file), then the chip's own ID when
/// [`CHIP_IDS`] knows its family (the H7 entry holds for the H74x/H75x
/// only, as `nucleo-h743zi`).
pub fn identity_registers(board: &Board) -> Vec<IdRegister> {
    let mut regs = Vec::new();
    let partno = match board.core.as_str() {
        "cortex-m0" => Some(0xC20),
        "cortex-m0plus" => Some(0xC60),
        "cortex-m3" => Some(0xC23),
        "cortex-m4" => Some(0xC24),
        "cortex-m7" => Some(0xC27),
        _ => None,
    };
    if let Some(p) = partno {
        regs.push(IdRegister { register: "CPUID PARTNO", address: CPUID, mask: 0xFFF0, expected: p << 4 });
    }
    if let Some(hw) = &board.hardware {
        let chip = hw.chip.to_ascii_uppercase();
        regs.extend(
            CHIP_IDS.iter().filter(|(prefix, _)| chip.starts_with(&prefix.to_ascii_uppercase())).map(|(_, r)| *r),
        );
    }
    regs
}

/// What reading a chip's identity found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Registers read that match the board's chip.
    pub matched: Vec<&'static str>,
    /// Registers that could not tell: the read failed, or it gave 0 or all
    /// ones (nothing answered at that address, as on a locked or sleeping
    /// chip, or a fake probe).
    pub unknown: Vec<&'static str>,
}

/// Read `board`'s identity registers with `read` (one 32-bit word) and
/// compare them with its chip. A register that reads a different value is
/// [`ProbeError::WrongChip`]; one that cannot be read only leaves the chip
/// unverified ([`Identity::unknown`]): a bad guess here must never stop a
/// correct board.
pub fn check_identity(board: &Board, read: &mut dyn FnMut(u64) -> Result<u32, String>) -> Result<Identity, ProbeError> {
    let mut id = Identity::default();
    let chip = board.hardware.as_ref().map_or_else(|| board.core.clone(), |h| h.chip.clone());
    for r in identity_registers(board) {
        match read(r.address) {
            Ok(v) if v != 0 && v != u32::MAX => {
                if v & r.mask != r.expected {
                    let shift = r.mask.trailing_zeros();
                    return Err(ProbeError::WrongChip {
                        board: board.name.clone(),
                        chip,
                        register: r.register,
                        address: r.address,
                        found: (v & r.mask) >> shift,
                        expected: r.expected >> shift,
                    });
                }
                id.matched.push(r.register);
            }
            _ => id.unknown.push(r.register),
        }
    }
    Ok(id)
}

/// [`check_identity`] through a session's core 0.
pub fn session_identity(session: &mut Session, board: &Board) -> Result<Identity, ProbeError> {
    let mut core = session.core(0).map_err(core_err("opening core 0"))?;
    check_identity(board, &mut |addr| core.read_word_32(addr).map_err(|e| chain(&e)))
}

/// Choose a probe (see [`choose`]), open it, attach to the board's chip and
/// check the chip's identity registers ([`check_identity`]).
pub fn attach(probes: &dyn Probes, board: &Board, selector: Option<&str>) -> Result<Session, ProbeError> {
    let target = chip_target(board)?;
    let chosen = choose(&probes.list(), selector)?;
    let probe = probes.open(&chosen).map_err(|e| {
        if is_permission(&e) {
            ProbeError::PermissionDenied { probe: chosen.selector(), rule: chosen.udev_rule() }
        } else {
            ProbeError::Open { probe: chosen.selector(), reason: chain(&e) }
        }
    })?;
    let mut session =
        probe.attach(target.name.as_str(), Permissions::new()).map_err(|e| attach_error(&chosen, &target.name, e))?;
    session_identity(&mut session, board)?;
    Ok(session)
}

/// Flash `elf` (verified), with a progress bar on stderr when `progress`.
/// `dry_run` goes through probe-rs's whole flash layout without writing.
pub fn flash(session: &mut Session, elf: &Path, progress: bool, dry_run: bool) -> Result<(), ProbeError> {
    let bars = indicatif::MultiProgress::with_draw_target(if progress {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    });
    let style = indicatif::ProgressStyle::with_template("{msg:>8} {bar:40} {bytes}/{total_bytes} {bytes_per_sec}")
        .expect("valid template");
    let mut slots: [Option<indicatif::ProgressBar>; 4] = Default::default();
    let slot = |op: ProgressOperation| match op {
        ProgressOperation::Fill => 0,
        ProgressOperation::Erase => 1,
        ProgressOperation::Program => 2,
        _ => 3,
    };
    let mut options = DownloadOptions::default();
    options.verify = true;
    options.dry_run = dry_run;
    options.progress = FlashProgress::new(|event| match event {
        ProgressEvent::AddProgressBar { operation, total } => {
            let bar = bars.add(indicatif::ProgressBar::new(total.unwrap_or(0)));
            bar.set_style(style.clone());
            bar.set_message(format!("{operation:?}").to_lowercase());
            slots[slot(operation)] = Some(bar);
        }
        ProgressEvent::Progress { operation, size, .. } => {
            if let Some(b) = &slots[slot(operation)] {
                b.inc(size);
            }
        }
        ProgressEvent::Finished(operation) | ProgressEvent::Failed(operation) => {
            if let Some(b) = &slots[slot(operation)] {
                b.finish();
            }
        }
        _ => {}
    });
    flashing::download_file_with_options(session, elf, ElfLoader(ElfOptions::default()), options)
        .map_err(|e| ProbeError::Flash { elf: elf.to_path_buf(), reason: chain(&e) })
}

fn core_err(what: &str) -> impl Fn(probe_rs::Error) -> ProbeError + '_ {
    move |e| ProbeError::Core { what: what.into(), reason: chain(&e) }
}

/// Reset and halt core 0, clear the RTT control block's id at `rtt_block`
/// (so a block left by an earlier run is not taken for this one's), write
/// `blob` at `blob_address`, and run. The blob is written after flashing:
/// the flash algorithm uses RAM.
pub fn start_firmware(session: &mut Session, rtt_block: u32, blob: Option<(&[u8], u32)>) -> Result<(), ProbeError> {
    let mut core = session.core(0).map_err(core_err("opening core 0"))?;
    core.reset_and_halt(Duration::from_millis(500)).map_err(core_err("reset and halt"))?;
    core.write_8(rtt_block as u64, &[0u8; 16]).map_err(core_err("clearing the RTT control block"))?;
    if let Some((bytes, address)) = blob {
        core.write_8(address as u64, bytes).map_err(core_err("writing the model blob"))?;
    }
    core.run().map_err(core_err("starting the core"))
}

/// A probe-rs session as RTT's memory. Cortex-M debug ports reach memory
/// while the core runs, so halt and resume do nothing.
pub struct ProbeTarget(pub Session);

impl Memory for ProbeTarget {
    fn read(&mut self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
        let mut buf = vec![0u8; len];
        let mut core = self.0.core(0).map_err(|e| probe_link_error("opening core 0", e))?;
        core.read_8(addr as u64, &mut buf)
            .map_err(|e| probe_link_error(&format!("reading {len} bytes at {addr:#010x}"), e))?;
        Ok(buf)
    }

    fn write(&mut self, addr: u32, data: &[u8]) -> Result<(), LinkError> {
        let mut core = self.0.core(0).map_err(|e| probe_link_error("opening core 0", e))?;
        core.write_8(addr as u64, data)
            .map_err(|e| probe_link_error(&format!("writing {} bytes at {addr:#010x}", data.len()), e))
    }
}

impl RttTarget for ProbeTarget {
    fn halt(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
    fn resume(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}

fn probe_link_error(what: &str, e: probe_rs::Error) -> LinkError {
    LinkError::Probe(ProbeError::Core { what: format!("the probe ({what})"), reason: chain(&e) })
}

/// The probe has no process to watch: a lost probe shows as a failed memory
/// access, which is reported as it is.
struct ProbePeer;

impl Peer for ProbePeer {
    fn is_running(&mut self) -> bool {
        true
    }
    fn exited(&mut self, when: String) -> LinkError {
        LinkError::Probe(ProbeError::Core { what: format!("the probe connection {when}"), reason: "closed".into() })
    }
}

/// How to start a board through a probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// `VID:PID[:SERIAL]` of the probe; needed when several are attached.
    pub probe: Option<String>,
    /// Use this firmware ELF instead of building one.
    pub firmware: Option<PathBuf>,
    /// Deadline of each request (and of the firmware setting up RTT).
    pub timeout: Duration,
    /// Print the flash progress and the decoded firmware log.
    pub verbose: bool,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self { probe: None, firmware: None, timeout: Duration::from_secs(60), verbose: false }
    }
}

/// The firmware on a board, flashed and running, ready for requests.
pub struct ProbeDevice {
    link: FrameLink<RttLink<ProbeTarget>>,
    timeout: Duration,
    info: DeviceInfoOwned,
    elf: PathBuf,
}

impl ProbeDevice {
    /// Build (if needed) the firmware for `board`, flash it through a probe
    /// from `probes`, write the model blob file `blob` (or none), run it and
    /// handshake over RTT.
    pub fn start(
        probes: &dyn Probes,
        board: &Board,
        blob: Option<&Path>,
        opts: &ProbeOptions,
    ) -> Result<ProbeDevice, LinkError> {
        if board.link != LinkKind::Rtt {
            return Err(LinkError::Board {
                board: board.name.clone(),
                reason: "its link is not \"rtt\": a probe reaches the firmware only over RTT".into(),
            });
        }
        let blob_bytes = match blob {
            Some(p) => {
                let b = std::fs::read(p).map_err(|e| LinkError::io(format!("cannot read {}", p.display()), e))?;
                if b.len() > board.blob.max_bytes as usize {
                    return Err(LinkError::Board {
                        board: board.name.clone(),
                        reason: format!(
                            "the model blob is {} bytes, the board takes at most {}",
                            b.len(),
                            board.blob.max_bytes
                        ),
                    });
                }
                Some(b)
            }
            None => None,
        };
        // The probe first: a missing or ambiguous probe is said before a build.
        let mut session = attach(probes, board, opts.probe.as_deref())?;
        let elf = match &opts.firmware {
            Some(p) => p.clone(),
            None => build_firmware(board, &[])?,
        };
        let elf_bytes = std::fs::read(&elf).map_err(|e| LinkError::io(format!("cannot read {}", elf.display()), e))?;
        let block = super::rtt::find_control_block(&elf, &elf_bytes)?;
        flash(&mut session, &elf, true, false)?;
        start_firmware(&mut session, block, blob_bytes.as_deref().map(|b| (b, board.blob.address)))?;
        let log: Box<dyn std::io::Write + Send> = if opts.verbose {
            let (tx, rx) =
                std::os::unix::net::UnixStream::pair().map_err(|e| LinkError::io("cannot create a socket pair", e))?;
            let lines = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::new()));
            let _ = super::qemu::read_stdout(rx, elf_bytes, lines, true);
            Box::new(tx)
        } else {
            Box::new(std::io::sink())
        };
        let transport = match RttLink::attach(ProbeTarget(session), block, log, opts.timeout) {
            Ok(t) => t,
            Err(TransportError::Link(e)) => return Err(e),
            Err(TransportError::Closed) => return Err(ProbePeer.exited("while waiting for RTT".into())),
        };
        let mut dev = ProbeDevice {
            link: FrameLink::new(transport),
            timeout: opts.timeout,
            info: DeviceInfoOwned {
                protocol: 0,
                firmware: String::new(),
                board: String::new(),
                core: String::new(),
                clock_hz: 0,
                counter: releq_common::protocol::CounterUnit::Cycles,
                arena_bytes: 0,
                max_frame: 0,
                model: releq_common::protocol::ModelStatus::Absent,
            },
            elf,
        };
        let started = Instant::now();
        dev.info = dev.info()?;
        if opts.verbose {
            eprintln!("handshake over RTT in {:.3} s", started.elapsed().as_secs_f64());
        }
        Ok(dev)
    }

    /// The answer to the handshake.
    pub fn handshake(&self) -> &DeviceInfoOwned {
        &self.info
    }

    /// The firmware ELF that was flashed.
    pub fn elf(&self) -> &Path {
        &self.elf
    }
}

impl Requester for ProbeDevice {
    fn request(&mut self, request: &Request<'_>) -> Result<Reply, LinkError> {
        self.link.request(request, self.timeout, &mut ProbePeer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_rs::integration::FakeProbe;

    fn found(vid: u16, pid: u16, serial: Option<&str>, accessible: bool) -> FoundProbe {
        FoundProbe {
            name: format!("probe {vid:04x}:{pid:04x}"),
            vendor_id: vid,
            product_id: pid,
            serial: serial.map(Into::into),
            accessible,
        }
    }

    /// A fake USB bus: its probes open as probe-rs's `FakeProbe` with a
    /// mocked Cortex-M core.
    struct FakeBus(Vec<FoundProbe>);

    impl Probes for FakeBus {
        fn list(&self) -> Vec<FoundProbe> {
            self.0.clone()
        }
        fn open(&self, _: &FoundProbe) -> Result<Probe, DebugProbeError> {
            Ok(FakeProbe::with_mocked_core().into_probe())
        }
    }

    fn board(name: &str) -> Board {
        crate::boards::load(name).unwrap()
    }

    #[test]
    fn no_probe_is_an_error_saying_to_connect_one() {
        let e = choose(&[], None).unwrap_err().to_string();
        assert!(e.contains("no debug probe found") && e.contains("USB"), "{e}");
        let e = attach(&FakeBus(vec![]), &board("nucleo-f446re"), None).err().unwrap().to_string();
        assert!(e.contains("no debug probe found"), "{e}");
    }

    #[test]
    fn several_probes_need_a_selector_and_the_message_lists_them() {
        let bus = [found(0x0483, 0x374b, Some("AAA"), true), found(0x1366, 0x0105, Some("BBB"), true)];
        let e = choose(&bus, None).unwrap_err().to_string();
        assert!(e.contains("2 debug probes") && e.contains("--probe"), "{e}");
        assert!(e.contains("0483:374b:AAA") && e.contains("1366:0105:BBB"), "{e}");
        assert_eq!(choose(&bus, Some("1366:0105")).unwrap().serial.as_deref(), Some("BBB"));
        assert_eq!(choose(&bus, Some("0483:374b:AAA")).unwrap().vendor_id, 0x0483);
        // Same VID:PID twice: the serial decides.
        let twins = [found(0x0483, 0x374b, Some("AAA"), true), found(0x0483, 0x374b, Some("CCC"), true)];
        assert!(matches!(choose(&twins, Some("0483:374b")), Err(ProbeError::Ambiguous { count: 2, .. })));
        assert_eq!(choose(&twins, Some("0483:374b:CCC")).unwrap().serial.as_deref(), Some("CCC"));
        let e = choose(&bus, Some("0483:3748")).unwrap_err().to_string();
        assert!(e.contains("no debug probe matches --probe 0483:3748") && e.contains("1366:0105:BBB"), "{e}");
        let e = choose(&bus, Some("stlink")).unwrap_err().to_string();
        assert!(e.contains("--probe stlink") && e.contains("VID:PID"), "{e}");
    }

    #[test]
    fn a_probe_without_permission_gets_the_udev_rule() {
        let e = choose(&[found(0x0483, 0x374b, None, false)], None).unwrap_err().to_string();
        assert!(e.contains("permission denied") && e.contains("0483:374b"), "{e}");
        assert!(e.contains(r#"ATTRS{idVendor}=="0483", ATTRS{idProduct}=="374b""#), "{e}");
        assert!(e.contains("69-probe-rs.rules") && e.contains("udevadm"), "{e}");
    }

    #[test]
    fn an_unknown_chip_is_named_before_any_probe_is_opened() {
        let mut b = board("nucleo-f446re");
        b.hardware.as_mut().unwrap().chip = "STM32F999XX".into();
        let e = attach(&FakeBus(vec![found(1, 2, None, true)]), &b, None).err().unwrap().to_string();
        assert!(e.contains("STM32F999XX") && e.contains("nucleo-f446re") && e.contains("[hardware]"), "{e}");
        let e = attach(&FakeBus(vec![]), &board("qemu-m4"), None).err().unwrap().to_string();
        assert!(e.contains("no [hardware] table"), "{e}");
    }

    #[test]
    fn every_real_board_names_a_chip_probe_rs_knows_with_its_memory() {
        for b in crate::boards::list().unwrap().into_iter().filter(|b| !b.emulated) {
            let t = chip_target(&b).unwrap_or_else(|e| panic!("{e}"));
            assert!(!t.memory_map.is_empty(), "{}", b.name);
        }
    }

    #[test]
    fn attaches_to_a_fake_probe_by_the_boards_chip() {
        let bus = FakeBus(vec![found(0x0483, 0x374b, Some("X"), true)]);
        let mut session = attach(&bus, &board("nucleo-f446re"), None).unwrap();
        assert_eq!(session.target().name, "STM32F446RETx");
        // FakeProbe's memory reads 0: the identity is read but cannot tell.
        let id = session_identity(&mut session, &board("nucleo-f446re")).unwrap();
        assert!(id.matched.is_empty() && id.unknown.len() == 2, "{id:?}");
    }

    /// A fake chip: `regs` answer, everything else reads 0.
    fn chip(regs: &[(u64, u32)]) -> impl FnMut(u64) -> Result<u32, String> + '_ {
        move |a| Ok(regs.iter().find(|r| r.0 == a).map_or(0, |r| r.1))
    }

    #[test]
    fn the_right_chip_matches_every_identity_register() {
        // Values as the chips report them (revision bits set, masked off).
        let cases: [(&str, &[(u64, u32)]); 5] = [
            ("nucleo-f446re", &[(CPUID, 0x410F_C241), (0xE004_2000, 0x1000_6421)]),
            ("nucleo-h743zi", &[(CPUID, 0x411F_C271), (0x5C00_1000, 0x2003_6450)]),
            ("nucleo-l4r5zi", &[(CPUID, 0x410F_C241), (0xE004_2000, 0x1001_6470)]),
            ("nrf52840-dk", &[(CPUID, 0x410F_C241), (0x1000_0100, 0x0005_2840)]),
            ("rpi-pico", &[(CPUID, 0x410C_C601), (0x4000_0000, 0x2000_2927)]),
        ];
        for (name, regs) in cases {
            let id = check_identity(&board(name), &mut chip(regs)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(id.matched.len(), 2, "{name}: {id:?}");
            assert!(id.unknown.is_empty(), "{name}: {id:?}");
        }
        // Every real board has its core checked and a chip-specific register.
        for b in crate::boards::list().unwrap().into_iter().filter(|b| !b.emulated) {
            assert_eq!(identity_registers(&b).len(), 2, "{}", b.name);
        }
    }

    #[test]
    fn a_wrong_chip_is_named_with_what_was_read() {
        // An STM32F407 (DEV_ID 0x413) on the F446 board's probe.
        let e = check_identity(&board("nucleo-f446re"), &mut chip(&[(CPUID, 0x410F_C241), (0xE004_2000, 0x1000_7413)]))
            .unwrap_err();
        assert!(matches!(e, ProbeError::WrongChip { found: 0x413, expected: 0x421, .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.contains("nucleo-f446re") && m.contains("STM32F446RETx") && m.contains("DEV_ID"), "{m}");
        assert!(m.contains("0xe0042000") && m.contains("0x413") && m.contains("0x421") && m.contains("--board"), "{m}");
        // A Cortex-M0+ (an RP2040) where a Cortex-M7 is expected: the core says so first.
        let e = check_identity(&board("nucleo-h743zi"), &mut chip(&[(CPUID, 0x410C_C601)])).unwrap_err();
        assert!(matches!(e, ProbeError::WrongChip { found: 0xc60, expected: 0xc27, .. }), "{e:?}");
        assert!(e.to_string().contains("CPUID PARTNO"), "{e}");
    }

    #[test]
    fn unreadable_identity_registers_leave_the_chip_unverified() {
        let b = board("nucleo-f446re");
        let id = check_identity(&b, &mut |_| Err("AP transaction failed".to_string())).unwrap();
        assert_eq!(id.unknown.len(), 2);
        let id = check_identity(&b, &mut chip(&[(CPUID, 0x410F_C241), (0xE004_2000, u32::MAX)])).unwrap();
        assert_eq!((id.matched.len(), id.unknown.len()), (1, 1), "{id:?}");
    }
}
