//! Loading a spec from YAML or JSON, reporting every structural problem (unknown fields, wrong
//! types, missing fields) with its path, then every semantic one.
//!
//! serde stops at the first error, so when the whole spec fails to decode, each field (and each
//! metric) is decoded on its own to find all the others.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::validate::{Problem, SpecError};
use super::{BehaviorSpec, MetricSpec, ScalingPolicySpec};
use crate::engine::Policy;

const SPEC_FIELDS: &[&str] = &[
    "targetRef",
    "minReplicas",
    "maxReplicas",
    "interval",
    "metrics",
    "behavior",
    "onMetricError",
    "dryRun",
];

/// Parses a policy file — a whole `ScalingPolicy` object (with `spec:`) or a bare spec — and
/// validates it. Paths in problems start with `spec`.
pub fn load_policy_yaml(text: &str) -> Result<(ScalingPolicySpec, Policy), SpecError> {
    let value = yaml_value(text).map_err(|e| SpecError {
        problems: vec![Problem::new("(file)", e)],
    })?;
    parse_policy_value(&value, "spec")
}

/// Reads a YAML (or JSON) document into a generic value, with YAML 1.2 booleans only, so
/// that `y`, `on` or `no` stay strings as they do for `kubectl`.
pub fn yaml_value(text: &str) -> Result<Value, String> {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| format!("not valid YAML: {e}"))
}

/// Parses and validates a policy given as a decoded document: a `ScalingPolicy` object (its
/// `spec` is used, `kind`/`apiVersion` checked) or a bare spec. `path` names the spec in problems.
pub fn parse_policy_value(
    value: &Value,
    path: &str,
) -> Result<(ScalingPolicySpec, Policy), SpecError> {
    let mut problems = Vec::new();
    let spec_value = match value.as_object() {
        Some(map) if map.contains_key("spec") => {
            let root = path.strip_suffix(".spec").unwrap_or("");
            let at = |field: &str| {
                if root.is_empty() {
                    field.to_string()
                } else {
                    format!("{root}.{field}")
                }
            };
            for (k, v) in map {
                match k.as_str() {
                    "spec" | "metadata" | "status" => {}
                    "apiVersion" if v.as_str() == Some("tidescale.io/v1alpha1") => {}
                    "apiVersion" => problems.push(Problem::new(
                        at("apiVersion"),
                        format!("expected tidescale.io/v1alpha1, got {v}"),
                    )),
                    "kind" if v.as_str() == Some("ScalingPolicy") => {}
                    "kind" => problems.push(Problem::new(
                        at("kind"),
                        format!("expected ScalingPolicy, got {v}"),
                    )),
                    other => problems.push(Problem::new(
                        if root.is_empty() {
                            "(document)".to_string()
                        } else {
                            root.to_string()
                        },
                        format!("unknown field `{other}`"),
                    )),
                }
            }
            &map["spec"]
        }
        _ => value,
    };
    match parse_spec_value(spec_value, path) {
        Ok(spec) => match spec.validate_at(path) {
            Ok(policy) if problems.is_empty() => Ok((spec, policy)),
            Ok(_) => Err(SpecError { problems }),
            Err(e) => {
                problems.extend(e.problems);
                Err(SpecError { problems })
            }
        },
        Err(e) => {
            problems.extend(e.problems);
            Err(SpecError { problems })
        }
    }
}

/// Decodes a spec, listing every structural problem and — for the parts that did decode —
/// every semantic one. On success the spec is not yet validated (call `validate`).
pub fn parse_spec_value(value: &Value, path: &str) -> Result<ScalingPolicySpec, SpecError> {
    let first_error = match decode_quiet::<ScalingPolicySpec>(value) {
        Ok(spec) => return Ok(spec),
        Err(e) => e,
    };
    let mut problems = Vec::new();
    let Some(map) = value.as_object() else {
        problems.push(Problem::new(
            path,
            format!("expected a mapping, got {}", kind_of(value)),
        ));
        return Err(SpecError { problems });
    };
    for key in map.keys() {
        if !SPEC_FIELDS.contains(&key.as_str()) {
            problems.push(Problem::new(
                path,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    SPEC_FIELDS.join(", ")
                ),
            ));
        }
    }
    let target_ref = required(map, "targetRef", path, &mut problems);
    let min_replicas = optional(map, "minReplicas", path, &mut problems);
    let max_replicas = required(map, "maxReplicas", path, &mut problems);
    let interval = optional(map, "interval", path, &mut problems);
    let on_metric_error = optional(map, "onMetricError", path, &mut problems);
    let dry_run = optional(map, "dryRun", path, &mut problems);
    let behavior = match map.get("behavior") {
        Some(Value::Object(b)) => {
            decode_behavior(b, &format!("{path}.behavior"), &mut problems).map(Some)
        }
        Some(Value::Null) | None => Some(None),
        Some(other) => {
            decode_at::<BehaviorSpec>(other, &format!("{path}.behavior"), &mut problems).map(Some)
        }
    };
    let decoded = decode_metrics(map, path, &mut problems);
    if problems.is_empty() {
        // The granular pass found nothing the whole decode tripped on: report serde's own error.
        problems.push(first_error.at(path));
    }
    // Semantic checks on the parts that decoded, so one run shows everything.
    let (metrics, indices) = (decoded.metrics, decoded.indices);
    if let (Some(target_ref), Some(max_replicas), Some(metrics), Some(min), Some(behavior)) =
        (target_ref, max_replicas, metrics, min_replicas, behavior)
    {
        let partial = ScalingPolicySpec {
            target_ref,
            min_replicas: min.unwrap_or(1),
            max_replicas,
            interval: interval.flatten(),
            metrics,
            behavior,
            on_metric_error: on_metric_error.flatten(),
            dry_run: dry_run.flatten().unwrap_or(false),
        };
        let mut semantic = Vec::new();
        partial.check(path, &indices, &mut semantic);
        let metrics_path = format!("{path}.metrics");
        problems.extend(
            semantic
                .into_iter()
                .filter(|p| decoded.all || p.path != metrics_path),
        );
    }
    Err(SpecError { problems })
}

