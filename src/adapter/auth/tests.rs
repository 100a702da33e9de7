//! Tests of authentication and authorization: request-info attributes (R3.16), the
//! `X-Remote-*` headers (R3.6), the order of §3.5, and the 10 s caches.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderMap, HeaderValue};

use super::*;

fn res(
    ns: &str,
    verb: &str,
    group: &str,
    version: &str,
    resource: &str,
    sub: &str,
    name: &str,
) -> Attributes {
    Attributes::Resource(ResourceAttributes {
        namespace: ns.into(),
        verb: verb.into(),
        group: group.into(),
        version: version.into(),
        resource: resource.into(),
        subresource: sub.into(),
        name: name.into(),
    })
}

#[test]
fn attributes_follow_the_r3_16_table() {
    let c = "custom.metrics.k8s.io";
    assert_eq!(
        attributes(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/%2A/http_requests_per_second",
            false
        ),
        res(
            "shop",
            "get",
            c,
            "v1beta2",
            "pods",
            "http_requests_per_second",
            "*"
        )
    );
    assert_eq!(
        attributes(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/deployments.apps/web/rps",
            false
        ),
        res(
            "shop",
            "get",
            c,
            "v1beta2",
            "deployments.apps",
            "rps",
            "web"
        )
    );
    assert_eq!(
        attributes(
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/metrics/queue_depth",
            false
        ),
        res("shop", "get", c, "v1beta2", "metrics", "", "queue_depth")
    );
    assert_eq!(
        attributes(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue_depth",
            false
        ),
        res(
            "shop",
            "list",
            "external.metrics.k8s.io",
            "v1beta1",
            "queue_depth",
            "",
            ""
        )
    );
    assert_eq!(
        attributes("/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/load", false),
        res("", "get", c, "v1beta1", "nodes", "load", "n1")
    );
    assert_eq!(
        attributes("/apis/custom.metrics.k8s.io/v1beta2", false),
        Attributes::NonResource {
            path: "/apis/custom.metrics.k8s.io/v1beta2".into(),
            verb: "get".into()
        }
    );
    assert!(matches!(
        attributes("/version", false),
        Attributes::NonResource { .. }
    ));
}

#[test]
fn forbidden_messages_for_each_scope() {
    let (m, d) =
        attributes("/apis/custom.metrics.k8s.io/v1beta1/nodes/n1/load", false).forbidden("bob");
    assert_eq!(
        m,
        "nodes.custom.metrics.k8s.io \"n1\" is forbidden: User \"bob\" cannot get resource \"nodes/load\" in API group \"custom.metrics.k8s.io\" at the cluster scope"
    );
    assert_eq!(d.unwrap().kind, "nodes");
    let (m, d) = attributes(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q",
        false,
    )
    .forbidden("bob");
    assert_eq!(
        m,
        "q.external.metrics.k8s.io is forbidden: User \"bob\" cannot list resource \"q\" in API group \"external.metrics.k8s.io\" in the namespace \"shop\""
    );
    assert_eq!(d.unwrap().name, "");
    let (m, d) = attributes("/apis", false).forbidden("bob");
    assert_eq!(
        (m.as_str(), d),
        ("forbidden: User \"bob\" cannot get path \"/apis\"", None)
    );
}

#[test]
fn remote_headers_are_read_case_insensitively_and_unescaped() {
    let mut h = HeaderMap::new();
    h.append("X-Remote-User", HeaderValue::from_static(""));
    h.append(
        "x-remote-user",
        HeaderValue::from_static("system:serviceaccount:kube-system:horizontal-pod-autoscaler"),
    );
    h.append(
        "X-Remote-Group",
        HeaderValue::from_static("system:serviceaccounts"),
    );
    h.append(
        "X-Remote-Group",
        HeaderValue::from_static("system:serviceaccounts:kube-system"),
    );
    h.append(
        "X-Remote-Extra-authentication.kubernetes.io%2Fcredential-id",
        HeaderValue::from_static("JTI=1"),
    );
    let u = remote_user(&h).unwrap();
    assert_eq!(
        u.name,
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );
    assert_eq!(
        u.groups,
        vec![
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated"
        ]
    );
    assert_eq!(
        u.extra["authentication.kubernetes.io/credential-id"],
        vec!["JTI=1"]
    );
    strip_remote_headers(&mut h);
    assert!(h.is_empty());
    assert_eq!(remote_user(&HeaderMap::new()), None);
}

