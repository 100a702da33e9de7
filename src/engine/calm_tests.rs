//! The confidence and flap budget stages, each on its own inputs.

use super::*;
use crate::engine::decision::Usage;
use crate::engine::policy::Target;

fn r(n: i32) -> Replicas {
    Replicas(n)
}

fn at(secs: i64) -> Time {
    Time::from_secs(secs)
}

/// `rps` against 100/pod proposing `replicas` from a demand of `demand` replicas.
fn proposal(replicas: i32, demand: f64) -> Proposal {
    Proposal {
        metric: "rps".into(),
        replicas: r(replicas),
        ratio: 1.0,
        usage: Usage::Total((demand * 100_000.0) as i64),
        target: Target::AverageValue(100_000),
        within_tolerance: false,
        demand,
    }
}

/// A memory holding `demands` of `rps`, one every 15 s up to `now`.
fn memory_with(demands: &[f64], window: u32, now: i64) -> CalmMemory {
    let mut m = CalmMemory::default();
    let start = now - 15 * (demands.len() as i64 - 1);
    for (i, d) in demands.iter().enumerate() {
        let p = proposal(d.ceil() as i32, *d);
        m.record_demands(&[p], Seconds(window), 1, at(start + 15 * i as i64));
    }
    m
}

/// A memory holding every one of `demands` of `rps` (the history too), one every 15 s up to
/// 1000 s, with a 60 s sample window.
fn history(demands: &[f64]) -> CalmMemory {
    let mut m = CalmMemory::default();
    let start = 1000 - 15 * (demands.len() as i64 - 1);
    for (i, d) in demands.iter().enumerate() {
        let p = proposal(d.ceil() as i32, *d);
        m.record_demands(&[p], Seconds(60), HISTORY, at(start + 15 * i as i64));
    }
    m
}

/// `n` readings alternating `level × (1 + amplitude)` and `level × (1 − amplitude)`.
fn alternating(level: f64, amplitude: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| level * (1.0 + if i % 2 == 0 { amplitude } else { -amplitude }))
        .collect()
}

/// Readings of 4.8 with ±25 % uniform noise (fixed, from a seeded generator).
const NOISY: [f64; 26] = [
    4.38, 3.96, 5.16, 3.77, 4.89, 4.48, 3.74, 4.82, 3.69, 4.64, 3.77, 3.82, 4.62, 5.58, 3.9, 4.14,
    5.11, 5.87, 4.99, 4.55, 5.94, 3.71, 5.66, 4.3, 3.95, 3.88,
];

fn rule(level: f64) -> Confidence {
    Confidence {
        level,
        sample_window: Seconds(60),
    }
}

#[test]
fn the_bound_is_the_larger_of_student_t_and_the_order_statistic() {
    // Bimodal readings: t gives 1.8946 × s / √8 ≈ 0.716, but the median's 95 % bound is the
    // 7th of 8 readings (P(Bin(8, ½) ≥ 7) = 9/256 ≤ 0.05), 6, a margin of 1.
    let bimodal = [4.0, 6.0, 4.0, 6.0, 4.0, 6.0, 4.0, 6.0];
    let b = upper_bound(&bimodal, 0.95, None).unwrap();
    assert_eq!((b.mean, b.n_eff), (5.0, 8.0));
    assert!((b.margin - 1.0).abs() < 1e-12, "{b:?}");
    // One low outlier: the order statistic is 5 (a margin of 0.5), t wins.
    let outlier = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 1.0];
    let b = upper_bound(&outlier, 0.95, None).unwrap();
    let t = 1.894_579 * (14.0f64 / 7.0).sqrt() / 8.0f64.sqrt();
    assert!((b.margin - t).abs() < 1e-4, "{b:?}");
}

#[test]
fn autocorrelated_readings_count_as_fewer() {
    // A slow wave: each reading is close to the one before, worth fewer than 5 independent ones.
    let smooth = [5.0, 5.2, 5.4, 5.6, 5.8, 5.6, 5.4, 5.2, 5.0, 4.8, 4.6, 4.4];
    assert!(matches!(upper_bound(&smooth, 0.95, None), Err(n) if n > smooth.len()));
    // The same values out of order are treated as independent.
    let shuffled = [5.0, 4.4, 5.8, 4.6, 5.6, 4.8, 5.4, 5.0, 5.2, 5.6, 5.4, 5.2];
    assert_eq!(upper_bound(&shuffled, 0.95, None).unwrap().n_eff, 12.0);
}

