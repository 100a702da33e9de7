//! The background refresher: reads every configured metric's source at the configured interval
//! into the [`SampleStore`], so requests are answered from memory (R2.13).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::Clock;
use crate::metric::MetricId;
use crate::source::{BuildContext, SourceConfig};
use crate::store::{SampleStore, StoreError};

use super::config::AdapterConfig;
use super::metrics::{custom_id, external_id};

/// Why the refresher could not start.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The store refused a metric (full, or claimed twice).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A source could not be built; every failure listed.
    #[error("cannot build metric sources:\n  {}", .0.join("\n  "))]
    Sources(Vec<String>),
}

/// The metrics to read: store id and source block, in config order.
pub fn plan(cfg: &AdapterConfig) -> Vec<(MetricId, SourceConfig)> {
    let ext = cfg
        .external
        .iter()
        .enumerate()
        .map(|(i, m)| (external_id(i, m), m.source.clone()));
    let cus = cfg
        .custom
        .iter()
        .enumerate()
        .map(|(i, m)| (custom_id(i, m), m.source.clone()));
    ext.chain(cus).collect()
}

/// Every configured metric's source with its store slot, ready to run.
pub struct Refresher {
    interval: std::time::Duration,
    sources: Vec<Arc<dyn crate::source::MetricSource>>,
    writers: Vec<crate::store::StoreWriter>,
}

impl Refresher {
    /// Builds every source (all problems at once) and claims their store slots.
    pub fn new(
        cfg: &AdapterConfig,
        store: &SampleStore,
        http: reqwest::Client,
    ) -> Result<Self, RefreshError> {
        let clock = Clock::start();
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for (id, src) in plan(cfg) {
            let mut ctx = BuildContext::new(id.clone(), http.clone());
            ctx.prometheus_url = cfg.prometheus_url.clone();
            ctx.clock = clock;
            match src.build(&ctx) {
                Ok(s) => sources.push(s),
                Err(e) => problems.push(e.to_string()),
            }
        }
        if !problems.is_empty() {
            return Err(RefreshError::Sources(problems));
        }
        let mut writers = Vec::new();
        for s in &sources {
            writers.push(store.writer(s.id().clone())?);
        }
        Ok(Self {
            interval: cfg.interval,
            sources,
            writers,
        })
    }

    /// Reads every source at the interval until `shutdown`. `ready` turns true when the first
    /// reading arrived (or at once when nothing is configured).
    pub async fn run(self, ready: Arc<AtomicBool>, shutdown: impl Future<Output = ()>) {
        if self.sources.is_empty() {
            ready.store(true, Ordering::Release);
        }
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = &mut shutdown => return,
            }
            let reads = self
                .sources
                .iter()
                .zip(&self.writers)
                .map(|(s, w)| async move {
                    match s.read().await {
                        Ok(r) => {
                            w.put(r);
                            true
                        }
                        Err(e) => {
                            tracing::warn!(metric = %s.id(), error = %e, "metric read failed");
                            w.fail(e);
                            false
                        }
                    }
                });
            let read_all = futures::future::join_all(reads);
            let results = tokio::select! {
                r = read_all => r,
                _ = &mut shutdown => return,
            };
            if results.iter().any(|ok| *ok) && !ready.swap(true, Ordering::AcqRel) {
                tracing::info!("first metrics arrived; ready");
            }
            super::memory::release_free_memory();
        }
    }

    /// Runs [`Refresher::run`] on a thread of its own with a single-threaded runtime, so that
    /// reading and parsing large source answers never occupies the threads serving requests.
    pub fn spawn(
        self,
        ready: Arc<AtomicBool>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("adapter-refresh".into())
            .spawn(move || {
                rt.block_on(self.run(ready, async move {
                    let _ = stop.wait_for(|s| *s).await;
                }))
            })
    }
}
