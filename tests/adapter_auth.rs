//! The authentication and authorization matrix of §3 over real TLS: front-proxy certificates,
//! client certificates, bearer tokens through a mocked TokenReview, SubjectAccessReview deny,
//! plus ALPN, serving-certificate reload and client-CA rotation.

mod adapter_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use adapter_support::{Adapter, Ca, client_for, pair, run_kubectl};
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use tidescale::adapter::run::AuthorizationMode;

const EXT: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth";

async fn get(c: &reqwest::Client, url: String, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut r = c.get(url);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let code = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const PROXY_HEADERS: &[(&str, &str)] = &[
    (
        "X-Remote-User",
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    ),
    ("X-Remote-Group", "system:serviceaccounts"),
    (
        "X-Remote-Extra-authentication.kubernetes.io%2Fcredential-id",
        "JTI=abc",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_proxy_certificates() {
    let a = Adapter::start(AuthorizationMode::Webhook).await;
    let url = format!("{}{EXT}", a.base());
    let (code, v) = get(&a.client(Some(&a.pki.proxy)), url.clone(), PROXY_HEADERS).await;
    assert_eq!(code, 200, "{v}");
    let sar = a.reviews.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sar.0, "/apis/authorization.k8s.io/v1/subjectaccessreviews");
    assert_eq!(
        sar.1["spec"],
        json!({
            "user": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": ["JTI=abc"]},
            "resourceAttributes": {"namespace": "default", "verb": "list", "group": "external.metrics.k8s.io", "version": "v1beta1", "resource": "queue_depth"}
        })
    );
    // The aggregator's availability probe: system:masters needs no SAR.
    let before = a.reviews.lock().unwrap().len();
    let (code, _) = get(
        &a.client(Some(&a.pki.proxy)),
        format!("{}/apis/custom.metrics.k8s.io/v1beta2", a.base()),
        &[
            ("X-Remote-User", "system:kube-aggregator"),
            ("X-Remote-Group", "system:masters"),
        ],
    )
    .await;
    assert_eq!((code, a.reviews.lock().unwrap().len()), (200, before));

    for (what, id) in [
        ("cert from another CA", Some(&a.pki.proxy_other_ca)),
        ("CN not allowed", Some(&a.pki.proxy_wrong_name)),
        ("no cert", None),
    ] {
        let (code, v) = get(&a.client(id), url.clone(), PROXY_HEADERS).await;
        assert_eq!(code, 401, "{what}: {v}");
        assert_eq!(
            (v["kind"].as_str(), v["reason"].as_str()),
            (Some("Status"), Some("Unauthorized")),
            "{what}"
        );
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_tokens_and_sar_deny() {
    let a = Adapter::start(AuthorizationMode::Webhook).await;
    let url = format!("{}{EXT}", a.base());
    // jane: client CA, groups from O.
    let (code, _) = get(&a.client(Some(&a.pki.jane)), url.clone(), &[]).await;
    assert_eq!(code, 200);
    let sar = a.reviews.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (
            sar.1["spec"]["user"].clone(),
            sar.1["spec"]["groups"].clone()
        ),
        (json!("jane"), json!(["devs", "system:authenticated"]))
    );
    // Headers sent with a plain user certificate are not trusted: still jane.
    let (code, _) = get(&a.client(Some(&a.pki.jane)), url.clone(), PROXY_HEADERS).await;
    assert_eq!(code, 200);
    assert_eq!(
        a.reviews.lock().unwrap().last().unwrap().1["spec"]["user"],
        "jane"
    );
    // eve: authenticated, SAR denies → 403 with the R1.45 message.
    let (code, v) = get(&a.client(Some(&a.pki.eve)), url.clone(), &[]).await;
    assert_eq!(code, 403, "{v}");
    assert_eq!(v["reason"], "Forbidden");
    assert_eq!(
        v["message"],
        "queue_depth.external.metrics.k8s.io is forbidden: User \"eve\" cannot list resource \"queue_depth\" in API group \"external.metrics.k8s.io\" in the namespace \"default\""
    );
    // Bearer tokens through TokenReview.
    let (code, _) = get(
        &a.client(None),
        url.clone(),
        &[("Authorization", "Bearer good-token")],
    )
    .await;
    assert_eq!(code, 200);
    let tr = a
        .reviews
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| p.ends_with("/tokenreviews"))
        .cloned()
        .unwrap();
    assert_eq!(
        tr.1,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "good-token"}})
    );
    let (code, v) = get(
        &a.client(None),
        url.clone(),
        &[("Authorization", "Bearer bad-token")],
    )
    .await;
    assert_eq!((code, v["reason"].as_str()), (401, Some("Unauthorized")));
    // Health needs no credentials.
    let (code, v) = get(&a.client(None), format!("{}/readyz", a.base()), &[]).await;
    assert_eq!((code, v), (200, Value::String("ok".into())));
    // kubectl with a user certificate and with a token.
    let (ok, out, err) =
        run_kubectl(&a, &adapter_support::jane_creds(&a), &["get", "--raw", EXT]).await;
    assert!(ok && out.contains("\"42\""), "{err}{out}");
    let (ok, _, err) =
        run_kubectl(&a, &["--token=good-token".into()], &["get", "--raw", EXT]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = run_kubectl(&a, &["--token=bad-token".into()], &["get", "--raw", EXT]).await;
    assert!(!ok && err.contains("Unauthorized"), "{err}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_allow_skips_only_the_review() {
    let a = Adapter::start(AuthorizationMode::AlwaysAllow).await;
    let url = format!("{}{EXT}", a.base());
    let (code, _) = get(&a.client(Some(&a.pki.eve)), url.clone(), &[]).await;
    assert_eq!(code, 200);
    let (code, _) = get(&a.client(None), url, &[]).await;
    assert_eq!(code, 401, "authentication still applies");
    assert!(
        a.reviews
            .lock()
            .unwrap()
            .iter()
            .all(|(p, _)| !p.ends_with("subjectaccessreviews"))
    );
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_and_certificate_reload() {
    let a = Adapter::start(AuthorizationMode::AlwaysAllow).await;
    let h2 = client_for(&a.pki.serving_ca, Some(&a.pki.jane), true);
    let resp = h2.get(format!("{}{EXT}", a.base())).send().await.unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, http::Version::HTTP_2)
    );
    let h1 = reqwest::Client::builder()
        .tls_backend_preconfigured({
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_file_iter(&a.pki.serving_ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let mut cfg = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            cfg
        })
        .http1_only()
        .build()
        .unwrap();
    let resp = h1
        .get(format!("{}/healthz", a.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (resp.status().as_u16(), resp.version()),
        (200, http::Version::HTTP_11)
    );

    // Replace the serving certificate with one from a new CA: new connections use it.
    let new_ca = Ca::new("rotated-ca");
    let (cert, key) = new_ca.server();
    let new_ca_file = a.dir.path().join("rotated-ca.pem");
    std::fs::write(&new_ca_file, &new_ca.pem).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&a.pki.serving_key, key).unwrap();
    std::fs::write(&a.pki.serving_cert, cert).unwrap();
    let mut switched = false;
    for _ in 0..50 {
        let fresh = client_for(&new_ca_file, None, false);
        if let Ok(r) = fresh.get(format!("{}/healthz", a.base())).send().await {
            switched = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "the rotated certificate was not picked up");
    let old = client_for(&a.pki.serving_ca, None, false);
    assert!(
        old.get(format!("{}/healthz", a.base()))
            .send()
            .await
            .is_err(),
        "old CA must no longer verify"
    );
    a.stop().await;
}

/// Polls `url` with `client` until it answers `want` (at most ~5 s); returns the last code.
async fn until_code(client: &reqwest::Client, url: &str, want: u16) -> u16 {
    let mut code = 0;
    for _ in 0..50 {
        code = get(client, url.to_string(), &[]).await.0;
        if code == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_ca_takes_effect_and_a_broken_one_is_ignored() {
    let a = Adapter::start(AuthorizationMode::AlwaysAllow).await;
    let url = format!("{}{EXT}", a.base());
    let rotated = Ca::new("rotated-client-ca");
    let bob = pair(a.dir.path(), "bob", rotated.client("bob", &["ops"]));
    assert_eq!(
        get(&a.client(Some(&a.pki.jane)), url.clone(), &[]).await.0,
        200
    );
    assert_eq!(get(&a.client(Some(&bob)), url.clone(), &[]).await.0, 401);

    // The client CA file now holds only the new CA: bob gets in, jane no longer does.
    std::fs::write(&a.pki.client_ca, &rotated.pem).unwrap();
    assert_eq!(until_code(&a.client(Some(&bob)), &url, 200).await, 200);
    assert_eq!(
        get(&a.client(Some(&a.pki.jane)), url.clone(), &[]).await.0,
        401
    );
    // The front-proxy CA did not change and still works.
    let (code, _) = get(&a.client(Some(&a.pki.proxy)), url.clone(), PROXY_HEADERS).await;
    assert_eq!(code, 200);

    // A broken bundle is ignored: what is in use stays in use.
    let rejected = || a.reloads.rejected.load(Ordering::Relaxed);
    let before = rejected();
    std::fs::write(&a.pki.client_ca, "not a certificate").unwrap();
    // Wait until the watcher has read the broken bundle (and kept the old one), not a fixed time.
    let mut seen = false;
    for _ in 0..100 {
        if rejected() > before {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the broken bundle was not re-read within 5 s");
    assert_eq!(get(&a.client(Some(&bob)), url.clone(), &[]).await.0, 200);
    a.stop().await;
}
