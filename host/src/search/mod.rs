//! `releq search`: per-layer bitwidths chosen by ReLeQ's agent (or a
//! baseline) against latency measured on the device.
//!
//! - [`latency`]: the measured, cached latency table;
//! - [`oracle`]: validation accuracy by bit-exact integer inference;
//! - [`product`]: every configuration's accuracy at once (exhaustive);
//! - [`reward`]: ReLeQ's asymmetric reward with a measured cost state;
//! - [`env`]: evaluation records and the agent's state;
//! - [`agent`]: PPO with an LSTM policy (candle);
//! - [`elite`]: the agent's best episodes, for self-imitation;
//! - [`strategies`]: releq, random, greedy, exhaustive;
//! - [`refine`]: QAT of cheaper candidates after the search, the final model;
//! - [`report`]: Pareto front, plot, report;
//! - [`compare`]: the agent against exhaustive, random and greedy.
//!
//! A run directory holds `episodes.jsonl` (every evaluation, appended as it
//! happens), `agent.safetensors`, `pareto.csv`, `pareto.svg`, `model.releq`
//! (the chosen configuration, fine-tuned), `model-int8.releq`, `report.md`
//! and `report.json`. `--resume` reads `episodes.jsonl` back, so nothing
//! measured or evaluated is redone; the latency table lives in a cache
//! shared by every run on the same board and firmware build.

pub mod agent;
pub mod compare;
pub mod elite;
pub mod env;
pub mod latency;
pub mod oracle;
pub mod product;
pub mod refine;
pub mod report;
pub mod reward;
pub mod strategies;

use crate::boards::Board;
use crate::checkpoint;
use crate::data::{self, Dataset};
use crate::device::any::AnyDevice;
use crate::device::{Device, QemuOptions};
use crate::eval::quantize_image;
use crate::train;
use env::{Constraints, Env, Record};
use indicatif::{ProgressBar, ProgressStyle};
use latency::LatencyTable;
use oracle::{accuracy_of, Oracle, OracleOptions};
use report::{LayerRow, OtherBoard, Report};
use reward::{Cost, RewardParams};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use strategies::Strategy;

