//! One module per `releq` subcommand, each a `clap::Parser` with `run(self)`.

pub mod boards;
pub mod compare;
pub mod device_args;
pub mod eval;
pub mod export;
pub mod finetune;
pub mod flash;
pub mod import;
pub mod input_args;
pub mod inspect;
pub mod profile;
pub mod quantize;
pub mod run;
pub mod search;
pub mod synth;
pub mod train;
