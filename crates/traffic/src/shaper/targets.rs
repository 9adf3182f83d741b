//! Where a set's per-slot targets come from in pad-to-target mode ([`super::pad`]).
//!
//! A [`TargetSource`] gives, for each slot of the home grid, one [`Target`] per direction for the
//! whole set; every member is padded up to it. Sources:
//! - [`Supersequence`]: the per-slot maximum of the members' demand (no model, no delay);
//! - [`Regulator`]: a non-learned set regulariser (RegulaTor/Tamaraw-like, knobs in
//!   [`RegulatorSettings`]);
//! - [`crate::simulate::TargetRows`]: target rows from a model or a fixed schedule, in windows.

use serde::{Deserialize, Serialize};

use super::sizes::SizeDistribution;
use crate::error::{Error, ErrorCode, Result};

/// One direction of a slot's target: every member emits exactly this many packets carrying
/// exactly this many bytes (real first, cover for the rest), leaked packets aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target {
    pub packets: u64,
    pub bytes: u64,
}

/// A member's real traffic of one direction waiting at a slot (arrived before the slot's end,
/// not yet sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub packets: u64,
    pub bytes: u64,
}

/// What a set's slot looks like to its target source.
pub struct SlotView<'a> {
    /// Slot index on the home grid (0 at the home's first packet).
    pub slot: i64,
    /// Per member, per direction ([`crate::Direction::index`]).
    pub pending: &'a [[Pending; 2]],
    /// The set's real size distribution per direction.
    pub sizes: &'a [SizeDistribution; 2],
}

impl SlotView<'_> {
    /// The largest pending traffic of any member in direction `d`: (packets, bytes).
    pub fn max_pending(&self, d: usize) -> (u64, u64) {
        self.pending.iter().fold((0, 0), |(p, b), m| (p.max(m[d].packets), b.max(m[d].bytes)))
    }
}

/// What a set's target rows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TargetRowsStats {
    /// Target windows started (real and fake).
    pub windows: u64,
    /// Of those, started with no member having traffic pending.
    pub fake_windows: u64,
    pub rows_used: u64,
    /// Window slots that found the schedule used up (zero targets).
    pub slots_without_rows: u64,
}

