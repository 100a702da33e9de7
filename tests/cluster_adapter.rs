//! The adapter behind the real aggregator of a real kube-apiserver (`scripts/cluster.sh up`):
//! APIService availability, discovery and metric GETs with the real kubectl, authorization by
//! the real RBAC through SubjectAccessReview, the RBAC the adapter needs, and the aggregator's
//! added latency.

mod cluster_support;

use std::time::Duration;

use tidescale::clock;

use cluster_support::prometheus::Prometheus;
use cluster_support::{
    ADAPTER_NAME, AdapterProcess, Cluster, Deadline, Exposition, deployment_yaml,
};
use serde_json::Value;

const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1";
const CUSTOM: &str = "/apis/custom.metrics.k8s.io/v1beta2";

fn config(ns: &str, page: &str, prometheus: &str) -> String {
    format!(
        r#"interval: 1s
externalMetrics:
- name: queue_depth
  labels: {{queue: orders}}
  scrape: {{endpoints: ["{page}"], metric: queue_depth, labels: {{queue: orders}}}}
customMetrics:
- name: rps
  resource: deployments.apps
  namespace: {ns}
  object: web
  scrape: {{endpoints: ["{page}"], metric: rps}}
- name: http_rps
  resource: pods
  namespace: {ns}
  prometheus: {{url: "{prometheus}", query: 'http_rps', podLabel: pod}}
"#
    )
}

