//! `cargo xtask`: the project's automation, so CI and people run the same
//! steps.
//!
//! - `cargo xtask test`: formatting, clippy (host and firmware), the host
//!   workspace tests (which include QEMU end-to-end tests when QEMU is
//!   installed), the firmware build for every board's target, and the
//!   standalone example (`examples/standalone`) for qemu-m4 and the
//!   NUCLEO-F446RE, with its size, and the C runtime staticlib (`capi/`)
//!   for thumbv7em and thumbv6m.
//! - `cargo xtask bench` (or `cargo xtask bench lenet5`): LeNet-5 (random
//!   weights) profiled on a QEMU board, instructions per MAC per layer beside
//!   the CMSIS-NN anchors measured in the same emulator
//!   (`../shared/notes/anchors.md`), and the same model at lower weight bits,
//!   as ratios measured in one run.
//! - `cargo xtask bench kernels`: instructions per MAC of six anchor layers
//!   at many weight / activation bit pairs (`TimeLayer`), LeNet-5 whole-model
//!   totals on qemu-m4 and qemu-m7, the firmware's inference code size and
//!   its peak stack ([`kernels`]).
//! - `cargo xtask size`: build every board's firmware and print its flash
//!   and static RAM ([`fwsize`]; `cargo xtask test` prints the same table).
//!
//! The `cargo xtask` alias builds xtask in release, so the host library it
//! links shares its build with the `releq` binary.

mod codesize;
mod fwsize;
mod kernels;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run every check CI runs: fmt, clippy, tests, firmware builds.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
    },
    /// Build every board's firmware and print its flash and static RAM.
    Size,
    /// Benchmarks on QEMU boards (without a subcommand: `lenet5`).
    Bench {
        #[command(subcommand)]
        which: Option<Bench>,
        /// Board to profile LeNet-5 on (when no subcommand is given).
        #[arg(long, default_value = "qemu-m4")]
        board: String,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Profile LeNet-5 per layer on a QEMU board and compare with the anchors.
    Lenet5 {
        /// Board to profile on.
        #[arg(long, default_value = "qemu-m4")]
        board: String,
    },
    /// Instructions per MAC of the anchor layers at many bit pairs, LeNet-5
    /// totals on qemu-m4 and qemu-m7, inference code size, peak stack.
    Kernels(kernels::Args),
}

/// CMSIS-NN s8 on qemu-m4 for the same LeNet-5, executed instructions per
/// layer, from `../shared/notes/anchors.md` (measured outside this project;
/// quoted, not re-measured here).
const CMSIS_NN_S8: [(&str, u64); 8] = [
    ("conv1", 959_600),
    ("pool1", 51_760),
    ("conv2", 407_400),
    ("pool2", 11_400),
    ("flatten", 0),
    ("dense1", 63_720),
    ("dense2", 23_360),
    ("dense3", 2_280),
];

