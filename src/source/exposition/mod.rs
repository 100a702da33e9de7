//! Reading `/metrics` pages: Prometheus text 0.0.4 and OpenMetrics 1.0, behind one small trait.
//!
//! Two implementations exist: [`TextParser`] (ours, the one the scrape source uses) and
//! [`PromParse`] (a wrapper over the `prometheus-parse` crate, kept so tests can show why it is not
//! used: it loses OpenMetrics counter types, cuts label values at `,` and `=`, leaves escapes raw and
//! reports histogram `_sum`/`_count` as untyped — all of which our own services' pages contain).

use std::borrow::Cow;

mod promparse;
mod text;

pub use promparse::PromParse;
pub use text::TextParser;

/// The declared type of a metric family (from `# TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A monotonically increasing count (`_total` in OpenMetrics).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative `_bucket{le}` counts with `_sum` and `_count`.
    Histogram,
    /// Client-side quantiles with `_sum` and `_count`.
    Summary,
    /// OpenMetrics gauge histogram.
    GaugeHistogram,
    /// OpenMetrics info.
    Info,
    /// OpenMetrics state set.
    StateSet,
    /// No `# TYPE` line, or `untyped`/`unknown`.
    Untyped,
}

impl MetricType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" => Self::Histogram,
            "summary" => Self::Summary,
            "gaugehistogram" => Self::GaugeHistogram,
            "info" => Self::Info,
            "stateset" => Self::StateSet,
            "untyped" | "unknown" => Self::Untyped,
            _ => return None,
        })
    }
}

/// The wire format of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text 1.0 (must end with `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces (text 0.0.4 when absent or unknown).
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        match content_type {
            Some(ct) if ct.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }
}

/// One sample line of a page; names and label values borrow from the page where they can.
#[derive(Clone, Debug, PartialEq)]
pub struct ExpoSample<'a> {
    /// The sample's metric name, e.g. `http_requests_total` or `x_bucket`.
    pub name: Cow<'a, str>,
    /// The family's declared type, applied to its `_total`/`_bucket`/`_sum`/`_count`/… samples.
    pub kind: MetricType,
    /// Labels in page order, values unescaped.
    pub labels: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// The value.
    pub value: f64,
    /// The sample's own timestamp in seconds since the epoch, if the page gave one.
    pub timestamp: Option<f64>,
}

impl ExpoSample<'_> {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// Why a page could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub what: String,
}

/// Parses exposition pages into samples.
pub trait ExpositionParser: Send + Sync {
    /// Every sample whose name `keep` accepts; other lines are checked only as far as needed to
    /// skip them.
    fn parse_matching<'a>(
        &self,
        page: &'a str,
        format: Format,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<ExpoSample<'a>>, ParseError>;

    /// Every sample of the page.
    fn parse<'a>(&self, page: &'a str, format: Format) -> Result<Vec<ExpoSample<'a>>, ParseError> {
        self.parse_matching(page, format, &|_| true)
    }
}

/// A bucket's `le` label as a number (`+Inf` included).
pub fn parse_le(s: &str) -> Option<f64> {
    text::parse_float(s)
}

/// True when `sample` belongs to the family `family` (the name itself, or it plus one of the
/// suffixes counters, histograms and summaries use).
pub fn in_family(sample: &str, family: &str) -> bool {
    match sample.strip_prefix(family) {
        Some("") => true,
        Some(rest) => matches!(rest, "_total" | "_bucket" | "_sum" | "_count" | "_created"),
        None => false,
    }
}

#[cfg(test)]
mod tests;
