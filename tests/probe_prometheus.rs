//! Cross-check: `tidescale probe --json` against a real Prometheus scraping the same real
//! demo-service processes. Rates and p50/p95/p99 must agree within 5 %.
//!
//! Needs `prometheus` on PATH (scripts/install-deps.sh installs it) and the demo binary built
//! next to the tidescale binary (`cargo build -p tidescale-demo`, which scripts/test.sh does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use std::sync::Arc;

use serde_json::Value;
use tidescale::clock::{self, Clock};
use tidescale::control::{CountingRecorder, LoopOptions, PolicyLoop, TickRecord};
use tidescale::engine::Replicas;
use tidescale::metric::{MetricId, unix_seconds};
use tidescale::source::BuildContext;
use tidescale::spec::load_policy_yaml;
use tidescale::target::FakeTarget;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WINDOW: &str = "30s";
const KV_ROUTE: &str = "/kv/{*key}";

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tidescale"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn demo_bin() -> PathBuf {
    let p = bin_dir().join("demo-service");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p tidescale-demo` before this test",
        p.display()
    );
    p
}

fn on_path(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH: install it with `apt-get install -y --no-install-recommends {name}` (scripts/install-deps.sh does)")
        })
}

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

async fn start_demo() -> (Guard, String) {
    let mut child = Command::new(demo_bin())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn demo-service");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("demo-service printed its URL in time")
        .unwrap()
        .expect("a first line");
    (Guard(child), url.trim().to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_prometheus(dir: &Path, targets: &[String]) -> (Guard, String) {
    let bin = on_path("prometheus");
    let hosts: Vec<String> = targets
        .iter()
        .map(|u| format!("'{}'", u.trim_start_matches("http://")))
        .collect();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         scrape_configs:\n  - job_name: demo\n    static_configs: [{{targets: [{}]}}]\n",
        hosts.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn prometheus");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = clock::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{url}/-/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(clock::now() < deadline, "prometheus not ready within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Guard(child), url)
}

/// A bounded traffic schedule: per 20 ms tick, 2 fast GETs to the first instance, 1 to the
/// second, and every 5th tick one CPU-burning `/load` of 2–90 ms, alternating instances.
async fn drive_traffic(a: String, b: String, duration: Duration) -> u64 {
    let http = reqwest::Client::new();
    for u in [&a, &b] {
        http.put(format!("{u}/kv/k"))
            .json(&serde_json::json!({"v": 1}))
            .send()
            .await
            .unwrap();
    }
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let end = clock::now() + duration;
    let loads = [2, 8, 20, 45, 90];
    let mut sent = 0u64;
    let mut n = 0usize;
    while clock::now() < end {
        tick.tick().await;
        let mut urls = vec![
            format!("{a}/kv/k"),
            format!("{a}/kv/k"),
            format!("{b}/kv/k"),
        ];
        if n.is_multiple_of(5) {
            let ms = loads[(n / 5) % loads.len()];
            let to = if (n / 5).is_multiple_of(2) { &a } else { &b };
            urls.push(format!("{to}/load?ms={ms}"));
        }
        for url in urls {
            let http = http.clone();
            tokio::spawn(async move {
                let _ = http.get(url).timeout(Duration::from_secs(5)).send().await;
            });
            sent += 1;
        }
        n += 1;
    }
    sent
}

async fn prom_query(
    http: &reqwest::Client,
    base: &str,
    query: &str,
    t: f64,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let url = reqwest::Url::parse_with_params(
        &format!("{base}/api/v1/query"),
        [("query", query.to_string()), ("time", format!("{t:.3}"))],
    )
    .unwrap();
    let v: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["status"], "success", "{query}: {v}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = serde_json::from_value(s["metric"].clone()).unwrap();
            let value = s["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

fn num_f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `tidescale probe --once --look 10s` on the rps metric, started after `delay`.
async fn probe_once_later(policy: PathBuf, delay: Duration) -> Value {
    tokio::time::sleep(delay).await;
    let out = Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .arg("probe")
        .arg(&policy)
        .args(["--metric", "rps", "--once", "--look", "10s", "--json"])
        .output()
        .await
        .expect("run tidescale probe --once");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A policy loop over the two pods, started 12 s into the traffic and run for its first 30 s
/// window (1 s interval, rps per pod against a target the steady load meets): the wall time
/// it started at, and its tick records.
async fn loop_first_window(a: String, b: String) -> (f64, Vec<TickRecord>) {
    tokio::time::sleep(Duration::from_secs(12)).await;
    let endpoints = format!("[\"{a}/metrics\", \"{b}/metrics\"]");
    let policy = format!(
        "targetRef: {{kind: ProcessPool, name: demo}}\nminReplicas: 1\nmaxReplicas: 10\ninterval: 1s\nmetrics:\n\
         - name: rps\n  scrape: {{endpoints: {endpoints}, metric: http_requests_total, labels: {{route: \"{KV_ROUTE}\"}}, aggregate: {{rate: {{window: {WINDOW}}}}}}}\n  target: {{type: AverageValue, averageValue: \"75\"}}\n"
    );
    let (spec, policy) = load_policy_yaml(&policy).expect("a valid policy");
    let host = |u: &str| u.trim_start_matches("http://").to_string();
    let target =
        Arc::new(FakeTarget::new("demo", Replicas(2)).with_pod_names(vec![host(&a), host(&b)]));
    let ctx = BuildContext::new(MetricId::new("local", ""), reqwest::Client::new());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let options = LoopOptions::every("first-window", Duration::from_secs(1));
    let recorder = Arc::new(CountingRecorder::default());
    let policy_loop = PolicyLoop::new(&spec, policy, target, ctx, None, recorder, options)
        .expect("the loop builds")
        .with_records(tx);
    let start_unix = unix_seconds(Clock::start().now().1);
    let window = Duration::from_secs(30);
    tokio::spawn(policy_loop.run(tokio::time::sleep(window)));
    let mut records = Vec::new();
    while let Some((record, _)) = rx.recv().await {
        records.push(record);
    }
    (start_unix, records)
}

fn num(v: &Value) -> f64 {
    v.as_str()
        .unwrap_or_else(|| panic!("not a number string: {v}"))
        .parse()
        .unwrap()
}

fn within(ours: f64, theirs: f64, what: &str) {
    let rel = (ours - theirs).abs() / theirs.abs();
    assert!(
        rel <= 0.05,
        "{what}: tidescale {ours} vs Prometheus {theirs} ({:.1} % apart)",
        rel * 100.0
    );
    eprintln!(
        "{what}: tidescale {ours:.6} vs Prometheus {theirs:.6} ({:.2} %)",
        rel * 100.0
    );
}

/// Waits until Prometheus has ingested a scrape after `last_t` (unix seconds), so questions
/// about the past get complete answers: polls the newest sample instead of sleeping.
async fn wait_ingested(http: &reqwest::Client, prom: &str, last_t: f64) {
    let mut ingested = false;
    for _ in 0..100 {
        let newest = prom_query(http, prom, "max(timestamp(up))", last_t + 30.0).await;
        if newest.first().is_some_and(|(_, ts)| *ts > last_t + 1.0) {
            ingested = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ingested,
        "Prometheus did not ingest a scrape after {last_t} within 10 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_reads_agree_with_prometheus() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (_a, a) = start_demo().await;
    let (_b, b) = start_demo().await;
    let (_prom, prom) = start_prometheus(dir.path(), &[a.clone(), b.clone()]).await;
    let endpoints = format!("[\"{a}/metrics\", \"{b}/metrics\"]");
    let policy = format!(
        "targetRef: {{kind: ProcessPool, name: demo}}\nmaxReplicas: 10\ninterval: 1s\nmetrics:\n\
         - name: rps\n  scrape: {{endpoints: {endpoints}, metric: http_requests_total, labels: {{route: \"{KV_ROUTE}\"}}, aggregate: {{rate: {{window: {WINDOW}}}}}}}\n  target: {{type: AverageValue, averageValue: \"100\"}}\n"
    );
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, &policy).unwrap();
    // A one-off probe started mid-run, and a policy loop started 12 s into the traffic.
    let once = tokio::spawn(probe_once_later(policy_path, Duration::from_secs(20)));
    let first_window = tokio::spawn(loop_first_window(a.clone(), b.clone()));
    let sent = drive_traffic(a.clone(), b.clone(), Duration::from_secs(44)).await;
    assert!(sent > 5_000, "only {sent} requests sent");
    let once = once.await.unwrap();
    let first_window = first_window.await.unwrap();
    let http = reqwest::Client::new();
    wait_ingested(&http, &prom, num_f(&once["t"]).max(first_window.0 + 30.0)).await;
    // `--once` samples for its look (10 s) and then reads the true rate, not a fraction of it.
    assert_eq!(once["metric"], "rps");
    assert!(num_f(&once["looked"]) >= 10.0, "{once}");
    // Compared with Prometheus over a window the traffic fully covers, the span it looked.
    let short_q = format!("sum(rate(http_requests_total{{route=\"{KV_ROUTE}\"}}[10s]))");
    let t = num_f(&once["t"]);
    let theirs = prom_query(&http, &prom, &short_q, t).await;
    within(
        num(&once["value"]),
        theirs[0].1,
        &format!("probe --once rate at {t:.0}"),
    );
    // A loop started under steady load: its first rate reading is true and it never proposes
    // a scale-down in its first window.
    let (start_unix, records) = first_window;
    let first = records
        .iter()
        .find_map(|r| match r.metrics.get("rps") {
            Some(Ok(v)) => Some((r.t, *v)),
            _ => None,
        })
        .expect("the loop read a rate in its first window");
    // Its first reading covers what the loop has seen (a quarter of the window at least):
    // Prometheus is asked about the same span.
    let at = start_unix + first.0;
    assert!(first.0 >= 7.0, "a first reading after {:.1} s", first.0);
    let span_q = format!(
        "sum(rate(http_requests_total{{route=\"{KV_ROUTE}\"}}[{}s]))",
        first.0.round()
    );
    let theirs = prom_query(&http, &prom, &span_q, at).await;
    within(
        first.1,
        theirs[0].1,
        &format!("the loop's first rate at {at:.0}"),
    );
    let downs: Vec<&str> = records
        .iter()
        .filter(|r| r.desired < r.current)
        .map(|r| r.line.as_str())
        .collect();
    assert!(
        downs.is_empty(),
        "scale-down in the first window: {downs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_agrees_with_prometheus() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (_a, a) = start_demo().await;
    let (_b, b) = start_demo().await;
    let (_prom, prom) = start_prometheus(dir.path(), &[a.clone(), b.clone()]).await;

    let endpoints = format!("[\"{a}/metrics\", \"{b}/metrics\"]");
    let quantile = |name: &str, q: f64| {
        format!(
            "    - name: {name}\n      scrape: {{endpoints: {endpoints}, metric: http_request_duration_seconds, aggregate: {{quantile: {{q: {q}, window: {WINDOW}}}}}}}\n      target: {{type: Value, value: 250m}}\n"
        )
    };
    let policy = format!(
        "apiVersion: tidescale.io/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: demo, namespace: local}}\nspec:\n  targetRef: {{kind: ProcessPool, name: demo}}\n  maxReplicas: 10\n  interval: 1s\n  metrics:\n\
         \x20   - name: rps\n      scrape: {{endpoints: {endpoints}, metric: http_requests_total, labels: {{route: \"{KV_ROUTE}\"}}, aggregate: {{rate: {{window: {WINDOW}}}}}}}\n      target: {{type: AverageValue, averageValue: \"100\"}}\n\
         {}{}{}\
         \x20   - name: prom_rps\n      prometheus: {{url: \"{prom}\", query: 'sum(rate(http_requests_total{{route=\"{KV_ROUTE}\"}}[{{{{ window }}}}]))', window: {WINDOW}}}\n      target: {{type: Value, value: \"100\"}}\n",
        quantile("p50", 0.5),
        quantile("p95", 0.95),
        quantile("p99", 0.99),
    );
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, &policy).unwrap();

    let mut probe = Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .arg("probe")
        .arg(&policy_path)
        .args(["--json", "--reads", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn tidescale probe");
    let stdout = probe.stdout.take().unwrap();
    let _probe = Guard(probe);
    let started = clock::now();
    let collect = tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut out = Vec::new();
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(70), lines.next_line()).await
        {
            out.push((clock::since(started), line));
            if clock::since(started) > Duration::from_secs(46) {
                break;
            }
        }
        out
    });
    let sent = drive_traffic(a.clone(), b.clone(), Duration::from_secs(46)).await;
    assert!(sent > 5_000, "only {sent} requests sent");
    let lines = collect.await.unwrap();

    // Reads taken once the traffic has been steady for a whole window.
    let mut steady: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (at, line) in &lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if *at >= Duration::from_secs(36) && *at <= Duration::from_secs(45) {
            assert!(v["error"].is_null(), "probe error in steady state: {v}");
            steady
                .entry(v["metric"].as_str().unwrap().to_string())
                .or_default()
                .push(v);
        }
    }
    for m in ["rps", "p50", "p95", "p99", "prom_rps"] {
        assert!(
            steady.get(m).is_some_and(|v| v.len() >= 3),
            "too few steady reads of {m}: {steady:?}"
        );
    }
    let http = reqwest::Client::new();
    let last_t = steady["rps"]
        .iter()
        .filter_map(|r| r["t"].as_f64())
        .fold(0.0, f64::max);
    wait_ingested(&http, &prom, last_t).await;
    let rate_q = format!("sum(rate(http_requests_total{{route=\"{KV_ROUTE}\"}}[{WINDOW}]))");
    let per_instance_q =
        format!("sum by (instance) (rate(http_requests_total{{route=\"{KV_ROUTE}\"}}[{WINDOW}]))");
    for r in steady["rps"].iter().step_by(3) {
        let t = r["t"].as_f64().unwrap();
        let theirs = prom_query(&http, &prom, &rate_q, t).await;
        within(num(&r["value"]), theirs[0].1, &format!("rate at {t:.0}"));
        for (labels, v) in prom_query(&http, &prom, &per_instance_q, t).await {
            let pod = &labels["instance"];
            within(num(&r["pods"][pod]), v, &format!("rate of {pod} at {t:.0}"));
        }
    }
    for (m, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99)] {
        let query = format!(
            "histogram_quantile({q}, sum by (le) (rate(http_request_duration_seconds_bucket[{WINDOW}])))"
        );
        for r in steady[m].iter().step_by(3) {
            let t = r["t"].as_f64().unwrap();
            let theirs = prom_query(&http, &prom, &query, t).await;
            within(num(&r["value"]), theirs[0].1, &format!("{m} at {t:.0}"));
        }
    }
    // The Prometheus source reads the same numbers through PromQL.
    for (ours, via_prom) in steady["rps"].iter().zip(&steady["prom_rps"]) {
        within(
            num(&ours["value"]),
            num(&via_prom["value"]),
            "scrape rate vs the prometheus source",
        );
        assert_eq!(via_prom["source"], "prometheus");
    }
}
