//! The command line: one subcommand per variant of [`Command`], each run by a function that
//! writes to the given outputs and returns the process exit code.
//!
//! Exit codes: 0 ok, 1 problems found (an invalid policy or scenario), 2 usage errors (bad
//! arguments, unreadable files).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::replay;
use crate::spec::load_policy_yaml;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The input was read but has problems.
pub const EXIT_PROBLEMS: u8 = 1;
/// The command could not run as asked.
pub const EXIT_USAGE: u8 = 2;

/// tidescale: a Kubernetes autoscaler and custom/external metrics adapter.
#[derive(Debug, Parser)]
#[command(name = "tidescale", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scaling engine over a recorded scenario and print one decision per tick.
    Replay(ReplayArgs),
    /// Validate ScalingPolicy files and print every problem.
    Check(CheckArgs),
}

/// Arguments of `tidescale replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The scenario file (YAML): a policy, the initial replicas and the ticks.
    pub scenario: PathBuf,
    /// Print one JSON object per tick (JSON Lines) instead of text lines.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `tidescale check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files (YAML): `ScalingPolicy` objects or bare specs.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `tidescale replay`: decisions on `out`, problems on `err`.
pub fn replay(args: &ReplayArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let text = match std::fs::read_to_string(&args.scenario) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "error: cannot read {}: {e}", args.scenario.display());
            return EXIT_USAGE;
        }
    };
    let scenario = match replay::parse_scenario(&text) {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "{}: {e}", args.scenario.display());
            return EXIT_PROBLEMS;
        }
    };
    for outcome in replay::run(&scenario) {
        let line = if args.json {
            outcome.json().to_string()
        } else {
            outcome.text()
        };
        if writeln!(out, "{line}").is_err() {
            // A closed pipe (e.g. `| head`) is not an error of the replay.
            return EXIT_OK;
        }
    }
    EXIT_OK
}

/// `tidescale check`: one verdict per file on `out`; exit 1 if any file has problems.
pub fn check(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut code = EXIT_OK;
    for path in &args.files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                let _ = writeln!(err, "error: cannot read {}: {e}", path.display());
                code = EXIT_USAGE;
                continue;
            }
        };
        match load_policy_yaml(&text) {
            Ok((spec, policy)) => {
                let _ = writeln!(
                    out,
                    "{}: ok ({} {}: {} metric{}, replicas [{},{}])",
                    path.display(),
                    spec.target_ref.kind,
                    spec.target_ref.name,
                    policy.metrics.len(),
                    if policy.metrics.len() == 1 { "" } else { "s" },
                    policy.min_replicas,
                    policy.max_replicas
                );
            }
            Err(e) => {
                let _ = writeln!(out, "{}: {e}", path.display());
                if code == EXIT_OK {
                    code = EXIT_PROBLEMS;
                }
            }
        }
    }
    code
}
