//! The custom and external metrics API server (`tidescale adapter`), spec k8s-contracts §1–§3.
//!
//! ```text
//!  TLS accept (tls.rs, peer cert → request extension)
//!    → router(): authenticate → authorize (auth.rs) → route (path.rs)
//!        → discovery bodies (discovery.rs, built once) | metric GETs (metrics.rs, from the store;
//!          pods selected by `labelSelector` from the cluster through objects.rs when it is there)
//!  refresh.rs: one task per configured metric reads its source into the SampleStore
//! ```

pub mod auth;
pub mod config;
pub mod discovery;
pub mod kube_auth;
pub mod memory;
pub mod metrics;
pub mod objects;
pub mod path;
pub mod refresh;
pub mod requests;
pub mod run;
pub mod selector;
pub mod tls;
pub mod trust;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};

use crate::store::SampleStore;

use auth::{Attributes, Authenticator, Authn, Authorizer, PeerCertificates, UserInfo};
use config::AdapterConfig;
use discovery::Discovery;
use metrics::Index;
use objects::PodLister;
use path::{Probe, Route};
use requests::RequestMetrics;
use selector::Selector;
use wire::{CustomVersion, Status};

/// How requests are checked.
pub enum Security {
    /// Authentication and authorization as §3 says.
    Checked {
        /// The authentication chain.
        authn: Authenticator,
        /// The authorizer.
        authz: Authorizer,
    },
    /// No checks at all (`--insecure-dev-mode`): every request is `system:anonymous`, allowed.
    Off,
}

/// Everything a request handler needs; shared by all connections.
pub struct AdapterState {
    /// The parsed config.
    pub config: Arc<AdapterConfig>,
    /// Where the refresher puts readings.
    pub store: SampleStore,
    /// Set once the first metrics arrived (readiness).
    pub ready: Arc<AtomicBool>,
    /// Authentication and authorization.
    pub security: Security,
    /// Live pods for `labelSelector` on per-pod metrics (R1.24); `None` without a cluster,
    /// where the configured `objectLabels` are matched instead.
    pub pods: Option<Arc<dyn PodLister>>,
    /// Requests answered, by group and code, and their latency (served at `/metrics`).
    pub requests: RequestMetrics,
    index: Index,
    discovery: Discovery,
}

impl AdapterState {
    /// State for `config`, reading from `store`.
    pub fn new(
        config: Arc<AdapterConfig>,
        store: SampleStore,
        ready: Arc<AtomicBool>,
        security: Security,
    ) -> Self {
        Self {
            index: Index::new(&config),
            discovery: Discovery::new(&config),
            config,
            store,
            ready,
            security,
            pods: None,
            requests: RequestMetrics::new(),
        }
    }

    /// The same state, selecting pods of per-pod metrics through `lister`.
    pub fn with_pod_lister(mut self, lister: Arc<dyn PodLister>) -> Self {
        self.pods = Some(lister);
        self
    }
}

/// The adapter's HTTP application: every path, JSON to any `Accept` (R1.40).
pub fn router(state: Arc<AdapterState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

fn json(code: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A `Status` as a response with its code.
pub fn status_response(s: &Status) -> Response {
    let code = StatusCode::from_u16(s.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, serde_json::to_vec(s).unwrap_or_default())
}

fn text(code: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Decoded `application/x-www-form-urlencoded` query pairs (`+` is a space, R1.11).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                let s = s.replace('+', " ");
                path::percent_decode(&s).unwrap_or(s)
            };
            (dec(k), dec(v))
        })
        .collect()
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Answers one request and counts it in [`AdapterState::requests`].
async fn handle(State(state): State<Arc<AdapterState>>, req: Request) -> Response {
    let started = crate::clock::now();
    let raw_path = req.uri().path().to_string();
    let response = answer(&state, req).await;
    let seconds = crate::clock::since(started).as_secs_f64();
    state
        .requests
        .observe(&raw_path, response.status().as_u16(), seconds);
    response
}

