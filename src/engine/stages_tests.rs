//! One test group per stage, each stage on its own inputs.

use super::*;
use crate::engine::observation::{MetricFailure, Reading};
use crate::engine::policy::{MetricPolicy, RatePolicy, Target};

fn r(n: i32) -> Replicas {
    Replicas(n)
}

fn policy(metrics: &[&str]) -> Policy {
    let metrics = metrics
        .iter()
        .map(|m| MetricPolicy::new(m, Target::AverageValue(100_000)))
        .collect();
    Policy::new(r(1), r(10), metrics)
}

fn proposal(metric: &str, replicas: i32) -> Outcome {
    Ok(Proposal {
        metric: metric.into(),
        replicas: r(replicas),
        ratio: 1.0,
        usage: crate::engine::Usage::Total(0),
        target: Target::Value(100_000),
        within_tolerance: false,
        demand: f64::from(replicas),
    })
}

#[test]
fn shortcut_covers_zero_above_and_below_the_bounds() {
    let p = policy(&["rps"]);
    assert_eq!(
        shortcut(&p, r(0)),
        Some((r(0), Reason::ScalingDisabled)),
        "zero with min > 0 disables scaling"
    );
    assert_eq!(
        shortcut(&p, r(12)),
        Some((r(10), Reason::AboveMax { max: r(10) }))
    );
    let mut high_min = p.clone();
    high_min.min_replicas = r(3);
    assert_eq!(
        shortcut(&high_min, r(2)),
        Some((r(3), Reason::BelowMin { min: r(3) }))
    );
    assert_eq!(shortcut(&p, r(5)), None);
}

#[test]
fn proposals_are_one_per_metric_in_policy_order() {
    let p = policy(&["a", "b", "c"]);
    let obs = Observation {
        current: r(2),
        status_replicas: r(2),
        pods: Vec::new(),
        metrics: vec![
            Ok(Reading::Total(300_000)),
            Err(MetricFailure("down".into())),
        ],
    };
    let out = proposals(&p, &obs, Time(0));
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].as_ref().map(|p| p.replicas), Ok(r(3)));
    assert_eq!(out[1], Err("down".to_string()));
    assert_eq!(
        out[2],
        Err("no reading".to_string()),
        "a missing reading is a failure"
    );
}

#[test]
fn combine_takes_the_max_and_explains_it() {
    let p = policy(&["a", "b"]);
    let mut reasons = Vec::new();
    let c = combine(
        &p,
        r(2),
        &[proposal("a", 3), proposal("b", 5)],
        &mut reasons,
    );
    assert_eq!(c, Combined::Raw(r(5)));
    assert_eq!(reasons.last(), Some(&Reason::Combined { replicas: r(5) }));
}

#[test]
fn combine_holds_a_scale_down_when_a_metric_failed_under_hold() {
    let p = policy(&["a", "b"]);
    let mut reasons = Vec::new();
    let outcomes = [proposal("a", 1), Err("timeout".to_string())];
    assert_eq!(combine(&p, r(4), &outcomes, &mut reasons), Combined::Held);
    assert_eq!(
        reasons.last(),
        Some(&Reason::HeldOnError {
            all_failed: false,
            replicas: r(4)
        })
    );
    // A scale-up still goes ahead: the failed metric could only have asked for more.
    let mut reasons = Vec::new();
    let outcomes = [proposal("a", 6), Err("timeout".to_string())];
    assert_eq!(
        combine(&p, r(4), &outcomes, &mut reasons),
        Combined::Raw(r(6))
    );
}

#[test]
fn combine_uses_the_fallback_count_for_failed_metrics() {
    let mut p = policy(&["a", "b"]);
    p.on_error = OnError::Fallback(r(7));
    let mut reasons = Vec::new();
    let outcomes = [proposal("a", 2), Err("refused".to_string())];
    assert_eq!(
        combine(&p, r(4), &outcomes, &mut reasons),
        Combined::Raw(r(7))
    );
    assert!(reasons.contains(&Reason::Fallback {
        metric: "b".into(),
        replicas: r(7)
    }));
}

#[test]
fn combine_with_every_metric_failed_holds() {
    let p = policy(&["a"]);
    let mut reasons = Vec::new();
    let c = combine(&p, r(3), &[Err("x".to_string())], &mut reasons);
    assert_eq!(c, Combined::Held);
    assert!(matches!(
        reasons.last(),
        Some(Reason::HeldOnError {
            all_failed: true,
            ..
        })
    ));
}

fn behavior(down_window: u32, up_cooldown: u32) -> Behavior {
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(down_window);
    b.scale_up.cooldown = Seconds(up_cooldown);
    b
}

