//! Harness for the adapter's real-client tests: a test PKI made with rcgen, loopback gauge
//! servers, a Kubernetes API stand-in (tower-test mock) answering TokenReview and
//! SubjectAccessReview, and the adapter itself served over TLS on 127.0.0.1:0.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};
use tidescale::adapter::Security;
use tidescale::adapter::auth::{
    AccessReviewer, Authenticator, Authorizer, AuthzMode, RequestHeaderAuth, TokenReviewer,
};
use tidescale::adapter::kube_auth::KubeReviewer;
use tidescale::adapter::run::{
    AdapterArgs, AdapterSecurity, AuthorizationMode, Prepared, ReloadCounts, run_on,
};
use tidescale::adapter::tls::ca_verifier;
use tidescale::adapter::trust::TrustSource;
use tokio::net::TcpListener;

/// Review requests the mock cluster received: (path, body).
pub type ReviewLog = Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// A CA that can issue leaf certificates.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(cn: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A client certificate (clientAuth) with this CN and organizations: (cert pem, key pem).
    pub fn client(&self, cn: &str, orgs: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A serving certificate (serverAuth) for 127.0.0.1 and localhost.
    pub fn server(&self) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "tidescale-adapter");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Every file the tests hand to the adapter and to clients.
pub struct Pki {
    pub dir: PathBuf,
    pub serving_ca: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub front_proxy_ca: PathBuf,
    pub client_ca: PathBuf,
    /// (cert, key) signed by the front-proxy CA with the allowed CN.
    pub proxy: (PathBuf, PathBuf),
    /// (cert, key) signed by the front-proxy CA with a CN not in the allowed list.
    pub proxy_wrong_name: (PathBuf, PathBuf),
    /// (cert, key) with the allowed CN but signed by an unrelated CA.
    pub proxy_other_ca: (PathBuf, PathBuf),
    /// (cert, key) of user `jane` (group `devs`) from the client CA.
    pub jane: (PathBuf, PathBuf),
    /// (cert, key) of user `eve` from the client CA (SAR denies her).
    pub eve: (PathBuf, PathBuf),
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn pair(dir: &Path, name: &str, (c, k): (String, String)) -> (PathBuf, PathBuf) {
    (
        write(dir, &format!("{name}.pem"), &c),
        write(dir, &format!("{name}-key.pem"), &k),
    )
}

impl Pki {
    pub fn new(dir: &Path) -> Self {
        let serving = Ca::new("serving-ca");
        let front = Ca::new("front-proxy-ca");
        let other = Ca::new("other-ca");
        let client = Ca::new("client-ca");
        let (sc, sk) = serving.server();
        Self {
            dir: dir.to_path_buf(),
            serving_ca: write(dir, "serving-ca.pem", &serving.pem),
            serving_cert: write(dir, "serving.pem", &sc),
            serving_key: write(dir, "serving-key.pem", &sk),
            front_proxy_ca: write(dir, "front-proxy-ca.pem", &front.pem),
            client_ca: write(dir, "client-ca.pem", &client.pem),
            proxy: pair(dir, "proxy", front.client("front-proxy-client", &[])),
            proxy_wrong_name: pair(dir, "proxy-wrong", front.client("someone-else", &[])),
            proxy_other_ca: pair(dir, "proxy-other", other.client("front-proxy-client", &[])),
            jane: pair(dir, "jane", client.client("jane", &["devs"])),
            eve: pair(dir, "eve", client.client("eve", &[])),
        }
    }
}

/// A loopback `/metrics` page whose gauge values tests can change.
pub struct GaugeServer {
    pub url: String,
    pub value: Arc<AtomicU64>,
}

pub async fn gauge_server(initial: f64) -> GaugeServer {
    let value = Arc::new(AtomicU64::new(initial.to_bits()));
    let v = value.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let v = f64::from_bits(v.load(Ordering::Relaxed));
            async move {
                format!("# TYPE queue_depth gauge\nqueue_depth{{queue=\"orders\"}} {v}\n# TYPE inflight gauge\ninflight {}\n", v / 2.0)
            }
        }),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    GaugeServer { url, value }
}

