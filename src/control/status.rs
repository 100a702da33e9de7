//! What a policy's status says and which events it emits, computed from each tick: the HPA's
//! conditions and reasons (contract §4.10–§4.11), written only when they change.
//!
//! [`StatusTracker`] is plain state (it is handed the time); [`StatusSink`] is where the
//! result goes: the API server (`kube_status`) or a counter (tests, benchmarks).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;

use super::events::{EventLimiter, PolicyEvent};
use super::policy_loop::TickRecord;
use crate::clock::Instant;
use crate::engine::{Decision, Direction, Reason, Target, Usage, quantity::fmt_milli};
use crate::spec::{MetricStatus, PolicyCondition, ScalingPolicyStatus};

/// A policy's identity in the cluster (what status patches and events refer to).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl std::fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where statuses and events go.
pub trait StatusSink: Send + Sync {
    /// Replaces the policy's status.
    fn write_status<'a>(
        &'a self,
        policy: &'a PolicyRef,
        status: &'a ScalingPolicyStatus,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Publishes one event on the policy.
    fn publish<'a>(
        &'a self,
        policy: &'a PolicyRef,
        event: &'a PolicyEvent,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// A policy object as events and status writes refer to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRef {
    /// Namespace and name.
    pub key: PolicyKey,
    /// Its `metadata.uid`.
    pub uid: String,
}

/// One of the condition types a policy reports.
pub const CONDITION_TYPES: [&str; 4] = ["Ready", "AbleToScale", "ScalingActive", "ScalingLimited"];

/// Why a policy is not running a loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The spec has problems, one per line.
    InvalidSpec(Vec<String>),
    /// The target does not exist or has no scale subresource.
    TargetNotFound(String),
    /// A native HPA (or an older policy) already scales the target.
    Conflicting {
        /// `ConflictingHPA` or `ConflictingPolicy`.
        reason: &'static str,
        /// Who.
        message: String,
    },
}

/// The status of one policy, as last written, and what changed since.
#[derive(Debug)]
pub struct StatusTracker {
    generation: Option<i64>,
    written: Option<ScalingPolicyStatus>,
    written_at: Option<Instant>,
    current: ScalingPolicyStatus,
    targets: BTreeMap<String, String>,
    sources: BTreeMap<String, &'static str>,
    events: EventLimiter,
    refresh: Duration,
}

/// What a tick changed: a status to write (when it differs from the last written) and the
/// events that passed the limiter.
#[derive(Debug, Default)]
pub struct Update {
    /// The status to write, if it changed.
    pub status: Option<ScalingPolicyStatus>,
    /// Events to publish.
    pub events: Vec<PolicyEvent>,
}

impl StatusTracker {
    /// A tracker for a policy at `generation`; `targets` maps each metric to its target as
    /// text and `sources` to the HPA metric-type word of its source (`Pods`, `External`,
    /// `Resource`) for failure reasons. Metric values and explanations alone are rewritten at
    /// most every `refresh`.
    pub fn new(
        generation: Option<i64>,
        targets: BTreeMap<String, String>,
        sources: BTreeMap<String, &'static str>,
        previous: Option<ScalingPolicyStatus>,
        refresh: Duration,
    ) -> Self {
        let mut current = previous.clone().unwrap_or_default();
        current.observed_generation = generation;
        Self {
            generation,
            written: previous,
            written_at: None,
            current,
            targets,
            sources,
            events: EventLimiter::default(),
            refresh,
        }
    }

    /// The status as it stands (written or not).
    pub fn status(&self) -> &ScalingPolicyStatus {
        &self.current
    }

