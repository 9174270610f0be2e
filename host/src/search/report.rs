//! Search outputs: the Pareto front of accuracy against measured latency
//! (CSV, and an SVG of two panels, accuracy against latency and against
//! flash, zoomed to the points, marking the final model, the all-8-bit
//! model and CMSIS-NN's int8 latency when known), and the final report
//! (Markdown and JSON).

use super::env::Record;
use crate::nn::spec::Spec;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;
use std::path::Path;

/// Records not dominated in (higher validation accuracy, lower latency),
/// sorted by latency.
pub fn pareto(records: &[Record]) -> Vec<Record> {
    let mut uniq: Vec<&Record> = Vec::new();
    for r in records {
        if !uniq.iter().any(|u| u.wbits == r.wbits && u.abits == r.abits) {
            uniq.push(r);
        }
    }
    let mut front: Vec<Record> = uniq
        .iter()
        .filter(|r| {
            !uniq.iter().any(|o| {
                (o.val_accuracy >= r.val_accuracy && o.latency <= r.latency)
                    && (o.val_accuracy > r.val_accuracy || o.latency < r.latency)
            })
        })
        .map(|r| (*r).clone())
        .collect();
    front.sort_by_key(|r| r.latency);
    front
}

/// Write the front as CSV.
pub fn write_csv(path: &Path, front: &[Record]) -> std::io::Result<()> {
    let mut s = String::from("wbits,abits,val_accuracy,latency,latency_rel,flash_bytes,flash_rel,reward,feasible\n");
    for r in front {
        let bits = |b: &[u8]| b.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ");
        s.push_str(&format!(
            "{},{},{:.5},{},{:.4},{},{:.4},{:.5},{}\n",
            bits(&r.wbits),
            bits(&r.abits),
            r.val_accuracy,
            r.latency,
            r.latency_rel,
            r.flash_bytes,
            r.flash_rel,
            r.reward,
            r.feasible
        ));
    }
    std::fs::write(path, s)
}

/// CMSIS-NN's whole-model int8 count for the zoo LeNet-5 on `qemu-m4`
/// (executed instructions; quoted in `docs/benchmarks.md`).
pub const CMSIS_NN_LENET5_QEMU_M4: u64 = 1_519_520;

/// CMSIS-NN's int8 latency for this model on this board, when known: only
/// the zoo LeNet-5 (the same layers, compared op by op) on `qemu-m4`
/// counting instructions.
pub fn cmsis_nn_int8(spec: &Spec, board: &str, unit: &str) -> Option<u64> {
    (board == "qemu-m4" && unit == "instructions" && *spec == crate::zoo::Arch::Lenet5.spec())
        .then_some(CMSIS_NN_LENET5_QEMU_M4)
}

/// What [`plot`] draws.
#[derive(Debug, Clone, Copy)]
pub struct PlotData<'a> {
    /// Every evaluation (accuracy by the search's proxy).
    pub all: &'a [Record],
    /// The latency Pareto front of `all`.
    pub front: &'a [Record],
    /// The final model's record: its bits, latency, flash and final
    /// accuracy (the kept PTQ or QAT model on the whole validation split,
    /// as `report.md` states it).
    pub chosen: &'a Record,
    /// The all-8-bit model.
    pub int8: &'a Record,
    /// Model name.
    pub model: &'a str,
    /// Board name.
    pub board: &'a str,
    /// Unit of latencies.
    pub unit: &'a str,
    /// CMSIS-NN's int8 latency for the same model and board, if known
    /// ([`cmsis_nn_int8`]).
    pub cmsis_int8: Option<u64>,
}

/// Share of the data span added on each side of an axis.
const AXIS_MARGIN: f64 = 0.05;
/// Smallest half-width of an axis, relative to its centre (a degenerate or
/// nearly degenerate span still gets readable ticks).
const AXIS_MIN_HALF: f64 = 0.005;
/// Evaluations more than this many pp below the chosen and the all-8-bit
/// model are not drawn (collapsed models would squash the interesting part).
const ACCURACY_WINDOW_PP: f64 = 5.0;
/// Height of a label row above the points, as a share of the panel.
const LABEL_ROW: f64 = 0.055;
/// Font size of the labels in the panels.
const LABEL_SIZE: f64 = 16.0;
/// Tick labels per axis.
const TICKS: usize = 7;

/// The range of an axis showing `values`: min..max with [`AXIS_MARGIN`] of
/// the span on each side, at least [`AXIS_MIN_HALF`] of the centre (and 0.5)
/// on each side of it. `None` without finite values.
pub fn axis_range(values: impl IntoIterator<Item = f64>) -> Option<std::ops::Range<f64>> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<(f64, f64)>, v| Some(acc.map_or((v, v), |(l, h)| (l.min(v), h.max(v)))))?;
    let centre = (lo + hi) / 2.0;
    let half = ((hi - lo) * (0.5 + AXIS_MARGIN)).max(centre.abs() * AXIS_MIN_HALF).max(0.5);
    Some(centre - half..centre + half)
}

