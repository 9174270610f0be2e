//! `cargo xtask bench kernels`: instructions per MAC of six anchor layers at
//! many weight / activation bit pairs, measured on a QEMU board with the
//! firmware's `TimeLayer` request (one QEMU for all of them), beside
//! CMSIS-NN's figures measured in the same emulator (quoted from
//! `../shared/notes/anchors.md`); LeNet-5 whole-model totals (random weights,
//! the `Run` request) on qemu-m4 and qemu-m7; the firmware's inference code
//! size; and its peak stack (the `Stats` request).
//!
//! Records (`--json` prints them as one list, nothing else on stdout):
//!
//! - a layer or model measurement: `board`, `layer` (`conv1`, `conv2`,
//!   `conv1_3x3`, `conv3x3`, `dense`, `dwconv`, or `lenet5` for the whole model),
//!   `wbits`, `abits` (input and output activation bits), `layout` (weight
//!   layout: `packed`, the model format's only one today), `macs`,
//!   `instructions` (the minimum over 2 repeats), `per_mac`;
//! - `"layer": "code_size"`: `board`, `bytes` (sum of the inference
//!   functions' .text), `function_count`, `functions` (name and bytes each);
//! - `"layer": "stack"`: `board`, `after` (what had run on that QEMU),
//!   `stack_peak_bytes`, `stack_size_bytes`.

use crate::codesize;
use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use releq_common::model::{Padding, Shape};
use releq_common::protocol::{LayerSpec, SpecKind};
use releq_common::validate::Plan;
use releq_host::device::{Device, DeviceStats, QemuDevice, QemuOptions};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Repeats per measurement; the minimum is kept.
const REPEAT: u16 = 2;
/// Weight layouts measured. The model format has one today.
const LAYOUTS: [&str; 1] = ["packed"];
/// Bit pairs (weights, activations) measured without `--all-pairs`.
const DEFAULT_PAIRS: [(u8, u8); 11] =
    [(8, 8), (4, 8), (2, 8), (4, 4), (3, 3), (2, 2), (5, 5), (6, 6), (7, 7), (8, 4), (8, 2)];
/// Bit pairs of the LeNet-5 whole-model runs.
const LENET_PAIRS: [(u8, u8); 3] = [(8, 8), (4, 4), (2, 2)];
/// Boards of the LeNet-5 whole-model runs.
const LENET_BOARDS: [&str; 2] = ["qemu-m4", "qemu-m7"];
/// CMSIS-NN s8, LeNet-5 whole model on qemu-m4, instructions (anchors.md).
const CMSIS_NN_LENET5_S8: u64 = 1_519_520;

/// One anchor layer.
struct Anchor {
    name: &'static str,
    what: &'static str,
    kind: SpecKind,
    input: (u16, u16, u16),
    out_c: u16,
    k: u8,
    pad: u8,
    /// CMSIS-NN s8 instructions per MAC (anchors.md).
    cmsis_s8: Option<f64>,
    /// CMSIS-NN with 4-bit weights, 8-bit activations.
    cmsis_s4: Option<f64>,
}

const ANCHORS: [Anchor; 6] = [
    Anchor {
        name: "conv1",
        what: "conv 28x28x1 -> 6, 5x5, pad 2",
        kind: SpecKind::Conv2d,
        input: (28, 28, 1),
        out_c: 6,
        k: 5,
        pad: 2,
        cmsis_s8: Some(11.0),
        cmsis_s4: Some(13.3),
    },
    Anchor {
        name: "conv1_3x3",
        what: "conv 28x28x1 -> 8, 3x3, pad 1 (the usual first conv)",
        kind: SpecKind::Conv2d,
        input: (28, 28, 1),
        out_c: 8,
        k: 3,
        pad: 1,
        cmsis_s8: None,
        cmsis_s4: None,
    },
    Anchor {
        name: "conv2",
        what: "conv 14x14x6 -> 16, 5x5",
        kind: SpecKind::Conv2d,
        input: (14, 14, 6),
        out_c: 16,
        k: 5,
        pad: 0,
        cmsis_s8: Some(2.65),
        cmsis_s4: Some(4.38),
    },
    Anchor {
        name: "conv3x3",
        what: "conv 16x16x32 -> 32, 3x3, pad 1",
        kind: SpecKind::Conv2d,
        input: (16, 16, 32),
        out_c: 32,
        k: 3,
        pad: 1,
        cmsis_s8: Some(1.93),
        cmsis_s4: Some(3.68),
    },
    Anchor {
        name: "dense",
        what: "dense 400 -> 120",
        kind: SpecKind::Dense,
        input: (1, 1, 400),
        out_c: 120,
        k: 1,
        pad: 0,
        cmsis_s8: Some(2.00),
        cmsis_s4: Some(5.00),
    },
    Anchor {
        name: "dwconv",
        what: "depthwise 3x3 on 16x16x32, pad 1",
        kind: SpecKind::DepthwiseConv2d,
        input: (16, 16, 32),
        out_c: 32,
        k: 3,
        pad: 1,
        cmsis_s8: None,
        cmsis_s4: None,
    },
];

