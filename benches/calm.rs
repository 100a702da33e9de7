//! Fast and calm: generated traces replayed through the real engine under each scale-down policy, counting rescales, direction reversals and the delay of the first scale-down after a real drop.
//!
//! Two traces, 15 s ticks, AverageValue 100 per replica, starting at 5 replicas:
//! - steady: 30 minutes of 480 req/s with ±25 % uniform noise (the baseline);
//! - drop: 10 minutes of the same, then 20 minutes at half the load, same noise.
//!
//! Every policy sees the same readings (one seeded generator per run, reset for each policy);
//! decisions are applied as `tidescale replay` applies them. Policies differ only in their
//! scale-down behaviour: the HPA's defaults, short windows and cooldowns as in the issue's
//! table, and the demo's policy (`src/local/default-policy.yaml`) with its confidence check and
//! flap budget, also with each of the two alone and at 95 % confidence instead of its 98 %.
//!
//! `cargo bench --bench calm` prints the tables; `-- --chart DIR` also draws
//! `DIR/calm-scale-down.svg` (the figure in docs/spec/scaling-policy.md).

#[path = "support/noise.rs"]
mod noise;

use noise::Noise;
use std::path::PathBuf;

use tidescale::engine::{
    Behavior, Evaluator, MetricPolicy, Normalization, Observation, PodFacts, Policy, Reading,
    Replicas, Seconds, Target, Time,
};
use tidescale::local::demo::DEFAULT_POLICY;
use tidescale::spec::load_policy_yaml;
use tidescale_loadgen::chart::{self, Chart, Panel, Series, Style};

/// Seconds between decisions, the HPA's default sync period.
const TICK_S: i64 = 15;
/// Thirty minutes of ticks.
const TICKS: i64 = 30 * 60 / TICK_S;
/// Requests per second before any drop.
const RPS: f64 = 480.0;
/// Relative noise, uniform within ±25 %.
const NOISE: f64 = 0.25;
/// When the drop trace halves its load.
const DROP_AT_S: i64 = 600;
/// Runs per policy (seeds 1..=RUNS); the tables give the mean and the worst.
const RUNS: u64 = 200;

/// The request rate of each tick of a trace.
fn trace(seed: u64, drop: bool) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..TICKS)
        .map(|i| {
            let level = if drop && i * TICK_S >= DROP_AT_S {
                RPS / 2.0
            } else {
                RPS
            };
            level * (1.0 + NOISE * (2.0 * noise.unit() - 1.0))
        })
        .collect()
}

/// What one replay of a trace did.
#[derive(Default)]
struct Run {
    rescales: u32,
    reversals: u32,
    /// Seconds from the drop to the first decision below the count.
    first_down_s: Option<i64>,
    replica_seconds: i64,
    /// The count after each tick.
    counts: Vec<i32>,
}

fn replay(policy: &Policy, rates: &[f64]) -> Run {
    let mut e = Evaluator::new(policy.clone());
    let mut current = Replicas(5);
    let mut run = Run::default();
    let mut last_up: Option<bool> = None;
    for (i, rate) in rates.iter().enumerate() {
        let t = i as i64 * TICK_S;
        let obs = Observation {
            current,
            status_replicas: current,
            pods: (0..current.0)
                .map(|p| PodFacts::running(format!("web-{p}")))
                .collect(),
            metrics: vec![Ok(Reading::Total((rate * 1000.0).round() as i64))],
        };
        let now = Time::from_secs(t);
        let d = e.evaluate(&obs, now);
        if t >= DROP_AT_S && run.first_down_s.is_none() && d.desired < current {
            run.first_down_s = Some(t - DROP_AT_S);
        }
        if d.apply {
            let up = d.desired > current;
            run.rescales += 1;
            run.reversals += u32::from(last_up.is_some_and(|l| l != up));
            last_up = Some(up);
            e.record_scale(current, d.desired, now);
            current = d.desired;
        }
        run.replica_seconds += i64::from(current.0) * TICK_S;
        run.counts.push(current.0);
    }
    run
}

/// A policy over the one request-rate metric, AverageValue 100 per replica.
fn rps_policy(behavior: Option<Behavior>) -> Policy {
    let metric = MetricPolicy::new("rps", Target::AverageValue(100_000));
    let mut p = Policy::new(Replicas(1), Replicas(20), vec![metric]);
    if let Some(b) = behavior {
        p.normalization = Normalization::Behavior(b);
    }
    p
}

fn window(down: u32, cooldown: u32) -> Behavior {
    let mut b = Behavior::hpa_default();
    b.scale_down.stabilization_window = Seconds(down);
    b.scale_down.cooldown = Seconds(cooldown);
    b
}

/// The demo's `behavior` and tolerance on the rate metric alone.
fn demo_behavior() -> (Behavior, tidescale::engine::Tolerance) {
    let (_, demo) = load_policy_yaml(DEFAULT_POLICY).expect("the demo's policy loads");
    let Normalization::Behavior(b) = demo.normalization else {
        panic!("the demo's policy sets behavior")
    };
    (b, demo.tolerance)
}

