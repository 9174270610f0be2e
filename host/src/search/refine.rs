//! The final stage of a search: fine-tune (QAT) a few configurations cheaper
//! than the proxy's choice and keep the best one that meets the constraints.
//!
//! The search ranks configurations with post-training quantization, which is
//! pessimistic at low bits: on LeNet-5, `[4,4,2,2,4]` loses 0.6 pp with PTQ
//! and 0.24 pp after 300 QAT steps. So, after the search:
//!
//! 1. The *pool* is every evaluated configuration that is cheaper than the
//!    chosen one, meets the latency and flash constraints, and loses at most
//!    `max_accuracy_loss + slack` pp on the proxy; sorted by cost, with the
//!    chosen configuration appended last. (Not the proxy's Pareto front: QAT
//!    recovers most where PTQ loses most, so after QAT accuracy follows cost
//!    more than it follows the proxy. On LeNet-5, `[4,4,3,3,4]` and
//!    `[4,4,2,2,4]` are 98.80 % and 98.33 % by PTQ, 98.80 % and 98.88 % after
//!    QAT.)
//! 2. A binary search over the pool, assuming feasibility after QAT is
//!    monotone in cost, fine-tunes at most `candidates` of them, looking for
//!    the cheapest one that is feasible after QAT. Each one tried keeps the
//!    better of its PTQ and QAT models on the whole validation split and is
//!    scored with the search's reward on that split.
//! 3. If the binary search ends on the chosen configuration, it is
//!    fine-tuned too (as a search without refinement would).
//!
//! The result is the feasible configuration with the best reward among those
//! tried, and the chosen one's PTQ model otherwise. Every configuration tried
//! is appended to `refine.jsonl` with its model under `refine/`, so
//! `--resume` fine-tunes nothing twice. The test split is never used.

use super::env::{Constraints, Env, Record};
use super::{io, read_jsonl, SearchError};
use crate::data::Images;
use crate::search::oracle::accuracy_of;
use releq_common::builder::OwnedModel;
use releq_common::validate::Plan;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::path::Path;

/// How the refinement runs.
#[derive(Debug, Clone)]
pub struct RefineOptions {
    /// Most configurations to fine-tune before the chosen one (0: only the
    /// chosen one, as without refinement).
    pub candidates: usize,
    /// Extra accuracy loss (pp) the proxy may show for a configuration to be
    /// worth fine-tuning.
    pub slack_pp: f64,
    /// QAT steps (0: no fine-tuning at all, the chosen PTQ model is kept).
    pub steps: usize,
    /// Progress bars.
    pub progress: bool,
}

/// One configuration tried (a line of `refine.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tried {
    /// Weight bits.
    pub wbits: Vec<u8>,
    /// Activation bits.
    pub abits: Vec<u8>,
    /// QAT steps.
    pub steps: usize,
    /// Accuracy the search's proxy gave it.
    pub proxy_val_accuracy: f64,
    /// PTQ accuracy on the whole validation split.
    pub ptq_val_accuracy: f64,
    /// QAT accuracy on the whole validation split (None: not fine-tuned).
    pub qat_val_accuracy: Option<f64>,
    /// The kept model is the QAT one.
    pub kept_qat: bool,
    /// The kept model's record, scored on the whole validation split.
    pub record: Record,
    /// Kept model file, relative to the run directory.
    pub model: String,
}

/// What the refinement chose.
pub struct Refined {
    /// The final model.
    pub model: OwnedModel,
    /// Its entry.
    pub chosen: Tried,
    /// Every configuration tried, in order.
    pub tried: Vec<Tried>,
    /// Size of the pool (the chosen configuration included).
    pub pool: usize,
}

