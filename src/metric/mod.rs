//! Metric identity, samples, readings, and Kubernetes quantities.
//!
//! A [`Reading`] is everything one read of one metric returned: either one value (a sum, a
//! quantile, a query result) or one value per pod, stamped with when it was taken. It is what
//! sources produce, what the [`crate::store::SampleStore`] keeps and what the engine consumes.

pub mod duration;
pub mod quantity;

pub use duration::{DurationError, DurationSpec};
pub use quantity::Quantity;

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Labels of a series or a metric selector, ordered by name so equal sets compare equal.
pub type Labels = BTreeMap<String, String>;

/// Which metric a reading belongs to: the policy (namespace/name, or a file name) and the
/// metric's name inside it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MetricId {
    /// The owning policy's scope, e.g. `shop/web`, or the file path for local use.
    pub scope: String,
    /// The metric's name within the policy (unique there).
    pub name: String,
}

impl MetricId {
    /// A metric called `name` inside `scope`.
    pub fn new(scope: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for MetricId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scope.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.scope, self.name)
        }
    }
}

/// One value with its labels and the time it was observed.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' labels (for a per-pod value: at least the pod).
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// When the value was observed.
    pub at: SystemTime,
}

/// What one read of a metric returned.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The value(s).
    pub value: ReadingValue,
    /// When the read completed.
    pub at: SystemTime,
    /// Where the numbers came from: endpoints, a query, an API path (for people, not machines).
    pub origin: String,
    /// Pods (or endpoints) that were expected but failed this read, with why; the reading still
    /// holds every pod that answered, so one failing pod never hides the others.
    pub failed: BTreeMap<String, String>,
    /// Per-pod resource requests (cores or bytes), when the source knows them: what a
    /// `Utilization` target divides usage by.
    pub requests: Option<BTreeMap<String, f64>>,
}

/// One number, or one number per pod.
#[derive(Clone, Debug, PartialEq)]
pub enum ReadingValue {
    /// A single number (a total, a quantile, a query result).
    Value(f64),
    /// One number per pod, keyed by pod (or pool member) name; `total` is what a single-number
    /// consumer should use (the sum for counters' rates, the configured reduction for gauges).
    PerPod {
        /// Per-pod values.
        pods: BTreeMap<String, f64>,
        /// The combined value.
        total: f64,
    },
}

impl Reading {
    /// A single-number reading.
    pub fn value(value: f64, at: SystemTime, origin: impl Into<String>) -> Self {
        Self {
            value: ReadingValue::Value(value),
            at,
            origin: origin.into(),
            failed: BTreeMap::new(),
            requests: None,
        }
    }

    /// A per-pod reading with its combined value.
    pub fn per_pod(
        pods: BTreeMap<String, f64>,
        total: f64,
        at: SystemTime,
        origin: impl Into<String>,
    ) -> Self {
        Self {
            value: ReadingValue::PerPod { pods, total },
            at,
            origin: origin.into(),
            failed: BTreeMap::new(),
            requests: None,
        }
    }

    /// The single number a `Value` target compares: the value, or the per-pod total.
    pub fn total(&self) -> f64 {
        match &self.value {
            ReadingValue::Value(v) => *v,
            ReadingValue::PerPod { total, .. } => *total,
        }
    }

    /// Per-pod values, if this reading has them.
    pub fn pods(&self) -> Option<&BTreeMap<String, f64>> {
        match &self.value {
            ReadingValue::Value(_) => None,
            ReadingValue::PerPod { pods, .. } => Some(pods),
        }
    }

    /// The reading as samples: one per pod (labelled `pod`), or one unlabelled sample.
    pub fn samples(&self) -> Vec<Sample> {
        match &self.value {
            ReadingValue::Value(v) => vec![Sample {
                labels: Labels::new(),
                value: *v,
                at: self.at,
            }],
            ReadingValue::PerPod { pods, .. } => pods
                .iter()
                .map(|(pod, v)| Sample {
                    labels: Labels::from([("pod".to_string(), pod.clone())]),
                    value: *v,
                    at: self.at,
                })
                .collect(),
        }
    }
}

/// Seconds since the Unix epoch of a wall-clock time (negative before 1970).
pub fn unix_seconds(at: SystemTime) -> f64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn per_pod_reading_exposes_total_and_samples() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let r = Reading::per_pod(
            BTreeMap::from([("a".into(), 1.0), ("b".into(), 3.0)]),
            4.0,
            at,
            "test",
        );
        assert_eq!(r.total(), 4.0);
        assert_eq!(r.pods().unwrap().len(), 2);
        let s = r.samples();
        assert_eq!(s[1].labels["pod"], "b");
        assert_eq!(s[1].value, 3.0);
        assert_eq!(unix_seconds(at), 100.0);
        assert_eq!(MetricId::new("shop/web", "rps").to_string(), "shop/web/rps");
    }
}
