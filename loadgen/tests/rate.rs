//! Achieved rate tracks the schedule: 2,000 rps for 10 s within ±2 %.

mod common;

use tidescale_loadgen::{HumanDuration, Load, RunConfig, Schedule, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_2000_rps_for_10s_is_within_2_percent() {
    let server = common::start(None);
    let schedule = Schedule::constant(2000.0, HumanDuration::from_secs(10));
    let config = RunConfig::new(server.url(), Load::Schedule(schedule));
    let report = run(config, std::future::pending())
        .await
        .expect("valid config");
    let s = &report.summary;
    assert_eq!(s.offered, 20_000, "{s:?}");
    assert!(
        (s.achieved_rps - 2000.0).abs() <= 40.0,
        "achieved {:.1} rps, offered {:.1}: {}",
        s.achieved_rps,
        s.offered_rps,
        report.table()
    );
    assert_eq!(s.error_total, 0, "{}", report.table());
    assert_eq!(s.dropped, 0);
    // Every full second offered exactly its share.
    for second in &report.timeline[..10] {
        assert_eq!(second.offered, 2000, "{second:?}");
    }
}
