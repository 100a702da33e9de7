//! `PolicyLoop`: every interval, observe the target and its metrics, evaluate, act, record.
//!
//! This is the one place where sources, the engine and a target meet, and where the clock is
//! read: the loop maps tokio's monotonic clock onto the engine's timeline, so tests drive it
//! with a paused clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{self, Instant};
use serde::Serialize;
use tokio::sync::watch;

use super::recorder::Recorder;
use crate::engine::{
    self, Decision, Evaluator, MetricFailure, Observation, PodFacts, PodValues, Policy,
    ReadyCondition, Requests, Seconds, Time,
};
use crate::metric::{MetricId, Reading, ReadingValue};
use crate::source::{
    BuildContext, LocalProcess, MetricSource, PodAddress, ResourceName, SourceConfig, SourceError,
};
use crate::spec::ScalingPolicySpec;
use crate::store::{SampleStore, StoreWriter};
use crate::target::{ScaleTarget, TargetError, TargetStatus};

/// Why a loop could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A metric carries no source block.
    #[error("policy {policy}: metric {metric} has no source")]
    NoSource {
        /// The policy.
        policy: String,
        /// The metric.
        metric: String,
    },
    /// A source could not be built.
    #[error("policy {policy}: {source}")]
    Source {
        /// The policy.
        policy: String,
        /// Why.
        #[source]
        source: Box<SourceError>,
    },
    /// The store refused a writer (another loop owns the metric).
    #[error("policy {policy}: {why}")]
    Store {
        /// The policy.
        policy: String,
        /// Why.
        why: String,
    },
}

/// What one tick saw and did; one JSON line per tick in reports.
#[derive(Clone, Debug, Serialize)]
pub struct TickRecord {
    /// Seconds since the loop started.
    pub t: f64,
    /// `spec.replicas` when the tick began.
    pub current: i32,
    /// The decision's desired count (equal to `current` when nothing was decided).
    pub desired: i32,
    /// Whether the target was rescaled.
    pub applied: bool,
    /// Ready members when the tick began.
    pub ready: i32,
    /// The step that settled the decision (`Unchanged` when nothing moved it).
    pub reason: &'static str,
    /// The one-line explanation.
    pub line: String,
    /// Each metric's combined value, or why it failed.
    pub metrics: BTreeMap<String, Result<f64, String>>,
    /// Set when the tick could not decide (target unreadable) or could not act.
    pub error: Option<String>,
}

/// Options that are not in the policy's own words.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// The policy's name in logs, metrics and store keys (`shop/web`, `demo`).
    pub name: String,
    /// How often sources are read (the policy's `interval`, or an override).
    pub interval: Duration,
    /// Evaluate on every this-many reads (1: every tick). Reading more often than deciding
    /// keeps windowed metrics (rates, quantiles) meaningful when decisions are sparse.
    pub evaluate_every: u32,
    /// Requests assumed for members that report none (a local pool has no requests).
    pub default_requests: Requests,
    /// Hand the engine a new reading only this often (zero: every read). Emulates a metrics
    /// pipeline such as metrics-server: its publications run on their own clock, half a
    /// period out of phase with the decisions, so a decision sees readings that are on
    /// average that much old.
    pub resolution: Duration,
}

impl LoopOptions {
    /// Options for a loop that reads and decides every `interval`.
    pub fn every(name: &str, interval: Duration) -> Self {
        Self {
            name: name.to_string(),
            interval,
            evaluate_every: 1,
            default_requests: Requests::default(),
            resolution: Duration::ZERO,
        }
    }
}

/// A metric's source as the loop holds it.
pub struct LoopSource {
    /// The metric's name in the policy.
    pub name: String,
    /// The resource it measures, for resource metrics (to attach pod requests).
    pub resource: Option<ResourceName>,
    /// The source.
    pub source: Arc<dyn MetricSource>,
}

struct LoopMetric {
    name: String,
    resource: Option<ResourceName>,
    source: Arc<dyn MetricSource>,
    writer: Option<StoreWriter>,
    /// What the engine is handed, and when it was published (see `LoopOptions::resolution`).
    published: Option<(Instant, Result<Reading, String>)>,
}