#[test]
fn the_readings_needed_grow_with_the_confidence() {
    assert_eq!(readings_needed(0.9), 4);
    assert_eq!(readings_needed(0.95), 5);
    assert_eq!(readings_needed(0.99), 7);
    assert_eq!(readings_needed(0.6), 3);
    assert_eq!(upper_bound(&[1.0, 2.0, 3.0, 4.0], 0.95, None), Err(5));
    let b = upper_bound(&[3.0; 5], 0.95, None).unwrap();
    assert_eq!((b.mean, b.margin), (3.0, 0.0));
}

#[test]
fn demands_outside_the_window_are_forgotten() {
    let m = memory_with(&[9.0, 1.0, 2.0, 3.0, 4.0, 5.0], 60, 1000);
    // Readings at 925..1000 every 15 s; the window keeps (940, 1000]: four of them.
    assert_eq!(m.demands("rps"), [2.0, 3.0, 4.0, 5.0]);
    assert!(m.demands("other").is_empty());
}

#[test]
fn the_last_readings_a_bound_needs_are_kept_past_the_window() {
    let mut m = CalmMemory::default();
    for i in 0..6 {
        let d = f64::from(i);
        m.record_demands(&[proposal(1, d)], Seconds(20), 5, at(15 * i64::from(i)));
    }
    assert_eq!(m.demands("rps"), [1.0, 2.0, 3.0, 4.0, 5.0]);
    // No reading of the metric within the window: forgotten.
    m.record_demands(&[], Seconds(20), 5, at(200));
    assert!(m.demands("rps").is_empty());
}

#[test]
fn a_real_drop_lowers_the_count_to_where_it_settles() {
    let mut demands = alternating(5.0, 0.05, 25);
    demands.extend([2.4, 2.6, 2.3, 2.5, 2.45]);
    let m = history(&demands);
    let p = proposal(3, 2.45);
    let tol = Tolerance::default();
    let (s, reasons) = confidence(&m, (r(3), r(6)), &[p], &rule(0.95), tol, at(1000));
    // The window's four readings, mean 2.46; the history's spread (about 7 %, the drop left
    // out) is the larger; t(3) at 97.5 % (two samples weighed): bound 2.7; 97.5 % of single
    // readings stay below 3.1, within the tolerance of 3.
    assert_eq!(s, r(3));
    let [Reason::Confident { lower, bound, .. }] = reasons.as_slice() else {
        panic!("{reasons:?}")
    };
    assert!(*lower);
    assert_eq!(bound.n_eff, 4.0);
    assert!((bound.upper() - 2.73).abs() < 0.02, "{bound:?}");
    assert_eq!(reasons[0].kind(), "ConfidentScaleDown");
    assert!(
        reasons[0]
            .to_string()
            .starts_with("rps 246±27 (95 %) vs 100/pod → bound 2.7"),
        "{}",
        reasons[0]
    );
}

#[test]
fn a_few_quiet_readings_after_noisy_ones_do_not_lower_a_right_sized_count() {
    // Four readings that agree by luck: their own spread would put the bound at 4.1 and the
    // count at 5, but the history's spread says single readings reach well past 5.5.
    let mut demands = NOISY.to_vec();
    demands.extend([4.0, 4.05, 3.95, 4.0]);
    let m = history(&demands);
    let p = proposal(4, 4.0);
    let tol = Tolerance::default();
    let (s, reasons) = confidence(&m, (r(4), r(6)), &[p], &rule(0.95), tol, at(1000));
    assert_eq!(s, r(6), "{reasons:?}");
    assert_eq!(reasons[0].kind(), "HeldByConfidence");
    assert!(
        reasons[0]
            .to_string()
            .ends_with("settle at 6 → 6 (not lower with confidence)"),
        "{}",
        reasons[0]
    );
}

#[test]
fn the_whole_history_lowers_further_once_a_drop_is_old() {
    // Noisy readings of 2.4: four of them put the bound too high to go below 5, thirty pin
    // the level close enough for 4.
    let m = history(&alternating(2.4, 0.2, 30));
    let p = proposal(3, 2.4);
    let tol = Tolerance::default();
    let (s, reasons) = confidence(&m, (r(3), r(6)), &[p], &rule(0.95), tol, at(1000));
    assert_eq!(s, r(4), "{reasons:?}");
    let [Reason::Confident { bound, .. }] = reasons.as_slice() else {
        panic!("{reasons:?}")
    };
    assert_eq!(bound.n_eff, 30.0);
}

