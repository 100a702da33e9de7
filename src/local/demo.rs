//! `tidescale demo`: a pool of demo-service processes behind the local balancer, driven by the
//! load generator and scaled by a policy loop, with a live view and a report of what happened.
//!
//! With `--compare hpa-defaults` the same traffic is played a second time under the native
//! HPA's timing and default behaviour (15 s evaluations on 15 s-old metrics, `behavior`
//! defaults, tolerance 0.1), with the same metrics and targets, and the two are put side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tidescale_loadgen::{
    HumanDuration, LiveStats, Load, Mix, MixEntry, RequestKind, RunConfig, Runner, Schedule,
    Segment,
};

use super::balancer::{self, Balancer, Strategy};
use super::live::LiveView;
use super::redis::PrivateRedis;
use super::report::{self, RunResult, Sample, SummaryError};
use crate::clock;
use crate::control::{CountingRecorder, LoopOptions, PolicyLoop, TickRecord};
use crate::engine::{Decision, Policy, Replicas, Requests};
use crate::metric::DurationSpec;
use crate::source::BuildContext;
use crate::spec::{BehaviorSpec, ScalingPolicySpec, ScalingRulesSpec, SpecError, load_policy_yaml};
use crate::store::SampleStore;
use crate::target::{PoolConfig, ProcessPool, ScaleTarget};

/// The embedded default policy.
pub const DEFAULT_POLICY: &str = include_str!("default-policy.yaml");

/// Rate outside bursts; one replica (8 workers × 50 ms) serves 160 requests/s at most.
pub const BASE_RPS: f64 = 80.0;
/// Rate at the top of a burst: about five replicas' worth at the policy's 100 requests/s each.
pub const PEAK_RPS: f64 = 480.0;
/// Worker time of each `/work` request in the default traffic.
pub const WORK_MS: u64 = 50;

/// The traffic shapes of `--profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Base load, a burst to the peak for a third of the run, base again.
    Spike,
    /// A slow ramp from base to peak and back.
    Ramp,
    /// Two sine cycles between base and peak.
    Sine,
    /// ×4 steps: base and four times base, alternating every 20 s.
    Steps,
    /// A recorded `seconds,rps` CSV curve (`--trace FILE`).
    Trace,
}

/// What to compare the run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compare {
    /// The native HPA's default timing and behaviour on the same metrics.
    HpaDefaults,
}

/// Everything `tidescale demo` needs, as plain data.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// The traffic shape.
    pub profile: Profile,
    /// The trace file for `Profile::Trace`.
    pub trace: Option<PathBuf>,
    /// Length of each run.
    pub duration: Duration,
    /// Rate outside bursts.
    pub base_rps: f64,
    /// Rate at the top of bursts.
    pub peak_rps: f64,
    /// A policy file instead of the embedded one.
    pub policy: Option<PathBuf>,
    /// Balancing strategy.
    pub strategy: Strategy,
    /// Redis URL; `None` starts a private redis-server when one is on PATH.
    pub redis: Option<String>,
    /// Where the report goes.
    pub report: PathBuf,
    /// A second run to compare with.
    pub compare: Option<Compare>,
    /// Seed of the request mix.
    pub seed: u64,
    /// The p95 latency objective for the report.
    pub slo: Duration,
    /// Redraw a live status block while running.
    pub live: bool,
    /// The program started for each replica (default: this binary's `serve-demo`).
    pub program: Option<PathBuf>,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The policy file could not be read.
    #[error("cannot read policy {path}: {source}")]
    ReadPolicy {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The policy is invalid.
    #[error("invalid policy: {0}")]
    Policy(#[from] SpecError),
    /// The policy does not target a local process pool.
    #[error(
        "the demo scales a local pool: the policy's targetRef.kind must be ProcessPool, not {0}"
    )]
    NotAPool(String),
    /// The traffic could not be set up.
    #[error("traffic: {0}")]
    Traffic(String),
    /// Something local failed (ports, processes, files).
    #[error("{what}: {why}")]
    Local {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        why: String,
    },
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] SummaryError),
}

fn local(what: &'static str) -> impl FnOnce(String) -> DemoError {
    move |why| DemoError::Local { what, why }
}