/// One task per policy: tick → observe → evaluate → act → record.
pub struct PolicyLoop {
    options: LoopOptions,
    evaluator: Evaluator,
    metrics: Vec<LoopMetric>,
    target: Arc<dyn ScaleTarget>,
    pods_tx: watch::Sender<Vec<PodAddress>>,
    procs_tx: watch::Sender<Vec<LocalProcess>>,
    origin: Instant,
    recorder: Arc<dyn Recorder>,
    records: Option<tokio::sync::mpsc::UnboundedSender<(TickRecord, Decision)>>,
    failures: Option<tokio::sync::mpsc::UnboundedSender<TickRecord>>,
}

impl std::fmt::Debug for PolicyLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyLoop")
            .field("name", &self.options.name)
            .finish_non_exhaustive()
    }
}

impl PolicyLoop {
    /// Builds the loop's sources from `spec` with the live handles in `ctx`; the target's
    /// members are fed to the sources by the loop itself, tick by tick.
    pub fn new(
        spec: &ScalingPolicySpec,
        policy: Policy,
        target: Arc<dyn ScaleTarget>,
        ctx: BuildContext,
        store: Option<&SampleStore>,
        recorder: Arc<dyn Recorder>,
        options: LoopOptions,
    ) -> Result<Self, ControlError> {
        let (pods_tx, pods_rx) = watch::channel(Vec::new());
        let (procs_tx, procs_rx) = watch::channel(Vec::new());
        let mut sources = Vec::with_capacity(spec.metrics.len());
        for m in &spec.metrics {
            let config: SourceConfig = m.source().ok_or_else(|| ControlError::NoSource {
                policy: options.name.clone(),
                metric: m.name.clone(),
            })?;
            let mut mctx = ctx.clone();
            mctx.metric = MetricId::new(options.name.clone(), m.name.clone());
            mctx.pods = Some(pods_rx.clone());
            mctx.processes = Some(procs_rx.clone());
            let source = config.build(&mctx).map_err(|source| ControlError::Source {
                policy: options.name.clone(),
                source: Box::new(source),
            })?;
            sources.push(LoopSource {
                name: m.name.clone(),
                resource: m.resource.as_ref().map(|r| r.name),
                source,
            });
        }
        let mut this = Self::from_sources(policy, sources, target, store, recorder, options)?;
        this.pods_tx = pods_tx;
        this.procs_tx = procs_tx;
        Ok(this)
    }

    /// A loop over sources built elsewhere (fakes in tests), one per policy metric in order.
    pub fn from_sources(
        policy: Policy,
        sources: Vec<LoopSource>,
        target: Arc<dyn ScaleTarget>,
        store: Option<&SampleStore>,
        recorder: Arc<dyn Recorder>,
        options: LoopOptions,
    ) -> Result<Self, ControlError> {
        let mut metrics = Vec::with_capacity(sources.len());
        for s in sources {
            let writer =
                match store {
                    Some(store) => Some(store.writer(s.source.id().clone()).map_err(|e| {
                        ControlError::Store {
                            policy: options.name.clone(),
                            why: e.to_string(),
                        }
                    })?),
                    None => None,
                };
            metrics.push(LoopMetric {
                name: s.name,
                resource: s.resource,
                source: s.source,
                writer,
                published: None,
            });
        }
        Ok(Self {
            options,
            evaluator: Evaluator::new(policy),
            metrics,
            target,
            pods_tx: watch::channel(Vec::new()).0,
            procs_tx: watch::channel(Vec::new()).0,
            origin: clock::now(),
            recorder,
            records: None,
            failures: None,
        })
    }

    /// Sends every tick's record and decision to `tx` (reports, live views, tests).
    pub fn with_records(
        mut self,
        tx: tokio::sync::mpsc::UnboundedSender<(TickRecord, Decision)>,
    ) -> Self {
        self.records = Some(tx);
        self
    }

    /// Sends the record of every tick that could not decide (the target unreadable) to `tx`.
    pub fn with_failures(mut self, tx: tokio::sync::mpsc::UnboundedSender<TickRecord>) -> Self {
        self.failures = Some(tx);
        self
    }

    /// The engine's notion of now: milliseconds since the loop started, on tokio's clock.
    fn now(&self) -> Time {
        Time::from_millis(clock::now().duration_since(self.origin).as_millis() as i64)
    }

