//! `manifest.json`: the contract between training and serving.
//!
//! Validated at load: a model set the service cannot serve is refused with a message that names
//! the mismatch (schema version, columns, slot geometry, caps, devices, generation files).
//!
//! A model set holds one defense family: `ipet` (the default when `family` is absent): per-device
//! generators of additive COVER; or `set-targets`: one generator per anonymity set whose rows are
//! TARGETS that every member's traffic is padded up to. A `set-targets` manifest lists its `sets`
//! (name, members, caps); every device is in exactly one set and points at its set's generator.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{
    error::{Error, ErrorCode, Result},
    traffic::COLUMNS,
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Manifest {
    pub schema_version: u32,
    /// The defense family; `ipet` when absent.
    #[serde(default)]
    pub family: Family,
    pub name: String,
    #[serde(default)]
    pub created: Option<String>,
    pub settings: Settings,
    pub columns: Vec<String>,
    pub caps: Vec<f64>,
    pub onnx: OnnxInfo,
    pub devices: Vec<ManifestDevice>,
    /// The anonymity sets (family `set-targets` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<AnonymitySet>,
    pub generations: Vec<Generation>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

/// Which defense a model set holds, and so what its rows mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Per-device generators of additive cover traffic (the published iPET design).
    #[default]
    Ipet,
    /// One generator per anonymity set; rows are targets each member is padded up to.
    SetTargets,
}

impl Family {
    /// What a schedule's rows are: `cover` (added to real traffic) or `targets` (padded up to).
    pub fn schedule_kind(self) -> ScheduleKind {
        match self {
            Self::Ipet => ScheduleKind::Cover,
            Self::SetTargets => ScheduleKind::Targets,
        }
    }
}

/// What the rows of a schedule are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// Cover packets and bytes added to the device's real traffic (family `ipet`).
    Cover,
    /// Per-slot packets and bytes the device's traffic is padded up to (family `set-targets`).
    Targets,
}

impl ScheduleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cover => "cover",
            Self::Targets => "targets",
        }
    }
}

/// An anonymity set of a `set-targets` model set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnonymitySet {
    pub name: String,
    /// Device names (from `devices`); at least two.
    pub members: Vec<String>,
    /// Most [in_packets, in_bytes, out_packets, out_bytes] per slot of this set's targets.
    pub caps: Vec<f64>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// Training settings; the ones the service relies on are typed, the rest kept as written.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    pub total_time: f64,
    pub omega: f64,
    pub slots_per_window: usize,
    pub latent_dim: usize,
    pub max_packets_per_omega: f64,
    pub max_payload_per_omega: f64,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OnnxInfo {
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub opset: Option<u32>,
    /// Whether the graph rounds its output to whole packets and bytes (required).
    pub rounded: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ManifestDevice {
    pub id: usize,
    pub name: String,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub ip: Option<String>,
    #[serde(default)]
    pub matched_by: Option<String>,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub other: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Generation {
    pub index: usize,
    /// Device name -> ONNX file, relative to the model directory.
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

/// A validated manifest and where its files are.
#[derive(Debug, Clone)]
pub struct ModelSet {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// First 12 hex digits of the SHA-256 over the manifest and every generator file.
    pub version: String,
    /// `files[device][generation]`: absolute paths.
    pub files: Vec<Vec<PathBuf>>,
}

fn invalid(dir: &Path, m: impl std::fmt::Display) -> Error {
    Error::Model(format!("{}: {m}", dir.display()))
}

impl ModelSet {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| invalid(dir, format!("cannot read manifest.json: {e}")))?;
        let mut manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(dir, format!("manifest.json is not a valid manifest: {e}")))?;
        let files = manifest.validate().map_err(|m| invalid(dir, m))?;
        // One definition from here on: ids are positions; an older set's table rows move to
        // `table_id`.
        for (i, d) in manifest.devices.iter_mut().enumerate() {
            if d.id != i {
                d.other.entry("table_id".to_string()).or_insert_with(|| d.id.into());
                d.id = i;
            }
        }
        let mut hash = Sha256::new();
        hash.update(&bytes);
        let mut absolute = Vec::with_capacity(files.len());
        for per_device in files {
            let mut paths = Vec::with_capacity(per_device.len());
            for rel in per_device {
                let p = dir.join(&rel);
                let data = std::fs::read(&p).map_err(|e| invalid(dir, format!("cannot read generator {rel}: {e}")))?;
                hash.update(&data);
                paths.push(p);
            }
            absolute.push(paths);
        }
        let version = hex::encode(&hash.finalize()[..6]);
        Ok(Self { dir: dir.to_path_buf(), manifest, version, files: absolute })
    }

    pub fn device_index(&self, name: &str) -> Option<usize> {
        self.manifest.devices.iter().position(|d| d.name == name)
    }

    /// The device's index, or a 404 naming the devices there are.
    pub fn require_device(&self, name: &str) -> Result<usize> {
        self.device_index(name).ok_or_else(|| {
            Error::not_found(
                ErrorCode::UnknownDevice,
                format!("device {name:?} is not in the model set; devices: {}", self.device_names().join(", ")),
            )
        })
    }

    /// The device's anonymity set (family `set-targets`), by device index.
    pub fn set_of(&self, device: usize) -> Option<&AnonymitySet> {
        let name = &self.manifest.devices.get(device)?.name;
        self.manifest.sets.iter().find(|s| s.members.iter().any(|m| m == name))
    }

    /// The caps of the device's rows: its set's for `set-targets`, the model set's otherwise.
    pub fn caps_of(&self, device: usize) -> &[f64] {
        self.set_of(device).map_or(&self.manifest.caps, |s| &s.caps)
    }

    pub fn device_names(&self) -> Vec<&str> {
        self.manifest.devices.iter().map(|d| d.name.as_str()).collect()
    }

    pub fn generations(&self) -> usize {
        self.manifest.generations.len()
    }

    pub fn slots(&self) -> usize {
        self.manifest.settings.slots_per_window
    }

    pub fn latent_dim(&self) -> usize {
        self.manifest.settings.latent_dim
    }

    /// `name@version`, as recorded in job records.
    pub fn label(&self) -> String {
        format!("{}@{}", self.manifest.name, self.version)
    }
}

