//! Reaction lag and what each deployment can do about it.
//!
//! A gateway sees a frame only when it arrives, so a cover copy of it goes on the air a little
//! later: the *reaction lag*. maybenot's simulator models the same gap (between a machine's
//! decision and the packet on the wire) with "integration delays", each a binned distribution
//! in milliseconds (`maybenot-simulator`, `integration.rs`: bins `(lo, hi)` with a probability
//! each; a draw picks a bin by its probability, then a value uniformly inside it). [`Lag`] has
//! that shape, one per direction ([`LagSettings`]).
//!
//! Presets ([`Lag::preset`]):
//! - `software-shaper` (the default where a deployment has lag): a userspace shaper under the
//!   default scheduler, measured with a Python probe on a 2-core Debian VM like ours
//!   (`../shared/docs/gateway-shaper.md`, "Reaction lag, measured": cover after real, p50 82 us,
//!   p99 3.4 ms, max 9.6 ms). The bins sit at those three points; how the mass between the p50 and
//!   the p99 splits (40 % under 0.2 ms) is our assumption, not a measurement.
//! - `software-shaper-fifo`: the same shaper under SCHED_FIFO (p50 71 us, p99 0.61 ms, max 12.4 ms).
//! - `zero`; and any fixed lag written as a duration (`2ms`, `0.5ms`, `150us`), for a sweep 0-20 ms.
//!
//! [`Deployment`] says who transmits what on the observed link (docs/threat-model.md):
//! - `ideal`: no lag at all (the simulator before lag was modelled; the default, so that outputs
//!   stay as they were);
//! - `bridge`: the gateway transmits both directions, so it can hold originals and emit cover in
//!   both;
//! - `ap`: an access point alone: it transmits (and can hold) downlink frames only; the device's
//!   uplink frames are on the air when the device sends them, so uplink originals are never
//!   delayed (no waiting for room: an uplink latency budget of 0) and uplink copies trail them.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, ErrorCode, Result},
    packet::Direction,
};

/// One bin of a [`Lag`]: a draw in it is uniform in `[lo_ms, hi_ms]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LagBin {
    pub lo_ms: f64,
    pub hi_ms: f64,
    /// Probability of the bin (the bins' weights are normalised to sum to 1).
    pub weight: f64,
}

/// A reaction-lag distribution: bins in milliseconds with weights (maybenot's integration-delay
/// shape). No bins: no lag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lag {
    pub bins: Vec<LagBin>,
}

impl Lag {
    /// No lag.
    pub fn zero() -> Self {
        Self::default()
    }

    /// Always `ms` milliseconds.
    pub fn fixed_ms(ms: f64) -> Self {
        Self { bins: vec![LagBin { lo_ms: ms, hi_ms: ms, weight: 1.0 }] }
    }

