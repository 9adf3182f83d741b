//! The served model set: manifest validation, ONNX generator sessions, schedule sampling.

pub mod engine;
pub mod generator_rows;
pub mod manifest;
pub mod registry;
pub mod schedule;
pub mod set_targets;

pub use engine::{Engine, EngineConfig};
pub use generator_rows::GeneratorRows;
pub use manifest::{Manifest, ModelSet};
pub use registry::ModelSets;
pub use schedule::{GenerationChoice, Schedule};
