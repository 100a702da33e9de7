//! `demo-service`: the demo key-value microservice as a process.

use std::process::ExitCode;

use clap::Parser;

/// A Redis-backed JSON key-value service with CPU-load and worker-pool endpoints.
#[derive(Debug, Parser)]
#[command(name = "demo-service", version)]
struct Cli {
    #[command(flatten)]
    args: tidescale_demo::cli::Args,
}

fn main() -> ExitCode {
    tidescale_demo::cli::main(Cli::parse().args)
}
