//! The run: an open-loop dispatcher (or closed-loop workers), request tasks and the collector.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::{self, Instant};
use futures::FutureExt;
use hyper::Uri;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::client::{self, ConnectionPool, ConnectionReturn, Endpoint, Lease};
use crate::config::{ConfigError, Load, RunConfig};
use crate::mix::{PreparedRequest, RequestGenerator};
use crate::record::{ErrorClass, Event, Outcome, Recorder, SecondStats, Totals};
use crate::report::{Report, RunFacts};
use crate::schedule::Schedule;

/// A request sent more than this after its intended time counts as late.
pub const LATE_AFTER: Duration = Duration::from_millis(10);

/// Results a max-rate worker gathers before sending them to the collector in one message.
const WORKER_BATCH: usize = 64;

/// A second is closed this long after it ends, so answers still in the channel land in it.
const CLOSE_GRACE: Duration = Duration::from_millis(150);

/// What a watcher sees while the run goes on; refreshed about ten times a second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    /// Seconds since the start.
    pub elapsed_secs: f64,
    /// Planned length of the run, seconds.
    pub planned_secs: f64,
    /// The last complete second (offered/achieved rate, latencies, errors).
    pub last_second: Option<SecondStats>,
    /// Totals so far.
    pub totals: Totals,
    /// Scheduled requests in flight now (including those waiting for a connection); 0 at
    /// maximum rate, where each worker always has exactly one.
    pub in_flight: usize,
}

/// A validated run, ready to start; subscribe to [`Runner::live`] before calling [`Runner::run`].
#[derive(Debug)]
pub struct Runner {
    config: RunConfig,
    base: Uri,
    live: watch::Sender<LiveStats>,
}

/// Starts a validated run and waits for its report; `shutdown` ends it early (the report says so).
pub async fn run(
    config: RunConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Report, ConfigError> {
    Ok(Runner::new(config)?.run(shutdown).await)
}

struct Shared {
    endpoint: Endpoint,
    /// Where request tasks return reusable connections to the dispatcher's pool.
    returner: ConnectionReturn,
    timeout: Duration,
    start: Instant,
    events: mpsc::UnboundedSender<Event>,
    in_flight: AtomicUsize,
}

impl Shared {
    fn second_of(&self, at: Instant) -> u32 {
        u32::try_from(at.saturating_duration_since(self.start).as_secs()).unwrap_or(u32::MAX)
    }
}

impl Runner {
    /// Validates `config`; every problem is reported at once.
    pub fn new(config: RunConfig) -> Result<Self, ConfigError> {
        let base = config.validate()?;
        let live = watch::Sender::new(LiveStats {
            planned_secs: config.load.duration_secs(),
            ..LiveStats::default()
        });
        Ok(Self { config, base, live })
    }

    /// A receiver of live per-second stats.
    pub fn live(&self) -> watch::Receiver<LiveStats> {
        self.live.subscribe()
    }

    /// Runs the load to its end (schedule over, request cap reached, or `shutdown` resolved).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Report {
        let config = &self.config;
        let timeout = config.timeout.0;
        let (events, rx) = mpsc::unbounded_channel();
        let start = clock::now();
        let pool = ConnectionPool::new(config.connections);
        let shared = Arc::new(Shared {
            endpoint: Endpoint::from_base(&self.base),
            returner: pool.returner(),
            timeout,
            start,
            events,
            in_flight: AtomicUsize::new(0),
        });
        let closed_loop = matches!(config.load, Load::Max { .. });
        let collector = tokio::spawn(collect(
            rx,
            Recorder::new(closed_loop),
            start,
            Arc::downgrade(&shared),
            self.live.clone(),
        ));
        let mut shutdown = std::pin::pin!(shutdown);
        let outcome = match &config.load {
            Load::Schedule(schedule) => {
                dispatch_open(
                    config,
                    &self.base,
                    schedule,
                    &shared,
                    pool,
                    shutdown.as_mut(),
                )
                .await
            }
            Load::Max { duration } => {
                dispatch_max(config, &self.base, duration.0, &shared, shutdown.as_mut()).await
            }
        };
        let dispatch_secs = clock::since(start).as_secs_f64();
        // Every request carries its own timeout, so the drain is bounded.
        let drain_deadline = clock::now() + timeout + Duration::from_secs(1);
        while shared.in_flight.load(Ordering::Acquire) > 0 && clock::now() < drain_deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let total_secs = clock::since(start).as_secs_f64();
        // The collector ends once the last sender (held through `shared`) is gone.
        drop(shared);
        finish(collector, config, outcome, dispatch_secs, total_secs).await
    }
}

