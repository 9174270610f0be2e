//! Writes the hand-made minimal reproducers of the panics found while
//! fuzzing into `fuzz/regressions/` (the fuzzer-found originals sit beside
//! them). Each is a one-layer model: input 1x1x1 (8 bits, zero point -128),
//! one Dense layer with a single 8-bit weight.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example make_regressions`

use releq_common::builder::{OwnedModel, OwnedWeights, NO_WEIGHTS};
use releq_common::model::{Activation, Clamp, Dense, Layer, Shape, TensorQuant, HEADER_LEN};
use releq_common::quant::QuantizedMultiplier;
use std::path::Path;

fn dense(clamp: Clamp, out: TensorQuant, rq: QuantizedMultiplier, w: i8) -> Vec<u8> {
    let mut m = OwnedModel::new("", Shape::new(1, 1, 1), TensorQuant { scale: 1.0, zero_point: -128, bits: 8 });
    let d = Dense { input: 0, out_features: 1, act: Activation::None, clamp, out, w: NO_WEIGHTS };
    m.push(Layer::Dense(d), Some(OwnedWeights::new(8, &[w], 1, &[0], &[rq]).expect("in range")));
    m.encode().expect("validates")
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    // 1. Clamp [100, 100] on a 4-bit output (codes -8..=7): validation only
    //    checks min <= max, the kernel clamps to [max(100,-8), min(100,7)] =
    //    [100, 7] and `i32::clamp` panics.
    let clamp = dense(
        Clamp { min: 100, max: 100 },
        TensorQuant { scale: 1.0, zero_point: 0, bits: 4 },
        QuantizedMultiplier { multiplier: 1 << 30, shift: 0 },
        1,
    );
    // 2. Multiplier i32::MAX, shift 30 (both in the validated range) and
    //    output zero point 127: the requantized accumulator saturates near
    //    i32::MAX and `+ zero_point` overflows (panic with overflow checks,
    //    silent wrap to the lowest code in release builds).
    let overflow = dense(
        Clamp { min: -128, max: 127 },
        TensorQuant { scale: 1.0, zero_point: 127, bits: 8 },
        QuantizedMultiplier { multiplier: i32::MAX, shift: 30 },
        127,
    );
    for (name, blob) in [("clamp_outside_bits_dense", &clamp), ("requant_zero_point_overflow_dense", &overflow)] {
        for (dir, bytes) in [("model_decode", &blob[..]), ("model_payload", &blob[HEADER_LEN..])] {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).expect("mkdir");
            let p = d.join(format!("{name}.bin"));
            std::fs::write(&p, bytes).expect("write");
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("{} ({} bytes): {hex}", p.display(), bytes.len());
        }
    }
}
