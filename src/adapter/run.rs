//! `tidescale adapter`: flags, wiring of config, refresher, security and TLS server.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::net::TcpListener;

use crate::store::SampleStore;

use super::auth::{
    AccessReviewer, Authenticator, Authorizer, AuthzMode, CertificateAuth, RequestHeaderAuth,
    TokenReviewer,
};
use super::config::AdapterConfig;
use super::kube_auth::KubeReviewer;
use super::objects::{KubePodLister, PodLister};
use super::tls::{CertSource, ServerTls, verifier_for};
use super::trust::{TrustRoots, TrustSource};
use super::{AdapterState, Security, refresh, router};
use rustls::pki_types::CertificateDer;

/// How requests are authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthorizationMode {
    /// SubjectAccessReview against the cluster (default).
    #[value(name = "Webhook")]
    Webhook,
    /// Allow every authenticated request (local runs and tests).
    #[value(name = "AlwaysAllow")]
    AlwaysAllow,
}

/// Arguments of `tidescale adapter` (Kubernetes' own aggregated-server flag names).
#[derive(Debug, Clone, Args)]
pub struct AdapterArgs {
    /// The adapter config file (externalMetrics, customMetrics).
    #[arg(long)]
    pub config: PathBuf,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub listen: SocketAddr,
    /// Kubeconfig for reading pods (`labelSelector` on pods metrics); default: in-cluster
    /// config when available, else the configured `objectLabels` are matched.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Turn authentication AND authorization off. Local development only; never the default.
    #[arg(long)]
    pub insecure_dev_mode: bool,
    /// TLS, authentication, authorization and limits.
    #[command(flatten)]
    pub security: AdapterSecurity,
}

/// The adapter's TLS, authentication and authorization flags and its series limit, shared by
/// `tidescale adapter` and `tidescale run --adapter-config`.
#[derive(Debug, Clone, Args)]
pub struct AdapterSecurity {
    /// Serving certificate (PEM); with --tls-private-key-file. Default: self-signed.
    #[arg(long, requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that signs ordinary client certificates (user = CN, groups = O).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// CA bundle that signs the front proxy's client certificate.
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed for the front proxy's certificate (empty: any the CA signed).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Kubeconfig for TokenReview; default: in-cluster config when available.
    #[arg(long)]
    pub authentication_kubeconfig: Option<PathBuf>,
    /// Kubeconfig for SubjectAccessReview; default: in-cluster config when available.
    #[arg(long)]
    pub authorization_kubeconfig: Option<PathBuf>,
    /// Webhook (SubjectAccessReview) or AlwaysAllow.
    #[arg(long, value_enum, default_value = "Webhook")]
    pub authorization_mode: AuthorizationMode,
    /// How often the serving certificate files, the client CA files and the
    /// `extension-apiserver-authentication` ConfigMap (when used) are checked for changes.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub cert_reload_interval: Duration,
    /// Upper bound on metrics held in memory.
    #[arg(long, default_value_t = 100_000)]
    pub max_series: usize,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<crate::metric::DurationSpec>()
        .map(|d| d.get())
        .map_err(|e| e.to_string())
}

