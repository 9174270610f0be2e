//! `releq import MODEL.tflite --out MODEL.releq`: convert an int8 `.tflite`
//! model as it is, bit-exact with TFLite Micro; `releq import MODEL.onnx
//! --dataset D --out runs/NAME`: a float ONNX graph as a checkpoint
//! directory (`last.safetensors` + `graph.json`).

use anyhow::Context as _;
use clap::Parser;
use releq_host::checkpoint;
use releq_host::data::{self, Dataset, Split};
use releq_host::import::onnx::import_onnx;
use releq_host::import::tflite_float::import_tflite_float;
use releq_host::import::{import_tflite, Summary};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Import a model: an int8 .tflite as .releq (bit-exact with TFLite Micro),
/// or a float .onnx as a checkpoint.
///
/// .tflite: the weights and quantisation are taken as the file has them (no
/// re-quantisation): the .releq model's int8 outputs equal TFLite Micro's bit
/// for bit. A QUANTIZE at the input and a SOFTMAX / DEQUANTIZE at the output
/// are not converted and are reported: the .releq model reads the int8 codes
/// QUANTIZE writes and outputs the int8 codes before them. The input's shape
/// (NHWC, batch 1) and quantisation are printed; unsupported or malformed
/// files get an error naming the operator or tensor.
///
/// .onnx: a float graph (Conv, BatchNormalization folded, Relu, Clip(0, 6),
/// MaxPool, AveragePool, GlobalAveragePool, Gemm / MatMul, Flatten, Add)
/// becomes a checkpoint directory OUT (OUT/last.safetensors and
/// OUT/graph.json) that calibrate, quantize, finetune, eval and search take.
/// Its input is NCHW float, pixel / 255. With --dataset the float test
/// accuracy is measured.
#[derive(Debug, Parser)]
pub struct Import {
    /// The .tflite file (full-integer int8) or .onnx file (float).
    pub model: PathBuf,
    /// Output .releq file (.tflite), or checkpoint directory (.onnx).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Model name stored in the file (default: the input's file stem).
    #[arg(long)]
    pub name: Option<String>,
    /// The data set an ONNX model is for (recorded in graph.json; the float
    /// test accuracy is printed).
    #[arg(long, value_enum)]
    pub dataset: Option<Dataset>,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// .onnx: the model takes `(pixel / 255 - MEAN) / STD` (e.g. 0.1307 for
    /// torchvision's MNIST Normalize); folded into the first layer (with --std).
    #[arg(long, requires = "std")]
    pub mean: Option<f32>,
    /// .onnx: the standard deviation of that normalization (e.g. 0.3081).
    #[arg(long, requires = "mean")]
    pub std: Option<f32>,
    /// .tflite: write the dequantized weights as a float checkpoint
    /// directory OUT (last.safetensors + graph.json) instead of a .releq.
    #[arg(long)]
    pub float: bool,
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

/// The JSON summary of an ONNX import.
#[derive(Serialize)]
struct OnnxReport<'a> {
    source: String,
    checkpoint: String,
    producer: &'a str,
    input: [usize; 3],
    classes: usize,
    weighted_layers: usize,
    ops: usize,
    notes: &'a [String],
    float_test_accuracy: Option<f64>,
}

impl Import {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let bytes = std::fs::read(&self.model).with_context(|| format!("cannot read {}", self.model.display()))?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| self.model.file_stem().map_or("imported".into(), |s| s.to_string_lossy().into_owned()));
        if self.model.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) {
            return self.onnx(&bytes, &name);
        }
        anyhow::ensure!(self.mean.is_none(), "--mean and --std apply to .onnx imports");
        if self.float {
            return self.tflite_float(&bytes, &name);
        }
        anyhow::ensure!(self.dataset.is_none(), "--dataset applies to .onnx and --float imports");
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

    fn onnx(&self, bytes: &[u8], name: &str) -> anyhow::Result<()> {
        let file = self.model.file_name().map_or("model.onnx".into(), |f| f.to_string_lossy().into_owned());
        let mut imported = import_onnx(bytes, name, &format!("onnx:{file}"), self.dataset)
            .with_context(|| format!("cannot import {}", self.model.display()))?;
        if let (Some(m), Some(s)) = (self.mean, self.std) {
            imported
                .fold_input_normalization(m, s)
                .with_context(|| format!("cannot import {}", self.model.display()))?;
        }
        self.write_checkpoint(&imported.graph, &imported.params, &imported.notes, &imported.producer)
    }

    fn tflite_float(&self, bytes: &[u8], name: &str) -> anyhow::Result<()> {
        let file = self.model.file_name().map_or("model.tflite".into(), |f| f.to_string_lossy().into_owned());
        let imported = import_tflite_float(bytes, name, &format!("tflite-float:{file}"), self.dataset)
            .with_context(|| format!("cannot import {}", self.model.display()))?;
        self.write_checkpoint(&imported.graph, &imported.params, &imported.notes, "tflite, dequantized")
    }

    fn write_checkpoint(
        &self,
        graph: &checkpoint::GraphFile,
        params: &[releq_host::import::onnx::Param],
        notes: &[String],
        producer: &str,
    ) -> anyhow::Result<()> {
        let spec = &graph.spec;
        if let Some(d) = self.dataset {
            anyhow::ensure!(
                spec.input == [28, 28, 1],
                "{}: the model's input is {}x{}x{} (HWC); {d} images are 28x28x1",
                self.model.display(),
                spec.input[0],
                spec.input[1],
                spec.input[2]
            );
        }
        let params = params.iter().map(|p| (p.name.as_str(), p.dims.as_slice(), p.data.as_slice()));
        let path = checkpoint::write(&self.out, graph, params)?;
        let float_test_accuracy = match self.dataset {
            Some(d) => Some(float_test_accuracy(&path, d, self.data_dir.as_deref())?),
            None => None,
        };
        if self.json {
            let r = OnnxReport {
                source: self.model.display().to_string(),
                checkpoint: path.display().to_string(),
                producer,
                input: spec.input,
                classes: spec.classes,
                weighted_layers: spec.weighted().len(),
                ops: spec.ops.len(),
                notes,
                float_test_accuracy,
            };
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(());
        }
        println!(
            "wrote {} and graph.json ({} ops, {} weighted layers, input {}x{}x{} HWC from {}, {} classes; from {})",
            path.display(),
            spec.ops.len(),
            spec.weighted().len(),
            spec.input[0],
            spec.input[1],
            spec.input[2],
            graph.input.layout,
            spec.classes,
            producer
        );
        for n in notes {
            println!("  {n}");
        }
        if let (Some(a), Some(d)) = (float_test_accuracy, self.dataset) {
            println!("float test accuracy on {d}: {:.2}%", 100.0 * a);
        }
        Ok(())
    }
}

fn float_test_accuracy(ckpt: &Path, dataset: Dataset, data_dir: Option<&Path>) -> anyhow::Result<f64> {
    let dir = data_dir.map_or_else(data::default_data_dir, Path::to_path_buf);
    let test = data::load(&dir, dataset, Split::Test)?;
    let net = checkpoint::load(ckpt, None)?.net;
    let all: Vec<usize> = (0..test.len()).collect();
    Ok(releq_host::train::accuracy(&net, &test, &all, 256, None)?)
}