/// The pool of step 1 (see the module doc), the chosen record last.
pub fn pool(records: &[Record], chosen: &Record, k: &Constraints, slack_pp: f64) -> Vec<Record> {
    let mut uniq: Vec<&Record> = Vec::new();
    for r in records {
        let eligible = r.cost < chosen.cost
            && r.accuracy_loss_pp <= k.max_accuracy_loss + slack_pp
            && k.max_latency.is_none_or(|m| r.latency <= m)
            && k.max_flash.is_none_or(|m| r.flash_bytes <= m);
        if eligible && !uniq.iter().any(|u| u.wbits == r.wbits && u.abits == r.abits) {
            uniq.push(r);
        }
    }
    let mut pool: Vec<Record> = uniq.into_iter().cloned().collect();
    pool.sort_by(|a, b| a.cost.total_cmp(&b.cost));
    pool.push(chosen.clone());
    pool
}

fn key(wbits: &[u8], abits: &[u8]) -> String {
    let j = |b: &[u8]| b.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("-");
    format!("w{}_a{}", j(wbits), j(abits))
}

/// Read `refine.jsonl` (missing: nothing tried yet).
pub fn read_tried(path: &Path) -> Result<Vec<Tried>, SearchError> {
    match path.exists() {
        true => read_jsonl(path),
        false => Ok(Vec::new()),
    }
}

struct Ctx<'e, 'd> {
    env: &'e mut Env<'d>,
    val: &'e Images,
    float_val: f64,
    o: &'e RefineOptions,
    dir: &'e Path,
    earlier: Vec<Tried>,
    tried: Vec<Tried>,
    models: Vec<OwnedModel>,
}

impl Ctx<'_, '_> {
    /// PTQ and (with `qat`) QAT of one configuration; the better one kept.
    fn try_config(&mut self, r: &Record, qat: bool) -> Result<usize, SearchError> {
        let steps = if qat { self.o.steps } else { 0 };
        if let Some(i) = self.tried.iter().position(|t| t.wbits == r.wbits && t.abits == r.abits && t.steps == steps) {
            return Ok(i);
        }
        let file = self.dir.join(format!("refine/{}-{steps}.releq", key(&r.wbits, &r.abits)));
        let rel = file.strip_prefix(self.dir).unwrap_or(&file).display().to_string();
        // Resume: an earlier run's entry and its model, if the file decodes.
        if let Some(t) = self.earlier.iter().find(|t| t.wbits == r.wbits && t.abits == r.abits && t.steps == steps) {
            if let Some(m) = std::fs::read(&file)
                .ok()
                .and_then(|b| Plan::from_bytes(&b).ok().map(|p| OwnedModel::from_model(&p.model)))
            {
                self.tried.push(t.clone());
                self.models.push(m);
                return Ok(self.tried.len() - 1);
            }
        }
        let (ptq, _) = self.env.oracle.model(&r.wbits, &r.abits)?;
        let ptq_val = accuracy_of(&ptq, self.val)?;
        let (model, qat_val) = if steps > 0 {
            let (m, _) = self.env.oracle.finetuned(&r.wbits, &r.abits, steps, self.o.progress)?;
            let acc = accuracy_of(&m, self.val)?;
            (Some(m), Some(acc))
        } else {
            (None, None)
        };
        // Keep QAT only if it helps (it can hurt a nearly lossless configuration).
        let (kept_qat, model, acc) = match (model, qat_val) {
            (Some(m), Some(a)) if a >= ptq_val => (true, m, a),
            _ => (false, ptq, ptq_val),
        };
        let record = Record {
            step: r.step,
            episode: r.episode,
            strategy: "refine".into(),
            new: false,
            ..self.env.score(&r.wbits, &r.abits, acc, self.float_val)?
        };
        let bytes = model.encode()?;
        let parent = file.parent().expect("file is in refine/");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        std::fs::write(&file, &bytes).map_err(io(&file))?;
        let t = Tried {
            wbits: r.wbits.clone(),
            abits: r.abits.clone(),
            steps,
            proxy_val_accuracy: r.val_accuracy,
            ptq_val_accuracy: ptq_val,
            qat_val_accuracy: qat_val,
            kept_qat,
            record,
            model: rel,
        };
        let log = self.dir.join("refine.jsonl");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(io(&log))?;
        writeln!(f, "{}", serde_json::to_string(&t).expect("serializes")).map_err(io(&log))?;
        self.tried.push(t);
        self.models.push(model);
        Ok(self.tried.len() - 1)
    }
}

