//! Resource source tests.
