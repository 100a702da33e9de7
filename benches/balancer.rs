//! The local balancer's cost: throughput and latency of `GET /kv/x` on one demo-service replica,
//! loaded directly, through the balancer and through reference proxies (nginx, haproxy, when on
//! PATH: one worker each, keep-alive to the backend), by the same clients in the same run.
//!
//! The sides are measured in alternating rounds (`benches/support/pairs.rs`): the order rotates
//! every round, and every figure is the median over the rounds with its min–max.
//!  1. saturation: wrk -t1 -c32, throughput and p50 per side;
//!  2. open loop at 2,000 req/s (loadgen, latency from each request's scheduled send time).
//!
//! Goals: through the balancer ≥ 0.8× the direct throughput and added p50 ≤ 200 µs; and the
//! balancer within 10 % of nginx's throughput in the same run.
//!
//! Needs `wrk` on PATH and release builds of `demo-service` and `loadgen`:
//! `cargo build --release -p tidescale-demo -p tidescale-loadgen && cargo bench --bench balancer`.
//! `BENCH_SECONDS` (default 5) sets the length of one measurement, `BENCH_PAIRS` (default 5) the
//! number of rounds.

#[path = "support/pairs.rs"]
mod pairs;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use pairs::{Run, Spread, alternate};
use tidescale::local::balancer::{self, Backend, Balancer, Strategy};

/// One wrk measurement.
struct Wrk {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

/// One open-loop measurement by loadgen.
struct OpenLoop {
    p50_us: f64,
    p99_us: f64,
    /// Requests that failed, were dropped or were sent late: misses, counted.
    misses: u64,
}

fn to_us(text: &str) -> f64 {
    let (num, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let v: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => v,
        "ms" => v * 1e3,
        "s" => v * 1e6,
        _ => f64::NAN,
    }
}

fn wrk(run: &Run, url: &str, secs: u32, conns: u32) -> Wrk {
    let out = run
        .command("wrk")
        .args([
            "-t1",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .expect("wrk must be on PATH (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix(prefix)
                .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
        })
    };
    if let Some(errors) = text.lines().find(|l| l.contains("Socket errors")) {
        println!("    {url}: {}", errors.trim());
    }
    assert!(
        !text.contains("Non-2xx"),
        "{url} answered errors under load:\n{text}"
    );
    Wrk {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_us: field("50%").map(|v| to_us(&v)).unwrap_or(f64::NAN),
        p99_us: field("99%").map(|v| to_us(&v)).unwrap_or(f64::NAN),
    }
}

/// Where the release binaries are: `$CARGO_TARGET_DIR/release`, or the workspace's `target`.
fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
        .join("release")
}

/// `GET /kv/x` at a fixed open-loop rate, measured by our load generator, which times every
/// request from its scheduled send time.
fn at_rate(run: &Run, base: &str, rps: u32, secs: u32) -> OpenLoop {
    let bin = release_dir().join("loadgen");
    let out = run
        .command(&bin)
        .args(["--url", base, "--rate", &rps.to_string()])
        .args(["--duration", &format!("{secs}s"), "--json"])
        .args(["--mix", "1:GET /kv/x"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo build --release -p tidescale-loadgen)",
                bin.display()
            )
        });
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let us = |k: &str| v["latency_ms"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
    let count = |k: &str| v[k].as_u64().unwrap_or(0);
    OpenLoop {
        p50_us: us("p50"),
        p99_us: us("p99"),
        misses: count("error_total") + count("dropped") + count("late"),
    }
}

/// A free loopback port (bound and released; the reference proxy binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    })
}

