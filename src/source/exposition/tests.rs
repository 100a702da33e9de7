//! Parser tests: recorded pages, prometheus-parse's known defects, prometheus-client round trips,
//! and arbitrary/mutated input.

use std::path::PathBuf;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use proptest::prelude::*;

use super::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/exposition")
        .join(name)
}

fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

type LabelVec = Vec<(String, String)>;

/// A registry shaped like the demo service's: a request counter and a latency histogram.
fn demo_like_page(requests: &[(LabelVec, u64)], latencies: &[(LabelVec, f64)]) -> String {
    let mut registry = Registry::default();
    let counter = Family::<LabelVec, Counter>::default();
    let hist = Family::<LabelVec, Histogram>::new_with_constructor(|| {
        Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0])
    });
    let inflight = Gauge::<i64>::default();
    registry.register("http_requests", "Requests handled", counter.clone());
    registry.register("http_request_duration_seconds", "Latency", hist.clone());
    registry.register("http_in_flight", "Requests in flight", inflight.clone());
    for (labels, n) in requests {
        counter.get_or_create(labels).inc_by(*n);
    }
    for (labels, v) in latencies {
        hist.get_or_create(labels).observe(*v);
    }
    inflight.set(3);
    let mut page = String::new();
    encode(&mut page, &registry).unwrap();
    page
}

