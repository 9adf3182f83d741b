//! The request of a set defense over a whole home (`POST /simulations` with `defense`): its
//! multipart form (captures, device table) and its JSON form (every device's packets).

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::ToSchema;

use super::simulation_input::{TracePacket, enum_field, parse_field, to_packets};
use crate::{
    error::{Error, ErrorCode, Result},
    jobs::submit_home::{HomeKnobs, HomeSubmission, HomeTrace, TargetsRequest},
    traffic::{
        set_defense::{SetDefenseKind, SetDefenseSpec},
        shaper::{Deployment, ReleaseKnobs},
    },
};

/// Text fields only a set defense takes: its knobs.
pub(super) const HOME_ONLY_FIELDS: [&str; 18] = [
    "k",
    "sets",
    "latency_budget",
    "levels",
    "surge",
    "threshold",
    "half_life",
    "floor_rate",
    "fake_window_rate",
    "deployment",
    "lag",
    "lag_downlink",
    "lag_uplink",
    "held_release",
    "random_order",
    "slot_behind",
    "mirror_all",
    "spec",
];

/// Whether `name` is a text field of a set defense's form (the files aside).
fn is_home_field(name: &str) -> bool {
    matches!(name, "defense" | "generation" | "schedule_job" | "seed") || HOME_ONLY_FIELDS.contains(&name)
}

/// A set defense's form: every device of the table (uploaded, or the model set's) from the
/// uploaded captures.
pub(super) fn home_from_form(
    traces: Vec<(String, Vec<u8>)>,
    schedule: Option<Vec<u8>>,
    devices: Option<Vec<u8>>,
    text: BTreeMap<String, String>,
    model_set: Option<String>,
) -> Result<HomeSubmission> {
    if let Some(other) = text.keys().find(|k| !is_home_field(k)) {
        return Err(Error::invalid(
            ErrorCode::InvalidField,
            format!("{other} is for one device's simulation; a set defense defends every device of the table"),
        ));
    }
    let defense =
        enum_field("defense", text.get("defense").map_or("", String::as_str), "supersequence, regulator, targets")?;
    let mut targets = Vec::new();
    if let Some(g) = text.get("generation") {
        targets.push(TargetsRequest::Generation(g.trim().to_string()));
    }
    if let Some(j) = text.get("schedule_job") {
        targets.push(TargetsRequest::PerturbationJob(j.clone()));
    }
    if let Some(s) = schedule {
        targets.push(TargetsRequest::UploadedSchedule(s));
    }
    if targets.len() > 1 {
        return Err(Error::invalid(
            ErrorCode::AmbiguousTargets,
            "give only one of generation, schedule_job or schedule",
        ));
    }
    let devices = devices
        .map(|d| {
            String::from_utf8(d)
                .map_err(|_| Error::invalid(ErrorCode::InvalidDeviceTable, "the device table is not UTF-8 text"))
        })
        .transpose()?;
    let number =
        |name: &str| -> Result<Option<f64>> { text.get(name).map(|v| parse_field(name, v, "a number")).transpose() };
    let flag = |name: &str| -> Result<bool> {
        Ok(text.get(name).map(|v| parse_field::<bool>(name, v, "true or false")).transpose()?.unwrap_or(false))
    };
    let spec = text
        .get("spec")
        .map(|v| {
            serde_json::from_str::<SetDefenseSpec>(v).map_err(|e| {
                Error::invalid(ErrorCode::InvalidField, format!("spec is not a set defense specification: {e}"))
            })
        })
        .transpose()?;
    if spec.is_some()
        && let Some(knob) =
            HOME_ONLY_FIELDS.iter().chain(["seed"].iter()).find(|&&f| f != "spec" && text.contains_key(f))
    {
        return Err(knob_with_spec(knob));
    }
    Ok(HomeSubmission {
        defense,
        spec,
        trace: HomeTrace::Captures { files: traces, devices },
        targets: targets.pop(),
        model_set,
        knobs: HomeKnobs {
            k: text.get("k").map(|v| parse_field("k", v, "a whole number of devices")).transpose()?,
            sets: text.get("sets").cloned(),
            latency_budget: number("latency_budget")?,
            levels: number("levels")?,
            surge: number("surge")?,
            threshold: number("threshold")?,
            half_life: number("half_life")?,
            floor_rate: number("floor_rate")?,
            fake_window_rate: number("fake_window_rate")?,
            seed: text
                .get("seed")
                .map(|s| parse_field("seed", s, "a whole number between 0 and 2^64-1"))
                .transpose()?,
            release: ReleaseKnobs {
                deployment: text
                    .get("deployment")
                    .map(|v| enum_field("deployment", v, "ideal, bridge, ap"))
                    .transpose()?,
                lag: text.get("lag").cloned(),
                lag_downlink: text.get("lag_downlink").cloned(),
                lag_uplink: text.get("lag_uplink").cloned(),
                held_release: flag("held_release")?,
                random_order: flag("random_order")?,
                slot_behind: flag("slot_behind")?,
                mirror_all: flag("mirror_all")?,
            },
        },
    })
}

