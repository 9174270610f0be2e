//! The C path end to end on the host: `releq export --format c`'s header
//! (host::cexport) and the runtime staticlib (`capi/`, header
//! `capi/include/releq.h`) compiled into a C program with `cc`; its outputs
//! for the example's LeNet-5 and MNIST inputs must be the Rust runtime's,
//! bit for bit, and its error paths must return the documented statuses.
//!
//! Then the same on a Cortex-M4F: `examples/c-firmware/` (freestanding C,
//! no libc) compiled with clang for thumbv7em, linked with rust-lld against
//! the thumbv7em staticlib and run under QEMU mps2-an386, its outputs
//! printed over semihosting and compared with the host's.
//!
//! The staticlib is built with `cargo build --release -p releq-capi
//! [--target thumbv7em-none-eabihf]` into `target/capi` (a directory of its
//! own: the outer cargo holds the main one). Without `cc` (host test) or
//! `clang` / `qemu-system-arm` (QEMU test) a test prints a note and passes.

use releq_common::embed;
use releq_common::Plan;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Build the staticlib for the host (`target: None`) or a target.
fn build_staticlib(target: Option<&str>) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root()).args(["build", "--release", "-p", "releq-capi", "--target-dir", "target/capi"]);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    for var in
        ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS"]
    {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("cannot run cargo");
    assert!(out.status.success(), "releq-capi build failed:\n{}", String::from_utf8_lossy(&out.stderr));
    match target {
        Some(t) => root().join("target/capi").join(t).join("release/libreleq_capi.a"),
        None => root().join("target/capi/release/libreleq_capi.a"),
    }
}

const MAIN_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include "releq.h"
#include "lenet5.h"

static releq_model model;
static uint32_t arena[(LENET5_ARENA_BYTES + 3) / 4];
static uint8_t corrupt[LENET5_BLOB_BYTES];