async fn pod_names(c: &Cluster, ns: &str, selector: &str) -> Vec<String> {
    let v = c
        .kubectl_json(&["-n", ns, "get", "pods", "-l", selector, "-o", "json"])
        .await;
    let mut names: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `kubectl get --raw` as `user` (impersonated by the admin; `None`: the admin itself).
async fn raw_as(c: &Cluster, user: Option<&str>, path: &str) -> (bool, String, String) {
    let as_flag = user.map(|u| format!("--as={u}"));
    let mut args = vec!["get", "--raw", path];
    if let Some(a) = &as_flag {
        args.push(a);
    }
    c.kubectl(&args).await
}

fn items(v: &Value) -> Vec<(String, String)> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let name = i["describedObject"]["name"]
                .as_str()
                .or(i["metricName"].as_str())
                .unwrap_or_default();
            (name.to_string(), i["value"].as_str().unwrap().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_serves_discovery_and_metrics_under_real_rbac() {
    let c = Cluster::require();
    let ns = c.namespace("agg").await;
    c.apply(&deployment_yaml(&ns, "web", 2)).await;
    c.apply(&deployment_yaml(&ns, "other", 1)).await;
    let deadline = Deadline::new("3 running pods", 90);
    while pod_names(&c, &ns, "app in (web,other)").await.len() != 3 {
        deadline.tick().await;
    }
    let web = pod_names(&c, &ns, "app=web").await;
    let other = pod_names(&c, &ns, "app=other").await;

    let page = Exposition::start(&c.host_ip).await;
    page.set(r#"queue_depth{queue="orders"}"#, 42.0);
    page.set("rps", 300.0);
    for (i, pod) in web.iter().chain(&other).enumerate() {
        page.set(&format!(r#"http_rps{{pod="{pod}"}}"#), 10.0 + i as f64);
    }
    let prom = Prometheus::start(&c.host_ip, &page.url).await;
    let adapter = AdapterProcess::start(&c, &config(&ns, &page.url, &prom.url)).await;

    // Available=True, as the aggregator's availability controller decided it.
    for cond in c.wait_apiservices_available(60).await {
        assert_eq!(cond["reason"], "Passed", "{cond}");
    }

    // Discovery through the aggregator.
    let d = c.kubectl_json(&["get", "--raw", CUSTOM]).await;
    let names: Vec<&str> = d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"deployments.apps/rps"), "{d}");
    assert!(names.contains(&"pods/http_rps"), "{d}");
    let d = c.kubectl_json(&["get", "--raw", EXT]).await;
    assert_eq!(d["resources"][0]["name"], "queue_depth", "{d}");
    // kubectl lists top-level resources only: the external metric, not the custom ones
    // (every custom metric is a subresource such as deployments.apps/rps).
    let out = c
        .kubectl_ok(&["api-resources", "--api-group=external.metrics.k8s.io"])
        .await;
    assert!(
        out.contains("queue_depth") && out.contains("ExternalMetricValueList"),
        "{out}"
    );

    // A custom object metric.
    let v = c
        .kubectl_json(&[
            "get",
            "--raw",
            &format!("{CUSTOM}/namespaces/{ns}/deployments.apps/web/rps"),
        ])
        .await;
    assert_eq!(v["kind"], "MetricValueList", "{v}");
    assert_eq!(items(&v), vec![("web".into(), "300".into())], "{v}");

    // A custom pods metric with a label selector: only the web pods, with their own values
    // (the adapter lists the pods the selector selects from the real API server).
    let path = format!("{CUSTOM}/namespaces/{ns}/pods/*/http_rps?labelSelector=app%3Dweb");
    let deadline = Deadline::new("the pods metric through Prometheus", 60);
    let mut got = loop {
        let (ok, out, _) = raw_as(&c, None, &path).await;
        if ok {
            let got = items(&serde_json::from_str(&out).unwrap());
            if got.len() == 2 {
                break got;
            }
        }
        deadline.tick().await;
    };
    let want: Vec<(String, String)> = web
        .iter()
        .enumerate()
        .map(|(i, p)| (p.clone(), format!("{}", 10 + i)))
        .collect();
    got.sort();
    assert_eq!(got, want, "only the selected pods, each with its value");

    // An external metric with a labelSelector.
    let ext_path = format!("{EXT}/namespaces/{ns}/queue_depth?labelSelector=queue%3Dorders");
    let v = c.kubectl_json(&["get", "--raw", &ext_path]).await;
    assert_eq!(v["kind"], "ExternalMetricValueList", "{v}");
    assert_eq!(v["items"][0]["value"], "42", "{v}");
    assert_eq!(v["items"][0]["metricLabels"]["queue"], "orders", "{v}");

    // Real RBAC. Through the aggregator, kube-apiserver authorizes first: a user without a
    // grant is refused there, one with it reaches the adapter, which asks SubjectAccessReview.
    let (ok, _, err) = raw_as(&c, Some("jane"), &ext_path).await;
    assert!(!ok && err.contains("Forbidden"), "jane has no grant: {err}");
    c.apply(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "test:jane-external-metrics"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "tidescale:external-metrics-reader"}
subjects: [{kind: User, name: jane, apiGroup: rbac.authorization.k8s.io}]
"#,
    )
    .await;
    let deadline = Deadline::new("jane's grant takes effect", 30);
    loop {
        let (ok, out, _) = raw_as(&c, Some("jane"), &ext_path).await;
        if ok && out.contains("\"42\"") {
            break;
        }
        deadline.tick().await;
    }
    // Straight to the adapter with the front proxy's certificate, as the aggregator calls it:
    // the 403 now comes from the adapter's own SubjectAccessReview against the real RBAC.
    let direct = c.front_proxy_client();
    let url = format!("https://{ADAPTER_NAME}{ext_path}");
    let r = direct
        .get(&url)
        .header("X-Remote-User", "mallory")
        .header("X-Remote-Group", "system:authenticated")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["reason"], "Forbidden", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("User \"mallory\" cannot list resource \"queue_depth\""),
        "{body}"
    );
    let r = direct
        .get(&url)
        .header("X-Remote-User", "jane")
        .header("X-Remote-Group", "system:authenticated")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "jane is allowed by the real RBAC");
    let r = direct
        .get(&url)
        .header(
            "X-Remote-User",
            "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        )
        .header("X-Remote-Group", "system:serviceaccounts")
        .header("X-Remote-Group", "system:serviceaccounts:kube-system")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the HPA controller's identity is allowed");
    // The served log names who asked (the aggregator forwards the impersonated user).
    assert!(
        adapter.served().iter().any(|s| s.user == "jane"),
        "jane's request is in the served log"
    );

    latency_figure(&c, &ext_path).await;
    adapter.stop().await;
    c.kubectl_ok(&["delete", "clusterrolebinding", "test:jane-external-metrics"])
        .await;
}

/// The same external-metric GET through the aggregator and straight to the adapter, one after
/// the other on warm connections, as the admin (group system:masters: no SubjectAccessReview
/// on either path, so the difference is the aggregator's own cost).
async fn latency_figure(c: &Cluster, path: &str) {
    const N: usize = 300;
    let via = c.admin_client();
    let direct = c.front_proxy_client();
    let mut through = Vec::with_capacity(N);
    let mut straight = Vec::with_capacity(N);
    for i in 0..N + 20 {
        let t = clock::now();
        let r = via
            .get(format!("{}{path}", c.api_base()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        let a = clock::since(t);
        let t = clock::now();
        let r = direct
            .get(format!("https://{ADAPTER_NAME}{path}"))
            .header("X-Remote-User", "tidescale-admin")
            .header("X-Remote-Group", "system:masters")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        let b = clock::since(t);
        if i >= 20 {
            // The first 20 of each warm up connections and caches.
            through.push(a);
            straight.push(b);
        }
    }
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
    };
    let (t50, t99) = (pct(&mut through, 0.5), pct(&mut through, 0.99));
    let (s50, s99) = (pct(&mut straight, 0.5), pct(&mut straight, 0.99));
    eprintln!(
        "FIGURE external-metric GET latency ({N} each): through the aggregator p50 {t50:.2} ms \
         p99 {t99:.2} ms; straight to the adapter p50 {s50:.2} ms p99 {s99:.2} ms"
    );
    // Both paths answer, and the aggregator path cannot be cheaper than the hop it adds.
    assert!(t50 >= s50, "aggregator p50 {t50} < direct p50 {s50}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_delegator_the_adapter_cannot_authorize() {
    let c = Cluster::require();
    let ns = c.namespace("authz").await;
    let page = Exposition::start(&c.host_ip).await;
    page.set(r#"queue_depth{queue="orders"}"#, 7.0);
    page.set("rps", 1.0);
    let adapter = AdapterProcess::start(&c, &config(&ns, &page.url, "http://127.0.0.1:1")).await;
    let path = format!("{EXT}/namespaces/{ns}/queue_depth");
    let direct = c.front_proxy_client();
    let ask = |user: &'static str| {
        let direct = direct.clone();
        let url = format!("https://{ADAPTER_NAME}{path}");
        async move {
            let r = direct
                .get(url)
                .header("X-Remote-User", user)
                .header("X-Remote-Group", "system:serviceaccounts")
                .header("X-Remote-Group", "system:serviceaccounts:kube-system")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or_default())
        }
    };
    let hpa = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
    assert_eq!(ask(hpa).await.0, 200, "allowed with the binding");

    let binding = "tidescale-adapter:system:auth-delegator";
    let saved = c
        .kubectl_ok(&["get", "clusterrolebinding", binding, "-o", "yaml"])
        .await;
    c.kubectl_ok(&["delete", "clusterrolebinding", binding])
        .await;
    // The adapter caches answers for 10 s; after that every request needs a new
    // SubjectAccessReview, which the API server now refuses to the adapter's service account.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (status, body) = ask(hpa).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["reason"], "InternalError", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("subjectaccessreviews") && message.contains("forbidden"),
        "the answer names the refused review: {body}"
    );
    // Through the aggregator: kube-apiserver still allows the HPA's identity (its RBAC did not
    // change), so this error is the adapter's, passed through.
    let (ok, _, err) = c
        .kubectl(&["get", "--raw", &path, &format!("--as={hpa}")])
        .await;
    assert!(!ok && err.contains("InternalError"), "{err}");
    assert!(
        adapter.log_text().contains("SubjectAccessReview failed"),
        "the log names the failure:\n{}",
        adapter.log_text()
    );

    c.apply(&saved).await;
    let deadline = Deadline::new("allowed again once the binding is back", 30);
    while ask(hpa).await.0 != 200 {
        deadline.tick().await;
    }
    adapter.stop().await;
}
