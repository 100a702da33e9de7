//! The real HPA controller (kube-controller-manager, sync period 2 s, running as its own
//! service account) scaling Deployments on tidescale's metrics: an external metric
//! (AverageValue), a custom Object metric and a custom Pods metric; the metric's value changes
//! and the replicas follow. Also: without read access to our groups the HPA reports
//! `FailedGetExternalMetric`.

mod cluster_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidescale::clock;

use cluster_support::prometheus::Prometheus;
use cluster_support::{
    AdapterProcess, Cluster, Deadline, Exposition, condition, deployment_yaml, replicas,
};
use serde_json::Value;

fn config(ns: &str, page: &str, prometheus: &str) -> String {
    format!(
        r#"interval: 1s
externalMetrics:
- name: queue_depth
  labels: {{queue: orders}}
  scrape: {{endpoints: ["{page}"], metric: queue_depth, labels: {{queue: orders}}}}
customMetrics:
- name: backlog
  resource: deployments.apps
  namespace: {ns}
  object: obj
  scrape: {{endpoints: ["{page}"], metric: backlog}}
- name: http_rps
  resource: pods
  namespace: {ns}
  prometheus: {{url: "{prometheus}", query: 'http_rps', podLabel: pod}}
"#
    )
}

/// An HPA on `target` with one metric (`metric` is the YAML of one `metrics` item) and a
/// scale-down window of 0, so both directions follow the metric at the sync period.
fn hpa_yaml(ns: &str, target: &str, max: u32, metric: &str) -> String {
    format!(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {target}, namespace: {ns}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {target}}}
  minReplicas: 1
  maxReplicas: {max}
  metrics: [{metric}]
  behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}
"#
    )
}

