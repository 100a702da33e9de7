//! A trivial HTTP server (`GET /` → "Hello, world!") used as the benchmark target.
//!
//! `cargo run --release -p tidescale-loadgen --example hello -- [ADDR] [THREADS]`
//! (defaults: 127.0.0.1:8080, 1 worker thread). Prints `listening on ADDR` once bound.

use axum::Router;
use axum::routing::get;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let threads: usize = match args.next() {
        Some(n) => n.parse()?,
        None => 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on {}", listener.local_addr()?);
        let app = Router::new().route("/", get(|| async { "Hello, world!" }));
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        Ok(())
    })
}
