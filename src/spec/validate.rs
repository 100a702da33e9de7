//! Semantic validation of a spec: every problem at once, each with its field path.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use super::{
    BehaviorSpec, ErrorAction, MaxReversalsSpec, RatePolicyKindSpec, RatePolicySpec,
    ScalingPolicySpec, ScalingRulesSpec, SelectPolicySpec,
};
use crate::engine::{
    Behavior, Confidence, FlapBudget, MetricPolicy, Normalization, OnError, Policy, RatePolicy,
    RatePolicyKind, ReadinessTiming, Replicas, ScalingRules, Seconds, SelectPolicy, Tolerance,
};

#[path = "validate_metric.rs"]
mod metric;

/// One thing wrong with a policy, at a field path such as `spec.metrics[1].target.value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: the path of the offending field.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A policy that cannot run, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// All problems, in the order of the fields.
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid policy ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

const MAX_WINDOW_SECONDS: i32 = 3600;
/// The sample window of `confidence` when neither it nor the stabilization window is set.
const DEFAULT_SAMPLE_WINDOW_SECONDS: u32 = 60;
const MAX_PERIOD_SECONDS: i32 = 1800;
/// Cooldowns are tidescale's own; a day is far beyond any sensible value and catches typos.
const MAX_COOLDOWN_SECONDS: i32 = 86_400;
const MIN_INTERVAL: Duration = Duration::from_millis(250);

impl ScalingPolicySpec {
    /// Checks the spec and builds the engine's policy, or returns every problem at once.
    /// Paths start with `spec`.
    pub fn validate(&self) -> Result<Policy, SpecError> {
        self.validate_at("spec")
    }

    /// Like [`validate`](Self::validate), with paths starting at `prefix` (e.g. `policy` in a
    /// replay scenario).
    pub fn validate_at(&self, prefix: &str) -> Result<Policy, SpecError> {
        let mut problems = Vec::new();
        let indices: Vec<usize> = (0..self.metrics.len()).collect();
        let policy = self.check(prefix, &indices, &mut problems);
        match policy {
            Some(p) if problems.is_empty() => Ok(p),
            _ => Err(SpecError { problems }),
        }
    }

    /// The evaluation interval (default 5s).
    pub fn interval(&self) -> Duration {
        self.interval
            .map(|d| d.get())
            .unwrap_or(Duration::from_secs(5))
    }

    /// Collects the problems of this spec; `indices[i]` is the position metric `i` had in the
    /// document (they differ when metrics that failed to decode were left out).
    pub(super) fn check(
        &self,
        prefix: &str,
        indices: &[usize],
        problems: &mut Vec<Problem>,
    ) -> Option<Policy> {
        let mut report = |path: String, msg: String| problems.push(Problem::new(path, msg));
        self.check_shape(prefix, &mut report);
        let metrics = self.check_metrics(prefix, indices, &mut report);
        let (normalization, tolerance) = match &self.behavior {
            None => (
                Normalization::Legacy {
                    downscale_window: Seconds(300),
                },
                Tolerance::default(),
            ),
            Some(b) => check_behavior(b, &format!("{prefix}.behavior"), &mut report),
        };
        let on_error = self.check_on_error(prefix, &mut report);
        Some(Policy {
            min_replicas: Replicas(self.min_replicas.max(0)),
            max_replicas: Replicas(self.max_replicas.max(0)),
            metrics,
            normalization,
            tolerance,
            on_error,
            dry_run: self.dry_run,
            readiness: ReadinessTiming::default(),
        })
    }

    /// The target reference, the replica bounds and the interval.
    fn check_shape(&self, prefix: &str, report: &mut impl FnMut(String, String)) {
        if self.target_ref.kind.trim().is_empty() {
            report(
                format!("{prefix}.targetRef.kind"),
                "must not be empty".into(),
            );
        }
        if self.target_ref.name.trim().is_empty() {
            report(
                format!("{prefix}.targetRef.name"),
                "must not be empty".into(),
            );
        }
        if self.min_replicas < 0 {
            report(
                format!("{prefix}.minReplicas"),
                format!("must be ≥ 0, got {}", self.min_replicas),
            );
        }
        if self.max_replicas < 1 {
            report(
                format!("{prefix}.maxReplicas"),
                format!("must be ≥ 1, got {}", self.max_replicas),
            );
        }
        if self.min_replicas > self.max_replicas {
            report(
                format!("{prefix}.minReplicas"),
                format!(
                    "minReplicas {} is greater than maxReplicas {}",
                    self.min_replicas, self.max_replicas
                ),
            );
        }
        if let Some(i) = self.interval
            && i.get() < MIN_INTERVAL
        {
            report(
                format!("{prefix}.interval"),
                format!("must be at least 250ms, got {i}"),
            );
        }
    }

