//! ipet: cover-traffic schedules from iPET generators.
//!
//! - [`traffic`]: the data plane (captures, device attribution, fingerprinting windows).
//! - [`cli`]: the `ipet` command line.

pub mod cli;
pub mod error;
pub mod traffic;

pub use error::{Error, Result};
