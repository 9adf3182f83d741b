//! What a simulation job is asked to do (stored as JSON in the job record).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::traffic::{BaselineKind, CaptureStats, Mode};

/// Where the cover comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cover {
    /// iPET: the device's generators, fresh noise for every window; a generation index or `mix`.
    Generation { generation: String },
    /// iPET: a stored perturbation job's schedule, replayed row by row.
    PerturbationJob { job_id: Uuid },
    /// iPET: an uploaded `.npy` schedule (what the reference predict.py wrote).
    UploadedSchedule { rows: u64 },
    /// A baseline defense of the paper.
    Baseline { baseline: BaselineKind },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimulationParams {
    pub device: String,
    pub cover: Cover,
    /// How iPET cover is laid (ignored by baselines).
    pub mode: Mode,
    /// Seed of the noise and of the baselines' random choices; null: operating-system randomness.
    pub seed: Option<u64>,
    /// Real packets closer than this (seconds) belong to one active period.
    pub active_gap: f64,
    /// Slot length, seconds (the model set's).
    pub omega: f64,
    /// The trace as uploaded: file name, and the addresses its packets were selected by.
    pub trace_name: String,
    pub addresses: Vec<String>,
    /// What the trace reader kept and skipped.
    pub capture: CaptureStats,
}
