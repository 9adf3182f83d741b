//! One set defense, specified once: [`SetDefenseSpec`] is what `ipet simulate --defense`, the
//! service's home simulations (`POST /simulations` with `defense`, stored with the job) and the
//! live gateway (its configuration file) all read, and the per-set setup that turns it into one
//! [`SetShaper`] per anonymity set: target source, cover sizes, and the random streams derived
//! from the home's seed.
//!
//! JSON (every field but `defense` has a default; `release`, `sets` and `size_profiles` are left
//! out when they hold their defaults, so a job stored before they existed reads back unchanged):
//!
//! ```json
//! {
//!   "defense": "supersequence",
//!   "omega": 0.1,
//!   "latency_budget": 0.0,
//!   "regulator": {"levels": 2.0, "surge": 1.0, "threshold": 1.0, "half_life": 0.3, "floor_rate": 0.02},
//!   "target_rows": {"slots_per_window": 40, "fake_window_rate": 0.0167},
//!   "seed": 1,
//!   "k": 3,
//!   "sets": [{"name": "set-1", "members": ["blink-cam-01", "blink-cam-02", "blink-cam-03"]}],
//!   "size_profiles": [{"set": "set-1", "incoming": [[60, 120], [1400, 30]], "outgoing": [[80, 99]]}],
//!   "release": {"deployment": "bridge", "downlink": null, "uplink": {"bins": [{"lo_ms": 2.0, "hi_ms": 2.0, "weight": 1.0}]},
//!               "held_release": true, "random_order": false, "slot_behind": false}
//! }
//! ```
//!
//! Seeds: set number `i` (0-based, in the partition's order) draws its mirrored cover from
//! [`set_rng`]`(seed, i)`, its lag and orders from [`release_rng`]`(seed, i)`, its fake target
//! windows from [`fake_windows_rng`]`(seed, i)` and its target generator's noise from
//! [`generator_seed`]`(seed, i)`. No seed: operating-system randomness.

use serde::{Deserialize, Serialize};

use crate::{
    devices::DeviceTable,
    error::{Error, ErrorCode, Result},
    packet::Packet,
    sets::{AnonymitySet, SetPartition, SilentDevices},
    shaper::{
        LagSettings, PadSettings, Regulator, RegulatorSettings, SetShaper, SetShaperParts, SizeDistribution,
        TargetSource, release_rng, set_rng, supersequence,
    },
    simulate::{
        HomeShaping, HomeSummary, MakeTargets, OutputPacket, RowSource, TargetRows, TargetRowsSettings, defend_home,
    },
    windows::WindowSettings,
};

/// Which set defense pads the home's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SetDefenseKind {
    /// Every member padded to the set's per-slot maximum.
    Supersequence,
    /// Every member padded to the set regulariser's targets.
    Regulator,
    /// Every member padded to target rows: a set-targets model set's generators or a fixed schedule.
    Targets,
}

impl SetDefenseKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Supersequence => "supersequence",
            Self::Regulator => "regulator",
            Self::Targets => "targets",
        }
    }
}

impl SetDefenseKind {
    /// The one rule: `targets` needs target rows, the others take none; `sources` names the
    /// caller's ways to give them (flags, form fields).
    pub fn check_rows(self, has_rows: bool, sources: &str) -> Result<()> {
        match (self == Self::Targets, has_rows) {
            (true, false) => Err(Error::invalid(
                ErrorCode::MissingTargets,
                format!("the targets defense needs target rows: give {sources}"),
            )),
            (false, true) => Err(Error::invalid(
                ErrorCode::InvalidSimulationSettings,
                format!("{sources} give target rows: use them with the targets defense"),
            )),
            _ => Ok(()),
        }
    }
}

/// Slot length when no model set gives one (seconds).
pub const DEFAULT_OMEGA: f64 = 0.1;
/// Window length that cuts a fixed target schedule into windows (seconds), `ipet windows`' default.
pub const DEFAULT_WINDOW_SECS: f64 = 4.0;

/// One anonymity set by name: its members' device names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetSpec {
    pub name: String,
    pub members: Vec<String>,
}

