//! Board descriptions: one TOML file per board in the repository's `boards/`
//! directory, the single source of board facts for the host and for the
//! firmware build (see `boards/README.md` for every field).
//!
//! [`load`] reads one board by name, [`list`] all of them. The directory is
//! [`boards_dir`]: `boards/` next to this crate, or `$RELEQ_BOARDS_DIR`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The board used when none is named.
pub const DEFAULT_BOARD: &str = "qemu-m4";

/// How a board counts the cost of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CounterKind {
    /// CMSDK timer0 on QEMU `-icount` virtual time: counts instructions.
    IcountTimer,
    /// The DWT cycle counter (real Cortex-M3/M4/M7).
    Dwt,
    /// SysTick (real Cortex-M0/M0+).
    Systick,
}

/// How frames travel between host and device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    /// CMSDK UART0 of an MPS2 board, a unix socket on the host (QEMU).
    QemuUart,
    /// SEGGER RTT through a debug probe.
    Rtt,
}

/// A memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Start address.
    pub origin: u32,
    /// Length in bytes.
    pub length: u32,
}

/// The regions the firmware is linked into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Code and read-only data.
    pub flash: Region,
    /// Data, bss (the arena) and stack.
    pub ram: Region,
}

/// Where the model blob is placed before the firmware starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobRegion {
    /// Address of the blob's first byte.
    pub address: u32,
    /// Largest blob, bytes.
    pub max_bytes: u32,
}

/// How to start the board under QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuConfig {
    /// `-machine`.
    pub machine: String,
    /// `-cpu`.
    pub cpu: String,
    /// `-icount shift=N`: one instruction is 2^N ns of virtual time.
    pub icount_shift: u8,
}

/// A GPIO pin: `port` 0 = A (STM32) / P0 (nRF), `pin` within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// GPIO port index (0 = A or P0).
    pub port: u8,
    /// Pin number in the port.
    pub pin: u8,
}

/// Chip families whose clock set-up the firmware has (`firmware/src/clock/`).
pub const FAMILIES: [&str; 5] = ["stm32f4", "stm32h7", "stm32l4", "nrf52", "rp2040"];

/// What a real board's firmware and a probe need to know about its chip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hardware {
    /// probe-rs chip name, e.g. `STM32F446RETx`.
    pub chip: String,
    /// Chip family of the firmware's clock set-up, one of [`FAMILIES`].
    pub family: String,
    /// Flash wait states at `clock_hz`.
    pub flash_wait_states: u8,
    /// Instruction cache (or flash accelerator) on.
    pub icache: bool,
    /// Data cache on.
    pub dcache: bool,
    /// Pin raised for the length of each inference (for a logic analyser).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing_pin: Option<Pin>,
    /// RP2040 second-stage bootloader (`w25q080`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot2: Option<String>,
}

/// One board, as described by `boards/<name>.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// Name; equals the file name without `.toml`.
    pub name: String,
    /// One line for people.
    pub description: String,
    /// Core, e.g. `cortex-m4`.
    pub core: String,
    /// Rust target triple of the firmware.
    pub target: String,
    /// Core clock in Hz.
    pub clock_hz: u32,
    /// What counts layer costs.
    pub counter: CounterKind,
    /// How frames travel.
    pub link: LinkKind,
    /// True for QEMU boards.
    pub emulated: bool,
    /// Activation arena of the firmware, bytes.
    pub arena_bytes: u32,
    /// Parameter buffer for synthetic layers (`TimeLayer`), bytes.
    pub synth_bytes: u32,
    /// Memory the firmware is linked into.
    pub memory: Memory,
    /// Where the model blob goes.
    pub blob: BlobRegion,
    /// How to start it under QEMU (emulated boards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu: Option<QemuConfig>,
    /// The chip, its clock set-up and pins (real boards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<Hardware>,
}

