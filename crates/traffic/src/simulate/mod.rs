//! The gateway simulator: a device's real packets in, the defended trace out.
//!
//! One implementation, used by the service's simulation jobs and by `ipet simulate`. The input is
//! one device's packets in time order (any iterator, so a trace never has to be held twice); the
//! output is a time-ordered stream of [`OutputPacket`]s handed to a sink callback as they are
//! produced, so memory stays flat in the trace's length: real packets and generated cover are
//! merged on the fly, and no tick list is ever built up front. A [`Summary`] of what was sent
//! comes back at the end.
//!
//! Defenses ([`Defense`]):
//! - iPET with a row source ([`RowSource`]: a fixed schedule, or generators drawn on demand), in
//!   [`Mode::Slotted`] (the default, correct) or [`Mode::Reference`] (the published simulator,
//!   defects included, for comparison);
//! - the paper's baselines ([`super::baselines`]), which buffer real packets and so add latency.
//!
//! A whole home in anonymity sets goes through pad-to-target instead ([`defend_home`], module
//! `pad`): every member padded up to its set's per-slot targets ([`TargetSource`]: the
//! [`Supersequence`], the [`Regulator`], or target rows), with waiting and leaking accounted.
//!
//! Output rows are `[direction (+1 out / -1 in), is_dummy (0/1), size_bytes, time_s]`
//! ([`OUTPUT_COLUMNS`]), `time_s` in seconds since the trace's first real packet (the reference's
//! `time_relative_normalised`; the first packet's Unix time is [`Summary::start_time_s`]).
//!
//! ## Slotted mode (default)
//!
//! - Active periods: consecutive real packets less than `active_gap` apart belong to one period.
//!   Cover runs from the period's first packet until `active_gap` after its last one, and never
//!   past it: the period's last slot is cut short there, so the cover of two periods never
//!   overlaps (the next period starts at least `active_gap` after the last packet).
//! - The period is cut into slots of `omega` aligned to its first packet (slot k covers
//!   `[t0 + k*omega, t0 + (k+1)*omega)`), which is where a fingerprinting window starting at that
//!   packet puts its slots. Each slot consumes exactly one row, in order, never skipped or
//!   reused, and applies it to both directions: `in_packets` incoming dummies carrying `in_bytes`
//!   in all, `out_packets` outgoing dummies carrying `out_bytes`. Bytes are split exactly over a
//!   direction's packets (integer division, the remainder going one byte each to the first
//!   ones). A count of 0 emits nothing.
//! - Real packets pass unchanged at their own time; every real packet is kept (the last one too).
//!
//! ## Reference mode
//!
//! What the published `ipet_trace(create_ticks(...))` computes: periods split where two packets
//! are MORE than `active_gap` apart; incoming ticks at `t0 + k*omega`, outgoing ticks at
//! `t0 + omega/2 + k*omega`, while before `last + active_gap`; ONE row iterator shared by both
//! directions, each tick taking the next row (incoming ticks use columns 0-1, outgoing 2-3); a
//! count of 0 forced to 1, each packet `bytes / count` bytes (a fraction, as numpy divides); all
//! of a tick's packets at the tick time; the trace's last real packet dropped. Two deliberate
//! differences: times are integer nanoseconds (numpy's float `arange` can put a boundary tick on
//! either side), and an exhausted schedule gives no cover (counted in
//! [`Summary::slots_without_cover`]) where the reference silently wraps around to row 0.

pub mod baselines;
mod home;
mod input;
mod output;
mod pad;
mod pad_summary;
mod reference;
mod rows;
mod slotted;
mod summary;
mod target_rows;
#[cfg(test)]
mod testing;

use serde::{Deserialize, Serialize};

use self::baselines::Baseline;
pub use self::home::{HomeShaping, MakeTargets, defend_home};
pub(crate) use self::input::Input;
pub use self::output::{CsvWriter, NpyWriter, OutputFile};
pub use self::pad::{PadMember, PadSet};
pub use self::pad_summary::{HomeSummary, MemberSummary, PadSummary, PadTraffic, SetSummary};
use self::reference::reference;
pub use self::rows::{FixedRows, RowSource};
use self::slotted::slotted;
pub(crate) use self::summary::Emitter;
pub use self::summary::{LatencySummary, Summary, TrafficSummary};
pub use self::target_rows::{TargetRows, TargetRowsSettings};
use super::packet::{Direction, Packet, Transport, secs_to_ns};
use crate::error::{Error, ErrorCode, Result};
pub use crate::shaper::{
    PadSettings, Pending, Regulator, RegulatorSettings, SizeDistribution, SlotView, Supersequence, Target,
    TargetRowsStats, TargetSource, set_rng,
};

/// The columns of an output row, in order.
pub const OUTPUT_COLUMNS: [&str; 4] = ["direction", "is_dummy", "size_bytes", "time_s"];

/// How iPET cover is laid over the trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One row per omega slot, both directions, dummies spread inside their slot (correct).
    #[default]
    Slotted,
    /// The published simulator, defects included.
    Reference,
}

/// Simulator settings (besides the defense's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimSettings {
    /// Slot length (iPET) in nanoseconds.
    pub omega_ns: i64,
    /// Real packets less than this apart belong to one active period (iPET).
    pub active_gap_ns: i64,
}

impl Default for SimSettings {
    fn default() -> Self {
        Self { omega_ns: 100_000_000, active_gap_ns: 5_000_000_000 }
    }
}

