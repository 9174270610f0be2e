//! The device's kernels against the host's reference kernels, bit for bit,
//! under QEMU: the same random one-layer models as the host's kernel test
//! body (`releq_common::testing::random_layer_model`: convolutions with 1 to
//! 33 input channels, depthwise, dense, pooling; odd channels and pixels,
//! partial weight groups, padding; every weight, input and output bitwidth
//! 2..=8) run on the firmware, whose `Native` kernels are the ARM DSP set on
//! qemu-m4 and qemu-m7 and the portable set on qemu-m3.
//!
//! Each model is a fresh QEMU start (about 0.1 s). Without
//! `qemu-system-arm` on PATH the tests print a note and pass.

use rand::rngs::StdRng;
use rand::SeedableRng;
use releq_common::kernels::{first, Reference};
use releq_common::model::Layer;
use releq_common::testing::{random_input, random_layer_model};
use releq_common::Plan;
use releq_host::boards;
use releq_host::device::qemu::find_qemu;
use releq_host::device::{Device, QemuDevice, QemuOptions};
use std::time::Duration;

fn kernels_match_on(board: &str, seeds: impl IntoIterator<Item = u64>) {
    let seeds: Vec<u64> = seeds.into_iter().collect();
    if find_qemu().is_err() {
        eprintln!("note: qemu-system-arm is not on PATH; skipping");
        return;
    }
    let b = boards::load(board).unwrap();
    let opts = QemuOptions { timeout: Duration::from_secs(120), ..QemuOptions::default() };
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut skipped = 0;
    let n = seeds.len();
    for seed in seeds {
        let owned = random_layer_model(seed);
        let blob = owned.encode().unwrap();
        let plan = Plan::from_bytes(&blob).unwrap();
        if plan.input().shape.len() > 3500 {
            skipped += 1; // the input does not fit one request frame
            continue;
        }
        let path = dir.path().join(format!("layer-{seed}.releq"));
        std::fs::write(&path, &blob).unwrap();
        let mut dev = QemuDevice::start(&b, Some(&path), &opts).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut arena = vec![0i8; plan.arena_bytes];
        for _ in 0..2 {
            let input = random_input(&mut rng, &plan);
            let want = plan.run_with::<Reference>(&mut arena, &input).unwrap().to_vec();
            let got = dev.run(&input).unwrap().output;
            if got != want {
                let at = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(0);
                failures.push(format!(
                    "seed {seed}: output {at}: device {} host {} ({:?})",
                    got[at], want[at], plan.model.layers[0]
                ));
                break;
            }
        }
    }
    assert!(skipped * 5 < n, "{board}: {skipped} of {n} models skipped");
    assert!(failures.is_empty(), "{board}: {} of {n} models differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn arm_dsp_kernels_match_reference_on_qemu_m4() {
    kernels_match_on("qemu-m4", 0..120);
}

#[test]
fn arm_dsp_kernels_match_reference_on_qemu_m7() {
    kernels_match_on("qemu-m7", 1000..1050);
}

#[test]
fn portable_kernels_match_reference_on_qemu_m3() {
    kernels_match_on("qemu-m3", 2000..2050);
}

/// Seeds from `from` whose layer [`first`] takes: `n_any` of them, then
/// `n_asm` more of each hand-scheduled pass's shape (stride 1, one channel,
/// 4- or 5-wide kernel: `nw` 3; 2- or 3-wide: `nw` 2).
fn first_conv_seeds(from: u64, n_any: usize, n_asm: usize) -> Vec<u64> {
    let (mut any, mut asm3, mut asm2) = (Vec::new(), Vec::new(), Vec::new());
    for seed in from.. {
        if any.len() >= n_any && asm3.len() >= n_asm && asm2.len() >= n_asm {
            break;
        }
        let owned = random_layer_model(seed);
        let Ok(plan) = owned.plan() else { continue };
        let Layer::Conv2d(l) = &plan.model.layers[0] else { continue };
        let s = plan.input().shape;
        if !first::applies(l, s) {
            continue;
        }
        let asm = match first::nw(l.kw as usize) {
            _ if s.c != 1 || l.stride_w != 1 => None,
            3 => Some(&mut asm3),
            2 => Some(&mut asm2),
            _ => None,
        };
        match asm {
            Some(v) if v.len() < n_asm => v.push(seed),
            Some(_) => {}
            None if any.len() < n_any => any.push(seed),
            None => {}
        }
    }
    any.into_iter().chain(asm3).chain(asm2).collect()
}

/// The first-convolution kernel (1 to 3 input channels), DSP set, with its
/// hand-scheduled row loop.
#[test]
fn first_conv_kernels_match_reference_on_qemu_m4() {
    kernels_match_on("qemu-m4", first_conv_seeds(10_000, 30, 30));
}

/// The same on the Cortex-M7 model.
#[test]
fn first_conv_kernels_match_reference_on_qemu_m7() {
    kernels_match_on("qemu-m7", first_conv_seeds(20_000, 10, 10));
}

/// The first-convolution kernel, portable set.
#[test]
fn first_conv_portable_kernels_match_reference_on_qemu_m3() {
    kernels_match_on("qemu-m3", first_conv_seeds(30_000, 15, 10));
}

/// Seeds from `from` whose layer runs [`releq_common::kernels::fast`]'s
/// blocked loops with 8-, 4- or 2-bit weights (the hand-scheduled 2 x 2
/// convolution and two-row dense loops): `n` of each kind and width with at
/// least two output channels and one whole block of weights, and `n` of
/// each kind and width with rows longer than one scaled partial sum
/// ([`releq_common::kernels::fast::CHUNK`] weights).
fn blocked_seeds(from: u64, n: usize) -> Vec<u64> {
    use releq_common::kernels::fast::CHUNK;
    let keys: Vec<(bool, u8, bool)> = [true, false]
        .iter()
        .flat_map(|&c| [8, 4, 2].iter().flat_map(move |&b| [(c, b, false), (c, b, true)]))
        .collect();
    let mut found: Vec<((bool, u8, bool), u64)> = Vec::new();
    let count = |f: &Vec<((bool, u8, bool), u64)>, key| f.iter().filter(|e| e.0 == key).count();
    for seed in from..from + 200_000 {
        if keys.iter().all(|&key| count(&found, key) >= n) {
            break;
        }
        let owned = random_layer_model(seed);
        let Ok(plan) = owned.plan() else { continue };
        let s = plan.input().shape;
        let (conv, bits, k, outs) = match &plan.model.layers[0] {
            Layer::Conv2d(l) if !first::applies(l, s) => {
                (true, l.w.bits, l.kh as usize * l.kw as usize * s.c as usize, l.out_c as usize)
            }
            Layer::Dense(l) => (false, l.w.bits, s.len(), l.out_features as usize),
            _ => continue,
        };
        let key = (conv, bits, k > CHUNK);
        if [8, 4, 2].contains(&bits) && k >= 32 && outs >= 2 && count(&found, key) < n {
            found.push((key, seed));
        }
    }
    found.into_iter().map(|e| e.1).collect()
}

/// The blocked loops at 8, 4 and 2 weight bits, DSP set.
#[test]
fn blocked_kernels_match_reference_on_qemu_m4() {
    kernels_match_on("qemu-m4", blocked_seeds(40_000, 4));
}

/// The same on the Cortex-M7 model.
#[test]
fn blocked_kernels_match_reference_on_qemu_m7() {
    kernels_match_on("qemu-m7", blocked_seeds(50_000, 2));
}
