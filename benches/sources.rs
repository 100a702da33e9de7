//! Source figures: parse + aggregate a 5,000-series page (goal ≤ 5 ms), scrape 100 loopback
//! endpoints (goal: within one 1 s interval), and bytes of memory per tracked series.
//!
//! `cargo bench --bench sources`. The parse benchmark also runs prometheus-parse on the same
//! page as a baseline.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tidescale::clock::{self, Instant};
use tidescale::metric::MetricId;
use tidescale::source::exposition::{ExpositionParser, Format, PromParse, TextParser};
use tidescale::source::scrape::ScrapeSource;
use tidescale::source::{BuildContext, ScrapeConfig};

/// The `k`-th scrape of a 5,000-series OpenMetrics page: 200 routes' latency histograms (17
/// series each), 800 request counters and 800 gauges; counters grow steadily with `k`.
fn page_5000(k: u64) -> String {
    let les = [
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5",
        "5.0", "7.5", "10.0", "+Inf",
    ];
    let mut s = String::new();
    s += "# HELP http_request_duration_seconds Latency.\n# TYPE http_request_duration_seconds histogram\n";
    for r in 0..200 {
        let mut cum = 0u64;
        for (i, le) in les.iter().enumerate() {
            cum += ((1000 / (i as u64 + 1)) + r) * k;
            writeln!(
                s,
                "http_request_duration_seconds_bucket{{le=\"{le}\",route=\"/api/v1/r{r}\"}} {cum}"
            )
            .unwrap();
        }
        writeln!(
            s,
            "http_request_duration_seconds_sum{{route=\"/api/v1/r{r}\"}} {}",
            cum as f64 * 0.01
        )
        .unwrap();
        writeln!(
            s,
            "http_request_duration_seconds_count{{route=\"/api/v1/r{r}\"}} {cum}"
        )
        .unwrap();
    }
    s += "# HELP http_requests Requests.\n# TYPE http_requests counter\n";
    for r in 0..200 {
        for m in ["GET", "PUT"] {
            for st in ["200", "500"] {
                writeln!(s, "http_requests_total{{method=\"{m}\",route=\"/api/v1/r{r}\",status=\"{st}\"}} {}", (r * 37 + 5) * k).unwrap();
            }
        }
    }
    s += "# HELP queue_depth Depth.\n# TYPE queue_depth gauge\n";
    for q in 0..800 {
        writeln!(
            s,
            "queue_depth{{queue=\"q{q}\",shard=\"{}\"}} {}",
            q % 7,
            q % 13
        )
        .unwrap();
    }
    s += "# EOF\n";
    s
}

fn source(yaml: &str, endpoints: Vec<String>) -> ScrapeSource {
    let mut cfg: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
    cfg.endpoints = endpoints;
    let ctx = BuildContext::new(MetricId::new("bench", "m"), reqwest::Client::new());
    ScrapeSource::new(cfg, &ctx).unwrap()
}

/// A source whose history already holds 30 scrapes one second apart (a full 30 s window).
fn warmed(yaml: &str, pages: &[String], base: Instant) -> ScrapeSource {
    let src = source(yaml, vec!["http://127.0.0.1:9/metrics".into()]);
    for (i, page) in pages.iter().take(30).enumerate() {
        src.ingest(
            "pod",
            page,
            Format::OpenMetrics,
            base + Duration::from_secs(i as u64),
        )
        .unwrap();
    }
    src
}

fn bench_parse_aggregate(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let pages: Vec<String> = (0..=30).map(page_5000).collect();
    let page = &pages[30];
    assert_eq!(
        TextParser.parse(page, Format::OpenMetrics).unwrap().len(),
        5_000
    );
    let quantile =
        "metric: http_request_duration_seconds\naggregate: {quantile: {q: 0.95, window: 30s}}\n";
    let rate = "metric: http_requests_total\naggregate: {rate: {window: 30s}}\n";
    let base = clock::now();

    // Memory per tracked series: the history's bytes over its series, for a full window.
    for (name, yaml, series) in [("quantile", quantile, 3_000), ("rate", rate, 800)] {
        let src = warmed(yaml, &pages, base);
        let bytes = src.history_bytes();
        println!(
            "memory per tracked series ({name}, 30 points = 30 s at 1 s): {} bytes ({bytes} bytes for {series} series)",
            bytes / series
        );
    }

    let mut g = c.benchmark_group("parse_5000_series");
    g.bench_function("tidescale TextParser", |b| {
        b.iter(|| {
            TextParser
                .parse(black_box(page), Format::OpenMetrics)
                .unwrap()
        })
    });
    g.bench_function("prometheus-parse (baseline)", |b| {
        b.iter(|| {
            PromParse
                .parse(black_box(page), Format::OpenMetrics)
                .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse_and_aggregate_5000_series");
    g.sample_size(30);
    let now = base + Duration::from_secs(30);
    let answered = vec!["pod".to_string()];
    for (name, yaml) in [
        ("p95 over 3000 bucket series", quantile),
        ("rate over 800 counters", rate),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || warmed(yaml, &pages, base),
                |src| {
                    src.ingest("pod", page, Format::OpenMetrics, now).unwrap();
                    let r = src
                        .aggregate(&answered, now, SystemTime::UNIX_EPOCH, "bench")
                        .unwrap();
                    black_box(r.total())
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn bench_scrape_100(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 100 loopback endpoints, each a demo-like page of about 60 series.
    let page: String = {
        let mut s = String::from("# TYPE http_requests counter\n");
        for r in 0..8 {
            writeln!(
                s,
                "http_requests_total{{method=\"GET\",route=\"/r{r}\",status=\"200\"}} {}",
                r * 100
            )
            .unwrap();
        }
        s += "# TYPE http_request_duration_seconds histogram\n";
        for r in 0..3 {
            for (i, le) in [
                "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1.0", "5.0", "10.0", "+Inf",
            ]
            .iter()
            .enumerate()
            {
                writeln!(
                    s,
                    "http_request_duration_seconds_bucket{{le=\"{le}\",route=\"/r{r}\"}} {}",
                    i * 10
                )
                .unwrap();
            }
            writeln!(s, "http_request_duration_seconds_sum{{route=\"/r{r}\"}} 1.5\nhttp_request_duration_seconds_count{{route=\"/r{r}\"}} 90").unwrap();
        }
        s += "# EOF\n";
        s
    };
    let endpoints: Vec<String> = rt.block_on(async {
        let mut urls = Vec::new();
        for _ in 0..100 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            urls.push(format!("http://{}/metrics", listener.local_addr().unwrap()));
            let body = page.clone();
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let body = body.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0",
                            )],
                            body,
                        )
                    }
                }),
            );
            tokio::spawn(async move { axum::serve(listener, app).await });
        }
        urls
    });
    let src = {
        let _guard = rt.enter();
        source(
            "metric: http_requests_total\naggregate: {rate: {window: 30s}}\n",
            endpoints,
        )
    };
    rt.block_on(async {
        let started = clock::now();
        let _ = tidescale::source::MetricSource::read(&src).await;
        println!(
            "first scrape of 100 loopback endpoints (connections opened): {:?}",
            clock::since(started)
        );
    });
    let mut g = c.benchmark_group("scrape_100_endpoints");
    g.sample_size(20);
    g.bench_function("read (100 concurrent fetches + parse + rate)", |b| {
        b.to_async(&rt).iter(|| async {
            tidescale::source::MetricSource::read(&src)
                .await
                .unwrap()
                .total()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse_aggregate, bench_scrape_100);
criterion_main!(benches);
