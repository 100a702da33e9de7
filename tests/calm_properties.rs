//! Properties of the calm scale-down (proptest): noise alone rarely lowers the count, a real drop soon does.

use proptest::prelude::*;
use tidescale::engine::{
    Behavior, Confidence, Decision, Evaluator, FlapBudget, MetricPolicy, Normalization,
    Observation, PodFacts, Policy, Reading, Replicas, Seconds, Target, Time,
};

/// Seconds between ticks, as the HPA's default sync period.
const TICK: i64 = 15;

#[path = "../benches/support/noise.rs"]
mod noise;

use noise::{Noise, Shape};

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Uniform),
        Just(Shape::Triangular),
        Just(Shape::Bimodal)
    ]
}

/// One metric whose proposal is its total in units: the demand is the reading itself.
fn calm_policy(level: f64, sample_window: u32, budget: Option<FlapBudget>) -> Policy {
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(0);
    b.confidence = Some(Confidence {
        level,
        sample_window: Seconds(sample_window),
    });
    b.max_reversals = budget;
    let mut p = Policy::new(
        Replicas(1),
        Replicas(200),
        vec![MetricPolicy::new("load", Target::AverageValue(1000))],
    );
    p.normalization = Normalization::Behavior(b);
    p
}

fn observe(current: Replicas, demand: f64) -> Observation {
    Observation {
        current,
        status_replicas: current,
        pods: (0..current.0)
            .map(|i| PodFacts::running(format!("p{i}")))
            .collect(),
        metrics: vec![Ok(Reading::Total((demand * 1000.0).round() as i64))],
    }
}

fn evaluate(e: &mut Evaluator, current: Replicas, demand: f64, tick: i64) -> Decision {
    e.evaluate(
        &observe(current, demand),
        Time::from_secs(1_000 + tick * TICK),
    )
}

/// One tick of a scaler at `demand`: evaluates, applies the decision (recording the scale as
/// the loop would) and moves on to the next tick.
fn step(e: &mut Evaluator, current: &mut Replicas, demand: f64, tick: &mut i64) -> Decision {
    let d = evaluate(e, *current, demand, *tick);
    if d.apply {
        e.record_scale(*current, d.desired, Time::from_secs(1_000 + *tick * TICK));
        *current = d.desired;
    }
    *tick += 1;
    d
}

