//! A search end to end on an imported ONNX model: the MNIST CNN of
//! tests/fixtures/onnx (trained in torch, exported by torch.onnx.export) is
//! imported as a checkpoint and searched under QEMU with a small budget, as
//! a zoo model would be: latency table measured on the device, agent,
//! refinement, the final model checked on the device bit for bit; then on
//! a user's `.npy` data set (`--data`). Skipped (with a note) without MNIST
//! or QEMU.

use releq_host::boards;
use releq_host::checkpoint;
use releq_host::data::Dataset;
use releq_host::device::qemu::find_qemu;
use releq_host::device::QemuOptions;
use releq_host::import::onnx::import_onnx;
use releq_host::npy;
use releq_host::search::env::Constraints;
use releq_host::search::reward::Cost;
use releq_host::search::strategies::{AgentOptions, Strategy};
use releq_host::search::{search, SearchOptions};
use releq_tests::data_dir;
use std::path::PathBuf;

#[test]
fn search_runs_on_an_imported_onnx_model() {
    let Some(data) = data_dir() else {
        eprintln!("skipped: no MNIST (set RELEQ_DATA or run scripts/setup-data.sh)");
        return;
    };
    if find_qemu().is_err() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let onnx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/onnx/mnist-cnn.onnx");
    let imp =
        import_onnx(&std::fs::read(onnx).unwrap(), "mnist-cnn", "onnx:mnist-cnn.onnx", Some(Dataset::Mnist)).unwrap();
    let params = imp.params.iter().map(|p| (p.name.as_str(), p.dims.as_slice(), p.data.as_slice()));
    let ckpt = checkpoint::write(&dir.path().join("import"), &imp.graph, params).unwrap();
    let out = dir.path().join("search");
    let mut o = SearchOptions {
        checkpoint: ckpt,
        dataset: Dataset::Mnist,
        data_dir: data.clone(),
        npy: None,
        seed: 3,
        board: boards::load("qemu-m4").unwrap(),
        qemu: QemuOptions::default(),
        probe: None,
        other_boards: Vec::new(),
        strategy: Strategy::Releq,
        budget: 6,
        wbits: vec![4, 8],
        search_activations: false,
        cost: Cost::Measured { latency: 0.7, flash: 0.3 },
        reward_threshold: None,
        constraints: Constraints { max_accuracy_loss: 2.0, max_latency: None, max_flash: None },
        calib_batches: 4,
        val_limit: 300,
        finetune_steps: 0,
        final_finetune_steps: 20,
        refine_candidates: 1,
        refine_slack: 1.0,
        agent: AgentOptions { episodes_per_update: 4, ..AgentOptions::default() },
        out: out.clone(),
        cache_dir: dir.path().join("cache"),
        resume: false,
        verify_count: 5,
        progress: false,
    };
    let t = std::time::Instant::now();
    let r = search(&o).unwrap();
    eprintln!(
        "mnist-cnn (ONNX): wbits {:?}, latency {} vs int8 {} {}, test {:.2} % (float {:.2} %), {:.1} s",
        r.wbits,
        r.latency_total,
        r.latency_int8,
        r.latency_unit,
        100.0 * r.test_accuracy,
        100.0 * r.float_test_accuracy,
        t.elapsed().as_secs_f64()
    );
    for f in ["episodes.jsonl", "model.releq", "report.md", "report.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(r.wbits.len(), 4, "four weighted layers");
    assert_eq!(r.device_checked, 5);
    assert_eq!(r.device_mismatches, 0);
    assert!(r.latency_int8 > 0 && r.latency_total > 0);
    // The float accuracy is the imported model's (torch measured 97.69 %).
    assert!((r.float_test_accuracy - 0.9769).abs() < 2e-4, "{}", r.float_test_accuracy);
    assert!(r.test_accuracy > 0.95, "{}", r.test_accuracy);

    // The same on 2,000 MNIST test images given as .npy: validation is their
    // seeded 10 %, the test set the rest.
    let test = releq_host::data::load(&data, Dataset::Mnist, releq_host::data::Split::Test).unwrap();
    let npy_dir = dir.path().join("npy");
    std::fs::create_dir_all(&npy_dir).unwrap();
    let n = 2000;
    let pixels = test.pixels[..n * 28 * 28].to_vec();
    npy::write(&npy_dir.join("images.npy"), &[n, 28, 28], &npy::Data::U8(pixels)).unwrap();
    let labels = test.labels[..n].iter().map(|&l| i64::from(l)).collect();
    npy::write(&npy_dir.join("labels.npy"), &[n], &npy::Data::I64(labels)).unwrap();
    o.npy = Some(releq_host::data::NpyFiles::parse(npy_dir.to_str().unwrap()).unwrap());
    (o.out, o.budget, o.val_limit) = (dir.path().join("search-npy"), 4, 200);
    let r = search(&o).unwrap();
    eprintln!(
        "on .npy: wbits {:?}, test {:.2} % (float {:.2} %)",
        r.wbits,
        100.0 * r.test_accuracy,
        100.0 * r.float_test_accuracy
    );
    assert_eq!(r.device_mismatches, 0);
    assert_eq!(r.table_measured_now, 0, "the latency table is cached");
    // The float accuracy on the 1,800 images outside the validation split.
    let rest = releq_host::data::holdout(n, releq_host::search::split_seed(&o)).0;
    let net = checkpoint::load(&o.checkpoint, None).unwrap().net;
    let want = releq_host::train::accuracy(&net, &test, &rest, 256, None).unwrap();
    assert_eq!(r.float_test_accuracy, want);
}