impl Anchor {
    fn spec(&self, wbits: u8, abits: u8) -> LayerSpec {
        let (h, w, c) = self.input;
        LayerSpec {
            kind: self.kind,
            input: Shape::new(h, w, c),
            out_c: self.out_c,
            kh: self.k,
            kw: self.k,
            stride_h: 1,
            stride_w: 1,
            pad: Padding::same(self.pad),
            wbits,
            in_bits: abits,
            out_bits: abits,
        }
    }

    /// `out_h * out_w * out_c * kh * kw * in_c` (depthwise: one input channel
    /// per output channel; dense: `in * out`).
    fn macs(&self) -> u64 {
        let (h, w, c) = (self.input.0 as u64, self.input.1 as u64, self.input.2 as u64);
        let k = self.k as u64;
        let out = |len: u64| len + 2 * self.pad as u64 - k + 1;
        match self.kind {
            SpecKind::Conv2d => out(h) * out(w) * self.out_c as u64 * k * k * c,
            SpecKind::DepthwiseConv2d => out(h) * out(w) * c * k * k,
            SpecKind::Dense => h * w * c * self.out_c as u64,
            _ => 0,
        }
    }
}

/// The flags of `cargo xtask bench kernels`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Board for the anchor layers (LeNet-5 runs on qemu-m4 and qemu-m7).
    #[arg(long, default_value = "qemu-m4")]
    pub board: String,
    /// Print one JSON list of all records and nothing else on stdout.
    #[arg(long)]
    pub json: bool,
    /// Every weight / activation bit pair 2..=8 x 2..=8 instead of the default 11.
    #[arg(long)]
    pub all_pairs: bool,
    /// List the functions counted as inference code, with their sizes.
    #[arg(long, short)]
    pub verbose: bool,
}

/// A measured layer or model.
#[derive(Debug, Clone, Serialize)]
struct Measured {
    board: String,
    layer: String,
    wbits: u8,
    abits: u8,
    layout: String,
    macs: u64,
    instructions: u64,
    per_mac: f64,
}

#[derive(Debug, Clone, Serialize)]
struct CodeSizeRecord {
    board: String,
    layer: &'static str,
    bytes: u64,
    function_count: usize,
    functions: Vec<codesize::Function>,
}

#[derive(Debug, Clone, Serialize)]
struct StackRecord {
    board: String,
    layer: &'static str,
    after: String,
    stack_peak_bytes: u32,
    stack_size_bytes: u32,
}

fn opts() -> QemuOptions {
    QemuOptions { timeout: Duration::from_secs(300), ..QemuOptions::default() }
}

fn pairs(all: bool) -> Vec<(u8, u8)> {
    if all {
        (2..=8).rev().flat_map(|w| (2..=8).rev().map(move |a| (w, a))).collect()
    } else {
        DEFAULT_PAIRS.to_vec()
    }
}

fn stack_record(board: &str, after: String, s: DeviceStats) -> StackRecord {
    StackRecord {
        board: board.into(),
        layer: "stack",
        after,
        stack_peak_bytes: s.stack_peak_bytes,
        stack_size_bytes: s.stack_size_bytes,
    }
}

