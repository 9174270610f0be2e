//! The `releq` command-line tool. Each subcommand lives in `cmd/<name>.rs`.

mod cmd;

use clap::{Parser, Subcommand};

/// releq: per-layer bitwidth search for microcontrollers, with latency
/// measured on the device itself.
#[derive(Debug, Parser)]
#[command(name = "releq", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a .releq model's layers, bits, flash and arena sizes.
    Inspect(cmd::inspect::Inspect),
    /// Write a model of a known topology with random weights.
    Synth(cmd::synth::Synth),
    /// List the boards releq knows.
    Boards(cmd::boards::Boards),
    /// Measure each layer's latency on the device.
    Profile(cmd::profile::Profile),
    /// Run test images on the device and compare with the host bit for bit.
    Run(cmd::run::Run),
    /// Accuracy of a .releq model by the host's integer inference.
    Eval(cmd::eval::Eval),
    /// Export a checkpoint to an integer .releq model (PTQ, or after QAT).
    Quantize(cmd::quantize::Quantize),
    /// Search per-layer bitwidths with ReLeQ against latency measured on the device.
    Search(cmd::search::Search),
    /// Judge the search agent against exhaustive, random and greedy search.
    Compare(cmd::compare::Compare),
    /// Train a zoo model in float.
    Train(cmd::train::Train),
    /// Calibrate and fine-tune a checkpoint with fake quantization (QAT).
    Finetune(cmd::finetune::Finetune),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(c) => c.run(),
        Command::Synth(c) => c.run(),
        Command::Boards(c) => c.run(),
        Command::Profile(c) => c.run(),
        Command::Run(c) => c.run(),
        Command::Eval(c) => c.run(),
        Command::Quantize(c) => c.run(),
        Command::Search(c) => c.run(),
        Command::Compare(c) => c.run(),
        Command::Train(c) => c.run(),
        Command::Finetune(c) => c.run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
