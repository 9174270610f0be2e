//! The search strategies, all on the same oracle, cost and reward, and the
//! same budget of accuracy evaluations (distinct configurations; a repeat is
//! free):
//!
//! - `releq`: the PPO agent with an LSTM policy; an episode is a pass over
//!   the weighted layers choosing each one's bits, rewarded at its end with
//!   the configuration's reward (intermediate steps get 0; with gamma 0.9 and
//!   GAE lambda 1 the return reaches every step). Updates every
//!   `episodes_per_update` episodes. When the policy has converged (no new
//!   configuration for [`AgentOptions::restart_after`] updates' worth of
//!   episodes), it restarts from a fresh policy with a derived seed, so the
//!   rest of the budget is not spent repeating one configuration; the best
//!   record over all restarts is the result. Self-imitation (not in ReLeQ,
//!   on by default, [`AgentOptions::elite`]): the best distinct episodes so
//!   far ([`super::elite`]) join every update with advantage
//!   `sil_coef * max(R - V, 0)`, so the policy concentrates around the best
//!   configurations found and its sampling explores their neighbourhood;
//!   a restart ([`Restart::Warm`]) keeps them, so the fresh policy starts
//!   imitating them at once. On LeNet-5 / MNIST this is what lets the agent
//!   beat random search (`docs/search.md`).
//! - `random`: uniformly random configurations.
//! - `greedy`: from all-8-bit, repeatedly take the single one-step lowering
//!   of one layer's bits that raises the reward most; stop when none does.
//! - `exhaustive`: every configuration (only when the space is small). With
//!   the PTQ oracle and fixed activation bits, `search` first computes the
//!   whole space at once ([`super::product`]), so this is fast.

use super::agent::{Episode, PpoAgent, PpoConfig};
use super::elite::EliteBuffer;
use super::env::{Env, EnvError, Record};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// Which strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The ReLeQ agent.
    Releq,
    /// Random search.
    Random,
    /// Greedy lowering.
    Greedy,
    /// All configurations.
    Exhaustive,
}

/// Errors of a strategy.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// The environment failed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The agent failed.
    #[error("agent: {0}")]
    Agent(#[from] candle_core::Error),
    /// Exhaustive search over too large a space.
    #[error("exhaustive search over {0} configurations is too large (limit 20,000); use releq, random or greedy")]
    TooLarge(u64),
}

/// The agent's default learning rate with self-imitation (ReLeQ's 1e-4
/// alone is slower to concentrate on the elite; measured in `docs/search.md`).
pub const AGENT_LR: f64 = 3e-4;

/// How the `releq` strategy runs its agent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentOptions {
    /// PPO hyperparameters (ReLeQ's, except the learning rate [`AGENT_LR`]).
    pub ppo: PpoConfig,
    /// Episodes per PPO update.
    pub episodes_per_update: usize,
    /// Restart from a fresh policy after this many updates' worth of
    /// episodes without a new configuration (the policy has converged; the
    /// rest of the budget is better spent exploring again). 0: never.
    pub restart_after: usize,
    /// Reward every step, as ReLeQ does: after layer `j`'s choice the
    /// configuration so far (later layers at their starting bits) is
    /// evaluated and the step earns the change in reward. The returns
    /// telescope to the final reward minus the starting one; the partial
    /// configurations count against the budget like any other.
    pub step_rewards: bool,
    /// Self-imitation: the best this many distinct episodes so far join
    /// every PPO update ([`PpoAgent::update_with_elite`]). 0: off (ReLeQ).
    pub elite: usize,
    /// What a restart keeps.
    pub restart: Restart,
}

/// What the `releq` strategy keeps when it restarts a converged agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// A fresh policy and an empty elite buffer.
    Fresh,
    /// A fresh policy; the elite buffer is kept, so the new policy imitates
    /// the best episodes so far from its own random start.
    Warm,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            ppo: PpoConfig { lr: AGENT_LR, ..PpoConfig::default() },
            episodes_per_update: 8,
            restart_after: 4,
            step_rewards: false,
            elite: 16,
            restart: Restart::Warm,
        }
    }
}

/// Largest space `exhaustive` accepts.
pub const EXHAUSTIVE_LIMIT: u64 = 20_000;

