//! Traffic schedules: rate over time as composable segments, plain data from YAML or flags.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::duration::HumanDuration;

/// What is wrong with a schedule; every problem is listed at once.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// One or more fields hold values no schedule can follow.
    #[error("invalid schedule: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A `--shape` flag could not be parsed.
    #[error("invalid shape {text:?}: {why}")]
    Shape {
        /// The flag text as given.
        text: String,
        /// What was wrong with it.
        why: String,
    },
    /// A schedule or trace file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A schedule file is not valid YAML for a schedule.
    #[error("cannot parse schedule {path}: {message}")]
    Parse {
        /// The file that failed.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A trace CSV line is not `seconds,rps`.
    #[error("trace {path} line {line}: {why}")]
    Trace {
        /// The trace file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was wrong with the line.
        why: String,
    },
}

/// One point of a recorded trace: at `seconds` the rate is `rps`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TracePoint {
    /// Offset from the start of the segment, in seconds.
    pub seconds: f64,
    /// Requests per second at that offset.
    pub rps: f64,
}

/// One piece of a schedule. Rates are requests per second; times are offsets inside the segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Segment {
    /// A flat rate.
    Constant {
        /// Requests per second.
        rps: f64,
        /// How long the segment lasts.
        duration: HumanDuration,
    },
    /// A linear change from `from` to `to`.
    Ramp {
        /// Rate at the start.
        from: f64,
        /// Rate at the end.
        to: f64,
        /// How long the segment lasts.
        duration: HumanDuration,
    },
    /// A staircase of `steps` equal plateaus from `from` to `to`.
    Step {
        /// Rate of the first plateau.
        from: f64,
        /// Rate of the last plateau.
        to: f64,
        /// Number of plateaus (at least 2).
        #[serde(default = "default_steps")]
        steps: u32,
        /// How long the whole staircase lasts.
        duration: HumanDuration,
    },
    /// `base` rate with a burst to `peak` starting `at` for `length`.
    Spike {
        /// Rate outside the burst.
        base: f64,
        /// Rate during the burst.
        peak: f64,
        /// When the burst starts.
        at: HumanDuration,
        /// How long the burst lasts.
        length: HumanDuration,
        /// How long the segment lasts.
        duration: HumanDuration,
    },
    /// A wave between `min` and `max`, starting at `min`, one cycle per `period`.
    Sine {
        /// Lowest rate.
        min: f64,
        /// Highest rate.
        max: f64,
        /// Length of one cycle.
        period: HumanDuration,
        /// How long the segment lasts.
        duration: HumanDuration,
    },
    /// A recorded rate curve, linearly interpolated; lasts until its last point.
    Trace {
        /// CSV file of `seconds,rps` lines, loaded by [`Schedule::load_traces`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<PathBuf>,
        /// The points, in increasing time.
        #[serde(default)]
        points: Vec<TracePoint>,
    },
}

fn default_steps() -> u32 {
    2
}

impl Segment {
    /// How long the segment lasts, in seconds.
    pub fn duration_secs(&self) -> f64 {
        match self {
            Segment::Constant { duration, .. }
            | Segment::Ramp { duration, .. }
            | Segment::Step { duration, .. }
            | Segment::Spike { duration, .. }
            | Segment::Sine { duration, .. } => duration.as_secs_f64(),
            Segment::Trace { points, .. } => points.last().map_or(0.0, |p| p.seconds),
        }
    }

    /// The rate (requests per second) at offset `t` seconds into the segment.
    pub fn rate_at(&self, t: f64) -> f64 {
        let len = self.duration_secs();
        let rate = match self {
            Segment::Constant { rps, .. } => *rps,
            Segment::Ramp { from, to, .. } => {
                if len <= 0.0 {
                    *to
                } else {
                    from + (to - from) * (t / len).clamp(0.0, 1.0)
                }
            }
            Segment::Step {
                from, to, steps, ..
            } => {
                let steps = (*steps).max(2);
                let plateau = ((t / len * f64::from(steps)).floor() as u32).min(steps - 1);
                from + (to - from) * f64::from(plateau) / f64::from(steps - 1)
            }
            Segment::Spike {
                base,
                peak,
                at,
                length,
                ..
            } => {
                let start = at.as_secs_f64();
                if t >= start && t < start + length.as_secs_f64() {
                    *peak
                } else {
                    *base
                }
            }
            Segment::Sine {
                min, max, period, ..
            } => {
                let phase = 2.0 * PI * t / period.as_secs_f64();
                min + (max - min) * (1.0 - phase.cos()) / 2.0
            }
            Segment::Trace { points, .. } => interpolate(points, t),
        };
        rate.max(0.0)
    }

