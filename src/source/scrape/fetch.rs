//! Fetching one `/metrics` page: content negotiation, a whole-request timeout, a size cap.

use std::time::Duration;

use crate::metric::MetricId;
use crate::source::SourceError;
use crate::source::exposition::Format;

/// Ask for OpenMetrics first (it carries types for `_total` counters), text 0.0.4 otherwise.
pub const ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Fetches `url` within `timeout` (connect, headers and body together), reading at most
/// `max_bytes` of body.
pub async fn fetch_page(
    http: &reqwest::Client,
    metric: &MetricId,
    url: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<(Format, String), SourceError> {
    let work = async {
        let mut resp = http
            .get(url)
            .header(reqwest::header::ACCEPT, ACCEPT)
            .send()
            .await
            .map_err(|e| SourceError::Unreachable {
                metric: metric.clone(),
                endpoint: url.to_string(),
                why: error_chain(&e),
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(SourceError::HttpStatus {
                metric: metric.clone(),
                endpoint: url.to_string(),
                status: status.as_u16(),
            });
        }
        let format = Format::from_content_type(
            resp.headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let bad = |why: String| SourceError::BadPayload {
            metric: metric.clone(),
            endpoint: url.to_string(),
            why,
        };
        if let Some(len) = resp.content_length()
            && len > max_bytes as u64
        {
            return Err(bad(format!(
                "page of {len} bytes exceeds the {max_bytes}-byte limit"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| bad(format!("body cut off: {}", error_chain(&e))))?
        {
            if body.len() + chunk.len() > max_bytes {
                return Err(bad(format!("page exceeds the {max_bytes}-byte limit")));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        Ok((format, text))
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(SourceError::Timeout {
            metric: metric.clone(),
            endpoint: url.to_string(),
            after: timeout,
        }),
    }
}

/// The error and its causes in one line (reqwest's top-level message alone hides "refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
