//! Shaped schedules produce the expected per-second profile, observed live while the run goes.

mod common;

use std::time::Duration;

use tidescale_loadgen::{HumanDuration, Load, RunConfig, Runner, Schedule, Segment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ramp_then_spike_then_step_follow_their_profile() {
    let server = common::start(None);
    let secs = HumanDuration::from_secs;
    let schedule = Schedule {
        segments: vec![
            Segment::Ramp {
                from: 0.0,
                to: 400.0,
                duration: secs(2),
            },
            Segment::Spike {
                base: 100.0,
                peak: 600.0,
                at: secs(1),
                length: secs(1),
                duration: secs(3),
            },
            Segment::Step {
                from: 200.0,
                to: 300.0,
                steps: 2,
                duration: secs(2),
            },
        ],
    };
    let expected = [100.0, 300.0, 100.0, 600.0, 100.0, 200.0, 300.0];
    let runner = Runner::new(RunConfig::new(server.url(), Load::Schedule(schedule))).unwrap();
    let mut live = runner.live();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        while live.changed().await.is_ok() {
            if let Some(s) = live.borrow_and_update().last_second.clone()
                && seen.last() != Some(&s.second)
            {
                seen.push(s.second);
            }
        }
        seen
    });
    let report = runner.run(std::future::pending()).await;
    let seen = tokio::time::timeout(Duration::from_secs(2), watcher)
        .await
        .expect("the live channel closes with the run")
        .unwrap();
    assert!(seen.len() >= 5, "live seconds seen: {seen:?}");
    for (second, want) in report.timeline.iter().zip(expected) {
        let offered = second.offered as f64;
        assert!(
            (offered - want).abs() <= 1.0,
            "offered {second:?} vs {want}"
        );
        // Completions land in the second they finish: allow a few to spill over the edge.
        let achieved = second.achieved as f64;
        assert!(
            (achieved - want).abs() <= want * 0.05 + 5.0,
            "achieved {second:?} vs {want}\n{}",
            report.timeline_csv()
        );
    }
    assert_eq!(report.summary.error_total, 0);
}
