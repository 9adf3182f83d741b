//! Turning a submission into a queued job: everything is checked first, so a bad upload gets a
//! 4xx naming the problem and no job exists.

use std::{io::Cursor, net::IpAddr};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    codec::encode_packets,
    params::{Cover, JobParams, SimulationParams},
};
use crate::{
    auth::Caller,
    error::{Error, ErrorCode, Result},
    models::{GenerationChoice, ModelSet, manifest::Family},
    store::{NewSimulation, Store},
    traffic::{
        Baseline, BaselineKind, CaptureStats, DeviceTable, FixedRows, Mode, Packet, SimSettings,
        capture::read_capture,
        devices::{Mac, parse_mac},
        work_bounds::{self, CoverKind},
    },
};

/// The trace of a submission.
pub enum TraceInput {
    /// A capture file (pcap, pcapng, tshark CSV) as uploaded.
    Capture { name: String, bytes: Vec<u8> },
    /// Packets given directly (any order).
    Packets(Vec<Packet>),
}

/// Where the cover should come from, as asked.
pub enum CoverRequest {
    Generation(String),
    PerturbationJob(String),
    UploadedSchedule(Vec<u8>),
    Baseline(BaselineKind),
}

/// How much work one job may ask for, checked before it is accepted.
#[derive(Debug, Clone)]
pub struct JobLimits {
    /// Longest trace span (first to last packet), seconds.
    pub max_span_secs: u64,
    /// Most output rows (real and cover packets) the job may produce, by the bound of
    /// [`crate::traffic::work_bounds::output_rows_bound`]; the worker also stops a run past it.
    pub max_output_rows: u64,
    /// Unfinished (queued or running) jobs one caller may hold.
    pub max_active_per_caller: u64,
}

/// The default longest span: two weeks, so that the week of captures the project ships (7.28
/// days) and a week of anyone's with some slack pass.
pub const DEFAULT_MAX_SPAN_SECS: u64 = 14 * 86_400;

impl Default for JobLimits {
    fn default() -> Self {
        Self { max_span_secs: DEFAULT_MAX_SPAN_SECS, max_output_rows: 10_000_000, max_active_per_caller: 16 }
    }
}

/// The perturbation job named by a request's `schedule_job`: 400 when it is not a UUID.
pub(super) fn schedule_job_id(raw: &str) -> Result<Uuid> {
    Uuid::parse_str(raw.trim())
        .map_err(|_| Error::invalid(ErrorCode::InvalidJobId, format!("schedule_job {raw:?} is not a UUID")))
}

/// Bytes one output row takes in the store at most (time delta, flags, size).
pub const MAX_BYTES_PER_OUTPUT_ROW: u64 = 10 + 1 + 8;

pub struct Submission {
    pub device: String,
    /// The model set the request named (`?model_set=`); the job runs on it. None: the default
    /// set as it is when the job is claimed.
    pub model_set: Option<String>,
    /// The device's MAC and/or IP addresses in the capture (default: the model set's).
    pub addresses: Option<String>,
    pub trace: TraceInput,
    pub cover: CoverRequest,
    pub mode: Mode,
    pub seed: Option<u64>,
    pub active_gap: f64,
}

fn device_table(device: &str, addresses: &str) -> Result<DeviceTable> {
    let mut mac: Option<Mac> = None;
    let mut ips: Vec<IpAddr> = Vec::new();
    for token in addresses.split([',', ';', ' ']).map(str::trim).filter(|t| !t.is_empty()) {
        if let Some(m) = parse_mac(token) {
            if mac.replace(m).is_some() {
                return Err(Error::invalid(
                    ErrorCode::InvalidAddress,
                    format!("address {addresses:?} names more than one MAC"),
                ));
            }
        } else if let Ok(ip) = token.parse() {
            ips.push(ip);
        } else {
            return Err(Error::invalid(
                ErrorCode::InvalidAddress,
                format!("address {token:?} is neither a MAC nor an IP address"),
            ));
        }
    }
    DeviceTable::new(vec![(device.to_string(), mac, ips)]).map_err(|_| {
        Error::invalid(ErrorCode::InvalidAddress, format!("no MAC or IP address given for device {device:?}"))
    })
}

