//! Scrape source tests against small real HTTP servers on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{self, Instant};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::*;
use crate::source::{BuildContext, PodAddress};

/// What a test endpoint answers, as a function of seconds since it (re)started.
type Body = Arc<dyn Fn(f64) -> String + Send + Sync>;

#[derive(Clone)]
struct Behaviour {
    body: Body,
    started: Instant,
    delay: Duration,
    status: StatusCode,
    content_type: &'static str,
}

/// A live test endpoint; its behaviour can change while it runs.
#[derive(Clone)]
struct TestEndpoint {
    url: String,
    port: u16,
    state: Arc<Mutex<Behaviour>>,
}

impl TestEndpoint {
    async fn start(body: impl Fn(f64) -> String + Send + Sync + 'static) -> Self {
        let state = Arc::new(Mutex::new(Behaviour {
            body: Arc::new(body),
            started: clock::now(),
            delay: Duration::ZERO,
            status: StatusCode::OK,
            content_type: "text/plain; version=0.0.4",
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = state.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let s = s.clone();
                async move {
                    let b = s.lock().unwrap().clone();
                    tokio::time::sleep(b.delay).await;
                    let text = (b.body)(clock::since(b.started).as_secs_f64());
                    (b.status, [(header::CONTENT_TYPE, b.content_type)], text).into_response()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://127.0.0.1:{port}/metrics"),
            port,
            state,
        }
    }

    fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.state.lock().unwrap());
    }
}

fn ctx() -> BuildContext {
    let _ = rustls::crypto::ring::default_provider().install_default();
    BuildContext::new(MetricId::new("test", "m"), reqwest::Client::new())
}

fn cfg(yaml: &str, endpoints: &[&TestEndpoint]) -> ScrapeConfig {
    let mut c: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
    c.endpoints = endpoints.iter().map(|e| e.url.clone()).collect();
    c
}

/// Counters growing at `rate`/s from `base` (a base of 0 is a process that just started).
fn counter_page(rate: f64, base: f64) -> impl Fn(f64) -> String + Send + Sync {
    move |t| {
        format!(
            "# TYPE http_requests_total counter\n\
             http_requests_total{{route=\"/kv\",status=\"200\"}} {}\n\
             http_requests_total{{route=\"/load\",status=\"200\"}} {}\n",
            base + (rate * t).floor(),
            (1000.0 * t).floor()
        )
    }
}

fn name(e: &TestEndpoint) -> String {
    format!("127.0.0.1:{}", e.port)
}

async fn read_every(
    src: &ScrapeSource,
    times: usize,
    gap: Duration,
) -> Result<Reading, SourceError> {
    let mut last = src.read().await;
    for _ in 1..times {
        tokio::time::sleep(gap).await;
        last = src.read().await;
    }
    last
}

#[tokio::test]
async fn counter_rate_per_pod_with_label_matchers() {
    let a = TestEndpoint::start(counter_page(100.0, 1e5)).await;
    let b = TestEndpoint::start(counter_page(40.0, 1e5)).await;
    let c = cfg(
        "metric: http_requests_total\nlabels: {route: /kv}\naggregate: {rate: {window: 2s}}\n",
        &[&a, &b],
    );
    let src = ScrapeSource::new(c, &ctx()).unwrap();
    let first = src.read().await.unwrap_err();
    assert!(matches!(first, SourceError::NoData { .. }), "{first}");
    let r = read_every(&src, 8, Duration::from_millis(250))
        .await
        .unwrap();
    let pods = r.pods().unwrap();
    let (ra, rb) = (pods[&name(&a)], pods[&name(&b)]);
    assert!((ra - 100.0).abs() < 10.0, "{pods:?}");
    assert!((rb - 40.0).abs() < 5.0, "{pods:?}");
    assert!((r.total() - ra - rb).abs() < 1e-9);
    assert!(r.failed.is_empty());
}

#[tokio::test]
async fn a_window_not_yet_covered_reads_the_rate_over_what_it_covers() {
    // Two scrapes a second apart in a 4 s window: the rate is the rate over that second, not
    // the increase spread over the window (which would read about half the truth).
    let a = TestEndpoint::start(counter_page(200.0, 1e5)).await;
    let c = cfg(
        "metric: http_requests_total\nlabels: {route: /kv}\naggregate: {rate: {window: 4s}}\n",
        &[&a],
    );
    let src = ScrapeSource::new(c, &ctx()).unwrap();
    let r = read_every(&src, 2, Duration::from_secs(1)).await.unwrap();
    assert!((r.total() - 200.0).abs() < 20.0, "{}", r.total());
    let r = read_every(&src, 2, Duration::from_secs(1)).await.unwrap();
    assert!((r.total() - 200.0).abs() < 20.0, "{}", r.total());
}

#[tokio::test]
async fn a_window_mostly_uncovered_is_warming_up_not_a_figure() {
    let a = TestEndpoint::start(counter_page(200.0, 1e5)).await;
    let c = cfg(
        "metric: http_requests_total\nlabels: {route: /kv}\naggregate: {rate: {window: 20s}}\n",
        &[&a],
    );
    let src = ScrapeSource::new(c, &ctx()).unwrap();
    let e = read_every(&src, 2, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::NoData { .. }), "{e}");
    assert!(e.to_string().contains("warming up"), "{e}");
    assert!(e.to_string().contains("needs 5.0 s"), "{e}");
}