#[test]
fn a_count_settles_where_most_single_readings_stay_within_the_tolerance() {
    let bound = Bound {
        mean: 4.5,
        margin: 0.3,
        n_eff: 5.0,
        sd: 0.5,
        falling: false,
    };
    // 4.8 + 1.645 × 0.5 = 5.62: above 5 × 1.1, within 6 × 1.1.
    let s = settle(&bound, 0.95, Tolerance::default());
    assert!((s.peak - 5.622).abs() < 1e-3, "{s:?}");
    assert_eq!(s.replicas, r(6));
    let reason = Reason::Confident {
        metric: "rps".into(),
        target: Target::AverageValue(100_000),
        bound,
        settle: Some(s),
        level: 0.95,
        lower: false,
        replicas: r(6),
    };
    assert_eq!(
        reason.to_string(),
        "rps 450±30 (95 %) vs 100/pod → bound 4.8, readings to 5.6 settle at 6 → 6 (not lower with confidence)"
    );
    // No spread: the bound itself.
    let quiet = Bound { sd: 0.0, ..bound };
    assert_eq!(settle(&quiet, 0.95, Tolerance::default()).replicas, r(5));
}

#[test]
fn the_history_noise_leaves_a_drop_out() {
    assert_eq!(history_noise(&alternating(5.0, 0.05, 9)), None);
    let expected = (1.05f64 / 0.95).ln() / std::f64::consts::SQRT_2;
    let steady = history_noise(&alternating(5.0, 0.05, 20)).unwrap();
    assert!((steady.relative - expected).abs() < 1e-12, "{steady:?}");
    // Halved: one large difference, left out; the relative noise is the same.
    let mut dropped = alternating(5.0, 0.05, 20);
    dropped.extend(alternating(2.5, 0.05, 10));
    let after = history_noise(&dropped).unwrap();
    assert!((after.relative - expected).abs() < 1e-12, "{after:?}");
}

#[test]
fn a_bound_within_the_tolerance_holds() {
    // Bound 9.1 → 10 from 11: 10/11 = 0.91 is inside the 10 % band.
    let m = history(&alternating(9.0, 0.01, 20));
    let p = proposal(10, 9.0);
    let tol = Tolerance::default();
    let (s, _) = confidence(&m, (r(10), r(11)), &[p], &rule(0.95), tol, at(1000));
    assert_eq!(s, r(11));
}

#[test]
fn too_short_a_history_holds_with_its_own_reason() {
    let m = history(&[2.0, 2.1, 2.0, 1.9, 2.0]);
    let (s, reasons) = confidence(
        &m,
        (r(2), r(6)),
        &[proposal(2, 2.0)],
        &rule(0.95),
        Tolerance::default(),
        at(1000),
    );
    assert_eq!(s, r(6));
    assert_eq!(reasons[0].kind(), "TooFewReadings");
    assert_eq!(
        reasons[0].to_string(),
        "rps: 5 of 10 readings for a confidence bound → 6"
    );
}

#[test]
fn scale_ups_and_steady_counts_pass_untouched() {
    let m = CalmMemory::default();
    let p = [proposal(8, 7.5)];
    let tol = Tolerance::default();
    assert_eq!(
        confidence(&m, (r(8), r(5)), &p, &rule(0.95), tol, at(1000)),
        (r(8), vec![])
    );
    assert_eq!(
        confidence(&m, (r(5), r(5)), &p, &rule(0.95), tol, at(1000)),
        (r(5), vec![])
    );
}

#[test]
fn the_flap_budget_holds_a_reversal_once_spent() {
    let budget = FlapBudget {
        count: 1,
        window: Seconds(300),
    };
    let mut m = CalmMemory::default();
    m.record_scale(Direction::Up, budget.window, at(0));
    // Down after up: the first reversal of the window is allowed.
    assert_eq!(flap_budget(&m, r(4), r(5), &budget, at(60)), (r(4), None));
    m.record_scale(Direction::Down, budget.window, at(60));
    // Up again would be the second reversal within 300 s: held.
    let (s, reason) = flap_budget(&m, r(6), r(4), &budget, at(120));
    assert_eq!(s, r(4));
    let reason = reason.unwrap();
    assert_eq!(reason.kind(), "FlapBudget");
    assert_eq!(
        reason.to_string(),
        "scale-up would exceed 1 reversals per 300s → 4"
    );
    // Continuing down is never a reversal.
    assert_eq!(flap_budget(&m, r(3), r(4), &budget, at(120)), (r(3), None));
    // Once the up event leaves the window, the reversal it made no longer counts.
    assert_eq!(flap_budget(&m, r(6), r(4), &budget, at(301)), (r(6), None));
}

