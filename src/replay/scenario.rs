//! The replay scenario file (spec/scaling-policy.md "Replay"): parsing, checking every tick,
//! and turning ticks into engine observations.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::engine::{
    MetricFailure, Observation, PodFacts, PodPhase, PodValues, Policy, Reading, ReadyCondition,
    Replicas, Requests, Seconds, Time,
};
use crate::metric::Quantity;
use crate::spec::{Problem, ScalingPolicySpec, parse_policy_value, yaml_value};

/// The default window of a per-pod reading when a tick does not give one (R1.38).
const DEFAULT_WINDOW: Seconds = Seconds(60);

/// A checked scenario, ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The policy's spec as written.
    pub spec: ScalingPolicySpec,
    /// The validated policy.
    pub policy: Policy,
    /// The target's `spec.replicas` before the first tick.
    pub replicas: Replicas,
    /// The ticks, in time order.
    pub ticks: Vec<Tick>,
}

/// One tick as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tick {
    /// Seconds since the start; strictly increasing.
    pub t: f64,
    /// What the target really has now; otherwise the last applied decision.
    #[serde(default)]
    pub replicas: Option<i32>,
    /// Per-pod facts; otherwise every current replica is a running, ready pod.
    #[serde(default)]
    pub pods: Option<Vec<PodEntry>>,
    /// Readings keyed by metric name.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricEntry>,
}

/// One pod's facts. Times are seconds on the scenario's timeline (negative = before the start).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodEntry {
    /// The pod's name, unique within the tick.
    pub name: String,
    /// Default `Running`.
    #[serde(default)]
    pub phase: Option<Phase>,
    /// The Ready condition; default true for a Running pod, false otherwise.
    #[serde(default)]
    pub ready: Option<bool>,
    /// `status.startTime`; default: long before the scenario.
    #[serde(default)]
    pub started: Option<f64>,
    /// When Ready last changed; default: when the pod started.
    #[serde(default)]
    pub ready_since: Option<f64>,
    /// The pod is being deleted (ignored by the arithmetic).
    #[serde(default)]
    pub deleting: bool,
    /// Requests by resource (`cpu`, `memory`). A pod without requests takes those of the first
    /// pod of the tick that has them: pods of one workload share their template.
    #[serde(default)]
    pub requests: Option<BTreeMap<String, Quantity>>,
}

/// A pod phase as Kubernetes writes it.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum Phase {
    /// Not yet running.
    Pending,
    /// Running.
    Running,
    /// Finished.
    Succeeded,
    /// Failed.
    Failed,
    /// Unknown.
    Unknown,
}

/// One metric's reading in a tick: exactly one of `pods`, `value`, `error`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricEntry {
    /// Per-pod readings by pod name.
    #[serde(default)]
    pub pods: Option<BTreeMap<String, Quantity>>,
    /// One reading: the sum for `AverageValue`, the value for `Value`.
    #[serde(default)]
    pub value: Option<Quantity>,
    /// A failed read.
    #[serde(default)]
    pub error: Option<String>,
    /// The window per-pod readings were computed over, in seconds (CPU readiness); default 60.
    #[serde(default)]
    pub window: Option<u32>,
}

/// Why a scenario cannot run: every problem found, each with its location.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// All problems.
    pub problems: Vec<Problem>,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid scenario ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Parses and checks a scenario, reporting every problem at once.
pub fn parse_scenario(text: &str) -> Result<Scenario, ScenarioError> {
    let fail = |problems| Err(ScenarioError { problems });
    let value = match yaml_value(text) {
        Ok(v) => v,
        Err(e) => return fail(vec![Problem::new("(file)", e)]),
    };
    let Some(map) = value.as_object() else {
        return fail(vec![Problem::new(
            "(file)",
            "expected a mapping with policy, replicas and ticks",
        )]);
    };
    let mut problems = Vec::new();
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "policy" | "replicas" | "ticks" | "description"
        ) {
            problems.push(Problem::new(
                "(scenario)",
                format!(
                    "unknown field `{key}`, expected one of policy, replicas, ticks, description"
                ),
            ));
        }
    }
    let policy = match map.get("policy") {
        None => {
            problems.push(Problem::new("(scenario)", "missing field `policy`"));
            None
        }
        Some(v) => match parse_policy_value(v, "policy") {
            Ok(p) => Some(p),
            Err(e) => {
                problems.extend(e.problems);
                None
            }
        },
    };
    let replicas = parse_replicas(map, &mut problems);
    // Metric names straight from the document, so ticks are checked even when the policy is not.
    let named_metrics = metric_names(map);
    let known: BTreeSet<&str> = named_metrics.iter().flatten().copied().collect();
    let ticks = match map.get("ticks") {
        None => {
            problems.push(Problem::new("(scenario)", "missing field `ticks`"));
            Vec::new()
        }
        Some(Value::Array(items)) => {
            if items.is_empty() {
                problems.push(Problem::new("ticks", "at least one tick is required"));
            }
            let known = named_metrics.is_some().then_some(&known);
            parse_ticks(items, known, &mut problems)
        }
        Some(other) => {
            problems.push(Problem::new(
                "ticks",
                format!("expected a list, got {other}"),
            ));
            Vec::new()
        }
    };
    match (policy, replicas) {
        (Some((spec, policy)), Some(replicas)) if problems.is_empty() => Ok(Scenario {
            spec,
            policy,
            replicas,
            ticks,
        }),
        _ => fail(problems),
    }
}

