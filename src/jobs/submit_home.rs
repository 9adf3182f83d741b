//! Turning a home submission (a set defense over every device of a device table) into a queued
//! job: the captures are read, the sets formed and every setting checked first, so a bad request
//! gets a 4xx naming the problem and no job exists.

use std::{io::Cursor, sync::Arc};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    codec::{encode_packets, encode_sections},
    params::{HomeDevice, HomeParams, HomeSet, JobParams, TargetsSource},
    submit::{JobLimits, MAX_BYTES_PER_OUTPUT_ROW, schedule_job_id},
};
use crate::{
    auth::Caller,
    error::{Error, ErrorCode, Result},
    models::{
        Engine, GenerationChoice, ModelSet, ModelSets,
        set_targets::{DEFAULT_CHUNK, assigned_sets, require_set_targets, set_defense_spec, set_generator},
    },
    store::{NewSimulation, Store},
    traffic::{
        CaptureStats, DeviceTable, FixedRows, Packet, RegulatorSettings, SetPartition,
        capture::read_capture,
        devices::format_mac,
        form_sets,
        set_defense::{DEFAULT_WINDOW_SECS, SetDefenseKind, SetDefenseSpec, SetKnobs},
        sets::DEFAULT_K,
        shaper::ReleaseKnobs,
        simulate::TargetRowsSettings,
        work_bounds::{self, PadCoverKind},
    },
};

/// Where a home's target rows should come from, as asked.
pub enum TargetsRequest {
    /// A set-targets model set's generators: a generation index or `mix`.
    Generation(String),
    /// A stored perturbation job's schedule (its id).
    PerturbationJob(String),
    /// An uploaded `.npy` schedule.
    UploadedSchedule(Vec<u8>),
}

/// The set defense's knobs as asked; unset ones take `ipet simulate`'s defaults.
#[derive(Debug, Clone, Default)]
pub struct HomeKnobs {
    pub k: Option<usize>,
    /// `a,b,c;d,e`: sets by device name (devices not named are clustered).
    pub sets: Option<String>,
    pub latency_budget: Option<f64>,
    pub levels: Option<f64>,
    pub surge: Option<f64>,
    pub threshold: Option<f64>,
    pub half_life: Option<f64>,
    pub floor_rate: Option<f64>,
    pub fake_window_rate: Option<f64>,
    pub seed: Option<u64>,
    /// Deployment, reaction lag, countermeasures (default: `ideal`).
    pub release: ReleaseKnobs,
}

/// A home's traffic as given.
pub enum HomeTrace {
    Captures {
        /// Capture files (pcap, pcapng, tshark CSV) as uploaded: (file name, bytes).
        files: Vec<(String, Vec<u8>)>,
        /// The device table as uploaded (CSV, as `ipet simulate --devices`); default: the model
        /// set's devices and addresses.
        devices: Option<String>,
    },
    /// Every device's packets (any order): (name, its set, packets).
    Packets(Vec<(String, Option<String>, Vec<Packet>)>),
}

pub struct HomeSubmission {
    pub defense: SetDefenseKind,
    pub trace: HomeTrace,
    pub targets: Option<TargetsRequest>,
    /// The served model set of `targets` from generators (default: the default set).
    pub model_set: Option<String>,
    pub knobs: HomeKnobs,
    /// The set defense as a whole specification (the data plane's, as `ipet simulate --spec`
    /// reads it) instead of the knobs: its sets and size profiles are then the home's.
    pub spec: Option<SetDefenseSpec>,
}

/// A model set's devices as a device table (their addresses from the manifest).
fn manifest_table(set: &ModelSet) -> Result<DeviceTable> {
    let mut csv = String::from("name,mac,ip\n");
    for d in &set.manifest.devices {
        let cell = |v: &Option<String>| v.clone().unwrap_or_default().replace(['"', ','], " ");
        csv.push_str(&format!("{},{},{}\n", d.name.replace(',', " "), cell(&d.mac), cell(&d.ip)));
    }
    DeviceTable::from_csv_str(&csv).map_err(|e| {
        Error::invalid(
            ErrorCode::InvalidDeviceTable,
            format!("model set {}'s devices cannot select packets ({e}); upload a device table", set.manifest.name),
        )
    })
}

/// The form fields and JSON keys that give a home's target rows (for error messages).
const TARGETS_FIELDS: &str =
    "generation (with ?model_set= naming a served set-targets model set), schedule_job or schedule";