#[tokio::test]
async fn restarted_pod_counts_as_a_reset_not_a_negative_rate() {
    let a = TestEndpoint::start(counter_page(50.0, 0.0)).await;
    let c = cfg(
        "metric: http_requests_total\nlabels: {route: /kv}\naggregate: {rate: {window: 3s}}\n",
        &[&a],
    );
    let src = ScrapeSource::new(c, &ctx()).unwrap();
    read_every(&src, 6, Duration::from_millis(250))
        .await
        .unwrap();
    // The process restarts: its counter starts again from zero.
    a.set(|b| b.started = clock::now());
    let r = read_every(&src, 4, Duration::from_millis(250))
        .await
        .unwrap();
    let v = r.pods().unwrap()[&name(&a)];
    assert!(v > 25.0 && v < 75.0, "rate after restart {v}");
}

#[tokio::test]
async fn gauge_per_pod_reduces_as_configured() {
    let a =
        TestEndpoint::start(|_| "queue{q=\"jobs\"} 4\nqueue{q=\"mail\"} 1\nother 9\n".into()).await;
    let b = TestEndpoint::start(|_| "queue{q=\"jobs\"} 10\n".into()).await;
    for (reduce, want) in [("avg", 7.0), ("sum", 14.0), ("max", 10.0)] {
        let c = cfg(
            &format!(
                "metric: queue\nlabels: {{q: jobs}}\naggregate: {{gauge: {{reduce: {reduce}}}}}\n"
            ),
            &[&a, &b],
        );
        let r = ScrapeSource::new(c, &ctx()).unwrap().read().await.unwrap();
        assert_eq!(r.total(), want, "{reduce}");
        assert_eq!(r.pods().unwrap()[&name(&a)], 4.0);
    }
    let c = cfg("metric: queue\n", &[&a]);
    let r = ScrapeSource::new(c, &ctx()).unwrap().read().await.unwrap();
    assert_eq!(r.total(), 5.0, "no matchers: the pod's series are summed");
    let c = cfg("metric: absent\n", &[&a]);
    let e = ScrapeSource::new(c, &ctx())
        .unwrap()
        .read()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no series named absent"), "{e}");
}

/// Buckets growing at fixed rates on two pods: the merged quantile is Prometheus's.
#[tokio::test]
async fn quantile_merges_bucket_rates_across_pods() {
    fn hist(per_sec: [f64; 4]) -> impl Fn(f64) -> String + Send + Sync {
        move |t| {
            let les = ["0.05", "0.1", "0.25", "+Inf"];
            let mut s = String::from("# TYPE lat histogram\n");
            let mut cum = 0.0;
            for (le, r) in les.iter().zip(per_sec) {
                cum += r;
                s += &format!(
                    "lat_bucket{{route=\"/kv\",le=\"{le}\"}} {}\n",
                    (cum * t * 10.0).floor()
                );
            }
            s += &format!(
                "lat_count{{route=\"/kv\"}} {}\nlat_sum{{route=\"/kv\"}} 1\n",
                (cum * t * 10.0).floor()
            );
            s
        }
    }
    let a = TestEndpoint::start(hist([10.0, 5.0, 3.0, 2.0])).await;
    let b = TestEndpoint::start(hist([2.0, 3.0, 4.0, 1.0])).await;
    let c = cfg(
        "metric: lat\naggregate: {quantile: {q: 0.5, window: 2s}}\n",
        &[&a, &b],
    );
    let src = ScrapeSource::new(c, &ctx()).unwrap();
    let r = read_every(&src, 8, Duration::from_millis(250))
        .await
        .unwrap();
    // Merged per-second increments: 12, 8, 7, 3 (cumulative 12, 20, 27, 30); rank 15 → (0.05, 0.1]
    let want = 0.05 + 0.05 * (15.0 - 12.0) / 8.0;
    assert!(
        (r.total() - want).abs() / want < 0.03,
        "{} vs {want}",
        r.total()
    );
    assert!(r.pods().is_none());
}

