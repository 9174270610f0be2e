//! Per-layer profiling of a model on a device: every count is measured by
//! the device's own counter (instructions under QEMU, cycles on hardware),
//! one layer at a time, the empty-interval overhead already subtracted.

use crate::device::{Device, LinkError};
use releq_common::protocol::CounterUnit;
use releq_common::validate::Plan;
use serde::Serialize;
use std::fmt::Write as _;

/// One layer's row.
#[derive(Debug, Clone, Serialize)]
pub struct LayerProfile {
    /// Index.
    pub index: usize,
    /// Kind.
    pub kind: String,
    /// MACs (0 for layers without weights).
    pub macs: u64,
    /// Weight bits.
    pub wbits: Option<u8>,
    /// Output activation bits.
    pub abits: u8,
    /// Smallest count over the repeats.
    pub count: u64,
    /// Largest count over the repeats.
    pub count_max: u64,
    /// `count / macs`.
    pub per_mac: Option<f64>,
    /// Share of the model's total count.
    pub share: f64,
}

/// A whole profile.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// Model name.
    pub model: String,
    /// Board name.
    pub board: String,
    /// Core.
    pub core: String,
    /// What counts mean: `instructions` (QEMU) or `cycles` (hardware).
    pub unit: String,
    /// Runs made.
    pub repeats: usize,
    /// Whether every run gave identical counts.
    pub identical: bool,
    /// Overhead of an empty measured interval, subtracted from every count.
    pub overhead: u32,
    /// Rows.
    pub layers: Vec<LayerProfile>,
    /// Sum of the layers' counts.
    pub total: u64,
    /// Total MACs.
    pub total_macs: u64,
    /// `total / total_macs`.
    pub per_mac: f64,
}

/// Run the model `repeats` times on `input` and tabulate each layer.
pub fn profile(
    plan: &Plan<'_>,
    device: &mut dyn Device,
    input: &[i8],
    repeats: usize,
) -> Result<ProfileReport, LinkError> {
    let info = device.info()?;
    let n = plan.model.layers.len();
    let mut min = vec![u64::MAX; n];
    let mut max = vec![0u64; n];
    let mut first: Option<Vec<u32>> = None;
    let mut identical = true;
    let mut overhead = 0;
    for _ in 0..repeats.max(1) {
        let out = device.run(input)?;
        overhead = out.overhead;
        for (i, &c) in out.counts.iter().enumerate().take(n) {
            min[i] = min[i].min(c as u64);
            max[i] = max[i].max(c as u64);
        }
        match &first {
            None => first = Some(out.counts),
            Some(f) => identical &= *f == out.counts,
        }
    }
    let total: u64 = min.iter().sum();
    let layers: Vec<LayerProfile> = (0..n)
        .map(|i| {
            let l = &plan.model.layers[i];
            let macs = plan.layer_stats(i).macs;
            LayerProfile {
                index: i,
                kind: l.kind().into(),
                macs,
                wbits: l.weights().map(|w| w.bits),
                abits: plan.tensors[i + 1].quant.bits,
                count: min[i],
                count_max: max[i],
                per_mac: (macs > 0).then(|| min[i] as f64 / macs as f64),
                share: if total > 0 { min[i] as f64 / total as f64 } else { 0.0 },
            }
        })
        .collect();
    let total_macs = layers.iter().map(|l| l.macs).sum::<u64>();
    Ok(ProfileReport {
        model: plan.model.name.into(),
        board: info.board,
        core: info.core,
        unit: unit_name(info.counter).into(),
        repeats: repeats.max(1),
        identical,
        overhead,
        layers,
        total,
        total_macs,
        per_mac: if total_macs > 0 { total as f64 / total_macs as f64 } else { 0.0 },
    })
}

/// The unit's plural name.
pub fn unit_name(u: CounterUnit) -> &'static str {
    u.name()
}

