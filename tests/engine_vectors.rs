//! The test vectors of spec/k8s-contracts.md §4.4.5 and §4.8, one named test each, plus the
//! engine's other rules (shortcuts, failures, readiness, cooldowns, dry run).

use tidescale::engine::{
    Behavior, Decision, Evaluator, MetricFailure, MetricPolicy, Normalization, Observation,
    OnError, PodFacts, PodPhase, PodValues, Policy, RatePolicy, Reading, ReadyCondition, Reason,
    Replicas, Requests, Resource, Seconds, SelectPolicy, Target, Time, Usage,
};

const T0: i64 = 1_000_000;

fn now(secs: i64) -> Time {
    Time::from_secs(T0 + secs)
}

fn pod(name: &str, cpu_request_milli: i64) -> PodFacts {
    PodFacts {
        requests: Requests {
            cpu: Some(cpu_request_milli),
            memory: None,
        },
        ..PodFacts::running(name)
    }
}

fn pods(n: usize, cpu_request_milli: i64) -> Vec<PodFacts> {
    (0..n)
        .map(|i| pod(&format!("p{i}"), cpu_request_milli))
        .collect()
}

fn per_pod(values: &[Option<i64>], at: Time) -> Reading {
    Reading::PerPod(PodValues {
        values: values.to_vec(),
        extra: Vec::new(),
        timestamp: at,
        window: Seconds(60),
    })
}

fn obs(
    current: i32,
    pods: Vec<PodFacts>,
    metrics: Vec<Result<Reading, MetricFailure>>,
) -> Observation {
    Observation {
        current: Replicas(current),
        status_replicas: Replicas(current),
        pods,
        metrics,
    }
}

fn policy(min: i32, max: i32, metrics: Vec<MetricPolicy>) -> Policy {
    Policy::new(Replicas(min), Replicas(max), metrics)
}

fn with_behavior(mut p: Policy, b: Behavior) -> Policy {
    p.normalization = Normalization::Behavior(b);
    p
}

fn cpu(u: i32) -> MetricPolicy {
    MetricPolicy::new("cpu", Target::Utilization(u)).on(Resource::Cpu)
}

fn eval(p: Policy, o: &Observation) -> Decision {
    Evaluator::new(p).evaluate(o, now(0))
}

fn proposal(d: &Decision) -> i32 {
    assert_eq!(d.proposals.len(), 1, "{d}");
    d.proposals[0].replicas.0
}

// ---- §4.4.5 ----

#[test]
fn v4_4_5_cpu_utilization() {
    let o = obs(3, pods(3, 200), vec![Ok(per_pod(&[Some(300); 3], now(0)))]);
    let d = eval(policy(1, 50, vec![cpu(50)]), &o);
    assert_eq!(proposal(&d), 9, "{d}");
    assert_eq!(d.proposals[0].ratio, 3.0);
    assert!(d.to_string().starts_with("cpu 150% vs 50% → 9"), "{d}");
}

#[test]
fn v4_4_5_cpu_truncation() {
    let o = obs(1, pods(1, 200), vec![Ok(per_pod(&[Some(101)], now(0)))]);
    let d = eval(policy(1, 50, vec![cpu(50)]), &o);
    assert_eq!(proposal(&d), 1, "{d}");
    assert_eq!(d.proposals[0].ratio, 1.0);
    assert!(d.proposals[0].within_tolerance);
    assert_eq!(d.desired, Replicas(1));
}

#[test]
fn v4_4_5_tolerance_edge_is_inclusive() {
    // utilization 55% vs 50%: ratio exactly 1.1
    let o = obs(4, pods(4, 100), vec![Ok(per_pod(&[Some(55); 4], now(0)))]);
    let d = eval(policy(1, 50, vec![cpu(50)]), &o);
    assert_eq!(d.proposals[0].ratio, 1.1);
    assert_eq!(proposal(&d), 4, "{d}");
    // 56% is outside: ceil(1.12 × 4) = 5
    let o = obs(4, pods(4, 100), vec![Ok(per_pod(&[Some(56); 4], now(0)))]);
    assert_eq!(proposal(&eval(policy(1, 50, vec![cpu(50)]), &o)), 5);
    // and 0.9 below: 45% keeps the count
    let o = obs(4, pods(4, 100), vec![Ok(per_pod(&[Some(45); 4], now(0)))]);
    assert_eq!(proposal(&eval(policy(1, 50, vec![cpu(50)]), &o)), 4);
}