/// Why a board could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// No file for that name.
    #[error("unknown board `{name}`; available boards (in {dir}): {}", available.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The directory searched.
        dir: PathBuf,
        /// Boards that exist.
        available: Vec<String>,
    },
    /// The boards directory or a board file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A board file is not valid TOML for a [`Board`].
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A board file parses but its facts are inconsistent.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The directory holding the board files: `$RELEQ_BOARDS_DIR` if set, else
/// the repository's `boards/`.
pub fn boards_dir() -> PathBuf {
    match std::env::var_os("RELEQ_BOARDS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => {
            let host = Path::new(env!("CARGO_MANIFEST_DIR"));
            host.parent().unwrap_or(host).join("boards")
        }
    }
}

/// Load the board `name` from [`boards_dir`].
pub fn load(name: &str) -> Result<Board, BoardError> {
    load_from(&boards_dir(), name)
}

/// Every board in [`boards_dir`], sorted by name.
pub fn list() -> Result<Vec<Board>, BoardError> {
    list_in(&boards_dir())
}

/// Names of the board files in `dir`, sorted.
pub fn names_in(dir: &Path) -> Result<Vec<String>, BoardError> {
    let rd = std::fs::read_dir(dir).map_err(|source| BoardError::Io { path: dir.to_path_buf(), source })?;
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".toml")).map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// Load the board `name` from `dir`.
pub fn load_from(dir: &Path, name: &str) -> Result<Board, BoardError> {
    let valid_name = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let path = dir.join(format!("{name}.toml"));
    if !valid_name || !path.is_file() {
        return Err(BoardError::Unknown { name: name.into(), dir: dir.to_path_buf(), available: names_in(dir)? });
    }
    let text = std::fs::read_to_string(&path).map_err(|source| BoardError::Io { path: path.clone(), source })?;
    let board = Board::from_toml(&text).map_err(|e| e.at(&path))?;
    if board.name != name {
        return Err(BoardError::Invalid {
            path,
            reason: format!("`name` is {:?}, but the file is named for {name:?}", board.name),
        });
    }
    Ok(board)
}

/// Every board in `dir`, sorted by name.
pub fn list_in(dir: &Path) -> Result<Vec<Board>, BoardError> {
    names_in(dir)?.iter().map(|n| load_from(dir, n)).collect()
}

impl BoardError {
    /// Put the file's path in a parse or validation error.
    fn at(self, path: &Path) -> Self {
        match self {
            BoardError::Parse { message, .. } => BoardError::Parse { path: path.to_path_buf(), message },
            BoardError::Invalid { reason, .. } => BoardError::Invalid { path: path.to_path_buf(), reason },
            e => e,
        }
    }
}

impl Board {
    /// Parse and check a board file's text.
    pub fn from_toml(text: &str) -> Result<Board, BoardError> {
        let board: Board =
            toml::from_str(text).map_err(|e| BoardError::Parse { path: PathBuf::new(), message: e.to_string() })?;
        board.check().map_err(|reason| BoardError::Invalid { path: PathBuf::new(), reason })?;
        Ok(board)
    }

