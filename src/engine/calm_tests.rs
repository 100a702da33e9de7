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
    let b = upper_bound(&bimodal, 0.95).unwrap();
    assert_eq!((b.mean, b.n_eff), (5.0, 8.0));
    assert!((b.margin - 1.0).abs() < 1e-12, "{b:?}");
    // One low outlier: the order statistic is 5 (a margin of 0.5), t wins.
    let outlier = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 1.0];
    let b = upper_bound(&outlier, 0.95).unwrap();
    let t = 1.894_579 * (14.0f64 / 7.0).sqrt() / 8.0f64.sqrt();
    assert!((b.margin - t).abs() < 1e-4, "{b:?}");
}

#[test]
fn autocorrelated_readings_count_as_fewer() {
    // A slow wave: each reading is close to the one before, worth fewer than 5 independent ones.
    let smooth = [5.0, 5.2, 5.4, 5.6, 5.8, 5.6, 5.4, 5.2, 5.0, 4.8, 4.6, 4.4];
    assert!(matches!(upper_bound(&smooth, 0.95), Err(n) if n > smooth.len()));
    // The same values out of order are treated as independent.
    let shuffled = [5.0, 4.4, 5.8, 4.6, 5.6, 4.8, 5.4, 5.0, 5.2, 5.6, 5.4, 5.2];
    assert_eq!(upper_bound(&shuffled, 0.95).unwrap().n_eff, 12.0);
}

#[test]
fn the_readings_needed_grow_with_the_confidence() {
    assert_eq!(readings_needed(0.9), 4);
    assert_eq!(readings_needed(0.95), 5);
    assert_eq!(readings_needed(0.99), 7);
    assert_eq!(readings_needed(0.6), 3);
    assert_eq!(upper_bound(&[1.0, 2.0, 3.0, 4.0], 0.95), Err(5));
    let b = upper_bound(&[3.0; 5], 0.95).unwrap();
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
fn a_real_drop_lowers_the_count_to_the_rounded_bound() {
    let m = memory_with(&[2.4, 2.6, 2.3, 2.5, 2.45], 90, 1000);
    let p = proposal(3, 2.45);
    let (s, reasons) = confidence(&m, r(3), r(6), &[p], &rule(0.95), Tolerance::default());
    // mean 2.45; t: 2.1318 × 0.1118 / √5 ≈ 0.107; the order statistic (the largest of five,
    // 1/32 ≤ 0.05) 2.6: bound 2.6 → 3.
    assert_eq!(s, r(3));
    let [Reason::Confident { lower, bound, .. }] = reasons.as_slice() else {
        panic!("{reasons:?}")
    };
    assert!(*lower);
    assert!((bound.upper() - 2.6).abs() < 1e-9, "{bound:?}");
    assert_eq!(reasons[0].kind(), "ConfidentScaleDown");
    assert_eq!(
        reasons[0].to_string(),
        "rps 245±15 (95 %) vs 100/pod → bound 2.6 → 3"
    );
}

#[test]
fn noise_around_the_current_count_holds_it() {
    // One low reading among ordinary ones: the point proposal says 4, the bound says 6.
    let m = memory_with(&[4.9, 5.6, 4.4, 5.0, 3.5], 90, 1000);
    let p = proposal(4, 3.5);
    let (s, reasons) = confidence(&m, r(4), r(5), &[p], &rule(0.95), Tolerance::default());
    assert_eq!(s, r(5));
    assert_eq!(reasons[0].kind(), "HeldByConfidence");
    assert!(
        reasons[0]
            .to_string()
            .ends_with("→ 5 (not lower with confidence)"),
        "{}",
        reasons[0]
    );
}

#[test]
fn a_bound_within_the_tolerance_holds() {
    // Bound 9.1 → 10 from 11: 10/11 = 0.91 is inside the 10 % band.
    let m = memory_with(&[9.0, 9.0, 9.0, 9.1, 9.0], 90, 1000);
    let p = proposal(10, 9.1);
    let (s, _) = confidence(&m, r(10), r(11), &[p], &rule(0.95), Tolerance::default());
    assert_eq!(s, r(11));
}

#[test]
fn too_few_readings_hold_with_their_own_reason() {
    let m = memory_with(&[2.0, 2.0], 60, 1000);
    let (s, reasons) = confidence(
        &m,
        r(2),
        r(6),
        &[proposal(2, 2.0)],
        &rule(0.95),
        Tolerance::default(),
    );
    assert_eq!(s, r(6));
    assert_eq!(reasons[0].kind(), "TooFewReadings");
    assert_eq!(
        reasons[0].to_string(),
        "rps: 2 of 5 readings for a confidence bound → 6"
    );
}

#[test]
fn scale_ups_and_steady_counts_pass_untouched() {
    let m = CalmMemory::default();
    let p = [proposal(8, 7.5)];
    let tol = Tolerance::default();
    assert_eq!(
        confidence(&m, r(8), r(5), &p, &rule(0.95), tol),
        (r(8), vec![])
    );
    assert_eq!(
        confidence(&m, r(5), r(5), &p, &rule(0.95), tol),
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