#[test]
fn v4_4_5_missing_pod_scale_up() {
    let o = obs(
        4,
        pods(4, 100),
        vec![Ok(per_pod(
            &[Some(200), Some(200), Some(200), None],
            now(0),
        ))],
    );
    let d = eval(policy(1, 50, vec![cpu(100)]), &o);
    assert_eq!(d.proposals[0].ratio, 2.0);
    assert_eq!(proposal(&d), 6, "{d}");
}

#[test]
fn v4_4_5_pods_average_value() {
    let m = MetricPolicy::new("rps", Target::AverageValue(10_000));
    let o = obs(
        3,
        pods(3, 100),
        vec![Ok(per_pod(&[Some(15_000); 3], now(0)))],
    );
    let d = eval(policy(1, 50, vec![m]), &o);
    assert_eq!(d.proposals[0].ratio, 1.5);
    assert_eq!(proposal(&d), 5, "{d}");
    assert!(d.to_string().starts_with("rps 15/pod vs 10 → 5"), "{d}");
}

#[test]
fn v4_4_5_external_average_value() {
    let m = MetricPolicy::new("queue", Target::AverageValue(10_000));
    let o = obs(3, pods(3, 100), vec![Ok(Reading::Total(40_000 + 55_000))]);
    let d = eval(policy(1, 50, vec![m]), &o);
    assert!((d.proposals[0].ratio - 95.0 / 30.0).abs() < 1e-12);
    assert_eq!(proposal(&d), 10, "{d}");
    // The HPA's status averageValue: ceil(95000m / 3) = 31667m.
    assert_eq!(
        d.proposals[0].usage,
        Usage::TotalPerReplica {
            total: 95_000,
            per_replica: Some(31_667)
        }
    );
    assert_eq!(tidescale::engine::fmt_milli(31_667).to_string(), "31667m");
}

#[test]
fn v4_4_5_external_value() {
    let m = MetricPolicy::new("queue", Target::Value(10_000));
    let o = obs(3, pods(3, 100), vec![Ok(Reading::Total(95_000))]);
    let d = eval(policy(1, 50, vec![m]), &o);
    assert_eq!(d.proposals[0].ratio, 9.5);
    assert_eq!(proposal(&d), 29, "{d}");
}

#[test]
fn v4_4_5_object_average_value() {
    let m = MetricPolicy::new("obj", Target::AverageValue(100_000));
    let o = obs(2, pods(2, 100), vec![Ok(Reading::Total(300_000))]);
    let d = eval(policy(1, 50, vec![m]), &o);
    assert_eq!(d.proposals[0].ratio, 1.5);
    assert_eq!(proposal(&d), 3, "{d}");
}

#[test]
fn v4_4_5_object_value() {
    let m = MetricPolicy::new("obj", Target::Value(100_000));
    let o = obs(2, pods(2, 100), vec![Ok(Reading::Total(300_000))]);
    let d = eval(policy(1, 50, vec![m]), &o);
    assert_eq!(d.proposals[0].ratio, 3.0);
    assert_eq!(proposal(&d), 6, "{d}");
}

// ---- §4.8 ----

/// A metric whose proposal is exactly `d` (External AverageValue with target 1).
fn wants(d: i64) -> Observation {
    obs(0, Vec::new(), vec![Ok(Reading::Total(d * 1000))])
}

fn want_metric() -> MetricPolicy {
    MetricPolicy::new("load", Target::AverageValue(1000))
}

fn at(current: i32, mut o: Observation) -> Observation {
    o.current = Replicas(current);
    o.status_replicas = Replicas(current);
    o.pods = pods(current as usize, 100);
    o
}

#[test]
fn v4_8_default_behavior_scale_up_is_rate_limited() {
    let p = with_behavior(policy(1, 50, vec![want_metric()]), Behavior::hpa_default());
    let d = eval(p, &at(3, wants(20)));
    assert_eq!(proposal(&d), 20);
    assert_eq!(d.desired, Replicas(7), "{d}");
    assert!(d.to_string().contains("rate limit Pods 4/15s → 7"), "{d}");
    assert_eq!(d.settled_by(), "RateLimited");
}

#[test]
fn v4_8_no_behavior_scale_up_is_twice_current() {
    let d = eval(policy(1, 50, vec![want_metric()]), &at(3, wants(20)));
    assert_eq!(d.desired, Replicas(6), "{d}");
}

