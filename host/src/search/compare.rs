//! `releq compare`: the agent judged against the baselines on one model.
//!
//! 1. Every weights-only configuration is evaluated ([`super::product`]);
//!    its best reward is the optimum.
//! 2. For each seed, `releq` and `random` run on the same environment with
//!    the same budget (a fraction of the space, 1/10 by default), and
//!    `greedy` once (it has no randomness). Their accuracies come from the
//!    table computed in step 1, which is the same deterministic oracle, so
//!    only the configurations a strategy *asks for* count against its budget.
//! 3. Optionally, how well the fast PTQ proxy ranks configurations against
//!    their accuracy after a short quantization-aware fine-tune: Spearman's
//!    rank correlation on a random sample of configurations whose proxy loss
//!    is within `rank_max_loss` percentage points of float (the region where
//!    the search has to choose).

use super::env::{Env, Record};
use super::oracle::{Oracle, OracleOptions};
use super::strategies::{self, Strategy};
use super::{open_env, split_seed, SearchError, SearchOptions};
use crate::device::any::AnyDevice;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The environment (strategy, budget and seed are ignored).
    pub search: SearchOptions,
    /// Seeds of the releq and random runs.
    pub seeds: Vec<u64>,
    /// Budget as a fraction of the space's size.
    pub fraction: f64,
    /// Configurations sampled for the proxy's rank correlation (0: skip).
    pub rank_sample: usize,
    /// QAT steps of the rank check.
    pub rank_steps: usize,
    /// Sample only configurations whose proxy loss is at most this (pp).
    pub rank_max_loss: f64,
}

/// One strategy run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// Strategy.
    pub strategy: String,
    /// Seed (greedy: none).
    pub seed: Option<u64>,
    /// Best reward found.
    pub best_reward: f64,
    /// Best reward / the optimum's.
    pub ratio: f64,
    /// Its configuration.
    pub best_wbits: Vec<u8>,
    /// Its validation accuracy.
    pub best_val_accuracy: f64,
    /// Distinct configurations evaluated.
    pub evaluations: usize,
    /// Episodes (evaluations including repeats).
    pub episodes: usize,
    /// Evaluations until the best reward first reached 98 % of the optimum.
    pub evaluations_to_98: Option<usize>,
    /// Wall time of the run (agent included, accuracies from the table).
    pub seconds: f64,
}

/// The proxy's rank check.
#[derive(Debug, Clone, Serialize)]
pub struct RankCheck {
    /// QAT steps.
    pub finetune_steps: usize,
    /// Largest proxy loss sampled (pp).
    pub max_loss_pp: f64,
    /// Spearman's rank correlation of proxy and fine-tuned accuracy.
    pub spearman: f64,
    /// Sampled configurations: wbits, proxy accuracy, fine-tuned accuracy.
    pub samples: Vec<(Vec<u8>, f64, f64)>,
    /// Seconds.
    pub seconds: f64,
}

/// Everything `releq compare` measured (`compare.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Model.
    pub model: String,
    /// Weight bits per layer choice.
    pub wbits: Vec<u8>,
    /// Size of the space.
    pub space: usize,
    /// Validation images per evaluation.
    pub val_images: usize,
    /// Float validation accuracy.
    pub float_val_accuracy: f64,
    /// The exhaustive optimum's reward and configuration.
    pub optimum_reward: f64,
    /// Its configuration.
    pub optimum_wbits: Vec<u8>,
    /// Its validation accuracy.
    pub optimum_val_accuracy: f64,
    /// Seconds to evaluate the whole space.
    pub exhaustive_seconds: f64,
    /// Budget of each releq / random / greedy run.
    pub budget: usize,
    /// The agent's settings.
    pub agent: String,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// Median best reward of releq over seeds.
    pub median_releq: f64,
    /// Median best reward of random over seeds.
    pub median_random: f64,
    /// The proxy's rank check, if asked for.
    pub rank: Option<RankCheck>,
}

/// Median (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Ranks (1-based), ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's on tie-averaged ranks); NaN if
/// either side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    let (rx, ry) = (ranks(x), ranks(y));
    let n = rx.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let cov: f64 = rx.iter().zip(&ry).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = rx.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = ry.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