int main(int argc, char **argv) {
    char msg[160];
    int32_t rc = releq_model_check(&model, lenet5_blob, LENET5_BLOB_BYTES, msg, sizeof msg);
    if (rc != RELEQ_OK) { printf("check failed: %s %s\n", releq_status_name(rc), msg); return 1; }
    releq_info info;
    if (releq_model_info(&model, &info) != RELEQ_OK || info.arena_bytes != LENET5_ARENA_BYTES
        || info.input_len != LENET5_INPUT_LEN || info.output_len != LENET5_OUTPUT_LEN) {
        printf("info does not match the exported header\n"); return 1;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { printf("cannot open %s\n", argv[1]); return 1; }
    int8_t input[LENET5_INPUT_LEN], output[LENET5_OUTPUT_LEN];
    for (int n = 0; fread(input, 1, sizeof input, f) == sizeof input; n++) {
        rc = releq_run(&model, (int8_t *)arena, LENET5_ARENA_BYTES, input, LENET5_INPUT_LEN, output, LENET5_OUTPUT_LEN);
        if (rc != RELEQ_OK) { printf("run failed: %s\n", releq_status_name(rc)); return 1; }
        printf("input %d: output", n);
        for (unsigned i = 0; i < LENET5_OUTPUT_LEN; i++) printf(" %d", output[i]);
        printf("\n");
    }
    fclose(f);
    /* Error paths: one byte of arena short, a wrong output length, a corrupted blob. */
    rc = releq_run(&model, (int8_t *)arena, LENET5_ARENA_BYTES - 1, input, LENET5_INPUT_LEN, output, LENET5_OUTPUT_LEN);
    printf("short arena: %s\n", releq_status_name(rc));
    rc = releq_run(&model, (int8_t *)arena, LENET5_ARENA_BYTES, input, LENET5_INPUT_LEN, output, 3);
    printf("short output: %s\n", releq_status_name(rc));
    memcpy(corrupt, lenet5_blob, sizeof corrupt);
    corrupt[100] ^= 1;
    releq_model bad;
    rc = releq_model_check(&bad, corrupt, sizeof corrupt, msg, sizeof msg);
    printf("corrupt blob: %s: %s\n", releq_status_name(rc), msg);
    rc = releq_run(&bad, (int8_t *)arena, LENET5_ARENA_BYTES, input, LENET5_INPUT_LEN, output, LENET5_OUTPUT_LEN);
    printf("unchecked model: %s\n", releq_status_name(rc));
    return 0;
}
"#;

#[test]
fn c_program_runs_the_exported_model_bit_exact() {
    if Command::new("cc").arg("--version").output().is_err() {
        eprintln!("note: no C compiler (cc) on PATH; skipping");
        return;
    }
    let lib = build_staticlib(None);
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("examples/standalone/model/lenet5.releq");
    let inputs = root().join("examples/standalone/model/inputs.bin");
    releq_host::cexport::write_c_header(&model, &dir.path().join("lenet5.h"), None).unwrap();
    std::fs::write(dir.path().join("main.c"), MAIN_C).unwrap();
    let exe = dir.path().join("main");
    let out = Command::new("cc")
        .args(["-std=c11", "-O2", "-Wall", "-Werror"])
        .arg("-I")
        .arg(root().join("capi/include"))
        .arg("-I")
        .arg(dir.path())
        .arg("-o")
        .arg(&exe)
        .arg(dir.path().join("main.c"))
        .arg(&lib)
        .args(["-lpthread", "-ldl", "-lm"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&exe).arg(&inputs).output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    eprintln!("{stdout}");
    assert!(run.status.success(), "{stdout}");

    let blob = std::fs::read(&model).unwrap();
    let plan = Plan::from_bytes(&blob).unwrap();
    let mut arena = vec![0i8; plan.arena_bytes];
    let bytes = std::fs::read(&inputs).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("input ")).collect();
    assert_eq!(lines.len(), bytes.len() / plan.input().shape.len());
    for (i, (input, line)) in bytes.chunks_exact(plan.input().shape.len()).zip(lines).enumerate() {
        let want = plan.run(&mut arena, embed::codes(input)).unwrap();
        let got: Vec<i8> =
            line.split_once("output").unwrap().1.split_whitespace().map(|v| v.parse().unwrap()).collect();
        assert_eq!(got, want, "image {i}: the C program's output differs from the Rust runtime's");
    }
    assert!(stdout.contains("short arena: RELEQ_ERR_ARENA"), "{stdout}");
    assert!(stdout.contains("short output: RELEQ_ERR_OUTPUT_LENGTH"), "{stdout}");
    assert!(stdout.contains("corrupt blob: RELEQ_ERR_MODEL: CRC"), "{stdout}");
    assert!(stdout.contains("unchecked model: RELEQ_ERR_NOT_CHECKED"), "{stdout}");
}

/// `clang` (or `clang-14`, as Debian names it), if installed.
fn clang() -> Option<&'static str> {
    ["clang", "clang-14"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()))
}

/// rust-lld of the toolchain running the tests.
fn rust_lld() -> PathBuf {
    let out = |args: &[&str]| {
        let o = Command::new("rustc").args(args).output().expect("rustc");
        String::from_utf8(o.stdout).unwrap()
    };
    let sysroot = out(&["--print", "sysroot"]);
    let host = out(&["-vV"]).lines().find_map(|l| l.strip_prefix("host: ").map(str::to_owned)).unwrap();
    PathBuf::from(sysroot.trim()).join("lib/rustlib").join(host).join("bin/rust-lld")
}