#[test]
fn a_zero_budget_allows_no_reversal_within_the_window() {
    let budget = FlapBudget {
        count: 0,
        window: Seconds(120),
    };
    let mut m = CalmMemory::default();
    m.record_scale(Direction::Up, budget.window, at(0));
    assert_eq!(flap_budget(&m, r(4), r(5), &budget, at(119)).0, r(5));
    assert_eq!(flap_budget(&m, r(4), r(5), &budget, at(120)).0, r(4));
}

#[test]
fn idle_readings_still_let_the_count_fall() {
    // No requests: every demand is zero, and zero is known exactly.
    let m = history(&[0.0; 12]);
    let tol = Tolerance::default();
    let (s, reasons) = confidence(
        &m,
        (r(1), r(4)),
        &[proposal(0, 0.0)],
        &rule(0.95),
        tol,
        at(1000),
    );
    assert_eq!(s, r(1), "{reasons:?}");
}

#[test]
fn a_value_target_remembers_its_ratio_not_the_count_it_was_read_at() {
    // A latency of 74 ms against 200 ms: 0.37 of the target, read at five pods and then at two.
    let value = |pods: f64| Proposal {
        metric: "p95".into(),
        replicas: r((0.37 * pods).ceil() as i32),
        ratio: 0.37,
        usage: Usage::Total(74),
        target: Target::Value(200),
        within_tolerance: false,
        demand: 0.37 * pods,
    };
    let mut m = CalmMemory::default();
    for i in 0..12 {
        let pods = if i < 6 { 5.0 } else { 2.0 };
        m.record_demands(&[value(pods)], Seconds(60), HISTORY, at(15 * i));
    }
    assert_eq!(m.demands("p95"), [0.37; 12]);
    let tol = Tolerance::default();
    let (s, reasons) = confidence(&m, (r(1), r(2)), &[value(2.0)], &rule(0.95), tol, at(165));
    // Demand 0.74 at two pods, with no spread: one replica.
    assert_eq!(s, r(1), "{reasons:?}");
}

/// `n` readings falling from `from` by `step` each, with ±`wobble` alternating around the line.
fn falling(from: f64, step: f64, wobble: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| from - step * i as f64 + if i % 2 == 0 { wobble } else { -wobble })
        .collect()
}

#[test]
fn a_steady_fall_is_bounded_at_its_latest_level() {
    // 4.0 down to 2.2 over ten readings: the mean (3.1) lags the latest level by half the fall.
    let xs = falling(4.0, 0.2, 0.05, 10);
    let quiet = Spread { relative: 0.02 };
    let line = falling_bound(&xs, 0.99, quiet).expect("a fall with confidence");
    assert!(line.falling);
    assert!((line.mean - 2.2).abs() < 0.05, "{line:?}");
    assert!(line.upper() < 2.6, "{line:?}");
    let flat = upper_bound(&xs, 0.99, Some(quiet)).unwrap();
    assert!(flat.upper() > 3.5, "the mean's bound lags: {flat:?}");
    assert_eq!(sample_bound(&xs, 0.99, quiet, true).unwrap(), line);
    assert_eq!(sample_bound(&xs, 0.99, quiet, false).unwrap(), flat);
}

#[test]
fn noise_around_a_level_is_not_a_fall() {
    let noise = history_noise(&NOISY).unwrap();
    for n in 10..=NOISY.len() {
        let xs = &NOISY[..n];
        assert_eq!(falling_bound(xs, 0.98, noise), None, "{n} readings");
    }
    // Too few readings for a line.
    let short = falling(4.0, 0.2, 0.0, 9);
    assert_eq!(falling_bound(&short, 0.98, Spread { relative: 0.01 }), None);
    // Rising readings never use it.
    let rising: Vec<f64> = falling(4.0, 0.2, 0.05, 12).into_iter().rev().collect();
    assert_eq!(
        falling_bound(&rising, 0.98, Spread { relative: 0.01 }),
        None
    );
}

#[test]
fn a_falling_bound_says_so() {
    let xs: Vec<f64> = falling(4.0, 0.2, 0.05, 10);
    let bound = falling_bound(&xs, 0.99, Spread { relative: 0.02 }).unwrap();
    let reason = Reason::Confident {
        metric: "rps".into(),
        target: Target::AverageValue(100_000),
        bound,
        settle: None,
        level: 0.99,
        lower: true,
        replicas: r(3),
    };
    let text = reason.to_string();
    assert!(text.starts_with("rps 2"), "{text}");
    assert!(
        text.contains("(99 %, falling) vs 100/pod → bound 2."),
        "{text}"
    );
}
