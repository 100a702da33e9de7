//! The demo service under faults: Redis outages and SIGTERM with requests in flight.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{InProcess, Redis, ServiceProcess, client};
use serde_json::{Value, json};
use tidescale_demo::{DEFAULT_TTL, Store};

/// Polls `check` every 100 ms, at most `tries` times.
async fn eventually<F, Fut>(tries: u32, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Polls `{base}/readyz` until it answers 200 (at most ~10 s).
async fn ready_within_10s(c: &reqwest::Client, base: &str) -> bool {
    eventually(100, || {
        let request = c.get(format!("{base}/readyz"));
        async move {
            request
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        }
    })
    .await
}

#[tokio::test]
async fn redis_outage_gives_503_and_recovers_without_restart() {
    let mut redis = Redis::start();
    let svc = InProcess::start(Store::redis(&redis.url()).unwrap(), DEFAULT_TTL).await;
    let c = client();
    let base = svc.base.clone();
    assert_eq!(
        c.put(format!("{base}/kv/a"))
            .json(&json!({"v": 1}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    redis.kill();
    for req in [
        c.put(format!("{base}/kv/a")).json(&json!({"v": 2})),
        c.get(format!("{base}/kv/a")),
        c.delete(format!("{base}/kv/a")),
        c.get(format!("{base}/")),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 503);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "store unavailable");
        assert!(
            body["detail"].as_str().unwrap().contains("127.0.0.1"),
            "{body}"
        );
    }
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    // Each failed store operation is counted, by operation.
    let page = c
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for op in ["put", "get", "delete", "hit", "ping"] {
        assert!(
            page.contains(&format!("store_errors_total{{op=\"{op}\"}} 1")),
            "no store error counted for {op}:\n{page}"
        );
    }
    // Liveness does not depend on the store: the process is fine, restarting it would not help.
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // /work does not touch the store and keeps serving.
    assert_eq!(
        c.get(format!("{base}/work?ms=1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    redis.restart();
    let ready = ready_within_10s(&c, &base).await;
    assert!(
        ready,
        "readiness did not recover within 10 s of Redis returning"
    );
    assert_eq!(
        c.put(format!("{base}/kv/a"))
            .json(&json!({"v": 3}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let got: Value = c
        .get(format!("{base}/kv/a"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["v"], json!(3));
    svc.stop().await;
}

#[tokio::test]
async fn service_started_while_redis_is_down_becomes_ready_when_it_comes_up() {
    let mut redis = Redis::start();
    redis.kill();
    let svc = InProcess::start(Store::redis(&redis.url()).unwrap(), DEFAULT_TTL).await;
    let c = client();
    assert_eq!(
        c.get(format!("{}/readyz", svc.base))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        c.get(format!("{}/kv/x", svc.base))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    redis.restart();
    let base = svc.base.clone();
    let ready = ready_within_10s(&c, &base).await;
    assert!(ready);
    svc.stop().await;
}

fn in_flight(metrics: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("http_requests_in_flight "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Polls `{base}/metrics` until at least `n` requests are in flight, counting the metrics
/// request itself (at most ~20 s).
async fn in_flight_reaches(c: &reqwest::Client, base: &str, n: f64) -> bool {
    eventually(200, || {
        let c = c.clone();
        let url = format!("{base}/metrics");
        async move {
            match c.get(url).send().await {
                Ok(r) => in_flight(&r.text().await.unwrap_or_default()) >= n,
                Err(_) => false,
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_zero() {
    let mut svc = ServiceProcess::spawn(&["--shutdown-grace", "120"]);
    let base = svc.base.clone();
    let addr = base.trim_start_matches("http://").to_string();
    let c = client();
    // One connection per request, so each is really in flight on its own.
    let mut requests = Vec::new();
    for _ in 0..50 {
        let url = format!("{base}/load?ms=300");
        requests.push(tokio::spawn(async move {
            let c = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap();
            let r = c.get(url).send().await.map_err(|e| e.to_string())?;
            let status = r.status().as_u16();
            let body: Value = r.json().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((status, body))
        }));
    }
    let all_in = in_flight_reaches(&c, &base, 51.0).await;
    assert!(all_in, "the 50 slow requests never were all in flight");

    svc.signal("TERM");
    // New connections are refused once the listener closes (bounded wait for the signal).
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(&addr).is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refused,
        "new connections were still accepted 2 s after SIGTERM"
    );

    for r in requests {
        let (status, body) = r
            .await
            .unwrap()
            .expect("an in-flight request failed during the drain");
        assert_eq!(status, 200);
        assert!(body["cpu_ms"].as_f64().unwrap() >= 300.0);
    }
    let code = tokio::task::spawn_blocking(move || svc.wait_exit(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn grace_expiry_is_reported_in_the_exit_code() {
    let mut svc = ServiceProcess::spawn(&["--shutdown-grace", "0.2"]);
    let url = format!("{}/work?ms=5000", svc.base);
    let slow = tokio::spawn(async move { client().get(url).send().await.map(|r| r.status()) });
    // Signal only once the slow request is in flight (the metrics request itself counts one).
    let started = in_flight_reaches(&client(), &svc.base, 2.0).await;
    assert!(started, "the slow request never was in flight");
    svc.signal("TERM");
    let code = tokio::task::spawn_blocking(move || svc.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(3));
    assert!(
        slow.await.unwrap().is_err(),
        "the cut request cannot have succeeded"
    );
}
