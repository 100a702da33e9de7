//! The loop with a fake source and a fake target, on a paused clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::control::CountingRecorder;
use crate::engine::Replicas;
use crate::metric::Reading;
use crate::source::fake::FakeSource;
use crate::spec::load_policy_yaml;
use crate::target::FakeTarget;

const POLICY: &str = "
targetRef: {kind: ProcessPool, name: demo}
minReplicas: 1
maxReplicas: 10
interval: 1s
metrics:
  - name: rps
    scrape: {metric: http_requests_total, aggregate: {rate: {window: 5s}}}
    target: {type: AverageValue, averageValue: '100'}
behavior:
  scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 2, periodSeconds: 5}]}
  scaleDown: {stabilizationWindowSeconds: 3, policies: [{type: Percent, value: 100, periodSeconds: 1}]}
";

fn per_pod(values: &[(&str, f64)]) -> Result<Reading, SourceError> {
    let pods: BTreeMap<String, f64> = values.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let total = pods.values().sum();
    Ok(Reading::per_pod(
        pods,
        total,
        SystemTime::UNIX_EPOCH,
        "fake",
    ))
}

fn pods(n: usize, each: f64) -> Result<Reading, SourceError> {
    let names: Vec<String> = (0..n).map(|i| format!("demo-{i}")).collect();
    per_pod(&names.iter().map(|s| (s.as_str(), each)).collect::<Vec<_>>())
}

fn build(source: Arc<FakeSource>, target: Arc<FakeTarget>, store: &SampleStore) -> PolicyLoop {
    let (_, policy) = load_policy_yaml(POLICY).unwrap();
    let options = LoopOptions::every("demo", Duration::from_secs(1));
    let sources = vec![LoopSource {
        name: "rps".into(),
        resource: None,
        source,
    }];
    PolicyLoop::from_sources(
        policy,
        sources,
        target,
        Some(store),
        Arc::new(CountingRecorder::default()),
        options,
    )
    .unwrap()
}

#[tokio::test(start_paused = true)]
async fn scales_up_within_rate_limits_holds_on_failure_and_records_every_tick() {
    let id = MetricId::new("demo", "rps");
    // 2 pods at 300 rps each against 100/pod: the raw proposal is 6, rate-limited to +2 per 5 s.
    let source = Arc::new(FakeSource::new(id.clone(), [pods(2, 300.0)]));
    let target = Arc::new(FakeTarget::new("ProcessPool/demo", Replicas(2)));
    let store = SampleStore::new(16);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut lp = build(source.clone(), target.clone(), &store).with_records(tx);

    let r = lp.tick().await;
    assert_eq!(
        (r.current, r.desired, r.applied),
        (2, 4, true),
        "{}",
        r.line
    );
    assert!(r.line.contains("rps"), "{}", r.line);
    assert_eq!(target.calls(), vec![Replicas(4)]);
    assert!(store.latest(&id).is_some(), "the reading reached the store");

    // One second later the 5 s rate window still holds the +2: no further scale.
    tokio::time::advance(Duration::from_secs(1)).await;
    source.push(pods(4, 300.0));
    let r = lp.tick().await;
    assert_eq!(
        (r.current, r.desired, r.applied),
        (4, 4, false),
        "{}",
        r.line
    );

    // After the period, the next step is allowed.
    tokio::time::advance(Duration::from_secs(5)).await;
    source.push(pods(4, 300.0));
    let r = lp.tick().await;
    assert_eq!((r.current, r.desired), (4, 6), "{}", r.line);

    // The source fails: Hold never scales down on a failed metric.
    tokio::time::advance(Duration::from_secs(10)).await;
    source.push(Err(SourceError::NoData {
        metric: id.clone(),
        endpoint: "x".into(),
        why: "gone".into(),
    }));
    let r = lp.tick().await;
    assert_eq!(
        (r.current, r.desired, r.applied),
        (6, 6, false),
        "{}",
        r.line
    );
    assert!(r.metrics["rps"].is_err());

    // The target fails: the tick says so and nothing is recorded as applied.
    source.push(pods(6, 10.0));
    target.set_failing(Some("api down"));
    let r = lp.tick().await;
    assert_eq!(r.reason, "TargetUnavailable");
    target.set_failing(None);

    let mut seen = 0;
    while rx.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 4, "every decided tick is recorded");
}

#[tokio::test(start_paused = true)]
async fn scale_down_waits_for_the_stabilization_window_and_run_stops_on_shutdown() {
    let id = MetricId::new("demo", "rps");
    let source = Arc::new(FakeSource::new(id, [pods(4, 10.0)]));
    let target = Arc::new(FakeTarget::new("ProcessPool/demo", Replicas(4)));
    let store = SampleStore::new(16);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let lp = build(source.clone(), target.clone(), &store).with_records(tx);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(lp.run(async {
        let _ = stop_rx.await;
    }));
    // Ticks at 0, 1, 2 s: the 3 s window still holds the first recommendation (4).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        target.calls().is_empty(),
        "scaled down inside the window: {:?}",
        target.calls()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut lines = Vec::new();
    while let Ok((r, _)) = rx.try_recv() {
        lines.push(r.line);
    }
    assert!(lines.last().unwrap().contains("→ 1"), "{lines:?}");
    assert_eq!(target.calls(), vec![Replicas(1)]);
    stop_tx.send(()).unwrap();
    task.await.unwrap();
    assert!(source.reads() >= 4);
}

#[tokio::test(start_paused = true)]
async fn a_metrics_pipeline_cadence_reads_every_tick_but_decides_on_published_readings() {
    let id = MetricId::new("demo", "rps");
    // Read n (from 0) reports n per pod on 2 pods.
    let script: Vec<_> = (0..40).map(|n| pods(2, f64::from(n))).collect();
    let source = Arc::new(FakeSource::new(id, script));
    let target = Arc::new(FakeTarget::new("ProcessPool/demo", Replicas(2)));
    let store = SampleStore::new(16);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_, policy) = load_policy_yaml(POLICY).unwrap();
    let options = LoopOptions {
        evaluate_every: 15,
        resolution: Duration::from_secs(15),
        ..LoopOptions::every("demo", Duration::from_secs(1))
    };
    let sources = vec![LoopSource {
        name: "rps".into(),
        resource: None,
        source: source.clone(),
    }];
    let lp = PolicyLoop::from_sources(
        policy,
        sources,
        target,
        Some(&store),
        Arc::new(CountingRecorder::default()),
        options,
    )
    .unwrap()
    .with_records(tx);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(lp.run(async {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(30_500)).await;
    stop_tx.send(()).unwrap();
    task.await.unwrap();
    // Ticks at 0..=30 s: every one read, decisions at 0, 15 and 30 s only.
    assert_eq!(source.reads(), 31);
    let records: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|(r, _)| r)
        .collect();
    assert_eq!(
        records
            .iter()
            .map(|r| r.t.round() as i64)
            .collect::<Vec<_>>(),
        vec![0, 15, 30]
    );
    // Nothing is published before 7.5 s; then the reads of 8 s and 23 s are what the
    // decisions at 15 s and 30 s see (the sum over 2 pods of n per pod).
    assert!(records[0].metrics["rps"].is_err());
    assert_eq!(records[1].metrics["rps"], Ok(16.0));
    assert_eq!(records[2].metrics["rps"], Ok(46.0));
}
