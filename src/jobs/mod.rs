//! Simulation jobs: parameters, the compact stored encodings, the run, the worker pool.
//!
//! Where a job's cover comes from goes by one name per stage:
//! - as asked, unchecked: [`submit::CoverRequest`] (one device), [`submit_home::TargetsRequest`]
//!   (a home's target rows);
//! - checked, stored in the job record and served: [`Cover`] and [`params::TargetsSource`] (the
//!   API's schemas `Cover` and `TargetsSource`), naming a [`crate::traffic::BaselineKind`] for a
//!   baseline;
//! - run: the data plane's [`crate::traffic::Defense`] (iPET rows or a [`crate::traffic::Baseline`]
//!   with all its parameters) and [`crate::models::set_targets::TargetRowsFrom`] for a home's sets
//!   (whose settings are the data plane's [`crate::traffic::set_defense::SetDefenseSpec`]).

pub mod codec;
pub mod gateway_config;
pub mod params;
pub mod run;
pub mod submit;
pub mod submit_home;
pub mod worker;

pub use params::{Cover, HomeParams, JobParams, SimulationParams};
pub use worker::{JobSignal, WorkerConfig};