/// The configuration file and arguments of a reference proxy listening on `port`.
fn proxy_config(tool: &str, dir: &Path, backend: SocketAddr, port: u16) -> (String, Vec<String>) {
    let d = dir.display();
    if tool == "nginx" {
        let config = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             upstream demo {{ server {backend}; keepalive 64; }}\n\
             server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://demo;\n\
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
        );
        let args = vec![
            "-p".into(),
            d.to_string(),
            "-c".into(),
            format!("{d}/nginx.conf"),
        ];
        (config, args)
    } else {
        let config = format!(
            "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n\
             timeout server 30s\nfrontend lb\n  bind 127.0.0.1:{port}\n  default_backend demo\n\
             backend demo\n  server replica {backend}\n"
        );
        (config, vec!["-f".into(), format!("{d}/haproxy.cfg")])
    }
}

/// Starts a reference proxy (`nginx` or `haproxy`, one worker) in front of `backend` as part
/// of `run`; returns its URL once it accepts connections.
fn reference_proxy(run: &mut Run, tool: &str, dir: &Path, backend: SocketAddr) -> Option<String> {
    let bin = on_path(tool)?;
    let port = free_port();
    let (config, args) = proxy_config(tool, dir, backend, port);
    let file = if tool == "nginx" {
        "nginx.conf"
    } else {
        "haproxy.cfg"
    };
    std::fs::write(dir.join(file), config).ok()?;
    let mut cmd = run.command(bin);
    cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::null());
    run.spawn(&mut cmd).ok()?;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(format!("http://127.0.0.1:{port}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Starts one demo-service replica holding `x`; returns its URL.
fn start_replica(run: &mut Run) -> String {
    let bin = release_dir().join("demo-service");
    let mut cmd = run.command(&bin);
    cmd.args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let child = run.spawn(&mut cmd).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (cargo build --release -p tidescale-demo)",
            bin.display()
        )
    });
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("the replica prints its URL");
    let url = line.trim().to_string();
    let status = run
        .command("curl")
        .args(["-fsS", "-o", "/dev/null", "-X", "PUT"])
        .args(["-H", "content-type: application/json", "-d", "{\"v\":1}"])
        .arg(format!("{url}/kv/x"))
        .status()
        .expect("curl");
    assert!(status.success(), "PUT /kv/x on the replica failed");
    url
}

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs = env_or("BENCH_SECONDS", 5);
    let rounds = env_or("BENCH_PAIRS", 5) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let mut run = Run::start("balancer");
    let direct = start_replica(&mut run);
    let addr: SocketAddr = direct.trim_start_matches("http://").parse().unwrap();
    let lb_url = runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(vec![Backend {
            id: "demo-1".into(),
            addr,
        }]);
        // The backend list never changes in this benchmark; the sender lives as long as it.
        std::mem::forget(tx);
        let lb = Balancer::new(Strategy::RoundRobin, rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(balancer::serve(listener, lb, std::future::pending()));
        url
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut sides = vec![("direct", direct), ("balancer", lb_url)];
    for tool in ["nginx", "haproxy"] {
        match reference_proxy(&mut run, tool, dir.path(), addr) {
            Some(url) => sides.push((tool, url)),
            None => println!("  ({tool} not found or did not start: no reference figure)"),
        }
    }
    saturation(&run, &sides, secs, rounds);
    open_loop(&run, &sides, secs, rounds);
    drop(run);
}