    /// Every metric: a unique name, one source, a target that fits.
    fn check_metrics(
        &self,
        prefix: &str,
        indices: &[usize],
        report: &mut impl FnMut(String, String),
    ) -> Vec<MetricPolicy> {
        if self.metrics.is_empty() {
            report(
                format!("{prefix}.metrics"),
                "at least one metric is required".into(),
            );
        }
        let mut seen = HashSet::new();
        let mut metrics = Vec::with_capacity(self.metrics.len());
        for (m, i) in self.metrics.iter().zip(indices) {
            let path = format!("{prefix}.metrics[{i}]");
            if m.name.trim().is_empty() {
                report(format!("{path}.name"), "must not be empty".into());
            } else if m.name.chars().any(char::is_whitespace) {
                report(
                    format!("{path}.name"),
                    format!("{:?} must not contain spaces", m.name),
                );
            } else if !seen.insert(m.name.as_str()) {
                report(
                    format!("{path}.name"),
                    format!("duplicate metric name {:?}", m.name),
                );
            }
            if let Some(mp) = metric::check_metric(m, &path, report) {
                metrics.push(mp);
            }
        }
        metrics
    }

    /// `onMetricError`: Fallback needs a count inside the bounds; only Fallback takes one.
    fn check_on_error(&self, prefix: &str, report: &mut impl FnMut(String, String)) -> OnError {
        let Some(e) = &self.on_metric_error else {
            return OnError::Hold;
        };
        let path = format!("{prefix}.onMetricError");
        match (e.action, e.replicas) {
            (ErrorAction::Fallback, None) => {
                report(
                    format!("{path}.replicas"),
                    "Fallback needs the number of replicas to fall back to".into(),
                );
                OnError::Hold
            }
            (ErrorAction::Fallback, Some(n)) => {
                if n < self.min_replicas || n > self.max_replicas {
                    report(
                        format!("{path}.replicas"),
                        format!(
                            "{n} is outside [minReplicas, maxReplicas] = [{}, {}]",
                            self.min_replicas, self.max_replicas
                        ),
                    );
                }
                OnError::Fallback(Replicas(n.max(0)))
            }
            (action, Some(_)) => {
                report(
                    format!("{path}.replicas"),
                    format!("only Fallback takes replicas, not {action:?}"),
                );
                OnError::Hold
            }
            (ErrorAction::Hold, None) => OnError::Hold,
            (ErrorAction::Ignore, None) => OnError::Ignore,
        }
    }
}

fn check_behavior(
    b: &BehaviorSpec,
    path: &str,
    report: &mut impl FnMut(String, String),
) -> (Normalization, Tolerance) {
    let defaults = Behavior::hpa_default();
    let default_rules = ScalingRulesSpec::default();
    let up = check_rules(
        b.scale_up.as_ref().unwrap_or(&default_rules),
        defaults.scale_up,
        &format!("{path}.scaleUp"),
        report,
    );
    let down = check_rules(
        b.scale_down.as_ref().unwrap_or(&default_rules),
        defaults.scale_down,
        &format!("{path}.scaleDown"),
        report,
    );
    let up_rules = b.scale_up.as_ref().unwrap_or(&default_rules);
    for (field, set) in [
        ("confidence", up_rules.confidence.is_some()),
        (
            "sampleWindowSeconds",
            up_rules.sample_window_seconds.is_some(),
        ),
    ] {
        if set {
            report(
                format!("{path}.scaleUp.{field}"),
                "only scaleDown has a confidence check; scale-up reacts to every reading".into(),
            );
        }
    }
    let down_rules = b.scale_down.as_ref().unwrap_or(&default_rules);
    let confidence = check_confidence(
        down_rules,
        down.0.stabilization_window,
        &format!("{path}.scaleDown"),
        report,
    );
    let max_reversals = b
        .max_reversals
        .as_ref()
        .and_then(|m| check_max_reversals(m, &format!("{path}.maxReversals"), report));
    (
        Normalization::Behavior(Behavior {
            scale_up: up.0,
            scale_down: down.0,
            confidence,
            max_reversals,
        }),
        Tolerance {
            up: up.1,
            down: down.1,
        },
    )
}