/// Callback after every evaluation (progress, logging).
pub type OnRecord<'a> = dyn FnMut(&Record, &Env<'_>) + 'a;

fn done(env: &Env<'_>, budget: usize) -> bool {
    env.evaluations() >= budget
}

/// Run `strategy` until `budget` new evaluations (or the space is exhausted).
/// `agent_path` keeps the agent's parameters for resuming.
#[allow(clippy::too_many_arguments)]
pub fn run(
    strategy: Strategy,
    env: &mut Env<'_>,
    budget: usize,
    seed: u64,
    agent_opts: &AgentOptions,
    agent_path: &Path,
    first_episode: usize,
    on_record: &mut OnRecord<'_>,
) -> Result<(), StrategyError> {
    let l = env.layers();
    let aset8 = |env: &Env<'_>| vec![*env.aset.last().unwrap_or(&8); l];
    match strategy {
        Strategy::Random => {
            let mut ep = first_episode;
            let mut misses = 0;
            while !done(env, budget) && misses < 100 * budget.max(1) {
                let mut rng = StdRng::seed_from_u64(seed ^ (ep as u64).wrapping_mul(0x9E37_79B9));
                let (w, a): (Vec<u8>, Vec<u8>) =
                    (0..l).map(|_| env.action_bits(rng.gen_range(0..env.actions()))).unzip();
                let r = env.evaluate(&w, &a, ep, "random")?;
                misses += usize::from(!r.new);
                on_record(&r, env);
                ep += 1;
            }
        }
        Strategy::Greedy => {
            let mut w = vec![*env.wset.iter().max().unwrap_or(&8); l];
            let a = aset8(env);
            let mut best = env.evaluate(&w, &a, first_episode, "greedy")?;
            on_record(&best, env);
            let mut ep = first_episode + 1;
            loop {
                let mut round_best: Option<Record> = None;
                for j in 0..l {
                    let lower = env.wset.iter().copied().filter(|&b| b < w[j]).max();
                    let Some(b) = lower else { continue };
                    if done(env, budget) {
                        break;
                    }
                    let mut c = w.clone();
                    c[j] = b;
                    let r = env.evaluate(&c, &a, ep, "greedy")?;
                    on_record(&r, env);
                    if r.reward > round_best.as_ref().map_or(f64::MIN, |x| x.reward) {
                        round_best = Some(r);
                    }
                }
                ep += 1;
                match round_best {
                    Some(r) if r.reward > best.reward => {
                        w = r.wbits.clone();
                        best = r;
                    }
                    _ => break,
                }
                if done(env, budget) {
                    break;
                }
            }
        }
        Strategy::Exhaustive => {
            let n = env.space();
            if n > EXHAUSTIVE_LIMIT {
                return Err(StrategyError::TooLarge(n));
            }
            for idx in 0..n {
                let mut rest = idx;
                let (w, a): (Vec<u8>, Vec<u8>) = (0..l)
                    .map(|_| {
                        let x = (rest % env.actions() as u64) as usize;
                        rest /= env.actions() as u64;
                        env.action_bits(x)
                    })
                    .unzip();
                if env.oracle.known(&w, &a).is_some() && idx < first_episode as u64 {
                    continue;
                }
                let r = env.evaluate(&w, &a, idx as usize, "exhaustive")?;
                on_record(&r, env);
            }
        }
        Strategy::Releq => {
            let cfg = agent_opts.ppo;
            let episodes_per_update = agent_opts.episodes_per_update;
            let mut agent = PpoAgent::new(env.state_dim(), env.actions(), cfg, seed)?;
            if agent_path.is_file() {
                agent.load(agent_path)?;
            }
            let mut batch: Vec<Episode> = Vec::new();
            let mut elite = EliteBuffer::new(agent_opts.elite);
            // Resume: the log's best configurations seed the buffer again.
            seed_elite(env, &mut elite)?;
            let mut ep = first_episode;
            let (mut stale, mut since_new, mut restarts) = (0, 0, 0u64);
            let patience = match agent_opts.restart_after {
                0 => usize::MAX,
                n => n * episodes_per_update.max(1),
            };
            while !done(env, budget) && stale < 50 * budget.max(1) {
                if since_new >= patience {
                    // Converged: start a fresh policy on the remaining budget.
                    restarts += 1;
                    agent = PpoAgent::new(env.state_dim(), env.actions(), cfg, seed.wrapping_add(restarts * 7919))?;
                    batch.clear();
                    if agent_opts.restart == Restart::Fresh {
                        elite.clear();
                    }
                    since_new = 0;
                }
                agent.begin();
                let mut w = vec![*env.wset.iter().max().unwrap_or(&8); l];
                let mut a = aset8(env);
                let mut e = Episode { states: vec![], actions: vec![], logps: vec![], values: vec![], rewards: vec![] };
                // With step rewards, the reward of the configuration so far
                // (later layers at their starting bits), as a difference.
                let mut prev = match agent_opts.step_rewards {
                    true => {
                        let r = env.evaluate(&w, &a, ep, "releq")?;
                        on_record(&r, env);
                        r.reward
                    }
                    false => 0.0,
                };
                for j in 0..l {
                    let s = env.state(j, &w, &a)?;
                    let (act, logp, v) = agent.act(&s, false)?;
                    (w[j], a[j]) = env.action_bits(act);
                    e.states.push(s);
                    e.actions.push(act);
                    e.logps.push(logp);
                    e.values.push(v);
                    e.rewards.push(0.0);
                    if agent_opts.step_rewards && j + 1 < l {
                        let r = env.evaluate(&w, &a, ep, "releq")?;
                        on_record(&r, env);
                        *e.rewards.last_mut().expect("pushed") = (r.reward - prev) as f32;
                        prev = r.reward;
                    }
                }
                let r = env.evaluate(&w, &a, ep, "releq")?;
                stale += usize::from(!r.new);
                since_new = if r.new { 0 } else { since_new + 1 };
                *e.rewards.last_mut().expect("at least one layer") = (r.reward - prev) as f32;
                on_record(&r, env);
                elite.offer(r.reward, &e);
                batch.push(e);
                ep += 1;
                if batch.len() >= episodes_per_update.max(1) {
                    agent.update_with_elite(&batch, &elite.episodes())?;
                    batch.clear();
                    agent.save(agent_path)?;
                }
            }
            if !batch.is_empty() {
                agent.update_with_elite(&batch, &elite.episodes())?;
            }
            agent.save(agent_path)?;
        }
    }
    Ok(())
}