/// Checks a home submission and stores it as a queued job; returns its id. In order: the target
/// rows (before the captures are read), the set defense's settings, the home's traffic, its sets,
/// the work bounds and the caller's quota; only then is the job stored.
pub async fn submit_home(
    models: &ModelSets,
    store: &Store,
    caller: &Caller,
    limits: &JobLimits,
    s: HomeSubmission,
) -> Result<Uuid> {
    s.defense.check_rows(s.targets.is_some(), TARGETS_FIELDS)?;
    if matches!(&s.trace, HomeTrace::Captures { files, .. } if files.is_empty()) {
        return Err(Error::invalid(ErrorCode::MissingTrace, "the form has no `trace` file"));
    }
    let rows = resolve_targets(models, store, caller, s.targets, s.model_set.as_deref()).await?;
    let model_set = rows.engine.as_ref().map(|e| e.model_set());
    let settings = match s.spec {
        Some(spec) => given_spec(spec, s.defense, model_set)?,
        None => spec_from_knobs(s.defense, model_set, &s.knobs)?,
    };
    let home = read_home(s.trace, model_set, models)?;
    let k = settings.k.or(s.knobs.k).unwrap_or(DEFAULT_K);
    let assigned = match settings.assigned_sets(&home.table)? {
        Some(named) => named,
        None => assigned_sets(&home.table, s.knobs.sets.as_deref(), model_set)?,
    };
    let silent = settings.silent_devices();
    let partition = form_sets(&home.table, &assigned, &home.packets, k, settings.pad()?.omega_ns, silent)?;
    let names: Vec<String> = home.table.devices().iter().map(|d| d.name.clone()).collect();
    if let Some(set) = model_set {
        for s in &partition.sets {
            set_generator(set, s, &names)?;
        }
    }
    check_work(limits, &home.packets, &names, &partition, &settings, model_set, rows.fixed.as_ref())?;
    let active = store.count_active_simulations(&caller.name).await?;
    if active >= limits.max_active_per_caller as i64 {
        return Err(Error::QuotaExceeded(format!(
            "{} holds {active} unfinished simulations; at most {} at once (--sim-max-active-jobs); retry when one has \
             finished",
            caller.name, limits.max_active_per_caller
        )));
    }
    store_job(store, caller, HomeParts { settings, rows, k, home, partition, names }).await
}

/// A home's target rows as checked: what the job records, the uploaded schedule's bytes, the
/// rows of a fixed schedule, the engine of a set-targets model set.
struct ResolvedTargets {
    source: Option<TargetsSource>,
    schedule_bytes: Option<Vec<u8>>,
    fixed: Option<FixedRows>,
    engine: Option<Arc<Engine>>,
}

/// Checks where the target rows come from: a served set-targets model set and its generation, a
/// stored perturbation job of the caller's, or an uploaded schedule with rows.
async fn resolve_targets(
    models: &ModelSets,
    store: &Store,
    caller: &Caller,
    targets: Option<TargetsRequest>,
    model_set: Option<&str>,
) -> Result<ResolvedTargets> {
    let none = ResolvedTargets { source: None, schedule_bytes: None, fixed: None, engine: None };
    Ok(match targets {
        None => none,
        Some(TargetsRequest::Generation(g)) => {
            let engine = models.engine(model_set)?;
            let set = engine.model_set();
            require_set_targets(set)?;
            let choice = GenerationChoice::parse(&g, set.generations())?;
            let source = TargetsSource::Generation {
                model_set: set.manifest.name.clone(),
                generation: choice,
                chunk: DEFAULT_CHUNK,
            };
            ResolvedTargets { source: Some(source), engine: Some(engine.clone()), ..none }
        }
        Some(TargetsRequest::PerturbationJob(raw)) => {
            let id = schedule_job_id(&raw)?;
            let job = store
                .get_perturbation(id, caller.owner_filter())
                .await?
                .ok_or_else(|| Error::not_found(ErrorCode::UnknownJob, format!("no perturbation job {id}")))?;
            let fixed = Some(job.schedule.fixed_rows()?);
            ResolvedTargets { source: Some(TargetsSource::PerturbationJob { job_id: id }), fixed, ..none }
        }
        Some(TargetsRequest::UploadedSchedule(bytes)) => {
            let rows = FixedRows::from_npy_bytes(&bytes)?;
            if rows.is_empty() {
                return Err(Error::invalid(ErrorCode::InvalidSchedule, "the uploaded schedule has no rows"));
            }
            let source = Some(TargetsSource::UploadedSchedule { rows: rows.len() as u64 });
            ResolvedTargets { source, schedule_bytes: Some(bytes), fixed: Some(rows), engine: None }
        }
    })
}

