//! The exact requests `KubeScale` sends for reads and writes of the scale subresource, against
//! kube's mock service.

use super::*;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

/// One expected request and the answer to it.
struct Exchange {
    method: Method,
    path: String,
    body: Option<Value>,
    code: StatusCode,
    reply: Value,
}

fn get(path: &str, reply: Value) -> Exchange {
    Exchange {
        method: Method::GET,
        path: path.into(),
        body: None,
        code: StatusCode::OK,
        reply,
    }
}

fn put(path: &str, body: Value, code: StatusCode, reply: Value) -> Exchange {
    Exchange {
        method: Method::PUT,
        path: path.into(),
        body: Some(body),
        code,
        reply,
    }
}

fn scale(name: &str, rv: &str, replicas: i32) -> Value {
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv},
        "spec": {"replicas": replicas}, "status": {"replicas": replicas, "selector": "app=web"}})
}

fn scale_body(name: &str, rv: &str, replicas: i32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv},
        "spec": {"replicas": replicas}})
}

fn status_error(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("{reason} happened"),
        "reason": reason, "code": code})
}

/// Serves `script` in order, asserting each request exactly; returns how many were served.
async fn serve(mut handle: Handle<Request<Body>, Response<Body>>, script: Vec<Exchange>) -> usize {
    let mut served = 0;
    for ex in script {
        let (req, send) = handle
            .next_request()
            .await
            .expect("the next scripted request");
        assert_eq!(req.method(), ex.method, "request {served}");
        assert_eq!(req.uri().path(), ex.path, "request {served}");
        assert_eq!(req.uri().query().unwrap_or(""), "", "request {served}");
        let bytes = req.into_body().collect_bytes().await.unwrap();
        match ex.body {
            Some(want) => {
                let got: Value = serde_json::from_slice(&bytes).unwrap();
                assert_eq!(got, want, "request {served} body");
            }
            None => assert!(bytes.is_empty(), "request {served} has no body"),
        }
        send.send_response(
            Response::builder()
                .status(ex.code)
                .body(Body::from(serde_json::to_vec(&ex.reply).unwrap()))
                .unwrap(),
        );
        served += 1;
    }
    served
}

fn target(ar: &ApiResource, object: &str) -> (KubeScale, Handle<Request<Body>, Response<Body>>) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    let cache = PodCache::new(client.clone());
    (
        KubeScale::with_resource(client, cache, "shop", ar, object),
        handle,
    )
}

fn apps(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

#[tokio::test]
async fn a_deployment_is_read_then_written_with_the_read_resource_version() {
    let (t, handle) = target(&apps("Deployment", "deployments"), "web");
    let path = "/apis/apps/v1/namespaces/shop/deployments/web/scale";
    let server = tokio::spawn(serve(
        handle,
        vec![
            get(path, scale("web", "17", 3)),
            put(
                path,
                scale_body("web", "17", 5),
                StatusCode::OK,
                scale("web", "18", 5),
            ),
        ],
    ));
    t.scale_to(Replicas(5)).await.unwrap();
    assert_eq!(server.await.unwrap(), 2);
    assert_eq!(t.name(), "Deployment/shop/web");
}

#[tokio::test]
async fn a_statefulset_conflict_is_reread_and_retried_when_only_status_changed() {
    let (t, handle) = target(&apps("StatefulSet", "statefulsets"), "db");
    let path = "/apis/apps/v1/namespaces/shop/statefulsets/db/scale";
    let server = tokio::spawn(serve(
        handle,
        vec![
            get(path, scale("db", "5", 2)),
            put(
                path,
                scale_body("db", "5", 3),
                StatusCode::CONFLICT,
                status_error(409, "Conflict"),
            ),
            get(path, scale("db", "6", 2)),
            put(
                path,
                scale_body("db", "6", 3),
                StatusCode::OK,
                scale("db", "7", 3),
            ),
        ],
    ));
    t.scale_to(Replicas(3)).await.unwrap();
    assert_eq!(server.await.unwrap(), 4);
}

#[tokio::test]
async fn a_conflict_from_another_writer_is_not_overwritten() {
    let (t, handle) = target(&apps("ReplicaSet", "replicasets"), "rs");
    let path = "/apis/apps/v1/namespaces/shop/replicasets/rs/scale";
    let server = tokio::spawn(serve(
        handle,
        vec![
            get(path, scale("rs", "5", 2)),
            put(
                path,
                scale_body("rs", "5", 4),
                StatusCode::CONFLICT,
                status_error(409, "Conflict"),
            ),
            get(path, scale("rs", "6", 7)),
        ],
    ));
    let err = t.scale_to(Replicas(4)).await.unwrap_err();
    assert!(matches!(err, TargetError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("from 2 to 7"), "{err}");
    assert_eq!(server.await.unwrap(), 3);
}

#[tokio::test]
async fn a_custom_resource_scale_goes_to_its_plural_path_and_a_404_is_not_found() {
    let ar = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "WebApp".into(),
        plural: "webapps".into(),
    };
    let (t, handle) = target(&ar, "shop-front");
    let path = "/apis/example.com/v1/namespaces/shop/webapps/shop-front/scale";
    let server = tokio::spawn(serve(
        handle,
        vec![
            get(path, scale("shop-front", "9", 1)),
            put(
                path,
                scale_body("shop-front", "9", 2),
                StatusCode::OK,
                scale("shop-front", "10", 2),
            ),
            Exchange {
                method: Method::GET,
                path: path.into(),
                body: None,
                code: StatusCode::NOT_FOUND,
                reply: status_error(404, "NotFound"),
            },
        ],
    ));
    t.scale_to(Replicas(2)).await.unwrap();
    let err = t.status().await.unwrap_err();
    assert!(matches!(err, TargetError::NotFound { .. }), "{err}");
    assert_eq!(server.await.unwrap(), 3);
}

#[test]
fn built_in_kinds_default_to_apps_v1_and_others_need_an_api_version() {
    assert_eq!(
        group_version(None, "Deployment"),
        Some(("apps".into(), "v1".into()))
    );
    assert_eq!(
        group_version(Some("v1"), "ReplicationController"),
        Some(("".into(), "v1".into()))
    );
    assert_eq!(
        group_version(Some("example.com/v1"), "WebApp"),
        Some(("example.com".into(), "v1".into()))
    );
    assert_eq!(group_version(None, "WebApp"), None);
}
