//! Every route and status code of the demo service, on both stores (real Redis and in-memory).

mod common;

use std::time::Duration;

use common::{InProcess, Redis, client};
use serde_json::{Value, json};
use tidescale_demo::{DEFAULT_TTL, Store};

async fn exercise_every_route(base: &str) {
    let c = client();
    // PUT stores the object with last_updated and ttl; JSON types survive the round trip.
    let body = json!({"n": 999, "f": 1.5, "s": "999", "b": true, "z": null, "a": [1, "x"], "o": {"k": "v"}});
    let r = c
        .put(format!("{base}/kv/things/one"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let stored: Value = r.json().await.unwrap();
    for (k, v) in body.as_object().unwrap() {
        assert_eq!(&stored[k], v, "field {k}");
    }
    assert_eq!(stored["ttl"], json!(DEFAULT_TTL.as_secs()));
    assert!(stored["last_updated"].as_u64().unwrap() > 1_700_000_000);

    let r = c.get(format!("{base}/kv/things/one")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["n"], json!(999));
    assert_eq!(got["s"], json!("999"));
    assert_eq!(got["o"], json!({"k": "v"}));
    let ttl = got["ttl"].as_u64().unwrap();
    assert!(
        ttl <= DEFAULT_TTL.as_secs() && ttl + 5 >= DEFAULT_TTL.as_secs(),
        "remaining ttl {ttl}"
    );

    // PUT replaces the previous value.
    let r = c
        .put(format!("{base}/kv/things/one"))
        .json(&json!({"only": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got: Value = c
        .get(format!("{base}/kv/things/one"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got.get("n"), None);
    assert_eq!(got["only"], json!(1));

    // Missing keys are a JSON 404; DELETE is 204 then 404.
    let r = c.get(format!("{base}/kv/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "key not found", "key": "nope"})
    );
    assert_eq!(
        c.delete(format!("{base}/kv/things/one"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.delete(format!("{base}/kv/things/one"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        c.get(format!("{base}/kv/things/one"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // GET / counts hits in the store.
    let first: Value = c
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second: Value = c
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["service"], "demo-service");
    assert_eq!(
        second["hits"].as_u64().unwrap(),
        first["hits"].as_u64().unwrap() + 1
    );

    // /load burns CPU within bounds; /work holds a slot.
    let r = c.get(format!("{base}/load?ms=20")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["cpu_ms"].as_f64().unwrap() >= 20.0);
    for bad in [
        "/load?ms=1001",
        "/load?ms=abc",
        "/load?ms=-1",
        "/work?ms=10001",
        "/work?ms=x",
    ] {
        let r = c.get(format!("{base}{bad}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(
            r.json::<Value>().await.unwrap()["error"].is_string(),
            "{bad}"
        );
    }
    assert_eq!(
        c.get(format!("{base}/work?ms=10"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Probes.
    assert_eq!(
        c.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = c.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Bad input: clear JSON errors, nothing stored.
    let big = json!({"x": "a".repeat(65 * 1024)});
    let r = c
        .put(format!("{base}/kv/big"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.json::<Value>().await.unwrap()["limit"], json!(65536));
    let r = c
        .put(format!("{base}/kv/t"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .put(format!("{base}/kv/t"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.json::<Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    for not_object in ["[1,2]", "42", "\"s\"", "null"] {
        let r = c
            .put(format!("{base}/kv/t"))
            .header("content-type", "application/json")
            .body(not_object)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{not_object}");
    }
    let long_key = "k".repeat(513);
    let r = c
        .put(format!("{base}/kv/{long_key}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c.get(format!("{base}/kv/a%01b")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    for key in ["big", "t", "a%01b"] {
        assert_eq!(
            c.get(format!("{base}/kv/{key}"))
                .send()
                .await
                .unwrap()
                .status(),
            if key == "a%01b" { 400 } else { 404 }
        );
    }
    // A 512-byte key is fine.
    let ok_key = "k".repeat(512);
    assert_eq!(
        c.put(format!("{base}/kv/{ok_key}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );

    // Unknown routes and methods answer JSON too.
    let r = c.get(format!("{base}/nowhere")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["path"], "/nowhere");
    let r = c.post(format!("{base}/kv/x")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
}

#[tokio::test]
async fn every_route_in_memory() {
    let svc = InProcess::start(Store::memory(), DEFAULT_TTL).await;
    exercise_every_route(&svc.base).await;
    svc.stop().await;
}

#[tokio::test]
async fn every_route_on_redis() {
    let redis = Redis::start();
    let svc = InProcess::start(Store::redis(&redis.url()).unwrap(), DEFAULT_TTL).await;
    exercise_every_route(&svc.base).await;
    svc.stop().await;
}

async fn expires_after_ttl(store: Store) {
    let svc = InProcess::start(store, Duration::from_secs(1)).await;
    let c = client();
    let r = c
        .put(format!("{}/kv/short", svc.base))
        .json(&json!({"v": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["ttl"], json!(1));
    assert_eq!(
        c.get(format!("{}/kv/short", svc.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Poll until the value is gone (a 1 s TTL; at most 10 s), rather than sleeping past it.
    let mut status = 200;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = c
            .get(format!("{}/kv/short", svc.base))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status != 200 {
            break;
        }
    }
    assert_eq!(status, 404, "the value did not expire");
    svc.stop().await;
}

#[tokio::test]
async fn values_expire_in_memory() {
    expires_after_ttl(Store::memory()).await;
}

#[tokio::test]
async fn values_expire_on_redis() {
    let redis = Redis::start();
    expires_after_ttl(Store::redis(&redis.url()).unwrap()).await;
}

#[tokio::test]
async fn two_instances_share_state_through_redis() {
    let redis = Redis::start();
    let a = InProcess::start(Store::redis(&redis.url()).unwrap(), DEFAULT_TTL).await;
    let b = InProcess::start(Store::redis(&redis.url()).unwrap(), DEFAULT_TTL).await;
    let c = client();
    assert_eq!(
        c.put(format!("{}/kv/session/42", a.base))
            .json(&json!({"cart": [1, 2]}))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let got: Value = c
        .get(format!("{}/kv/session/42", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["cart"], json!([1, 2]));
    let h1: Value = c
        .get(format!("{}/", a.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let h2: Value = c
        .get(format!("{}/", b.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        h2["hits"].as_u64().unwrap(),
        h1["hits"].as_u64().unwrap() + 1
    );
    assert_eq!(
        c.delete(format!("{}/kv/session/42", b.base))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(
        c.get(format!("{}/kv/session/42", a.base))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    a.stop().await;
    b.stop().await;
}

async fn concurrent_pairs(base: &str) {
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let (c, base) = (c.clone(), base.to_string());
        tasks.push(tokio::spawn(async move {
            // Distinct keys: each write must read back whole; a shared key: the last value
            // read must be one of the values written, never a mix.
            let body = json!({"i": i, "payload": format!("{i:0>200}")});
            let r = c
                .put(format!("{base}/kv/pair/{i}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let got: Value = c
                .get(format!("{base}/kv/pair/{i}"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(got["i"], body["i"]);
            assert_eq!(got["payload"], body["payload"]);
            let shared = json!({"writer": i, "check": format!("{i:0>300}")});
            assert_eq!(
                c.put(format!("{base}/kv/shared"))
                    .json(&shared)
                    .send()
                    .await
                    .unwrap()
                    .status(),
                201
            );
            let got: Value = c
                .get(format!("{base}/kv/shared"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let w = got["writer"].as_u64().unwrap();
            assert_eq!(got["check"], json!(format!("{w:0>300}")), "torn write");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..200u32 {
        let got: Value = c
            .get(format!("{base}/kv/pair/{i}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["i"], json!(i), "lost write for {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_neither_lost_nor_torn_in_memory() {
    let svc = InProcess::start(Store::memory(), DEFAULT_TTL).await;
    concurrent_pairs(&svc.base).await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_neither_lost_nor_torn_on_redis() {
    let redis = Redis::start();
    let svc = InProcess::start(Store::redis(&redis.url()).unwrap(), DEFAULT_TTL).await;
    concurrent_pairs(&svc.base).await;
    svc.stop().await;
}