    /// The board as TOML (the same fields as its file).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a board always serializes")
    }

    /// Consistency checks the type system does not make.
    fn check(&self) -> Result<(), String> {
        if self.blob.max_bytes < releq_common::model::HEADER_LEN as u32 {
            return Err(format!("blob.max_bytes {} cannot hold the 16-byte header", self.blob.max_bytes));
        }
        if self.clock_hz == 0 {
            return Err("clock_hz must be positive".into());
        }
        if self.arena_bytes == 0 {
            return Err("arena_bytes must be positive".into());
        }
        for (what, r) in [("memory.flash", self.memory.flash), ("memory.ram", self.memory.ram)] {
            if r.length == 0 || r.origin.checked_add(r.length - 1).is_none() {
                return Err(format!(
                    "{what} ({:#x} + {:#x}) is empty or past the 32-bit address space",
                    r.origin, r.length
                ));
            }
        }
        if self.blob.address.checked_add(self.blob.max_bytes.saturating_sub(1)).is_none() {
            return Err("blob region runs past the 32-bit address space".into());
        }
        let (blob_start, blob_end) = (self.blob.address as u64, self.blob.address as u64 + self.blob.max_bytes as u64);
        for (what, r) in [("memory.flash", self.memory.flash), ("memory.ram", self.memory.ram)] {
            let (start, end) = (r.origin as u64, r.origin as u64 + r.length as u64);
            if blob_start < end && start < blob_end {
                return Err(format!(
                    "the blob region ({blob_start:#x}..{blob_end:#x}) overlaps {what} ({start:#x}..{end:#x}): the firmware would overwrite the model"
                ));
            }
        }
        let m0 = matches!(self.core.as_str(), "cortex-m0" | "cortex-m0plus");
        if m0 != (self.target == "thumbv6m-none-eabi") {
            return Err(format!("core {} does not run target {}", self.core, self.target));
        }
        match self.counter {
            CounterKind::Dwt if m0 => {
                return Err(format!("counter dwt: a {} has no DWT cycle counter (use systick)", self.core))
            }
            CounterKind::Systick if !m0 => {
                return Err(format!("counter systick is for Cortex-M0/M0+ (a {} has the DWT: use dwt)", self.core))
            }
            CounterKind::Dwt | CounterKind::Systick if self.emulated => {
                return Err(
                    "QEMU emulates neither DWT nor SysTick cycle counts: emulated boards use icount-timer".into()
                )
            }
            _ => {}
        }
        match (&self.hardware, self.emulated) {
            (None, false) => return Err("a real board (emulated = false) needs a [hardware] table".into()),
            (Some(_), true) => return Err("an emulated board has no [hardware] table".into()),
            (Some(h), false) => {
                if !FAMILIES.contains(&h.family.as_str()) {
                    return Err(format!("hardware.family {:?} is not one of {FAMILIES:?}", h.family));
                }
                if (h.family == "rp2040") != h.boot2.is_some() {
                    return Err("hardware.boot2 is needed by, and only by, family rp2040".into());
                }
                if h.boot2.as_deref().is_some_and(|b| b != "w25q080") {
                    return Err(format!(
                        "hardware.boot2 {:?} is not one of [\"w25q080\"]",
                        h.boot2.as_deref().unwrap_or("")
                    ));
                }
                if let Some(p) = h.timing_pin {
                    if p.port > 10 || p.pin > 31 {
                        return Err(format!(
                            "hardware.timing_pin {{ port = {}, pin = {} }} is out of range",
                            p.port, p.pin
                        ));
                    }
                }
                if h.chip.is_empty() {
                    return Err("hardware.chip (the probe-rs chip name) is empty".into());
                }
                if self.link != LinkKind::Rtt {
                    return Err("a real board talks RTT: link must be \"rtt\"".into());
                }
            }
            (None, true) => {}
        }
        match (&self.qemu, self.emulated, self.counter, self.link) {
            (None, true, ..) => return Err("emulated boards need a [qemu] table".into()),
            (None, _, CounterKind::IcountTimer, _) => {
                return Err("counter icount-timer needs [qemu] icount_shift".into())
            }
            (None, _, _, LinkKind::QemuUart) => return Err("link qemu-uart needs a [qemu] table".into()),
            (Some(q), ..) if q.icount_shift > 10 => {
                return Err(format!("qemu.icount_shift {} is outside 0..=10", q.icount_shift));
            }
            _ => {}
        }
        Ok(())
    }

    /// Instructions per counter tick is `2^shift / (1e9 / clock_hz)`; a
    /// shift below this cannot resolve single instructions (the firmware's
    /// counts are exact only when an instruction lasts at least one tick).
    pub fn min_exact_icount_shift(&self) -> u8 {
        let ns_per_tick = 1e9 / self.clock_hz as f64;
        (0..=10u8).find(|s| (1u64 << s) as f64 >= ns_per_tick).unwrap_or(10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_repo_board_loads_and_is_consistent() {
        let boards = list().unwrap();
        let names: Vec<&str> = boards.iter().map(|b| b.name.as_str()).collect();
        for n in [
            "qemu-m3",
            "qemu-m4",
            "qemu-m4-rtt",
            "qemu-m7",
            "nucleo-f446re",
            "nrf52840-dk",
            "nucleo-h743zi",
            "rpi-pico",
            "nucleo-l4r5zi",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        for b in &boards {
            assert_eq!(load(&b.name).unwrap(), *b);
            if let Some(q) = &b.qemu {
                assert!(q.icount_shift >= b.min_exact_icount_shift(), "{}: shift too small for exact counts", b.name);
            }
            assert!(b.arena_bytes + b.synth_bytes < b.memory.ram.length, "{}: buffers exceed RAM", b.name);
        }
    }

    #[test]
    fn default_board_facts() {
        let b = load(DEFAULT_BOARD).unwrap();
        assert_eq!(b.core, "cortex-m4");
        assert_eq!(b.target, "thumbv7em-none-eabihf");
        assert_eq!(b.clock_hz, 25_000_000);
        assert_eq!(b.counter, CounterKind::IcountTimer);
        assert_eq!(b.link, LinkKind::QemuUart);
        assert!(b.emulated);
        assert_eq!(b.blob, BlobRegion { address: 0x2100_0000, max_bytes: 16 << 20 });
        assert_eq!(b.qemu.as_ref().unwrap().machine, "mps2-an386");
        assert_eq!(b.qemu.as_ref().unwrap().icount_shift, 6);
        let m3 = load("qemu-m3").unwrap();
        assert_eq!(m3.target, "thumbv7m-none-eabi");
        let m7 = load("qemu-m7").unwrap();
        assert_eq!(m7.blob.address, 0x6000_0000);
    }

    #[test]
    fn unknown_board_lists_the_available_ones() {
        let e = load("no-such-board").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, BoardError::Unknown { .. }));
        assert!(msg.contains("no-such-board") && msg.contains("qemu-m4") && msg.contains("qemu-m3"), "{msg}");
        // Path tricks are unknown names, not file reads.
        assert!(matches!(load("../boards/qemu-m4").unwrap_err(), BoardError::Unknown { .. }));
    }

    #[test]
    fn roundtrips_through_toml() {
        let b = load(DEFAULT_BOARD).unwrap();
        assert_eq!(Board::from_toml(&b.to_toml()).unwrap(), b);
    }

    fn m4_text() -> String {
        std::fs::read_to_string(boards_dir().join("qemu-m4.toml")).unwrap()
    }

    #[test]
    fn bad_files_are_precise_errors() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        write("typo", &m4_text().replace("name = \"qemu-m4\"", "name = \"typo\"").replace("clock_hz", "clock_hzz"));
        write("wrong-name", &m4_text());
        write("no-qemu", &m4_text().replace("name = \"qemu-m4\"", "name = \"no-qemu\"").replace("[qemu]", "[qemux]"));
        write(
            "bad-counter",
            &m4_text().replace("name = \"qemu-m4\"", "name = \"bad-counter\"").replace("icount-timer", "sundial"),
        );
        let e = load_from(dir.path(), "typo").unwrap_err().to_string();
        assert!(e.contains("typo.toml") && e.contains("clock_hzz"), "{e}");
        let e = load_from(dir.path(), "wrong-name").unwrap_err().to_string();
        assert!(e.contains("\"qemu-m4\"") && e.contains("wrong-name"), "{e}");
        assert!(load_from(dir.path(), "no-qemu").unwrap_err().to_string().contains("qemux"));
        let e = load_from(dir.path(), "bad-counter").unwrap_err().to_string();
        assert!(e.contains("sundial"), "{e}");
        let e = load_from(dir.path(), "nope").unwrap_err().to_string();
        assert!(e.contains("bad-counter, no-qemu, typo, wrong-name"), "{e}");
        assert!(list_in(dir.path()).is_err());
    }

    #[test]
    fn consistency_checks() {
        let emulated_without_qemu = m4_text().split("[qemu]").next().unwrap().to_owned();
        let e = Board::from_toml(&emulated_without_qemu).unwrap_err().to_string();
        assert!(e.contains("[qemu]"), "{e}");
        let tiny_blob = m4_text().replace("max_bytes = 0x0100_0000", "max_bytes = 8");
        assert!(Board::from_toml(&tiny_blob).unwrap_err().to_string().contains("header"));
        let wild_shift = m4_text().replace("icount_shift = 6", "icount_shift = 40");
        assert!(Board::from_toml(&wild_shift).unwrap_err().to_string().contains("icount_shift"));
    }

    #[test]
    fn real_board_facts() {
        let real: Vec<Board> = list().unwrap().into_iter().filter(|b| !b.emulated).collect();
        assert_eq!(real.len(), 5);
        for b in &real {
            let h = b.hardware.as_ref().unwrap();
            assert_eq!(b.link, LinkKind::Rtt, "{}", b.name);
            assert!(b.qemu.is_none(), "{}", b.name);
            assert!(h.timing_pin.is_some(), "{}: every board here has a free LED pin", b.name);
            // RTT rings (9 KiB) and a stack must fit beside the buffers.
            assert!(b.arena_bytes + b.synth_bytes + 9 * 1024 + 8 * 1024 <= b.memory.ram.length, "{}", b.name);
        }
        let f446 = load("nucleo-f446re").unwrap();
        let h = f446.hardware.as_ref().unwrap();
        assert_eq!((h.chip.as_str(), h.family.as_str(), h.flash_wait_states), ("STM32F446RETx", "stm32f4", 5));
        assert_eq!((f446.clock_hz, f446.counter), (180_000_000, CounterKind::Dwt));
        let pico = load("rpi-pico").unwrap();
        assert_eq!((pico.target.as_str(), pico.counter), ("thumbv6m-none-eabi", CounterKind::Systick));
        assert_eq!(pico.hardware.as_ref().unwrap().boot2.as_deref(), Some("w25q080"));
        let h7 = load("nucleo-h743zi").unwrap();
        assert_eq!((h7.core.as_str(), h7.memory.ram.origin), ("cortex-m7", 0x2000_0000), "RTT in DTCM");
        assert!(h7.hardware.as_ref().unwrap().dcache);
        assert_eq!(load("nucleo-l4r5zi").unwrap().hardware.unwrap().chip, "STM32L4R5ZITx");
        assert_eq!(load("nrf52840-dk").unwrap().clock_hz, 64_000_000);
        let rtt = load("qemu-m4-rtt").unwrap();
        assert_eq!((rtt.link, rtt.counter, rtt.emulated), (LinkKind::Rtt, CounterKind::IcountTimer, true));
    }

    fn f446_text() -> String {
        std::fs::read_to_string(boards_dir().join("nucleo-f446re.toml")).unwrap()
    }

    #[test]
    fn hardware_checks() {
        let bad = |text: String, needle: &str| {
            let e = Board::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        };
        assert!(Board::from_toml(&f446_text()).is_ok());
        bad(f446_text().split("[hardware]").next().unwrap().to_owned(), "[hardware]");
        bad(f446_text().replace("address = 0x2001_4000", "address = 0x2000_8000"), "overlaps memory.ram");
        bad(f446_text().replace("family = \"stm32f4\"", "family = \"esp32\""), "esp32");
        bad(f446_text().replace("counter = \"dwt\"", "counter = \"systick\""), "systick");
        bad(f446_text().replace("link = \"rtt\"", "link = \"qemu-uart\""), "rtt");
        bad(
            f446_text().replace("target = \"thumbv7em-none-eabihf\"", "target = \"thumbv6m-none-eabi\""),
            "does not run",
        );
        bad(f446_text().replace("flash_wait_states = 5", "flash_wait_states = 5\nboot2 = \"w25q080\""), "boot2");
        bad(f446_text().replace("pin = 5 }", "pin = 40 }"), "timing_pin");
        bad(f446_text().replace("icache = true", "icache = true\nfpu = true"), "fpu");
        bad(m4_text().replace("counter = \"icount-timer\"", "counter = \"dwt\""), "QEMU emulates neither");
    }
}
