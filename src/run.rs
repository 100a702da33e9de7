//! `tidescale run`: the standalone scaler in a cluster — leader election, the policy
//! controller, its own `/metrics`, `/healthz` and `/readyz`, and optionally the adapter in the
//! same process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use tokio::sync::watch;

use crate::adapter::run::{AdapterArgs, AdapterSecurity};
use crate::control::kube_status::KubeStatusSink;
use crate::control::leader::{Elector, LeaseConfig};
use crate::control::runner::stopped;
use crate::control::{Controller, ControllerConfig};
use crate::metric::DurationSpec;
use crate::telemetry::{LogFormat, Telemetry};

/// Arguments of `tidescale run`. Every option may also come from `--config`; a flag wins.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// A YAML file with any of the options below, in camelCase (`leaseDuration: 15s`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Kubeconfig; default: in-cluster config, then `$KUBECONFIG`/`~/.kube/config`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only these namespaces (repeatable); default: all.
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
    /// Run only policies matching this label selector.
    #[arg(long)]
    pub selector: Option<String>,
    /// Take part in leader election (default true); false: run every policy here.
    #[arg(long)]
    pub leader_elect: Option<bool>,
    /// The Lease's name (default `tidescale`; `-shard-I` is appended with --shards > 1).
    #[arg(long)]
    pub lease_name: Option<String>,
    /// The Lease's namespace (default `$POD_NAMESPACE`, else `default`).
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// This process's identity in the Lease (default `$POD_NAME`, else the host name).
    #[arg(long)]
    pub identity: Option<String>,
    /// How long a lease lasts without renewal (default 15s).
    #[arg(long)]
    pub lease_duration: Option<DurationSpec>,
    /// A leader that could not renew for this long stops its loops (default 10s).
    #[arg(long)]
    pub renew_deadline: Option<DurationSpec>,
    /// How often to try to acquire or renew (default 2s).
    #[arg(long)]
    pub retry_period: Option<DurationSpec>,
    /// Split policies over this many shards, one Lease each (default 1).
    #[arg(long)]
    pub shards: Option<u32>,
    /// The shard this process runs, `0..shards` (default 0).
    #[arg(long)]
    pub shard_index: Option<u32>,
    /// Where `/metrics`, `/healthz` and `/readyz` are served (default 0.0.0.0:8080).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Log format (default json).
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// The default Prometheus URL for `prometheus` metrics without one.
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// How often metric values alone are written to a policy's status (default 30s).
    #[arg(long)]
    pub status_refresh: Option<DurationSpec>,
    /// Also serve the metrics adapter, with this adapter config file.
    #[arg(long)]
    pub adapter_config: Option<PathBuf>,
    /// Where the adapter serves HTTPS (with --adapter-config).
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub adapter_listen: SocketAddr,
    /// The adapter's TLS, authentication and authorization (with --adapter-config), as
    /// `tidescale adapter` takes them.
    #[command(flatten)]
    pub adapter: AdapterSecurity,
}

/// The options of `--config`, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RunFile {
    kubeconfig: Option<PathBuf>,
    #[serde(default)]
    namespaces: Vec<String>,
    selector: Option<String>,
    leader_elect: Option<bool>,
    lease_name: Option<String>,
    lease_namespace: Option<String>,
    identity: Option<String>,
    lease_duration: Option<DurationSpec>,
    renew_deadline: Option<DurationSpec>,
    retry_period: Option<DurationSpec>,
    shards: Option<u32>,
    shard_index: Option<u32>,
    metrics_listen: Option<SocketAddr>,
    log_format: Option<String>,
    prometheus_url: Option<String>,
    status_refresh: Option<DurationSpec>,
}

/// `tidescale run`'s settings after merging the file and the flags and applying defaults.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Kubeconfig, if not in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The controller's options.
    pub controller: ControllerConfig,
    /// The election, or `None` when off.
    pub lease: Option<LeaseConfig>,
    /// Where `/metrics` is served.
    pub metrics_listen: SocketAddr,
    /// The log format.
    pub log_format: LogFormat,
}

/// Why `run` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The settings have problems, all listed.
    #[error("invalid settings:\n  {}", .0.join("\n  "))]
    Settings(Vec<String>),
    /// No usable cluster configuration.
    #[error("kubernetes client: {0}")]
    Kube(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The in-process adapter failed.
    #[error("adapter: {0}")]
    Adapter(String),
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "tidescale".into())
}

