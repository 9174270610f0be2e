//! The firmware's inference code size, read from the release ELF's symbol
//! table (`object` + `rustc-demangle`, no external tools).
//!
//! Counted: every function symbol whose demangled name lies under
//! [`INFERENCE_PATHS`] (`releq_common::kernels`, `::runtime`, `::quant`). With
//! the firmware's fat LTO the kernels and the quantization helpers are
//! inlined into `releq_common::runtime::<impl Plan>::run_layer`, which is
//! counted whole; the counter's trampolines that call it are not (a few
//! bytes each). Aliases (two symbols at one address) are counted once.

use anyhow::Context as _;
use object::{Object as _, ObjectSymbol as _, SymbolKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Module paths whose functions are inference code.
pub const INFERENCE_PATHS: [&str; 3] = ["releq_common::kernels", "releq_common::runtime", "releq_common::quant"];

/// One counted function.
#[derive(Debug, Clone, Serialize)]
pub struct Function {
    /// Demangled name, without the hash.
    pub name: String,
    /// Bytes of code.
    pub bytes: u64,
}

/// The inference code of one ELF.
#[derive(Debug, Clone, Serialize)]
pub struct CodeSize {
    /// Sum of the counted functions' sizes, bytes.
    pub bytes: u64,
    /// The counted functions, largest first.
    pub functions: Vec<Function>,
}

/// Sum the inference functions of the ELF at `elf`.
pub fn inference_code(elf: &Path) -> anyhow::Result<CodeSize> {
    let data = std::fs::read(elf).with_context(|| format!("cannot read {}", elf.display()))?;
    let file = object::File::parse(&*data).with_context(|| format!("{} is not an object file", elf.display()))?;
    // Address (Thumb bit cleared) -> (name, size): aliases once.
    let mut by_addr: BTreeMap<u64, Function> = BTreeMap::new();
    for sym in file.symbols() {
        if sym.kind() != SymbolKind::Text || sym.size() == 0 {
            continue;
        }
        let Ok(raw) = sym.name() else { continue };
        let name = format!("{:#}", rustc_demangle::demangle(raw));
        if INFERENCE_PATHS.iter().any(|p| name.contains(p)) {
            by_addr.entry(sym.address() & !1).or_insert(Function { name, bytes: sym.size() });
        }
    }
    let mut functions: Vec<Function> = by_addr.into_values().collect();
    functions.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    Ok(CodeSize { bytes: functions.iter().map(|f| f.bytes).sum(), functions })
}