/// The metrics that decoded, where each stood in the document, and whether all of them did.
struct DecodedMetrics {
    metrics: Option<Vec<MetricSpec>>,
    indices: Vec<usize>,
    all: bool,
}

fn decode_metrics(
    map: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> DecodedMetrics {
    let mut all = true;
    let mut indices = Vec::new();
    let metrics: Option<Vec<MetricSpec>> = match map.get("metrics") {
        None => {
            problems.push(Problem::new(path, "missing field `metrics`"));
            None
        }
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let m = decode_at(item, &format!("{path}.metrics[{i}]"), problems);
                    all &= m.is_some();
                    if m.is_some() {
                        indices.push(i);
                    }
                    m
                })
                .collect(),
        ),
        Some(other) => decode_at(other, &format!("{path}.metrics"), problems),
    };
    if let Some(m) = &metrics
        && indices.len() != m.len()
    {
        indices = (0..m.len()).collect();
    }
    DecodedMetrics {
        metrics,
        indices,
        all,
    }
}

fn decode_behavior(
    b: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<BehaviorSpec> {
    for key in b.keys() {
        if !matches!(key.as_str(), "scaleUp" | "scaleDown" | "maxReversals") {
            problems.push(Problem::new(
                path,
                format!("unknown field `{key}`, expected scaleUp, scaleDown or maxReversals"),
            ));
        }
    }
    let up = optional(b, "scaleUp", path, problems);
    let down = optional(b, "scaleDown", path, problems);
    let reversals = optional(b, "maxReversals", path, problems);
    Some(BehaviorSpec {
        scale_up: up?,
        scale_down: down?,
        max_reversals: reversals?,
    })
}

/// A decode error with the path inside the decoded value.
pub(crate) struct DecodeError {
    inner: String,
    message: String,
}

impl DecodeError {
    /// The problem, with `base` prepended to the inner path.
    pub(crate) fn at(self, base: &str) -> Problem {
        Problem::new(join_path(base, &self.inner), self.message)
    }
}

pub(crate) fn decode_quiet<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let inner = e.path().to_string();
        DecodeError {
            inner,
            message: e.into_inner().to_string(),
        }
    })
}

/// Decodes `value` as `T`, recording a problem at `path` (plus the inner path) on failure.
pub(crate) fn decode_at<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    decode_quiet(value)
        .map_err(|e| problems.push(e.at(path)))
        .ok()
}

/// `Some(None)` when absent, `Some(Some(v))` when decoded, `None` when it failed.
fn optional<T: DeserializeOwned>(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<Option<T>> {
    match map.get(key) {
        None | Some(Value::Null) => Some(None),
        Some(v) => decode_at(v, &format!("{path}.{key}"), problems).map(Some),
    }
}

fn required<T: DeserializeOwned>(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    match map.get(key) {
        None => {
            problems.push(Problem::new(path, format!("missing field `{key}`")));
            None
        }
        Some(v) => decode_at(v, &format!("{path}.{key}"), problems),
    }
}

/// Joins a base path and a serde path (`.` when empty, `a.b[0]` otherwise).
pub(crate) fn join_path(base: &str, inner: &str) -> String {
    if inner.is_empty() || inner == "." {
        base.to_string()
    } else if base.is_empty() {
        inner.to_string()
    } else if inner.starts_with('[') {
        format!("{base}{inner}")
    } else {
        format!("{base}.{inner}")
    }
}

/// A short name for a JSON value's type, for messages.
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
