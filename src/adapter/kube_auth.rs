//! TokenReview and SubjectAccessReview through a `kube::Client` (R3.11, R3.15).
//!
//! The bodies are built by hand so exactly the fields the contract lists are sent.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::auth::{AccessReviewer, Attributes, AuthError, TokenReviewer, UserInfo};

/// Reviews through the Kubernetes API.
#[derive(Clone)]
pub struct KubeReviewer {
    client: kube::Client,
}

impl KubeReviewer {
    /// A reviewer using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, AuthError> {
        let bytes = serde_json::to_vec(body).map_err(|e| AuthError::Backend(e.to_string()))?;
        let req = http::Request::post(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(bytes)
            .map_err(|e| AuthError::Backend(e.to_string()))?;
        self.client
            .request::<Value>(req)
            .await
            .map_err(|e| AuthError::Backend(format!("{path}: {e}")))
    }
}

/// The TokenReview request body of R3.11.
pub fn token_review_body(token: &str) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl TokenReviewer for KubeReviewer {
    fn review(&self, token: &str) -> BoxFuture<'_, Result<Option<UserInfo>, AuthError>> {
        let body = token_review_body(token);
        Box::pin(async move {
            let r = self
                .post("/apis/authentication.k8s.io/v1/tokenreviews", &body)
                .await?;
            let status = &r["status"];
            if status["authenticated"].as_bool() != Some(true) {
                return Ok(None);
            }
            let u = &status["user"];
            let extra = u["extra"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
                .unwrap_or_default();
            Ok(Some(UserInfo {
                name: u["username"].as_str().unwrap_or_default().to_string(),
                uid: u["uid"].as_str().unwrap_or_default().to_string(),
                groups: strings(&u["groups"]),
                extra,
            }))
        })
    }
}

impl AccessReviewer for KubeReviewer {
    fn review(
        &self,
        user: &UserInfo,
        attrs: &Attributes,
    ) -> BoxFuture<'_, Result<bool, AuthError>> {
        let body = attrs.review_body(user);
        Box::pin(async move {
            let r = self
                .post("/apis/authorization.k8s.io/v1/subjectaccessreviews", &body)
                .await?;
            Ok(r["status"]["allowed"].as_bool() == Some(true))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::auth::attributes;
    use http::{Request, Response};
    use kube::client::Body;

    async fn answer(
        mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
        want_path: &'static str,
        want_body: Value,
        reply: Value,
    ) {
        let (req, send) = handle.next_request().await.expect("one request");
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().path(), want_path);
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let got: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(got, want_body);
        send.send_response(
            Response::builder()
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap(),
        );
    }

    #[tokio::test]
    async fn token_review_sends_the_contract_body_and_reads_the_user() {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let r = KubeReviewer::new(kube::Client::new(svc, "default"));
        let server = tokio::spawn(answer(
            handle,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"abc"}}),
            json!({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","status":{"authenticated":true,
                "user":{"username":"alice","uid":"u1","groups":["dev"],"extra":{"k":["v"]}}}}),
        ));
        let u = TokenReviewer::review(&r, "abc").await.unwrap().unwrap();
        server.await.unwrap();
        assert_eq!(
            (u.name.as_str(), u.uid.as_str(), u.groups.as_slice()),
            ("alice", "u1", &["dev".to_string()][..])
        );
        assert_eq!(u.extra["k"], vec!["v".to_string()]);
    }

    #[tokio::test]
    async fn rejected_token_is_none() {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let r = KubeReviewer::new(kube::Client::new(svc, "default"));
        let server = tokio::spawn(answer(
            handle,
            "/apis/authentication.k8s.io/v1/tokenreviews",
            token_review_body("bad"),
            json!({"status":{"authenticated":false,"error":"invalid bearer token"}}),
        ));
        assert_eq!(TokenReviewer::review(&r, "bad").await.unwrap(), None);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn sar_sends_exactly_the_r3_16_attributes() {
        let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let r = KubeReviewer::new(kube::Client::new(svc, "default"));
        let user = UserInfo {
            name: "system:serviceaccount:kube-system:horizontal-pod-autoscaler".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:kube-system".into(),
                "system:authenticated".into(),
            ],
            ..Default::default()
        };
        let server = tokio::spawn(answer(
            handle,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            json!({"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{
                "user":"system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                "groups":["system:serviceaccounts","system:serviceaccounts:kube-system","system:authenticated"],
                "resourceAttributes":{"namespace":"shop","verb":"get","group":"custom.metrics.k8s.io","version":"v1beta2",
                    "resource":"pods","subresource":"http_requests_per_second","name":"*"}}}),
            json!({"status":{"allowed":false}}),
        ));
        let attrs = attributes(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/http_requests_per_second",
            false,
        );
        assert!(!AccessReviewer::review(&r, &user, &attrs).await.unwrap());
        server.await.unwrap();
    }
}