#[tokio::test]
async fn pods_appear_and_vanish_mid_window() {
    let a = TestEndpoint::start(counter_page(20.0, 1e5)).await;
    let b = TestEndpoint::start(counter_page(20.0, 1e5)).await;
    let addr = |e: &TestEndpoint, n: &str| PodAddress {
        name: n.into(),
        host: "127.0.0.1".into(),
        port: Some(e.port),
    };
    let (tx, rx) = watch::channel(vec![addr(&a, "web-a")]);
    let mut ctx = ctx();
    ctx.pods = Some(rx);
    let c: ScrapeConfig = serde_saphyr::from_str(
        "metric: http_requests_total\nlabels: {route: /kv}\naggregate: {rate: {window: 2s}}\n",
    )
    .unwrap();
    let src = ScrapeSource::new(c, &ctx).unwrap();
    read_every(&src, 3, Duration::from_millis(250))
        .await
        .unwrap();
    tx.send(vec![addr(&a, "web-a"), addr(&b, "web-b")]).unwrap();
    // One scrape of the new pod: not enough for a rate, so it is left out rather than guessed.
    let r = src.read().await.unwrap();
    assert_eq!(r.pods().unwrap().keys().collect::<Vec<_>>(), ["web-a"]);
    let r = read_every(&src, 3, Duration::from_millis(250))
        .await
        .unwrap();
    assert_eq!(r.pods().unwrap().len(), 2);
    let portless = PodAddress {
        name: "web-c".into(),
        host: "127.0.0.1".into(),
        port: None,
    };
    tx.send(vec![addr(&b, "web-b"), portless]).unwrap();
    let r = src.read().await.unwrap();
    assert_eq!(r.pods().unwrap().keys().collect::<Vec<_>>(), ["web-b"]);
    assert_eq!(src.lock().len(), 1, "the vanished pod's history is gone");
    assert!(
        r.failed["web-c"].contains("no container port"),
        "{:?}",
        r.failed
    );
}

#[tokio::test]
async fn failures_are_per_endpoint_and_named() {
    let ok = TestEndpoint::start(|_| "g 1\n".into()).await;
    let slow = TestEndpoint::start(|_| "g 2\n".into()).await;
    slow.set(|b| b.delay = Duration::from_secs(3));
    let down = TestEndpoint::start(|_| "g 3\n".into()).await;
    down.set(|b| b.status = StatusCode::SERVICE_UNAVAILABLE);
    let malformed = TestEndpoint::start(|_| "g{x=\"1\" 4\n".into()).await;
    let truncated = TestEndpoint::start(|_| "# TYPE g gauge\ng 5\n".into()).await;
    truncated.set(|b| b.content_type = "application/openmetrics-text; version=1.0.0");
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "http://127.0.0.1:{}/metrics",
            l.local_addr().unwrap().port()
        )
    };
    let mut c = cfg(
        "metric: g\ntimeout: 300ms\n",
        &[&ok, &slow, &down, &malformed, &truncated],
    );
    c.endpoints.push(refused.clone());
    let src = ScrapeSource::new(c, &ctx()).unwrap();
    let started = clock::now();
    let r = src.read().await.unwrap();
    assert!(
        clock::since(started) < Duration::from_secs(2),
        "timeouts run concurrently"
    );
    assert_eq!(r.pods().unwrap().len(), 1);
    assert_eq!(r.total(), 1.0);
    let f = &r.failed;
    assert!(f[&name(&slow)].contains("timed out after 300ms"), "{f:?}");
    assert!(f[&name(&down)].contains("HTTP 503"), "{f:?}");
    assert!(
        f[&name(&malformed)].contains("bad payload") && f[&name(&malformed)].contains("line 1"),
        "{f:?}"
    );
    assert!(f[&name(&truncated)].contains("# EOF"), "{f:?}");
    let refused_name = refused
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    assert!(
        f[refused_name].contains("unreachable") && f[refused_name].contains(&refused),
        "{f:?}"
    );
    assert!(
        f.values().all(|e| e.starts_with("test/m: ")),
        "every error names the metric"
    );
}