/// `range` extended to take in `v`, if `v` lies within half the range's
/// width of it (a reference line far away is drawn as an arrow at the edge
/// instead, so the points keep the panel).
fn take_in(range: std::ops::Range<f64>, v: f64) -> std::ops::Range<f64> {
    let w = range.end - range.start;
    if v >= range.start - w / 2.0 && v < range.start {
        v - w * AXIS_MARGIN..range.end
    } else if v <= range.end + w / 2.0 && v > range.end {
        range.start..v + w * AXIS_MARGIN
    } else {
        range
    }
}

/// Human-readable number with an SI suffix (`k`, `M`, `G`) chosen by the
/// size of `scale_of` and as many decimals as ticks `step` apart need.
pub fn human(v: f64, scale_of: f64, step: f64) -> String {
    let (div, suffix) = match scale_of.abs() {
        a if a >= 1e9 => (1e9, "G"),
        a if a >= 1e6 => (1e6, "M"),
        a if a >= 1e3 => (1e3, "k"),
        _ => (1.0, ""),
    };
    let decimals = decimals_for(step / div);
    format!("{:.*}{suffix}", decimals, v / div)
}

/// Decimals that tell apart values `step` apart (0 to 4).
fn decimals_for(step: f64) -> usize {
    if !(step.is_finite() && step > 0.0) {
        return 1;
    }
    (-step.log10() - 1e-9).ceil().clamp(0.0, 4.0) as usize
}

/// The step between the ticks plotters draws on `range` with `n` labels.
fn tick_step(range: &std::ops::Range<f64>, n: usize) -> f64 {
    use plotters::coord::ranged1d::Ranged;
    let kp = plotters::coord::types::RangedCoordf64::from(range.clone()).key_points(n);
    match kp.as_slice() {
        [a, b, ..] => b - a,
        _ => range.end - range.start,
    }
}

/// The tick labels of an axis over `range` (as [`plot`] writes them).
pub fn tick_labels(range: &std::ops::Range<f64>, suffix: &str) -> Vec<(f64, String)> {
    use plotters::coord::ranged1d::Ranged;
    let step = tick_step(range, TICKS);
    let scale = range.start.abs().max(range.end.abs());
    plotters::coord::types::RangedCoordf64::from(range.clone())
        .key_points(TICKS)
        .into_iter()
        .map(|v| (v, format!("{}{suffix}", human(v, scale, step))))
        .collect()
}

fn bits_label(r: &Record) -> String {
    let j = |b: &[u8]| b.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ");
    if r.abits.iter().all(|&a| a == 8) {
        format!("w[{}]", j(&r.wbits))
    } else {
        format!("w[{}] a[{}]", j(&r.wbits), j(&r.abits))
    }
}

/// Records not dominated in (higher accuracy, lower `key`), sorted by key.
fn front_by(records: &[Record], key: impl Fn(&Record) -> u64) -> Vec<&Record> {
    let mut f: Vec<&Record> = records
        .iter()
        .filter(|r| {
            !records.iter().any(|o| {
                o.val_accuracy >= r.val_accuracy
                    && key(o) <= key(r)
                    && (o.val_accuracy > r.val_accuracy || key(o) < key(r))
            })
        })
        .collect();
    f.sort_by_key(|r| key(r));
    f.dedup_by(|a, b| key(a) == key(b) && a.val_accuracy == b.val_accuracy);
    f
}

