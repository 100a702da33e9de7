//! The `prometheus-parse` crate behind [`ExpositionParser`], kept to document its defects in tests.

use std::borrow::Cow;

use prometheus_parse::{Scrape, Value};

use super::{ExpoSample, ExpositionParser, Format, MetricType, ParseError};

/// `prometheus-parse` 0.2 as an [`ExpositionParser`]. Not used by the scrape source: see the
/// module docs of [`super`] for why.
#[derive(Clone, Copy, Debug, Default)]
pub struct PromParse;

impl ExpositionParser for PromParse {
    fn parse_matching<'a>(
        &self,
        page: &'a str,
        _format: Format,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<ExpoSample<'a>>, ParseError> {
        let lines = page.lines().map(|l| Ok(l.to_string()));
        let scrape = Scrape::parse(lines).map_err(|e| ParseError {
            line: 0,
            what: e.to_string(),
        })?;
        let mut out = Vec::new();
        for s in scrape.samples {
            let mut labels: Vec<(Cow<'a, str>, Cow<'a, str>)> = s
                .labels
                .iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone())))
                .collect();
            labels.sort();
            let mut push =
                |name: String, kind, labels: Vec<(Cow<'a, str>, Cow<'a, str>)>, value| {
                    if keep(&name) {
                        out.push(ExpoSample {
                            name: Cow::Owned(name),
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
                        l.push((Cow::Borrowed("le"), Cow::Owned(format_le(b.less_than))));
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
                        l.push((
                            Cow::Borrowed("quantile"),
                            Cow::Owned(q.quantile.to_string()),
                        ));
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
