//! `releq import MODEL.tflite --out MODEL.releq`: convert an int8 `.tflite`
//! model as it is, bit-exact with TFLite Micro.

use anyhow::Context as _;
use clap::Parser;
use releq_host::import::{import_tflite, Summary};
use serde::Serialize;
use std::path::PathBuf;

/// Convert an int8 .tflite model to .releq, bit-exact with TFLite Micro.
///
/// The weights and quantisation are taken as the file has them (no
/// re-quantisation): the .releq model's int8 outputs equal TFLite Micro's bit
/// for bit. A QUANTIZE at the input and a SOFTMAX / DEQUANTIZE at the output
/// are not converted and are reported: the .releq model reads the int8 codes
/// QUANTIZE writes and outputs the int8 codes before them. The input's shape
/// (NHWC, batch 1) and quantisation are printed; unsupported or malformed
/// files get an error naming the operator or tensor.
#[derive(Debug, Parser)]
pub struct Import {
    /// The .tflite file (full-integer int8).
    pub model: PathBuf,
    /// Output .releq file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Model name stored in the file (default: the input's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The JSON summary.
#[derive(Serialize)]
struct Report<'a> {
    source: String,
    out: String,
    flash_bytes: usize,
    arena_bytes: usize,
    #[serde(flatten)]
    summary: &'a Summary,
}

impl Import {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| self.model.file_stem().map_or("imported".into(), |s| s.to_string_lossy().into_owned()));
        let imported =
            import_tflite(&bytes, &name).with_context(|| format!("cannot import {}", self.model.display()))?;
        let blob = imported.model.encode()?;
        let arena_bytes = imported.model.plan()?.arena_bytes;
        if let Some(d) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        std::fs::write(&self.out, &blob).with_context(|| format!("cannot write {}", self.out.display()))?;
        let s = &imported.summary;
        if self.json {
            let r = Report {
                source: self.model.display().to_string(),
                out: self.out.display().to_string(),
                flash_bytes: blob.len(),
                arena_bytes,
                summary: s,
            };
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        println!(
            "wrote {} ({} layers, {} bytes flash, {} bytes arena)",
            self.out.display(),
            s.layers,
            blob.len(),
            arena_bytes
        );
        for (what, b) in [("input ", &s.input), ("output", &s.output)] {
            println!(
                "{what} {}x{}x{} {} int8, scale {}, zero point {} (file tensor {} {:?}, file type {})",
                b.shape[0], b.shape[1], b.shape[2], b.layout, b.scale, b.zero_point, b.tensor, b.name, b.file_dtype
            );
        }
        for op in &s.ops {
            println!("  op {:>3} {:<18} {:<9} {}", op.index, op.op, op.fate, op.detail);
        }
        Ok(())
    }
}
