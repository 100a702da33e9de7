//! A 1 s server stall shows in the open-loop p99, and would hide from a closed-loop measure.

mod common;

use std::time::Duration;

use tidescale_loadgen::{HumanDuration, Load, RunConfig, Schedule, run};

const STALL: Option<(Duration, Duration)> = Some((Duration::from_secs(1), Duration::from_secs(1)));

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_shows_in_open_loop_p99() {
    let server = common::start(STALL);
    let schedule = Schedule::constant(200.0, HumanDuration::from_secs(4));
    let report = run(
        RunConfig::new(server.url(), Load::Schedule(schedule)),
        std::future::pending(),
    )
    .await
    .unwrap();
    let l = &report.summary.latency_ms;
    // About a quarter of the requests were due during the stall and waited up to 1 s each.
    assert!(l.p99 >= 800.0, "p99 {} ms\n{}", l.p99, report.table());
    assert!(l.max >= 900.0, "max {} ms", l.max);
    assert!(l.p50 < 100.0, "p50 {} ms", l.p50);
    assert_eq!(report.summary.dropped, 0);
    let worst_second = report.timeline.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
    assert!(worst_second >= 800.0, "{}", report.timeline_csv());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_stall_hides_from_a_closed_loop() {
    let server = common::start(STALL);
    let mut config = RunConfig::new(
        server.url(),
        Load::Max {
            duration: HumanDuration::from_secs(3),
        },
    );
    config.concurrency = 1;
    let report = run(config, std::future::pending()).await.unwrap();
    let s = &report.summary;
    // One request waited the whole second; the thousands around it were fast.
    assert!(s.latency_ms.max >= 900.0, "{}", report.table());
    assert!(s.latency_ms.p99 < 100.0, "{}", report.table());
}
