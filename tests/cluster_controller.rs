//! `tidescale run` against the real control plane: it scales a Deployment up and down through
//! the scale subresource with the status, columns and events a user reads; a StatefulSet and a
//! custom resource with a scale subresource; and every way a policy cannot run ends in its
//! condition with no write.

mod cluster_support;

use cluster_support::scaler::ScalerProcess;
use cluster_support::{Cluster, Deadline, Exposition, condition, deployment_yaml, replicas};
use serde_json::Value;

const CRD: &str = include_str!("../deploy/crds/scalingpolicies.tidescale.io.yaml");

/// Applies the CRD (server-side, as a user would) and waits until it is Established.
pub async fn install_crd(cluster: &Cluster) {
    let (ok, out, err) = cluster
        .kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            Some(CRD),
        )
        .await;
    assert!(ok, "the API server refused the CRD: {err}{out}");
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/scalingpolicies.tidescale.io",
            "--timeout=60s",
        ])
        .await;
}

fn policy(ns: &str, name: &str, target: (&str, &str, &str), url: &str, extra: &str) -> String {
    let (api_version, kind, object) = target;
    format!(
        r#"apiVersion: tidescale.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}, namespace: {ns}}}
spec:
  targetRef: {{apiVersion: {api_version}, kind: {kind}, name: {object}}}
  minReplicas: 1
  maxReplicas: 4
  interval: 1s
  metrics:
  - name: queue
    scrape: {{endpoints: ["{url}"], metric: queue_depth}}
    target: {{type: Value, value: 10}}
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 0}}
{extra}"#
    )
}

async fn sp(cluster: &Cluster, ns: &str, name: &str) -> Value {
    cluster
        .kubectl_json(&["-n", ns, "get", "scalingpolicy", name, "-o", "json"])
        .await
}

/// Waits until the policy's condition `kind` has `reason`; returns the policy.
async fn wait_condition(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    kind: &str,
    reason: &str,
) -> Value {
    let deadline = Deadline::new(&format!("{name}: {kind} reason {reason}"), 60);
    loop {
        let p = sp(cluster, ns, name).await;
        if condition(&p, kind)["reason"] == reason {
            return p;
        }
        deadline.tick().await;
    }
}

