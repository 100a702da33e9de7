//! The `tidescale adapter` binary with `--kubeconfig`: `labelSelector` on a per-pod metric keeps
//! only the pods a (loopback, plain-HTTP) Kubernetes API lists for it, and a refused listing is
//! a 500 `Status`, never an unfiltered answer.

mod adapter_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::IntoResponse;
use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A Kubernetes API stand-in answering metadata-only pod lists: `app=web` selects only
/// `web_pod`; `app=denied` is refused as RBAC would refuse it. Records (namespace, selector).
async fn api_server(web_pod: String) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/api/v1/namespaces/{ns}/pods",
            axum::routing::get(
                |State((web_pod, seen)): State<(String, Seen)>,
                 Path(ns): Path<String>,
                 RawQuery(q): RawQuery| async move {
                    let selector = form_urlencoded_selector(q.as_deref().unwrap_or(""));
                    seen.lock().unwrap().push((ns.clone(), selector.clone()));
                    if selector == "app=denied" {
                        let body = json!({"kind":"Status","apiVersion":"v1","status":"Failure",
                            "message":format!("pods is forbidden: cannot list resource \"pods\" in the namespace \"{ns}\""),
                            "reason":"Forbidden","code":403});
                        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
                    }
                    let names: Vec<&str> = if selector == "app=web" { vec![&web_pod] } else { vec![] };
                    let items: Vec<Value> = names
                        .iter()
                        .map(|n| json!({"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":{"name":n,"namespace":ns}}))
                        .collect();
                    axum::Json(json!({"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadataList","metadata":{"resourceVersion":"7"},"items":items}))
                        .into_response()
                },
            ),
        )
        .with_state((web_pod, seen.clone()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, seen)
}

/// The decoded `labelSelector` of a form-encoded query (`+` is a space).
fn form_urlencoded_selector(query: &str) -> String {
    tidescale::adapter::query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "labelSelector")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_selects_live_pods_and_a_refused_list_is_a_500() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let web = adapter_support::gauge_server(4.0).await;
    let other = adapter_support::gauge_server(400.0).await;
    let web_pod = host_port(&web.url);
    let (api, seen) = api_server(web_pod.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{api}\"}}\n\
             users:\n- name: adapter\n  user: {{}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: adapter}}\n\
             current-context: test\n"
        ),
    )
    .unwrap();
    let cfg = dir.path().join("adapter.yaml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 200ms\ncustomMetrics:\n- name: inflight\n  resource: pods\n  namespace: shop\n  \
             objectLabels: {{app: web}}\n  scrape: {{endpoints: [\"{}\", \"{}\"], metric: inflight}}\n",
            web.url, other.url
        ),
    )
    .unwrap();
    let (mut child, port, client) =
        adapter_support::spawn_dev_adapter(&cfg, &["--kubeconfig".as_ref(), kubeconfig.as_ref()]);
    let base = format!(
        "https://127.0.0.1:{port}/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/inflight"
    );
    // Poll until the first readings arrived (before that the list is empty or a 500).
    let mut body = Value::Null;
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("{base}?labelSelector=app%3Dweb"))
            .send()
            .await
            && r.status() == 200
        {
            body = r.json().await.unwrap();
            if !body["items"].as_array().unwrap().is_empty() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let items = body["items"].as_array().expect("a list");
    assert_eq!(items.len(), 1, "only the listed pod: {body}");
    assert_eq!(items[0]["describedObject"]["name"], web_pod.as_str());
    assert_eq!(items[0]["value"], "2", "inflight is half the gauge");
    assert!(
        seen.lock()
            .unwrap()
            .contains(&("shop".into(), "app=web".into()))
    );

    let r = client
        .get(format!("{base}?labelSelector=app%3Ddenied"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    let msg = status["message"].as_str().unwrap();
    assert!(msg.contains("pods is forbidden"), "{msg}");

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    assert!(
        log.contains("live pods from the cluster"),
        "the mode is logged: {log}"
    );
}