/// Why the adapter could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad config file.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// Bad TLS material.
    #[error(transparent)]
    Tls(#[from] super::tls::TlsError),
    /// The refresher could not start.
    #[error(transparent)]
    Refresh(#[from] refresh::RefreshError),
    /// The Kubernetes client could not be built.
    #[error("kubernetes client: {0}")]
    Kube(String),
    /// The trust roots could not be read.
    #[error(transparent)]
    Trust(#[from] super::trust::TrustError),
    /// Binding or serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

async fn kube_client(path: Option<&PathBuf>) -> Result<Option<kube::Client>, RunError> {
    let config = match path {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p)
                .map_err(|e| RunError::Kube(format!("{}: {e}", p.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| RunError::Kube(e.to_string()))?
        }
        None => match kube::Config::incluster() {
            Ok(c) => c,
            Err(_) => return Ok(None),
        },
    };
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|e| RunError::Kube(e.to_string()))
}

/// Security settings, the CA certificates to advertise in the TLS handshake, and where pods
/// come from ([`security`] leaves that to [`pod_lister`]).
pub struct Prepared {
    /// Authentication and authorization.
    pub security: Security,
    /// The client and requestheader CA certificates.
    pub ca_hints: Vec<CertificateDer<'static>>,
    /// Where the pods a `labelSelector` selects come from; `None`: the configured `objectLabels`.
    pub pods: Option<Arc<dyn PodLister>>,
    /// Where the trust roots came from and what they were, to follow rotations; `None`: never
    /// re-read (no authentication).
    pub trust: Option<(TrustSource, TrustRoots)>,
    /// What the trust watcher saw on each re-read (tests wait on these instead of sleeping).
    pub reloads: Arc<ReloadCounts>,
}

/// Counts of the trust roots' re-reads, by outcome.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    /// Re-reads that found the bundles unchanged.
    pub unchanged: std::sync::atomic::AtomicU64,
    /// Re-reads whose new bundles are now in use.
    pub applied: std::sync::atomic::AtomicU64,
    /// Re-reads that failed or found unusable bundles (the old ones stay in use).
    pub rejected: std::sync::atomic::AtomicU64,
}

impl ReloadCounts {
    fn count(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Builds the security settings from the flags; CA bundles not given as files are read from
/// the `extension-apiserver-authentication` ConfigMap when a cluster is reachable.
pub async fn security(args: &AdapterArgs) -> Result<Prepared, RunError> {
    if args.insecure_dev_mode {
        tracing::warn!(
            "--insecure-dev-mode: AUTHENTICATION AND AUTHORIZATION ARE OFF; anyone who can connect reads every metric"
        );
        return Ok(Prepared {
            security: Security::Off,
            ca_hints: vec![],
            pods: None,
            trust: None,
            reloads: Arc::default(),
        });
    }
    let authn_client = kube_client(args.security.authentication_kubeconfig.as_ref()).await?;
    let trust = TrustSource {
        client_ca_file: args.security.client_ca_file.clone(),
        requestheader_ca_file: args.security.requestheader_client_ca_file.clone(),
        allowed_names: args.security.requestheader_allowed_names.clone(),
        // The ConfigMap only fills in what the flags leave out.
        cluster: match (
            &args.security.client_ca_file,
            &args.security.requestheader_client_ca_file,
        ) {
            (Some(_), Some(_)) => None,
            _ => authn_client.clone(),
        },
    };
    let roots: TrustRoots = trust.load().await?;
    let CertificateAuth {
        request_header,
        client_ca,
    } = certificate_auth(&roots)?;
    let tokens = authn_client.map(|c| Arc::new(KubeReviewer::new(c)) as Arc<dyn TokenReviewer>);
    if tokens.is_none() {
        tracing::info!("no cluster for TokenReview: bearer tokens will be refused");
    }
    let authz = match args.security.authorization_mode {
        AuthorizationMode::AlwaysAllow => AuthzMode::AlwaysAllow,
        AuthorizationMode::Webhook => {
            let client = kube_client(args.security.authorization_kubeconfig.as_ref()).await?.ok_or_else(|| {
                RunError::Kube("--authorization-mode Webhook needs --authorization-kubeconfig or an in-cluster config".into())
            })?;
            AuthzMode::Webhook(Arc::new(KubeReviewer::new(client)) as Arc<dyn AccessReviewer>)
        }
    };
    Ok(Prepared {
        security: Security::Checked {
            authn: Authenticator::new(request_header, client_ca, tokens),
            authz: Authorizer::new(authz),
        },
        ca_hints: ca_hints(&roots),
        pods: None,
        trust: Some((trust, roots)),
        reloads: Arc::default(),
    })
}

/// The CA certificates to advertise in the TLS handshake.
fn ca_hints(roots: &TrustRoots) -> Vec<CertificateDer<'static>> {
    roots
        .client_ca
        .iter()
        .chain(&roots.requestheader_ca)
        .flatten()
        .cloned()
        .collect()
}

/// Front-proxy and client-certificate verification for `roots`.
pub fn certificate_auth(roots: &TrustRoots) -> Result<CertificateAuth, RunError> {
    let request_header = match &roots.requestheader_ca {
        Some(cas) => Some(RequestHeaderAuth {
            verifier: verifier_for(cas, "requestheader client CA")?,
            allowed_names: roots.allowed_names.clone(),
        }),
        None => None,
    };
    let client_ca = roots
        .client_ca
        .as_deref()
        .map(|c| verifier_for(c, "client CA"))
        .transpose()?;
    Ok(CertificateAuth {
        request_header,
        client_ca,
    })
}

/// Re-reads the trust roots every `every` until `shutdown` and puts changed ones in place:
/// the authenticator's verifiers and the issuers the TLS handshake advertises. A failed read
/// or a broken bundle keeps the roots in use (and says so in the log).
pub async fn watch_trust(
    source: TrustSource,
    mut current: TrustRoots,
    state: Arc<AdapterState>,
    tls: Arc<ServerTls>,
    every: Duration,
    reloads: Arc<ReloadCounts>,
    shutdown: impl Future<Output = ()>,
) {
    let Security::Checked { authn, .. } = &state.security else {
        return;
    };
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut shutdown => return,
        }
        let roots = match source.load().await {
            Ok(r) if r == current => {
                ReloadCounts::count(&reloads.unchanged);
                continue;
            }
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the client CA bundles; keeping the ones in use");
                ReloadCounts::count(&reloads.rejected);
                continue;
            }
        };
        let applied = certificate_auth(&roots).and_then(|certs| {
            tls.set_ca_hints(&ca_hints(&roots))?;
            authn.replace_certificates(certs);
            Ok(())
        });
        match applied {
            Ok(()) => {
                tracing::info!(
                    client_ca = roots.client_ca.as_ref().map_or(0, Vec::len),
                    requestheader_ca = roots.requestheader_ca.as_ref().map_or(0, Vec::len),
                    allowed_names = ?roots.allowed_names,
                    "client CA bundles changed; now in use"
                );
                current = roots;
                ReloadCounts::count(&reloads.applied);
            }
            Err(e) => {
                tracing::warn!(error = %e, "new client CA bundles are unusable; keeping the ones in use");
                ReloadCounts::count(&reloads.rejected);
            }
        }
    }
}