    /// The names [`Lag::parse`] knows besides durations.
    pub const PRESETS: [&'static str; 3] = ["zero", "software-shaper", "software-shaper-fifo"];

    /// A named preset (see the module doc), or None.
    pub fn preset(name: &str) -> Option<Self> {
        let bins = |b: &[(f64, f64, f64)]| Self {
            bins: b.iter().map(|&(lo_ms, hi_ms, weight)| LagBin { lo_ms, hi_ms, weight }).collect(),
        };
        match name {
            "zero" => Some(Self::zero()),
            // p50 0.082 ms, p99 3.4 ms, max 9.6 ms (kernel path of a real frame ~0.05 ms).
            "software-shaper" => {
                Some(bins(&[(0.05, 0.082, 0.5), (0.082, 0.2, 0.4), (0.2, 3.4, 0.09), (3.4, 9.6, 0.01)]))
            }
            // p50 0.071 ms, p99 0.61 ms, max 12.4 ms.
            "software-shaper-fifo" => {
                Some(bins(&[(0.05, 0.071, 0.5), (0.071, 0.2, 0.4), (0.2, 0.61, 0.09), (0.61, 12.4, 0.01)]))
            }
            _ => None,
        }
    }

    /// The preset used where a deployment has lag and none is given.
    pub fn default_preset() -> Self {
        Self::preset("software-shaper").unwrap_or_default()
    }

    /// A preset name, a fixed lag (`2ms`, `0.5ms`, `150us`, `0`: milliseconds without a unit), or
    /// a distribution as JSON (`{"bins": [{"lo_ms": 0.05, "hi_ms": 0.1, "weight": 0.9}, ...]}`, e.g.
    /// a gateway's measured lag).
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(l) = Self::preset(s) {
            return Ok(l);
        }
        if s.starts_with('{') {
            let lag: Self = serde_json::from_str(s)
                .map_err(|e| Error::invalid(ErrorCode::InvalidSimulationSettings, format!("lag as JSON: {e}")))?;
            lag.check()?;
            return Ok(lag);
        }
        let (num, scale) = if let Some(n) = s.strip_suffix("us") {
            (n, 1e-3)
        } else if let Some(n) = s.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = s.strip_suffix('s') {
            (n, 1e3)
        } else {
            (s, 1.0)
        };
        let ms = num.trim().parse::<f64>().map(|v| v * scale).map_err(|_| {
            Error::invalid(
                ErrorCode::InvalidSimulationSettings,
                format!("lag {s:?}: give a preset ({}) or a duration such as 2ms", Self::PRESETS.join(", ")),
            )
        })?;
        let lag = Self::fixed_ms(ms);
        lag.check()?;
        Ok(lag)
    }

    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(ErrorCode::InvalidSimulationSettings, m));
        for b in &self.bins {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !(ok(b.lo_ms) && ok(b.hi_ms) && b.lo_ms <= b.hi_ms && ok(b.weight)) {
                return bad(format!("lag bin {b:?}: need 0 <= lo_ms <= hi_ms and a weight >= 0, all finite"));
            }
            if b.hi_ms > 10_000.0 {
                return bad(format!("lag bin {b:?}: over 10 s"));
            }
        }
        if !self.bins.is_empty() && self.bins.iter().map(|b| b.weight).sum::<f64>() <= 0.0 {
            return bad("lag bins: the weights sum to 0".into());
        }
        Ok(())
    }

    pub fn is_zero(&self) -> bool {
        self.bins.iter().all(|b| b.hi_ms == 0.0 || b.weight == 0.0)
    }

    /// One draw, in nanoseconds (0 without bins).
    pub fn sample_ns(&self, rng: &mut impl Rng) -> i64 {
        if self.bins.is_empty() {
            return 0;
        }
        let total: f64 = self.bins.iter().map(|b| b.weight).sum();
        let mut u = rng.random::<f64>() * total;
        let mut bin = self.bins[self.bins.len() - 1];
        for b in &self.bins {
            if u < b.weight {
                bin = *b;
                break;
            }
            u -= b.weight;
        }
        let ms = if bin.hi_ms > bin.lo_ms { rng.random_range(bin.lo_ms..=bin.hi_ms) } else { bin.lo_ms };
        (ms * 1e6).round() as i64
    }
}

/// Who transmits what on the observed link (see the module doc).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Deployment {
    /// No reaction lag; every decision lands exactly when it is taken (today's simulator).
    #[default]
    Ideal,
    /// A shaping bridge: holds originals and emits cover in both directions.
    Bridge,
    /// An access point alone: holds downlink originals only; uplink originals go when the device
    /// sends them, uplink copies trail by the lag.
    Ap,
}

impl Deployment {
    /// Whether the gateway transmits (and so can hold) the originals of direction `d`.
    pub fn holds(self, d: Direction) -> bool {
        !(self == Self::Ap && d == Direction::Out)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Ideal => "ideal",
            Self::Bridge => "bridge",
            Self::Ap => "ap",
        }
    }
}

/// How a set's decisions go on the air: the deployment, its lag per direction, and the
/// countermeasures against an observer who pairs frames across the set's members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct LagSettings {
    pub deployment: Deployment,
    /// Reaction lag of copies of downlink (incoming) frames; null: the default preset
    /// (`software-shaper`) outside `ideal`.
    pub downlink: Option<Lag>,
    /// Reaction lag of copies of uplink (outgoing) frames; null: as for downlink.
    pub uplink: Option<Lag>,
    /// Held release: the gateway holds every original until its slot is decided and releases it
    /// from the same timer as its copies, after a draw from its direction's lag, so that no
    /// member's frame is reliably the first of its copies (where the deployment holds that
    /// direction). Mirror-all, one slot behind, random order and a latency budget hold the
    /// originals too ([`LagSettings::holds_until_decided`]), with the same reaction.
    pub held_release: bool,
    /// Random order: each original and its copies go out one after another (each a lag draw
    /// after the one before) in a random order of the members, the original among them where the
    /// deployment holds its direction.
    pub random_order: bool,
    /// Run one slot behind: every decision of a held direction is carried out one slot later
    /// (at most one slot of added latency; the slot's maximum is then exact on a live gateway).
    pub slot_behind: bool,
    /// Mirror every member, not only the slot's lead: per slot and direction every member emits
    /// the same frames, the members' real frames merged size by size (the multiset
    /// supersequence: of each size, as many as the member with the most). Where the deployment
    /// holds the direction (and in `ideal`), each merged frame goes at the latest arrival among
    /// the members it stands for, real frames held to it, so no member's frame is its own; where
    /// it cannot (`ap` uplink), every real frame is copied to every other member at its time.
    /// Without it a member that is not the lead sends real frames no other member copies, which
    /// an observer of the whole home attributes even at zero lag.
    #[serde(skip_serializing_if = "is_false")]
    pub mirror_all: bool,
}

