//! `deploy/demo/` on the real control plane: applied under the real admission chain (Pod
//! Security `restricted` included), its HPA reporting `ScalingActive=True` once the chart's
//! adapter (run on the host from the chart's own arguments, certificate and token) serves its
//! external metric, the adapter's `/metrics` behind RBAC, and the blue-green and canary
//! variants switched and rolled back as their READMEs say.

mod cluster_support;
mod deploy_support;
mod release_support;

use std::path::Path;
use std::time::Duration;

use cluster_support::{Cluster, Deadline, condition, tls_client};
use deploy_support::repo;
use release_support::{Release, cluster_env, service_account_kubeconfig};

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

/// Renders the kustomization in `dir` into namespace `ns` and applies it server-side.
async fn apply_variant(c: &Cluster, dir: &str, ns: &str) {
    let yaml = kustomize_into(dir, ns).await;
    let (ok, out, err) = c
        .kubectl_stdin(&["apply", "--server-side", "-f", "-"], Some(&yaml))
        .await;
    assert!(ok, "{dir} does not apply: {err}{out}");
}

/// The blue-green and canary variants apply, and the switch and rollback of their READMEs
/// work on the real API server.
async fn release_patterns_switch_and_roll_back(c: &Cluster) {
    let ns = format!("deploy-bg-{}", std::process::id());
    apply_variant(c, "deploy/demo/blue-green", &ns).await;
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
    apply_variant(c, "deploy/demo/canary", &ns).await;
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