// Long: one table of options, each merged the same way (flag, then file, then default).
/// Merges `--config` (if any) under the flags and checks the result; every problem at once.
pub fn settings(args: &RunArgs) -> Result<RunSettings, RunError> {
    let file: RunFile = match &args.config {
        None => RunFile::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| RunError::Settings(vec![format!("{}: {e}", path.display())]))?;
            serde_saphyr::from_str(&text)
                .map_err(|e| RunError::Settings(vec![format!("{}: {e}", path.display())]))?
        }
    };
    let mut problems = Vec::new();
    let d = |flag: Option<DurationSpec>, file: Option<DurationSpec>, default: u64| {
        flag.or(file)
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(default))
    };
    let lease_duration = d(args.lease_duration, file.lease_duration, 15);
    let renew_deadline = d(args.renew_deadline, file.renew_deadline, 10);
    let retry_period = d(args.retry_period, file.retry_period, 2);
    if renew_deadline >= lease_duration {
        problems.push(format!("renewDeadline ({renew_deadline:?}) must be shorter than leaseDuration ({lease_duration:?})"));
    }
    if retry_period >= renew_deadline {
        problems.push(format!(
            "retryPeriod ({retry_period:?}) must be shorter than renewDeadline ({renew_deadline:?})"
        ));
    }
    let shards = args.shards.or(file.shards).unwrap_or(1);
    let shard_index = args.shard_index.or(file.shard_index).unwrap_or(0);
    if shards == 0 {
        problems.push("shards must be at least 1".into());
    } else if shard_index >= shards {
        problems.push(format!(
            "shardIndex {shard_index} must be below shards ({shards})"
        ));
    }
    let log_format = match (args.log_format, file.log_format.as_deref()) {
        (Some(f), _) => f,
        (None, None | Some("json")) => LogFormat::Json,
        (None, Some("text")) => LogFormat::Text,
        (None, Some(other)) => {
            problems.push(format!("logFormat: expected json or text, got {other:?}"));
            LogFormat::Json
        }
    };
    if !problems.is_empty() {
        return Err(RunError::Settings(problems));
    }
    let base = args
        .lease_name
        .clone()
        .or(file.lease_name)
        .unwrap_or_else(|| "tidescale".into());
    let lease = args
        .leader_elect
        .or(file.leader_elect)
        .unwrap_or(true)
        .then(|| LeaseConfig {
            name: if shards > 1 {
                format!("{base}-shard-{shard_index}")
            } else {
                base
            },
            namespace: args
                .lease_namespace
                .clone()
                .or(file.lease_namespace)
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .unwrap_or_else(|| "default".into()),
            identity: args
                .identity
                .clone()
                .or(file.identity)
                .or_else(|| std::env::var("POD_NAME").ok())
                .unwrap_or_else(host_name),
            lease_duration,
            renew_deadline,
            retry_period,
        });
    let namespaces = if args.namespaces.is_empty() {
        file.namespaces
    } else {
        args.namespaces.clone()
    };
    Ok(RunSettings {
        kubeconfig: args.kubeconfig.clone().or(file.kubeconfig),
        controller: ControllerConfig {
            namespaces,
            selector: args.selector.clone().or(file.selector),
            shards,
            shard_index,
            prometheus_url: args.prometheus_url.clone().or(file.prometheus_url),
            status_refresh: d(args.status_refresh, file.status_refresh, 30),
            ..ControllerConfig::default()
        },
        lease,
        metrics_listen: args
            .metrics_listen
            .or(file.metrics_listen)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 8080))),
        log_format,
    })
}

/// The adapter's arguments when `run` also serves it.
fn adapter_args(args: &RunArgs, kubeconfig: Option<PathBuf>) -> Option<AdapterArgs> {
    Some(AdapterArgs {
        config: args.adapter_config.clone()?,
        listen: args.adapter_listen,
        kubeconfig,
        insecure_dev_mode: false,
        security: args.adapter.clone(),
    })
}