fn summarize(strategy: &str, seed: Option<u64>, records: &[Record], optimum: f64, seconds: f64) -> RunResult {
    let mut best: Option<&Record> = None;
    let mut to98 = None;
    let mut distinct = 0;
    for r in records {
        distinct += usize::from(r.new);
        if best.is_none_or(|b| r.reward > b.reward) {
            best = Some(r);
        }
        if to98.is_none() && best.is_some_and(|b| b.reward >= 0.98 * optimum) {
            to98 = Some(distinct);
        }
    }
    let b = best.expect("a run evaluates at least one configuration");
    RunResult {
        strategy: strategy.into(),
        seed,
        best_reward: b.reward,
        ratio: b.reward / optimum,
        best_wbits: b.wbits.clone(),
        best_val_accuracy: b.val_accuracy,
        evaluations: distinct,
        episodes: records.len(),
        evaluations_to_98: to98,
        seconds,
    }
}

/// Run one strategy from a clean slate on `env` (its oracle keeps what it
/// knows; the run's own records and budget start empty).
fn one_run(
    env: &mut Env<'_>,
    strategy: Strategy,
    seed: u64,
    budget: usize,
    o: &CompareOptions,
) -> Result<(Vec<Record>, f64), SearchError> {
    let t = std::time::Instant::now();
    env.reset();
    let agent = o.search.out.join(format!("agent-{seed}.safetensors"));
    let _ = std::fs::remove_file(&agent);
    strategies::run(strategy, env, budget, seed, &o.search.agent, &agent, 0, &mut |_, _| {})?;
    let _ = std::fs::remove_file(&agent);
    Ok((std::mem::take(&mut env.records), t.elapsed().as_secs_f64()))
}

/// Run the comparison (see the module doc).
pub fn compare(o: &CompareOptions) -> Result<Comparison, SearchError> {
    let s = &o.search;
    std::fs::create_dir_all(&s.out).map_err(|source| SearchError::Io { path: s.out.clone(), source })?;
    let mut dev = AnyDevice::start(&s.board, None, &s.qemu, s.probe.as_deref())?;
    let (mut env, _unit) = open_env(s, &mut dev)?;
    if env.space() > strategies::EXHAUSTIVE_LIMIT {
        return Err(strategies::StrategyError::TooLarge(env.space()).into());
    }
    let space = env.space() as usize;
    let bar = |len: u64, what: &str| match s.progress {
        true => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(&format!("{what} {{bar:25}} {{pos}}/{{len}} [{{elapsed}} < {{eta}}]"))
                .expect("valid template"),
        ),
        false => ProgressBar::hidden(),
    };

    // 1. The whole space.
    let t = std::time::Instant::now();
    let b = bar(0, &format!("all {space} configurations, images"));
    let wset = env.wset.clone();
    env.oracle.preload_weights_only(&wset, 8, &b).map_err(super::env::EnvError::from)?;
    b.finish_and_clear();
    let (all, _) = one_run(&mut env, Strategy::Exhaustive, 0, space, o)?;
    let exhaustive_seconds = t.elapsed().as_secs_f64();
    let opt = all.iter().max_by(|a, b| a.reward.total_cmp(&b.reward)).expect("non-empty space").clone();

    // 2. The strategies at equal budget.
    let budget = ((space as f64 * o.fraction).floor() as usize).max(1);
    let mut runs = Vec::new();
    let b = bar(2 * o.seeds.len() as u64 + 1, "strategy runs");
    for &seed in &o.seeds {
        for strategy in [Strategy::Releq, Strategy::Random] {
            let (rec, secs) = one_run(&mut env, strategy, seed, budget, o)?;
            let name = format!("{strategy:?}").to_lowercase();
            runs.push(summarize(&name, Some(seed), &rec, opt.reward, secs));
            b.inc(1);
        }
    }
    let (rec, secs) = one_run(&mut env, Strategy::Greedy, 0, budget, o)?;
    runs.push(summarize("greedy", None, &rec, opt.reward, secs));
    b.finish_and_clear();
    let med =
        |name: &str| median(&runs.iter().filter(|r| r.strategy == name).map(|r| r.best_reward).collect::<Vec<_>>());
    let (median_releq, median_random) = (med("releq"), med("random"));
    let float_val_accuracy = env.oracle.float_acc;
    let model = env.oracle.spec().name.clone();
    drop(env);
    drop(dev);

    // 3. The proxy's ranking against QAT.
    let rank = if o.rank_sample > 0 {
        let t = std::time::Instant::now();
        let mut pool: Vec<&Record> = all.iter().filter(|r| r.accuracy_loss_pp <= o.rank_max_loss).collect::<Vec<_>>();
        pool.shuffle(&mut StdRng::seed_from_u64(o.seeds.first().copied().unwrap_or(1)));
        pool.truncate(o.rank_sample);
        let split = s.source().split(split_seed(s), None)?;
        let mut qat = Oracle::new(
            split,
            OracleOptions {
                checkpoint: s.checkpoint.clone(),
                calib_batches: s.calib_batches,
                val_limit: s.val_limit,
                finetune_steps: o.rank_steps,
            },
        )?;
        let b = bar(pool.len() as u64, &format!("rank check: QAT {} steps per configuration", o.rank_steps));
        let mut samples = Vec::new();
        for r in pool {
            let acc = qat.accuracy(&r.wbits, &r.abits)?;
            samples.push((r.wbits.clone(), r.val_accuracy, acc));
            b.inc(1);
        }
        b.finish_and_clear();
        let (x, y): (Vec<f64>, Vec<f64>) = samples.iter().map(|(_, p, q)| (*p, *q)).unzip();
        Some(RankCheck {
            finetune_steps: o.rank_steps,
            max_loss_pp: o.rank_max_loss,
            spearman: spearman(&x, &y),
            samples,
            seconds: t.elapsed().as_secs_f64(),
        })
    } else {
        None
    };
    let c = Comparison {
        model,
        wbits: wset,
        space,
        val_images: s.val_limit,
        float_val_accuracy,
        optimum_reward: opt.reward,
        optimum_wbits: opt.wbits.clone(),
        optimum_val_accuracy: opt.val_accuracy,
        exhaustive_seconds,
        budget,
        agent: format!("{:?}", s.agent),
        runs,
        median_releq,
        median_random,
        rank,
    };
    let p = s.out.join("compare.json");
    std::fs::write(&p, serde_json::to_string_pretty(&c).expect("serializes"))
        .map_err(|source| SearchError::Io { path: p, source })?;
    Ok(c)
}