/// Answers TokenReview (`good-token` → user `tokenuser`) and SubjectAccessReview (allowed for
/// every user except `eve`) like a Kubernetes API server would; records every request body.
pub fn mock_kube() -> (kube::Client, ReviewLog) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_string();
            let body: Value =
                serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
            log.lock().unwrap().push((path.clone(), body.clone()));
            let reply = if path.ends_with("/tokenreviews") {
                if body["spec"]["token"] == "good-token" {
                    json!({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","status":{"authenticated":true,"user":{"username":"tokenuser","groups":["tokengroup"]}}})
                } else {
                    json!({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","status":{"authenticated":false,"error":"invalid token"}})
                }
            } else {
                let allowed = body["spec"]["user"] != "eve";
                json!({"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","status":{"allowed":allowed}})
            };
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                    .unwrap(),
            );
        }
    });
    (kube::Client::new(svc, "default"), seen)
}

/// A running adapter.
pub struct Adapter {
    pub port: u16,
    pub pki: Pki,
    pub gauge: GaugeServer,
    pub reviews: ReviewLog,
    pub dir: tempfile::TempDir,
    /// The trust watcher's re-reads, by outcome.
    pub reloads: Arc<ReloadCounts>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn config_yaml(gauge_url: &str) -> String {
    format!(
        r#"interval: 200ms
externalMetrics:
- name: queue_depth
  labels: {{queue: orders}}
  scrape: {{endpoints: ["{gauge_url}"], metric: queue_depth}}
customMetrics:
- name: inflight
  resource: pods
  namespace: shop
  objectLabels: {{app: web}}
  scrape: {{endpoints: ["{gauge_url}"], metric: inflight}}
- name: queue_depth
  resource: deployments.apps
  namespace: shop
  object: web
  scrape: {{endpoints: ["{gauge_url}"], metric: queue_depth}}
- name: queue_depth
  resource: namespaces
  object: shop
  scrape: {{endpoints: ["{gauge_url}"], metric: queue_depth}}
- name: inflight
  resource: nodes
  object: node-1
  scrape: {{endpoints: ["{gauge_url}"], metric: inflight}}
policies: [web-policy.yaml]
"#
    )
}

/// A ScalingPolicy whose metric the adapter also serves, as `shop.web.queue`.
pub fn policy_yaml(gauge_url: &str) -> String {
    format!(
        r#"apiVersion: tidescale.io/v1alpha1
kind: ScalingPolicy
metadata: {{name: web, namespace: shop}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: web}}
  maxReplicas: 10
  metrics:
  - name: queue
    scrape: {{endpoints: ["{gauge_url}"], metric: queue_depth}}
    target: {{type: Value, value: "30"}}
"#
    )
}

impl Adapter {
    /// Starts the adapter with real front-proxy and client-CA authentication, the mock cluster
    /// for TokenReview/SAR, and `mode` authorization; waits until it is ready.
    pub async fn start(mode: AuthorizationMode) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(dir.path());
        let gauge = gauge_server(42.0).await;
        let config = write(dir.path(), "adapter.yaml", &config_yaml(&gauge.url));
        write(dir.path(), "web-policy.yaml", &policy_yaml(&gauge.url));
        let (client, reviews) = mock_kube();
        let reviewer = Arc::new(KubeReviewer::new(client));
        let authz = match mode {
            AuthorizationMode::AlwaysAllow => AuthzMode::AlwaysAllow,
            AuthorizationMode::Webhook => {
                AuthzMode::Webhook(reviewer.clone() as Arc<dyn AccessReviewer>)
            }
        };
        let security = Security::Checked {
            authn: Authenticator::new(
                Some(RequestHeaderAuth {
                    verifier: ca_verifier(&pki.front_proxy_ca).unwrap(),
                    allowed_names: vec!["front-proxy-client".into()],
                }),
                Some(ca_verifier(&pki.client_ca).unwrap()),
                Some(reviewer as Arc<dyn TokenReviewer>),
            ),
            authz: Authorizer::new(authz),
        };
        let args = AdapterArgs {
            config,
            listen: "127.0.0.1:0".parse().unwrap(),
            kubeconfig: None,
            insecure_dev_mode: false,
            security: AdapterSecurity {
                tls_cert_file: Some(pki.serving_cert.clone()),
                tls_private_key_file: Some(pki.serving_key.clone()),
                client_ca_file: Some(pki.client_ca.clone()),
                requestheader_client_ca_file: Some(pki.front_proxy_ca.clone()),
                requestheader_allowed_names: vec!["front-proxy-client".into()],
                authentication_kubeconfig: None,
                authorization_kubeconfig: None,
                authorization_mode: mode,
                cert_reload_interval: Duration::from_millis(200),
                max_series: 1000,
            },
        };
        let mut ca_hints = Vec::new();
        for f in [&pki.client_ca, &pki.front_proxy_ca] {
            ca_hints.extend(tidescale::adapter::tls::read_certs(f).unwrap());
        }
        let trust = TrustSource {
            client_ca_file: Some(pki.client_ca.clone()),
            requestheader_ca_file: Some(pki.front_proxy_ca.clone()),
            allowed_names: vec!["front-proxy-client".into()],
            cluster: None,
        };
        let roots = trust.load().await.unwrap();
        let reloads = Arc::new(ReloadCounts::default());
        let prepared = Prepared {
            security,
            ca_hints,
            pods: None,
            trust: Some((trust, roots)),
            reloads: reloads.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            run_on(&args, listener, prepared, async move {
                let _ = stopped.await;
            })
            .await
            .expect("adapter runs");
        });
        let a = Adapter {
            reloads,
            port,
            pki,
            gauge,
            reviews,
            dir,
            stop: Some(stop),
            task: Some(task),
        };
        a.wait_ready().await;
        a
    }

    pub fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A reqwest client trusting the serving CA, presenting `identity` (cert, key) if given.
    pub fn client(&self, identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
        client_for(&self.pki.serving_ca, identity, false)
    }

    async fn wait_ready(&self) {
        let c = self.client(None);
        for _ in 0..100 {
            if let Ok(r) = c.get(format!("{}/readyz", self.base())).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("adapter not ready within 10 s");
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("adapter stops")
                .unwrap();
        }
    }
}

