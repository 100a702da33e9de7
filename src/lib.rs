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
//! Start reading at [`engine`] (pure arithmetic), then [`source`] and [`target`], then `control`,
//! which is the only module that holds all three and reads the clock.

pub mod cli;
pub mod config;
pub mod control;
pub mod engine;
pub mod local;
pub mod metric;
pub mod probe;
pub mod replay;
pub mod source;
pub mod spec;
pub mod store;
pub mod target;
pub mod telemetry;
