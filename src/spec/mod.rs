//! The `ScalingPolicy` spec: the user's words (spec/scaling-policy.md), as a Kubernetes custom
//! resource and as a YAML file.
//!
//! Field names follow the native HPA v2 wherever the meaning is the same. These types are plain
//! data; [`ScalingPolicySpec::validate`] turns them into an [`engine::Policy`](crate::engine::Policy)
//! or lists every problem at once.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::metric::DurationSpec;
use crate::metric::Quantity;
use crate::source::{PrometheusConfig, ResourceConfig, ScrapeConfig, SourceConfig};

mod crd;
mod load;
mod validate;

pub use crd::{CRD_PATH, crd_yaml};

pub use load::{load_policy_yaml, parse_policy_value, parse_spec_value, yaml_value};
pub use validate::{Problem, SpecError};

/// What a user writes to have tidescale scale a workload.
// kube's `printcolumn(...)` is repeated once per column by design.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "tidescale.io",
    version = "v1alpha1",
    kind = "ScalingPolicy",
    namespaced,
    status = "ScalingPolicyStatus",
    shortname = "sp",
    printcolumn(name = "Min", type_ = "integer", json_path = ".spec.minReplicas"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxReplicas"),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.currentReplicas"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(
        name = "Last Scale",
        type_ = "date",
        json_path = ".status.lastScaleTime"
    ),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicySpec {
    /// The workload to scale: anything with a scale subresource, or locally a `ProcessPool`.
    pub target_ref: TargetRef,
    /// The lowest desired count; default 1.
    #[serde(default = "default_min_replicas")]
    pub min_replicas: i32,
    /// The highest desired count; required, at least `minReplicas`.
    pub max_replicas: i32,
    /// How often the policy is evaluated; default 5s, at least 250ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<DurationSpec>,
    /// At least one metric; names unique within the policy.
    pub metrics: Vec<MetricSpec>,
    /// How fast to scale; when absent, the HPA's behaviour without `behavior`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<BehaviorSpec>,
    /// What a failed metric means; default `Hold`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_metric_error: Option<OnMetricError>,
    /// Decide and report, never write the target.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

fn default_min_replicas() -> i32 {
    1
}

/// The workload a policy scales.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetRef {
    /// e.g. `apps/v1`; absent for local kinds such as `ProcessPool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// e.g. `Deployment`, `StatefulSet`, `ProcessPool`.
    pub kind: String,
    /// The object's name, in the policy's namespace.
    pub name: String,
}

/// One metric: where it comes from (exactly one of `scrape`, `prometheus`, `resource`) and its target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSpec {
    /// The metric's name within the policy (used in explanations and status).
    pub name: String,
    /// Read each pod's `/metrics` directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape: Option<ScrapeConfig>,
    /// An instant PromQL query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusConfig>,
    /// CPU or memory of each pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceConfig>,
    /// What the metric is compared with.
    pub target: MetricTarget,
}

impl MetricSpec {
    /// The source block the metric carries, as a [`SourceConfig`] (validation requires
    /// exactly one; the first present wins otherwise).
    pub fn source(&self) -> Option<SourceConfig> {
        if let Some(s) = &self.scrape {
            Some(SourceConfig::Scrape(s.clone()))
        } else if let Some(p) = &self.prometheus {
            Some(SourceConfig::Prometheus(p.clone()))
        } else {
            self.resource.clone().map(SourceConfig::Resource)
        }
    }
}

/// A target in the HPA's words: the field named by `type` must be set, and only that one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricTarget {
    /// `Utilization`, `AverageValue` or `Value`.
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// Percent of the pods' requests (for `Utilization`, resource metrics only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_utilization: Option<i32>,
    /// Per pod (for `AverageValue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average_value: Option<Quantity>,
    /// For the whole target (for `Value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Quantity>,
}

/// The kind of a metric target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TargetKind {
    /// Average usage as a percentage of requests.
    Utilization,
    /// Average value per pod.
    AverageValue,
    /// One value.
    Value,
}

/// How fast to scale, per direction. Unset fields take the HPA's defaults (§4.8).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BehaviorSpec {
    /// Rules for scaling up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRulesSpec>,
    /// Rules for scaling down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRulesSpec>,
    /// A flap budget: at most this many direction changes within a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reversals: Option<MaxReversalsSpec>,
}

/// At most `count` direction changes among the scale events of the last `windowSeconds`; a
/// decision that would exceed it holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaxReversalsSpec {
    /// Direction changes allowed, ≥ 0.
    pub count: i32,
    /// The window, 1–3600 s.
    pub window_seconds: i32,
}

/// The rules of one direction.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRulesSpec {
    /// 0–3600; default 0 up, 300 down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<i32>,
    /// `Max` (default), `Min` or `Disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicySpec>,
    /// Replaces the default list wholesale when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<RatePolicySpec>>,
    /// The ratio band around 1 with no change in this direction, ≥ 0; default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<f64>,
    /// No change in this direction within this many seconds after any scale event; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_seconds: Option<i32>,
    /// Scale-down only: lower the count only while each metric's recent demand is lower at
    /// this one-sided confidence (Student's t), in (0.5, 1); unset: no statistical check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Scale-down only, with `confidence`: how many seconds of readings the bound is computed
    /// over, 1–3600; default the stabilization window, or 60 when that is 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_window_seconds: Option<i32>,
}

/// How several rate policies combine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectPolicySpec {
    /// The policy allowing the biggest change.
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// A limit on the change per period.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RatePolicySpec {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub kind: RatePolicyKindSpec,
    /// The allowed change, > 0.
    pub value: i32,
    /// The period, 1–1800 s.
    pub period_seconds: i32,
}

/// The unit of a rate policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RatePolicyKindSpec {
    /// A number of pods.
    Pods,
    /// A percentage of the count at the period's start.
    Percent,
}

/// What a failed metric means.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnMetricError {
    /// `Hold`, `Fallback` or `Ignore`.
    pub action: ErrorAction,
    /// For `Fallback` only: the count a failed metric proposes, within [min, max].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
}

/// The action on a failed metric.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ErrorAction {
    /// The HPA's rule: no scaling if all failed, or if some failed and the rest would scale down.
    Hold,
    /// Failed metrics propose `replicas`.
    Fallback,
    /// Use the metrics that did answer.
    Ignore,
}

/// What tidescale last saw and decided for a policy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicyStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The target's replica count when last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_replicas: Option<i32>,
    /// The count last decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// When the target was last rescaled (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_scale_time: Option<String>,
    /// The last decision's one-line explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// The kind of the step that settled the last decision (e.g. `RateLimited`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each metric's last value and target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub current_metrics: Vec<MetricStatus>,
    /// `AbleToScale`, `ScalingActive`, `ScalingLimited`, `Ready`, with the HPA's reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PolicyCondition>,
}

/// One status condition, shaped like `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCondition {
    /// `AbleToScale`, `ScalingActive`, `ScalingLimited` or `Ready`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason, the HPA's where one applies (e.g. `ScaleUpLimit`, `InvalidSpec`).
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
}

/// One metric's last value next to its target, as quantities (or percent for utilization).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricStatus {
    /// The metric's name in the policy.
    pub name: String,
    /// The current value (`"212"`, `"150%"`); absent when the read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The target it is compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[cfg(test)]
mod tests;
