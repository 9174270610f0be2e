//! The ReLeQ agent: PPO with an LSTM policy, independent of the environment.
//!
//! The network follows ReLeQ (Elthakeb et al., arXiv 1811.01704, and the
//! authors' Distiller fork): a shared first layer `LSTMCell(hidden)` fed with
//! the state of one layer per step, then
//!
//! - a policy head FC(hidden) -> ReLU -> FC(hidden) -> ReLU -> FC(n_actions),
//!   read through a softmax at temperature [`PpoConfig::temperature`] (0.5);
//! - a value head FC(hidden) -> ReLU -> FC(64) -> ReLU -> FC(1).
//!
//! An episode is one pass over the network's layers: [`PpoAgent::begin`]
//! zeroes the recurrent state, then [`PpoAgent::act`] is called once per layer
//! and carries the LSTM state from one call to the next. The caller records
//! what `act` returns plus the environment's rewards in an [`Episode`], and
//! hands complete episodes to [`PpoAgent::update`]: GAE advantages
//! (normalised over the batch), the clipped surrogate, a squared-error value
//! loss and an entropy bonus, minimised with Adam for
//! [`PpoConfig::epochs`] full-batch steps. The LSTM is re-run over each whole
//! sequence from a zero state, so the gradients flow through time.
//! [`PpoAgent::update_with_elite`] adds self-imitation (Oh et al. 2018, not
//! in ReLeQ): replayed best episodes join the batch with advantage
//! `max(R - V, 0)` under the current policy.
//!
//! Everything random comes from `seed`: the initial weights and the sampling
//! of actions (a [`StdRng`]), so a run with the same seed and the same rewards
//! is reproducible. [`PpoAgent::save`] writes the weights, the Adam moments and
//! the position of the sampling stream to a safetensors file, so a search
//! resumed with [`PpoAgent::load`] continues exactly as if it had not stopped.

use crate::eval::argmax;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::rnn::LSTMState;
use candle_nn::{LSTMConfig, Linear, Module, VarBuilder, VarMap, LSTM, RNN};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Width of the value head's second layer (ReLeQ: FC128-FC64-FC1).
const VALUE_MID: usize = 64;
/// Scale of the policy's last layer at initialisation, so the first policy is
/// close to uniform (the usual PPO choice).
const POLICY_OUT_GAIN: f32 = 0.01;
/// Bound of the uniform initialisation of the LSTM's input weights: gate
/// pre-activations of unit variance for a state of unit norm. PyTorch's
/// `±1/sqrt(hidden)` (kept for the recurrent weights) is sized for inputs as
/// wide as the hidden state; with a state of ~10 features in [0, 1] it leaves
/// the pre-activations at std ~0.1, the LSTM output hardly depends on the
/// state, and the policy learns one action for every layer (on the toy task
/// of the tests: 1 run in 16 finds the target, against ~3 in 4 with this).
const LSTM_INPUT_BOUND: f32 = 1.732_050_8;
/// Adam's constants (PyTorch's defaults).
const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// Why the agent refused a request. Returned wrapped in a [`candle_core::Error`].
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration value is out of range.
    #[error("invalid PPO configuration: {0}")]
    Config(String),
    /// A state does not have the agent's number of features.
    #[error("state has {got} features, the agent expects {expected}")]
    StateDim {
        /// The agent's state size.
        expected: usize,
        /// The given state's size.
        got: usize,
    },
    /// `update` was given no episodes.
    #[error("PPO update needs at least one episode")]
    NoEpisodes,
    /// An episode is inconsistent or does not match the others.
    #[error("episode {index}: {problem}")]
    Episode {
        /// Its position in the batch.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// A checkpoint does not fit this agent.
    #[error("agent checkpoint {path}: {problem}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl From<AgentError> for candle_core::Error {
    fn from(e: AgentError) -> Self {
        candle_core::Error::wrap(e)
    }
}

/// PPO hyper-parameters. [`Default`] gives ReLeQ's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PpoConfig {
    /// Width of the LSTM cell and of the heads' hidden layers (128).
    pub hidden: usize,
    /// Softmax temperature of the policy (0.5): logits are divided by it.
    pub temperature: f32,
    /// PPO clipping range of the probability ratio (0.3).
    pub clip: f32,
    /// Weight of the value loss (1.0).
    pub value_coef: f32,
    /// Weight of the entropy bonus (0.01).
    pub entropy_coef: f32,
    /// Adam learning rate (1e-4).
    pub lr: f64,
    /// Discount factor (0.9).
    pub gamma: f32,
    /// GAE lambda (1.0: plain discounted returns minus the value).
    pub gae_lambda: f32,
    /// Full-batch optimisation steps per [`PpoAgent::update`] (4).
    pub epochs: usize,
    /// Weight of the self-imitation advantage `max(R - V, 0)` of the elite
    /// episodes given to [`PpoAgent::update_with_elite`] (not ReLeQ's; only
    /// used when elite episodes are given; 10, measured in `docs/search.md`).
    pub sil_coef: f32,
}

