//! A tiny end-to-end search under QEMU: a briefly trained LeNet-5, every
//! strategy on a small budget, the run directory's outputs, resume (nothing
//! re-evaluated), the latency cache (a second run measures nothing),
//! exhaustive search's shared-prefix evaluation against one-by-one
//! evaluation, activation search, and the agent's state.

use releq_host::boards;
use releq_host::data::Dataset;
use releq_host::device::qemu::find_qemu;
use releq_host::device::QemuDevice;
use releq_host::device::QemuOptions;
use releq_host::search::elite::EliteBuffer;
use releq_host::search::env::Constraints;
use releq_host::search::oracle::{accuracy_of, Oracle, OracleOptions};
use releq_host::search::refine::read_tried;
use releq_host::search::reward::Cost;
use releq_host::search::strategies::{seed_elite, AgentOptions, Strategy};
use releq_host::search::{open_env, read_log, search, split_seed, SearchOptions};
use releq_host::train::{self, TrainOptions};
use releq_host::zoo::Arch;
use releq_tests::data_dir;
use std::path::Path;

fn options(ckpt: &Path, data: &Path, out: &Path, cache: &Path, strategy: Strategy, budget: usize) -> SearchOptions {
    SearchOptions {
        checkpoint: ckpt.into(),
        dataset: Dataset::Mnist,
        data_dir: data.into(),
        npy: None,
        seed: 3,
        board: boards::load("qemu-m4").unwrap(),
        qemu: QemuOptions::default(),
        probe: None,
        other_boards: Vec::new(),
        strategy,
        budget,
        wbits: vec![2, 4, 8],
        search_activations: false,
        cost: Cost::Measured { latency: 0.7, flash: 0.3 },
        reward_threshold: None,
        constraints: Constraints { max_accuracy_loss: 2.0, max_latency: None, max_flash: None },
        calib_batches: 4,
        val_limit: 300,
        finetune_steps: 0,
        final_finetune_steps: 20,
        refine_candidates: 2,
        refine_slack: 1.0,
        agent: AgentOptions { episodes_per_update: 4, ..AgentOptions::default() },
        out: out.into(),
        cache_dir: cache.into(),
        resume: false,
        verify_count: 5,
        progress: false,
    }
}

/// The data directory, if MNIST and QEMU are both there (else the test
/// skips with a note).
fn prerequisites() -> Option<std::path::PathBuf> {
    let Some(data) = data_dir() else {
        eprintln!("skipped: no MNIST (set RELEQ_DATA or run scripts/setup-data.sh)");
        return None;
    };
    if find_qemu().is_err() {
        eprintln!("skipped: qemu-system-arm is not installed");
        return None;
    }
    Some(data)
}

/// One epoch of LeNet-5 on the first `limit` MNIST training images, in
/// `dir/train`; returns the checkpoint.
fn tiny_lenet5(data: &Path, dir: &Path, limit: usize) -> std::path::PathBuf {
    let mut o = TrainOptions::new(Arch::Lenet5, Dataset::Mnist, data.into(), dir.join("train"));
    (o.epochs, o.limit, o.progress) = (1, Some(limit), false);
    train::train(&o).unwrap();
    dir.join("train/last.safetensors")
}

