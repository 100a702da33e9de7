//! The local balancer's cost: throughput and p50 of `GET /kv/x` on one demo-service replica,
//! loaded directly and through the balancer, by the same client (wrk) in the same run.
//!
//! Needs `wrk` on PATH and a release `demo-service` (`cargo build --release -p tidescale-demo`).
//! Goal: through the balancer ≥ 0.8× the direct throughput, added p50 ≤ 200 µs.
//!
//! When `nginx` or `haproxy` is on PATH, each is run as a reference proxy in front of the same
//! replica (one worker, keep-alive to the backend) and loaded the same way, so the balancer's
//! figures can be read against what a mature proxy costs on the same machine.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tidescale::local::balancer::{self, Backend, Balancer, Strategy};

struct Wrk {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
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

fn wrk(url: &str, secs: u32, conns: u32) -> Wrk {
    let out = Command::new("wrk")
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
    Wrk {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_us: field("50%").map(|v| to_us(&v)).unwrap_or(f64::NAN),
        p99_us: field("99%").map(|v| to_us(&v)).unwrap_or(f64::NAN),
    }
}

/// p50 and p99 (µs) of `GET /kv/x` at a fixed open-loop rate, measured by our load generator.
fn at_rate(base: &str, rps: u32, secs: u32) -> (f64, f64) {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/loadgen");
    let out = Command::new(&bin)
        .args([
            "--url",
            base,
            "--rate",
            &rps.to_string(),
            "--duration",
            &format!("{secs}s"),
            "--json",
        ])
        .args(["--mix", "1:GET /kv/x"])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo build --release -p tidescale-loadgen)",
                bin.display()
            )
        });
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let ms = |k: &str| v["latency_ms"][k].as_f64().unwrap_or(f64::NAN) * 1000.0;
    (ms("p50"), ms("p99"))
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

/// Starts a reference proxy (`nginx` or `haproxy`, one worker) in front of `backend`; returns
/// the child and its URL once it accepts connections.
fn reference_proxy(
    tool: &str,
    dir: &Path,
    backend: SocketAddr,
) -> Option<(std::process::Child, String)> {
    let bin = on_path(tool)?;
    let port = free_port();
    let (config, args): (String, Vec<String>) = match tool {
        "nginx" => {
            let d = dir.display();
            (
                format!(
                    "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
                     events {{ worker_connections 1024; }}\n\
                     http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                     fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                     upstream demo {{ server {backend}; keepalive 64; }}\n\
                     server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://demo;\n\
                     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n"
                ),
                vec![
                    "-p".into(),
                    d.to_string(),
                    "-c".into(),
                    format!("{d}/nginx.conf"),
                ],
            )
        }
        "haproxy" => (
            format!(
                "global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n\
                 timeout server 30s\nfrontend lb\n  bind 127.0.0.1:{port}\n  default_backend demo\n\
                 backend demo\n  server replica {backend}\n"
            ),
            vec!["-f".into(), format!("{}/haproxy.cfg", dir.display())],
        ),
        _ => return None,
    };
    let file = if tool == "nginx" {
        "nginx.conf"
    } else {
        "haproxy.cfg"
    };
    std::fs::write(dir.join(file), config).ok()?;
    let child = Command::new(bin)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((child, format!("http://127.0.0.1:{port}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let secs: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/demo-service");
    let mut backend = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo build --release -p tidescale-demo)",
                bin.display()
            )
        });
    let mut line = String::new();
    BufReader::new(backend.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let direct = line.trim().to_string();
    let addr: SocketAddr = direct.trim_start_matches("http://").parse().unwrap();
    let status = Command::new("curl")
        .args([
            "-fsS",
            "-o",
            "/dev/null",
            "-X",
            "PUT",
            "-H",
            "content-type: application/json",
            "-d",
            "{\"v\":1}",
        ])
        .arg(format!("{direct}/kv/x"))
        .status()
        .expect("curl");
    assert!(status.success());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let lb_url = runtime.block_on(async {
        let (_tx, rx) = tokio::sync::watch::channel(vec![Backend {
            id: "demo-1".into(),
            addr,
        }]);
        std::mem::forget(_tx);
        let lb = Balancer::new(Strategy::RoundRobin, rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(balancer::serve(listener, lb, std::future::pending()));
        url
    });
    let _guard = runtime.enter();

    println!(
        "balancer benchmark: wrk -t1 -c32 -d{secs}s GET /kv/x, one demo-service replica, same run"
    );
    let d = wrk(&format!("{direct}/kv/x"), secs, 32);
    let b = wrk(&format!("{lb_url}/kv/x"), secs, 32);
    println!(
        "  direct            {:>10.0} req/s   p50 {:>7.0} µs   p99 {:>7.0} µs",
        d.rps, d.p50_us, d.p99_us
    );
    println!(
        "  through balancer  {:>10.0} req/s   p50 {:>7.0} µs   p99 {:>7.0} µs",
        b.rps, b.p50_us, b.p99_us
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    for tool in ["nginx", "haproxy"] {
        match reference_proxy(tool, dir.path(), addr) {
            Some((mut child, url)) => {
                let r = wrk(&format!("{url}/kv/x"), secs, 32);
                println!(
                    "  through {tool:<10}{:>10.0} req/s   p50 {:>7.0} µs   p99 {:>7.0} µs   (ratio {:.2}, added p50 {:.0} µs)",
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.rps / d.rps,
                    r.p50_us - d.p50_us
                );
                let _ = child.kill();
                let _ = child.wait();
            }
            None => println!("  ({tool} not found or did not start: no reference figure)"),
        }
    }
    let ratio = b.rps / d.rps;
    let added = b.p50_us - d.p50_us;
    println!(
        "  throughput ratio {ratio:.2} (goal ≥ 0.80) {}; added p50 {added:.0} µs (goal ≤ 200) {}",
        if ratio >= 0.8 { "OK" } else { "BELOW GOAL" },
        if added <= 200.0 { "OK" } else { "ABOVE GOAL" }
    );
    // What the demo's traffic sees: a rate well below saturation, so the hop's latency shows
    // rather than its CPU share.
    let (dp50, dp99) = at_rate(&direct, 2000, secs);
    let (bp50, bp99) = at_rate(&lb_url, 2000, secs);
    println!(
        "at 2,000 req/s open loop (loadgen): direct p50 {dp50:.0} µs p99 {dp99:.0} µs; through balancer p50 {bp50:.0} µs p99 {bp99:.0} µs; added p50 {:.0} µs",
        bp50 - dp50
    );
    let _ = backend.kill();
    let _ = backend.wait();
}
