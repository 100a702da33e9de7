//! Harness for the tests against the local control plane (`scripts/cluster.sh up`): kubectl
//! as the cluster admin, a `/metrics` page on the host side of the cluster's veth pair whose
//! values the test sets, `tidescale adapter` registered behind the real aggregator, and the
//! adapter's log of what it served to whom.
//!
//! A missing cluster is a failure with the command that fixes it, never a skip.
#![allow(dead_code)] // each test binary uses a part of the harness

pub mod feed;
pub mod prometheus;
pub mod scaler;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tidescale::clock::{self, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::Value;
use tokio::net::TcpListener;

/// The three APIServices the adapter backs.
pub const APISERVICES: [&str; 3] = [
    "v1beta1.custom.metrics.k8s.io",
    "v1beta2.custom.metrics.k8s.io",
    "v1beta1.external.metrics.k8s.io",
];

/// The DNS name in the adapter's serving certificate (the Service `tidescale/tidescale-adapter`).
pub const ADAPTER_NAME: &str = "tidescale-adapter.tidescale.svc";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The running control plane, as `scripts/cluster.sh env` describes it.
pub struct Cluster {
    /// The state directory (certificates, kubeconfigs, logs).
    pub state: PathBuf,
    /// Admin kubeconfig (group `system:masters`).
    pub kubeconfig: PathBuf,
    /// The host-side veth address: the API server's, and where test servers listen.
    pub host_ip: String,
    /// The namespace-side address the adapter listens on.
    pub adapter_addr: SocketAddr,
    /// kubectl's discovery cache, fresh for each test (a stale one would hide new groups).
    cache: tempfile::TempDir,
}

impl Cluster {
    /// The cluster, or a panic that says how to start it.
    pub fn require() -> Self {
        let out = std::process::Command::new(repo().join("scripts/cluster.sh"))
            .arg("env")
            .output()
            .expect("scripts/cluster.sh runs");
        let env = String::from_utf8_lossy(&out.stdout).into_owned();
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("scripts/cluster.sh env printed no {name}: {env}"))
                .to_string()
        };
        let state = PathBuf::from(var("TIDESCALE_CLUSTER_STATE"));
        let cluster = Cluster {
            kubeconfig: PathBuf::from(var("KUBECONFIG")),
            host_ip: var("TIDESCALE_CLUSTER_HOST_IP"),
            adapter_addr: var("TIDESCALE_CLUSTER_ADAPTER_ADDR")
                .parse()
                .expect("adapter address"),
            state,
            cache: tempfile::tempdir().unwrap(),
        };
        let ready = std::process::Command::new(kubectl_path())
            .arg("--kubeconfig")
            .arg(&cluster.kubeconfig)
            .args(["get", "--raw", "/readyz", "--request-timeout=5s"])
            .output()
            .map(|o| o.status.success() && o.stdout.starts_with(b"ok"))
            .unwrap_or(false);
        assert!(
            ready,
            "the local control plane is not up (no ready API server behind {}): run \
             `scripts/cluster.sh up` first (scripts/test.sh does it for the whole suite)",
            cluster.kubeconfig.display()
        );
        cluster
    }

    /// A file under the cluster's certificate directory.
    pub fn pki(&self, name: &str) -> PathBuf {
        self.state.join("pki").join(name)
    }

    /// Runs kubectl as the admin; returns (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        self.kubectl_stdin(args, None).await
    }

    /// Runs kubectl as the admin with `stdin` piped in.
    pub async fn kubectl_stdin(
        &self,
        args: &[&str],
        stdin: Option<&str>,
    ) -> (bool, String, String) {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new(kubectl_path());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=20s")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubectl starts");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} did not finish in 60 s"))
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// kubectl that must succeed; returns stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args).await;
        assert!(ok, "kubectl {args:?} failed: {err}{out}");
        out
    }

    /// kubectl `-o json` (or `get --raw`) parsed.
    pub async fn kubectl_json(&self, args: &[&str]) -> Value {
        let out = self.kubectl_ok(args).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
    }

    /// `kubectl apply -f -`.
    pub async fn apply(&self, yaml: &str) {
        let (ok, out, err) = self.kubectl_stdin(&["apply", "-f", "-"], Some(yaml)).await;
        assert!(ok, "kubectl apply failed: {err}{out}\n---\n{yaml}");
    }

    /// A fresh namespace named `prefix-<n>` (unique within this cluster's life).
    pub async fn namespace(&self, prefix: &str) -> String {
        let ns = format!("{prefix}-{}", (now_epoch() * 1000.0) as u64 % 100_000_000);
        self.kubectl_ok(&["create", "namespace", &ns]).await;
        // The pods' service account must exist before the ReplicaSet creates pods.
        let deadline = Deadline::new("the namespace's default service account", 60);
        while !self
            .kubectl(&["-n", &ns, "get", "serviceaccount", "default"])
            .await
            .0
        {
            deadline.tick().await;
        }
        ns
    }

    /// An HTTPS client to the API server as the admin (client certificate).
    pub fn admin_client(&self) -> reqwest::Client {
        tls_client(
            &self.pki("ca.crt"),
            Some((&self.pki("admin.crt"), &self.pki("admin.key"))),
            &[],
        )
    }

    /// An HTTPS client straight to the adapter, presenting the front proxy's client
    /// certificate as the aggregator does. Requests go to `https://ADAPTER_NAME/…`.
    pub fn front_proxy_client(&self) -> reqwest::Client {
        tls_client(
            &self.pki("adapter-ca.crt"),
            Some((
                &self.pki("front-proxy-client.crt"),
                &self.pki("front-proxy-client.key"),
            )),
            &[(ADAPTER_NAME, self.adapter_addr)],
        )
    }

    /// The API server's base URL.
    pub fn api_base(&self) -> String {
        format!("https://{}:6443", self.host_ip)
    }

    /// Waits until all three APIServices report `Available=True`; returns their conditions.
    pub async fn wait_apiservices_available(&self, seconds: u64) -> Vec<Value> {
        let mut last = vec![];
        let deadline = clock::now() + Duration::from_secs(seconds);
        while clock::now() < deadline {
            last.clear();
            for name in APISERVICES {
                let v = self
                    .kubectl_json(&["get", "apiservice", name, "-o", "json"])
                    .await;
                last.push(condition(&v, "Available"));
            }
            if last.iter().all(|c| c["status"] == "True") {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("APIServices not Available within {seconds} s: {last:?}");
    }
}

/// The condition of `kind` in `obj.status.conditions` (Null when absent).
pub fn condition(obj: &Value, kind: &str) -> Value {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned()
        .unwrap_or(Value::Null)
}

/// The kubectl binary `scripts/install-kubectl.sh` installs (or `$TIDESCALE_KUBECTL`).
pub fn kubectl_path() -> PathBuf {
    let p = std::env::var_os("TIDESCALE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".tools/bin/kubectl"));
    assert!(
        p.is_file(),
        "kubectl not found at {}: run scripts/install-kubectl.sh (or set TIDESCALE_KUBECTL)",
        p.display()
    );
    p
}

/// An HTTPS client trusting `ca`, presenting `identity` if given, with `resolve` overrides.
pub fn tls_client(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    resolve: &[(&str, SocketAddr)],
) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let cfg = match identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
                .unwrap()
        }
        None => b.with_no_client_auth(),
    };
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .timeout(Duration::from_secs(10));
    for (name, addr) in resolve {
        builder = builder.resolve(name, *addr);
    }
    builder.build().unwrap()
}

