//! Property-based fuzzing of the adapter's parsers: the label-selector parser, the path router,
//! the query decoder and the request-info attributes never panic, and whatever the selector
//! parser accepts prints back to an equal selector.

use proptest::prelude::*;
use tidescale::adapter::auth::attributes;
use tidescale::adapter::path::{Route, route};
use tidescale::adapter::query_pairs;
use tidescale::adapter::selector::Selector;
use tower::ServiceExt;

fn selector_like() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        "[a-z]{1,5}".prop_map(|s| s),
        Just("=".to_string()),
        Just("==".to_string()),
        Just("!=".to_string()),
        Just("!".to_string()),
        Just(" in ".to_string()),
        Just(" notin ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just(">".to_string()),
        Just("<".to_string()),
        Just("7".to_string()),
        Just("example.com/".to_string()),
        Just(" ".to_string()),
    ];
    proptest::collection::vec(atom, 0..16).prop_map(|v| v.concat())
}

fn path_like() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just("apis".to_string()),
        Just("custom.metrics.k8s.io".to_string()),
        Just("external.metrics.k8s.io".to_string()),
        Just("v1beta1".to_string()),
        Just("v1beta2".to_string()),
        Just("namespaces".to_string()),
        Just("metrics".to_string()),
        Just("pods".to_string()),
        Just("%2A".to_string()),
        Just("*".to_string()),
        Just("%".to_string()),
        Just("%zz".to_string()),
        Just("%ff".to_string()),
        Just("".to_string()),
        "[a-z0-9._-]{1,8}".prop_map(|s| s),
        "\\PC{0,4}".prop_map(|s| s),
    ];
    proptest::collection::vec(seg, 0..9).prop_map(|v| format!("/{}", v.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn selector_parser_never_panics_and_round_trips(s in prop_oneof![selector_like(), "\\PC{0,40}"]) {
        if let Ok(sel) = Selector::parse(&s) {
            let again = Selector::parse(&sel.to_string()).expect("printed selector parses");
            prop_assert_eq!(again, sel.clone());
            let _ = sel.to_label_selector();
            let _ = sel.matches(&Default::default());
        }
    }

    #[test]
    fn router_never_panics(p in prop_oneof![path_like(), "\\PC{0,60}"], q in "\\PC{0,40}") {
        let r = route(&p);
        if let Route::Custom(c) = &r {
            prop_assert!(!c.metric.is_empty() && !c.name.is_empty() && !c.resource.is_empty());
        }
        let _ = attributes(&p, false);
        let _ = query_pairs(&q);
    }

    #[test]
    fn whole_router_answers_every_request_with_a_status_or_a_body(p in path_like(), q in "[a-zA-Z=%+,()!&*0-9 ]{0,40}") {
        let uri = format!("{}?{}", p.replace(' ', "%20"), q.replace(' ', "+"));
        let Ok(req) = http::Request::get(&uri).body(axum::body::Body::empty()) else { return Ok(()) };
        let resp = runtime().block_on(app().oneshot(req)).unwrap();
        let code = resp.status().as_u16();
        prop_assert!(matches!(code, 200 | 400 | 404 | 500), "{uri}: {code}");
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

/// The adapter's router over a config with every kind of metric and no readings yet.
fn app() -> axum::Router {
    use std::sync::{Arc, atomic::AtomicBool};
    use tidescale::adapter::{AdapterState, Security, config::AdapterConfig, router};
    static APP: std::sync::OnceLock<axum::Router> = std::sync::OnceLock::new();
    APP.get_or_init(|| {
        let cfg = AdapterConfig::parse(
            "externalMetrics:\n- name: q\n  prometheus: {query: q}\ncustomMetrics:\n- name: m\n  resource: pods\n  prometheus: {query: q, podLabel: pod}\n- name: m\n  resource: namespaces\n  object: a\n  prometheus: {query: q}\n",
        )
        .unwrap();
        router(Arc::new(AdapterState::new(Arc::new(cfg), tidescale::store::SampleStore::new(10), Arc::new(AtomicBool::new(true)), Security::Off)))
    })
    .clone()
}
