//! ipet: cover-traffic schedules from iPET generators.
//!
//! - [`traffic`]: the data plane (crate `ipet-traffic`: captures, device attribution, windows,
//!   the defenses' decisions and the simulator).
//! - [`models`]: the model set (manifest, ONNX generators, schedules).
//! - [`store`]: job records in SQLite or PostgreSQL.
//! - [`jobs`]: simulation jobs (submission checks, the run, the worker pool).
//! - [`http`]: the REST API over the shared [`app`] state; [`auth`]: tokens and scopes.
//! - [`startup`]: configuration to a bound, serving service, in one place; [`telemetry`]: logs
//!   and metrics.
//! - [`cli`]: the `ipet` command line.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod jobs;
pub mod models;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use error::{Error, Result};
/// The data plane, a crate of its own (`crates/traffic`): the service, the CLI and the gateway
/// sit above it, and it knows none of them.
pub use ipet_traffic as traffic;