/// The set defense's specification from the knobs as asked (unset ones: `ipet simulate`'s
/// defaults), each checked.
fn spec_from_knobs(defense: SetDefenseKind, model_set: Option<&ModelSet>, kn: &HomeKnobs) -> Result<SetDefenseSpec> {
    let defaults = RegulatorSettings::default();
    let regulator = RegulatorSettings {
        levels: kn.levels.unwrap_or(defaults.levels),
        surge: kn.surge.unwrap_or(defaults.surge),
        threshold: kn.threshold.unwrap_or(defaults.threshold),
        half_life: kn.half_life.unwrap_or(defaults.half_life),
        floor_rate: kn.floor_rate.unwrap_or(defaults.floor_rate),
    };
    let knobs = SetKnobs {
        latency_budget: kn.latency_budget.unwrap_or(0.0),
        regulator,
        fake_window_rate: kn.fake_window_rate.unwrap_or(TargetRowsSettings::default().fake_window_rate),
        seed: kn.seed,
        release: kn.release.settings()?,
    };
    set_defense_spec(defense, model_set, None, DEFAULT_WINDOW_SECS, knobs)
}

/// A whole specification as given, checked against the request's defense and, for targets from
/// generators, the model set's slot and window.
fn given_spec(spec: SetDefenseSpec, defense: SetDefenseKind, model_set: Option<&ModelSet>) -> Result<SetDefenseSpec> {
    let bad = |m: String| Error::invalid(ErrorCode::InvalidSimulationSettings, m);
    if spec.defense != defense {
        return Err(bad(format!(
            "defense is {} but spec.defense is {}: give one defense",
            defense.name(),
            spec.defense.name()
        )));
    }
    spec.check()?;
    if let Some(m) = model_set
        && (spec.omega != m.manifest.settings.omega || spec.target_rows.slots_per_window as usize != m.slots())
    {
        return Err(bad(format!(
            "spec.omega {} s and spec.target_rows.slots_per_window {} must be {}'s: {} s and {}",
            spec.omega,
            spec.target_rows.slots_per_window,
            m.manifest.name,
            m.manifest.settings.omega,
            m.slots()
        )));
    }
    Ok(spec)
}

/// A home's traffic: its device table, each device's packets in time order, what the reader kept
/// and skipped, the trace files' names.
struct HomeTraffic {
    table: DeviceTable,
    packets: Vec<Vec<Packet>>,
    capture: CaptureStats,
    trace_names: Vec<String>,
}

/// Reads a home's captures with its device table (uploaded, else the model set's, else the
/// default model set's), or takes its packets as given.
fn read_home(trace: HomeTrace, model_set: Option<&ModelSet>, models: &ModelSets) -> Result<HomeTraffic> {
    let mut home = match trace {
        HomeTrace::Captures { files, devices } => {
            let table = match (&devices, model_set) {
                (Some(csv), _) => DeviceTable::from_csv_str(csv)?,
                (None, Some(set)) => manifest_table(set)?,
                (None, None) => manifest_table(models.default_engine().model_set())?,
            };
            let mut packets: Vec<Vec<Packet>> = vec![Vec::new(); table.len()];
            let mut capture = CaptureStats::default();
            let mut trace_names = Vec::new();
            for (name, bytes) in &files {
                let mut stats = CaptureStats::default();
                read_capture(Cursor::new(bytes), name, &table, &mut stats, |d, _, p| packets[d].push(p))?;
                capture.add(&stats);
                trace_names.push(name.clone());
            }
            capture.lan_packets_by_device.resize(table.len(), 0);
            HomeTraffic { table, packets, capture, trace_names }
        }
        HomeTrace::Packets(devices) => {
            let mut entries = Vec::with_capacity(devices.len());
            let mut packets = Vec::with_capacity(devices.len());
            for (name, set, p) in devices {
                entries.push((name, set));
                packets.push(p);
            }
            let n = packets.iter().map(|p| p.len() as u64).sum();
            let capture = CaptureStats { frames: n, kept: n, ..Default::default() };
            HomeTraffic { table: DeviceTable::named(entries)?, packets, capture, trace_names: vec!["packets".into()] }
        }
    };
    for p in &mut home.packets {
        p.sort_by_key(|p| p.time_ns);
    }
    Ok(home)
}

