//! Delegated authentication (§3.3–§3.5) and authorization (§3.6) of every request.
//!
//! Order: front-proxy certificate (requestheader CA + allowed names → `X-Remote-*` headers),
//! client certificate (client CA → CN/O), bearer token (TokenReview), anonymous. Authorization:
//! always-allowed health paths, `system:masters`, then a SubjectAccessReview, cached 10 s.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::clock::{self, Instant};
use futures::future::BoxFuture;
use http::HeaderMap;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use serde::Serialize;

use super::path::segments;

/// How long TokenReview and SubjectAccessReview answers are reused (R3.11, R3.15).
pub const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 10_000;

/// The TLS peer's certificate chain (end entity first), inserted per connection.
#[derive(Clone, Debug, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

/// Who made a request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct UserInfo {
    /// The user name.
    pub name: String,
    /// The user's uid, if known.
    pub uid: String,
    /// Groups, `system:authenticated` included for authenticated users.
    pub groups: Vec<String>,
    /// Extra attributes.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why authentication or authorization could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A credential was presented and rejected.
    #[error("unauthorized: {0}")]
    Rejected(String),
    /// The review API could not be reached or answered nonsense.
    #[error("review call failed: {0}")]
    Backend(String),
}

/// Checks bearer tokens (TokenReview in a cluster; a fake in tests).
pub trait TokenReviewer: Send + Sync {
    /// `Ok(Some(user))` when the token is valid, `Ok(None)` when it is not.
    fn review(&self, token: &str) -> BoxFuture<'_, Result<Option<UserInfo>, AuthError>>;
}

/// Decides whether a user may do something (SubjectAccessReview in a cluster; a fake in tests).
pub trait AccessReviewer: Send + Sync {
    /// `Ok(true)` when allowed.
    fn review(&self, user: &UserInfo, attrs: &Attributes)
    -> BoxFuture<'_, Result<bool, AuthError>>;
}

/// What a request does, in SubjectAccessReview terms (R3.16).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// A request under `/apis/<group>/<version>/…` with a resource.
    Resource(ResourceAttributes),
    /// Anything else (discovery, `/version`, health).
    NonResource {
        /// The path.
        path: String,
        /// Always `get` here.
        verb: String,
    },
}

/// `resourceAttributes` of a SubjectAccessReview (empty fields omitted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct ResourceAttributes {
    /// The namespace, or empty at cluster scope.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// `get` or `list`.
    pub verb: String,
    /// The API group.
    pub group: String,
    /// The API version.
    pub version: String,
    /// The resource.
    pub resource: String,
    /// The subresource (the metric, for custom metrics).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// The object's name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Derives SAR attributes from the original path with apimachinery's request-info rules.
pub fn attributes(raw_path: &str, watch: bool) -> Attributes {
    let non_resource = || Attributes::NonResource {
        path: raw_path.to_string(),
        verb: "get".into(),
    };
    let Ok(Some(parts)) = segments(raw_path) else {
        return non_resource();
    };
    if parts.len() < 4 || parts[0] != "apis" {
        return non_resource();
    }
    let (group, version) = (parts[1].clone(), parts[2].clone());
    let mut rest: &[String] = &parts[3..];
    let mut namespace = String::new();
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = rest[1].clone();
        if rest.len() > 2 && rest[2] != "status" && rest[2] != "finalize" {
            rest = &rest[2..];
        }
    }
    let name = rest.get(1).cloned().unwrap_or_default();
    let verb = if !name.is_empty() {
        "get"
    } else if watch {
        "watch"
    } else {
        "list"
    };
    Attributes::Resource(ResourceAttributes {
        namespace,
        verb: verb.into(),
        group,
        version,
        resource: rest[0].clone(),
        subresource: rest.get(2).cloned().unwrap_or_default(),
        name,
    })
}

