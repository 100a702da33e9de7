//! Resource source tests: recorded metrics API payloads through kube's mock service.

use http::{Request, Response};
use kube::client::Body;

use super::*;
use crate::source::{BuildContext, ResourceName};

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics_api")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A kube client whose API server answers from fixtures and records the request paths.
fn mock_client(
    answers: Vec<(&'static str, u16, Vec<u8>)>,
) -> (kube::Client, tokio::task::JoinHandle<Vec<String>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (prefix, status, body) in answers {
            let (req, send) = handle.next_request().await.expect("a request");
            let uri = req.uri().to_string();
            assert!(
                uri.starts_with(prefix),
                "{uri} does not start with {prefix}"
            );
            seen.push(uri);
            send.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(body))
                    .unwrap(),
            );
        }
        seen
    });
    (kube::Client::new(service, "shop"), task)
}

fn source(client: kube::Client, name: ResourceName, container: Option<&str>) -> ResourceSource {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut ctx = BuildContext::new(
        MetricId::new("shop/web", name.as_str()),
        reqwest::Client::new(),
    );
    ctx.namespace = "shop".into();
    ctx.selector = Some("app=web".into());
    ctx.kube = Some(client);
    ResourceSource::new(
        ResourceConfig {
            name,
            container: container.map(Into::into),
        },
        &ctx,
    )
    .unwrap()
}

const METRICS: &str = "/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods?&labelSelector=app%3Dweb";
const PODS: &str = "/api/v1/namespaces/shop/pods?&labelSelector=app%3Dweb";

#[tokio::test]
async fn cpu_sums_containers_and_carries_requests() {
    let (client, seen) = mock_client(vec![
        (METRICS, 200, fixture("podmetrics-list.json")),
        (PODS, 200, fixture("pod-list.json")),
    ]);
    let r = source(client, ResourceName::Cpu, None)
        .read()
        .await
        .unwrap();
    let pods = r.pods().unwrap();
    assert!((pods["web-7d9f-abcde"] - (0.251738129 + 0.003)).abs() < 1e-12);
    assert!((pods["web-7d9f-fghij"] - 0.122).abs() < 1e-12);
    assert!((pods["web-7d9f-nomem"] - 0.081).abs() < 1e-12);
    assert!(r.failed["web-7d9f-empty"].contains("no containers"));
    let req = r.requests.as_ref().unwrap();
    // app 200m + proxy 50m + restartable init (sidecar) 50m; the plain init container is not counted.
    assert!((req["web-7d9f-abcde"] - 0.3).abs() < 1e-12, "{req:?}");
    assert!(
        !req.contains_key("web-7d9f-fghij"),
        "a container without a request leaves the pod out"
    );
    // The reading's time is the first item's timestamp, as the HPA takes it.
    assert_eq!(crate::metric::unix_seconds(r.at), 1_740_824_122.0);
    assert_eq!(seen.await.unwrap().len(), 2);
}

#[tokio::test]
async fn memory_treats_a_pod_missing_the_resource_as_missing() {
    let (client, _seen) = mock_client(vec![
        (METRICS, 200, fixture("podmetrics-list.json")),
        (PODS, 200, fixture("pod-list.json")),
    ]);
    let r = source(client, ResourceName::Memory, None)
        .read()
        .await
        .unwrap();
    let pods = r.pods().unwrap();
    assert_eq!(
        pods["web-7d9f-abcde"],
        187212.0 * 1024.0 + 24.0 * 1024.0 * 1024.0
    );
    assert!(!pods.contains_key("web-7d9f-nomem"));
    assert!(r.failed["web-7d9f-nomem"].contains("container app has no memory usage"));
}

#[tokio::test]
async fn container_resource_reads_one_container() {
    let (client, _seen) = mock_client(vec![
        (METRICS, 200, fixture("podmetrics-list.json")),
        (PODS, 200, fixture("pod-list.json")),
    ]);
    let r = source(client, ResourceName::Cpu, Some("app"))
        .read()
        .await
        .unwrap();
    assert!((r.pods().unwrap()["web-7d9f-fghij"] - 0.12).abs() < 1e-12);
    assert!((r.requests.unwrap()["web-7d9f-fghij"] - 0.2).abs() < 1e-12);
}

#[tokio::test]
async fn api_errors_name_the_path() {
    let status = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","code":404}"#;
    let (client, _seen) = mock_client(vec![(METRICS, 404, status.to_vec())]);
    let e = source(client, ResourceName::Cpu, None)
        .read()
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, SourceError::Kube { .. }), "{text}");
    assert!(
        text.contains("/apis/metrics.k8s.io/v1beta1/namespaces/shop/pods?labelSelector=app=web"),
        "{text}"
    );
    assert!(text.contains("could not find"), "{text}");
    let empty = br#"{"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1beta1","metadata":{},"items":[]}"#;
    let (client, _seen) = mock_client(vec![(METRICS, 200, empty.to_vec())]);
    let e = source(client, ResourceName::Cpu, None)
        .read()
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::NoData { .. }), "{e}");
}

#[test]
fn quantities_parse_as_the_api_writes_them() {
    for (q, v) in [
        ("251738129n", 0.251738129),
        ("3m", 0.003),
        ("187212Ki", 191705088.0),
        ("1.5Gi", 1610612736.0),
        ("2e3", 2000.0),
        ("1", 1.0),
        ("20Mi", 20971520.0),
    ] {
        assert!(
            (parse_quantity(q).unwrap() - v).abs() < 1e-9 * v.max(1.0),
            "{q}"
        );
    }
    assert_eq!(parse_quantity("12x"), None);
    assert_eq!(parse_quantity(""), None);
}
