//! `releq inspect` on files written by a test: a model with every layer kind
//! survives serialize -> file -> `releq inspect` -> deserialize unchanged, and
//! each kind of damage gets its own clear error naming the file.

use releq_common::model::{Layer, Model, FORMAT_VERSION};
use releq_common::testing::random_model;
use std::path::Path;
use std::process::Command;

fn releq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_releq")).args(args).output().expect("run releq");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn model_survives_file_and_inspect_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let owned = random_model(7, true);
    let bytes = owned.encode().unwrap();
    let path = write(dir.path(), "m.releq", &bytes);

    let (ok, stdout, stderr) = releq(&["inspect", "--json", &path]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let view = owned.view().unwrap();
    let plan = owned.plan().unwrap();
    assert_eq!(json["name"], "random-7");
    assert_eq!(json["format_version"], FORMAT_VERSION);
    assert_eq!(json["crc_ok"], true);
    assert_eq!(json["flash_bytes"], bytes.len());
    assert_eq!(json["arena_bytes"], plan.arena_bytes);
    let layers = json["layers"].as_array().unwrap();
    assert_eq!(layers.len(), view.layers.len());
    for (i, (l, j)) in view.layers.iter().zip(layers).enumerate() {
        assert_eq!(j["kind"], l.kind());
        assert_eq!(j["abits"], plan.tensors[i + 1].quant.bits);
        match l.weights() {
            Some(w) => assert_eq!(j["wbits"], w.bits),
            None => assert!(j["wbits"].is_null()),
        }
        assert_eq!(j["macs"], plan.layer_stats(i).macs);
    }

    let (ok, table, _) = releq(&["inspect", &path]);
    assert!(ok);
    assert!(
        table.contains("dwconv2d")
            && table.contains(&format!("arena   {} bytes (1100 peak live activations", plan.arena_bytes)),
        "{table}"
    );

    // The file is unchanged and decodes to the same model.
    let back = std::fs::read(&path).unwrap();
    assert_eq!(back, bytes);
    let model = Model::decode(&back).unwrap();
    assert_eq!(model, view);
    assert!(model.layers.iter().any(|l| matches!(l, Layer::Add(_))));
}

#[test]
fn each_damage_gets_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = random_model(8, true).encode().unwrap();

    let mut flipped = bytes.clone();
    flipped[100] ^= 1;
    let mut version = bytes.clone();
    version[4] = 9;
    let mut bad_bits = random_model(8, true);
    bad_bits.layers[0].1.as_mut().unwrap().bits = 1;
    let mut bad_chain = random_model(8, true);
    if let Layer::Reshape(r) = &mut bad_chain.layers[6].0 {
        r.shape.h = 2;
    }
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("flipped.releq", flipped, "CRC mismatch"),
        ("truncated.releq", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        ("version.releq", version, "format version 9 at byte 4 is not supported"),
        ("bits.releq", bad_bits.view().unwrap().encode(), "layer 0 field `wbits`: 1 is outside 2..=8"),
        ("chain.releq", bad_chain.view().unwrap().encode(), "layer 6 field `shape`: has 64 elements, expected 32"),
        ("empty.releq", vec![], "shorter than the 16-byte header"),
        ("text.releq", b"hello, this is not a model at all".to_vec(), "not a .releq file"),
    ];
    for (name, data, want) in cases {
        let path = write(dir.path(), name, &data);
        let (ok, _, stderr) = releq(&["inspect", &path]);
        assert!(!ok, "{name} accepted");
        assert!(stderr.contains(want), "{name}: expected {want:?} in {stderr:?}");
        assert!(stderr.contains(name), "{name}: error does not name the file: {stderr}");
    }
    let (ok, _, stderr) = releq(&["inspect", "/nonexistent/x.releq"]);
    assert!(!ok && stderr.contains("cannot read /nonexistent/x.releq"), "{stderr}");
}
