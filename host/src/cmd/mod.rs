//! One module per `releq` subcommand, each a `clap::Parser` with `run(self)`.

pub mod inspect;
pub mod synth;
