//! The model zoo: one file per network, each giving its [`Spec`]; the
//! candle module is built from a `VarBuilder` and the spec by `nn::net`.

pub mod fashion_cnn;
pub mod lenet5;
pub mod resnet8;

use crate::nn::spec::Spec;
use serde::{Deserialize, Serialize};

/// Models in the zoo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// LeNet-5 for MNIST (281,640 MACs).
    Lenet5,
    /// A small VGG-style CNN with batch norm for Fashion-MNIST.
    FashionCnn,
    /// The MLPerf Tiny ResNet-8 topology adapted to 28x28x1.
    Resnet8,
}

impl Arch {
    /// The zoo model of this name, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Arch::Lenet5, Arch::FashionCnn, Arch::Resnet8].into_iter().find(|a| a.name() == name)
    }

    /// The data set the model is made for.
    pub fn dataset(self) -> crate::data::Dataset {
        match self {
            Arch::Lenet5 => crate::data::Dataset::Mnist,
            Arch::FashionCnn | Arch::Resnet8 => crate::data::Dataset::FashionMnist,
        }
    }

    /// The network's spec.
    pub fn spec(self) -> Spec {
        match self {
            Arch::Lenet5 => lenet5::spec(),
            Arch::FashionCnn => fashion_cnn::spec(),
            Arch::Resnet8 => resnet8::spec(),
        }
    }
    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Lenet5 => "lenet5",
            Arch::FashionCnn => "fashion-cnn",
            Arch::Resnet8 => "resnet8",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_chain_and_end_in_classes() {
        for arch in [Arch::Lenet5, Arch::FashionCnn, Arch::Resnet8] {
            let s = arch.spec();
            let shapes = s.shapes();
            assert_eq!(shapes.last().unwrap(), &[1, 1, 10], "{}", s.name);
        }
        let l = Arch::Lenet5.spec().shapes();
        assert_eq!(l[1], [24, 24, 6]);
        assert_eq!(l[5], [1, 1, 256]);
        let r = Arch::Resnet8.spec().shapes();
        assert_eq!(r[12], [7, 7, 64]);
    }
}
