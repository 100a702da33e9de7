//! `demo-service`.
fn main() {}
