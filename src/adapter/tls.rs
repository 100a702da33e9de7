//! TLS serving: rustls (ring) with ALPN h2 + http/1.1, a client certificate requested but not
//! required (R3.2), the peer's chain handed to each request, and certificate files reloaded
//! when they change.
//!
//! The handshake accepts any client certificate whose handshake signature is valid; whether the
//! chain is trusted is decided per request by the authenticator against the requestheader CA
//! and the client CA separately, so a certificate from an unknown CA yields a 401 `Status`
//! instead of a TLS alert the client cannot read.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::TcpListener;
use tower::ServiceExt;

use super::auth::PeerCertificates;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: String,
        /// What was wrong.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_err(path: &Path, why: impl ToString) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Reads a CA bundle file into a client verifier (chain + clientAuth usage checked by webpki).
pub fn ca_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    verifier_for(&read_certs(path)?, &path.display().to_string())
}

/// A client verifier trusting `cas`; `what` names the bundle in errors.
pub fn verifier_for(
    cas: &[CertificateDer<'static>],
    what: &str,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let err = |e: &dyn std::fmt::Display| TlsError::File {
        path: what.to_string(),
        why: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in cas {
        roots.add(c.clone()).map_err(|e| err(&e))?;
    }
    rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
        .build()
        .map_err(|e| err(&e))
}

/// Requests a client certificate, never requires one, and trusts none by itself.
#[derive(Debug)]
struct RequestAnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
    hints: Vec<DistinguishedName>,
}

impl ClientCertVerifier for RequestAnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum CertSource {
    /// PEM files, re-read when their modification time changes.
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A self-signed certificate for `localhost`/`127.0.0.1`, made at start-up (R3.3).
    SelfSigned,
}

/// The current server configuration; swapped when the files change.
pub struct ServerTls {
    source: CertSource,
    hints: RwLock<Vec<DistinguishedName>>,
    current: RwLock<Arc<ServerConfig>>,
    stamp: RwLock<Option<(SystemTime, SystemTime)>>,
}

fn subjects(cas: &[CertificateDer<'static>]) -> Result<Vec<DistinguishedName>, TlsError> {
    let mut out = Vec::new();
    for c in cas {
        let (_, parsed) = x509_parser::parse_x509_certificate(c.as_ref())
            .map_err(|e| TlsError::Config(format!("CA certificate: {e}")))?;
        out.push(DistinguishedName::from(parsed.subject().as_raw().to_vec()));
    }
    Ok(out)
}

fn mtimes(cert: &Path, key: &Path) -> Option<(SystemTime, SystemTime)> {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Some((m(cert)?, m(key)?))
}

impl ServerTls {
    /// Loads (or generates) the serving certificate. `cas` are the client and requestheader
    /// CA certificates, advertised as acceptable issuers so clients pick the right certificate.
    pub fn new(source: CertSource, cas: &[CertificateDer<'static>]) -> Result<Arc<Self>, TlsError> {
        let hints = subjects(cas)?;
        let (config, stamp) = build(&source, &hints)?;
        Ok(Arc::new(Self {
            source,
            hints: RwLock::new(hints),
            current: RwLock::new(config),
            stamp: RwLock::new(stamp),
        }))
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the files if they changed; `Ok(true)` when a new certificate is in use. A
    /// broken new file keeps the old certificate serving.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let CertSource::Files { cert, key } = &self.source else {
            return Ok(false);
        };
        let now = mtimes(cert, key);
        if now.is_none() || now == *self.stamp.read().unwrap_or_else(|p| p.into_inner()) {
            return Ok(false);
        }
        let hints = self.hints.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (config, stamp) = build(&self.source, &hints)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        *self.stamp.write().unwrap_or_else(|p| p.into_inner()) = stamp;
        Ok(true)
    }

    /// Advertises `cas` as the acceptable client-certificate issuers from the next handshake
    /// on (the trust roots rotated), keeping the serving certificate as it is.
    pub fn set_ca_hints(&self, cas: &[CertificateDer<'static>]) -> Result<(), TlsError> {
        let hints = subjects(cas)?;
        let resolver = self.config().cert_resolver.clone();
        let config = finish(server_builder(&hints)?.with_cert_resolver(resolver));
        *self.hints.write().unwrap_or_else(|p| p.into_inner()) = hints;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    /// Polls the certificate files every `every` until `shutdown`, swapping in changes.
    pub async fn watch(self: Arc<Self>, every: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut shutdown => return,
            }
            match self.reload_if_changed() {
                Ok(true) => tracing::info!("serving certificate reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "serving certificate changed but cannot be loaded; keeping the old one")
                }
            }
        }
    }
}

type Built = (Arc<ServerConfig>, Option<(SystemTime, SystemTime)>);

fn build(source: &CertSource, hints: &[DistinguishedName]) -> Result<Built, TlsError> {
    let (chain, key, stamp) = match source {
        CertSource::Files { cert, key } => {
            let stamp = mtimes(cert, key);
            let chain = read_certs(cert)?;
            let k = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
            (chain, k, stamp)
        }
        CertSource::SelfSigned => {
            let c =
                rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                    .map_err(|e| TlsError::Config(e.to_string()))?;
            let key = PrivateKeyDer::try_from(c.signing_key.serialize_der())
                .map_err(|e| TlsError::Config(e.to_string()))?;
            (vec![c.cert.der().clone()], key, None)
        }
    };
    let config = server_builder(hints)?
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok((finish(config), stamp))
}

/// A server configuration up to its certificate: ring, safe protocol versions, and a client
/// certificate requested (never required) with `hints` as the acceptable issuers.
fn server_builder(
    hints: &[DistinguishedName],
) -> Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    let verifier = Arc::new(RequestAnyClientCert {
        algorithms: provider.signature_verification_algorithms,
        hints: hints.to_vec(),
    });
    Ok(ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier))
}

fn finish(mut config: ServerConfig) -> Arc<ServerConfig> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` over TLS on `listener` until `shutdown`, then lets open connections finish
/// their requests (bounded by `drain`).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let peer = PeerCertificates(Arc::new(
                stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default(),
            ));
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let builder = auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let conn = watcher.watch(conn.into_owned());
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
    Ok(())
}
