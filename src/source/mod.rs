//! Metric sources: where readings come from (scrape, Prometheus, resource metrics, /proc).
//!
//! A [`MetricSource`] takes one reading of one configured metric. Sources are built once from a
//! [`SourceConfig`] (the user's words) and a [`BuildContext`] (the live handles), then read on
//! every tick. A failure names the metric and the endpoint or query it concerns, and never
//! affects any other metric; inside a per-pod source one pod's failure never hides the others.

pub mod config;
pub mod exposition;
pub mod fake;
pub mod process;
pub mod prometheus;
pub mod resource;
pub mod scrape;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::metric::{MetricId, Reading};

pub use config::{
    Aggregate, ProcessConfig, PrometheusConfig, Reduce, ResourceConfig, ResourceName, ScrapeConfig,
};

/// Takes one reading of one configured metric. Knows nothing of replicas.
pub trait MetricSource: Send + Sync {
    /// The metric this source reads.
    fn id(&self) -> &MetricId;

    /// Where readings come from, for people (`scrape`, `prometheus`, `resource`, `process`).
    fn kind(&self) -> &'static str;

    /// Takes one reading now. Boxed so sources can live behind `Arc<dyn MetricSource>`.
    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>>;
}

/// Why a read failed, naming the metric and the endpoint, query or API path concerned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// Nothing answered at the address (down, refused, DNS).
    #[error("{metric}: {endpoint} unreachable: {why}")]
    Unreachable {
        /// The metric.
        metric: MetricId,
        /// The URL tried.
        endpoint: String,
        /// The transport's message.
        why: String,
    },
    /// No complete answer within the timeout.
    #[error("{metric}: {endpoint} timed out after {after:?}")]
    Timeout {
        /// The metric.
        metric: MetricId,
        /// The URL or query tried.
        endpoint: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// An HTTP status other than 200.
    #[error("{metric}: {endpoint} answered HTTP {status}")]
    HttpStatus {
        /// The metric.
        metric: MetricId,
        /// The URL tried.
        endpoint: String,
        /// The status code.
        status: u16,
    },
    /// The answer could not be read (malformed, truncated, too large, wrong shape).
    #[error("{metric}: bad payload from {endpoint}: {why}")]
    BadPayload {
        /// The metric.
        metric: MetricId,
        /// The URL, query or path that answered.
        endpoint: String,
        /// What was wrong.
        why: String,
    },
    /// The answer was well-formed but held nothing usable.
    #[error("{metric}: no data from {endpoint}: {why}")]
    NoData {
        /// The metric.
        metric: MetricId,
        /// The URL, query or path that answered.
        endpoint: String,
        /// Why there is nothing (no matching series, empty vector, too few samples yet).
        why: String,
    },
    /// Prometheus refused the query.
    #[error("{metric}: query {query:?} failed: {error_type}: {message}")]
    Query {
        /// The metric.
        metric: MetricId,
        /// The rendered query.
        query: String,
        /// Prometheus's `errorType` (`bad_data`, `execution`, `timeout`, …).
        error_type: String,
        /// Prometheus's `error`.
        message: String,
    },
    /// The Kubernetes API refused or failed a request.
    #[error("{metric}: {path}: {why}")]
    Kube {
        /// The metric.
        metric: MetricId,
        /// The API path.
        path: String,
        /// The client's message.
        why: String,
    },
    /// A local process could not be read.
    #[error("{metric}: process {pid}: {why}")]
    Process {
        /// The metric.
        metric: MetricId,
        /// The process id.
        pid: u32,
        /// What failed.
        why: String,
    },
    /// Every endpoint of a per-pod source failed; each failure is listed.
    #[error("{metric}: every endpoint failed: {}", list(.failures))]
    AllFailed {
        /// The metric.
        metric: MetricId,
        /// One error per endpoint.
        failures: Vec<SourceError>,
    },
    /// The source cannot be built from this configuration in this context.
    #[error("{metric}: cannot build source: {why}")]
    NotConfigured {
        /// The metric.
        metric: MetricId,
        /// What is missing or wrong.
        why: String,
    },
}

fn list(errors: &[SourceError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A pod (or pool member) whose own metrics endpoint a scrape source reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodAddress {
    /// The pod's name (the key of per-pod values).
    pub name: String,
    /// IP address or host name.
    pub host: String,
    /// The target's first container port, used when the scrape block names none.
    pub port: Option<u16>,
}

/// A local process a `process` source reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalProcess {
    /// The pool member's name (the key of per-pod values).
    pub name: String,
    /// Its process id.
    pub pid: u32,
}

/// The live handles sources are built with.
#[derive(Clone)]
pub struct BuildContext {
    /// The metric being built.
    pub metric: MetricId,
    /// The policy's namespace (`{{ namespace }}`, the resource metrics API's namespace).
    pub namespace: String,
    /// The target's pod selector (`app=web,tier=front`), for `{{ selector }}` and the API.
    pub selector: Option<String>,
    /// Shared HTTP client (scrape, Prometheus).
    pub http: reqwest::Client,
    /// A Kubernetes client, when running in (or against) a cluster.
    pub kube: Option<kube::Client>,
    /// The default Prometheus server URL from tidescale's config.
    pub prometheus_url: Option<String>,
    /// The target's current pods, kept up to date by the controller or the local pool.
    pub pods: Option<watch::Receiver<Vec<PodAddress>>>,
    /// The local pool's current processes.
    pub processes: Option<watch::Receiver<Vec<LocalProcess>>>,
    /// Time for windows and reading stamps.
    pub clock: Clock,
}

impl std::fmt::Debug for BuildContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContext")
            .field("metric", &self.metric)
            .field("namespace", &self.namespace)
            .field("selector", &self.selector)
            .field("kube", &self.kube.is_some())
            .field("prometheus_url", &self.prometheus_url)
            .finish_non_exhaustive()
    }
}