/// The traffic schedule for a profile over `duration`.
pub fn schedule(config: &DemoConfig) -> Result<Schedule, DemoError> {
    let d = config.duration.as_secs_f64();
    let (base, peak) = (config.base_rps, config.peak_rps);
    let secs = |s: f64| HumanDuration(Duration::from_secs_f64(s.max(0.001)));
    let segments = match config.profile {
        Profile::Spike => vec![Segment::Spike {
            base,
            peak,
            at: secs(0.2 * d),
            length: secs(d / 3.0),
            duration: secs(d),
        }],
        Profile::Ramp => vec![
            Segment::Ramp {
                from: base,
                to: peak,
                duration: secs(d / 2.0),
            },
            Segment::Ramp {
                from: peak,
                to: base,
                duration: secs(d / 2.0),
            },
        ],
        Profile::Sine => vec![Segment::Sine {
            min: base,
            max: peak,
            period: secs(d / 2.0),
            duration: secs(d),
        }],
        Profile::Steps => {
            let cycles = ((d / 40.0).floor() as usize).max(1);
            let half = d / (2.0 * cycles as f64);
            (0..cycles)
                .flat_map(|_| {
                    [
                        Segment::Constant {
                            rps: base,
                            duration: secs(half),
                        },
                        Segment::Constant {
                            rps: base * 4.0,
                            duration: secs(half),
                        },
                    ]
                })
                .collect()
        }
        Profile::Trace => {
            let file = config
                .trace
                .clone()
                .ok_or_else(|| DemoError::Traffic("--profile trace needs --trace FILE".into()))?;
            vec![Segment::Trace {
                file: Some(file),
                points: Vec::new(),
            }]
        }
    };
    let mut schedule = Schedule { segments };
    schedule
        .load_traces(Path::new("."))
        .map_err(|e| DemoError::Traffic(e.to_string()))?;
    schedule
        .validate()
        .map_err(|e| DemoError::Traffic(e.to_string()))?;
    Ok(schedule)
}

/// The default request mix: mostly `/work` (fixed capacity per replica), some key-value calls.
pub fn mix() -> Mix {
    Mix {
        entries: vec![
            MixEntry {
                weight: 18,
                request: RequestKind::Template {
                    method: "GET".into(),
                    path: format!("/work?ms={WORK_MS}"),
                    body: None,
                },
            },
            MixEntry {
                weight: 1,
                request: RequestKind::GetKv,
            },
            MixEntry {
                weight: 1,
                request: RequestKind::PutKv { value_bytes: 64 },
            },
        ],
        keys: 200,
    }
}

/// Loads the policy (the file's or the embedded one) and checks it targets a pool.
pub fn load_policy(config: &DemoConfig) -> Result<(ScalingPolicySpec, Policy), DemoError> {
    let text = match &config.policy {
        Some(path) => std::fs::read_to_string(path).map_err(|source| DemoError::ReadPolicy {
            path: path.clone(),
            source,
        })?,
        None => DEFAULT_POLICY.to_string(),
    };
    let (spec, policy) = load_policy_yaml(&text)?;
    if spec.target_ref.kind != "ProcessPool" {
        return Err(DemoError::NotAPool(spec.target_ref.kind.clone()));
    }
    Ok((spec, policy))
}

/// The same policy under the native HPA's defaults: 15 s interval, default behaviour, tolerance 0.1.
pub fn hpa_defaults(spec: &ScalingPolicySpec) -> Result<(ScalingPolicySpec, Policy), DemoError> {
    let mut spec = spec.clone();
    spec.interval = Some(DurationSpec(Duration::from_secs(15)));
    spec.behavior = Some(hpa_default_behavior());
    let policy = spec.validate()?;
    Ok((spec, policy))
}

/// The HPA's `behavior` defaults written out (§4.8): scale up by 4 pods or 100 % per 15 s,
/// scale down after a 300 s window by up to 100 % per 15 s, tolerance 0.1 each way, no cooldown.
fn hpa_default_behavior() -> BehaviorSpec {
    BehaviorSpec {
        scale_up: Some(ScalingRulesSpec {
            stabilization_window_seconds: Some(0),
            tolerance: Some(0.1),
            ..ScalingRulesSpec::default()
        }),
        scale_down: Some(ScalingRulesSpec {
            stabilization_window_seconds: Some(300),
            tolerance: Some(0.1),
            ..ScalingRulesSpec::default()
        }),
        max_reversals: None,
    }
}

/// How a run reads and decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// Read and decide every policy interval, on fresh readings (tidescale).
    Policy,
    /// Decide every policy interval on readings a metrics pipeline published at that
    /// resolution (the native HPA on metrics-server or an adapter).
    MetricsPipeline,
}