/// The per-slot targets of one set.
pub trait TargetSource {
    /// The set's target for `view.slot`, per direction. Called once per slot, in order; slots
    /// skipped with [`TargetSource::skip`] in between.
    fn target(&mut self, view: &SlotView<'_>) -> Result<[Target; 2]>;
    /// How many of the next slots would get a zero target if no member had anything pending
    /// (`u64::MAX`: all of them). The simulator skips such slots without asking for them.
    fn quiet_slots(&self) -> u64 {
        u64::MAX
    }
    /// Passes `slots` quiet slots.
    fn skip(&mut self, _slots: u64) {}
    /// What a source of target rows did (None for the other sources).
    fn rows_stats(&self) -> Option<TargetRowsStats> {
        None
    }
}

/// The largest size a dummy of direction `d` may have (at least 1).
fn cap(sizes: &[SizeDistribution; 2], d: usize) -> u64 {
    u64::from(sizes[d].max().max(1))
}

/// The supersequence: per slot and direction, bytes = the largest pending bytes of any member,
/// packets = the fewest that let EVERY member reach those bytes after sending all it has pending
/// (`max over members of p_m + ceil((bytes - b_m) / largest size)`; the plain maximum of packets
/// whenever it suffices). All pending traffic fits, so nothing waits, and all members emit the
/// same packets and bytes in every slot. Hides which member is active, not when the set is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Supersequence;

impl TargetSource for Supersequence {
    fn target(&mut self, view: &SlotView<'_>) -> Result<[Target; 2]> {
        let mut t = [Target::default(); 2];
        for (d, target) in t.iter_mut().enumerate() {
            let bytes = view.pending.iter().map(|m| m[d].bytes).max().unwrap_or(0);
            let c = cap(view.sizes, d);
            let packets =
                view.pending.iter().map(|m| m[d].packets + (bytes - m[d].bytes).div_ceil(c)).max().unwrap_or(0);
            *target = Target { packets, bytes };
        }
        Ok(t)
    }
}

/// The supersequence with the set's bursts aligned within `align` slots: while the set's oldest
/// pending traffic of a direction is younger than the window, the target is zero (everything
/// waits); in the window's last slot every member's pending traffic goes at once, padded to the
/// supersequence of what all of them accumulated. Bursts of different members that fall within
/// one window then share one maximum instead of each paying its own: on the in-repo week the
/// 2-set floor costs 1.85x bytes at a window of one slot (the plain supersequence), 1.66x at 1 s
/// and 1.17x at 5 s (docs/evaluation/cheaper-protection.md). The price is latency: a real packet
/// waits up to `align - 1` slots, so the latency budget must be at least that long or the
/// waiting traffic leaks. A window of one slot is the plain [`Supersequence`], target for target.
#[derive(Debug, Clone, Copy)]
pub struct AlignedSupersequence {
    window_slots: i64,
    /// Per direction: the slot in which the set's pending traffic started waiting.
    since: [Option<i64>; 2],
}

impl AlignedSupersequence {
    /// Bursts aligned within `window_slots` slots (at least 1).
    pub fn new(window_slots: u64) -> Self {
        Self { window_slots: i64::try_from(window_slots.max(1)).unwrap_or(i64::MAX), since: [None; 2] }
    }
}

/// The supersequence's target source for an alignment window of `align_slots` slots: the plain
/// [`Supersequence`] for one slot (no state to keep), else an [`AlignedSupersequence`].
pub fn supersequence(align_slots: u64) -> Box<dyn TargetSource> {
    match align_slots {
        0 | 1 => Box::new(Supersequence),
        window => Box::new(AlignedSupersequence::new(window)),
    }
}

impl TargetSource for AlignedSupersequence {
    fn target(&mut self, view: &SlotView<'_>) -> Result<[Target; 2]> {
        let full = Supersequence.target(view)?;
        let mut t = [Target::default(); 2];
        for (d, target) in t.iter_mut().enumerate() {
            if view.max_pending(d) == (0, 0) {
                self.since[d] = None;
                continue;
            }
            let since = *self.since[d].get_or_insert(view.slot);
            if view.slot.saturating_sub(since) + 1 >= self.window_slots {
                *target = full[d];
                self.since[d] = None;
            }
        }
        Ok(t)
    }
}

/// The knobs of the [`Regulator`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegulatorSettings {
    /// Quantisation: targets take values on a geometric ladder `0, u, u*r, u*r^2, ...` (u = 1
    /// packet, or the set's median real size for bytes), rounded up; r = `levels`. Larger values
    /// leak less about the demand and cost more.
    pub levels: f64,
    /// A surge sets the rate to `surge` times the largest pending demand of any member (packets
    /// and bytes alike), if that is higher than the current rate.
    pub surge: f64,
    /// A surge happens when some member's pending packets or bytes exceed `threshold` times the
    /// current target (any demand surges an idle set). 1: nothing waits when the rate is too low;
    /// above 1, demand up to `threshold` times the target waits (within the latency budget)
    /// instead of raising the rate, which keeps the rate pattern coarser.
    pub threshold: f64,
    /// Seconds for the rate to halve after a surge (geometric decay, applied every slot).
    pub half_life: f64,
    /// Cover in silence: packets per second and direction (one packet of the median real size
    /// in a slot whose target is otherwise zero, at a constant rate, the same for all members).
    /// 0: no cover in silence.
    pub floor_rate: f64,
}

impl Default for RegulatorSettings {
    fn default() -> Self {
        Self { levels: 2.0, surge: 1.0, threshold: 1.0, half_life: 0.3, floor_rate: 0.02 }
    }
}

impl RegulatorSettings {
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Error::invalid(ErrorCode::InvalidRegulatorSettings, m);
        let ok = |v: f64, min: f64| v.is_finite() && v >= min;
        if !(ok(self.levels, 1.0) && self.levels > 1.0) {
            return Err(bad(format!("levels {} must be > 1", self.levels)));
        }
        if !ok(self.surge, 1.0) {
            return Err(bad(format!("surge {} must be >= 1", self.surge)));
        }
        if !ok(self.threshold, 1.0) {
            return Err(bad(format!("threshold {} must be >= 1", self.threshold)));
        }
        if !(ok(self.half_life, 0.0) && self.half_life > 0.0) {
            return Err(bad(format!("half_life {} s must be positive", self.half_life)));
        }
        if !ok(self.floor_rate, 0.0) {
            return Err(bad(format!("floor_rate {} per second cannot be negative", self.floor_rate)));
        }
        Ok(())
    }
}

