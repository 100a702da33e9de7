//! Prometheus source tests against a wiremock HTTP API (the real server is used by the
//! cross-check in `tests/`).

use std::time::Duration;

use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::source::BuildContext;

fn ctx(url: &str) -> BuildContext {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut c = BuildContext::new(MetricId::new("shop/web", "queue"), reqwest::Client::new());
    c.namespace = "shop".into();
    c.selector = Some("app=web,tier!=db".into());
    c.prometheus_url = Some(url.into());
    c
}

fn source(server: &MockServer, yaml: &str) -> PrometheusSource {
    let cfg: PrometheusConfig = serde_saphyr::from_str(yaml).unwrap();
    PrometheusSource::new(cfg, &ctx(&server.uri())).unwrap()
}

#[test]
fn templates_render_namespace_selector_and_window() {
    assert_eq!(
        render(
            "sum(rate(x{namespace=\"{{ namespace }}\",{{selector}}}[{{  window }}]))",
            "shop",
            "app=\"web\"",
            "30s"
        ),
        "sum(rate(x{namespace=\"shop\",app=\"web\"}[30s]))"
    );
    assert_eq!(
        promql_matchers("app=web, tier!=db,x==y").unwrap(),
        "app=\"web\",tier!=\"db\",x=\"y\""
    );
    assert!(
        promql_matchers("env in (a,b)")
            .unwrap_err()
            .contains("not an equality")
    );
    assert!(promql_matchers("app.kubernetes.io/name=web").is_err());
    let e = PrometheusSource::new(
        serde_saphyr::from_str("query: 'up{x=\"{{ nope }}\"}'\n").unwrap(),
        &ctx("http://127.0.0.1:1"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown template variable"), "{e}");
    let mut no_url = ctx("x");
    no_url.prometheus_url = None;
    assert!(
        PrometheusSource::new(serde_saphyr::from_str("query: up\n").unwrap(), &no_url).is_err()
    );
}

#[tokio::test]
async fn vector_becomes_a_value_or_per_pod_values() {
    let server = MockServer::start().await;
    let query = "sum by (pod) (rate(http_requests_total{namespace=\"shop\",app=\"web\",tier!=\"db\"}[30s]))";
    Mock::given(method("GET"))
        .and(path("/api/v1/query"))
        .and(query_param("query", query))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "success",
            "data": {"resultType": "vector", "result": [
                {"metric": {"pod": "web-1"}, "value": [1700000000.0, "12.5"]},
                {"metric": {"pod": "web-2"}, "value": [1700000000.0, "7.5"]}
            ]}
        })))
        .mount(&server)
        .await;
    let t = "query: 'sum by (pod) (rate(http_requests_total{namespace=\"{{ namespace }}\",{{ selector }}}[{{ window }}]))'\nwindow: 30s\n";
    let r = source(&server, t).read().await.unwrap();
    assert_eq!(r.value, crate::metric::ReadingValue::Value(20.0));
    assert!(r.origin.contains(query));
    let r = source(&server, &format!("{t}podLabel: pod\n"))
        .read()
        .await
        .unwrap();
    assert_eq!(r.pods().unwrap()["web-2"], 7.5);
    assert_eq!(r.total(), 20.0);
    let e = source(&server, &format!("{t}podLabel: instance\n"))
        .read()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no \"instance\" label"), "{e}");
}

#[tokio::test]
async fn scalar_empty_and_errors() {
    let server = MockServer::start().await;
    let answer = |q: &str, status: u16, body: serde_json::Value| {
        Mock::given(path("/api/v1/query"))
            .and(query_param("query", q))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
    };
    answer(
        "scalar(1)",
        200,
        json!({"status":"success","data":{"resultType":"scalar","result":[1.0,"+Inf"]}}),
    )
    .mount(&server)
    .await;
    answer(
        "absent",
        200,
        json!({"status":"success","data":{"resultType":"vector","result":[]}}),
    )
    .mount(&server)
    .await;
    answer("sum(", 400, json!({"status":"error","errorType":"bad_data","error":"1:5: parse error: unclosed left parenthesis"}))
        .mount(&server)
        .await;
    answer(
        "x[1m]",
        200,
        json!({"status":"success","data":{"resultType":"matrix","result":[]}}),
    )
    .mount(&server)
    .await;
    Mock::given(path("/api/v1/query"))
        .and(query_param("query", "slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    Mock::given(path("/api/v1/query"))
        .and(query_param("query", "html"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"))
        .mount(&server)
        .await;

    assert_eq!(
        source(&server, "query: scalar(1)\n")
            .read()
            .await
            .unwrap()
            .total(),
        f64::INFINITY
    );
    let e = source(&server, "query: absent\n").read().await.unwrap_err();
    assert!(matches!(e, SourceError::NoData { .. }), "{e}");
    let e = source(&server, "query: 'sum('\n").read().await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "shop/web/queue: query \"sum(\" failed: bad_data: 1:5: parse error: unclosed left parenthesis"
    );
    let e = source(&server, "query: 'x[1m]'\n")
        .read()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("\"matrix\""), "{e}");
    let e = source(&server, "query: slow\ntimeout: 200ms\n")
        .read()
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Timeout { .. }), "{e}");
    let e = source(&server, "query: html\n").read().await.unwrap_err();
    assert!(
        matches!(e, SourceError::HttpStatus { status: 502, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unreachable() {
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cfg: PrometheusConfig = serde_saphyr::from_str("query: up\n").unwrap();
    let e = PrometheusSource::new(cfg, &ctx(&refused))
        .unwrap()
        .read()
        .await
        .unwrap_err();
    assert!(matches!(e, SourceError::Unreachable { .. }), "{e}");
}