/// Plot two panels side by side, sharing the accuracy axis: accuracy
/// against measured latency (every evaluation, the Pareto front, reference
/// lines for the all-8-bit model and CMSIS-NN int8) and against flash; the
/// chosen configuration is marked with its final accuracy and bits, the
/// all-8-bit model with its own. Axes are zoomed to the points drawn; the
/// legend is a strip below the panels, so it hides nothing.
pub fn plot(path: &Path, d: &PlotData<'_>) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    let pct = |r: &Record| r.val_accuracy * 100.0;
    let lowest = pct(d.chosen).min(pct(d.int8)) - ACCURACY_WINDOW_PP;
    let shown: Vec<Record> = d.all.iter().filter(|r| pct(r) >= lowest).cloned().collect();
    let hidden = d.all.len() - shown.len();
    let marks = [d.chosen, d.int8];
    let yr = axis_range(shown.iter().chain(marks).map(pct)).expect("the marks are finite");
    // A band above the points for the labels, one row each.
    let rows = if d.cmsis_int8.is_some() { 3.0 } else { 2.0 };
    let band = (yr.end - yr.start) * LABEL_ROW * rows / (1.0 - LABEL_ROW * rows);
    let yr = yr.start..yr.end + band;
    let row_y = |k: f64| yr.end - (yr.end - yr.start) * LABEL_ROW * (k + 0.5);
    let lat = |r: &Record| r.latency as f64;
    let kb = |r: &Record| r.flash_bytes as f64 / 1000.0;
    let mut xl = axis_range(shown.iter().chain(marks).map(lat)).expect("the marks are finite");
    if let Some(c) = d.cmsis_int8 {
        xl = take_in(xl, c as f64);
    }
    let xf = axis_range(shown.iter().chain(marks).map(kb)).expect("the marks are finite");
    let front: Vec<&Record> = d.front.iter().filter(|r| pct(r) >= lowest).collect();
    let flash_front = front_by(&shown, |r| r.flash_bytes);

    let (w, h) = (1500u32, 760u32);
    let root = SVGBackend::new(path, (w, h)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let (top, rest) = root.split_vertically(50);
    let (panels, legend) = rest.split_vertically(h - 50 - 110);
    top.draw(&Text::new(
        format!("releq search: {} on {}: validation accuracy against measured latency and flash", d.model, d.board),
        ((w / 2) as i32, 22),
        ("sans-serif", 26).into_font().style(FontStyle::Bold).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(e)?;
    let (left, right) = panels.split_horizontally(w / 2);

    let blue = RGBColor(31, 119, 180);
    let red = RGBColor(214, 39, 40);
    let green = RGBColor(0, 140, 60);
    let purple = RGBColor(128, 60, 180);
    let y_ticks = tick_labels(&yr, " %");
    let y_fmt = |v: &f64| nearest(&y_ticks, *v);
    let (lmin, lmax) = shown.iter().chain(marks).fold((u64::MAX, 0), |(l, h), r| (l.min(r.latency), h.max(r.latency)));
    let latency_title = match lmax - lmin {
        s if (s as f64) < (lmax as f64) * AXIS_MIN_HALF => {
            format!("accuracy vs latency (all within {s} {} of each other)", d.unit)
        }
        _ => "accuracy vs latency".to_string(),
    };
    let panels = [
        (left, &xl, latency_title.as_str(), format!("latency ({}, measured on {})", d.unit, d.board), ""),
        (right, &xf, "accuracy vs flash", "flash (kB, the .releq model file)".to_string(), " kB"),
    ];
    for (i, (area, xr, title, desc, suffix)) in panels.into_iter().enumerate() {
        let x_of = |r: &Record| if i == 0 { lat(r) } else { kb(r) };
        let x_ticks = tick_labels(xr, suffix);
        let x_fmt = |v: &f64| nearest(&x_ticks, *v);
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 21))
            .margin_left(10)
            .margin_right(30)
            .margin_top(5)
            .x_label_area_size(60)
            .y_label_area_size(85)
            .build_cartesian_2d(xr.clone(), yr.clone())
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(TICKS)
            .y_labels(TICKS)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc(desc)
            .y_desc("validation accuracy (%)")
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .bold_line_style(BLACK.mix(0.12))
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(e)?;
        let (x0, x1) = (xr.start, xr.end);
        let px = chart.plotting_area().get_pixel_range().0;
        let (px0, px1) = (px.start, px.end);
        let x_px = |x: f64| px0 as f64 + (x - x0) / (x1 - x0) * (px1 - px0) as f64;
        let value = |x: f64| format!("{}{suffix}", human(x, x0.abs().max(x1.abs()), tick_step(xr, TICKS) / 10.0));
        // A label in the band: beside `x`, on the side it fits.
        let label = |text: String, x: f64, row: f64, colour: RGBColor| {
            let width = text.chars().count() as f64 * LABEL_SIZE * 0.56;
            // Right of `x` if it fits there, else left of it if it fits
            // there, else on the wider side.
            let fits_right = x_px(x) + 8.0 + width <= px1 as f64;
            let fits_left = x_px(x) - 8.0 - width >= px0 as f64;
            let wider_left = x_px(x) - px0 as f64 > (px1 - px0) as f64 / 2.0;
            let (anchor, dx) =
                if fits_right || !(fits_left || wider_left) { (HPos::Left, 8) } else { (HPos::Right, -8) };
            let font = ("sans-serif", LABEL_SIZE).into_font().style(FontStyle::Bold).color(&colour);
            EmptyElement::at((x, row_y(row))) + Text::new(text, (dx, 0), font.pos(Pos::new(anchor, VPos::Center)))
        };
        let dashed = |x: f64, colour: RGBColor| {
            DashedLineSeries::new([(x, yr.start), (x, yr.end)], 8, 5, colour.stroke_width(2))
        };

        // Every evaluation, then the front.
        chart
            .draw_series(shown.iter().map(|r| Circle::new((x_of(r), pct(r)), 3, blue.mix(0.35).filled())))
            .map_err(e)?;
        let line: Vec<(f64, f64)> = match i {
            0 => front.iter().map(|r| (x_of(r), pct(r))).collect(),
            _ => flash_front.iter().map(|r| (x_of(r), pct(r))).collect(),
        };
        chart.draw_series(LineSeries::new(line.clone(), BLACK.stroke_width(2))).map_err(e)?;
        chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, BLACK.filled()))).map_err(e)?;

        // All 8-bit: its line, its mark, its label (row 1).
        let (x, y) = (x_of(d.int8), pct(d.int8));
        chart.draw_series(dashed(x, red)).map_err(e)?;
        chart.draw_series([Cross::new((x, y), 8, red.stroke_width(3))]).map_err(e)?;
        let text = format!("all 8-bit: {y:.2} % at {}", value(x));
        chart.draw_series([label(text, x, 1.0, red)]).map_err(e)?;

        // CMSIS-NN int8 (latency panel, row 2): a line, or an arrow at the
        // edge when it is far off the points.
        if let (0, Some(c)) = (i, d.cmsis_int8) {
            let c = c as f64;
            let name = "CMSIS-NN int8";
            let mark = if c < x0 {
                label(format!("\u{2190} {name}: {} (off scale)", value(c)), x0, 2.0, purple)
            } else if c > x1 {
                label(format!("{name}: {} (off scale) \u{2192}", value(c)), x1, 2.0, purple)
            } else {
                chart.draw_series(dashed(c, purple)).map_err(e)?;
                label(format!("{name}: {}", value(c)), c, 2.0, purple)
            };
            chart.draw_series([mark]).map_err(e)?;
        }

        // The chosen model, with a leader to its label (row 0).
        let (x, y) = (x_of(d.chosen), pct(d.chosen));
        chart.draw_series(LineSeries::new([(x, y), (x, row_y(0.0))], green.mix(0.8).stroke_width(1))).map_err(e)?;
        chart.draw_series([TriangleMarker::new((x, y), 10, green.filled())]).map_err(e)?;
        let text = format!("chosen: {y:.2} %, {} at {}", bits_label(d.chosen), value(x));
        chart.draw_series([label(text, x, 0.0, green)]).map_err(e)?;
    }

    // Legend strip.
    let lf = ("sans-serif", 17).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let mut items = vec![
        (Mark::Dot, format!("evaluated configurations ({}; accuracy by the search's proxy)", shown.len())),
        (Mark::Line, "Pareto front (of latency left, of flash right)".to_string()),
        (
            Mark::Triangle,
            format!("chosen: the final model, {:.2} % on the whole validation split (as in report.md)", pct(d.chosen)),
        ),
        (Mark::Cross, format!("all 8-bit model: {:.2} %; dashed: its latency and flash", pct(d.int8))),
    ];
    if d.cmsis_int8.is_some() {
        items.push((Mark::Dashed, "CMSIS-NN int8 latency of the same model (docs/benchmarks.md)".into()));
    }
    if hidden > 0 {
        items.push((Mark::None, format!("{hidden} evaluations below {lowest:.1} % not shown")));
    }
    for (k, (mark, text)) in items.into_iter().enumerate() {
        let (col, row) = ((k / 3) as i32, (k % 3) as i32);
        let (x, y) = (110 + col * (w as i32 / 2), 22 + row * 30);
        match mark {
            Mark::Dot => legend.draw(&Circle::new((x, y), 4, blue.mix(0.5).filled())),
            Mark::Line => legend.draw(&PathElement::new(vec![(x - 12, y), (x + 12, y)], BLACK.stroke_width(2))),
            Mark::Triangle => legend.draw(&TriangleMarker::new((x, y), 9, green.filled())),
            Mark::Cross => legend.draw(&Cross::new((x, y), 7, red.stroke_width(3))),
            Mark::Dashed => legend
                .draw(&PathElement::new(vec![(x - 12, y), (x - 3, y)], purple.stroke_width(2)))
                .and_then(|_| legend.draw(&PathElement::new(vec![(x + 3, y), (x + 12, y)], purple.stroke_width(2)))),
            Mark::None => Ok(()),
        }
        .map_err(e)?;
        legend.draw(&Text::new(text, (x + 22, y), lf.clone())).map_err(e)?;
    }
    root.present().map_err(e)
}

