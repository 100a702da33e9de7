//! tidescale-loadgen: an open-loop HTTP load generator with shaped schedules and honest latencies.
//!
//! ```text
//!  Schedule ──pacer──► dispatcher ──spawn──► request task ──event──► collector ──► Report
//!  (segments)          (intended times,       (hyper pool,             (HDR per second   (summary.json,
//!                       in-flight cap)         timeout, class)          + overall)        timeline.csv/png/svg)
//!                                                                         │
//!                                                                         └─► watch: LiveStats
//! ```
//!
//! Requests leave at the schedule's intended times whether or not earlier ones answered, and
//! latency counts from that intended time, so a stalling server cannot hide its stall
//! (coordinated omission is corrected). Where to start reading: [`schedule`] for the traffic
//! shapes, [`runner`] for the run itself, [`report`] for the output.
//!
//! As a library:
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidescale_loadgen::ConfigError> {
//! use tidescale_loadgen::{HumanDuration, Load, RunConfig, Runner, Schedule};
//! let schedule = Schedule::constant(200.0, HumanDuration::from_secs(10));
//! let runner = Runner::new(RunConfig::new("http://127.0.0.1:8080", Load::Schedule(schedule)))?;
//! let mut live = runner.live();
//! tokio::spawn(async move {
//!     while live.changed().await.is_ok() {
//!         let _last_second = live.borrow().last_second.clone();
//!     }
//! });
//! let report = runner.run(std::future::pending::<()>()).await;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

pub mod chart;
pub mod client;
pub mod clock;
pub mod config;
pub mod duration;
pub mod mix;
pub mod record;
pub mod report;
pub mod runner;
pub mod schedule;

pub use config::{ConfigError, Load, RunConfig};
pub use duration::HumanDuration;
pub use mix::{Mix, MixEntry, RequestKind};
pub use record::{ErrorClass, ErrorCounts, SecondStats, Totals};
pub use report::{Report, Summary};
pub use runner::{LATE_AFTER, LiveStats, Runner, run};
pub use schedule::{Schedule, Segment, TracePoint};
