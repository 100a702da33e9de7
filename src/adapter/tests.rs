//! Tests of the router: every URL form, discovery, errors as `Status`, health, and the golden
//! bodies of every example in spec §1 and §2 (`UPDATE_GOLDEN=1` rewrites them).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::config::AdapterConfig;
use super::metrics::{custom_id, external_id, quantity_string};
use super::{AdapterState, Security, router};
use crate::metric::Reading;
use crate::store::{SampleStore, StoreWriter};

/// 2025-03-01T10:15:30Z, the instant of every spec example.
pub(crate) fn example_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_740_824_130)
}

const CONFIG: &str = r#"
externalMetrics:
- name: queue_depth
  labels: {queue: orders}
  scrape: {endpoints: ["http://127.0.0.1:1/metrics"], metric: q}
- name: queue_depth
  labels: {queue: orders-retry}
  scrape: {endpoints: ["http://127.0.0.1:1/metrics"], metric: q}
- name: pending
  namespace: only-here
  prometheus: {query: "sum(pending)"}
customMetrics:
- name: http_requests_per_second
  resource: pods
  namespace: shop
  objectLabels: {app: web}
  metricLabels: {verb: GET}
  scrape: {endpoints: ["http://127.0.0.1:1/metrics"], metric: http_requests_total, aggregate: {rate: {window: 1m}}}
- name: queue_depth
  resource: namespaces
  object: shop
  prometheus: {query: "sum(queue_depth)"}
- name: rps
  resource: deployments.apps
  namespace: shop
  object: web
  prometheus: {query: "sum(rate(x[{{ window }}]))"}
- name: load
  resource: nodes
  object: n1
  prometheus: {query: "node_load1"}
"#;

struct Fixture {
    app: axum::Router,
    ready: Arc<AtomicBool>,
    _writers: Vec<StoreWriter>,
}

fn fixture(with_readings: bool) -> Fixture {
    let cfg = Arc::new(AdapterConfig::parse(CONFIG).unwrap());
    let store = SampleStore::new(100);
    let at = example_time();
    let mut writers = Vec::new();
    for (i, m) in cfg.external.iter().enumerate() {
        let w = store.writer(external_id(i, m)).unwrap();
        if with_readings {
            w.put(Reading::value([40.0, 55.0, 7.0][i], at, "test"));
        }
        writers.push(w);
    }
    for (i, m) in cfg.custom.iter().enumerate() {
        let w = store.writer(custom_id(i, m)).unwrap();
        if with_readings {
            w.put(match i {
                0 => Reading::per_pod(
                    BTreeMap::from([
                        ("web-7d9f-abcde".into(), 1.5),
                        ("web-7d9f-fghij".into(), 0.25),
                    ]),
                    1.75,
                    at,
                    "test",
                ),
                _ => Reading::value([0.0, 12.0, 2500.0, 0.0001][i], at, "test"),
            });
        } else {
            w.fail("connection refused");
        }
        writers.push(w);
    }
    let ready = Arc::new(AtomicBool::new(with_readings));
    let state = AdapterState::new(cfg, store, ready.clone(), Security::Off);
    Fixture {
        app: router(Arc::new(state)),
        ready,
        _writers: writers,
    }
}

async fn get_with(app: &axum::Router, uri: &str, accept: &str) -> (StatusCode, String, Vec<u8>) {
    let req = Request::get(uri)
        .header("accept", accept)
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap()
        .to_vec();
    (status, ct, body)
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let (s, ct, b) = get_with(app, uri, "application/vnd.kubernetes.protobuf, */*").await;
    assert_eq!(ct, "application/json", "{uri}");
    (
        s,
        serde_json::from_slice(&b)
            .unwrap_or_else(|e| panic!("{uri}: {e}: {}", String::from_utf8_lossy(&b))),
    )
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/adapter")
}

/// Compares `body` byte for byte with `tests/golden/adapter/<name>.json`.
fn golden(name: &str, body: &[u8]) {
    let path = golden_dir().join(format!("{name}.json"));
    let mut pretty =
        serde_json::to_vec_pretty(&serde_json::from_slice::<serde_json::Value>(body).unwrap())
            .unwrap();
    pretty.push(b'\n');
    // The golden file keeps the exact compact bytes on its first line and a readable copy after.
    let mut want = body.to_vec();
    want.push(b'\n');
    want.extend_from_slice(&pretty);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    let first_line = have.split(|b| *b == b'\n').next().unwrap();
    assert_eq!(
        String::from_utf8_lossy(first_line),
        String::from_utf8_lossy(body),
        "{name} differs from {}",
        path.display()
    );
}

