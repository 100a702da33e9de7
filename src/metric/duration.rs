//! Durations as Kubernetes users write them (`250ms`, `5s`, `1m30s`): shared vocabulary of policy
//! files, source settings, the adapter config and command-line flags.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the way Kubernetes users write them: `250ms`, `5s`, `1m30s`, `2h`.
///
/// Parsed once into a [`Duration`]; serialized back in the shortest exact form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(pub Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (expected e.g. 250ms, 5s, 1m30s)")]
pub struct DurationError {
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub why: &'static str,
}

impl DurationSpec {
    /// The duration as a [`Duration`].
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for DurationSpec {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for DurationSpec {
    type Err = DurationError;

    /// The grammar, shared with the load generator's durations (one table of vectors,
    /// `tests/fixtures/durations.tsv`, runs against both): a sum of `<number><unit>` terms with
    /// units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, or a bare number of seconds; never negative,
    /// below a billion seconds.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| DurationError {
            input: s.to_string(),
            why,
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(err("empty"));
        }
        let mut total_ns: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            if num_len == 0 {
                return Err(err("expected a number"));
            }
            let (num, tail) = rest.split_at(num_len);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let scale = match unit {
                // A bare number is seconds, but only on its own: `1m30` is a typo, not 90 s.
                "" if rest.len() == text.len() => 1e9,
                "" => return Err(err("missing unit")),
                "ns" => 1.0,
                "us" | "µs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(err("unknown unit (use ns, us, ms, s, m or h)")),
            };
            let value: f64 = num.parse().map_err(|_| err("bad number"))?;
            total_ns = total_ns.saturating_add((value * scale).round() as u128);
            rest = tail;
        }
        if total_ns >= MAX_NANOS {
            return Err(err("too large (the limit is a billion seconds)"));
        }
        let ns = total_ns as u64;
        Ok(Self(Duration::from_nanos(ns)))
    }
}

/// Durations stop short of a billion seconds (about 31 years): far beyond any setting.
const MAX_NANOS: u128 = 1_000_000_000_000_000_000;

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let ns = d.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        if !ns.is_multiple_of(1_000_000_000) {
            return if ns.is_multiple_of(1_000_000) {
                write!(f, "{}ms", ns / 1_000_000)
            } else if ns.is_multiple_of(1_000) {
                write!(f, "{}us", ns / 1_000)
            } else {
                write!(f, "{ns}ns")
            };
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^[0-9]+(\\.[0-9]+)?$",
            "description": "A duration such as 250ms, 5s or 1m30s; a bare number is seconds."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Duration {
        s.parse::<DurationSpec>().unwrap().0
    }

    #[test]
    fn parses_the_forms_users_write() {
        assert_eq!(d("250ms"), Duration::from_millis(250));
        assert_eq!(d("5s"), Duration::from_secs(5));
        assert_eq!(d("1m30s"), Duration::from_secs(90));
        assert_eq!(d("2h"), Duration::from_secs(7200));
        assert_eq!(d("1.5s"), Duration::from_millis(1500));
        assert_eq!(d("0"), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage_with_the_input_named() {
        for bad in ["", "s", "5x", "-1s", "1..2s", "1m30"] {
            let e = bad.parse::<DurationSpec>().unwrap_err();
            assert_eq!(e.input, bad);
        }
    }

    #[test]
    fn agrees_with_the_shared_vectors() {
        for (input, expected) in vectors() {
            let got = input.parse::<DurationSpec>().map(|d| d.0.as_nanos());
            assert_eq!(got.ok(), expected, "{input:?}");
        }
    }

    /// `input<TAB>nanoseconds` or `input<TAB>error`, one per line (`#` comments).
    fn vectors() -> Vec<(String, Option<u128>)> {
        include_str!("../../tests/fixtures/durations.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (input, out) = l.split_once('\t').expect("a tab between input and output");
                let input = input.trim_matches('"').to_string();
                (input, out.parse().ok())
            })
            .collect()
    }

    #[test]
    fn display_round_trips() {
        for s in ["250ms", "5s", "1m30s", "2h", "1h1m1s", "0s", "15us"] {
            assert_eq!(DurationSpec::from_str(s).unwrap().to_string(), s);
        }
    }
}
