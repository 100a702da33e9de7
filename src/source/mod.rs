//! Metric sources: where readings come from (scrape, Prometheus, resource metrics, /proc).

pub mod config;

pub use config::{Aggregate, PrometheusConfig, Reduce, ResourceConfig, ResourceName, ScrapeConfig};