const P1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const P2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const E: &str = "/apis/external.metrics.k8s.io/v1beta1";

#[tokio::test]
async fn spec_examples_are_served_byte_for_byte() {
    let f = fixture(true);
    let u2 = "/namespaces/shop/pods/%2A/http_requests_per_second?labelSelector=app%3Dweb";
    for (name, uri) in [
        ("custom-v1beta2-pods", format!("{P2}{u2}")),
        ("custom-v1beta1-pods", format!("{P1}{u2}")),
        (
            "external-queue-depth",
            format!(
                "{E}/namespaces/shop/queue_depth?labelSelector=queue+in+%28orders%2Corders-retry%29"
            ),
        ),
        ("discovery-custom-v1beta2", P2.to_string()),
        ("discovery-external-v1beta1", E.to_string()),
        (
            "status-not-found",
            format!("{P2}/namespaces/shop/pods/*/http_requests_per_second_typo"),
        ),
        (
            "custom-v1beta2-namespace",
            format!("{P2}/namespaces/shop/metrics/queue_depth"),
        ),
        ("apis", "/apis".to_string()),
    ] {
        let (_, _, body) = get_with(&f.app, &uri, "application/json").await;
        golden(name, &body);
    }
}

#[tokio::test]
async fn pods_metric_matches_the_spec_example_in_both_versions() {
    let f = fixture(true);
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/http_requests_per_second?labelSelector=app%3Dweb"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["items"][0],
        json!({
        "describedObject": {"kind": "Pod", "namespace": "shop", "name": "web-7d9f-abcde", "apiVersion": "v1"},
        "metric": {"name": "http_requests_per_second", "selector": null},
        "timestamp": "2025-03-01T10:15:30Z", "windowSeconds": 60, "value": "1500m"})
    );
    assert_eq!(v["items"][1]["value"], "250m");
    let (_, v) = get(
        &f.app,
        &format!("{P1}/namespaces/shop/pods/web-7d9f-abcde/http_requests_per_second"),
    )
    .await;
    assert_eq!(v["apiVersion"], "custom.metrics.k8s.io/v1beta1");
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "R1.17");
    assert_eq!(v["items"][0]["metricName"], "http_requests_per_second");
    assert_eq!(v["items"][0]["window"], 60);
    // labelSelector selects the described objects: no pod has app=api.
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/http_requests_per_second?labelSelector=app%3Dapi"),
    )
    .await;
    assert_eq!(
        (s, v["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    // metricLabelSelector is echoed as a LabelSelector (R1.20).
    let (_, v) = get(&f.app, &format!("{P2}/namespaces/shop/pods/*/http_requests_per_second?metricLabelSelector=verb+in+%28GET%29")).await;
    assert_eq!(
        v["items"][0]["metric"]["selector"],
        json!({"matchExpressions": [{"key": "verb", "operator": "In", "values": ["GET"]}]})
    );
    // ...and selects the metric's own series: this one is labelled verb=GET only.
    let (s, v) = get(
        &f.app,
        &format!(
            "{P2}/namespaces/shop/pods/*/http_requests_per_second?metricLabelSelector=verb%3DPOST"
        ),
    )
    .await;
    assert_eq!(
        (s, v["items"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    // A named object whose only series does not match is not found, and the message says
    // which selector was asked for.
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/deployments.apps/web/rps?metricLabelSelector=verb%3DGET"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("with selector verb=GET"),
        "{v}"
    );
    let (s, _) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/deployments.apps/web/rps?metricLabelSelector=%21verb"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn every_url_form_answers() {
    let f = fixture(true);
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/deployments.apps/web/rps"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        v["items"][0]["describedObject"],
        json!({"kind": "Deployment", "namespace": "shop", "name": "web", "apiVersion": "apps/v1"})
    );
    assert_eq!(v["items"][0]["value"], "2500");
    assert_eq!(v["items"][0]["windowSeconds"], 60);
    let (s, v) = get(&f.app, &format!("{P2}/nodes/n1/load")).await;
    assert_eq!(
        (s, v["items"][0]["value"].as_str()),
        (StatusCode::OK, Some("100u"))
    );
    assert_eq!(v["items"][0]["describedObject"]["namespace"], Value::Null);
    let (_, v) = get(&f.app, &format!("{P2}/nodes/%2A/load")).await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (_, v) = get(&f.app, &format!("{P1}/namespaces/shop/metrics/queue_depth")).await;
    assert_eq!(
        v["items"][0]["describedObject"],
        json!({"kind": "Namespace", "name": "shop", "apiVersion": "v1"})
    );
    assert_eq!(v["items"][0]["value"], "12");
    let (_, v) = get(
        &f.app,
        &format!("{E}/namespaces/any/queue_depth?labelSelector=queue%3Dorders"),
    )
    .await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    assert_eq!(v["items"][0]["metricLabels"], json!({"queue": "orders"}));
    let (_, v) = get(
        &f.app,
        &format!("{E}/namespaces/any/queue_depth?pretty=true&timeout=5s"),
    )
    .await;
    assert_eq!(
        v["items"].as_array().unwrap().len(),
        2,
        "unknown parameters are ignored (R1.13)"
    );
    let (s, v) = get(&f.app, &format!("{E}/namespaces/only-here/pending")).await;
    assert_eq!(
        (s, v["items"][0]["value"].as_str()),
        (StatusCode::OK, Some("7"))
    );
}

#[tokio::test]
async fn errors_are_status_objects_with_the_right_code() {
    let f = fixture(true);
    for (uri, code, reason) in [
        (format!("{P2}/namespaces/shop/pods/*/nope"), 404, "NotFound"),
        (
            format!("{P2}/namespaces/shop/deployments.apps/other/rps"),
            404,
            "NotFound",
        ),
        (
            format!("{P2}/namespaces/elsewhere/deployments.apps/web/rps"),
            404,
            "NotFound",
        ),
        (format!("{E}/namespaces/elsewhere/pending"), 404, "NotFound"),
        (format!("{E}/namespaces/shop/nope"), 404, "NotFound"),
        (format!("{P2}/namespaces/ns/pods/bar"), 404, "NotFound"),
        (format!("{P2}/blah"), 404, "NotFound"),
        (format!("{E}/nonexistent-metric"), 404, "NotFound"),
        ("/openapi/v2".into(), 404, "NotFound"),
        ("/openapi/v3".into(), 404, "NotFound"),
        ("/nothing".into(), 404, "NotFound"),
        (
            format!("{P2}/namespaces/shop/pods/*/http_requests_per_second?labelSelector=a+in+%28"),
            400,
            "BadRequest",
        ),
        (
            format!(
                "{P2}/namespaces/shop/pods/*/http_requests_per_second?metricLabelSelector=%3D%3D"
            ),
            400,
            "BadRequest",
        ),
        (
            format!("{E}/namespaces/shop/queue_depth?labelSelector=a%3Db%3Dc"),
            400,
            "BadRequest",
        ),
        (format!("{P2}/nodes/%zz/load"), 400, "BadRequest"),
    ] {
        let (s, v) = get(&f.app, &uri).await;
        assert_eq!(s.as_u16(), code, "{uri}: {v}");
        assert_eq!(
            (
                v["kind"].as_str(),
                v["apiVersion"].as_str(),
                v["status"].as_str()
            ),
            (Some("Status"), Some("v1"), Some("Failure"))
        );
        assert_eq!(
            (v["code"].as_u64(), v["reason"].as_str()),
            (Some(code as u64), Some(reason)),
            "{uri}"
        );
    }
    let req = Request::post(format!("{E}/namespaces/shop/queue_depth"))
        .body(Body::empty())
        .unwrap();
    let resp = f.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_metric_without_a_reading_is_a_500_status_naming_why() {
    let f = fixture(false);
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/deployments.apps/web/rps"),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{v}"
    );
    assert!(v.get("reason").is_none());
    // Discovery never depends on readings (R2.13).
    let (s, _) = get(&f.app, P2).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn discovery_documents() {
    let f = fixture(true);
    for (accept, uri) in [
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            "/apis",
        ),
        ("application/json", "/apis/"),
        ("*/*", "/version/"),
    ] {
        let (s, ct, _) = get_with(&f.app, uri, accept).await;
        assert_eq!(
            (s, ct.as_str()),
            (StatusCode::OK, "application/json"),
            "{uri}"
        );
    }
    let (_, v) = get(&f.app, "/apis").await;
    assert_eq!(
        v["groups"][0]["versions"].as_array().unwrap().len(),
        2,
        "both custom versions listed (R2.8)"
    );
    assert_eq!(v["groups"][0]["preferredVersion"]["version"], "v1beta2");
    let (_, v) = get(&f.app, "/apis/custom.metrics.k8s.io").await;
    assert_eq!(
        (v["kind"].as_str(), v["name"].as_str()),
        (Some("APIGroup"), Some("custom.metrics.k8s.io"))
    );
    let (_, v) = get(&f.app, P1).await;
    let names: Vec<(&str, bool)> = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["namespaced"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        vec![
            ("deployments.apps/rps", true),
            ("namespaces/queue_depth", false),
            ("nodes/load", false),
            ("pods/http_requests_per_second", true),
        ]
    );
    let (_, v) = get(&f.app, "/version").await;
    for k in [
        "major",
        "minor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(v[k].is_string(), "{k}");
    }
    // R2.5: never an empty resource list.
    let empty = Arc::new(AdapterState::new(
        Arc::new(AdapterConfig::parse("{}").unwrap()),
        SampleStore::new(1),
        Arc::new(AtomicBool::new(true)),
        Security::Off,
    ));
    let app = router(empty);
    let (_, v) = get(&app, P2).await;
    assert_eq!(v["resources"][0]["name"], "custommetrics");
    let (_, v) = get(&app, E).await;
    assert_eq!(v["resources"][0]["name"], "externalmetrics");
}

#[tokio::test]
async fn health_endpoints_follow_r3_21() {
    let f = fixture(true);
    f.ready.store(false, Ordering::Release);
    let text = |(s, ct, b): (StatusCode, String, Vec<u8>)| (s, ct, String::from_utf8(b).unwrap());
    let (s, ct, b) = text(get_with(&f.app, "/healthz", "*/*").await);
    assert_eq!(
        (s, ct.as_str(), b.as_str()),
        (StatusCode::OK, "text/plain; charset=utf-8", "ok")
    );
    let (s, _, b) = text(get_with(&f.app, "/readyz", "*/*").await);
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        b,
        "[+]ping ok\n[-]metrics-loaded failed: reason withheld\nreadyz check failed\n"
    );
    let (s, _, _) = text(get_with(&f.app, "/readyz?exclude=metrics-loaded", "*/*").await);
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = text(get_with(&f.app, "/readyz/ping", "*/*").await);
    assert_eq!(s, StatusCode::OK);
    f.ready.store(true, Ordering::Release);
    let (s, _, b) = text(get_with(&f.app, "/readyz?verbose", "*/*").await);
    assert_eq!(
        (s, b.as_str()),
        (
            StatusCode::OK,
            "[+]ping ok\n[+]metrics-loaded ok\nreadyz check passed\n"
        )
    );
    let (s, _, b) = text(get_with(&f.app, "/livez/nope", "*/*").await);
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
}

#[tokio::test]
async fn metrics_page_counts_requests_by_group_and_code() {
    let f = fixture(true);
    let ext = "/apis/external.metrics.k8s.io/v1beta1";
    let (s, _) = get(&f.app, ext).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get(&f.app, &format!("{ext}/namespaces/shop/nope")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, ct, b) = get_with(&f.app, "/metrics", "*/*").await;
    let page = String::from_utf8(b).unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    for line in [
        r#"tidescale_adapter_requests_total{group="external.metrics.k8s.io",code="200"} 1"#,
        r#"tidescale_adapter_requests_total{group="external.metrics.k8s.io",code="404"} 1"#,
        r#"tidescale_adapter_request_duration_seconds_count{group="external.metrics.k8s.io"} 2"#,
    ] {
        assert!(page.contains(line), "{line} missing from:\n{page}");
    }
}

#[test]
fn quantity_table_of_r1_5() {
    for (v, want) in [
        (0.0, "0"),
        (0.5, "500m"),
        (0.001, "1m"),
        (0.01, "10m"),
        (1.0, "1"),
        (1.5, "1500m"),
        (2.5, "2500m"),
        (100.0, "100"),
        (1000.0, "1k"),
        (1500.0, "1500"),
        (12000.0, "12k"),
        (1234567.0, "1234567"),
        (123.456, "123456m"),
        (1e9, "1G"),
        (0.0001, "100u"),
        (2.5e-7, "250n"),
        (0.25, "250m"),
        (-0.5, "-500m"),
        (9e-10, "1n"),
    ] {
        assert_eq!(quantity_string(v).as_deref(), Some(want), "{v}");
    }
    assert_eq!(quantity_string(f64::NAN), None);
    assert_eq!(quantity_string(f64::INFINITY), None);
}

#[test]
fn forbidden_body_matches_the_spec_example() {
    let attrs = super::auth::attributes(
        &format!("{P2}/namespaces/shop/pods/%2A/http_requests_per_second"),
        false,
    );
    let (message, details) = attrs.forbidden("system:anonymous");
    let mut s = super::wire::Status::failure(403, "Forbidden", message);
    s.details = details.map(Box::new);
    golden("status-forbidden", &serde_json::to_vec(&s).unwrap());
}
