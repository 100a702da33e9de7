//! The `tidescale` binary: parses the command line and runs one subcommand.

use std::process::ExitCode;

use clap::Parser;
use tidescale::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // clap prints usage errors itself and exits with 2.
    let cli = Cli::parse();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let code = match &cli.command {
        Command::Replay(args) => cli::replay(args, &mut out, &mut err),
        Command::Check(args) => cli::check(args, &mut out, &mut err),
    };
    ExitCode::from(code)
}