/// Render as a table; the unit is in the header.
pub fn render(r: &ProfileReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "model {} on {} ({}), counts in {}", r.model, r.board, r.core, r.unit);
    if r.unit == "instructions" {
        let _ = writeln!(s, "(QEMU counts executed instructions, 1 per instruction: not real cycles)");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:>3}  {:<10} {:>9} {:>3} {:>3} {:>13} {:>9} {:>7}",
        "#",
        "layer",
        "MACs",
        "w",
        "a",
        r.unit,
        format!("{}/MAC", if r.unit == "instructions" { "instr" } else { "cyc" }),
        "share"
    );
    for l in &r.layers {
        let _ = writeln!(
            s,
            "{:>3}  {:<10} {:>9} {:>3} {:>3} {:>13} {:>9} {:>6.1}%",
            l.index,
            l.kind,
            l.macs,
            l.wbits.map_or("-".into(), |b| b.to_string()),
            l.abits,
            l.count,
            l.per_mac.map_or("-".into(), |p| format!("{p:.2}")),
            l.share * 100.0
        );
    }
    let _ = writeln!(
        s,
        "     {:<10} {:>9} {:>3} {:>3} {:>13} {:>9} {:>6.1}%",
        "total",
        r.total_macs,
        "",
        "",
        r.total,
        format!("{:.2}", r.per_mac),
        100.0
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{} run(s); counts {}; measurement overhead {} {} subtracted from each layer",
        r.repeats,
        if r.identical { "identical across runs" } else { "VARIED across runs (min shown)" },
        r.overhead,
        r.unit
    );
    s
}

/// The same model profiled on several boards, side by side: each layer's
/// count per board, and each board's total against the first board's. The
/// boards may count different things (instructions under QEMU, cycles on
/// hardware): the header says which, and ratios across units are given only
/// as what they are, a ratio of two counts.
pub fn render_comparison(reports: &[ProfileReport]) -> String {
    let mut s = String::new();
    let Some(first) = reports.first() else { return s };
    let _ = writeln!(s, "model {} on {} boards", first.model, reports.len());
    let _ = write!(s, "{:>3}  {:<10} {:>9}", "#", "layer", "MACs");
    for r in reports {
        let _ = write!(s, " {:>16}", r.board);
    }
    let _ = writeln!(s);
    let _ = write!(s, "{:>3}  {:<10} {:>9}", "", "", "");
    for r in reports {
        let _ = write!(s, " {:>16}", r.unit);
    }
    let _ = writeln!(s);
    for (i, l) in first.layers.iter().enumerate() {
        let _ = write!(s, "{:>3}  {:<10} {:>9}", l.index, l.kind, l.macs);
        for r in reports {
            let _ = write!(s, " {:>16}", r.layers.get(i).map_or("-".into(), |l| l.count.to_string()));
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "     {:<10} {:>9}", "total", first.total_macs);
    for r in reports {
        let _ = write!(s, " {:>16}", r.total);
    }
    let _ = writeln!(s);
    let _ = write!(s, "     {:<10} {:>9}", format!("x {}", first.board), "");
    for r in reports {
        let _ = write!(s, " {:>16}", format!("{:.3}", r.total as f64 / first.total.max(1) as f64));
    }
    let _ = writeln!(s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(board: &str, unit: &str, counts: &[u64]) -> ProfileReport {
        let layers = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| LayerProfile {
                index: i,
                kind: "conv2d".into(),
                macs: 100,
                wbits: Some(8),
                abits: 8,
                count: c,
                count_max: c,
                per_mac: Some(c as f64 / 100.0),
                share: 0.0,
            })
            .collect();
        ProfileReport {
            model: "m".into(),
            board: board.into(),
            core: "cortex-m4".into(),
            unit: unit.into(),
            repeats: 1,
            identical: true,
            overhead: 0,
            layers,
            total: counts.iter().sum(),
            total_macs: 100 * counts.len() as u64,
            per_mac: 0.0,
        }
    }

    #[test]
    fn comparison_has_every_board_and_the_ratio_to_the_first() {
        let s = render_comparison(&[
            report("qemu-m4", "instructions", &[300, 100]),
            report("nucleo-f446re", "cycles", &[450, 150]),
        ]);
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[1].contains("qemu-m4") && lines[1].contains("nucleo-f446re"), "{s}");
        assert!(lines[2].contains("instructions") && lines[2].contains("cycles"), "{s}");
        assert!(lines[3].contains("300") && lines[3].contains("450"), "{s}");
        let total = lines.iter().find(|l| l.contains("total")).unwrap();
        assert!(total.contains("400") && total.contains("600"), "{s}");
        let ratio = lines.last().unwrap();
        assert!(ratio.contains("1.000") && ratio.contains("1.500"), "{s}");
    }
}