/// Ten minutes (40 ticks) at the level `m` with noise, applying decisions.
fn settle(
    e: &mut Evaluator,
    current: &mut Replicas,
    m: f64,
    mut noisy: impl FnMut() -> f64,
    tick: &mut i64,
) {
    for _ in 0..40 {
        step(e, current, m * (1.0 + noisy()), tick);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Stationary noise around a mean demand `m`, the count at `ceil(m)` (what the HPA's
    /// arithmetic asks for without noise): each decision is one test over one window of
    /// readings and lowers the count with probability at most `1 − level`. The observed share
    /// gets a three-sigma sampling allowance in which the decisions over one window's readings
    /// count as a single observation, since overlapping windows are not independent.
    #[test]
    fn noise_alone_lowers_the_count_less_often_than_the_confidence_allows(
        m in 1.5f64..40.0, amplitude in 0.1f64..0.4, shape in shape(),
        level in prop_oneof![Just(0.9), Just(0.95), Just(0.99)],
        window in prop_oneof![Just(45u32), Just(60), Just(120), Just(300)],
        seed in any::<u64>(),
    ) {
        let current = Replicas(m.ceil() as i32);
        let mut e = Evaluator::new(calm_policy(level, window, None));
        let mut noise = Noise(seed);
        let ticks: i32 = 4_800;
        let mut downs = 0;
        for tick in 0..ticks {
            let demand = m * (1.0 + noise.sample(shape, amplitude));
            // The count stays put: every tick is judged from the same, right, count.
            let d = evaluate(&mut e, current, demand, i64::from(tick));
            if d.desired < current {
                downs += 1;
            }
        }
        let rate = f64::from(downs) / f64::from(ticks);
        let alpha = 1.0 - level;
        // The window's readings: those within it, but never fewer than the bound needs.
        let needed = ((1.0 / alpha).log2().ceil() as i64).max(3);
        let per_window = (i64::from(window) / TICK).max(needed) as f64;
        let allowance = 3.0 * (alpha * per_window / f64::from(ticks)).sqrt();
        prop_assert!(
            rate <= alpha + allowance,
            "{downs} of {ticks} decisions lowered {current} (allowed {:.4})", alpha + allowance
        );
    }

    /// The demo's own readings: a rate over 3 s read every second is a moving average of three
    /// independent counts, so successive readings are strongly autocorrelated and ten of them
    /// often lie along a line by chance. Noise like that still lowers a right-sized count no
    /// more often than the confidence allows.
    #[test]
    fn smoothed_noise_read_every_second_lowers_the_count_rarely(
        m in 1.5f64..20.0, amplitude in 0.1f64..0.4, shape in shape(),
        level in prop_oneof![Just(0.95), Just(0.98)],
        seed in any::<u64>(),
    ) {
        let current = Replicas(m.ceil() as i32);
        let mut e = Evaluator::new(calm_policy(level, 10, None));
        let mut noise = Noise(seed);
        let mut recent = [0.0f64; 3];
        let ticks: i32 = 4_800;
        let mut downs = 0;
        for tick in 0..ticks {
            recent[tick as usize % 3] = noise.sample(shape, amplitude);
            let demand = m * (1.0 + recent.iter().sum::<f64>() / 3.0);
            let d = e.evaluate(&observe(current, demand), Time::from_secs(1_000 + i64::from(tick)));
            if d.desired < current {
                downs += 1;
            }
        }
        let rate = f64::from(downs) / f64::from(ticks);
        let alpha = 1.0 - level;
        // Ten readings a window, counted as one observation.
        let allowance = 3.0 * (alpha * 10.0 / f64::from(ticks)).sqrt();
        prop_assert!(
            rate <= alpha + allowance,
            "{downs} of {ticks} decisions lowered {current} (allowed {:.4})", alpha + allowance
        );
    }

    /// After a drop of 40 % or more in the mean demand, a scale-down comes within two sample
    /// windows (the first one fills with readings of the new level). The noise stays below
    /// the drop: with ±40 % noise after a 40 % drop, single readings at the lower count would
    /// leave the tolerance, so that count would not settle and is rightly not taken.
    #[test]
    fn a_real_drop_lowers_the_count_within_two_windows(
        m in 4.0f64..40.0, drop in 0.4f64..0.8, amplitude in 0.1f64..0.3, shape in shape(),
        seed in any::<u64>(),
    ) {
        let window = 120u32;
        let mut e = Evaluator::new(calm_policy(0.95, window, None));
        let mut noise = Noise(seed);
        let mut current = Replicas(m.ceil() as i32);
        let mut tick = 0;
        settle(&mut e, &mut current, m, || noise.sample(shape, amplitude), &mut tick);
        let before = current;
        let low = m * (1.0 - drop);
        let bound = 2 * i64::from(window) / TICK;
        let mut first = None;
        for after in 0..bound {
            let d = step(&mut e, &mut current, low * (1.0 + noise.sample(shape, amplitude)), &mut tick);
            if d.desired < d.current {
                first = Some(after);
                break;
            }
        }
        prop_assert!(first.is_some(), "no scale-down from {before} within {bound} ticks of a drop to {low:.2}");
    }

    /// A steady fall of 40 % or more over five minutes (an evening's decline, not a step)
    /// lowers the count by one sample window after the fall ends: a sample spread along a
    /// falling line is bounded at its latest level, not at its lagging mean. (Bimodal noise of
    /// ±14 % at the edge of a 40 % fall can hold it until the fall is over.)
    #[test]
    fn a_steady_fall_lowers_the_count_before_it_ends(
        m in 6.0f64..40.0, drop in 0.4f64..0.7, amplitude in 0.05f64..0.15, shape in shape(),
        seed in any::<u64>(),
    ) {
        let mut e = Evaluator::new(calm_policy(0.98, 180, None));
        let mut noise = Noise(seed);
        let mut current = Replicas(m.ceil() as i32);
        let mut tick = 0;
        settle(&mut e, &mut current, m, || noise.sample(shape, amplitude), &mut tick);
        let before = current;
        let fall_ticks = 20;
        let mut lowered = false;
        // The fall, then one sample window (12 ticks) at its end level.
        for i in 1..=fall_ticks + 12 {
            let level = m * (1.0 - drop * f64::from(i.min(fall_ticks)) / f64::from(fall_ticks));
            let d = step(&mut e, &mut current, level * (1.0 + noise.sample(shape, amplitude)), &mut tick);
            if d.desired < d.current {
                lowered = true;
                break;
            }
        }
        prop_assert!(lowered, "{before} held through a fall and a window after it, from {m:.2} to {:.2}", m * (1.0 - drop));
    }

    /// Whatever the readings, the applied scale events of any window change direction at most
    /// `count` times.
    #[test]
    fn the_flap_budget_is_never_exceeded(
        count in 0u32..3, budget_window in 60u32..900, seed in any::<u64>(),
        m in 2.0f64..20.0, amplitude in 0.1f64..0.6,
    ) {
        let budget = FlapBudget { count, window: Seconds(budget_window) };
        let mut e = Evaluator::new(calm_policy(0.6, 45, Some(budget)));
        let mut noise = Noise(seed);
        let mut current = Replicas(m.ceil() as i32);
        let mut events: Vec<(i64, bool)> = Vec::new();
        for tick in 0..240 {
            let d = evaluate(&mut e, current, m * (1.0 + noise.sample(Shape::Uniform, amplitude)), tick);
            if d.apply {
                let now = 1_000 + tick * TICK;
                e.record_scale(current, d.desired, Time::from_secs(now));
                events.push((now, d.desired > current));
                current = d.desired;
                let recent: Vec<bool> = events
                    .iter()
                    .filter(|(at, _)| *at > now - i64::from(budget_window))
                    .map(|(_, up)| *up)
                    .collect();
                let changes = recent.windows(2).filter(|w| w[0] != w[1]).count();
                prop_assert!(changes <= count as usize, "{changes} reversals within {budget_window}s: {events:?}");
            }
        }
    }
}
