//! `POST /simulations`, `GET /simulations/{id}`, `GET /simulations/{id}/output`,
//! `GET /simulations/{id}/gateway-config`.

use axum::{
    Json,
    extract::{FromRequest, Multipart, Path, Query, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    error::ErrorBody,
    format::{CSV, Format, NPY},
    simulation_input::{TracePacket, enum_field, parse_field, to_packets},
};
use crate::{
    app::AppState,
    auth::{Caller, Scope},
    error::{Error, ErrorCode, Result},
    http::home_request::{HomeSimulationRequest, home_from_form, home_from_json, names_a_defense},
    jobs::{
        JobParams,
        codec::{decode_output, decode_sections},
        gateway_config::{GatewayConfig, home_gateway_config},
        submit::{CoverRequest, Submission, TraceInput, submit},
        submit_home::{HomeSubmission, submit_home},
    },
    store::{JobState, SimulationRecord},
    traffic::{
        BaselineKind, Mode,
        set_defense::SetDefenseKind,
        simulate::{NpyWriter, OUTPUT_COLUMNS},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_simulation))
        .routes(routes!(get_simulation))
        .routes(routes!(get_simulation_output))
        .routes(routes!(get_simulation_gateway_config))
}

/// A simulation submitted as multipart/form-data: the trace as a capture file upload. One device
/// (`device` and one cover), or with `defense` every device of a device table at once.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct SimulationUpload {
    /// The trace: pcap, pcapng, or the reference's tshark CSV. With `defense`: repeat the field,
    /// one file per device or captures holding several.
    #[schema(format = Binary, content_media_type = "application/octet-stream")]
    trace: String,
    /// Device name (from /devices for iPET cover); not with `defense`.
    #[schema(nullable = false)]
    device: Option<String>,
    /// The device's MAC and/or IP addresses in the capture, comma-separated (default: the model set's).
    #[schema(nullable = false)]
    address: Option<String>,
    /// iPET cover from the generators: a generation index or `mix`. With `defense` `targets`: the
    /// target generators of the set-targets model set named by `?model_set=`.
    #[schema(nullable = false)]
    generation: Option<String>,
    /// iPET cover (or, with `defense` `targets`, target rows) from a stored perturbation job (its id).
    #[schema(nullable = false, format = Uuid)]
    schedule_job: Option<String>,
    /// iPET cover (or, with `defense` `targets`, target rows) from an uploaded .npy schedule (rows
    /// [in_packets, in_bytes, out_packets, out_bytes]).
    #[schema(nullable = false, format = Binary, content_media_type = "application/octet-stream")]
    schedule: Option<String>,
    /// A baseline defense instead of iPET: constant, random, random+.
    #[schema(nullable = false)]
    baseline: Option<BaselineKind>,
    #[schema(nullable = false)]
    mode: Option<Mode>,
    #[schema(nullable = false)]
    seed: Option<u64>,
    /// Seconds: real packets closer than this belong to one active period (default 5).
    #[schema(nullable = false)]
    active_gap: Option<f64>,
    /// A set defense over a whole home (as `ipet simulate --defense`): every device of the device
    /// table, in anonymity sets, padded to shared per-slot targets.
    #[schema(nullable = false)]
    defense: Option<SetDefenseKind>,
    /// With `defense`: the device table, a CSV with `name` and `mac` and/or `ip` columns and an
    /// optional `set` column (default: the model set's devices and addresses).
    #[schema(nullable = false, format = Binary, content_media_type = "text/csv")]
    devices: Option<String>,
    /// With `defense`: minimum size of the sets formed by clustering (default 3; more than the
    /// devices with traffic: 400 `invalid_set_size`).
    #[schema(nullable = false)]
    k: Option<u64>,
    /// With `defense`: sets by device name, `a,b,c;d,e` (default: the model set's sets for
    /// `targets` from generators, else the table's `set` column; devices left out are clustered).
    #[schema(nullable = false)]
    sets: Option<String>,
    /// With `defense`: seconds a real packet may wait for room before it is sent anyway (default 0).
    #[schema(nullable = false)]
    latency_budget: Option<f64>,
    /// `regulator`: quantisation ladder ratio (default 2).
    #[schema(nullable = false)]
    levels: Option<f64>,
    /// `regulator`: surge factor (default 1).
    #[schema(nullable = false)]
    surge: Option<f64>,
    /// `regulator`: surge threshold (default 1).
    #[schema(nullable = false)]
    threshold: Option<f64>,
    /// `regulator`: seconds for the rate to halve (default 0.3).
    #[schema(nullable = false)]
    half_life: Option<f64>,
    /// `regulator`: cover packets per second and direction in silence (default 0.02).
    #[schema(nullable = false)]
    floor_rate: Option<f64>,
    /// `targets`: fake target windows per second and set (default 1/60).
    #[schema(nullable = false)]
    fake_window_rate: Option<f64>,
    /// With `defense`: who transmits what on the observed link: `ideal` (no reaction lag, the
    /// default), `bridge` (holds and emits both directions), `ap` (access point only: uplink
    /// originals never held, uplink copies trail).
    #[schema(nullable = false)]
    deployment: Option<crate::traffic::shaper::Deployment>,
    /// With `defense`: reaction lag of cover copies, a preset (`software-shaper`, the default
    /// outside `ideal`; `software-shaper-fifo`; `zero`) or a duration (`2ms`, `150us`).
    #[schema(nullable = false)]
    lag: Option<String>,
    /// With `defense`: the same for downlink copies only.
    #[schema(nullable = false)]
    lag_downlink: Option<String>,
    /// With `defense`: the same for uplink copies only.
    #[schema(nullable = false)]
    lag_uplink: Option<String>,
    /// With `defense`: hold each original a draw from its copies' lag (default false).
    #[schema(nullable = false)]
    held_release: Option<bool>,
    /// With `defense`: send each original and its copies in a random order (default false).
    #[schema(nullable = false)]
    random_order: Option<bool>,
    /// With `defense`: carry every decision out one slot later (default false).
    #[schema(nullable = false)]
    slot_behind: Option<bool>,
    /// With `defense`: mirror every member, not only each slot's lead: every member sends the
    /// same frames (default false).
    #[schema(nullable = false)]
    mirror_all: Option<bool>,
    /// With `defense`: the set defense as a whole specification (JSON text of `SetDefenseSpec`,
    /// what `ipet simulate --spec-out` writes) instead of the knobs, which must then be absent.
    /// Its sets are a gateway's configuration: a member they name is covered even where it has
    /// no packet in the trace, as the gateway covers it.
    #[schema(nullable = false)]
    spec: Option<String>,
}