/// How often a run of `spec` reads and decides under `cadence`.
pub fn loop_options(spec: &ScalingPolicySpec, cadence: Cadence) -> LoopOptions {
    let interval = spec.interval.map(|d| d.0).unwrap_or(Duration::from_secs(5));
    match cadence {
        Cadence::Policy => LoopOptions::every(&spec.target_ref.name, interval),
        // The HPA decides every `interval` on what a metrics pipeline published at that
        // resolution, while the metrics themselves are collected continuously.
        Cadence::MetricsPipeline => LoopOptions {
            interval: Duration::from_secs(1),
            evaluate_every: interval.as_secs().max(1) as u32,
            resolution: interval,
            ..LoopOptions::every(&spec.target_ref.name, interval)
        },
    }
}

/// One run of the whole loop; returns what happened.
///
/// The stages: start the pool and wait for its first replicas, put the balancer in front,
/// build the policy loop, then play the traffic while a sampler watches the pool; finally stop
/// everything in reverse order and collect the report's material.
pub async fn run_once(
    config: &DemoConfig,
    label: &str,
    spec: &ScalingPolicySpec,
    policy: Policy,
    cadence: Cadence,
    redis: Option<&str>,
) -> Result<RunResult, DemoError> {
    let pool = start_pool(config, spec, redis).await?;
    let front = Front::start(config.strategy, &pool).await?;
    let (rec_tx, rec_rx) = tokio::sync::mpsc::unbounded_channel();
    let policy_loop = build_loop(spec, policy, cadence, &pool)?.with_records(rec_tx);

    let schedule = schedule(config)?;
    let mut run = RunConfig::new(front.url.clone(), Load::Schedule(schedule.clone()));
    run.mix = mix();
    run.concurrency = 4000;
    run.timeout = HumanDuration(Duration::from_secs(10));
    run.seed = config.seed;
    let runner = Runner::new(run).map_err(|e| DemoError::Traffic(e.to_string()))?;

    let origin = clock::now();
    let (loop_stop, loop_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let loop_task = tokio::spawn(policy_loop.run(async {
        let _ = loop_stop_rx.await;
    }));
    let view = config.live.then(|| LiveView::new(label));
    let sampler = Sampler::start(pool.clone(), origin, rec_rx, runner.live(), view);

    let load = runner.run(std::future::pending::<()>()).await;

    let _ = loop_stop.send(());
    let _ = loop_task.await;
    let (samples, records) = sampler.stop().await?;
    let events = pool
        .take_events()
        .into_iter()
        .map(|e| report::PoolEventRecord {
            t: e.at.saturating_duration_since(origin).as_secs_f64(),
            member: e.member,
            kind: format!("{:?}", e.kind),
        })
        .collect();
    front.stop().await;
    match Arc::try_unwrap(pool) {
        Ok(pool) => pool.shutdown().await,
        Err(pool) => {
            let _ = pool.scale_to(Replicas(0)).await;
        }
    }
    Ok(RunResult {
        label: label.to_string(),
        schedule,
        slo_ms: config.slo.as_secs_f64() * 1000.0,
        records,
        samples,
        events,
        load,
    })
}

/// Starts the pool of `serve-demo` replicas at the policy's minimum and waits (20 s at most)
/// until they are ready.
async fn start_pool(
    config: &DemoConfig,
    spec: &ScalingPolicySpec,
    redis: Option<&str>,
) -> Result<Arc<ProcessPool>, DemoError> {
    let program = match &config.program {
        Some(p) => p.clone(),
        None => {
            std::env::current_exe().map_err(|e| local("finding this executable")(e.to_string()))?
        }
    };
    let mut args: Vec<String> = [
        "serve-demo",
        "--listen",
        "127.0.0.1:0",
        "--workers",
        "8",
        "--queue",
        "512",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["--shutdown-grace", "10", "--log-format", "json"].map(String::from));
    if let Some(url) = redis {
        args.extend(["--redis-url".to_string(), url.to_string()]);
    }
    let mut pool_config = PoolConfig::new(&spec.target_ref.name, program, args);
    pool_config.env.push(("RUST_LOG".into(), "warn".into()));
    pool_config.max_members = (spec.max_replicas.max(1) as usize).min(64);
    let pool = Arc::new(ProcessPool::start(pool_config));
    let initial = Replicas(spec.min_replicas.max(1));
    pool.scale_to(initial)
        .await
        .map_err(|e| local("starting the pool")(e.to_string()))?;
    let mut endpoints = pool.endpoints();
    let enough = endpoints.wait_for(|e| e.len() >= initial.get() as usize);
    match tokio::time::timeout(Duration::from_secs(20), enough).await {
        Ok(Ok(_)) => Ok(pool),
        _ => Err(local("starting the pool")(
            "no replica became ready within 20 s".into(),
        )),
    }
}

/// The balancer in front of the pool, serving on a loopback port until stopped.
struct Front {
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Front {
    async fn start(strategy: Strategy, pool: &ProcessPool) -> Result<Self, DemoError> {
        let lb = Balancer::new(strategy, pool.endpoints());
        let bind = |e: std::io::Error| local("binding the balancer")(e.to_string());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(bind)?;
        let url = format!("http://{}", listener.local_addr().map_err(bind)?);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(balancer::serve(listener, lb, async {
            let _ = stop_rx.await;
        }));
        Ok(Self { url, stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The policy loop over the pool, with the demo's cadence and a store like the adapter's.
fn build_loop(
    spec: &ScalingPolicySpec,
    policy: Policy,
    cadence: Cadence,
    pool: &Arc<ProcessPool>,
) -> Result<PolicyLoop, DemoError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .map_err(|e| local("building the HTTP client")(e.to_string()))?;
    let ctx = BuildContext::new(crate::metric::MetricId::new("demo", ""), http);
    // A local replica may use one core: Utilization targets read against that.
    let options = LoopOptions {
        default_requests: Requests {
            cpu: Some(1000),
            memory: None,
        },
        ..loop_options(spec, cadence)
    };
    let target: Arc<dyn ScaleTarget> = pool.clone();
    // The store keeps the latest reading of every metric, as the adapter would serve it.
    let store = SampleStore::new(64);
    // Nobody scrapes the demo's loop: its decisions go to the report instead.
    let recorder = Arc::new(CountingRecorder::default());
    PolicyLoop::new(spec, policy, target, ctx, Some(&store), recorder, options)
        .map_err(|e| local("building the policy loop")(e.to_string()))
}

type Records = tokio::sync::mpsc::UnboundedReceiver<(TickRecord, Decision)>;

/// Samples the pool once a second, collects the loop's records and draws the live view.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<(Vec<Sample>, Vec<TickRecord>)>,
}

impl Sampler {
    fn start(
        pool: Arc<ProcessPool>,
        origin: clock::Instant,
        mut rec_rx: Records,
        live_stats: tokio::sync::watch::Receiver<LiveStats>,
        mut view: Option<LiveView>,
    ) -> Self {
        let (stop, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut records = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = tick.tick() => {}
                }
                while let Ok((record, _decision)) = rec_rx.try_recv() {
                    records.push(record);
                }
                if let Ok(status) = pool.status().await {
                    let sample = Sample {
                        t: clock::since(origin).as_secs_f64(),
                        desired: status.desired.get(),
                        running: status.running.get(),
                        ready: status.ready.get(),
                    };
                    if let Some(view) = view.as_mut() {
                        view.draw(&sample, &live_stats.borrow(), records.last());
                    }
                    samples.push(sample);
                }
            }
            while let Ok((record, _)) = rec_rx.try_recv() {
                records.push(record);
            }
            if let Some(view) = view.as_mut() {
                view.finish();
            }
            (samples, records)
        });
        Self { stop, task }
    }

    async fn stop(self) -> Result<(Vec<Sample>, Vec<TickRecord>), DemoError> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| local("sampling the pool")(e.to_string()))
    }
}

