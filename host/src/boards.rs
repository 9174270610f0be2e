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
        for n in ["qemu-m3", "qemu-m4", "qemu-m7"] {
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
}
