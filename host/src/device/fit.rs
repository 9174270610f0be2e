//! Does a firmware, a model and its arena fit a board? The check behind
//! `releq flash --dry-run`, made before any probe is touched.
//!
//! From the firmware ELF's allocated sections: flash is every section with
//! contents (code, read-only data, and the initial values of `.data`, which
//! are copied from flash); RAM is every section placed in the board's RAM
//! region (`.data`, `.bss`, `.uninit`; the activation arena and the stack
//! reserve are statics there) except `.stack`, the rest of RAM that
//! cortex-m-rt leaves to the stack. The model blob must fit the board's blob
//! region, and the model's arena the board's arena. The board's regions are
//! checked against the chip's memory map from probe-rs's built-in target
//! (blob region in RAM, not overlapping the firmware's RAM; flash in flash).

use crate::boards::{Board, Region};
use serde::Serialize;
use std::ops::Range;

/// One line of the size table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// What is measured.
    pub what: String,
    /// Bytes used.
    pub used: u64,
    /// Bytes available.
    pub limit: u64,
    /// Where the limit comes from.
    pub region: String,
}

impl Row {
    /// Does it fit?
    pub fn fits(&self) -> bool {
        self.used <= self.limit
    }
}

/// The size table of a firmware and a model on a board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fit {
    /// The board.
    pub board: String,
    /// The chip (probe-rs name).
    pub chip: String,
    /// The rows.
    pub rows: Vec<Row>,
    /// Problems with the board's regions against the chip's memory map.
    pub layout_errors: Vec<String>,
}

impl Fit {
    /// Does everything fit?
    pub fn ok(&self) -> bool {
        self.rows.iter().all(Row::fits) && self.layout_errors.is_empty()
    }

    /// Every problem, one sentence each naming the sizes.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.fits())
            .map(|r| {
                format!(
                    "{} is {} bytes, {} more than the {} bytes of {}",
                    r.what,
                    r.used,
                    r.used - r.limit,
                    r.limit,
                    r.region
                )
            })
            .collect();
        out.extend(self.layout_errors.iter().cloned());
        out
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let mut s = format!("board {} (chip {})\n", self.board, self.chip);
        s += &format!("{:<26} {:>9} {:>9} {:>6}  region\n", "", "bytes", "limit", "use");
        for r in &self.rows {
            s += &format!(
                "{:<26} {:>9} {:>9} {:>5.1}%  {}{}\n",
                r.what,
                r.used,
                r.limit,
                if r.limit == 0 { 100.0 } else { 100.0 * r.used as f64 / r.limit as f64 },
                r.region,
                if r.fits() { "" } else { "  DOES NOT FIT" }
            );
        }
        for e in &self.layout_errors {
            s += &format!("board layout: {e}\n");
        }
        s
    }
}

/// Why the ELF could not be measured.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ElfError {
    /// The ELF.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

fn range(r: &Region) -> Range<u64> {
    r.origin as u64..r.origin as u64 + r.length as u64
}

fn describe(name: &str, r: &Range<u64>) -> String {
    format!("{name} {:#010x}..{:#010x}", r.start, r.end)
}

/// Flash and RAM bytes of a firmware ELF on `board`.
pub fn elf_usage(board: &Board, path: &str, elf: &[u8]) -> Result<(u64, u64), ElfError> {
    use object::{Object, ObjectSection, SectionFlags, SectionKind};
    let file = object::File::parse(elf)
        .map_err(|e| ElfError { path: path.into(), reason: format!("not an ELF file: {e}") })?;
    let ram = range(&board.memory.ram);
    let (mut flash_bytes, mut ram_bytes) = (0u64, 0u64);
    for s in file.sections() {
        let alloc = match s.flags() {
            SectionFlags::Elf { sh_flags } => sh_flags & u64::from(object::elf::SHF_ALLOC) != 0,
            _ => false,
        };
        if !alloc || s.size() == 0 {
            continue;
        }
        let name = s.name().unwrap_or("");
        let in_ram = ram.contains(&s.address());
        if in_ram && name != ".stack" {
            ram_bytes += s.size();
        }
        let has_contents = !matches!(s.kind(), SectionKind::UninitializedData | SectionKind::UninitializedTls);
        if has_contents && s.file_range().is_some() {
            flash_bytes += s.size();
        }
    }
    Ok((flash_bytes, ram_bytes))
}

