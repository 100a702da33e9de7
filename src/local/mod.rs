//! The laptop side of tidescale: `tidescale demo` scales a local pool of demo-service
//! processes behind a local load balancer while the load generator drives traffic.

pub mod balancer;
pub mod baseline;
pub mod demo;
pub mod live;
pub mod redis;
pub mod report;
pub mod traffic;
