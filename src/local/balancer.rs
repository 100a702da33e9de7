//! A local HTTP load balancer in front of a process pool: round-robin, least-connections and
//! ip-hash, health-aware, with one retry of idempotent requests on a refused connection.
//!
//! The set of backends comes from a `watch` channel the pool publishes: a process appears in it
//! only once it is ready and leaves it before it is told to stop, so the balancer never has to
//! guess which backends are draining.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{self, Instant};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::sync::watch;

/// Largest request body the balancer buffers (bodies are buffered so a retry can resend them).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// How long a backend that refused a connection is skipped.
pub const EJECTION: Duration = Duration::from_secs(1);

/// One backend: the balancer routes to the endpoints the pool publishes.
pub use crate::target::Endpoint as Backend;

/// How the balancer picks a backend.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Each backend in turn.
    RoundRobin,
    /// The backend with the fewest requests in flight.
    LeastConnections,
    /// Consistent (rendezvous) hashing on the client address: a client keeps its backend, and
    /// a pool change moves only the clients of the backends that came or went.
    IpHash,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    backend: String,
    outcome: &'static str,
}

/// The balancer's own metrics.
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    requests: Family<ResultLabels, Counter>,
    in_flight: Family<BackendLabels, Gauge>,
    retries: Counter,
    unavailable: Counter,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("balancer");
        let requests = Family::<ResultLabels, Counter>::default();
        let in_flight = Family::<BackendLabels, Gauge>::default();
        let retries = Counter::default();
        let unavailable = Counter::default();
        registry.register(
            "requests",
            "Requests proxied, by backend and outcome (2xx, 3xx, 4xx, 5xx, refused, error)",
            requests.clone(),
        );
        registry.register(
            "in_flight",
            "Requests in flight, by backend",
            in_flight.clone(),
        );
        registry.register(
            "retries",
            "Idempotent requests retried on another backend",
            retries.clone(),
        );
        registry.register(
            "unavailable",
            "Requests answered 503 because no backend was available",
            unavailable.clone(),
        );
        Self {
            registry,
            requests,
            in_flight,
            retries,
            unavailable,
        }
    }
}

/// The balancer: picks a backend per request and proxies to it.
#[derive(Debug)]
pub struct Balancer {
    strategy: Strategy,
    next: AtomicUsize,
    /// Per-backend state by id, made on first use, so the request path does no lookups by
    /// label and no string formatting.
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    /// The slots of the pool as last published, with the receiver that tells when it changes:
    /// a request takes one reference count, not a map lookup per backend.
    current: Mutex<Current>,
    metrics: Metrics,
}

/// What the balancer keeps per backend.
#[derive(Debug)]
struct Slot {
    backend: Backend,
    /// `host:port`, the `Host` header of the requests sent to it.
    host: HeaderValue,
    /// Its kept-alive connections.
    upstream: Arc<upstream::Upstream>,
    in_flight: AtomicUsize,
    in_flight_gauge: Gauge,
    /// Until when it is skipped after refusing a connection.
    ejected_until: Mutex<Option<Instant>>,
    /// Set while `ejected_until` may be in the future: a request checks this, and reads the
    /// clock and the lock only when it is set.
    ejected: AtomicBool,
    /// Request counters by outcome, in the order of [`OUTCOMES`].
    outcomes: [Counter; 6],
}

/// Outcomes counted per backend.
const OUTCOMES: [&str; 6] = ["2xx", "3xx", "4xx", "5xx", "refused", "error"];

impl Slot {
    fn is_ejected(&self, now: Instant) -> bool {
        let mut until = self.ejected_until.lock().expect("ejection poisoned");
        if until.is_some_and(|until| until > now) {
            return true;
        }
        *until = None;
        self.ejected.store(false, Ordering::Relaxed);
        false
    }

    fn eject(&self, now: Instant) {
        *self.ejected_until.lock().expect("ejection poisoned") = Some(now + EJECTION);
        self.ejected.store(true, Ordering::Relaxed);
    }

    fn count(&self, outcome: &'static str) {
        if let Some(i) = OUTCOMES.iter().position(|o| *o == outcome) {
            self.outcomes[i].inc();
        }
    }
}

/// The slots of the pool as last published.
#[derive(Debug)]
struct Current {
    backends: watch::Receiver<Vec<Backend>>,
    slots: Arc<[Arc<Slot>]>,
}

/// Why a pick found nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoBackend;