    fn kind(&self) -> &'static str {
        match self {
            Segment::Constant { .. } => "constant",
            Segment::Ramp { .. } => "ramp",
            Segment::Step { .. } => "step",
            Segment::Spike { .. } => "spike",
            Segment::Sine { .. } => "sine",
            Segment::Trace { .. } => "trace",
        }
    }

    fn check(&self, index: usize, problems: &mut Vec<String>) {
        let name = format!("segment {} ({})", index + 1, self.kind());
        let mut rate = |field: &str, v: f64| {
            if !v.is_finite() || v < 0.0 {
                problems.push(format!("{name}: {field} must be a rate >= 0, got {v}"));
            }
        };
        match self {
            Segment::Constant { rps, .. } => rate("rps", *rps),
            Segment::Ramp { from, to, .. } => {
                rate("from", *from);
                rate("to", *to);
            }
            Segment::Step { from, to, .. } => {
                rate("from", *from);
                rate("to", *to);
            }
            Segment::Spike { base, peak, .. } => {
                rate("base", *base);
                rate("peak", *peak);
            }
            Segment::Sine { min, max, .. } => {
                rate("min", *min);
                rate("max", *max);
            }
            Segment::Trace { points, .. } => {
                for p in points {
                    rate("rps", p.rps);
                }
            }
        }
        match self {
            Segment::Step { steps, .. } if *steps < 2 => {
                problems.push(format!("{name}: steps must be at least 2, got {steps}"));
            }
            Segment::Spike {
                at,
                length,
                duration,
                ..
            } if at.0 + length.0 > duration.0 => problems.push(format!(
                "{name}: the spike (at {at} for {length}) ends after the segment ({duration})"
            )),
            Segment::Sine {
                min, max, period, ..
            } => {
                if min > max {
                    problems.push(format!("{name}: min {min} is above max {max}"));
                }
                if period.0.is_zero() {
                    problems.push(format!("{name}: period must be above 0"));
                }
            }
            Segment::Trace { points, file } => {
                if points.len() < 2 {
                    let source = file
                        .as_ref()
                        .map(|f| format!(" (from {})", f.display()))
                        .unwrap_or_default();
                    problems.push(format!("{name}: needs at least 2 points{source}"));
                }
                if points.first().is_some_and(|p| p.seconds != 0.0) {
                    problems.push(format!("{name}: the first point must be at 0 seconds"));
                }
                if points
                    .windows(2)
                    .any(|w| w[1].seconds <= w[0].seconds || !w[1].seconds.is_finite())
                {
                    problems.push(format!("{name}: point times must strictly increase"));
                }
            }
            _ => {}
        }
        if !matches!(self, Segment::Trace { .. }) && self.duration_secs() <= 0.0 {
            problems.push(format!("{name}: duration must be above 0"));
        }
    }

    /// Parses a `--shape` flag such as `spike:base=100,peak=1000,at=10s,length=5s`.
    ///
    /// A shape without `duration=` lasts `default_duration`.
    pub fn parse_shape(text: &str, default_duration: HumanDuration) -> Result<Self, ScheduleError> {
        let fail = |why: String| ScheduleError::Shape {
            text: text.to_string(),
            why,
        };
        let (kind, args) = text.split_once(':').unwrap_or((text, ""));
        let mut fields = std::collections::BTreeMap::new();
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

fn interpolate(points: &[TracePoint], t: f64) -> f64 {
    let Some(first) = points.first() else {
        return 0.0;
    };
    if t <= first.seconds {
        return first.rps;
    }
    for w in points.windows(2) {
        if t < w[1].seconds {
            let frac = (t - w[0].seconds) / (w[1].seconds - w[0].seconds);
            return w[0].rps + (w[1].rps - w[0].rps) * frac;
        }
    }
    points.last().map_or(0.0, |p| p.rps)
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

/// A whole traffic schedule: segments played one after another.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The segments, in playing order.
    pub segments: Vec<Segment>,
}

impl Schedule {
    /// A single constant-rate segment.
    pub fn constant(rps: f64, duration: HumanDuration) -> Self {
        Self {
            segments: vec![Segment::Constant { rps, duration }],
        }
    }

    /// Reads a YAML schedule file and loads any trace files it names (relative to the file).
    pub fn from_yaml_file(path: &Path) -> Result<Self, ScheduleError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut schedule: Schedule =
            serde_saphyr::from_str(&text).map_err(|e| ScheduleError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        schedule.load_traces(path.parent().unwrap_or(Path::new(".")))?;
        Ok(schedule)
    }

    /// Fills every trace segment that names a file with that file's points.
    pub fn load_traces(&mut self, base: &Path) -> Result<(), ScheduleError> {
        for segment in &mut self.segments {
            if let Segment::Trace {
                file: Some(file),
                points,
            } = segment
                && points.is_empty()
            {
                *points = read_trace(&base.join(&*file))?;
            }
        }
        Ok(())
    }

    /// Checks every segment and reports all problems at once.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        let mut problems = Vec::new();
        if self.segments.is_empty() {
            problems.push("the schedule has no segments".to_string());
        }
        for (i, segment) in self.segments.iter().enumerate() {
            segment.check(i, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ScheduleError::Invalid(problems))
        }
    }

    /// Total length in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.segments.iter().map(Segment::duration_secs).sum()
    }

    /// The rate at `t` seconds from the start (0 after the end).
    pub fn rate_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for segment in &self.segments {
            let len = segment.duration_secs();
            if t < start + len {
                return segment.rate_at(t - start);
            }
            start += len;
        }
        0.0
    }

    /// Requests the schedule offers over `[from, to)` seconds (numerical integral of the rate).
    pub fn offered_between(&self, from: f64, to: f64) -> f64 {
        let steps = (((to - from) / PACER_STEP).ceil() as usize).max(1);
        let dt = (to - from) / steps as f64;
        (0..steps)
            .map(|i| self.rate_at(from + (i as f64 + 0.5) * dt) * dt)
            .sum()
    }

    /// The intended send times (seconds from start) of every request, in order.
    pub fn pacer(&self) -> Pacer<'_> {
        Pacer {
            schedule: self,
            segment: 0,
            segment_start: 0.0,
            t: 0.0,
            // Half a request of credit centres each send in its share of time, so a constant
            // schedule fires round(rate × duration) requests.
            credit: 0.5,
        }
    }
}