fn bearer_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h.insert("x-remote-user", HeaderValue::from_static("mallory"));
    h
}

#[tokio::test]
async fn tokens_are_reviewed_once_per_ttl_and_headers_without_a_cert_are_ignored() {
    let fake = Arc::new(FakeTokenReviewer {
        users: [(
            "good".to_string(),
            UserInfo {
                name: "alice".into(),
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    });
    let authn = Authenticator::new(None, None, Some(fake.clone()));
    for _ in 0..3 {
        let mut h = bearer_headers("good");
        let Authn::User(u) = authn.authenticate(&mut h, None).await else {
            panic!()
        };
        assert_eq!(
            (u.name.as_str(), u.groups.as_slice()),
            ("alice", &["system:authenticated".to_string()][..])
        );
        assert!(
            h.get("x-remote-user").is_none(),
            "unverified identity headers are stripped"
        );
    }
    assert_eq!(
        fake.calls.load(Ordering::Relaxed),
        1,
        "cached for {CACHE_TTL:?}"
    );
    assert!(matches!(
        authn.authenticate(&mut bearer_headers("bad"), None).await,
        Authn::Failed(_)
    ));
    let mut h = HeaderMap::new();
    h.insert("x-remote-user", HeaderValue::from_static("mallory"));
    assert_eq!(authn.authenticate(&mut h, None).await, Authn::Anonymous);
}

#[tokio::test(start_paused = true)]
async fn authorization_order_and_cache() {
    let fake = Arc::new(FakeAccessReviewer {
        allowed_users: vec!["alice".into()],
        ..Default::default()
    });
    let authz = Authorizer::new(AuthzMode::Webhook(fake.clone()));
    let alice = UserInfo {
        name: "alice".into(),
        ..Default::default()
    };
    let bob = UserInfo {
        name: "bob".into(),
        ..Default::default()
    };
    let admin = UserInfo {
        name: "root".into(),
        groups: vec!["system:masters".into()],
        ..Default::default()
    };
    let a = attributes(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q",
        false,
    );
    assert!(
        authz
            .authorize(
                &alice,
                &a,
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q"
            )
            .await
    );
    assert!(
        authz
            .authorize(
                &alice,
                &a,
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q"
            )
            .await
    );
    assert!(!authz.authorize(&bob, &a, "/x").await);
    assert!(!authz.authorize(&bob, &a, "/x").await);
    assert_eq!(
        fake.calls.load(Ordering::Relaxed),
        2,
        "allow and deny are both cached"
    );
    tokio::time::advance(CACHE_TTL + std::time::Duration::from_millis(1)).await;
    assert!(!authz.authorize(&bob, &a, "/x").await);
    assert_eq!(
        fake.calls.load(Ordering::Relaxed),
        3,
        "entries expire after the TTL"
    );
    assert!(
        authz.authorize(&admin, &a, "/x").await,
        "system:masters needs no review"
    );
    assert!(
        authz
            .authorize(&bob, &attributes("/readyz", false), "/readyz")
            .await,
        "health paths are always allowed"
    );
    assert_eq!(fake.calls.load(Ordering::Relaxed), 3);
    assert!(
        Authorizer::new(AuthzMode::AlwaysAllow)
            .authorize(&bob, &a, "/x")
            .await
    );
}

/// A reviewer whose every call fails, like an adapter without `system:auth-delegator`.
struct FailingReviewer;

impl AccessReviewer for FailingReviewer {
    fn review(&self, _: &UserInfo, _: &Attributes) -> BoxFuture<'_, Result<bool, AuthError>> {
        Box::pin(async {
            Err(AuthError::Backend(
                "subjectaccessreviews.authorization.k8s.io is forbidden".into(),
            ))
        })
    }
}

#[tokio::test]
async fn a_failed_review_is_an_error_not_a_denial_and_is_not_cached() {
    let authz = Authorizer::new(AuthzMode::Webhook(Arc::new(FailingReviewer)));
    let bob = UserInfo {
        name: "bob".into(),
        ..Default::default()
    };
    let a = attributes(
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/q",
        false,
    );
    let err = authz.decide(&bob, &a, "/x").await.unwrap_err();
    assert!(err.to_string().contains("subjectaccessreviews"), "{err}");
    assert!(authz.decide(&bob, &a, "/x").await.is_err(), "not cached");
    assert!(
        !authz.authorize(&bob, &a, "/x").await,
        "authorize still denies"
    );
}
