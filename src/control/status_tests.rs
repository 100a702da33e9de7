//! Status and events from ticks: the HPA's conditions, transition times, write suppression.

use std::sync::Arc;

use super::*;
use crate::engine::{Proposal, Replicas};

fn tracker() -> StatusTracker {
    let targets = BTreeMap::from([("rps".to_string(), "100/pod".to_string())]);
    let sources = BTreeMap::from([("rps".to_string(), "Pods")]);
    StatusTracker::new(Some(3), targets, sources, None, Duration::from_secs(30))
}

fn record(current: i32, desired: i32, applied: bool, reason: &'static str) -> TickRecord {
    TickRecord {
        t: 0.0,
        current,
        desired,
        applied,
        ready: current,
        reason,
        line: format!("rps → {desired}"),
        metrics: BTreeMap::from([("rps".to_string(), Ok(250.0))]),
        error: None,
    }
}

fn proposal(per_pod_milli: i64, replicas: i32) -> Proposal {
    Proposal {
        metric: Arc::from("rps"),
        replicas: Replicas(replicas),
        ratio: per_pod_milli as f64 / 100_000.0,
        usage: Usage::PerPod(per_pod_milli),
        target: Target::AverageValue(100_000),
        within_tolerance: false,
        demand: f64::from(replicas),
    }
}

fn decision(current: i32, desired: i32, reasons: Vec<Reason>, per_pod: i64) -> Decision {
    Decision {
        current: Replicas(current),
        desired: Replicas(desired),
        proposals: vec![proposal(per_pod, desired)],
        reasons,
        apply: current != desired,
    }
}

fn cond<'a>(s: &'a ScalingPolicyStatus, kind: &str) -> &'a PolicyCondition {
    s.conditions.iter().find(|c| c.kind == kind).unwrap()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000 + secs)
}

#[tokio::test(start_paused = true)]
async fn a_rescale_writes_status_and_one_successful_rescale_event() {
    let mut t = tracker();
    let t0 = crate::clock::now();
    let d = decision(2, 5, vec![], 250_000);
    let u = t.tick(&record(2, 5, true, "Proposed"), Some(&d), t0, at(0));
    let s = u.status.expect("the first tick writes");
    assert_eq!(
        (
            s.current_replicas,
            s.desired_replicas,
            s.observed_generation
        ),
        (Some(2), Some(5), Some(3))
    );
    assert_eq!(s.last_scale_time.as_deref(), Some("2026-05-28T20:26:40Z"));
    assert_eq!(
        s.current_metrics,
        vec![MetricStatus {
            name: "rps".into(),
            value: Some("250".into()),
            target: Some("100/pod".into())
        }]
    );
    assert_eq!(cond(&s, "AbleToScale").reason, "SucceededRescale");
    assert_eq!(cond(&s, "ScalingActive").reason, "ValidMetricFound");
    assert_eq!(cond(&s, "ScalingLimited").reason, "DesiredWithinRange");
    assert_eq!(cond(&s, "Ready").status, "True");
    assert_eq!(
        u.events,
        vec![PolicyEvent::normal(
            "SuccessfulRescale",
            "New size: 5; reason: rps above target"
        )]
    );
    let kinds: Vec<&str> = s.conditions.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, CONDITION_TYPES);
}