/// The pod lister for `labelSelector` on per-pod metrics: from `--kubeconfig`, else the
/// in-cluster config, else none (the configured `objectLabels` are matched instead).
pub async fn pod_lister(args: &AdapterArgs) -> Result<Option<Arc<dyn PodLister>>, RunError> {
    match kube_client(args.kubeconfig.as_ref()).await? {
        Some(client) => {
            tracing::info!(
                source = match &args.kubeconfig {
                    Some(p) => p.display().to_string(),
                    None => "in-cluster config".into(),
                },
                "labelSelector on pods metrics selects live pods from the cluster"
            );
            Ok(Some(
                Arc::new(KubePodLister::new(client)) as Arc<dyn PodLister>
            ))
        }
        None => {
            tracing::info!(
                "no cluster (no --kubeconfig, not in a cluster): labelSelector on pods metrics matches the configured objectLabels"
            );
            Ok(None)
        }
    }
}

/// The serving certificate: the files given, or a self-signed one for local use.
fn cert_source(args: &AdapterArgs) -> CertSource {
    match (
        &args.security.tls_cert_file,
        &args.security.tls_private_key_file,
    ) {
        (Some(cert), Some(key)) => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            tracing::warn!(
                "no --tls-cert-file given: serving a self-signed certificate for localhost/127.0.0.1"
            );
            CertSource::SelfSigned
        }
    }
}

/// Runs the adapter on `listener` until `shutdown`.
pub async fn run_on(
    args: &AdapterArgs,
    listener: TcpListener,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let Prepared {
        security,
        ca_hints,
        pods,
        trust,
        reloads,
    } = prepared;
    let config = Arc::new(AdapterConfig::load(&args.config)?);
    let tls = ServerTls::new(cert_source(args), &ca_hints)?;
    let store = SampleStore::new(args.security.max_series);
    let ready = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder()
        .build()
        .map_err(|e| RunError::Kube(format!("http client: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let refresher =
        refresh::Refresher::new(&config, &store, http)?.spawn(ready.clone(), stop_rx.clone())?;
    let watcher = tokio::spawn(
        tls.clone()
            .watch(args.security.cert_reload_interval, stopped(stop_rx.clone())),
    );
    let mut state = AdapterState::new(config, store, ready, security);
    if let Some(lister) = pods {
        state = state.with_pod_lister(lister);
    }
    let state = Arc::new(state);
    let trust_watcher = trust.map(|(source, roots)| {
        tokio::spawn(watch_trust(
            source,
            roots,
            state.clone(),
            tls.clone(),
            args.security.cert_reload_interval,
            reloads,
            stopped(stop_rx.clone()),
        ))
    });
    tracing::info!(addr = %listener.local_addr()?, "serving custom.metrics.k8s.io and external.metrics.k8s.io");
    let served = super::tls::serve(
        listener,
        tls,
        router(state),
        shutdown,
        Duration::from_secs(5),
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = watcher.await;
    if let Some(w) = trust_watcher {
        let _ = w.await;
    }
    if tokio::task::spawn_blocking(move || refresher.join())
        .await
        .map(|r| r.is_err())
        .unwrap_or(true)
    {
        tracing::warn!("refresher thread ended abnormally");
    }
    served?;
    Ok(())
}

/// `tidescale adapter`: binds `--listen` and serves until `shutdown`.
pub async fn run(
    args: &AdapterArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let mut prepared = security(args).await?;
    prepared.pods = pod_lister(args).await?;
    let listener = TcpListener::bind(args.listen).await?;
    run_on(args, listener, prepared, shutdown).await
}
