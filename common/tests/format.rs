//! The `.releq` format: round trips, every rejection with its own error, and
//! the arena plan checked against a naive executor.

use rand::rngs::StdRng;
use rand::SeedableRng;
use releq_common::builder::OwnedModel;
use releq_common::kernels::reference as k;
use releq_common::model::{FormatError, Layer, Model, FORMAT_VERSION, HEADER_LEN};
use releq_common::testing::{random_input, random_model};
use releq_common::validate::{Field, ModelError, Plan, Problem};

#[test]
fn encode_decode_roundtrip_every_layer_kind() {
    for seed in 0..20 {
        let owned = random_model(seed, true);
        let bytes = owned.encode().unwrap();
        let model = Model::decode(&bytes).unwrap();
        assert_eq!(model, owned.view().unwrap());
        assert_eq!(OwnedModel::from_model(&model), owned);
        // Zero copy: the weights point into the blob.
        let w = model.layers[0].weights().unwrap();
        let range = bytes.as_ptr_range();
        assert!(range.contains(&w.packed.as_ptr()));
        let kinds: Vec<_> = model.layers.iter().map(|l| l.kind()).collect();
        for kind in ["conv2d", "dwconv2d", "dense", "maxpool2d", "avgpool2d", "add", "reshape"] {
            assert!(kinds.contains(&kind), "{kind} missing");
        }
    }
}

#[test]
fn encode_to_slice_matches_encode() {
    let owned = random_model(3, true);
    let bytes = owned.encode().unwrap();
    let mut buf = vec![0u8; bytes.len() + 10];
    let model = owned.view().unwrap();
    assert_eq!(model.encode_to_slice(&mut buf).unwrap(), &bytes[..]);
    let mut small = vec![0u8; bytes.len() - 1];
    assert!(model.encode_to_slice(&mut small).is_err());
}

fn invalid(owned: &OwnedModel) -> ModelError {
    Plan::new(owned.view().unwrap()).unwrap_err()
}

fn plan_err(bytes: &[u8]) -> ModelError {
    Plan::from_bytes(bytes).unwrap_err()
}

#[test]
fn flipped_byte_is_a_crc_error() {
    let bytes = random_model(1, true).encode().unwrap();
    for pos in [HEADER_LEN, HEADER_LEN + 7, bytes.len() / 2, bytes.len() - 1] {
        let mut bad = bytes.clone();
        bad[pos] ^= 0x10;
        assert!(matches!(plan_err(&bad), ModelError::Format(FormatError::Crc { .. })), "byte {pos}");
    }
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(plan_err(&bad), ModelError::Format(FormatError::BadMagic { found: *b"XELQ" }));
}

#[test]
fn truncated_file_is_reported_as_truncated() {
    let bytes = random_model(1, true).encode().unwrap();
    let e = plan_err(&bytes[..bytes.len() - 5]);
    let declared = (bytes.len() - HEADER_LEN) as u32;
    assert_eq!(e, ModelError::Format(FormatError::Truncated { declared, available: declared - 5 }));
    assert!(e.to_string().contains("truncated"));
    assert_eq!(plan_err(&bytes[..10]), ModelError::Format(FormatError::TooShortForHeader { len: 10 }));
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(plan_err(&long), ModelError::Format(FormatError::TrailingBytes { extra: 1, .. })));
}