#[tokio::test(start_paused = true)]
async fn unchanged_ticks_write_metric_values_at_most_every_refresh_and_transitions_keep_their_time()
{
    let mut t = tracker();
    let t0 = crate::clock::now();
    let d = decision(5, 5, vec![], 100_000);
    assert!(
        t.tick(&record(5, 5, false, "Unchanged"), Some(&d), t0, at(0))
            .status
            .is_some()
    );
    let d2 = decision(5, 5, vec![], 101_000);
    let u = t.tick(
        &record(5, 5, false, "Unchanged"),
        Some(&d2),
        t0 + Duration::from_secs(5),
        at(5),
    );
    assert!(
        u.status.is_none(),
        "only a metric value changed, within the refresh"
    );
    let u = t.tick(
        &record(5, 5, false, "Unchanged"),
        Some(&d2),
        t0 + Duration::from_secs(31),
        at(31),
    );
    assert!(u.status.is_some(), "the refresh is due");
    let limited = decision(
        5,
        10,
        vec![Reason::Bounds {
            min: Replicas(1),
            max: Replicas(10),
            before: Replicas(14),
            replicas: Replicas(10),
        }],
        280_000,
    );
    let u = t.tick(
        &record(5, 10, true, "Clamped"),
        Some(&limited),
        t0 + Duration::from_secs(32),
        at(32),
    );
    let s = u.status.expect("a condition changed: written at once");
    let l = cond(&s, "ScalingLimited");
    assert_eq!(
        (l.status.as_str(), l.reason.as_str()),
        ("True", "TooManyReplicas")
    );
    assert_eq!(
        l.last_transition_time.as_deref(),
        Some("2026-05-28T20:27:12Z")
    );
    assert_eq!(
        cond(&s, "Ready").last_transition_time.as_deref(),
        Some("2026-05-28T20:26:40Z")
    );
}

#[tokio::test(start_paused = true)]
async fn failures_set_false_conditions_with_the_hpa_reasons() {
    let mut t = tracker();
    let t0 = crate::clock::now();
    let failed = Decision {
        current: Replicas(3),
        desired: Replicas(3),
        proposals: vec![],
        reasons: vec![
            Reason::MetricFailed {
                metric: Arc::from("rps"),
                error: "connection refused".into(),
            },
            Reason::HeldOnError {
                all_failed: true,
                replicas: Replicas(3),
            },
        ],
        apply: false,
    };
    let mut r = record(3, 3, false, "HeldOnError");
    r.metrics
        .insert("rps".into(), Err("connection refused".into()));
    let u = t.tick(&r, Some(&failed), t0, at(0));
    let s = u.status.unwrap();
    let a = cond(&s, "ScalingActive");
    assert_eq!(
        (a.status.as_str(), a.reason.as_str()),
        ("False", "FailedGetPodsMetric")
    );
    assert!(
        a.message
            .starts_with("the HPA was unable to compute the replica count: rps"),
        "{}",
        a.message
    );
    assert_eq!(
        u.events,
        vec![PolicyEvent::warning(
            "FailedGetPodsMetric",
            "rps: connection refused"
        )]
    );
    let again = t.tick(&r, Some(&failed), t0 + Duration::from_secs(1), at(1));
    assert!(again.events.is_empty(), "the same warning is deduplicated");

    let mut gone = record(0, 0, false, "TargetNotFound");
    gone.error = Some("Deployment/shop/web not found: deployments.apps \"web\" not found".into());
    let u = t.tick(&gone, None, t0 + Duration::from_secs(2), at(2));
    let s = u.status.unwrap();
    assert_eq!(cond(&s, "Ready").reason, "TargetNotFound");
    assert_eq!(cond(&s, "AbleToScale").reason, "FailedGetScale");
    assert_eq!(s.reason.as_deref(), Some("TargetNotFound"));
}

#[tokio::test(start_paused = true)]
async fn an_invalid_spec_lists_every_problem_in_ready_false() {
    let mut t = tracker();
    let why = NotReady::InvalidSpec(vec![
        "spec.maxReplicas: must be ≥ minReplicas".into(),
        "spec.metrics: at least one".into(),
    ]);
    let u = t.not_ready(&why, crate::clock::now(), at(0));
    let s = u.status.unwrap();
    let r = cond(&s, "Ready");
    assert_eq!(
        (r.status.as_str(), r.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert_eq!(
        r.message,
        "spec.maxReplicas: must be ≥ minReplicas; spec.metrics: at least one"
    );
    assert_eq!(u.events.len(), 1);
    assert!(
        t.not_ready(&why, crate::clock::now(), at(1))
            .status
            .is_none(),
        "nothing changed"
    );
}
