//! The `rtt` link, end to end, on `qemu-m4-rtt`: the firmware code of the
//! real boards (RTT channels, defmt over RTT) under QEMU, the host reading
//! and writing the RTT rings through QEMU's gdbstub as a probe would.
//!
//! Lean on purpose (CI time): one QEMU per board for the bit-exact runs, a
//! synthetic layer, stats, garbage and the log; the error paths that need
//! no emulator run. Without `qemu-system-arm` on PATH the tests print a note
//! and pass.

use rand::rngs::StdRng;
use rand::SeedableRng;
use releq_common::model::{Padding, Shape};
use releq_common::protocol::{DeviceError, FrameError, LayerSpec, ModelStatus, SpecKind};
use releq_common::testing::{random_input, random_model};
use releq_common::Plan;
use releq_host::boards;
use releq_host::device::qemu::find_qemu;
use releq_host::device::{build_firmware, Device, LinkError, QemuDevice, QemuOptions, Reply};
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

fn conv_spec() -> LayerSpec {
    LayerSpec {
        kind: SpecKind::Conv2d,
        input: Shape::new(8, 8, 8),
        out_c: 8,
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

/// The same model, inputs and synthetic layer on qemu-m4-rtt and on qemu-m4:
/// outputs bit-exact with the host's reference, and the same instruction
/// counts on both links (the kernels and the counter are the same code; only
/// the link differs, and the guest is halted, its virtual clock standing
/// still, while the host accesses its memory).
#[test]
fn rtt_link_is_bit_exact_and_counts_like_the_uart_link() {
    if !qemu_present() {
        return;
    }
    let blob = random_model(11, true).encode().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.releq");
    std::fs::write(&path, &blob).unwrap();
    let plan = Plan::from_bytes(&blob).unwrap();
    let rtt_board = boards::load("qemu-m4-rtt").unwrap();
    let mut rtt = QemuDevice::start(&rtt_board, Some(&path), &opts()).unwrap();
    eprintln!("qemu-m4-rtt: QEMU start + attach + handshake {:.3} s", rtt.startup_time().as_secs_f64());
    let mut uart = QemuDevice::start(&boards::load("qemu-m4").unwrap(), Some(&path), &opts()).unwrap();

    let info = rtt.info().unwrap();
    assert_eq!(info.board, "qemu-m4-rtt");
    assert_eq!(info.core, "cortex-m4");
    assert!(matches!(info.model, ModelStatus::Loaded { layers, .. } if layers as usize == plan.model.layers.len()));

    let mut rng = StdRng::seed_from_u64(7);
    let mut arena = vec![0i8; plan.arena_bytes];
    for _ in 0..2 {
        let input = random_input(&mut rng, &plan);
        let want = plan.run_with::<releq_common::kernels::Reference>(&mut arena, &input).unwrap().to_vec();
        let got = rtt.run(&input).unwrap();
        assert_eq!(got.output, want, "qemu-m4-rtt: device output differs from the host's");
        // The host halts the guest at different moments on every run: the
        // counts must not move.
        assert_eq!(rtt.run(&input).unwrap().counts, got.counts, "qemu-m4-rtt: counts differ between two runs");
        let over_uart = uart.run(&input).unwrap();
        assert_eq!(got.counts, over_uart.counts, "the RTT and UART builds count differently");
        eprintln!("qemu-m4-rtt: counts {:?} (qemu-m4: the same)", got.counts);
    }
    let t = rtt.time_layer(&conv_spec(), 3).unwrap();
    assert_eq!(t.min, t.max, "a synthetic layer's count varies between repeats");
    assert_eq!(t.min, uart.time_layer(&conv_spec(), 3).unwrap().min);
    let stats = rtt.stats().unwrap();
    assert!(stats.stack_peak_bytes > 0 && stats.stack_peak_bytes < stats.stack_size_bytes, "{stats:?}");

    // Garbage over RTT gets an error frame, and the link stays usable.
    match rtt.send_raw(&[0x01, 0xff, 0xff, 0x00]).unwrap() {
        Reply::Error(DeviceError::Frame(FrameError::Cobs | FrameError::Decode(_))) => {}
        other => panic!("garbage answered with {other:?}"),
    }
    assert_eq!(rtt.info().unwrap().board, "qemu-m4-rtt");

    // The defmt log travelled on RTT up channel 0.
    let log = rtt.log_tail();
    assert!(log.contains("[firmware]") && log.contains("link rtt"), "no defmt log over RTT:\n{log}");

    // Throughput: round trips, and a large frame each way.
    let n = 50;
    let started = Instant::now();
    for _ in 0..n {
        rtt.info().unwrap();
    }
    let rt = started.elapsed() / n;
    let big = vec![0x55u8; 4000];
    let started = Instant::now();
    for _ in 0..5 {
        // One 4000-byte request (no zero byte: read as one bad frame), one
        // short error frame back.
        let mut frame = big.clone();
        frame.push(0);
        assert!(matches!(rtt.send_raw(&frame).unwrap(), Reply::Error(_)));
    }
    let up = started.elapsed() / 5;
    eprintln!(
        "qemu-m4-rtt over the gdbstub: {:.2} ms per Info round trip, {:.1} ms per 4 KB request ({:.0} KB/s host to device)",
        rt.as_secs_f64() * 1e3,
        up.as_secs_f64() * 1e3,
        4.0 / up.as_secs_f64()
    );
}

/// An ELF without `_SEGGER_RTT` (the UART build) is refused before QEMU
/// starts, naming the symbol and the file.
#[test]
fn an_elf_without_an_rtt_control_block_is_refused() {
    if !qemu_present() {
        return;
    }
    let uart_elf = build_firmware(&boards::load("qemu-m4").unwrap(), &[]).unwrap();
    let o = QemuOptions { firmware: Some(uart_elf.clone()), ..opts() };
    let e = QemuDevice::start(&boards::load("qemu-m4-rtt").unwrap(), None, &o).err().expect("must fail");
    let msg = e.to_string();
    assert!(matches!(e, LinkError::Rtt { .. }), "{msg}");
    assert!(msg.contains("_SEGGER_RTT") && msg.contains(&uart_elf.display().to_string()), "{msg}");
}