fn check_rules(
    r: &ScalingRulesSpec,
    defaults: ScalingRules,
    path: &str,
    report: &mut impl FnMut(String, String),
) -> (ScalingRules, f64) {
    let mut seconds = |field: &str, v: Option<i32>, max: i32, default: Seconds| match v {
        None => default,
        Some(s) if !(0..=max).contains(&s) => {
            report(
                format!("{path}.{field}"),
                format!("must be between 0 and {max}, got {s}"),
            );
            default
        }
        Some(s) => Seconds(s as u32),
    };
    let window = seconds(
        "stabilizationWindowSeconds",
        r.stabilization_window_seconds,
        MAX_WINDOW_SECONDS,
        defaults.stabilization_window,
    );
    let cooldown = seconds(
        "cooldownSeconds",
        r.cooldown_seconds,
        MAX_COOLDOWN_SECONDS,
        Seconds(0),
    );
    let select = match r.select_policy {
        None | Some(SelectPolicySpec::Max) => SelectPolicy::Max,
        Some(SelectPolicySpec::Min) => SelectPolicy::Min,
        Some(SelectPolicySpec::Disabled) => SelectPolicy::Disabled,
    };
    let policies = match &r.policies {
        None => defaults.policies,
        Some(list) => {
            if list.is_empty() && select != SelectPolicy::Disabled {
                report(
                    format!("{path}.policies"),
                    "at least one policy is required (or selectPolicy: Disabled)".into(),
                );
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, p)| check_rate_policy(p, &format!("{path}.policies[{i}]"), report))
                .collect()
        }
    };
    let tolerance = match r.tolerance {
        None => 0.1,
        Some(t) if !(t.is_finite() && t >= 0.0) => {
            report(
                format!("{path}.tolerance"),
                format!("must be a number ≥ 0, got {t}"),
            );
            0.1
        }
        Some(t) => t,
    };
    (
        ScalingRules {
            stabilization_window: window,
            select,
            policies,
            cooldown,
        },
        tolerance,
    )
}

/// `confidence` in (0.5, 1) and `sampleWindowSeconds` in 1–3600 (only with `confidence`).
fn check_confidence(
    r: &ScalingRulesSpec,
    stabilization: Seconds,
    path: &str,
    report: &mut impl FnMut(String, String),
) -> Option<Confidence> {
    let window = match r.sample_window_seconds {
        None if stabilization.0 > 0 => Some(stabilization),
        None => Some(Seconds(DEFAULT_SAMPLE_WINDOW_SECONDS)),
        Some(s) if (1..=MAX_WINDOW_SECONDS).contains(&s) => Some(Seconds(s as u32)),
        Some(s) => {
            report(
                format!("{path}.sampleWindowSeconds"),
                format!("must be between 1 and {MAX_WINDOW_SECONDS}, got {s}"),
            );
            None
        }
    };
    let Some(level) = r.confidence else {
        if r.sample_window_seconds.is_some() {
            report(
                format!("{path}.sampleWindowSeconds"),
                "has no effect without confidence".into(),
            );
        }
        return None;
    };
    if !(level.is_finite() && level > 0.5 && level < 1.0) {
        report(
            format!("{path}.confidence"),
            format!("must be a number between 0.5 and 1 (exclusive), e.g. 0.95, got {level}"),
        );
        return None;
    }
    window.map(|sample_window| Confidence {
        level,
        sample_window,
    })
}

/// A flap budget: a count ≥ 0 over a window of 1–3600 seconds.
fn check_max_reversals(
    m: &MaxReversalsSpec,
    path: &str,
    report: &mut impl FnMut(String, String),
) -> Option<FlapBudget> {
    let mut ok = true;
    if m.count < 0 {
        report(
            format!("{path}.count"),
            format!("must be ≥ 0, got {}", m.count),
        );
        ok = false;
    }
    if !(1..=MAX_WINDOW_SECONDS).contains(&m.window_seconds) {
        report(
            format!("{path}.windowSeconds"),
            format!(
                "must be between 1 and {MAX_WINDOW_SECONDS}, got {}",
                m.window_seconds
            ),
        );
        ok = false;
    }
    ok.then_some(FlapBudget {
        count: m.count as u32,
        window: Seconds(m.window_seconds as u32),
    })
}

/// One rate policy: a positive value over a period of 1 to 1800 seconds.
fn check_rate_policy(
    p: &RatePolicySpec,
    path: &str,
    report: &mut impl FnMut(String, String),
) -> Option<RatePolicy> {
    let mut ok = true;
    if p.value <= 0 {
        report(
            format!("{path}.value"),
            format!("must be positive, got {}", p.value),
        );
        ok = false;
    }
    if !(1..=MAX_PERIOD_SECONDS).contains(&p.period_seconds) {
        report(
            format!("{path}.periodSeconds"),
            format!(
                "must be between 1 and {MAX_PERIOD_SECONDS}, got {}",
                p.period_seconds
            ),
        );
        ok = false;
    }
    ok.then_some(RatePolicy {
        kind: match p.kind {
            RatePolicyKindSpec::Pods => RatePolicyKind::Pods,
            RatePolicyKindSpec::Percent => RatePolicyKind::Percent,
        },
        value: p.value,
        period: Seconds(p.period_seconds as u32),
    })
}
