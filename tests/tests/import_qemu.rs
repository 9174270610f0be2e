//! An imported `.tflite` model on the emulated Cortex-M4 (qemu-m4): the
//! `dwres` fixture (SAME stride 2, depthwise, ReLU6, ADD, folded PAD, MEAN)
//! converted by `releq_host::import` must output TFLite Micro's stored codes
//! bit for bit on the device. Lean on purpose: one QEMU start, 4 inputs.
//! Without `qemu-system-arm` on PATH the test prints a note and passes.

use releq_host::boards;
use releq_host::device::qemu::find_qemu;
use releq_host::device::{Device, QemuDevice, QemuOptions};
use releq_host::import::import_tflite;
use std::path::PathBuf;
use std::time::Duration;

fn npy_i8(path: PathBuf) -> (usize, Vec<i8>) {
    // int8 .npy, format 1.0 (as the fixture script writes): 10-byte preamble,
    // header, then the values; the first dimension is the number of rows.
    let b = std::fs::read(&path).unwrap();
    assert_eq!(&b[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = std::str::from_utf8(&b[10..10 + hlen]).unwrap();
    assert!(header.contains("'|i1'"), "{header}");
    let rows: usize = header.split("'shape': (").nth(1).unwrap().split(',').next().unwrap().trim().parse().unwrap();
    (rows, b[10 + hlen..].iter().map(|&x| x as i8).collect())
}

#[test]
fn imported_tflite_is_bit_exact_with_tflite_micro_on_qemu_m4() {
    if find_qemu().is_err() {
        eprintln!("note: qemu-system-arm is not on PATH; skipping");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/tflite");
    let bytes = std::fs::read(dir.join("dwres.tflite")).unwrap();
    let model = import_tflite(&bytes, "dwres").unwrap().model;
    let blob = model.encode().unwrap();
    let plan = model.plan().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dwres.releq");
    std::fs::write(&path, &blob).unwrap();
    let (n, inputs) = npy_i8(dir.join("dwres.input.npy"));
    let (_, outputs) = npy_i8(dir.join("dwres.output.npy"));
    let (ilen, olen) = (inputs.len() / n, outputs.len() / n);
    assert_eq!(ilen, plan.input().shape.len());
    assert_eq!(olen, plan.output().shape.len());
    let board = boards::load("qemu-m4").unwrap();
    let opts = QemuOptions { timeout: Duration::from_secs(120), ..QemuOptions::default() };
    let mut dev = QemuDevice::start(&board, Some(&path), &opts).unwrap();
    for k in [0, 1, 57, 199] {
        let got = dev.run(&inputs[k * ilen..(k + 1) * ilen]).unwrap();
        assert_eq!(got.output, &outputs[k * olen..(k + 1) * olen], "input {k}: qemu-m4 differs from TFLite Micro");
        assert_eq!(got.counts.len(), plan.model.layers.len());
    }
}