fn policies() -> Vec<(&'static str, Policy)> {
    let (demo, tolerance) = demo_behavior();
    let with = |b: Behavior| {
        let mut p = rps_policy(Some(b));
        p.tolerance = tolerance;
        p
    };
    let mut confidence_only = demo.clone();
    confidence_only.max_reversals = None;
    let mut budget_only = demo.clone();
    budget_only.confidence = None;
    let mut looser = demo.clone();
    if let Some(c) = looser.confidence.as_mut() {
        c.level = 0.95;
    }
    vec![
        ("HPA defaults (300 s window)", rps_policy(None)),
        ("30 s window", rps_policy(Some(window(30, 0)))),
        (
            "30 s window + 60 s cooldown",
            rps_policy(Some(window(30, 60))),
        ),
        ("no window", rps_policy(Some(window(0, 0)))),
        ("demo: confidence only", with(confidence_only)),
        ("demo: flap budget only", with(budget_only)),
        ("demo's policy at 95 % confidence", with(looser)),
        ("demo's policy (confidence + flap budget)", with(demo)),
    ]
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0), |(s, n), x| (s + x, n + 1));
    sum / f64::from(n.max(1))
}

fn main() {
    let chart_dir = std::env::args()
        .skip_while(|a| a != "--chart")
        .nth(1)
        .map(PathBuf::from);
    let policies = policies();
    println!("30 min of 480 req/s ±25 % (uniform), AverageValue 100, 15 s ticks, from 5 replicas;");
    println!(
        "seed 1, then mean and worst of seeds 1..={RUNS}; the drop trace halves the load at 10 min.\n"
    );
    println!(
        "| scale-down behaviour | rescales (seed 1) | reversals (seed 1) | reversals mean / max | replicas mean | first scale-down after a 50 % drop: seed 1 / mean / max | seeds within 60 s | replicas mean after the drop |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, policy) in &policies {
        let steady: Vec<Run> = (1..=RUNS)
            .map(|s| replay(policy, &trace(s, false)))
            .collect();
        let drops: Vec<Run> = (1..=RUNS)
            .map(|s| replay(policy, &trace(s, true)))
            .collect();
        let first = |r: &Run| r.first_down_s.unwrap_or(i64::MAX);
        let fmt_s = |s: i64| {
            if s == i64::MAX {
                "none".to_string()
            } else {
                format!("{s} s")
            }
        };
        println!(
            "| {name} | {} | {} | {:.1} / {} | {:.2} | {} / {} / {} | {} of {RUNS} | {:.2} |",
            steady[0].rescales,
            steady[0].reversals,
            mean(steady.iter().map(|r| f64::from(r.reversals))),
            steady.iter().map(|r| r.reversals).max().unwrap_or(0),
            mean(
                steady
                    .iter()
                    .map(|r| r.replica_seconds as f64 / (TICKS * TICK_S) as f64)
            ),
            fmt_s(first(&drops[0])),
            if drops.iter().any(|r| r.first_down_s.is_none()) {
                "—".to_string()
            } else {
                format!("{:.0} s", mean(drops.iter().map(|r| first(r) as f64)))
            },
            fmt_s(drops.iter().map(first).max().unwrap_or(i64::MAX)),
            drops.iter().filter(|r| first(r) <= 60).count(),
            mean(drops.iter().map(|r| {
                let after = &r.counts[(DROP_AT_S / TICK_S) as usize..];
                mean(after.iter().map(|c| f64::from(*c)))
            })),
        );
    }
    if let Some(dir) = chart_dir {
        draw(&dir, &policies);
    }
}

/// The figure: both traces of seed 1, with today's short-window policy and the demo's.
fn draw(dir: &std::path::Path, policies: &[(&'static str, Policy)]) {
    let pick = |name: &str| {
        &policies
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a listed policy")
            .1
    };
    let short = pick("no window");
    let calm = pick("demo's policy (confidence + flap budget)");
    let panel = |title: &str, drop: bool| {
        let rates = trace(1, drop);
        let minutes = |i: usize| i as f64 * TICK_S as f64 / 60.0;
        let line = |name: &str, color: [u8; 3], ys: Vec<f64>, style: Style| Series {
            name: name.to_string(),
            color,
            points: ys
                .into_iter()
                .enumerate()
                .map(|(i, y)| (minutes(i), y))
                .collect(),
            style,
        };
        let counts = |p: &Policy| {
            replay(p, &rates)
                .counts
                .into_iter()
                .map(f64::from)
                .collect()
        };
        Panel {
            y_label: title.to_string(),
            series: vec![
                line(
                    "demand (req/s ÷ 100)",
                    [150, 150, 150],
                    rates.iter().map(|r| r / 100.0).collect(),
                    Style::Markers,
                ),
                line(
                    "no window (replicas)",
                    [214, 39, 40],
                    counts(short),
                    Style::Line,
                ),
                line(
                    "demo's calm policy (replicas)",
                    [31, 119, 180],
                    counts(calm),
                    Style::Line,
                ),
            ],
        }
    };
    let figure = Chart {
        title: "Scale-down on noise and on a real drop (replay, 15 s ticks, ±25 % noise)".into(),
        x_label: "minutes".into(),
        panels: vec![
            panel("steady 480 req/s", false),
            panel("halved at 10 min", true),
        ],
    };
    std::fs::create_dir_all(dir).expect("the chart directory can be created");
    let path = dir.join("calm-scale-down.svg");
    chart::render_svg(&figure, &path, (1000, 640)).expect("the chart is drawn");
    println!("\nwrote {}", path.display());
}
