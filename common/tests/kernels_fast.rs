//! The fast kernels against the reference, bit for bit: one test body
//! ([`releq_common::testing::check_kernels`]) instantiated for every kernel
//! set the host can run. The ARM DSP set runs the same body under QEMU
//! (`tests/tests/kernels_qemu.rs`).

use rand::{rngs::StdRng, SeedableRng};
use releq_common::kernels::{first, Kernels, Portable, Reference};
use releq_common::model::Layer;
use releq_common::testing::{check_kernels, lenet5_random, random_input, random_layer_model, random_model};

fn random_layers<K: Kernels>(cases: u64) {
    let failures: Vec<String> = (0..cases).filter_map(|s| check_kernels::<K>(s).err()).collect();
    assert!(failures.is_empty(), "{} of {cases} cases differ:\n{}", failures.len(), failures.join("\n"));
}

fn whole_models<K: Kernels>() {
    let mut models: Vec<_> = (0..20).map(|s| random_model(s, true)).collect();
    for (seed, w, a) in
        [(1, [8; 5], [8; 5]), (2, [2, 3, 4, 5, 6], [7, 6, 5, 4, 3]), (3, [2; 5], [2; 5]), (4, [4; 5], [8; 5])]
    {
        models.push(lenet5_random(seed, w, a));
    }
    for (i, owned) in models.iter().enumerate() {
        let plan = owned.plan().unwrap();
        let mut rng = StdRng::seed_from_u64(i as u64);
        for _ in 0..3 {
            let input = random_input(&mut rng, &plan);
            let mut a = vec![0i8; plan.arena_bytes];
            let mut b = vec![0i8; plan.arena_bytes];
            let want = plan.run_with::<Reference>(&mut a, &input).unwrap().to_vec();
            assert_eq!(plan.run_with::<K>(&mut b, &input).unwrap(), &want[..], "{} on {}", K::NAME, plan.model.name);
        }
    }
}

#[test]
fn portable_matches_reference_on_random_layers() {
    random_layers::<Portable>(3000);
}

#[test]
fn portable_matches_reference_on_whole_models() {
    whole_models::<Portable>();
}

/// The reference against itself: the body can pass.
#[test]
fn reference_matches_itself() {
    random_layers::<Reference>(50);
}

/// What [`first`] does with seed `seed`'s layer: `None` when it does not
/// apply, else whether it is the shape of the hand-scheduled pass (stride 1,
/// one channel, 2- to 5-wide kernel) and whether the plain-Rust pass has a
/// compile-time form for it (`first.rs`'s `pass_const`: 3x3 and 5x5 on one
/// or three channels).
fn first_shape(seed: u64) -> Option<(bool, bool)> {
    let owned = random_layer_model(seed);
    let plan = owned.plan().ok()?;
    let Layer::Conv2d(l) = &plan.model.layers[0] else { return None };
    let s = plan.input().shape;
    let (c, kw, sw, kh) = (s.c as usize, l.kw as usize, l.stride_w as usize, l.kh as usize);
    let fixed = matches!(
        (first::nw(kw * c), sw * c, kh),
        (2, 1, 3) | (2, 2, 3) | (3, 1, 5) | (3, 2, 5) | (5, 3, 3) | (5, 6, 3) | (8, 3, 5)
    );
    first::applies(l, s).then_some((s.c == 1 && l.stride_w == 1 && (2..=3).contains(&first::nw(l.kw as usize)), fixed))
}

/// The first-convolution kernel on many of its cases (1 to 3 input
/// channels, every kernel size, stride, padding and bitwidth the random
/// layers draw), bit for bit.
#[test]
fn portable_matches_reference_on_first_convolutions() {
    let (mut n, mut asm_shaped, mut fixed_shaped) = (0, 0, 0);
    let mut failures = Vec::new();
    for seed in 0..30_000 {
        let Some((asm, fixed)) = first_shape(seed) else { continue };
        n += 1;
        asm_shaped += asm as usize;
        fixed_shaped += fixed as usize;
        if let Err(e) = check_kernels::<Portable>(seed) {
            failures.push(e);
        }
    }
    eprintln!("first-convolution cases: {n}, asm shape: {asm_shaped}, compile-time pass shape: {fixed_shaped}");
    assert!(n >= 2500 && asm_shaped >= 100, "only {n} first-convolution cases ({asm_shaped} of the asm shape)");
    assert!(fixed_shaped >= 200, "only {fixed_shaped} first-convolution cases of a compile-time pass shape");
    assert!(failures.is_empty(), "{} of {n} cases differ:\n{}", failures.len(), failures.join("\n"));
}

/// Pooling, called directly, over a grid of shapes that the random layers
/// reach rarely (2 x 2 windows without padding take their own path), and
/// every channel count 1 to 9 (words, overlapping last words, bytes).
#[test]
fn portable_pools_match_reference_on_a_grid() {
    use rand::Rng;
    use releq_common::model::{Padding, Pool, Shape};
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases = 0;
    for c in (1..=9u16).chain([16, 17]) {
        for (kh, kw) in [(1, 1), (2, 2), (2, 3), (3, 2), (3, 3)] {
            for (sh, sw) in [(1, 1), (2, 2), (1, 2), (3, 1)] {
                for padded in [false, true] {
                    let pad = if padded {
                        Padding { top: kh - 1, left: kw - 1, bottom: (kh - 1) / 2, right: 0 }
                    } else {
                        Padding { top: 0, left: 0, bottom: 0, right: 0 }
                    };
                    let (ih, iw) = (rng.gen_range(kh as u16..=9), rng.gen_range(kw as u16..=9));
                    let p = Pool { input: 0, kh, kw, stride_h: sh, stride_w: sw, pad };
                    let oh = (ih + (pad.top + pad.bottom) as u16 - kh as u16) / sh as u16 + 1;
                    let ow = (iw + (pad.left + pad.right) as u16 - kw as u16) / sw as u16 + 1;
                    let (s, os) = (Shape::new(ih, iw, c), Shape::new(oh, ow, c));
                    let x: Vec<i8> = (0..s.len()).map(|_| rng.gen()).collect();
                    let (mut want, mut got) = (vec![0i8; os.len()], vec![0x55i8; os.len()]);
                    Reference::max_pool(&p, s, &x, os, &mut want);
                    Portable::max_pool(&p, s, &x, os, &mut got);
                    assert_eq!(got, want, "max {p:?} {s:?}");
                    Reference::avg_pool(&p, s, &x, os, &mut want);
                    Portable::avg_pool(&p, s, &x, os, &mut got);
                    assert_eq!(got, want, "avg {p:?} {s:?}");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 11 * 5 * 4 * 2);
}
