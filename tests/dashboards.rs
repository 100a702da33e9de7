//! The Grafana dashboards and the alert rules: the rules pass `promtool check rules` and their
//! unit tests; both dashboards type-check against Grafana's own schema (`@grafana/schema`,
//! installed by `scripts/install-kubectl.sh`); and every panel query, with its variables filled
//! in, returns data from a real Prometheus that scraped a real tidescale adapter, a real
//! `tidescale run` on the local control plane (three policies: one scaling on the pool's request
//! rate, one whose source is down, one whose target refuses the count) and a real pool of
//! demo-service replicas (two on a real Redis, one whose Redis is gone) under a minute of load. Each dashboard is then drawn from that Prometheus's data, one chart per panel, into
//! `target/tmp/dashboards/` (`UPDATE_DASHBOARD_PICTURES=1` also writes `docs/`).

mod cluster_support;
mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use deploy_support::{repo, run_ok, run_stdin, tool};
use serde_json::Value;
use tidescale::clock;
use tidescale_loadgen::chart::{Chart, Panel, Series, Style, render_png};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const DASHBOARDS: [&str; 2] = ["tidescale", "demo-service"];

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = repo().join("dashboards");
    let out = run_ok("promtool", &["check", "rules", &path(&dir, "alerts.yaml")]);
    assert!(out.contains("SUCCESS: 5 rules found"), "{out}");
    let out = run_ok(
        "promtool",
        &["test", "rules", &path(&dir, "alerts_test.yaml")],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// `tsc --noEmit --strict` on `const d = (<json>) satisfies Dashboard` for each file.
fn type_check(files: &[(&str, String)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        tool("grafana-schema/node_modules/typescript/package.json")
            .parent()
            .unwrap()
            .parent()
            .unwrap(),
        dir.path().join("node_modules"),
    )
    .unwrap();
    let mut names = vec![];
    for (name, json) in files {
        let ts = format!(
            "import type {{ Dashboard }} from \"@grafana/schema\";\n\
             const d = ({json}) satisfies Dashboard;\nexport default d;\n"
        );
        std::fs::write(dir.path().join(format!("{name}.ts")), ts).unwrap();
        names.push(format!("\"{name}.ts\""));
    }
    std::fs::write(
        dir.path().join("tsconfig.json"),
        format!(
            r#"{{"compilerOptions": {{"module": "nodenext", "moduleResolution": "nodenext",
              "strict": true, "noEmit": true, "skipLibCheck": true, "target": "es2022"}},
              "files": [{}]}}"#,
            names.join(", ")
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(tool("grafana-schema/node_modules/.bin/tsc"));
    cmd.arg("-p").arg(dir.path().join("tsconfig.json"));
    let (ok, out, err) = run_stdin(&mut cmd, None);
    (ok, format!("{out}{err}"))
}