async fn answer(state: &AdapterState, mut req: Request) -> Response {
    let raw_path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let pairs = query_pairs(&query);
    let mut user_name = String::new();
    if let Security::Checked { authn, authz } = &state.security {
        let peer = req.extensions().get::<PeerCertificates>().cloned();
        let user = match authn.authenticate(req.headers_mut(), peer.as_ref()).await {
            Authn::User(u) => u,
            Authn::Anonymous if auth::always_allowed(&raw_path) => UserInfo {
                name: "system:anonymous".into(),
                groups: vec!["system:unauthenticated".into()],
                ..Default::default()
            },
            Authn::Anonymous => return status_response(&Status::unauthorized()),
            Authn::Failed(why) => {
                tracing::debug!(path = %raw_path, %why, "authentication failed");
                return status_response(&Status::unauthorized());
            }
        };
        let attrs = auth::attributes(&raw_path, param(&pairs, "watch") == Some("true"));
        match authz.decide(&user, &attrs, &raw_path).await {
            Ok(true) => {}
            Ok(false) => return forbidden(&attrs, &user.name),
            // As the reference authorization filter does: when the authorizer cannot decide,
            // the answer is a 500 naming why, not a 403 that would blame the caller's RBAC.
            Err(e) => {
                return status_response(&Status::failure(
                    500,
                    "InternalError",
                    format!("Internal Server Error: {raw_path:?}: {e}"),
                ));
            }
        }
        user_name = user.name;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return status_response(&Status::failure(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource: {}",
                req.method()
            ),
        ));
    }
    if raw_path == "/metrics" {
        let mut r = text(StatusCode::OK, state.requests.encode());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(requests::CONTENT_TYPE),
        );
        return r;
    }
    dispatch(state, &raw_path, &pairs, &user_name).await
}

/// Logs a metric answer at debug level (target `tidescale::adapter::served`): who asked, for
/// what, and the body served, so a test or an operator can line up what a client such as the
/// HPA saw with what it did. The body is the last field, so the line ends with the JSON.
fn served(user: &str, path: &str, pairs: &[(String, String)], body: &[u8]) {
    tracing::debug!(
        target: "tidescale::adapter::served",
        user,
        path,
        query = ?pairs,
        body = %String::from_utf8_lossy(body),
        "served"
    );
}

fn forbidden(attrs: &Attributes, user: &str) -> Response {
    let (message, details) = attrs.forbidden(user);
    let mut s = Status::failure(403, "Forbidden", message);
    s.details = details.map(Box::new);
    status_response(&s)
}

fn selector(pairs: &[(String, String)], name: &str) -> Result<Selector, Status> {
    Selector::parse(param(pairs, name).unwrap_or(""))
        .map_err(|e| Status::bad_request(format!("{name}: {e}")))
}