/// The exported LeNet-5 and its inputs as C headers in `dir`.
fn write_headers(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let model = root().join("examples/standalone/model/lenet5.releq");
    let inputs = std::fs::read(root().join("examples/standalone/model/inputs.bin")).unwrap();
    let c = releq_host::cexport::write_c_header(&model, &dir.join("lenet5.h"), None).unwrap();
    let mut h = format!(
        "#define INPUT_COUNT {}\nstatic const int8_t inputs[INPUT_COUNT][{}] = {{\n",
        inputs.len() / c.input_len,
        c.input_len
    );
    for img in inputs.chunks_exact(c.input_len) {
        let vals: Vec<String> = img.iter().map(|&b| (b as i8).to_string()).collect();
        h.push_str(&format!("  {{{}}},\n", vals.join(",")));
    }
    h.push_str("};\n");
    std::fs::write(dir.join("inputs.h"), h).unwrap();
    (std::fs::read(&model).unwrap(), inputs)
}

#[test]
fn c_firmware_runs_the_exported_model_under_qemu_bit_exact() {
    let Some(clang) = clang() else {
        eprintln!("note: no clang on PATH; skipping (apt-get install clang-14)");
        return;
    };
    let Ok(qemu) = releq_host::device::qemu::find_qemu() else {
        eprintln!("note: qemu-system-arm is not on PATH; skipping");
        return;
    };
    let lib = build_staticlib(Some("thumbv7em-none-eabihf"));
    let dir = tempfile::tempdir().unwrap();
    let (blob, inputs) = write_headers(dir.path());
    let src = root().join("examples/c-firmware");
    let mut objs = Vec::new();
    for file in ["main.c", "startup.c"] {
        let obj = dir.path().join(file.replace(".c", ".o"));
        let out = Command::new(clang)
            .args(["--target=thumbv7em-none-eabihf", "-mcpu=cortex-m4", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"])
            .args(["-ffreestanding", "-nostdlib", "-O2", "-std=c11", "-Wall", "-Werror", "-c"])
            .arg("-I")
            .arg(root().join("capi/include"))
            .arg("-I")
            .arg(dir.path())
            .arg(src.join(file))
            .arg("-o")
            .arg(&obj)
            .output()
            .unwrap();
        assert!(out.status.success(), "{clang} {file}: {}", String::from_utf8_lossy(&out.stderr));
        objs.push(obj);
    }
    let elf = dir.path().join("firmware.elf");
    let out = Command::new(rust_lld())
        .args(["-flavor", "gnu", "--gc-sections", "-T"])
        .arg(src.join("link.ld"))
        .args(&objs)
        .arg(&lib)
        .arg("-o")
        .arg(&elf)
        .output()
        .unwrap();
    assert!(out.status.success(), "rust-lld: {}", String::from_utf8_lossy(&out.stderr));

    let run = Command::new(qemu)
        .args(["-machine", "mps2-an386", "-cpu", "cortex-m4", "-display", "none", "-monitor", "none"])
        .args(["-serial", "null", "-semihosting-config", "enable=on,target=native", "-kernel"])
        .arg(&elf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    eprintln!("{stdout}");
    assert!(
        run.status.success() && stdout.contains("releq-c: done"),
        "QEMU {}: {stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );

    let plan = Plan::from_bytes(&blob).unwrap();
    assert!(stdout.contains(&format!("arena {} B (LENET5_ARENA_BYTES {})", plan.arena_bytes, plan.arena_bytes)));
    let mut arena = vec![0i8; plan.arena_bytes];
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("input ")).collect();
    assert_eq!(lines.len(), inputs.len() / plan.input().shape.len(), "{stdout}");
    for (i, (input, line)) in inputs.chunks_exact(plan.input().shape.len()).zip(lines).enumerate() {
        let want = plan.run(&mut arena, embed::codes(input)).unwrap();
        let got: Vec<i8> =
            line.split_once("output").unwrap().1.split_whitespace().map(|v| v.parse().unwrap()).collect();
        assert_eq!(got, want, "image {i}: the C firmware's output differs from the host's");
    }
    assert!(stdout.contains("short arena: RELEQ_ERR_ARENA"), "{stdout}");
}
