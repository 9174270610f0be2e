//! Fake quantization computes exactly the integer model's codes: every
//! tensor of `Net::forward_all_fq`, requantized to its plan's codes, equals
//! the tensor the exported integer model computes (host fast path, itself
//! bit-exact with the device's reference kernels), for every zoo model at
//! several bitwidths, on random weights and random images, and for a small
//! network with depthwise convolutions (exported as `DepthwiseConv2d`).
//! This is what makes QAT accuracy and the exported model's accuracy agree.

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use releq_host::data::Images;
use releq_host::eval::quantize_image;
use releq_host::fastinfer::FastModel;
use releq_host::nn::calib::calibrate;
use releq_host::nn::net::Net;
use releq_host::nn::qplan::QuantPlan;
use releq_host::nn::spec::{Act, Op, Spec};
use releq_host::quantize::export;
use releq_host::zoo::Arch;

fn random_images(count: usize, seed: u64) -> Images {
    let mut rng = StdRng::seed_from_u64(seed);
    // Blobs of ink on a dark background, like the data sets.
    let pixels = (0..count * 784).map(|_| if rng.gen_bool(0.3) { rng.gen() } else { 0 }).collect();
    Images { count, rows: 28, cols: 28, pixels, labels: vec![0; count] }
}

fn check(arch: Arch, wbits: &[u8], abits: &[u8]) {
    check_spec(&arch.spec(), wbits, abits, 0);
}

/// Returns the number of depthwise layers in the exported model.
fn check_spec(spec: &Spec, wbits: &[u8], abits: &[u8], bn_steps: usize) -> usize {
    let arch = &spec.name;
    let vm = VarMap::new();
    let net = Net::new(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), spec).unwrap();
    for i in 0..bn_steps {
        // Move the batch-norm running statistics away from (0, 1).
        let imgs = random_images(8, 10 + i as u64);
        let px: Vec<f32> = imgs.pixels.iter().map(|&p| p as f32 / 255.0).collect();
        net.forward(&Tensor::from_vec(px, (8, 1, 28, 28), &Device::Cpu).unwrap(), true).unwrap();
    }
    let calib = random_images(32, 1);
    let ranges = calibrate(&net, &calib, 2, 16).unwrap();
    let plan = QuantPlan::new(net.spec(), &ranges, wbits, abits).unwrap();
    let model = export(net.spec(), &plan, |op| net.folded(op).map_err(|e| e.to_string())).unwrap();
    let iplan = model.plan().unwrap();
    let fast = FastModel::new(&iplan);
    let images = random_images(6, 2);
    for i in 0..images.len() {
        let px: Vec<f32> = images.image(i).iter().map(|&p| p as f32 / 255.0).collect();
        let x = Tensor::from_vec(px, (1, 1, 28, 28), &Device::Cpu).unwrap();
        let fq = net.forward_all_fq(&x, &plan).unwrap();
        let mut t = fast.new_tensors();
        t[0] = quantize_image(images.image(i), &iplan.input().quant);
        fast.exec(0..iplan.model.layers.len(), &mut t, &mut Vec::new());
        for (k, (f, want)) in fq.iter().zip(&t).enumerate() {
            let q = iplan.tensors[k].quant;
            let f = if f.rank() == 4 { f.permute((0, 2, 3, 1)).unwrap() } else { f.clone() };
            let got: Vec<i8> = f
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|&v| ((v / q.scale).round() as i32 + q.zero_point) as i8)
                .collect();
            let bad = got.iter().zip(want).filter(|(a, b)| a != b).count();
            assert_eq!(bad, 0, "{arch:?} w{wbits:?} a{abits:?}: tensor {k} differs in {bad} of {} codes", got.len());
        }
    }
    iplan.model.layers.iter().filter(|l| matches!(l, releq_common::model::Layer::DepthwiseConv2d(_))).count()
}

/// A MobileNet-like block: conv, depthwise (batch norm, stride 2, ReLU6),
/// pointwise, a depthwise with bias and no padding, a residual add of two
/// depthwise outputs, global pooling and a dense layer.
fn depthwise_spec() -> Spec {
    let conv = |name: &str, input, in_c, out_c, k, stride, pad, bn, act, depthwise| Op::Conv {
        name: name.into(),
        input,
        in_c,
        out_c,
        k,
        stride,
        pad,
        bn,
        act,
        depthwise,
    };
    Spec {
        name: "dw-test".into(),
        input: [28, 28, 1],
        classes: 10,
        ops: vec![
            conv("c1", 0, 1, 8, 3, 2, 1, true, Act::Relu, false),    // 14x14x8
            conv("dw1", 1, 8, 8, 3, 2, 1, true, Act::Relu6, true),   // 7x7x8
            conv("pw1", 2, 8, 12, 1, 1, 0, false, Act::Relu, false), // 7x7x12
            conv("dw2", 3, 12, 12, 3, 1, 0, false, Act::Relu, true), // 5x5x12
            conv("dw3", 4, 12, 12, 3, 1, 1, true, Act::None, true),  // 5x5x12
            Op::Add { a: 4, b: 5, act: Act::Relu },
            Op::AvgPool { input: 6, k: 5, stride: 5 },
            Op::Flatten { input: 7 },
            Op::Dense { name: "fc".into(), input: 8, in_f: 12, out_f: 10, act: Act::None },
        ],
    }
}

#[test]
fn fake_quant_equals_integer_depthwise() {
    let spec = depthwise_spec();
    for (w, a) in [(vec![8], vec![8]), (vec![4], vec![4]), (vec![2, 3, 5, 6, 7, 8], vec![8, 2, 4, 3, 6, 5])] {
        assert_eq!(check_spec(&spec, &w, &a, 3), 3, "w{w:?} a{a:?}: depthwise layers exported");
    }
}

#[test]
fn fake_quant_equals_integer_lenet5() {
    for (w, a) in [(vec![8], vec![8]), (vec![4], vec![4]), (vec![2, 3, 5, 6, 7], vec![8, 2, 4, 3, 6])] {
        check(Arch::Lenet5, &w, &a);
    }
}

#[test]
fn fake_quant_equals_integer_fashion_cnn() {
    for (w, a) in [(vec![8], vec![8]), (vec![3], vec![5])] {
        check(Arch::FashionCnn, &w, &a);
    }
}

#[test]
fn fake_quant_equals_integer_resnet8() {
    for (w, a) in [(vec![8], vec![8]), (vec![4], vec![3])] {
        check(Arch::Resnet8, &w, &a);
    }
}