/// Everything a search needs.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Float checkpoint (from `releq train`).
    pub checkpoint: PathBuf,
    /// Data set (not read when `npy` is given).
    pub dataset: Dataset,
    /// Data directory.
    pub data_dir: PathBuf,
    /// A user's `.npy` data set instead of `dataset` (`--data`).
    pub npy: Option<crate::data::NpyFiles>,
    /// Seed of the agent / random search (the validation split uses the
    /// training run's seed).
    pub seed: u64,
    /// Board.
    pub board: Board,
    /// How to start the device (a probe takes the firmware, timeout and verbosity).
    pub qemu: QemuOptions,
    /// The debug probe of a real board (`VID:PID[:SERIAL]`; None: the only one).
    pub probe: Option<String>,
    /// More boards (with their probes) the final and the all-8-bit models
    /// are verified and measured on, for the report's comparison; the search
    /// itself optimises `board`'s latency.
    pub other_boards: Vec<(Board, Option<String>)>,
    /// Strategy.
    pub strategy: Strategy,
    /// Accuracy evaluations allowed.
    pub budget: usize,
    /// Weight bits to choose from.
    pub wbits: Vec<u8>,
    /// Also choose activation bits (from the same set).
    pub search_activations: bool,
    /// Cost.
    pub cost: Cost,
    /// Override of the reward threshold.
    pub reward_threshold: Option<f64>,
    /// Constraints.
    pub constraints: Constraints,
    /// Calibration batches.
    pub calib_batches: usize,
    /// Validation images per evaluation.
    pub val_limit: usize,
    /// QAT steps inside the oracle (0: PTQ proxy).
    pub finetune_steps: usize,
    /// QAT steps for the final model (and each refinement candidate).
    pub final_finetune_steps: usize,
    /// Candidates cheaper than the chosen one to fine-tune ([`refine`]).
    pub refine_candidates: usize,
    /// Extra proxy accuracy loss (pp) a refinement candidate may show.
    pub refine_slack: f64,
    /// The agent's settings.
    pub agent: strategies::AgentOptions,
    /// Run directory.
    pub out: PathBuf,
    /// Latency cache directory.
    pub cache_dir: PathBuf,
    /// Continue the run in `out`.
    pub resume: bool,
    /// Test images run on the device to verify the final model.
    pub verify_count: usize,
    /// Progress bars.
    pub progress: bool,
}

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Device.
    #[error(transparent)]
    Link(#[from] crate::device::LinkError),
    /// Environment.
    #[error(transparent)]
    Env(#[from] env::EnvError),
    /// Strategy.
    #[error(transparent)]
    Strategy(#[from] strategies::StrategyError),
    /// Oracle.
    #[error(transparent)]
    Oracle(#[from] oracle::OracleError),
    /// Training side.
    #[error(transparent)]
    Train(#[from] train::TrainError),
    /// Data.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// Latency table.
    #[error(transparent)]
    Latency(#[from] latency::LatencyError),
    /// Files of the run directory.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// A corrupt line in a resumed log.
    #[error("{path} line {line}: {source} (the run log is corrupt; remove the line or start a new run)")]
    Log {
        /// File.
        path: PathBuf,
        /// Line (1-based).
        line: usize,
        /// Error.
        source: serde_json::Error,
    },
    /// Exhaustive search that would fine-tune too many configurations.
    #[error(
        "exhaustive search with --finetune-steps {steps} would fine-tune all {configurations} configurations one \
         by one (limit {EXHAUSTIVE_QAT_LIMIT}); use --finetune-steps 0 (every configuration at once), fewer --wbits, \
         or another strategy"
    )]
    ExhaustiveQat {
        /// Size of the space.
        configurations: u64,
        /// QAT steps asked for.
        steps: usize,
    },
    /// A run directory that exists without --resume.
    #[error("{0} already holds a search; pass --resume to continue it or choose another --out")]
    Exists(PathBuf),
    /// Plotting.
    #[error("plot: {0}")]
    Plot(String),
    /// Inference.
    #[error(transparent)]
    Run(#[from] releq_common::runtime::RunError),
    /// Model building.
    #[error(transparent)]
    Build(#[from] releq_common::builder::BuildError),
    /// Export.
    #[error(transparent)]
    Export(#[from] crate::quantize::ExportError),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SearchError + '_ {
    move |source| SearchError::Io { path: path.into(), source }
}

/// Largest space `exhaustive` fine-tunes configuration by configuration.
pub const EXHAUSTIVE_QAT_LIMIT: u64 = 500;

/// Read a run's `episodes.jsonl`.
pub fn read_log(path: &Path) -> Result<Vec<Record>, SearchError> {
    read_jsonl(path)
}

/// Read a JSON-lines file of the run directory (blank lines skipped; a
/// corrupt line is an error naming it).
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, SearchError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| SearchError::Log { path: path.into(), line: i + 1, source })
        })
        .collect()
}

/// The chosen record: best reward among the feasible ones (or overall if
/// none is feasible).
pub fn choose(records: &[Record]) -> Option<&Record> {
    fn best<'r>(it: impl Iterator<Item = &'r Record>) -> Option<&'r Record> {
        it.max_by(|a, b| a.reward.total_cmp(&b.reward).then(b.latency.cmp(&a.latency)))
    }
    best(records.iter().filter(|r| r.feasible)).or_else(|| best(records.iter()))
}

impl SearchOptions {
    /// The images: `npy` if given, else the built-in `dataset`.
    pub fn source(&self) -> checkpoint::DataSource {
        match &self.npy {
            Some(f) => checkpoint::DataSource::Npy(f.clone()),
            None => checkpoint::DataSource::Builtin { dir: self.data_dir.clone(), dataset: self.dataset },
        }
    }
}

/// The seed of the validation split: the training run's (from `train.json`
/// or `qat.json` next to the checkpoint), else `o.seed`.
pub fn split_seed(o: &SearchOptions) -> u64 {
    checkpoint::Meta::of(&o.checkpoint).seed.unwrap_or(o.seed)
}