#[test]
fn v4_8_scale_down_stabilized_by_recent_recommendations() {
    let p = with_behavior(policy(1, 50, vec![want_metric()]), Behavior::hpa_default());
    let mut e = Evaluator::new(p);
    for (t, d) in [(0, 10), (60, 8), (120, 6)] {
        let dec = e.evaluate(&at(10, wants(d)), now(t));
        assert_eq!(dec.desired, Replicas(10), "t={t}: {dec}");
    }
    let dec = e.evaluate(&at(10, wants(5)), now(180));
    assert_eq!(dec.desired, Replicas(10), "{dec}");
    assert!(matches!(
        dec.reasons
            .iter()
            .find(|r| matches!(r, Reason::Stabilized { .. })),
        Some(Reason::Stabilized {
            replicas: Replicas(10),
            ..
        })
    ));
}

fn percent_down_50_per_60() -> Behavior {
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(0);
    b.scale_down.policies = vec![RatePolicy::percent(50, 60)];
    b
}

#[test]
fn v4_8_scale_down_percent_limit() {
    let p = with_behavior(policy(1, 50, vec![want_metric()]), percent_down_50_per_60());
    let d = eval(p, &at(10, wants(2)));
    assert_eq!(d.desired, Replicas(5), "{d}");
    assert!(
        d.to_string().contains("rate limit Percent 50/60s → 5"),
        "{d}"
    );
}

#[test]
fn v4_8_scale_down_limit_counts_recent_events() {
    let p = with_behavior(policy(1, 50, vec![want_metric()]), percent_down_50_per_60());
    let mut e = Evaluator::new(p);
    let d = e.evaluate(&at(10, wants(2)), now(0));
    assert_eq!(d.desired, Replicas(5));
    e.record_scale(Replicas(10), Replicas(5), now(0));
    let d = e.evaluate(&at(5, wants(2)), now(30));
    assert_eq!(d.desired, Replicas(5), "{d}");
    // Once the event is older than the period, the next halving is allowed.
    let d = e.evaluate(&at(5, wants(2)), now(61));
    assert_eq!(d.desired, Replicas(2), "{d}");
}

#[test]
fn v4_8_select_policy_min_on_scale_down() {
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(0);
    b.scale_down.select = SelectPolicy::Min;
    b.scale_down.policies = vec![RatePolicy::pods(2, 60), RatePolicy::percent(10, 60)];
    let d = eval(
        with_behavior(policy(1, 50, vec![want_metric()]), b),
        &at(10, wants(1)),
    );
    assert_eq!(d.desired, Replicas(9), "{d}");
}

#[test]
fn v4_8_select_policy_max_on_scale_down_picks_the_biggest_change() {
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(0);
    b.scale_down.policies = vec![RatePolicy::pods(2, 60), RatePolicy::percent(10, 60)];
    let d = eval(
        with_behavior(policy(1, 50, vec![want_metric()]), b),
        &at(10, wants(1)),
    );
    assert_eq!(d.desired, Replicas(8), "{d}");
}

#[test]
fn v4_8_scale_up_disabled_holds() {
    let mut b = Behavior::hpa_default();
    b.scale_up.select = SelectPolicy::Disabled;
    let d = eval(
        with_behavior(policy(1, 50, vec![want_metric()]), b),
        &at(3, wants(20)),
    );
    assert_eq!(d.desired, Replicas(3), "{d}");
    assert!(
        d.to_string()
            .contains("scaling disabled in this direction → 3"),
        "{d}"
    );
}

#[test]
fn percent_scale_up_rounds_like_go_floats() {
    // 50 × (1 + 10/100) is 55.00000000000001 in float64: the HPA allows 56.
    let mut b = Behavior::hpa_default();
    b.scale_up.policies = vec![RatePolicy::percent(10, 15)];
    let d = eval(
        with_behavior(policy(1, 100, vec![want_metric()]), b),
        &at(50, wants(90)),
    );
    assert_eq!(d.desired, Replicas(56), "{d}");
}

// ---- shortcuts R4.3–R4.5 ----

#[test]
fn r4_3_zero_replicas_disable_scaling() {
    let d = eval(policy(1, 10, vec![want_metric()]), &at(0, wants(5)));
    assert_eq!(d.desired, Replicas(0));
    assert!(d.proposals.is_empty());
    assert_eq!(d.reasons, [Reason::ScalingDisabled]);
}

#[test]
fn r4_3_min_zero_scales_from_zero() {
    let m = MetricPolicy::new("q", Target::Value(10_000));
    let d = eval(
        policy(0, 10, vec![m]),
        &obs(0, Vec::new(), vec![Ok(Reading::Total(25_000))]),
    );
    assert_eq!(proposal(&d), 3, "{d}");
    assert_eq!(d.desired, Replicas(3));
}

