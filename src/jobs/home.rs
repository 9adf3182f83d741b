//! A whole home defended in anonymity sets: a set defense's settings, where its target rows come
//! from, which sets the devices are in, and the run. Shared by `ipet simulate` (home mode) and the
//! service's home simulation jobs, so that the same input gives the same bits in both.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::{Error, ErrorCode, Result},
    models::{Engine, GenerationChoice, GeneratorRows, ModelSet, manifest::Family},
    traffic::{
        DeviceTable, FixedRows, HomeSummary, Packet, PadSettings, RegulatorSettings, RowSource, SetDefense,
        SetPartition, WindowSettings, defend_home, parse_sets,
        sets::AnonymitySet,
        simulate::{OutputPacket, TargetRows, TargetRowsSettings, TargetSource, set_rng},
    },
};

/// Which set defense pads the home's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SetDefenseKind {
    /// Every member padded to the set's per-slot maximum.
    Supersequence,
    /// Every member padded to the set regulariser's targets.
    Regulator,
    /// Every member padded to target rows: a set-targets model set's generators or a fixed schedule.
    Targets,
}

/// Windows drawn from target generators per inference call (`ipet simulate --chunk`'s default);
/// the noise stream depends on it, so a job records it.
pub const DEFAULT_CHUNK: usize = 256;
/// Slot length when no model set gives one (seconds).
pub const DEFAULT_OMEGA: f64 = 0.1;
/// Window length that cuts a fixed target schedule into windows (seconds), `ipet windows`' default.
pub const DEFAULT_WINDOW_SECS: f64 = 4.0;

/// A set defense's settings, besides the sets and the target rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HomeSettings {
    pub defense: SetDefenseKind,
    /// Slot length of the home grid, seconds (a set-targets model set's omega, else 0.1).
    pub omega: f64,
    /// Seconds a real packet may wait for room in its targets before it is sent anyway (leaked).
    pub latency_budget: f64,
    /// The regulator's knobs (used by `regulator`).
    pub regulator: RegulatorSettings,
    /// Target windows and fake windows (used by `targets`).
    pub target_rows: TargetRowsSettings,
    /// Seed of cover sizes, fake windows and generator noise; null: operating-system randomness.
    pub seed: Option<u64>,
}

/// The knobs of a set defense that are asked for as they are.
#[derive(Debug, Clone, Copy)]
pub struct SetKnobs {
    pub latency_budget: f64,
    pub regulator: RegulatorSettings,
    pub fake_window_rate: f64,
    pub seed: Option<u64>,
}

impl HomeSettings {
    /// The settings a set defense runs with, each checked; `model` is the set-targets model set of
    /// `targets` from generators; `window_secs` cuts a fixed target schedule into windows.
    pub fn new(
        defense: SetDefenseKind,
        model: Option<&ModelSet>,
        omega: Option<f64>,
        window_secs: f64,
        knobs: SetKnobs,
    ) -> Result<Self> {
        let SetKnobs { latency_budget, regulator, fake_window_rate, seed } = knobs;
        let omega = omega.unwrap_or(model.map_or(DEFAULT_OMEGA, |m| m.manifest.settings.omega));
        PadSettings::new(omega, latency_budget)?;
        let slots_per_window = match model {
            Some(m) => m.slots() as u32,
            None => WindowSettings::new(window_secs, omega)?.slots() as u32,
        };
        let target_rows = TargetRowsSettings { slots_per_window, fake_window_rate };
        target_rows.check()?;
        if defense == SetDefenseKind::Regulator {
            regulator.check()?;
        }
        Ok(Self { defense, omega, latency_budget, regulator, target_rows, seed })
    }

    pub fn pad(&self) -> Result<PadSettings> {
        Ok(PadSettings::new(self.omega, self.latency_budget)?)
    }
}

/// Where the target rows of `targets` come from.
pub enum TargetRowsFrom {
    /// No rows (`supersequence`, `regulator`).
    None,
    /// A set-targets model set's generators, fresh noise for every window.
    Model { engine: Arc<Engine>, choice: GenerationChoice, chunk: usize },
    /// A fixed schedule, replayed from its first row by every set.
    Fixed(FixedRows),
}

