//! The firmware under QEMU, end to end: bit-exact outputs against the host,
//! per-layer counts, synthetic layers, and every error path of the link.
//!
//! Each test starts its own QEMU (the firmware is built once per board and
//! feature set, cached by cargo). Without `qemu-system-arm` on PATH the tests
//! print a note and pass.

use rand::rngs::StdRng;
use rand::SeedableRng;
use releq_common::model::{Padding, Shape};
use releq_common::protocol::{DeviceError, FrameError, LayerSpec, ModelStatus, SpecKind};
use releq_common::runtime::RunError;
use releq_common::testing::{random_input, random_model};
use releq_common::{ModelError, Plan};
use releq_host::boards::{self, Board};
use releq_host::device::qemu::find_qemu;
use releq_host::device::{build_firmware, Device, LinkError, QemuDevice, QemuOptions, Reply};
use std::path::Path;
use std::time::{Duration, Instant};

fn qemu_present() -> bool {
    if find_qemu().is_ok() {
        return true;
    }
    eprintln!("note: qemu-system-arm is not on PATH; skipping (install it with: sudo apt-get install qemu-system-arm)");
    false
}

fn opts() -> QemuOptions {
    QemuOptions { timeout: Duration::from_secs(120), ..QemuOptions::default() }
}

fn board(name: &str) -> Board {
    boards::load(name).unwrap()
}