/// The environment of a search on a started device: the oracle (calibrated,
/// float accuracy measured), the latency table (cached entries loaded,
/// missing ones measured) and the reward's constants. Also returns the
/// latency unit.
pub fn open_env<'d>(o: &SearchOptions, dev: &'d mut dyn Device) -> Result<(Env<'d>, String), SearchError> {
    let source = o.source();
    let split = source.split(split_seed(o), None)?;
    checkpoint::check_images(&checkpoint::graph_for(&o.checkpoint, None)?.spec, &split.images, &source.name())?;
    let oracle = Oracle::new(
        split,
        OracleOptions {
            checkpoint: o.checkpoint.clone(),
            calib_batches: o.calib_batches,
            val_limit: o.val_limit,
            finetune_steps: o.finetune_steps,
        },
    )?;
    let float_val = oracle.float_acc;
    let info = dev.info()?;
    let unit = info.counter.name().to_string();
    let table = LatencyTable::open(&o.cache_dir, &o.board.name, &info.firmware, &unit)?;
    let params = match o.reward_threshold {
        Some(th) => RewardParams { th, ..RewardParams::for_max_loss(o.constraints.max_accuracy_loss, float_val) },
        None => RewardParams::for_max_loss(o.constraints.max_accuracy_loss, float_val),
    };
    let aset = if o.search_activations { o.wbits.clone() } else { vec![8] };
    let env = Env::new(oracle, table, dev, o.cost, params, o.constraints, o.wbits.clone(), aset, o.progress)?;
    Ok((env, unit))
}