/// Check the board's regions against the chip's memory map (`ram` and
/// `nvm`: the chip's RAM and flash ranges).
pub fn layout_errors(board: &Board, ram: &[Range<u64>], nvm: &[Range<u64>]) -> Vec<String> {
    let inside = |r: &Range<u64>, set: &[Range<u64>]| set.iter().any(|c| c.start <= r.start && r.end <= c.end);
    let mut out = Vec::new();
    let flash = range(&board.memory.flash);
    let fw_ram = range(&board.memory.ram);
    let blob = board.blob.address as u64..board.blob.address as u64 + board.blob.max_bytes as u64;
    if !inside(&flash, nvm) {
        out.push(format!("the board's {} is not inside the chip's flash", describe("flash", &flash)));
    }
    if !inside(&fw_ram, ram) {
        out.push(format!("the board's {} is not inside one RAM region of the chip", describe("RAM", &fw_ram)));
    }
    if !inside(&blob, ram) {
        out.push(format!("the board's {} is not inside one RAM region of the chip", describe("blob region", &blob)));
    }
    if blob.start < fw_ram.end && fw_ram.start < blob.end {
        out.push(format!(
            "the board's {} overlaps the firmware's {}",
            describe("blob region", &blob),
            describe("RAM", &fw_ram)
        ));
    }
    out
}

/// The size table: firmware (`flash_bytes`, `ram_bytes` from
/// [`elf_usage`]), model blob and arena against `board`.
pub fn fit(
    board: &Board,
    chip: &str,
    (flash_bytes, ram_bytes): (u64, u64),
    blob_bytes: u64,
    model_arena: u64,
    layout_errors: Vec<String>,
) -> Fit {
    let flash = range(&board.memory.flash);
    let ram = range(&board.memory.ram);
    let blob = board.blob.address as u64..board.blob.address as u64 + board.blob.max_bytes as u64;
    let rows = vec![
        Row {
            what: "firmware flash".into(),
            used: flash_bytes,
            limit: board.memory.flash.length as u64,
            region: describe("flash", &flash),
        },
        Row {
            what: "firmware RAM (stack apart)".into(),
            used: ram_bytes,
            limit: board.memory.ram.length as u64,
            region: describe("RAM", &ram),
        },
        Row {
            what: "model blob".into(),
            used: blob_bytes,
            limit: board.blob.max_bytes as u64,
            region: describe("blob region", &blob),
        },
        Row {
            what: "model arena".into(),
            used: model_arena,
            limit: board.arena_bytes as u64,
            region: "the firmware's arena (arena_bytes)".into(),
        },
    ];
    Fit { board: board.name.clone(), chip: chip.into(), rows, layout_errors }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        crate::boards::load("nucleo-f446re").unwrap()
    }

    #[test]
    fn a_blob_too_large_is_named_with_its_sizes() {
        let f = fit(&board(), "STM32F446RETx", (30_000, 50_000), 60_000, 10_000, vec![]);
        assert!(!f.ok());
        let p = f.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("model blob is 60000 bytes") && p[0].contains("49152"), "{}", p[0]);
        assert!(p[0].contains("0x20014000"), "{}", p[0]);
        assert!(f.render().contains("DOES NOT FIT"));
        let f = fit(&board(), "STM32F446RETx", (30_000, 50_000), 40_000, 50_000, vec![]);
        assert!(f.problems()[0].contains("model arena is 50000 bytes"), "{:?}", f.problems());
        assert!(fit(&board(), "STM32F446RETx", (30_000, 50_000), 40_000, 10_000, vec![]).ok());
    }

    #[test]
    fn board_regions_are_checked_against_the_chips_map() {
        let b = board();
        let (sram, flash, short): (Range<u64>, Range<u64>, Range<u64>) =
            (0x2000_0000..0x2002_0000, 0x0800_0000..0x0808_0000, 0x2000_0000..0x2001_8000);
        let (ram, nvm) = (vec![sram], vec![flash]);
        assert!(layout_errors(&b, &ram, &nvm).is_empty());
        let e = layout_errors(&b, &[short], &nvm);
        assert!(e.len() == 1 && e[0].contains("blob region 0x20014000"), "{e:?}");
        let mut b2 = b.clone();
        b2.blob.address = 0x2001_0000;
        let e = layout_errors(&b2, &ram, &nvm);
        assert!(e.iter().any(|e| e.contains("overlaps")), "{e:?}");
    }
}
