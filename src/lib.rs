//! tidescale: a Kubernetes autoscaler and custom/external metrics adapter.
//!
//! ```text
//!                source/                         engine/ (pure)                        target/
//!   policy ──►  MetricSource::read()   Reading   Strategy::propose() per metric  Decision  ScaleTarget
//!   (spec)      prometheus · scrape  ─────────►  → combine (max) → tolerance   ────────►   kube scale subresource
//!               resource · process              → stabilize → rate-limit                  process pool (local)
//!                      │                         → clamp → cooldown → Decision+Reasons
//!                      │ writes                           ▲
//!                      ▼                                  │ driven by control::PolicyLoop
//!               store::SampleStore ──reads──► adapter/ (custom + external metrics APIs) ──► native HPA
//! ```
//!
//! Start reading at [`engine`] (pure arithmetic), then [`source`] and [`target`], then
//! [`control`], the only module that holds all three.
//!
//! The arrows point one way (`tests/architecture.rs` fails on any that does not):
//!
//! ```text
//!   engine            pure: imports nothing else of the crate, never sees a clock
//!     ▲
//!   metric, clock     shared nouns (readings, quantities, durations) and the one clock
//!     ▲
//!   spec · store · source · target · adapter     source, target and adapter never see each other
//!     ▲
//!   control           PolicyLoop: sources → engine → target; reports through a Recorder
//!     ▲
//!   local             `tidescale demo`: pool, balancer, load, report
//!     ▲
//!   cli · telemetry · main      the wiring: flags → options, recorders, shutdown signals
//! ```
//!
//! Time: the engine is handed `now`; everything else reads tokio's clock through [`clock`]
//! (tests pause and advance it), and `clippy.toml` forbids every other clock read.

pub mod adapter;
pub mod cli;
pub mod clock;
pub mod control;
pub mod engine;
pub mod local;
pub mod metric;
pub mod probe;
pub mod replay;
pub mod run;
pub mod source;
pub mod spec;
pub mod store;
pub mod target;
pub mod telemetry;
