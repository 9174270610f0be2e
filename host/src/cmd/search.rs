//! `releq search`: choose every layer's bitwidth with ReLeQ's agent against
//! latency measured on the device.

use super::device_args::DeviceArgs;
use clap::{Parser, ValueEnum};
use releq_host::checkpoint;
use releq_host::data::{self, Dataset};
use releq_host::search::agent::PpoConfig;
use releq_host::search::env::Constraints;
use releq_host::search::reward::Cost;
use releq_host::search::strategies::{AgentOptions, Restart, Strategy};
use releq_host::search::{search, SearchOptions};
use std::path::PathBuf;

/// What the reward's cost state measures.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CostKind {
    /// Measured latency and flash relative to all-8-bit (weighted by
    /// --latency-weight / --flash-weight).
    Measured,
    /// The paper's cost: mean weight bits / 8.
    Bits,
}

/// Search per-layer bitwidths with ReLeQ against latency measured on the device.
///
/// Search per-layer bitwidths of a trained model with ReLeQ (a PPO agent with
/// an LSTM policy) under an asymmetric reward: accuracy on the validation
/// split by bit-exact integer inference, cost from latency measured layer by
/// layer on the device (and flash). Writes a run directory with every
/// episode, the Pareto front (CSV and SVG), the chosen model (model.releq,
/// QAT-fine-tuned if that helps on the validation split), and report.md /
/// report.json, including an on-device check of the final model.
///
/// The search ranks configurations by post-training quantization (or short
/// QAT with --finetune-steps). Afterwards, --refine fine-tunes a few cheaper
/// configurations from the Pareto front and keeps the cheapest one that meets
/// --max-accuracy-loss on the whole validation split once fine-tuned.
///
/// Reward: R = -1 if S_acc < th, else 2 * ((1 - x^0.6) * S_acc^(3 / S_acc) - 0.5),
/// with S_acc = accuracy / float accuracy, x = cost - cost of the all-lowest-bits
/// model, cost = w_l * latency/latency_int8 + w_f * flash/flash_int8, and
/// th = 1 - max-accuracy-loss / float accuracy.
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
pub struct Search {
    #[command(flatten)]
    pub common: SearchArgs,
    /// Strategy: the agent, or a baseline on the same budget.
    #[arg(long, value_enum, default_value = "releq")]
    pub strategy: Strategy,
    /// Accuracy evaluations allowed (distinct configurations; repeats are free).
    #[arg(long, default_value_t = 300)]
    pub budget: usize,
    /// Also choose each layer's activation bits (from the same set).
    #[arg(long)]
    pub search_activations: bool,
    /// QAT steps for every evaluated configuration (0: fast PTQ proxy).
    #[arg(long, default_value_t = 0)]
    pub finetune_steps: usize,
    /// QAT steps for the final model and each refinement candidate (LeNet-5:
    /// about 55 s for 900 here; 300 steps left low-bit configurations 0.1-0.3 pp
    /// short of what 900 reach).
    #[arg(long, default_value_t = 900)]
    pub final_finetune_steps: usize,
    /// After the search, fine-tune up to this many configurations cheaper than
    /// the chosen one (a binary search along the Pareto front) and keep the
    /// cheapest that meets the constraints on the validation split once
    /// fine-tuned. The PTQ proxy is pessimistic at low bits, which QAT recovers.
    /// 0: fine-tune only the chosen configuration.
    #[arg(long, default_value_t = 3)]
    pub refine: usize,
    /// Refinement candidates may lose up to --max-accuracy-loss plus this many
    /// percentage points by the PTQ proxy.
    #[arg(long, default_value_t = 1.0)]
    pub refine_slack: f64,
    /// Test images run on the device to verify the final model.
    #[arg(long, default_value_t = 100)]
    pub verify: usize,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run directory.
    #[arg(long, default_value = "runs/search")]
    pub out: PathBuf,
    /// Continue the search in --out (nothing measured or evaluated is redone).
    #[arg(long)]
    pub resume: bool,
}