/// A bound on a polling loop: `while !ready().await { deadline.tick().await }` polls every
/// 250 ms and fails the test, naming what was awaited, once `seconds` have passed.
pub struct Deadline {
    what: String,
    seconds: u64,
    end: Instant,
}

impl Deadline {
    /// A deadline `seconds` from now for `what`.
    pub fn new(what: &str, seconds: u64) -> Self {
        Deadline {
            what: what.to_string(),
            seconds,
            end: clock::now() + Duration::from_secs(seconds),
        }
    }

    /// Sleeps 250 ms, or panics when the deadline has passed.
    pub async fn tick(&self) {
        assert!(
            clock::now() < self.end,
            "{}: not within {} s",
            self.what,
            self.seconds
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A `/metrics` page (Prometheus text format) on the host side of the veth pair, which the
/// adapter inside the namespace scrapes. The test sets each series' value.
pub struct Exposition {
    /// `http://<host ip>:<port>/metrics`.
    pub url: String,
    series: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Exposition {
    /// Serves the page on `host_ip`, port chosen by the kernel.
    pub async fn start(host_ip: &str) -> Self {
        let series: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
        let s = series.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let page: String = s
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| format!("{k} {v}\n"))
                    .collect();
                async move { page }
            }),
        );
        let l = TcpListener::bind(format!("{host_ip}:0")).await.unwrap();
        let url = format!("http://{}/metrics", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        Exposition { url, series }
    }

    /// Sets `series` (e.g. `queue_depth{queue="orders"}`) to `value`.
    pub fn set(&self, series: &str, value: f64) {
        self.series
            .lock()
            .unwrap()
            .insert(series.to_string(), value);
    }

    /// Removes every series whose text starts with `prefix`.
    pub fn remove_prefix(&self, prefix: &str) {
        self.series
            .lock()
            .unwrap()
            .retain(|k, _| !k.starts_with(prefix));
    }
}

/// `tidescale adapter` run by `scripts/cluster.sh adapter` (registered behind the aggregator,
/// inside the cluster's network namespace), with its log kept in a file.
pub struct AdapterProcess {
    child: tokio::process::Child,
    /// The adapter's stderr (info, plus the `served` debug lines).
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl AdapterProcess {
    /// Writes `config_yaml`, starts the adapter, and waits until the aggregator reports all
    /// three APIServices Available.
    pub async fn start(cluster: &Cluster, config_yaml: &str) -> Self {
        Self::start_with(cluster, config_yaml, false).await
    }

    /// Like [`start`](Self::start); with `via_run` the adapter is served by `tidescale run
    /// --adapter-config` (next to its controller) instead of `tidescale adapter`.
    pub async fn start_with(cluster: &Cluster, config_yaml: &str, via_run: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("adapter.yaml");
        std::fs::write(&config, config_yaml).unwrap();
        let log = dir.path().join("adapter.log");
        let child = tokio::process::Command::new(repo().join("scripts/cluster.sh"))
            .arg("adapter")
            .arg("--config")
            .arg(&config)
            .env("TIDESCALE_BIN", env!("CARGO_BIN_EXE_tidescale"))
            .env("TIDESCALE_ADAPTER_VIA_RUN", if via_run { "1" } else { "" })
            .env("RUST_LOG", "info,tidescale::adapter::served=debug")
            // Plain lines: the `served` records are parsed.
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(dir.path().join("script.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("scripts/cluster.sh adapter starts");
        let mut a = AdapterProcess {
            child,
            log,
            _dir: dir,
        };
        let deadline = clock::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = a.child.try_wait() {
                panic!("the adapter exited ({status}):\n{}", a.log_text());
            }
            let mut available = 0;
            for name in APISERVICES {
                let (ok, out, _) = cluster
                    .kubectl(&["get", "apiservice", name, "-o", "json"])
                    .await;
                if ok
                    && serde_json::from_str::<Value>(&out)
                        .map(|v| condition(&v, "Available")["status"] == "True")
                        .unwrap_or(false)
                {
                    available += 1;
                }
            }
            if available == APISERVICES.len() && a.log_text().contains("first metrics arrived") {
                return a;
            }
            assert!(
                clock::now() < deadline,
                "APIServices not Available within 120 s; adapter log:\n{}",
                a.log_text()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the adapter served, in order.
    pub fn served(&self) -> Vec<Served> {
        self.log_text().lines().filter_map(Served::parse).collect()
    }

    /// Stops the adapter and waits for it to exit, so the next one can take the address.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// One metric answer from the adapter's `served` log line.
#[derive(Clone, Debug)]
pub struct Served {
    /// When it was served (the log line's timestamp), seconds since the Unix epoch.
    pub at: f64,
    /// Who asked.
    pub user: String,
    /// The request path.
    pub path: String,
    /// The body: a metric value list.
    pub body: Value,
}

impl Served {
    fn parse(line: &str) -> Option<Served> {
        if !line.contains("tidescale::adapter::served") {
            return None;
        }
        let stamp = line.split_whitespace().next()?;
        let at = parse_rfc3339(stamp)?;
        let field = |name: &str| {
            let start = line.find(&format!(" {name}="))? + name.len() + 2;
            let rest = &line[start..];
            let end = rest.find(' ').unwrap_or(rest.len());
            Some(rest[..end].trim_matches('"').to_string())
        };
        let body_at = line.find(" body=")? + 6;
        Some(Served {
            at,
            user: field("user")?,
            path: field("path")?,
            body: serde_json::from_str(&line[body_at..]).ok()?,
        })
    }

    /// The sum of the items' values, as the HPA sums them, in milli-units.
    pub fn total_milli(&self) -> i64 {
        self.body["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| quantity_milli(i["value"].as_str().unwrap_or("0")))
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// A canonical quantity as the adapter writes it (`42`, `7500m`, `1500k`) in milli-units.
pub fn quantity_milli(q: &str) -> i64 {
    let (num, mult) = match q.chars().last() {
        Some('m') => (&q[..q.len() - 1], 1.0),
        Some('k') => (&q[..q.len() - 1], 1e6),
        Some('M') => (&q[..q.len() - 1], 1e9),
        _ => (q, 1e3),
    };
    (num.parse::<f64>()
        .unwrap_or_else(|_| panic!("quantity {q}"))
        * mult)
        .round() as i64
}

/// Seconds since the Unix epoch of an RFC 3339 UTC timestamp like the log's
/// `2026-11-30T09:40:01.123456Z`.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, min, sec) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    // Days from the civil date (proleptic Gregorian), Howard Hinnant's well-known formula.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// Seconds since the Unix epoch, now: the wall clock, because the times compared with it are
/// the adapter's log timestamps.
pub fn now_epoch() -> f64 {
    tidescale::metric::unix_seconds(tidescale::clock::Clock::start().now().1)
}

/// A Deployment of `replicas` pods labelled `app=<name>` (the image is never pulled: the
/// stand-in kubelet reports the pods Running and Ready).
pub fn deployment_yaml(ns: &str, name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: app, image: "registry.invalid/tidescale-test:1"}}]
"#
    )
}

/// The Deployment's (spec.replicas, status.readyReplicas).
pub async fn replicas(cluster: &Cluster, ns: &str, name: &str) -> (i64, i64) {
    let d = cluster
        .kubectl_json(&["-n", ns, "get", "deployment", name, "-o", "json"])
        .await;
    (
        d["spec"]["replicas"].as_i64().unwrap_or(-1),
        d["status"]["readyReplicas"].as_i64().unwrap_or(0),
    )
}
