//! A small VGG-style CNN for Fashion-MNIST: two blocks of two 3x3
//! convolutions with batch norm and ReLU (16 then 32 channels), each block
//! followed by max pool 2, then FC 64 and FC 10 (about 4.7 M MACs). Batch
//! norm is folded into the convolutions at export.

use crate::nn::spec::{Act, Op, Spec};

/// The spec.
pub fn spec() -> Spec {
    let conv = |name: &str, input, in_c, out_c| Op::Conv {
        name: name.into(),
        input,
        in_c,
        out_c,
        k: 3,
        stride: 1,
        pad: 1,
        bn: true,
        act: Act::Relu,
        depthwise: false,
    };
    Spec {
        name: "fashion-cnn".into(),
        input: [28, 28, 1],
        classes: 10,
        ops: vec![
            conv("conv1", 0, 1, 16),
            conv("conv2", 1, 16, 16),
            Op::MaxPool { input: 2, k: 2, stride: 2 },
            conv("conv3", 3, 16, 32),
            conv("conv4", 4, 32, 32),
            Op::MaxPool { input: 5, k: 2, stride: 2 },
            Op::Flatten { input: 6 },
            Op::Dense { name: "fc1".into(), input: 7, in_f: 7 * 7 * 32, out_f: 64, act: Act::Relu },
            Op::Dense { name: "fc2".into(), input: 8, in_f: 64, out_f: 10, act: Act::None },
        ],
    }
}