impl SimSettings {
    /// From seconds; checks `0 < omega <= active_gap`.
    pub fn new(omega: f64, active_gap: f64) -> Result<Self> {
        let bad = |m: String| Error::invalid(ErrorCode::InvalidSimulationSettings, m);
        if !(omega.is_finite() && active_gap.is_finite()) {
            return Err(bad(format!("omega {omega} s and active_gap {active_gap} s must be finite")));
        }
        let s = Self { omega_ns: secs_to_ns(omega), active_gap_ns: secs_to_ns(active_gap) };
        if s.omega_ns <= 0 || s.active_gap_ns < s.omega_ns {
            return Err(bad(format!(
                "need 0 < omega <= active_gap, got omega {omega} s and active_gap {active_gap} s"
            )));
        }
        Ok(s)
    }
}

/// One packet of the defended trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputPacket {
    /// When it leaves the gateway (Unix nanoseconds, as the input's).
    pub time_ns: i64,
    pub direction: Direction,
    pub dummy: bool,
    /// Payload bytes; whole except in reference mode (which divides as the published code does).
    pub size: f64,
    /// For a real packet, how long the defense held it (0 for iPET); 0 for cover.
    pub delay_ns: i64,
}

impl OutputPacket {
    /// `[direction, is_dummy, size_bytes, time_s]`, time relative to `origin_ns`.
    pub fn row(&self, origin_ns: i64) -> [f64; 4] {
        [
            match self.direction {
                Direction::Out => 1.0,
                Direction::In => -1.0,
            },
            if self.dummy { 1.0 } else { 0.0 },
            self.size,
            (self.time_ns - origin_ns) as f64 / 1e9,
        ]
    }

    /// As an input packet (size rounded), to cut the defended trace into windows with the same
    /// feature code as the undefended one. The transport is not simulated: cover is UDP.
    pub fn to_packet(&self, transport_of_real: Transport) -> Packet {
        Packet {
            time_ns: self.time_ns,
            size: self.size.round() as u32,
            direction: self.direction,
            transport: if self.dummy { Transport::Udp } else { transport_of_real },
        }
    }
}

/// What the simulator defends a trace with.
pub enum Defense<'a> {
    /// iPET cover from a row source.
    Ipet { mode: Mode, rows: &'a mut dyn RowSource },
    /// A baseline defense; `seed` makes its random choices reproducible (None: OS randomness).
    Baseline { baseline: Baseline, seed: Option<u64> },
}

/// Defends one device's trace (`packets` in time order, else `unsorted_trace`), handing each
/// output packet to `sink` in time order, and returns what was sent.
pub fn simulate(
    packets: impl IntoIterator<Item = Packet>,
    defense: Defense<'_>,
    settings: &SimSettings,
    sink: impl FnMut(&OutputPacket) -> Result<()>,
) -> Result<Summary> {
    if settings.omega_ns <= 0 || settings.active_gap_ns < settings.omega_ns {
        return Err(Error::invalid(ErrorCode::InvalidSimulationSettings, "need 0 < omega <= active_gap"));
    }
    let mut input = Input::new(packets.into_iter());
    let mut out = Emitter::new(sink);
    let label = match defense {
        Defense::Ipet { mode: Mode::Slotted, rows } => {
            slotted(&mut input, rows, settings, &mut out)?;
            "ipet-slotted".to_string()
        }
        Defense::Ipet { mode: Mode::Reference, rows } => {
            reference(&mut input, rows, settings, &mut out)?;
            "ipet-reference".to_string()
        }
        Defense::Baseline { baseline, seed } => {
            baselines::run(&mut input, &baseline, seed, &mut out)?;
            baseline.kind.name().to_string()
        }
    };
    Ok(out.finish(&label))
}

#[cfg(test)]
mod tests {
    use super::testing::{S, pkt, run};
    use super::*;

    #[test]
    fn schedule_exhaustion_is_reported_in_both_modes() {
        for mode in [Mode::Slotted, Mode::Reference] {
            let (out, s, left) =
                run(&[pkt(0, Direction::In, 1), pkt(1, Direction::In, 1)], mode, vec![[1, 1, 1, 1]; 3]);
            assert_eq!((s.rows_used, left), (3, 0), "{mode:?}");
            assert!(s.slots_without_cover > 40, "{mode:?}");
            assert!(out.iter().filter(|p| p.dummy).count() <= 6);
        }
    }

    #[test]
    fn an_unsorted_trace_is_refused_and_an_empty_one_gives_an_empty_summary() {
        let mut rows = FixedRows::new(vec![[1, 1, 1, 1]; 10]).expect("rows");
        let err = simulate(
            [pkt(S, Direction::In, 1), pkt(0, Direction::In, 1)],
            Defense::Ipet { mode: Mode::Slotted, rows: &mut rows },
            &SimSettings::default(),
            |_| Ok(()),
        )
        .expect_err("unsorted");
        assert_eq!(err.code(), "unsorted_trace");
        for mode in [Mode::Slotted, Mode::Reference] {
            let (out, s, _) = run(&[], mode, vec![]);
            assert!(out.is_empty());
            assert_eq!(s.start_time_s, None);
            assert_eq!(s.total.bandwidth_overhead, None);
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(SimSettings::new(0.1, 5.0).is_ok());
        assert_eq!(SimSettings::new(0.1, 0.05).expect_err("gap < omega").code(), "invalid_simulation_settings");
        assert!(SimSettings::new(0.0, 5.0).is_err());
        assert!(SimSettings::new(f64::NAN, 5.0).is_err());
    }
}
