//! `Evaluator::evaluate` for a realistic policy: three metrics (Utilization over 50 pods, a
//! per-pod AverageValue, a Value), 60 recommendations of history and 20 recorded scale events.
//! Goal: median ≤ 2 µs per tick.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tidescale::engine::{
    Behavior, Evaluator, MetricPolicy, Normalization, Observation, PodFacts, PodValues, Policy,
    RatePolicy, Reading, Replicas, Requests, Resource, Seconds, Target, Time,
};

const PODS: usize = 50;

fn policy() -> Policy {
    let mut b = Behavior::hpa_default();
    // Periods long enough that all 20 events stay in the window the policies look at.
    b.scale_up.policies = vec![RatePolicy::pods(4, 300), RatePolicy::percent(100, 300)];
    b.scale_down.policies = vec![RatePolicy::percent(100, 300)];
    let mut p = Policy::new(
        Replicas(1),
        Replicas(200),
        vec![
            MetricPolicy::new("cpu", Target::Utilization(50)).on(Resource::Cpu),
            MetricPolicy::new("rps", Target::AverageValue(100_000)),
            MetricPolicy::new("p95", Target::Value(250)),
        ],
    );
    p.normalization = Normalization::Behavior(b);
    p
}

fn observation(now: Time) -> Observation {
    let pods: Vec<PodFacts> = (0..PODS)
        .map(|i| PodFacts {
            requests: Requests {
                cpu: Some(200),
                memory: Some(256 * 1024 * 1024 * 1000),
            },
            ..PodFacts::running(format!("web-{i}"))
        })
        .collect();
    let per_pod = |f: &dyn Fn(usize) -> i64| {
        Reading::PerPod(PodValues {
            values: (0..PODS).map(|i| Some(f(i))).collect(),
            extra: Vec::new(),
            timestamp: now,
            window: Seconds(15),
        })
    };
    Observation {
        current: Replicas(PODS as i32),
        status_replicas: Replicas(PODS as i32),
        metrics: vec![
            Ok(per_pod(&|i| 150 + (i as i64 % 7) * 3)),
            Ok(per_pod(&|i| 120_000 + (i as i64 % 5) * 1000)),
            Ok(Reading::Total(310)),
        ],
        pods,
    }
}

/// An evaluator with 60 recommendations (one per 5 s) and 20 scale events in its memory.
fn warmed_up(now: Time) -> Evaluator {
    let mut e = Evaluator::new(policy());
    let start = now.0 - 61 * 5_000;
    let obs = observation(now);
    for i in 0..60 {
        let t = Time(start + i * 5_000);
        let _ = e.evaluate(&obs, t);
    }
    for i in 0..20 {
        let t = Time(now.0 - 100_000 + i * 5_000);
        let (from, to) = if i % 2 == 0 { (48, 50) } else { (50, 48) };
        e.record_scale(Replicas(from), Replicas(to), t);
    }
    e
}

fn bench_evaluate(c: &mut Criterion) {
    let now = Time::from_secs(1_800_000_000);
    let obs = observation(now);
    let evaluator = warmed_up(now);
    assert!(evaluator.recommendation_count() >= 60);
    let d = evaluator.clone().evaluate(&obs, now);
    assert_eq!(d.proposals.len(), 3, "{d}");
    println!("decision under test: {}→{}: {d}", d.current, d.desired);
    c.bench_function("evaluate/3 metrics, 50 pods, 60 recs, 20 events", |b| {
        b.iter_batched_ref(
            || evaluator.clone(),
            |e| black_box(e.evaluate(black_box(&obs), now)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_evaluate);
criterion_main!(benches);