impl Default for PpoConfig {
    fn default() -> Self {
        Self {
            hidden: 128,
            temperature: 0.5,
            clip: 0.3,
            value_coef: 1.0,
            entropy_coef: 0.01,
            lr: 1e-4,
            gamma: 0.9,
            gae_lambda: 1.0,
            epochs: 4,
            sil_coef: 10.0,
        }
    }
}

impl PpoConfig {
    fn validate(&self) -> Result<(), AgentError> {
        let bad = |what: &str| Err(AgentError::Config(what.into()));
        if self.hidden == 0 {
            return bad("hidden must be > 0");
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return bad("temperature must be > 0");
        }
        if self.clip.is_nan() || self.clip <= 0.0 {
            return bad("clip must be > 0");
        }
        if self.lr.is_nan() || self.lr <= 0.0 {
            return bad("lr must be > 0");
        }
        if !(0.0..=1.0).contains(&self.gamma) || !(0.0..=1.0).contains(&self.gae_lambda) {
            return bad("gamma and gae_lambda must be in [0, 1]");
        }
        if self.epochs == 0 {
            return bad("epochs must be > 0");
        }
        if self.sil_coef.is_nan() || self.sil_coef < 0.0 {
            return bad("sil_coef must be >= 0");
        }
        Ok(())
    }
}

/// One complete episode (one pass over the layers), step by step: what
/// [`PpoAgent::act`] was fed and returned, and the environment's reward.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Episode {
    /// The state fed at each step.
    pub states: Vec<Vec<f32>>,
    /// The action taken.
    pub actions: Vec<usize>,
    /// Its log-probability under the acting policy.
    pub logps: Vec<f32>,
    /// The value estimate at that step.
    pub values: Vec<f32>,
    /// The reward received after the step.
    pub rewards: Vec<f32>,
}