/// What a simulation sent and cost: one device's summary, or a home's (per member, per set, total).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum JobSummary {
    Device(crate::traffic::Summary),
    Home(crate::traffic::HomeSummary),
}

/// A simulation submitted as JSON: one device's packets, or with `defense` every device's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum SimulationJson {
    Device(SimulationRequest),
    Home(HomeSimulationRequest),
}

/// A simulation submitted as JSON: the trace as packets.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SimulationRequest {
    pub device: String,
    pub packets: Vec<TracePacket>,
    /// iPET cover from the generators: a generation index or `mix`.
    pub generation: Option<String>,
    /// iPET cover from a stored perturbation job.
    #[schema(format = Uuid)]
    pub schedule_job: Option<String>,
    /// A baseline defense instead of iPET.
    pub baseline: Option<BaselineKind>,
    pub mode: Option<Mode>,
    pub seed: Option<u64>,
    pub active_gap: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SimulationAccepted {
    pub id: Uuid,
    /// `queued`.
    pub status: JobState,
    /// Where to poll.
    pub location: String,
}

/// A simulation job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SimulationStatus {
    pub id: Uuid,
    pub status: JobState,
    /// Why it failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Times a worker took the job (more than 1 after a worker died).
    pub attempts: i64,
    #[schema(value_type = crate::jobs::JobParams)]
    pub params: serde_json::Value,
    pub trace_packets: i64,
    /// What the defense sent and cost, when succeeded.
    #[schema(value_type = Option<JobSummary>)]
    pub summary: Option<serde_json::Value>,
    pub output_rows: Option<i64>,
    /// Where the defended trace is, when succeeded (a home's: add `?device=` a member).
    pub output: Option<String>,
}