/// A non-learned set regulariser in the spirit of RegulaTor (surge and decay) and Tamaraw
/// (quantised levels, constant rate in silence). Per set and direction it keeps a packet rate
/// and a byte rate (per slot):
/// 1. if some member's pending packets or bytes exceed `threshold` times the current target,
///    both rates rise to at least `surge` times the largest pending demand (a surge);
/// 2. the target is each rate rounded UP to the ladder of `levels` (a rate under half the ladder's
///    unit is 0); the packets are raised where needed so that every member can reach the bytes
///    with dummies no larger than the set's largest real packet, then rounded up again;
/// 3. a slot whose target is still zero gets the floor: one packet of the median real size when
///    the floor's credit (`floor_rate` per second, at most one packet banked) allows;
/// 4. both rates decay by `0.5^(omega / half_life)`.
///
/// Targets depend only on the set's largest demand, so members are not told apart by them;
/// the quantisation and decay blur how much and exactly when the set was active, and the floor
/// covers silence at a constant rate (the hubs' 60 s keep-alives fall into a set-wide pattern).
#[derive(Debug, Clone)]
pub struct Regulator {
    settings: RegulatorSettings,
    decay: f64,
    credit_per_slot: f64,
    /// Per direction: packets per slot, bytes per slot, floor credit.
    rate_packets: [f64; 2],
    rate_bytes: [f64; 2],
    credit: [f64; 2],
    /// Per direction: the byte unit (median real size, at least 1).
    byte_unit: [f64; 2],
}

impl Regulator {
    pub fn new(settings: RegulatorSettings, omega_ns: i64, sizes: &[SizeDistribution; 2]) -> Result<Self> {
        settings.check()?;
        let omega = omega_ns as f64 / 1e9;
        Ok(Self {
            settings,
            decay: 0.5f64.powf(omega / settings.half_life),
            credit_per_slot: settings.floor_rate * omega,
            rate_packets: [0.0; 2],
            rate_bytes: [0.0; 2],
            credit: [0.0; 2],
            byte_unit: [f64::from(sizes[0].median().max(1)), f64::from(sizes[1].median().max(1))],
        })
    }

    /// `x` rounded up to the ladder `0, unit, unit*levels, ...` (under unit/2: 0).
    fn level(&self, x: f64, unit: f64) -> u64 {
        if x < unit / 2.0 {
            return 0;
        }
        let mut v = unit;
        while v < x {
            v *= self.settings.levels;
        }
        v.ceil() as u64
    }

    fn levels(&self, d: usize) -> (u64, u64) {
        (self.level(self.rate_packets[d], 1.0), self.level(self.rate_bytes[d], self.byte_unit[d]))
    }
}

impl TargetSource for Regulator {
    fn target(&mut self, view: &SlotView<'_>) -> Result<[Target; 2]> {
        let mut t = [Target::default(); 2];
        for (d, target) in t.iter_mut().enumerate() {
            let (dp, db) = view.max_pending(d);
            let (tp, tb) = self.levels(d);
            let th = self.settings.threshold;
            if dp as f64 > th * tp as f64 || db as f64 > th * tb as f64 {
                // At least one unit, so that a demand under half a unit is not rounded away.
                let surge = |demand: u64, unit: f64| (self.settings.surge * demand as f64).max(unit);
                self.rate_packets[d] = self.rate_packets[d].max(surge(dp, 1.0));
                self.rate_bytes[d] = self.rate_bytes[d].max(surge(db, self.byte_unit[d]));
            }
            let (mut packets, mut bytes) = self.levels(d);
            self.credit[d] = (self.credit[d] + self.credit_per_slot).min(1.0);
            if packets == 0 && bytes == 0 && self.credit[d] >= 1.0 - 1e-9 {
                self.credit[d] = 0.0;
                packets = 1;
                bytes = self.byte_unit[d] as u64;
            }
            if bytes > 0 || packets > 0 {
                let need = bytes.div_ceil(cap(view.sizes, d)) + dp.min(packets);
                if need > packets {
                    packets = self.level(need as f64, 1.0);
                }
            }
            *target = Target { packets, bytes };
            self.rate_packets[d] *= self.decay;
            self.rate_bytes[d] *= self.decay;
        }
        Ok(t)
    }

    fn quiet_slots(&self) -> u64 {
        if (0..2).any(|d| self.levels(d) != (0, 0)) {
            return 0;
        }
        if self.credit_per_slot <= 0.0 {
            return u64::MAX;
        }
        (0..2)
            .map(|d| (((1.0 - self.credit[d]) / self.credit_per_slot).ceil() as u64).saturating_sub(1))
            .min()
            .unwrap_or(0)
    }

