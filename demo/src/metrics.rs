//! The service's own Prometheus metrics, served as OpenMetrics or the classic text format.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::clock;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets from 1 ms to 10 s: fine where services usually answer, coarse in the tail.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Labels of one request: method, route template (never a raw key) and status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method (unknown methods are counted as `OTHER`).
    pub method: &'static str,
    /// The matched route template, e.g. `/kv/{*key}`, or `unmatched`.
    pub route: String,
    /// The response status code.
    pub status: u16,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The matched route template.
    pub route: String,
}

/// Labels of a failed store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOpLabels {
    /// The operation: `get`, `put`, `delete`, `hit` or `ping`.
    pub op: &'static str,
}

/// Every metric the service exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
    store_errors: Family<StoreOpLabels, Counter>,
    /// Worker slots busy in `/work` (see [`crate::workers`]).
    pub workers_busy: Gauge,
    /// Requests waiting for a worker slot.
    pub work_queue: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with all families registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(LATENCY_BUCKETS)) as fn() -> Histogram,
        );
        let in_flight = Gauge::default();
        let workers_busy = Gauge::default();
        let work_queue = Gauge::default();
        let store_errors = Family::<StoreOpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests served, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request received to response headers sent, by route",
            latency.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        registry.register(
            "workers_busy",
            "Worker slots held by /work requests",
            workers_busy.clone(),
        );
        registry.register(
            "work_queue_length",
            "Requests waiting for a worker slot",
            work_queue.clone(),
        );
        registry.register(
            "store_errors",
            "Store (Redis) operations that failed, by operation",
            store_errors.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            requests,
            latency,
            in_flight,
            store_errors,
            workers_busy,
            work_queue,
        }
    }

    /// Counts one failed store operation `op`.
    pub fn store_error(&self, op: &'static str) {
        self.store_errors.get_or_create(&StoreOpLabels { op }).inc();
    }

    /// OpenMetrics text, as prometheus-client writes it (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The classic text format 0.0.4 that `promtool check metrics` and plain scrapers expect.
    pub fn encode_text(&self) -> String {
        openmetrics_to_text(&self.encode_openmetrics())
    }
}

/// Converts prometheus-client's OpenMetrics output to the classic text format 0.0.4.
///
/// The two differ, for what we emit, only in counter family names (OpenMetrics names the family
/// `x` and its sample `x_total`; the classic format names both `x_total`), the `# UNIT` lines and
/// the `# EOF` terminator.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("HELP", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("TYPE", r)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let tail = if kind == "TYPE" && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                if counters.contains(name) {
                    let _ = writeln!(out, "# {kind} {name}_total {tail}");
                } else {
                    let _ = writeln!(out, "# {kind} {name} {tail}");
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Serves `/metrics`: OpenMetrics when the scraper asks for it, the classic format otherwise.
pub async fn serve_metrics(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if wants_openmetrics {
        (metrics.encode_openmetrics(), OPENMETRICS_CONTENT_TYPE)
    } else {
        (metrics.encode_text(), TEXT_CONTENT_TYPE)
    };
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        // Arbitrary methods would make the label set unbounded.
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge even when the client goes away mid-request.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Layer that counts every request by method, route template and status, and times it.
///
/// A plain tower layer rather than `axum::middleware::from_fn`: `from_fn` clones the whole inner
/// service stack and boxes it on every request, which on `GET /kv/{key}` cost more than the
/// counting itself.
#[derive(Clone)]
pub struct TrackLayer {
    metrics: Arc<Metrics>,
}

impl TrackLayer {
    /// Counts into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service of [`TrackLayer`].
#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let started = clock::now();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "unmatched".to_string());
        let method = method_label(req.method());
        let metrics = self.metrics.clone();
        metrics.in_flight.inc();
        let guard = InFlight(metrics.in_flight.clone());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            drop(guard);
            let status = response.status().as_u16();
            metrics
                .latency
                .get_or_create(&RouteLabels {
                    route: route.clone(),
                })
                .observe(clock::since(started).as_secs_f64());
            metrics
                .requests
                .get_or_create(&RequestLabels {
                    method,
                    route,
                    status,
                })
                .inc();
            Ok(response)
        })
    }
}

/// Process CPU time and resident memory, read from `/proc/self` at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = process_cpu_seconds() {
            let counter = ConstCounter::new(cpu);
            let metric = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        if let Some(rss) = process_resident_bytes() {
            let gauge = ConstGauge::new(rss);
            let metric = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// utime + stime of this process, in seconds (USER_HZ is 100 on every Linux we run on).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn process_resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_renames_counter_families_and_drops_eof() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                method: "GET",
                route: "/kv/{*key}".into(),
                status: 200,
            })
            .inc();
        let om = m.encode_openmetrics();
        assert!(om.contains("# TYPE http_requests counter"));
        assert!(om.trim_end().ends_with("# EOF"));
        let text = m.encode_text();
        assert!(
            text.contains("# TYPE http_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("# HELP http_requests_total HTTP requests served"));
        assert!(
            text.contains(r#"http_requests_total{method="GET",route="/kv/{*key}",status="200"} 1"#)
        );
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(text.contains("process_resident_memory_bytes "));
    }

    #[test]
    fn process_figures_are_read() {
        assert!(process_cpu_seconds().unwrap() >= 0.0);
        assert!(process_resident_bytes().unwrap() > 1024 * 1024);
    }
}
