//! LeNet-5 for MNIST: conv 6@5x5, max pool 2, conv 16@5x5, max pool 2,
//! FC 120, FC 84, FC 10, ReLU after every layer but the last (281,640 MACs).

use crate::nn::spec::{Act, Op, Spec};

/// The spec.
pub fn spec() -> Spec {
    let conv = |name: &str, input, in_c, out_c| Op::Conv {
        name: name.into(),
        input,
        in_c,
        out_c,
        k: 5,
        stride: 1,
        pad: 0,
        bn: false,
        act: Act::Relu,
        depthwise: false,
    };
    let dense = |name: &str, input, in_f, out_f, act| Op::Dense { name: name.into(), input, in_f, out_f, act };
    Spec {
        name: "lenet5".into(),
        input: [28, 28, 1],
        classes: 10,
        ops: vec![
            conv("conv1", 0, 1, 6),
            Op::MaxPool { input: 1, k: 2, stride: 2 },
            conv("conv2", 2, 6, 16),
            Op::MaxPool { input: 3, k: 2, stride: 2 },
            Op::Flatten { input: 4 },
            dense("fc1", 5, 256, 120, Act::Relu),
            dense("fc2", 6, 120, 84, Act::Relu),
            dense("fc3", 7, 84, 10, Act::None),
        ],
    }
}