/// Runs the demo (and its comparison), writes the report, and returns the summary text.
pub async fn run(config: DemoConfig) -> Result<String, DemoError> {
    let (spec, policy) = load_policy(&config)?;
    let (redis, redis_note) = match &config.redis {
        Some(url) => (None, format!("store: Redis at {url}")),
        None => match PrivateRedis::start().await {
            Ok(Some(r)) => {
                let note = format!("store: private redis-server on {}", r.url());
                (Some(r), note)
            }
            Ok(None) => (None, "store: each replica's own memory (no redis-server on PATH; pass --redis URL to share state)".into()),
            Err(e) => return Err(local("starting redis-server")(e.to_string())),
        },
    };
    let redis_url = config
        .redis
        .clone()
        .or_else(|| redis.as_ref().map(PrivateRedis::url));
    eprintln!("tidescale demo: {redis_note}");
    let mut runs = vec![
        run_once(
            &config,
            "tidescale",
            &spec,
            policy,
            Cadence::Policy,
            redis_url.as_deref(),
        )
        .await?,
    ];
    if let Some(Compare::HpaDefaults) = config.compare {
        let (hspec, hpolicy) = hpa_defaults(&spec)?;
        eprintln!("tidescale demo: second run with the native HPA's defaults (15 s evaluations)");
        runs.push(
            run_once(
                &config,
                "hpa-defaults",
                &hspec,
                hpolicy,
                Cadence::MetricsPipeline,
                redis_url.as_deref(),
            )
            .await?,
        );
    }
    drop(redis);
    Ok(report::write(&config.report, &runs)?)
}
