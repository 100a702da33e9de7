//! Schedules from text: `--shape kind:key=value,...` flags and `seconds,rps` trace files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ScheduleError, Segment, TracePoint, default_steps};
use crate::duration::HumanDuration;

impl Segment {
    /// Parses a `--shape` flag such as `spike:base=100,peak=1000,at=10s,length=5s`.
    ///
    /// A shape without `duration=` lasts `default_duration`.
    pub fn parse_shape(text: &str, default_duration: HumanDuration) -> Result<Self, ScheduleError> {
        let fail = |why: String| ScheduleError::Shape {
            text: text.to_string(),
            why,
        };
        let (kind, args) = text.split_once(':').unwrap_or((text, ""));
        let mut fields = BTreeMap::new();
        for pair in args.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| fail(format!("{pair:?} is not key=value")))?;
            fields.insert(k.trim().to_string(), v.trim().to_string());
        }
        let allowed: &[&str] = match kind {
            "constant" => &["rps", "duration"],
            "ramp" => &["from", "to", "duration"],
            "step" => &["from", "to", "steps", "duration"],
            "spike" => &["base", "peak", "at", "length", "duration"],
            "sine" => &["min", "max", "period", "duration"],
            "trace" => &["file"],
            other => {
                return Err(fail(format!(
                    "unknown shape {other:?} (use constant, ramp, step, spike, sine or trace)"
                )));
            }
        };
        if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(fail(format!(
                "unknown key {unknown:?} for {kind} (allowed: {})",
                allowed.join(", ")
            )));
        }
        let num = |key: &str| -> Result<f64, ScheduleError> {
            let v = fields
                .get(key)
                .ok_or_else(|| fail(format!("missing {key}=")))?;
            v.parse::<f64>()
                .map_err(|_| fail(format!("{key}={v} is not a number")))
        };
        let dur =
            |key: &str, default: Option<HumanDuration>| -> Result<HumanDuration, ScheduleError> {
                match (fields.get(key), default) {
                    (Some(v), _) => v.parse().map_err(|e| fail(format!("{key}: {e}"))),
                    (None, Some(d)) => Ok(d),
                    (None, None) => Err(fail(format!("missing {key}="))),
                }
            };
        let duration = dur("duration", Some(default_duration))?;
        Ok(match kind {
            "constant" => Segment::Constant {
                rps: num("rps")?,
                duration,
            },
            "ramp" => Segment::Ramp {
                from: num("from")?,
                to: num("to")?,
                duration,
            },
            "step" => Segment::Step {
                from: num("from")?,
                to: num("to")?,
                steps: match fields.get("steps") {
                    Some(v) => v
                        .parse()
                        .map_err(|_| fail(format!("steps={v} is not a whole number")))?,
                    None => default_steps(),
                },
                duration,
            },
            "spike" => Segment::Spike {
                base: num("base")?,
                peak: num("peak")?,
                at: dur("at", None)?,
                length: dur("length", None)?,
                duration,
            },
            "sine" => Segment::Sine {
                min: num("min")?,
                max: num("max")?,
                period: dur("period", None)?,
                duration,
            },
            _ => Segment::Trace {
                file: Some(PathBuf::from(
                    fields
                        .get("file")
                        .ok_or_else(|| fail("missing file=".to_string()))?,
                )),
                points: Vec::new(),
            },
        })
    }
}

/// Reads a `seconds,rps` CSV file (an optional header line and `#` comments are skipped).
pub fn read_trace(path: &Path) -> Result<Vec<TracePoint>, ScheduleError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut points = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| ScheduleError::Trace {
            path: path.to_path_buf(),
            line: i + 1,
            why,
        };
        let (a, b) = line
            .split_once(',')
            .ok_or_else(|| bad(format!("{line:?} is not `seconds,rps`")))?;
        match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
            (Ok(seconds), Ok(rps)) => points.push(TracePoint { seconds, rps }),
            _ if points.is_empty() && i == 0 => {} // a header line
            _ => return Err(bad(format!("{line:?} is not two numbers"))),
        }
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> HumanDuration {
        HumanDuration::from_secs(s)
    }

    #[test]
    fn shapes_parse_from_flags() {
        let spike =
            Segment::parse_shape("spike:base=100,peak=1000,at=10s,length=5s", secs(30)).unwrap();
        assert_eq!(
            spike,
            Segment::Spike {
                base: 100.0,
                peak: 1000.0,
                at: secs(10),
                length: secs(5),
                duration: secs(30)
            }
        );
        assert!(Segment::parse_shape("zigzag:a=1", secs(1)).is_err());
        assert!(Segment::parse_shape("ramp:from=1", secs(1)).is_err());
        assert!(Segment::parse_shape("ramp:from=1,to=x", secs(1)).is_err());
        assert!(Segment::parse_shape("constant:rps=1,speed=2", secs(1)).is_err());
    }

    #[test]
    fn bad_trace_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "0,10\n1,abc\n").unwrap();
        let err = read_trace(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }
}