#[tokio::test]
async fn all_endpoints_failing_is_one_error_listing_each() {
    let down = TestEndpoint::start(|_| String::new()).await;
    down.set(|b| b.status = StatusCode::INTERNAL_SERVER_ERROR);
    let also = TestEndpoint::start(|_| "g garbage\n".into()).await;
    let src = ScrapeSource::new(cfg("metric: g\n", &[&down, &also]), &ctx()).unwrap();
    let e = src.read().await.unwrap_err();
    let SourceError::AllFailed { failures, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(failures.len(), 2);
    assert!(
        e.to_string().contains("HTTP 500") && e.to_string().contains("bad value"),
        "{e}"
    );
}

fn gauge_page(series: usize) -> impl Fn(f64) -> String + Send + Sync {
    move |_| {
        let mut s = String::from("# TYPE g gauge\n");
        for i in 0..series {
            s += &format!("g{{series=\"{i}\",pad=\"{}\"}} 1\n", "x".repeat(40));
        }
        s
    }
}

#[tokio::test]
async fn huge_pages_are_capped_and_big_ones_read() {
    let big = TestEndpoint::start(gauge_page(8_000)).await;
    let sum = "metric: g\naggregate: {gauge: {reduce: sum}}\n";
    let src = ScrapeSource::new(cfg(sum, &[&big]), &ctx()).unwrap();
    assert_eq!(src.read().await.unwrap().total(), 8_000.0);
    let capped = ScrapeSource::new(cfg("metric: g\n", &[&big]), &ctx())
        .unwrap()
        .with_max_bytes(64 * 1024);
    let e = capped.read().await.unwrap_err();
    assert!(e.to_string().contains("65536-byte limit"), "{e}");
    let too_many = TestEndpoint::start(gauge_page(history::MAX_SERIES_PER_ENDPOINT + 1)).await;
    let e = ScrapeSource::new(cfg(sum, &[&too_many]), &ctx())
        .unwrap()
        .read()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("more than 10000 series of g"), "{e}");
}

#[tokio::test]
async fn openmetrics_counters_from_prometheus_client_are_read() {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/exposition/prometheus-client-openmetrics.txt"),
    )
    .unwrap();
    let e = TestEndpoint::start(move |_| page.clone()).await;
    e.set(|b| b.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8");
    let c = cfg(
        "metric: http_requests_total\nlabels: {route: /load}\naggregate: {gauge: {reduce: sum}}\n",
        &[&e],
    );
    assert_eq!(
        ScrapeSource::new(c, &ctx())
            .unwrap()
            .read()
            .await
            .unwrap()
            .total(),
        17.0
    );
}

#[test]
fn bad_configs_are_refused_at_build() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut c: ScrapeConfig = serde_saphyr::from_str("metric: m\n").unwrap();
    assert!(
        ScrapeSource::new(c.clone(), &ctx()).is_err(),
        "no endpoints, no pods"
    );
    c.endpoints = vec!["not a url".into()];
    let e = ScrapeSource::new(c, &ctx()).unwrap_err();
    assert!(e.to_string().contains("not a URL"), "{e}");
    let mut q: ScrapeConfig =
        serde_saphyr::from_str("metric: m\naggregate: {quantile: {q: 1.5, window: 1m}}\n").unwrap();
    q.endpoints = vec!["http://127.0.0.1:1/metrics".into()];
    assert!(
        ScrapeSource::new(q, &ctx())
            .unwrap_err()
            .to_string()
            .contains("outside [0, 1]")
    );
}
