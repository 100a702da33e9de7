//! The Helm chart on the real control plane (`scripts/cluster.sh up`): `helm install` (Helm's
//! server-side apply) in each mode, the CRD Established, every object of the all-options
//! render accepted by a server-side apply dry run, the service account's RBAC checked verb by
//! verb with `kubectl auth can-i` (yes for what `run` and the adapter use, no for a sample of
//! what they must not do), the HPA controller's read access to our groups, and `helm upgrade`
//! and `helm uninstall` leaving nothing behind. Then `deploy/demo/` applied under the real
//! admission chain (Pod Security `restricted` included), its HPA reporting `ScalingActive=True`
//! once the chart's adapter serves its external metric, and the blue-green and canary
//! variants switched and rolled back as their READMEs say.

mod cluster_support;
mod deploy_support;

use std::path::Path;
use std::time::Duration;

use tidescale::clock;

use cluster_support::{Cluster, Deadline, condition, tls_client};
use deploy_support::{CHART, Helm, repo, yaml_docs};
use serde_json::Value;

/// The APIServices the chart owns; the other cluster tests register the same names.
const APISERVICES: [&str; 3] = [
    "v1beta1.custom.metrics.k8s.io",
    "v1beta2.custom.metrics.k8s.io",
    "v1beta1.external.metrics.k8s.io",
];

/// A release of the chart named `tidescale` in its own namespace.
struct Release {
    ns: String,
    helm: Helm,
    /// Set once `helm uninstall` ran; otherwise dropping the release (a failed test)
    /// uninstalls it, so no APIService of ours outlives the test.
    uninstalled: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.uninstalled {
            let _ = self
                .helm
                .run(&["uninstall", "tidescale", "--namespace", &self.ns, "--wait"]);
        }
    }
}

impl Release {
    /// Installs the chart with `args` (e.g. `--set mode=adapter`) and waits for the Deployment.
    async fn install(c: &Cluster, mode: &str, args: &[&str]) -> Release {
        let ns = c.namespace(&format!("deploy-{mode}")).await;
        let helm = Helm::with_kubeconfig(&c.kubeconfig);
        let chart = repo().join(CHART).display().to_string();
        let mode_arg = format!("mode={mode}");
        let mut cmd = vec![
            "install",
            "tidescale",
            &chart,
            "--namespace",
            &ns,
            "--set",
            &mode_arg,
            "--wait=legacy",
            "--timeout=3m",
            // The other cluster tests register their adapter under the same APIService names
            // with kubectl and leave them: the release takes them over (and its uninstall
            // removes them; the next adapter test applies its own again). The tests run one at
            // a time, so no adapter of theirs is running meanwhile. Their fields belong to
            // kubectl's field manager, so the apply forces them over.
            "--take-ownership",
            "--force-conflicts",
        ];
        cmd.extend_from_slice(args);
        // Other tests apply the CRD with kubectl (perhaps a newer one); Helm would fight them
        // for its fields. When it is there, leave it to them.
        let (crd_there, _, _) = c
            .kubectl(&["get", "crd", "scalingpolicies.tidescale.io"])
            .await;
        if crd_there {
            cmd.push("--skip-crds");
        }
        let (ok, out, err) = helm.run(&cmd);
        let release = Release {
            ns,
            helm,
            uninstalled: false,
        };
        assert!(
            ok && out.contains("STATUS: deployed"),
            "helm install: {err}{out}"
        );
        let d = c
            .kubectl_json(&[
                "-n",
                &release.ns,
                "get",
                "deployment",
                "tidescale",
                "-o",
                "json",
            ])
            .await;
        assert_eq!(d["status"]["readyReplicas"], 2, "{}", d["status"]);
        release
    }

    fn sa(&self) -> String {
        format!("system:serviceaccount:{}:tidescale", self.ns)
    }

