//! Report figures from synthetic runs.

use tidescale_loadgen::{HumanDuration, SecondStats};

use super::*;
use crate::control::TickRecord;
use tidescale_loadgen::Segment;

fn spike() -> Schedule {
    Schedule {
        segments: vec![Segment::Spike {
            base: 100.0,
            peak: 400.0,
            at: HumanDuration(std::time::Duration::from_secs(10)),
            length: HumanDuration(std::time::Duration::from_secs(10)),
            duration: HumanDuration(std::time::Duration::from_secs(30)),
        }],
    }
}

fn record(t: f64, current: i32, desired: i32, applied: bool) -> TickRecord {
    TickRecord {
        t,
        current,
        desired,
        applied,
        ready: current,
        reason: "Proposed",
        line: String::new(),
        metrics: Default::default(),
        error: None,
    }
}

#[test]
fn steps_are_found_where_the_rate_jumps() {
    let steps = step_times(&spike());
    assert_eq!(steps.len(), 1);
    assert!((steps[0] - 10.0).abs() < 0.1, "{steps:?}");
    let flat = Schedule::constant(100.0, HumanDuration(std::time::Duration::from_secs(30)));
    assert!(step_times(&flat).is_empty());
}

/// A 30 s spike run: one step answered 1.5 s later, a slow second, a second that dropped a
/// tenth of its requests and one that dropped 3 %.
fn sample_run() -> RunResult {
    let mut load = LoadReport::default();
    for s in 0..30u32 {
        load.timeline.push(SecondStats {
            second: s,
            offered: 100,
            achieved: 100,
            // Second 20 dropped a tenth of its requests (a miss); second 21 only 3 %.
            dropped: match s {
                20 => 10,
                21 => 3,
                _ => 0,
            },
            p95_ms: if s == 12 { 900.0 } else { 60.0 },
            ..Default::default()
        });
    }
    load.summary.offered = 3000;
    load.summary.requests = 2987;
    load.summary.dropped = 13;
    load.summary.late = 7;
    load.summary.errors.http_5xx = 2;
    load.summary.errors.http_4xx = 40;
    RunResult {
        label: "tidescale".into(),
        schedule: spike(),
        slo_ms: 200.0,
        records: vec![
            record(9.0, 1, 1, false),
            record(11.5, 1, 3, true),
            record(13.0, 3, 4, true),
        ],
        samples: (0..=30)
            .map(|t| Sample {
                t: f64::from(t),
                desired: 2,
                running: 2,
                ready: 2,
            })
            .collect(),
        events: vec![
            PoolEventRecord {
                t: 11.6,
                member: "demo-2".into(),
                kind: "Started".into(),
            },
            PoolEventRecord {
                t: 12.4,
                member: "demo-2".into(),
                kind: "Ready".into(),
            },
        ],
        load,
    }
}

#[test]
fn summary_measures_reaction_cost_slo_and_failures() {
    let run = sample_run();
    let s = summarize(&run);
    assert_eq!(s.reactions.len(), 1);
    assert!((s.median_decision_s.unwrap() - 1.5).abs() < 0.11, "{s:?}");
    assert!((s.median_ready_s.unwrap() - 2.4).abs() < 0.11, "{s:?}");
    assert!((s.replica_seconds - 60.0).abs() < 1e-9);
    assert!((s.slo_share - 28.0 / 30.0).abs() < 1e-9, "{}", s.slo_share);
    assert_eq!(
        s.failed, 15,
        "errors + dropped; a 404 is an answer, not a failure"
    );
    assert_eq!((s.errors, s.timeouts, s.dropped, s.late), (2, 0, 13, 7));
    assert_eq!((s.steps, s.missed_steps.len()), (1, 0));
    assert_eq!((s.peak_replicas, s.scale_events), (2, 2));
}

#[test]
fn the_table_shows_each_run_and_each_kind_of_failure() {
    let s = summarize(&sample_run());
    let md = markdown(&[
        s.clone(),
        RunSummary {
            label: "hpa-defaults".into(),
            replica_seconds: 120.0,
            ..s
        },
    ]);
    assert!(md.contains("| | tidescale | hpa-defaults |"), "{md}");
    assert!(md.contains("| 15 (2 + 0 + 13) |"), "{md}");
    assert!(
        md.contains("tidescale used 0.50× the replica-seconds of hpa-defaults"),
        "{md}"
    );
}

#[test]
fn a_step_without_a_scale_up_is_a_miss_and_counts() {
    let run = RunResult {
        label: "hpa-defaults".into(),
        schedule: spike(),
        slo_ms: 200.0,
        records: vec![record(9.0, 2, 2, false), record(24.0, 2, 2, false)],
        samples: Vec::new(),
        events: Vec::new(),
        load: LoadReport::default(),
    };
    let s = summarize(&run);
    assert_eq!(s.steps, 1);
    assert_eq!(s.missed_steps.len(), 1);
    assert!((s.missed_steps[0] - 10.0).abs() < 0.1);
    assert_eq!(s.median_decision_s, None);
    let md = markdown(std::slice::from_ref(&s));
    assert!(md.contains("— (n=0 of 1); missed: 10 s"), "{md}");
}
