//! `releq compare`: the agent against exhaustive, random and greedy search on
//! one model, and how well the PTQ proxy ranks configurations against QAT.

use super::search::SearchArgs;
use clap::Parser;
use releq_host::search::compare::{compare, markdown, CompareOptions};
use std::path::PathBuf;

/// Judge the search agent against exhaustive, random and greedy search.
///
/// Judge the agent honestly on a small space (weights only, at most 20,000
/// configurations, e.g. LeNet-5 with 7 bitwidths: 16,807). Evaluates every
/// configuration with the PTQ proxy (sharing prefixes, about a minute for
/// LeNet-5 on 2,000 validation images) to find the optimum reward, then runs
/// the ReLeQ agent and random search for each seed, and greedy once, each
/// with a budget of --fraction of the space, and reports each one's best
/// reward against the optimum, the evaluations it needed to reach 98 % of
/// it, and the medians over seeds. With --rank-sample, also fine-tunes a
/// random sample of near-float configurations (QAT) and reports Spearman's
/// rank correlation between the proxy's accuracy and the fine-tuned one.
/// Writes compare.json in --out.
#[derive(Debug, Parser)]
pub struct Compare {
    #[command(flatten)]
    pub common: SearchArgs,
    /// Seeds of the releq and random runs.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,5")]
    pub seeds: Vec<u64>,
    /// Budget of each run as a fraction of the space.
    #[arg(long, default_value_t = 0.1)]
    pub fraction: f64,
    /// Configurations fine-tuned for the proxy's rank correlation (0: skip).
    #[arg(long, default_value_t = 0)]
    pub rank_sample: usize,
    /// QAT steps per configuration in the rank check.
    #[arg(long, default_value_t = 100)]
    pub rank_steps: usize,
    /// Sample configurations whose proxy accuracy loss is at most this (pp).
    #[arg(long, default_value_t = 2.0)]
    pub rank_max_loss: f64,
    /// Output directory (compare.json).
    #[arg(long, default_value = "runs/compare")]
    pub out: PathBuf,
}

impl Compare {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        super::train::rerun_with_malloc_tunables()?;
        anyhow::ensure!(self.fraction > 0.0 && self.fraction <= 1.0, "--fraction must be in (0, 1]");
        anyhow::ensure!(!self.seeds.is_empty(), "--seeds: give at least one seed");
        anyhow::ensure!(
            self.common.device.boards.len() == 1,
            "releq compare uses one board's latency table: give one --board (releq search takes several)"
        );
        let o = CompareOptions {
            search: self.common.options(self.out.clone())?,
            seeds: self.seeds.clone(),
            fraction: self.fraction,
            rank_sample: self.rank_sample,
            rank_steps: self.rank_steps,
            rank_max_loss: self.rank_max_loss,
        };
        let c = compare(&o)?;
        if self.common.json {
            println!("{}", serde_json::to_string_pretty(&c)?);
        } else {
            print!("{}", markdown(&c));
            println!("\nwritten: {}", self.out.join("compare.json").display());
        }
        Ok(())
    }
}