fn write_blob(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join("model.releq");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn conv_spec(h: u16, w: u16, c: u16, out_c: u16) -> LayerSpec {
    LayerSpec {
        kind: SpecKind::Conv2d,
        input: Shape::new(h, w, c),
        out_c,
        kh: 3,
        kw: 3,
        stride_h: 1,
        stride_w: 1,
        pad: Padding::same(1),
        wbits: 4,
        in_bits: 8,
        out_bits: 8,
    }
}

/// `random_model(11, true)` encoded into a blob file in a fresh directory:
/// the blob, its path and the directory (kept alive by the caller).
fn random_blob() -> (Vec<u8>, std::path::PathBuf, tempfile::TempDir) {
    let blob = random_model(11, true).encode().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_blob(dir.path(), &blob);
    (blob, path, dir)
}

/// Bit-exact outputs and stable per-layer counts for a random mixed-bit model.
fn bit_exact_on(board_name: &str) {
    if !qemu_present() {
        return;
    }
    let (blob, path, _dir) = random_blob();
    let plan = Plan::from_bytes(&blob).unwrap();
    let b = board(board_name);
    let mut dev = QemuDevice::start(&b, Some(&path), &opts()).unwrap();
    eprintln!("{board_name}: QEMU start + handshake {:.3} s", dev.startup_time().as_secs_f64());
    let info = dev.info().unwrap();
    assert_eq!(info.board, board_name);
    assert_eq!(info.core, b.core);
    assert_eq!(info.clock_hz, b.clock_hz);
    assert_eq!(info.arena_bytes, b.arena_bytes);
    let layers = plan.model.layers.len();
    match info.model {
        ModelStatus::Loaded { layers: l, blob_bytes, crc, arena_bytes } => {
            assert_eq!(l as usize, layers);
            assert_eq!(blob_bytes as usize, blob.len());
            assert_eq!(crc, u32::from_le_bytes(blob[12..16].try_into().unwrap()));
            assert_eq!(arena_bytes as usize, plan.arena_bytes);
        }
        other => panic!("model not loaded: {other:?}"),
    }
    let mut rng = StdRng::seed_from_u64(5);
    let mut arena = vec![0i8; plan.arena_bytes];
    for _ in 0..3 {
        let input = random_input(&mut rng, &plan);
        let want = plan.run_with::<releq_common::kernels::Reference>(&mut arena, &input).unwrap().to_vec();
        let got = dev.run(&input).unwrap();
        assert_eq!(got.output, want, "{board_name}: device output differs from the host's");
        assert_eq!(got.counts.len(), layers);
        assert!(got.counts.iter().all(|&c| c > 0), "{:?}", got.counts);
        // Same input again: the same counts, to the instruction.
        let again = dev.run(&input).unwrap();
        assert_eq!(again.counts, got.counts, "{board_name}: counts differ between two runs");
        eprintln!("{board_name}: counts {:?}, overhead {}", got.counts, got.overhead);
    }
}

#[test]
fn model_is_bit_exact_on_qemu_m4() {
    bit_exact_on("qemu-m4");
}

#[test]
fn model_is_bit_exact_on_qemu_m7() {
    bit_exact_on("qemu-m7");
}

#[test]
fn model_is_bit_exact_on_qemu_m3() {
    bit_exact_on("qemu-m3");
}

#[test]
fn synthetic_layers_time_and_reject() {
    if !qemu_present() {
        return;
    }
    let mut dev = QemuDevice::start(&board("qemu-m4"), None, &opts()).unwrap();
    let small = dev.time_layer(&conv_spec(8, 8, 8, 8), 3).unwrap();
    let big = dev.time_layer(&conv_spec(16, 16, 8, 8), 3).unwrap();
    eprintln!("conv3x3 8->8 4-bit: 8x8 {small:?}, 16x16 {big:?}");
    assert_eq!(small.repeat, 3);
    assert!(small.min > 0 && small.min <= small.max);
    assert_eq!(small.min, small.max, "repeats of a layer count the same");
    assert!(big.min > small.max * 3, "4x the pixels must cost about 4x: {small:?} vs {big:?}");
    // Every kind times.
    for kind in [SpecKind::DepthwiseConv2d, SpecKind::Dense, SpecKind::MaxPool2d, SpecKind::AvgPool2d, SpecKind::Add] {
        let spec = LayerSpec { kind, out_c: 10, ..conv_spec(8, 8, 4, 8) };
        let t = dev.time_layer(&spec, 1).unwrap();
        assert!(t.min > 0, "{kind:?}: {t:?}");
    }
    // Weight bits change the cost of the same shape (unpacking differs).
    let w8 = dev.time_layer(&LayerSpec { wbits: 8, ..conv_spec(8, 8, 8, 8) }, 1).unwrap();
    let w3 = dev.time_layer(&LayerSpec { wbits: 3, ..conv_spec(8, 8, 8, 8) }, 1).unwrap();
    eprintln!("conv3x3 8x8x8->8: 8-bit weights {}, 3-bit {}", w8.min, w3.min);
    // Invalid specs are Spec errors.
    let bad = LayerSpec { kh: 0, ..conv_spec(8, 8, 8, 8) };
    assert!(matches!(dev.time_layer(&bad, 1), Err(LinkError::Device(DeviceError::Spec(_)))));
    let bad = LayerSpec { wbits: 9, ..conv_spec(8, 8, 8, 8) };
    assert!(matches!(dev.time_layer(&bad, 1), Err(LinkError::Device(DeviceError::Spec(ModelError::Layer { .. })))));
    let bad = LayerSpec { in_bits: 1, ..conv_spec(8, 8, 8, 8) };
    assert!(matches!(dev.time_layer(&bad, 1), Err(LinkError::Device(DeviceError::Spec(ModelError::Model { .. })))));
    // Too large for the device's buffers: OutOfMemory, and no wrap-around.
    for spec in [
        conv_spec(1024, 1024, 8, 8),
        conv_spec(64, 64, 128, 128),
        LayerSpec { kind: SpecKind::MaxPool2d, kh: 255, kw: 255, pad: Padding::same(254), ..conv_spec(1, 1, 65535, 1) },
        conv_spec(65535, 65535, 65535, 65535),
        LayerSpec { kind: SpecKind::Dense, out_c: 65535, ..conv_spec(64, 64, 64, 1) },
    ] {
        match dev.time_layer(&spec, 1) {
            Err(LinkError::Device(DeviceError::OutOfMemory { needed, available })) => assert!(needed > available),
            other => panic!("{spec:?}: {other:?}"),
        }
    }
    // Still serving.
    assert!(dev.time_layer(&conv_spec(4, 4, 4, 4), 1).is_ok());
}

/// The painted stack: a peak after boot, larger after a run, never above the
/// stack's size, and it only grows.
#[test]
fn stats_report_the_peak_stack_after_a_run() {
    if !qemu_present() {
        return;
    }
    let (blob, path, _dir) = random_blob();
    let plan = Plan::from_bytes(&blob).unwrap();
    let mut dev = QemuDevice::start(&board("qemu-m4"), Some(&path), &opts()).unwrap();
    let boot = dev.stats().unwrap();
    let input = random_input(&mut StdRng::seed_from_u64(3), &plan);
    dev.run(&input).unwrap();
    let after = dev.stats().unwrap();
    eprintln!("stack after boot {boot:?}, after a run {after:?}");
    assert!(after.stack_peak_bytes > 0, "{after:?}");
    assert!(after.stack_peak_bytes <= after.stack_size_bytes, "{after:?}");
    assert_eq!(after.stack_size_bytes, boot.stack_size_bytes);
    assert!(after.stack_peak_bytes >= boot.stack_peak_bytes, "the peak never shrinks: {boot:?} then {after:?}");
    assert!(after.stack_size_bytes < 4 << 20, "the stack is part of the 4 MiB of RAM: {after:?}");
    // And the device still serves.
    assert_eq!(dev.run(&input).unwrap().output, plan.run(&mut vec![0; plan.arena_bytes], &input).unwrap().to_vec());
}

#[test]
fn wrong_input_length_is_a_run_error() {
    if !qemu_present() {
        return;
    }
    let blob = random_model(3, false).encode().unwrap();
    let plan = Plan::from_bytes(&blob).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut dev = QemuDevice::start(&board("qemu-m4"), Some(&write_blob(dir.path(), &blob)), &opts()).unwrap();
    let expected = plan.input().shape.len() as u32;
    match dev.run(&[0i8; 7]) {
        Err(LinkError::Device(DeviceError::Run(RunError::InputLength { expected: e, actual: 7 }))) => {
            assert_eq!(e, expected)
        }
        other => panic!("{other:?}"),
    }
    // A good run after the error.
    let mut arena = vec![0i8; plan.arena_bytes];
    let input = vec![1i8; expected as usize];
    assert_eq!(
        dev.run(&input).unwrap().output,
        plan.run_with::<releq_common::kernels::Reference>(&mut arena, &input).unwrap()
    );
    // Too large for one frame: refused on the host.
    assert!(matches!(dev.run(&vec![0i8; 5000]), Err(LinkError::RequestTooLarge { .. })));
    drop(dev);

    // A code outside a low-bit input's range.
    let model = (0..100).map(|s| random_model(s, true)).find(|m| m.input_quant.bits < 8).unwrap();
    let blob = model.encode().unwrap();
    let plan = Plan::from_bytes(&blob).unwrap();
    let mut dev = QemuDevice::start(&board("qemu-m4"), Some(&write_blob(dir.path(), &blob)), &opts()).unwrap();
    let mut input = vec![0i8; plan.input().shape.len()];
    input[5] = 127;
    match dev.run(&input) {
        Err(LinkError::Device(DeviceError::Run(RunError::InputRange { index: 5, value: 127, bits }))) => {
            assert_eq!(bits, model.input_quant.bits)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_blob_is_absent_and_run_says_no_model() {
    if !qemu_present() {
        return;
    }
    let mut dev = QemuDevice::start(&board("qemu-m4"), None, &opts()).unwrap();
    assert_eq!(dev.info().unwrap().model, ModelStatus::Absent);
    assert!(matches!(dev.run(&[0; 4]), Err(LinkError::Device(DeviceError::NoModel))));
    // TimeLayer needs no model.
    assert!(dev.time_layer(&conv_spec(4, 4, 4, 4), 1).is_ok());
}

#[test]
fn corrupt_blob_is_invalid() {
    if !qemu_present() {
        return;
    }
    let mut blob = random_model(4, true).encode().unwrap();
    let n = blob.len();
    blob[n / 2] ^= 0x40;
    let dir = tempfile::tempdir().unwrap();
    let mut dev = QemuDevice::start(&board("qemu-m4"), Some(&write_blob(dir.path(), &blob)), &opts()).unwrap();
    let status = dev.info().unwrap().model;
    let ModelStatus::Invalid(err) = status else { panic!("{status:?}") };
    assert_eq!(Plan::from_bytes(&blob).unwrap_err(), err, "device and host reject the blob for the same reason");
    match dev.run(&[0; 4]) {
        Err(LinkError::Device(DeviceError::Model(e))) => assert_eq!(e, err),
        other => panic!("{other:?}"),
    }
    // A header that declares more than the board's blob region.
    let mut huge = random_model(4, true).encode().unwrap();
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let path = write_blob(dir.path(), &huge);
    let mut dev = QemuDevice::start(&board("qemu-m4"), Some(&path), &opts()).unwrap();
    assert!(matches!(dev.info().unwrap().model, ModelStatus::Invalid(ModelError::Format(_))));
}

#[test]
fn garbage_bytes_get_error_frames() {
    if !qemu_present() {
        return;
    }
    let mut dev = QemuDevice::start(&board("qemu-m4"), None, &opts()).unwrap();
    // Bad COBS: a code byte promising more bytes than follow.
    assert_eq!(dev.send_raw(&[5, 1, 0]).unwrap(), Reply::Error(DeviceError::Frame(FrameError::Cobs)));
    // Valid COBS, unknown request tag.
    assert!(matches!(dev.send_raw(&[2, 9, 0]).unwrap(), Reply::Error(DeviceError::Frame(FrameError::Decode(_)))));
    // Valid COBS, truncated request.
    assert!(matches!(dev.send_raw(&[2, 1, 0]).unwrap(), Reply::Error(DeviceError::Frame(FrameError::Decode(_)))));
    // Longer than a frame without a terminator.
    let mut long = vec![0x55u8; 5000];
    long.push(0);
    assert_eq!(dev.send_raw(&long).unwrap(), Reply::Error(DeviceError::Frame(FrameError::Overflow)));
    // Random garbage with zeros in it: every frame gets an answer, then a
    // good request still works.
    let mut x = 0x9e37_79b9u32;
    let garbage: Vec<u8> = (0..300)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 251) as u8
        })
        .collect();
    let last_zero = garbage.iter().rposition(|&b| b == 0).unwrap();
    let reply = dev.send_raw(&garbage[..=last_zero]).unwrap();
    assert!(matches!(reply, Reply::Error(_)), "{reply:?}");
    // A wrong protocol version.
    let mut buf = [0u8; 16];
    let frame =
        releq_common::protocol::encode_frame(&releq_common::protocol::Request::Info { protocol: 999 }, &mut buf)
            .unwrap();
    assert_eq!(
        dev.send_raw(frame).unwrap(),
        Reply::Error(DeviceError::ProtocolMismatch { device: releq_common::protocol::PROTOCOL_VERSION, host: 999 })
    );
    assert_eq!(dev.info().unwrap().model, ModelStatus::Absent);
}

#[test]
fn a_hung_device_times_out_and_qemu_is_killed() {
    if !qemu_present() {
        return;
    }
    let o = QemuOptions { features: vec!["hang".into()], ..opts() };
    let mut dev = QemuDevice::start(&board("qemu-m4"), None, &o).unwrap();
    dev.set_timeout(Duration::from_millis(500));
    let t0 = Instant::now();
    match dev.info() {
        Err(e @ LinkError::Timeout { request: "Info", .. }) => eprintln!("as expected: {e}"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The link is out of step now: later requests are refused, not misread.
    assert!(matches!(dev.info(), Err(LinkError::Desynced { request: "Info" })));
    let pid = dev.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(dev);
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "QEMU {pid} still exists after drop");
}

#[test]
fn qemu_exit_is_reported_with_its_output() {
    if !qemu_present() {
        return;
    }
    // The counter self-test firmware exits QEMU at boot instead of serving:
    // the handshake must fail with QEMU's status and the firmware's words.
    let b = board("qemu-m4");
    let elf = build_firmware(&b, &["selftest-counter".into()]).unwrap();
    let o = QemuOptions { firmware: Some(elf), ..opts() };
    match QemuDevice::start(&b, None, &o) {
        Err(LinkError::QemuExited { stderr, .. }) => assert!(stderr.contains("counter selftest"), "{stderr}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("started"),
    }
}

/// The counter counts a loop of known length exactly, whatever ran before.
fn counter_selftest(board_name: &str) {
    if !qemu_present() {
        return;
    }
    let b = board(board_name);
    let elf = build_firmware(&b, &["selftest-counter".into()]).unwrap();
    let q = b.qemu.as_ref().unwrap();
    let out = std::process::Command::new(find_qemu().unwrap())
        .args(["-machine", &q.machine, "-cpu", &q.cpu])
        .args(["-icount", &format!("shift={},align=off,sleep=off", q.icount_shift)])
        .args(["-display", "none", "-monitor", "none", "-serial", "null"])
        .args(["-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(&elf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{board_name}:\n{stderr}");
    assert!(out.status.success() && stderr.contains("PASS"), "{board_name}: {}\n{stderr}", out.status);
    // 2 instructions per iteration, plus at most a few to set the loop up.
    let line = stderr.lines().find(|l| l.contains("spin(1000000) = ")).unwrap();
    let count: u32 = line.split(" = ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((2_000_000..=2_000_004).contains(&count), "{line}");
}

#[test]
fn counter_counts_a_known_loop_exactly_m4() {
    counter_selftest("qemu-m4");
}

#[test]
fn counter_counts_a_known_loop_exactly_m3() {
    counter_selftest("qemu-m3");
}

#[test]
fn build_failures_are_explained() {
    // A target that is not installed: the error says how to install it.
    let mut b = board("qemu-m4");
    b.target = "thumbv8m.main-none-eabihf".into();
    let installed = std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("thumbv8m.main-none-eabihf"))
        .unwrap_or(true);
    if !installed {
        let e = build_firmware(&b, &[]).unwrap_err();
        assert!(matches!(e, LinkError::TargetMissing { .. }), "{e}");
        assert!(e.to_string().contains("rustup target add thumbv8m.main-none-eabihf"), "{e}");
    }
    // A board the firmware build cannot find: cargo's own words come back.
    let mut b = board("qemu-m4");
    b.name = "test-no-such-board".into();
    let e = build_firmware(&b, &[]).unwrap_err();
    let LinkError::Build { stderr_tail, .. } = &e else { panic!("{e}") };
    assert!(stderr_tail.contains("available boards: ") && stderr_tail.contains("qemu-m3, qemu-m4, "), "{e}");
}

#[test]
fn missing_qemu_says_how_to_install_it() {
    let e = LinkError::QemuMissing.to_string();
    assert!(e.contains("sudo apt-get install qemu-system-arm"), "{e}");
    let e = LinkError::TargetMissing { target: "thumbv6m-none-eabi".into() }.to_string();
    assert!(e.contains("rustup target add thumbv6m-none-eabi"), "{e}");
}

/// Counts grow with MACs on a layer-size sweep: conv output channels and
/// dense features doubled step by step; per-MAC cost stays within 2x once the
/// fixed per-layer work is amortised.
#[test]
fn counts_grow_with_macs_on_a_size_sweep() {
    if !qemu_present() {
        return;
    }
    let mut dev = QemuDevice::start(&board("qemu-m4"), None, &opts()).unwrap();
    for kind in [SpecKind::Conv2d, SpecKind::Dense] {
        let mut last = 0u32;
        let mut per_mac = Vec::new();
        let mut counts = Vec::new();
        for out_c in [2u16, 4, 8, 16, 32, 64] {
            let spec = LayerSpec { kind, out_c, ..conv_spec(8, 8, 8, out_c) };
            let t = dev.time_layer(&spec, 1).unwrap();
            let macs = match kind {
                SpecKind::Conv2d => 8 * 8 * out_c as u64 * 9 * 8,
                _ => out_c as u64 * 8 * 8 * 8,
            };
            assert!(t.min > last, "{kind:?} out_c {out_c}: {} not above {last}", t.min);
            last = t.min;
            per_mac.push(t.min as f64 / macs as f64);
            counts.push((macs, t.min as u64));
        }
        // With fast kernels a layer's fixed cost (im2col of the input, which
        // does not depend on the channel count, the call itself) is a large
        // part of a small layer, so the per-MAC average falls with size. What
        // must hold is that the cost is affine in the MACs: each doubling of
        // the output channels adds the same instructions per added MAC.
        let marginal: Vec<f64> = (3..counts.len())
            .map(|i| (counts[i].1 - counts[i - 1].1) as f64 / (counts[i].0 - counts[i - 1].0) as f64)
            .collect();
        let (lo, hi) = marginal.iter().fold((f64::MAX, 0f64), |(l, h), &v| (l.min(v), h.max(v)));
        eprintln!("{kind:?} per-MAC sweep: {per_mac:.2?}, marginal per MAC: {marginal:.2?}");
        assert!(lo > 0.0 && hi / lo < 1.5, "{kind:?}: added cost not proportional to added MACs: {marginal:?}");
    }
}