#[test]
fn dashboards_type_check_against_grafana_schema() {
    let files: Vec<(&str, String)> = DASHBOARDS
        .iter()
        .map(|d| (*d, read(&format!("dashboards/{d}.json"))))
        .collect();
    let (ok, out) = type_check(&files);
    assert!(ok, "the dashboards do not type-check:\n{out}");
    // The check is live: a wrong type and an unknown key are refused.
    let (ok, out) = type_check(&[("bad", r#"{"title": 5, "colour": "red"}"#.into())]);
    assert!(!ok && out.contains("bad.ts"), "{out}");
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap()
}

#[test]
fn provisioning_points_at_prometheus_and_the_dashboards() {
    let ds: Value =
        serde_saphyr::from_str(&read("dashboards/provisioning/datasources/prometheus.yaml"))
            .unwrap();
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    let dash: Value =
        serde_saphyr::from_str(&read("dashboards/provisioning/dashboards/tidescale.yaml")).unwrap();
    assert_eq!(dash["providers"][0]["type"], "file");
    for d in DASHBOARDS {
        let v: Value = serde_json::from_str(&read(&format!("dashboards/{d}.json"))).unwrap();
        let vars = v["templating"]["list"].as_array().unwrap();
        assert!(
            vars.iter()
                .any(|x| x["type"] == "datasource" && x["query"] == "prometheus"),
            "{d}: no Prometheus datasource variable"
        );
        for p in panels(&v) {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{d}: {}",
                p["title"]
            );
        }
    }
}

/// The panels of a dashboard, rows left out.
fn panels(d: &Value) -> Vec<&Value> {
    d["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

/// A panel query with the dashboard's variables filled in as a user would pick them.
fn fill(expr: &str) -> String {
    expr.replace("$__rate_interval", "5s")
        .replace("$policy", ".*")
        .replace("$adapter_job", "tidescale-adapter")
        .replace("$instance", ".*")
        .replace("$job", "demo-service")
}

/// A child process, killed when dropped.
struct Process {
    _child: Child,
}

async fn demo_replica(redis_url: &str) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidescale"))
        .args([
            "serve-demo",
            "--listen",
            "127.0.0.1:0",
            "--redis-url",
            redis_url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("demo-service starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the bound URL in time")
        .unwrap()
        .expect("a first line");
    (Process { _child: child }, url.trim().to_string())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[String], log: &Path) -> Process {
    Process {
        _child: Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("starts"),
    }
}

/// The adapter serves the demo pool's request rate as an external metric, without
/// authentication (so Prometheus scrapes its `/metrics` with no credentials).
fn adapter(dir: &Path, replicas: &[String], port: u16) -> Process {
    let endpoints: Vec<String> = replicas
        .iter()
        .map(|u| format!("\"{u}/metrics\""))
        .collect();
    let config = format!(
        "interval: 1s\nexternalMetrics:\n- name: demo_requests_per_second\n  labels: {{app: demo-service}}\n  \
         scrape: {{endpoints: [{}], metric: http_requests_total, aggregate: {{rate: {{window: 5s}}}}}}\n",
        endpoints.join(", ")
    );
    std::fs::write(dir.join("adapter.yaml"), config).unwrap();
    let args: Vec<String> = [
        "adapter",
        "--config",
        &path(dir, "adapter.yaml"),
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--insecure-dev-mode",
    ]
    .map(String::from)
    .to_vec();
    spawn(
        env!("CARGO_BIN_EXE_tidescale"),
        &args,
        &dir.join("adapter.log"),
    )
}

async fn prometheus(
    dir: &Path,
    replicas: &[String],
    adapter_port: u16,
    run_port: u16,
) -> (Process, String) {
    let demo: Vec<String> = replicas
        .iter()
        .map(|u| format!("'{}'", u.trim_start_matches("http://")))
        .collect();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n\
             - job_name: demo-service\n  static_configs: [{{targets: [{}]}}]\n\
             - job_name: tidescale-adapter\n  scheme: https\n  tls_config: {{insecure_skip_verify: true}}\n  \
             static_configs: [{{targets: ['127.0.0.1:{adapter_port}']}}]\n\
             - job_name: tidescale\n  static_configs: [{{targets: ['127.0.0.1:{run_port}']}}]\n",
            demo.join(", ")
        ),
    )
    .unwrap();
    let port = free_port();
    let args = vec![
        format!("--config.file={}", path(dir, "prometheus.yml")),
        format!("--storage.tsdb.path={}", path(dir, "tsdb")),
        format!("--web.listen-address=127.0.0.1:{port}"),
    ];
    let p = spawn("prometheus", &args, &dir.join("prometheus.log"));
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = clock::now() + Duration::from_secs(30);
    while !http
        .get(format!("{url}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(clock::now() < deadline, "prometheus not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (p, url)
}

/// One minute of traffic on every replica, in three phases (light, heavy, medium), plus the
/// HPA-like reads of the adapter's external metric and a few misses on both.
async fn drive(replicas: Vec<String>, adapter_port: u16, seconds: u64) {
    let start = clock::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = vec![];
    for url in replicas {
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = 0u64;
            while clock::now() < end {
                i += 1;
                let key = format!("{url}/kv/k{}", i % 20);
                let req = match i % 25 {
                    0 => http.get(format!("{url}/missing")),
                    n if n.is_multiple_of(4) => http.put(&key).json(&serde_json::json!({"i": i})),
                    n if n.is_multiple_of(3) => http.get(format!("{url}/work?ms=20")),
                    _ => http.get(&key),
                };
                let _ = req.send().await;
                let phase = clock::since(start).as_secs() * 3 / seconds;
                let pause = [20, 4, 10][phase.min(2) as usize];
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }));
    }
    tasks.push(tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let base = format!("https://127.0.0.1:{adapter_port}/apis/external.metrics.k8s.io/v1beta1");
        let mut i = 0u64;
        while clock::now() < end {
            i += 1;
            let metric = if i.is_multiple_of(8) {
                "nope"
            } else {
                "demo_requests_per_second"
            };
            let _ = http
                .get(format!(
                    "{base}/namespaces/default/{metric}?labelSelector=app%3Ddemo-service"
                ))
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
}

/// `GET /api/v1/<kind>` with `params`; the `data.result` array.
async fn query(prom: &str, kind: &str, params: &[(&str, String)]) -> Vec<Value> {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let q: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let v: Value = reqwest::Client::new()
        .get(format!("{prom}/api/v1/{kind}?{}", q.join("&")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{params:?}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_returns_data_from_a_real_prometheus() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let redis_port = free_port();
    let _redis = spawn(
        "redis-server",
        &[
            "--port",
            &redis_port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from),
        &d.join("redis.log"),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let redis = format!("redis://127.0.0.1:{redis_port}");
    // Two replicas share the real Redis; the third's Redis is gone (store errors, 503s).
    let mut guards = vec![];
    let mut replicas = vec![];
    for url in [redis.as_str(), redis.as_str(), "redis://127.0.0.1:1"] {
        let (g, u) = demo_replica(url).await;
        guards.push(g);
        replicas.push(u);
    }
    let adapter_port = free_port();
    let _adapter = adapter(d, &replicas, adapter_port);
    let run_port = free_port();
    let (_prom, prom) = prometheus(d, &replicas, adapter_port, run_port).await;
    let cluster = cluster_support::Cluster::require();
    let (scaler, ns) =
        cluster_support::feed::run_with_three_policies(&cluster, &prom, run_port).await;
    let began = tidescale::metric::unix_seconds(clock::Clock::start().now().1);
    drive(replicas, adapter_port, 60).await;
    // Two more scrapes after the last request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ended = tidescale::metric::unix_seconds(clock::Clock::start().now().1);

    let mut empty = vec![];
    for name in DASHBOARDS {
        let dash: Value = serde_json::from_str(&read(&format!("dashboards/{name}.json"))).unwrap();
        let mut chart_panels = vec![];
        for p in panels(&dash) {
            let title = p["title"].as_str().unwrap();
            let mut series = vec![];
            for t in p["targets"].as_array().unwrap() {
                let expr = fill(t["expr"].as_str().unwrap());
                let now = query(&prom, "query", &[("query", expr.clone())]).await;
                if now.is_empty() {
                    continue;
                }
                let range = query(
                    &prom,
                    "query_range",
                    &[
                        ("query", expr),
                        ("start", format!("{began:.0}")),
                        ("end", format!("{ended:.0}")),
                        ("step", "2".into()),
                    ],
                )
                .await;
                series.extend(lines(
                    &range,
                    t["legendFormat"].as_str().unwrap_or(""),
                    began,
                ));
            }
            if series.is_empty() {
                empty.push(title.to_string());
            }
            chart_panels.push(chart_panel(title, series));
        }
        draw(name, &dash, chart_panels);
    }
    let empty: Vec<String> = empty;
    assert!(
        empty.is_empty(),
        "panels without data: {empty:?}\n`tidescale run`'s log:\n{}",
        scaler.log_text()
    );
    cluster
        .kubectl_ok(&["delete", "namespace", &ns, "--wait=false"])
        .await;
}

/// Each result series of a range query as a line, named by the panel's legend format.
fn lines(range: &[Value], legend: &str, began: f64) -> Vec<Series> {
    range
        .iter()
        .map(|s| {
            let mut name = legend.to_string();
            for (k, v) in s["metric"].as_object().unwrap() {
                name = name.replace(&format!("{{{{{k}}}}}"), v.as_str().unwrap_or(""));
            }
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| {
                    let t = p[0].as_f64()?;
                    let v: f64 = p[1].as_str()?.parse().ok()?;
                    v.is_finite().then_some((t - began, v))
                })
                .collect();
            Series {
                name,
                color: [0, 0, 0],
                points,
                style: Style::Line,
            }
        })
        .collect()
}

const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// A chart panel: the eight largest series, coloured.
fn chart_panel(title: &str, mut series: Vec<Series>) -> Panel {
    let peak = |s: &Series| s.points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    series.sort_by(|a, b| peak(b).total_cmp(&peak(a)));
    series.truncate(PALETTE.len());
    for (s, c) in series.iter_mut().zip(PALETTE) {
        s.color = c;
    }
    Panel {
        y_label: title.to_string(),
        series,
    }
}

/// Draws a dashboard's panels into `target/tmp/dashboards/<name>.png`, and into
/// `docs/dashboard-<name>.png` with `UPDATE_DASHBOARD_PICTURES=1`.
fn draw(name: &str, dash: &Value, panels: Vec<Panel>) {
    let chart = Chart {
        title: format!(
            "{} dashboard: a real Prometheus after 60 s of load on 3 demo-service replicas, the adapter and tidescale run",
            dash["title"].as_str().unwrap()
        ),
        x_label: "seconds".into(),
        panels,
    };
    let out: PathBuf = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboards");
    std::fs::create_dir_all(&out).unwrap();
    let height = 230 * chart.panels.len() as u32 + 60;
    render_png(&chart, &out.join(format!("{name}.png")), (1100, height)).unwrap();
    if std::env::var_os("UPDATE_DASHBOARD_PICTURES").is_some() {
        let doc = repo().join("docs").join(format!("dashboard-{name}.png"));
        render_png(&chart, &doc, (1100, height)).unwrap();
    }
}
