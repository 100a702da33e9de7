//! Our line parser for Prometheus text 0.0.4 and OpenMetrics 1.0 pages.
//!
//! It reads what our services and common exporters emit: label values with any character
//! (escapes `\\`, `\"`, `\n` undone), OpenMetrics `_total` counters and `# EOF`, exemplars and
//! float-second timestamps, and classic millisecond timestamps. Memory is proportional to the
//! kept lines: every string it returns is a (possibly unescaped, so never longer) copy of input.

use std::borrow::Cow;
use std::collections::HashMap;

use super::{ExpoSample, ExpositionParser, Format, MetricType, ParseError};

/// More labels than this on one sample is treated as a broken page, not data.
const MAX_LABELS: usize = 128;

/// The exposition parser the scrape source uses.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextParser;

impl ExpositionParser for TextParser {
    fn parse_matching<'a>(
        &self,
        page: &'a str,
        format: Format,
        keep: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<ExpoSample<'a>>, ParseError> {
        let mut types: HashMap<&str, MetricType> = HashMap::new();
        let mut out = Vec::new();
        let mut saw_eof = false;
        if format == Format::Text && !page.is_empty() && !page.ends_with('\n') {
            return Err(ParseError {
                line: page.lines().count(),
                what: "last line does not end with a line feed (truncated page?)".into(),
            });
        }
        for (i, raw) in page.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let err = |what: String| ParseError {
                line: line_no,
                what,
            };
            if saw_eof {
                if line.is_empty() {
                    continue;
                }
                return Err(err("content after # EOF".into()));
            }
            let trimmed = line.trim_start_matches([' ', '\t']);
            if trimmed.is_empty() {
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix('#') {
                let mut words = comment.split_ascii_whitespace();
                match words.next() {
                    Some("EOF") if format == Format::OpenMetrics => saw_eof = true,
                    Some("TYPE") => {
                        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                            return Err(err("# TYPE needs a name and a type".into()));
                        };
                        let kind = MetricType::parse(kind)
                            .ok_or_else(|| err(format!("unknown metric type {kind:?}")))?;
                        types.insert(name, kind);
                    }
                    _ => {}
                }
                continue;
            }
            let name_len = trimmed
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(trimmed.len());
            let name = &trimmed[..name_len];
            if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                return Err(err(format!("bad metric name at {:?}", clip(trimmed))));
            }
            if !keep(name) {
                continue;
            }
            let mut sample = parse_sample(&trimmed[name_len..], format).map_err(err)?;
            sample.name = Cow::Borrowed(name);
            sample.kind = family_type(&types, name);
            out.push(sample);
        }
        if format == Format::OpenMetrics && !saw_eof {
            return Err(ParseError {
                line: page.lines().count(),
                what: "OpenMetrics page does not end with # EOF (truncated page?)".into(),
            });
        }
        Ok(out)
    }
}

/// The declared type of the family `name` belongs to.
fn family_type(types: &HashMap<&str, MetricType>, name: &str) -> MetricType {
    if let Some(t) = types.get(name) {
        return *t;
    }
    for suffix in [
        "_total", "_bucket", "_sum", "_count", "_created", "_info", "_gsum", "_gcount",
    ] {
        if let Some(t) = name.strip_suffix(suffix).and_then(|base| types.get(base)) {
            return *t;
        }
    }
    MetricType::Untyped
}

/// Parses what follows the metric name: `{labels} value [timestamp] [# exemplar]`.
fn parse_sample(rest: &str, format: Format) -> Result<ExpoSample<'_>, String> {
    let mut labels = Vec::new();
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields.next().ok_or("missing value")?;
    let value =
        parse_float(value_text).ok_or_else(|| format!("bad value {:?}", clip(value_text)))?;
    let timestamp = match fields.next() {
        None => None,
        Some(t) if t.starts_with('#') => None,
        Some(t) => {
            let ts = parse_float(t).ok_or_else(|| format!("bad timestamp {:?}", clip(t)))?;
            Some(match format {
                Format::Text => ts / 1000.0,
                Format::OpenMetrics => ts,
            })
        }
    };
    if let Some(extra) = fields.next()
        && !extra.starts_with('#')
        && timestamp.is_some()
    {
        return Err(format!("unexpected {:?} after the timestamp", clip(extra)));
    }
    Ok(ExpoSample {
        name: Cow::Borrowed(""),
        kind: MetricType::Untyped,
        labels,
        value,
        timestamp,
    })
}

/// Parses `name="value",…}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut Vec<(Cow<'a, str>, Cow<'a, str>)>,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix('}') {
            return Ok(after);
        }
        let name_len = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated label set")?;
        let name = &s[..name_len];
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(format!("bad label name at {:?}", clip(s)));
        }
        s = s[name_len..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("expected = after label {name}"))?
            .trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("expected \" to open the value of label {name}"))?;
        let (value, after) =
            parse_quoted(s).ok_or_else(|| format!("unterminated value of label {name}"))?;
        if labels.len() >= MAX_LABELS {
            return Err(format!("more than {MAX_LABELS} labels"));
        }
        labels.push((Cow::Borrowed(name), value));
        s = after.trim_start_matches([' ', '\t']);
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err(format!("expected , or }} after label {name}"));
        }
    }
}

/// Reads a quoted label value up to its closing quote, undoing escapes.
fn parse_quoted(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let bytes = s.as_bytes();
    // Fast path: no escapes before the closing quote.
    let end = bytes.iter().position(|&b| b == b'"' || b == b'\\')?;
    if bytes[end] == b'"' {
        return Some((Cow::Borrowed(&s[..end]), &s[end + 1..]));
    }
    let mut value = String::with_capacity(end + 8);
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((Cow::Owned(value), &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                '\\' => value.push('\\'),
                '"' => value.push('"'),
                other => {
                    value.push('\\');
                    value.push(other);
                }
            },
            c => value.push(c),
        }
    }
    None
}

/// Go's `strconv.ParseFloat` as Prometheus uses it: decimals, `NaN`, `+Inf`, `-Inf`.
pub(super) fn parse_float(s: &str) -> Option<f64> {
    // Rust also accepts "infinity" and "nan" in any case, as Go does; it does not accept
    // hexadecimal floats or underscores, which no exporter writes.
    s.parse::<f64>().ok()
}

/// At most 40 bytes of `s` (on a char boundary), for error messages.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
