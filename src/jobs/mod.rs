//! Simulation jobs: parameters, the compact stored encodings, the run, the worker pool.

pub mod codec;
pub mod home;
pub mod params;
pub mod run;
pub mod submit;
pub mod submit_home;
pub mod worker;

pub use params::{Cover, HomeParams, JobParams, SimulationParams};
pub use worker::{JobSignal, WorkerConfig};