/// Fill `elite` from the environment's records (a resumed run's log), best
/// reward first: each configuration is replayed as an episode from all-8-bit
/// (states rebuilt, the reward at the last step). Log-probabilities and
/// values are not needed: [`PpoAgent::update_with_elite`] recomputes them
/// under the current policy. Configurations outside the action set are
/// skipped.
pub fn seed_elite(env: &mut Env<'_>, elite: &mut EliteBuffer) -> Result<(), StrategyError> {
    let l = env.layers();
    let mut recs: Vec<Record> = env.records.iter().filter(|r| r.wbits.len() == l).cloned().collect();
    recs.sort_by(|a, b| b.reward.total_cmp(&a.reward));
    let action = |env: &Env<'_>, w: u8, a: u8| {
        let wi = env.wset.iter().position(|&x| x == w)?;
        let ai = env.aset.iter().position(|&x| x == a)?;
        Some(wi * env.aset.len() + ai)
    };
    for r in recs.iter().take(4 * elite.capacity()) {
        let Some(actions) = (0..l).map(|j| action(env, r.wbits[j], r.abits[j])).collect::<Option<Vec<_>>>() else {
            continue;
        };
        let mut w = vec![*env.wset.iter().max().unwrap_or(&8); l];
        let mut a = vec![*env.aset.last().unwrap_or(&8); l];
        let mut e = Episode::default();
        for (j, &act) in actions.iter().enumerate() {
            e.states.push(env.state(j, &w, &a)?);
            (w[j], a[j]) = env.action_bits(act);
            e.actions.push(act);
            e.logps.push(0.0);
            e.values.push(0.0);
            e.rewards.push(0.0);
        }
        *e.rewards.last_mut().expect("at least one layer") = r.reward as f32;
        elite.offer(r.reward, &e);
    }
    Ok(())
}
