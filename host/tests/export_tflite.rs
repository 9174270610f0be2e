//! `.tflite` export on the host, no Python: `releq_host::tflexport` writes a
//! file that the importer reads back into the same model (int8 weights,
//! 8-bit activations: the importer's scope), and whose outputs equal the
//! original's on random inputs. Low-bit models (INT4 weights, MAXIMUM /
//! MINIMUM clamps) must give files the flatbuffers verifier accepts; models
//! TFLite cannot express must be refused with errors naming layer and
//! channel. The TFLite Micro comparison is `tests/tests/export_tflm.rs`.

use releq_common::builder::OwnedModel;
use releq_common::model::{Layer, Padding};
use releq_common::testing::{lenet5_random, random_input, random_model};
use releq_common::Plan;
use releq_host::import::import_tflite;
use releq_host::tflexport::{export_tflite, TflExportError};
use std::path::PathBuf;

use rand::{rngs::StdRng, SeedableRng};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tflite")
}

/// Export, import back, and compare the two models' outputs on `n` random
/// inputs; returns the re-imported model.
fn round_trip(m: &OwnedModel, n: usize, seed: u64) -> OwnedModel {
    let plan = m.plan().unwrap();
    let ex = export_tflite(&plan).unwrap_or_else(|e| panic!("{}: {e}", plan.model.name));
    let back = import_tflite(&ex.bytes, plan.model.name).unwrap_or_else(|e| panic!("{}: {e}", plan.model.name)).model;
    {
        let plan2 = back.plan().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut a1, mut a2) = (vec![0i8; plan.arena_bytes], vec![0i8; plan2.arena_bytes]);
        let mut distinct = std::collections::HashSet::new();
        for k in 0..n {
            let x = random_input(&mut rng, &plan);
            let y1 = plan.run(&mut a1, &x).unwrap().to_vec();
            let y2 = plan2.run(&mut a2, &x).unwrap();
            assert_eq!(y1, y2, "{}: input {k}: outputs differ after export + import", plan.model.name);
            distinct.insert(y1);
        }
        assert!(distinct.len() > n / 2, "{}: only {} distinct outputs on {n} inputs", plan.model.name, distinct.len());
    }
    back
}

#[test]
fn int8_models_round_trip_through_tflite() {
    for seed in 1..=3 {
        let m = lenet5_random(seed, [8; 5], [8; 5]);
        let back = round_trip(&m, 30, seed);
        assert_eq!(back.encode().unwrap(), m.encode().unwrap(), "lenet5 seed {seed}: a different model came back");
    }
    for seed in 1..=6 {
        let m = random_model(seed, false);
        let back = round_trip(&m, 30, seed);
        assert_eq!(back.encode().unwrap(), m.encode().unwrap(), "random-{seed}: a different model came back");
    }
}

#[test]
fn imported_fixtures_export_to_the_same_model() {
    for name in ["lenet", "dwres", "fc_tensor", "dynbatch"] {
        let bytes = std::fs::read(fixtures().join(format!("{name}.tflite"))).unwrap();
        let m = import_tflite(&bytes, name).unwrap().model;
        let ex = export_tflite(&m.plan().unwrap()).unwrap();
        let kinds: Vec<&str> = ex.layers.iter().flat_map(|l| l.ops.iter().copied()).collect();
        if name == "dwres" {
            for op in ["MEAN", "PAD", "ADD", "DEPTHWISE_CONV_2D"] {
                assert!(kinds.contains(&op), "dwres export has no {op}: {kinds:?}");
            }
        }
        let back = import_tflite(&ex.bytes, name).unwrap().model;
        assert_eq!(back.encode().unwrap(), m.encode().unwrap(), "{name}: a different model came back");
        round_trip(&m, 10, 7);
    }
}

#[test]
fn low_bit_models_use_int4_and_clamps() {
    let m = lenet5_random(4, [4, 2, 3, 4, 8], [3, 4, 2, 7, 8]);
    let ex = export_tflite(&m.plan().unwrap()).unwrap();
    releq_host::import::tflite::read(&ex.bytes).expect("the flatbuffers verifier accepts the file");
    let l = &ex.layers;
    assert_eq!(l[0].weight_type, Some("INT4"), "conv1 w4: {:?}", l[0]);
    assert_eq!(l[2].weight_type, Some("INT4"), "conv2 w2: {:?}", l[2]);
    // Dense layers with per-channel requantisation stay INT8.
    assert_eq!(l[5].weight_type, Some("INT8"), "{:?}", l[5]);
    assert_eq!(l[0].ops, ["CONV_2D", "MINIMUM"], "3-bit ReLU output: {:?}", l[0]);
    assert_eq!(l[0].clamp, Some([-4, 3]));
    assert_eq!(l[7].ops, ["FULLY_CONNECTED"], "8-bit output, no activation: {:?}", l[7]);
    // INT4 halves the conv filters: 150 and 2,400 weights.
    let int8 = export_tflite(&lenet5_random(4, [8, 8, 3, 4, 8], [3, 4, 2, 7, 8]).plan().unwrap()).unwrap();
    assert_eq!(int8.weight_bytes - ex.weight_bytes, (150 - 75) + (2400 - 1200));
    // Every all-kinds mix exports.
    for seed in 1..=20 {
        let m = random_model(seed, true);
        let ex = export_tflite(&m.plan().unwrap()).unwrap_or_else(|e| panic!("random-{seed}: {e}"));
        releq_host::import::tflite::read(&ex.bytes).unwrap();
    }
}

#[test]
fn inexpressible_models_are_refused() {
    // A multiplier one step off: no f32 filter scale gives it.
    let m = lenet5_random(5, [8; 5], [8; 5]);
    let plan = m.plan().unwrap();
    let mut mult = plan.model.layers[2].weights().unwrap().multiplier.to_vec();
    let m3 = i32::from_le_bytes(mult[12..16].try_into().unwrap()) + 1;
    mult[12..16].copy_from_slice(&m3.to_le_bytes());
    let mut model = plan.model.clone();
    if let Some(w) = model.layers[2].weights_mut() {
        w.multiplier = &mult;
    }
    let err = export_tflite(&Plan::new(model).unwrap()).unwrap_err();
    assert!(matches!(err, TflExportError::NoFilterScale { layer: 2, channel: 3, .. }), "{err}");
    assert!(err.to_string().contains("layer 2 (conv2d) channel 3"), "{err}");

    // An average pool padded on one side only is neither SAME nor VALID.
    let m = random_model(1, false);
    let mut model = m.plan().unwrap().model.clone();
    let Layer::AvgPool2d(p) = &mut model.layers[5] else { panic!("layer 5 is the average pool") };
    p.pad = Padding { top: 1, left: 0, bottom: 0, right: 0 };
    let err = export_tflite(&Plan::new(model).unwrap()).unwrap_err();
    assert!(err.to_string().starts_with("layer 5 (avgpool2d): padding [1, 0, 0, 0] is neither SAME"), "{err}");
    // A max pool with the same padding is a PADV2 (-128) and a VALID pool
    // (the validator keeps padding below the window, so every window keeps
    // an input pixel).
    let mut model = m.plan().unwrap().model.clone();
    let Layer::MaxPool2d(p) = &mut model.layers[4] else { panic!("layer 4 is the max pool") };
    p.pad = Padding { top: 1, left: 0, bottom: 0, right: 0 };
    let ex = export_tflite(&Plan::new(model).unwrap()).unwrap();
    assert_eq!(ex.layers[4].ops, ["PADV2", "MAX_POOL_2D"]);
}