    /// `helm uninstall`, then nothing of the release may be left, in its namespace, in
    /// kube-system or cluster-wide.
    async fn uninstall_leaves_nothing(mut self, c: &Cluster) {
        self.helm
            .ok(&["uninstall", "tidescale", "--namespace", &self.ns, "--wait"]);
        self.uninstalled = true;
        let sel = "app.kubernetes.io/instance=tidescale";
        let kinds = "deployments,services,serviceaccounts,configmaps,secrets,roles,rolebindings,\
                     poddisruptionbudgets,networkpolicies,leases";
        let end = clock::now() + Duration::from_secs(60);
        loop {
            let mut left = String::new();
            for (ns, what) in [(self.ns.as_str(), kinds), ("kube-system", "rolebindings")] {
                left += &c
                    .kubectl_ok(&["-n", ns, "get", what, "-l", sel, "-o", "name"])
                    .await;
            }
            left += &c
                .kubectl_ok(&[
                    "get",
                    "clusterroles,clusterrolebindings,apiservices",
                    "-l",
                    sel,
                    "-o",
                    "name",
                ])
                .await;
            if left.trim().is_empty() {
                break;
            }
            assert!(
                clock::now() < end,
                "left behind 60 s after helm uninstall:\n{left}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        orphans_belong_to_the_deleted_deployment(c, &self.ns).await;
        c.kubectl_ok(&["delete", "namespace", &self.ns, "--wait=false"])
            .await;
    }
}

/// ReplicaSets and pods are not Helm's: the garbage collector removes them after their
/// Deployment, and this control plane runs no garbage collector. Each one left must be owned,
/// through its ReplicaSet, by the deleted Deployment; the test then removes them as the
/// collector would.
async fn orphans_belong_to_the_deleted_deployment(c: &Cluster, ns: &str) {
    let owner = |v: &Value| {
        format!(
            "{}/{}",
            v["metadata"]["ownerReferences"][0]["kind"]
                .as_str()
                .unwrap_or("none"),
            v["metadata"]["ownerReferences"][0]["name"]
                .as_str()
                .unwrap_or("none")
        )
    };
    let rs = c
        .kubectl_json(&["-n", ns, "get", "replicasets", "-o", "json"])
        .await;
    let mut names = vec![];
    for r in rs["items"].as_array().unwrap() {
        assert_eq!(owner(r), "Deployment/tidescale", "{}", r["metadata"]);
        names.push(r["metadata"]["name"].as_str().unwrap().to_string());
    }
    let pods = c
        .kubectl_json(&["-n", ns, "get", "pods", "-o", "json"])
        .await;
    for p in pods["items"].as_array().unwrap() {
        let o = owner(p);
        assert!(
            names.iter().any(|n| o == format!("ReplicaSet/{n}")),
            "pod not from the release: {o}"
        );
    }
    c.kubectl_ok(&[
        "-n",
        ns,
        "delete",
        "replicasets,pods",
        "--all",
        "--wait=false",
    ])
    .await;
}

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

async fn crd_established(c: &Cluster) {
    let deadline = Deadline::new("the ScalingPolicy CRD Established", 60);
    loop {
        let crd = c
            .kubectl_json(&["get", "crd", "scalingpolicies.tidescale.io", "-o", "json"])
            .await;
        if condition(&crd, "Established")["status"] == "True" {
            return;
        }
        deadline.tick().await;
    }
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

/// Where the host-run adapter listens: the cluster namespace's address, a port of its own.
const ADAPTER_PORT: u16 = 6444;

/// The chart's adapter, run the way its Deployment runs it but on this machine (no image can
/// run here): the Deployment's own arguments, the chart's ConfigMap and generated certificate,
/// the release's service-account token, listening on the cluster namespace's address behind an
/// EndpointSlice of the chart's Service.
struct HostAdapter {
    child: tokio::process::Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl HostAdapter {
    async fn start(c: &Cluster, ns: &str) -> HostAdapter {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let secret = c
            .kubectl_json(&["-n", ns, "get", "secret", "tidescale-tls", "-o", "json"])
            .await;
        std::fs::create_dir(d.join("tls")).unwrap();
        for key in ["tls.crt", "tls.key", "ca.crt"] {
            let pem = c
                .kubectl_ok(&[
                    "-n",
                    ns,
                    "get",
                    "secret",
                    "tidescale-tls",
                    "-o",
                    &format!("jsonpath={{.data.{}}}", key.replace('.', "\\.")),
                ])
                .await;
            assert!(!pem.is_empty(), "{key} missing: {}", secret["data"]);
            let decoded = deploy_support::run_stdin(
                std::process::Command::new("base64").arg("-d"),
                Some(&pem),
            );
            std::fs::write(d.join("tls").join(key), decoded.1).unwrap();
        }
        let config = c
            .kubectl_ok(&[
                "-n",
                ns,
                "get",
                "configmap",
                "tidescale-adapter",
                "-o",
                "jsonpath={.data.adapter\\.yaml}",
            ])
            .await;
        std::fs::write(d.join("adapter.yaml"), config).unwrap();
        let kubeconfig = service_account_kubeconfig(c, ns, "tidescale", d).await;
        let args = host_args(c, ns, d, &kubeconfig).await;
        endpoint_slice(c, ns).await;
        let log = d.join("adapter.log");
        let netns = cluster_env("TIDESCALE_CLUSTER_NETNS");
        let child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &netns, env!("CARGO_BIN_EXE_tidescale")])
            .args(&args)
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the adapter starts");
        HostAdapter {
            child,
            log,
            _dir: dir,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// A variable of `scripts/cluster.sh env`.
fn cluster_env(name: &str) -> String {
    let out = std::process::Command::new(repo().join("scripts/cluster.sh"))
        .arg("env")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("scripts/cluster.sh env printed no {name}"))
        .to_string()
}

/// A kubeconfig for `ns/sa` with a fresh token, as the pod's mounted token would be.
async fn service_account_kubeconfig(c: &Cluster, ns: &str, sa: &str, dir: &Path) -> String {
    let token = c
        .kubectl_ok(&["-n", ns, "create", "token", sa, "--duration=1h"])
        .await;
    let ca = std::fs::read(c.pki("ca.crt")).unwrap();
    let ca64 = deploy_support::run_stdin(
        std::process::Command::new("base64").arg("-w0"),
        Some(std::str::from_utf8(&ca).unwrap()),
    )
    .1;
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
             certificate-authority-data: {ca64}\nusers:\n- name: {sa}\n  user:\n    token: {}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: {sa}}}\ncurrent-context: c\n",
            c.api_base(),
            token.trim()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// The installed Deployment's container arguments with the pod's paths mapped to `dir`, the
/// listen address moved to the cluster namespace's address, and the service account's
/// kubeconfig in place of the in-cluster config.
async fn host_args(c: &Cluster, ns: &str, dir: &Path, kubeconfig: &str) -> Vec<String> {
    let d = c
        .kubectl_json(&["-n", ns, "get", "deployment", "tidescale", "-o", "json"])
        .await;
    let ns_ip = c.adapter_addr.ip().to_string();
    let mut args: Vec<String> = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a.starts_with("--listen=") {
                format!("--listen={ns_ip}:{ADAPTER_PORT}")
            } else {
                a.replace("/etc/tidescale/", &format!("{}/", dir.display()))
                    .replace(
                        "/var/run/tidescale/tls",
                        &dir.join("tls").display().to_string(),
                    )
            }
        })
        .collect();
    assert_eq!(args[0], "adapter", "{args:?}");
    for flag in [
        "--kubeconfig",
        "--authentication-kubeconfig",
        "--authorization-kubeconfig",
    ] {
        args.push(format!("{flag}={kubeconfig}"));
    }
    args
}

/// The chart's Service has a selector, but its pods cannot run here: an EndpointSlice for it
/// points at the host-run adapter instead (the aggregator dials EndpointSlice addresses).
async fn endpoint_slice(c: &Cluster, ns: &str) {
    let ip = c.adapter_addr.ip();
    c.apply(&format!(
        r#"apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: tidescale-host
  namespace: {ns}
  labels: {{kubernetes.io/service-name: tidescale, endpointslice.kubernetes.io/managed-by: cluster-deploy-test}}
addressType: IPv4
ports: [{{name: https, port: {ADAPTER_PORT}, protocol: TCP}}]
endpoints: [{{addresses: ["{ip}"], conditions: {{ready: true}}}}]
"#
    ))
    .await;
}

/// A real demo-service on the host side of the cluster's veth pair, with a little steady
/// traffic, so the external metric the HPA reads is a real request rate.
struct DemoService {
    url: String,
    _child: tokio::process::Child,
    _load: tokio::task::JoinHandle<()>,
}

impl DemoService {
    async fn start(host_ip: &str) -> DemoService {
        use tokio::io::AsyncBufReadExt;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidescale"))
            .args(["serve-demo", "--listen", &format!("{host_ip}:0")])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("demo-service starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines.next_line().await.unwrap().expect("the bound URL");
        let target = format!("{url}/kv/hello");
        let load = tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let _ = client.get(&target).send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        DemoService {
            url,
            _child: child,
            _load: load,
        }
    }
}

/// The chart's values for this test: the adapter only, with the demo's
/// external metric read from the host's demo-service.
fn demo_values(demo_ns: &str, demo_url: &str) -> String {
    format!(
        r#"mode: adapter
adapter:
  config:
    interval: 1s
    externalMetrics:
      - name: demo_requests_per_second
        labels: {{app: demo-service}}
        namespace: {demo_ns}
        scrape:
          endpoints: ["{demo_url}/metrics"]
          metric: http_requests_total
          labels: {{route: "/kv/{{*key}}"}}
          aggregate: {{rate: {{window: 5s}}}}
"#
    )
}

/// `kubectl kustomize` of `dir` (relative to the repository) with its namespace set to `ns`.
async fn kustomize_into(dir: &str, ns: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let target = repo().join(dir);
    // kustomize refuses absolute resource paths: climb from the temporary directory to `/`.
    let depth = tmp.path().components().count() - 1;
    let rel = format!(
        "{}{}",
        "../".repeat(depth),
        target.display().to_string().trim_start_matches('/')
    );
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\nresources: [\"{rel}\"]\n"),
    )
    .unwrap();
    deploy_support::run_ok(
        deploy_support::tool("bin/kubectl"),
        &["kustomize", &tmp.path().display().to_string()],
    )
}

async fn wait_ready(c: &Cluster, ns: &str, deployment: &str, want: i64) {
    let deadline = Deadline::new(&format!("{ns}/{deployment} {want} ready"), 120);
    loop {
        let d = c
            .kubectl_json(&["-n", ns, "get", "deployment", deployment, "-o", "json"])
            .await;
        if d["status"]["readyReplicas"].as_i64() == Some(want)
            && d["status"]["updatedReplicas"].as_i64() == Some(want)
        {
            return;
        }
        deadline.tick().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_applies_and_its_hpa_scales_on_the_charts_adapter() {
    let c = Cluster::require();
    let demo_ns = format!("deploy-demo-{}", std::process::id());
    let demo = DemoService::start(&c.host_ip).await;
    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(values.path(), demo_values(&demo_ns, &demo.url)).unwrap();
    let r = Release::install(&c, "adapter", &["-f", &values.path().display().to_string()]).await;
    let adapter = HostAdapter::start(&c, &r.ns).await;
    let conditions = c.wait_apiservices_available(120).await;
    for cond in &conditions {
        assert_eq!(cond["reason"], "Passed", "{cond}\n{}", adapter.log_text());
    }

    // deploy/demo under the real admission chain (its namespace enforces Pod Security
    // `restricted`), then the HPA on the adapter's external metric.
    let yaml = kustomize_into("deploy/demo", &demo_ns).await;
    let (ok, out, err) = c
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&yaml))
        .await;
    assert!(ok, "deploy/demo does not apply: {err}{out}");
    wait_ready(&c, &demo_ns, "demo-service", 3).await;
    wait_ready(&c, &demo_ns, "redis", 1).await;
    let deadline = Deadline::new("the demo HPA ScalingActive=True", 120);
    let hpa = loop {
        let hpa = c
            .kubectl_json(&["-n", &demo_ns, "get", "hpa", "demo-service", "-o", "json"])
            .await;
        if condition(&hpa, "ScalingActive")["status"] == "True" {
            break hpa;
        }
        deadline.tick().await;
    };
    assert_eq!(
        condition(&hpa, "ScalingActive")["reason"],
        "ValidMetricFound"
    );
    let current = &hpa["status"]["currentMetrics"][0]["external"];
    assert_eq!(
        current["metric"]["name"], "demo_requests_per_second",
        "{hpa}"
    );
    println!("demo HPA: {}", hpa["status"]);

    adapter_metrics_need_rbac(&c, &r.ns).await;
    adapter.stop().await;
    c.kubectl_ok(&["-n", &r.ns, "delete", "endpointslice", "tidescale-host"])
        .await;
    r.uninstall_leaves_nothing(&c).await;
    c.kubectl_ok(&[
        "delete",
        "clusterrolebinding",
        "deploy-test-scraper",
        "--ignore-not-found",
    ])
    .await;
    release_patterns_switch_and_roll_back(&c).await;
}

/// The adapter's `/metrics`, straight to the adapter as a scraper would: refused by its
/// SubjectAccessReview until the chart's scraper ClusterRole is bound, then the counts of the
/// HPA's requests.
async fn adapter_metrics_need_rbac(c: &Cluster, ns: &str) {
    c.kubectl_ok(&["-n", ns, "create", "serviceaccount", "scraper"])
        .await;
    let token = c
        .kubectl_ok(&["-n", ns, "create", "token", "scraper", "--duration=1h"])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = c
        .kubectl_ok(&[
            "-n",
            ns,
            "get",
            "secret",
            "tidescale-tls",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ])
        .await;
    let pem =
        deploy_support::run_stdin(std::process::Command::new("base64").arg("-d"), Some(&ca)).1;
    std::fs::write(dir.path().join("ca.crt"), pem).unwrap();
    let host = format!("tidescale.{ns}.svc");
    let addr = std::net::SocketAddr::new(c.adapter_addr.ip(), ADAPTER_PORT);
    let client = tls_client(&dir.path().join("ca.crt"), None, &[(host.as_str(), addr)]);
    let url = format!("https://{host}:{ADAPTER_PORT}/metrics");
    let get = || async {
        let r = client
            .get(&url)
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let (code, body) = get().await;
    assert_eq!(code, 403, "{body}");
    // A binding left by an interrupted run would name another namespace's account.
    c.kubectl_ok(&[
        "delete",
        "clusterrolebinding",
        "deploy-test-scraper",
        "--ignore-not-found",
    ])
    .await;
    c.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "deploy-test-scraper",
        "--clusterrole=tidescale-metrics-scraper",
        &format!("--serviceaccount={ns}:scraper"),
    ])
    .await;
    // The adapter caches a denial for 10 s.
    let deadline = Deadline::new("/metrics allowed once bound", 40);
    let body = loop {
        let (code, body) = get().await;
        if code == 200 {
            break body;
        }
        deadline.tick().await;
    };
    for line in [
        r#"tidescale_adapter_requests_total{group="external.metrics.k8s.io",code="200"}"#,
        r#"tidescale_adapter_request_duration_seconds_count{group="external.metrics.k8s.io"}"#,
    ] {
        assert!(body.contains(line), "{line} missing:\n{body}");
    }
}

