//! A local axum test server on 127.0.0.1:0, run on its own thread and runtime.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use tidescale_loadgen::clock::{self, Instant};

/// Server state: when the stall window opens, relative to the first request seen.
#[derive(Clone, Default)]
struct Stall {
    first: Arc<Mutex<Option<Instant>>>,
    window: Option<(Duration, Duration)>,
}

#[derive(Deserialize)]
struct SlowQuery {
    ms: u64,
}

/// A running server; it stops when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the server. With `stall = Some((after, length))`, every request that arrives from
/// `after` to `after + length` past the first request waits until the window closes.
pub fn start(stall: Option<(Duration, Duration)>) -> TestServer {
    let state = Stall {
        first: Arc::default(),
        window: stall,
    };
    let app = Router::new()
        .route("/", get(root))
        .route("/status/{code}", get(status))
        .route("/slow", get(slow))
        .with_state(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("test server");
        });
        // Stalled or slow handlers may still hold connections: don't wait for them.
        rt.shutdown_timeout(Duration::from_millis(100));
    });
    TestServer {
        addr,
        stop: Some(stop),
        thread: Some(thread),
    }
}

async fn root(State(stall): State<Stall>) -> &'static str {
    if let Some((after, length)) = stall.window {
        let now = clock::now();
        let first = *stall.first.lock().expect("lock").get_or_insert(now);
        let (open, close) = (first + after, first + after + length);
        if now >= open && now < close {
            tokio::time::sleep_until(close).await;
        }
    }
    "hello"
}

async fn status(Path(code): Path<u16>) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

async fn slow(Query(q): Query<SlowQuery>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(q.ms)).await;
    "slow"
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}
