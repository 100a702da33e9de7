//! The `prometheus-parse` crate behind [`ExpositionParser`], kept to document its defects in tests.

use prometheus_parse::{Scrape, Value};

use super::{ExpoSample, ExpositionParser, Format, MetricType, ParseError};

/// `prometheus-parse` 0.2 as an [`ExpositionParser`]. Not used by the scrape source: see the
/// module docs of [`super`] for why.
#[derive(Clone, Copy, Debug, Default)]
pub struct PromParse;

impl ExpositionParser for PromParse {
    fn parse_matching(
        &self,
        page: &str,
        _format: Format,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<ExpoSample>, ParseError> {
        let lines = page.lines().map(|l| Ok(l.to_string()));
        let scrape = Scrape::parse(lines).map_err(|e| ParseError {
            line: 0,
            what: e.to_string(),
        })?;
        let mut out = Vec::new();
        for s in scrape.samples {
            let mut labels: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let mut push = |name: String, kind, labels: Vec<(String, String)>, value| {
                if keep(&name) {
                    out.push(ExpoSample {
                        name,
                        kind,
                        labels,
                        value,
                        timestamp: None,
                    });
                }
            };
            match s.value {
                Value::Counter(v) => push(s.metric, MetricType::Counter, labels, v),
                Value::Gauge(v) => push(s.metric, MetricType::Gauge, labels, v),
                Value::Untyped(v) => push(s.metric, MetricType::Untyped, labels, v),
                Value::Histogram(buckets) => {
                    for b in buckets {
                        let mut l = labels.clone();
                        l.push(("le".into(), format_le(b.less_than)));
                        push(
                            format!("{}_bucket", s.metric),
                            MetricType::Histogram,
                            l,
                            b.count,
                        );
                    }
                }
                Value::Summary(qs) => {
                    for q in qs {
                        let mut l = labels.clone();
                        l.push(("quantile".into(), q.quantile.to_string()));
                        push(s.metric.clone(), MetricType::Summary, l, q.count);
                    }
                }
            }
        }
        Ok(out)
    }
}

fn format_le(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        v.to_string()
    }
}