fn is_false(v: &bool) -> bool {
    !*v
}

impl LagSettings {
    /// Checks the settings: `ideal` takes no lag and no countermeasure but `slot_behind`.
    pub fn check(&self) -> Result<()> {
        for l in [&self.downlink, &self.uplink].into_iter().flatten() {
            l.check()?;
        }
        if self.deployment == Deployment::Ideal
            && (self.downlink.as_ref().is_some_and(|l| !l.is_zero())
                || self.uplink.as_ref().is_some_and(|l| !l.is_zero())
                || self.held_release
                || self.random_order)
        {
            return Err(Error::invalid(
                ErrorCode::InvalidSimulationSettings,
                "deployment ideal has no reaction lag: held release, random order and a lag need deployment bridge or ap",
            ));
        }
        Ok(())
    }

    /// The lag of copies of direction `d` (none in `ideal`).
    pub fn lag(&self, d: Direction) -> Lag {
        if self.deployment == Deployment::Ideal {
            return Lag::zero();
        }
        let l = match d {
            Direction::In => &self.downlink,
            Direction::Out => &self.uplink,
        };
        l.clone().unwrap_or_else(Lag::default_preset)
    }

    /// The default: `ideal`, nothing else.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// The same with each direction's lag spelled out (the default preset where none is given;
    /// none in `ideal`).
    pub fn resolved(&self) -> Self {
        if self.deployment == Deployment::Ideal {
            return self.clone();
        }
        Self { downlink: Some(self.lag(Direction::In)), uplink: Some(self.lag(Direction::Out)), ..self.clone() }
    }

    /// Today's behaviour: no lag, nothing held.
    pub fn is_ideal(&self) -> bool {
        self.deployment == Deployment::Ideal && !self.slot_behind
    }

    /// Whether a live gateway holds the real frames of direction `d` until the step decides
    /// them: where its deployment transmits that direction and something can delay them (one
    /// slot behind, held release, random order, mirror-all or a latency budget). Otherwise it
    /// forwards them on arrival, which is what the step decides for them anyway.
    pub fn holds_until_decided(&self, d: Direction, latency_budget_ns: i64) -> bool {
        self.deployment.holds(d)
            && (self.slot_behind || self.held_release || self.random_order || self.mirror_all || latency_budget_ns > 0)
    }

    /// Whether frames of direction `d` can be held to align them (every deployment but `ap`'s
    /// uplink; `ideal` idealises a gateway that holds both).
    pub fn aligns(&self, d: Direction) -> bool {
        self.deployment == Deployment::Ideal || self.deployment.holds(d)
    }
}

/// The release settings as asked for by name (`ipet simulate` flags, the service's form fields):
/// a deployment, a lag for both directions and per direction (presets or durations, see
/// [`Lag::parse`]), the countermeasures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseKnobs {
    pub deployment: Option<Deployment>,
    pub lag: Option<String>,
    pub lag_downlink: Option<String>,
    pub lag_uplink: Option<String>,
    pub held_release: bool,
    pub random_order: bool,
    pub slot_behind: bool,
    pub mirror_all: bool,
}

