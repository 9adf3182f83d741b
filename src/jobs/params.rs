//! What a simulation job is asked to do (stored as JSON in the job record): one device's trace
//! ([`SimulationParams`]) or a whole home's ([`HomeParams`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    error::{Error, Result},
    models::GenerationChoice,
    traffic::{AnonymitySet, BaselineKind, CaptureStats, Mode, SetPartition, set_defense::SetDefenseSpec},
};

/// Where the cover comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cover {
    /// iPET: the device's generators, fresh noise for every window; a generation index or `mix`.
    Generation {
        #[schema(value_type = String)]
        generation: GenerationChoice,
    },
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
    /// The model set the request named (`?model_set=`), run as it is when the job is claimed;
    /// absent: the default set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_set: Option<String>,
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

/// Where a home job's target rows come from (`targets` only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TargetsSource {
    /// A served set-targets model set's generators (its manifest name), one generator per set;
    /// `chunk` windows drawn per inference call (the noise stream depends on it).
    Generation {
        model_set: String,
        #[schema(value_type = String)]
        generation: GenerationChoice,
        chunk: usize,
    },
    /// A stored perturbation job's schedule, replayed by every set from its first row.
    PerturbationJob { job_id: Uuid },
    /// An uploaded `.npy` schedule, replayed by every set from its first row.
    UploadedSchedule { rows: u64 },
}

/// One device of a home job, in the order of its device table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HomeDevice {
    pub name: String,
    /// The MAC and/or IP addresses its packets were selected by.
    pub addresses: Vec<String>,
    /// Kept packets of the device in the captures.
    pub packets: u64,
}

/// One anonymity set of a home job, as formed at submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HomeSet {
    pub name: String,
    /// Device names.
    pub members: Vec<String>,
}

/// A whole home defended in anonymity sets (a set defense).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HomeParams {
    /// The set defense (the data plane's specification, as `ipet simulate` and the gateway read it).
    pub settings: SetDefenseSpec,
    /// `targets` only.
    pub targets: Option<TargetsSource>,
    /// Minimum size of the sets formed by clustering.
    pub k: usize,
    /// The device table.
    pub devices: Vec<HomeDevice>,
    pub sets: Vec<HomeSet>,
    /// Devices without kept packets: in no set, not defended.
    pub excluded: Vec<String>,
    /// The capture files as uploaded.
    pub trace_names: Vec<String>,
    /// What the trace reader kept and skipped, over all files.
    pub capture: CaptureStats,
}

impl HomeParams {
    /// The device names, in the order of the device table (the stored traces' sections).
    pub fn names(&self) -> Vec<String> {
        self.devices.iter().map(|d| d.name.clone()).collect()
    }

    /// The sets as formed at submission, by device index.
    pub fn partition(&self) -> Result<SetPartition> {
        let id = |name: &String| {
            self.devices
                .iter()
                .position(|d| &d.name == name)
                .ok_or_else(|| Error::Internal(format!("{name:?} of a set is not a device")))
        };
        Ok(SetPartition {
            sets: self
                .sets
                .iter()
                .map(|s| {
                    Ok(AnonymitySet { name: s.name.clone(), members: s.members.iter().map(id).collect::<Result<_>>()? })
                })
                .collect::<Result<_>>()?,
            excluded: self.excluded.iter().map(id).collect::<Result<_>>()?,
        })
    }
}

/// A job's parameters: one device, or a whole home.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum JobParams {
    Home(HomeParams),
    Device(SimulationParams),
}

impl JobParams {
    /// The text kept in the job record (JSON).
    pub fn to_stored(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Internal(format!("parameters cannot be stored: {e}")))
    }

    /// The parameters read back from the job record.
    pub fn from_stored(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Internal(format!("stored parameters are unreadable: {e}")))
    }
}