/// Legend marks.
enum Mark {
    Dot,
    Line,
    Triangle,
    Cross,
    Dashed,
    None,
}

/// The label of the tick nearest `v` (plotters asks for the key points it
/// computed; `ticks` holds the same).
fn nearest(ticks: &[(f64, String)], v: f64) -> String {
    ticks
        .iter()
        .min_by(|a, b| (a.0 - v).abs().total_cmp(&(b.0 - v).abs()))
        .map_or_else(|| format!("{v}"), |t| t.1.clone())
}

/// The chosen model (searched for another board) on one more board.
#[derive(Debug, Clone, Serialize)]
pub struct OtherBoard {
    /// Board.
    pub board: String,
    /// What its counts are (`instructions` under QEMU, `cycles` on hardware).
    pub latency_unit: String,
    /// Measured whole-model latency of the chosen model.
    pub latency_total: u64,
    /// Measured latency of the all-8-bit model.
    pub latency_int8: u64,
    /// `latency_int8 / latency_total`.
    pub speedup_vs_int8: f64,
    /// Per-layer latency of the chosen model.
    pub layer_latency: Vec<u64>,
    /// Test images whose output differed from the host's.
    pub device_mismatches: usize,
    /// Test images checked.
    pub device_checked: usize,
    /// Entries in this board's latency table.
    pub table_entries: usize,
    /// Entries this run measured on this board.
    pub table_measured_now: usize,
    /// This board's table's prediction for the chosen configuration.
    pub chosen_predicted: u64,
    /// The cheapest configuration on this board (by its table) among the
    /// ones the search evaluated and found feasible (proxy accuracy, not
    /// fine-tuned).
    pub best_here: Option<BestHere>,
}

