//! `cargo xtask`: the project's automation, so CI and people run the same
//! steps.
//!
//! - `cargo xtask test`: formatting, clippy (host and firmware), the host
//!   workspace tests (which include QEMU end-to-end tests when QEMU is
//!   installed), and the firmware build for every board's target.

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
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

fn run(dir: &Path, program: &str, args: &[&str], envs: &[(&str, String)]) -> anyhow::Result<()> {
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
    if !no_lint {
        run(&fw, "cargo", &["fmt", "--all", "--check"], &[])?;
    }
    run(&root, "cargo", &["test", "--workspace", "--release"], &envs)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Test { no_lint } => test(no_lint),
    }
}