    /// The policy cannot run: `Ready=False` with the reason, and a warning event.
    pub fn not_ready(&mut self, why: &NotReady, now: Instant, wall: SystemTime) -> Update {
        let (reason, message) = match why {
            NotReady::InvalidSpec(p) => ("InvalidSpec", p.join("; ")),
            NotReady::TargetNotFound(m) => ("TargetNotFound", m.clone()),
            NotReady::Conflicting { reason, message } => (*reason, message.clone()),
        };
        self.set("Ready", false, reason, &message, wall);
        self.current.reason = Some(reason.to_string());
        let event = PolicyEvent::warning(reason, &message);
        self.finish(vec![event], now, true)
    }

    /// One tick of the policy's loop: its record and decision.
    pub fn tick(
        &mut self,
        record: &TickRecord,
        decision: Option<&Decision>,
        now: Instant,
        wall: SystemTime,
    ) -> Update {
        let mut events = Vec::new();
        self.current.observed_generation = self.generation;
        if let Some(err) = &record.error
            && decision.is_none()
        {
            return self.target_failed(record, err, now, wall);
        }
        self.set(
            "Ready",
            true,
            "Running",
            "the policy's loop is running",
            wall,
        );
        self.current.current_replicas = Some(record.current);
        self.current.last_decision = Some(record.line.clone());
        self.current.reason = Some(record.reason.to_string());
        if let Some(d) = decision {
            self.metrics(d, record);
            self.active(d, record, wall, &mut events);
            self.limited(d, wall);
        }
        match (&record.error, record.applied) {
            (Some(e), _) => {
                self.set("AbleToScale", false, "FailedUpdateScale", e, wall);
                let note = format!(
                    "New size: {}; reason: {}; error: {e}",
                    record.desired,
                    why(decision)
                );
                events.push(PolicyEvent::warning("FailedRescale", &note));
            }
            (None, true) => {
                self.current.desired_replicas = Some(record.desired);
                self.current.last_scale_time = Some(rfc3339(wall));
                let note = format!("New size: {}; reason: {}", record.desired, why(decision));
                self.set("AbleToScale", true, "SucceededRescale", &note, wall);
                events.push(PolicyEvent::normal("SuccessfulRescale", &note));
            }
            (None, false) => {
                self.current.desired_replicas = Some(record.desired);
                let (reason, msg) = able(decision);
                self.set("AbleToScale", true, reason, msg, wall);
            }
        }
        self.finish(events, now, false)
    }

