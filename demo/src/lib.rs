//! The demo key-value microservice that tidescale scales: a Redis-backed JSON store with
//! CPU-load and worker-pool endpoints and Prometheus metrics.
//!
//! `app(state)` is the whole HTTP surface; `run(listener, state, shutdown, options)` serves it
//! and drains gracefully.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, put};
use tokio::net::TcpListener;

pub mod cli;
pub mod clock;
pub mod cpu;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod store;
pub mod workers;

pub use store::Store;

use metrics::Metrics;
use workers::WorkerPool;

/// The default TTL of stored values: 360 days, as in the service this one grew out of.
pub const DEFAULT_TTL: Duration = Duration::from_secs(31_104_000);

/// Everything a request handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Values and the hit counter.
    pub store: Store,
    /// TTL given to stored values.
    pub ttl: Duration,
    /// The `/work` slots.
    pub workers: WorkerPool,
    /// The service's metrics.
    pub metrics: Arc<Metrics>,
    /// Set once shutdown began: readiness fails from then on.
    pub draining: Arc<AtomicBool>,
}

impl AppState {
    /// State with `workers` slots and a queue of `queue` requests in front of them.
    pub fn new(store: Store, ttl: Duration, workers: usize, queue: usize) -> Self {
        let metrics = Arc::new(Metrics::new());
        let pool = WorkerPool::new(
            workers,
            queue,
            metrics.workers_busy.clone(),
            metrics.work_queue.clone(),
        );
        Self {
            store,
            ttl,
            workers: pool,
            metrics,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// The service's router.
pub fn app(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    // Handlers share one state behind an `Arc`: axum clones the state for every request, and
    // one reference count is cheaper than the half-dozen the state's fields hold.
    let api = Router::new()
        .route("/", get(routes::index))
        .route(
            "/kv/{*key}",
            // Only PUT reads a body, so only PUT carries the body limit: every layer on a route
            // is cloned per request, on the hot GET too.
            put(routes::put_kv)
                .layer(DefaultBodyLimit::max(routes::MAX_BODY_BYTES))
                .get(routes::get_kv)
                .delete(routes::delete_kv),
        )
        .route("/load", get(routes::load))
        .route("/work", get(routes::work))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .method_not_allowed_fallback(routes::wrong_method)
        .fallback(routes::no_route)
        .with_state(Arc::new(state));
    let scrape = Router::new()
        .route("/metrics", get(metrics::serve_metrics))
        .with_state(metrics.clone());
    api.merge(scrape).layer(metrics::TrackLayer::new(metrics))
}

/// How the server stops.
#[derive(Clone, Copy, Debug)]
pub struct ShutdownOptions {
    /// After the shutdown signal, keep accepting (with readiness failing) this long, so load
    /// balancers notice before connections are refused.
    pub drain_delay: Duration,
    /// Then wait at most this long for in-flight requests.
    pub grace: Duration,
}

impl Default for ShutdownOptions {
    fn default() -> Self {
        Self {
            drain_delay: Duration::ZERO,
            grace: Duration::from_secs(10),
        }
    }
}

/// How serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drained {
    /// Every in-flight request finished.
    Clean,
    /// The grace period ran out with requests still in flight.
    GraceExpired,
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then drains.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ShutdownOptions,
) -> std::io::Result<Drained> {
    let draining = state.draining.clone();
    let (began_tx, began_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        draining.store(true, Ordering::Release);
        tracing::info!(delay = ?options.drain_delay, "shutdown requested: readiness now fails");
        tokio::time::sleep(options.drain_delay).await;
        let _ = began_tx.send(());
    };
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(signal);
    let deadline = async move {
        if began_rx.await.is_ok() {
            tokio::time::sleep(options.grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server.into_future() => served.map(|()| Drained::Clean),
        () = deadline => Ok(Drained::GraceExpired),
    }
}