/// Write LeNet-5 with random weights at `wbits` / `abits` with `releq synth`.
fn synth_lenet5(releq: &Path, out: &Path, wbits: u8, abits: u8) -> anyhow::Result<()> {
    let output = Command::new(releq)
        .args(["synth", "--arch", "lenet5", "--seed", "1"])
        .args(["--wbits", &wbits.to_string(), "--abits", &abits.to_string(), "--out"])
        .arg(out)
        .output()
        .context("cannot run releq synth")?;
    if !output.status.success() {
        bail!("releq synth failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// Run the whole bench.
pub fn bench(root: &Path, args: &Args) -> anyhow::Result<()> {
    crate::run(root, "cargo", &["build", "--release", "-q", "-p", "releq-host"], &[])?;
    let releq = root.join("target/release/releq");
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let pairs = pairs(args.all_pairs);
    let anchor_board = releq_host::boards::load(&args.board)?;
    // Build both boards' firmware before the bar starts (cargo's output).
    let mut elf = None;
    for b in std::iter::once(args.board.as_str()).chain(LENET_BOARDS) {
        let p = releq_host::device::build_firmware(&releq_host::boards::load(b)?, &[])?;
        if b == args.board {
            elf = Some(p);
        }
    }
    let elf = elf.context("no firmware for the anchor board")?;
    let mut models = Vec::new();
    for (w, a) in LENET_PAIRS {
        let path = dir.join(format!("lenet5-w{w}a{a}.releq"));
        synth_lenet5(&releq, &path, w, a)?;
        models.push((w, a, path));
    }

    let total = (ANCHORS.len() * pairs.len() * LAYOUTS.len() + LENET_BOARDS.len() * LENET_PAIRS.len()) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>24} {bar:30} {pos}/{len} [{elapsed} < {eta}]").expect("valid template"),
    );
    let mut measured = Vec::new();
    let mut stacks = Vec::new();

    let mut dev = QemuDevice::start(&anchor_board, None, &opts())?;
    for a in &ANCHORS {
        for &(w, ab) in &pairs {
            for layout in LAYOUTS {
                bar.set_message(format!("{} w{w}a{ab} {}", a.name, args.board));
                let t = dev.time_layer(&a.spec(w, ab), REPEAT).with_context(|| format!("{} w{w}a{ab}", a.name))?;
                let macs = a.macs();
                measured.push(Measured {
                    board: args.board.clone(),
                    layer: a.name.into(),
                    wbits: w,
                    abits: ab,
                    layout: layout.into(),
                    macs,
                    instructions: t.min as u64,
                    per_mac: t.min as f64 / macs as f64,
                });
                bar.inc(1);
            }
        }
    }
    let n = ANCHORS.len() * pairs.len();
    stacks.push(stack_record(&args.board, format!("{n} anchor layer timings"), dev.stats()?));
    drop(dev);

    for board_name in LENET_BOARDS {
        let board = releq_host::boards::load(board_name)?;
        for (w, a, path) in &models {
            bar.set_message(format!("lenet5 w{w}a{a} {board_name}"));
            let bytes = std::fs::read(path)?;
            let plan = Plan::from_bytes(&bytes).with_context(|| format!("{} is not a valid model", path.display()))?;
            let input = vec![plan.input().quant.zero_point as i8; plan.input().shape.len()];
            let mut dev = QemuDevice::start(&board, Some(path), &opts())?;
            let report = releq_host::profile::profile(&plan, &mut dev, &input, REPEAT as usize)?;
            measured.push(Measured {
                board: board_name.into(),
                layer: "lenet5".into(),
                wbits: *w,
                abits: *a,
                layout: LAYOUTS[0].into(),
                macs: report.total_macs,
                instructions: report.total,
                per_mac: report.per_mac,
            });
            stacks.push(stack_record(board_name, format!("lenet5 w{w}a{a}, {REPEAT} runs"), dev.stats()?));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let code = codesize::inference_code(&elf)?;
    let code_record = CodeSizeRecord {
        board: args.board.clone(),
        layer: "code_size",
        bytes: code.bytes,
        function_count: code.functions.len(),
        functions: code.functions.clone(),
    };

    if args.json {
        let mut all: Vec<serde_json::Value> = Vec::new();
        for m in &measured {
            all.push(serde_json::to_value(m)?);
        }
        all.push(serde_json::to_value(&code_record)?);
        for s in &stacks {
            all.push(serde_json::to_value(s)?);
        }
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    print!("{}", render(&args.board, &measured, &code_record, &stacks, args.verbose));
    Ok(())
}

fn fmt_u64(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render(board: &str, measured: &[Measured], code: &CodeSizeRecord, stacks: &[StackRecord], verbose: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Anchor layers on {board}, executed instructions (QEMU -icount), min of {REPEAT} repeats;");
    let _ = writeln!(s, "w/a: weight / activation bits (input and output); CMSIS-NN column: s8 beside 8/8,");
    let _ = writeln!(s, "4-bit weights (8-bit activations) beside 4/8, measured in the same emulator (anchors.md)\n");
    let _ = writeln!(
        s,
        "| layer | MACs | w/a | layout | instructions | per MAC | vs own 8/8 | CMSIS-NN per MAC | vs CMSIS-NN |"
    );
    let _ = writeln!(s, "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for a in &ANCHORS {
        let rows: Vec<&Measured> = measured.iter().filter(|m| m.layer == a.name && m.board == board).collect();
        let base = rows.iter().find(|m| (m.wbits, m.abits) == (8, 8)).map(|m| m.instructions);
        for (i, m) in rows.iter().enumerate() {
            let cmsis = match (m.wbits, m.abits) {
                (8, 8) => a.cmsis_s8.map(|c| (c, "s8")),
                (4, 8) => a.cmsis_s4.map(|c| (c, "s4 w")),
                _ => None,
            };
            let label = if i == 0 { format!("{} ({})", a.name, a.what) } else { String::new() };
            let _ = writeln!(
                s,
                "| {label} | {} | {}/{} | {} | {} | {:.2} | {} | {} | {} |",
                if i == 0 { fmt_u64(m.macs) } else { String::new() },
                m.wbits,
                m.abits,
                m.layout,
                fmt_u64(m.instructions),
                m.per_mac,
                base.map_or("-".into(), |b| format!("{:.2}", m.instructions as f64 / b as f64)),
                cmsis.map_or(String::new(), |(c, what)| format!("{c:.2} ({what})")),
                cmsis.map_or(String::new(), |(c, _)| format!("{:.1}x", m.per_mac / c)),
            );
        }
    }
    let _ =
        writeln!(s, "\nLeNet-5 (random weights, `releq synth --seed 1`), whole model, `Run` request, min of {REPEAT}:");
    let _ = writeln!(s, "CMSIS-NN int8 column: whole model on qemu-m4 (anchors.md)\n");
    let _ = writeln!(s, "| board | w/a | MACs | instructions | per MAC | vs own 8/8 | CMSIS-NN int8 | vs CMSIS-NN |");
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for b in LENET_BOARDS {
        let rows: Vec<&Measured> = measured.iter().filter(|m| m.layer == "lenet5" && m.board == b).collect();
        let base = rows.iter().find(|m| (m.wbits, m.abits) == (8, 8)).map(|m| m.instructions);
        for m in rows {
            let int8 = (m.wbits, m.abits) == (8, 8);
            let _ = writeln!(
                s,
                "| {b} | {}/{} | {} | {} | {:.2} | {} | {} | {} |",
                m.wbits,
                m.abits,
                fmt_u64(m.macs),
                fmt_u64(m.instructions),
                m.per_mac,
                base.map_or("-".into(), |x| format!("{:.2}", m.instructions as f64 / x as f64)),
                if int8 { fmt_u64(CMSIS_NN_LENET5_S8) } else { String::new() },
                if int8 { format!("{:.2}x", m.instructions as f64 / CMSIS_NN_LENET5_S8 as f64) } else { String::new() },
            );
        }
    }
    let _ = writeln!(
        s,
        "\ninference code: {} bytes (.text of {} functions) in the {} release firmware",
        fmt_u64(code.bytes),
        code.function_count,
        code.board
    );
    if verbose {
        for f in &code.functions {
            let _ = writeln!(s, "  {:>7}  {}", f.bytes, f.name);
        }
    }
    // One line per board and phase: the anchor QEMU, then the LeNet-5 QEMUs
    // of each board (the largest of their peaks).
    let mut seen = Vec::new();
    for st in stacks {
        let phase = if st.after.starts_with("lenet5") { "after the LeNet-5 runs" } else { "after the anchor layers" };
        if seen.contains(&(st.board.clone(), phase)) {
            continue;
        }
        seen.push((st.board.clone(), phase));
        let same: Vec<&StackRecord> = stacks
            .iter()
            .filter(|o| o.board == st.board && o.after.starts_with("lenet5") == st.after.starts_with("lenet5"))
            .collect();
        let peak = same.iter().map(|o| o.stack_peak_bytes).max().unwrap_or(0);
        let _ = writeln!(
            s,
            "peak stack: {} bytes of {} ({}, {phase})",
            fmt_u64(peak as u64),
            fmt_u64(st.stack_size_bytes as u64),
            st.board
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_macs() {
        let macs: Vec<u64> = ANCHORS.iter().map(Anchor::macs).collect();
        assert_eq!(macs, [117_600, 56_448, 240_000, 2_359_296, 48_000, 73_728]);
    }

    #[test]
    fn pairs_cover_the_grid() {
        assert_eq!(pairs(false).len(), 11);
        let all = pairs(true);
        assert_eq!(all.len(), 49);
        assert_eq!(all[0], (8, 8));
        assert!(DEFAULT_PAIRS.iter().all(|p| all.contains(p)));
    }

    #[test]
    fn thousands() {
        assert_eq!(fmt_u64(0), "0");
        assert_eq!(fmt_u64(999), "999");
        assert_eq!(fmt_u64(1_519_520), "1,519,520");
    }
}
