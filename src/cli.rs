//! The command line: one subcommand per thing tidescale does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// tidescale: a Kubernetes autoscaler and custom/external metrics adapter.
#[derive(Debug, Parser)]
#[command(name = "tidescale", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read every metric of a policy at its interval and print each reading, without scaling.
    Probe(ProbeArgs),
    /// Serve custom.metrics.k8s.io and external.metrics.k8s.io for the native HPA.
    Adapter(crate::adapter::run::AdapterArgs),
}

/// Arguments of `tidescale probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// The ScalingPolicy file (a whole object or a bare spec).
    pub policy: PathBuf,
    /// Read only this metric.
    #[arg(long)]
    pub metric: Option<String>,
    /// Read once and exit (windowed scrape metrics are read twice, one interval apart).
    #[arg(long)]
    pub once: bool,
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