/// The blue-green and canary variants apply, and the switch and rollback of their READMEs
/// work on the real API server.
async fn release_patterns_switch_and_roll_back(c: &Cluster) {
    let ns = format!("deploy-bg-{}", std::process::id());
    let yaml = kustomize_into("deploy/demo/blue-green", &ns).await;
    let (ok, out, err) = c
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&yaml))
        .await;
    assert!(ok, "blue-green does not apply: {err}{out}");
    wait_ready(c, &ns, "demo-service-green", 3).await;
    let selector = |colour: &str| {
        format!(
            r#"{{"spec":{{"selector":{{"app.kubernetes.io/name":"demo-service","release":"{colour}"}}}}}}"#
        )
    };
    let live = || async {
        c.kubectl_ok(&[
            "-n",
            &ns,
            "get",
            "service",
            "demo-service",
            "-o",
            "jsonpath={.spec.selector.release}",
        ])
        .await
    };
    assert_eq!(live().await, "blue");
    for colour in ["green", "blue"] {
        c.kubectl_ok(&[
            "-n",
            &ns,
            "patch",
            "service",
            "demo-service",
            "-p",
            &selector(colour),
        ])
        .await;
        assert_eq!(live().await, colour);
    }

    canary_weights_by_replicas(c).await;
}

