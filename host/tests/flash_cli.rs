//! `releq flash --dry-run` on a real board (nucleo-f446re): it builds the
//! board's firmware, prints the size table and touches no probe; a model
//! too large for the board fails before any flashing, naming the sizes.
//! Also probe-rs's flash layout for that firmware, through its `FakeProbe`.

use rand::{rngs::StdRng, SeedableRng};
use releq_common::builder::OwnedModel;
use releq_common::model::{Activation, Shape, TensorQuant};
use releq_common::testing::{dense_layer, random_model};
use releq_host::boards;
use releq_host::device::build_firmware;
use releq_host::device::probe::{self, FoundProbe, Probes};
use std::path::Path;
use std::process::Command;

fn releq(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_releq")).args(args).output().expect("run releq");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn dry_run_checks_sizes_on_a_real_board_and_refuses_a_model_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let small = random_model(3, true).encode().unwrap();
    let small_path = write(dir.path(), "small.releq", &small);
    let (ok, stdout, stderr) = releq(&["flash", &small_path, "--board", "nucleo-f446re", "--dry-run", "--json"]);
    assert!(ok, "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["fits"], true);
    assert_eq!(v["chip"], "STM32F446RETx");
    let rows = v["rows"].as_array().unwrap();
    let row = |what: &str| rows.iter().find(|r| r["what"].as_str().unwrap().starts_with(what)).unwrap().clone();
    assert_eq!(row("model blob")["used"], small.len());
    assert_eq!(row("model blob")["limit"], 0xC000);
    assert_eq!(row("model arena")["limit"], 40_960);
    let fw_flash = row("firmware flash")["used"].as_u64().unwrap();
    assert!(fw_flash > 4_096 && fw_flash < 512 * 1024, "firmware flash {fw_flash}");
    // The arena (40 KiB) is a static in RAM.
    let fw_ram = row("firmware RAM")["used"].as_u64().unwrap();
    assert!((40_960..0x1_4000).contains(&fw_ram), "firmware RAM {fw_ram}");

    // The text table.
    let (ok, stdout, _) = releq(&["flash", &small_path, "--board", "nucleo-f446re", "--dry-run"]);
    assert!(ok);
    assert!(stdout.contains("model blob") && stdout.contains("no probe was touched"), "{stdout}");

    // One 8-bit dense layer of 256 x 256: 64 KiB of weights, more than the
    // 48 KiB blob region.
    let in_q = TensorQuant { scale: 1.0 / 255.0, zero_point: -128, bits: 8 };
    let mut m = OwnedModel::new("too-large", Shape::new(1, 1, 256), in_q);
    let (l, p, _) = dense_layer(&mut StdRng::seed_from_u64(1), 0, 256, &in_q, 256, 8, 8, Activation::None);
    m.push(l, Some(p.weights));
    let big = m.encode().unwrap();
    assert!(big.len() > 0xC000, "{}", big.len());
    let big_path = write(dir.path(), "big.releq", &big);
    let (ok, stdout, stderr) = releq(&["flash", &big_path, "--board", "nucleo-f446re", "--dry-run"]);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("DOES NOT FIT"), "{stdout}");
    assert!(stderr.contains("does not fit board nucleo-f446re; nothing was flashed"), "{stderr}");
    assert!(stderr.contains(&format!("model blob is {} bytes", big.len())) && stderr.contains("49152"), "{stderr}");
    // Without --dry-run too: refused before any probe is looked for.
    let (ok, _, stderr) = releq(&["flash", &big_path, "--board", "nucleo-f446re"]);
    assert!(!ok && stderr.contains("nothing was flashed") && !stderr.contains("no debug probe"), "{stderr}");

    // An emulated board has nothing to flash.
    let (ok, _, stderr) = releq(&["flash", &small_path, "--board", "qemu-m4", "--dry-run"]);
    assert!(!ok && stderr.contains("emulated"), "{stderr}");
}

/// A bus with one probe that opens as probe-rs's `FakeProbe`.
struct FakeBus;

impl Probes for FakeBus {
    fn list(&self) -> Vec<FoundProbe> {
        vec![FoundProbe { name: "fake".into(), vendor_id: 0x0483, product_id: 0x374b, serial: None, accessible: true }]
    }
    fn open(&self, _: &FoundProbe) -> Result<probe_rs::probe::Probe, probe_rs::probe::DebugProbeError> {
        Ok(probe_rs::integration::FakeProbe::with_mocked_core().into_probe())
    }
}

/// The board's real firmware ELF through probe-rs's flash loader in dry-run
/// mode on a `FakeProbe` attached as the board's chip: the ELF's segments
/// map onto the chip's flash and the flash algorithm is found.
#[test]
fn probe_rs_lays_out_the_boards_firmware_on_a_fake_probe() {
    let board = boards::load("nucleo-f446re").unwrap();
    let elf = build_firmware(&board, &[]).unwrap();
    let mut session = probe::attach(&FakeBus, &board, None).unwrap();
    probe::flash(&mut session, &elf, false, true).unwrap();
    // The same ELF (~174 KiB) on a chip with 16 KiB of flash does not lay out.
    let mut small = board.clone();
    small.hardware.as_mut().unwrap().chip = "STM32F030F4Px".into();
    let mut session = probe::attach(&FakeBus, &small, None).unwrap();
    let e = probe::flash(&mut session, &elf, false, true).unwrap_err().to_string();
    assert!(e.contains("releq-firmware") && e.contains("No flash memory contains"), "{e}");
}

/// `profile` and `run` with a real board go to the probe backend (not the
/// old "cannot flash yet" refusal). A selector no probe has keeps the test
/// from ever flashing a board that happens to be plugged in.
#[test]
fn a_real_board_reaches_the_probe_backend() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.releq", &random_model(3, true).encode().unwrap());
    let (ok, _, stderr) = releq(&["profile", &path, "--board", "nucleo-f446re", "--probe", "ffff:fffe"]);
    assert!(!ok);
    assert!(stderr.contains("no debug probe matches --probe ffff:fffe"), "{stderr}");
    assert_eq!(stderr.matches("no debug probe matches").count(), 1, "said once: {stderr}");
    let (ok, _, stderr) = releq(&["profile", &path, "--board", "qemu-m4", "--probe", "ffff:fffe"]);
    assert!(!ok && stderr.contains("--probe is for real boards"), "{stderr}");
}
