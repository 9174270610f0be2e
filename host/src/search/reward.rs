//! ReLeQ's asymmetric, shaped reward with a measured cost state.
//!
//! With `y = S_acc = accuracy / float accuracy` (validation split) and
//! `x = C - C_min`, where the cost `C` of a configuration is
//!
//! - measured (default): `C = w_l * L / L_int8 + w_f * F / F_int8`, the
//!   weighted mix of the device-measured latency and the flash bytes relative
//!   to the all-8-bit model on the same firmware (`w_l + w_f = 1`);
//! - `--cost bits` (the paper's): `C = mean weight bits / 8`;
//!
//! and `C_min` the cost of the configuration with every layer at the lowest
//! bitwidth allowed, the reward is
//!
//! ```text
//! R = -1                                    if y < th
//! R = 2 * ((1 - x^a) * y^(b / y) - 0.5)     otherwise
//! ```
//!
//! with ReLeQ's LeNet constants `a = 0.6`, `b = 3`. ReLeQ fixes `th = 0.8`;
//! releq derives it from `--max-accuracy-loss` (`th = 1 - loss / float
//! accuracy`) so that configurations outside the accuracy constraint earn the
//! flat punishment, unless `--reward-threshold` sets it.

use serde::{Deserialize, Serialize};

/// How the cost of a configuration is measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Cost {
    /// Measured latency and flash, weighted.
    Measured {
        /// Weight of relative latency.
        latency: f64,
        /// Weight of relative flash.
        flash: f64,
    },
    /// Mean weight bits / 8 (the paper's cost).
    Bits,
}

/// The reward's constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RewardParams {
    /// Relative-accuracy threshold below which the reward is -1.
    pub th: f64,
    /// Exponent of the cost term.
    pub a: f64,
    /// Exponent scale of the accuracy term.
    pub b: f64,
}

impl RewardParams {
    /// ReLeQ's LeNet constants with the threshold for a maximum accuracy
    /// loss (percentage points) below a float accuracy (fraction).
    pub fn for_max_loss(max_loss_pp: f64, float_acc: f64) -> Self {
        Self { th: 1.0 - (max_loss_pp / 100.0) / float_acc.max(1e-9), a: 0.6, b: 3.0 }
    }
}

/// The cost state of a configuration (see the module doc).
pub fn cost(kind: Cost, latency_rel: f64, flash_rel: f64, mean_wbits: f64) -> f64 {
    match kind {
        Cost::Measured { latency, flash } => {
            let sum = (latency + flash).max(1e-12);
            (latency * latency_rel + flash * flash_rel) / sum
        }
        Cost::Bits => mean_wbits / 8.0,
    }
}

/// ReLeQ's reward for cost `c` (its minimum `c_min`) and relative accuracy `y`.
pub fn reward(c: f64, c_min: f64, y: f64, p: &RewardParams) -> f64 {
    // The tolerance keeps an accuracy exactly at the threshold (a ratio of
    // counts, rounded) above it.
    if y + 1e-9 < p.th {
        return -1.0;
    }
    let x = (c - c_min).max(0.0);
    2.0 * ((1.0 - x.powf(p.a)) * y.powf(p.b / y) - 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RewardParams = RewardParams { th: 0.8, a: 0.6, b: 3.0 };

    #[test]
    fn values_worked_by_hand() {
        // Minimum cost and full accuracy: 2 * (1 * 1 - 0.5) = 1.
        assert!((reward(0.25, 0.25, 1.0, &P) - 1.0).abs() < 1e-12);
        // x = 0.75 (all 8-bit with c_min 0.25), y = 1: 1 - 0.75^0.6 = 0.15853; 2 * (0.15853 - 0.5) = -0.68293.
        assert!((reward(1.0, 0.25, 1.0, &P) - (-0.682_93)).abs() < 1e-5);
        // y = 0.9: 0.9^(3/0.9) = 0.703842; x = 0: 2 * (0.703842 - 0.5) = 0.407684.
        assert!((reward(0.25, 0.25, 0.9, &P) - 0.407_684).abs() < 1e-5);
        // Below the threshold: -1 whatever the cost.
        assert_eq!(reward(0.25, 0.25, 0.79, &P), -1.0);
    }

    #[test]
    fn asymmetric_accuracy_costs_more_than_savings_gain() {
        // Losing 5 % accuracy costs more reward than saving 5 % of the cost earns.
        let base = reward(0.6, 0.25, 1.0, &P);
        let cheaper = reward(0.55, 0.25, 1.0, &P);
        let less_accurate = reward(0.6, 0.25, 0.95, &P);
        assert!(cheaper - base < base - less_accurate, "{base} {cheaper} {less_accurate}");
        // Monotone: cheaper is better, more accurate is better.
        assert!(cheaper > base && base > less_accurate);
    }

    #[test]
    fn cost_mixes_latency_and_flash() {
        let c = cost(Cost::Measured { latency: 0.7, flash: 0.3 }, 0.5, 0.25, 8.0);
        assert!((c - (0.35 + 0.075)).abs() < 1e-12);
        assert_eq!(cost(Cost::Bits, 0.5, 0.25, 4.0), 0.5);
        let th = RewardParams::for_max_loss(0.3, 0.99).th;
        assert!((th - (1.0 - 0.003 / 0.99)).abs() < 1e-12);
    }

    #[test]
    fn accuracy_exactly_at_the_limit_is_not_punished() {
        // 5,948 / 6,000 against 5,966 / 6,000 is a loss of exactly 0.3 pp,
        // which f64 computes as a hair above it.
        let (float, acc) = (5966.0 / 6000.0, 5948.0 / 6000.0);
        assert!((float - acc) * 100.0 > 0.3);
        let p = RewardParams::for_max_loss(0.3, float);
        assert!(reward(0.5, 0.25, acc / float, &p) > -1.0);
        // One image fewer is punished.
        assert_eq!(reward(0.5, 0.25, (5947.0 / 6000.0) / float, &p), -1.0);
    }
}