/// One device of a home's JSON trace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HomeTraceDevice {
    /// Device name.
    pub name: String,
    /// Its anonymity set (default: none, clustered with the others left without one).
    pub set: Option<String>,
    pub packets: Vec<TracePacket>,
}

/// A set defense over a whole home submitted as JSON: every device's packets (as `ipet simulate
/// --defense` over their captures); the settings as in the multipart form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HomeSimulationRequest {
    pub defense: SetDefenseKind,
    pub devices: Vec<HomeTraceDevice>,
    /// `targets`: the generators of the set-targets model set named by `?model_set=`.
    pub generation: Option<String>,
    /// `targets`: rows from a stored perturbation job.
    #[schema(format = Uuid)]
    pub schedule_job: Option<String>,
    pub k: Option<usize>,
    pub sets: Option<String>,
    pub latency_budget: Option<f64>,
    pub levels: Option<f64>,
    pub surge: Option<f64>,
    pub threshold: Option<f64>,
    pub half_life: Option<f64>,
    pub floor_rate: Option<f64>,
    pub fake_window_rate: Option<f64>,
    pub seed: Option<u64>,
    /// Who transmits what on the observed link: `ideal` (no reaction lag, the default), `bridge`
    /// (holds and emits both directions) or `ap` (access point only: uplink originals never held).
    pub deployment: Option<Deployment>,
    /// Reaction lag of cover copies, both directions: a preset (`software-shaper`, the default
    /// outside `ideal`; `software-shaper-fifo`; `zero`) or a fixed duration (`2ms`, `150us`).
    pub lag: Option<String>,
    /// The same for downlink copies only (overrides `lag`).
    pub lag_downlink: Option<String>,
    /// The same for uplink copies only (overrides `lag`).
    pub lag_uplink: Option<String>,
    /// Hold every original a draw from its copies' lag (where the deployment holds its direction).
    #[serde(default)]
    pub held_release: bool,
    /// Send each original and its copies one after another in a random order.
    #[serde(default)]
    pub random_order: bool,
    /// Carry every decision out one slot later (at most one slot of added latency).
    #[serde(default)]
    pub slot_behind: bool,
    /// Mirror every member, not only each slot's lead (every member sends the same frames).
    #[serde(default)]
    pub mirror_all: bool,
    /// The set defense as a whole specification (what `ipet simulate --spec-out` writes and a
    /// gateway is configured with) instead of the knobs above, which must then be absent; its
    /// `defense` must be this request's.
    pub spec: Option<SetDefenseSpec>,
}

fn knob_with_spec(knob: &str) -> Error {
    Error::invalid(
        ErrorCode::InvalidField,
        format!("{knob} is a set defense knob: with spec, give it inside the specification"),
    )
}