fn profile_json(releq: &Path, model: &Path, board: &str) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(releq)
        .args(["profile", "--json", "--repeat", "2", "--board", board])
        .arg(model)
        .output()
        .context("cannot run releq profile")?;
    if !out.status.success() {
        bail!("releq profile failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn bench(board: &str) -> anyhow::Result<()> {
    let root = root();
    run(&root, "cargo", &["build", "--release", "-q", "-p", "releq-host"], &[])?;
    let releq = root.join("target/release/releq");
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let variants = [("int8", "8"), ("w4a8", "4"), ("w2a8", "2")];
    let mut profiles = Vec::new();
    for (name, wbits) in variants {
        let model = dir.join(format!("lenet5-{name}.releq"));
        let args = ["synth", "--arch", "lenet5", "--seed", "1", "--wbits", wbits, "--abits", "8", "--out"];
        let status = Command::new(&releq).args(args).arg(&model).status()?;
        if !status.success() {
            bail!("releq synth failed");
        }
        let started = std::time::Instant::now();
        let p = profile_json(&releq, &model, board)?;
        profiles.push((name, p, started.elapsed().as_secs_f64()));
    }
    let (_, int8, wall) = &profiles[0];
    let unit = int8["unit"].as_str().unwrap_or("?");
    println!("LeNet-5 (random weights) on {board}, counts in {unit}; reference (scalar) kernels");
    println!("CMSIS-NN s8 column: anchors.md, measured in the same emulator outside this project\n");
    println!(
        "| layer | MACs | releq int8 | per MAC | CMSIS-NN s8 | per MAC | releq / CMSIS-NN | w4a8 / int8 | w2a8 / int8 |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let layers = int8["layers"].as_array().context("no layers in profile")?;
    for (i, l) in layers.iter().enumerate() {
        let macs = l["macs"].as_u64().unwrap_or(0);
        let count = l["count"].as_u64().unwrap_or(0);
        let (name, cmsis) = CMSIS_NN_S8.get(i).copied().unwrap_or(("?", 0));
        let per = |c: u64| if macs > 0 { format!("{:.2}", c as f64 / macs as f64) } else { "-".into() };
        let ratio = |p: &serde_json::Value| {
            let c = p["layers"][i]["count"].as_u64().unwrap_or(0);
            if count > 0 {
                format!("{:.2}", c as f64 / count as f64)
            } else {
                "-".into()
            }
        };
        println!(
            "| {name} ({}) | {macs} | {count} | {} | {cmsis} | {} | {} | {} | {} |",
            l["kind"].as_str().unwrap_or("?"),
            per(count),
            per(cmsis),
            if cmsis > 0 { format!("{:.2}", count as f64 / cmsis as f64) } else { "-".into() },
            ratio(&profiles[1].1),
            ratio(&profiles[2].1),
        );
    }
    let total = int8["total"].as_u64().unwrap_or(0);
    let cmsis_total: u64 = CMSIS_NN_S8.iter().map(|(_, c)| c).sum();
    let macs = int8["total_macs"].as_u64().unwrap_or(1);
    let tot = |p: &serde_json::Value| p["total"].as_u64().unwrap_or(0) as f64 / total.max(1) as f64;
    println!(
        "| whole model | {macs} | {total} | {:.2} | {cmsis_total} | {:.2} | {:.2} | {:.2} | {:.2} |",
        total as f64 / macs as f64,
        cmsis_total as f64 / macs as f64,
        total as f64 / cmsis_total as f64,
        tot(&profiles[1].1),
        tot(&profiles[2].1),
    );
    println!(
        "\ncounts identical across 2 runs: {}; profile wall time {wall:.2} s (QEMU start + handshake + 2 runs)",
        profiles.iter().all(|(_, p, _)| p["identical"].as_bool() == Some(true))
    );
    eval_speed(&releq, &dir.join("lenet5-int8.releq"))
}

/// Host integer inference over the 10,000 MNIST test images (the search's
/// inner loop), fast path against the reference kernels, one core.
fn eval_speed(releq: &Path, model: &Path) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for imp in ["fast", "reference"] {
        let out = Command::new(releq)
            .args(["eval", "--json", "--dataset", "mnist", "--impl", imp])
            .arg(model)
            .env("RAYON_NUM_THREADS", "1")
            .output()?;
        if !out.status.success() {
            println!("\n(eval benchmark skipped: {})", String::from_utf8_lossy(&out.stderr).trim());
            return Ok(());
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        rows.push((imp, v["seconds"].as_f64().unwrap_or(0.0), v["count"].as_u64().unwrap_or(0)));
    }
    println!("\nHost integer inference, LeNet-5 int8, MNIST test set, one core (target <= 2 s):\n");
    println!("| implementation | images | seconds | images/s | vs reference |\n| --- | ---: | ---: | ---: | ---: |");
    let reference = rows[1].1;
    for (imp, secs, n) in rows {
        println!("| {imp} | {n} | {secs:.2} | {:.0} | {:.1}x |", n as f64 / secs.max(1e-9), reference / secs.max(1e-9));
    }
    Ok(())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

pub(crate) fn run(dir: &Path, program: &str, args: &[&str], envs: &[(&str, String)]) -> anyhow::Result<()> {
    eprintln!("xtask: {program} {} (in {})", args.join(" "), dir.display());
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .with_context(|| format!("cannot start {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Every board file's name and rust target, read from `boards/*.toml`.
/// Build every board's firmware (cargo skips what is up to date) and print
/// the size table.
fn size(root: &Path) -> anyhow::Result<()> {
    let fw = root.join("firmware");
    for (name, target) in boards(root)? {
        let target_dir = format!("target/{name}");
        let args = ["build", "--release", "-q", "--target", &target, "--target-dir", &target_dir];
        run(&fw, "cargo", &args, &[("RELEQ_BOARD", name.clone())])?;
    }
    size_table(root)
}

/// The size table of the boards' firmware, built already in `firmware/target/<board>`.
fn size_table(root: &Path) -> anyhow::Result<()> {
    let dir = root.join("boards");
    let rows: Vec<fwsize::Row> = releq_host::boards::list_in(&dir)?
        .into_iter()
        .map(|b| fwsize::Row {
            elf: root.join("firmware/target").join(&b.name).join(&b.target).join("release/releq-firmware"),
            board: b.name,
            target: b.target,
            flash_len: b.memory.flash.length,
            ram_len: b.memory.ram.length,
            clock_hz: b.clock_hz,
            emulated: b.emulated,
        })
        .collect();
    fwsize::print_table(&rows)
}

fn boards(root: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let dir = root.join("boards");
    let mut entries: Vec<_> =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p)?;
        // The two keys we need are plain `key = "value"` lines.
        let key = |k: &str| {
            text.lines().find_map(|l| {
                let (a, b) = l.split_once('=')?;
                (a.trim() == k).then(|| b.trim().trim_matches('"').to_string())
            })
        };
        let name = key("name").with_context(|| format!("{}: no `name`", p.display()))?;
        let target = key("target").with_context(|| format!("{}: no `target`", p.display()))?;
        out.push((name, target));
    }
    Ok(out)
}

fn test(no_lint: bool) -> anyhow::Result<()> {
    let root = root();
    let fw = root.join("firmware");
    let mut envs = vec![("RAYON_NUM_THREADS", "1".to_string())];
    if std::env::var_os("RELEQ_DATA").is_none() && root.join("data").is_dir() {
        envs.push(("RELEQ_DATA", root.join("data").display().to_string()));
    }
    if !no_lint {
        run(&root, "cargo", &["fmt", "--all", "--check"], &[])?;
        run(&root, "cargo", &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[])?;
    }
    let boards = boards(&root)?;
    for (name, target) in &boards {
        let target_dir = format!("target/{name}");
        let args = ["build", "--release", "--target", target, "--target-dir", &target_dir];
        run(&fw, "cargo", &args, &[("RELEQ_BOARD", name.clone())])?;
        if !no_lint {
            let args = ["clippy", "--release", "--target", target, "--target-dir", &target_dir, "--", "-D", "warnings"];
            run(&fw, "cargo", &args, &[("RELEQ_BOARD", name.clone())])?;
        }
    }
    size_table(&root)?;
    if !no_lint {
        run(&fw, "cargo", &["fmt", "--all", "--check"], &[])?;
    }
    example(&root, !no_lint)?;
    // The portable kernels must build for a Cortex-M0+ too (no board of
    // that core runs under QEMU yet: compiled, not run).
    let m0 = ["build", "--release", "-q", "-p", "releq-common", "--no-default-features"];
    let m0 = [&m0[..], &["--target", "thumbv6m-none-eabi"]].concat();
    run(&root, "cargo", &m0, &[])?;
    // The C runtime staticlib for C firmware (capi/): built for a Cortex-M4F
    // and a Cortex-M0+; tests/tests/capi_c.rs runs its host build from a C
    // program and its thumbv7em build in C firmware under QEMU (M0+: compiled only).
    // Built into target/capi, where the test finds them up to date.
    let capi = ["build", "--release", "-q", "-p", "releq-capi", "--target-dir", "target/capi"];
    run(&root, "cargo", &capi, &[])?;
    for target in ["thumbv7em-none-eabihf", "thumbv6m-none-eabi"] {
        run(&root, "cargo", &[&capi[..], &["--target", target]].concat(), &[])?;
    }
    run(&root, "cargo", &["test", "--workspace", "--release"], &envs)?;
    Ok(())
}

/// The standalone example (a user's own firmware embedding a model, its own
/// cargo workspace): `(variant, features)`; the variant names its target
/// directory. qemu-m4 runs in `tests/tests/example_qemu.rs`; the NUCLEO-F446RE
/// build is compiled only.
const EXAMPLE_VARIANTS: [(&str, &str); 2] = [("qemu-m4", "qemu"), ("nucleo-f446re", "")];

/// Build (and lint) the standalone example for each variant, print its size.
fn example(root: &Path, lint: bool) -> anyhow::Result<()> {
    let dir = root.join("examples/standalone");
    let target = "thumbv7em-none-eabihf";
    let mut sizes = Vec::new();
    for (variant, features) in EXAMPLE_VARIANTS {
        let target_dir = format!("target/{variant}");
        let mut args = vec!["build", "--release", "--target", target, "--target-dir", &target_dir];
        if !features.is_empty() {
            args.extend(["--features", features]);
        }
        run(&dir, "cargo", &args, &[])?;
        if lint {
            args[0] = "clippy";
            args.extend(["--", "-D", "warnings"]);
            run(&dir, "cargo", &args, &[])?;
        }
        let elf = dir.join(&target_dir).join(target).join("release/releq-example-standalone");
        sizes.push((variant, fwsize::of(&elf)?));
    }
    if lint {
        run(&dir, "cargo", &["fmt", "--all", "--check"], &[])?;
    }
    println!("\nexamples/standalone (LeNet-5 embedded; flash = vectors+text+rodata+data, RAM = data+bss):");
    for (variant, s) in sizes {
        let kind = if variant.starts_with("qemu") { "QEMU (run in tests)" } else { "hardware (compiled only)" };
        println!("{variant:<14} flash {:>7} B  RAM {:>6} B  {kind}", s.flash, s.ram);
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Test { no_lint } => test(no_lint),
        Cmd::Size => size(&root()),
        Cmd::Bench { which: None, board } | Cmd::Bench { which: Some(Bench::Lenet5 { board }), .. } => bench(&board),
        Cmd::Bench { which: Some(Bench::Kernels(args)), .. } => kernels::bench(&root(), &args),
    }
}
