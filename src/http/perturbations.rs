//! `GET /perturbations/{dev_id}/{generation}` and `GET /perturbations/jobs/{id}`.

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::ErrorBody,
    format::{CSV, Format, JSON, NPY},
    schedule_body::schedule_body,
};
use crate::{
    app::AppState,
    auth::{Caller, Scope},
    error::{Error, ErrorCode, Result},
    models::{GenerationChoice, manifest::ScheduleKind, schedule::Encoding},
    store::PerturbationJob,
    traffic::{COLUMNS, noise},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_perturbations)).routes(routes!(get_perturbation_job))
}

/// Query of a schedule request. Values are taken as text and checked here, so that every bad
/// value gets an error naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PerturbationQuery {
    /// Number of perturbation vectors (windows), 1 to the service's maximum (`--max-n`, 50000
    /// unless the operator changed it: the spec a service serves at /openapi.json states the one
    /// in force; more is 400 `invalid_n`).
    #[param(value_type = u64, minimum = 1, maximum = 50000)]
    n: Option<String>,
    /// Seed for a reproducible schedule (0 to 2^64-1). Without it the noise comes from the
    /// operating system's CSPRNG.
    #[param(value_type = Option<u64>)]
    seed: Option<String>,
    /// Response encoding; overrides the Accept header.
    #[param(value_type = Option<Format>)]
    format: Option<String>,
    /// Model set, by name (see /model-sets); the default set when absent.
    model_set: Option<String>,
}

/// Query of a stored schedule.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Response encoding; overrides the Accept header.
    #[param(value_type = Option<Format>)]
    format: Option<String>,
}

/// A schedule: `n * slots_per_window` rows, one per omega slot, consumed in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PerturbationResponse {
    pub job_id: Uuid,
    pub device: String,
    /// The requested generation: an index, or `mix`.
    pub generation: String,
    /// The generation each window was drawn from.
    pub window_generations: Vec<u8>,
    pub n: usize,
    /// The seed, when the request gave one.
    pub seed: Option<u64>,
    /// `name@version` of the model set.
    pub model_set: String,
    pub created_at: DateTime<Utc>,
    /// Slot length in seconds.
    pub omega: f64,
    pub slots_per_window: usize,
    /// Names of the four numbers of each row, in order.
    #[schema(example = json!(["in_packets", "in_bytes", "out_packets", "out_bytes"]))]
    pub columns: Vec<String>,
    /// What the rows are: `cover` (added to the device's real traffic; family `ipet`) or
    /// `targets` (packets and bytes the device's traffic is padded up to; family `set-targets`).
    /// Also in the header X-Schedule-Kind.
    pub kind: ScheduleKind,
    /// The device's anonymity set, for `targets` (shared by every member of the set). Also in the
    /// header X-Anonymity-Set.
    pub set: Option<String>,
    // Keep `rows` the last field: `respond` writes it into the serialized text.
    /// Whole numbers of packets and payload bytes per slot: cover, or targets (see `kind`).
    pub rows: Vec<[i32; 4]>,
}

fn parse_n(raw: Option<&str>, max: usize) -> Result<usize> {
    let raw = raw.ok_or_else(|| {
        Error::invalid(ErrorCode::MissingN, format!("query parameter n (windows, 1 to {max}) is required"))
    })?;
    match raw.trim().parse::<u64>() {
        Ok(n) if n >= 1 && n <= max as u64 => Ok(n as usize),
        Ok(n) => {
            Err(Error::invalid(ErrorCode::InvalidN, format!("n = {n} is out of range: n must be between 1 and {max}")))
        }
        Err(_) => Err(Error::invalid(ErrorCode::InvalidN, format!("n = {raw:?} is not a whole number (1 to {max})"))),
    }
}

fn parse_seed(raw: Option<&str>) -> Result<Option<u64>> {
    raw.map(|s| {
        s.trim().parse::<u64>().map_err(|_| {
            Error::invalid(
                ErrorCode::InvalidSeed,
                format!("seed = {s:?} is not a whole number between 0 and {}", u64::MAX),
            )
        })
    })
    .transpose()
}