/// Integration step for the pacer: fine enough that rate jumps land within a millisecond.
const PACER_STEP: f64 = 0.001;

/// Iterator over intended send offsets (seconds) of a [`Schedule`], computed by integrating the
/// rate so that any shape, however it changes, gets exactly its share of requests.
#[derive(Debug, Clone)]
pub struct Pacer<'a> {
    schedule: &'a Schedule,
    segment: usize,
    segment_start: f64,
    t: f64,
    credit: f64,
}

impl Iterator for Pacer<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        loop {
            let segment = self.schedule.segments.get(self.segment)?;
            let end = self.segment_start + segment.duration_secs();
            if self.t >= end {
                self.segment += 1;
                self.segment_start = end;
                continue;
            }
            let step_end = (self.t + PACER_STEP).min(end);
            let rate = segment.rate_at((self.t + step_end) / 2.0 - self.segment_start);
            let need = 1.0 - self.credit;
            let gain = rate * (step_end - self.t);
            if gain >= need && rate > 0.0 {
                self.t += need / rate;
                self.credit = 0.0;
                return Some(self.t);
            }
            self.credit += gain;
            self.t = step_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> HumanDuration {
        HumanDuration::from_secs(s)
    }

    fn per_second(schedule: &Schedule) -> Vec<usize> {
        let mut counts = vec![0; schedule.duration_secs().ceil() as usize];
        for t in schedule.pacer() {
            let last = counts.len() - 1;
            counts[(t as usize).min(last)] += 1;
        }
        counts
    }

