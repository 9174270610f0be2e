//! Training on real data: a short LeNet-5 run learns, resume continues
//! without redoing epochs, a checkpoint of another model is refused naming
//! the tensor, a diverging run stops naming the epoch and step, and a short
//! QAT fine-tune keeps the accuracy. Skipped (with a note) without the MNIST
//! files; the data directory is `$RELEQ_DATA` or `../shared/data` next to the
//! repository.

use releq_host::checkpoint;
use releq_host::data::Dataset;
use releq_host::train::{self, QatOptions, TrainError, TrainOptions, TrainState};
use releq_host::zoo::Arch;
use std::path::PathBuf;

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("RELEQ_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("mnist").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: no MNIST in {} (set RELEQ_DATA)", dir.display());
        None
    }
}

fn options(dir: PathBuf, out: PathBuf, limit: usize, epochs: usize) -> TrainOptions {
    let mut o = TrainOptions::new(Arch::Lenet5, Dataset::Mnist, dir, out);
    (o.epochs, o.limit, o.progress) = (epochs, Some(limit), false);
    o
}

#[test]
fn short_run_learns_and_qat_keeps_accuracy() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    // 300 steps of 64 on 21,334 images (19,200 train, 2,134 validation).
    let o = options(dir.clone(), tmp.path().into(), 21_334, 1);
    let s = train::train(&o).unwrap();
    let state: TrainState = train::read_json(&tmp.path().join("train.json")).unwrap();
    assert!(state.history[0].val_acc > 0.9, "validation accuracy {}", state.history[0].val_acc);
    assert!(s.test_acc > 0.9, "test accuracy {}", s.test_acc);

    let c = checkpoint::load(&tmp.path().join("last.safetensors"), None).unwrap();
    let (vm, net) = (c.vm, c.net);
    let split = checkpoint::load_split(&dir, Dataset::Mnist, o.seed, o.limit).unwrap();
    let q = QatOptions { wbits: vec![4], abits: vec![4], steps: 30, val_limit: Some(1000), ..Default::default() };
    let out = train::finetune(&vm, &net, &split, &q).unwrap();
    assert_eq!(out.plan.wbits, vec![4; 5]);
    assert!(out.fq_val_acc > 0.85, "4-bit fake-quantized accuracy {}", out.fq_val_acc);

    // The exported integer model computes what fake quantization trained.
    let model = releq_host::quantize::export(net.spec(), &out.plan, |i| net.folded(i).map_err(|e| e.to_string()));
    let bytes = model.unwrap().encode().unwrap();
    let plan = releq_common::validate::Plan::from_bytes(&bytes).unwrap();
    let mut arena = vec![0i8; plan.arena_bytes];
    let val = &split.val[..1000];
    let correct = val
        .iter()
        .filter(|&&i| {
            let input = releq_host::eval::quantize_image(split.images.image(i), &plan.input().quant);
            releq_host::eval::argmax(plan.run(&mut arena, &input).unwrap()) == split.images.labels[i] as usize
        })
        .count();
    let int_acc = correct as f64 / val.len() as f64;
    eprintln!("4-bit lenet5: fake-quantized {:.4}, integer {int_acc:.4}", out.fq_val_acc);
    // The bound: within 0.1 pp (fake quantization is bit-exact, see fq_exact.rs).
    assert!((int_acc - out.fq_val_acc).abs() <= 0.001, "integer {int_acc} vs fake-quantized {}", out.fq_val_acc);
}

#[test]
fn resume_counts_epochs_and_redoes_nothing() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(dir, tmp.path().into(), 1_280, 1);
    train::train(&o).unwrap();
    let first: TrainState = train::read_json(&tmp.path().join("train.json")).unwrap();
    let epoch1 = std::fs::read(tmp.path().join("epoch-1.safetensors")).unwrap();
    (o.epochs, o.resume) = (2, true);
    train::train(&o).unwrap();
    let second: TrainState = train::read_json(&tmp.path().join("train.json")).unwrap();
    assert_eq!(second.epochs_done, 2);
    assert_eq!(second.history.len(), 2);
    assert_eq!(second.history[0], first.history[0], "epoch 1 was redone");
    assert_eq!(std::fs::read(tmp.path().join("epoch-1.safetensors")).unwrap(), epoch1);
    assert!(tmp.path().join("epoch-2.safetensors").is_file());
    // Resuming a finished run does nothing more.
    train::train(&o).unwrap();
    let third: TrainState = train::read_json(&tmp.path().join("train.json")).unwrap();
    assert_eq!(third.history, second.history);
    // Resuming with another model is refused.
    o.arch = Arch::FashionCnn;
    let err = train::train(&o).unwrap_err();
    assert!(matches!(err, TrainError::Resume { what: "model", .. }), "{err}");
}

#[test]
fn checkpoint_of_another_model_names_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let (vm, _) = train::new_model(&Arch::Lenet5.spec(), 1).unwrap();
    let path = tmp.path().join("lenet.safetensors");
    vm.save(&path).unwrap();
    let err = checkpoint::load(&path, Some(Arch::FashionCnn)).err().expect("a lenet5 checkpoint is refused");
    let msg = err.to_string();
    assert!(msg.contains("`conv1.bn.bias` is missing"), "{msg}");
    // A fashion-cnn checkpoint into lenet5: its convolutions have no bias.
    let (vm, _) = train::new_model(&Arch::FashionCnn.spec(), 1).unwrap();
    let other = tmp.path().join("fashion.safetensors");
    vm.save(&other).unwrap();
    let err = checkpoint::load(&other, Some(Arch::Lenet5)).err().unwrap().to_string();
    assert!(err.contains("`conv1.bias` is missing"), "{err}");
    // Same names, another shape.
    let (vm, _) = train::new_model(&Arch::Lenet5.spec(), 1).unwrap();
    let odd = candle_core::Var::zeros((16, 1, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    vm.data().lock().unwrap().insert("conv1.weight".into(), odd);
    vm.save(&other).unwrap();
    let err = checkpoint::load(&other, Some(Arch::Lenet5)).err().unwrap().to_string();
    assert!(err.contains("`conv1.weight` has shape [16, 1, 3, 3], the model needs [6, 1, 5, 5]"), "{err}");
    // An extra tensor.
    let (vm, _) = train::new_model(&Arch::Lenet5.spec(), 1).unwrap();
    let extra = candle_core::Var::zeros(3, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    vm.data().lock().unwrap().insert("fc9.bias".into(), extra);
    vm.save(&other).unwrap();
    let err = checkpoint::load(&other, Some(Arch::Lenet5)).err().unwrap().to_string();
    assert!(err.contains("`fc9.bias` is not a parameter of the model"), "{err}");
    assert!(checkpoint::load(&path, Some(Arch::Lenet5)).is_ok());
    // No arch and no sidecar.
    let err = checkpoint::load(&path, None).err().unwrap();
    assert!(matches!(err, TrainError::NoArch { .. }), "{err}");
}

#[test]
fn diverging_loss_names_epoch_and_step() {
    let Some(dir) = data_dir() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut o = options(dir, tmp.path().into(), 6_400, 1);
    o.lr = 1e9;
    let err = train::train(&o).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TrainError::NonFinite { epoch: 1, .. }), "{msg}");
    assert!(msg.contains("at epoch 1, step "), "{msg}");
    assert!(!tmp.path().join("epoch-1.safetensors").exists(), "a diverged epoch was saved");
}
