//! The search environment: evaluates a bitwidth configuration (accuracy from
//! the oracle, latency from the measured table, flash from the packed
//! sizes), turns it into ReLeQ's reward, and builds the per-layer state the
//! agent sees.
//!
//! State of weighted layer `j` (all in [0, 1] or close): layer index / (L-1);
//! output channels, input channels and kernel size, each min-max normalised
//! over the network; the standard deviation of its float weights divided by
//! the largest over the network; its current weight bits / 8; the cost state
//! (the cost of the configuration as chosen so far, later layers at 8 bits);
//! the relative accuracy of the last evaluated configuration; and the
//! hardware's view: its share of the measured all-8-bit latency, its
//! measured latency at the current bits relative to 8-bit, its share of
//! flash at 8 bits. With activation search, its current activation bits / 8
//! is appended.

use super::latency::{layer_specs, LatencyError, LatencyTable};
use super::oracle::{Oracle, OracleError};
use super::reward::{cost, reward, Cost, RewardParams};
use crate::device::Device;
use crate::nn::spec::Op;
use releq_common::pack::row_bytes;
use serde::{Deserialize, Serialize};

/// One evaluated configuration: a line of `episodes.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Evaluation order (0-based) within the run.
    pub step: usize,
    /// Episode that produced it.
    pub episode: usize,
    /// Strategy.
    pub strategy: String,
    /// Weight bits per weighted layer.
    pub wbits: Vec<u8>,
    /// Activation bits per weighted layer.
    pub abits: Vec<u8>,
    /// Validation accuracy (integer inference).
    pub val_accuracy: f64,
    /// Accuracy loss against the float model, percentage points.
    pub accuracy_loss_pp: f64,
    /// Predicted latency from the measured table.
    pub latency: u64,
    /// Latency relative to all-8-bit.
    pub latency_rel: f64,
    /// Flash bytes (the blob, within a few bytes of varint lengths).
    pub flash_bytes: u64,
    /// Flash relative to all-8-bit.
    pub flash_rel: f64,
    /// Cost state.
    pub cost: f64,
    /// Reward.
    pub reward: f64,
    /// Satisfies every constraint.
    pub feasible: bool,
    /// First time this run evaluated the configuration (false: a repeat,
    /// which does not count against the budget).
    pub new: bool,
}

/// Constraints on the chosen model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Largest accuracy loss against float, percentage points.
    pub max_accuracy_loss: f64,
    /// Largest latency (device counts).
    pub max_latency: Option<u64>,
    /// Largest flash (bytes).
    pub max_flash: Option<u64>,
}

/// The environment.
pub struct Env<'a> {
    /// Accuracy oracle.
    pub oracle: Oracle,
    /// Latency table.
    pub table: LatencyTable,
    /// Device for measuring missing entries.
    pub device: &'a mut dyn Device,
    /// Cost kind.
    pub cost: Cost,
    /// Reward constants.
    pub params: RewardParams,
    /// Constraints.
    pub constraints: Constraints,
    /// Weight bits the agent may choose.
    pub wset: Vec<u8>,
    /// Activation bits it may choose (just `[8]` without activation search).
    pub aset: Vec<u8>,
    /// All-8-bit latency and flash.
    pub int8: (u64, u64),
    /// Minimum cost (every layer at the lowest bits).
    pub c_min: f64,
    /// Flash not in weighted layers' arrays (header, descriptors).
    flash_fixed: u64,
    /// Static per-layer features (index, out_c, in_c, k, std) normalised.
    features: Vec<[f32; 5]>,
    /// Per weighted layer: (out, k) for flash.
    shapes: Vec<(usize, usize)>,
    /// Relative accuracy of the last evaluation.
    pub last_rel_acc: f64,
    /// Evaluations so far.
    pub records: Vec<Record>,
    /// Distinct configurations this run has evaluated (the budget counts
    /// these, whether the oracle computed them or already knew them).
    seen: std::collections::HashSet<(Vec<u8>, Vec<u8>)>,
}