/// Keeps `http_rps{pod=…}` on the page equal to `total / pods` for every running pod of
/// `app=pods`, as a load balancer spreading `total` requests per second would.
fn spread_load(c: Arc<Cluster>, ns: String, page: Arc<Exposition>, total: Arc<Mutex<f64>>) {
    tokio::spawn(async move {
        loop {
            let (ok, out, _) = c
                .kubectl(&["-n", &ns, "get", "pods", "-l", "app=pods", "-o", "json"])
                .await;
            if ok && let Ok(v) = serde_json::from_str::<Value>(&out) {
                let pods: Vec<String> = v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| p["status"]["phase"] == "Running")
                    .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
                    .collect();
                let each = *total.lock().unwrap() / pods.len().max(1) as f64;
                page.remove_prefix("http_rps{");
                for p in &pods {
                    page.set(&format!(r#"http_rps{{pod="{p}"}}"#), each);
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

async fn wait_replicas(c: &Cluster, ns: &str, name: &str, want: i64, seconds: u64) -> Duration {
    let began = clock::now();
    let mut last = (0, 0);
    let deadline = began + Duration::from_secs(seconds);
    while clock::now() < deadline {
        last = replicas(c, ns, name).await;
        if last == (want, want) {
            return clock::since(began);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let hpa = c.kubectl_ok(&["-n", ns, "describe", "hpa", name]).await;
    panic!(
        "{name}: wanted {want} ready replicas within {seconds} s, have (spec, ready) {last:?}\n{hpa}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_hpa_scales_on_external_object_and_pods_metrics() {
    let c = Arc::new(Cluster::require());
    let ns = c.namespace("hpa").await;
    let page = Arc::new(Exposition::start(&c.host_ip).await);
    page.set(r#"queue_depth{queue="orders"}"#, 30.0);
    page.set("backlog", 300.0);
    let load = Arc::new(Mutex::new(30.0));
    spread_load(c.clone(), ns.clone(), page.clone(), load.clone());
    let prom = Prometheus::start(&c.host_ip, &page.url).await;
    let adapter = AdapterProcess::start(&c, &config(&ns, &page.url, &prom.url)).await;

    for name in ["ext", "obj", "pods"] {
        c.apply(&deployment_yaml(&ns, name, 1)).await;
    }
    c.apply(&hpa_yaml(&ns, "ext", 10, "{type: External, external: {metric: {name: queue_depth, selector: {matchLabels: {queue: orders}}}, target: {type: AverageValue, averageValue: \"10\"}}}")).await;
    c.apply(&hpa_yaml(&ns, "obj", 10, "{type: Object, object: {metric: {name: backlog}, describedObject: {apiVersion: apps/v1, kind: Deployment, name: obj}, target: {type: AverageValue, averageValue: \"100\"}}}")).await;
    c.apply(&hpa_yaml(&ns, "pods", 10, "{type: Pods, pods: {metric: {name: http_rps}, target: {type: AverageValue, averageValue: \"10\"}}}")).await;

    // 30 / 10 per pod → 3; 300 / 100 per pod → 3; 30 rps spread over the pods, 10 each → 3.
    for name in ["ext", "obj", "pods"] {
        wait_replicas(&c, &ns, name, 3, 120).await;
    }
    // The HPA's status catches up at its next sync after the new pods report their values.
    let shown = [
        ("ext", "10/10 (avg)"),
        ("obj", "100/100 (avg)"),
        ("pods", "10/10"),
    ];
    let deadline = Deadline::new("kubectl get hpa shows the values", 30);
    let table = loop {
        let table = c.kubectl_ok(&["-n", &ns, "get", "hpa"]).await;
        let all = shown.iter().all(|(name, value)| {
            table
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) && l.contains(value))
        });
        if all {
            break table;
        }
        deadline.tick().await;
    };
    eprintln!("{table}");
    for name in ["ext", "obj", "pods"] {
        let hpa = c
            .kubectl_json(&["-n", &ns, "get", "hpa", name, "-o", "json"])
            .await;
        let active = condition(&hpa, "ScalingActive");
        assert_eq!(active["status"], "True", "{name}: {active}");
        assert_eq!(active["reason"], "ValidMetricFound", "{name}: {active}");
    }

    // Change the values: the replicas follow. The time from the change to the Deployment's
    // new ready count is the figure (adapter interval 1 s, HPA sync period 2 s). Each step
    // stays within the default scale-up limit (Pods 4 per 15 s from the first 1 → 3), so the
    // figure is the reaction time, not a rate limit.
    page.set(r#"queue_depth{queue="orders"}"#, 50.0);
    let ext = wait_replicas(&c, &ns, "ext", 5, 60).await;
    page.set("backlog", 500.0);
    let obj = wait_replicas(&c, &ns, "obj", 5, 60).await;
    *load.lock().unwrap() = 50.0;
    let pods = wait_replicas(&c, &ns, "pods", 5, 90).await;
    eprintln!(
        "FIGURE metric change → new ready replica count: external {:.1} s, object {:.1} s, pods {:.1} s (pods through Prometheus, scrape 0.5 s)",
        ext.as_secs_f64(),
        obj.as_secs_f64(),
        pods.as_secs_f64()
    );
    // And back down (scale-down window 0).
    page.set(r#"queue_depth{queue="orders"}"#, 20.0);
    wait_replicas(&c, &ns, "ext", 2, 60).await;

    // The HPA asked as its own service account (--use-service-account-credentials).
    let served = adapter.served();
    assert!(
        served
            .iter()
            .any(|s| s.user == "system:serviceaccount:kube-system:horizontal-pod-autoscaler"),
        "the HPA's requests are in the served log"
    );
    adapter.stop().await;
    // No namespace controller runs; the HPAs go, so nothing keeps asking for the metrics.
    c.kubectl_ok(&["-n", &ns, "delete", "hpa", "--all"]).await;
}

/// Removes `group` from every rule of the bootstrap ClusterRole and returns the original
/// (the API server reconciles bootstrap roles only when it starts, so the change holds).
async fn strip_group(c: &Cluster, role: &str, group: &str) -> String {
    let original = c
        .kubectl_ok(&["get", "clusterrole", role, "-o", "json"])
        .await;
    let mut v: Value = serde_json::from_str(&original).unwrap();
    let rules: Vec<Value> = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            !r["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == group)
        })
        .cloned()
        .collect();
    v["rules"] = Value::Array(rules);
    v["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    c.kubectl_stdin(&["replace", "-f", "-"], Some(&v.to_string()))
        .await;
    original
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_without_read_access_reports_failed_get_external_metric() {
    let c = Cluster::require();
    let ns = c.namespace("hpa-rbac").await;
    let page = Exposition::start(&c.host_ip).await;
    page.set(r#"queue_depth{queue="orders"}"#, 30.0);
    page.set("backlog", 1.0);
    let adapter = AdapterProcess::start(&c, &config(&ns, &page.url, "http://127.0.0.1:1")).await;
    c.apply(&deployment_yaml(&ns, "ext", 1)).await;
    c.apply(&hpa_yaml(&ns, "ext", 10, "{type: External, external: {metric: {name: queue_depth}, target: {type: AverageValue, averageValue: \"10\"}}}")).await;
    wait_replicas(&c, &ns, "ext", 3, 120).await;

    // Take away every grant the HPA controller has on external.metrics.k8s.io: our binding
    // and the rule of its bootstrap role (R3.19).
    let role = "system:controller:horizontal-pod-autoscaler";
    let saved_binding = c
        .kubectl_ok(&[
            "get",
            "clusterrolebinding",
            "tidescale:hpa-external-metrics",
            "-o",
            "yaml",
        ])
        .await;
    c.kubectl_ok(&[
        "delete",
        "clusterrolebinding",
        "tidescale:hpa-external-metrics",
    ])
    .await;
    let saved_role = strip_group(&c, role, "external.metrics.k8s.io").await;
    page.set(r#"queue_depth{queue="orders"}"#, 60.0);
    let deadline = Deadline::new("ScalingActive=False, FailedGetExternalMetric", 60);
    let last = loop {
        let hpa = c
            .kubectl_json(&["-n", &ns, "get", "hpa", "ext", "-o", "json"])
            .await;
        let active = condition(&hpa, "ScalingActive");
        if active["status"] == "False" && active["reason"] == "FailedGetExternalMetric" {
            break active;
        }
        deadline.tick().await;
    };
    assert!(
        last["message"]
            .as_str()
            .unwrap_or_default()
            .contains("forbidden"),
        "the condition names the refusal: {last}"
    );
    let events = c
        .kubectl_ok(&[
            "-n",
            &ns,
            "get",
            "events",
            "--field-selector",
            "reason=FailedGetExternalMetric",
        ])
        .await;
    assert!(events.contains("FailedGetExternalMetric"), "{events}");
    assert_eq!(
        replicas(&c, &ns, "ext").await.0,
        3,
        "no scaling without the metric"
    );

    // Restore; the HPA reads the metric again and scales to 6.
    c.kubectl_stdin(&["replace", "-f", "-"], Some(&saved_role))
        .await;
    c.apply(&saved_binding).await;
    wait_replicas(&c, &ns, "ext", 6, 60).await;
    adapter.stop().await;
    // No namespace controller runs; the HPAs go, so nothing keeps asking for the metrics.
    c.kubectl_ok(&["-n", &ns, "delete", "hpa", "--all"]).await;
}