impl ReleaseKnobs {
    /// The settings, checked; a lag without a deployment means `bridge`.
    pub fn settings(&self) -> Result<LagSettings> {
        let parse = |v: &Option<String>| v.as_deref().map(Lag::parse).transpose();
        let lag = parse(&self.lag)?;
        let downlink = parse(&self.lag_downlink)?.or_else(|| lag.clone());
        let uplink = parse(&self.lag_uplink)?.or(lag);
        let any_lag = downlink.is_some() || uplink.is_some() || self.held_release || self.random_order;
        let deployment = self.deployment.unwrap_or(if any_lag { Deployment::Bridge } else { Deployment::Ideal });
        let s = LagSettings {
            deployment,
            downlink,
            uplink,
            held_release: self.held_release,
            random_order: self.random_order,
            slot_behind: self.slot_behind,
            mirror_all: self.mirror_all,
        };
        s.check()?;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;

    fn quantile(v: &mut [i64], q: f64) -> i64 {
        v.sort_unstable();
        v[((v.len() - 1) as f64 * q).round() as usize]
    }

    #[test]
    fn draws_follow_the_bins() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let lag = Lag::preset("software-shaper").expect("preset");
        let mut d: Vec<i64> = (0..200_000).map(|_| lag.sample_ns(&mut rng)).collect();
        assert!(d.iter().all(|&x| (50_000..=9_600_000).contains(&x)));
        let p50 = quantile(&mut d, 0.5);
        let p99 = quantile(&mut d, 0.99);
        assert!((80_000..=84_000).contains(&p50), "p50 {p50}");
        // The p99 sits on the border of the last bin: the draws put it within 0.2 ms of 3.4 ms.
        assert!((3_200_000..=3_600_000).contains(&p99), "p99 {p99}");
        // Share in each bin within 1 % of its weight.
        for b in &lag.bins {
            let lo = (b.lo_ms * 1e6) as i64;
            let hi = (b.hi_ms * 1e6) as i64;
            let share = d.iter().filter(|&&x| x >= lo && x < hi).count() as f64 / d.len() as f64;
            assert!((share - b.weight).abs() < 0.01, "{b:?}: {share}");
        }
        assert_eq!(Lag::fixed_ms(2.0).sample_ns(&mut rng), 2_000_000);
        assert_eq!(Lag::zero().sample_ns(&mut rng), 0);
    }

    #[test]
    fn lags_parse_from_presets_and_durations() {
        assert_eq!(Lag::parse("2ms").expect("2ms"), Lag::fixed_ms(2.0));
        assert_eq!(Lag::parse("150us").expect("us"), Lag::fixed_ms(0.15));
        assert_eq!(Lag::parse("0").expect("0"), Lag::fixed_ms(0.0));
        assert!(Lag::parse("0").expect("0").is_zero());
        assert_eq!(Lag::parse("software-shaper").expect("preset"), Lag::default_preset());
        assert!(Lag::parse("fast").is_err());
        let measured =
            r#"{"bins": [{"lo_ms": 0.05, "hi_ms": 0.1, "weight": 0.9}, {"lo_ms": 0.1, "hi_ms": 2, "weight": 0.1}]}"#;
        assert_eq!(Lag::parse(measured).expect("json").bins.len(), 2);
        assert!(Lag::parse(r#"{"bins": [{"lo_ms": 2, "hi_ms": 1, "weight": 1}]}"#).is_err());
        assert!(Lag::parse("-1ms").is_err());
        let ideal_with_lag = LagSettings { downlink: Some(Lag::fixed_ms(1.0)), ..LagSettings::default() };
        assert!(ideal_with_lag.check().is_err());
        assert!(LagSettings { held_release: true, ..LagSettings::default() }.check().is_err());
        assert!(LagSettings { slot_behind: true, ..LagSettings::default() }.check().is_ok());
        let ap = LagSettings { deployment: Deployment::Ap, held_release: true, ..LagSettings::default() };
        assert!(ap.check().is_ok());
        assert_eq!(ap.lag(Direction::Out), Lag::default_preset());
        assert!(!Deployment::Ap.holds(Direction::Out) && Deployment::Ap.holds(Direction::In));
        // By name: a lag alone means a bridge; ideal with a lag is refused.
        let knobs = ReleaseKnobs { lag: Some("2ms".into()), lag_uplink: Some("5ms".into()), ..ReleaseKnobs::default() };
        let s = knobs.settings().expect("knobs");
        assert_eq!(
            (s.deployment, s.lag(Direction::In), s.lag(Direction::Out)),
            (Deployment::Bridge, Lag::fixed_ms(2.0), Lag::fixed_ms(5.0))
        );
        assert!(ReleaseKnobs::default().settings().expect("default").is_default());
        let bad =
            ReleaseKnobs { deployment: Some(Deployment::Ideal), lag: Some("1ms".into()), ..ReleaseKnobs::default() };
        assert!(bad.settings().is_err());
    }
}
