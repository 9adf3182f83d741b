//! A whole home through pad-to-target: every set of a [`SetPartition`] with its own target
//! source, one grid for the home, one summary.

use super::{
    OutputPacket,
    pad::{PadMember, PadSet, pad_set},
    pad_summary::{HomeSummary, MemberSummary, PadCounts, SetSummary},
};
use crate::{
    error::{Error, ErrorCode, Result},
    packet::Packet,
    sets::{AnonymitySet, SetPartition},
    shaper::{LagSettings, PadSettings, SizeDistribution, TargetSource, release_rng, set_rng},
};

/// Builds set number `index`'s target source from the set and its cover sizes (per direction).
pub type MakeTargets<'a> =
    Box<dyn FnMut(usize, &AnonymitySet, &[SizeDistribution; 2]) -> Result<Box<dyn TargetSource + 'a>> + 'a>;

/// How a home's sets are shaped besides their targets.
pub struct HomeShaping<'s> {
    pub pad: &'s PadSettings,
    /// Deployment, lag, countermeasures.
    pub release: &'s LagSettings,
    /// The home's seed (each set's streams derive from it; None: operating-system randomness).
    pub seed: Option<u64>,
    /// A set's cover sizes where given (else from its members' packets).
    pub sizes: &'s dyn Fn(&AnonymitySet) -> Option<[SizeDistribution; 2]>,
}

/// Defends every set of `partition`, each set through its own [`crate::shaper::SetShaper`] with
/// the target source `targets` builds for it; `defense` names the defense in the summary.
/// `packets[id]` are device `id`'s packets in time order, `names[id]` its name; `sink(device,
/// packet)` gets each member's defended trace in time order (members of one set interleaved slot
/// by slot, sets one after another). [`crate::set_defense::SetDefenseSpec::defend`] calls it with
/// the specification's defense.
pub fn defend_home(
    names: &[String],
    packets: &[Vec<Packet>],
    partition: &SetPartition,
    defense: &str,
    mut targets: MakeTargets<'_>,
    shaping: &HomeShaping<'_>,
    mut sink: impl FnMut(usize, &OutputPacket) -> Result<()>,
) -> Result<HomeSummary> {
    let HomeShaping { pad: settings, release, seed, sizes: given_sizes } = *shaping;
    let members = || partition.sets.iter().flat_map(|s| s.members.iter().copied());
    if let Some(d) = members().find(|&d| d >= packets.len() || d >= names.len()) {
        return Err(Error::Internal(format!("device {d} of a set has no packets or name")));
    }
    let origin = members().filter_map(|d| packets[d].first()).map(|p| p.time_ns).min();
    let end = members().filter_map(|d| packets[d].last()).map(|p| p.time_ns).max();
    let (Some(origin), Some(end)) = (origin, end) else {
        return Err(Error::invalid(ErrorCode::NoPackets, "no member of any set has a kept packet"));
    };
    let mut total = PadCounts::default();
    let mut sets = Vec::new();
    let mut member_summaries = Vec::new();
    for (i, set) in partition.sets.iter().enumerate() {
        let sizes = given_sizes(set)
            .unwrap_or_else(|| SizeDistribution::per_direction(set.members.iter().flat_map(|&d| packets[d].iter())));
        let targets = targets(i, set, &sizes)?;
        let pad = PadSet {
            members: set
                .members
                .iter()
                .map(|&d| PadMember { device: d, packets: packets[d].iter().copied() })
                .collect(),
            sizes,
            targets,
        };
        let rngs = [set_rng(seed, i), release_rng(seed, i)];
        let counts = pad_set(pad, origin, end, settings, release, rngs, &mut sink)?;
        let mut set_counts = PadCounts::default();
        for (&d, c) in set.members.iter().zip(&counts.members) {
            set_counts.add(c);
            member_summaries.push(MemberSummary {
                device: names[d].clone(),
                id: d,
                set: set.name.clone(),
                summary: c.summary(),
            });
        }
        total.add(&set_counts);
        sets.push(SetSummary {
            name: set.name.clone(),
            members: set.members.iter().map(|&d| names[d].clone()).collect(),
            target_slots: counts.target_slots,
            target_rows: counts.rows,
            summary: set_counts.summary(),
        });
    }
    member_summaries.sort_by_key(|m| m.id);
    Ok(HomeSummary {
        defense: defense.to_string(),
        start_time_s: Some(origin as f64 / 1e9),
        omega_s: settings.omega_ns as f64 / 1e9,
        latency_budget_s: settings.latency_budget_ns as f64 / 1e9,
        release: release.resolved(),
        slots: ((end - origin) / settings.omega_ns + 1) as u64,
        total: total.summary(),
        sets,
        members: member_summaries,
        excluded: partition.excluded.iter().filter_map(|&d| names.get(d).cloned()).collect(),
    })
}