    fn target_failed(
        &mut self,
        record: &TickRecord,
        err: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Update {
        let not_found = record.reason == "TargetNotFound";
        let reason = if not_found {
            "TargetNotFound"
        } else {
            "FailedGetScale"
        };
        if not_found {
            self.set("Ready", false, "TargetNotFound", err, wall);
        }
        self.set("AbleToScale", false, "FailedGetScale", err, wall);
        self.current.reason = Some(reason.to_string());
        self.current.last_decision = Some(record.line.clone());
        let events = vec![PolicyEvent::warning(reason, err)];
        self.finish(events, now, false)
    }

    fn metrics(&mut self, d: &Decision, record: &TickRecord) {
        let mut out = Vec::with_capacity(self.targets.len());
        for (name, target) in &self.targets {
            let value = d
                .proposals
                .iter()
                .find(|p| &*p.metric == name)
                .map(|p| usage_text(p.usage, p.target))
                .or_else(|| match record.metrics.get(name) {
                    Some(Ok(v)) => Some(format!("{v}")),
                    _ => None,
                });
            out.push(MetricStatus {
                name: name.clone(),
                value,
                target: Some(target.clone()),
            });
        }
        self.current.current_metrics = out;
    }

    fn active(
        &mut self,
        d: &Decision,
        record: &TickRecord,
        wall: SystemTime,
        events: &mut Vec<PolicyEvent>,
    ) {
        if d.reasons
            .iter()
            .any(|r| matches!(r, Reason::ScalingDisabled))
        {
            let msg = "scaling is disabled since the replica count of the target is zero";
            self.set("ScalingActive", false, "ScalingDisabled", msg, wall);
            return;
        }
        let failed: Vec<(&str, &str)> = d
            .reasons
            .iter()
            .filter_map(|r| match r {
                Reason::MetricFailed { metric, error } => Some((&**metric, error.as_str())),
                _ => None,
            })
            .collect();
        for (metric, error) in &failed {
            let kind = self.sources.get(*metric).copied().unwrap_or("External");
            let reason = format!("FailedGet{kind}Metric");
            let msg = format!("{metric}: {error}");
            events.push(PolicyEvent::warning(&reason, &msg));
        }
        let all_failed = !failed.is_empty() && failed.len() >= record.metrics.len();
        match failed.first() {
            Some((metric, error)) if all_failed || d.proposals.is_empty() => {
                let kind = self.sources.get(*metric).copied().unwrap_or("External");
                let msg =
                    format!("the HPA was unable to compute the replica count: {metric}: {error}");
                self.set(
                    "ScalingActive",
                    false,
                    &format!("FailedGet{kind}Metric"),
                    &msg,
                    wall,
                );
            }
            _ => {
                let msg = "the policy was able to successfully calculate a replica count";
                self.set("ScalingActive", true, "ValidMetricFound", msg, wall);
            }
        }
    }

    fn limited(&mut self, d: &Decision, wall: SystemTime) {
        let limit = d.reasons.iter().rev().find_map(|r| match r {
            Reason::Bounds {
                max,
                before,
                replicas,
                ..
            } if before != replicas => Some(if replicas == max {
                (
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            } else {
                (
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            }),
            Reason::AboveMax { .. } => Some((
                "TooManyReplicas",
                "the current replica count is above the maximum",
            )),
            Reason::BelowMin { .. } => Some((
                "TooFewReplicas",
                "the current replica count is below the minimum",
            )),
            Reason::RateLimited {
                direction: Direction::Up,
                ..
            } => Some((
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )),
            Reason::RateLimited {
                direction: Direction::Down,
                ..
            } => Some((
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )),
            _ => None,
        });
        match limit {
            Some((reason, msg)) => self.set("ScalingLimited", true, reason, msg, wall),
            None => self.set(
                "ScalingLimited",
                false,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
                wall,
            ),
        }
    }

    /// Sets one condition; `lastTransitionTime` moves only when the status flips.
    fn set(&mut self, kind: &str, status: bool, reason: &str, message: &str, wall: SystemTime) {
        let status = if status { "True" } else { "False" };
        let conds = &mut self.current.conditions;
        match conds.iter_mut().find(|c| c.kind == kind) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(rfc3339(wall));
                }
                c.status = status.into();
                c.reason = reason.into();
                c.message = message.into();
            }
            None => conds.push(PolicyCondition {
                kind: kind.into(),
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: Some(rfc3339(wall)),
            }),
        }
        conds.sort_by_key(|c| {
            CONDITION_TYPES
                .iter()
                .position(|t| *t == c.kind)
                .unwrap_or(9)
        });
    }

    /// Decides whether the status must be written: at once when anything but the metric
    /// values and the explanation changed, otherwise at most every `refresh`.
    fn finish(&mut self, events: Vec<PolicyEvent>, now: Instant, force: bool) -> Update {
        let events = events
            .into_iter()
            .filter(|e| self.events.admit(e, now))
            .collect();
        let changed = self.written.as_ref() != Some(&self.current);
        let semantic = match &self.written {
            None => true,
            Some(w) => {
                let strip = |s: &ScalingPolicyStatus| ScalingPolicyStatus {
                    current_metrics: vec![],
                    last_decision: None,
                    conditions: s
                        .conditions
                        .iter()
                        .map(|c| PolicyCondition {
                            message: String::new(),
                            ..c.clone()
                        })
                        .collect(),
                    ..s.clone()
                };
                strip(w) != strip(&self.current)
            }
        };
        let due = self
            .written_at
            .is_none_or(|t| now.duration_since(t) >= self.refresh);
        let status = (changed && (force || semantic || due)).then(|| {
            self.written = Some(self.current.clone());
            self.written_at = Some(now);
            self.current.clone()
        });
        Update { status, events }
    }
}

