//! Simulation jobs: parameters, the compact stored encodings, the run, the worker pool.

pub mod codec;
pub mod params;
pub mod run;
pub mod submit;
pub mod worker;

pub use params::{Cover, SimulationParams};
pub use worker::{JobSignal, WorkerConfig};