    #[test]
    fn constant_fires_exactly_rate_times_duration() {
        let s = Schedule::constant(2000.0, secs(10));
        assert_eq!(s.pacer().count(), 20_000);
        assert!(per_second(&s).iter().all(|&c| c == 2000));
    }

    #[test]
    fn ramp_grows_linearly() {
        let s = Schedule {
            segments: vec![Segment::Ramp {
                from: 0.0,
                to: 1000.0,
                duration: secs(10),
            }],
        };
        let counts = per_second(&s);
        for (i, c) in counts.iter().enumerate() {
            let expected = 100.0 * i as f64 + 50.0;
            assert!((*c as f64 - expected).abs() <= 1.0, "second {i}: {c}");
        }
    }

    #[test]
    fn spike_step_sine_and_sequence() {
        let s = Schedule {
            segments: vec![
                Segment::Spike {
                    base: 100.0,
                    peak: 500.0,
                    at: secs(2),
                    length: secs(1),
                    duration: secs(4),
                },
                Segment::Step {
                    from: 100.0,
                    to: 300.0,
                    steps: 3,
                    duration: secs(3),
                },
                Segment::Sine {
                    min: 0.0,
                    max: 200.0,
                    period: secs(4),
                    duration: secs(4),
                },
            ],
        };
        s.validate().unwrap();
        let c = per_second(&s);
        let near = |got: usize, want: f64| (got as f64 - want).abs() <= 1.0;
        assert!(
            near(c[0], 100.0) && near(c[2], 500.0) && near(c[3], 100.0),
            "{c:?}"
        );
        assert!(
            near(c[4], 100.0) && near(c[5], 200.0) && near(c[6], 300.0),
            "{c:?}"
        );
        // Sine over a second is the integral of min + (max-min)(1-cos)/2.
        let sine_first = 100.0 - 200.0 / (2.0 * PI) * (PI / 2.0).sin() * 4.0 / 2.0;
        assert!(near(c[7], sine_first), "{c:?} vs {sine_first}");
        assert!(near(c[8], 200.0 - sine_first), "{c:?}");
    }

    #[test]
    fn trace_interpolates() {
        let s = Schedule {
            segments: vec![Segment::Trace {
                file: None,
                points: vec![
                    TracePoint {
                        seconds: 0.0,
                        rps: 0.0,
                    },
                    TracePoint {
                        seconds: 2.0,
                        rps: 200.0,
                    },
                    TracePoint {
                        seconds: 4.0,
                        rps: 200.0,
                    },
                ],
            }],
        };
        s.validate().unwrap();
        assert_eq!(s.rate_at(1.0), 100.0);
        assert_eq!(per_second(&s), vec![50, 150, 200, 200]);
    }

    #[test]
    fn validation_lists_every_problem() {
        let s = Schedule {
            segments: vec![
                Segment::Constant {
                    rps: -5.0,
                    duration: secs(0),
                },
                Segment::Sine {
                    min: 10.0,
                    max: 5.0,
                    period: secs(0),
                    duration: secs(5),
                },
            ],
        };
        let msg = s.validate().unwrap_err().to_string();
        for needle in [
            "rps must be",
            "duration must be",
            "min 10 is above",
            "period",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
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
    fn yaml_schedule_with_trace_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.csv"), "seconds,rps\n0,10\n3,40\n").unwrap();
        let yaml = "segments:\n  - constant: { rps: 50, duration: 2s }\n  - ramp: { from: 0, to: 10, duration: 1m }\n  - trace: { file: t.csv }\n";
        let path = dir.path().join("s.yaml");
        std::fs::write(&path, yaml).unwrap();
        let s = Schedule::from_yaml_file(&path).unwrap();
        s.validate().unwrap();
        assert_eq!(s.segments.len(), 3);
        assert_eq!(s.duration_secs(), 65.0);
        assert_eq!(s.rate_at(63.5), 25.0);
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
