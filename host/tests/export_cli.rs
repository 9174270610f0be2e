//! `releq export` end to end: `--format tflite` writes a file the importer
//! reads back into the same model and prints (or, with `--json`, reports)
//! per layer what was written; `--format c` writes the C header of
//! `host::cexport` and prints its sizes; bad input exits non-zero with an
//! error naming the file.

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
fn export_tflite_json_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let (ok, _, stderr) = releq(&["import", &fixture("dwres.tflite"), "--out", &d("dwres.releq")]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) =
        releq(&["export", &d("dwres.releq"), "--format", "tflite", "--out", &d("sub/dwres.tflite"), "--json"]);
    assert!(ok, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let bytes = std::fs::read(d("sub/dwres.tflite")).unwrap();
    assert_eq!(j["file_bytes"], bytes.len());
    assert_eq!(j["format"], "tflite");
    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 8);
    assert_eq!(layers[6]["ops"], serde_json::json!(["MEAN"]));
    assert_eq!(layers[4]["ops"], serde_json::json!(["PAD", "CONV_2D"]));
    assert_eq!(layers[0]["weight_type"], "INT8");
    // Imported back: the same model, byte for byte.
    let (ok, _, stderr) = releq(&["import", &d("sub/dwres.tflite"), "--out", &d("back.releq"), "--name", "dwres"]);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read(d("back.releq")).unwrap(), std::fs::read(d("dwres.releq")).unwrap());

    let (ok, _, stderr) = releq(&["synth", "--wbits", "4,2,8,8,8", "--abits", "3,8,8,8,8", "--out", &d("l.releq")]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = releq(&["export", &d("l.releq"), "--format", "tflite", "--out", &d("l.tflite")]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(&format!("wrote {} (", d("l.tflite"))), "{stdout}");
    let l0 = stdout.lines().find(|l| l.contains("layer  0")).unwrap();
    assert!(l0.contains("CONV_2D + MINIMUM") && l0.contains("w4 as INT4") && l0.contains("clamp [-4, 3]"), "{l0}");
}

#[test]
fn export_c_header_prints_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    let (ok, _, stderr) = releq(&["synth", "--wbits", "4", "--out", &d("lenet5.releq")]);
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = releq(&["export", &d("lenet5.releq"), "--format", "c", "--out", &d("m.h"), "--json"]);
    assert!(ok, "{stderr}");
    let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let blob = std::fs::read(d("lenet5.releq")).unwrap();
    assert_eq!(j["blob_bytes"], blob.len());
    assert_eq!(j["input_len"], 784);
    let h = std::fs::read_to_string(d("m.h")).unwrap();
    assert!(h.contains(&format!("#define LENET5_BLOB_BYTES {}u", blob.len())), "{h:.400}");
    let (ok, stdout, stderr) =
        releq(&["export", &d("lenet5.releq"), "--format", "c", "--out", &d("n.h"), "--prefix", "net"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("blob {} bytes", blob.len())) && stdout.contains("arena"), "{stdout}");
    assert!(std::fs::read_to_string(d("n.h")).unwrap().contains("net_blob[NET_BLOB_BYTES]"));
}

#[test]
fn export_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.releq");
    std::fs::write(&bad, b"RELQ not a model").unwrap();
    let out = dir.path().join("x.tflite").display().to_string();
    let (ok, _, stderr) = releq(&["export", &bad.display().to_string(), "--format", "tflite", "--out", &out]);
    assert!(!ok);
    assert!(stderr.contains("bad.releq") && stderr.contains("invalid model"), "{stderr}");
    let (ok, _, stderr) = releq(&["export", &bad.display().to_string(), "--format", "onnx", "--out", &out]);
    assert!(!ok && stderr.contains("onnx"), "{stderr}");
}
