//! `tidescale run` as a child process against the local control plane: its log in a file, its
//! `/metrics` read over loopback, killed (SIGKILL) or stopped (SIGTERM) by the test.

use std::path::PathBuf;
use std::time::Duration;

use super::{Cluster, Deadline, replicas};

/// One `tidescale run` process.
pub struct ScalerProcess {
    child: tokio::process::Child,
    /// Its stderr.
    pub log: PathBuf,
    /// `http://127.0.0.1:<port>`, where `/metrics`, `/healthz`, `/readyz` are served.
    pub base: String,
    /// Its lease identity.
    pub identity: String,
    _dir: tempfile::TempDir,
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ScalerProcess {
    /// Starts `tidescale run` as `identity` with `extra` flags, and waits for `/healthz`.
    pub async fn start(cluster: &Cluster, identity: &str, extra: &[&str]) -> Self {
        Self::start_at(cluster, identity, free_port(), extra).await
    }

    /// Like [`start`](Self::start), serving `/metrics` on `127.0.0.1:port`.
    pub async fn start_at(cluster: &Cluster, identity: &str, port: u16, extra: &[&str]) -> Self {
        Self::start_as(&cluster.kubeconfig, identity, port, extra).await
    }

    /// Like [`start_at`](Self::start_at), as whoever `kubeconfig` names (a service account's
    /// token, to prove its RBAC is enough).
    pub async fn start_as(
        kubeconfig: &std::path::Path,
        identity: &str,
        port: u16,
        extra: &[&str],
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidescale"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--identity", identity, "--log-format", "text"])
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("tidescale run starts");
        let s = ScalerProcess {
            child,
            log,
            base: format!("http://127.0.0.1:{port}"),
            identity: identity.to_string(),
            _dir: dir,
        };
        let deadline = Deadline::new(&format!("{identity}'s /healthz"), 30);
        while reqwest::get(format!("{}/healthz", s.base)).await.is_err() {
            deadline.tick().await;
        }
        s
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/metrics`, or empty when the process does not answer.
    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("{}/metrics", self.base)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The value of the first sample whose line starts with `prefix`.
    pub async fn sample(&self, prefix: &str) -> Option<f64> {
        self.metrics()
            .await
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// True while this process says it holds the lease.
    pub async fn leading(&self) -> bool {
        self.metrics()
            .await
            .lines()
            .any(|l| l.starts_with("tidescale_leader{") && l.ends_with(" 1"))
    }

    /// Scale writes this process made for `policy` (`ns/name`).
    pub async fn writes(&self, policy: &str) -> f64 {
        let prefix = format!("tidescale_scale_writes_total{{policy=\"{policy}\"}}");
        self.sample(&prefix).await.unwrap_or(0.0)
    }

    /// SIGKILL: no chance to release the lease.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits up to 30 s for a clean exit; returns whether it exited 0.
    pub async fn terminate(mut self) -> bool {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        matches!(
            tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await,
            Ok(Ok(status)) if status.success()
        )
    }
}

const CRD: &str = include_str!("../../deploy/crds/scalingpolicies.tidescale.io.yaml");

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

/// Waits up to 60 s until the Deployment's `spec.replicas` is `want`.
pub async fn wait_replicas(cluster: &Cluster, ns: &str, name: &str, want: i64) {
    let deadline = Deadline::new(&format!("{ns}/{name} spec.replicas = {want}"), 60);
    while replicas(cluster, ns, name).await.0 != want {
        deadline.tick().await;
    }
}

/// The Deployment's `metadata.generation`: every write that changes its spec bumps it.
pub async fn generation(cluster: &Cluster, ns: &str, name: &str) -> i64 {
    cluster
        .kubectl_json(&["-n", ns, "get", "deployment", name, "-o", "json"])
        .await["metadata"]["generation"]
        .as_i64()
        .unwrap()
}

/// A test custom resource `kind` (group `test.tidescale.io/v1`) with a scale subresource, its
/// `spec.replicas` capped at `max` by the schema when given; applied and Established.
pub async fn scalable_crd(cluster: &Cluster, kind: &str, max: Option<u32>) {
    let plural = format!("{}s", kind.to_lowercase());
    let cap = max.map_or(String::new(), |m| format!(", maximum: {m}"));
    let crd = format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: {plural}.test.tidescale.io}}
spec:
  group: test.tidescale.io
  names: {{kind: {kind}, plural: {plural}, singular: {singular}}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {{}}
      scale: {{specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, properties: {{replicas: {{type: integer{cap}}}}}}}
          status: {{type: object, properties: {{replicas: {{type: integer}}, selector: {{type: string}}}}}}
"#,
        singular = kind.to_lowercase()
    );
    cluster.apply(&crd).await;
    let name = format!("crd/{plural}.test.tidescale.io");
    cluster
        .kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            &name,
            "--timeout=60s",
        ])
        .await;
}

/// An object of a [`scalable_crd`] kind with one replica. Nobody runs it: the test plays its
/// controller and publishes `status.replicas` and the selector its scale subresource reports.
pub async fn scalable_object(cluster: &Cluster, ns: &str, kind: &str, name: &str, selector: &str) {
    cluster
        .apply(&format!(
            "apiVersion: test.tidescale.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {{replicas: 1}}\n"
        ))
        .await;
    let status = format!(r#"{{"status":{{"replicas":1,"selector":"{selector}"}}}}"#);
    let resource = kind.to_lowercase();
    cluster
        .kubectl_ok(&[
            "-n",
            ns,
            "patch",
            &resource,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ])
        .await;
}

/// A policy `name` on `target` (apiVersion, kind, name): one `scrape` metric `queue_depth` of
/// the page at `url` against a `Value` of 10, min 1, max 4, interval 1 s, no scale-down window;
/// `extra` is appended to the spec.
pub fn policy(ns: &str, name: &str, target: (&str, &str, &str), url: &str, extra: &str) -> String {
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