/// Run a whole search and write the run directory.
pub fn search(o: &SearchOptions) -> Result<Report, SearchError> {
    let started = std::time::Instant::now();
    let log_path = o.out.join("episodes.jsonl");
    if log_path.exists() && !o.resume {
        return Err(SearchError::Exists(o.out.clone()));
    }
    std::fs::create_dir_all(&o.out).map_err(io(&o.out))?;
    let split_seed = split_seed(o);
    let mut dev = AnyDevice::start(&o.board, None, &o.qemu, o.probe.as_deref())?;
    let (mut env, unit) = open_env(o, &mut dev)?;

    // Resume: everything evaluated before is known; the budget counts it.
    let mut first_episode = 0;
    if log_path.exists() {
        let old = read_log(&log_path)?;
        first_episode = old.iter().map(|r| r.episode + 1).max().unwrap_or(0);
        env.restore(old);
    }
    if o.strategy == Strategy::Exhaustive && o.finetune_steps > 0 {
        let n = env.space();
        if n > EXHAUSTIVE_QAT_LIMIT {
            return Err(SearchError::ExhaustiveQat { configurations: n, steps: o.finetune_steps });
        }
    }
    if o.strategy == Strategy::Exhaustive && env.oracle.can_preload() && env.aset.len() == 1 {
        let n = env.space();
        if n > strategies::EXHAUSTIVE_LIMIT {
            return Err(strategies::StrategyError::TooLarge(n).into());
        }
        let bar = match o.progress {
            true => ProgressBar::new(0).with_style(
                ProgressStyle::with_template(
                    "all {msg} configurations {bar:25} {pos}/{len} images [{elapsed} < {eta}]",
                )
                .expect("valid template"),
            ),
            false => ProgressBar::hidden(),
        };
        bar.set_message(n.to_string());
        let (wset, a) = (env.wset.clone(), env.aset[0]);
        env.oracle.preload_weights_only(&wset, a, &bar).map_err(env::EnvError::from)?;
        bar.finish_and_clear();
    }
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io(&log_path))?;
    let bar = if o.progress { ProgressBar::new(o.budget as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:25} {pos}/{len} evaluations {msg} [{elapsed} < {eta}]")
            .expect("valid template"),
    );
    bar.set_prefix(format!("{:?}", o.strategy).to_lowercase());
    bar.set_position(env.evaluations() as u64);
    let mut write_err = None;
    let mut on_record = |r: &Record, env: &Env<'_>| {
        if let Err(e) = writeln!(&log, "{}", serde_json::to_string(r).expect("records serialize")) {
            write_err.get_or_insert(e);
        }
        bar.set_position(env.evaluations() as u64);
        if let Some(b) = choose(&env.records) {
            bar.set_message(format!(
                "ep {} | best reward {:.3}: acc {:.2}% latency x{:.2} flash x{:.2}",
                r.episode,
                b.reward,
                b.val_accuracy * 100.0,
                b.latency_rel,
                b.flash_rel
            ));
        }
    };
    strategies::run(
        o.strategy,
        &mut env,
        o.budget,
        o.seed,
        &o.agent,
        &o.out.join("agent.safetensors"),
        first_episode,
        &mut on_record,
    )?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(SearchError::Io { path: log_path, source: e });
    }

    let records = env.records.clone();
    let chosen = choose(&records).cloned().expect("a search evaluates at least one configuration");
    let l = env.layers();
    let int8 = match records.iter().find(|r| r.wbits.iter().all(|&b| b == 8) && r.abits.iter().all(|&b| b == 8)) {
        Some(r) => r.clone(),
        None => {
            let r = env.evaluate(&vec![8; l], &vec![8; l], first_episode.max(records.len()), "reference")?;
            let line = serde_json::to_string(&r).expect("records serialize");
            writeln!(log, "{line}").map_err(io(&log_path))?;
            r
        }
    };
    let records = env.records.clone();
    let table_measured_now = env.table.measured_now();
    let table_entries = env.table.entries.len();
    let evaluations = env.evaluations();

    // The final model: the chosen bits, or a cheaper configuration that is
    // feasible once fine-tuned (refine), on the whole validation split.
    let split = o.source().split(split_seed, None)?;
    let val = checkpoint::subset(&split.images, &split.val);
    let net = checkpoint::load(&o.checkpoint, None)?.net;
    let float_val_accuracy = train::accuracy(&net, &split.images, &split.val, 256, None)?;
    let ro = refine::RefineOptions {
        candidates: o.refine_candidates,
        slack_pp: o.refine_slack,
        steps: o.final_finetune_steps,
        progress: o.progress,
    };
    let refined = refine::refine(&mut env, &records, &chosen, &val, float_val_accuracy, &ro, &o.out)?;
    let final_model = refined.model.clone();
    let spec = env.oracle.spec().clone();
    let (val_accuracy, final_qat_steps) =
        (refined.chosen.record.val_accuracy, if refined.chosen.kept_qat { refined.chosen.steps } else { 0 });
    let final_record = records
        .iter()
        .find(|r| r.wbits == refined.chosen.wbits && r.abits == refined.chosen.abits)
        .cloned()
        .unwrap_or_else(|| chosen.clone());
    let front = report::pareto(&records);
    report::write_csv(&o.out.join("pareto.csv"), &front).map_err(io(&o.out))?;
    let plot = report::PlotData {
        all: &records,
        front: &front,
        chosen: &refined.chosen.record,
        int8: &int8,
        model: &spec.name,
        board: &o.board.name,
        unit: &unit,
        cmsis_int8: report::cmsis_nn_int8(&spec, &o.board.name, &unit),
    };
    report::plot(&o.out.join("pareto.svg"), &plot).map_err(SearchError::Plot)?;
    let predicted = final_record.latency;
    let (int8_model, _) = env.oracle.model(&vec![8; l], &vec![8; l])?;
    drop(env);
    drop(dev);
    let model_path = o.out.join("model.releq");
    let int8_path = o.out.join("model-int8.releq");
    let bytes = final_model.encode()?;
    std::fs::write(&model_path, &bytes).map_err(io(&model_path))?;
    let int8_bytes = int8_model.encode()?;
    std::fs::write(&int8_path, &int8_bytes).map_err(io(&int8_path))?;

    // Accuracies: validation and test by integer inference; float test by candle.
    let test = o.source().test(split_seed)?;
    let test_accuracy = accuracy_of(&final_model, &test)?;
    let all: Vec<usize> = (0..test.len()).collect();
    let float_test_accuracy = train::accuracy(&net, &test, &all, 256, None)?;

    // Device verification and whole-model latency, measured: on the board
    // searched for, and at the same time on every other board asked for.
    let plan = final_model.plan()?;
    let int8_plan = int8_model.plan()?;
    let checked = o.verify_count.min(test.len());
    let job = Verify { model: &model_path, int8: &int8_path, plan: &plan, int8_plan: &int8_plan, test: &test, checked };
    let mut links = vec![(o.board.clone(), o.probe.clone())];
    links.extend(o.other_boards.iter().cloned());
    // Every other board also gets its own latency table (cached like the
    // first board's), over every configuration the search evaluated, so the
    // report can say which of them would be cheapest there.
    let chosen_bits = (refined.chosen.wbits.clone(), refined.chosen.abits.clone());
    let ranking = Rank { spec: &spec, records: &records, chosen: &chosen_bits, cache_dir: &o.cache_dir };
    type OnBoard = Result<(Measured, Option<Ranked>), SearchError>;
    let measured: Vec<OnBoard> = std::thread::scope(|scope| {
        let handles: Vec<_> = links
            .iter()
            .enumerate()
            .map(|(i, (board, probe))| {
                let (job, ranking) = (&job, &ranking);
                scope.spawn(move || -> OnBoard {
                    let m = job.run(board, probe.as_deref(), &o.qemu)?;
                    let r = if i == 0 { None } else { Some(ranking.run(board, probe.as_deref(), &o.qemu)?) };
                    Ok((m, r))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a device thread panicked")).collect()
    });
    let mut measured = measured.into_iter().collect::<Result<Vec<_>, _>>()?;
    let (Measured { counts, mismatches, latency_int8, .. }, _) = measured.remove(0);
    let other_boards: Vec<OtherBoard> = measured
        .into_iter()
        .map(|(m, r)| {
            let r = r.expect("ranked on every other board");
            OtherBoard {
                board: m.board,
                latency_unit: m.unit,
                latency_total: m.counts.iter().map(|&c| c as u64).sum(),
                latency_int8: m.latency_int8,
                speedup_vs_int8: m.latency_int8 as f64 / m.counts.iter().map(|&c| c as u64).sum::<u64>().max(1) as f64,
                layer_latency: m.counts.iter().map(|&c| c as u64).collect(),
                device_mismatches: m.mismatches,
                device_checked: checked,
                table_entries: r.table_entries,
                table_measured_now: r.table_measured_now,
                chosen_predicted: r.chosen_predicted,
                best_here: r.best,
            }
        })
        .collect();

    let latency_total: u64 = counts.iter().map(|&c| c as u64).sum();
    let layers = plan
        .model
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| LayerRow {
            index: i,
            kind: layer.kind().into(),
            wbits: layer.weights().map(|w| w.bits),
            abits: plan.tensors[i + 1].quant.bits,
            latency: counts.get(i).copied().unwrap_or(0) as u64,
            flash_bytes: plan.layer_stats(i).param_bytes,
        })
        .collect();
    let report = Report {
        model: spec.name.clone(),
        board: o.board.name.clone(),
        strategy: format!("{:?}", o.strategy).to_lowercase(),
        latency_unit: unit,
        wbits: refined.chosen.wbits.clone(),
        abits: refined.chosen.abits.clone(),
        search_wbits: chosen.wbits.clone(),
        search_abits: chosen.abits.clone(),
        refine_pool: refined.pool,
        refined: refined.tried.clone(),
        layers,
        latency_total,
        latency_predicted: predicted,
        latency_int8,
        speedup_vs_int8: latency_int8 as f64 / latency_total.max(1) as f64,
        flash_bytes: bytes.len() as u64,
        flash_int8_bytes: int8_bytes.len() as u64,
        flash_ratio: bytes.len() as f64 / int8_bytes.len().max(1) as f64,
        val_accuracy,
        test_accuracy,
        float_test_accuracy,
        float_val_accuracy,
        device_mismatches: mismatches,
        device_checked: checked,
        other_boards,
        evaluations,
        final_qat_steps,
        table_entries,
        table_measured_now,
        seconds: started.elapsed().as_secs_f64(),
    };
    let p = o.out.join("report.json");
    std::fs::write(&p, serde_json::to_string_pretty(&report).expect("serializes")).map_err(io(&p))?;
    let p = o.out.join("report.md");
    std::fs::write(&p, report::markdown(&report)).map_err(io(&p))?;
    Ok(report)
}

/// The final model's check on one device: `checked` test images compared
/// with the host bit for bit, then the all-8-bit model's latency.
struct Verify<'a> {
    model: &'a Path,
    int8: &'a Path,
    plan: &'a releq_common::validate::Plan<'a>,
    int8_plan: &'a releq_common::validate::Plan<'a>,
    test: &'a data::Images,
    checked: usize,
}

/// What [`Verify::run`] measured.
struct Measured {
    board: String,
    unit: String,
    /// Per-layer counts of the final model on the first test image.
    counts: Vec<u32>,
    mismatches: usize,
    latency_int8: u64,
}

impl Verify<'_> {
    fn run(&self, board: &Board, probe: Option<&str>, qemu: &QemuOptions) -> Result<Measured, SearchError> {
        let mut dev = AnyDevice::start(board, Some(self.model), qemu, probe)?;
        let unit = dev.info()?.counter.name().to_string();
        let mut arena = vec![0i8; self.plan.arena_bytes];
        let (mut mismatches, mut counts) = (0, Vec::new());
        for i in 0..self.checked.max(1) {
            let input = quantize_image(self.test.image(i), &self.plan.input().quant);
            let out = dev.run(&input)?;
            if i < self.checked {
                let host = self.plan.run_with::<releq_common::kernels::Reference>(&mut arena, &input)?;
                mismatches += usize::from(out.output != host);
            }
            if i == 0 {
                counts = out.counts;
            }
        }
        drop(dev);
        let mut dev8 = AnyDevice::start(board, Some(self.int8), qemu, probe)?;
        let input = quantize_image(self.test.image(0), &self.int8_plan.input().quant);
        let latency_int8: u64 = dev8.run(&input)?.counts.iter().map(|&c| c as u64).sum();
        Ok(Measured { board: board.name.clone(), unit, counts, mismatches, latency_int8 })
    }
}