    fn skip(&mut self, slots: u64) {
        let f = self.decay.powf(slots as f64);
        for d in 0..2 {
            self.rate_packets[d] *= f;
            self.rate_bytes[d] *= f;
            self.credit[d] = (self.credit[d] + self.credit_per_slot * slots as f64).min(1.0);
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn aligned_bursts_wait_out_their_window_then_go_together() {
        let sizes = [SizeDistribution::from_sizes([100]), SizeDistribution::from_sizes([100])];
        let view = |slot: i64, pending: &[[Pending; 2]]| -> [Target; 2] {
            let v = SlotView { slot, pending, sizes: &sizes };
            let mut plain = Supersequence;
            plain.target(&v).expect("target")
        };
        let p = |packets, bytes| Pending { packets, bytes };
        let none = Pending::default();
        let mut a = AlignedSupersequence::new(3);
        // Member 0 starts a burst at slot 10; member 1 joins at slot 11; both go at slot 12.
        let s10 = [[none, p(1, 100)], [none, none]];
        let s11 = [[none, p(1, 100)], [none, p(2, 200)]];
        let s12 = [[none, p(1, 100)], [none, p(2, 200)]];
        for (slot, pending) in [(10, &s10), (11, &s11)] {
            let v = SlotView { slot, pending, sizes: &sizes };
            assert_eq!(a.target(&v).expect("target"), [Target::default(); 2], "slot {slot} waits");
        }
        let v = SlotView { slot: 12, pending: &s12, sizes: &sizes };
        let go = a.target(&v).expect("target");
        assert_eq!(go, view(12, &s12));
        assert_eq!(go[1], Target { packets: 2, bytes: 200 });
        // A window of one slot is the plain supersequence.
        let mut one = AlignedSupersequence::new(1);
        for (slot, pending) in [(10, &s10), (11, &s11), (12, &s12)] {
            let v = SlotView { slot, pending, sizes: &sizes };
            assert_eq!(one.target(&v).expect("target"), view(slot, pending));
        }
    }

    use super::*;

    fn sizes() -> [SizeDistribution; 2] {
        [SizeDistribution::from_sizes([100, 100, 1000]), SizeDistribution::from_sizes([50, 60, 500])]
    }

    fn p(packets: u64, bytes: u64) -> Pending {
        Pending { packets, bytes }
    }

    #[test]
    fn the_supersequence_lets_every_member_reach_the_largest_bytes() {
        let s = sizes();
        let pending = [[p(1, 1000), p(0, 0)], [p(10, 100), p(2, 110)], [p(0, 0), p(0, 0)]];
        let t = Supersequence.target(&SlotView { slot: 0, pending: &pending, sizes: &s }).expect("target");
        // In: bytes 1000; member 1 needs 10 + ceil(900/1000) = 11, member 2 needs 0 + 1.
        assert_eq!(t[0], Target { packets: 11, bytes: 1000 });
        assert_eq!(t[1], Target { packets: 2, bytes: 110 });
        assert_eq!(Supersequence.quiet_slots(), u64::MAX);
    }

    #[test]
    fn the_regulator_surges_decays_to_zero_and_fills_silence_at_its_floor_rate() {
        let s = sizes();
        let settings =
            RegulatorSettings { floor_rate: 1.0, half_life: 0.5, surge: 2.0, ..RegulatorSettings::default() };
        let mut r = Regulator::new(settings, 100_000_000, &s).expect("regulator");
        let busy = [[p(3, 300), p(0, 0)], [p(0, 0), p(0, 0)]];
        let idle = [[p(0, 0), p(0, 0)], [p(0, 0), p(0, 0)]];
        let t = r.target(&SlotView { slot: 0, pending: &busy, sizes: &s }).expect("target");
        // Surge to 6 packets, 600 bytes: levels 8 and 800 (unit 100, ladder x2).
        assert_eq!(t[0], Target { packets: 8, bytes: 800 });
        assert_eq!(t[1], Target::default());
        let mut in_packets = Vec::new();
        for slot in 1..40 {
            let t = r.target(&SlotView { slot, pending: &idle, sizes: &s }).expect("target");
            in_packets.push(t[0].packets);
            assert!(t[0].packets >= t[0].bytes.div_ceil(1000));
        }
        // Decays (never rises without demand), then only the floor: one packet every 10 slots.
        assert!(in_packets.windows(2).take(10).all(|w| w[1] <= w[0]), "{in_packets:?}");
        let tail: Vec<u64> = in_packets[20..].to_vec();
        assert_eq!(tail.iter().sum::<u64>(), 2, "{in_packets:?}");
        assert!(r.quiet_slots() < 10);
        // Bad knobs are refused.
        for bad in [
            RegulatorSettings { levels: 1.0, ..settings },
            RegulatorSettings { surge: 0.5, ..settings },
            RegulatorSettings { half_life: 0.0, ..settings },
            RegulatorSettings { floor_rate: -1.0, ..settings },
            RegulatorSettings { threshold: f64::NAN, ..settings },
        ] {
            assert_eq!(Regulator::new(bad, 100_000_000, &s).expect_err("bad").code(), "invalid_regulator_settings");
        }
    }
}
