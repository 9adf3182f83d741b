//! ipet: cover-traffic schedules from iPET generators.
//!
//! - [`traffic`]: the data plane (captures, device attribution, fingerprinting windows).
//! - [`models`]: the model set (manifest, ONNX generators, schedules).
//! - [`store`]: job records in SQLite or PostgreSQL.
//! - [`http`]: the REST API; [`app`] wires it to configuration.
//! - [`cli`]: the `ipet` command line.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod jobs;
pub mod models;
pub mod store;
pub mod traffic;

pub use error::{Error, Result};
