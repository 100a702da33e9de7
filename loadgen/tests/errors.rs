//! Timeouts, refused connections, 4xx and 5xx are counted by class and never end the run early.

mod common;

use std::time::Duration;

use tidescale_loadgen::{HumanDuration, Load, Mix, RunConfig, Schedule, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_4xx_and_5xx_are_counted_by_class() {
    let server = common::start(None);
    let schedule = Schedule::constant(200.0, HumanDuration::from_secs(2));
    let mut config = RunConfig::new(server.url(), Load::Schedule(schedule));
    config.timeout = HumanDuration(Duration::from_millis(300));
    config.mix = Mix {
        entries: [
            "1:root",
            "1:GET /status/503",
            "1:GET /status/404",
            "1:GET /slow?ms=2000",
        ]
        .iter()
        .map(|t| Mix::parse_entry(t).unwrap())
        .collect(),
        keys: 10,
    };
    let report = run(config, std::future::pending()).await.unwrap();
    let s = &report.summary;
    let e = &s.errors;
    assert_eq!(s.requests, 400, "{}", report.table());
    assert!(
        e.timeout > 60 && e.http_5xx > 60 && e.http_4xx > 60,
        "{}",
        report.table()
    );
    assert_eq!(e.refused + e.io + e.other, 0, "{}", report.table());
    assert_eq!(e.http_5xx, s.status_codes["503"]);
    // Every sent request is accounted for exactly once.
    assert_eq!(s.responses + e.timeout, s.requests, "{}", report.table());
    assert!(
        s.total_secs < 4.0,
        "the run ended by itself: {}",
        s.total_secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_counted() {
    let port = common::closed_port();
    let schedule = Schedule::constant(100.0, HumanDuration::from_secs(1));
    let report = run(
        RunConfig::new(format!("http://127.0.0.1:{port}"), Load::Schedule(schedule)),
        std::future::pending(),
    )
    .await
    .unwrap();
    let s = &report.summary;
    assert_eq!(s.requests, 100);
    assert_eq!(s.errors.refused, 100, "{}", report.table());
    assert_eq!(s.responses, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_cap_drops_and_counts() {
    let server = common::start(None);
    let schedule = Schedule::constant(100.0, HumanDuration::from_secs(1));
    let mut config = RunConfig::new(server.url(), Load::Schedule(schedule));
    config.concurrency = 5;
    config.mix = Mix {
        entries: vec![Mix::parse_entry("1:GET /slow?ms=500").unwrap()],
        keys: 1,
    };
    let report = run(config, std::future::pending()).await.unwrap();
    let s = &report.summary;
    assert_eq!(s.offered, 100);
    assert!(s.dropped >= 80, "{}", report.table());
    assert_eq!(s.requests + s.dropped, s.offered);
    assert_eq!(s.responses, s.requests);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_run_early() {
    let server = common::start(None);
    let schedule = Schedule::constant(50.0, HumanDuration::from_secs(60));
    let report = run(
        RunConfig::new(server.url(), Load::Schedule(schedule)),
        tokio::time::sleep(Duration::from_millis(600)),
    )
    .await
    .unwrap();
    let s = &report.summary;
    assert!(s.interrupted);
    assert!(s.total_secs < 2.0, "{}", s.total_secs);
    assert!((25..=35).contains(&s.requests), "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_cap_stops_the_run() {
    let server = common::start(None);
    let mut config = RunConfig::new(
        server.url(),
        Load::Max {
            duration: HumanDuration::from_secs(30),
        },
    );
    config.concurrency = 4;
    config.max_requests = 500;
    let report = run(config, std::future::pending()).await.unwrap();
    assert!(report.summary.capped);
    assert_eq!(report.summary.requests, 500);
    assert_eq!(report.summary.responses, 500);
}
