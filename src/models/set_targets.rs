//! A set-targets model set as a home's source of target rows: which model sets qualify, which
//! generator gives a set its targets, the sets a model set implies, and where a home job's rows
//! come from ([`TargetRowsFrom`]). Everything else about a set defense (its settings, per-set
//! setup, seeds) is the data plane's [`SetDefenseSpec`], shared with the CLI and the gateway.

use std::sync::Arc;

use crate::{
    error::{Error, ErrorCode, Result},
    models::{Engine, GenerationChoice, GeneratorRows, ModelSet, manifest::Family},
    traffic::{
        DeviceTable, FixedRows, RowSource, parse_sets,
        set_defense::{DEFAULT_OMEGA, RowsFor, SetDefenseKind, SetDefenseSpec, SetKnobs},
        sets::AnonymitySet,
    },
};

/// Windows drawn from target generators per inference call (`ipet simulate --chunk`'s default);
/// the noise stream depends on it, so a job records it.
pub const DEFAULT_CHUNK: usize = 256;

/// A set defense's spec, its slot and target window from `model` (the set-targets model set of
/// `targets` from generators) where there is one: omega `omega`, else the model set's, else
/// [`DEFAULT_OMEGA`]; a fixed schedule is cut into windows of `window_secs`.
pub fn set_defense_spec(
    defense: SetDefenseKind,
    model: Option<&ModelSet>,
    omega: Option<f64>,
    window_secs: f64,
    knobs: SetKnobs,
) -> Result<SetDefenseSpec> {
    let omega = omega.unwrap_or(model.map_or(DEFAULT_OMEGA, |m| m.manifest.settings.omega));
    let slots_per_window = model.map(|m| m.slots() as u32);
    Ok(SetDefenseSpec::new(defense, omega, slots_per_window, window_secs, knobs)?)
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

impl TargetRowsFrom {
    /// Each set's rows, for [`SetDefenseSpec::defend`] (`names[id]`: the device table's names).
    pub fn per_set(self, names: &[String]) -> Option<RowsFor<'static>> {
        let names = names.to_vec();
        match self {
            Self::None => None,
            Self::Model { engine, choice, chunk } => Some(Box::new(move |_, set: &AnonymitySet, seed| {
                let device = set_generator(engine.model_set(), set, &names)?;
                Ok(Box::new(GeneratorRows::new(engine.clone(), device, choice, chunk, seed)?) as Box<dyn RowSource>)
            })),
            Self::Fixed(fixed) => Some(Box::new(move |_, _, _| Ok(Box::new(fixed.clone()) as Box<dyn RowSource>))),
        }
    }
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
