//! The measured latency table: the device's count for every (layer shape,
//! weight bits, input bits, output bits) the search may choose, measured with
//! `TimeLayer` requests and cached on disk keyed by board, firmware build and
//! layer signature, so a second search on the same board measures nothing.
//!
//! A model's predicted latency is the sum of its layers' entries (a flatten
//! is free: it aliases its input). The final model is run on the device and
//! its measured total is reported next to this prediction.

use crate::device::{Device, LinkError};
use crate::nn::spec::{Op, Spec};
use indicatif::{ProgressBar, ProgressStyle};
use releq_common::model::{Padding, Shape};
use releq_common::protocol::{LayerSpec, SpecKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why the table could not be filled or stored.
#[derive(Debug, thiserror::Error)]
pub enum LatencyError {
    /// Talking to the device failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Reading or writing the cache failed.
    #[error("latency cache {path}: {source}")]
    Io {
        /// The cache file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The cache file is not valid JSON of the right shape.
    #[error("latency cache {path} is corrupt ({source}); delete it to re-measure")]
    Corrupt {
        /// The cache file.
        path: PathBuf,
        /// The error.
        source: serde_json::Error,
    },
}

/// Bits of every tensor for a choice of per-weighted-layer bits (the rules
/// of [`crate::nn::qplan`]).
pub fn tensor_bits(spec: &Spec, abits: &[u8]) -> Vec<u8> {
    let mut bits = vec![8u8];
    let mut j = 0;
    for op in &spec.ops {
        let b = match *op {
            Op::Conv { .. } | Op::Dense { .. } => {
                j += 1;
                abits[j - 1]
            }
            Op::MaxPool { input, .. } | Op::AvgPool { input, .. } | Op::Flatten { input } => bits[input],
            Op::Add { a, b, .. } => bits[a].max(bits[b]),
        };
        bits.push(b);
    }
    bits
}

/// The synthetic layer of every op (None for a flatten, which costs nothing).
pub fn layer_specs(spec: &Spec, wbits: &[u8], abits: &[u8]) -> Vec<Option<LayerSpec>> {
    let shapes = spec.shapes();
    let bits = tensor_bits(spec, abits);
    let shape = |t: usize| Shape::new(shapes[t][0] as u16, shapes[t][1] as u16, shapes[t][2] as u16);
    let mut j = 0;
    spec.ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let base = |kind, input: usize, out_c: usize, k: usize, s: usize, pad: usize, w: u8| LayerSpec {
                kind,
                input: shape(input),
                out_c: out_c as u16,
                kh: k as u8,
                kw: k as u8,
                stride_h: s as u8,
                stride_w: s as u8,
                pad: Padding::same(pad as u8),
                wbits: w,
                in_bits: bits[input],
                out_bits: bits[i + 1],
            };
            match *op {
                Op::Conv { input, out_c, k, stride, pad, depthwise, .. } => {
                    j += 1;
                    let kind = if depthwise { SpecKind::DepthwiseConv2d } else { SpecKind::Conv2d };
                    Some(base(kind, input, out_c, k, stride, pad, wbits[j - 1]))
                }
                Op::Dense { input, out_f, .. } => {
                    j += 1;
                    Some(base(SpecKind::Dense, input, out_f, 1, 1, 0, wbits[j - 1]))
                }
                Op::MaxPool { input, k, stride } => Some(base(SpecKind::MaxPool2d, input, 0, k, stride, 0, 8)),
                Op::AvgPool { input, k, stride } => Some(base(SpecKind::AvgPool2d, input, 0, k, stride, 0, 8)),
                Op::Add { a, .. } => Some(base(SpecKind::Add, a, 0, 1, 1, 0, 8)),
                Op::Flatten { .. } => None,
            }
        })
        .collect()
}

/// Cache key of a synthetic layer.
pub fn signature(s: &LayerSpec) -> String {
    serde_json::to_string(s).expect("LayerSpec serializes")
}

/// The table and where it lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyTable {
    /// Board name.
    pub board: String,
    /// Firmware build (its version string carries a source hash).
    pub firmware: String,
    /// Unit of the counts.
    pub unit: String,
    /// Repeats per measurement (the minimum is kept).
    pub repeat: u16,
    /// Count per layer signature.
    pub entries: BTreeMap<String, u32>,
    #[serde(skip)]
    path: PathBuf,
    #[serde(skip)]
    measured_now: usize,
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

