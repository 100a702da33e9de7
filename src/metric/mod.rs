//! Metric identity, samples, readings, and Kubernetes quantities.

pub mod quantity;

pub use quantity::Quantity;