impl Balancer {
    /// A balancer over the backends published on `backends`.
    pub fn new(strategy: Strategy, backends: watch::Receiver<Vec<Backend>>) -> Arc<Self> {
        let mut backends = backends;
        let first = backends.borrow_and_update().clone();
        let balancer = Self {
            strategy,
            next: AtomicUsize::new(0),
            slots: Mutex::new(HashMap::new()),
            current: Mutex::new(Current {
                backends,
                slots: Arc::from(Vec::new()),
            }),
            metrics: Metrics::new(),
        };
        let slots = balancer.slots_of(&first);
        balancer.current.lock().expect("current poisoned").slots = slots;
        Arc::new(balancer)
    }

    /// The slots of the pool as published now; remade only when the pool published a change.
    fn current_slots(&self) -> Arc<[Arc<Slot>]> {
        let mut current = self.current.lock().expect("current poisoned");
        if current.backends.has_changed().unwrap_or(false) {
            let backends = current.backends.borrow_and_update().clone();
            current.slots = self.slots_of(&backends);
        }
        current.slots.clone()
    }

    /// The slots of `backends`, made on first sight.
    fn slots_of(&self, backends: &[Backend]) -> Arc<[Arc<Slot>]> {
        let mut slots = self.slots.lock().expect("slot map poisoned");
        backends
            .iter()
            .map(|b| match slots.get(&b.id) {
                Some(slot) if slot.backend.addr == b.addr => slot.clone(),
                _ => {
                    let slot = Arc::new(self.new_slot(b));
                    slots.insert(b.id.clone(), slot.clone());
                    slot
                }
            })
            .collect()
    }

    fn new_slot(&self, b: &Backend) -> Slot {
        let counter = |outcome: &'static str| {
            self.metrics
                .requests
                .get_or_create(&ResultLabels {
                    backend: b.id.clone(),
                    outcome,
                })
                .clone()
        };
        Slot {
            backend: b.clone(),
            host: HeaderValue::try_from(b.addr.to_string())
                .expect("a socket address is a valid header value"),
            upstream: upstream::Upstream::new(b.addr),
            in_flight: AtomicUsize::new(0),
            in_flight_gauge: self
                .metrics
                .in_flight
                .get_or_create(&BackendLabels {
                    backend: b.id.clone(),
                })
                .clone(),
            ejected_until: Mutex::new(None),
            ejected: AtomicBool::new(false),
            outcomes: OUTCOMES.map(counter),
        }
    }

    /// Picks a backend for a client, skipping `exclude` and (unless all are) ejected backends.
    pub fn pick(&self, client: IpAddr, exclude: Option<&str>) -> Result<Backend, NoBackend> {
        self.pick_slot(client, exclude)
            .map(|slot| slot.backend.clone())
    }

    fn pick_slot(&self, client: IpAddr, exclude: Option<&str>) -> Result<Arc<Slot>, NoBackend> {
        let slots = self.current_slots();
        // The clock only when some backend was ejected: the common request reads no time.
        let now = slots
            .iter()
            .any(|s| s.ejected.load(Ordering::Relaxed))
            .then(clock::now);
        let usable = |s: &Slot| Some(s.backend.id.as_str()) != exclude;
        let healthy = |s: &Slot| usable(s) && now.is_none_or(|now| !s.is_ejected(now));
        let chosen = match slots.iter().filter(|s| healthy(s)).count() {
            0 => match slots.iter().filter(|s| usable(s)).count() {
                0 => return Err(NoBackend),
                n => self.choose(&slots, n, client, &usable),
            },
            n => self.choose(&slots, n, client, &healthy),
        };
        Ok(chosen.clone())
    }

    /// One of the `n` slots that `keep` accepts, by the strategy.
    fn choose<'s>(
        &self,
        slots: &'s [Arc<Slot>],
        n: usize,
        client: IpAddr,
        keep: &dyn Fn(&Slot) -> bool,
    ) -> &'s Arc<Slot> {
        let mut kept = slots.iter().filter(|s| keep(s));
        let chosen = match self.strategy {
            Strategy::RoundRobin => kept.nth(self.next.fetch_add(1, Ordering::Relaxed) % n),
            Strategy::LeastConnections => {
                // Start the scan at a rotating offset so ties spread instead of piling onto the first.
                let offset = self.next.fetch_add(1, Ordering::Relaxed);
                let len = slots.len();
                (0..len)
                    .map(|i| &slots[(offset + i) % len])
                    .filter(|s| keep(s))
                    .min_by_key(|s| s.in_flight.load(Ordering::Relaxed))
            }
            Strategy::IpHash => kept.max_by_key(|s| rendezvous(client, &s.backend.id)),
        };
        chosen.expect("n > 0 slots are kept")
    }

    /// The balancer's metrics in the classic text format.
    pub fn encode_metrics(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry)
            .expect("writing to a String cannot fail");
        out
    }

    async fn forward(
        &self,
        slot: &Slot,
        parts: &RequestParts,
        body: Bytes,
    ) -> Result<Response, Failure> {
        let req = upstream::Outgoing {
            method: &parts.method,
            path: &parts.path_and_query,
            host: &slot.host,
            headers: &parts.headers,
            body,
        };
        let guard = InFlight::enter(slot);
        let result = slot.upstream.send(&req).await;
        drop(guard);
        match result {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            Err(upstream::SendError::Refused(e)) => Err(Failure::Refused(e)),
            Err(upstream::SendError::Failed(e)) => Err(Failure::Other(e)),
        }
    }
}

