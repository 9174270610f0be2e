//! `releq export --format tflite` against TFLite Micro itself: models with
//! mixed weight bits (2 to 8, INT4 filters) and activations below 8 bits
//! (MAXIMUM / MINIMUM clamps) are exported by the `releq` binary, run on 50
//! inputs each by TFLite Micro's Python interpreter (PyPI `tflite-micro`,
//! `scripts/tflm-run.py`, installed into `.venv-tflm` by `scripts/setup.sh`)
//! and by `releq eval --inputs --save-outputs`; the int8 outputs must be
//! equal bit for bit. Models: the zoo's LeNet-5 topology (random weights) at
//! six bit mixes, and at two with per-tensor dense layers (INT4
//! FULLY_CONNECTED), the all-kinds model (conv, depthwise, 1x1, residual add,
//! max / average pool, reshape, dense) at 10 random mixes, 40 one-layer
//! models of random geometry, kind and bits (`testing::random_layer_model`;
//! max pools padded otherwise than SAME go through PADV2, such average pools
//! are refused and counted), and the four
//! imported `.tflite` fixtures on their stored inputs (there TFLite Micro's
//! stored outputs must come out too).
//!
//! Python: `$RELEQ_TFLM_PYTHON`, else `.venv-tflm/bin/python`, else
//! `python3` if it imports `tflite_micro`. With no Python at all the test is
//! skipped with a message; with Python but no `tflite-micro` it fails and
//! says to run `scripts/setup.sh`.

use rand::{rngs::StdRng, SeedableRng};
use releq_common::builder::OwnedModel;
use releq_common::model::Layer;
use releq_common::quant::quantize_multiplier;
use releq_common::testing::{lenet5_random, random_input, random_layer_model, random_model};
use releq_host::npy::{self, Data};
use std::path::{Path, PathBuf};
use std::process::Command;

const INPUTS: usize = 50;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn imports_tflm(python: &Path) -> bool {
    Command::new(python).args(["-c", "from tflite_micro import runtime"]).output().is_ok_and(|o| o.status.success())
}

/// A Python with `tflite_micro`, or `None` when there is no Python at all.
fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RELEQ_TFLM_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = root().join(".venv-tflm/bin/python");
    if imports_tflm(&venv) {
        return Some(venv);
    }
    let sys = PathBuf::from("python3");
    match Command::new(&sys).arg("--version").output() {
        Err(_) => None,
        Ok(_) if imports_tflm(&sys) => Some(sys),
        Ok(_) => panic!(
            "python3 is present but neither .venv-tflm nor python3 has tflite-micro: run scripts/setup.sh \
             (it installs tflite-micro into .venv-tflm) or set RELEQ_TFLM_PYTHON"
        ),
    }
}