#[test]
fn r4_4_above_max_goes_to_max_without_metrics() {
    let d = eval(policy(1, 10, vec![want_metric()]), &at(14, wants(50)));
    assert_eq!(d.desired, Replicas(10));
    assert!(d.proposals.is_empty());
    assert_eq!(d.to_string(), "current above max 10 → 10");
}

#[test]
fn r4_5_below_min_goes_to_min() {
    let d = eval(policy(3, 10, vec![want_metric()]), &at(1, wants(1)));
    assert_eq!(d.desired, Replicas(3));
    assert_eq!(d.to_string(), "current below min 3 → 3");
}

// ---- failures R4.14 and onMetricError ----

fn two_metrics() -> Vec<MetricPolicy> {
    vec![want_metric(), MetricPolicy::new("lat", Target::Value(100))]
}

fn failing(current: i32, d: i64) -> Observation {
    let mut o = at(current, wants(d));
    o.metrics.push(Err(MetricFailure("scrape timeout".into())));
    o
}

#[test]
fn r4_14_hold_never_scales_down_on_a_failure() {
    let d = eval(policy(1, 20, two_metrics()), &failing(6, 2));
    assert_eq!(d.desired, Replicas(6), "{d}");
    assert!(d.to_string().contains("lat failed: scrape timeout"), "{d}");
    assert!(
        d.to_string()
            .contains("hold: a metric failed and the rest would scale down → 6")
    );
}

#[test]
fn r4_14_hold_scales_up_on_the_metrics_that_answered() {
    let d = eval(policy(1, 20, two_metrics()), &failing(3, 5));
    assert_eq!(d.desired, Replicas(5), "{d}");
}

#[test]
fn r4_14_all_failed_holds() {
    let mut o = at(4, wants(1));
    o.metrics = vec![
        Err(MetricFailure("down".into())),
        Err(MetricFailure("down".into())),
    ];
    let d = eval(policy(1, 20, two_metrics()), &o);
    assert_eq!(d.desired, Replicas(4));
    assert!(
        d.to_string().ends_with("hold: no metric answered → 4"),
        "{d}"
    );
}

#[test]
fn on_error_fallback_proposes_the_fallback_count() {
    let mut p = policy(1, 20, two_metrics());
    p.on_error = OnError::Fallback(Replicas(8));
    let d = eval(p.clone(), &failing(3, 2));
    assert_eq!(d.desired, Replicas(6), "8 is limited to 2×3: {d}");
    assert!(d.to_string().contains("lat fallback → 8; max → 8"), "{d}");
    // A metric that answered with more still wins.
    let d = eval(p, &failing(10, 12));
    assert_eq!(d.desired, Replicas(12), "{d}");
}

#[test]
fn on_error_ignore_decides_on_the_rest() {
    let mut p = policy(1, 20, two_metrics());
    p.on_error = OnError::Ignore;
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(0);
    let d = eval(with_behavior(p, b), &failing(6, 2));
    assert_eq!(d.desired, Replicas(2), "{d}");
}

// ---- pod grouping §4.5 ----

#[test]
fn r4_8_failed_and_deleting_pods_are_ignored() {
    let mut ps = pods(4, 100);
    ps[2].phase = PodPhase::Failed;
    ps[3].deleting = true;
    let o = obs(
        4,
        ps,
        vec![Ok(per_pod(
            &[Some(100), Some(100), Some(900), Some(900)],
            now(0),
        ))],
    );
    let d = eval(policy(1, 50, vec![cpu(100)]), &o);
    assert_eq!(d.proposals[0].ratio, 1.0, "{d}");
    assert_eq!(proposal(&d), 4);
}

#[test]
fn r4_9_pending_pods_count_as_zero_on_scale_up() {
    let mut ps = pods(3, 100);
    ps[2].phase = PodPhase::Pending;
    let o = obs(
        3,
        ps,
        vec![Ok(per_pod(&[Some(200), Some(200), None], now(0)))],
    );
    let d = eval(policy(1, 50, vec![cpu(100)]), &o);
    // ratio 2.0; refilled: 400/300 → 133% → ceil(1.33 × 3) = 4
    assert_eq!(d.proposals[0].ratio, 2.0);
    assert_eq!(proposal(&d), 4, "{d}");
}