impl BuildContext {
    /// A context for `metric` with a fresh HTTP client and nothing else.
    pub fn new(metric: MetricId, http: reqwest::Client) -> Self {
        Self {
            metric,
            namespace: "default".into(),
            selector: None,
            http,
            kube: None,
            prometheus_url: None,
            pods: None,
            processes: None,
            clock: Clock::start(),
        }
    }
}

/// Where a metric's readings come from: exactly one of the blocks a policy metric may carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SourceConfig {
    /// Each pod's own `/metrics` page.
    Scrape(ScrapeConfig),
    /// An instant PromQL query.
    Prometheus(PrometheusConfig),
    /// CPU or memory: the resource metrics API in a cluster, `/proc` for a local pool.
    Resource(ResourceConfig),
    /// CPU or memory of explicit local processes.
    Process(ProcessConfig),
}

impl SourceConfig {
    /// The block's name as written in a policy.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Scrape(_) => "scrape",
            SourceConfig::Prometheus(_) => "prometheus",
            SourceConfig::Resource(_) => "resource",
            SourceConfig::Process(_) => "process",
        }
    }

    /// Builds the live source. `resource` reads the metrics API when the context has a kube
    /// client and `/proc` when it has a local process pool.
    pub fn build(&self, ctx: &BuildContext) -> Result<Arc<dyn MetricSource>, SourceError> {
        Ok(match self {
            SourceConfig::Scrape(c) => Arc::new(scrape::ScrapeSource::new(c.clone(), ctx)?),
            SourceConfig::Prometheus(c) => {
                Arc::new(prometheus::PrometheusSource::new(c.clone(), ctx)?)
            }
            SourceConfig::Resource(c) => match (&ctx.kube, &ctx.processes) {
                (Some(_), _) => Arc::new(resource::ResourceSource::new(c.clone(), ctx)?),
                (None, Some(procs)) => {
                    Arc::new(process::ProcessSource::new(c.name, procs.clone(), ctx))
                }
                (None, None) => {
                    return Err(SourceError::NotConfigured {
                        metric: ctx.metric.clone(),
                        why: "a resource metric needs a Kubernetes client or a local process pool"
                            .into(),
                    });
                }
            },
            SourceConfig::Process(c) => {
                let procs = if c.pids.is_empty() {
                    ctx.processes
                        .clone()
                        .ok_or_else(|| SourceError::NotConfigured {
                            metric: ctx.metric.clone(),
                            why: "a process metric needs `pids` or a local process pool".into(),
                        })?
                } else {
                    let list = c
                        .pids
                        .iter()
                        .map(|&pid| LocalProcess {
                            name: pid.to_string(),
                            pid,
                        })
                        .collect();
                    watch::channel(list).1
                };
                Arc::new(process::ProcessSource::new(c.name, procs, ctx))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_config_is_tagged_by_block_name() {
        let c: SourceConfig = serde_saphyr::from_str(
            "scrape: {metric: http_requests_total, aggregate: {rate: {window: 15s}}}\n",
        )
        .unwrap();
        assert_eq!(c.kind(), "scrape");
        let c: SourceConfig =
            serde_saphyr::from_str("prometheus: {query: 'sum(up)', podLabel: pod}\n").unwrap();
        assert!(
            matches!(c, SourceConfig::Prometheus(ref p) if p.pod_label.as_deref() == Some("pod"))
        );
        let c: SourceConfig = serde_saphyr::from_str("process: {name: cpu, pids: [1]}\n").unwrap();
        assert_eq!(c.kind(), "process");
        assert!(serde_saphyr::from_str::<SourceConfig>("carrier: {}\n").is_err());
    }

    #[tokio::test]
    async fn resource_without_cluster_or_pool_is_not_configured() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ctx = BuildContext::new(MetricId::new("t", "cpu"), reqwest::Client::new());
        let c = SourceConfig::Resource(ResourceConfig {
            name: ResourceName::Cpu,
            container: None,
        });
        let e = c.build(&ctx).err().unwrap();
        assert!(e.to_string().contains("t/cpu: cannot build source"), "{e}");
    }
}
