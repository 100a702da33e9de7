//! The `scrape` source: read each pod's own `/metrics` page, no Prometheus needed.
//!
//! Every read fetches all endpoints concurrently (each with its own timeout), keeps the selected
//! series in a short per-endpoint history, and computes a gauge per pod, a counter rate per pod, or
//! a histogram quantile over buckets merged across pods — with Prometheus's arithmetic
//! ([`math`]). A pod that stops answering is left out of the reading (and listed in `failed`), a
//! pod no longer among the endpoints is forgotten, and a restarted pod's counters count as resets.

pub mod fetch;
pub mod history;
pub mod math;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use crate::clock::{self, Instant};
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::metric::{DurationSpec, MetricId, Reading};
use crate::source::exposition::{ExpoSample, ExpositionParser, TextParser, in_family};
use crate::source::{
    Aggregate, BuildContext, MetricSource, PodAddress, Reduce, ScrapeConfig, SourceError,
};

pub use history::{EndpointHistory, Selected};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default largest page read (Prometheus has no default limit; we want one).
pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Where the endpoints come from.
#[derive(Debug)]
enum Endpoints {
    /// A fixed list of `(name, url)`.
    Static(Vec<(String, String)>),
    /// The target's pods, kept current by someone else.
    Pods(watch::Receiver<Vec<PodAddress>>),
}

/// Reads one metric from every endpoint's exposition page.
pub struct ScrapeSource {
    id: MetricId,
    cfg: ScrapeConfig,
    http: reqwest::Client,
    endpoints: Endpoints,
    timeout: Duration,
    max_bytes: usize,
    parser: Box<dyn ExpositionParser>,
    clock: Clock,
    history: Mutex<HashMap<String, EndpointHistory>>,
}