impl Attributes {
    /// The SubjectAccessReview body for `user` (what the kube reviewer POSTs).
    pub fn review_body(&self, user: &UserInfo) -> serde_json::Value {
        let mut spec = serde_json::json!({"user": user.name, "groups": user.groups});
        if !user.uid.is_empty() {
            spec["uid"] = user.uid.clone().into();
        }
        if !user.extra.is_empty() {
            spec["extra"] = serde_json::json!(user.extra);
        }
        match self {
            Attributes::Resource(r) => spec["resourceAttributes"] = serde_json::json!(r),
            Attributes::NonResource { path, verb } => {
                spec["nonResourceAttributes"] = serde_json::json!({"path": path, "verb": verb})
            }
        }
        serde_json::json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
    }

    /// The `Forbidden` message and details of R1.45.
    pub fn forbidden(&self, user: &str) -> (String, Option<super::wire::StatusDetails>) {
        match self {
            Attributes::NonResource { path, verb } => (
                format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
                None,
            ),
            Attributes::Resource(r) => {
                let what = if r.name.is_empty() {
                    format!("{}.{} is forbidden", r.resource, r.group)
                } else {
                    format!("{}.{} \"{}\" is forbidden", r.resource, r.group, r.name)
                };
                let res = if r.subresource.is_empty() {
                    r.resource.clone()
                } else {
                    format!("{}/{}", r.resource, r.subresource)
                };
                let scope = if r.namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace \"{}\"", r.namespace)
                };
                (
                    format!(
                        "{what}: User \"{user}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
                        r.verb, r.group
                    ),
                    Some(super::wire::StatusDetails {
                        name: r.name.clone(),
                        group: r.group.clone(),
                        kind: r.resource.clone(),
                    }),
                )
            }
        }
    }
}

/// The front-proxy trust settings (R3.5, R3.6).
pub struct RequestHeaderAuth {
    /// Verifies the proxy's client certificate against the requestheader CA.
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// Allowed certificate CNs; empty allows any CN the CA signed.
    pub allowed_names: Vec<String>,
}

/// Result of authentication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authn {
    /// A known user.
    User(UserInfo),
    /// No credentials at all.
    Anonymous,
    /// A credential was presented and rejected (401).
    Failed(String),
}

type Cache<V> = Mutex<HashMap<String, (Instant, V)>>;

/// The certificate half of the chain: replaced as a whole when the trust roots change.
#[derive(Default)]
pub struct CertificateAuth {
    /// Front-proxy settings, if a requestheader CA is configured.
    pub request_header: Option<RequestHeaderAuth>,
    /// Verifies ordinary client certificates, if a client CA is configured.
    pub client_ca: Option<Arc<dyn ClientCertVerifier>>,
}

/// The authentication chain.
pub struct Authenticator {
    /// Front-proxy and client-certificate verification; swapped when the CA bundles rotate,
    /// so a request sees either the old set or the new one, never a mix.
    certificates: RwLock<Arc<CertificateAuth>>,
    /// Checks bearer tokens, if a cluster is available.
    pub tokens: Option<Arc<dyn TokenReviewer>>,
    token_cache: Cache<Option<UserInfo>>,
}

