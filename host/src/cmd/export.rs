//! `releq export MODEL.releq --format tflite|c --out FILE`: the model as a
//! `.tflite` file for TFLite Micro, or as a C header for the releq runtime.

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use releq_host::tflexport::{export_tflite_bytes, LayerReport};
use serde::Serialize;
use std::path::PathBuf;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A .tflite flatbuffer that TFLite Micro runs with the same int8 outputs
    /// (int4 weights where the layer has at most 4 bits and TFLite Micro has
    /// an int4 kernel).
    Tflite,
    /// A C header with the .releq blob, its size and the exact arena, for
    /// the releq runtime (capi/, releq.h).
    C,
}

/// Export a .releq model as a .tflite file or a C header.
///
/// `--format tflite` writes every layer as the TFLite operator whose TFLite
/// Micro kernel computes the same codes: weights of 4 bits or fewer as INT4
/// (CONV_2D, DEPTHWISE_CONV_2D, per-tensor FULLY_CONNECTED), others as INT8;
/// activations below 8 bits as int8 tensors clamped to their b-bit range by
/// MAXIMUM / MINIMUM ops (exact, no widening). A summary says per layer what
/// was written. `--format c` writes the blob as a C header (sizes, exact
/// arena, quantization, CRC).
#[derive(Debug, Parser)]
pub struct Export {
    /// The .releq model.
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Output file (.tflite, or .h).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Symbol prefix of the C header (default: the model's file stem).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct TfliteReport<'a> {
    source: String,
    out: String,
    format: &'static str,
    file_bytes: usize,
    weight_bytes: usize,
    operators: usize,
    layers: &'a [LayerReport],
}

impl Export {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(d) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
        }
        match self.format {
            Format::Tflite => self.tflite(),
            Format::C => self.c(),
        }
    }

    fn tflite(&self) -> anyhow::Result<()> {
        let blob = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let ex = export_tflite_bytes(&blob).with_context(|| format!("cannot export {}", self.model.display()))?;
        std::fs::write(&self.out, &ex.bytes).with_context(|| format!("cannot write {}", self.out.display()))?;
        if self.json {
            let r = TfliteReport {
                source: self.model.display().to_string(),
                out: self.out.display().to_string(),
                format: "tflite",
                file_bytes: ex.bytes.len(),
                weight_bytes: ex.weight_bytes,
                operators: ex.operators,
                layers: &ex.layers,
            };
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        println!(
            "wrote {} ({} bytes, {} bytes of weights, {} operators for {} layers)",
            self.out.display(),
            ex.bytes.len(),
            ex.weight_bytes,
            ex.operators,
            ex.layers.len()
        );
        for l in &ex.layers {
            let w = match (l.weight_bits, l.weight_type) {
                (Some(b), Some(t)) => format!("w{b} as {t}"),
                (Some(b), None) => format!("w{b}"),
                _ => "-".into(),
            };
            let clamp = l.clamp.map_or(String::new(), |[lo, hi]| format!(" clamp [{lo}, {hi}]"));
            println!(
                "  layer {:>2} {:<9} -> {:<40} {:<11} a{}{}  {}",
                l.index,
                l.kind,
                l.ops.join(" + "),
                w,
                l.act_bits,
                clamp,
                l.note.trim_end_matches("; ")
            );
        }
        Ok(())
    }

    fn c(&self) -> anyhow::Result<()> {
        let c = releq_host::cexport::write_c_header(&self.model, &self.out, self.prefix.as_deref())?;
        if self.json {
            let r = serde_json::json!({
                "source": self.model.display().to_string(),
                "out": self.out.display().to_string(),
                "format": "c",
                "name": c.name,
                "blob_bytes": c.blob_bytes,
                "arena_bytes": c.arena_bytes,
                "input_len": c.input_len,
                "output_len": c.output_len,
                "layers": c.layers,
                "crc": format!("{:#010x}", c.crc),
            });
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        println!(
            "wrote {} (model {:?}: blob {} bytes, arena {} bytes, input {} codes, output {} codes, {} layers, CRC {:#010x})",
            self.out.display(),
            c.name,
            c.blob_bytes,
            c.arena_bytes,
            c.input_len,
            c.output_len,
            c.layers,
            c.crc
        );
        Ok(())
    }
}