/// A set's cover sizes per direction: `[size, count]` pairs of its real packets (a gateway's
/// profile from past captures; the simulator takes them from the trace when none is given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SizeProfile {
    /// The set's name.
    pub set: String,
    /// `[size, count]` pairs of incoming packets (as arrays of two integers: a tuple's
    /// `prefixItems` schema is more than client generators read).
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<u64>>))]
    pub incoming: Vec<(u32, u64)>,
    /// `[size, count]` pairs of outgoing packets.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<u64>>))]
    pub outgoing: Vec<(u32, u64)>,
}

impl SizeProfile {
    /// The profile of `set` from its members' packets.
    pub fn of<'a>(set: &str, packets: impl IntoIterator<Item = &'a Packet>) -> Self {
        let [i, o] = SizeDistribution::per_direction(packets);
        Self { set: set.to_string(), incoming: i.counts(), outgoing: o.counts() }
    }

    /// As the distributions a shaper draws cover sizes from (a direction without sizes borrows
    /// the other's, as for a trace).
    pub fn distributions(&self) -> [SizeDistribution; 2] {
        let (mut i, mut o) =
            (SizeDistribution::from_counts(&self.incoming), SizeDistribution::from_counts(&self.outgoing));
        if i.is_empty() {
            i = o.clone();
        } else if o.is_empty() {
            o = i.clone();
        }
        [i, o]
    }
}

fn default_omega() -> f64 {
    DEFAULT_OMEGA
}

fn default_target_rows() -> TargetRowsSettings {
    TargetRowsSettings::default()
}

/// A set defense: which, its knobs, its sets and seeds, and how its decisions go on the air (see
/// the module doc for the JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetDefenseSpec {
    pub defense: SetDefenseKind,
    /// Slot length of the home grid, seconds (a set-targets model set's omega, else 0.1).
    #[serde(default = "default_omega")]
    pub omega: f64,
    /// Seconds a real packet may wait for room in its targets before it is sent anyway (leaked).
    #[serde(default)]
    pub latency_budget: f64,
    /// Supersequence only: align the set's bursts within this many seconds (everything waits
    /// until the window's last slot, then goes padded to the supersequence of all of it;
    /// [`crate::shaper::AlignedSupersequence`]). 0: the plain supersequence. At most the latency
    /// budget, which must cover the wait.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub align: f64,
    /// The regulator's knobs (used by `regulator`).
    #[serde(default)]
    pub regulator: RegulatorSettings,
    /// Target windows and fake windows (used by `targets`).
    #[serde(default = "default_target_rows")]
    pub target_rows: TargetRowsSettings,
    /// Seed of cover sizes, lag draws, fake windows and generator noise; null: operating-system
    /// randomness.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Minimum size of sets formed by clustering (devices without a set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// The sets, by device name (a gateway's configuration; the simulator forms them from the
    /// device table, `k` and its overrides when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sets: Option<Vec<SetSpec>>,
    /// Cover sizes per set and direction; a set without one takes its members' real sizes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub size_profiles: Vec<SizeProfile>,
    /// Deployment, reaction lag and countermeasures; default: `ideal` (no lag).
    #[serde(default, skip_serializing_if = "LagSettings::is_default")]
    pub release: LagSettings,
}

/// The knobs of a set defense as they are asked for (CLI flags, form fields).
#[derive(Debug, Clone)]
pub struct SetKnobs {
    pub latency_budget: f64,
    pub regulator: RegulatorSettings,
    pub fake_window_rate: f64,
    pub seed: Option<u64>,
    pub release: LagSettings,
}

impl SetDefenseSpec {
    /// A spec with every setting checked. `omega`: the slot (a set-targets model set's, else
    /// [`DEFAULT_OMEGA`]); `slots_per_window`: the target generator's window in slots, or None to
    /// cut a fixed schedule into windows of `window_secs`.
    pub fn new(
        defense: SetDefenseKind,
        omega: f64,
        slots_per_window: Option<u32>,
        window_secs: f64,
        knobs: SetKnobs,
    ) -> Result<Self> {
        let SetKnobs { latency_budget, regulator, fake_window_rate, seed, release } = knobs;
        let slots_per_window = match slots_per_window {
            Some(s) => s,
            None => WindowSettings::new(window_secs, omega)?.slots() as u32,
        };
        let spec = Self {
            defense,
            omega,
            latency_budget,
            align: 0.0,
            regulator,
            target_rows: TargetRowsSettings { slots_per_window, fake_window_rate },
            seed,
            k: None,
            sets: None,
            size_profiles: Vec::new(),
            release,
        };
        spec.check()?;
        Ok(spec)
    }

