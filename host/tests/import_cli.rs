//! `releq import` end to end: the file it writes is a valid `.releq` model
//! (read back by `releq inspect`), the `--json` summary reports the input's
//! shape, layout and quantisation and every boundary op, and bad input exits
//! non-zero with an error naming the operator or the bytes.

use std::path::PathBuf;
use std::process::Command;

fn releq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_releq")).args(args).output().expect("run releq");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite").join(name).display().to_string()
}

#[test]
fn import_json_reports_boundaries_and_writes_a_valid_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sub/lenet.releq").display().to_string();
    let (ok, stdout, stderr) = releq(&["import", &fixture("lenet.tflite"), "--out", &out, "--json"]);
    assert!(ok, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["input"]["shape"], serde_json::json!([14, 14, 1]));
    assert_eq!(j["input"]["layout"], "NHWC");
    assert_eq!(j["input"]["zero_point"], -128);
    assert!((j["input"]["scale"].as_f64().unwrap() - 1.0 / 255.0).abs() < 1e-6);
    assert_eq!(j["input"]["file_dtype"], "FLOAT32");
    assert_eq!(j["output"]["shape"], serde_json::json!([1, 1, 10]));
    let ops = j["ops"].as_array().unwrap();
    let fate = |name: &str| ops.iter().find(|o| o["op"] == name).map(|o| o["fate"].as_str().unwrap().to_string());
    assert_eq!(fate("QUANTIZE").as_deref(), Some("boundary"));
    assert_eq!(fate("SOFTMAX").as_deref(), Some("boundary"));
    assert_eq!(fate("DEQUANTIZE").as_deref(), Some("boundary"));
    assert_eq!(fate("CONV_2D").as_deref(), Some("converted"));
    assert_eq!(j["layers"], 7);
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(j["flash_bytes"], bytes.len());

    let (ok, stdout, stderr) = releq(&["inspect", "--json", &out]);
    assert!(ok, "{stderr}");
    let m: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(m["name"], "lenet");
    assert_eq!(m["layers"].as_array().unwrap().len(), 7);
    assert_eq!(m["arena_bytes"], j["arena_bytes"]);
}

#[test]
fn unsupported_op_is_named_with_the_supported_list() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.releq");
    let (ok, _, stderr) = releq(&["import", &fixture("unsupported_tanh.tflite"), "--out", &out.display().to_string()]);
    assert!(!ok);
    assert!(stderr.contains("unsupported_tanh.tflite"), "{stderr}");
    assert!(stderr.contains("operator 1 (TANH) is not supported"), "{stderr}");
    assert!(stderr.contains("supported: CONV_2D, DEPTHWISE_CONV_2D"), "{stderr}");
    assert!(!out.exists(), "a failed import wrote {}", out.display());
}

#[test]
fn garbage_and_truncated_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tflite");
    std::fs::write(&junk, b"RELQ this is not a tflite file").unwrap();
    let out = dir.path().join("x.releq").display().to_string();
    let (ok, _, stderr) = releq(&["import", &junk.display().to_string(), "--out", &out]);
    assert!(!ok);
    assert!(stderr.contains("not the .tflite identifier \"TFL3\""), "{stderr}");

    let mut bytes = std::fs::read(fixture("dwres.tflite")).unwrap();
    bytes.truncate(3000);
    let cut = dir.path().join("cut.tflite");
    std::fs::write(&cut, &bytes).unwrap();
    let (ok, _, stderr) = releq(&["import", &cut.display().to_string(), "--out", &out]);
    assert!(!ok);
    assert!(stderr.contains("not a valid .tflite flatbuffer"), "{stderr}");

    let (ok, _, stderr) = releq(&["import", "/nonexistent/m.tflite", "--out", &out]);
    assert!(!ok);
    assert!(stderr.contains("cannot read /nonexistent/m.tflite"), "{stderr}");
}

fn onnx_fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/onnx").join(name).display().to_string()
}

#[test]
fn onnx_and_float_imports_write_checkpoints_that_quantize_takes() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("bn");
    let (ok, stdout, stderr) =
        releq(&["import", &onnx_fixture("bn-dw-add.onnx"), "--out", ck.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["input"], serde_json::json!([28, 28, 1]));
    assert_eq!(j["weighted_layers"], 4);
    assert_eq!(j["notes"].as_array().unwrap().len(), 3, "two folded batch norms and one depthwise: {j}");
    assert!(ck.join("last.safetensors").is_file() && ck.join("graph.json").is_file());
    let graph: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ck.join("graph.json")).unwrap()).unwrap();
    assert_eq!(graph["input"]["layout"], "NCHW");
    assert_eq!(graph["source"], "onnx:bn-dw-add.onnx");
    // No data set recorded and none given: quantize asks for one.
    let ckpt = ck.join("last.safetensors").display().to_string();
    let (ok, _, stderr) = releq(&["quantize", &ckpt, "--out", "x.releq"]);
    assert!(!ok && stderr.contains("--dataset or --data"), "{stderr}");
    // A .tflite as a float checkpoint.
    let fl = dir.path().join("fl");
    let (ok, stdout, stderr) =
        releq(&["import", &fixture("fc_tensor.tflite"), "--float", "--out", fl.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("2 weighted layers") && fl.join("graph.json").is_file(), "{stdout}");
    // Errors exit non-zero naming the op.
    let (ok, _, stderr) = releq(&["import", &fixture("unsupported_tanh.tflite"), "--float", "--out", "y"]);
    assert!(!ok && stderr.contains("TANH"), "{stderr}");
}
