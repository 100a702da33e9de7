//! The control side: the loops that hold sources, the engine and targets together, and the
//! only code that reads the clock.

pub mod policy_loop;

pub use policy_loop::{ControlError, LoopOptions, LoopSource, PolicyLoop, TickRecord};
