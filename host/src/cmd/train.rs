//! `releq train`: train a zoo model in float on MNIST or Fashion-MNIST.

use clap::Parser;
use releq_host::data::{self, Dataset};
use releq_host::train::{self, TrainOptions};
use releq_host::zoo::Arch;
use std::path::PathBuf;

/// Train a zoo model in float.
///
/// Train a zoo model (seeded; 10 % of the training split held out for
/// validation). Each epoch writes DIR/epoch-<k>.safetensors,
/// DIR/last.safetensors and DIR/train.json; the end writes DIR/summary.json
/// with the float test accuracy.
#[derive(Debug, Parser)]
pub struct Train {
    /// Model.
    #[arg(long, value_enum)]
    pub model: Arch,
    /// Data set.
    #[arg(long, value_enum)]
    pub dataset: Dataset,
    /// Total epochs (default per model; on --resume, the target count).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Run directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Peak learning rate (Adam, cosine decay to 0; default per model).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the initialisation, validation split and shuffles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Continue the run in --out (epochs done are not redone).
    #[arg(long)]
    pub resume: bool,
    /// Use only the first N training images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// glibc malloc settings that keep candle's large, short-lived tensors on
/// the heap instead of mapping and unmapping them (and faulting their pages
/// in) at every step: training runs about 1.4x faster with them.
const MALLOC_TUNABLES: &str =
    "glibc.malloc.mmap_threshold=2000000000:glibc.malloc.trim_threshold=2000000000:glibc.malloc.top_pad=268435456";

/// On Linux with glibc, if `GLIBC_TUNABLES` is not set, run this same
/// command again in a child process with [`MALLOC_TUNABLES`] (glibc reads
/// them only at start-up) and exit with its status. Set `GLIBC_TUNABLES`
/// (even to an empty string) to run in-process unchanged.
pub fn rerun_with_malloc_tunables() -> anyhow::Result<()> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os("GLIBC_TUNABLES").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("GLIBC_TUNABLES", MALLOC_TUNABLES)
        .status()?;
    std::process::exit(status.code().unwrap_or(2));
}

impl Train {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        rerun_with_malloc_tunables()?;
        let dir = self.data_dir.unwrap_or_else(data::default_data_dir);
        let mut o = TrainOptions::new(self.model, self.dataset, dir, self.out);
        o.epochs = self.epochs.unwrap_or(o.epochs);
        o.lr = self.lr.unwrap_or(o.lr);
        (o.batch, o.seed, o.resume, o.limit) = (self.batch, self.seed, self.resume, self.limit);
        anyhow::ensure!(o.batch > 0, "--batch must be positive");
        let s = train::train(&o)?;
        println!(
            "{} on {}: {} epochs, test accuracy {:.2}% (val {:.2}%), {:.1} s/epoch, {:.0} images/s; run in {}",
            s.arch.name(),
            s.dataset,
            s.epochs,
            100.0 * s.test_acc,
            100.0 * s.val_acc,
            s.seconds_per_epoch,
            s.images_per_sec,
            o.out.display()
        );
        Ok(())
    }
}
