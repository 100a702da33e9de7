//! The process pool with real demo-service processes behind the real balancer: readiness
//! gating, replacement of killed members, drained scale-down that loses no requests.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tidescale::engine::Replicas;
use tidescale::local::balancer::{self, Balancer, Strategy};
use tidescale::target::process_pool::PoolEventKind;
use tidescale::target::{PoolConfig, ProcessPool, ScaleTarget, TargetError};

fn demo_service() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tidescale")).with_file_name("demo-service");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn pool_config() -> PoolConfig {
    let mut c = PoolConfig::new(
        "demo",
        demo_service(),
        [
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "4",
            "--shutdown-grace",
            "5",
        ]
        .map(String::from)
        .to_vec(),
    );
    c.grace = Duration::from_secs(8);
    c.max_members = 8;
    c
}

/// Polls `f` every 50 ms, at most `tries` times.
async fn wait_for(tries: u32, mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_when_ready_are_replaced_when_killed_and_leave_before_stopping() {
    let pool = ProcessPool::start(pool_config());
    let backends = pool.endpoints();
    pool.scale_to(Replicas(3)).await.unwrap();
    assert!(
        backends.borrow().is_empty(),
        "no member can be ready the instant it starts"
    );
    assert!(
        wait_for(200, || backends.borrow().len() == 3).await,
        "3 members never became ready"
    );
    let status = pool.status().await.unwrap();
    assert_eq!(
        (status.desired, status.running, status.ready),
        (Replicas(3), Replicas(3), Replicas(3))
    );
    assert!(
        status
            .pods
            .iter()
            .all(|p| p.pid.is_some() && p.endpoint.is_some())
    );

    // kill -9 one member: the pool replaces it, as a ReplicaSet would.
    let victim = status.pods[0].clone();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &victim.pid.unwrap().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        wait_for(200, || {
            let b = backends.borrow();
            b.len() == 3 && b.iter().all(|m| m.id != victim.name)
        })
        .await,
        "the killed member was not replaced by a ready one"
    );
    let events = pool.take_events();
    assert!(
        events
            .iter()
            .any(|e| e.member == victim.name && e.kind == PoolEventKind::Died)
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == PoolEventKind::Ready)
            .count(),
        4
    );

    // Scale down: victims leave the backend set at once, then exit after draining.
    pool.scale_to(Replicas(1)).await.unwrap();
    assert_eq!(backends.borrow().len(), 1);
    let mut seen = Vec::new();
    let stopped = wait_for(200, || {
        seen.extend(pool.take_events());
        seen.iter()
            .filter(|e| e.kind == PoolEventKind::Stopped)
            .count()
            == 2
    })
    .await;
    assert!(stopped, "the two drained members did not exit: {seen:?}");
    assert!(
        !seen.iter().any(|e| e.kind == PoolEventKind::Died),
        "a drained member counted as dead"
    );
    let status = pool.status().await.unwrap();
    assert_eq!(
        (status.desired, status.running, status.ready),
        (Replicas(1), Replicas(1), Replicas(1))
    );

    let err = pool.scale_to(Replicas(9)).await.unwrap_err();
    assert!(matches!(err, TargetError::Rejected { .. }), "{err}");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_under_load_loses_no_request() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pool = ProcessPool::start(pool_config());
    let backends = pool.endpoints();
    let lb = Balancer::new(Strategy::LeastConnections, pool.endpoints());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(balancer::serve(listener, lb, async {
        let _ = stop_rx.await;
    }));
    pool.scale_to(Replicas(4)).await.unwrap();
    assert!(wait_for(200, || backends.borrow().len() == 4).await);

    // 8 clients, each 60 requests of 20 ms of worker time, while the pool shrinks 4 → 1.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, done) = (client.clone(), url.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for _ in 0..60 {
                match client.get(format!("{url}/work?ms=20")).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(format!("error {e}")),
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    // Shrink by progress through the 480 requests, not by the clock: each step surely lands
    // while requests are in flight, however fast or slow the machine is.
    let reached = |n: usize| {
        let done = done.clone();
        move || done.load(Ordering::Relaxed) >= n
    };
    assert!(wait_for(400, reached(60)).await, "traffic did not start");
    pool.scale_to(Replicas(2)).await.unwrap();
    assert!(
        wait_for(400, reached(160)).await,
        "traffic stalled at 2 replicas"
    );
    pool.scale_to(Replicas(1)).await.unwrap();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "requests failed while scaling down: {failures:?}"
    );
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
    pool.shutdown().await;
}
