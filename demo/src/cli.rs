//! The demo service's command line, shared by `demo-service` and `tidescale serve-demo`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use crate::{AppState, DEFAULT_TTL, Drained, ShutdownOptions, Store};

/// A Redis-backed JSON key-value service with CPU-load and worker-pool endpoints.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port. The first line on stdout is the bound URL.
    #[arg(long, default_value = "127.0.0.1:8080", env = "LISTEN")]
    pub listen: SocketAddr,
    /// Redis URL (e.g. redis://127.0.0.1:6379); without it, values live in this process.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Time to live of stored values, in seconds.
    #[arg(long, default_value_t = DEFAULT_TTL.as_secs())]
    pub ttl: u64,
    /// Worker slots for /work requests.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub workers: u32,
    /// Requests that may wait for a slot before /work answers 503.
    #[arg(long, default_value_t = 128)]
    pub queue: u32,
    /// After SIGTERM, keep accepting (readiness failing) this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub drain_delay_ms: u64,
    /// Then wait at most this many seconds for in-flight requests.
    #[arg(long, default_value_t = 10.0)]
    pub shutdown_grace: f64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How logs are written on stderr.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the service with `args` until SIGTERM or SIGINT; the exit code says how it drained.
pub fn main(args: Args) -> ExitCode {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(Drained::Clean) => ExitCode::SUCCESS,
        Ok(Drained::GraceExpired) => {
            tracing::warn!("shutdown grace expired with requests still in flight");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("demo-service: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<Drained> {
    if !(args.shutdown_grace.is_finite() && args.shutdown_grace >= 0.0) {
        anyhow::bail!("--shutdown-grace must be a non-negative number of seconds");
    }
    let store = match &args.redis_url {
        Some(url) => Store::redis(url)?,
        None => Store::memory(),
    };
    let state = AppState::new(
        store,
        Duration::from_secs(args.ttl.max(1)),
        args.workers as usize,
        args.queue as usize,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // The first line of stdout is the contract with a parent process that asked for port 0.
    println!("http://{addr}");
    tracing::info!(%addr, store = state.store.kind(), workers = args.workers, "demo-service listening");
    let options = ShutdownOptions {
        drain_delay: Duration::from_millis(args.drain_delay_ms),
        grace: Duration::from_secs_f64(args.shutdown_grace),
    };
    let drained = crate::run(listener, state, shutdown_signal(), options).await?;
    tracing::info!(?drained, "demo-service stopped");
    Ok(drained)
}

/// Resolves on SIGINT or SIGTERM (what a pod receives when it is stopped).
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let _ = builder.try_init();
        }
        LogFormat::Json => {
            let _ = builder.json().try_init();
        }
    }
}