fn lv(pairs: &[(&str, &str)]) -> LabelVec {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The recorded prometheus-client page is what today's prometheus-client writes (rewrite with
/// `UPDATE_GOLDEN=1`).
#[test]
fn prometheus_client_fixture_is_current() {
    let kv = lv(&[("method", "GET"), ("route", "/kv/{key}"), ("status", "200")]);
    let page = demo_like_page(
        &[
            (kv, 1042),
            (
                lv(&[("method", "GET"), ("route", "/load"), ("status", "200")]),
                17,
            ),
        ],
        &[
            (lv(&[("route", "/kv/{key}")]), 0.003),
            (lv(&[("route", "/kv/{key}")]), 0.02),
            (lv(&[("route", "/load")]), 0.3),
        ],
    );
    let path = fixture("prometheus-client-openmetrics.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &page).unwrap();
    }
    // prometheus-client keeps label sets in a hash map, so series order varies between runs.
    let sorted = |p: &str| {
        let mut l: Vec<String> = p.lines().map(str::to_string).collect();
        l.sort();
        l
    };
    assert_eq!(
        sorted(&read_fixture("prometheus-client-openmetrics.txt")),
        sorted(&page)
    );
}

#[test]
fn reads_recorded_openmetrics_page_with_types() {
    let page = read_fixture("prometheus-client-openmetrics.txt");
    let s = TextParser.parse(&page, Format::OpenMetrics).unwrap();
    let total: Vec<_> = s
        .iter()
        .filter(|x| x.name == "http_requests_total")
        .collect();
    assert_eq!(total.len(), 2);
    assert!(total.iter().all(|x| x.kind == MetricType::Counter));
    let kv = total
        .iter()
        .find(|x| x.label("route") == Some("/kv/{key}"))
        .unwrap();
    assert_eq!(kv.value, 1042.0);
    assert_eq!(kv.label("status"), Some("200"));
    let inf = s
        .iter()
        .find(|x| x.name == "http_request_duration_seconds_bucket" && x.label("le") == Some("+Inf"))
        .unwrap();
    assert_eq!(inf.kind, MetricType::Histogram);
    let count = s
        .iter()
        .find(|x| x.name == "http_request_duration_seconds_count")
        .unwrap();
    assert_eq!(count.kind, MetricType::Histogram);
    assert_eq!(
        s.iter().find(|x| x.name == "http_in_flight").unwrap().value,
        3.0
    );
}

#[test]
fn reads_recorded_text_page() {
    let page = read_fixture("text-0.0.4.txt");
    let s = TextParser.parse(&page, Format::Text).unwrap();
    assert_eq!(s.len(), 34);
    let first = &s[6];
    assert_eq!(first.name, "go_goroutines");
    assert_eq!(first.kind, MetricType::Gauge);
    let kv = s.iter().find(|x| x.name == "http_requests_total").unwrap();
    assert_eq!(kv.timestamp, Some(1_700_000_000.123));
    assert_eq!(kv.kind, MetricType::Counter);
    let routes: Vec<_> = s
        .iter()
        .filter(|x| x.name == "http_requests_total")
        .map(|x| x.label("route").unwrap())
        .collect();
    assert_eq!(routes[3], "/search,list");
    assert_eq!(routes[4], "/q?a=b");
    assert_eq!(routes[5], "say \"hi\"\\now\nthen");
    let q = s
        .iter()
        .filter(|x| x.name == "queue_depth")
        .map(|x| x.value)
        .collect::<Vec<_>>();
    assert!(q[0].is_nan());
    assert_eq!(q[1..], [f64::INFINITY, f64::NEG_INFINITY]);
    assert_eq!(s.last().unwrap().kind, MetricType::Untyped);
    assert_eq!(s[5].kind, MetricType::Summary);
}

#[test]
fn family_filter_keeps_only_the_family() {
    let page = read_fixture("text-0.0.4.txt");
    let s = TextParser
        .parse_matching(&page, Format::Text, &|n| {
            in_family(n, "http_request_duration_seconds")
        })
        .unwrap();
    assert_eq!(s.len(), 16);
    assert!(in_family("http_requests_total", "http_requests"));
    assert!(in_family("http_requests_total", "http_requests_total"));
    assert!(!in_family("http_requests_totalx", "http_requests"));
}

/// STACK.md pitfall 6 (a): an OpenMetrics counter comes back untyped from prometheus-parse.
#[test]
fn prometheus_parse_loses_openmetrics_counter_type() {
    let page = "# TYPE foo counter\nfoo_total 7\n# EOF\n";
    let theirs = PromParse.parse(page, Format::OpenMetrics).unwrap();
    assert_eq!(theirs[0].kind, MetricType::Untyped);
    let ours = TextParser.parse(page, Format::OpenMetrics).unwrap();
    assert_eq!((ours[0].kind, ours[0].value), (MetricType::Counter, 7.0));
}

/// Pitfall 6 (b): commas (and `=`) cut label values; escapes stay raw.
#[test]
fn prometheus_parse_cuts_label_values_and_keeps_escapes() {
    let page = "m{path=\"/x,y\",q=\"a=b\",s=\"say \\\"hi\\\"\"} 1\n";
    let theirs = PromParse.parse(page, Format::Text).unwrap();
    assert_eq!(theirs[0].label("path"), Some("/x"));
    assert_eq!(theirs[0].label("q"), None);
    // The value is cut at the escaped quote and its backslashes are kept.
    assert_eq!(theirs[0].label("s"), Some("say \\\"hi\\"));
    let ours = TextParser.parse(page, Format::Text).unwrap();
    assert_eq!(ours[0].label("path"), Some("/x,y"));
    assert_eq!(ours[0].label("q"), Some("a=b"));
    assert_eq!(ours[0].label("s"), Some("say \"hi\""));
}

/// Pitfall 6 (c): OpenMetrics float-second timestamps are dropped.
#[test]
fn prometheus_parse_drops_openmetrics_timestamps() {
    let page = "# TYPE g gauge\ng 5 1700000000.5 \n# EOF\n";
    assert_eq!(
        PromParse.parse(page, Format::OpenMetrics).unwrap()[0].timestamp,
        None
    );
    let ours = TextParser.parse(page, Format::OpenMetrics).unwrap();
    assert_eq!(ours[0].timestamp, Some(1_700_000_000.5));
}

/// Pitfall 6 (d): histogram `_sum`/`_count` come back untyped.
#[test]
fn prometheus_parse_reports_histogram_sum_and_count_untyped() {
    let page = read_fixture("prometheus-client-openmetrics.txt");
    let theirs = PromParse.parse(&page, Format::OpenMetrics).unwrap();
    let count = theirs
        .iter()
        .find(|x| x.name == "http_request_duration_seconds_count")
        .unwrap();
    assert_eq!(count.kind, MetricType::Untyped);
}

#[test]
fn exemplars_are_skipped() {
    let page = "# TYPE h histogram\nh_bucket{le=\"0.1\"} 3 # {trace_id=\"ab\"} 0.05 1700000000.1\nh_bucket{le=\"+Inf\"} 4\n# EOF\n";
    let s = TextParser.parse(page, Format::OpenMetrics).unwrap();
    assert_eq!((s[0].value, s[0].timestamp), (3.0, None));
}

#[test]
fn malformed_and_truncated_pages_are_errors_with_line_numbers() {
    let cases = [
        ("m{a=\"b\" 1\n", Format::Text, 1),
        ("ok 1\nm{a=b} 1\n", Format::Text, 2),
        ("ok 1\nm 1x\n", Format::Text, 2),
        ("ok 1\nm\n", Format::Text, 2),
        ("m 1\nn 2", Format::Text, 2),
        ("# TYPE m counter\nm_total 1\n", Format::OpenMetrics, 2),
        ("m 1\n# EOF\nn 2\n", Format::OpenMetrics, 3),
        ("# TYPE m nonsense\n", Format::Text, 1),
        ("9m 1\n", Format::Text, 1),
        ("m{a=\"unterminated} 1\n", Format::Text, 1),
    ];
    for (page, format, line) in cases {
        let e = TextParser.parse(page, format).unwrap_err();
        assert_eq!(e.line, line, "{page:?}: {e}");
    }
    let many: String = (0..200).map(|i| format!("l{i}=\"v\",")).collect();
    let e = TextParser
        .parse(&format!("m{{{many}}} 1\n"), Format::Text)
        .unwrap_err();
    assert!(e.what.contains("more than 128 labels"), "{e}");
}

fn label_value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ -~\n\u{e9}\u{4e2d}]{0,12}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Whatever prometheus-client writes, we read back exactly.
    #[test]
    fn round_trips_prometheus_client_output(
        routes in proptest::collection::btree_map(label_value(), 0u64..1_000_000, 1..6),
        observations in proptest::collection::vec(0.0f64..2.0, 0..40),
    ) {
        let requests: Vec<_> = routes
            .iter()
            .map(|(r, n)| (lv(&[("route", r.as_str()), ("status", "200")]), *n))
            .collect();
        let first_route = routes.keys().next().unwrap().clone();
        let latencies: Vec<_> = observations
            .iter()
            .map(|v| (lv(&[("route", first_route.as_str())]), *v))
            .collect();
        let page = demo_like_page(&requests, &latencies);
        let s = TextParser.parse(&page, Format::OpenMetrics).unwrap();
        for (route, n) in &routes {
            let got = s
                .iter()
                .find(|x| x.name == "http_requests_total" && x.label("route") == Some(route))
                .unwrap_or_else(|| panic!("route {route:?} missing from\n{page}"));
            prop_assert_eq!(got.value, *n as f64);
            prop_assert_eq!(got.kind, MetricType::Counter);
        }
        if !observations.is_empty() {
            for (le, bound) in [("0.1", 0.1), ("+Inf", f64::INFINITY)] {
                let want = observations.iter().filter(|v| **v <= bound).count() as f64;
                let got = s
                    .iter()
                    .find(|x| x.name == "http_request_duration_seconds_bucket" && x.label("le") == Some(le))
                    .unwrap();
                prop_assert_eq!(got.value, want);
                prop_assert_eq!(got.label("route"), Some(first_route.as_str()));
            }
        }
    }

    /// Arbitrary bytes: an error or samples, never a panic, and never more text out than in.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let page = String::from_utf8_lossy(&bytes);
        for format in [Format::Text, Format::OpenMetrics] {
            if let Ok(samples) = TextParser.parse(&page, format) {
                prop_assert!(retained_bytes(&samples) <= page.len());
            }
        }
    }

    /// Real pages with bytes flipped, dropped, duplicated or cut off.
    #[test]
    fn mutated_real_pages_never_panic(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..12),
    ) {
        let (name, format) = [("text-0.0.4.txt", Format::Text), ("prometheus-client-openmetrics.txt", Format::OpenMetrics)][which];
        let mut bytes = read_fixture(name).into_bytes();
        for (at, op, b) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = b,
                1 => { bytes.remove(i); }
                2 => bytes.insert(i, b"{}\"=,\\# \n"[b as usize % 9]),
                _ => bytes.truncate(i),
            }
        }
        let page = String::from_utf8_lossy(&bytes);
        if let Ok(samples) = TextParser.parse(&page, format) {
            prop_assert!(retained_bytes(&samples) <= page.len());
        }
    }
}

/// Bytes of text the samples hold: names and labels are copies of (never longer than) input.
fn retained_bytes(samples: &[ExpoSample]) -> usize {
    samples
        .iter()
        .map(|s| {
            s.name.len()
                + s.labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum()
}