async fn dispatch(
    state: &AdapterState,
    raw_path: &str,
    pairs: &[(String, String)],
    user: &str,
) -> Response {
    let d = &state.discovery;
    let ok = |b: &Bytes| json(StatusCode::OK, b.clone());
    match path::route(raw_path) {
        Route::Apis => ok(&d.apis),
        Route::Group(g) if g == wire::CUSTOM_GROUP => ok(&d.custom_group),
        Route::Group(_) => ok(&d.external_group),
        Route::CustomDiscovery(CustomVersion::V1beta1) => ok(&d.custom_v1beta1),
        Route::CustomDiscovery(CustomVersion::V1beta2) => ok(&d.custom_v1beta2),
        Route::ExternalDiscovery => ok(&d.external_v1beta1),
        Route::Version => ok(&d.version),
        Route::OpenApi => status_response(&Status::not_found(
            "this server publishes no OpenAPI document",
        )),
        Route::Health(p, check) => health(state, p, check.as_deref(), pairs),
        Route::Invalid => status_response(&Status::bad_request("invalid request path")),
        Route::NotFound => status_response(&Status::not_found(
            "the server could not find the requested resource",
        )),
        Route::External { namespace, metric } => {
            let result = selector(pairs, "labelSelector").and_then(|sel| {
                metrics::external(
                    &state.config,
                    &state.index,
                    &state.store,
                    &namespace,
                    &metric,
                    &sel,
                )
            });
            match result
                .and_then(|l| serde_json::to_vec(&l).map_err(|e| Status::internal(e.to_string())))
            {
                Ok(b) => {
                    served(user, raw_path, pairs, &b);
                    json(StatusCode::OK, b)
                }
                Err(s) => status_response(&s),
            }
        }
        Route::Custom(c) => {
            let result = async {
                let sel = selector(pairs, "labelSelector")?;
                let msel = selector(pairs, "metricLabelSelector")?;
                let live = live_pods(state, &c, &sel).await?;
                metrics::custom(
                    &state.config,
                    &state.index,
                    &state.store,
                    &c,
                    &sel,
                    &msel,
                    live.as_deref(),
                )
            }
            .await;
            match result {
                Ok(b) => {
                    served(user, raw_path, pairs, &b);
                    json(StatusCode::OK, b)
                }
                Err(s) => status_response(&s),
            }
        }
    }
}

/// The pods `sel` selects in the request's namespace, when a lister is configured and the
/// request needs them; a listing failure is a 500 rather than an unfiltered answer.
async fn live_pods(
    state: &AdapterState,
    req: &path::CustomRequest,
    sel: &Selector,
) -> Result<Option<Arc<std::collections::BTreeSet<String>>>, Status> {
    let Some(lister) = &state.pods else {
        return Ok(None);
    };
    if !metrics::wants_live_pods(&state.config, &state.index, req) {
        return Ok(None);
    }
    let namespace = req.namespace.as_deref().unwrap_or_default();
    // The canonical form (sorted requirements) keeps one cache entry per selector.
    let canonical = sel.to_string();
    lister
        .pods(namespace, &canonical)
        .await
        .map(Some)
        .map_err(|e| {
            tracing::warn!(error = %e, "pod list for labelSelector failed");
            Status::internal(format!("cannot select pods for metric {}: {e}", req.metric))
        })
}

/// The name of the readiness check that waits for the first metrics.
pub const METRICS_CHECK: &str = "metrics-loaded";

fn health(
    state: &AdapterState,
    p: Probe,
    only: Option<&str>,
    pairs: &[(String, String)],
) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let mut checks: Vec<(&str, bool)> = vec![("ping", true)];
    if p == Probe::Readyz {
        checks.push((METRICS_CHECK, ready));
    }
    if let Some(one) = only {
        return match checks.iter().find(|(n, _)| *n == one) {
            Some((_, true)) => text(StatusCode::OK, "ok".into()),
            Some((n, false)) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal server error: {n} check failed\n"),
            ),
            None => text(StatusCode::NOT_FOUND, "404 page not found\n".into()),
        };
    }
    let excluded: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "exclude")
        .map(|(_, v)| v.as_str())
        .collect();
    let verbose = pairs.iter().any(|(k, _)| k == "verbose");
    let mut lines = String::new();
    let mut failed = false;
    for (name, ok) in &checks {
        if excluded.contains(name) {
            lines += &format!("[+]{name} excluded: ok\n");
        } else if *ok {
            lines += &format!("[+]{name} ok\n");
        } else {
            failed = true;
            lines += &format!("[-]{name} failed: reason withheld\n");
        }
    }
    if failed {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{lines}{} check failed\n", p.name()),
        );
    }
    if verbose {
        text(
            StatusCode::OK,
            format!("{lines}{} check passed\n", p.name()),
        )
    } else {
        text(StatusCode::OK, "ok".into())
    }
}

#[cfg(test)]
mod pod_selection_tests;
#[cfg(test)]
mod tests;
