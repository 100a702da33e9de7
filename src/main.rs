//! The `tidescale` binary: parses the command line and runs one subcommand.

use std::process::ExitCode;

use clap::Parser;
use tidescale::cli::{Cli, Command};

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
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
            Command::Adapter(args) => {
                tracing_subscriber::fmt()
                    .with_env_filter(
                        tracing_subscriber::EnvFilter::try_from_default_env()
                            .unwrap_or_else(|_| "info".into()),
                    )
                    .with_writer(std::io::stderr)
                    .init();
                let shutdown = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                tidescale::adapter::run::run(&args, shutdown).await?;
                Ok(())
            }
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