/// The defended trace as JSON.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SimulationOutput {
    pub id: Uuid,
    #[schema(example = json!(["direction", "is_dummy", "size_bytes", "time_s"]))]
    pub columns: Vec<String>,
    /// `[direction (+1 out, -1 in), is_dummy (0/1), size_bytes, time_s since the first real packet]`.
    pub rows: Vec<[f64; 4]>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// Response encoding; overrides the Accept header.
    #[param(value_type = Option<Format>)]
    format: Option<String>,
    /// A set defense's member whose defended trace to return (required for a home's job).
    device: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// The served model set a simulation runs on (its manifest name, see /model-sets; default:
    /// the default set), as it is when the job is claimed: one device's generators, devices and
    /// slot length (an iPET set), or the set targets a home's `targets` draws with `generation`
    /// (a set-targets set). Not served: 404 `unknown_model_set`.
    model_set: Option<String>,
}

fn one_cover(
    generation: Option<String>,
    schedule_job: Option<String>,
    schedule: Option<Vec<u8>>,
    baseline: Option<BaselineKind>,
) -> Result<CoverRequest> {
    let mut given = Vec::new();
    if let Some(g) = generation {
        given.push(CoverRequest::Generation(g));
    }
    if let Some(j) = schedule_job {
        given.push(CoverRequest::PerturbationJob(j));
    }
    if let Some(s) = schedule {
        given.push(CoverRequest::UploadedSchedule(s));
    }
    if let Some(b) = baseline {
        given.push(CoverRequest::Baseline(b));
    }
    match given.len() {
        1 => Ok(given.pop().expect("one")),
        0 => Err(Error::invalid(ErrorCode::MissingCover, "give one of generation, schedule_job, schedule or baseline")),
        _ => Err(Error::invalid(
            ErrorCode::AmbiguousCover,
            "give only one of generation, schedule_job, schedule or baseline",
        )),
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge(format!("the upload is larger than the service accepts: {}", e.body_text()))
    } else {
        Error::invalid(ErrorCode::InvalidUpload, e.body_text())
    }
}

/// A submission as asked: one device's trace, or a whole home's with a set defense.
enum Asked {
    Device(Submission),
    Home(HomeSubmission),
}

