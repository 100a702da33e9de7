//! `loadgen`: the command line over the load generator library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tidescale_loadgen::schedule::Segment;
use tidescale_loadgen::{HumanDuration, Load, Mix, RunConfig, Runner, Schedule};

/// Open-loop HTTP load generator: shaped schedules, latency from the intended send time.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    /// Base URL of the target (http only); request paths are appended to it.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Constant rate in requests per second, or `max` for a closed loop at full speed.
    #[arg(long, conflicts_with_all = ["schedule", "shape"], allow_negative_numbers = true)]
    rate: Option<String>,
    /// YAML schedule file (`segments: [ {constant: {rps: 100, duration: 10s}}, ... ]`).
    #[arg(long, conflicts_with = "shape")]
    schedule: Option<PathBuf>,
    /// A shape such as `spike:base=100,peak=1000,at=10s,length=5s`; repeat to play in sequence.
    #[arg(long)]
    shape: Vec<String>,
    /// Length of the run (and of any shape without `duration=`).
    #[arg(long, default_value = "10s")]
    duration: HumanDuration,
    /// In-flight cap for scheduled load (more is dropped and counted); workers for `--rate max`.
    #[arg(long, short = 'c', default_value_t = 1000)]
    concurrency: usize,
    /// Per-request timeout.
    #[arg(long, default_value = "5s")]
    timeout: HumanDuration,
    /// Request mix entry `WEIGHT:SPEC` (root, get-kv, put-kv[=BYTES], load=MS, 'METHOD /path');
    /// repeatable. Default: `1:root` (GET /).
    #[arg(long)]
    mix: Vec<String>,
    /// Number of distinct keys for `{key}` and the kv requests.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many requests.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// Write summary.json, timeline.csv, timeline.png and timeline.svg into this directory.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Print the final summary as one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Allow a target that is not a loopback address.
    #[arg(long)]
    allow_remote: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // One line: clap's own message without the usage block.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first}");
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let config = match build_config(&cli) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let runner = match Runner::new(config) {
        Ok(runner) => runner,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(runner, &cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Turns flags into a run configuration; all flag problems are reported together.
fn build_config(cli: &Cli) -> Result<RunConfig, String> {
    let mut problems = Vec::new();
    let load = match (&cli.rate, &cli.schedule, cli.shape.is_empty()) {
        (Some(rate), _, _) if rate == "max" => Some(Load::Max {
            duration: cli.duration,
        }),
        (Some(rate), _, _) => match rate.parse::<f64>() {
            Ok(rps) if rps.is_finite() && rps > 0.0 => {
                Some(Load::Schedule(Schedule::constant(rps, cli.duration)))
            }
            _ => {
                problems.push(format!(
                    "--rate {rate:?} must be a positive number of requests per second or `max`"
                ));
                None
            }
        },
        (None, Some(path), _) => match Schedule::from_yaml_file(path) {
            Ok(s) => Some(Load::Schedule(s)),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        },
        (None, None, false) => {
            let mut segments = Vec::new();
            for text in &cli.shape {
                match Segment::parse_shape(text, cli.duration) {
                    Ok(segment) => segments.push(segment),
                    Err(e) => problems.push(e.to_string()),
                }
            }
            let mut schedule = Schedule { segments };
            if let Err(e) = schedule.load_traces(std::path::Path::new(".")) {
                problems.push(e.to_string());
            }
            Some(Load::Schedule(schedule))
        }
        (None, None, true) => {
            problems
                .push("give a load: --rate N, --rate max, --schedule FILE or --shape SPEC".into());
            None
        }
    };
    let mut mix = Mix {
        entries: Vec::new(),
        keys: cli.keys,
    };
    for text in &cli.mix {
        match Mix::parse_entry(text) {
            Ok(entry) => mix.entries.push(entry),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if cli.mix.is_empty() {
        mix.entries = Mix::default().entries;
    }
    let config = load.map(|load| RunConfig {
        url: cli.url.clone(),
        load,
        mix,
        concurrency: cli.concurrency,
        timeout: cli.timeout,
        max_requests: cli.max_requests,
        seed: cli.seed,
        allow_remote: cli.allow_remote,
    });
    // Validation problems join the flag problems, so everything is reported at once.
    if let Some(Err(e)) = config.as_ref().map(RunConfig::validate) {
        problems.extend(e.0);
    }
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(problems.join("; ")),
    }
}

async fn execute(runner: Runner, cli: &Cli) -> anyhow::Result<()> {
    let mut live = runner.live();
    let planned = live.borrow().planned_secs;
    let bar = if cli.json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new((planned * 10.0).ceil() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let progress_bar = bar.clone();
    let progress = tokio::spawn(async move {
        while live.changed().await.is_ok() {
            let stats = live.borrow_and_update().clone();
            progress_bar.set_position((stats.elapsed_secs * 10.0) as u64);
            if let Some(s) = &stats.last_second {
                progress_bar.set_message(format!(
                    "offered {}/s achieved {}/s p99 {:.1} ms errors {} in-flight {}",
                    s.offered,
                    s.achieved,
                    s.p99_ms,
                    stats.totals.errors.total(),
                    stats.in_flight
                ));
            }
        }
    });
    let shutdown = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // Without a signal handler the run still ends by its own bounds.
            std::future::pending::<()>().await;
        }
    };
    let report = runner.run(shutdown).await;
    progress.abort();
    bar.finish_and_clear();
    if cli.json {
        println!("{}", serde_json::to_string(&report.summary)?);
    } else {
        print!("{}", report.table());
    }
    if let Some(dir) = &cli.report {
        let written = report.write_dir(dir)?;
        if !cli.json {
            for path in written {
                println!("wrote {}", path.display());
            }
        }
    }
    // Give the progress task a moment to stop drawing before the process exits.
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}
