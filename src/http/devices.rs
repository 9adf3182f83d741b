//! `GET /devices`: a served model set; `GET /model-sets`: all of them; `POST /model-sets/reload`.

use axum::{
    Json,
    extract::{Query, State},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::{Caller, Scope},
    error::Result,
    models::manifest::{AnonymitySet, Family, Generation, ManifestDevice, Settings},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_devices)).routes(routes!(get_model_sets)).routes(routes!(reload_model_sets))
}

/// Which model set: by name, else the default.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModelSetQuery {
    /// Model set, by name (see /model-sets); the default set when absent.
    model_set: Option<String>,
}

/// One served model set.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelSetSummary {
    pub name: String,
    pub version: String,
    /// `name@version`, as job records name it.
    pub label: String,
    /// Whether requests without `model_set` get this set.
    pub default: bool,
    pub devices: Vec<String>,
    pub generations: usize,
    pub caps: Vec<f64>,
    pub slots_per_window: usize,
    pub omega: f64,
}

/// The served model sets, the default first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModelSetList {
    pub model_sets: Vec<ModelSetSummary>,
}

fn list(state: &AppState) -> ModelSetList {
    let model_sets = state
        .models
        .engines()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let set = e.model_set();
            let m = &set.manifest;
            ModelSetSummary {
                name: m.name.clone(),
                version: set.version.clone(),
                label: set.label(),
                default: i == 0,
                devices: set.device_names().iter().map(|d| d.to_string()).collect(),
                generations: set.generations(),
                caps: m.caps.clone(),
                slots_per_window: set.slots(),
                omega: m.settings.omega,
            }
        })
        .collect();
    ModelSetList { model_sets }
}

/// Lists the model sets this process serves.
#[utoipa::path(get, path = "/model-sets", tag = "models", responses(
    (status = 200, description = "The served model sets, the default first", body = ModelSetList),
    (status = 401, description = "No valid bearer token", body = crate::http::error::ErrorBody),
))]
pub async fn get_model_sets(State(state): State<AppState>) -> Json<ModelSetList> {
    Json(list(&state))
}

/// Loads every model set again from its directory and serves the new ones from the next request
/// on; requests already running finish on the sets they started with. When a set fails to load,
/// nothing changes. SIGHUP does the same.
#[utoipa::path(post, path = "/model-sets/reload", tag = "models", responses(
    (status = 200, description = "The model sets now served", body = ModelSetList),
    (status = 401, description = "No valid bearer token", body = crate::http::error::ErrorBody),
    (status = 403, description = "The token lacks the admin scope", body = crate::http::error::ErrorBody),
    (status = 500, description = "A model set failed to load; the served sets are unchanged", body = crate::http::error::ErrorBody),
))]
pub async fn reload_model_sets(State(state): State<AppState>, caller: Caller) -> Result<Json<ModelSetList>> {
    caller.require(Scope::Admin)?;
    let labels = state.models.reload().await?;
    tracing::info!(?labels, "model sets reloaded");
    Ok(Json(list(&state)))
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

/// Lists the devices and generations of a served model set (the default one unless `model_set`
/// names another).
#[utoipa::path(get, path = "/devices", tag = "models", params(ModelSetQuery), responses(
    (status = 200, description = "The model set", body = ModelSetInfo),
    (status = 400, description = "Bad query", body = crate::http::error::ErrorBody),
    (status = 401, description = "No valid bearer token", body = crate::http::error::ErrorBody),
    (status = 404, description = "No such model set", body = crate::http::error::ErrorBody),
))]
pub async fn get_devices(
    State(state): State<AppState>,
    query: std::result::Result<Query<ModelSetQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ModelSetInfo>> {
    let Query(q) = query?;
    let engine = state.models.engine(q.model_set.as_deref())?;
    let set = engine.model_set();
    let m = &set.manifest;
    let mut choices: Vec<String> = (0..m.generations.len()).map(|g| g.to_string()).collect();
    choices.push("mix".into());
    Ok(Json(ModelSetInfo {
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
    }))
}