/// A reqwest client trusting `ca`; `h2_only` forces HTTP/2 (ALPN).
pub fn client_for(
    ca: &Path,
    identity: Option<&(PathBuf, PathBuf)>,
    h2_only: bool,
) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder().with_root_certificates(roots);
    let mut cfg = match identity {
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
    cfg.alpn_protocols = if h2_only {
        vec![b"h2".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .timeout(Duration::from_secs(10));
    if h2_only {
        builder = builder.http2_prior_knowledge();
    }
    builder.build().unwrap()
}

/// The kubectl binary: `$TIDESCALE_KUBECTL` or `.tools/bin/kubectl`; panics with the fix if absent.
pub fn kubectl() -> PathBuf {
    let p = std::env::var_os("TIDESCALE_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/bin/kubectl"));
    assert!(
        p.is_file(),
        "kubectl not found at {}: run scripts/install-kubectl.sh (or set TIDESCALE_KUBECTL)",
        p.display()
    );
    p
}

/// The Python interpreter of `.tools/venv` (python-kubernetes 37); panics with the fix if absent.
pub fn venv_python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    assert!(
        p.is_file(),
        "python venv not found at {}: run scripts/install-kubectl.sh",
        p.display()
    );
    p
}

/// Runs kubectl against the adapter with an isolated KUBECONFIG/KUBECACHEDIR; returns
/// (success, stdout, stderr).
pub async fn run_kubectl(a: &Adapter, creds: &[String], args: &[&str]) -> (bool, String, String) {
    let work = a.dir.path().join("kube");
    std::fs::create_dir_all(&work).unwrap();
    let mut cmd = tokio::process::Command::new(kubectl());
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &work)
        .env("KUBECONFIG", work.join("kubeconfig"))
        .env("KUBECACHEDIR", work.join("cache"))
        .arg(format!("--server={}", a.base()))
        .arg(format!(
            "--certificate-authority={}",
            a.pki.serving_ca.display()
        ))
        .arg("--request-timeout=20s")
        .args(creds)
        .args(args);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("kubectl finishes")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// kubectl credentials of user `jane` (client certificate).
pub fn jane_creds(a: &Adapter) -> Vec<String> {
    vec![
        format!("--client-certificate={}", a.pki.jane.0.display()),
        format!("--client-key={}", a.pki.jane.1.display()),
    ]
}

/// The `tidescale` binary as `adapter --config cfg --insecure-dev-mode` on a free loopback port,
/// with `extra` arguments: the child (stderr piped, killed on drop), its port, and a client
/// that accepts the self-signed certificate it serves.
pub fn spawn_dev_adapter(
    cfg: &Path,
    extra: &[&std::ffi::OsStr],
) -> (tokio::process::Child, u16, reqwest::Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .args(["adapter", "--config"])
        .arg(cfg)
        .args(extra)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--insecure-dev-mode",
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    (child, port, client)
}