/// The scenario's starting count.
fn parse_replicas(map: &Map<String, Value>, problems: &mut Vec<Problem>) -> Option<Replicas> {
    let Some(v) = map.get("replicas") else {
        problems.push(Problem::new("(scenario)", "missing field `replicas`"));
        return None;
    };
    match v.as_i64() {
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Some(Replicas(n as i32)),
        _ => {
            problems.push(Problem::new(
                "replicas",
                format!("expected a count ≥ 0, got {v}"),
            ));
            None
        }
    }
}

/// The names of the policy's metrics as written (`None` when the document has no list).
fn metric_names(map: &Map<String, Value>) -> Option<Vec<&str>> {
    let policy_doc = map.get("policy");
    let spec_doc = policy_doc.and_then(|p| p.get("spec")).or(policy_doc);
    let metrics = spec_doc
        .and_then(|s| s.get("metrics"))
        .and_then(Value::as_array)?;
    Some(
        metrics
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str))
            .collect(),
    )
}

fn parse_ticks(
    items: &[Value],
    known: Option<&BTreeSet<&str>>,
    problems: &mut Vec<Problem>,
) -> Vec<Tick> {
    let mut ticks = Vec::with_capacity(items.len());
    let mut last_t: Option<f64> = None;
    for (i, item) in items.iter().enumerate() {
        let path = format!("ticks[{i}]");
        let tick: Tick = match serde_path_to_error::deserialize(item) {
            Ok(t) => t,
            Err(e) => {
                let inner = e.path().to_string();
                let at = if inner == "." {
                    path.clone()
                } else {
                    format!("{path}.{inner}")
                };
                problems.push(Problem::new(at, e.into_inner().to_string()));
                continue;
            }
        };
        if !tick.t.is_finite() {
            problems.push(Problem::new(format!("{path}.t"), "must be a number"));
        } else if let Some(prev) = last_t
            && tick.t <= prev
        {
            problems.push(Problem::new(
                format!("{path}.t"),
                format!("{} is not after the previous tick's {prev}", tick.t),
            ));
        }
        last_t = Some(tick.t);
        if let Some(r) = tick.replicas
            && r < 0
        {
            problems.push(Problem::new(
                format!("{path}.replicas"),
                format!("must be ≥ 0, got {r}"),
            ));
        }
        check_pods(&tick, &path, problems);
        check_metrics(&tick, &path, known, problems);
        ticks.push(tick);
    }
    ticks
}

/// A tick's pods: unique names, and requests of cpu or memory that are not negative.
fn check_pods(tick: &Tick, path: &str, problems: &mut Vec<Problem>) {
    let Some(pods) = &tick.pods else { return };
    let mut names = BTreeSet::new();
    for (j, p) in pods.iter().enumerate() {
        if !names.insert(p.name.as_str()) {
            problems.push(Problem::new(
                format!("{path}.pods[{j}].name"),
                format!("duplicate pod name {:?}", p.name),
            ));
        }
        for (res, q) in p.requests.iter().flatten() {
            if res != "cpu" && res != "memory" {
                problems.push(Problem::new(
                    format!("{path}.pods[{j}].requests.{res}"),
                    "unknown resource (expected cpu or memory)",
                ));
            } else if q.is_negative() {
                problems.push(Problem::new(
                    format!("{path}.pods[{j}].requests.{res}"),
                    format!("must not be negative, got {q}"),
                ));
            }
        }
    }
}

