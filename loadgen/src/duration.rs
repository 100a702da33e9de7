//! Human-written durations (`250ms`, `10s`, `1m30s`) for schedules, flags and YAML files.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written as `250ms`, `10s`, `1m30s`, `2h`, or a bare number of seconds in YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (expected e.g. 250ms, 10s, 1m30s)")]
pub struct DurationError {
    /// The text that failed to parse.
    pub input: String,
    /// What was wrong with it.
    pub why: &'static str,
}

impl HumanDuration {
    /// Builds a duration from whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The duration in (fractional) seconds.
    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    /// A sum of `<number><unit>` terms (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`) or a bare number
    /// of seconds, as in most load tools; never negative, below a billion seconds. The policy
    /// files' durations follow the same grammar (`tests/fixtures/durations.tsv` is run against
    /// both).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| DurationError {
            input: s.to_string(),
            why,
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text.starts_with('-') {
            return Err(err("negative"));
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
            let ns_per_unit = match unit {
                // Seconds when the number stands alone; inside a compound it is a typo.
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
            total_ns = total_ns.saturating_add((value * ns_per_unit).round() as u128);
            rest = tail;
        }
        nanos(total_ns).ok_or_else(|| err("out of range"))
    }
}

/// A billion seconds: the bound of every duration (about 31 years).
const LIMIT_NS: u128 = 1_000_000_000_000_000_000;

fn nanos(ns: u128) -> Option<HumanDuration> {
    (ns < LIMIT_NS).then(|| HumanDuration(Duration::from_nanos(ns as u64)))
}

fn seconds(secs: f64) -> Option<HumanDuration> {
    if secs.is_nan() || secs < 0.0 {
        return None;
    }
    nanos((secs * 1e9).round() as u128)
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_nanos() == 0 {
            write!(f, "{}s", d.as_secs())
        } else if d.as_nanos().is_multiple_of(1_000_000) {
            write!(f, "{}ms", d.as_millis())
        } else {
            write!(f, "{}s", d.as_secs_f64())
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Secs(secs) => seconds(secs)
                .ok_or_else(|| serde::de::Error::custom(format!("invalid duration {secs}"))),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let p = |s: &str| s.parse::<HumanDuration>().unwrap().0;
        assert_eq!(p("250ms"), Duration::from_millis(250));
        assert_eq!(p("10s"), Duration::from_secs(10));
        assert_eq!(p("1m30s"), Duration::from_secs(90));
        assert_eq!(p("1.5s"), Duration::from_millis(1500));
        assert_eq!(p("2"), Duration::from_secs(2));
        assert_eq!(p("2h"), Duration::from_secs(7200));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "-1s", "10x", "s", "1.2.3s", "ms5"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn agrees_with_the_shared_vectors() {
        let vectors = include_str!("../../tests/fixtures/durations.tsv");
        for line in vectors
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (input, out) = line
                .split_once('\t')
                .expect("a tab between input and output");
            let input = input.trim_matches('"');
            let got = input.parse::<HumanDuration>().map(|d| d.0.as_nanos());
            assert_eq!(got.ok(), out.parse::<u128>().ok(), "{input:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["10s", "250ms", "0s"] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
    }
}