async fn from_multipart(mut form: Multipart, model_set: Option<String>) -> Result<Asked> {
    let mut traces = Vec::new();
    let mut schedule = None;
    let mut devices = None;
    let mut text = std::collections::BTreeMap::new();
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "trace" => {
                let file = field.file_name().unwrap_or("trace").to_string();
                traces.push((file, field.bytes().await.map_err(multipart_error)?.to_vec()));
            }
            "schedule" => schedule = Some(field.bytes().await.map_err(multipart_error)?.to_vec()),
            "devices" => devices = Some(field.bytes().await.map_err(multipart_error)?.to_vec()),
            "device" | "address" | "generation" | "schedule_job" | "baseline" | "mode" | "seed" | "active_gap"
            | "defense" | "k" | "sets" | "latency_budget" | "levels" | "surge" | "threshold" | "half_life"
            | "floor_rate" | "fake_window_rate" | "deployment" | "lag" | "lag_downlink" | "lag_uplink"
            | "held_release" | "random_order" | "slot_behind" | "mirror_all" | "spec" => {
                text.insert(name, field.text().await.map_err(multipart_error)?);
            }
            other => return Err(Error::invalid(ErrorCode::UnknownField, format!("unknown form field {other:?}"))),
        }
    }
    if text.contains_key("defense") {
        return home_from_form(traces, schedule, devices, text, model_set).map(Asked::Home);
    }
    let home_only = super::home_request::HOME_ONLY_FIELDS.iter().copied();
    let misplaced = home_only.filter(|f| text.contains_key(*f)).chain(devices.is_some().then_some("devices")).next();
    if let Some(field) = misplaced {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            format!(
                "{field} is for a set defense over a whole home: give `defense` (supersequence, regulator, targets)"
            ),
        ));
    }
    if traces.len() > 1 {
        return Err(Error::invalid(
            ErrorCode::AmbiguousTrace,
            "one device's simulation takes one `trace` file; several are for a set defense (`defense`)",
        ));
    }
    let (name, bytes) =
        traces.pop().ok_or_else(|| Error::invalid(ErrorCode::MissingTrace, "the form has no `trace` file"))?;
    let device = text
        .remove("device")
        .ok_or_else(|| Error::invalid(ErrorCode::MissingDevice, "the form has no `device` field"))?;
    let baseline = text.get("baseline").map(|b| enum_field("baseline", b, "constant, random, random+")).transpose()?;
    Ok(Asked::Device(Submission {
        device,
        model_set,
        addresses: text.remove("address"),
        trace: TraceInput::Capture { name, bytes },
        cover: one_cover(text.remove("generation"), text.remove("schedule_job"), schedule, baseline)?,
        mode: text.get("mode").map(|m| enum_field("mode", m, "slotted, reference")).transpose()?.unwrap_or_default(),
        seed: text.get("seed").map(|s| parse_field("seed", s, "a whole number between 0 and 2^64-1")).transpose()?,
        active_gap: text
            .get("active_gap")
            .map(|g| parse_field("active_gap", g, "a number of seconds"))
            .transpose()?
            .unwrap_or(5.0),
    }))
}

fn from_json(r: SimulationRequest, model_set: Option<String>) -> Result<Submission> {
    Ok(Submission {
        device: r.device,
        model_set,
        addresses: None,
        trace: TraceInput::Packets(to_packets("packets", &r.packets)?),
        cover: one_cover(r.generation, r.schedule_job, None, r.baseline)?,
        mode: r.mode.unwrap_or_default(),
        seed: r.seed,
        active_gap: r.active_gap.unwrap_or(5.0),
    })
}

