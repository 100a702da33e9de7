//! `tidescale probe`: read a policy's metrics at its interval and print what the sources see.
//!
//! Nothing is scaled. Each read prints one line per metric: the value or per-pod values with
//! where they came from, or the error. It is how a user checks a metric before trusting a policy
//! with it, and how tests compare our numbers with Prometheus's.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::ProbeArgs;
use crate::clock::{self, Clock};
use crate::metric::{MetricId, Reading, ReadingValue, unix_seconds};
use crate::source::{Aggregate, BuildContext, MetricSource, SourceConfig, SourceError};
use crate::spec::{MetricSpec, ScalingPolicySpec, SpecError, load_policy_yaml, yaml_value};

/// Default evaluation interval of a policy (spec/scaling-policy.md).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Why the probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The policy file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The policy is invalid (every problem listed).
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problems.
        source: SpecError,
    },
    /// `--metric` names no metric of the policy.
    #[error("no metric {name:?} in the policy (it has: {known})")]
    UnknownMetric {
        /// The name asked for.
        name: String,
        /// The policy's metric names.
        known: String,
    },
    /// The HTTP client could not be built (no TLS provider installed).
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// Writing the output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

/// One metric being probed.
struct Probed {
    name: String,
    kind: &'static str,
    /// The window of a scrape rate or quantile: it needs samples over time to be true.
    window: Option<Duration>,
    source: Result<Arc<dyn MetricSource>, SourceError>,
}

/// One line of probe output: a metric's reading or error at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeLine {
    /// Seconds since the Unix epoch.
    pub t: f64,
    /// The metric's name in the policy.
    pub metric: String,
    /// `scrape`, `prometheus`, `resource` or `process`.
    pub source: &'static str,
    /// What the read returned.
    pub reading: Result<Reading, SourceError>,
    /// With `--once`: how long the probe sampled before this read, in seconds.
    pub looked: Option<f64>,
}

/// The sources of a policy, ready to read.
pub struct Probe {
    metrics: Vec<Probed>,
    interval: Duration,
    clock: Clock,
}

