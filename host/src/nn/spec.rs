//! A network described as data: the list of operations a zoo model is made
//! of, shared by the float/fake-quant candle executor ([`super::net`]) and
//! the exporter to `.releq` ([`crate::quantize`]).
//!
//! Tensor ids follow the `.releq` convention: tensor 0 is the input, op `i`
//! writes tensor `i + 1`, and the output is the last tensor. Convolution and
//! dense ops are the *weighted layers*, numbered in order; `--wbits` and
//! `--abits` lists give one value per weighted layer.
//!
//! A depthwise convolution is an [`Op::Conv`] with `depthwise: true`: one
//! `k x k` filter per channel (`in_c == out_c`, channel multiplier 1), weights
//! `(C, 1, k, k)` as PyTorch's `groups = C`; it exports to `.releq`'s
//! `DepthwiseConv2d`. Graphs written before the flag existed load as full
//! convolutions (the field defaults to `false`).
//!
//! Parameter names in a checkpoint (safetensors) are `<op name>.weight`,
//! `<op name>.bias` and, with batch norm, `<op name>.bn.{weight,bias,
//! running_mean,running_var}`. Convolution weights are candle's OIHW.

use serde::{Deserialize, Serialize};

/// Fused activation after an op.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Act {
    /// None.
    None,
    /// ReLU.
    Relu,
    /// ReLU6 (`min(max(x, 0), 6)`; after convolutions and dense layers).
    Relu6,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// 2-D convolution (square kernel, same stride and padding on both axes),
    /// optionally followed by batch norm (folded at export), then `act`.
    Conv {
        /// Parameter prefix.
        name: String,
        /// Tensor read.
        input: usize,
        /// Input channels.
        in_c: usize,
        /// Output channels.
        out_c: usize,
        /// Kernel size.
        k: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on every side.
        pad: usize,
        /// Batch norm after the convolution.
        bn: bool,
        /// Activation.
        act: Act,
        /// Depthwise: one filter per channel (`in_c == out_c`), weights
        /// `(C, 1, k, k)`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        depthwise: bool,
    },
    /// Fully connected over the flattened input.
    Dense {
        /// Parameter prefix.
        name: String,
        /// Tensor read.
        input: usize,
        /// Input features.
        in_f: usize,
        /// Output features.
        out_f: usize,
        /// Activation.
        act: Act,
    },
    /// Max pooling, square window.
    MaxPool {
        /// Tensor read.
        input: usize,
        /// Window.
        k: usize,
        /// Stride.
        stride: usize,
    },
    /// Average pooling, square window (global pooling: `k` = spatial size).
    AvgPool {
        /// Tensor read.
        input: usize,
        /// Window.
        k: usize,
        /// Stride.
        stride: usize,
    },
    /// Residual add, then `act`.
    Add {
        /// First tensor.
        a: usize,
        /// Second tensor.
        b: usize,
        /// Activation.
        act: Act,
    },
    /// Flatten to a vector (HWC order in `.releq`).
    Flatten {
        /// Tensor read.
        input: usize,
    },
}

impl Op {
    /// Whether this op has weights (conv or dense).
    pub fn is_weighted(&self) -> bool {
        matches!(self, Op::Conv { .. } | Op::Dense { .. })
    }

    /// Number of weights of a weighted op (0 otherwise): `out_c * in_c * k * k`
    /// for a convolution, `C * k * k` for a depthwise one, `in_f * out_f` for
    /// a dense layer.
    pub fn weight_count(&self) -> usize {
        match *self {
            Op::Conv { in_c, out_c, k, depthwise, .. } => out_c * if depthwise { 1 } else { in_c } * k * k,
            Op::Dense { in_f, out_f, .. } => in_f * out_f,
            _ => 0,
        }
    }
}

/// A whole network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// Zoo name.
    pub name: String,
    /// Input height, width, channels.
    pub input: [usize; 3],
    /// Number of classes (size of the last op's output).
    pub classes: usize,
    /// Operations in execution order.
    pub ops: Vec<Op>,
}

impl Spec {
    /// Indices of the weighted ops, in order.
    pub fn weighted(&self) -> Vec<usize> {
        self.ops.iter().enumerate().filter(|(_, o)| o.is_weighted()).map(|(i, _)| i).collect()
    }

    /// Shape `[h, w, c]` of every tensor (0 = input).
    pub fn shapes(&self) -> Vec<[usize; 3]> {
        let mut s = vec![self.input];
        for op in &self.ops {
            let out = match *op {
                Op::Conv { input, out_c, k, stride, pad, .. } => {
                    let [h, w, _] = s[input];
                    [(h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1, out_c]
                }
                Op::Dense { out_f, .. } => [1, 1, out_f],
                Op::MaxPool { input, k, stride } | Op::AvgPool { input, k, stride } => {
                    let [h, w, c] = s[input];
                    [(h - k) / stride + 1, (w - k) / stride + 1, c]
                }
                Op::Add { a, .. } => s[a],
                Op::Flatten { input } => {
                    let [h, w, c] = s[input];
                    [1, 1, h * w * c]
                }
            };
            s.push(out);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depthwise_defaults_to_false_and_round_trips() {
        // A convolution as graph.json files wrote it before the flag existed.
        let old =
            r#"{"Conv":{"name":"c","input":0,"in_c":4,"out_c":4,"k":3,"stride":1,"pad":1,"bn":false,"act":"Relu"}}"#;
        let op: Op = serde_json::from_str(old).unwrap();
        assert!(matches!(op, Op::Conv { depthwise: false, .. }));
        assert_eq!(op.weight_count(), 4 * 4 * 9);
        assert_eq!(serde_json::to_string(&op).unwrap(), old, "a full convolution serializes as before");
        let Op::Conv { name, input, in_c, out_c, k, stride, pad, bn, act, .. } = op else { unreachable!() };
        let dw = Op::Conv { name, input, in_c, out_c, k, stride, pad, bn, act, depthwise: true };
        assert_eq!(dw.weight_count(), 4 * 9);
        let back: Op = serde_json::from_str(&serde_json::to_string(&dw).unwrap()).unwrap();
        assert_eq!(back, dw);
    }
}