    /// Checks every setting the defense uses.
    pub fn check(&self) -> Result<()> {
        PadSettings::new(self.omega, self.latency_budget)?;
        self.align_slots()?;
        self.target_rows.check()?;
        if self.defense == SetDefenseKind::Regulator {
            self.regulator.check()?;
        }
        self.release.check()?;
        if self.k == Some(0) {
            return Err(Error::invalid(ErrorCode::InvalidSetSize, "k must be at least 1"));
        }
        Ok(())
    }

    /// The supersequence's alignment window in slots (1: none): `floor(align / omega) + 1`, so
    /// that no packet waits longer than `align`.
    pub fn align_slots(&self) -> Result<u64> {
        let bad = |m: String| Error::invalid(ErrorCode::InvalidSimulationSettings, m);
        if !(self.align.is_finite() && self.align >= 0.0) {
            return Err(bad(format!("align {} s must be zero or positive", self.align)));
        }
        if self.align == 0.0 {
            return Ok(1);
        }
        if self.defense != SetDefenseKind::Supersequence {
            return Err(bad(format!("align applies to the supersequence only, not to {}", self.defense.name())));
        }
        if self.align > self.latency_budget {
            return Err(bad(format!(
                "align {} s needs a latency budget of at least as much (latency_budget is {} s): aligned traffic waits",
                self.align, self.latency_budget
            )));
        }
        // Within a nanosecond of a whole number of slots counts as that number.
        Ok((self.align / self.omega + 1e-9).floor() as u64 + 1)
    }

    pub fn pad(&self) -> Result<PadSettings> {
        PadSettings::new(self.omega, self.latency_budget)
    }

    /// The one rule: `targets` needs target rows, the others take none.
    pub fn check_rows(&self, has_rows: bool) -> Result<()> {
        self.defense.check_rows(has_rows, "a generation of a set-targets model set, or a schedule")
    }

    /// What becomes of a device its sets name that has no packet in the captures: where the spec
    /// names sets it is a gateway's configuration, and the gateway covers for every member it is
    /// configured with ([`SilentDevices::Covered`]); otherwise the sets come from elsewhere (the
    /// table's column, an override, clustering) and such a device is left out.
    pub fn silent_devices(&self) -> SilentDevices {
        if self.sets.is_some() { SilentDevices::Covered } else { SilentDevices::Excluded }
    }

    /// Each device's set as the spec names it (None where `sets` is absent; devices it does not
    /// name are left to clustering). A member missing from `table` or named twice is refused.
    pub fn assigned_sets(&self, table: &DeviceTable) -> Result<Option<Vec<Option<String>>>> {
        let Some(sets) = &self.sets else { return Ok(None) };
        let bad = |m: String| Error::invalid(ErrorCode::InvalidSets, m);
        let mut assigned: Vec<Option<String>> = vec![None; table.len()];
        for set in sets {
            for name in &set.members {
                let d = table
                    .by_name(name)
                    .ok_or_else(|| bad(format!("set {:?}: {name:?} is not in the device table", set.name)))?;
                if let Some(prev) = &assigned[d.id] {
                    return Err(bad(format!("{name:?} is named in two sets ({prev} and {})", set.name)));
                }
                assigned[d.id] = Some(set.name.clone());
            }
        }
        Ok(Some(assigned))
    }