/// Throughput and p50 at saturation, every side in each of `rounds` rotating rounds.
fn saturation(run: &Run, sides: &[(&str, String)], secs: u32, rounds: usize) {
    for (_, url) in sides {
        wrk(run, &format!("{url}/kv/x"), 1, 32); // unmeasured warm-up, every side alike
    }
    println!(
        "== saturation: wrk -t1 -c32 -d{secs}s GET /kv/x, one replica, {rounds} rotating rounds (load average {})",
        load_average()
    );
    let results = alternate(rounds, sides.len(), |side, round| {
        let (label, url) = &sides[side];
        let w = wrk(run, &format!("{url}/kv/x"), secs, 32);
        println!(
            "   round {round}: {label:<9} {:>9.0} req/s  p50 {:>6.0} µs  p99 {:>6.0} µs",
            w.rps, w.p50_us, w.p99_us
        );
        w
    });
    let rps: Vec<Vec<f64>> = results
        .iter()
        .map(|s| s.iter().map(|w| w.rps).collect())
        .collect();
    let p50: Vec<Vec<f64>> = results
        .iter()
        .map(|s| s.iter().map(|w| w.p50_us).collect())
        .collect();
    for (i, (label, _)) in sides.iter().enumerate() {
        println!(
            "  {label:<9} {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs",
            Spread::of(&rps[i]),
            Spread::of(&p50[i]),
            Spread::of(&results[i].iter().map(|w| w.p99_us).collect::<Vec<_>>())
        );
    }
    for (i, (label, _)) in sides.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = rps[i].iter().zip(&rps[0]).map(|(a, b)| a / b).collect();
        println!(
            "  {label} / direct: throughput ratio {} ({} of {rounds} rounds below 0.8), added p50 {:.0} µs over {rounds} rounds",
            Spread::of(&ratios),
            Spread::misses(&ratios, 0.8, true),
            Spread::of_differences(&p50[i], &p50[0])
        );
    }
    let ratio = Spread::of_ratios(&rps[1], &rps[0]);
    let added = Spread::of_differences(&p50[1], &p50[0]);
    println!(
        "  balancer goals: throughput ratio {} (goal ≥ 0.80) {}; added p50 {:.0} µs (goal ≤ 200) {}",
        ratio,
        verdict(ratio.median >= 0.8),
        added,
        verdict(added.median <= 200.0)
    );
    if let Some(n) = sides.iter().position(|(l, _)| *l == "nginx") {
        let vs: Vec<f64> = rps[1].iter().zip(&rps[n]).map(|(a, b)| a / b).collect();
        let s = Spread::of(&vs);
        println!(
            "  balancer / nginx throughput {s} over {rounds} rounds, {} below 0.9 (goal: within 10 %, ≥ 0.90) {}",
            Spread::misses(&vs, 0.9, true),
            verdict(s.median >= 0.9)
        );
    }
    println!("  (load average after: {})", load_average());
}

/// Latency at 2,000 req/s open loop, every side in each of `rounds` rotating rounds.
fn open_loop(run: &Run, sides: &[(&str, String)], secs: u32, rounds: usize) {
    println!(
        "== open loop at 2,000 req/s for {secs}s (loadgen, latency from the scheduled send time), {rounds} rotating rounds (load average {})",
        load_average()
    );
    let results = alternate(rounds, sides.len(), |side, round| {
        let (label, url) = &sides[side];
        let r = at_rate(run, url, 2000, secs);
        println!(
            "   round {round}: {label:<9} p50 {:>6.0} µs  p99 {:>6.0} µs  misses {}",
            r.p50_us, r.p99_us, r.misses
        );
        r
    });
    let p50: Vec<Vec<f64>> = results
        .iter()
        .map(|s| s.iter().map(|r| r.p50_us).collect())
        .collect();
    for (i, (label, _)) in sides.iter().enumerate() {
        let p99: Vec<f64> = results[i].iter().map(|r| r.p99_us).collect();
        let misses: u64 = results[i].iter().map(|r| r.misses).sum();
        let added = if i == 0 {
            String::new()
        } else {
            format!(
                ", added p50 {:.0} µs",
                Spread::of_differences(&p50[i], &p50[0])
            )
        };
        println!(
            "  {label:<9} p50 {:.0} µs, p99 {:.0} µs{added}; failed, dropped or late: {misses}",
            Spread::of(&p50[i]),
            Spread::of(&p99)
        );
    }
    let added = Spread::of_differences(&p50[1], &p50[0]);
    println!(
        "  balancer added p50 at 2,000 req/s {added:.0} µs (goal ≤ 200) {}  (load average after: {})",
        verdict(added.median <= 200.0),
        load_average()
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "OK" } else { "MISSES THE GOAL" }
}