#[test]
fn wrong_version_is_rejected_before_decoding() {
    let mut bytes = random_model(1, true).encode().unwrap();
    bytes[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    let e = plan_err(&bytes);
    assert_eq!(e, ModelError::Format(FormatError::UnsupportedVersion { found: FORMAT_VERSION + 1 }));
    assert!(e.to_string().contains("version 2"), "{e}");
}

#[test]
fn out_of_range_bitwidths_name_layer_and_field() {
    let mut owned = random_model(1, false);
    if let Some(w) = owned.layers[2].1.as_mut() {
        w.bits = 9;
    }
    let e = invalid(&owned).to_string();
    assert!(e.contains("layer 2 field `wbits`: 9 is outside 2..=8"), "{e}");

    let mut owned = random_model(1, false);
    if let Layer::Dense(d) = &mut owned.layers[7].0 {
        d.out.bits = 1;
    }
    let e = invalid(&owned).to_string();
    assert!(e.contains("layer 7 field `abits`: 1 is outside 2..=8"), "{e}");

    let mut owned = random_model(1, false);
    owned.input_quant.bits = 12;
    let e = invalid(&owned).to_string();
    assert!(e.contains("model field `input_quant`: 12 is outside 2..=8"), "{e}");
}

#[test]
fn shapes_that_do_not_chain_are_rejected() {
    // A reshape to a different element count.
    let mut owned = random_model(1, true);
    if let Layer::Reshape(r) = &mut owned.layers[6].0 {
        r.shape.c = 33;
    }
    let e = invalid(&owned);
    assert_eq!(
        e,
        ModelError::Layer {
            layer: 6,
            field: Field::Shape,
            problem: Problem::SizeMismatch { expected: 32, actual: 33 }
        }
    );
    // A dense layer wired to the wrong tensor: its weights no longer match.
    let mut owned = random_model(1, true);
    if let Layer::Dense(d) = &mut owned.layers[8].0 {
        d.input = 5; // the 4x4x8 max-pool output (128 values); its weights are for 16
    }
    let e = invalid(&owned);
    assert!(
        matches!(e, ModelError::Layer { layer: 8, field: Field::Weights, problem: Problem::Length { .. } }),
        "{e:?}"
    );
    // A residual add of tensors of different shapes.
    let mut owned = random_model(1, true);
    if let Layer::Add(a) = &mut owned.layers[3].0 {
        a.other = 1;
    }
    let e = invalid(&owned);
    assert!(e.to_string().contains("layer 3 field `other`: shape 10x10x8 does not chain: expected 5x5x8"), "{e}");
    // A layer reading a tensor that does not exist yet.
    let mut owned = random_model(1, true);
    if let Layer::MaxPool2d(p) = &mut owned.layers[4].0 {
        p.input = 7;
    }
    let e = invalid(&owned);
    assert_eq!(e, ModelError::Layer { layer: 4, field: Field::Input, problem: Problem::NotYetProduced { tensor: 7 } });
}

#[test]
fn byte_arrays_must_have_exact_lengths() {
    let mut owned = random_model(2, true);
    owned.layers[0].1.as_mut().unwrap().packed.push(0);
    let e = invalid(&owned);
    assert!(matches!(e, ModelError::Layer { layer: 0, field: Field::Weights, problem: Problem::Length { .. } }));
    let mut owned = random_model(2, true);
    owned.layers[1].1.as_mut().unwrap().bias.pop();
    let e = invalid(&owned);
    assert!(matches!(e, ModelError::Layer { layer: 1, field: Field::Bias, problem: Problem::Length { .. } }));
    let mut owned = random_model(2, true);
    owned.layers[2].1.as_mut().unwrap().shift[0] = 40;
    let e = invalid(&owned);
    assert!(matches!(e, ModelError::Layer { layer: 2, field: Field::Shift, problem: Problem::OutOfRange { .. } }));
}

/// Hand-computed plan of `random_model` (see `releq_common::testing`): tensor
/// sizes 300, 800, 200, 200, 200, 128, 32, (alias), 16, 10; the peak is the
/// input and the first conv's output alive together: 300 + 800. Largest
/// first: t1 at 0, t0 after it at 800, t2 (alive with t1) at 800, t3 at 0,
/// t4 (alive with t2 and t3) at 200, t5 at 0, t6 and its alias t7 at 128,
/// t8 at 0, t9 at 16. Then the kernels' scratch: the largest is a
/// convolution's (`conv2d_scratch`), checked against the layers here.
#[test]
fn arena_size_is_the_computed_peak() {
    let owned = random_model(1, true);
    let plan = owned.plan().unwrap();
    assert_eq!(plan.scratch_offset, 1100);
    let scratch = plan
        .model
        .layers
        .iter()
        .map(|l| releq_common::kernels::scratch_bytes(l, plan.tensors[l.input() as usize].shape))
        .max()
        .unwrap();
    assert!(scratch > 0);
    assert_eq!(plan.arena_bytes, 1100 + scratch.next_multiple_of(4));
    let offsets: Vec<u32> = plan.tensors.iter().map(|t| t.offset).collect();
    assert_eq!(offsets, vec![800, 0, 800, 0, 200, 0, 128, 128, 0, 16]);
}

/// Run each layer with fresh buffers (no arena sharing) and compare with the
/// planned arena execution: any overlap bug in the planner shows up here.
#[test]
fn arena_execution_equals_naive_execution() {
    for seed in 0..30 {
        let owned = random_model(seed, true);
        let plan = owned.plan().unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let input = random_input(&mut rng, &plan);
        let mut arena = vec![0i8; plan.arena_bytes];
        let got = plan.run(&mut arena, &input).unwrap().to_vec();

        let mut t: Vec<Vec<i8>> = vec![input.clone()];
        for (i, layer) in plan.model.layers.iter().enumerate() {
            let out_t = plan.tensors[i + 1];
            let in_t = plan.tensors[layer.input() as usize];
            let x = t[layer.input() as usize].clone();
            let mut y = vec![0i8; out_t.shape.len()];
            let zp = in_t.quant.zero_point;
            match layer {
                Layer::Conv2d(l) => k::conv2d(l, in_t.shape, zp, &x, out_t.shape, &mut y),
                Layer::DepthwiseConv2d(l) => k::depthwise_conv2d(l, in_t.shape, zp, &x, out_t.shape, &mut y),
                Layer::Dense(l) => k::dense(l, zp, &x, &mut y),
                Layer::MaxPool2d(p) => k::max_pool(p, in_t.shape, &x, out_t.shape, &mut y),
                Layer::AvgPool2d(p) => k::avg_pool(p, in_t.shape, &x, out_t.shape, &mut y),
                Layer::Add(a) => {
                    let o = plan.tensors[a.other as usize];
                    k::add(a, zp, &x, o.quant.zero_point, &t[a.other as usize], &mut y)
                }
                Layer::Reshape(_) => y.copy_from_slice(&x),
            }
            t.push(y);
        }
        assert_eq!(&got, t.last().unwrap(), "seed {seed}");
    }
}

#[test]
fn run_rejects_bad_inputs() {
    let owned = random_model(4, false);
    let plan = owned.plan().unwrap();
    let mut arena = vec![0i8; plan.arena_bytes];
    let e = plan.run(&mut arena, &[0; 5]).unwrap_err();
    assert_eq!(e.to_string(), "input has 5 values, the model takes 300");
    let mut small = vec![0i8; plan.arena_bytes - 1];
    assert!(plan.run(&mut small, &[0; 300]).is_err());
    // Input codes outside a 4-bit input's range.
    let mut owned = random_model(4, false);
    owned.input_quant.bits = 4;
    owned.input_quant.zero_point = -8;
    let plan = owned.plan().unwrap();
    let mut input = vec![0i8; 300];
    input[17] = 8;
    let e = plan.run(&mut arena, &input).unwrap_err();
    assert_eq!(e.to_string(), "input value 8 at index 17 is outside the 4-bit range");
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Found by `cargo fuzz run model_payload` (fuzz/regressions/): a dense
/// layer with a 4-bit output whose clamp 100..=100 lies outside -8..=7 used to
/// pass validation and make the kernel's `clamp` panic.
#[test]
fn regression_clamp_outside_the_bit_range_is_rejected() {
    let bytes = hex("52454c510100000029000000e2750ae0000101010000803fff01080102000100c801c8010000803f0004080101040000000004000000400100");
    let e = Plan::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        e,
        ModelError::Layer {
            layer: 0,
            field: Field::Clamp,
            problem: Problem::OutOfRange { value: 100, min: -8, max: 7 }
        }
    );
}

/// Found by reading the kernels while fuzzing: a multiplier that saturates
/// plus a zero point of 127 used to overflow `i32` (a panic with overflow
/// checks, a wrong -128 without). The sum now saturates: the output is 127.
#[test]
fn regression_requantized_value_plus_zero_point_saturates() {
    let bytes = hex("52454c51010000002a000000b2172454000101010000803fff01080102000100ff01fe010000803ffe010808017f040000000004ffffff7f011e");
    let plan = Plan::from_bytes(&bytes).unwrap();
    let mut arena = vec![0i8; plan.arena_bytes];
    let n = plan.input().shape.len();
    let bits = plan.input().quant.bits;
    let input = vec![releq_common::quant::act_max(bits) as i8; n];
    let out = plan.run(&mut arena, &input).unwrap();
    assert!(out.iter().all(|&v| v as i32 == releq_common::quant::act_max(plan.output().quant.bits)), "{out:?}");
}

#[test]
fn oversized_tensors_are_rejected_before_any_arithmetic() {
    let mut owned = random_model(1, false);
    owned.input_shape = releq_common::Shape::new(4096, 4096, 3);
    let e = invalid(&owned);
    assert!(matches!(e, ModelError::Model { field: Field::InputShape, problem: Problem::OutOfRange { .. } }), "{e:?}");
}

/// Every input the fuzzers ever crashed on (fuzz/regressions/) now decodes to
/// an error or runs without a panic.
#[test]
fn fuzz_regressions_no_longer_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut seen = 0;
    for (dir, payload_only) in [("model_decode", false), ("model_payload", true)] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        for e in entries {
            let raw = std::fs::read(e.unwrap().path()).unwrap();
            let bytes = if payload_only {
                let mut b = b"RELQ".to_vec();
                b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
                b.extend_from_slice(&[0, 0]);
                b.extend_from_slice(&(raw.len() as u32).to_le_bytes());
                b.extend_from_slice(&releq_common::model::CRC32.checksum(&raw).to_le_bytes());
                b.extend_from_slice(&raw);
                b
            } else {
                raw
            };
            if let Ok(plan) = Plan::from_bytes(&bytes) {
                let mut arena = vec![0i8; plan.arena_bytes];
                let input = vec![plan.input().quant.zero_point as i8; plan.input().shape.len()];
                plan.run(&mut arena, &input).unwrap();
            }
            seen += 1;
        }
    }
    assert!(seen >= 5, "regression inputs not found under {}", root.display());
}
