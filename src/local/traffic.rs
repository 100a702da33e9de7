//! The demo's traffic: the shapes of `--profile` and the request mix.

use std::path::Path;
use std::time::Duration;

use tidescale_loadgen::{HumanDuration, Mix, MixEntry, RequestKind, Schedule, Segment};

use super::demo::{DemoConfig, DemoError, WORK_MS};

/// The traffic shapes of `--profile`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Base load, a burst to the peak for a third of the run, base again.
    Spike,
    /// A slow ramp from base to peak and back.
    Ramp,
    /// Two sine cycles between base and peak.
    Sine,
    /// ×4 steps: base and four times base, alternating every 20 s.
    Steps,
    /// A recorded `seconds,rps` CSV curve (`--trace FILE`).
    Trace,
    /// A long day (15 min by default): quiet stretches, a burst, a long quiet spell in which
    /// even a 300 s scale-down window expires, a slow rise to the peak and back, a short burst.
    Diurnal,
}

impl Profile {
    /// The run length when `--duration` is not given.
    pub fn default_duration(self) -> Duration {
        match self {
            Profile::Diurnal => Duration::from_secs(900),
            _ => Duration::from_secs(90),
        }
    }
}

/// The traffic schedule for a profile over `duration`.
pub fn schedule(config: &DemoConfig) -> Result<Schedule, DemoError> {
    let d = config.duration.as_secs_f64();
    let (base, peak) = (config.base_rps, config.peak_rps);
    let secs = |s: f64| HumanDuration(Duration::from_secs_f64(s.max(0.001)));
    let segments = match config.profile {
        Profile::Spike => vec![Segment::Spike {
            base,
            peak,
            at: secs(0.2 * d),
            length: secs(d / 3.0),
            duration: secs(d),
        }],
        Profile::Ramp => vec![
            Segment::Ramp {
                from: base,
                to: peak,
                duration: secs(d / 2.0),
            },
            Segment::Ramp {
                from: peak,
                to: base,
                duration: secs(d / 2.0),
            },
        ],
        Profile::Sine => vec![Segment::Sine {
            min: base,
            max: peak,
            period: secs(d / 2.0),
            duration: secs(d),
        }],
        Profile::Steps => {
            let cycles = ((d / 40.0).floor() as usize).max(1);
            let half = d / (2.0 * cycles as f64);
            (0..cycles)
                .flat_map(|_| {
                    [
                        Segment::Constant {
                            rps: base,
                            duration: secs(half),
                        },
                        Segment::Constant {
                            rps: base * 4.0,
                            duration: secs(half),
                        },
                    ]
                })
                .collect()
        }
        Profile::Trace => {
            let file = config
                .trace
                .clone()
                .ok_or_else(|| DemoError::Traffic("--profile trace needs --trace FILE".into()))?;
            vec![Segment::Trace {
                file: Some(file),
                points: Vec::new(),
            }]
        }
        Profile::Diurnal => diurnal(base, peak, d),
    };
    let mut schedule = Schedule { segments };
    schedule
        .load_traces(Path::new("."))
        .map_err(|e| DemoError::Traffic(e.to_string()))?;
    schedule
        .validate()
        .map_err(|e| DemoError::Traffic(e.to_string()))?;
    Ok(schedule)
}

/// The long profile over `d` seconds. At 15 min the quiet spell after the first burst lasts
/// 342 s, longer than the HPA's 300 s scale-down window, so every baseline's windows act.
fn diurnal(base: f64, peak: f64, d: f64) -> Vec<Segment> {
    let secs = |share: f64| HumanDuration(Duration::from_secs_f64((share * d).max(0.001)));
    let constant = |rps: f64, share: f64| Segment::Constant {
        rps,
        duration: secs(share),
    };
    let burst = |share: f64, at: f64, length: f64| Segment::Spike {
        base,
        peak,
        at: secs(share * at),
        length: secs(share * length),
        duration: secs(share),
    };
    let ramp = |from: f64, to: f64, share: f64| Segment::Ramp {
        from,
        to,
        duration: secs(share),
    };
    vec![
        constant(base, 0.08),
        burst(0.12, 0.2, 0.4),
        constant(base, 0.38),
        ramp(base, peak, 0.10),
        constant(peak, 0.05),
        ramp(peak, base, 0.10),
        burst(0.10, 0.2, 0.2),
        constant(base, 0.07),
    ]
}

/// The default request mix: mostly `/work` (fixed capacity per replica), some key-value calls.
pub fn mix() -> Mix {
    Mix {
        entries: vec![
            MixEntry {
                weight: 18,
                request: RequestKind::Template {
                    method: "GET".into(),
                    path: format!("/work?ms={WORK_MS}"),
                    body: None,
                },
            },
            MixEntry {
                weight: 1,
                request: RequestKind::GetKv,
            },
            MixEntry {
                weight: 1,
                request: RequestKind::PutKv { value_bytes: 64 },
            },
        ],
        keys: 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::report::step_times;

    fn config(profile: Profile) -> DemoConfig {
        DemoConfig {
            profile,
            trace: None,
            duration: profile.default_duration(),
            base_rps: 80.0,
            peak_rps: 480.0,
            policy: None,
            strategy: crate::local::balancer::Strategy::RoundRobin,
            redis: None,
            report: "unused".into(),
            compare: Vec::new(),
            pipeline_resolution: Duration::from_secs(15),
            seed: 1,
            slo: Duration::from_millis(200),
            live: false,
            program: None,
        }
    }

    #[test]
    fn the_diurnal_day_is_long_with_bursts_and_a_quiet_spell_longer_than_300_s() {
        let c = config(Profile::Diurnal);
        assert_eq!(c.duration, Duration::from_secs(900));
        let s = schedule(&c).unwrap();
        assert!(
            (s.duration_secs() - 900.0).abs() < 0.01,
            "{}",
            s.duration_secs()
        );
        // Two bursts (steps up); the slow rise is a ramp, not a step.
        assert_eq!(step_times(&s).len(), 2, "{:?}", step_times(&s));
        // The longest stretch at base load after the first burst outlasts a 300 s window.
        let quiet = (0..900)
            .map(|t| s.rate_at(f64::from(t)))
            .fold((0, 0), |(run, best), r| {
                let run = if (r - 80.0).abs() < 1.0 { run + 1 } else { 0 };
                (run, best.max(run))
            })
            .1;
        assert!(quiet >= 330, "longest quiet stretch {quiet} s");
        let peak = (0..900)
            .map(|t| s.rate_at(f64::from(t)))
            .fold(0.0, f64::max);
        assert!((peak - 480.0).abs() < 1.0, "{peak}");
    }

    #[test]
    fn short_profiles_default_to_90_s() {
        for p in [Profile::Spike, Profile::Sine, Profile::Steps, Profile::Ramp] {
            assert_eq!(config(p).duration, Duration::from_secs(90));
            assert!((schedule(&config(p)).unwrap().duration_secs() - 90.0).abs() < 0.01);
        }
    }
}
