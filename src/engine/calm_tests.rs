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
        m.record_demands(&[p], Seconds(window), at(start + 15 * i as i64));
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
fn the_bound_is_the_t_bound_of_independent_readings() {
    // Alternating readings have negative lag-1 autocorrelation: no correction (ρ clamped to 0).
    let xs = [4.0, 6.0, 4.0, 6.0];
    let b = upper_bound(&xs, 0.95).unwrap();
    assert_eq!(b.mean, 5.0);
    assert_eq!(b.n_eff, 4.0);
    // s = √(4/3), t(0.95, 3) = 2.3534
    let expected = 2.353_363 * (4.0f64 / 3.0).sqrt() / 2.0;
    assert!((b.margin - expected).abs() < 1e-4, "{b:?}");
}

#[test]
fn autocorrelated_readings_count_as_fewer() {
    // A slow wave: each reading is close to the one before.
    let smooth = [5.0, 5.2, 5.4, 5.6, 5.8, 5.6, 5.4, 5.2, 5.0, 4.8, 4.6, 4.4];
    let b = upper_bound(&smooth, 0.95).unwrap();
    assert!(b.n_eff < 6.0, "{b:?}");
    // The same values shuffled out of order are treated as independent.
    let shuffled = [5.0, 4.4, 5.8, 4.6, 5.6, 4.8, 5.4, 5.0, 5.2, 5.6, 5.4, 5.2];
    let i = upper_bound(&shuffled, 0.95).unwrap();
    assert_eq!(i.n_eff, 12.0);
    assert!(b.margin > i.margin, "{b:?} vs {i:?}");
}

#[test]
fn too_few_readings_give_no_bound_and_identical_ones_no_margin() {
    assert_eq!(upper_bound(&[1.0, 2.0], 0.95), None);
    let b = upper_bound(&[3.0, 3.0, 3.0], 0.95).unwrap();
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
fn a_real_drop_lowers_the_count_to_the_rounded_bound() {
    let m = memory_with(&[2.4, 2.6, 2.3, 2.5], 60, 1000);
    let p = proposal(3, 2.5);
    let (s, reasons) = confidence(&m, r(3), r(6), &[p], &rule(0.95), Tolerance::default());
    // mean 2.45, s ≈ 0.129, margin ≈ 0.152: bound 2.6 → 3.
    assert_eq!(s, r(3));
    let [Reason::Confident { lower, bound, .. }] = reasons.as_slice() else {
        panic!("{reasons:?}")
    };
    assert!(*lower);
    assert!((bound.upper() - 2.602).abs() < 0.01, "{bound:?}");
    assert_eq!(reasons[0].kind(), "ConfidentScaleDown");
    assert_eq!(
        reasons[0].to_string(),
        "rps 245±15 (95 %) vs 100/pod → bound 2.6 → 3"
    );
}

#[test]
fn noise_around_the_current_count_holds_it() {
    // One low reading among ordinary ones: the point proposal says 4, the bound says 6.
    let m = memory_with(&[4.9, 5.6, 4.4, 3.5], 60, 1000);
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
    // Bound ≈ 9.03 → 10 from 11: 10/11 = 0.91 is inside the 10 % band.
    let m = memory_with(&[9.0, 9.0, 9.0, 9.1], 60, 1000);
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
        "rps: 2 of 3 readings for a confidence bound → 6"
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