impl LatencyTable {
    /// Open (or start) the cache for this board and firmware in `dir`.
    pub fn open(dir: &Path, board: &str, firmware: &str, unit: &str) -> Result<Self, LatencyError> {
        let path = dir.join(format!("latency-{}-{}.json", sanitize(board), sanitize(firmware)));
        if path.is_file() {
            let text =
                std::fs::read_to_string(&path).map_err(|source| LatencyError::Io { path: path.clone(), source })?;
            let mut t: LatencyTable =
                serde_json::from_str(&text).map_err(|source| LatencyError::Corrupt { path: path.clone(), source })?;
            t.path = path;
            return Ok(t);
        }
        Ok(Self {
            board: board.into(),
            firmware: firmware.into(),
            unit: unit.into(),
            repeat: 2,
            entries: BTreeMap::new(),
            path,
            measured_now: 0,
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Entries measured by this process (not taken from the cache).
    pub fn measured_now(&self) -> usize {
        self.measured_now
    }

    /// Write the cache (atomically: a temporary file, then rename).
    pub fn save(&self) -> Result<(), LatencyError> {
        let io = |source| LatencyError::Io { path: self.path.clone(), source };
        if let Some(d) = self.path.parent() {
            std::fs::create_dir_all(d).map_err(io)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self).expect("serializes")).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }

    /// The cached count of a layer, if measured.
    pub fn get(&self, s: &LayerSpec) -> Option<u32> {
        self.entries.get(&signature(s)).copied()
    }

    /// Measure every layer not yet in the table, with a progress bar, saving
    /// after each measurement so an interruption loses nothing.
    pub fn measure(&mut self, dev: &mut dyn Device, specs: &[LayerSpec], progress: bool) -> Result<(), LatencyError> {
        let mut todo: Vec<&LayerSpec> = specs.iter().filter(|s| self.get(s).is_none()).collect();
        todo.sort_by_key(|s| signature(s));
        todo.dedup_by_key(|s| signature(s));
        if todo.is_empty() {
            return Ok(());
        }
        let bar = if progress { ProgressBar::new(todo.len() as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template(
                "measuring {bar:30} {pos}/{len} layer timings on the device [{elapsed} < {eta}]",
            )
            .expect("valid template"),
        );
        for s in todo {
            let t = dev.time_layer(s, self.repeat)?;
            self.entries.insert(signature(s), t.min);
            self.measured_now += 1;
            self.save()?;
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(())
    }

    /// Predicted latency of a model (the sum of its layers), or None if some
    /// layer is not measured.
    pub fn predict(&self, specs: &[Option<LayerSpec>]) -> Option<u64> {
        specs.iter().flatten().map(|s| self.get(s).map(u64::from)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zoo::Arch;

    #[test]
    fn lenet5_layer_specs_follow_the_bits() {
        let spec = Arch::Lenet5.spec();
        let specs = layer_specs(&spec, &[2, 3, 4, 5, 6], &[8, 7, 6, 5, 4]);
        assert_eq!(specs.len(), 8);
        let conv2 = specs[2].unwrap();
        assert_eq!((conv2.kind, conv2.wbits, conv2.in_bits, conv2.out_bits), (SpecKind::Conv2d, 3, 8, 7));
        assert_eq!(conv2.input, Shape::new(12, 12, 6));
        let pool2 = specs[3].unwrap();
        assert_eq!((pool2.in_bits, pool2.out_bits), (7, 7));
        assert!(specs[4].is_none(), "flatten is free");
        let fc3 = specs[7].unwrap();
        assert_eq!((fc3.kind, fc3.out_c, fc3.in_bits, fc3.out_bits), (SpecKind::Dense, 10, 5, 4));
    }

    #[test]
    fn cache_roundtrips_and_predicts() {
        let dir = tempfile::tempdir().unwrap();
        let spec = Arch::Lenet5.spec();
        let specs = layer_specs(&spec, &[8; 5], &[8; 5]);
        let mut t = LatencyTable::open(dir.path(), "qemu-m4", "fw 1 (abc)", "instructions").unwrap();
        assert_eq!(t.predict(&specs), None);
        for (i, s) in specs.iter().flatten().enumerate() {
            t.entries.insert(signature(s), 100 * (i as u32 + 1));
        }
        t.save().unwrap();
        let back = LatencyTable::open(dir.path(), "qemu-m4", "fw 1 (abc)", "instructions").unwrap();
        assert_eq!(back.predict(&specs), Some(100 * (1 + 2 + 3 + 4 + 5 + 6 + 7)));
        // Another firmware build is another cache.
        let other = LatencyTable::open(dir.path(), "qemu-m4", "fw 2", "instructions").unwrap();
        assert!(other.entries.is_empty());
        std::fs::write(back.path(), "{").unwrap();
        assert!(matches!(
            LatencyTable::open(dir.path(), "qemu-m4", "fw 1 (abc)", "instructions"),
            Err(LatencyError::Corrupt { .. })
        ));
    }
}
