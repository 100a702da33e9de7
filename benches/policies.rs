//! Many policies in one process: real `PolicyLoop`s, the engine and the status tracker, with
//! fake sources and fake targets and a counting status sink, at a 15 s interval.
//!
//! For each policy count (default 500, 1000, 2500, 5000) a fresh child process starts every
//! loop at once (as `tidescale run` does at startup), runs them for `BENCH_POLICIES_SECONDS`
//! (default 180), and reports: ticks done against ticks due (a missed tick is one a loop
//! should have taken by the end and did not), the longest gap between two ticks of one loop,
//! the average CPU over the run (utime + stime from /proc, in cores), resident memory at the
//! end and at its peak, and the status writes and events the sink received.
//!
//! Each source reads a slow wave (period 10 min, its own phase) with ±10 % noise around 300
//! per policy, so every policy rescales now and then between 2 and 5 replicas: decisions,
//! status writes and events all happen, as in a real cluster.
//!
//! `cargo bench --bench policies`; `BENCH_POLICIES_COUNTS=500,5000` picks the counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use tidescale::clock::{self, Instant};
use tidescale::control::runner::drive;
use tidescale::control::{
    CountingRecorder, CountingSink, LoopOptions, LoopSource, PolicyKey, PolicyLoop, PolicyRef,
    StatusTracker,
};
use tidescale::engine::Replicas;
use tidescale::metric::{MetricId, Reading};
use tidescale::source::{MetricSource, SourceError};
use tidescale::spec::ScalingPolicySpec;
use tidescale::target::{FakeTarget, ScaleTarget, TargetError, TargetStatus};

const INTERVAL: Duration = Duration::from_secs(15);

/// A wave around 300 with its own phase and ±10 % noise.
struct Wave {
    id: MetricId,
    phase: f64,
    origin: Instant,
    seed: AtomicU64,
}

impl MetricSource for Wave {
    fn id(&self) -> &MetricId {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "wave"
    }

    fn read(&self) -> BoxFuture<'_, Result<Reading, SourceError>> {
        let t = clock::since(self.origin).as_secs_f64();
        // SplitMix64 step: cheap, deterministic noise per source.
        let mut z = self
            .seed
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let u = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
        let wave = 1.0 + 0.5 * (std::f64::consts::TAU * t / 600.0 + self.phase).sin();
        let v = 300.0 * wave * (0.9 + 0.2 * u);
        Box::pin(async move { Ok(Reading::value(v, SystemTime::UNIX_EPOCH, "wave")) })
    }
}

/// A fake target that notes the longest gap between two status reads (one per tick).
struct Timed {
    inner: FakeTarget,
    last: std::sync::Mutex<Option<Instant>>,
    longest_gap_us: Arc<AtomicU64>,
}

impl ScaleTarget for Timed {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn status(&self) -> BoxFuture<'_, Result<TargetStatus, TargetError>> {
        let now = clock::now();
        if let Some(prev) = self.last.lock().unwrap().replace(now) {
            let gap = now.duration_since(prev).as_micros() as u64;
            self.longest_gap_us.fetch_max(gap, Ordering::Relaxed);
        }
        self.inner.status()
    }

    fn scale_to(&self, replicas: Replicas) -> BoxFuture<'_, Result<(), TargetError>> {
        self.inner.scale_to(replicas)
    }
}

const SPEC: &str = r#"
targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
minReplicas: 1
maxReplicas: 20
interval: 15s
metrics:
- name: rps
  prometheus: {query: "sum(rate(http_requests_total[1m]))"}
  target: {type: AverageValue, averageValue: 100}
behavior:
  scaleDown: {stabilizationWindowSeconds: 60}
"#;

/// CPU seconds (user + system) of this process, from /proc (100 ticks per second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// (VmRSS, VmHWM) in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

