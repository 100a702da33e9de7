//! Real clients against the adapter over TLS, no cluster in between: kubectl 1.35 (`get --raw`
//! on every URL form, `api-resources`) and python-kubernetes 37 (typed discovery, raw GETs).
//! The numbers come from a scrape of a loopback gauge server.

mod adapter_support;

use adapter_support::{Adapter, jane_creds, run_kubectl, venv_python};
use serde_json::Value;
use tidescale::adapter::run::AuthorizationMode;

const P1: &str = "/apis/custom.metrics.k8s.io/v1beta1";
const P2: &str = "/apis/custom.metrics.k8s.io/v1beta2";
const E: &str = "/apis/external.metrics.k8s.io/v1beta1";

async fn raw(a: &Adapter, path: &str) -> Value {
    let (ok, out, err) = run_kubectl(a, &jane_creds(a), &["get", "--raw", path]).await;
    assert!(ok, "kubectl get --raw {path} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{path}: {e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_every_url_form_with_real_values() {
    let a = Adapter::start(AuthorizationMode::Webhook).await;
    let v = raw(
        &a,
        &format!("{E}/namespaces/default/queue_depth?labelSelector=queue%3Dorders"),
    )
    .await;
    assert_eq!(v["kind"], "ExternalMetricValueList");
    assert_eq!(v["items"][0]["value"], "42", "the scraped gauge: {v}");
    assert_eq!(v["items"][0]["metricLabels"]["queue"], "orders");
    // A new value on the page reaches the client at the next refresh.
    a.gauge
        .value
        .store(7.5f64.to_bits(), std::sync::atomic::Ordering::Relaxed);
    let mut seen = String::new();
    for _ in 0..50 {
        let v = raw(&a, &format!("{E}/namespaces/default/queue_depth")).await;
        seen = v["items"][0]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if seen == "7500m" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "7500m");
    // A ScalingPolicy's metric is served too, as <namespace>.<policy>.<metric>.
    let v = raw(&a, &format!("{E}/namespaces/shop/shop.web.queue")).await;
    assert_eq!(v["items"][0]["metricName"], "shop.web.queue", "{v}");
    assert_eq!(v["items"][0]["value"], "7500m", "{v}");

    let pod_name = a
        .gauge
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_string();
    for (path, kind, name, value) in [
        (
            format!("{P2}/namespaces/shop/pods/%2A/inflight?labelSelector=app%3Dweb"),
            "Pod",
            pod_name.as_str(),
            "3750m",
        ),
        (
            format!("{P2}/namespaces/shop/pods/*/inflight"),
            "Pod",
            pod_name.as_str(),
            "3750m",
        ),
        (
            format!("{P1}/namespaces/shop/deployments.apps/web/queue_depth"),
            "Deployment",
            "web",
            "7500m",
        ),
        (
            format!("{P2}/nodes/node-1/inflight"),
            "Node",
            "node-1",
            "3750m",
        ),
        (
            format!("{P2}/nodes/%2A/inflight"),
            "Node",
            "node-1",
            "3750m",
        ),
        (
            format!("{P2}/namespaces/shop/metrics/queue_depth"),
            "Namespace",
            "shop",
            "7500m",
        ),
    ] {
        let v = raw(&a, &path).await;
        assert_eq!(v["kind"], "MetricValueList", "{path}");
        assert_eq!(
            v["items"][0]["describedObject"]["kind"], kind,
            "{path}: {v}"
        );
        assert_eq!(v["items"][0]["describedObject"]["name"], name, "{path}");
        assert_eq!(v["items"][0]["value"], value, "{path}");
    }
    let v = raw(&a, P2).await;
    assert_eq!(v["kind"], "APIResourceList");
    let v = raw(&a, E).await;
    assert_eq!(v["resources"][0]["name"], "queue_depth");
    let v = raw(&a, "/apis").await;
    assert_eq!(v["kind"], "APIGroupList");

    // A 404 reaches kubectl as the Status message.
    let (ok, _, err) = run_kubectl(
        &a,
        &jane_creds(&a),
        &["get", "--raw", &format!("{E}/namespaces/default/nope")],
    )
    .await;
    assert!(
        !ok && (err.contains("NotFound") || err.contains("could not find")),
        "{err}"
    );

    let (ok, out, err) = run_kubectl(&a, &jane_creds(&a), &["api-resources"]).await;
    assert!(ok, "kubectl api-resources failed: {err}");
    assert!(
        out.contains("queue_depth") && out.contains("external.metrics.k8s.io/v1beta1"),
        "{out}"
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_kubernetes_does_typed_discovery_and_raw_gets() {
    let a = Adapter::start(AuthorizationMode::Webhook).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/k8s_client.py");
    let mut cmd = tokio::process::Command::new(venv_python());
    cmd.arg(script)
        .arg(a.base())
        .arg(&a.pki.serving_ca)
        .arg(&a.pki.jane.0)
        .arg(&a.pki.jane.1)
        .arg(format!("{E}/namespaces/default/queue_depth"))
        .arg("queue=orders")
        .arg(format!("{P2}/namespaces/shop/pods/*/inflight"))
        .arg("app=web");
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let groups: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert_eq!(
        groups,
        vec!["custom.metrics.k8s.io", "external.metrics.k8s.io"]
    );
    assert!(v["gitVersion"].as_str().unwrap().starts_with('v'));
    assert_eq!(v["raw"][0]["items"][0]["value"], "42");
    assert_eq!(v["raw"][1]["items"][0]["value"], "21");
    a.stop().await;
}