/// Counts a request in flight on a backend until dropped (also when the client goes away).
struct InFlight<'a>(&'a Slot);

impl<'a> InFlight<'a> {
    fn enter(slot: &'a Slot) -> Self {
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        slot.in_flight_gauge.inc();
        Self(slot)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.in_flight_gauge.dec();
    }
}

/// Rendezvous (highest random weight) score of a client on a backend.
fn rendezvous(client: IpAddr, backend: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    client.hash(&mut h);
    backend.hash(&mut h);
    // A final mix so that backends with similar ids do not get correlated scores.
    let mut x = h.finish();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

enum Failure {
    Refused(String),
    Other(String),
}

struct RequestParts {
    method: Method,
    path_and_query: PathAndQuery,
    headers: HeaderMap,
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn error_response(status: StatusCode, error: &str, detail: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "detail": detail})),
    )
        .into_response()
}

/// What is sent to a backend: the client's method, path and headers, less hop-by-hop headers
/// and `Host`, with the client added to `X-Forwarded-For`.
fn forwarded_request(parts: http::request::Parts, peer: SocketAddr) -> RequestParts {
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    headers.remove(header::HOST);
    RequestParts {
        method: parts.method,
        path_and_query: parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
        headers,
    }
}

/// Proxies one request from `peer` to a backend.
async fn proxy(balancer: &Balancer, peer: SocketAddr, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
                &e.to_string(),
            );
        }
    };
    let request = forwarded_request(parts, peer);
    let first = match balancer.pick_slot(peer.ip(), None) {
        Ok(b) => b,
        Err(NoBackend) => {
            balancer.metrics.unavailable.inc();
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no backend available",
                "the pool has no ready member",
            );
        }
    };
    let refused = match balancer.forward(&first, &request, body.clone()).await {
        Ok(resp) => {
            first.count(outcome_of(resp.status()));
            return resp;
        }
        Err(Failure::Other(e)) => {
            first.count("error");
            return error_response(StatusCode::BAD_GATEWAY, "backend failed", &e);
        }
        Err(Failure::Refused(e)) => e,
    };
    first.count("refused");
    first.eject(clock::now());
    if !is_idempotent(&request.method) {
        return error_response(
            StatusCode::BAD_GATEWAY,
            "backend refused the connection",
            &refused,
        );
    }
    let Ok(second) = balancer.pick_slot(peer.ip(), Some(&first.backend.id)) else {
        return error_response(
            StatusCode::BAD_GATEWAY,
            "backend refused the connection",
            &refused,
        );
    };
    balancer.metrics.retries.inc();
    match balancer.forward(&second, &request, body).await {
        Ok(resp) => {
            second.count(outcome_of(resp.status()));
            resp
        }
        Err(Failure::Refused(e)) => {
            second.count("refused");
            second.eject(clock::now());
            error_response(
                StatusCode::BAD_GATEWAY,
                "backends refused the connection",
                &e,
            )
        }
        Err(Failure::Other(e)) => {
            second.count("error");
            error_response(StatusCode::BAD_GATEWAY, "backend failed", &e)
        }
    }
}

/// The balancer's own metrics, as served on its `/metrics`.
fn own_metrics(balancer: &Balancer) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        balancer.encode_metrics(),
    )
        .into_response()
}

/// The balancer's HTTP surface: its own `GET /metrics`, everything else proxied.
async fn handle(balancer: &Balancer, peer: SocketAddr, req: Request) -> Response {
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        return own_metrics(balancer);
    }
    proxy(balancer, peer, req).await
}

pub use server::serve;

mod server;
#[cfg(test)]
mod tests;
mod upstream;
