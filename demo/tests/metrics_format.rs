//! `/metrics` in both formats; the classic one passes `promtool check metrics`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{InProcess, client};
use serde_json::json;
use tidescale_demo::{DEFAULT_TTL, Store};

async fn drive_some_traffic(base: &str) {
    let c = client();
    for i in 0..20 {
        c.put(format!("{base}/kv/user/{i}"))
            .json(&json!({"i": i}))
            .send()
            .await
            .unwrap();
        c.get(format!("{base}/kv/user/{i}")).send().await.unwrap();
    }
    c.get(format!("{base}/kv/missing")).send().await.unwrap();
    c.get(format!("{base}/load?ms=5")).send().await.unwrap();
    c.get(format!("{base}/work?ms=5")).send().await.unwrap();
    c.get(format!("{base}/")).send().await.unwrap();
    c.get(format!("{base}/no/such/route")).send().await.unwrap();
}

#[tokio::test]
async fn classic_format_passes_promtool_and_labels_are_templates() {
    let svc = InProcess::start(Store::memory(), DEFAULT_TTL).await;
    drive_some_traffic(&svc.base).await;
    let r = client()
        .get(format!("{}/metrics", svc.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    for family in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_in_flight",
        "workers_busy",
        "work_queue_length",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(family), "{family} missing from\n{text}");
    }
    assert!(text.contains(r#"route="/kv/{*key}""#));
    assert!(!text.contains("user/1"), "a raw key leaked into a label");
    assert!(text.contains(r#"status="404""#));

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be on PATH (scripts/install-deps.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    svc.stop().await;
}

#[tokio::test]
async fn openmetrics_when_the_scraper_asks_for_it() {
    let svc = InProcess::start(Store::memory(), DEFAULT_TTL).await;
    drive_some_traffic(&svc.base).await;
    let r = client()
        .get(format!("{}/metrics", svc.base))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("# TYPE http_requests counter"));
    assert!(text.trim_end().ends_with("# EOF"));
    svc.stop().await;
}
