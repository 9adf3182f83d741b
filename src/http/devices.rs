//! `GET /devices`: the served model set.

use axum::{Json, extract::State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    models::manifest::{AnonymitySet, Family, Generation, ManifestDevice, Settings},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_devices))
}

/// The model set being served: devices, generations with their training metrics, settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelSetInfo {
    pub name: String,
    /// Hash of the manifest and every generator file.
    pub version: String,
    pub created: Option<String>,
    /// The defense family: `ipet` (rows are cover) or `set-targets` (rows are targets).
    pub family: Family,
    pub columns: Vec<String>,
    pub caps: Vec<f64>,
    pub settings: Settings,
    pub devices: Vec<ManifestDevice>,
    /// The anonymity sets and their members (family `set-targets`; empty otherwise).
    pub sets: Vec<AnonymitySet>,
    pub generations: Vec<Generation>,
    /// Per-device names accepted by the perturbation endpoint's `generation`: indices and `mix`.
    pub generation_choices: Vec<String>,
    /// Training-run metrics (attacker accuracies, chance, timing).
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
}

/// Lists the devices and generations of the served model set.
#[utoipa::path(get, path = "/devices", tag = "models", responses((status = 200, description = "The served model set", body = ModelSetInfo), (status = 401, description = "No valid bearer token", body = crate::http::error::ErrorBody)))]
pub async fn get_devices(State(state): State<AppState>) -> Json<ModelSetInfo> {
    let set = state.engine.model_set();
    let m = &set.manifest;
    let mut choices: Vec<String> = (0..m.generations.len()).map(|g| g.to_string()).collect();
    choices.push("mix".into());
    Json(ModelSetInfo {
        name: m.name.clone(),
        version: set.version.clone(),
        created: m.created.clone(),
        family: m.family,
        columns: m.columns.clone(),
        caps: m.caps.clone(),
        settings: m.settings.clone(),
        devices: m.devices.clone(),
        sets: m.sets.clone(),
        generations: m.generations.clone(),
        generation_choices: choices,
        metrics: m.metrics.clone(),
    })
}