/// A client from `kubeconfig`, or inferred (in-cluster first).
pub async fn kube_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, RunError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| RunError::Kube(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RunError::Kube(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| RunError::Kube(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| RunError::Kube(e.to_string()))
}

/// Runs until `shutdown`: serves health and metrics, campaigns for the lease, and runs the
/// controller while leading. On shutdown the loops stop first, then the lease is released.
pub async fn run(
    args: &RunArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let s = settings(args)?;
    crate::telemetry::init_logging(s.log_format, "info");
    let client = kube_client(s.kubeconfig.as_deref()).await?;
    let telemetry = Arc::new(Telemetry::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let listener = tokio::net::TcpListener::bind(s.metrics_listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: s.metrics_listen,
            source,
        })?;
    let (ready_tx, ready_rx) = watch::channel(false);
    let server = tokio::spawn(health::serve(
        listener,
        telemetry.clone(),
        ready_rx,
        stopped(stop_rx.clone()),
    ));
    let adapter = adapter_args(args, s.kubeconfig.clone()).map(|a| {
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            crate::adapter::run::run(&a, stop)
                .await
                .map_err(|e| e.to_string())
        })
    });
    let (leading_tx, leading_rx) = watch::channel(s.lease.is_none());
    let (release_tx, release_rx) = watch::channel(false);
    // Without an election this process always leads: the sender is kept open until the end.
    let mut always_leading = None;
    let elector = match s.lease.clone() {
        Some(lease) => Some(tokio::spawn(
            Elector::new(client.clone(), lease).run(leading_tx, stopped(release_rx)),
        )),
        None => {
            always_leading = Some(leading_tx);
            None
        }
    };
    let _ = ready_tx.send(true);
    lead(&s, client, telemetry, leading_rx, stop_rx).await;
    let _ = release_tx.send(true);
    drop(always_leading);
    if let Some(e) = elector {
        let _ = e.await;
    }
    let _ = server.await;
    match adapter {
        Some(a) => a
            .await
            .map_err(|e| RunError::Adapter(e.to_string()))?
            .map_err(RunError::Adapter),
        None => Ok(()),
    }
}

/// Runs the controller whenever `leading` is true, stopping it when it turns false, until
/// `stop`.
async fn lead(
    s: &RunSettings,
    client: kube::Client,
    telemetry: Arc<Telemetry>,
    mut leading: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
) {
    let lease = s
        .lease
        .as_ref()
        .map_or("none".to_string(), |l| l.name.clone());
    let identity = s.lease.as_ref().map(|l| l.identity.clone());
    loop {
        telemetry.set_leader(&lease, *leading.borrow());
        tokio::select! {
            () = stopped(stop.clone()) => return,
            r = leading.wait_for(|l| *l) => if r.is_err() { return },
        }
        telemetry.set_leader(&lease, true);
        let sink = Arc::new(KubeStatusSink::new(client.clone(), identity.clone()));
        let controller = Controller::new(
            client.clone(),
            s.controller.clone(),
            sink,
            telemetry.clone(),
        );
        let mut follow = leading.clone();
        let until = {
            let stop = stop.clone();
            async move {
                let lost = async {
                    // A closed channel (no election) never takes the lead away.
                    if follow.wait_for(|l| !*l).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = stopped(stop) => {}
                    () = lost => {}
                }
            }
        };
        controller.run(until).await;
        telemetry.set_leader(&lease, false);
        if *stop.borrow() {
            return;
        }
    }
}

mod health;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn args(argv: &[&str]) -> RunArgs {
        Cli::parse_from(std::iter::once("run").chain(argv.iter().copied())).run
    }

    #[test]
    fn the_file_fills_in_and_a_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.yaml");
        std::fs::write(
            &file,
            "namespaces: [shop, ops]\nleaseName: scaler\nleaseNamespace: ops\nshards: 3\nshardIndex: 2\nleaseDuration: 20s\nlogFormat: text\nprometheusUrl: http://prom:9090\n",
        )
        .unwrap();
        let s = settings(&args(&[
            "--config",
            file.to_str().unwrap(),
            "--identity",
            "pod-a",
            "--lease-duration",
            "30s",
        ]))
        .unwrap();
        assert_eq!(s.controller.namespaces, ["shop", "ops"]);
        assert_eq!((s.controller.shards, s.controller.shard_index), (3, 2));
        assert_eq!(
            s.controller.prometheus_url.as_deref(),
            Some("http://prom:9090")
        );
        assert_eq!(s.log_format, LogFormat::Text);
        let lease = s.lease.unwrap();
        assert_eq!(
            (
                lease.name.as_str(),
                lease.namespace.as_str(),
                lease.identity.as_str()
            ),
            ("scaler-shard-2", "ops", "pod-a")
        );
        assert_eq!(
            lease.lease_duration,
            Duration::from_secs(30),
            "the flag wins over the file"
        );
        assert_eq!(s.metrics_listen, "0.0.0.0:8080".parse().unwrap());
    }

    #[test]
    fn every_bad_setting_is_reported_at_once() {
        let err = settings(&args(&[
            "--renew-deadline",
            "20s",
            "--retry-period",
            "30s",
            "--shards",
            "2",
            "--shard-index",
            "2",
        ]))
        .unwrap_err();
        let text = err.to_string();
        for want in [
            "renewDeadline",
            "retryPeriod",
            "shardIndex 2 must be below shards (2)",
        ] {
            assert!(text.contains(want), "{want} missing from: {text}");
        }
        let no_election = settings(&args(&["--leader-elect", "false"])).unwrap();
        assert!(no_election.lease.is_none());
    }
}
