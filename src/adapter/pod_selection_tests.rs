//! Router tests of `labelSelector` on per-pod metrics: live pods from a [`PodLister`] when one
//! is configured (R1.24), the configured `objectLabels` otherwise, and a 500 when listing fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::config::AdapterConfig;
use super::metrics::custom_id;
use super::objects::{FakePodLister, PodLister};
use super::tests::example_time;
use super::{AdapterState, Security, router};
use crate::metric::Reading;
use crate::store::{SampleStore, StoreWriter};

const P2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const P1: &str = "/apis/custom.metrics.k8s.io/v1beta1";

/// One Prometheus query that covers the pods of two workloads, as a namespace-wide
/// `by (pod)` query does, plus an entry describing one named object.
const CONFIG: &str = r#"
customMetrics:
- name: rps
  resource: pods
  namespace: shop
  objectLabels: {app: web}
  prometheus: {query: 'sum(rate(http_requests_total{namespace="shop"}[1m])) by (pod)', podLabel: pod}
- name: rps
  resource: deployments.apps
  namespace: shop
  object: web
  prometheus: {query: "sum(rate(http_requests_total[1m]))"}
"#;

struct Fixture {
    app: axum::Router,
    _writers: Vec<StoreWriter>,
}

/// The source knows `web-1`, `web-2`, `api-1` and `gone-1` (a pod that no longer exists).
fn fixture(lister: Option<Arc<dyn PodLister>>) -> Fixture {
    let cfg = Arc::new(AdapterConfig::parse(CONFIG).unwrap());
    let store = SampleStore::new(100);
    let at = example_time();
    let mut writers = Vec::new();
    for (i, m) in cfg.custom.iter().enumerate() {
        let w = store.writer(custom_id(i, m)).unwrap();
        w.put(match i {
            0 => Reading::per_pod(
                BTreeMap::from([
                    ("web-1".into(), 1.0),
                    ("web-2".into(), 3.0),
                    ("api-1".into(), 100.0),
                    ("gone-1".into(), 50.0),
                ]),
                154.0,
                at,
                "test",
            ),
            _ => Reading::value(4.0, at, "test"),
        });
        writers.push(w);
    }
    let mut state = AdapterState::new(cfg, store, Arc::new(AtomicBool::new(true)), Security::Off);
    if let Some(l) = lister {
        state = state.with_pod_lister(l);
    }
    Fixture {
        app: router(Arc::new(state)),
        _writers: writers,
    }
}

fn cluster() -> FakePodLister {
    FakePodLister::default()
        .with_pod("shop", "web-1", &[("app", "web"), ("tier", "a")])
        .with_pod("shop", "web-2", &[("app", "web"), ("tier", "b")])
        .with_pod("shop", "web-3", &[("app", "web"), ("tier", "a")])
        .with_pod("shop", "api-1", &[("app", "api")])
        .with_pod("other", "web-1", &[("app", "web")])
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::get(uri).body(Body::empty()).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn pod_names(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {v}"))
        .iter()
        .map(|i| i["describedObject"]["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pods_outside_the_selector_are_dropped() {
    let fake = Arc::new(cluster());
    let f = fixture(Some(fake.clone()));
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/%2A/rps?labelSelector=app%3Dweb"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // api-1 belongs to another workload, gone-1 no longer exists, web-3 has no value yet.
    assert_eq!(pod_names(&v), ["web-1", "web-2"]);
    assert_eq!(v["items"][0]["value"], "1");
    assert_eq!(v["items"][1]["value"], "3");
    assert_eq!(fake.calls(), [("shop".to_string(), "app=web".to_string())]);

    let (s, v) = get(
        &f.app,
        &format!("{P1}/namespaces/shop/pods/*/rps?labelSelector=app%3Dapi"),
    )
    .await;
    assert_eq!(
        (s, pod_names(&v)),
        (StatusCode::OK, vec!["api-1".to_string()])
    );
    assert_eq!(v["items"][0]["metricName"], "rps");
}

#[tokio::test]
async fn an_absent_selector_means_every_live_pod_of_the_namespace() {
    let fake = Arc::new(cluster());
    let f = fixture(Some(fake.clone()));
    let (s, v) = get(&f.app, &format!("{P2}/namespaces/shop/pods/*/rps")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(pod_names(&v), ["api-1", "web-1", "web-2"]);
    assert_eq!(fake.calls(), [("shop".to_string(), String::new())]);
}

#[tokio::test]
async fn the_selector_reaches_the_lister_decoded_and_in_canonical_order() {
    let fake = Arc::new(cluster());
    let f = fixture(Some(fake.clone()));
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/rps?labelSelector=tier+in+%28a%29%2Capp%3Dweb"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(pod_names(&v), ["web-1"]);
    assert_eq!(
        fake.calls(),
        [("shop".to_string(), "app=web,tier in (a)".to_string())]
    );
}

#[tokio::test]
async fn object_labels_decide_only_without_a_lister() {
    // Without a cluster the entry's objectLabels {app: web} decide, for all its pods at once.
    let f = fixture(None);
    let (_, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/rps?labelSelector=app%3Dweb"),
    )
    .await;
    assert_eq!(pod_names(&v), ["api-1", "gone-1", "web-1", "web-2"]);
    let (_, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/rps?labelSelector=app%3Dapi"),
    )
    .await;
    assert!(pod_names(&v).is_empty());
    // With one, the live labels decide and objectLabels are not consulted.
    let f = fixture(Some(Arc::new(cluster())));
    let (_, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/rps?labelSelector=app%3Dapi"),
    )
    .await;
    assert_eq!(pod_names(&v), ["api-1"]);
}

#[tokio::test]
async fn a_lister_failure_is_a_500_status_naming_it() {
    let fake = Arc::new(FakePodLister {
        fail: Some("pods is forbidden: cannot list resource \"pods\"".into()),
        ..Default::default()
    });
    let f = fixture(Some(fake.clone()));
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/rps?labelSelector=app%3Dweb"),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["kind"], "Status");
    assert_eq!(v["status"], "Failure");
    assert_eq!(v["code"], 500);
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("metric rps"), "{msg}");
    assert!(msg.contains("namespace shop"), "{msg}");
    assert!(msg.contains("pods is forbidden"), "{msg}");
    assert!(v.get("items").is_none(), "never unfiltered items: {v}");
}

#[tokio::test]
async fn the_lister_is_asked_only_for_wildcards_on_per_pod_entries() {
    let fake = Arc::new(FakePodLister {
        fail: Some("must not be asked".into()),
        ..Default::default()
    });
    let f = fixture(Some(fake.clone()));
    // A named pod (U1): no selector to resolve.
    let (s, v) = get(&f.app, &format!("{P2}/namespaces/shop/pods/api-1/rps")).await;
    assert_eq!(
        (s, pod_names(&v)),
        (StatusCode::OK, vec!["api-1".to_string()])
    );
    // An entry with an `object`.
    let (s, _) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/deployments.apps/web/rps"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // A namespace with no per-pod entry: nothing to filter, an empty list.
    let (s, v) = get(&f.app, &format!("{P2}/namespaces/other/pods/*/rps")).await;
    assert_eq!((s, pod_names(&v).len()), (StatusCode::OK, 0));
    // A bad selector is refused before any listing.
    let (s, v) = get(
        &f.app,
        &format!("{P2}/namespaces/shop/pods/*/rps?labelSelector=app%3D%3D%3D"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}