/// The metrics to probe: all of the policy's, or the one `--metric` names.
fn select<'a>(
    spec: &'a ScalingPolicySpec,
    want: Option<&str>,
) -> Result<Vec<&'a MetricSpec>, ProbeError> {
    let Some(want) = want else {
        return Ok(spec.metrics.iter().collect());
    };
    let selected: Vec<&MetricSpec> = spec.metrics.iter().filter(|m| m.name == want).collect();
    if selected.is_empty() {
        return Err(ProbeError::UnknownMetric {
            name: want.to_string(),
            known: spec
                .metrics
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(selected)
}

impl Probe {
    /// Loads and validates the policy and builds its sources. A source that cannot be built is
    /// reported on every read, the others still run.
    pub async fn load(args: &ProbeArgs) -> Result<Self, ProbeError> {
        let text = std::fs::read_to_string(&args.policy).map_err(|source| ProbeError::Read {
            path: args.policy.clone(),
            source,
        })?;
        let invalid = |source| ProbeError::Invalid {
            path: args.policy.clone(),
            source,
        };
        let (spec, _policy) = load_policy_yaml(&text).map_err(invalid)?;
        let doc = yaml_value(&text).unwrap_or(Value::Null);
        let namespace = args
            .namespace
            .clone()
            .or_else(|| doc["metadata"]["namespace"].as_str().map(str::to_string))
            .unwrap_or_else(|| "default".into());
        let scope = match doc["metadata"]["name"].as_str() {
            Some(n) => format!("{namespace}/{n}"),
            None => args.policy.display().to_string(),
        };
        let selected = select(&spec, args.metric.as_deref())?;
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| ProbeError::Client(e.to_string()))?;
        let clock = Clock::start();
        let needs_cluster = selected.iter().any(|m| m.resource.is_some());
        let kube = if needs_cluster {
            Some(kube::Client::try_default().await.map_err(|e| e.to_string()))
        } else {
            None
        };
        let mut metrics = Vec::new();
        for m in selected {
            let Some(cfg) = m.source() else {
                continue;
            };
            let mut ctx =
                BuildContext::new(MetricId::new(scope.clone(), m.name.clone()), http.clone());
            ctx.namespace = namespace.clone();
            ctx.selector = args.selector.clone();
            ctx.prometheus_url = args.prometheus_url.clone();
            ctx.clock = clock;
            let source = match (&cfg, &kube) {
                (SourceConfig::Resource(_), Some(Err(e))) => Err(SourceError::NotConfigured {
                    metric: ctx.metric.clone(),
                    why: format!("no Kubernetes cluster to read resource metrics from: {e}"),
                }),
                (_, kube) => {
                    ctx.kube = kube.as_ref().and_then(|k| k.as_ref().ok().cloned());
                    cfg.build(&ctx)
                }
            };
            let window = match &cfg {
                SourceConfig::Scrape(s) => match &s.aggregate {
                    Some(Aggregate::Rate { window } | Aggregate::Quantile { window, .. }) => {
                        Some(window.get())
                    }
                    _ => None,
                },
                _ => None,
            };
            metrics.push(Probed {
                name: m.name.clone(),
                kind: cfg.kind(),
                window,
                source,
            });
        }
        Ok(Self {
            metrics,
            interval: spec.interval.map(|d| d.get()).unwrap_or(DEFAULT_INTERVAL),
            clock,
        })
    }

    /// The policy's evaluation interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Reads every metric concurrently, one line each, in the policy's order.
    pub async fn read_all(&self) -> Vec<ProbeLine> {
        let reads = self.metrics.iter().map(|m| async move {
            let reading = match &m.source {
                Ok(s) => s.read().await,
                Err(e) => Err(e.clone()),
            };
            let t = match &reading {
                Ok(r) => unix_seconds(r.at),
                Err(_) => unix_seconds(self.clock.now().1),
            };
            ProbeLine {
                t,
                metric: m.name.clone(),
                source: m.kind,
                reading,
                looked: None,
            }
        });
        futures::future::join_all(reads).await
    }

    /// Samples the windowed scrape metrics once (a rate needs samples over time); the
    /// results are dropped.
    pub async fn sample(&self) {
        let reads = self
            .metrics
            .iter()
            .filter(|m| m.window.is_some())
            .filter_map(|m| m.source.as_ref().ok());
        futures::future::join_all(reads.map(|s| s.read())).await;
    }

    /// How long `--once` samples before it reads: the longest window of a windowed metric, at
    /// most `cap`, and at least one interval when there is one (none: no wait).
    pub fn look(&self, cap: Duration) -> Duration {
        let longest = self.metrics.iter().filter_map(|m| m.window).max();
        longest.map_or(Duration::ZERO, |w| w.min(cap).max(self.interval))
    }
}

/// A number as the probe prints it: Go/Prometheus style for the special values.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

impl ProbeLine {
    /// The JSON form: `{"t", "metric", "value", "pods", "source", "origin", "failed", "error"}`.
    pub fn to_json(&self) -> Value {
        match &self.reading {
            Ok(r) => {
                let pods = r.pods().map(|p| {
                    p.iter()
                        .map(|(k, v)| (k.clone(), Value::from(format_number(*v))))
                        .collect::<serde_json::Map<_, _>>()
                });
                let mut j = json!({
                    "t": self.t,
                    "metric": self.metric,
                    "value": format_number(r.total()),
                    "pods": pods,
                    "source": self.source,
                    "origin": r.origin,
                    "failed": r.failed,
                    "error": null,
                });
                if let Some(looked) = self.looked {
                    j["looked"] = json!(looked);
                }
                if let Some(req) = &r.requests {
                    j["requests"] = json!(
                        req.iter()
                            .map(|(k, v)| (k.clone(), format_number(*v)))
                            .collect::<BTreeMap<_, _>>()
                    );
                }
                j
            }
            Err(e) => json!({
                "t": self.t,
                "metric": self.metric,
                "value": null,
                "pods": null,
                "source": self.source,
                "error": e.to_string(),
            }),
        }
    }

    /// The text form: `rps = 212.5 [web-1=100, web-2=112.5] (scrape: origin)`.
    pub fn to_text(&self) -> String {
        match &self.reading {
            Ok(r) => {
                let mut s = format!("{} = {}", self.metric, format_number(r.total()));
                if let ReadingValue::PerPod { pods, .. } = &r.value {
                    let list: Vec<String> = pods
                        .iter()
                        .map(|(k, v)| format!("{k}={}", format_number(*v)))
                        .collect();
                    s += &format!(" [{}]", list.join(", "));
                }
                s += &format!(" ({}: {})", self.source, r.origin);
                if let Some(looked) = self.looked {
                    s += &format!(" [sampled for {looked:.1} s]");
                }
                for (pod, why) in &r.failed {
                    s += &format!("\n  {pod} failed: {why}");
                }
                s
            }
            Err(e) => format!("{} error ({}): {e}", self.metric, self.source),
        }
    }
}

/// Longest `--once` samples by default: a true rate needs samples over its window, but a
/// one-off check should not wait for a five-minute window.
pub const ONCE_LOOK_CAP: Duration = Duration::from_secs(60);

/// Runs the probe: reads at the policy's interval until `--reads`, `--once` or `shutdown`.
pub async fn run(
    args: &ProbeArgs,
    out: &mut impl Write,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ProbeError> {
    let probe = Probe::load(args).await?;
    tokio::pin!(shutdown);
    if args.once {
        let look = args
            .look
            .map_or_else(|| probe.look(ONCE_LOOK_CAP), |d| d.get());
        let Some(lines) = read_once(&probe, look, &mut shutdown).await else {
            return Ok(());
        };
        return print(&lines, args.json, out);
    }
    let mut ticker = tokio::time::interval(probe.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done = 0u64;
    while args.reads.is_none_or(|n| done < n) {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut shutdown => break,
        }
        print(&probe.read_all().await, args.json, out)?;
        done += 1;
    }
    Ok(())
}

/// `--once`: samples the windowed metrics every interval for `look`, then reads every metric
/// and says how long it sampled; `None` when `shutdown` came first.
async fn read_once(
    probe: &Probe,
    look: Duration,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<Vec<ProbeLine>> {
    let started = clock::now();
    if !look.is_zero() {
        probe.sample().await;
        let mut ticker = tokio::time::interval_at(started + probe.interval(), probe.interval());
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.as_mut() => return None,
            }
            if clock::since(started) >= look {
                break;
            }
            probe.sample().await;
        }
    }
    let looked = clock::since(started).as_secs_f64();
    let mut lines = probe.read_all().await;
    for line in &mut lines {
        line.looked = Some(looked);
    }
    Some(lines)
}

fn print(lines: &[ProbeLine], json: bool, out: &mut impl Write) -> Result<(), ProbeError> {
    for line in lines {
        if json {
            writeln!(out, "{}", line.to_json())?;
        } else {
            writeln!(out, "{}", line.to_text())?;
        }
    }
    out.flush()?;
    Ok(())
}