#[test]
fn r4_11_cpu_of_a_pod_that_just_became_ready_is_not_trusted() {
    let mut ps = pods(2, 100);
    ps[1].started = Some(now(-60));
    ps[1].ready = Some(ReadyCondition {
        status: true,
        since: now(-30),
    });
    // Sample at now; window 60 s: before readySince + window, so pod 1 is unready for CPU.
    let o = obs(
        2,
        ps.clone(),
        vec![Ok(per_pod(&[Some(300), Some(900)], now(0)))],
    );
    let d = eval(policy(1, 50, vec![cpu(100)]), &o);
    assert_eq!(d.proposals[0].ratio, 3.0, "only pod 0 counts: {d}");
    // For a non-CPU metric the same pod counts (R4.12).
    let m = MetricPolicy::new("rps", Target::AverageValue(100_000));
    let o = obs(
        2,
        ps,
        vec![Ok(per_pod(&[Some(300_000), Some(900_000)], now(0)))],
    );
    let d = eval(policy(1, 50, vec![m]), &o);
    assert_eq!(d.proposals[0].ratio, 6.0, "{d}");
}

#[test]
fn missing_requests_fail_the_metric() {
    let mut ps = pods(2, 100);
    ps[1].requests.cpu = None;
    let o = obs(2, ps, vec![Ok(per_pod(&[Some(300), Some(300)], now(0)))]);
    let d = eval(policy(1, 50, vec![cpu(100)]), &o);
    assert!(
        d.to_string().contains("missing request for cpu in pod p1"),
        "{d}"
    );
    assert_eq!(d.desired, Replicas(2));
}

#[test]
fn missing_pods_on_scale_down_count_at_the_target() {
    let m = MetricPolicy::new("rps", Target::AverageValue(100_000));
    let o = obs(
        4,
        pods(4, 100),
        vec![Ok(per_pod(
            &[Some(20_000), Some(20_000), None, None],
            now(0),
        ))],
    );
    let d = eval(policy(1, 50, vec![m]), &o);
    // ratio 0.2; refilled: (20+20+100+100)/4 = 60 → ceil(0.6 × 4) = 3
    assert_eq!(proposal(&d), 3, "{d}");
    // The legacy path stabilizes over 5 minutes, seeded with the current count.
    assert_eq!(d.desired, Replicas(4), "{d}");
}

#[test]
fn r4_16_legacy_stabilization_allows_scale_down_after_the_window() {
    let mut e = Evaluator::new(policy(1, 50, vec![want_metric()]));
    assert_eq!(e.evaluate(&at(6, wants(2)), now(0)).desired, Replicas(6));
    assert_eq!(e.evaluate(&at(6, wants(2)), now(300)).desired, Replicas(6));
    let d = e.evaluate(&at(6, wants(2)), now(301));
    assert_eq!(d.desired, Replicas(2), "{d}");
}

// ---- cooldowns, dry run, explanations ----

#[test]
fn cooldown_holds_scale_down_after_a_scale_event() {
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(0);
    b.scale_down.cooldown = Seconds(120);
    let mut e = Evaluator::new(with_behavior(policy(1, 50, vec![want_metric()]), b));
    e.record_scale(Replicas(4), Replicas(8), now(0));
    let d = e.evaluate(&at(8, wants(2)), now(100));
    assert_eq!(d.desired, Replicas(8), "{d}");
    assert!(
        d.to_string().contains("scale-down cooldown 20s left → 8"),
        "{d}"
    );
    let d = e.evaluate(&at(8, wants(2)), now(120));
    assert_eq!(d.desired, Replicas(2), "{d}");
}

#[test]
fn dry_run_decides_but_never_applies() {
    let mut p = policy(1, 50, vec![want_metric()]);
    p.dry_run = true;
    let d = eval(p, &at(3, wants(5)));
    assert_eq!(d.desired, Replicas(5));
    assert!(!d.apply);
    assert!(d.to_string().ends_with("dry run: not applied"), "{d}");
}

#[test]
fn the_explanation_reads_like_the_spec_example() {
    let metrics = vec![
        cpu(50),
        MetricPolicy::new("rps", Target::AverageValue(100_000)),
    ];
    let p = with_behavior(policy(1, 20, metrics), Behavior::hpa_default());
    let o = obs(
        3,
        pods(3, 200),
        vec![
            Ok(per_pod(&[Some(300); 3], now(0))),
            Ok(per_pod(
                &[Some(212_000), Some(212_000), Some(212_000)],
                now(0),
            )),
        ],
    );
    let d = eval(p, &o);
    assert_eq!(
        d.to_string(),
        "cpu 150% vs 50% → 9; rps 212/pod vs 100 → 7; max → 9; rate limit Pods 4/15s → 7; bounds [1,20] → 7"
    );
    assert!(d.apply);
}