/// The comparison as a Markdown table.
pub fn markdown(c: &Comparison) -> String {
    let mut s = format!(
        "# releq compare: {} ({} configurations of {:?}, {} validation images)\n\n",
        c.model, c.space, c.wbits, c.val_images
    );
    s += &format!(
        "Exhaustive optimum: reward {:.4} at wbits {:?}, validation accuracy {:.2} % (float {:.2} %); \
         the whole space took {:.1} s.\n\nEvery strategy had a budget of {} distinct configurations ({:.1} % of the space).\n\n",
        c.optimum_reward,
        c.optimum_wbits,
        c.optimum_val_accuracy * 100.0,
        c.float_val_accuracy * 100.0,
        c.exhaustive_seconds,
        c.budget,
        100.0 * c.budget as f64 / c.space as f64
    );
    s +=
        "| strategy | seed | best reward | of optimum | wbits | val acc | evaluations to 98 % | episodes | seconds |\n";
    s += "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |\n";
    for r in &c.runs {
        s += &format!(
            "| {} | {} | {:.4} | {:.1} % | {:?} | {:.2} % | {} | {} | {:.1} |\n",
            r.strategy,
            r.seed.map_or("-".into(), |x| x.to_string()),
            r.best_reward,
            r.ratio * 100.0,
            r.best_wbits,
            r.best_val_accuracy * 100.0,
            r.evaluations_to_98.map_or("never".into(), |x| x.to_string()),
            r.episodes,
            r.seconds
        );
    }
    s += &format!(
        "\nMedian best reward: releq {:.4} ({:.1} % of optimum), random {:.4} ({:.1} %).\n",
        c.median_releq,
        100.0 * c.median_releq / c.optimum_reward,
        c.median_random,
        100.0 * c.median_random / c.optimum_reward
    );
    if let Some(r) = &c.rank {
        s += &format!(
            "\nProxy vs QAT ({} steps) on {} configurations within {} pp of float: Spearman {:.3} ({:.0} s).\n",
            r.finetune_steps,
            r.samples.len(),
            r.max_loss_pp,
            r.spearman,
            r.seconds
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_monotone_and_reversed_and_ties() {
        assert!((spearman(&[1., 2., 3., 4.], &[10., 20., 25., 100.]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1., 2., 3., 4.], &[4., 3., 2., 1.]) + 1.0).abs() < 1e-12);
        // Hand-computed: ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4] -> 0.9487.
        assert!((spearman(&[1., 2., 2., 3.], &[1., 2., 3., 4.]) - 0.948_683).abs() < 1e-5);
        assert!(spearman(&[1., 1.], &[1., 2.]).is_nan());
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3., 1., 2.]), 2.0);
        assert_eq!(median(&[4., 1., 2., 3.]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
