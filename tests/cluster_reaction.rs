//! A benchmark on the real control plane (ignored by default; `scripts/bench-cluster.sh` runs
//! it): from a metric change to the Deployment's new `spec.replicas`, tidescale's own loop
//! (`tidescale run`, interval 1 s) next to the real HPA controller (this control plane's sync
//! period, 2 s; upstream's default is 15 s) reading the same value through tidescale's adapter
//! (refresh 1 s), in the same run, on the same changes. Both read the value from the same
//! Prometheus (scrape interval 500 ms) with the same query and the same target (AverageValue
//! 10 on a total, the HPA's External math), and scale with the same behaviour: no
//! stabilization window and no rate limit, so the figure is the pipeline and the loop alone.

mod cluster_support;

use std::time::Duration;

use cluster_support::prometheus::Prometheus;
use cluster_support::scaler::{ScalerProcess, install_crd};
use cluster_support::{AdapterProcess, Cluster, Exposition, deployment_yaml};
use tidescale::clock;

const BEHAVIOR: &str = "{scaleUp: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 100, periodSeconds: 1}]}, scaleDown: {stabilizationWindowSeconds: 0, policies: [{type: Pods, value: 100, periodSeconds: 1}]}}";

/// spec.replicas of a Deployment, straight from the API server (no kubectl process per poll).
async fn spec_replicas(cluster: &Cluster, http: &reqwest::Client, ns: &str, name: &str) -> i64 {
    let url = format!(
        "{}/apis/apps/v1/namespaces/{ns}/deployments/{name}",
        cluster.api_base()
    );
    let v: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
    v["spec"]["replicas"].as_i64().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-cluster.sh runs it"]
async fn reaction_to_a_metric_change_tidescale_next_to_the_real_hpa() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    let ns = cluster.namespace("bench-react").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set(r#"queue_depth{queue="orders"}"#, 10.0);
    let prom = Prometheus::start(&cluster.host_ip, &page.url).await;
    let adapter_config = format!(
        "interval: 1s\nexternalMetrics:\n- name: queue_depth\n  labels: {{queue: orders}}\n  prometheus: {{url: \"{}\", query: 'sum(queue_depth)'}}\n",
        prom.url
    );
    let adapter = AdapterProcess::start(&cluster, &adapter_config).await;
    for d in ["own", "hpa"] {
        cluster.apply(&deployment_yaml(&ns, d, 1)).await;
    }
    cluster.apply(&format!(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: hpa, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: hpa}}\n  minReplicas: 1\n  maxReplicas: 10\n  metrics: [{{type: External, external: {{metric: {{name: queue_depth, selector: {{matchLabels: {{queue: orders}}}}}}, target: {{type: AverageValue, averageValue: \"10\"}}}}}}]\n  behavior: {BEHAVIOR}\n"
    )).await;
    cluster.apply(&format!(
        "apiVersion: tidescale.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: own, namespace: {ns}}}\nspec:\n  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: own}}\n  minReplicas: 1\n  maxReplicas: 10\n  interval: 1s\n  metrics:\n  - name: queue\n    prometheus: {{url: \"{}\", query: 'sum(queue_depth)'}}\n    target: {{type: AverageValue, averageValue: 10}}\n  behavior: {BEHAVIOR}\n",
        prom.url
    )).await;
    let _scaler = ScalerProcess::start(
        &cluster,
        "bench",
        &["--leader-elect=false", "--namespace", &ns],
    )
    .await;
    let http = cluster.admin_client();
    // Both start from 1 replica (10 vs 10 per replica).
    let steps = [40.0, 10.0, 70.0, 20.0, 50.0, 10.0, 60.0, 30.0, 80.0, 10.0];
    let mut seconds: [Vec<f64>; 2] = [vec![], vec![]];
    println!("| step | value | want | tidescale (1 s) | HPA (2 s sync) |\n|---|---|---|---|---|");
    for (i, v) in steps.iter().enumerate() {
        let want = (v / 10.0_f64).ceil() as i64;
        page.set(r#"queue_depth{queue="orders"}"#, *v);
        let began = clock::now();
        let mut took: [Option<f64>; 2] = [None, None];
        while took.iter().any(Option::is_none) {
            assert!(
                clock::since(began) < Duration::from_secs(60),
                "step {i}: {took:?}"
            );
            for (k, d) in ["own", "hpa"].iter().enumerate() {
                if took[k].is_none() && spec_replicas(&cluster, &http, &ns, d).await == want {
                    took[k] = Some(clock::since(began).as_secs_f64());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let [own, hpa] = took.map(Option::unwrap);
        println!("| {} | {v} | {want} | {own:.2} s | {hpa:.2} s |", i + 1);
        seconds[0].push(own);
        seconds[1].push(hpa);
        // Let the pods settle so the next step starts from a steady state.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    for (name, s) in ["tidescale", "HPA"].iter().zip(&mut seconds) {
        s.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.2} s, min {:.2} s, max {:.2} s over {} steps",
            s[s.len() / 2],
            s[0],
            s[s.len() - 1],
            s.len()
        );
    }
    adapter.stop().await;
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}