/// Queues a simulation: a device's trace defended by iPET cover (generators, a stored schedule,
/// or an uploaded .npy) or by a baseline. Bad uploads are refused and create no job.
///
/// One cover per simulation: give exactly one of `generation`, `schedule_job`, `schedule` (an
/// upload, multipart only) or `baseline`. None is 400 `missing_cover`; two or more is 400
/// `ambiguous_cover`.
///
/// A whole home (multipart only): `defense` = `supersequence`, `regulator` or `targets`, one or
/// more `trace` files, optionally a `devices` table; every device of the table is defended in
/// anonymity sets as `ipet simulate --defense` does, with the same defaults and, for the same
/// input and seed, the same summary and traces. `targets` takes its rows from one of
/// `generation` (the set-targets model set named by `?model_set=`), `schedule_job` or `schedule`
/// (none: 400 `missing_targets`).
#[utoipa::path(
    post,
    path = "/simulations",
    tag = "simulations",
    params(SubmitQuery),
    request_body(content(
        (SimulationUpload = "multipart/form-data"),
        (SimulationJson = "application/json"),
    )),
    responses(
        (status = 202, description = "Queued; poll the Location", body = SimulationAccepted, headers(("Location" = String, description = "The job's URL")),
            links(
                ("status" = (operation_id = "get_simulation", parameters(("id" = "$response.body#/id")), description = "The job's status")),
                ("output" = (operation_id = "get_simulation_output", parameters(("id" = "$response.body#/id")), description = "The defended trace, once succeeded")),
                ("gateway_config" = (operation_id = "get_simulation_gateway_config", parameters(("id" = "$response.body#/id")), description = "A home's live gateway configuration, once succeeded")),
            )),
        (status = 400, description = "Not a capture, wrong CSV columns, no packets of the device, bad field, no cover or more than one; a trace spanning more than the service accepts (`span_too_long`) or a simulation that may produce more rows than it accepts (`output_too_large`); for a home: k larger than its devices with traffic or a named set with fewer than k of them (`invalid_set_size`), a set naming a device not in the table (`invalid_sets`), `targets` without rows (`missing_targets`) or from a model set without set targets (`invalid_model_set`), a bad device table (`invalid_device_table`)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 403, description = "The token may not run simulations", body = ErrorBody),
        (status = 404, description = "Unknown device, generation, perturbation job or model set", body = ErrorBody),
        (status = 413, description = "Upload too large", body = ErrorBody),
        (status = 415, description = "Neither multipart/form-data nor JSON", body = ErrorBody),
        (status = 429, description = "The caller holds as many unfinished simulations as it may (`quota_exceeded`), or the service is saturated", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds"))),
    )
)]
pub async fn post_simulation(
    State(state): State<AppState>,
    caller: Caller,
    query: std::result::Result<Query<SubmitQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response> {
    caller.require(Scope::Simulations)?;
    let Query(q) = query?;
    let content_type =
        request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let submission = if content_type.starts_with("multipart/form-data") {
        let form = Multipart::from_request(request, &state)
            .await
            .map_err(|e| Error::invalid(ErrorCode::InvalidUpload, e.body_text()))?;
        from_multipart(form, q.model_set).await?
    } else if content_type.starts_with("application/json") {
        let bytes = axum::body::Bytes::from_request(request, &state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::TooLarge(e.body_text())
            } else {
                Error::invalid(ErrorCode::InvalidUpload, e.body_text())
            }
        })?;
        if names_a_defense(&bytes)? {
            Asked::Home(home_from_json(&bytes, q.model_set)?)
        } else {
            let Json(body) = Json::<SimulationRequest>::from_bytes(&bytes)
                .map_err(|e| Error::invalid(ErrorCode::InvalidJson, e.body_text()))?;
            Asked::Device(from_json(body, q.model_set)?)
        }
    } else {
        return Err(Error::UnsupportedMediaType(format!(
            "Content-Type {content_type:?}: send multipart/form-data (a capture upload) or application/json (packets)"
        )));
    };
    let _permit = state.admit()?;
    let id = match submission {
        Asked::Device(s) => {
            let engine = state.models.engine(s.model_set.as_deref())?;
            submit(engine.model_set(), &state.store, &caller, &state.limits.jobs, s).await?
        }
        Asked::Home(s) => submit_home(&state.models, &state.store, &caller, &state.limits.jobs, s).await?,
    };
    state.jobs.wake();
    let location = format!("/simulations/{id}");
    let mut response =
        (StatusCode::ACCEPTED, Json(SimulationAccepted { id, status: JobState::Queued, location: location.clone() }))
            .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The caller's simulation job with this id (400 for a bad id, 404 for none or another's).
async fn load(state: &AppState, caller: &Caller, raw: &str) -> Result<SimulationRecord> {
    let id = super::parse_job_id(raw)?;
    state
        .store
        .get_simulation(id, caller.owner_filter())
        .await?
        .ok_or_else(|| Error::not_found(ErrorCode::UnknownJob, format!("no simulation job {id}")))
}

/// A simulation's status, parameters and, when done, its summary.
#[utoipa::path(
    get,
    path = "/simulations/{id}",
    tag = "simulations",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = SimulationStatus),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such job (or another caller's)", body = ErrorBody),
    )
)]
pub async fn get_simulation(
    State(state): State<AppState>,
    caller: Caller,
    path: std::result::Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<SimulationStatus>> {
    let Path(raw) = path?;
    let r = load(&state, &caller, &raw).await?;
    let id = r.id;
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).map_err(|e| Error::Internal(e.to_string()));
    Ok(Json(SimulationStatus {
        id,
        output: (r.status == JobState::Succeeded).then(|| format!("/simulations/{id}/output")),
        status: r.status,
        error: r.error,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        attempts: r.attempts,
        params: json(&r.params)?,
        trace_packets: r.trace_packets,
        summary: r.summary.as_deref().map(json).transpose()?,
        output_rows: r.output_rows,
    }))
}