    /// Writes the home's plan into the spec: its sets by name and each set's size profile (where
    /// it has none yet) from its members' packets, so that a gateway configured with it draws
    /// cover sizes as the simulator did.
    pub fn record_plan(&mut self, partition: &SetPartition, names: &[String], packets: &[Vec<Packet>]) {
        self.sets = Some(
            partition
                .sets
                .iter()
                .map(|s| SetSpec {
                    name: s.name.clone(),
                    members: s.members.iter().map(|&d| names[d].clone()).collect(),
                })
                .collect(),
        );
        for s in &partition.sets {
            if !self.size_profiles.iter().any(|p| p.set == s.name) {
                self.size_profiles.push(SizeProfile::of(&s.name, s.members.iter().flat_map(|&d| packets[d].iter())));
            }
        }
    }

    /// Cover sizes of set `name`: its profile, else from its members' packets.
    pub fn sizes<'a>(&self, name: &str, packets: impl IntoIterator<Item = &'a Packet>) -> [SizeDistribution; 2] {
        match self.size_profiles.iter().find(|p| p.set == name) {
            Some(p) => p.distributions(),
            None => SizeDistribution::per_direction(packets),
        }
    }

    /// The target source of set number `index`; `rows`: its target rows (`targets` only).
    pub fn targets<'a>(
        &self,
        index: usize,
        sizes: &[SizeDistribution; 2],
        rows: Option<Box<dyn RowSource + 'a>>,
    ) -> Result<Box<dyn TargetSource + 'a>> {
        let pad = self.pad()?;
        Ok(match (self.defense, rows) {
            (SetDefenseKind::Supersequence, _) => supersequence(self.align_slots()?),
            (SetDefenseKind::Regulator, _) => Box::new(Regulator::new(self.regulator, pad.omega_ns, sizes)?),
            (SetDefenseKind::Targets, Some(rows)) => {
                Box::new(TargetRows::new(rows, self.target_rows, pad.omega_ns, fake_windows_rng(self.seed, index))?)
            }
            (SetDefenseKind::Targets, None) => {
                self.check_rows(false)?;
                return Err(Error::Internal("no target rows".into()));
            }
        })
    }

    /// The shaper of set number `index` with `members` members, slot 0 at `origin_ns` (the
    /// gateway's entry point; the simulator builds the same through [`SetDefenseSpec::defend`]).
    pub fn shaper<'a>(
        &self,
        index: usize,
        members: usize,
        sizes: [SizeDistribution; 2],
        rows: Option<Box<dyn RowSource + 'a>>,
        origin_ns: i64,
    ) -> Result<SetShaper<'a>> {
        let targets = self.targets(index, &sizes, rows)?;
        let parts = SetShaperParts {
            members,
            sizes,
            targets,
            cover_rng: set_rng(self.seed, index),
            release_rng: release_rng(self.seed, index),
        };
        SetShaper::new(parts, origin_ns, &self.pad()?, &self.release)
    }

    /// Defends every set of `partition` in the simulator: `packets[id]` and `names[id]` per
    /// device; `rows(index, set, generator_seed)` gives set number `index` its target rows
    /// (`targets` only); `sink(device, packet)` gets each member's defended trace in time order.
    pub fn defend<'r>(
        &self,
        names: &[String],
        packets: &[Vec<Packet>],
        partition: &SetPartition,
        rows: Option<RowsFor<'r>>,
        mut sink: impl FnMut(usize, &OutputPacket) -> Result<()>,
    ) -> Result<HomeSummary> {
        self.check()?;
        self.check_rows(rows.is_some())?;
        let pad = self.pad()?;
        let seed = self.seed;
        let mut rows = rows;
        let targets: MakeTargets<'_> =
            Box::new(move |index: usize, set: &AnonymitySet, sizes: &[SizeDistribution; 2]| {
                let source = match rows.as_mut() {
                    Some(rows) => Some(rows(index, set, generator_seed(seed, index))?),
                    None => None,
                };
                self.targets(index, sizes, source)
            });
        let profiles = &self.size_profiles;
        if let Some(p) = profiles.iter().find(|p| !partition.sets.iter().any(|s| s.name == p.set)) {
            return Err(Error::invalid(ErrorCode::InvalidSets, format!("a size profile names no set: {:?}", p.set)));
        }
        let sizes = |set: &AnonymitySet| profiles.iter().find(|p| p.set == set.name).map(SizeProfile::distributions);
        let shaping = HomeShaping { pad: &pad, release: &self.release, seed, sizes: &sizes };
        defend_home(names, packets, partition, self.defense.name(), targets, &shaping, |d, p| sink(d, p))
    }
}