/// Refuses a model set that holds additive cover instead of set targets.
pub fn require_set_targets(set: &ModelSet) -> Result<()> {
    if set.manifest.family != Family::SetTargets {
        return Err(Error::invalid(
            ErrorCode::InvalidModelSet,
            format!(
                "{} holds {:?} generators of additive cover, not set targets: the targets defense needs a set-targets \
                 model set",
                set.manifest.name, set.manifest.family
            ),
        ));
    }
    Ok(())
}

/// Each device's set before clustering: the `sets` override (`a,b,c;d,e`), else the model set's
/// sets (with target generators), else the table's `set` column. Devices left without one are
/// clustered into sets of at least k.
pub fn assigned_sets(table: &DeviceTable, spec: Option<&str>, model: Option<&ModelSet>) -> Result<Vec<Option<String>>> {
    Ok(match (spec, model) {
        (Some(spec), _) => parse_sets(spec, table)?,
        (None, Some(set)) => table
            .devices()
            .iter()
            .map(|d| set.manifest.sets.iter().find(|s| s.members.contains(&d.name)).map(|s| s.name.clone()))
            .collect(),
        (None, None) => table.devices().iter().map(|d| d.set.clone()).collect(),
    })
}

/// The model set's device whose generator gives `set`'s targets: every member must be in the model
/// set and share one generator.
pub fn set_generator(model: &ModelSet, set: &AnonymitySet, names: &[String]) -> Result<usize> {
    let indices: Vec<usize> = set.members.iter().map(|&d| model.require_device(&names[d])).collect::<Result<_>>()?;
    if indices.iter().any(|&i| model.files[i] != model.files[indices[0]]) {
        return Err(Error::invalid(
            ErrorCode::InvalidSets,
            format!(
                "set {:?} mixes devices of different target generators in {}; use the model set's sets",
                set.name, model.manifest.name
            ),
        ));
    }
    indices
        .first()
        .copied()
        .ok_or_else(|| Error::invalid(ErrorCode::InvalidSets, format!("set {:?} is empty", set.name)))
}

/// Defends every set of `partition` (see [`defend_home`]): `packets[id]` and `names[id]` per
/// device of the table; `sink(device, packet)` gets each member's defended trace in time order.
pub fn defend(
    settings: &HomeSettings,
    rows: TargetRowsFrom,
    names: &[String],
    packets: &[Vec<Packet>],
    partition: &SetPartition,
    mut sink: impl FnMut(usize, &OutputPacket) -> Result<()>,
) -> Result<HomeSummary> {
    let pad = settings.pad()?;
    let seed = settings.seed;
    let defense = match settings.defense {
        SetDefenseKind::Supersequence => SetDefense::Supersequence,
        SetDefenseKind::Regulator => SetDefense::Regulator(settings.regulator),
        SetDefenseKind::Targets => {
            if matches!(rows, TargetRowsFrom::None) {
                return Err(Error::invalid(ErrorCode::MissingTargets, "the targets defense needs target rows"));
            }
            let rows_settings = settings.target_rows;
            let names = names.to_vec();
            let mut set_index = 0u64;
            let mut index = 0;
            SetDefense::Targets(Box::new(move |set: &AnonymitySet, _sizes: &_, pad: &PadSettings| {
                set_index += 1;
                let set_seed = seed.map(|s| s ^ set_index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let source: Box<dyn RowSource> = match &rows {
                    TargetRowsFrom::Model { engine, choice, chunk } => {
                        let device = set_generator(engine.model_set(), set, &names)?;
                        Box::new(GeneratorRows::new(engine.clone(), device, *choice, *chunk, set_seed)?)
                    }
                    TargetRowsFrom::Fixed(fixed) => Box::new(fixed.clone()),
                    TargetRowsFrom::None => return Err(Error::Internal("no target rows".into()).into()),
                };
                // The fake windows' own stream, apart from the cover sizes' stream of the set.
                index += 1;
                let rng = set_rng(seed.map(|s| s.rotate_left(29) ^ 0x0FA4_E000), index);
                Ok(Box::new(TargetRows::new(source, rows_settings, pad.omega_ns, rng)?) as Box<dyn TargetSource>)
            }))
        }
    };
    Ok(defend_home(names, packets, partition, defense, &pad, seed, |d, p| Ok(sink(d, p)?))?)
}
