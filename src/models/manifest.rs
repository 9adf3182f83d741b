//! `manifest.json`: the contract between training and serving.
//!
//! Validated at load: a model set the service cannot serve is refused with a message that names
//! the mismatch (schema version, columns, slot geometry, caps, devices, generation files).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{
    error::{Error, Result},
    traffic::COLUMNS,
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    #[serde(default)]
    pub created: Option<String>,
    pub settings: Settings,
    pub columns: Vec<String>,
    pub caps: Vec<f64>,
    pub onnx: OnnxInfo,
    pub devices: Vec<ManifestDevice>,
    pub generations: Vec<Generation>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
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
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(dir, format!("manifest.json is not a valid manifest: {e}")))?;
        let files = manifest.validate().map_err(|m| invalid(dir, m))?;
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
                "unknown_device",
                format!("device {name:?} is not in the model set; devices: {}", self.device_names().join(", ")),
            )
        })
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
            if d.id != i {
                return Err(format!("device {:?} has id {}, expected {i} (ids are positions)", d.name, d.id));
            }
            if d.name.is_empty() || self.devices[..i].iter().any(|o| o.name == d.name) {
                return Err(format!("device name {:?} is empty or repeated", d.name));
            }
        }
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
        }
        Ok(files)
    }
}
