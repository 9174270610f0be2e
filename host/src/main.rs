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
    Inspect(cmd::inspect::Inspect),
    Synth(cmd::synth::Synth),
    Boards(cmd::boards::Boards),
    Flash(cmd::flash::Flash),
    Profile(cmd::profile::Profile),
    Run(cmd::run::Run),
    Eval(cmd::eval::Eval),
    Quantize(cmd::quantize::Quantize),
    Search(cmd::search::Search),
    Compare(cmd::compare::Compare),
    Train(cmd::train::Train),
    Finetune(cmd::finetune::Finetune),
    Import(cmd::import::Import),
    Export(cmd::export::Export),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(c) => c.run(),
        Command::Synth(c) => c.run(),
        Command::Boards(c) => c.run(),
        Command::Flash(c) => c.run(),
        Command::Profile(c) => c.run(),
        Command::Run(c) => c.run(),
        Command::Eval(c) => c.run(),
        Command::Quantize(c) => c.run(),
        Command::Search(c) => c.run(),
        Command::Compare(c) => c.run(),
        Command::Train(c) => c.run(),
        Command::Finetune(c) => c.run(),
        Command::Import(c) => c.run(),
        Command::Export(c) => c.run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
