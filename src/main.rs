//! The `tidescale` binary: parses the command line and runs one subcommand.

use std::process::ExitCode;

use clap::Parser;
use tidescale::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // clap prints usage errors itself and exits with 2.
    let cli = Cli::parse();
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let command = match cli.command {
        Command::Replay(args) => return ExitCode::from(cli::replay(&args, &mut out, &mut err)),
        Command::Check(args) => return ExitCode::from(cli::check(&args, &mut out, &mut err)),
        Command::Crd => {
            use std::io::Write;
            return match out.write_all(tidescale::spec::crd_yaml().as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            };
        }
        // A replica of the demo pool: the demo service's own runtime, logging and exit codes.
        Command::ServeDemo(args) => return tidescale_demo::cli::main(args),
        command => command,
    };
    drop((out, err));
    if matches!(command, Command::Adapter(_)) {
        // Before the runtime's threads exist, so that none gets an arena of its own.
        tidescale::adapter::memory::single_arena();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tidescale: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match command {
            Command::Probe(args) => {
                let mut out = std::io::stdout().lock();
                tidescale::probe::run(&args, &mut out, cli::shutdown_signal()).await?;
                Ok(())
            }
            Command::Adapter(args) => {
                tidescale::telemetry::init_logging(tidescale::telemetry::LogFormat::Text, "info");
                tidescale::adapter::run::run(&args, cli::shutdown_signal()).await?;
                Ok(())
            }
            Command::Run(args) => {
                tidescale::run::run(&args, cli::shutdown_signal()).await?;
                Ok(())
            }
            Command::Demo(args) => {
                tidescale::telemetry::init_logging(tidescale::telemetry::LogFormat::Text, "warn");
                let summary = tidescale::local::demo::run(args.into()).await?;
                println!("{summary}");
                Ok(())
            }
            Command::Replay(_) | Command::Check(_) | Command::Crd | Command::ServeDemo(_) => {
                unreachable!("handled before the runtime starts")
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