/// The rescale reason in the HPA's words.
fn why(decision: Option<&Decision>) -> String {
    let Some(d) = decision else {
        return "unknown".into();
    };
    if d.reasons
        .iter()
        .any(|r| matches!(r, Reason::AboveMax { .. }))
    {
        return "Current number of replicas above Spec.MaxReplicas".into();
    }
    if d.reasons
        .iter()
        .any(|r| matches!(r, Reason::BelowMin { .. }))
    {
        return "Current number of replicas below Spec.MinReplicas".into();
    }
    if d.desired > d.current {
        let above: Vec<String> = d
            .proposals
            .iter()
            .filter(|p| p.replicas > d.current)
            .map(|p| format!("{} above target", p.metric))
            .collect();
        if !above.is_empty() {
            return above.join(", ");
        }
    } else if d.desired < d.current {
        return "All metrics below target".into();
    }
    d.to_string()
}

/// `AbleToScale=True`'s reason when nothing was written.
fn able(decision: Option<&Decision>) -> (&'static str, &'static str) {
    let stabilized = decision.and_then(|d| {
        d.reasons.iter().find_map(|r| match r {
            Reason::Stabilized { direction, .. } => Some(*direction),
            _ => None,
        })
    });
    match stabilized {
        Some(Direction::Down) => (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        ),
        Some(Direction::Up) => (
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        ),
        None => ("ReadyForNewScale", "recommended size matches current size"),
    }
}

/// A metric's current value as the status shows it, in its target's form.
fn usage_text(usage: Usage, target: Target) -> String {
    match (usage, target) {
        (Usage::Utilization(u), _) => format!("{u}%"),
        (Usage::PerPod(v) | Usage::Total(v), _) => fmt_milli(v).to_string(),
        (
            Usage::TotalPerReplica {
                per_replica: Some(v),
                ..
            },
            Target::AverageValue(_),
        ) => fmt_milli(v).to_string(),
        (Usage::TotalPerReplica { total, .. }, _) => fmt_milli(total).to_string(),
    }
}

/// RFC 3339 in UTC, whole seconds (`metav1.Time`).
pub fn rfc3339(t: SystemTime) -> String {
    let ts = k8s_openapi::jiff::Timestamp::try_from(t)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    let secs = k8s_openapi::jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts);
    secs.to_string()
}

/// A status sink that counts what it is handed (tests, benchmarks).
#[derive(Debug, Default)]
pub struct CountingSink {
    statuses: std::sync::atomic::AtomicU64,
    events: std::sync::atomic::AtomicU64,
    last: std::sync::Mutex<BTreeMap<PolicyKey, ScalingPolicyStatus>>,
    log: std::sync::Mutex<Vec<(PolicyKey, PolicyEvent)>>,
}

impl CountingSink {
    /// Status writes and events so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.statuses.load(Relaxed), self.events.load(Relaxed))
    }

    /// The last status written for `key`.
    pub fn last(&self, key: &PolicyKey) -> Option<ScalingPolicyStatus> {
        self.last.lock().expect("sink lock").get(key).cloned()
    }

    /// Every event published, in order.
    pub fn events(&self) -> Vec<(PolicyKey, PolicyEvent)> {
        self.log.lock().expect("sink lock").clone()
    }
}

impl StatusSink for CountingSink {
    fn write_status<'a>(
        &'a self,
        policy: &'a PolicyRef,
        status: &'a ScalingPolicyStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.statuses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.last
            .lock()
            .expect("sink lock")
            .insert(policy.key.clone(), status.clone());
        Box::pin(async { Ok(()) })
    }

    fn publish<'a>(
        &'a self,
        policy: &'a PolicyRef,
        event: &'a PolicyEvent,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.events
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.log
            .lock()
            .expect("sink lock")
            .push((policy.key.clone(), event.clone()));
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
