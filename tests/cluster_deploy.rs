//! The Helm chart on the real control plane (`scripts/cluster.sh up`): `helm install` (Helm's
//! server-side apply) in each mode, the CRD Established, every object of the all-options
//! render accepted by a server-side apply dry run, the service account's RBAC checked verb by
//! verb with `kubectl auth can-i` (yes for what `run` and the adapter use, no for a sample of
//! what they must not do), `tidescale run` working with that service account's token, the HPA
//! controller's read access to our groups, and `helm upgrade` and `helm uninstall` leaving
//! nothing behind. (`cluster_deploy_demo.rs`: the demo app and its release patterns.)

mod cluster_support;
mod deploy_support;
mod release_support;

use std::path::Path;

use cluster_support::Cluster;
use deploy_support::{CHART, Helm, repo, yaml_docs};
use release_support::{APISERVICES, Release, crd_established, service_account_kubeconfig};
use serde_json::Value;

/// Groups this cluster does not serve (no metrics-server; the adapter is not running here):
/// kubectl cannot resolve them, so those are asked with a SubjectAccessReview directly.
/// Longest first: `.metrics.k8s.io` is a suffix of the other two.
const UNSERVED: [&str; 3] = [
    ".external.metrics.k8s.io",
    ".custom.metrics.k8s.io",
    ".metrics.k8s.io",
];

/// May `user` do `verb` on `resource` (`plural.group`, `#subresource` appended when there is
/// one, `/name` for one object) in `ns`? `kubectl auth can-i --as`, or a SubjectAccessReview
/// for the groups kubectl cannot resolve.
async fn can(c: &Cluster, user: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let (resource, sub) = resource.split_once('#').unwrap_or((resource, ""));
    if let Some(group) = UNSERVED.iter().find(|g| resource.ends_with(*g)) {
        let plural = &resource[..resource.len() - group.len()];
        let sar = serde_json::json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {"user": user, "groups": ["system:serviceaccounts", "system:authenticated"],
                     "resourceAttributes": {"verb": verb, "group": &group[1..], "resource": plural,
                                            "namespace": ns.unwrap_or_default()}}
        });
        let (ok, out, err) = c
            .kubectl_stdin(&["create", "-o", "json", "-f", "-"], Some(&sar.to_string()))
            .await;
        assert!(ok, "SubjectAccessReview: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        return v["status"]["allowed"] == true;
    }
    let sub_flag = format!("--subresource={sub}");
    let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
    if !sub.is_empty() {
        args.push(&sub_flag);
    }
    if let Some(ns) = ns {
        args.extend_from_slice(&["-n", ns]);
    }
    let (_, out, err) = c.kubectl(&args).await;
    assert!(
        !err.contains("doesn't have a resource type"),
        "kubectl auth can-i {resource}: {err}"
    );
    out.trim() == "yes"
}

