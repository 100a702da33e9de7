//! Logging setup and tidescale's own Prometheus metrics (decisions, replicas, source health).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How logs are written on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for clusters).
    Json,
}

/// Installs the global tracing subscriber (`RUST_LOG` overrides `default_filter`).
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabels {
    lease: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MetricLabels {
    policy: String,
    metric: String,
}

/// tidescale's own metrics, one registry per process.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    desired: Family<PolicyLabels, Gauge>,
    current: Family<PolicyLabels, Gauge>,
    scale_errors: Family<PolicyLabels, Counter>,
    scale_writes: Family<PolicyLabels, Counter>,
    source_seconds: Family<MetricLabels, Histogram>,
    source_errors: Family<MetricLabels, Counter>,
    metric_value: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    metric_target: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    leader: Family<LeaseLabels, Gauge>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A registry with every family registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tidescale");
        let decisions = Family::default();
        let desired = Family::default();
        let current = Family::default();
        let scale_errors = Family::default();
        let scale_writes = Family::default();
        registry.register(
            "scale_writes",
            "Rescales the target accepted",
            scale_writes.clone(),
        );
        let source_seconds = Family::<MetricLabels, Histogram>::new_with_constructor(
            (|| Histogram::new([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]))
                as fn() -> Histogram,
        );
        let source_errors = Family::default();
        let metric_value = Family::default();
        let metric_target = Family::default();
        let leader = Family::default();
        registry.register(
            "metric_value",
            "Each policy metric's last value, in its target's units",
            metric_value.clone(),
        );
        registry.register(
            "metric_target",
            "Each policy metric's target",
            metric_target.clone(),
        );
        registry.register(
            "leader",
            "1 while this process holds the lease",
            leader.clone(),
        );
        registry.register(
            "decisions",
            "Decisions taken, by policy and the step that settled them",
            decisions.clone(),
        );
        registry.register(
            "desired_replicas",
            "Replicas the last decision asked for",
            desired.clone(),
        );
        registry.register(
            "current_replicas",
            "Replicas the target had at the last decision",
            current.clone(),
        );
        registry.register(
            "scale_errors",
            "Rescales the target refused or failed",
            scale_errors.clone(),
        );
        registry.register(
            "source_read_seconds",
            "Time to read one metric from its source",
            source_seconds.clone(),
        );
        registry.register(
            "source_errors",
            "Metric reads that failed",
            source_errors.clone(),
        );
        Self {
            registry,
            decisions,
            desired,
            current,
            scale_errors,
            scale_writes,
            source_seconds,
            source_errors,
            metric_value,
            metric_target,
            leader,
        }
    }

    /// Sets the leader gauge of `lease`.
    pub fn set_leader(&self, lease: &str, leading: bool) {
        self.leader
            .get_or_create(&LeaseLabels {
                lease: lease.into(),
            })
            .set(i64::from(leading));
    }

    /// The metrics as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl crate::control::Recorder for Telemetry {
    /// Counts one decision.
    fn decision(&self, policy: &str, reason: &'static str, current: i32, desired: i32) {
        self.decisions
            .get_or_create(&DecisionLabels {
                policy: policy.into(),
                reason,
            })
            .inc();
        let p = PolicyLabels {
            policy: policy.into(),
        };
        self.desired.get_or_create(&p).set(desired.into());
        self.current.get_or_create(&p).set(current.into());
    }

    /// Counts a failed rescale.
    fn scale_error(&self, policy: &str) {
        self.scale_errors
            .get_or_create(&PolicyLabels {
                policy: policy.into(),
            })
            .inc();
    }

    fn scaled(&self, policy: &str) {
        self.scale_writes
            .get_or_create(&PolicyLabels {
                policy: policy.into(),
            })
            .inc();
    }

    fn metric_value(&self, policy: &str, metric: &str, value: f64, target: f64) {
        let labels = MetricLabels {
            policy: policy.into(),
            metric: metric.into(),
        };
        self.metric_value.get_or_create(&labels).set(value);
        self.metric_target.get_or_create(&labels).set(target);
    }

    fn forget(&self, policy: &str, metrics: &[String]) {
        let p = PolicyLabels {
            policy: policy.into(),
        };
        self.desired.remove(&p);
        self.current.remove(&p);
        for m in metrics {
            let labels = MetricLabels {
                policy: policy.into(),
                metric: m.clone(),
            };
            self.metric_value.remove(&labels);
            self.metric_target.remove(&labels);
        }
    }

    /// Records one source read.
    fn source_read(&self, policy: &str, metric: &str, seconds: f64, ok: bool) {
        let labels = MetricLabels {
            policy: policy.into(),
            metric: metric.into(),
        };
        self.source_seconds.get_or_create(&labels).observe(seconds);
        if !ok {
            self.source_errors.get_or_create(&labels).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Recorder;

    #[test]
    fn decisions_and_reads_are_exported() {
        let t = Telemetry::new();
        t.decision("demo", "RateLimited", 2, 4);
        t.source_read("demo", "rps", 0.002, false);
        let text = t.encode();
        assert!(
            text.contains(r#"tidescale_decisions_total{policy="demo",reason="RateLimited"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"tidescale_desired_replicas{policy="demo"} 4"#));
        assert!(text.contains(r#"tidescale_source_errors_total{policy="demo",metric="rps"} 1"#));
    }
}