/// The work bounds, checked before the job is accepted: the home's span and an upper bound of
/// the output rows.
fn check_work(
    limits: &JobLimits,
    packets: &[Vec<Packet>],
    names: &[String],
    partition: &SetPartition,
    settings: &SetDefenseSpec,
    model_set: Option<&ModelSet>,
    fixed: Option<&FixedRows>,
) -> Result<()> {
    let span = work_bounds::home_span_ns(packets) as f64 / 1e9;
    if span > limits.max_span_secs as f64 {
        return Err(Error::invalid(
            ErrorCode::SpanTooLong,
            format!(
                "the captures span {span:.0} s (the home's first to last packet); a simulation may span at most {} s \
                 (--sim-max-span-secs); split the captures",
                limits.max_span_secs
            ),
        ));
    }
    // A row's packets (both directions): the caps of each device's target generator, or the
    // fixed schedule's largest row.
    let packets_per_row: Vec<u64> = names
        .iter()
        .map(|name| match (model_set, fixed) {
            (Some(set), _) => set.device_index(name).map_or(0, |d| {
                let c = set.caps_of(d);
                (c.first().copied().unwrap_or(0.0) + c.get(2).copied().unwrap_or(0.0)).ceil() as u64
            }),
            (None, Some(rows)) => rows.max_packets_per_row(),
            (None, None) => 0,
        })
        .collect();
    let kind = match settings.defense {
        SetDefenseKind::Supersequence => PadCoverKind::Supersequence,
        SetDefenseKind::Regulator => PadCoverKind::Regulator(&settings.regulator),
        SetDefenseKind::Targets => PadCoverKind::TargetRows {
            packets_per_row: &packets_per_row,
            slots_per_window: settings.target_rows.slots_per_window,
            fake_window_rate: settings.target_rows.fake_window_rate,
        },
    };
    let rows = work_bounds::pad_output_rows_bound(packets, partition, kind, &settings.pad()?);
    if rows > limits.max_output_rows {
        return Err(Error::invalid(
            ErrorCode::OutputTooLarge,
            format!(
                "this simulation may produce up to {rows} output rows (about {} MB stored); at most {} rows are \
                 accepted (--sim-max-output-rows); shorten the captures",
                rows.saturating_mul(MAX_BYTES_PER_OUTPUT_ROW) / 1_000_000,
                limits.max_output_rows
            ),
        ));
    }
    Ok(())
}

/// What a checked home job is made of.
struct HomeParts {
    settings: SetDefenseSpec,
    rows: ResolvedTargets,
    k: usize,
    home: HomeTraffic,
    partition: SetPartition,
    names: Vec<String>,
}

/// Stores a checked home job (its parameters and every device's packets) as queued.
async fn store_job(store: &Store, caller: &Caller, parts: HomeParts) -> Result<Uuid> {
    let HomeParts { settings, rows, k, home, partition, names } = parts;
    let HomeTraffic { table, packets, capture, trace_names } = home;
    let devices = table
        .devices()
        .iter()
        .map(|d| HomeDevice {
            name: d.name.clone(),
            addresses: d.mac.iter().map(format_mac).chain(d.ips.iter().map(|ip| ip.to_string())).collect(),
            packets: packets[d.id].len() as u64,
        })
        .collect();
    let params = JobParams::Home(HomeParams {
        settings,
        targets: rows.source,
        k,
        devices,
        sets: partition
            .sets
            .iter()
            .map(|s| HomeSet { name: s.name.clone(), members: s.members.iter().map(|&d| names[d].clone()).collect() })
            .collect(),
        excluded: partition.excluded.iter().map(|&d| names[d].clone()).collect(),
        trace_names,
        capture,
    });
    let id = Uuid::new_v4();
    let created_at: DateTime<Utc> = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let sections: Vec<Vec<u8>> = packets.iter().map(|p| encode_packets(p)).collect();
    store
        .insert_simulation(&NewSimulation {
            id,
            requester: caller.name.clone(),
            params: params.to_stored()?,
            trace: encode_sections(&sections),
            trace_packets: packets.iter().map(|p| p.len() as u64).sum(),
            schedule: rows.schedule_bytes,
            created_at,
        })
        .await?;
    Ok(id)
}