/// Options shared by `releq search` and `releq compare`.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Float checkpoint from `releq train` (e.g. runs/lenet5-mnist/last.safetensors).
    pub ckpt: PathBuf,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Data set (default: from train.json or graph.json next to the checkpoint).
    #[arg(long, value_enum, conflicts_with = "data")]
    pub dataset: Option<Dataset>,
    /// A user's data set as `.npy`: `IMAGES.npy,LABELS.npy` or a directory
    /// holding `images.npy` and `labels.npy` (uint8 pixels [N, H, W] or
    /// float32 pixel / 255; integer labels [N]). A seeded 10 % is the
    /// validation split (as `releq eval --data --split val`), the rest
    /// calibrates and is the test set.
    #[arg(long)]
    pub data: Option<String>,
    /// Data directory (default `$RELEQ_DATA` or `./data`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Weight bitwidths to choose from (`2,3,4,5,8` is the paper's set).
    #[arg(long, value_delimiter = ',', default_value = "2,3,4,5,6,7,8")]
    pub wbits: Vec<u8>,
    /// Cost kind.
    #[arg(long, value_enum, default_value = "measured")]
    pub cost: CostKind,
    /// Weight of relative measured latency in the cost.
    #[arg(long, default_value_t = 0.7)]
    pub latency_weight: f64,
    /// Weight of relative flash in the cost.
    #[arg(long, default_value_t = 0.3)]
    pub flash_weight: f64,
    /// Largest accuracy loss allowed, percentage points below the float model.
    #[arg(long, default_value_t = 0.3)]
    pub max_accuracy_loss: f64,
    /// Largest whole-model latency allowed (device counts).
    #[arg(long)]
    pub max_latency: Option<u64>,
    /// Largest flash allowed (bytes).
    #[arg(long)]
    pub max_flash: Option<u64>,
    /// Reward threshold on relative accuracy (default from --max-accuracy-loss).
    #[arg(long)]
    pub reward_threshold: Option<f64>,
    /// Validation images per evaluation.
    #[arg(long, default_value_t = 2000)]
    pub val_images: usize,
    /// Episodes per PPO update.
    #[arg(long, default_value_t = 8)]
    pub episodes_per_update: usize,
    /// Agent's Adam learning rate (ReLeQ: 1e-4; 3e-4 works best with self-imitation).
    #[arg(long, default_value_t = releq_host::search::strategies::AGENT_LR)]
    pub agent_lr: f64,
    /// Weight of the agent's entropy bonus (ReLeQ: 0.01).
    #[arg(long, default_value_t = 0.01)]
    pub entropy: f32,
    /// Softmax temperature of the policy (ReLeQ: 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub temperature: f32,
    /// Restart the agent from a fresh policy after this many updates without
    /// a new configuration (0: never).
    #[arg(long, default_value_t = 4)]
    pub restart_after: usize,
    /// Reward every step as ReLeQ does (evaluate the configuration after
    /// each layer's choice; those evaluations count against the budget).
    #[arg(long)]
    pub step_rewards: bool,
    /// Self-imitation: the best this many distinct episodes so far join every
    /// PPO update with advantage max(R - V, 0) (0: off, as in ReLeQ).
    #[arg(long, default_value_t = 16)]
    pub elite: usize,
    /// Weight of the self-imitation advantage.
    #[arg(long, default_value_t = 10.0)]
    pub sil_coef: f32,
    /// Agent's PPO optimisation steps per update (ReLeQ: 4).
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// What a restart keeps: `fresh` (nothing) or `warm` (the elite buffer).
    #[arg(long, value_enum, default_value = "warm")]
    pub restart: Restart,
    /// Latency cache directory (shared by runs; keyed by board and firmware).
    #[arg(long, env = "RELEQ_CACHE", default_value = "runs/cache")]
    pub cache_dir: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

impl SearchArgs {
    /// Search options from these arguments; the rest at neutral defaults
    /// (releq strategy, budget 0, weights only, PTQ oracle, seed 1, no final
    /// fine-tune or device check) for the caller to set.
    pub fn options(&self, out: PathBuf) -> anyhow::Result<SearchOptions> {
        let npy = self.data.as_deref().map(releq_host::data::NpyFiles::parse).transpose()?;
        let dataset = match (self.dataset, checkpoint::Meta::of(&self.ckpt).dataset, &npy) {
            (Some(d), _, _) | (None, Some(d), _) => d,
            // Not read: the images come from --data.
            (None, None, Some(_)) => Dataset::Mnist,
            (None, None, None) => anyhow::bail!(
                "no train.json or graph.json next to the checkpoint names its data set: give --dataset or --data"
            ),
        };
        for &b in &self.wbits {
            anyhow::ensure!((2..=8).contains(&b), "--wbits: {b} is outside 2..=8");
        }
        anyhow::ensure!(self.wbits.contains(&8), "--wbits must contain 8 (the reference model is all-8-bit)");
        let links = self.device.links()?;
        Ok(SearchOptions {
            checkpoint: self.ckpt.clone(),
            dataset,
            data_dir: self.data_dir.clone().unwrap_or_else(data::default_data_dir),
            npy,
            seed: 1,
            board: links[0].board.clone(),
            qemu: self.device.qemu_options(),
            probe: links[0].probe.clone(),
            other_boards: links[1..].iter().map(|l| (l.board.clone(), l.probe.clone())).collect(),
            strategy: Strategy::Releq,
            budget: 0,
            wbits: self.wbits.clone(),
            search_activations: false,
            cost: match self.cost {
                CostKind::Measured => Cost::Measured { latency: self.latency_weight, flash: self.flash_weight },
                CostKind::Bits => Cost::Bits,
            },
            reward_threshold: self.reward_threshold,
            constraints: Constraints {
                max_accuracy_loss: self.max_accuracy_loss,
                max_latency: self.max_latency,
                max_flash: self.max_flash,
            },
            calib_batches: 20,
            val_limit: self.val_images,
            finetune_steps: 0,
            final_finetune_steps: 0,
            refine_candidates: 0,
            refine_slack: 0.0,
            agent: AgentOptions {
                ppo: PpoConfig {
                    lr: self.agent_lr,
                    entropy_coef: self.entropy,
                    temperature: self.temperature,
                    sil_coef: self.sil_coef,
                    epochs: self.epochs,
                    ..PpoConfig::default()
                },
                episodes_per_update: self.episodes_per_update,
                restart_after: self.restart_after,
                step_rewards: self.step_rewards,
                elite: self.elite,
                restart: self.restart,
            },
            out,
            cache_dir: self.cache_dir.clone(),
            resume: false,
            verify_count: 0,
            progress: !self.json,
        })
    }
}

impl Search {
    /// Run the command.
    pub fn run(self) -> anyhow::Result<()> {
        super::train::rerun_with_malloc_tunables()?;
        let o = SearchOptions {
            seed: self.seed,
            strategy: self.strategy,
            budget: self.budget,
            search_activations: self.search_activations,
            finetune_steps: self.finetune_steps,
            final_finetune_steps: self.final_finetune_steps,
            refine_candidates: self.refine,
            refine_slack: self.refine_slack,
            resume: self.resume,
            verify_count: self.verify,
            ..self.common.options(self.out.clone())?
        };
        let report = search(&o)?;
        if self.common.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", releq_host::search::report::markdown(&report));
            println!("\nrun directory: {}", self.out.display());
        }
        anyhow::ensure!(report.device_mismatches == 0, "the device's outputs differ from the host's");
        Ok(())
    }
}