/// Whether a JSON body is an object naming a `defense` (a home's request). Only its top-level
/// keys are read, every value skipped unparsed, so that a number out of range (`1e400`) is
/// reported by the home's parser, about the number; a body that is no JSON object (`NaN` is no
/// JSON) is 400 `invalid_json` here.
pub(super) fn names_a_defense(body: &[u8]) -> Result<bool> {
    serde_json::from_slice::<BTreeMap<String, serde::de::IgnoredAny>>(body).map(|m| m.contains_key("defense")).map_err(
        |e| Error::invalid(ErrorCode::InvalidJson, format!("the body is not a JSON object: {}", json_error(&e))),
    )
}

/// serde's message, and what JSON allows where a number was refused.
fn json_error(e: &serde_json::Error) -> String {
    let m = e.to_string();
    if m.contains("number out of range") {
        format!("{m} (a JSON number must be finite, within about 1.8e308)")
    } else if e.is_syntax() {
        format!("{m} (JSON has no NaN or Infinity: numbers are finite)")
    } else {
        m
    }
}

pub(super) fn home_from_json(body: &[u8], model_set: Option<String>) -> Result<HomeSubmission> {
    let r: HomeSimulationRequest = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(ErrorCode::InvalidJson, format!("a home's simulation: {}", json_error(&e))))?;
    let mut devices = Vec::with_capacity(r.devices.len());
    for (i, d) in r.devices.into_iter().enumerate() {
        let packets = to_packets(&format!("devices[{i}].packets"), &d.packets)?;
        devices.push((d.name, d.set, packets));
    }
    let targets = match (r.generation, r.schedule_job) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(ErrorCode::AmbiguousTargets, "give only one of generation or schedule_job"));
        }
        (Some(g), None) => Some(TargetsRequest::Generation(g.trim().to_string())),
        (None, Some(j)) => Some(TargetsRequest::PerturbationJob(j)),
        (None, None) => None,
    };
    if r.spec.is_some() {
        let knobs = [
            ("k", r.k.is_some()),
            ("sets", r.sets.is_some()),
            ("latency_budget", r.latency_budget.is_some()),
            ("levels", r.levels.is_some()),
            ("surge", r.surge.is_some()),
            ("threshold", r.threshold.is_some()),
            ("half_life", r.half_life.is_some()),
            ("floor_rate", r.floor_rate.is_some()),
            ("fake_window_rate", r.fake_window_rate.is_some()),
            ("seed", r.seed.is_some()),
            ("deployment", r.deployment.is_some()),
            ("lag", r.lag.is_some() || r.lag_downlink.is_some() || r.lag_uplink.is_some()),
            ("held_release", r.held_release),
            ("random_order", r.random_order),
            ("slot_behind", r.slot_behind),
            ("mirror_all", r.mirror_all),
        ];
        if let Some((knob, _)) = knobs.iter().find(|(_, given)| *given) {
            return Err(knob_with_spec(knob));
        }
    }
    Ok(HomeSubmission {
        defense: r.defense,
        spec: r.spec,
        trace: HomeTrace::Packets(devices),
        targets,
        model_set,
        knobs: HomeKnobs {
            k: r.k,
            sets: r.sets,
            latency_budget: r.latency_budget,
            levels: r.levels,
            surge: r.surge,
            threshold: r.threshold,
            half_life: r.half_life,
            floor_rate: r.floor_rate,
            fake_window_rate: r.fake_window_rate,
            seed: r.seed,
            release: ReleaseKnobs {
                deployment: r.deployment,
                lag: r.lag,
                lag_downlink: r.lag_downlink,
                lag_uplink: r.lag_uplink,
                held_release: r.held_release,
                random_order: r.random_order,
                slot_behind: r.slot_behind,
                mirror_all: r.mirror_all,
            },
        },
    })
}
