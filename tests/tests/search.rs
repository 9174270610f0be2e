//! A tiny end-to-end search under QEMU: a briefly trained LeNet-5, every
//! strategy on a small budget, the run directory's outputs, resume (nothing
//! re-evaluated), and the latency cache (a second run measures nothing).

use releq_host::boards;
use releq_host::data::Dataset;
use releq_host::device::qemu::find_qemu;
use releq_host::device::QemuOptions;
use releq_host::search::env::Constraints;
use releq_host::search::reward::Cost;
use releq_host::search::strategies::Strategy;
use releq_host::search::{read_log, search, SearchOptions};
use releq_host::train::{self, TrainOptions};
use releq_host::zoo::Arch;
use releq_tests::data_dir;
use std::path::Path;

fn options(ckpt: &Path, data: &Path, out: &Path, cache: &Path, strategy: Strategy, budget: usize) -> SearchOptions {
    SearchOptions {
        checkpoint: ckpt.into(),
        dataset: Dataset::Mnist,
        data_dir: data.into(),
        seed: 3,
        board: boards::load("qemu-m4").unwrap(),
        qemu: QemuOptions::default(),
        strategy,
        budget,
        wbits: vec![2, 4, 8],
        search_activations: false,
        cost: Cost::Measured { latency: 0.7, flash: 0.3 },
        reward_threshold: None,
        constraints: Constraints { max_accuracy_loss: 2.0, max_latency: None, max_flash: None },
        calib_batches: 4,
        val_limit: 300,
        finetune_steps: 0,
        final_finetune_steps: 20,
        episodes_per_update: 4,
        out: out.into(),
        cache_dir: cache.into(),
        resume: false,
        verify_count: 5,
        progress: false,
    }
}

#[test]
fn tiny_search_end_to_end() {
    let Some(data) = data_dir() else {
        eprintln!("skipped: no MNIST (set RELEQ_DATA or run scripts/setup-data.sh)");
        return;
    };
    if find_qemu().is_err() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut o = TrainOptions::new(Arch::Lenet5, Dataset::Mnist, data.clone(), dir.path().join("train"));
    (o.epochs, o.limit, o.progress) = (1, Some(3000), false);
    train::train(&o).unwrap();
    let ckpt = dir.path().join("train/last.safetensors");
    let cache = dir.path().join("cache");

    // The agent: outputs, budget, bit-exact device check.
    let out = dir.path().join("releq");
    let report = search(&options(&ckpt, &data, &out, &cache, Strategy::Releq, 6)).unwrap();
    for f in
        ["episodes.jsonl", "pareto.csv", "pareto.svg", "model.releq", "model-int8.releq", "report.md", "report.json"]
    {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(report.device_mismatches, 0);
    assert_eq!(report.device_checked, 5);
    assert!(report.table_measured_now > 0, "the first run measures the table");
    assert!(report.latency_int8 > 0 && report.latency_total > 0);
    // The table's prediction is the sum of the layers timed alone.
    let err = (report.latency_predicted as f64 - report.latency_total as f64).abs() / report.latency_total as f64;
    assert!(err < 0.01, "prediction {} vs measured {}", report.latency_predicted, report.latency_total);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "wbits",
        "abits",
        "latency_total",
        "latency_int8",
        "speedup_vs_int8",
        "flash_bytes",
        "flash_int8_bytes",
        "val_accuracy",
        "test_accuracy",
        "float_test_accuracy",
        "device_mismatches",
        "latency_unit",
    ] {
        assert!(!json[key].is_null(), "report.json lacks {key}");
    }
    assert_eq!(json["latency_unit"], "instructions");
    let first = read_log(&out.join("episodes.jsonl")).unwrap();
    assert!(first.iter().filter(|r| r.new).count() >= 6);

    // Resume with a larger budget: the old evaluations are kept, not redone.
    let mut again = options(&ckpt, &data, &out, &cache, Strategy::Releq, 9);
    again.resume = true;
    let report2 = search(&again).unwrap();
    assert_eq!(report2.table_measured_now, 0, "a second run on the same board measures nothing");
    let log = read_log(&out.join("episodes.jsonl")).unwrap();
    assert_eq!(&log[..first.len()], &first[..], "resume rewrites nothing");
    let new_keys: std::collections::HashSet<_> =
        log.iter().filter(|r| r.new).map(|r| (r.wbits.clone(), r.abits.clone())).collect();
    assert_eq!(new_keys.len(), log.iter().filter(|r| r.new).count(), "no configuration evaluated twice");
    // Without --resume an existing run directory is refused.
    assert!(search(&options(&ckpt, &data, &out, &cache, Strategy::Releq, 6)).is_err());

    // The baselines run on the same machinery.
    for s in [Strategy::Random, Strategy::Greedy] {
        let out = dir.path().join(format!("{s:?}"));
        let r = search(&options(&ckpt, &data, &out, &cache, s, 4)).unwrap();
        assert_eq!(r.device_mismatches, 0);
        assert_eq!(r.table_measured_now, 0);
    }
}