async fn wait_replicas(cluster: &Cluster, ns: &str, name: &str, want: i64) {
    let deadline = Deadline::new(&format!("{ns}/{name} spec.replicas = {want}"), 60);
    while replicas(cluster, ns, name).await.0 != want {
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_a_deployment_up_and_down_with_status_columns_and_events() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    let ns = cluster.namespace("ctl-web").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set("queue_depth", 35.0);
    cluster.apply(&deployment_yaml(&ns, "web", 1)).await;
    let scaler = ScalerProcess::start(
        &cluster,
        "solo",
        &["--leader-elect=false", "--namespace", &ns],
    )
    .await;
    cluster
        .apply(&policy(
            &ns,
            "web",
            ("apps/v1", "Deployment", "web"),
            &page.url,
            "",
        ))
        .await;
    // 35 vs 10 on one replica → 4; then 35 vs 10 on 4 → 14, held at max 4.
    wait_replicas(&cluster, &ns, "web", 4).await;
    let p = wait_condition(&cluster, &ns, "web", "ScalingLimited", "TooManyReplicas").await;
    assert_eq!(condition(&p, "Ready")["status"], "True");
    assert_eq!(condition(&p, "ScalingActive")["reason"], "ValidMetricFound");
    assert_eq!(
        p["status"]["observedGeneration"],
        p["metadata"]["generation"]
    );
    assert_eq!(p["status"]["currentMetrics"][0]["value"], "35");
    assert!(
        p["status"]["lastScaleTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    let table = cluster.kubectl_ok(&["-n", &ns, "get", "sp", "web"]).await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "MIN", "MAX", "CURRENT", "DESIRED", "LAST", "SCALE", "REASON", "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["web", "1", "4", "4", "4"], "{table}");
    assert_eq!(row[6], "Clamped", "{table}");

    // 5 vs 10 on 4 → 2 at once (no scale-down window).
    page.set("queue_depth", 5.0);
    wait_replicas(&cluster, &ns, "web", 2).await;
    let deadline = Deadline::new("both rescales in `kubectl describe sp`", 30);
    loop {
        let described = cluster
            .kubectl_ok(&["-n", &ns, "describe", "sp", "web"])
            .await;
        if described.contains("New size: 4; reason: queue above target")
            && described.contains("New size: 2; reason: All metrics below target")
        {
            assert!(described.contains("SuccessfulRescale"), "{described}");
            break;
        }
        deadline.tick().await;
    }
    let writes = scaler.writes(&format!("{ns}/web")).await;
    assert_eq!(writes, 2.0, "one write per change:\n{}", scaler.log_text());
    assert!(scaler.terminate().await, "a clean exit on SIGTERM");
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}

const WEBAPP_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: webapps.test.tidescale.io}
spec:
  group: test.tidescale.io
  names: {kind: WebApp, plural: webapps, singular: webapp}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {replicas: {type: integer}}}
          status: {type: object, properties: {replicas: {type: integer}, selector: {type: string}}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_a_statefulset_and_a_custom_resource_through_their_scale_subresources() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    cluster.apply(WEBAPP_CRD).await;
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "crd/webapps.test.tidescale.io",
            "--timeout=60s",
        ])
        .await;
    let ns = cluster.namespace("ctl-kinds").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set("queue_depth", 25.0);
    let sts = deployment_yaml(&ns, "db", 1)
        .replace("kind: Deployment", "kind: StatefulSet")
        .replace("spec:\n  replicas", "spec:\n  serviceName: db\n  replicas");
    cluster.apply(&sts).await;
    cluster
        .apply(&format!(
            "apiVersion: test.tidescale.io/v1\nkind: WebApp\nmetadata: {{name: shop, namespace: {ns}}}\nspec: {{replicas: 1}}\n"
        ))
        .await;
    // Nobody runs WebApps: the test plays their controller and publishes status.replicas and
    // the selector the scale subresource reports; a Deployment provides pods that match it
    // (a Value target needs ready pods, as the HPA's does).
    cluster.apply(&deployment_yaml(&ns, "shop", 1)).await;
    let status = r#"{"status":{"replicas":1,"selector":"app=shop"}}"#;
    cluster
        .kubectl_ok(&[
            "-n",
            &ns,
            "patch",
            "webapp",
            "shop",
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ])
        .await;
    let _scaler = ScalerProcess::start(
        &cluster,
        "solo",
        &["--leader-elect=false", "--namespace", &ns],
    )
    .await;
    cluster
        .apply(&policy(
            &ns,
            "db",
            ("apps/v1", "StatefulSet", "db"),
            &page.url,
            "",
        ))
        .await;
    cluster
        .apply(&policy(
            &ns,
            "shop",
            ("test.tidescale.io/v1", "WebApp", "shop"),
            &page.url,
            "",
        ))
        .await;
    // 25 vs 10 on one replica → 3.
    let deadline = Deadline::new("the StatefulSet and the WebApp at 3", 90);
    loop {
        let s = cluster
            .kubectl_json(&["-n", &ns, "get", "statefulset", "db", "-o", "json"])
            .await;
        let w = cluster
            .kubectl_json(&["-n", &ns, "get", "webapp", "shop", "-o", "json"])
            .await;
        if s["spec"]["replicas"] == 3 && w["spec"]["replicas"] == 3 {
            break;
        }
        deadline.tick().await;
    }
    let p = sp(&cluster, &ns, "shop").await;
    assert_eq!(condition(&p, "AbleToScale")["status"], "True", "{p}");
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}
