//! The adapter's own request metrics, served at `/metrics` on its listener: requests by API
//! group and status code, and request latency by group.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::wire::{CUSTOM_GROUP, EXTERNAL_GROUP};

/// The content type of [`RequestMetrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets, 0.5 ms to 5 s: answers come from memory, SubjectAccessReviews add a round trip.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    group: &'static str,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: &'static str,
}

/// `tidescale_adapter_requests_total{group,code}` and
/// `tidescale_adapter_request_duration_seconds{group}`, in their own registry.
#[derive(Debug)]
pub struct RequestMetrics {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    duration: Family<GroupLabels, Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `group` label of a request path: the metrics group it addresses, or `other` (discovery
/// of `/apis`, `/version`, health and `/metrics`).
pub fn group_of(raw_path: &str) -> &'static str {
    let rest = raw_path.strip_prefix("/apis/").unwrap_or("");
    let group = rest.split('/').next().unwrap_or("");
    if group == CUSTOM_GROUP {
        CUSTOM_GROUP
    } else if group == EXTERNAL_GROUP {
        EXTERNAL_GROUP
    } else {
        "other"
    }
}

impl RequestMetrics {
    /// Both families registered, nothing counted yet.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tidescale_adapter");
        let requests = Family::<CodeLabels, Counter>::default();
        let duration = Family::<GroupLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "requests",
            "Requests answered, by API group and HTTP status code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request received to response, by API group",
            duration.clone(),
        );
        Self {
            registry,
            requests,
            duration,
        }
    }

    /// Counts one answered request to `raw_path` with status `code`, which took `seconds`.
    pub fn observe(&self, raw_path: &str, code: u16, seconds: f64) {
        let group = group_of(raw_path);
        self.requests
            .get_or_create(&CodeLabels { group, code })
            .inc();
        self.duration
            .get_or_create(&GroupLabels { group })
            .observe(seconds);
    }

    /// The metrics as OpenMetrics text (served as [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_group_and_code() {
        let m = RequestMetrics::new();
        m.observe(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/a/q",
            200,
            0.002,
        );
        m.observe("/apis/custom.metrics.k8s.io/v1beta2", 403, 0.001);
        m.observe("/healthz", 200, 0.0001);
        let text = m.encode();
        for line in [
            r#"tidescale_adapter_requests_total{group="external.metrics.k8s.io",code="200"} 1"#,
            r#"tidescale_adapter_requests_total{group="custom.metrics.k8s.io",code="403"} 1"#,
            r#"tidescale_adapter_requests_total{group="other",code="200"} 1"#,
            r#"tidescale_adapter_request_duration_seconds_count{group="external.metrics.k8s.io"} 1"#,
            "# TYPE tidescale_adapter_requests counter",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
