//! Users' inputs through the CLI: `releq eval --inputs X.npy --save-outputs
//! Y.npy` on the imported `.tflite` fixtures must write TFLite Micro's stored
//! outputs bit for bit; float32 inputs are quantized as the model's input
//! says; `--data` sets and their validation split; `releq run --inputs` on
//! qemu-m4 agrees with TFLite Micro (one QEMU start, 5 inputs); bad inputs
//! and labels exit non-zero naming the file and what is wrong.

use releq_host::npy::{self, Data};
use std::path::{Path, PathBuf};
use std::process::Command;

fn releq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_releq")).args(args).output().expect("run releq");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite").join(name)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `releq import` a fixture into `dir`; returns the model's path.
fn import(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(format!("{name}.releq"));
    let (ok, _, stderr) = releq(&["import", &s(&fixture(&format!("{name}.tflite"))), "--out", &s(&out)]);
    assert!(ok, "{stderr}");
    out
}

fn i8s(p: &Path) -> (Vec<usize>, Vec<i8>) {
    let a = npy::read(p).unwrap();
    let Data::I8(v) = a.data else { panic!("{}: not int8", p.display()) };
    (a.shape, v)
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn argmax(v: &[i8]) -> usize {
    releq_host::eval::argmax(v)
}

#[test]
fn eval_inputs_reproduce_tflite_micro_outputs() {
    let dir = tempfile::tempdir().unwrap();
    for (name, imp) in [("lenet", "fast"), ("dwres", "reference"), ("fc_tensor", "fast"), ("dynbatch", "fast")] {
        let model = import(dir.path(), name);
        let saved = dir.path().join(format!("{name}.out.npy"));
        let inputs = fixture(&format!("{name}.input.npy"));
        let (ok, stdout, stderr) = releq(&[
            "eval",
            &s(&model),
            "--inputs",
            &s(&inputs),
            "--save-outputs",
            &s(&saved),
            "--impl",
            imp,
            "--json",
        ]);
        assert!(ok, "{name}: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["count"], 200, "{name}");
        assert!(j["accuracy"].is_null(), "{name}: accuracy without labels");
        assert_eq!(j["outputs"], s(&saved));
        let (shape, got) = i8s(&saved);
        let (wshape, want) = i8s(&fixture(&format!("{name}.output.npy")));
        assert_eq!(shape, wshape, "{name}");
        assert_eq!(got, want, "{name}: releq eval --inputs differs from TFLite Micro");
    }
}

#[test]
fn labels_give_accuracy_and_count() {
    let dir = tempfile::tempdir().unwrap();
    let model = import(dir.path(), "fc_tensor");
    let (_, want) = i8s(&fixture("fc_tensor.output.npy"));
    // Labels: TFLite Micro's prediction on even samples, another class on odd.
    let labels: Vec<i64> = (0..200)
        .map(|k| {
            let l = argmax(&want[k * 10..(k + 1) * 10]) as i64;
            if k % 2 == 0 {
                l
            } else {
                (l + 1) % 10
            }
        })
        .collect();
    let lp = dir.path().join("labels.npy");
    npy::write(&lp, &[200], &Data::I64(labels)).unwrap();
    let x = s(&fixture("fc_tensor.input.npy"));
    let (ok, stdout, stderr) = releq(&["eval", &s(&model), "--inputs", &x, "--labels", &s(&lp), "--json"]);
    assert!(ok, "{stderr}");
    let j = json(&stdout);
    assert_eq!((j["correct"].as_u64(), j["accuracy"].as_f64()), (Some(100), Some(0.5)), "{j}");
    let (ok, stdout, _) = releq(&["eval", &s(&model), "--inputs", &x, "--labels", &s(&lp), "--count", "7", "--json"]);
    assert!(ok);
    assert_eq!(json(&stdout)["correct"], 4);
}

/// The lenet fixture takes float32 (its first op is QUANTIZE): real values
/// `s * (q - z)` of the stored codes, given as float32, are quantized back
/// to the same codes, so the outputs are TFLite Micro's.
#[test]
fn float_inputs_are_quantized_with_the_models_input_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let model = import(dir.path(), "lenet");
    let (_, stdout, _) = releq(&["import", &s(&fixture("lenet.tflite")), "--out", &s(&model), "--json"]);
    let j = json(&stdout);
    let (scale, zp) = (j["input"]["scale"].as_f64().unwrap() as f32, j["input"]["zero_point"].as_i64().unwrap() as i32);
    let (shape, codes) = i8s(&fixture("lenet.input.npy"));
    let reals: Vec<f32> = codes.iter().map(|&q| scale * (q as i32 - zp) as f32).collect();
    // Flattened layout [N, H*W*C] too.
    let xf = dir.path().join("x.npy");
    npy::write(&xf, &[shape[0], 196], &Data::F32(reals)).unwrap();
    let out = dir.path().join("y.npy");
    let (ok, _, stderr) = releq(&["eval", &s(&model), "--inputs", &s(&xf), "--save-outputs", &s(&out)]);
    assert!(ok, "{stderr}");
    assert_eq!(i8s(&out).1, i8s(&fixture("lenet.output.npy")).1);
}

/// With the real MNIST test set: the fixture script's float inputs (the
/// first 200 test images, 2x2 means of pixel / 255, float32) quantized by
/// releq give TFLite Micro's outputs, so the codes its QUANTIZE wrote; with
/// labels, the accuracy is that of TFLite Micro's outputs.
#[test]
fn real_float_images_quantize_like_tflite_micro() {
    let data = match std::env::var_os("RELEQ_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    };
    if !data.join("mnist").is_dir() {
        eprintln!("skipping: no mnist/ in {}", data.display());
        return;
    }
    let test = releq_host::data::load(&data, releq_host::data::Dataset::Mnist, releq_host::data::Split::Test).unwrap();
    let mut x = Vec::with_capacity(200 * 196);
    for k in 0..200 {
        let img = test.image(k);
        let p = |r: usize, c: usize| img[r * 28 + c] as f32 / 255.0;
        for i in 0..14 {
            for j in 0..14 {
                // NumPy's float32 mean over axes (2, 4) sums (a + b) + (c + d):
                // with another order 190-408 of the 39,200 codes differ.
                x.push(
                    ((p(2 * i, 2 * j) + p(2 * i, 2 * j + 1)) + (p(2 * i + 1, 2 * j) + p(2 * i + 1, 2 * j + 1))) / 4.0,
                );
            }
        }
    }
    // The codes themselves, by the library.
    let tflite = std::fs::read(fixture("lenet.tflite")).unwrap();
    let owned = releq_host::import::import_tflite(&tflite, "lenet").unwrap().model;
    let plan = owned.plan().unwrap();
    let array = npy::Array { shape: vec![200, 14, 14, 1], data: Data::F32(x.clone()) };
    let codes = releq_host::eval::encode_inputs(&plan, &array, Path::new("x.npy")).unwrap().codes;
    assert_eq!(codes, i8s(&fixture("lenet.input.npy")).1, "float32 inputs quantized unlike TFLite Micro's QUANTIZE");
    let dir = tempfile::tempdir().unwrap();
    let model = import(dir.path(), "lenet");
    let xf = dir.path().join("x.npy");
    npy::write(&xf, &[200, 14, 14, 1], &Data::F32(x)).unwrap();
    let lp = dir.path().join("l.npy");
    npy::write(&lp, &[200], &Data::U8(test.labels[..200].to_vec())).unwrap();
    let out = dir.path().join("y.npy");
    let (ok, stdout, stderr) =
        releq(&["eval", &s(&model), "--inputs", &s(&xf), "--labels", &s(&lp), "--save-outputs", &s(&out), "--json"]);
    assert!(ok, "{stderr}");
    let (_, want) = i8s(&fixture("lenet.output.npy"));
    assert_eq!(i8s(&out).1, want);
    let correct = (0..200).filter(|&k| argmax(&want[k * 10..(k + 1) * 10]) == test.labels[k] as usize).count();
    assert_eq!(json(&stdout)["correct"], correct);
    assert!(correct > 120, "{correct}");
}

#[test]
fn data_sets_from_npy_with_a_validation_split() {
    let dir = tempfile::tempdir().unwrap();
    let model = import(dir.path(), "dwres");
    let (_, want) = i8s(&fixture("dwres.output.npy"));
    let set = dir.path().join("set");
    std::fs::create_dir(&set).unwrap();
    std::fs::copy(fixture("dwres.input.npy"), set.join("images.npy")).unwrap();
    let labels: Vec<u8> = (0..200).map(|k| argmax(&want[k * 10..(k + 1) * 10]) as u8).collect();
    npy::write(&set.join("labels.npy"), &[200, 1], &Data::U8(labels)).unwrap();
    let (rest, val) = releq_host::data::holdout(200, 5);
    for (split, idx) in [("val", val), ("test", rest), ("all", (0..200).collect())] {
        let out = dir.path().join(format!("{split}.npy"));
        let args = ["eval", &s(&model), "--data", &s(&set), "--split", split, "--seed", "5"];
        let (ok, stdout, stderr) = releq(&[&args[..], &["--save-outputs", &s(&out), "--json"]].concat());
        assert!(ok, "{split}: {stderr}");
        let j = json(&stdout);
        assert_eq!(j["count"], idx.len(), "{split}");
        assert_eq!(j["accuracy"], 1.0, "{split}");
        assert_eq!(j["split"], split);
        let expect: Vec<i8> = idx.iter().flat_map(|&k| want[k * 10..(k + 1) * 10].to_vec()).collect();
        assert_eq!(i8s(&out).1, expect, "{split}");
    }
    assert_eq!(releq_host::data::holdout(200, 5).1.len(), 20);
    // The comma form.
    let pair = format!("{},{}", s(&set.join("images.npy")), s(&set.join("labels.npy")));
    let (ok, stdout, stderr) = releq(&["eval", &s(&model), "--data", &pair, "--split", "all", "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(json(&stdout)["count"], 200);
}

#[test]
fn bad_inputs_and_labels_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = import(dir.path(), "fc_tensor");
    let m = s(&model);
    let write = |name: &str, shape: &[usize], data: Data| {
        let p = dir.path().join(name);
        npy::write(&p, shape, &data).unwrap();
        s(&p)
    };
    let err = |args: &[&str]| {
        let (ok, _, stderr) = releq(args);
        assert!(!ok, "{args:?} succeeded");
        stderr
    };
    // Wrong shape: 2 channels, and a flat size that is not 196.
    let x = write("wide.npy", &[3, 14, 14, 2], Data::I8(vec![0; 3 * 392]));
    let e = err(&["eval", &m, "--inputs", &x]);
    assert!(e.contains("wide.npy: shape [3, 14, 14, 2] does not match the model's input [14, 14, 1]"), "{e}");
    assert!(e.contains("expected [N, 14, 14, 1] or [N, 196] or [N, 14, 14]"), "{e}");
    let x = write("flat.npy", &[3, 195], Data::F32(vec![0.0; 3 * 195]));
    assert!(err(&["eval", &m, "--inputs", &x]).contains("flat.npy: shape [3, 195]"));
    // Wrong dtype.
    let x = write("i32.npy", &[1, 196], Data::I32(vec![0; 196]));
    let e = err(&["eval", &m, "--inputs", &x]);
    assert!(e.contains("i32.npy: dtype int32 is not an input type"), "{e}");
    let mut f8 = npy::encode(&[1], &Data::I64(vec![0]));
    let at = f8.windows(3).position(|w| w == b"<i8").unwrap();
    f8[at..at + 3].copy_from_slice(b"<f8");
    std::fs::write(dir.path().join("f8.npy"), f8).unwrap();
    let e = err(&["eval", &m, "--inputs", &s(&dir.path().join("f8.npy"))]);
    assert!(e.contains("f8.npy: header field 'descr' is \"<f8\""), "{e}");
    // Truncated file.
    let mut bytes = std::fs::read(fixture("fc_tensor.input.npy")).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(dir.path().join("cut.npy"), bytes).unwrap();
    let e = err(&["eval", &m, "--inputs", &s(&dir.path().join("cut.npy"))]);
    assert!(
        e.contains(
            "cut.npy: data (from byte 128): shape [200, 14, 14, 1] of int8 needs 39200 bytes, the file has 39190"
        ),
        "{e}"
    );
    // NaN.
    let mut v = vec![0.5f32; 2 * 196];
    v[200] = f32::NAN;
    let x = write("nan.npy", &[2, 196], Data::F32(v));
    assert!(err(&["eval", &m, "--inputs", &x]).contains("nan.npy: value NaN at flat index 200 is not finite"));
    // Labels: wrong count, out of range, float.
    let x = s(&fixture("fc_tensor.input.npy"));
    let l = write("short.npy", &[199], Data::I64(vec![1; 199]));
    let e = err(&["eval", &m, "--inputs", &x, "--labels", &l]);
    assert!(e.contains("short.npy: 199 labels, but") && e.contains("fc_tensor.input.npy holds 200 inputs"), "{e}");
    let mut labels = vec![0u8; 200];
    labels[17] = 10;
    let l = write("big.npy", &[200], Data::U8(labels));
    let e = err(&["eval", &m, "--inputs", &x, "--labels", &l]);
    assert!(e.contains("big.npy: label 10 at index 17 is not a class of the model (0..10)"), "{e}");
    let l = write("fl.npy", &[200], Data::F32(vec![0.0; 200]));
    assert!(err(&["eval", &m, "--inputs", &x, "--labels", &l]).contains("fl.npy: labels must be an integer vector"));
    // Missing file; --split with --inputs; --labels without --inputs.
    let e = err(&["eval", &m, "--inputs", "/nonexistent/x.npy"]);
    assert!(e.contains("/nonexistent/x.npy"), "{e}");
    assert!(err(&["eval", &m, "--inputs", &x, "--split", "val"]).contains("--split applies to --dataset and --data"));
    assert!(err(&["eval", &m, "--labels", &l]).contains("--inputs"));
    assert!(err(&["eval", &m, "--data", "nowhere"]).contains("--data nowhere: expected IMAGES.npy,LABELS.npy"));
}

/// `releq run --inputs` on qemu-m4: one QEMU start, 5 inputs of the dwres
/// fixture; the device's saved outputs are TFLite Micro's and the host agrees.
#[test]
fn run_inputs_on_qemu_m4_agree_with_tflite_micro() {
    if releq_host::device::qemu::find_qemu().is_err() {
        eprintln!("note: qemu-system-arm is not on PATH; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = import(dir.path(), "dwres");
    let (_, inputs) = i8s(&fixture("dwres.input.npy"));
    let (_, want) = i8s(&fixture("dwres.output.npy"));
    let pick = [0usize, 1, 57, 123, 199];
    let x = dir.path().join("x.npy");
    let rows: Vec<i8> = pick.iter().flat_map(|&k| inputs[k * 196..(k + 1) * 196].to_vec()).collect();
    npy::write(&x, &[5, 14, 14, 1], &Data::I8(rows)).unwrap();
    let labels: Vec<i64> = pick.iter().map(|&k| argmax(&want[k * 10..(k + 1) * 10]) as i64).collect();
    let l = dir.path().join("l.npy");
    npy::write(&l, &[5], &Data::I64(labels)).unwrap();
    let out = dir.path().join("y.npy");
    let (ok, stdout, stderr) = releq(&[
        "run",
        &s(&model),
        "--board",
        "qemu-m4",
        "--timeout",
        "120",
        "--inputs",
        &s(&x),
        "--labels",
        &s(&l),
        "--save-outputs",
        &s(&out),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let j = json(&stdout);
    assert_eq!((j["count"].as_u64(), j["mismatches"].as_u64()), (Some(5), Some(0)), "{j}");
    assert_eq!((j["accuracy"].as_f64(), j["host_accuracy"].as_f64()), (Some(1.0), Some(1.0)), "{j}");
    let expect: Vec<i8> = pick.iter().flat_map(|&k| want[k * 10..(k + 1) * 10].to_vec()).collect();
    let (shape, got) = i8s(&out);
    assert_eq!(shape, [5, 10]);
    assert_eq!(got, expect, "qemu-m4 outputs differ from TFLite Micro");
}