    /// Runs ticks at the interval until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut ticker = tokio::time::interval(self.options.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let every = u64::from(self.options.evaluate_every.max(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {
                    if n.is_multiple_of(every) {
                        self.tick().await;
                    } else {
                        self.read_only().await;
                    }
                    n += 1;
                }
            }
        }
    }

    /// A tick without a decision: the sources are read (windows stay filled) and published.
    pub async fn read_only(&mut self) {
        if let Ok(status) = self.target.status().await {
            self.publish_members(&status);
        }
        self.read_all().await;
    }

    /// One evaluation: observe, decide, act, record.
    pub async fn tick(&mut self) -> TickRecord {
        let started = clock::now();
        let t = started.duration_since(self.origin).as_secs_f64();
        let status = match self.target.status().await {
            Ok(s) => s,
            Err(e) => return self.unreadable(t, &e),
        };
        self.publish_members(&status);
        let readings = self.read_all().await;
        let now = self.now();
        let obs = self.observe(&status, &readings, now);
        let decision = self.evaluator.evaluate(&obs, now);
        let mut record = TickRecord {
            t,
            current: decision.current.get(),
            desired: decision.desired.get(),
            applied: false,
            ready: status.ready.get(),
            reason: decision.settled_by(),
            line: decision.to_string(),
            metrics: self
                .metrics
                .iter()
                .zip(&readings)
                .map(|(m, r)| {
                    (
                        m.name.clone(),
                        r.as_ref().map(Reading::total).map_err(Clone::clone),
                    )
                })
                .collect(),
            error: None,
        };
        for p in &decision.proposals {
            let (value, target) = engine::units(p.usage, p.target);
            self.recorder
                .metric_value(&self.options.name, &p.metric, value, target);
        }
        if decision.apply {
            match self.target.scale_to(decision.desired).await {
                Ok(()) => {
                    self.recorder.scaled(&self.options.name);
                    self.evaluator
                        .record_scale(decision.current, decision.desired, now);
                    record.applied = true;
                }
                Err(e) => {
                    self.recorder.scale_error(&self.options.name);
                    record.error = Some(e.to_string());
                }
            }
        }
        self.recorder.decision(
            &self.options.name,
            record.reason,
            record.current,
            record.desired,
        );
        match &record.error {
            None => {
                tracing::info!(policy = %self.options.name, current = record.current, desired = record.desired, "{}", record.line)
            }
            Some(e) => tracing::warn!(policy = %self.options.name, error = %e, "{}", record.line),
        }
        if let Some(tx) = &self.records {
            let _ = tx.send((record.clone(), decision));
        }
        record
    }

    /// The record of a tick whose target could not be read: nothing is decided.
    fn unreadable(&self, t: f64, e: &TargetError) -> TickRecord {
        let (reason, line) = match e {
            TargetError::NotFound { .. } => ("TargetNotFound", format!("target not found: {e}")),
            _ => ("TargetUnavailable", format!("target unavailable: {e}")),
        };
        let record = TickRecord {
            t,
            current: 0,
            desired: 0,
            applied: false,
            ready: 0,
            reason,
            line,
            metrics: BTreeMap::new(),
            error: Some(e.to_string()),
        };
        tracing::warn!(policy = %self.options.name, "{}", record.line);
        if let Some(tx) = &self.failures {
            let _ = tx.send(record.clone());
        }
        record
    }

    fn publish_members(&self, status: &TargetStatus) {
        let pods: Vec<PodAddress> = status
            .pods
            .iter()
            .filter_map(|p| {
                let endpoint = p.endpoint.as_deref()?;
                let hostport = endpoint
                    .split("://")
                    .nth(1)
                    .unwrap_or(endpoint)
                    .trim_end_matches('/');
                // `host:port`, `[v6]:port`, or a bare host (a pod without a declared port).
                let (host, port) = match hostport.rsplit_once(':') {
                    Some((h, p))
                        if !h.is_empty() && (!hostport.starts_with('[') || h.ends_with(']')) =>
                    {
                        (h, p.parse().ok())
                    }
                    _ => (hostport, None),
                };
                Some(PodAddress {
                    name: p.name.clone(),
                    host: host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                    port,
                })
            })
            .collect();
        let procs: Vec<LocalProcess> = status
            .pods
            .iter()
            .filter_map(|p| {
                Some(LocalProcess {
                    name: p.name.clone(),
                    pid: p.pid?,
                })
            })
            .collect();
        self.pods_tx
            .send_if_modified(|cur| replace_if_changed(cur, pods));
        self.procs_tx
            .send_if_modified(|cur| replace_if_changed(cur, procs));
    }

    async fn read_all(&mut self) -> Vec<Result<Reading, String>> {
        let reads = self.metrics.iter().map(|m| async move {
            let t0 = clock::now();
            let result = m.source.read().await.map_err(|e| e.to_string());
            (result, clock::since(t0))
        });
        let results = futures::future::join_all(reads).await;
        let now = clock::now();
        let resolution = self.options.resolution;
        // Publications are half a resolution out of phase with the loop's start.
        let first_publication = self.origin + resolution / 2;
        let mut out = Vec::with_capacity(results.len());
        for (m, (result, took)) in self.metrics.iter_mut().zip(results) {
            self.recorder.source_read(
                &self.options.name,
                &m.name,
                took.as_secs_f64(),
                result.is_ok(),
            );
            if let Some(w) = &m.writer {
                match &result {
                    Ok(r) => w.put(r.clone()),
                    Err(e) => w.fail(e),
                }
            }
            let due = match &m.published {
                _ if resolution.is_zero() => true,
                None => now >= first_publication,
                Some((at, _)) => now.duration_since(*at) >= resolution,
            };
            if due {
                m.published = Some((now, result));
            }
            out.push(match &m.published {
                Some((_, r)) => r.clone(),
                None => Err("no reading published yet".to_string()),
            });
        }
        out
    }

    fn observe(
        &self,
        status: &TargetStatus,
        readings: &[Result<Reading, String>],
        now: Time,
    ) -> Observation {
        let ago = |d: Duration| Time(now.0.saturating_sub(d.as_millis() as i64));
        let mut pods: Vec<PodFacts> = status
            .pods
            .iter()
            .map(|p| PodFacts {
                name: p.name.clone(),
                phase: p.phase,
                deleting: p.deleting,
                started: p.started.then(|| ago(p.age)),
                ready: Some(ReadyCondition {
                    status: p.ready,
                    since: ago(p.ready_changed),
                }),
                requests: p.requests.unwrap_or(self.options.default_requests),
            })
            .collect();
        // Requests a source knows (the resource metrics API) win over the assumed ones.
        for (m, r) in self.metrics.iter().zip(readings) {
            let (
                Some(resource),
                Ok(Reading {
                    requests: Some(req),
                    ..
                }),
            ) = (m.resource, r)
            else {
                continue;
            };
            for pod in &mut pods {
                if let Some(v) = req.get(&pod.name) {
                    match resource {
                        ResourceName::Cpu => pod.requests.cpu = Some(milli(*v)),
                        ResourceName::Memory => pod.requests.memory = Some(milli(*v)),
                    }
                }
            }
        }
        let window = Seconds(self.options.interval.as_secs().max(1) as u32);
        let metrics = readings
            .iter()
            .map(|r| match r {
                Ok(reading) => Ok(to_engine(reading, &pods, now, window)),
                Err(e) => Err(MetricFailure(e.clone())),
            })
            .collect();
        Observation {
            current: status.desired,
            status_replicas: status.running,
            pods,
            metrics,
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.options.name
    }
}