/// Checks a submission and stores it as a queued job; returns its id.
pub async fn submit(set: &ModelSet, store: &Store, caller: &Caller, limits: &JobLimits, s: Submission) -> Result<Uuid> {
    let known = set.device_index(&s.device).map(|i| &set.manifest.devices[i]);
    // The simulator's settings are checked now, so that a job never fails on them later.
    SimSettings::new(set.manifest.settings.omega, s.active_gap)?;

    let (cover, schedule) = match s.cover {
        CoverRequest::Generation(g) => {
            if set.manifest.family != Family::Ipet {
                return Err(Error::invalid(
                    ErrorCode::InvalidModelSet,
                    format!(
                        "model set {:?} holds set targets: one device's generators come from an iPET model set (see \
                         /model-sets); set targets are for a home's `targets`",
                        set.manifest.name
                    ),
                ));
            }
            if known.is_none() {
                return Err(unknown_device(set, &s.device));
            }
            let choice = GenerationChoice::parse(&g, set.generations())?;
            (Cover::Generation { generation: choice }, None)
        }
        CoverRequest::PerturbationJob(raw) => {
            let id = schedule_job_id(&raw)?;
            // Only its slot count now: the worker reads the schedule when it runs the job.
            let slots = store
                .perturbation_slots(id, caller.owner_filter())
                .await?
                .ok_or_else(|| Error::not_found(ErrorCode::UnknownJob, format!("no perturbation job {id}")))?;
            if slots != set.slots() {
                return Err(Error::invalid(
                    ErrorCode::IncompatibleSchedule,
                    format!(
                        "perturbation job {id} has {slots} slots per window; the served model set has {}",
                        set.slots()
                    ),
                ));
            }
            (Cover::PerturbationJob { job_id: id }, None)
        }
        CoverRequest::UploadedSchedule(bytes) => {
            let rows = FixedRows::from_npy_bytes(&bytes)?;
            if rows.is_empty() {
                return Err(Error::invalid(ErrorCode::InvalidSchedule, "the uploaded schedule has no rows"));
            }
            (Cover::UploadedSchedule { rows: rows.len() as u64 }, Some(bytes))
        }
        CoverRequest::Baseline(b) => (Cover::Baseline { baseline: b }, None),
    };

    let (packets, trace_name, addresses, capture) = match s.trace {
        TraceInput::Packets(mut packets) => {
            packets.sort_by_key(|p| p.time_ns);
            let n = packets.len() as u64;
            (packets, "packets".to_string(), Vec::new(), CaptureStats { frames: n, kept: n, ..Default::default() })
        }
        TraceInput::Capture { name, bytes } => {
            let addresses = match (&s.addresses, known) {
                (Some(a), _) => a.clone(),
                (None, Some(d)) => [d.mac.clone(), d.ip.clone()].into_iter().flatten().collect::<Vec<_>>().join(","),
                (None, None) => return Err(unknown_device(set, &s.device)),
            };
            let table = device_table(&s.device, &addresses)?;
            let mut stats = CaptureStats::default();
            let mut packets = Vec::new();
            read_capture(Cursor::new(bytes), &name, &table, &mut stats, |_, _, p| packets.push(p))?;
            packets.sort_by_key(|p| p.time_ns);
            let list = addresses.split([',', ';', ' ']).filter(|a| !a.is_empty()).map(str::to_string).collect();
            (packets, name, list, stats)
        }
    };
    if packets.is_empty() {
        return Err(Error::invalid(
            ErrorCode::NoPackets,
            format!(
                "the trace {trace_name:?} holds no TCP/UDP payload packets between device {:?} ({}) and the internet",
                s.device,
                if addresses.is_empty() { "as given".to_string() } else { addresses.join(", ") }
            ),
        ));
    }
    // The work is bounded before the job is accepted.
    let settings = SimSettings::new(set.manifest.settings.omega, s.active_gap)?;
    let span = work_bounds::span_ns(&packets) as f64 / 1e9;
    if span > limits.max_span_secs as f64 {
        return Err(Error::invalid(
            ErrorCode::SpanTooLong,
            format!(
                "the trace spans {:.0} s (first to last packet); a simulation may span at most {} s (--sim-max-span-secs); split the trace",
                span, limits.max_span_secs
            ),
        ));
    }
    let baseline;
    let kind = match &cover {
        Cover::Baseline { baseline: b } => {
            baseline = Baseline::new(*b);
            CoverKind::Baseline(&baseline)
        }
        _ => CoverKind::Ipet { mode: s.mode, cap_packets: set.manifest.settings.max_packets_per_omega },
    };
    let rows = work_bounds::output_rows_bound(&packets, kind, &settings);
    if rows > limits.max_output_rows {
        return Err(Error::invalid(
            ErrorCode::OutputTooLarge,
            format!(
                "this simulation may produce up to {rows} output rows (about {} MB stored); at most {} rows are accepted (--sim-max-output-rows); shorten the trace",
                rows.saturating_mul(MAX_BYTES_PER_OUTPUT_ROW) / 1_000_000,
                limits.max_output_rows
            ),
        ));
    }
    let active = store.count_active_simulations(&caller.name).await?;
    if active >= limits.max_active_per_caller as i64 {
        return Err(Error::QuotaExceeded(format!(
            "{} holds {active} unfinished simulations; at most {} at once (--sim-max-active-jobs); retry when one has finished",
            caller.name, limits.max_active_per_caller
        )));
    }
    let params = SimulationParams {
        device: s.device,
        model_set: s.model_set.as_ref().map(|_| set.manifest.name.clone()),
        cover,
        mode: s.mode,
        seed: s.seed,
        active_gap: s.active_gap,
        omega: set.manifest.settings.omega,
        trace_name,
        addresses,
        capture,
    };
    let id = Uuid::new_v4();
    let created_at: DateTime<Utc> = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    store
        .insert_simulation(&NewSimulation {
            id,
            requester: caller.name.clone(),
            params: JobParams::Device(params).to_stored()?,
            trace: encode_packets(&packets),
            trace_packets: packets.len() as u64,
            schedule,
            created_at,
        })
        .await?;
    Ok(id)
}

/// The model set's 404 for an unknown device, with the way out for a baseline on another one.
fn unknown_device(set: &ModelSet, device: &str) -> Error {
    match set.require_device(device) {
        Err(Error::NotFound { code, message }) => {
            Error::NotFound { code, message: format!("{message}; for a baseline on another device, give its address") }
        }
        Err(e) => e,
        Ok(_) => Error::Internal(format!("device {device:?} is in the model set")),
    }
}