/// Checks every (verb, resource, namespace) of `rules` answers `expected` for `user`.
async fn check_rules(
    c: &Cluster,
    user: &str,
    expected: bool,
    rules: &[(&str, &str, Option<&str>)],
) {
    let mut wrong = vec![];
    for (verb, resource, ns) in rules {
        if can(c, user, verb, resource, *ns).await != expected {
            wrong.push(format!("{verb} {resource} in {ns:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{user} should {}be allowed: {wrong:?}",
        if expected { "" } else { "not " }
    );
}

/// What `tidescale run` needs (its Lease only in its own namespace) besides getting and
/// listing pods, which the adapter needs too.
fn scaler_rules(ns: &str) -> Vec<(&'static str, &'static str, Option<&str>)> {
    let mut r = vec![];
    for v in ["get", "list", "watch"] {
        r.push((v, "scalingpolicies.tidescale.io", Some("shop")));
    }
    r.push(("watch", "pods", Some("shop")));
    for v in ["get", "patch", "update"] {
        r.push((v, "scalingpolicies.tidescale.io#status", Some("shop")));
        r.push((v, "deployments.apps#scale", Some("shop")));
        r.push((v, "statefulsets.apps#scale", Some("shop")));
    }
    for v in ["list", "watch"] {
        r.push((v, "horizontalpodautoscalers.autoscaling", Some("shop")));
    }
    for v in ["create", "patch"] {
        r.push((v, "events", Some("shop")));
        r.push((v, "events.events.k8s.io", Some("shop")));
    }
    for v in ["get", "list"] {
        r.push((v, "pods.metrics.k8s.io", Some("shop")));
    }
    for v in ["get", "create", "update"] {
        r.push((v, "leases.coordination.k8s.io", Some(ns)));
    }
    r
}

/// What the adapter needs (contract §3.7) besides reading pods, which `run` needs too.
fn adapter_rules() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
    vec![
        ("create", "tokenreviews.authentication.k8s.io", None),
        ("create", "subjectaccessreviews.authorization.k8s.io", None),
        (
            "get",
            "configmaps/extension-apiserver-authentication",
            Some("kube-system"),
        ),
        (
            "list",
            "configmaps/extension-apiserver-authentication",
            Some("kube-system"),
        ),
        (
            "watch",
            "configmaps/extension-apiserver-authentication",
            Some("kube-system"),
        ),
        ("list", "namespaces", None),
        ("list", "services", Some("shop")),
    ]
}

/// A sample of what neither part may do.
fn forbidden_rules(ns: &str) -> Vec<(&'static str, &'static str, Option<&str>)> {
    vec![
        ("get", "secrets", Some(ns)),
        ("list", "secrets", Some("shop")),
        ("get", "secrets", Some("kube-system")),
        ("delete", "deployments.apps", Some("shop")),
        ("update", "deployments.apps", Some("shop")),
        ("patch", "statefulsets.apps", Some("shop")),
        ("delete", "pods", Some("shop")),
        ("create", "pods", Some("shop")),
        ("delete", "scalingpolicies.tidescale.io", Some("shop")),
        ("update", "scalingpolicies.tidescale.io", Some("shop")),
        ("create", "leases.coordination.k8s.io", Some("kube-system")),
        ("get", "configmaps", Some(ns)),
        ("list", "configmaps", Some("kube-system")),
        (
            "create",
            "clusterrolebindings.rbac.authorization.k8s.io",
            None,
        ),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
    ]
}

/// Every object of the all-options render (but the kinds of CRDs this cluster lacks:
/// cert-manager's and prometheus-operator's) through a server-side apply dry run.
async fn all_options_accepted(c: &Cluster, ns: &str) {
    let values = repo().join(CHART).join("ci/all-options-values.yaml");
    let render = Helm::new().template(&["--namespace", ns, "-f", &values.display().to_string()]);
    let docs: Vec<Value> = yaml_docs(&render)
        .into_iter()
        .filter(|d| {
            let api = d["apiVersion"].as_str().unwrap_or_default();
            !api.starts_with("cert-manager.io/") && !api.starts_with("monitoring.coreos.com/")
        })
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let (ok, out, err) = c
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "--field-manager=deploy-test",
                "-f",
                "-",
            ],
            Some(&list.to_string()),
        )
        .await;
    assert!(
        ok,
        "server-side apply refused the all-options render:\n{err}{out}"
    );
    let applied = out
        .lines()
        .filter(|l| l.contains("serverside-applied"))
        .count();
    assert_eq!(applied, docs.len(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_installs_in_each_mode_with_exactly_enough_rbac() {
    let c = Cluster::require();
    let hpa = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";
    for mode in ["both", "scaler", "adapter"] {
        let r = Release::install(&c, mode, &["--set", "networkPolicy.enabled=true"]).await;
        crd_established(&c).await;
        let sa = r.sa();
        let scaler = scaler_rules(&r.ns);
        let adapter = adapter_rules();
        let on = |part: &str| mode == "both" || mode == part;
        check_rules(&c, &sa, on("scaler"), &scaler).await;
        check_rules(&c, &sa, on("adapter"), &adapter).await;
        check_rules(&c, &sa, false, &forbidden_rules(&r.ns)).await;
        // Both parts read pods (the adapter for labelSelector, run for its targets).
        let pods = [
            ("get", "pods", Some("shop")),
            ("list", "pods", Some("shop")),
        ];
        check_rules(&c, &sa, true, &pods).await;
        if on("adapter") {
            for g in ["custom.metrics.k8s.io", "external.metrics.k8s.io"] {
                for v in ["get", "list"] {
                    assert!(
                        can(&c, hpa, v, &format!("anything.{g}"), Some("shop")).await,
                        "{v} {g}"
                    );
                }
                let binding = format!("tidescale-hpa-{}-metrics", &g[..g.find('.').unwrap()]);
                let b = c
                    .kubectl_json(&["get", "clusterrolebinding", &binding, "-o", "json"])
                    .await;
                assert_eq!(b["subjects"][0]["name"], "horizontal-pod-autoscaler");
            }
        }
        if mode == "scaler" {
            scaler_runs_as_the_release_service_account(&c, &r.ns).await;
        }
        if mode == "both" {
            all_options_accepted(&c, &r.ns).await;
            upgrade_keeps_the_certificate(&c, &r).await;
        }
        r.uninstall_leaves_nothing(&c).await;
    }
    // The CRD stays (Helm never deletes crds/), so policies survive an uninstall.
    crd_established(&c).await;
}

/// `tidescale run` with the release's service-account token (the pod's identity) scales a
/// Deployment in another namespace, writes the policy's status, publishes its events and holds
/// its Lease in the release namespace: the chart's RBAC is enough for everything `run` does.
async fn scaler_runs_as_the_release_service_account(c: &Cluster, release_ns: &str) {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(c, release_ns, "tidescale", dir.path()).await;
    let ns = c.namespace("deploy-run").await;
    let page = cluster_support::Exposition::start(&c.host_ip).await;
    page.set("queue_depth", 30.0);
    c.apply(&cluster_support::deployment_yaml(&ns, "web", 1))
        .await;
    let policy = format!(
        r#"apiVersion: tidescale.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: web, namespace: {ns}}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  maxReplicas: 3
  interval: 1s
  metrics:
  - name: queue
    scrape: {{endpoints: ["{}"], metric: queue_depth}}
    target: {{type: Value, value: 10}}
"#,
        page.url
    );
    c.apply(&policy).await;
    let port = cluster_support::scaler::free_port();
    let args = ["--lease-namespace", release_ns, "--namespace", &ns];
    let scaler = cluster_support::scaler::ScalerProcess::start_as(
        Path::new(&kubeconfig),
        "pod-0",
        port,
        &args,
    )
    .await;
    cluster_support::scaler::wait_replicas(c, &ns, "web", 3).await;
    let deadline =
        cluster_support::Deadline::new("status and event written as the service account", 30);
    loop {
        let p = c
            .kubectl_json(&["-n", &ns, "get", "sp", "web", "-o", "json"])
            .await;
        let events = c.kubectl_ok(&["-n", &ns, "get", "events"]).await;
        if p["status"]["desiredReplicas"] == 3 && events.contains("SuccessfulRescale") {
            break;
        }
        deadline.tick().await;
    }
    assert!(scaler.leading().await, "the Lease in {release_ns}");
    let log = scaler.log_text();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "{log}"
    );
    assert!(scaler.terminate().await);
    c.kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}

/// `helm upgrade` with changed values: the generated CA and certificate are kept (the
/// APIServices' caBundle does not change under running clients), the Deployment rolls.
async fn upgrade_keeps_the_certificate(c: &Cluster, r: &Release) {
    let ca = |v: &Value| v["data"]["ca.crt"].as_str().unwrap().to_string();
    let before = ca(&c
        .kubectl_json(&["-n", &r.ns, "get", "secret", "tidescale-tls", "-o", "json"])
        .await);
    let chart = repo().join(CHART).display().to_string();
    let out = r.helm.ok(&[
        "upgrade",
        "tidescale",
        &chart,
        "--namespace",
        &r.ns,
        "--reuse-values",
        "--set",
        "replicaCount=3",
        "--set",
        "adapter.config.interval=2s",
        "--wait=legacy",
        "--timeout=3m",
    ]);
    assert!(out.contains("REVISION: 2"), "{out}");
    let after = ca(&c
        .kubectl_json(&["-n", &r.ns, "get", "secret", "tidescale-tls", "-o", "json"])
        .await);
    assert_eq!(before, after, "the CA changed on upgrade");
    let api = c
        .kubectl_json(&["get", "apiservice", APISERVICES[0], "-o", "json"])
        .await;
    assert_eq!(api["spec"]["caBundle"].as_str().unwrap(), before);
    let d = c
        .kubectl_json(&["-n", &r.ns, "get", "deployment", "tidescale", "-o", "json"])
        .await;
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["status"]["readyReplicas"], 3, "{}", d["status"]);
}
