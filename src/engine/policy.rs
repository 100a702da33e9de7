//! The validated policy the engine runs: plain typed values, no strings left to interpret.

use std::sync::Arc;

use super::Replicas;
use super::time::Seconds;

/// Everything the engine needs to know about one scaling policy.
///
/// Built by `spec::ScalingPolicySpec::validate`; tests and benchmarks build it directly.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// The lower bound of the desired count.
    pub min_replicas: Replicas,
    /// The upper bound of the desired count.
    pub max_replicas: Replicas,
    /// The metrics, in the order the user wrote them (ties between proposals go to the first).
    pub metrics: Vec<MetricPolicy>,
    /// How raw recommendations become the desired count.
    pub normalization: Normalization,
    /// The ratio band inside which a metric proposes the current count.
    pub tolerance: Tolerance,
    /// What a failed metric means.
    pub on_error: OnError,
    /// Decide and explain, never mark a decision as to be applied.
    pub dry_run: bool,
    /// The CPU readiness timings of R4.11.
    pub readiness: ReadinessTiming,
}

impl Policy {
    /// A policy with the HPA's defaults: no `behavior` (the legacy normalization of §4.7),
    /// tolerance 0.1 both ways, `Hold` on errors.
    pub fn new(min: Replicas, max: Replicas, metrics: Vec<MetricPolicy>) -> Self {
        Self {
            min_replicas: min,
            max_replicas: max,
            metrics,
            normalization: Normalization::Legacy {
                downscale_window: Seconds(300),
            },
            tolerance: Tolerance::default(),
            on_error: OnError::Hold,
            dry_run: false,
            readiness: ReadinessTiming::default(),
        }
    }
}

/// One metric of a policy, as the engine sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPolicy {
    /// The metric's name, unique in the policy.
    pub name: Arc<str>,
    /// What the metric is compared with.
    pub target: Target,
    /// The compute resource measured, for resource metrics: it picks the pods' requests for
    /// `Utilization`, and CPU brings the readiness rules of R4.11 (others follow R4.12).
    pub resource: Option<Resource>,
}

impl MetricPolicy {
    /// A metric that is not a resource metric.
    pub fn new(name: &str, target: Target) -> Self {
        Self {
            name: name.into(),
            target,
            resource: None,
        }
    }

    /// The same metric, measuring a compute resource.
    pub fn on(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }
}

/// A compute resource with requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// CPU, in millicores.
    Cpu,
    /// Memory, in milli-bytes.
    Memory,
}

/// A target value, in the HPA's words. Values are in milli-units (R1.34).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Average usage over requests, in whole percent (resource metrics only).
    Utilization(i32),
    /// Average value per pod, in milli-units.
    AverageValue(i64),
    /// One value for the whole target, in milli-units.
    Value(i64),
}

/// How raw recommendations become a desired count.
#[derive(Clone, Debug, PartialEq)]
pub enum Normalization {
    /// No `behavior` given: the HPA's legacy path (R4.16–R4.17): scale-down stabilization over
    /// `downscale_window`, scale-up limited to `max(2 × current, 4)`, no cooldowns.
    Legacy {
        /// The downscale stabilization window (the controller flag, 300 s by default).
        downscale_window: Seconds,
    },
    /// `behavior` given: per-direction rules (§4.8) plus cooldowns.
    Behavior(Behavior),
}

/// Per-direction scaling rules.
#[derive(Clone, Debug, PartialEq)]
pub struct Behavior {
    /// Rules for increasing the count.
    pub scale_up: ScalingRules,
    /// Rules for decreasing the count.
    pub scale_down: ScalingRules,
    /// A scale-down only when each metric's demand is lower with this confidence (`None`: the
    /// HPA's rules alone).
    pub confidence: Option<Confidence>,
    /// At most this many direction changes within a window (`None`: no budget).
    pub max_reversals: Option<FlapBudget>,
}

/// The statistical scale-down: a metric lets the count fall only while the one-sided upper
/// confidence bound of its recent demand still implies fewer replicas.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Confidence {
    /// The one-sided confidence level, in (0.5, 1): e.g. 0.95.
    pub level: f64,
    /// How far back a metric's readings are kept for the bound.
    pub sample_window: Seconds,
}