/// The defended trace: rows `[direction, is_dummy, size_bytes, time_s]`, time-ordered. A home's
/// job has one per member (`?device=`, times from the home's first packet).
#[utoipa::path(
    get,
    path = "/simulations/{id}/output",
    tag = "simulations",
    params(("id" = Uuid, Path, description = "Job id"), OutputQuery),
    responses(
        (status = 200, description = "JSON, npy (float64 [rows, 4]) or CSV with a header", content(
            (SimulationOutput = "application/json"),
            (String = "application/x-npy"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Bad id or format; a home's job without `device` (`missing_device`)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such job (or another caller's); a device that is not a member (`unknown_device`)", body = ErrorBody),
        (status = 409, description = "The job has not succeeded (yet)", body = ErrorBody),
    )
)]
pub async fn get_simulation_output(
    State(state): State<AppState>,
    caller: Caller,
    path: std::result::Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: std::result::Result<Query<OutputQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Path(raw) = path?;
    let Query(q) = query?;
    let format = Format::negotiate(q.format.as_deref(), &headers)?;
    let r = load(&state, &caller, &raw).await?;
    let id = r.id;
    if r.status != JobState::Succeeded {
        let why = r.error.map(|e| format!(": {e}")).unwrap_or_default();
        return Err(Error::Conflict {
            code: ErrorCode::JobNotFinished,
            message: format!("simulation {id} is {}{why}; it has no output", r.status),
        });
    }
    let params = JobParams::from_stored(&r.params)?;
    let section = output_section(&params, q.device.as_deref())?;
    let bytes = state
        .store
        .get_simulation_output(id)
        .await?
        .ok_or_else(|| Error::Internal(format!("simulation {id} succeeded without output")))?;
    let rows = r.output_rows.unwrap_or(0).max(0) as usize;
    tokio::task::spawn_blocking(move || match section {
        Some(i) => {
            let sections = decode_sections(&bytes)?;
            let one = sections.get(i).ok_or_else(|| Error::Internal(format!("simulation {id} lacks output {i}")))?;
            render_output(id, one, 0, format)
        }
        None => render_output(id, &bytes, rows, format),
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

/// Which section of a home job's output `device` is (None: a one-device job, whose output is whole).
fn output_section(params: &JobParams, device: Option<&str>) -> Result<Option<usize>> {
    match params {
        JobParams::Device(p) => match device {
            Some(d) if d != p.device => Err(Error::not_found(
                ErrorCode::UnknownDevice,
                format!("this simulation defended device {:?}, not {d:?}", p.device),
            )),
            _ => Ok(None),
        },
        JobParams::Home(p) => {
            let members: Vec<&str> = p.sets.iter().flat_map(|s| s.members.iter().map(String::as_str)).collect();
            let Some(device) = device else {
                return Err(Error::invalid(
                    ErrorCode::MissingDevice,
                    format!(
                        "a home's simulation has one defended trace per member: give ?device= one of {}",
                        members.join(", ")
                    ),
                ));
            };
            let index = p.devices.iter().position(|d| d.name == device).filter(|_| members.contains(&device));
            index.map(Some).ok_or_else(|| {
                Error::not_found(
                    ErrorCode::UnknownDevice,
                    format!("{device:?} is not a member of this simulation's sets; members: {}", members.join(", ")),
                )
            })
        }
    }
}

/// A home simulation as the live gateway's configuration document.
///
/// What `ipet-gateway --config-url <this URL>` reads (with the same token): the defense, the set-defense specification as the job ran it
/// with the home's sets by name and each set's cover-size profile (what `ipet simulate --spec-out`
/// writes for the same captures), and the device table with MACs, IPs and sets, listed set by set.
/// Devices in no set without a MAC are left out and named in `X-Omitted-Devices`. The spec's
/// deployment is the job's: `ideal` means "as the gateway's --mode". For `targets`, `service`
/// names this service (as the request reached it) and the set-targets model set and generation
/// the job drew from.
#[utoipa::path(
    get,
    path = "/simulations/{id}/gateway-config",
    tag = "simulations",
    params(("id" = Uuid, Path, description = "A home simulation's job id")),
    responses(
        (status = 200, description = "The gateway's configuration document (JSON; `ipet-gateway check FILE --mode bridge|ap` checks it offline)", body = GatewayConfig,
            headers(("X-Omitted-Devices" = String, description = "Comma-separated: devices of the table in no set and without a MAC, left out (absent when none)"))),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "No such job (or another caller's)", body = ErrorBody),
        (status = 409, description = "The job has not succeeded (yet) (`job_not_finished`); it defended one device, not a home (`not_a_home_simulation`); a set member has no MAC address, e.g. a home submitted as JSON packets (`missing_mac`); its `targets` rows were a fixed schedule, which a gateway cannot fetch (`targets_not_served`)", body = ErrorBody),
    )
)]
pub async fn get_simulation_gateway_config(
    State(state): State<AppState>,
    caller: Caller,
    path: std::result::Result<Path<String>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Result<Response> {
    let Path(raw) = path?;
    let id = super::parse_job_id(&raw)?;
    let plan = home_gateway_config(&state.store, &caller, id, &base_url(&headers)).await?;
    let mut response = Json::<GatewayConfig>(plan.config).into_response();
    if !plan.omitted.is_empty() {
        let names: String =
            plan.omitted.join(", ").chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
        if let Ok(v) = HeaderValue::from_str(&names) {
            response.headers_mut().insert("x-omitted-devices", v);
        }
    }
    Ok(response)
}

/// This service's base URL as the request reached it: `X-Forwarded-Proto` and `X-Forwarded-Host`
/// from a proxy, else `http://` and `Host` (a value that is no host name is ignored).
fn base_url(headers: &HeaderMap) -> String {
    let value =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.split(',').next().unwrap_or("").trim());
    let host_like = |h: &&str| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b));
    let host =
        value("x-forwarded-host").filter(host_like).or(value("host").filter(host_like)).unwrap_or("127.0.0.1:8080");
    let scheme = match value("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

fn render_output(id: Uuid, bytes: &[u8], rows: usize, format: Format) -> Result<Response> {
    let mut values: Vec<f64> = Vec::with_capacity(rows * 4);
    decode_output(bytes, |r| {
        values.extend_from_slice(&r);
        Ok(())
    })?;
    Ok(match format {
        Format::Json => Json(SimulationOutput {
            id,
            columns: OUTPUT_COLUMNS.iter().map(|c| c.to_string()).collect(),
            rows: values.chunks_exact(4).map(|r| [r[0], r[1], r[2], r[3]]).collect(),
        })
        .into_response(),
        Format::Npy => {
            let mut npy = NpyWriter::new(std::io::Cursor::new(Vec::with_capacity(values.len() * 8 + 128)))?;
            for r in values.chunks_exact(4) {
                npy.write_row([r[0], r[1], r[2], r[3]])?;
            }
            let (out, _) = npy.finish()?;
            ([(header::CONTENT_TYPE, NPY)], out.into_inner()).into_response()
        }
        Format::Csv => {
            use std::fmt::Write;
            let mut out = String::with_capacity(values.len() * 6 + 64);
            out.push_str(&OUTPUT_COLUMNS.join(","));
            out.push('\n');
            for r in values.chunks_exact(4) {
                let _ = writeln!(out, "{},{},{},{}", r[0] as i64, r[1] as i64, r[2], r[3]);
            }
            ([(header::CONTENT_TYPE, CSV)], out).into_response()
        }
    })
}
