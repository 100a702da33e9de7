//! The `tidescale` binary: parses the command line and runs one subcommand.

use std::process::ExitCode;

use clap::Parser;
use tidescale::cli::{Cli, Command};

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let cli = match cli.command {
        // A replica of the demo pool: the demo service's own runtime, logging and exit codes.
        Command::ServeDemo(args) => return tidescale_demo::cli::main(args),
        command => Cli { command },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidescale: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match cli.command {
            Command::Probe(args) => {
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                let mut out = std::io::stdout().lock();
                tidescale::probe::run(&args, &mut out, shutdown).await?;
                Ok(())
            }
            Command::Demo(args) => {
                tidescale::telemetry::init_logging(tidescale::telemetry::LogFormat::Text, "warn");
                let summary = tidescale::local::demo::run(args.into()).await?;
                println!("{summary}");
                Ok(())
            }
            Command::ServeDemo(_) => unreachable!("handled before the runtime starts"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tidescale: {e:#}");
            ExitCode::FAILURE
        }
    }
}
