//! What the caller saw this tick: the target's replica counts, its pods, and each metric's reading.

use super::Replicas;
use super::time::{Seconds, Time};

/// One tick's view of the world, as the engine needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observation {
    /// The target's `spec.replicas`: the count the engine decides from.
    pub current: Replicas,
    /// The target's `status.replicas`, used by `AverageValue` over one value (§4.4.4).
    pub status_replicas: Replicas,
    /// The pods selected by the target (§4.5). Per-pod readings are aligned with this list.
    pub pods: Vec<PodFacts>,
    /// One entry per policy metric, in the policy's order: the reading or why it failed.
    pub metrics: Vec<Result<Reading, MetricFailure>>,
}

/// The facts about one pod that the HPA's arithmetic looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFacts {
    /// The pod's name (for messages).
    pub name: String,
    /// The pod's phase.
    pub phase: PodPhase,
    /// True when the pod has a deletion timestamp (it is then ignored, R4.8).
    pub deleting: bool,
    /// `status.startTime`; `None` makes the pod unready for CPU (R4.11).
    pub started: Option<Time>,
    /// The `Ready` condition; `None` when the pod has none.
    pub ready: Option<ReadyCondition>,
    /// The pod's requests per resource, in milli-units, summed over its containers; `None`
    /// when some counted container lacks a request.
    pub requests: Requests,
}

impl PodFacts {
    /// A running, ready pod that started long before `now` (the default when a caller knows
    /// nothing else about its pods).
    pub fn running(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            phase: PodPhase::Running,
            deleting: false,
            started: Some(Time(i64::MIN / 2)),
            ready: Some(ReadyCondition {
                status: true,
                since: Time(i64::MIN / 2),
            }),
            requests: Requests::default(),
        }
    }

    /// True when the pod is Running with `Ready=True` (the ready count of §4.4.3).
    pub fn is_running_and_ready(&self) -> bool {
        self.phase == PodPhase::Running && self.ready.is_some_and(|r| r.status)
    }
}

/// A pod's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodPhase {
    /// Not yet running; unready (R4.9).
    Pending,
    /// Running.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed; ignored (R4.8).
    Failed,
    /// Unknown.
    Unknown,
}

/// A pod's `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyCondition {
    /// True when the pod is ready.
    pub status: bool,
    /// The condition's `lastTransitionTime`.
    pub since: Time,
}

/// Resource requests of one pod, in milli-units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Requests {
    /// CPU in millicores.
    pub cpu: Option<i64>,
    /// Memory in milli-bytes.
    pub memory: Option<i64>,
}

/// One metric's reading, in milli-units (values already rounded up, R1.34).
#[derive(Clone, Debug, PartialEq)]
pub enum Reading {
    /// One value per pod (resource metrics, per-pod scrapes, Prometheus with a pod label).
    PerPod(PodValues),
    /// One value for the whole target: the value for `Value`, the sum for `AverageValue`.
    Total(i64),
}

/// Per-pod values, aligned with [`Observation::pods`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodValues {
    /// `values[i]` belongs to `Observation::pods[i]`; `None` when that pod has no value.
    pub values: Vec<Option<i64>>,
    /// Values for pods that are not in the pod list. The HPA keeps them in plain averages
    /// (R1.24) and in the pod count of utilization, though they have no requests.
    pub extra: Vec<i64>,
    /// When the values were sampled (CPU readiness, R4.11).
    pub timestamp: Time,
    /// The window the values were computed over (CPU readiness, R4.11; 60 s when unknown).
    pub window: Seconds,
}

/// Why a metric has no reading this tick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricFailure(pub String);

impl std::fmt::Display for MetricFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