impl std::fmt::Debug for ScrapeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScrapeSource")
            .field("id", &self.id)
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl ScrapeSource {
    /// A scrape source for `cfg`: its static `endpoints`, or else the context's pods.
    pub fn new(cfg: ScrapeConfig, ctx: &BuildContext) -> Result<Self, SourceError> {
        let endpoints = if !cfg.endpoints.is_empty() {
            let mut list = Vec::new();
            for url in &cfg.endpoints {
                let parsed = reqwest::Url::parse(url).map_err(|e| SourceError::NotConfigured {
                    metric: ctx.metric.clone(),
                    why: format!("endpoint {url:?} is not a URL: {e}"),
                })?;
                let name = match (parsed.host_str(), parsed.port_or_known_default()) {
                    (Some(h), Some(p)) => format!("{h}:{p}"),
                    _ => url.clone(),
                };
                list.push((name, url.clone()));
            }
            Endpoints::Static(list)
        } else if let Some(pods) = &ctx.pods {
            Endpoints::Pods(pods.clone())
        } else {
            return Err(SourceError::NotConfigured {
                metric: ctx.metric.clone(),
                why: "a scrape metric needs `endpoints` or the target's pods".into(),
            });
        };
        if let Some(Aggregate::Quantile { q, .. }) = cfg.aggregate
            && !(0.0..=1.0).contains(&q)
        {
            return Err(SourceError::NotConfigured {
                metric: ctx.metric.clone(),
                why: format!("quantile q={q} is outside [0, 1]"),
            });
        }
        Ok(Self {
            id: ctx.metric.clone(),
            timeout: cfg.timeout.map(|d| d.get()).unwrap_or(DEFAULT_TIMEOUT),
            cfg,
            http: ctx.http.clone(),
            endpoints,
            max_bytes: DEFAULT_MAX_BYTES,
            parser: Box::new(TextParser),
            clock: ctx.clock,
            history: Mutex::new(HashMap::new()),
        })
    }

    /// Reads at most `max_bytes` of each page.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Uses another exposition parser.
    pub fn with_parser(mut self, parser: Box<dyn ExpositionParser>) -> Self {
        self.parser = parser;
        self
    }

    /// Approximate bytes of history held, for the memory figure.
    pub fn history_bytes(&self) -> usize {
        self.lock()
            .values()
            .map(EndpointHistory::approx_bytes)
            .sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, EndpointHistory>> {
        // History is rebuilt from the next scrapes if a panic ever poisoned it.
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `(name, url)` of every endpoint; a pod with no known port gets an empty url (reported as
    /// a failure of that pod on every read).
    fn current_endpoints(&self) -> Vec<(String, String)> {
        match &self.endpoints {
            Endpoints::Static(list) => list.clone(),
            Endpoints::Pods(rx) => {
                let path = self.cfg.path.as_deref().unwrap_or("/metrics");
                rx.borrow()
                    .iter()
                    .map(|p| match self.cfg.port.or(p.port) {
                        Some(port) => (p.name.clone(), format!("http://{}:{port}{path}", p.host)),
                        None => (p.name.clone(), String::new()),
                    })
                    .collect()
            }
        }
    }

    /// The window the history must cover.
    fn window(&self) -> Duration {
        match &self.cfg.aggregate {
            Some(Aggregate::Rate { window }) | Some(Aggregate::Quantile { window, .. }) => {
                window.get()
            }
            Some(Aggregate::Gauge { .. }) | None => Duration::ZERO,
        }
    }

    /// Whether a sample's name is one this metric reads.
    fn wants(&self, name: &str) -> bool {
        let m = self.cfg.metric.as_str();
        match &self.cfg.aggregate {
            Some(Aggregate::Quantile { .. }) => {
                name == m || name.strip_suffix("_bucket") == Some(m)
            }
            Some(Aggregate::Rate { .. }) => name == m || name.strip_suffix("_total") == Some(m),
            _ => name == m,
        }
    }

    /// Turns one page into the selected samples (names and label matchers applied).
    pub fn select(
        &self,
        page: &str,
        format: crate::source::exposition::Format,
    ) -> Result<Vec<Selected>, String> {
        let family = self.cfg.metric.as_str();
        let samples = self
            .parser
            .parse_matching(page, format, &|n| in_family(n, family) && self.wants(n))
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for s in samples {
            if !self
                .cfg
                .labels
                .iter()
                .all(|(k, v)| s.label(k) == Some(v.as_str()))
            {
                continue;
            }
            if out.len() == history::MAX_SERIES_PER_ENDPOINT {
                return Err(format!(
                    "more than {} series of {} match; refusing to track them all",
                    history::MAX_SERIES_PER_ENDPOINT,
                    self.cfg.metric
                ));
            }
            out.push(selected(&s)?);
        }
        Ok(out)
    }

    async fn read_now(&self) -> Result<Reading, SourceError> {
        let endpoints = self.current_endpoints();
        if endpoints.is_empty() {
            return Err(SourceError::NoData {
                metric: self.id.clone(),
                endpoint: self.cfg.metric.clone(),
                why: "no endpoints to scrape".into(),
            });
        }
        let fetches = endpoints.iter().map(|(name, url)| async move {
            let started = clock::now();
            if url.is_empty() {
                let e = SourceError::NotConfigured {
                    metric: self.id.clone(),
                    why: format!(
                        "pod {name} has no container port; set `port` in the scrape block"
                    ),
                };
                return (name.clone(), started, Err(e));
            }
            let page =
                fetch::fetch_page(&self.http, &self.id, url, self.timeout, self.max_bytes).await;
            let selected = page.and_then(|(format, text)| {
                self.select(&text, format)
                    .map_err(|why| SourceError::BadPayload {
                        metric: self.id.clone(),
                        endpoint: url.clone(),
                        why,
                    })
            });
            (name.clone(), started, selected)
        });
        let results = futures::future::join_all(fetches).await;
        let mut failures = Vec::new();
        let mut failed = BTreeMap::new();
        let mut answered = Vec::new();
        {
            let mut history = self.lock();
            history.retain(|name, _| endpoints.iter().any(|(n, _)| n == name));
            for (name, started, result) in results {
                match result {
                    Ok(samples) => {
                        self.record(&mut history, &name, started, &samples);
                        answered.push(name);
                    }
                    Err(e) => {
                        failed.insert(name, e.to_string());
                        failures.push(e);
                    }
                }
            }
        }
        if answered.is_empty() {
            return Err(if failures.len() == 1 {
                failures.remove(0)
            } else {
                SourceError::AllFailed {
                    metric: self.id.clone(),
                    failures,
                }
            });
        }
        let origin = endpoints
            .iter()
            .map(|(_, u)| u.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let (now, wall) = self.clock.now();
        let mut reading = self.aggregate(&answered, now, wall, &origin)?;
        reading.failed = failed;
        Ok(reading)
    }

    fn record(
        &self,
        history: &mut HashMap<String, EndpointHistory>,
        name: &str,
        at: Instant,
        samples: &[Selected],
    ) {
        let window = self.window();
        match history.get_mut(name) {
            Some(h) => h.record(at, samples, window),
            None => {
                let mut h = EndpointHistory::default();
                h.record(at, samples, window);
                history.insert(name.to_string(), h);
            }
        }
    }

    /// Parses one endpoint's page taken at `at` and adds its selected series to the history
    /// (what a read does per endpoint after fetching; public for benchmarks).
    pub fn ingest(
        &self,
        endpoint: &str,
        page: &str,
        format: crate::source::exposition::Format,
        at: Instant,
    ) -> Result<usize, String> {
        let samples = self.select(page, format)?;
        self.record(&mut self.lock(), endpoint, at, &samples);
        Ok(samples.len())
    }

    /// Whether readings are computed over a window (rates and quantiles).
    fn windowed(&self) -> bool {
        matches!(
            self.cfg.aggregate,
            Some(Aggregate::Rate { .. } | Aggregate::Quantile { .. })
        )
    }

    /// Computes the reading at `now` from the history of the endpoints that `answered` this
    /// round: gauge per pod, counter rate per pod, or the merged histogram quantile.
    pub fn aggregate(
        &self,
        answered: &[String],
        now: Instant,
        wall: std::time::SystemTime,
        origin: &str,
    ) -> Result<Reading, SourceError> {
        let history = self.lock();
        let no_data = |why: String| SourceError::NoData {
            metric: self.id.clone(),
            endpoint: origin.to_string(),
            why,
        };
        let all: Vec<(&String, &EndpointHistory)> = answered
            .iter()
            .filter_map(|n| history.get(n).map(|h| (n, h)))
            .collect();
        // A windowed reading uses the endpoints whose samples cover enough of the window; a
        // rate over a second of a long window would be noise presented as a figure.
        let window = self.window().as_secs_f64();
        let answered = all
            .iter()
            .copied()
            .filter(|(_, h)| !self.windowed() || warm(h, now, window));
        if self.windowed() && !all.is_empty() && answered.clone().next().is_none() {
            let covered = all
                .iter()
                .map(|(_, h)| h.covered(now, window))
                .fold(0.0, f64::max);
            return Err(no_data(format!(
                "warming up: samples cover {covered:.1} s of the {} window (a reading needs {:.1} s)",
                DurationSpec(self.window()),
                window * MIN_COVERED_SHARE
            )));
        }
        let reading = match &self.cfg.aggregate {
            None => gauge(answered, Reduce::Avg, wall, origin),
            Some(Aggregate::Gauge { reduce }) => gauge(answered, *reduce, wall, origin),
            Some(Aggregate::Rate { .. }) => {
                let pods = rates(answered, now, window);
                let total = pods.values().sum();
                Reading::per_pod(pods, total, wall, origin)
            }
            Some(Aggregate::Quantile { q, window: w }) => {
                let v = quantile(answered, now, window, *q);
                if v.is_nan() {
                    return Err(no_data(format!(
                        "no observations of {} in the last {w}",
                        self.cfg.metric
                    )));
                }
                Reading::value(v, wall, origin)
            }
        };
        if let Some(pods) = reading.pods()
            && pods.is_empty()
        {
            return Err(no_data(match &self.cfg.aggregate {
                Some(Aggregate::Rate { window }) => {
                    format!(
                        "fewer than two scrapes of {} within {window} yet",
                        self.cfg.metric
                    )
                }
                _ => format!("no series named {} matched", self.cfg.metric),
            }));
        }
        Ok(reading)
    }
}

/// The share of a window that samples must cover before a rate or quantile over it is read
/// (over the covered span). A quarter keeps a restarted loop's first readings from being the
/// noise of a second or two, and waits at most a quarter window for them.
pub const MIN_COVERED_SHARE: f64 = 0.25;

/// Each endpoint's counter rate over the part of `window` (seconds) its samples cover.
fn rates<'a>(
    endpoints: impl Iterator<Item = (&'a String, &'a EndpointHistory)>,
    now: Instant,
    window: f64,
) -> BTreeMap<String, f64> {
    let mut pods = BTreeMap::new();
    let mut buf = Vec::new();
    for (name, h) in endpoints {
        let w = h.covered(now, window);
        let mut sum = None;
        for s in h.series.values() {
            EndpointHistory::relative_into(s, now, &mut buf);
            if let Some(r) = math::extrapolated_rate(&buf, 0.0, w) {
                *sum.get_or_insert(0.0) += r;
            }
        }
        if let Some(sum) = sum {
            pods.insert(name.clone(), sum);
        }
    }
    pods
}

/// The `q` quantile of the endpoints' bucket rates merged by bound (NaN without observations).
fn quantile<'a>(
    endpoints: impl Iterator<Item = (&'a String, &'a EndpointHistory)>,
    now: Instant,
    window: f64,
    q: f64,
) -> f64 {
    let mut by_le: HashMap<u64, f64> = HashMap::new();
    let mut buf = Vec::new();
    for (_, h) in endpoints {
        let w = h.covered(now, window);
        for s in h.series.values() {
            let Some(le) = s.le else { continue };
            EndpointHistory::relative_into(s, now, &mut buf);
            if let Some(r) = math::extrapolated_rate(&buf, 0.0, w) {
                *by_le.entry(le.to_bits()).or_default() += r;
            }
        }
    }
    let mut buckets: Vec<(f64, f64)> = by_le
        .into_iter()
        .map(|(le, r)| (f64::from_bits(le), r))
        .collect();
    math::bucket_quantile(q, &mut buckets)
}

/// Whether an endpoint's samples cover enough of `window` (seconds) to be read.
fn warm(h: &EndpointHistory, now: Instant, window: f64) -> bool {
    h.covered(now, window) >= window * MIN_COVERED_SHARE
}

/// Gauge per pod: the latest values of the pod's matching series summed; then the reduction.
fn gauge<'a>(
    answered: impl Iterator<Item = (&'a String, &'a EndpointHistory)>,
    reduce: Reduce,
    wall: std::time::SystemTime,
    origin: &str,
) -> Reading {
    let pods: BTreeMap<String, f64> = answered
        .filter_map(|(n, h)| {
            let last = h.last_ok?;
            let mut values = h
                .series
                .values()
                .filter_map(|s| s.points.back().filter(|(t, _)| *t == last).map(|(_, v)| *v))
                .peekable();
            values.peek()?;
            Some((n.clone(), values.sum()))
        })
        .collect();
    let total = match reduce {
        Reduce::Sum => pods.values().sum(),
        Reduce::Max => pods.values().copied().fold(f64::NEG_INFINITY, f64::max),
        Reduce::Avg => pods.values().sum::<f64>() / pods.len().max(1) as f64,
    };
    Reading::per_pod(pods, total, wall, origin)
}

/// A parsed sample as a history entry: a canonical key (name and sorted labels) and `le`.
fn selected(s: &ExpoSample) -> Result<Selected, String> {
    let mut labels: Vec<(&str, &str)> = Vec::with_capacity(s.labels.len());
    let mut le = None;
    for (k, v) in &s.labels {
        if k == "le" {
            let bound = crate::source::exposition::parse_le(v)
                .ok_or_else(|| format!("bucket {} has a bad le {v:?}", s.name))?;
            le = Some((bound, v.as_ref()));
        } else {
            labels.push((k, v));
        }
    }
    labels.sort_unstable();
    let mut key = String::with_capacity(s.name.len() + 64);
    key.push_str(&s.name);
    key.push('{');
    let mut push_label = |k: &str, v: &str| {
        key.push_str(k);
        key.push_str("=\"");
        // Escape so that distinct label sets never produce the same key.
        for c in v.chars() {
            if matches!(c, '"' | '\\') {
                key.push('\\');
            }
            key.push(c);
        }
        key.push_str("\",");
    };
    for (k, v) in labels {
        push_label(k, v);
    }
    if let Some((_, raw)) = le {
        push_label("le", raw);
    }
    key.push('}');
    let le = le.map(|(bound, _)| bound);
    Ok(Selected {
        key: key.into(),
        le,
        value: s.value,
    })
}

impl MetricSource for ScrapeSource {
    fn id(&self) -> &MetricId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "scrape"
    }

    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>> {
        Box::pin(self.read_now())
    }
}

#[cfg(test)]
mod tests;
