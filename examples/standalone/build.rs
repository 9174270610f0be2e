//! Build script: the model's constants and the memory layout.
//!
//! - Validates `model/lenet5.releq` on the host with releq-common's own code
//!   and writes `$OUT_DIR/releq_model.rs` (`ARENA_BYTES`, `INPUT_LEN`, ...),
//!   so the arena is sized exactly, at compile time; a bad model fails the
//!   build with the reason.
//! - Copies the memory layout of the board being built for (feature `qemu`:
//!   QEMU's mps2-an386, else the NUCLEO-F446RE) to `$OUT_DIR/memory.x`, for
//!   cortex-m-rt's `link.x`.

use std::path::PathBuf;

fn main() {
    if let Err(e) = releq_common::embed::build::emit("model/lenet5.releq") {
        panic!("\n\nreleq example: {e}\n\n");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let memory =
        if std::env::var_os("CARGO_FEATURE_QEMU").is_some() { "memory-qemu-m4.x" } else { "memory-nucleo-f446re.x" };
    std::fs::copy(memory, out.join("memory.x")).unwrap_or_else(|e| panic!("cannot copy {memory}: {e}"));
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed={memory}");
    println!("cargo:rerun-if-changed=build.rs");
}
