//! `tidescale run` on the local control plane with three policies that between them make every
//! metric of the loop move: one that scales a Deployment on a real Prometheus query, one whose
//! source is down (source errors), and one whose target refuses the count it is asked for
//! (rescale errors: a custom resource whose schema caps `spec.replicas` at 2).

use super::scaler::{ScalerProcess, install_crd, scalable_crd, scalable_object};
use super::{Cluster, deployment_yaml};

fn policy(
    ns: &str,
    name: &str,
    target: &str,
    prometheus: &str,
    query: &str,
    per_pod: &str,
) -> String {
    format!(
        r#"apiVersion: tidescale.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  targetRef: {target}
  minReplicas: 1
  maxReplicas: 6
  interval: 1s
  metrics:
  - name: rps
    prometheus: {{url: "{prometheus}", query: '{query}'}}
    target: {{type: AverageValue, averageValue: "{per_pod}"}}
  behavior: {{scaleDown: {{stabilizationWindowSeconds: 10}}}}
"#
    )
}

/// Starts `tidescale run` (leader-elected, `/metrics` on `127.0.0.1:metrics_port`) over a fresh
/// namespace with the three policies, reading `prometheus`.
pub async fn run_with_three_policies(
    cluster: &Cluster,
    prometheus: &str,
    metrics_port: u16,
) -> (ScalerProcess, String) {
    install_crd(cluster).await;
    scalable_crd(cluster, "CappedApp", Some(2)).await;
    let ns = cluster.namespace("dash").await;
    for d in ["web", "broken"] {
        cluster.apply(&deployment_yaml(&ns, d, 1)).await;
    }
    scalable_object(cluster, &ns, "CappedApp", "capped", "app=capped").await;
    let rate = "sum(rate(http_requests_total{job=\"demo-service\"}[10s]))";
    let web = "{apiVersion: apps/v1, kind: Deployment, name: web}";
    let broken = "{apiVersion: apps/v1, kind: Deployment, name: broken}";
    let capped = "{apiVersion: test.tidescale.io/v1, kind: CappedApp, name: capped}";
    cluster
        .apply(&policy(&ns, "web", web, prometheus, rate, "40"))
        .await;
    cluster
        .apply(&policy(
            &ns,
            "broken",
            broken,
            "http://127.0.0.1:1",
            rate,
            "40",
        ))
        .await;
    // One request per second per replica already asks for more than the schema allows.
    cluster
        .apply(&policy(&ns, "capped", capped, prometheus, rate, "1"))
        .await;
    let scaler = ScalerProcess::start_at(
        cluster,
        "dashboards",
        metrics_port,
        &[
            "--namespace",
            &ns,
            "--lease-namespace",
            &ns,
            "--lease-duration",
            "6s",
            "--renew-deadline",
            "4s",
            "--retry-period",
            "1s",
        ],
    )
    .await;
    (scaler, ns)
}