impl Episode {
    /// Append one step.
    pub fn push(&mut self, state: Vec<f32>, action: usize, logp: f32, value: f32, reward: f32) {
        self.states.push(state);
        self.actions.push(action);
        self.logps.push(logp);
        self.values.push(value);
        self.rewards.push(reward);
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether there are no steps.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Mean losses of one [`PpoAgent::update`] (over its epochs).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UpdateStats {
    /// The clipped surrogate loss (negated objective).
    pub policy_loss: f32,
    /// Mean squared error of the value against the GAE returns.
    pub value_loss: f32,
    /// Mean entropy of the (temperature-scaled) policy, in nats.
    pub entropy: f32,
}

/// The network: LSTM cell, policy head, value head.
struct Net {
    lstm: LSTM,
    pi: [Linear; 3],
    v: [Linear; 3],
    inv_temperature: f64,
}

impl Net {
    fn new(
        vb: &VarBuilder,
        state_dim: usize,
        n_actions: usize,
        hidden: usize,
        temperature: f32,
    ) -> candle_core::Result<Self> {
        let lstm = candle_nn::lstm(state_dim, hidden, LSTMConfig::default(), vb.pp("lstm"))?;
        let pi = [
            candle_nn::linear(hidden, hidden, vb.pp("pi.0"))?,
            candle_nn::linear(hidden, hidden, vb.pp("pi.1"))?,
            candle_nn::linear(hidden, n_actions, vb.pp("pi.2"))?,
        ];
        let v = [
            candle_nn::linear(hidden, hidden, vb.pp("v.0"))?,
            candle_nn::linear(hidden, VALUE_MID, vb.pp("v.1"))?,
            candle_nn::linear(VALUE_MID, 1, vb.pp("v.2"))?,
        ];
        Ok(Self { lstm, pi, v, inv_temperature: 1.0 / f64::from(temperature) })
    }

    /// Heads on LSTM outputs `h` `[n, hidden]`: (log-probabilities `[n, n_actions]`, values `[n]`).
    fn heads(&self, h: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let x = self.pi[0].forward(h)?.relu()?;
        let x = self.pi[1].forward(&x)?.relu()?;
        let logits = (self.pi[2].forward(&x)? * self.inv_temperature)?;
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let y = self.v[0].forward(h)?.relu()?;
        let y = self.v[1].forward(&y)?.relu()?;
        let value = self.v[2].forward(&y)?.squeeze(1)?;
        Ok((logp, value))
    }
}

/// Adam (no weight decay) whose moments can be saved and restored.
struct Adam {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: u64,
}

impl Adam {
    fn new(vars: &[(String, Var)]) -> candle_core::Result<Self> {
        let zeros = || vars.iter().map(|(_, v)| v.as_tensor().zeros_like()).collect::<candle_core::Result<Vec<_>>>();
        Ok(Self { m: zeros()?, v: zeros()?, t: 0 })
    }

    fn step(&mut self, vars: &[(String, Var)], grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        self.t += 1;
        let t = i32::try_from(self.t).unwrap_or(i32::MAX);
        let scale_m = 1.0 / (1.0 - ADAM_BETA1.powi(t));
        let scale_v = 1.0 / (1.0 - ADAM_BETA2.powi(t));
        for (i, (_, var)) in vars.iter().enumerate() {
            let Some(g) = grads.get(var) else { continue };
            let g = g.detach();
            let m = ((&self.m[i] * ADAM_BETA1)? + (&g * (1.0 - ADAM_BETA1))?)?;
            let v = ((&self.v[i] * ADAM_BETA2)? + (g.sqr()? * (1.0 - ADAM_BETA2))?)?;
            let step = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + ADAM_EPS)?)?;
            var.set(&(var.as_tensor().detach() - (step * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }
}

/// A PPO agent with an LSTM policy (ReLeQ's architecture), on the CPU.
pub struct PpoAgent {
    cfg: PpoConfig,
    state_dim: usize,
    n_actions: usize,
    device: Device,
    /// Keeps the parameters alive; `vars` is the same set sorted by name.
    _varmap: VarMap,
    vars: Vec<(String, Var)>,
    net: Net,
    adam: Adam,
    /// The recurrent state within the current episode (`None`: zero).
    memory: Option<LSTMState>,
    seed: u64,
    rng: StdRng,
    /// Numbers drawn from `rng` so far (to restore its position on `load`).
    draws: u64,
}

impl std::fmt::Debug for PpoAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PpoAgent")
            .field("cfg", &self.cfg)
            .field("state_dim", &self.state_dim)
            .field("n_actions", &self.n_actions)
            .field("seed", &self.seed)
            .field("draws", &self.draws)
            .field("adam_steps", &self.adam.t)
            .finish_non_exhaustive()
    }
}

/// Seeds the weight initialisation apart from the action sampling.
const INIT_STREAM: u64 = 0x5EED_1A17_0000_0001;

impl PpoAgent {
    /// A fresh agent for states of `state_dim` features and `n_actions`
    /// choices, its weights initialised from `seed` (PyTorch's uniform
    /// ranges, except LSTM input weights in ±sqrt(3), see `LSTM_INPUT_BOUND`; zero
    /// linear biases; a policy output scaled down so the first policy is near
    /// uniform).
    pub fn new(state_dim: usize, n_actions: usize, cfg: PpoConfig, seed: u64) -> candle_core::Result<Self> {
        cfg.validate()?;
        if state_dim == 0 || n_actions == 0 {
            return Err(AgentError::Config("state_dim and n_actions must be > 0".into()).into());
        }
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let net = Net::new(&vb, state_dim, n_actions, cfg.hidden, cfg.temperature)?;
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .map_err(|_| candle_core::Error::msg("var map lock poisoned"))?
            .clone()
            .into_iter()
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let mut init = StdRng::seed_from_u64(seed ^ INIT_STREAM);
        for (name, var) in &vars {
            let dims = var.dims().to_vec();
            let bound = if name == "lstm.weight_ih_l0" {
                LSTM_INPUT_BOUND
            } else if name.starts_with("lstm.") {
                1.0 / (cfg.hidden as f32).sqrt()
            } else if name.ends_with(".weight") {
                let gain = if name == "pi.2.weight" { POLICY_OUT_GAIN } else { 1.0 };
                gain / (dims[1] as f32).sqrt()
            } else {
                0.0
            };
            let values: Vec<f32> =
                (0..var.elem_count()).map(|_| if bound > 0.0 { init.gen_range(-bound..bound) } else { 0.0 }).collect();
            var.set(&Tensor::from_vec(values, dims, &device)?)?;
        }
        let adam = Adam::new(&vars)?;
        Ok(Self {
            cfg,
            state_dim,
            n_actions,
            device,
            _varmap: varmap,
            vars,
            net,
            adam,
            memory: None,
            seed,
            rng: StdRng::seed_from_u64(seed),
            draws: 0,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PpoConfig {
        &self.cfg
    }

    /// Number of state features.
    pub fn state_dim(&self) -> usize {
        self.state_dim
    }

    /// Number of actions.
    pub fn n_actions(&self) -> usize {
        self.n_actions
    }

    /// Start an episode (reset the LSTM state).
    pub fn begin(&mut self) {
        self.memory = None;
    }

    /// Feed the state of the next step; sample an action (or take the argmax when `greedy`); returns (action, log-prob, value). Carries the LSTM state to the next call.
    pub fn act(&mut self, state: &[f32], greedy: bool) -> candle_core::Result<(usize, f32, f32)> {
        let (logp, value) = self.step(state)?;
        let action = if greedy {
            argmax(&logp)
        } else {
            self.draws += 1;
            let u: f32 = self.rng.gen();
            sample(&logp, u)
        };
        Ok((action, logp[action], value))
    }

    /// Like [`act`](Self::act) without choosing: feed the state of the next
    /// step, return the action probabilities and the value. Also carries the
    /// LSTM state to the next call (and draws nothing from the RNG).
    pub fn policy(&mut self, state: &[f32]) -> candle_core::Result<(Vec<f32>, f32)> {
        let (logp, value) = self.step(state)?;
        Ok((logp.iter().map(|l| l.exp()).collect(), value))
    }

    /// One recurrent step: (log-probabilities, value).
    fn step(&mut self, state: &[f32]) -> candle_core::Result<(Vec<f32>, f32)> {
        if state.len() != self.state_dim {
            return Err(AgentError::StateDim { expected: self.state_dim, got: state.len() }.into());
        }
        let x = Tensor::from_slice(state, (1, self.state_dim), &self.device)?;
        let prev = match self.memory.take() {
            Some(m) => m,
            None => self.net.lstm.zero_state(1)?,
        };
        let next = self.net.lstm.step(&x, &prev)?;
        let (logp, value) = self.net.heads(&next.h)?;
        let logp = logp.squeeze(0)?.to_vec1::<f32>()?;
        let value = value.squeeze(0)?.to_scalar::<f32>()?;
        // Keep no autograd graph across calls.
        self.memory = Some(LSTMState::new(next.h.detach(), next.c.detach()));
        Ok((logp, value))
    }

    /// PPO update on complete episodes (each a pass over the layers, so sequences of equal length): GAE advantages (normalised), clipped surrogate, value loss, entropy bonus, Adam; the LSTM is re-run over each whole sequence from a zero state. Returns mean losses.
    pub fn update(&mut self, episodes: &[Episode]) -> candle_core::Result<UpdateStats> {
        self.update_with_elite(episodes, &[])
    }

    /// [`update`](Self::update) with self-imitation (Oh et al., "Self-Imitation
    /// Learning", ICML 2018): the `elite` episodes (the best found so far,
    /// replayed) join the batch with their log-probabilities and values
    /// recomputed under the current policy, advantage
    /// `sil_coef * max(R - V, 0)` (R the discounted return, not normalised,
    /// so an elite the policy already reproduces and values correctly adds
    /// nothing) and value target `max(R, V)`. Their `logps` and `values`
    /// fields are ignored.
    pub fn update_with_elite(&mut self, episodes: &[Episode], elite: &[Episode]) -> candle_core::Result<UpdateStats> {
        let (b, t) = self.check_batch(episodes)?;
        if !elite.is_empty() {
            let (_, te) = self.check_batch(elite)?;
            if te != t {
                return Err(AgentError::Episode {
                    index: 0,
                    problem: format!("elite episodes have {te} steps, the batch {t}"),
                }
                .into());
            }
        }
        let n = b * t;
        let (gamma, lambda) = (self.cfg.gamma, self.cfg.gae_lambda);
        let mut adv = Vec::with_capacity(n);
        let mut ret = Vec::with_capacity(n);
        let mut old_logp: Vec<f32> = episodes.iter().flat_map(|e| e.logps.iter().copied()).collect();
        for ep in episodes {
            let mut a = vec![0.0f32; t];
            let mut gae = 0.0f32;
            for i in (0..t).rev() {
                let next_value = if i + 1 < t { ep.values[i + 1] } else { 0.0 };
                let delta = ep.rewards[i] + gamma * next_value - ep.values[i];
                gae = delta + gamma * lambda * gae;
                a[i] = gae;
            }
            ret.extend(a.iter().zip(&ep.values).map(|(a, v)| a + v));
            adv.extend(a);
        }
        if n > 1 {
            let mean = adv.iter().sum::<f32>() / n as f32;
            let std = (adv.iter().map(|a| (a - mean).powi(2)).sum::<f32>() / n as f32).sqrt();
            adv.iter_mut().for_each(|a| *a = (*a - mean) / (std + 1e-8));
        }
        let all: Vec<&Episode> = episodes.iter().chain(elite).collect();
        let (b_all, n_all) = (all.len(), all.len() * t);
        let dev = &self.device;
        let states: Vec<f32> = all.iter().flat_map(|e| e.states.iter().flatten().copied()).collect();
        let states = Tensor::from_vec(states, (b_all, t, self.state_dim), dev)?;
        let actions: Vec<u32> = all.iter().flat_map(|e| e.actions.iter().map(|&a| a as u32)).collect();
        let actions = Tensor::from_vec(actions, (n_all, 1), dev)?;
        if !elite.is_empty() {
            let k = elite.len();
            let (logp_now, value_now) =
                self.forward_sequences(&states.narrow(0, b, k)?, &actions.narrow(0, n, k * t)?)?;
            for (j, ep) in elite.iter().enumerate() {
                let mut r = 0.0f32;
                let mut returns = vec![0.0f32; t];
                for i in (0..t).rev() {
                    r = ep.rewards[i] + gamma * r;
                    returns[i] = r;
                }
                for (i, &r) in returns.iter().enumerate() {
                    let v = value_now[j * t + i];
                    adv.push(self.cfg.sil_coef * (r - v).max(0.0));
                    ret.push(r.max(v));
                    old_logp.push(logp_now[j * t + i]);
                }
            }
        }
        let old_logp = Tensor::from_vec(old_logp, n_all, dev)?;
        let adv = Tensor::from_vec(adv, n_all, dev)?;
        let ret = Tensor::from_vec(ret, n_all, dev)?;
        let clip = f64::from(self.cfg.clip);

        let mut stats = UpdateStats::default();
        for _ in 0..self.cfg.epochs {
            let seq = self.net.lstm.seq(&states)?;
            let h = self.net.lstm.states_to_tensor(&seq)?.reshape((n_all, self.cfg.hidden))?;
            let (logp_all, value) = self.net.heads(&h)?;
            let entropy = (logp_all.exp()? * &logp_all)?.sum(1)?.neg()?.mean_all()?;
            let logp = logp_all.gather(&actions, 1)?.squeeze(1)?;
            let ratio = (logp - &old_logp)?.exp()?;
            let surr1 = (&ratio * &adv)?;
            let surr2 = (ratio.clamp(1.0 - clip, 1.0 + clip)? * &adv)?;
            let policy_loss = surr1.minimum(&surr2)?.mean_all()?.neg()?;
            let value_loss = (value - &ret)?.sqr()?.mean_all()?;
            let loss = ((&policy_loss + (&value_loss * f64::from(self.cfg.value_coef))?)?
                - (&entropy * f64::from(self.cfg.entropy_coef))?)?;
            let grads = loss.backward()?;
            self.adam.step(&self.vars, &grads, self.cfg.lr)?;
            stats.policy_loss += policy_loss.to_scalar::<f32>()?;
            stats.value_loss += value_loss.to_scalar::<f32>()?;
            stats.entropy += entropy.to_scalar::<f32>()?;
        }
        let k = self.cfg.epochs as f32;
        Ok(UpdateStats {
            policy_loss: stats.policy_loss / k,
            value_loss: stats.value_loss / k,
            entropy: stats.entropy / k,
        })
    }

    /// Log-probabilities of `actions` `[b * t, 1]` and values, both flat
    /// `[b * t]`, for whole sequences `states` `[b, t, state_dim]` under the
    /// current policy (no gradient kept).
    fn forward_sequences(&self, states: &Tensor, actions: &Tensor) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        let n = actions.dim(0)?;
        let seq = self.net.lstm.seq(states)?;
        let h = self.net.lstm.states_to_tensor(&seq)?.reshape((n, self.cfg.hidden))?.detach();
        let (logp_all, value) = self.net.heads(&h)?;
        let logp = logp_all.gather(actions, 1)?.squeeze(1)?.detach().to_vec1::<f32>()?;
        Ok((logp, value.detach().to_vec1::<f32>()?))
    }

    /// Check a batch: non-empty, consistent, equal lengths. Returns (episodes, steps).
    fn check_batch(&self, episodes: &[Episode]) -> Result<(usize, usize), AgentError> {
        let first = episodes.first().ok_or(AgentError::NoEpisodes)?;
        let t = first.len();
        for (index, e) in episodes.iter().enumerate() {
            let bad = |problem: String| Err(AgentError::Episode { index, problem });
            if e.is_empty() {
                return bad("no steps".into());
            }
            if e.len() != t {
                return bad(format!("{} steps, episode 0 has {t} (a batch needs equal lengths)", e.len()));
            }
            let lens = [e.states.len(), e.logps.len(), e.values.len(), e.rewards.len()];
            if lens.iter().any(|&l| l != t) {
                return bad(format!(
                    "{} actions but {} states, {} log-probs, {} values, {} rewards",
                    t, lens[0], lens[1], lens[2], lens[3]
                ));
            }
            if let Some(s) = e.states.iter().find(|s| s.len() != self.state_dim) {
                return bad(format!("a state has {} features, the agent expects {}", s.len(), self.state_dim));
            }
            if let Some(a) = e.actions.iter().find(|&&a| a >= self.n_actions) {
                return bad(format!("action {a} out of range (the agent has {} actions)", self.n_actions));
            }
        }
        Ok((episodes.len(), t))
    }

    /// Save the weights, the Adam state and the position of the sampling RNG (safetensors).
    pub fn save(&self, path: &Path) -> candle_core::Result<()> {
        let dev = &self.device;
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, var)) in self.vars.iter().enumerate() {
            map.insert(format!("net.{name}"), var.as_tensor().detach());
            map.insert(format!("adam.m.{name}"), self.adam.m[i].clone());
            map.insert(format!("adam.v.{name}"), self.adam.v[i].clone());
        }
        let dims = [self.state_dim, self.n_actions, self.cfg.hidden].map(|d| d as i64);
        map.insert("meta.dims".into(), Tensor::new(&dims, dev)?);
        // u64 stored bit for bit in i64.
        let counters = [self.seed as i64, self.draws as i64, self.adam.t as i64];
        map.insert("meta.counters".into(), Tensor::new(&counters, dev)?);
        candle_core::safetensors::save(&map, path)
    }

    /// Restore what [`save`](Self::save) wrote: weights, Adam state, and the
    /// sampling RNG (the saved seed and position replace this agent's). The
    /// file must come from an agent of the same sizes. Resets the LSTM state.
    pub fn load(&mut self, path: &Path) -> candle_core::Result<()> {
        let err = |problem: String| -> candle_core::Error {
            AgentError::Checkpoint { path: path.to_path_buf(), problem }.into()
        };
        let mut map = candle_core::safetensors::load(path, &self.device)?;
        let mut take = |name: &str, dims: &[usize], dtype: DType| -> candle_core::Result<Tensor> {
            let t = map.remove(name).ok_or_else(|| err(format!("no tensor `{name}`")))?;
            if t.dims() != dims || t.dtype() != dtype {
                return Err(err(format!("`{name}` is {:?} {:?}, expected {dims:?} {dtype:?}", t.dims(), t.dtype())));
            }
            Ok(t)
        };
        let dims = take("meta.dims", &[3], DType::I64)?.to_vec1::<i64>()?;
        let want = [self.state_dim, self.n_actions, self.cfg.hidden].map(|d| d as i64);
        if dims != want {
            return Err(err(format!("saved (state_dim, n_actions, hidden) = {dims:?}, this agent has {want:?}")));
        }
        let counters = take("meta.counters", &[3], DType::I64)?.to_vec1::<i64>()?;
        let mut weights = Vec::with_capacity(self.vars.len());
        let mut m = Vec::with_capacity(self.vars.len());
        let mut v = Vec::with_capacity(self.vars.len());
        for (name, var) in &self.vars {
            weights.push(take(&format!("net.{name}"), var.dims(), DType::F32)?);
            m.push(take(&format!("adam.m.{name}"), var.dims(), DType::F32)?);
            v.push(take(&format!("adam.v.{name}"), var.dims(), DType::F32)?);
        }
        if let Some(extra) = map.keys().min() {
            return Err(err(format!("unexpected tensor `{extra}`")));
        }
        // All checked: commit.
        for ((_, var), w) in self.vars.iter().zip(&weights) {
            var.set(w)?;
        }
        self.adam.m = m;
        self.adam.v = v;
        self.adam.t = counters[2] as u64;
        self.seed = counters[0] as u64;
        self.draws = counters[1] as u64;
        self.rng = StdRng::seed_from_u64(self.seed);
        for _ in 0..self.draws {
            let _: f32 = self.rng.gen();
        }
        self.memory = None;
        Ok(())
    }
}

/// Inverse-CDF sample from log-probabilities with a uniform `u` in [0, 1).
fn sample(logp: &[f32], u: f32) -> usize {
    let mut acc = 0.0f32;
    let mut last = 0;
    for (i, l) in logp.iter().enumerate() {
        let p = l.exp();
        if p > 0.0 {
            last = i;
        }
        acc += p;
        if u < acc {
            return i;
        }
    }
    // Rounding left the total below `u`: the last possible action.
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A state sequence from a fixed RNG.
    fn random_states(seed: u64, steps: usize, dim: usize) -> Vec<Vec<f32>> {
        let mut r = StdRng::seed_from_u64(seed);
        (0..steps).map(|_| (0..dim).map(|_| r.gen_range(-1.0..1.0)).collect()).collect()
    }

    #[test]
    fn shapes_determinism_and_reset() {
        let cfg = PpoConfig::default();
        let states = random_states(1, 5, 11);
        let run = |agent: &mut PpoAgent, greedy: bool| -> Vec<(usize, f32, f32)> {
            agent.begin();
            states.iter().map(|s| agent.act(s, greedy).unwrap()).collect()
        };
        let mut a = PpoAgent::new(11, 5, cfg, 7).unwrap();
        let mut b = PpoAgent::new(11, 5, cfg, 7).unwrap();
        let mut c = PpoAgent::new(11, 5, cfg, 8).unwrap();
        for _ in 0..3 {
            let (ra, rb, rc) = (run(&mut a, false), run(&mut b, false), run(&mut c, false));
            assert_eq!(ra, rb, "same seed, same actions, log-probs and values");
            assert_ne!(ra, rc, "another seed differs");
            for &(act, logp, value) in &ra {
                assert!(act < 5 && logp <= 0.0 && logp.is_finite() && value.is_finite());
            }
        }
        // Probabilities sum to one; `begin` resets the recurrent state, which otherwise carries.
        a.begin();
        let first: Vec<Vec<f32>> = states.iter().map(|s| a.policy(s).unwrap().0).collect();
        let carried: Vec<Vec<f32>> = states.iter().map(|s| a.policy(s).unwrap().0).collect();
        a.begin();
        let again: Vec<Vec<f32>> = states.iter().map(|s| a.policy(s).unwrap().0).collect();
        assert_eq!(first, again);
        assert_ne!(first, carried);
        for p in &first {
            assert_eq!(p.len(), 5);
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        // Greedy is the argmax and consumes no randomness.
        a.begin();
        let greedy = run(&mut a, true);
        for ((act, _, _), p) in greedy.iter().zip(&first) {
            assert_eq!(*act, argmax(p));
        }
        // Wrong sizes are errors.
        assert!(a.act(&[0.0; 3], false).is_err());
        assert!(a.update(&[]).is_err());
    }

    /// The toy task: 5 steps, 7 actions; the state is the one-hot step index
    /// and the one-hot previous action; a terminal reward (zero before the
    /// last step) of the fraction of actions equal to `TARGET`.
    const TARGET: [usize; 5] = [2, 2, 3, 2, 6];
    const TOY_ACTIONS: usize = 7;
    const TOY_DIM: usize = TARGET.len() + TOY_ACTIONS;
    /// ReLeQ's configuration with a larger learning rate, so the test is short.
    const TOY_LR: f64 = 1e-3;

    fn toy_episode(agent: &mut PpoAgent, greedy: bool) -> (Episode, f32) {
        agent.begin();
        let mut ep = Episode::default();
        let mut prev = None;
        let mut matched = 0;
        for (step, &target) in TARGET.iter().enumerate() {
            let mut s = vec![0.0; TOY_DIM];
            s[step] = 1.0;
            if let Some(p) = prev {
                s[TARGET.len() + p] = 1.0;
            }
            let (a, logp, value) = agent.act(&s, greedy).unwrap();
            matched += usize::from(a == target);
            let reward = if step + 1 == TARGET.len() { matched as f32 / TARGET.len() as f32 } else { 0.0 };
            ep.push(s, a, logp, value, reward);
            prev = Some(a);
        }
        let r = *ep.rewards.last().unwrap();
        (ep, r)
    }

    /// How a toy run went.
    struct ToyRun {
        /// Greedy reward before training.
        greedy_before: f32,
        /// Mean reward of the first sampled batch.
        sampled_first: f32,
        /// Greedy reward after each update.
        greedy: Vec<f32>,
        /// Mean reward of the last sampled batch.
        sampled_last: f32,
        agent: PpoAgent,
    }

    fn train_toy(seed: u64, updates: usize, batch: usize) -> ToyRun {
        let cfg = PpoConfig { lr: TOY_LR, ..PpoConfig::default() };
        let mut agent = PpoAgent::new(TOY_DIM, TOY_ACTIONS, cfg, seed).unwrap();
        let greedy_before = toy_episode(&mut agent, true).1;
        let (mut sampled_first, mut sampled_last) = (0.0, 0.0);
        let mut greedy = Vec::with_capacity(updates);
        for u in 0..updates {
            let (eps, rewards): (Vec<Episode>, Vec<f32>) = (0..batch).map(|_| toy_episode(&mut agent, false)).unzip();
            sampled_last = rewards.iter().sum::<f32>() / batch as f32;
            if u == 0 {
                sampled_first = sampled_last;
            }
            let stats = agent.update(&eps).unwrap();
            assert!(stats.policy_loss.is_finite() && stats.value_loss.is_finite() && stats.entropy >= 0.0);
            greedy.push(toy_episode(&mut agent, true).1);
        }
        ToyRun { greedy_before, sampled_first, greedy, sampled_last, agent }
    }

    /// Greedy rewards as a string of matched counts (0..=5), one per update.
    fn trace(greedy: &[f32]) -> String {
        greedy.iter().map(|g| char::from(b'0' + (g * TARGET.len() as f32).round() as u8)).collect()
    }

    #[test]
    fn learns_toy_sequence() {
        let start = Instant::now();
        let seeds = [1, 2, 3];
        let mut finals = Vec::new();
        for seed in seeds {
            let run = train_toy(seed, 40, 16);
            let after = *run.greedy.last().unwrap();
            eprintln!(
                "seed {seed}: greedy reward {:.2} -> {after:.2}; sampled mean {:.2} (first batch) -> {:.2} (last); \
                 greedy matches per update {}",
                run.greedy_before,
                run.sampled_first,
                run.sampled_last,
                trace(&run.greedy)
            );
            assert!(run.sampled_first < 0.3, "seed {seed}: an untrained agent already scores {}", run.sampled_first);
            assert!(after >= 0.8, "seed {seed}: greedy reward after training {after}");
            assert!(run.sampled_last >= 0.7, "seed {seed}: sampled reward after training {}", run.sampled_last);
            finals.push(after);
        }
        let mean = finals.iter().sum::<f32>() / finals.len() as f32;
        assert!(mean > 0.8, "mean greedy reward after training {mean}");
        eprintln!("{} x 40 updates of 16 episodes: {:.2?}", seeds.len(), start.elapsed());
    }

    /// How often the toy task is solved exactly (by hand: `-- --ignored --nocapture`).
    #[test]
    #[ignore = "statistics over many seeds, run by hand"]
    fn toy_success_rate() {
        let n = 24;
        let mut solved = 0;
        for seed in 1..=n {
            let run = train_toy(seed, 40, 16);
            solved += usize::from(*run.greedy.last().unwrap() == 1.0);
            eprintln!("seed {seed:2}: {}", trace(&run.greedy));
        }
        eprintln!("solved exactly after 40 updates of 16 episodes: {solved}/{n}");
    }

    #[test]
    fn same_seed_and_rewards_reproduce_training() {
        let mut a = train_toy(5, 3, 8).agent;
        let mut b = train_toy(5, 3, 8).agent;
        let (ea, eb) = (toy_episode(&mut a, false).0, toy_episode(&mut b, false).0);
        assert_eq!(ea, eb);
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.safetensors");
        let mut a = train_toy(11, 3, 8).agent;
        a.save(&path).unwrap();
        let mut b = PpoAgent::new(TOY_DIM, TOY_ACTIONS, *a.config(), 999).unwrap();
        b.load(&path).unwrap();
        let states = random_states(3, 5, TOY_DIM);
        a.begin();
        b.begin();
        for s in &states {
            assert_eq!(a.policy(s).unwrap(), b.policy(s).unwrap(), "identical probabilities and values");
        }
        // The sampling stream and Adam state are restored too: training continues identically.
        let ea: Vec<Episode> = (0..8).map(|_| toy_episode(&mut a, false).0).collect();
        let eb: Vec<Episode> = (0..8).map(|_| toy_episode(&mut b, false).0).collect();
        assert_eq!(ea, eb);
        assert_eq!(a.update(&ea).unwrap(), b.update(&eb).unwrap());
        a.begin();
        b.begin();
        assert_eq!(a.policy(&states[0]).unwrap(), b.policy(&states[0]).unwrap());
        // A checkpoint of other sizes is refused and leaves the agent as it was.
        let mut c = PpoAgent::new(TOY_DIM, TOY_ACTIONS + 1, *a.config(), 0).unwrap();
        let before = c.policy(&states[0]).unwrap();
        assert!(c.load(&path).is_err());
        c.begin();
        assert_eq!(c.policy(&states[0]).unwrap(), before);
    }

    #[test]
    fn rejects_bad_batches() {
        let mut agent = PpoAgent::new(TOY_DIM, TOY_ACTIONS, PpoConfig::default(), 0).unwrap();
        let (e5, _) = toy_episode(&mut agent, false);
        let mut e4 = e5.clone();
        e4.states.pop();
        e4.actions.pop();
        e4.logps.pop();
        e4.values.pop();
        e4.rewards.pop();
        assert!(agent.update(&[e5.clone(), e4.clone()]).is_err(), "unequal lengths");
        let mut ragged = e5.clone();
        ragged.rewards.pop();
        assert!(agent.update(&[ragged]).is_err());
        let mut bad_action = e5.clone();
        bad_action.actions[0] = TOY_ACTIONS;
        assert!(agent.update(&[bad_action]).is_err());
        assert!(agent.update(&[e4]).is_ok(), "a batch of one shorter episode is fine");
        assert!(PpoAgent::new(3, 2, PpoConfig { epochs: 0, ..PpoConfig::default() }, 0).is_err());
    }

    #[test]
    fn self_imitation_pulls_towards_elite() {
        // Batches of zero-reward episodes teach nothing; an elite episode with
        // a positive return makes its actions more likely.
        let mut agent =
            PpoAgent::new(TOY_DIM, TOY_ACTIONS, PpoConfig { lr: TOY_LR, ..PpoConfig::default() }, 3).unwrap();
        let (mut elite, _) = toy_episode(&mut agent, false);
        elite.rewards = vec![0.0, 0.0, 0.0, 0.0, 1.0];
        let logp_of = |agent: &mut PpoAgent| -> f32 {
            agent.begin();
            elite.states.iter().zip(&elite.actions).map(|(s, &a)| agent.policy(s).unwrap().0[a].ln()).sum()
        };
        let before = logp_of(&mut agent);
        for _ in 0..10 {
            let batch: Vec<Episode> = (0..4)
                .map(|_| {
                    let (mut e, _) = toy_episode(&mut agent, false);
                    e.rewards.iter_mut().for_each(|r| *r = 0.0);
                    e
                })
                .collect();
            agent.update_with_elite(&batch, std::slice::from_ref(&elite)).unwrap();
        }
        let after = logp_of(&mut agent);
        assert!(after > before + 1.0, "elite log-probability {before} -> {after}");
        let (mut short, _) = toy_episode(&mut agent, false);
        short.states.pop();
        short.actions.pop();
        short.logps.pop();
        short.values.pop();
        short.rewards.pop();
        let (ep, _) = toy_episode(&mut agent, false);
        assert!(agent.update_with_elite(&[ep], &[short]).is_err(), "elite of another length");
    }

    /// Timing with ReLeQ's sizes: `cargo test --release -p releq-host --lib search::agent -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing, run by hand"]
    fn timing_act_and_update() {
        let mut agent = PpoAgent::new(11, 5, PpoConfig::default(), 0).unwrap();
        let states = random_states(4, 5, 11);
        let mut batch = Vec::new();
        let start = Instant::now();
        for e in 0..16 {
            agent.begin();
            let mut ep = Episode::default();
            for (i, s) in states.iter().enumerate() {
                let (a, logp, value) = agent.act(s, false).unwrap();
                ep.push(s.clone(), a, logp, value, if i == 4 { (e % 3) as f32 / 2.0 } else { 0.0 });
            }
            batch.push(ep);
        }
        let per_act = start.elapsed() / 80;
        for _ in 0..3 {
            agent.update(&batch).unwrap(); // warm-up
        }
        let reps = 20;
        let start = Instant::now();
        for _ in 0..reps {
            agent.update(&batch).unwrap();
        }
        let per_update = start.elapsed() / reps;
        let start = Instant::now();
        for _ in 0..200 {
            agent.begin();
            for s in &states {
                agent.act(s, false).unwrap();
            }
        }
        let per_act_warm = start.elapsed() / 1000;
        eprintln!(
            "act: {per_act_warm:.2?} (first 80 calls: {per_act:.2?}); update of 16 x 5 steps, {} epochs: {per_update:.2?}",
            agent.config().epochs
        );
    }
}