/// Draws a fresh schedule from a device's generator and stores it as a job.
#[utoipa::path(
    get,
    path = "/perturbations/{dev_id}/{generation}",
    tag = "perturbations",
    params(
        ("dev_id" = String, Path, description = "Device name from the model set (see /devices)"),
        ("generation" = String, Path, description = "Generation index (0, 1, ...) or `mix`: a random generation for every window"),
        PerturbationQuery,
    ),
    responses(
        (status = 200, description = "The schedule (JSON, or npy: a [n*slots, 4] int32 array, or CSV with a header). Headers X-Job-Id and Location name the stored job; X-Schedule-Kind says whether the rows are `cover` or `targets`, and X-Anonymity-Set names the device's set for targets.", content(
            (PerturbationResponse = "application/json"),
            (String = "application/x-npy"),
            (String = "text/csv"),
        ), links(
            ("stored" = (operation_id = "get_perturbation_job", parameters(("id" = "$response.header.X-Job-Id")), description = "The same schedule again, in any format")),
        )),
        (status = 400, description = "Bad n, seed, format or generation", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token may not fetch schedules", body = ErrorBody),
        (status = 404, description = "Unknown device, generation or model set", body = ErrorBody),
        (status = 429, description = "Too many requests at once", body = ErrorBody),
    )
)]
pub async fn get_perturbations(
    State(state): State<AppState>,
    caller: Caller,
    path: std::result::Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    query: std::result::Result<Query<PerturbationQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    caller.require(Scope::Perturbations)?;
    let Path((dev_id, generation)) = path?;
    let Query(q) = query?;
    let format = Format::negotiate(q.format.as_deref(), &headers)?;
    let n = parse_n(q.n.as_deref(), state.limits.max_n)?;
    let seed = parse_seed(q.seed.as_deref())?;
    let _permit = state.admit()?;
    let engine = state.models.engine(q.model_set.as_deref())?;
    let set = engine.model_set();
    let device = set.require_device(&dev_id)?;
    let choice = GenerationChoice::parse(&generation, set.generations())?;
    let schedule = engine.sample(device, n, choice, &mut noise::rng(seed)).await?;
    let job = PerturbationJob {
        id: Uuid::new_v4(),
        device: dev_id,
        generation: choice.to_string(),
        n,
        seed,
        model_set: set.label(),
        // Stored to the millisecond: answer with what a re-fetch will return.
        created_at: DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default(),
        requester: caller.name.clone(),
        schedule,
    };
    let job = state.store.insert_perturbation(job).await?;
    metrics::counter!("ipet_perturbation_jobs_stored_total").increment(1);
    respond(&state, job, format)
}

/// Returns a stored schedule again, in any format.
#[utoipa::path(
    get,
    path = "/perturbations/jobs/{id}",
    tag = "perturbations",
    params(("id" = Uuid, Path, description = "Job id from X-Job-Id or job_id"), JobQuery),
    responses(
        (status = 200, description = "The stored schedule", content(
            (PerturbationResponse = "application/json"),
            (String = "application/x-npy"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Bad id or format", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such job (or another caller's)", body = ErrorBody),
    )
)]
pub async fn get_perturbation_job(
    State(state): State<AppState>,
    caller: Caller,
    path: std::result::Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: std::result::Result<Query<JobQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Path(raw_id) = path?;
    let Query(q) = query?;
    let format = Format::negotiate(q.format.as_deref(), &headers)?;
    let id = super::parse_job_id(&raw_id)?;
    let job = state
        .store
        .get_perturbation(id, caller.owner_filter())
        .await?
        .ok_or_else(|| Error::not_found(ErrorCode::UnknownJob, format!("no perturbation job {id}")))?;
    respond(&state, job, format)
}

fn respond(state: &AppState, job: PerturbationJob, format: Format) -> Result<Response> {
    let location = format!("/perturbations/jobs/{}", job.id);
    // The job's own model set (by name; the default set when it is no longer served).
    let name = job.model_set.rsplit_once('@').map_or(job.model_set.as_str(), |(n, _)| n);
    let engine = state.models.engine(Some(name)).unwrap_or_else(|_| state.models.default_engine());
    let set = engine.model_set();
    let kind = set.manifest.family.schedule_kind();
    let anonymity_set = set.device_index(&job.device).and_then(|d| set.set_of(d)).map(|s| s.name.clone());
    let (prefix, encoding, suffix, content_type): (Vec<u8>, Encoding, &'static [u8], &'static str) = match format {
        Format::Json => {
            let head = PerturbationResponse {
                job_id: job.id,
                device: job.device,
                generation: job.generation,
                window_generations: job.schedule.generations.clone(),
                n: job.n,
                seed: job.seed,
                model_set: job.model_set,
                created_at: job.created_at,
                omega: set.manifest.settings.omega,
                slots_per_window: job.schedule.slots,
                columns: COLUMNS.iter().map(|c| c.to_string()).collect(),
                kind,
                set: anonymity_set.clone(),
                rows: Vec::new(),
            };
            // The rows (thousands of small arrays) are written directly into the document, after
            // the rest of it: serde's generic path, or a RawValue (which re-parses its text), cost
            // more than the rest of the request. `rows` is the struct's last field, so its empty
            // `[]` ends the text.
            let mut body = serde_json::to_vec(&head).map_err(|e| Error::Internal(e.to_string()))?;
            if !body.ends_with(b"\"rows\":[]}") {
                return Err(Error::Internal("the response's last field is not `rows`".into()));
            }
            body.truncate(body.len() - 3);
            (body, Encoding::JsonRows, b"}", JSON)
        }
        Format::Npy => (Vec::new(), Encoding::Npy, b"", NPY),
        Format::Csv => (Vec::new(), Encoding::Csv, b"", CSV),
    };
    let (body, length) = schedule_body(prefix, job.schedule, encoding, suffix);
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    if let Some(length) = length {
        response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&job.id.to_string()) {
        h.insert("x-job-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&COLUMNS.join(",")) {
        h.insert("x-columns", v);
    }
    h.insert("x-schedule-kind", HeaderValue::from_static(kind.as_str()));
    if let Some(v) = anonymity_set.and_then(|s| HeaderValue::from_str(&s).ok()) {
        h.insert("x-anonymity-set", v);
    }
    Ok(response)
}