#[test]
fn stabilize_keeps_the_highest_recommendation_of_the_down_window() {
    let b = behavior(60, 0);
    let mut h = History::default();
    h.seed(r(5), Time::from_secs(0));
    let (s, reason) = stabilize(&mut h, r(2), r(5), &b, Time::from_secs(10));
    assert_eq!(s, r(5));
    assert_eq!(
        reason,
        Some(Reason::Stabilized {
            direction: Direction::Down,
            window: Seconds(60),
            replicas: r(5)
        })
    );
    // After the window the low recommendation stands (the seed has expired).
    let (s, reason) = stabilize(&mut h, r(2), r(5), &b, Time::from_secs(71));
    assert_eq!((s, reason), (r(2), None));
}

#[test]
fn stabilize_legacy_uses_the_downscale_window() {
    let mut h = History::default();
    h.seed(r(4), Time::from_secs(0));
    let (s, reason) = stabilize_legacy(&mut h, r(1), Seconds(300), Time::from_secs(30));
    assert_eq!(s, r(4));
    assert!(reason.is_some());
}

#[test]
fn cooldown_holds_only_within_its_direction_and_time() {
    let b = behavior(0, 30);
    let last = Some(Time::from_secs(100));
    let (s, reason) = cooldown(r(6), r(4), last, &b, Time::from_secs(110));
    assert_eq!(s, r(4));
    assert_eq!(
        reason,
        Some(Reason::CoolingDown {
            direction: Direction::Up,
            remaining_ms: 20_000,
            replicas: r(4)
        })
    );
    assert_eq!(
        cooldown(r(6), r(4), last, &b, Time::from_secs(130)),
        (r(6), None)
    );
    assert_eq!(
        cooldown(r(2), r(4), last, &b, Time::from_secs(110)),
        (r(2), None),
        "scale-down has no cooldown here"
    );
    assert_eq!(
        cooldown(r(6), r(4), None, &b, Time::from_secs(110)),
        (r(6), None)
    );
}

#[test]
fn rate_limit_cuts_a_step_up_to_the_larger_policy() {
    let b = Behavior::hpa_default();
    let h = History::default();
    let bounds = Bounds {
        min: r(1),
        max: r(100),
    };
    // From 3: +4 pods gives 7, +100 % gives 6; Max picks 7.
    let (s, reason) = rate_limit(&h, r(20), r(3), &b, bounds, Time::from_secs(0));
    assert_eq!(s, r(7));
    assert_eq!(
        reason,
        Some(Reason::RateLimited {
            direction: Direction::Up,
            limit: RateLimit::Policy {
                kind: crate::engine::RatePolicyKind::Pods,
                value: 4,
                period: Seconds(15)
            },
            replicas: r(7)
        })
    );
    // A limit at or beyond max is left to the bounds.
    let tight = Bounds {
        min: r(1),
        max: r(7),
    };
    assert_eq!(
        rate_limit(&h, r(20), r(3), &b, tight, Time::from_secs(0)),
        (r(20), None)
    );
}

#[test]
fn rate_limit_down_counts_recent_scale_events() {
    let mut b = Behavior::hpa_default();
    b.scale_down.policies = vec![RatePolicy::pods(1, 60)];
    let mut h = History::default();
    h.record_scale(r(5), r(4), Some(&b), Time::from_secs(0));
    let bounds = Bounds {
        min: r(1),
        max: r(10),
    };
    // One pod already removed in the period: from 4 the limit is 4 − 1 + 1 − 1 = 4.
    let (s, _) = rate_limit(&h, r(2), r(4), &b, bounds, Time::from_secs(30));
    assert_eq!(s, r(4));
    let (s, _) = rate_limit(&h, r(2), r(4), &b, bounds, Time::from_secs(61));
    assert_eq!(s, r(3));
}

#[test]
fn legacy_rate_limit_is_twice_current_or_four() {
    assert_eq!(rate_limit_legacy(r(9), r(1), r(10)).0, r(4));
    assert_eq!(rate_limit_legacy(r(9), r(3), r(10)).0, r(6));
    assert_eq!(rate_limit_legacy(r(9), r(3), r(6)), (r(9), None));
}

#[test]
fn bounds_clamp_and_always_explain() {
    let b = Bounds {
        min: r(2),
        max: r(8),
    };
    assert_eq!(bounds(r(1), b).0, r(2));
    assert_eq!(bounds(r(9), b).0, r(8));
    let (n, reason) = bounds(r(5), b);
    assert_eq!(n, r(5));
    assert_eq!(
        reason,
        Reason::Bounds {
            min: r(2),
            max: r(8),
            before: r(5),
            replicas: r(5)
        }
    );
}