fn cn_and_orgs(cert: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let subject = parsed.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let orgs = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

fn verify(v: &dyn ClientCertVerifier, chain: &[CertificateDer<'static>]) -> Result<(), String> {
    let (end, rest) = chain.split_first().ok_or("no certificate")?;
    v.verify_client_cert(end, rest, UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("x509: {e}"))
}

fn add_authenticated(mut groups: Vec<String>) -> Vec<String> {
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    groups
}

fn unescape_extra_key(k: &str) -> String {
    super::path::percent_decode(k)
        .unwrap_or_else(|| k.to_string())
        .to_lowercase()
}

/// Reads the `X-Remote-*` identity (R3.6); `None` when no user header is set.
pub fn remote_user(headers: &HeaderMap) -> Option<UserInfo> {
    let name = headers
        .get_all("x-remote-user")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| !v.is_empty())?
        .to_string();
    let groups = headers
        .get_all("x-remote-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    let uid = headers
        .get("x-remote-uid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        if let Some(key) = k.as_str().strip_prefix("x-remote-extra-")
            && let Ok(v) = v.to_str()
        {
            extra
                .entry(unescape_extra_key(key))
                .or_default()
                .push(v.to_string());
        }
    }
    Some(UserInfo {
        name,
        uid,
        groups: add_authenticated(groups),
        extra,
    })
}

/// Removes every `X-Remote-*` header so nothing downstream trusts an unverified identity.
pub fn strip_remote_headers(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-remote-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn cached<V: Clone>(cache: &Cache<V>, key: &str) -> Option<V> {
    let c = cache.lock().unwrap_or_else(|p| p.into_inner());
    c.get(key)
        .filter(|(at, _)| clock::since(*at) < CACHE_TTL)
        .map(|(_, v)| v.clone())
}

fn remember<V>(cache: &Cache<V>, key: String, v: V) {
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    if c.len() >= CACHE_MAX {
        c.retain(|_, (at, _)| clock::since(*at) < CACHE_TTL);
        if c.len() >= CACHE_MAX {
            c.clear();
        }
    }
    c.insert(key, (clock::now(), v));
}

impl Authenticator {
    /// An authenticator with the given parts (any may be absent).
    pub fn new(
        request_header: Option<RequestHeaderAuth>,
        client_ca: Option<Arc<dyn ClientCertVerifier>>,
        tokens: Option<Arc<dyn TokenReviewer>>,
    ) -> Self {
        Self {
            certificates: RwLock::new(Arc::new(CertificateAuth {
                request_header,
                client_ca,
            })),
            tokens,
            token_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Puts new front-proxy and client-CA verification in place for the requests that follow.
    pub fn replace_certificates(&self, certificates: CertificateAuth) {
        *self.certificates.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certificates);
    }

    fn certificates(&self) -> Arc<CertificateAuth> {
        self.certificates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Authenticates a request; `X-Remote-*` headers are removed whatever the outcome.
    pub async fn authenticate(
        &self,
        headers: &mut HeaderMap,
        peer: Option<&PeerCertificates>,
    ) -> Authn {
        let chain = peer.map(|p| p.0.as_slice()).filter(|c| !c.is_empty());
        let mut errors = Vec::new();
        let certificates = self.certificates();
        if let (Some(rh), Some(chain)) = (&certificates.request_header, chain) {
            match verify(rh.verifier.as_ref(), chain) {
                Ok(()) => {
                    let cn = cn_and_orgs(&chain[0]).map(|(cn, _)| cn).unwrap_or_default();
                    if !rh.allowed_names.is_empty() && !rh.allowed_names.contains(&cn) {
                        errors.push(format!(
                            "x509: subject with cn={cn} is not in the allowed list"
                        ));
                    } else if let Some(user) = remote_user(headers) {
                        strip_remote_headers(headers);
                        return Authn::User(user);
                    }
                }
                Err(e) => errors.push(format!("request-header: {e}")),
            }
        }
        strip_remote_headers(headers);
        if let (Some(ca), Some(chain)) = (&certificates.client_ca, chain) {
            match verify(ca.as_ref(), chain) {
                Ok(()) => match cn_and_orgs(&chain[0]) {
                    Some((cn, orgs)) if !cn.is_empty() => {
                        return Authn::User(UserInfo {
                            name: cn,
                            groups: add_authenticated(orgs),
                            ..Default::default()
                        });
                    }
                    _ => errors.push("x509: client certificate has no common name".into()),
                },
                Err(e) => errors.push(format!("client certificate: {e}")),
            }
        }
        if let Some(token) = bearer(headers) {
            match &self.tokens {
                None => {
                    errors.push("bearer token presented but token review is not configured".into())
                }
                Some(reviewer) => {
                    let result = match cached(&self.token_cache, token) {
                        Some(r) => Ok(r),
                        None => reviewer.review(token).await,
                    };
                    match result {
                        Ok(r) => {
                            remember(&self.token_cache, token.to_string(), r.clone());
                            match r {
                                Some(mut u) => {
                                    u.groups = add_authenticated(u.groups);
                                    return Authn::User(u);
                                }
                                None => errors.push("token rejected by TokenReview".into()),
                            }
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
            }
        }
        if errors.is_empty() {
            Authn::Anonymous
        } else {
            Authn::Failed(errors.join("; "))
        }
    }
}

/// How requests are authorized.
pub enum AuthzMode {
    /// Every authenticated request is allowed (local runs and tests).
    AlwaysAllow,
    /// SubjectAccessReview through `reviewer`, answers cached for [`CACHE_TTL`].
    Webhook(Arc<dyn AccessReviewer>),
}

/// The authorizer.
pub struct Authorizer {
    mode: AuthzMode,
    cache: Cache<bool>,
}

/// Paths allowed without a review (R3.14).
pub fn always_allowed(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/livez")
}

impl Authorizer {
    /// An authorizer in `mode`.
    pub fn new(mode: AuthzMode) -> Self {
        Self {
            mode,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// True when `user` may do `attrs`; a failed review call counts as a denial here (see
    /// [`Authorizer::decide`] for the answer that tells the two apart).
    pub async fn authorize(&self, user: &UserInfo, attrs: &Attributes, path: &str) -> bool {
        self.decide(user, attrs, path).await.unwrap_or(false)
    }

    /// `Ok(allowed)` from the cache or a SubjectAccessReview; `Err` when the review call itself
    /// failed (for example the adapter may not create SubjectAccessReviews). Errors are logged
    /// and not cached.
    pub async fn decide(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
        path: &str,
    ) -> Result<bool, AuthError> {
        if always_allowed(path) || user.groups.iter().any(|g| g == "system:masters") {
            return Ok(true);
        }
        let reviewer = match &self.mode {
            AuthzMode::AlwaysAllow => return Ok(true),
            AuthzMode::Webhook(r) => r,
        };
        let key = format!("{:?}|{:?}", user, attrs);
        if let Some(allowed) = cached(&self.cache, &key) {
            return Ok(allowed);
        }
        match reviewer.review(user, attrs).await {
            Ok(allowed) => {
                remember(&self.cache, key, allowed);
                Ok(allowed)
            }
            Err(e) => {
                tracing::warn!(user = %user.name, error = %e, "SubjectAccessReview failed");
                Err(e)
            }
        }
    }
}

/// A scripted token reviewer: known tokens map to users; counts calls.
#[derive(Default)]
pub struct FakeTokenReviewer {
    /// Token → user.
    pub users: HashMap<String, UserInfo>,
    /// How many reviews were made.
    pub calls: std::sync::atomic::AtomicUsize,
}

impl TokenReviewer for FakeTokenReviewer {
    fn review(&self, token: &str) -> BoxFuture<'_, Result<Option<UserInfo>, AuthError>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = self.users.get(token).cloned();
        Box::pin(async move { Ok(r) })
    }
}

/// A scripted access reviewer: allows the listed user names; counts calls.
#[derive(Default)]
pub struct FakeAccessReviewer {
    /// Users who are allowed everything.
    pub allowed_users: Vec<String>,
    /// How many reviews were made.
    pub calls: std::sync::atomic::AtomicUsize,
}

impl AccessReviewer for FakeAccessReviewer {
    fn review(
        &self,
        user: &UserInfo,
        _attrs: &Attributes,
    ) -> BoxFuture<'_, Result<bool, AuthError>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ok = self.allowed_users.contains(&user.name);
        Box::pin(async move { Ok(ok) })
    }
}

#[cfg(test)]
mod tests;