fn replace_if_changed<T: PartialEq>(cur: &mut Vec<T>, new: Vec<T>) -> bool {
    if *cur == new {
        false
    } else {
        *cur = new;
        true
    }
}

/// Milli-units, rounded up as the HPA reads quantities (R1.34).
fn milli(v: f64) -> i64 {
    let m = (v * 1000.0).ceil();
    if m.is_finite() {
        m.clamp(i64::MIN as f64, i64::MAX as f64) as i64
    } else {
        0
    }
}

/// A source reading in the engine's terms, aligned with the pod list.
fn to_engine(reading: &Reading, pods: &[PodFacts], now: Time, window: Seconds) -> engine::Reading {
    match &reading.value {
        ReadingValue::Value(v) => engine::Reading::Total(milli(*v)),
        ReadingValue::PerPod { pods: values, .. } => {
            let aligned = pods
                .iter()
                .map(|p| values.get(&p.name).map(|v| milli(*v)))
                .collect();
            let extra = values
                .iter()
                .filter(|(name, _)| !pods.iter().any(|p| &p.name == *name))
                .map(|(_, v)| milli(*v))
                .collect();
            engine::Reading::PerPod(PodValues {
                values: aligned,
                extra,
                timestamp: now,
                window,
            })
        }
    }
}

#[cfg(test)]
mod tests;