// Long: one measured run, set up, timed and reported in order.
fn child(n: usize, seconds: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let spec: ScalingPolicySpec = serde_saphyr::from_str(SPEC).unwrap();
        let policy = spec.validate().unwrap();
        let recorder = Arc::new(CountingRecorder::default());
        let sink = Arc::new(CountingSink::default());
        let gap = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let origin = clock::now();
        let mut tasks = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("bench/p{i}");
            let source = Arc::new(Wave {
                id: MetricId::new(name.clone(), "rps"),
                phase: i as f64 * 0.618,
                origin,
                seed: AtomicU64::new(i as u64),
            });
            let target = Arc::new(Timed {
                inner: FakeTarget::new(&format!("Deployment/{name}"), Replicas(3)),
                last: std::sync::Mutex::new(None),
                longest_gap_us: gap.clone(),
            });
            let sources = vec![LoopSource { name: "rps".into(), resource: None, source }];
            let lp = PolicyLoop::from_sources(policy.clone(), sources, target, None, recorder.clone(), LoopOptions::every(&name, INTERVAL)).unwrap();
            let targets = [("rps".to_string(), "100/pod".to_string())].into();
            let kinds = [("rps".to_string(), "External")].into();
            let tracker = StatusTracker::new(Some(1), targets, kinds, None, Duration::from_secs(30));
            let key = PolicyKey { namespace: "bench".into(), name: format!("p{i}") };
            let policy_ref = PolicyRef { key, uid: format!("uid-{i}") };
            tasks.push(tokio::spawn(drive(lp, tracker, sink.clone(), policy_ref, stop_rx.clone())));
        }
        let spawned = clock::since(origin);
        // Measure from after the first burst of ticks.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu0, t0) = (cpu_seconds(), clock::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (cpu1, wall) = (cpu_seconds(), clock::since(t0).as_secs_f64());
        let (rss, hwm) = rss_mib();
        let ran = clock::since(origin);
        let decisions = recorder.counts().decisions;
        let due = n as u64 * (1 + (ran.saturating_sub(spawned).as_secs() / INTERVAL.as_secs()));
        let (writes, events) = sink.counts();
        stop_tx.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        println!(
            "{{\"n\":{n},\"due\":{due},\"done\":{decisions},\"gap_s\":{:.3},\"cores\":{:.4},\"rss\":{rss:.1},\"hwm\":{hwm:.1},\"writes\":{writes},\"events\":{events},\"seconds\":{wall:.0}}}",
            gap.load(Ordering::Relaxed) as f64 / 1e6,
            (cpu1 - cpu0) / wall,
        );
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args[i + 1].parse().unwrap(), args[i + 2].parse().unwrap());
        return;
    }
    let counts: Vec<usize> = std::env::var("BENCH_POLICIES_COUNTS")
        .unwrap_or_else(|_| "500,1000,2500,5000".into())
        .split(',')
        .map(|c| c.trim().parse().expect("BENCH_POLICIES_COUNTS: numbers"))
        .collect();
    let seconds: u64 = std::env::var("BENCH_POLICIES_SECONDS").map_or(180, |s| s.parse().unwrap());
    println!(
        "policies: {seconds} s per count, interval 15 s, fake sources and targets, counting sink"
    );
    println!(
        "| policies | ticks due | ticks done | missed | longest gap | CPU (cores) | CPU per 1,000 | RSS end | RSS peak | status writes | events |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for n in counts {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--child", &n.to_string(), &seconds.to_string()])
            .output()
            .expect("the child runs");
        assert!(
            out.status.success(),
            "child {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).expect("the child's JSON line");
        let (due, done) = (v["due"].as_u64().unwrap(), v["done"].as_u64().unwrap());
        let cores = v["cores"].as_f64().unwrap();
        println!(
            "| {n} | {due} | {done} | {} | {:.2} s | {cores:.3} | {:.3} | {:.0} MiB | {:.0} MiB | {} | {} |",
            due.saturating_sub(done),
            v["gap_s"].as_f64().unwrap(),
            cores * 1000.0 / n as f64,
            v["rss"].as_f64().unwrap(),
            v["hwm"].as_f64().unwrap(),
            v["writes"],
            v["events"],
        );
    }
}
