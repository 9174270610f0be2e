//! A trained, quantized LeNet-5 on the emulated Cortex-M4: every output of
//! 100 MNIST test images equals the host's integer inference, bit for bit.
//! Training is short (one epoch on 6,000 images) to keep CI fast; the model
//! is still a real trained model, well above chance.

use releq_common::validate::Plan;
use releq_host::boards;
use releq_host::data::{self, Dataset, Split};
use releq_host::device::qemu::find_qemu;
use releq_host::device::{Device, QemuDevice, QemuOptions};
use releq_host::eval::{argmax, quantize_image};
use releq_host::nn::calib::calibrate;
use releq_host::nn::qplan::QuantPlan;
use releq_host::quantize::export;
use releq_host::train::{self, TrainOptions};
use releq_host::zoo::Arch;
use releq_tests::data_dir;

#[test]
fn trained_lenet5_is_bit_exact_on_qemu_m4() {
    let Some(data) = data_dir() else {
        eprintln!("skipped: no MNIST (set RELEQ_DATA or run scripts/setup-data.sh)");
        return;
    };
    if find_qemu().is_err() {
        eprintln!("skipped: qemu-system-arm is not installed (scripts/setup.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut o = TrainOptions::new(Arch::Lenet5, Dataset::Mnist, data.clone(), dir.path().join("run"));
    (o.epochs, o.limit, o.progress) = (1, Some(6000), false);
    let summary = train::train(&o).unwrap();
    assert!(summary.test_acc > 0.85, "float test accuracy {}", summary.test_acc);

    // PTQ at mixed weight bits and 8-bit activations, exported and validated.
    let net = releq_host::checkpoint::load(&dir.path().join("run/last.safetensors"), None).unwrap().net;
    let split = releq_host::checkpoint::load_split(&data, Dataset::Mnist, 1, Some(6000)).unwrap();
    let calib = releq_host::checkpoint::subset(&split.images, &split.train[..640]);
    let ranges = calibrate(&net, &calib, 10, 64).unwrap();
    // int8 PTQ agrees with the float model: within 1 percentage point on
    // the 10,000 test images (measured: about 0.1 pp on a fully trained LeNet-5).
    let test_all = data::load(&data, Dataset::Mnist, Split::Test).unwrap();
    let plan8 = QuantPlan::new(net.spec(), &ranges, &[8], &[8]).unwrap();
    let int8 = export(net.spec(), &plan8, |op| net.folded(op).map_err(|e| e.to_string())).unwrap();
    let int8_acc = releq_host::search::oracle::accuracy_of(&int8, &test_all).unwrap();
    assert!(
        (int8_acc - summary.test_acc).abs() <= 0.01,
        "int8 PTQ {int8_acc} vs float {} on the test set",
        summary.test_acc
    );

    let plan = QuantPlan::new(net.spec(), &ranges, &[8, 4, 4, 4, 8], &[8]).unwrap();
    let owned = export(net.spec(), &plan, |op| net.folded(op).map_err(|e| e.to_string())).unwrap();
    let blob = dir.path().join("lenet5.releq");
    std::fs::write(&blob, owned.encode().unwrap()).unwrap();
    let bytes = std::fs::read(&blob).unwrap();
    let model = Plan::from_bytes(&bytes).unwrap();

    let board = boards::load("qemu-m4").unwrap();
    let mut dev = QemuDevice::start(&board, Some(&blob), &QemuOptions::default()).unwrap();
    let test = data::load(&data, Dataset::Mnist, Split::Test).unwrap();
    let mut arena = vec![0i8; model.arena_bytes];
    let (mut correct, mut mismatches) = (0, 0);
    for i in 0..100 {
        let input = quantize_image(test.image(i), &model.input().quant);
        let host = model.run_with::<releq_common::kernels::Reference>(&mut arena, &input).unwrap().to_vec();
        let out = dev.run(&input).unwrap();
        mismatches += usize::from(out.output != host);
        correct += usize::from(argmax(&out.output) == test.labels[i] as usize);
        assert_eq!(out.counts.len(), model.model.layers.len());
    }
    assert_eq!(mismatches, 0, "device outputs differ from the host's");
    assert!(correct >= 80, "device accuracy {correct}/100");
}
