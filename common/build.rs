//! Build script: picks the kernel implementation from the compilation target.
//!
//! Rust's `target_feature = "dsp"` cfg is not stable for ARM, so the target
//! name decides: `thumbv7em-*` (Cortex-M4/M7, and `thumbv8m.main` cores built
//! with the DSP extension are not assumed) gets `releq_dsp`, the SMLAD-class
//! kernels of `kernels::dsp`; every other target (thumbv7m, thumbv6m, the
//! host) runs the portable kernels of `kernels::portable`.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(releq_dsp)");
    println!("cargo::rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") {
        println!("cargo::rustc-cfg=releq_dsp");
    }
}