/// Run the refinement (module doc) for the search's `chosen` record.
/// `val` is the whole validation split and `float_val` the float model's
/// accuracy on it.
#[allow(clippy::too_many_arguments)]
pub fn refine(
    env: &mut Env<'_>,
    records: &[Record],
    chosen: &Record,
    val: &Images,
    float_val: f64,
    o: &RefineOptions,
    dir: &Path,
) -> Result<Refined, SearchError> {
    let earlier = read_tried(&dir.join("refine.jsonl"))?;
    let pool = if o.steps > 0 { pool(records, chosen, &env.constraints, o.slack_pp) } else { vec![chosen.clone()] };
    let n = pool.len();
    let mut c = Ctx { env, val, float_val, o, dir, earlier, tried: vec![], models: vec![] };
    // The chosen configuration's PTQ model is the fallback.
    let fallback = c.try_config(chosen, false)?;
    let (mut lo, mut hi, mut left) = (0, n - 1, o.candidates);
    while lo < hi && left > 0 {
        let mid = (lo + hi) / 2;
        let i = c.try_config(&pool[mid], true)?;
        left -= 1;
        if c.tried[i].record.feasible {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    if o.steps > 0 && hi == n - 1 {
        c.try_config(chosen, true)?;
    }
    let best = (0..c.tried.len())
        .filter(|&i| c.tried[i].record.feasible)
        .max_by(|&a, &b| c.tried[a].record.reward.total_cmp(&c.tried[b].record.reward))
        .or_else(|| {
            // Nothing feasible on the whole split: the chosen configuration,
            // fine-tuned if that helped.
            (0..c.tried.len())
                .filter(|&i| c.tried[i].wbits == chosen.wbits && c.tried[i].abits == chosen.abits)
                .max_by(|&a, &b| c.tried[a].record.reward.total_cmp(&c.tried[b].record.reward))
        })
        .unwrap_or(fallback);
    Ok(Refined { model: c.models[best].clone(), chosen: c.tried[best].clone(), tried: c.tried, pool: n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(w: u8, loss: f64, cost: f64, flash: u64) -> Record {
        Record {
            step: 0,
            episode: 0,
            strategy: "t".into(),
            wbits: vec![w],
            abits: vec![8],
            val_accuracy: 0.99 - loss / 100.0,
            accuracy_loss_pp: loss,
            latency: 100,
            latency_rel: 1.0,
            flash_bytes: flash,
            flash_rel: 1.0,
            cost,
            reward: 0.0,
            feasible: loss <= 0.3,
            new: true,
        }
    }

    #[test]
    fn pool_is_cheaper_within_slack_by_cost_with_the_choice_last() {
        let chosen = rec(8, 0.1, 0.9, 100);
        let records = vec![
            rec(5, 0.5, 0.6, 60),
            rec(2, 3.0, 0.2, 20),  // loses too much even with the slack
            rec(4, 1.2, 0.4, 40),  // within 0.3 + 1.0
            rec(7, 0.0, 0.95, 95), // dearer than the choice
            rec(5, 0.5, 0.6, 60),  // a repeat
            rec(3, 0.2, 0.5, 500), // breaks --max-flash
            chosen.clone(),
        ];
        let k = Constraints { max_accuracy_loss: 0.3, max_latency: None, max_flash: Some(200) };
        let p = pool(&records, &chosen, &k, 1.0);
        let bits: Vec<u8> = p.iter().map(|r| r.wbits[0]).collect();
        assert_eq!(bits, vec![4, 5, 8]);
        // No slack: only configurations already within the limit by the proxy.
        let p = pool(&records, &chosen, &k, 0.0);
        assert_eq!(p.iter().map(|r| r.wbits[0]).collect::<Vec<_>>(), vec![8]);
    }

    #[test]
    fn keys_name_the_bits() {
        assert_eq!(key(&[4, 4, 2], &[8, 8, 8]), "w4-4-2_a8-8-8");
    }
}