/// A flap budget: a decision that would change direction holds once `count` direction changes
/// happened among the scale events of the last `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlapBudget {
    /// Direction changes allowed within the window (0: none while the last scale is within it).
    pub count: u32,
    /// The window the changes are counted over.
    pub window: Seconds,
}

impl Behavior {
    /// The HPA's defaults for a set `behavior` (§4.8), with no cooldowns.
    pub fn hpa_default() -> Self {
        Self {
            scale_up: ScalingRules {
                stabilization_window: Seconds(0),
                select: SelectPolicy::Max,
                policies: vec![RatePolicy::pods(4, 15), RatePolicy::percent(100, 15)],
                cooldown: Seconds(0),
            },
            scale_down: ScalingRules {
                stabilization_window: Seconds(300),
                select: SelectPolicy::Max,
                policies: vec![RatePolicy::percent(100, 15)],
                cooldown: Seconds(0),
            },
            confidence: None,
            max_reversals: None,
        }
    }
}

/// The rules of one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingRules {
    /// Recommendations within this window are considered together (R4.18).
    pub stabilization_window: Seconds,
    /// How several rate policies combine.
    pub select: SelectPolicy,
    /// Limits on the change per period (R4.19, R4.20).
    pub policies: Vec<RatePolicy>,
    /// No change in this direction within this long after any scale event.
    pub cooldown: Seconds,
}

impl ScalingRules {
    /// The longest policy period; scale events older than this no longer matter (R4.21).
    pub fn longest_period(&self) -> Seconds {
        self.policies
            .iter()
            .map(|p| p.period)
            .max()
            .unwrap_or(Seconds(0))
    }
}

/// A limit on how much the count may change within a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RatePolicy {
    /// Whether `value` counts pods or percent.
    pub kind: RatePolicyKind,
    /// The allowed change (> 0).
    pub value: i32,
    /// The period the change is measured over (1–1800 s).
    pub period: Seconds,
}

impl RatePolicy {
    /// At most `value` pods per `period` seconds.
    pub fn pods(value: i32, period: u32) -> Self {
        Self {
            kind: RatePolicyKind::Pods,
            value,
            period: Seconds(period),
        }
    }

    /// At most `value` percent per `period` seconds.
    pub fn percent(value: i32, period: u32) -> Self {
        Self {
            kind: RatePolicyKind::Percent,
            value,
            period: Seconds(period),
        }
    }
}

/// The unit of a rate policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RatePolicyKind {
    /// A number of pods.
    Pods,
    /// A percentage of the count at the start of the period.
    Percent,
}

/// How the limits of several rate policies combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectPolicy {
    /// The policy allowing the biggest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No change in this direction at all.
    Disabled,
}

/// The tolerance band per direction (§4.9): no change while `1 − down ≤ ratio ≤ 1 + up`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Allowed ratio above 1 before scaling up.
    pub up: f64,
    /// Allowed ratio below 1 before scaling down.
    pub down: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self { up: 0.1, down: 0.1 }
    }
}

impl Tolerance {
    /// True when `ratio` is inside the band (inclusive, R4.22).
    pub fn within(&self, ratio: f64) -> bool {
        (1.0 - self.down) <= ratio && ratio <= (1.0 + self.up)
    }
}

/// What a failed metric means for the decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// The HPA's rule (R4.14): no scaling if every metric failed, or if some failed and the
    /// others would scale down.
    Hold,
    /// Each failed metric proposes this many replicas; proposals still combine by max, so a
    /// metric that answered and asks for more still wins.
    Fallback(Replicas),
    /// Decide on the metrics that answered; hold only if none did.
    Ignore,
}

/// Timings of the CPU readiness rules (R4.11), the controller flags' defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadinessTiming {
    /// A pod younger than this is judged by its readiness transition (5 min).
    pub cpu_initialization_period: Seconds,
    /// A pod that turned unready within this long of starting never became ready (30 s).
    pub initial_readiness_delay: Seconds,
}

impl Default for ReadinessTiming {
    fn default() -> Self {
        Self {
            cpu_initialization_period: Seconds(300),
            initial_readiness_delay: Seconds(30),
        }
    }
}
