//! Search outputs: the Pareto front of accuracy against measured latency
//! (CSV and an SVG plot marking the chosen point and the all-8-bit model),
//! and the final report (Markdown and JSON).

use super::env::Record;
use plotters::prelude::*;
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

/// Plot every evaluation, the front, the chosen point and all-8-bit.
pub fn plot(
    path: &Path,
    all: &[Record],
    front: &[Record],
    chosen: &Record,
    int8: &Record,
    unit: &str,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<std::io::Error>| e.to_string();
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let xmax = all.iter().map(|r| r.latency).max().unwrap_or(1) as f64 * 1.05;
    let ymin = all.iter().map(|r| r.val_accuracy).fold(1.0, f64::min).max(0.0) * 100.0 - 0.5;
    let mut chart = ChartBuilder::on(&root)
        .caption("accuracy vs measured latency", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, ymin..100.0)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc(format!("latency ({unit}, measured on the device)"))
        .y_desc("validation accuracy (%)")
        .draw()
        .map_err(e)?;
    chart
        .draw_series(
            all.iter().map(|r| Circle::new((r.latency as f64, r.val_accuracy * 100.0), 2, BLUE.mix(0.3).filled())),
        )
        .map_err(e)?
        .label("evaluated")
        .legend(|(x, y)| Circle::new((x, y), 3, BLUE.filled()));
    chart
        .draw_series(LineSeries::new(front.iter().map(|r| (r.latency as f64, r.val_accuracy * 100.0)), &BLACK))
        .map_err(e)?
        .label("Pareto front")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
    chart
        .draw_series([Cross::new((int8.latency as f64, int8.val_accuracy * 100.0), 7, RED.stroke_width(2))])
        .map_err(e)?
        .label("all 8-bit")
        .legend(|(x, y)| Cross::new((x, y), 5, RED));
    chart
        .draw_series([TriangleMarker::new((chosen.latency as f64, chosen.val_accuracy * 100.0), 9, GREEN.filled())])
        .map_err(e)?
        .label("chosen")
        .legend(|(x, y)| TriangleMarker::new((x, y), 6, GREEN.filled()));
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
    root.present().map_err(e)
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

    #[test]
    fn plot_writes_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let rs = [rec(0.99, 100, 8), rec(0.98, 50, 4)];
        let p = dir.path().join("p.svg");
        plot(&p, &rs, &pareto(&rs), &rs[1], &rs[0], "instructions").unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("<svg") && svg.contains("Pareto front"));
    }

    #[test]
    fn ratios_say_faster_slower_or_same() {
        assert_eq!(versus_int8(1_000.0, 1_850.0, "faster", "slower"), "1.85x faster than int8");
        assert_eq!(versus_int8(14_483_722.0, 14_109_454.0, "faster", "slower"), "1.03x slower than int8");
        assert_eq!(versus_int8(1_004.0, 1_000.0, "faster", "slower"), "same as int8");
        assert_eq!(versus_int8(996.0, 1_000.0, "faster", "slower"), "same as int8");
        assert_eq!(versus_int8(324.0, 1_000.0, "smaller", "larger"), "3.09x smaller than int8");
    }
}