async fn finish(
    collector: tokio::task::JoinHandle<Recorder>,
    config: &RunConfig,
    outcome: DispatchEnd,
    dispatch_secs: f64,
    total_secs: f64,
) -> Report {
    let recorder = collector
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let seconds = total_secs.ceil() as u32;
    let (timeline, totals, overall) = recorder.finish(seconds);
    let measured_secs = match outcome {
        DispatchEnd::Completed => config.load.duration_secs(),
        DispatchEnd::Interrupted | DispatchEnd::Capped => dispatch_secs,
    };
    Report::build(
        RunFacts {
            config,
            measured_secs,
            total_secs,
            interrupted: outcome == DispatchEnd::Interrupted,
            capped: outcome == DispatchEnd::Capped,
        },
        timeline,
        totals,
        &overall,
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DispatchEnd {
    Completed,
    Interrupted,
    Capped,
}

/// Intended-second counters of the dispatcher, flushed to the collector as one event per second.
#[derive(Default)]
struct SecondCounts {
    second: u32,
    offered: u64,
    sent: u64,
    dropped: u64,
    late: u64,
}

impl SecondCounts {
    fn flush(&mut self, events: &mpsc::UnboundedSender<Event>, next: u32) {
        if self.offered > 0 {
            let _ = events.send(Event::Dispatched {
                second: self.second,
                offered: self.offered,
                sent: self.sent,
                dropped: self.dropped,
                late: self.late,
            });
        }
        *self = SecondCounts {
            second: next,
            ..SecondCounts::default()
        };
    }
}

async fn dispatch_open(
    config: &RunConfig,
    base: &Uri,
    schedule: &Schedule,
    shared: &Arc<Shared>,
    mut pool: ConnectionPool,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> DispatchEnd {
    let mut generator = RequestGenerator::new(&config.mix, base, config.seed);
    let mut counts = SecondCounts::default();
    // Requests due while every allowed connection is busy, oldest first. They count as in
    // flight, and their latency still runs from the intended time.
    let mut waiting: VecDeque<(Instant, PreparedRequest)> = VecDeque::new();
    let mut sent_total = 0u64;
    let mut end = DispatchEnd::Completed;
    'schedule: for (n, offset) in schedule.pacer().enumerate() {
        if sent_total >= config.max_requests {
            end = DispatchEnd::Capped;
            break;
        }
        let intended = shared.start + Duration::from_secs_f64(offset);
        loop {
            serve_waiting(&mut waiting, &mut pool, shared, &mut counts);
            if intended <= clock::now() {
                break;
            }
            tokio::select! {
                biased;
                () = shutdown.as_mut() => { end = DispatchEnd::Interrupted; break 'schedule; }
                () = pool.wait_for_return(), if !waiting.is_empty() => {}
                () = tokio::time::sleep_until(intended) => {}
            }
        }
        if n % 256 == 0 && shutdown.as_mut().now_or_never().is_some() {
            end = DispatchEnd::Interrupted;
            break;
        }
        let second = offset as u32;
        if second != counts.second {
            counts.flush(&shared.events, second);
        }
        counts.offered += 1;
        if shared.in_flight.load(Ordering::Acquire) >= config.concurrency {
            counts.dropped += 1;
            continue;
        }
        counts.sent += 1;
        sent_total += 1;
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        waiting.push_back((intended, generator.next_request()));
        serve_waiting(&mut waiting, &mut pool, shared, &mut counts);
    }
    // The schedule is over: queued requests still get a connection, within one timeout.
    let deadline = clock::now() + shared.timeout;
    while !waiting.is_empty() && clock::now() < deadline {
        tokio::select! {
            () = pool.wait_for_return() => {}
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        serve_waiting(&mut waiting, &mut pool, shared, &mut counts);
    }
    for (intended, _) in waiting.drain(..) {
        let now = clock::now();
        let _ = shared.events.send(Event::Done {
            second: shared.second_of(now),
            latency_us: micros(now.saturating_duration_since(intended)),
            outcome: Outcome::Failed(ErrorClass::Timeout),
        });
        shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
    let next = counts.second;
    counts.flush(&shared.events, next);
    end
}

/// Starts queued requests while connections are available.
fn serve_waiting(
    waiting: &mut VecDeque<(Instant, PreparedRequest)>,
    pool: &mut ConnectionPool,
    shared: &Arc<Shared>,
    counts: &mut SecondCounts,
) {
    while !waiting.is_empty() {
        let conn = match pool.lease() {
            Lease::Idle(conn) => Some(conn),
            Lease::Open => None,
            Lease::Wait => return,
        };
        let Some((intended, request)) = waiting.pop_front() else {
            return;
        };
        if clock::now().saturating_duration_since(intended) > LATE_AFTER {
            counts.late += 1;
        }
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            let (outcome, conn) =
                client::send(&shared.endpoint, conn, request, shared.timeout).await;
            let done = clock::now();
            shared.returner.give_back(conn);
            let _ = shared.events.send(Event::Done {
                second: shared.second_of(done),
                latency_us: micros(done.saturating_duration_since(intended)),
                outcome,
            });
            shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn dispatch_max(
    config: &RunConfig,
    base: &Uri,
    duration: Duration,
    shared: &Arc<Shared>,
    shutdown: Pin<&mut impl Future<Output = ()>>,
) -> DispatchEnd {
    let deadline = shared.start + duration;
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    // One single-threaded runtime per core, each with its share of workers: a worker and its
    // connection stay on one thread, so no wake-up crosses threads on the hot path.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, config.concurrency.max(1));
    let mut lanes: Vec<Vec<Pin<Box<dyn Future<Output = bool> + Send>>>> =
        (0..threads).map(|_| Vec::new()).collect();
    for w in 0..config.concurrency {
        let generator =
            RequestGenerator::new(&config.mix, base, config.seed.wrapping_add(w as u64));
        lanes[w % threads].push(Box::pin(max_worker(
            Arc::clone(shared),
            Arc::clone(&stop),
            Arc::clone(&issued),
            generator,
            deadline,
            config.max_requests,
        )));
    }
    let mut finished = Vec::with_capacity(threads);
    for (i, lane) in lanes.into_iter().enumerate() {
        let (done, finished_rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("loadgen-{i}"))
            .spawn(move || {
                let capped = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| {
                        rt.block_on(futures::future::join_all(lane))
                            .into_iter()
                            .any(|capped| capped)
                    });
                let _ = done.send(capped.unwrap_or(false));
            });
        if spawned.is_ok() {
            finished.push(finished_rx);
        }
    }
    let all = futures::future::join_all(finished);
    tokio::pin!(all);
    let (interrupted, results) = tokio::select! {
        results = &mut all => (false, results),
        () = shutdown => {
            stop.store(true, Ordering::Relaxed);
            (true, all.await)
        }
    };
    if interrupted {
        DispatchEnd::Interrupted
    } else if results.into_iter().any(|r| r.unwrap_or(false)) {
        DispatchEnd::Capped
    } else {
        DispatchEnd::Completed
    }
}

/// One closed-loop worker: sends back to back on its own connection until told to stop; returns
/// whether it stopped at the request cap.
async fn max_worker(
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicU64>,
    mut generator: RequestGenerator,
    deadline: Instant,
    max_requests: u64,
) -> bool {
    let mut conn = None;
    // Results go to the collector in batches: one message per many requests.
    let mut batch: Vec<Event> = Vec::with_capacity(WORKER_BATCH);
    let mut batch_second = 0;
    let flush = |batch: &mut Vec<Event>| {
        if !batch.is_empty() {
            let full = std::mem::replace(batch, Vec::with_capacity(WORKER_BATCH));
            let _ = shared.events.send(Event::Batch(full));
        }
    };
    let capped = loop {
        let sent_at = clock::now();
        if stop.load(Ordering::Relaxed) || sent_at >= deadline {
            break false;
        }
        if issued.fetch_add(1, Ordering::Relaxed) >= max_requests {
            break true;
        }
        let request = generator.next_request();
        let (outcome, back) =
            client::send(&shared.endpoint, conn.take(), request, shared.timeout).await;
        conn = back;
        let done = clock::now();
        let second = shared.second_of(done);
        if batch.len() >= WORKER_BATCH || second != batch_second {
            flush(&mut batch);
            batch_second = second;
        }
        batch.push(Event::Done {
            second,
            latency_us: micros(done.saturating_duration_since(sent_at)),
            outcome,
        });
    };
    flush(&mut batch);
    capped
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

async fn collect(
    mut rx: mpsc::UnboundedReceiver<Event>,
    mut recorder: Recorder,
    start: Instant,
    // Only a weak reference: the collector must not keep the event sender alive.
    shared: std::sync::Weak<Shared>,
    live: watch::Sender<LiveStats>,
) -> Recorder {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut batch = Vec::with_capacity(512);
    loop {
        tokio::select! {
            biased;
            _ = tick.tick() => {
                let elapsed = clock::since(start);
                let closable = elapsed.saturating_sub(CLOSE_GRACE).as_secs();
                let closed = recorder
                    .close_before(u32::try_from(closable).unwrap_or(u32::MAX))
                    .cloned();
                let in_flight = shared
                    .upgrade()
                    .map_or(0, |s| s.in_flight.load(Ordering::Relaxed));
                live.send_modify(|l| {
                    l.elapsed_secs = elapsed.as_secs_f64();
                    l.in_flight = in_flight;
                    l.totals = recorder.totals().clone();
                    if closed.is_some() {
                        l.last_second = closed;
                    }
                });
            }
            received = rx.recv_many(&mut batch, 512) => {
                if received == 0 {
                    break;
                }
                for event in batch.drain(..) {
                    recorder.record(event);
                }
            }
        }
    }
    recorder
}