impl Manifest {
    /// Checks everything the service relies on; returns the generator file of every
    /// (device, generation), relative to the model directory.
    pub fn validate(&self) -> std::result::Result<Vec<Vec<String>>, String> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "manifest schema_version {} is not supported (this service reads version {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        if let Some(status) = self.metrics.get("status").and_then(|s| s.as_str())
            && status != "complete"
        {
            return Err(format!("the training run that wrote this model set is not complete (status {status:?})"));
        }
        if self.columns != COLUMNS {
            return Err(format!("columns are {:?}; this service serves {:?}", self.columns, COLUMNS));
        }
        let s = &self.settings;
        if !(s.omega > 0.0 && s.total_time > 0.0) || s.slots_per_window == 0 {
            return Err(format!(
                "settings: omega {} s, total_time {} s, slots_per_window {} must all be positive",
                s.omega, s.total_time, s.slots_per_window
            ));
        }
        if ((s.slots_per_window as f64) * s.omega - s.total_time).abs() > 1e-6 {
            return Err(format!(
                "settings: slots_per_window {} x omega {} s does not equal total_time {} s",
                s.slots_per_window, s.omega, s.total_time
            ));
        }
        if s.latent_dim == 0 {
            return Err("settings: latent_dim must be positive".into());
        }
        let expected =
            [s.max_packets_per_omega, s.max_payload_per_omega, s.max_packets_per_omega, s.max_payload_per_omega];
        if self.caps.len() != 4 || self.caps.iter().zip(expected).any(|(a, b)| (a - b).abs() > 1e-9) {
            return Err(format!("caps {:?} do not match the settings (expected {expected:?})", self.caps));
        }
        if self.caps.iter().any(|&c| !(0.0..=i32::MAX as f64).contains(&c)) {
            return Err(format!("caps {:?} must be between 0 and {}", self.caps, i32::MAX));
        }
        if !self.onnx.rounded {
            return Err("onnx.rounded is false: generators must round their output to whole packets and bytes".into());
        }
        if self.devices.is_empty() {
            return Err("the manifest lists no device".into());
        }
        for (i, d) in self.devices.iter().enumerate() {
            // A device's id is its position in `devices` (ipet_train's `device_ids` writes it so,
            // its row in the device table apart as `table_id`). Sets trained before that kept the
            // table row as `id` and the position as `class_index`: the position is what counts.
            // (Table rows keep the table's order, so they increase.)
            let legacy = d.other.get("class_index").and_then(serde_json::Value::as_u64) == Some(i as u64)
                && d.id > i
                && self.devices.get(i + 1).is_none_or(|next| next.id > d.id)
                && (i == 0 || self.devices[i - 1].id < d.id);
            if d.id != i && !legacy {
                return Err(format!(
                    "device {:?} has id {}, expected {i} (ids are positions in `devices`; a device's row in the device table is `table_id`)",
                    d.name, d.id
                ));
            }
            if d.name.is_empty() || self.devices[..i].iter().any(|o| o.name == d.name) {
                return Err(format!("device name {:?} is empty or repeated", d.name));
            }
        }
        self.validate_sets()?;
        if self.generations.is_empty() {
            return Err("the manifest lists no generation".into());
        }
        if self.generations.len() > usize::from(u8::MAX) {
            return Err(format!("{} generations; at most {} are supported", self.generations.len(), u8::MAX));
        }
        let mut files = vec![Vec::with_capacity(self.generations.len()); self.devices.len()];
        for (k, g) in self.generations.iter().enumerate() {
            if g.index != k {
                return Err(format!("generation {} is listed at position {k}; indices must be 0, 1, 2, ...", g.index));
            }
            for (i, d) in self.devices.iter().enumerate() {
                let f = g
                    .files
                    .get(&d.name)
                    .ok_or_else(|| format!("generation {k} has no file for device {:?}", d.name))?;
                if Path::new(f).is_absolute() || f.split(['/', '\\']).any(|c| c == "..") {
                    return Err(format!(
                        "generation {k}, device {:?}: file {f:?} must be a path inside the model directory",
                        d.name
                    ));
                }
                files[i].push(f.clone());
            }
            if let Some(extra) = g.files.keys().find(|n| !self.devices.iter().any(|d| &d.name == *n)) {
                return Err(format!("generation {k} has a file for {extra:?}, which is not a listed device"));
            }
            for set in &self.sets {
                let first = &g.files[&set.members[0]];
                if let Some(other) = set.members.iter().find(|m| &g.files[*m] != first) {
                    return Err(format!(
                        "generation {k}: set {:?} member {other:?} points at {:?}, not at the set's generator {first:?}",
                        set.name, g.files[other]
                    ));
                }
            }
        }
        Ok(files)
    }

    /// `set-targets`: sets named once, of at least two listed members, every device in exactly
    /// one set (and in the set its own `set` field names, when it has one), caps within the model
    /// set's. `ipet`: no sets.
    fn validate_sets(&self) -> std::result::Result<(), String> {
        if self.family == Family::Ipet {
            if !self.sets.is_empty() {
                return Err(
                    "the manifest lists anonymity sets but its family is \"ipet\" (sets need \"set-targets\")".into()
                );
            }
            return Ok(());
        }
        if self.sets.is_empty() {
            return Err("family \"set-targets\" needs at least one anonymity set in `sets`".into());
        }
        let mut set_of: BTreeMap<&str, &str> = BTreeMap::new();
        for (i, set) in self.sets.iter().enumerate() {
            if set.name.is_empty() || self.sets[..i].iter().any(|o| o.name == set.name) {
                return Err(format!("set name {:?} is empty or repeated", set.name));
            }
            if set.members.len() < 2 {
                return Err(format!("set {:?} has {} member(s); a set needs at least 2", set.name, set.members.len()));
            }
            for m in &set.members {
                if !self.devices.iter().any(|d| &d.name == m) {
                    return Err(format!("set {:?} lists {m:?}, which is not a listed device", set.name));
                }
                if let Some(other) = set_of.insert(m, &set.name) {
                    return Err(format!("device {m:?} is in two sets ({other:?} and {:?})", set.name));
                }
            }
            if set.caps.len() != 4
                || set.caps.iter().zip(&self.caps).any(|(c, top)| !(0.0..=*top).contains(c) || c.fract() != 0.0)
            {
                return Err(format!(
                    "set {:?}: caps {:?} must be 4 whole numbers within the model set's caps {:?}",
                    set.name, set.caps, self.caps
                ));
            }
        }
        for d in &self.devices {
            let Some(set) = set_of.get(d.name.as_str()) else {
                return Err(format!("device {:?} is in no anonymity set", d.name));
            };
            if let Some(own) = d.other.get("set")
                && own.as_str() != Some(set)
            {
                return Err(format!("device {:?} says set {own}, but set {set:?} lists it", d.name));
            }
        }
        Ok(())
    }
}