/// A configuration ranked first on another board.
#[derive(Debug, Clone, Serialize)]
pub struct BestHere {
    /// Weight bits.
    pub wbits: Vec<u8>,
    /// Activation bits.
    pub abits: Vec<u8>,
    /// This board's table's prediction.
    pub latency_predicted: u64,
    /// Validation accuracy by the search's proxy.
    pub val_accuracy: f64,
}

/// Per-layer row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    /// Layer index in the .releq model.
    pub index: usize,
    /// Kind.
    pub kind: String,
    /// Weight bits (weighted layers).
    pub wbits: Option<u8>,
    /// Activation bits of the output.
    pub abits: u8,
    /// Measured count on the device (final run).
    pub latency: u64,
    /// Parameter bytes.
    pub flash_bytes: usize,
}

/// `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Model.
    pub model: String,
    /// Board.
    pub board: String,
    /// Strategy.
    pub strategy: String,
    /// Unit of latencies.
    pub latency_unit: String,
    /// Per-layer weight bits (weighted layers).
    pub wbits: Vec<u8>,
    /// Per-layer activation bits (weighted layers).
    pub abits: Vec<u8>,
    /// Weight bits the search chose by its proxy (before refinement).
    pub search_wbits: Vec<u8>,
    /// Activation bits the search chose by its proxy.
    pub search_abits: Vec<u8>,
    /// Configurations in the refinement's pool (the search's choice included).
    pub refine_pool: usize,
    /// Every configuration the refinement tried, in order.
    pub refined: Vec<super::refine::Tried>,
    /// Per-layer rows.
    pub layers: Vec<LayerRow>,
    /// Measured whole-model latency of the chosen model on the device.
    pub latency_total: u64,
    /// The table's prediction for it.
    pub latency_predicted: u64,
    /// Measured latency of the all-8-bit model on the same firmware.
    pub latency_int8: u64,
    /// `latency_int8 / latency_total`.
    pub speedup_vs_int8: f64,
    /// Flash of the chosen model (its .releq file).
    pub flash_bytes: u64,
    /// Flash of the all-8-bit model.
    pub flash_int8_bytes: u64,
    /// `flash_bytes / flash_int8_bytes`.
    pub flash_ratio: f64,
    /// Validation accuracy (integer inference).
    pub val_accuracy: f64,
    /// Test accuracy (integer inference).
    pub test_accuracy: f64,
    /// Float model's test accuracy.
    pub float_test_accuracy: f64,
    /// Float model's validation accuracy.
    pub float_val_accuracy: f64,
    /// Test images whose device output differed from the host's.
    pub device_mismatches: usize,
    /// Test images run on the device for verification.
    pub device_checked: usize,
    /// The final and the all-8-bit models measured on the other boards asked
    /// for (`--board A --board B`: the search optimised A's latency).
    pub other_boards: Vec<OtherBoard>,
    /// Accuracy evaluations computed.
    pub evaluations: usize,
    /// QAT steps in the final model (0: the PTQ model was better on the
    /// validation split, or no fine-tune was asked for).
    pub final_qat_steps: usize,
    /// Entries in the latency table.
    pub table_entries: usize,
    /// Entries this run measured on the device (the rest came from the cache).
    pub table_measured_now: usize,
    /// Wall time of the search, seconds.
    pub seconds: f64,
}

/// Ratios within this share of 1 are "the same".
const SAME_WITHIN: f64 = 0.005;

/// `value` (a cost: latency, flash) against the all-8-bit model's, in words:
/// "1.85x faster than int8" (`less`, value below), "1.03x slower than int8"
/// (`more`, value above), "same as int8" within 0.5 %.
pub fn versus_int8(value: f64, int8: f64, less: &str, more: &str) -> String {
    if !(value > 0.0 && int8 > 0.0) {
        return "n/a".into();
    }
    let ratio = value / int8;
    if (ratio - 1.0).abs() <= SAME_WITHIN {
        "same as int8".into()
    } else if ratio < 1.0 {
        format!("{:.2}x {less} than int8", 1.0 / ratio)
    } else {
        format!("{ratio:.2}x {more} than int8")
    }
}