/// Ranking the evaluated configurations by another board's latency table.
struct Rank<'a> {
    spec: &'a crate::nn::spec::Spec,
    records: &'a [Record],
    /// The final configuration (weight bits, activation bits).
    chosen: &'a (Vec<u8>, Vec<u8>),
    cache_dir: &'a Path,
}

/// What [`Rank::run`] found on one board.
struct Ranked {
    table_entries: usize,
    table_measured_now: usize,
    chosen_predicted: u64,
    best: Option<report::BestHere>,
}

impl Rank<'_> {
    /// Open (or measure) `board`'s latency table for every evaluated
    /// configuration, predict each, and pick the cheapest feasible one.
    fn run(&self, board: &Board, probe: Option<&str>, qemu: &QemuOptions) -> Result<Ranked, SearchError> {
        let mut dev = AnyDevice::start(board, None, qemu, probe)?;
        let info = dev.info()?;
        let mut table = LatencyTable::open(self.cache_dir, &board.name, &info.firmware, info.counter.name())?;
        let of = |w: &[u8], a: &[u8]| latency::layer_specs(self.spec, w, a);
        let mut specs: Vec<_> = self.records.iter().flat_map(|r| of(&r.wbits, &r.abits)).flatten().collect();
        specs.extend(of(&self.chosen.0, &self.chosen.1).into_iter().flatten());
        table.measure(&mut dev, &specs, false)?;
        let predict = |w: &[u8], a: &[u8]| table.predict(&of(w, a)).unwrap_or(u64::MAX);
        let best = self
            .records
            .iter()
            .filter(|r| r.feasible)
            .map(|r| (predict(&r.wbits, &r.abits), r))
            .min_by_key(|(l, r)| (*l, r.flash_bytes))
            .map(|(l, r)| report::BestHere {
                wbits: r.wbits.clone(),
                abits: r.abits.clone(),
                latency_predicted: l,
                val_accuracy: r.val_accuracy,
            });
        Ok(Ranked {
            table_entries: table.entries.len(),
            table_measured_now: table.measured_now(),
            chosen_predicted: predict(&self.chosen.0, &self.chosen.1),
            best,
        })
    }
}
