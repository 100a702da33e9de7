//! Prometheus source tests.