fn releq(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_releq")).args(args).output().expect("run releq");
    assert!(out.status.success(), "releq {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into()
}

fn read_i8(path: &Path) -> (Vec<usize>, Vec<i8>) {
    let a = npy::read(path).unwrap_or_else(|e| panic!("{e}"));
    let Data::I8(v) = a.data else { panic!("{}: not int8", path.display()) };
    (a.shape, v)
}

/// `m` with every dense layer requantised per tensor (one multiplier for
/// all channels, from an f32 filter scale by TFLite's per-tensor rule), so
/// low-bit dense layers are written as INT4 FULLY_CONNECTED.
fn per_tensor_dense(m: &OwnedModel) -> OwnedModel {
    let plan = m.plan().unwrap();
    let mut rq_bytes = Vec::new();
    for (i, l) in plan.model.layers.iter().enumerate() {
        if let Layer::Dense(d) = l {
            let s_in = plan.tensors[d.input as usize].quant.scale;
            let s_w = 0.02f32 * (1.0 + i as f32 / 7.0);
            let rq = quantize_multiplier((s_in * s_w) as f64 / d.out.scale as f64);
            let n = d.out_features as usize;
            rq_bytes.push((rq.multiplier.to_le_bytes().repeat(n), vec![rq.shift as u8; n]));
        }
    }
    let mut model = plan.model.clone();
    let mut k = 0;
    for l in model.layers.iter_mut() {
        if let Layer::Dense(d) = l {
            d.w.multiplier = &rq_bytes[k].0;
            d.w.shift = &rq_bytes[k].1;
            k += 1;
        }
    }
    OwnedModel::from_model(&model)
}

struct Case {
    name: String,
    releq: PathBuf,
    tflite: PathBuf,
    inputs: PathBuf,
    /// TFLite Micro's own stored outputs (fixtures).
    expected: Option<PathBuf>,
}

#[test]
fn tflite_micro_runs_exported_models_bit_exact() {
    let Some(py) = python() else {
        eprintln!("SKIPPED tflite_micro_runs_exported_models_bit_exact: no python3 on this machine");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut models: Vec<(String, OwnedModel)> = Vec::new();
    for (k, (w, a)) in [
        ([4, 2, 3, 4, 8], [3, 4, 2, 7, 8]),
        ([4, 4, 4, 4, 4], [3, 7, 3, 7, 7]),
        ([8, 4, 4, 2, 4], [8, 3, 7, 3, 7]),
        ([2, 2, 2, 2, 2], [2, 2, 2, 2, 8]),
        ([3, 3, 5, 6, 7], [4, 5, 6, 7, 8]),
        ([8, 8, 8, 8, 8], [8, 8, 8, 8, 8]),
    ]
    .into_iter()
    .enumerate()
    {
        models.push((format!("lenet5-{k}-w{w:?}-a{a:?}"), lenet5_random(k as u64 + 1, w, a)));
    }
    for (seed, w) in [(7, [4, 4, 4, 4, 4]), (8, [8, 4, 2, 3, 4]), (9, [8, 8, 8, 8, 8])] {
        let m = per_tensor_dense(&lenet5_random(seed, w, [8, 7, 6, 5, 8]));
        models.push((format!("lenet5-per-tensor-dense-w{w:?}"), m));
    }
    for seed in 1..=10 {
        models.push((format!("all-kinds-{seed}"), random_model(seed, true)));
    }
    let mut refused = Vec::new();
    for seed in 1..=40 {
        let m = random_layer_model(seed);
        let result = releq_host::tflexport::export_tflite(&m.plan().unwrap()).map(|_| ());
        match result {
            Ok(()) => models.push((format!("layer-{seed}"), m)),
            Err(e) => refused.push(format!("layer-{seed}: {e}")),
        }
    }
    for r in &refused {
        assert!(r.contains("neither SAME"), "only pools padded otherwise than SAME may be refused: {r}");
    }
    assert!(refused.len() <= 10, "{} of 40 one-layer models refused: {refused:?}", refused.len());

    let mut cases = Vec::new();
    for (i, (name, m)) in models.iter().enumerate() {
        let plan = m.plan().unwrap();
        let base = dir.path().join(format!("m{i}"));
        let releq_path = base.with_extension("releq");
        std::fs::write(&releq_path, m.encode().unwrap()).unwrap();
        let mut rng = StdRng::seed_from_u64(i as u64);
        let x: Vec<i8> = (0..INPUTS).flat_map(|_| random_input(&mut rng, &plan)).collect();
        let s = plan.input().shape;
        let inputs = base.with_extension("input.npy");
        npy::write(&inputs, &[INPUTS, s.h as usize, s.w as usize, s.c as usize], &Data::I8(x)).unwrap();
        cases.push(Case {
            name: name.clone(),
            releq: releq_path,
            tflite: base.with_extension("tflite"),
            inputs,
            expected: None,
        });
    }
    let fixtures = root().join("tests/fixtures/tflite");
    for f in ["lenet", "dwres", "fc_tensor", "dynbatch"] {
        let r = dir.path().join(format!("{f}.releq"));
        releq(&[
            "import",
            &fixtures.join(format!("{f}.tflite")).display().to_string(),
            "--out",
            &r.display().to_string(),
        ]);
        cases.push(Case {
            name: format!("fixture {f}"),
            releq: r,
            tflite: dir.path().join(format!("{f}.tflite")),
            inputs: fixtures.join(format!("{f}.input.npy")),
            expected: Some(fixtures.join(format!("{f}.output.npy"))),
        });
    }

    let mut args: Vec<String> = vec![root().join("scripts/tflm-run.py").display().to_string()];
    let (mut int4_layers, mut clamp_ops, mut padv2, mut int4_fc) = (0, 0, 0, 0);
    for (i, c) in cases.iter().enumerate() {
        let j: serde_json::Value = serde_json::from_str(&releq(&[
            "export",
            &c.releq.display().to_string(),
            "--format",
            "tflite",
            "--out",
            &c.tflite.display().to_string(),
            "--json",
        ]))
        .unwrap();
        for l in j["layers"].as_array().unwrap() {
            int4_layers += (l["weight_type"] == "INT4") as usize;
            int4_fc += (l["weight_type"] == "INT4" && l["kind"] == "dense") as usize;
            padv2 += l["ops"].as_array().unwrap().iter().filter(|o| *o == "PADV2").count();
            clamp_ops += l["ops"].as_array().unwrap().iter().filter(|o| *o == "MAXIMUM" || *o == "MINIMUM").count();
        }
        if c.name.starts_with("lenet5") || c.name.starts_with("fixture") {
            eprintln!(
                "{}: .tflite {} bytes ({} of weights), .releq {} bytes",
                c.name,
                j["file_bytes"],
                j["weight_bytes"],
                std::fs::metadata(&c.releq).unwrap().len()
            );
        }
        let r = dir.path().join(format!("releq{i}.npy"));
        releq(&[
            "eval",
            &c.releq.display().to_string(),
            "--inputs",
            &c.inputs.display().to_string(),
            "--save-outputs",
            &r.display().to_string(),
        ]);
        args.push(c.tflite.display().to_string());
        args.push(c.inputs.display().to_string());
        args.push(dir.path().join(format!("tflm{i}.npy")).display().to_string());
    }
    let out = Command::new(&py).args(&args).output().expect("run scripts/tflm-run.py");
    assert!(
        out.status.success(),
        "tflm-run.py: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut compared = 0;
    // Random low-bit models can collapse to one output; most must not.
    let mut degenerate = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let (rs, r) = read_i8(&dir.path().join(format!("releq{i}.npy")));
        let (ts, t) = read_i8(&dir.path().join(format!("tflm{i}.npy")));
        assert_eq!(rs, ts, "{}: output shapes", c.name);
        let n = rs[0];
        assert!(n >= INPUTS, "{}: {n} inputs", c.name);
        let bad: Vec<usize> = (0..t.len()).filter(|&k| r[k] != t[k]).collect();
        assert!(
            bad.is_empty(),
            "{}: {} of {} output codes differ between releq eval and TFLite Micro (first at flat index {})",
            c.name,
            bad.len(),
            t.len(),
            bad[0]
        );
        if let Some(e) = &c.expected {
            assert_eq!(read_i8(e).1, t, "{}: TFLite Micro's stored outputs", c.name);
        }
        let distinct: std::collections::HashSet<&[i8]> = t.chunks(rs[1]).collect();
        if distinct.len() == 1 {
            degenerate.push(c.name.clone());
        }
        compared += n;
    }
    assert!(degenerate.len() * 5 <= cases.len(), "constant outputs: {degenerate:?}");
    assert!(int4_fc >= 6, "INT4 FULLY_CONNECTED layers: {int4_fc}");
    assert!(
        int4_layers >= 20 && clamp_ops >= 30 && padv2 >= 1,
        "int4 layers {int4_layers}, clamp ops {clamp_ops}, PADV2 (padded max pools) {padv2}"
    );
    eprintln!(
        "{} models, {compared} inputs, 0 mismatches; {int4_layers} INT4 layers ({int4_fc} dense), {clamp_ops} MAXIMUM/MINIMUM ops, {padv2} PADV2; constant outputs: {degenerate:?}; refused: {refused:?}",
        cases.len()
    );
}
