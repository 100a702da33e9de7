//! `tidescale run` against the real control plane: it scales a Deployment up and down through
//! the scale subresource with the status, columns and events a user reads; a StatefulSet and a
//! custom resource with a scale subresource; and every way a policy cannot run ends in its
//! condition with no write.

mod cluster_support;

use cluster_support::scaler::{
    ScalerProcess, generation, install_crd, policy, scalable_crd, scalable_object, wait_replicas,
};
use cluster_support::{AdapterProcess, Cluster, Deadline, Exposition, condition, deployment_yaml};
use serde_json::Value;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_a_deployment_up_and_down_with_status_columns_and_events() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    let ns = cluster.namespace("ctl-web").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set("queue_depth", 35.0);
    cluster.apply(&deployment_yaml(&ns, "web", 2)).await;
    let scaler = ScalerProcess::start(
        &cluster,
        "solo",
        &["--leader-elect=false", "--namespace", &ns],
    )
    .await;
    let web = policy(&ns, "web", ("apps/v1", "Deployment", "web"), &page.url, "")
        .replace("minReplicas: 1", "minReplicas: 2");
    cluster.apply(&web).await;
    // 35 vs 10 on two replicas → 7, held at max 4 (and 35 vs 10 on 4 → 14, still 4).
    wait_replicas(&cluster, &ns, "web", 4).await;
    // The status of the tick after the rescale: current 4, still limited by the maximum.
    let deadline = Deadline::new("status current 4 and TooManyReplicas", 30);
    let p = loop {
        let p = wait_condition(&cluster, &ns, "web", "ScalingLimited", "TooManyReplicas").await;
        if p["status"]["currentReplicas"] == 4 {
            break p;
        }
        deadline.tick().await;
    };
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
    // The structural schema the API server accepted documents the spec.
    let explained = cluster
        .kubectl_ok(&["explain", "scalingpolicy.spec.targetRef"])
        .await;
    assert!(explained.contains("The workload to scale"), "{explained}");
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
    assert_eq!(&row[..5], ["web", "2", "4", "4", "4"], "{table}");
    assert_eq!(row[6], "Clamped", "{table}");

    // 5 vs 10 on 4 → 2 at once (no scale-down window); 5 vs 10 on 2 → 1, held at min 2.
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
    // A spec change (a new generation) restarts the loop with the new spec.
    cluster
        .kubectl_ok(&[
            "-n",
            &ns,
            "patch",
            "sp",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReplicas":3}}"#,
        ])
        .await;
    wait_replicas(&cluster, &ns, "web", 3).await;
    let deadline = Deadline::new("observedGeneration 2", 30);
    while sp(&cluster, &ns, "web").await["status"]["observedGeneration"] != 2 {
        deadline.tick().await;
    }
    assert!(scaler.terminate().await, "a clean exit on SIGTERM");
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_a_statefulset_and_a_custom_resource_through_their_scale_subresources() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    scalable_crd(&cluster, "WebApp", None).await;
    let ns = cluster.namespace("ctl-kinds").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set("queue_depth", 25.0);
    let sts = deployment_yaml(&ns, "db", 1)
        .replace("kind: Deployment", "kind: StatefulSet")
        .replace("spec:\n  replicas", "spec:\n  serviceName: db\n  replicas");
    cluster.apply(&sts).await;
    // A Deployment provides pods that match the WebApp's selector (a Value target needs ready
    // pods, as the HPA's does).
    cluster.apply(&deployment_yaml(&ns, "shop", 1)).await;
    scalable_object(&cluster, &ns, "WebApp", "shop", "app=shop").await;
    let _scaler = ScalerProcess::start(
        &cluster,
        "solo",
        &["--leader-elect=false", "--namespace", &ns],
    )
    .await;
    // 25 vs 10 on one replica → 3, the StatefulSet's maximum (its ready pods grow with it).
    let db = policy(&ns, "db", ("apps/v1", "StatefulSet", "db"), &page.url, "")
        .replace("maxReplicas: 4", "maxReplicas: 3");
    cluster.apply(&db).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_that_cannot_run_reports_why_and_writes_nothing() {
    let cluster = Cluster::require();
    install_crd(&cluster).await;
    let ns = cluster.namespace("ctl-holds").await;
    let page = Exposition::start(&cluster.host_ip).await;
    page.set("queue_depth", 35.0);
    for d in ["hpa-owned", "shared", "dry", "gone"] {
        cluster.apply(&deployment_yaml(&ns, d, 1)).await;
    }
    cluster
        .apply(&format!(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {{name: native, namespace: {ns}}}\nspec:\n  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: hpa-owned}}\n  minReplicas: 1\n  maxReplicas: 1\n  metrics: [{{type: Resource, resource: {{name: cpu, target: {{type: Utilization, averageUtilization: 50}}}}}}]\n"
        ))
        .await;
    let before: Vec<i64> = futures::future::join_all(
        ["hpa-owned", "shared", "dry"].map(|d| generation(&cluster, &ns, d)),
    )
    .await;
    let scaler = ScalerProcess::start(
        &cluster,
        "solo",
        &["--leader-elect=false", "--namespace", &ns],
    )
    .await;
    let invalid = policy(
        &ns,
        "invalid",
        ("apps/v1", "Deployment", "shared"),
        &page.url,
        "",
    )
    .replace("minReplicas: 1", "minReplicas: 5")
    .replace("interval: 1s", "interval: 10ms");
    cluster.apply(&invalid).await;
    cluster
        .apply(&policy(
            &ns,
            "missing",
            ("apps/v1", "Deployment", "nowhere"),
            &page.url,
            "",
        ))
        .await;
    cluster
        .apply(&policy(
            &ns,
            "vs-hpa",
            ("apps/v1", "Deployment", "hpa-owned"),
            &page.url,
            "",
        ))
        .await;
    let dry = policy(
        &ns,
        "dry",
        ("apps/v1", "Deployment", "dry"),
        &page.url,
        "  dryRun: true\n",
    );
    cluster.apply(&dry).await;

    let p = wait_condition(&cluster, &ns, "invalid", "Ready", "InvalidSpec").await;
    let msg = condition(&p, "Ready")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("maxReplicas") && msg.contains("interval"),
        "every problem listed: {msg}"
    );
    let p = wait_condition(&cluster, &ns, "missing", "Ready", "TargetNotFound").await;
    assert_eq!(condition(&p, "Ready")["status"], "False");
    let p = wait_condition(&cluster, &ns, "vs-hpa", "Ready", "ConflictingHPA").await;
    assert!(
        condition(&p, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("native")
    );
    // The dry run decides 4 and says so, but never writes.
    let deadline = Deadline::new("the dry run's decision", 60);
    loop {
        let p = sp(&cluster, &ns, "dry").await;
        if p["status"]["desiredReplicas"] == 4 {
            assert!(
                p["status"]["lastDecision"]
                    .as_str()
                    .unwrap()
                    .contains("dry run"),
                "{p}"
            );
            break;
        }
        deadline.tick().await;
    }
    // Two policies on one target: the older (the invalid one does not count) runs, the newer
    // reports the conflict.
    cluster
        .apply(&policy(
            &ns,
            "first",
            ("apps/v1", "Deployment", "gone"),
            &page.url,
            "",
        ))
        .await;
    wait_replicas(&cluster, &ns, "gone", 4).await;
    cluster
        .apply(&policy(
            &ns,
            "second",
            ("apps/v1", "Deployment", "gone"),
            &page.url,
            "",
        ))
        .await;
    let p = wait_condition(&cluster, &ns, "second", "Ready", "ConflictingPolicy").await;
    assert!(
        condition(&p, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("first"),
        "{p}"
    );
    // Deleted mid-run: the loop stops; the metric falls and nobody scales down. (The newer
    // policy goes first: deleting the older alone would rightly hand it the target.)
    for p in ["second", "first"] {
        cluster
            .kubectl_ok(&["-n", &ns, "delete", "scalingpolicy", p])
            .await;
    }
    let stopped = format!("stopping the policy's loop policy={ns}/first");
    let deadline = Deadline::new("the deleted policy's loop stops", 30);
    while !scaler.log_text().contains(&stopped) {
        deadline.tick().await;
    }
    let g = generation(&cluster, &ns, "gone").await;
    page.set("queue_depth", 1.0);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    assert_eq!(
        generation(&cluster, &ns, "gone").await,
        g,
        "no write after the delete"
    );
    let after: Vec<i64> = futures::future::join_all(
        ["hpa-owned", "shared", "dry"].map(|d| generation(&cluster, &ns, d)),
    )
    .await;
    assert_eq!(
        before, after,
        "no write to hpa-owned, shared (invalid policy) or dry"
    );
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_also_serves_the_adapter_behind_the_real_aggregator() {
    let cluster = Cluster::require();
    let page = Exposition::start(&cluster.host_ip).await;
    page.set(r#"queue_depth{queue="orders"}"#, 42.0);
    let config = format!(
        "interval: 1s\nexternalMetrics:\n- name: queue_depth\n  labels: {{queue: orders}}\n  scrape: {{endpoints: [\"{}\"], metric: queue_depth}}\n",
        page.url
    );
    // The adapter's service account may also watch policies and HPAs in its own namespace,
    // which is all the controller beside it watches here.
    install_crd(&cluster).await;
    cluster
        .apply(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: tidescale}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: run-watch, namespace: tidescale}\n\
             rules:\n- {apiGroups: [tidescale.io], resources: [scalingpolicies], verbs: [get, list, watch]}\n\
             - {apiGroups: [autoscaling], resources: [horizontalpodautoscalers], verbs: [list, watch]}\n---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: run-watch, namespace: tidescale}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: run-watch}\n\
             subjects: [{kind: ServiceAccount, name: tidescale-adapter, namespace: tidescale}]\n",
        )
        .await;
    let adapter = AdapterProcess::start_with(&cluster, &config, true).await;
    let v = cluster
        .kubectl_json(&[
            "get",
            "--raw",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth",
        ])
        .await;
    assert_eq!(v["items"][0]["value"], "42", "{v}");
    let log = adapter.log_text();
    assert!(
        log.contains("policies and HPAs listed"),
        "the controller runs beside it:\n{log}"
    );
    adapter.stop().await;
}
