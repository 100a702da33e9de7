//! The control side: the loops that hold sources, the engine and targets together. A loop reads
//! time through [`crate::clock`] and reports what it does through a [`Recorder`] the wiring
//! hands it.

pub mod policy_loop;
pub mod recorder;

pub use policy_loop::{ControlError, LoopOptions, LoopSource, PolicyLoop, TickRecord};
pub use recorder::{CountingRecorder, Recorder};