/// The canary's README: one Service over stable and canary pods, the canary's share moved by
/// its replicas, and the rollback to none.
async fn canary_weights_by_replicas(c: &Cluster) {
    let ns = format!("deploy-canary-{}", std::process::id());
    let yaml = kustomize_into("deploy/demo/canary", &ns).await;
    let (ok, out, err) = c
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&yaml))
        .await;
    assert!(ok, "canary does not apply: {err}{out}");
    wait_ready(c, &ns, "demo-service-stable", 3).await;
    wait_ready(c, &ns, "demo-service-canary", 1).await;
    c.kubectl_ok(&[
        "-n",
        &ns,
        "scale",
        "deployment",
        "demo-service-canary",
        "--replicas=3",
    ])
    .await;
    wait_ready(c, &ns, "demo-service-canary", 3).await;
    let pods = c
        .kubectl_json(&[
            "-n",
            &ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=demo-service",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(
        pods["items"].as_array().unwrap().len(),
        6,
        "3 stable + 3 canary behind one selector"
    );
    c.kubectl_ok(&[
        "-n",
        &ns,
        "scale",
        "deployment",
        "demo-service-canary",
        "--replicas=0",
    ])
    .await;
    let d = c
        .kubectl_json(&[
            "-n",
            &ns,
            "get",
            "deployment",
            "demo-service-canary",
            "-o",
            "json",
        ])
        .await;
    assert_eq!(d["spec"]["replicas"], 0);
}