#[test]
fn tiny_search_end_to_end() {
    let Some(data) = prerequisites() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny_lenet5(&data, dir.path(), 3000);
    let cache = dir.path().join("cache");

    // The agent: outputs, budget, bit-exact device check.
    let out = dir.path().join("releq");
    let report = search(&options(&ckpt, &data, &out, &cache, Strategy::Releq, 6)).unwrap();
    for f in
        ["episodes.jsonl", "pareto.csv", "pareto.svg", "model.releq", "model-int8.releq", "report.md", "report.json"]
    {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(report.device_mismatches, 0);
    assert_eq!(report.device_checked, 5);
    assert!(report.table_measured_now > 0, "the first run measures the table");
    assert!(report.latency_int8 > 0 && report.latency_total > 0);
    // The table's prediction is the sum of the layers timed alone.
    let err = (report.latency_predicted as f64 - report.latency_total as f64).abs() / report.latency_total as f64;
    assert!(err < 0.01, "prediction {} vs measured {}", report.latency_predicted, report.latency_total);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    for key in [
        "wbits",
        "abits",
        "latency_total",
        "latency_int8",
        "speedup_vs_int8",
        "flash_bytes",
        "flash_int8_bytes",
        "val_accuracy",
        "test_accuracy",
        "float_test_accuracy",
        "device_mismatches",
        "latency_unit",
    ] {
        assert!(!json[key].is_null(), "report.json lacks {key}");
    }
    assert_eq!(json["latency_unit"], "instructions");
    let first = read_log(&out.join("episodes.jsonl")).unwrap();
    assert!(first.iter().filter(|r| r.new).count() >= 6);
    // Refinement: what it tried is logged, the final model is one of them,
    // and at most the fallback, 2 candidates and the choice were tried.
    let tried = read_tried(&out.join("refine.jsonl")).unwrap();
    assert_eq!(tried, report.refined);
    assert!((1..=4).contains(&tried.len()), "{} tried", tried.len());
    assert!(tried.iter().any(|t| t.wbits == report.wbits && t.abits == report.abits));
    for t in &tried {
        assert!(out.join(&t.model).is_file(), "{} missing", t.model);
    }

    // Resume with a larger budget: the old evaluations are kept, not redone.
    let mut again = options(&ckpt, &data, &out, &cache, Strategy::Releq, 9);
    again.resume = true;
    let report2 = search(&again).unwrap();
    assert_eq!(report2.table_measured_now, 0, "a second run on the same board measures nothing");
    let log = read_log(&out.join("episodes.jsonl")).unwrap();
    assert_eq!(&log[..first.len()], &first[..], "resume rewrites nothing");
    let new_keys: std::collections::HashSet<_> =
        log.iter().filter(|r| r.new).map(|r| (r.wbits.clone(), r.abits.clone())).collect();
    assert_eq!(new_keys.len(), log.iter().filter(|r| r.new).count(), "no configuration evaluated twice");
    let tried2 = read_tried(&out.join("refine.jsonl")).unwrap();
    assert_eq!(&tried2[..tried.len()], &tried[..], "resume rewrites no refinement");
    let tuned: std::collections::HashSet<_> =
        tried2.iter().map(|t| (t.wbits.clone(), t.abits.clone(), t.steps)).collect();
    assert_eq!(tuned.len(), tried2.len(), "no configuration fine-tuned twice");
    // Without --resume an existing run directory is refused.
    assert!(search(&options(&ckpt, &data, &out, &cache, Strategy::Releq, 6)).is_err());

    // The baselines run on the same machinery; the greedy run's models are
    // also measured on a second board (--board qemu-m4 --board qemu-m3).
    for s in [Strategy::Random, Strategy::Greedy] {
        let out = dir.path().join(format!("{s:?}"));
        let mut o = options(&ckpt, &data, &out, &cache, s, 4);
        if s == Strategy::Greedy {
            o.other_boards = vec![(boards::load("qemu-m3").unwrap(), None)];
        }
        let r = search(&o).unwrap();
        assert_eq!(r.device_mismatches, 0);
        assert_eq!(r.table_measured_now, 0);
        if s == Strategy::Greedy {
            let [m3] = &r.other_boards[..] else { panic!("one other board: {:?}", r.other_boards) };
            assert_eq!((m3.board.as_str(), m3.device_checked, m3.device_mismatches), ("qemu-m3", 5, 0));
            assert_eq!(m3.layer_latency.len(), r.layers.len());
            assert_eq!(m3.latency_total, m3.layer_latency.iter().sum::<u64>());
            // The M3 has no DSP extension: the same models cost more there.
            assert!(m3.latency_total > r.latency_total && m3.latency_int8 > r.latency_int8, "{m3:?} vs {r:?}");
            // Its own latency table, measured now, predicts the model it ran.
            assert!(m3.table_measured_now > 0 && m3.table_entries >= m3.table_measured_now, "{m3:?}");
            let err = (m3.chosen_predicted as f64 - m3.latency_total as f64).abs() / m3.latency_total as f64;
            assert!(err < 0.01, "m3 prediction {} vs measured {}", m3.chosen_predicted, m3.latency_total);
            let best = m3.best_here.as_ref().expect("a feasible configuration ranked on qemu-m3");
            assert_eq!((best.wbits.len(), best.abits.len()), (r.wbits.len(), r.abits.len()));
            let md = std::fs::read_to_string(out.join("report.md")).unwrap();
            assert!(md.contains("## On every board") && md.contains("| qemu-m3 |"), "{md}");
            assert!(md.contains("cheapest one there"), "{md}");
        } else {
            assert!(r.other_boards.is_empty());
        }
    }

    // Step rewards (ReLeQ's per-layer evaluation): each episode also
    // evaluates its partial configurations, which count against the budget.
    let out = dir.path().join("steps");
    let mut o = options(&ckpt, &data, &out, &cache, Strategy::Releq, 8);
    o.agent.step_rewards = true;
    search(&o).unwrap();
    let log = read_log(&out.join("episodes.jsonl")).unwrap();
    assert_eq!(log[0].wbits, vec![8; 5], "an episode starts from the all-8-bit configuration");
    let first_ep: Vec<_> = log.iter().filter(|r| r.episode == log[0].episode).collect();
    assert_eq!(first_ep.len(), 6, "start + 4 partial + final");
    for (k, r) in first_ep.iter().enumerate().skip(1).take(4) {
        assert!(r.wbits[k..].iter().all(|&b| b == 8), "partial configuration {k}: {:?}", r.wbits);
    }
    assert!(log.iter().filter(|r| r.new).count() >= 8);

    // Exhaustive: every configuration, computed at once with shared
    // prefixes, equals evaluating each configuration alone.
    let out = dir.path().join("exhaustive");
    let o = options(&ckpt, &data, &out, &cache, Strategy::Exhaustive, 1);
    let r = search(&o).unwrap();
    assert_eq!(r.evaluations, 243, "3^5 configurations");
    let log = read_log(&out.join("episodes.jsonl")).unwrap();
    let split = releq_host::checkpoint::load_split(&data, Dataset::Mnist, split_seed(&o), None).unwrap();
    let oo = OracleOptions { checkpoint: ckpt.clone(), calib_batches: 4, val_limit: 300, finetune_steps: 0 };
    let val = releq_host::checkpoint::subset(&split.images, &split.val[..300]);
    let mut alone = Oracle::new(split, oo).unwrap();
    let mut distinct = std::collections::BTreeSet::new();
    for rec in log.iter().step_by(17) {
        // Exported alone and run whole; and by the oracle's prefix cache.
        let model = alone.model(&rec.wbits, &rec.abits).unwrap().0;
        assert_eq!(accuracy_of(&model, &val).unwrap(), rec.val_accuracy, "{:?}", rec.wbits);
        assert_eq!(alone.accuracy(&rec.wbits, &rec.abits).unwrap(), rec.val_accuracy, "{:?}", rec.wbits);
        distinct.insert((rec.val_accuracy * 1e6) as i64);
    }
    assert!(distinct.len() > 2, "accuracies should vary over the space: {distinct:?}");
    let best = log.iter().map(|r| r.reward).fold(f64::MIN, f64::max);
    assert!(log.iter().any(|x| x.reward == best && x.wbits == r.search_wbits), "exhaustive chooses the best reward");

    // Activation search: both bits vary, the device still agrees bit for bit.
    let out = dir.path().join("activations");
    let mut o = options(&ckpt, &data, &out, &cache, Strategy::Random, 5);
    (o.wbits, o.search_activations) = (vec![4, 8], true);
    let r = search(&o).unwrap();
    assert_eq!(r.device_mismatches, 0);
    let log = read_log(&out.join("episodes.jsonl")).unwrap();
    assert!(log.iter().any(|x| x.abits.contains(&4)), "activation bits were never lowered");
    assert!(log.iter().all(|x| x.abits.iter().chain(&x.wbits).all(|b| [4, 8].contains(b))));
}

#[test]
fn agent_state_holds_the_layer_and_hardware_view() {
    let Some(data) = prerequisites() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = tiny_lenet5(&data, dir.path(), 1000);
    let o = options(&ckpt, &data, &dir.path().join("s"), &dir.path().join("cache"), Strategy::Releq, 1);
    let mut dev = QemuDevice::start(&o.board, None, &o.qemu).unwrap();
    let (mut env, unit) = open_env(&o, &mut dev).unwrap();
    assert_eq!(unit, "instructions");
    let l = env.layers();
    assert_eq!(l, 5);
    assert_eq!(env.state_dim(), 11);
    let w8 = vec![8u8; l];
    let a8 = vec![8u8; l];
    let states: Vec<Vec<f32>> = (0..l).map(|j| env.state(j, &w8, &a8).unwrap()).collect();
    for (j, s) in states.iter().enumerate() {
        assert_eq!(s.len(), 11);
        assert!((s[0] - j as f32 / 4.0).abs() < 1e-6, "layer index feature");
        assert_eq!(s[5], 1.0, "8 bits / 8");
        assert!((s[6] - 1.0).abs() < 1e-6, "cost of all-8-bit is 1 (relative latency and flash)");
        assert_eq!(s[7], 1.0, "no evaluation yet: relative accuracy 1");
        assert_eq!(s[9], 1.0, "latency at 8 bits relative to 8 bits");
        assert!(s.iter().all(|v| v.is_finite() && (-0.01..=1.01).contains(v)), "{s:?}");
    }
    // Min-max over LeNet-5's layers: out [6, 16, 120, 84, 10], in [1, 6, 256,
    // 120, 84], kernel [5, 5, 1, 1, 1].
    assert_eq!((states[0][1], states[0][2], states[0][3]), (0.0, 0.0, 1.0));
    assert!((states[4][1] - 4.0 / 114.0).abs() < 1e-6 && (states[4][2] - 83.0 / 255.0).abs() < 1e-6);
    assert_eq!(states[4][3], 0.0);
    // Weighted layers' shares of the measured int8 latency and of flash.
    let lat: f32 = states.iter().map(|s| s[8]).sum();
    let flash: f32 = states.iter().map(|s| s[10]).sum();
    // With the fast kernels the two max pools take about a tenth of LeNet-5's
    // int8 time (measured 0.897 for the weighted layers on 2026-12-03).
    assert!(lat > 0.8 && lat < 1.0, "conv and dense layers take most of the time: {lat}");
    assert!(flash > 0.9 && flash <= 1.0, "weights take most of the flash: {flash}");
    assert!(states[0][8] > states[4][8], "conv1 is slower than the last dense");
    // Lowering a layer's bits shows up in its own state and in the cost.
    let mut w = w8.clone();
    w[2] = 2;
    let s = env.state(2, &w, &a8).unwrap();
    assert_eq!(s[5], 0.25);
    assert!(s[6] < 1.0, "lower bits, lower cost");

    // Resume: the log's best configurations seed the elite buffer, best
    // first, replayed as episodes (the actions are their bits).
    for w in [[2, 4, 8, 8, 8], [8, 8, 8, 8, 8], [4, 4, 4, 4, 4], [2, 2, 2, 2, 2], [4, 4, 4, 4, 4]] {
        env.evaluate(&w, &a8, 0, "releq").unwrap();
    }
    let mut elite = EliteBuffer::new(3);
    seed_elite(&mut env, &mut elite).unwrap();
    let mut by_reward: Vec<_> = env.records.clone();
    by_reward.sort_by(|a, b| b.reward.total_cmp(&a.reward));
    by_reward.dedup_by(|a, b| a.wbits == b.wbits);
    let want: Vec<Vec<usize>> = by_reward[..3]
        .iter()
        .map(|r| r.wbits.iter().map(|b| env.wset.iter().position(|x| x == b).unwrap()).collect())
        .collect();
    let got = elite.episodes();
    assert_eq!(got.iter().map(|e| e.actions.clone()).collect::<Vec<_>>(), want);
    for (e, r) in got.iter().zip(&by_reward) {
        assert_eq!(e.states.len(), 5);
        assert_eq!(e.rewards[4], r.reward as f32);
        // The first state is all-8-bit's (but for the last evaluation's accuracy, feature 7).
        let skip7 = |s: &[f32]| [&s[..7], &s[8..]].concat();
        assert_eq!(skip7(&e.states[0]), skip7(&states[0]));
    }
}