/// A tick's readings: metrics the policy names, each a value, per-pod values or an error.
fn check_metrics(
    tick: &Tick,
    path: &str,
    known: Option<&BTreeSet<&str>>,
    problems: &mut Vec<Problem>,
) {
    for (name, m) in &tick.metrics {
        let mpath = format!("{path}.metrics.{name}");
        if let Some(known) = known
            && !known.contains(name.as_str())
        {
            problems.push(Problem::new(
                mpath.clone(),
                "no metric of this name in the policy",
            ));
        }
        let given = [m.pods.is_some(), m.value.is_some(), m.error.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            problems.push(Problem::new(
                mpath,
                "give exactly one of pods (per-pod readings), value, error",
            ));
        }
    }
}

fn time_of(secs: f64) -> Time {
    Time::from_millis((secs * 1000.0).round() as i64)
}

/// Long before any scenario: pods without a start time started here.
const LONG_AGO: Time = Time(i64::MIN / 4);

impl Tick {
    /// The tick's time on the engine's timeline.
    pub fn time(&self) -> Time {
        time_of(self.t)
    }

    /// The observation of this tick for a target at `current` replicas.
    pub fn observation(&self, policy: &Policy, current: Replicas) -> Observation {
        let pods = match &self.pods {
            Some(list) => pod_facts(list),
            None => self.synthetic_pods(current),
        };
        let metrics = policy
            .metrics
            .iter()
            .map(|m| match self.metrics.get(&*m.name) {
                None => Err(MetricFailure("no reading in this tick".into())),
                Some(entry) => self.reading(entry, &pods),
            })
            .collect();
        Observation {
            current,
            status_replicas: current,
            pods,
            metrics,
        }
    }

    fn reading(&self, entry: &MetricEntry, pods: &[PodFacts]) -> Result<Reading, MetricFailure> {
        if let Some(e) = &entry.error {
            return Err(MetricFailure(e.clone()));
        }
        if let Some(v) = entry.value {
            return Ok(Reading::Total(v.milli_value()));
        }
        let by_pod = entry.pods.as_ref().map_or(&EMPTY, |p| p);
        let values = pods
            .iter()
            .map(|p| by_pod.get(&p.name).map(Quantity::milli_value))
            .collect();
        let extra = by_pod
            .iter()
            .filter(|(name, _)| !pods.iter().any(|p| &p.name == *name))
            .map(|(_, q)| q.milli_value())
            .collect();
        Ok(Reading::PerPod(PodValues {
            values,
            extra,
            timestamp: self.time(),
            window: entry.window.map_or(DEFAULT_WINDOW, Seconds),
        }))
    }

    /// Without a pod list every current replica is a running, ready pod; pods named in
    /// per-pod readings take the first names, so their values line up.
    fn synthetic_pods(&self, current: Replicas) -> Vec<PodFacts> {
        let named: BTreeSet<&str> = self
            .metrics
            .values()
            .filter_map(|m| m.pods.as_ref())
            .flat_map(|p| p.keys().map(String::as_str))
            .collect();
        let n = current.0.max(0) as usize;
        let mut pods: Vec<PodFacts> = named.into_iter().take(n).map(PodFacts::running).collect();
        let mut i = 0;
        while pods.len() < n {
            i += 1;
            let name = format!("replica-{i}");
            if !pods.iter().any(|p| p.name == name) {
                pods.push(PodFacts::running(name));
            }
        }
        for p in &mut pods {
            p.started = Some(LONG_AGO);
            p.ready = Some(ReadyCondition {
                status: true,
                since: LONG_AGO,
            });
        }
        pods
    }
}

static EMPTY: BTreeMap<String, Quantity> = BTreeMap::new();

fn pod_facts(list: &[PodEntry]) -> Vec<PodFacts> {
    let template = list
        .iter()
        .find_map(|p| p.requests.as_ref())
        .map(requests_of)
        .unwrap_or_default();
    list.iter()
        .map(|p| {
            let phase = match p.phase.unwrap_or(Phase::Running) {
                Phase::Pending => PodPhase::Pending,
                Phase::Running => PodPhase::Running,
                Phase::Succeeded => PodPhase::Succeeded,
                Phase::Failed => PodPhase::Failed,
                Phase::Unknown => PodPhase::Unknown,
            };
            let started = p.started.map_or(LONG_AGO, time_of);
            let ready = p.ready.unwrap_or(phase == PodPhase::Running);
            PodFacts {
                name: p.name.clone(),
                phase,
                deleting: p.deleting,
                started: Some(started),
                ready: Some(ReadyCondition {
                    status: ready,
                    since: p.ready_since.map_or(started, time_of),
                }),
                requests: p.requests.as_ref().map_or(template, requests_of),
            }
        })
        .collect()
}

fn requests_of(r: &BTreeMap<String, Quantity>) -> Requests {
    Requests {
        cpu: r.get("cpu").map(Quantity::milli_value),
        memory: r.get("memory").map(Quantity::milli_value),
    }
}
