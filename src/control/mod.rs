//! The control side: the loops that hold sources, the engine and targets together. A loop reads
//! time through [`crate::clock`] and reports what it does through a [`Recorder`] the wiring
//! hands it.

pub mod controller;
pub mod events;
pub mod kube_status;
pub mod leader;
pub mod plan;
pub mod policy_loop;
pub mod recorder;
pub mod runner;
pub mod status;

pub use controller::{Controller, ControllerConfig};
pub use policy_loop::{ControlError, LoopOptions, LoopSource, PolicyLoop, TickRecord};
pub use recorder::{CountingRecorder, Recorder};
pub use status::{CountingSink, NotReady, PolicyKey, PolicyRef, StatusSink, StatusTracker};