/// Target rows for set number `index` of a home, given its generator seed.
pub type RowsFor<'r> = Box<dyn FnMut(usize, &AnonymitySet, Option<u64>) -> Result<Box<dyn RowSource + 'r>> + 'r>;

/// The fake target windows' stream of set number `index`, apart from its cover's.
pub fn fake_windows_rng(seed: Option<u64>, index: usize) -> rand_chacha::ChaCha20Rng {
    set_rng(seed.map(|s| s.rotate_left(29) ^ 0x0FA4_E000), index + 1)
}

/// The noise seed of set number `index`'s target generator.
pub fn generator_seed(seed: Option<u64>, index: usize) -> Option<u64> {
    seed.map(|s| s ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_stored_before_lag_existed_reads_back_and_writes_the_same() {
        let old = r#"{"defense":"regulator","omega":0.1,"latency_budget":0.5,"regulator":{"levels":2.0,"surge":1.0,"threshold":1.0,"half_life":0.3,"floor_rate":0.02},"target_rows":{"slots_per_window":40,"fake_window_rate":0.1},"seed":4}"#;
        let spec: SetDefenseSpec = serde_json::from_str(old).expect("old spec");
        assert_eq!(spec.release, LagSettings::default());
        assert_eq!(serde_json::to_string(&spec).expect("json"), old);
        let minimal: SetDefenseSpec = serde_json::from_str(r#"{"defense":"supersequence"}"#).expect("minimal");
        assert_eq!((minimal.omega, minimal.latency_budget, minimal.seed), (0.1, 0.0, None));
        assert!(minimal.check().is_ok());
    }

    #[test]
    fn targets_need_rows_and_the_others_take_none() {
        let knobs = SetKnobs {
            latency_budget: 0.0,
            regulator: RegulatorSettings::default(),
            fake_window_rate: 0.0,
            seed: Some(1),
            release: LagSettings::default(),
        };
        let t = SetDefenseSpec::new(SetDefenseKind::Targets, 0.1, Some(40), 4.0, knobs.clone()).expect("spec");
        assert_eq!(t.check_rows(false).expect_err("no rows").code(), "missing_targets");
        assert!(t.check_rows(true).is_ok());
        let s = SetDefenseSpec::new(SetDefenseKind::Supersequence, 0.1, None, 4.0, knobs).expect("spec");
        assert_eq!(s.target_rows.slots_per_window, 40);
        assert!(s.check_rows(true).is_err());
        assert!(s.shaper(0, 3, [SizeDistribution::default(), SizeDistribution::default()], None, 0).is_ok());
        assert!(t.shaper(0, 3, [SizeDistribution::default(), SizeDistribution::default()], None, 0).is_err());
    }

    #[test]
    fn align_is_the_supersequences_within_the_latency_budget() {
        let knobs = |latency_budget| SetKnobs {
            latency_budget,
            regulator: RegulatorSettings::default(),
            fake_window_rate: 0.0,
            seed: Some(1),
            release: LagSettings::default(),
        };
        let mut s = SetDefenseSpec::new(SetDefenseKind::Supersequence, 0.1, None, 4.0, knobs(1.0)).expect("spec");
        assert_eq!(s.align_slots().expect("plain"), 1);
        assert!(!serde_json::to_string(&s).expect("json").contains("align"), "0 is left out of stored JSON");
        s.align = 1.0;
        assert_eq!(s.align_slots().expect("1 s"), 11, "a packet may wait 10 slots, up to 1 s");
        s.align = 0.25;
        assert_eq!(s.align_slots().expect("0.25 s"), 3);
        s.align = 2.0;
        let err = s.check().expect_err("past the budget");
        assert_eq!(err.code(), "invalid_simulation_settings");
        assert!(err.to_string().contains("latency budget"), "{err}");
        s.align = f64::NAN;
        assert!(s.check().is_err());
        let mut r = SetDefenseSpec::new(SetDefenseKind::Regulator, 0.1, None, 4.0, knobs(1.0)).expect("spec");
        r.align = 0.5;
        assert!(r.check().expect_err("regulator").to_string().contains("supersequence only"));
    }

    /// A gateway drives the spec's shaper slot by slot, every slot, with no look-ahead; the
    /// simulator skips quiet slots and knows the trace: the same frames at the same times.
    #[test]
    fn a_gateway_driving_the_spec_gets_the_simulators_output() {
        use crate::{Direction, Transport, sets::AnonymitySet, shaper::EmissionKind};
        let mut x: u64 = 5;
        let mut packets = vec![Vec::new(); 3];
        for (m, trace) in packets.iter_mut().enumerate() {
            let mut t = 1_000_000_000 + m as i64 * 3_000_000;
            for _ in 0..400 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                t += ((x >> 33) % 700) as i64 * 1_000_000;
                let direction = if x & 8 == 0 { Direction::In } else { Direction::Out };
                trace.push(Packet {
                    time_ns: t,
                    size: ((x >> 40) % 1400) as u32 + 40,
                    direction,
                    transport: Transport::Tcp,
                });
            }
        }
        let names: Vec<String> = (0..3).map(|i| format!("d{i}")).collect();
        let partition =
            SetPartition { sets: vec![AnonymitySet { name: "s".into(), members: vec![0, 1, 2] }], excluded: vec![] };
        let knobs = SetKnobs {
            latency_budget: 0.0,
            regulator: RegulatorSettings::default(),
            fake_window_rate: 0.0,
            seed: Some(9),
            release: crate::shaper::ReleaseKnobs {
                lag: Some("software-shaper".into()),
                held_release: true,
                ..Default::default()
            }
            .settings()
            .expect("release"),
        };
        let spec = SetDefenseSpec::new(SetDefenseKind::Supersequence, 0.1, None, 4.0, knobs).expect("spec");
        let mut simulated: Vec<Vec<(i64, bool, u64)>> = vec![Vec::new(); 3];
        spec.defend(&names, &packets, &partition, None, |d, p| {
            simulated[d].push((p.time_ns, p.dummy, p.size as u64));
            Ok(())
        })
        .expect("simulate");
        // The gateway: a profile of the same packets, one shaper, every slot closed in turn.
        let origin = packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min().expect("origin");
        let profile = SizeProfile::of("s", packets.iter().flatten());
        let mut shaper = spec.shaper(0, 3, profile.distributions(), None, origin).expect("shaper");
        let mut all: Vec<(usize, Packet)> =
            packets.iter().enumerate().flat_map(|(m, p)| p.iter().map(move |&q| (m, q))).collect();
        all.sort_by_key(|&(m, p)| (p.time_ns, m));
        let mut live: Vec<Vec<(i64, bool, u64)>> = vec![Vec::new(); 3];
        let mut at = 0;
        while at < all.len() || !shaper.is_idle() {
            while let Some(&(m, p)) = all.get(at).filter(|(_, p)| p.time_ns < shaper.slot_end_ns()) {
                shaper.arrive(m, p.direction, p.size, p.time_ns).expect("arrive");
                at += 1;
            }
            for e in shaper.end_slot().expect("slot").emissions() {
                let cover = matches!(e.kind, EmissionKind::Cover { .. });
                live[e.member].push((e.on_air_ns(), cover, u64::from(e.size)));
            }
        }
        for (m, l) in live.iter_mut().enumerate() {
            l.sort_by_key(|&(t, c, _)| (t, c));
            assert_eq!(*l, simulated[m], "member {m}");
        }
    }

    #[test]
    fn size_profiles_round_trip() {
        let packets: Vec<Packet> =
            [(60, crate::Direction::In), (60, crate::Direction::In), (1400, crate::Direction::Out)]
                .iter()
                .map(|&(size, direction)| Packet { time_ns: 0, size, direction, transport: crate::Transport::Tcp })
                .collect();
        let p = SizeProfile::of("s", &packets);
        assert_eq!(p.incoming, vec![(60, 2)]);
        assert_eq!(p.distributions(), SizeDistribution::per_direction(&packets));
    }
}
