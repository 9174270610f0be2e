//! The firmware's size on every board, from each board's release ELF
//! section headers (`object`, no external tools): flash is what the probe
//! writes (vector table, RP2040 boot2, text, rodata, and the initial image
//! of data), static RAM is what the linker reserves (data, bss, uninit; the
//! stack gets the rest of the board's `memory.ram`). Printed as a table by
//! `cargo xtask test` after the firmware builds, and by `cargo xtask size`.

use anyhow::Context as _;
use object::{Object as _, ObjectSection as _};
use std::path::Path;

/// Sections that live in flash.
const FLASH: [&str; 5] = [".vector_table", ".boot2", ".text", ".rodata", ".data"];
/// Sections that take RAM.
const RAM: [&str; 3] = [".data", ".bss", ".uninit"];

/// The sizes of one ELF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Bytes written to flash.
    pub flash: u64,
    /// Bytes of static RAM.
    pub ram: u64,
}

/// Read the sizes of the ELF at `elf`.
pub fn of(elf: &Path) -> anyhow::Result<Size> {
    let data = std::fs::read(elf).with_context(|| format!("cannot read {}", elf.display()))?;
    let file = object::File::parse(&*data).with_context(|| format!("{} is not an object file", elf.display()))?;
    let sum = |names: &[&str]| -> u64 {
        file.sections().filter(|s| s.name().is_ok_and(|n| names.contains(&n))).map(|s| s.size()).sum()
    };
    Ok(Size { flash: sum(&FLASH), ram: sum(&RAM) })
}

/// One board's row: name, target, ELF, and its flash and RAM lengths.
pub struct Row {
    /// Board name.
    pub board: String,
    /// Rust target.
    pub target: String,
    /// The release ELF.
    pub elf: std::path::PathBuf,
    /// The board's `memory.flash.length`.
    pub flash_len: u32,
    /// The board's `memory.ram.length`.
    pub ram_len: u32,
    /// Core clock, Hz.
    pub clock_hz: u32,
    /// Emulated (QEMU) or hardware.
    pub emulated: bool,
}

/// Print the table of `rows`; fails if an ELF is missing or overflows its
/// board's memory (the linker would have refused, so that is a bug here).
pub fn print_table(rows: &[Row]) -> anyhow::Result<()> {
    println!("\nfirmware size per board (release ELF; flash = vectors+boot2+text+rodata+data, RAM = data+bss):");
    println!(
        "{:<14} {:<22} {:>7} {:>9} {:>6} {:>9} {:>6}  kind",
        "board", "target", "MHz", "flash B", "flash", "RAM B", "RAM"
    );
    for r in rows {
        let s = of(&r.elf)?;
        let pct = |a: u64, b: u32| 100.0 * a as f64 / b.max(1) as f64;
        anyhow::ensure!(
            s.flash <= r.flash_len as u64 && s.ram <= r.ram_len as u64,
            "{}: {} flash / {} RAM bytes exceed the board's {} / {}",
            r.board,
            s.flash,
            s.ram,
            r.flash_len,
            r.ram_len
        );
        println!(
            "{:<14} {:<22} {:>7} {:>9} {:>5.1}% {:>9} {:>5.1}%  {}",
            r.board,
            r.target,
            r.clock_hz / 1_000_000,
            s.flash,
            pct(s.flash, r.flash_len),
            s.ram,
            pct(s.ram, r.ram_len),
            if r.emulated { "QEMU (run in tests)" } else { "hardware (compiled only)" }
        );
    }
    Ok(())
}
