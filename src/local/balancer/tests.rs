//! Balancer strategies: distribution, ip-hash stickiness across pool changes, least-connections
//! under uneven latency, retries on refused connections.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::any;
use tokio::sync::watch;

use super::*;

fn backends(n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend {
            id: format!("b{i}"),
            addr: SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16)),
        })
        .collect()
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

#[tokio::test]
async fn round_robin_spreads_evenly() {
    let (_tx, rx) = watch::channel(backends(3));
    let b = Balancer::new(Strategy::RoundRobin, rx);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        *counts.entry(b.pick(ip(1), None).unwrap().id).or_default() += 1;
    }
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![100, 100, 100]
    );
}

#[tokio::test]
async fn ip_hash_is_sticky_and_moves_only_what_it_must() {
    let (tx, rx) = watch::channel(backends(4));
    let b = Balancer::new(Strategy::IpHash, rx);
    let clients: Vec<IpAddr> = (0..2000).map(ip).collect();
    let before: Vec<String> = clients
        .iter()
        .map(|c| b.pick(*c, None).unwrap().id)
        .collect();
    // Sticky: the same client gets the same backend every time.
    for (c, id) in clients.iter().zip(&before) {
        assert_eq!(&b.pick(*c, None).unwrap().id, id);
    }
    // Reasonably even: each of 4 backends gets 25 % ± 5 %.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &before {
        *counts.entry(id).or_default() += 1;
    }
    for n in counts.values() {
        assert!((400..=600).contains(n), "{counts:?}");
    }
    // A fifth backend: only clients that now go to it moved, about a fifth of them.
    tx.send(backends(5)).unwrap();
    let after: Vec<String> = clients
        .iter()
        .map(|c| b.pick(*c, None).unwrap().id)
        .collect();
    let moved: Vec<usize> = (0..clients.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert!(moved.iter().all(|&i| after[i] == "b4"));
    assert!((300..=500).contains(&moved.len()), "moved {}", moved.len());
    // Removing b1: only b1's clients move.
    let mut without_b1 = backends(5);
    without_b1.remove(1);
    tx.send(without_b1).unwrap();
    let third: Vec<String> = clients
        .iter()
        .map(|c| b.pick(*c, None).unwrap().id)
        .collect();
    for i in 0..clients.len() {
        if after[i] != "b1" {
            assert_eq!(third[i], after[i]);
        } else {
            assert_ne!(third[i], "b1");
        }
    }
}

#[tokio::test]
async fn empty_pool_has_no_pick() {
    let (_tx, rx) = watch::channel(Vec::new());
    let b = Balancer::new(Strategy::LeastConnections, rx);
    assert_eq!(b.pick(ip(1), None), Err(NoBackend));
}

async fn backend_server(delay: Duration, name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route(
        "/{*rest}",
        any(move |req: axum::extract::Request| async move {
            tokio::time::sleep(delay).await;
            let xff = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body = axum::body::to_bytes(req.into_body(), 1 << 20)
                .await
                .unwrap();
            format!("{name} {xff} {}", String::from_utf8_lossy(&body))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn start_balancer(
    strategy: Strategy,
    set: Vec<Backend>,
) -> (String, Arc<Balancer>, watch::Sender<Vec<Backend>>) {
    let (tx, rx) = watch::channel(set);
    let b = Balancer::new(strategy, rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, b.clone(), std::future::pending()));
    (format!("http://{addr}"), b, tx)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_favours_the_fast_backend() {
    let slow = backend_server(Duration::from_millis(100), "slow").await;
    let fast = backend_server(Duration::from_millis(2), "fast").await;
    let set = vec![
        Backend {
            id: "slow".into(),
            addr: slow,
        },
        Backend {
            id: "fast".into(),
            addr: fast,
        },
    ];
    let (url, _b, _tx) = start_balancer(Strategy::LeastConnections, set.clone()).await;
    let c = client();
    // 16 concurrent clients, 15 requests each: under least-connections the fast backend
    // takes most of them; round-robin would split 50/50 whatever the latency.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, url) = (c.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut fast = 0;
            for _ in 0..15 {
                let text = c
                    .get(format!("{url}/x"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                fast += usize::from(text.starts_with("fast"));
            }
            fast
        }));
    }
    let mut fast = 0;
    for t in tasks {
        fast += t.await.unwrap();
    }
    assert!(
        fast * 100 / 240 >= 75,
        "fast backend served only {fast} of 240"
    );
}

#[tokio::test]
async fn proxies_method_body_and_forwarded_for_and_serves_its_own_metrics() {
    let a = backend_server(Duration::ZERO, "a").await;
    let (url, _b, _tx) = start_balancer(
        Strategy::RoundRobin,
        vec![Backend {
            id: "a".into(),
            addr: a,
        }],
    )
    .await;
    let c = client();
    let text = c
        .put(format!("{url}/kv/k?x=1"))
        .body("payload")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "a 127.0.0.1 payload");
    let metrics = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"balancer_requests_total{backend="a",outcome="2xx"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn refused_idempotent_requests_are_retried_once_elsewhere() {
    let live = backend_server(Duration::ZERO, "live").await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let set = vec![
        Backend {
            id: "dead".into(),
            addr: dead,
        },
        Backend {
            id: "live".into(),
            addr: live,
        },
    ];
    let (url, b, tx) = start_balancer(Strategy::RoundRobin, set).await;
    let c = client();
    for _ in 0..10 {
        let r = c.get(format!("{url}/x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().starts_with("live"));
    }
    let r = c.put(format!("{url}/x")).body("v").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = b.encode_metrics();
    assert!(
        metrics.contains(r#"balancer_requests_total{backend="dead",outcome="refused"}"#),
        "{metrics}"
    );
    // A non-idempotent request is not retried: it fails with a JSON 502 when it hits the dead one.
    tx.send(vec![Backend {
        id: "dead2".into(),
        addr: dead,
    }])
    .unwrap();
    let r = c.post(format!("{url}/x")).body("v").send().await.unwrap();
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "backend refused the connection");
    // No backend at all: a JSON 503.
    tx.send(Vec::new()).unwrap();
    let r = c.get(format!("{url}/x")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_request_under_way_finish_and_stops_accepting() {
    let slow = backend_server(Duration::from_millis(300), "slow").await;
    let (_tx, rx) = watch::channel(vec![Backend {
        id: "slow".into(),
        addr: slow,
    }]);
    let b = Balancer::new(Strategy::RoundRobin, rx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, b, async {
        let _ = stopped.await;
    }));
    let under_way = tokio::spawn(client().get(format!("http://{addr}/x")).send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let resp = under_way
        .await
        .unwrap()
        .expect("the request under way is answered");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().starts_with("slow "));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once the request under way finished")
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}
