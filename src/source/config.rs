//! The metric source blocks a user writes inside a policy metric or an adapter metric.
//!
//! One vocabulary for both places: `scrape`, `prometheus`, `resource` and `process` (see
//! `docs/spec/scaling-policy.md`). These are plain data; sources are built from them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metric::DurationSpec;

/// Read each pod's (or pool member's) own `/metrics` page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScrapeConfig {
    /// Port of the metrics endpoint; default: the target's first container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path of the metrics endpoint; default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A static list of endpoint URLs (local and standalone use); otherwise the target's pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// The metric family name, e.g. `http_requests_total` or `http_request_duration_seconds`.
    pub metric: String,
    /// Equality matchers on the series' labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// How series become a reading; default: the gauge's value per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// Per-request timeout; default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

/// How scraped series turn into a reading.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Aggregate {
    /// Counters: per-pod rate per second over `window`, counter resets handled.
    Rate {
        /// The window the rate is taken over.
        window: DurationSpec,
    },
    /// Histograms: the `q` quantile over `window`, bucket deltas merged across pods.
    Quantile {
        /// The quantile, 0 < q < 1 (e.g. 0.95).
        q: f64,
        /// The window the bucket deltas are taken over.
        window: DurationSpec,
    },
    /// Gauges: the value per pod (series within a pod summed); `reduce` makes one number of them.
    Gauge {
        /// How per-pod values combine when one number is needed; default `avg`.
        #[serde(default)]
        reduce: Reduce,
    },
}

/// How several values combine into one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Reduce {
    /// The mean.
    #[default]
    Avg,
    /// The sum.
    Sum,
    /// The largest.
    Max,
}

/// An instant query against a Prometheus server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Server base URL; default: the server in tidescale's own config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PromQL, with `{{ namespace }}`, `{{ selector }}` and `{{ window }}` substituted.
    pub query: String,
    /// The value of `{{ window }}`; default 1m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<DurationSpec>,
    /// When set, each series is one pod's value, named by this label (e.g. `pod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_label: Option<String>,
    /// Query timeout; default 2s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationSpec>,
}

/// CPU or memory of each pod: the resource metrics API in a cluster, `/proc` for a local pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceConfig {
    /// Which resource.
    pub name: ResourceName,
    /// Only this container's usage (the HPA's ContainerResource); default: all containers summed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// CPU or memory of explicit local processes (a standalone pool started elsewhere).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessConfig {
    /// Which resource.
    pub name: ResourceName,
    /// The process ids to read; default: the local pool's members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
}

/// A compute resource the HPA knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResourceName {
    /// CPU, in cores.
    Cpu,
    /// Memory (working set), in bytes.
    Memory,
}

impl ResourceName {
    /// The name as Kubernetes writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceName::Cpu => "cpu",
            ResourceName::Memory => "memory",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_block_reads_as_the_spec_writes_it() {
        let yaml =
            "metric: http_requests_total\nlabels: {route: /kv}\naggregate: {rate: {window: 15s}}\n";
        let c: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(c.metric, "http_requests_total");
        assert_eq!(c.labels["route"], "/kv");
        assert_eq!(
            c.aggregate,
            Some(Aggregate::Rate {
                window: "15s".parse().unwrap()
            })
        );
        let q: ScrapeConfig =
            serde_saphyr::from_str("metric: m\naggregate: {quantile: {q: 0.95, window: 30s}}\n")
                .unwrap();
        assert!(matches!(q.aggregate, Some(Aggregate::Quantile { q, .. }) if q == 0.95));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_saphyr::from_str::<ScrapeConfig>("metric: m\nmetrik: x\n");
        assert!(e.is_err());
        let e = serde_saphyr::from_str::<ResourceConfig>("name: gpu\n");
        assert!(e.is_err());
    }
}
