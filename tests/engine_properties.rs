//! Properties of the engine over generated policies and observation sequences (proptest).

use proptest::prelude::*;
use tidescale::engine::{
    Behavior, Decision, Evaluator, MetricFailure, MetricPolicy, Normalization, Observation,
    OnError, PodFacts, PodValues, Policy, RatePolicy, Reading, Reason, Replicas, Seconds, Target,
    Time, Tolerance,
};

/// One step of a generated run: seconds since the previous tick, and the metric's total.
#[derive(Clone, Debug)]
struct Step {
    dt: u32,
    total: i64,
    fail: bool,
}

fn steps(max_total: i64) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (1u32..90, 0i64..max_total, prop::bool::weighted(0.2)).prop_map(|(dt, total, fail)| Step {
            dt,
            total,
            fail,
        }),
        1..40,
    )
}

/// One metric: External-style AverageValue with target 1 unit, so the proposal is the total.
fn load() -> MetricPolicy {
    MetricPolicy::new("load", Target::AverageValue(1000))
}

fn observe(current: Replicas, total_units: i64) -> Observation {
    Observation {
        current,
        status_replicas: current,
        pods: (0..current.0)
            .map(|i| PodFacts::running(format!("p{i}")))
            .collect(),
        metrics: vec![Ok(Reading::Total(total_units * 1000))],
    }
}

/// Runs the steps, applying every decision as replay does; returns (time, decision) pairs.
fn run(p: Policy, start: i32, steps: &[Step]) -> Vec<(Time, Decision)> {
    let mut e = Evaluator::new(p);
    let mut current = Replicas(start);
    let mut t = Time::from_secs(1_000);
    let mut out = Vec::new();
    for s in steps {
        t = Time(t.0 + i64::from(s.dt) * 1000);
        let d = e.evaluate(&observe(current, s.total), t);
        if d.apply {
            e.record_scale(current, d.desired, t);
            current = d.desired;
        }
        out.push((t, d));
    }
    out
}

fn behavior_strategy() -> impl Strategy<Value = Behavior> {
    (
        0u32..120,
        0u32..400,
        1i32..6,
        1i32..6,
        1u32..120,
        0u32..90,
        0u32..90,
    )
        .prop_map(
            |(up_w, down_w, up_pods, down_pods, period, up_cd, down_cd)| {
                let mut b = Behavior::hpa_default();
                b.scale_up.stabilization_window = Seconds(up_w);
                b.scale_down.stabilization_window = Seconds(down_w);
                b.scale_up.policies = vec![RatePolicy::pods(up_pods, period)];
                b.scale_down.policies = vec![RatePolicy::pods(down_pods, period)];
                b.scale_up.cooldown = Seconds(up_cd);
                b.scale_down.cooldown = Seconds(down_cd);
                b
            },
        )
}

