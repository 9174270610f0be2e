//! `releq synth`: write a model of a known topology with random weights.

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// Topologies `synth` can make.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Arch {
    /// LeNet-5 as releq's zoo defines it (28x28x1, 281,640 MACs).
    Lenet5,
    /// A small model with every layer kind (conv, depthwise, 1x1, residual
    /// add, max/avg pool, reshape, dense); bits are random per layer.
    AllKinds,
}

/// Write a model of a known topology with random weights.
///
/// Write a .releq model with random weights: for profiling latency (time does
/// not depend on weight values) and for trying the tools without training.
/// Its accuracy is chance.
#[derive(Debug, Parser)]
pub struct Synth {
    /// Topology.
    #[arg(long, value_enum, default_value = "lenet5")]
    pub arch: Arch,
    /// Weight bits: one value for every weighted layer, or one per weighted
    /// layer separated by commas (lenet5 has 5).
    #[arg(long, default_value = "8", value_delimiter = ',')]
    pub wbits: Vec<u8>,
    /// Activation bits, same form as --wbits.
    #[arg(long, default_value = "8", value_delimiter = ',')]
    pub abits: Vec<u8>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output file.
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Expand a bits list to `n` layers.
pub fn expand_bits(flag: &str, bits: &[u8], n: usize) -> anyhow::Result<Vec<u8>> {
    let v = match bits.len() {
        1 => vec![bits[0]; n],
        len if len == n => bits.to_vec(),
        len => anyhow::bail!("--{flag} has {len} values; give one, or one per weighted layer ({n})"),
    };
    if let Some(b) = v.iter().find(|b| !(2..=8).contains(*b)) {
        anyhow::bail!("--{flag}: {b} is outside 2..=8");
    }
    Ok(v)
}

impl Synth {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        let owned = match self.arch {
            Arch::Lenet5 => {
                let w = expand_bits("wbits", &self.wbits, 5)?;
                let a = expand_bits("abits", &self.abits, 5)?;
                releq_common::testing::lenet5_random(
                    self.seed,
                    w.try_into().expect("5 values"),
                    a.try_into().expect("5 values"),
                )
            }
            Arch::AllKinds => releq_common::testing::random_model(self.seed, true),
        };
        let bytes = owned.encode().context("the generated model does not validate")?;
        if let Some(dir) = self.out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&self.out, &bytes).with_context(|| format!("cannot write {}", self.out.display()))?;
        eprintln!("wrote {} ({} bytes)", self.out.display(), bytes.len());
        Ok(())
    }
}
