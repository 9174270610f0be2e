//! ResNet-8 (the MLPerf Tiny image classification topology) adapted to
//! 28x28x1: a 3x3 stem of 16 channels, three residual stages of 16, 32 and 64
//! channels (the last two with stride 2 and a 1x1 convolution on the
//! shortcut), global average pooling and FC 10. Batch norm after every 3x3
//! convolution, folded at export.

use crate::nn::spec::{Act, Op, Spec};

/// The spec.
pub fn spec() -> Spec {
    let conv = |name: &str, input, in_c, out_c, k, stride, act| Op::Conv {
        name: name.into(),
        input,
        in_c,
        out_c,
        k,
        stride,
        pad: k / 2,
        bn: true,
        act,
        depthwise: false,
    };
    Spec {
        name: "resnet8".into(),
        input: [28, 28, 1],
        classes: 10,
        ops: vec![
            conv("stem", 0, 1, 16, 3, 1, Act::Relu),      // t1 28x28x16
            conv("s1.conv1", 1, 16, 16, 3, 1, Act::Relu), // t2
            conv("s1.conv2", 2, 16, 16, 3, 1, Act::None), // t3
            Op::Add { a: 3, b: 1, act: Act::Relu },       // t4
            conv("s2.conv1", 4, 16, 32, 3, 2, Act::Relu), // t5 14x14x32
            conv("s2.conv2", 5, 32, 32, 3, 1, Act::None), // t6
            conv("s2.short", 4, 16, 32, 1, 2, Act::None), // t7
            Op::Add { a: 6, b: 7, act: Act::Relu },       // t8
            conv("s3.conv1", 8, 32, 64, 3, 2, Act::Relu), // t9 7x7x64
            conv("s3.conv2", 9, 64, 64, 3, 1, Act::None), // t10
            conv("s3.short", 8, 32, 64, 1, 2, Act::None), // t11
            Op::Add { a: 10, b: 11, act: Act::Relu },     // t12
            Op::AvgPool { input: 12, k: 7, stride: 7 },   // t13 1x1x64
            Op::Flatten { input: 13 },                    // t14
            Op::Dense { name: "fc".into(), input: 14, in_f: 64, out_f: 10, act: Act::None }, // t15
        ],
    }
}