/// Render the report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = format!(
        "# releq search: {} on {}\n\nStrategy `{}`; latencies in **{}** measured on the device{}.\n\n",
        r.model,
        r.board,
        r.strategy,
        r.latency_unit,
        if r.latency_unit == "instructions" { " (QEMU counts executed instructions, not cycles)" } else { "" }
    );
    s.push_str("| layer | kind | wbits | abits | measured latency | flash bytes |\n| --- | --- | ---: | ---: | ---: | ---: |\n");
    for l in &r.layers {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            l.index,
            l.kind,
            l.wbits.map_or("-".into(), |b| b.to_string()),
            l.abits,
            l.latency,
            l.flash_bytes
        ));
    }
    s.push_str(&format!(
        "\n| | chosen | all 8-bit | ratio |\n| --- | ---: | ---: | ---: |\n\
         | latency (measured) | {} | {} | {} |\n| flash bytes | {} | {} | {:.3}x: {} |\n\n",
        r.latency_total,
        r.latency_int8,
        versus_int8(r.latency_total as f64, r.latency_int8 as f64, "faster", "slower"),
        r.flash_bytes,
        r.flash_int8_bytes,
        r.flash_ratio,
        versus_int8(r.flash_bytes as f64, r.flash_int8_bytes as f64, "smaller", "larger")
    ));
    s.push_str(&format!(
        "- validation accuracy {:.2} % (float {:.2} %)\n- test accuracy {:.2} % (float {:.2} %)\n\
         - table prediction {} vs measured {} {}\n- device check: {} test images, {} mismatches with the host\n\
         - {} accuracy evaluations; latency table of {} entries, {} measured by this run; {:.0} s\n",
        r.val_accuracy * 100.0,
        r.float_val_accuracy * 100.0,
        r.test_accuracy * 100.0,
        r.float_test_accuracy * 100.0,
        r.latency_predicted,
        r.latency_total,
        r.latency_unit,
        r.device_checked,
        r.device_mismatches,
        r.evaluations,
        r.table_entries,
        r.table_measured_now,
        r.seconds
    ));
    if !r.other_boards.is_empty() {
        s.push_str(&format!(
            "\n## On every board\n\nThe search optimised **{}**'s latency; the same two models measured on the other \
             boards:\n\n| board | unit | chosen | all 8-bit | chosen vs int8 | device check |\n\
             | --- | --- | ---: | ---: | --- | --- |\n| {} | {} | {} | {} | {} | {} images, {} mismatches |\n",
            r.board,
            r.board,
            r.latency_unit,
            r.latency_total,
            r.latency_int8,
            versus_int8(r.latency_total as f64, r.latency_int8 as f64, "faster", "slower"),
            r.device_checked,
            r.device_mismatches
        ));
        for b in &r.other_boards {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} images, {} mismatches |\n",
                b.board,
                b.latency_unit,
                b.latency_total,
                b.latency_int8,
                versus_int8(b.latency_total as f64, b.latency_int8 as f64, "faster", "slower"),
                b.device_checked,
                b.device_mismatches
            ));
        }
        s.push_str(
            "\nEach other board's own latency table, over every configuration the search evaluated: the \
             cheapest one there among those feasible by the proxy (not fine-tuned):\n\n\
             | board | table entries (measured now) | chosen, predicted | cheapest there | its abits | predicted | proxy val |\n\
             | --- | ---: | ---: | --- | --- | ---: | ---: |\n",
        );
        for b in &r.other_boards {
            let (w, a, l, v) = match &b.best_here {
                Some(x) => (
                    format!("{:?}", x.wbits),
                    format!("{:?}", x.abits),
                    x.latency_predicted.to_string(),
                    format!("{:.2} %", x.val_accuracy * 100.0),
                ),
                None => ("none feasible".into(), "-".into(), "-".into(), "-".into()),
            };
            s.push_str(&format!(
                "| {} | {} ({}) | {} | {} | {} | {} | {} |\n",
                b.board, b.table_entries, b.table_measured_now, b.chosen_predicted, w, a, l, v
            ));
        }
        s.push('\n');
    }
    s.push_str(&match r.final_qat_steps {
        0 => "- final model: post-training quantization (QAT did not improve validation accuracy, or was not asked for)\n"
            .to_string(),
        n => format!("- final model: {n} steps of quantization-aware fine-tuning\n"),
    });
    let bits = |b: &[u8]| format!("{b:?}");
    s.push_str(&format!(
        "\n## Refinement\n\nThe search chose wbits {} abits {} by its proxy; the pool held {} configurations. \
         Tried (accuracy on the whole validation split; feasible = within the constraints):\n\n\
         | wbits | abits | proxy val | PTQ val | QAT val | kept | flash x int8 | reward | feasible |\n\
         | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | --- |\n",
        bits(&r.search_wbits),
        bits(&r.search_abits),
        r.refine_pool
    ));
    for t in &r.refined {
        s.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {} | {} | {:.3} | {:.4} | {} |\n",
            bits(&t.wbits),
            bits(&t.abits),
            t.proxy_val_accuracy * 100.0,
            t.ptq_val_accuracy * 100.0,
            t.qat_val_accuracy.map_or("-".into(), |a| format!("{:.2}", a * 100.0)),
            if t.kept_qat { format!("QAT {}", t.steps) } else { "PTQ".into() },
            t.record.flash_rel,
            t.record.reward,
            if t.record.feasible { "yes" } else { "no" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(acc: f64, lat: u64, w: u8) -> Record {
        Record {
            step: 0,
            episode: 0,
            strategy: "t".into(),
            wbits: vec![w],
            abits: vec![8],
            val_accuracy: acc,
            accuracy_loss_pp: 0.0,
            latency: lat,
            latency_rel: 1.0,
            flash_bytes: 1,
            flash_rel: 1.0,
            cost: 1.0,
            reward: 0.0,
            feasible: true,
            new: true,
        }
    }

    #[test]
    fn pareto_keeps_only_non_dominated() {
        let rs = [rec(0.99, 100, 8), rec(0.98, 50, 4), rec(0.97, 60, 3), rec(0.95, 40, 2), rec(0.99, 100, 8)];
        let f = pareto(&rs);
        let lat: Vec<u64> = f.iter().map(|r| r.latency).collect();
        assert_eq!(lat, vec![40, 50, 100]);
    }

    /// A LeNet-like search: latency from the bits (odd widths cost a
    /// little more, as with the reference kernels, plus `spread` per bit
    /// below 8), flash from the parameter counts, accuracy falling with bits.
    fn lenet_like(spread: u64) -> Vec<Record> {
        let params = [156u64, 2416, 30840, 10164, 850];
        let set = [2u8, 3, 4, 6, 8];
        let mut out = Vec::new();
        for i in 0..set.len().pow(5) {
            let w: Vec<u8> = (0..5).map(|l| set[i / set.len().pow(l) % set.len()]).collect();
            let odd = w.iter().filter(|&&b| b % 2 == 1).count() as u64;
            let below: u64 = w.iter().map(|&b| 8 - b as u64).sum();
            let flash: u64 = params.iter().zip(&w).map(|(p, &b)| p * b as u64 / 8).sum::<u64>() + 900;
            let loss: f64 = w.iter().map(|&b| [0.0, 0.0, 1.5, 0.6, 0.2, 0.1, 0.05, 0.0, 0.0][b as usize]).sum();
            let mut r =
                rec(0.991 - loss / 100.0 - (i % 7) as f64 * 0.0004, 14_109_454 + odd * 75_000 + below * spread, 8);
            r.wbits = w;
            r.abits = vec![8; 5];
            r.flash_bytes = flash;
            out.push(r);
        }
        out
    }

    /// The text of every `<text>` element of an SVG.
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t[t.find('>')? + 1..t.find("</text>")?].trim().to_string()))
            .collect()
    }

    /// Renders `rs` and checks the latency ticks lie within the data range
    /// plus its margin.
    fn render(rs: &[Record], chosen: &Record, cmsis: Option<u64>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.svg");
        let int8 = rs.iter().find(|r| r.wbits.iter().all(|&b| b == 8)).unwrap();
        let front = pareto(rs);
        let d = PlotData {
            all: rs,
            front: &front,
            chosen,
            int8,
            model: "lenet5",
            board: "qemu-m4",
            unit: "instructions",
            cmsis_int8: cmsis,
        };
        plot(&p, &d).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"));
        let texts = svg_texts(&svg);
        assert!(texts.iter().any(|t| t == "latency (instructions, measured on qemu-m4)"), "{texts:?}");
        assert!(texts.iter().any(|t| t == "validation accuracy (%)"));
        assert!(texts.iter().any(|t| t.starts_with("chosen: ") && t.contains("w[")), "{texts:?}");
        let in_scale = cmsis.filter(|_| !svg.contains("off scale")).map(|c| c as f64);
        let (lo, hi) = rs
            .iter()
            .chain([chosen])
            .map(|r| r.latency as f64)
            .chain(in_scale)
            .fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)));
        let half = ((hi - lo) * (0.5 + AXIS_MARGIN)).max((lo + hi) / 2.0 * AXIS_MIN_HALF);
        let ticks: Vec<f64> =
            texts.iter().filter_map(|t| t.strip_suffix('M')).filter_map(|t| t.parse::<f64>().ok()).collect();
        assert!(ticks.len() >= 3, "latency ticks: {texts:?}");
        for t in &ticks {
            let v = t * 1e6;
            assert!(
                v >= (lo + hi) / 2.0 - half - 1.0 && v <= (lo + hi) / 2.0 + half + 1.0,
                "tick {t}M outside {lo}..{hi}"
            );
        }
        let mut distinct = ticks.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), ticks.len(), "tick labels repeat: {ticks:?}");
        let kb: Vec<&String> = texts.iter().filter(|t| t.ends_with(" kB") && !t.contains(':')).collect();
        assert!(kb.len() >= 3, "flash ticks: {texts:?}");
        svg
    }

    #[test]
    fn plot_zooms_to_points_at_nearly_one_latency() {
        let mut rs = lenet_like(0);
        for r in &mut rs {
            r.latency = 14_109_454 + r.latency % 7;
        }
        let chosen = Record { val_accuracy: 0.9903, ..rs[300].clone() };
        let svg = render(&rs, &chosen, None);
        assert!(!svg.contains("CMSIS-NN int8:"));
    }

    #[test]
    fn plot_of_a_spread_search_marks_cmsis_off_scale() {
        let rs = lenet_like(20_000);
        let chosen = Record { val_accuracy: 0.9903, ..rs[1200].clone() };
        let svg = render(&rs, &chosen, Some(CMSIS_NN_LENET5_QEMU_M4));
        let texts = svg_texts(&svg);
        assert!(texts.iter().any(|t| t.contains("CMSIS-NN int8: 1.52M") && t.contains("off scale")), "{texts:?}");
        assert!(texts.iter().any(|t| t.starts_with("chosen: 99.03 %")), "{texts:?}");
    }

    #[test]
    fn plot_takes_in_a_reference_line_close_to_the_points() {
        let rs = lenet_like(20_000);
        let svg = render(&rs, &rs[0], Some(13_900_000));
        let texts = svg_texts(&svg);
        assert!(texts.iter().any(|t| t.starts_with("CMSIS-NN int8: 13.9") && !t.contains("off scale")), "{texts:?}");
    }

    #[test]
    fn axis_range_holds_the_points_and_stays_tight() {
        let spread = [1_200_000.0, 850_000.0, 1_900_000.0, 1_000_000.0];
        let r = axis_range(spread).unwrap();
        assert!(r.start <= 850_000.0 && r.end >= 1_900_000.0);
        assert!(r.end - r.start <= 1.5 * (1_900_000.0 - 850_000.0));
        assert!(r.start > 0.0, "zoomed, not from 0: {r:?}");
        for v in [14_109_454.0, 0.0, 98.5] {
            let r = axis_range([v, v, v]).unwrap();
            assert!(r.start < v && r.end > v, "{v}: {r:?}");
            assert!(r.end - r.start <= v.abs() * 0.05 + 1.0, "{v}: {r:?}");
        }
        let near = axis_range([14_109_454.0, 14_109_460.0]).unwrap();
        assert!(near.start < 14_109_454.0 && near.end > 14_109_460.0 && near.end - near.start < 200_000.0);
        assert!(axis_range([]).is_none() && axis_range([f64::NAN]).is_none());
    }

    #[test]
    fn ticks_read_as_humans_write_them() {
        assert_eq!(human(1_200_000.0, 1_900_000.0, 100_000.0), "1.2M");
        assert_eq!(human(850_000.0, 900_000.0, 50_000.0), "850k");
        assert_eq!(human(98.5, 99.0, 0.5), "98.5");
        assert_eq!(human(14_050_000.0, 14_200_000.0, 50_000.0), "14.05M");
        let labels: Vec<String> = tick_labels(&(98.2..99.6), " %").into_iter().map(|t| t.1).collect();
        assert!(labels.contains(&"98.6 %".to_string()), "{labels:?}");
        let labels: Vec<String> = tick_labels(&(14_040_000.0..14_180_000.0), "").into_iter().map(|t| t.1).collect();
        assert!(labels.iter().all(|l| l.starts_with("14.") && l.ends_with('M')), "{labels:?}");
    }

    #[test]
    fn ratios_say_faster_slower_or_same() {
        assert_eq!(versus_int8(1_000.0, 1_850.0, "faster", "slower"), "1.85x faster than int8");
        assert_eq!(versus_int8(14_483_722.0, 14_109_454.0, "faster", "slower"), "1.03x slower than int8");
        assert_eq!(versus_int8(1_004.0, 1_000.0, "faster", "slower"), "same as int8");
        assert_eq!(versus_int8(996.0, 1_000.0, "faster", "slower"), "same as int8");
        assert_eq!(versus_int8(324.0, 1_000.0, "smaller", "larger"), "3.09x smaller than int8");
    }

    #[test]
    fn cmsis_nn_is_known_only_for_the_zoo_lenet5_on_qemu_m4() {
        use crate::zoo::Arch;
        assert_eq!(cmsis_nn_int8(&Arch::Lenet5.spec(), "qemu-m4", "instructions"), Some(1_519_520));
        assert_eq!(cmsis_nn_int8(&Arch::Lenet5.spec(), "qemu-m7", "instructions"), None);
        assert_eq!(cmsis_nn_int8(&Arch::FashionCnn.spec(), "qemu-m4", "instructions"), None);
        let mut wider = Arch::Lenet5.spec();
        if let crate::nn::spec::Op::Conv { out_c, .. } = &mut wider.ops[0] {
            *out_c = 8;
        }
        assert_eq!(cmsis_nn_int8(&wider, "qemu-m4", "instructions"), None);
    }
}
