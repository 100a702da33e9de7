//! Helpers of `scripts/bench-adapter.sh`: a bare axum + rustls "hello" server (the baseline),
//! a loopback metrics backend (a gauge page and a Prometheus-query API holding N series), and
//! an open-loop fixed-rate HTTPS load client that reports latency percentiles, each request timed
//! from its scheduled send time.
//!
//!   adapter_bench hello CERT KEY            prints https://127.0.0.1:PORT
//!   adapter_bench backend SERIES            prints http://127.0.0.1:PORT
//!   adapter_bench load URL RPS SECS CA CERT KEY

use std::sync::Arc;
use std::time::Duration;
use tidescale::clock;

use axum::Router;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceExt;

fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        match args.first().map(String::as_str) {
            Some("hello") => hello(&args[1], &args[2]).await,
            Some("backend") => backend(args[1].parse()?).await,
            Some("load") => load(&args[1], args[2].parse()?, args[3].parse()?, &args[4], &args[5], &args[6]).await,
            _ => anyhow::bail!("usage: adapter_bench hello CERT KEY | backend SERIES | load URL RPS SECS CA CERT KEY"),
        }
    })
}

async fn hello(cert: &str, key: &str) -> anyhow::Result<()> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::from_pem_file(key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let app = Router::new().fallback(get(|| async { "hello" }));
    let l = TcpListener::bind("127.0.0.1:0").await?;
    println!("https://{}", l.local_addr()?);
    loop {
        let (tcp, _) = l.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

async fn backend(series: usize) -> anyhow::Result<()> {
    let result: Vec<_> = (0..series).map(|i| json!({"metric": {"pod": format!("web-{i:05}")}, "value": [1.7e9, format!("{}", i % 97)]})).collect();
    let body = Arc::new(serde_json::to_vec(
        &json!({"status": "success", "data": {"resultType": "vector", "result": result}}),
    )?);
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async { "# TYPE queue_depth gauge\nqueue_depth{queue=\"orders\"} 42\n" }),
        )
        .route(
            "/api/v1/query",
            get(move || {
                let b = body.clone();
                async move { ([("content-type", "application/json")], (*b).clone()) }
            }),
        );
    let l = TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", l.local_addr()?);
    axum::serve(l, app).await?;
    Ok(())
}

async fn load(
    url: &str,
    rps: u64,
    secs: u64,
    ca: &str,
    cert: &str,
    key: &str,
) -> anyhow::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(cfg)
        .http1_only()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(5))
        .build()?;
    // Warm the connection pool and the server.
    for _ in 0..200 {
        client.get(url).send().await?.bytes().await?;
    }
    let total = rps * secs;
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total as usize);
    for _ in 0..total {
        // The tick's scheduled instant, not the moment this loop or the task gets to run: a
        // stalled dispatcher or a busy runtime delays the request, and that delay is latency
        // the caller sees (coordinated omission counted). Missed ticks fire in a burst, each
        // still carrying its own scheduled time.
        let scheduled = tick.tick().await;
        let (c, u) = (client.clone(), url.to_string());
        tasks.push(tokio::spawn(async move {
            let ok = match c.get(u).send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (clock::since(scheduled), ok)
        }));
    }
    let mut lat = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for t in tasks {
        let (d, ok) = t.await?;
        if !ok {
            errors += 1;
        }
        lat.push(d);
    }
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "{} requests at {rps}/s over {secs}s: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {errors}",
        lat.len(),
        p(0.50).as_secs_f64() * 1e3,
        p(0.99).as_secs_f64() * 1e3,
        lat[lat.len() - 1].as_secs_f64() * 1e3
    );
    Ok(())
}