/// Errors of the environment.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Accuracy.
    #[error(transparent)]
    Oracle(#[from] OracleError),
    /// Latency.
    #[error(transparent)]
    Latency(#[from] LatencyError),
}

fn norm(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v.iter().fold((f32::MAX, f32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    v.iter().map(|&x| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 }).collect()
}

impl<'a> Env<'a> {
    /// Build the environment: measure the all-8-bit and every weights-only
    /// entry of the table (with a progress bar), and the normalisations.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        oracle: Oracle,
        table: LatencyTable,
        device: &'a mut dyn Device,
        cost: Cost,
        params: RewardParams,
        constraints: Constraints,
        wset: Vec<u8>,
        aset: Vec<u8>,
        progress: bool,
    ) -> Result<Self, EnvError> {
        let spec = oracle.spec().clone();
        let weighted = spec.weighted();
        let l = weighted.len();
        let mut shapes = Vec::new();
        let (mut outs, mut ins, mut ks, mut stds) = (vec![], vec![], vec![], vec![]);
        for &i in &weighted {
            let (o, inp, k) = match spec.ops[i] {
                Op::Conv { in_c, out_c, k, depthwise, .. } => (out_c, if depthwise { 1 } else { in_c }, k),
                Op::Dense { in_f, out_f, .. } => (out_f, in_f, 1),
                _ => unreachable!("weighted ops are conv or dense"),
            };
            let (w, _) = oracle.model_weights(i);
            let mean = w.iter().sum::<f32>() / w.len() as f32;
            let std = (w.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / w.len() as f32).sqrt();
            shapes.push((o, w.len() / o));
            outs.push(o as f32);
            ins.push(inp as f32);
            ks.push(k as f32);
            stds.push(std);
        }
        let (outs, ins, ks) = (norm(&outs), norm(&ins), norm(&ks));
        let smax = stds.iter().cloned().fold(1e-12, f32::max);
        let features = (0..l)
            .map(|j| [if l > 1 { j as f32 / (l - 1) as f32 } else { 0.0 }, outs[j], ins[j], ks[j], stds[j] / smax])
            .collect();
        // Measure every weights-only configuration's layers up front.
        let mut all = Vec::new();
        for &wb in &wset {
            for &ab in &aset {
                all.extend(layer_specs(&spec, &vec![wb; l], &vec![ab; l]).into_iter().flatten());
            }
        }
        all.extend(layer_specs(&spec, &vec![8; l], &vec![8; l]).into_iter().flatten());
        let mut table = table;
        table.measure(device, &all, progress)?;
        let (int8_model, _) = oracle.model(&vec![8; l], &vec![8; l])?;
        let int8_bytes = int8_model.encode().map_err(OracleError::from)?.len() as u64;
        let params_int8: u64 = shapes.iter().map(|&(o, k)| (o * row_bytes(k, 8) + o * 9) as u64).sum();
        let mut env = Self {
            oracle,
            table,
            device,
            cost,
            params,
            constraints,
            wset,
            aset,
            int8: (0, int8_bytes),
            c_min: 0.0,
            flash_fixed: int8_bytes - params_int8,
            features,
            shapes,
            last_rel_acc: 1.0,
            records: Vec::new(),
            seen: Default::default(),
        };
        let lat8 = env.latency(&vec![8; l], &vec![8; l])?;
        env.int8.0 = lat8;
        let (wmin, amin) = (*env.wset.iter().min().unwrap_or(&8), *env.aset.iter().min().unwrap_or(&8));
        env.c_min = env.cost_of(&vec![wmin; l], &vec![amin; l])?;
        Ok(env)
    }

    /// Distinct configurations evaluated by this run (the budget's unit).
    pub fn evaluations(&self) -> usize {
        self.seen.len()
    }

    /// Start a new run on the same oracle and table: no records, nothing
    /// seen (the oracle keeps its cache, which costs no budget).
    pub fn reset(&mut self) {
        self.records.clear();
        self.seen.clear();
        self.last_rel_acc = 1.0;
    }

    /// Take earlier records (a resumed run's log) as this run's own.
    pub fn restore(&mut self, records: Vec<Record>) {
        for r in &records {
            self.oracle.insert(&r.wbits, &r.abits, r.val_accuracy);
            self.seen.insert((r.wbits.clone(), r.abits.clone()));
        }
        self.records = records;
    }

    /// Number of weighted layers.
    pub fn layers(&self) -> usize {
        self.shapes.len()
    }

    /// Predicted latency, measuring missing layers on the device.
    pub fn latency(&mut self, wbits: &[u8], abits: &[u8]) -> Result<u64, EnvError> {
        let specs = layer_specs(self.oracle.spec(), wbits, abits);
        if let Some(l) = self.table.predict(&specs) {
            return Ok(l);
        }
        let missing: Vec<_> = specs.into_iter().flatten().collect();
        self.table.measure(self.device, &missing, false)?;
        Ok(self.table.predict(&layer_specs(self.oracle.spec(), wbits, abits)).expect("just measured"))
    }

    /// Flash bytes of a configuration.
    pub fn flash(&self, wbits: &[u8]) -> u64 {
        self.flash_fixed
            + self.shapes.iter().zip(wbits).map(|(&(o, k), &b)| (o * row_bytes(k, b) + o * 9) as u64).sum::<u64>()
    }

    fn cost_of(&mut self, wbits: &[u8], abits: &[u8]) -> Result<f64, EnvError> {
        let lat = self.latency(wbits, abits)? as f64 / self.int8.0.max(1) as f64;
        let fl = self.flash(wbits) as f64 / self.int8.1.max(1) as f64;
        let mean = wbits.iter().map(|&b| b as f64).sum::<f64>() / wbits.len().max(1) as f64;
        Ok(cost(self.cost, lat, fl, mean))
    }

    /// Evaluate a configuration, log it, and return its record.
    pub fn evaluate(&mut self, wbits: &[u8], abits: &[u8], episode: usize, strategy: &str) -> Result<Record, EnvError> {
        let new = self.seen.insert((wbits.to_vec(), abits.to_vec()));
        let acc = self.oracle.accuracy(wbits, abits)?;
        let float = self.oracle.float_acc;
        let r = Record { episode, strategy: strategy.into(), new, ..self.score(wbits, abits, acc, float)? };
        self.last_rel_acc = r.val_accuracy / float.max(1e-9);
        self.records.push(r.clone());
        Ok(r)
    }

    /// The record of a configuration whose validation accuracy is `acc`
    /// against a float accuracy `float` on the same images (the oracle's, or
    /// a fine-tuned model's on the whole split), without logging it:
    /// `episode` 0, `strategy` empty, `new` false.
    pub fn score(&mut self, wbits: &[u8], abits: &[u8], acc: f64, float: f64) -> Result<Record, EnvError> {
        let latency = self.latency(wbits, abits)?;
        let flash = self.flash(wbits);
        let c = self.cost_of(wbits, abits)?;
        let y = acc / float.max(1e-9);
        let loss = (float - acc) * 100.0;
        let k = &self.constraints;
        // Accuracies are ratios of counts: a loss of exactly the limit
        // computes as 0.30000000000000027 and must still pass.
        let feasible = loss <= k.max_accuracy_loss + 1e-9
            && k.max_latency.is_none_or(|m| latency <= m)
            && k.max_flash.is_none_or(|m| flash <= m);
        Ok(Record {
            step: self.records.len(),
            episode: 0,
            strategy: String::new(),
            wbits: wbits.to_vec(),
            abits: abits.to_vec(),
            val_accuracy: acc,
            accuracy_loss_pp: loss,
            latency,
            latency_rel: latency as f64 / self.int8.0.max(1) as f64,
            flash_bytes: flash,
            flash_rel: flash as f64 / self.int8.1.max(1) as f64,
            cost: c,
            reward: reward(c, self.c_min, y, &self.params),
            feasible,
            new: false,
        })
    }

    /// The agent's state for weighted layer `j` given the bits chosen so far
    /// (`wbits[..j]` chosen, the rest at their current value).
    pub fn state(&mut self, j: usize, wbits: &[u8], abits: &[u8]) -> Result<Vec<f32>, EnvError> {
        let l = self.layers();
        let c = self.cost_of(wbits, abits)?;
        let spec = self.oracle.spec().clone();
        let specs8 = layer_specs(&spec, &vec![8; l], &vec![8; l]);
        let specs = layer_specs(&spec, wbits, abits);
        let op = spec.weighted()[j];
        let at = |s: &[Option<releq_common::protocol::LayerSpec>]| {
            s[op].and_then(|x| self.table.get(&x)).unwrap_or(0) as f32
        };
        let (l8, lc) = (at(&specs8), at(&specs));
        let (o, k) = self.shapes[j];
        let f8 = (o * row_bytes(k, 8) + o * 9) as f32 / self.int8.1.max(1) as f32;
        let mut s = self.features[j].to_vec();
        s.extend([
            wbits[j] as f32 / 8.0,
            c as f32,
            self.last_rel_acc as f32,
            l8 / self.int8.0.max(1) as f32,
            if l8 > 0.0 { lc / l8 } else { 1.0 },
            f8,
        ]);
        if self.aset.len() > 1 {
            s.push(abits[j] as f32 / 8.0);
        }
        Ok(s)
    }

    /// Dimension of [`Self::state`].
    pub fn state_dim(&self) -> usize {
        11 + usize::from(self.aset.len() > 1)
    }

    /// Number of configurations: actions to the power of layers (saturating).
    pub fn space(&self) -> u64 {
        (self.actions() as u64).saturating_pow(self.layers() as u32)
    }

    /// Number of actions: weight bits, times activation bits when searched.
    pub fn actions(&self) -> usize {
        self.wset.len() * self.aset.len()
    }

    /// The bits an action index stands for.
    pub fn action_bits(&self, a: usize) -> (u8, u8) {
        (self.wset[a / self.aset.len()], self.aset[a % self.aset.len()])
    }
}