fn policy(min: i32, max: i32, b: Option<Behavior>) -> Policy {
    let mut p = Policy::new(Replicas(min), Replicas(max), vec![load()]);
    if let Some(b) = b {
        p.normalization = Normalization::Behavior(b);
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn desired_is_always_within_bounds(
        min in 0i32..5, span in 0i32..20, start in 0i32..30,
        b in prop::option::of(behavior_strategy()), steps in steps(60),
    ) {
        let max = (min + span).max(1);
        for (_, d) in run(policy(min, max, b), start, &steps) {
            if d.reasons == [Reason::ScalingDisabled] {
                prop_assert_eq!(d.current, Replicas(0));
                continue;
            }
            prop_assert!(d.desired >= Replicas(min) && d.desired <= Replicas(max), "{}", d);
        }
    }

    /// With `behavior` set. Without it the HPA's legacy stabilization takes the max of the
    /// last five minutes' recommendations, which may exceed the current count after a
    /// rate-limited scale-up; the engine keeps that (HPA-exact) behaviour.
    #[test]
    fn a_ratio_within_tolerance_never_changes_replicas(
        current in 1i32..30, permille in 900i64..=1100, b in behavior_strategy(),
        warmup in steps(60),
    ) {
        let mut p = policy(1, 60, Some(b));
        p.metrics = vec![MetricPolicy::new("load", Target::AverageValue(1000))];
        let mut e = Evaluator::new(p);
        let mut t = Time::from_secs(1_000);
        // Arbitrary history first, without applying anything.
        for s in &warmup {
            t = Time(t.0 + i64::from(s.dt) * 1000);
            e.evaluate(&observe(Replicas(current), s.total), t);
        }
        // total / (target × current) = permille / 1000, inside [0.9, 1.1]
        let total_milli = i64::from(current) * permille;
        let mut o = observe(Replicas(current), 0);
        o.metrics = vec![Ok(Reading::Total(total_milli))];
        let d = e.evaluate(&o, Time(t.0 + 15_000));
        prop_assert_eq!(d.desired, Replicas(current), "{}", d);
    }

    #[test]
    fn proposals_are_monotonic_in_the_metric_value(
        current in 1i32..40, a in 0i64..1_000_000, b in 0i64..1_000_000, per_pod in prop::bool::ANY,
        tol_up in 0.0f64..0.5, tol_down in 0.0f64..0.5,
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        let propose = |v: i64| {
            let mut p = policy(0, i32::MAX, None);
            p.tolerance = Tolerance { up: tol_up, down: tol_down };
            let mut o = observe(Replicas(current), 0);
            o.metrics = vec![Ok(if per_pod {
                Reading::PerPod(PodValues {
                    values: vec![Some(v); current as usize],
                    extra: Vec::new(),
                    timestamp: Time(0),
                    window: Seconds(60),
                })
            } else {
                Reading::Total(v)
            })];
            let d = Evaluator::new(p).evaluate(&o, Time(0));
            d.proposals[0].replicas
        };
        prop_assert!(propose(lo) <= propose(hi), "{} at {} vs {} at {}", propose(lo).0, lo, propose(hi).0, hi);
    }

    #[test]
    fn no_scale_down_until_every_recent_recommendation_is_below_current(
        window in 0u32..300, start in 1i32..20, steps in steps(25),
    ) {
        let mut b = Behavior::hpa_default();
        b.scale_down.stabilization_window = Seconds(window);
        let mut p = policy(1, 30, Some(b));
        p.tolerance = Tolerance { up: 0.0, down: 0.0 };
        let mut recs: Vec<(Time, Replicas)> = Vec::new();
        let mut first = true;
        for (t, d) in run(p, start, &steps) {
            if first {
                recs.push((t, d.current));
                first = false;
            }
            let raw = d.proposals[0].replicas;
            if d.desired < d.current {
                let cutoff = Time(t.0 - i64::from(window) * 1000);
                for (rt, r) in recs.iter().filter(|(rt, _)| *rt > cutoff) {
                    prop_assert!(*r < d.current, "rec {} at {:?} ≥ current {}: {}", r, rt, d.current, d);
                }
                prop_assert!(raw < d.current);
            }
            recs.push((t, raw));
        }
    }

    #[test]
    fn rate_policies_bound_the_change_within_each_period(
        b in behavior_strategy(), start in 1i32..30, steps in steps(80),
    ) {
        let mut b = b;
        b.scale_up.cooldown = Seconds(0);
        b.scale_down.cooldown = Seconds(0);
        let (up, down, period) = (b.scale_up.policies[0].value, b.scale_down.policies[0].value,
            b.scale_up.policies[0].period);
        let mut events: Vec<(Time, i32)> = Vec::new();
        for (t, d) in run(policy(1, 100, Some(b)), start, &steps) {
            if !d.apply {
                continue;
            }
            events.push((t, d.desired.0 - d.current.0));
            let cutoff = Time(t.0 - period.as_millis());
            let net: i32 = events.iter().filter(|(et, _)| *et > cutoff).map(|(_, c)| c).sum();
            if d.desired > d.current {
                prop_assert!(net <= up, "net +{} in {} > {}: {}", net, period, up, d);
            } else {
                prop_assert!(net >= -down, "net {} in {} < -{}: {}", net, period, down, d);
            }
        }
    }

    #[test]
    fn cooldowns_are_never_violated(b in behavior_strategy(), start in 1i32..30, steps in steps(80)) {
        let (up_cd, down_cd) = (b.scale_up.cooldown, b.scale_down.cooldown);
        let mut last: Option<Time> = None;
        for (t, d) in run(policy(1, 100, Some(b)), start, &steps) {
            if !d.apply {
                continue;
            }
            let cooldown = if d.desired > d.current { up_cd } else { down_cd };
            if let Some(prev) = last {
                prop_assert!(t.0 - prev.0 >= cooldown.as_millis(), "{} after {:?}: {}", t.0, prev, d);
            }
            last = Some(t);
        }
    }

    #[test]
    fn hold_never_scales_down_on_a_failed_metric(
        start in 1i32..30, b in prop::option::of(behavior_strategy()), steps in steps(60),
    ) {
        let mut p = policy(1, 60, b);
        p.metrics.push(MetricPolicy::new("other", Target::Value(1000)));
        p.on_error = OnError::Hold;
        let mut e = Evaluator::new(p);
        let mut current = Replicas(start);
        let mut t = Time::from_secs(1_000);
        for (i, s) in steps.iter().enumerate() {
            t = Time(t.0 + i64::from(s.dt) * 1000);
            let mut o = observe(current, s.total);
            o.metrics.push(if s.fail {
                Err(MetricFailure("boom".into()))
            } else {
                Ok(Reading::Total(1000))
            });
            if i % 7 == 3 {
                o.metrics[0] = Err(MetricFailure("down".into()));
            }
            let d = e.evaluate(&o, t);
            let failed = o.metrics.iter().any(Result::is_err);
            if failed {
                prop_assert!(d.desired >= d.current, "{}", d);
            }
            if d.apply {
                e.record_scale(current, d.desired, t);
                current = d.desired;
            }
        }
    }
}
