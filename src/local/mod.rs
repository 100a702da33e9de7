//! The laptop side of tidescale: a local load balancer in front of a process pool.

pub mod balancer;
