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
    /// Read every metric of a policy at its interval and print each reading, without scaling.
    Probe(ProbeArgs),
    /// Scale a local pool of demo-service processes while the load generator drives traffic,
    /// show it live, and draw what happened.
    Demo(DemoArgs),
    /// Run the demo microservice (what each replica of `tidescale demo` runs).
    ServeDemo(tidescale_demo::cli::Args),
    /// Serve custom.metrics.k8s.io and external.metrics.k8s.io for the native HPA.
    Adapter(crate::adapter::run::AdapterArgs),
    /// Run the scaler in a cluster: watch ScalingPolicy objects and scale their targets
    /// (leader-elected; optionally also serving the metrics adapter).
    Run(Box<crate::run::RunArgs>),
    /// Print the ScalingPolicy CustomResourceDefinition (YAML), as deploy/crds/ ships it.
    Crd,
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

/// Arguments of `tidescale demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The traffic shape.
    #[arg(long, value_enum, default_value_t = crate::local::demo::Profile::Spike)]
    pub profile: crate::local::demo::Profile,
    /// The `seconds,rps` CSV for `--profile trace`.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Length of each run (default: 90s, or 15m for the diurnal profile).
    #[arg(long)]
    pub duration: Option<crate::metric::DurationSpec>,
    /// Requests per second outside bursts.
    #[arg(long, default_value_t = crate::local::demo::BASE_RPS)]
    pub base_rps: f64,
    /// Requests per second at the top of bursts.
    #[arg(long, default_value_t = crate::local::demo::PEAK_RPS)]
    pub peak_rps: f64,
    /// A ScalingPolicy file with `targetRef: {kind: ProcessPool}` (default: the embedded one).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// How the local balancer spreads requests.
    #[arg(long, value_enum, default_value_t = crate::local::balancer::Strategy::LeastConnections)]
    pub lb: crate::local::balancer::Strategy,
    /// Redis for the replicas; default: a private redis-server if one is on PATH, else memory.
    #[arg(long)]
    pub redis: Option<String>,
    /// Where the report is written.
    #[arg(long, default_value = "demo-report")]
    pub report: PathBuf,
    /// Replay the same traffic under one or more baselines and compare (comma-separated):
    /// hpa-defaults, hpa-same-behavior, tidescale-defaults, short-window.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub compare: Vec<crate::local::demo::Compare>,
    /// How often the HPA baselines' metrics pipeline publishes readings (metrics-server: 15s).
    #[arg(long, default_value = "15s")]
    pub pipeline_resolution: crate::metric::DurationSpec,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The p95 latency objective reported on, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub slo_ms: u64,
    /// No live view (the decisions are still logged and reported).
    #[arg(long)]
    pub quiet: bool,
}

/// Arguments of `tidescale probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// The ScalingPolicy file (a whole object or a bare spec).
    pub policy: PathBuf,
    /// Read only this metric.
    #[arg(long)]
    pub metric: Option<String>,
    /// Read once and exit. Windowed scrape metrics (rates, quantiles) are sampled every
    /// interval for `--look` first, so the figure is true; the output says how long.
    #[arg(long)]
    pub once: bool,
    /// With `--once`: how long to sample windowed metrics (default: their longest window, at
    /// most 60 s).
    #[arg(long, requires = "once")]
    pub look: Option<crate::metric::DurationSpec>,
    /// Print one JSON object per metric per read.
    #[arg(long)]
    pub json: bool,
    /// Stop after this many reads (default: until interrupted).
    #[arg(long)]
    pub reads: Option<u64>,
    /// Prometheus server for `prometheus` metrics that name no `url`.
    #[arg(long, env = "TIDESCALE_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Namespace for `{{ namespace }}` and the resource metrics API; default: the policy's.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The target's pod selector (`app=web`), for `{{ selector }}` and the resource metrics API.
    #[arg(long)]
    pub selector: Option<String>,
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

impl From<DemoArgs> for crate::local::demo::DemoConfig {
    fn from(a: DemoArgs) -> Self {
        Self {
            profile: a.profile,
            trace: a.trace,
            duration: a
                .duration
                .map_or_else(|| a.profile.default_duration(), |d| d.0),
            base_rps: a.base_rps,
            peak_rps: a.peak_rps,
            policy: a.policy,
            strategy: a.lb,
            redis: a.redis,
            report: a.report,
            compare: a.compare,
            pipeline_resolution: a.pipeline_resolution.0,
            seed: a.seed,
            slo: std::time::Duration::from_millis(a.slo_ms),
            live: !a.quiet,
            program: None,
        }
    }
}

/// Resolves on SIGINT or SIGTERM: how a terminal or a kubelet asks a long-running command to
/// stop. Each server receives this future from `main`; none installs handlers of its own.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn first(stream: Option<Signal>) {
        match stream {
            Some(mut s) => {
                s.recv().await;
            }
            // A signal that cannot be watched never arrives; the other one still stops us.
            None => std::future::pending::<()>().await,
        }
    }
    let interrupt = first(signal(SignalKind::interrupt()).ok());
    let terminate = first(signal(SignalKind::terminate()).ok());
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
