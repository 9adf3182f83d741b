//! What pad-to-target sent, per member, per set and for the whole home.

use serde::Serialize;

use super::{LatencySummary, OutputPacket, summary::Latency};
use crate::shaper::{LagSettings, TargetRowsStats};

/// One direction (or both) of padded traffic. Leaked packets are real packets sent in excess of
/// the target because their wait reached the latency budget; they count as real too.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PadTraffic {
    pub real_packets: u64,
    pub real_bytes: u64,
    pub dummy_packets: u64,
    pub dummy_bytes: u64,
    pub leaked_packets: u64,
    pub leaked_bytes: u64,
    /// Real packets sent later than they arrived (leaked ones included).
    pub delayed_packets: u64,
    /// Bytes of targets that the member's dummies could not reach (a target with more bytes than
    /// its packets can carry at the set's largest real size); 0 for consistent targets.
    pub missed_target_bytes: u64,
    /// dummy bytes / real bytes (null without real bytes).
    pub bandwidth_overhead: Option<f64>,
    /// dummy packets / real packets (null without real packets).
    pub packet_overhead: Option<f64>,
}

/// Padded traffic per direction and in all, with the real packets' added latency.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PadSummary {
    pub incoming: PadTraffic,
    pub outgoing: PadTraffic,
    pub total: PadTraffic,
    pub latency: LatencySummary,
}

/// Counters behind a [`PadSummary`]; they add up from members to sets to the home.
#[derive(Debug, Clone, Default)]
pub(crate) struct PadCounts {
    real: [[u64; 2]; 2],
    dummy: [[u64; 2]; 2],
    leaked: [[u64; 2]; 2],
    delayed: [u64; 2],
    missed: [u64; 2],
    latency: Latency,
}

impl PadCounts {
    /// Counts one output packet; `leaked` for a real packet sent in excess of its target.
    pub(crate) fn count(&mut self, p: &OutputPacket, leaked: bool) {
        let d = p.direction.index();
        let size = p.size as u64;
        if p.dummy {
            self.dummy[d][0] += 1;
            self.dummy[d][1] += size;
            return;
        }
        self.real[d][0] += 1;
        self.real[d][1] += size;
        if leaked {
            self.leaked[d][0] += 1;
            self.leaked[d][1] += size;
        }
        if p.delay_ns > 0 {
            self.delayed[d] += 1;
        }
        self.latency.record(p.delay_ns);
    }

    pub(crate) fn missed(&mut self, d: usize, bytes: u64) {
        self.missed[d] += bytes;
    }

    pub(crate) fn add(&mut self, o: &PadCounts) {
        for d in 0..2 {
            for c in 0..2 {
                self.real[d][c] += o.real[d][c];
                self.dummy[d][c] += o.dummy[d][c];
                self.leaked[d][c] += o.leaked[d][c];
            }
            self.delayed[d] += o.delayed[d];
            self.missed[d] += o.missed[d];
        }
        self.latency.merge(&o.latency);
    }

    fn traffic(&self, dirs: &[usize]) -> PadTraffic {
        let sum = |a: &[[u64; 2]; 2], c: usize| dirs.iter().map(|&d| a[d][c]).sum::<u64>();
        let (rp, rb, dp, db) = (sum(&self.real, 0), sum(&self.real, 1), sum(&self.dummy, 0), sum(&self.dummy, 1));
        PadTraffic {
            real_packets: rp,
            real_bytes: rb,
            dummy_packets: dp,
            dummy_bytes: db,
            leaked_packets: sum(&self.leaked, 0),
            leaked_bytes: sum(&self.leaked, 1),
            delayed_packets: dirs.iter().map(|&d| self.delayed[d]).sum(),
            missed_target_bytes: dirs.iter().map(|&d| self.missed[d]).sum(),
            bandwidth_overhead: (rb > 0).then(|| db as f64 / rb as f64),
            packet_overhead: (rp > 0).then(|| dp as f64 / rp as f64),
        }
    }

    pub(crate) fn summary(&self) -> PadSummary {
        PadSummary {
            incoming: self.traffic(&[0]),
            outgoing: self.traffic(&[1]),
            total: self.traffic(&[0, 1]),
            latency: self.latency.summary(),
        }
    }
}

/// One member of a set.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberSummary {
    pub device: String,
    /// Its id (position) in the device table.
    pub id: usize,
    pub set: String,
    #[serde(flatten)]
    pub summary: PadSummary,
}

/// One anonymity set, its members summed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetSummary {
    pub name: String,
    pub members: Vec<String>,
    /// Slots of the home grid that gave the set a non-zero target in some direction.
    pub target_slots: u64,
    /// Target windows and rows (`targets` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rows: Option<TargetRowsStats>,
    #[serde(flatten)]
    pub summary: PadSummary,
}

/// A whole home defended in anonymity sets.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HomeSummary {
    /// Where the targets came from: `supersequence`, `regulator` or `targets`.
    pub defense: String,
    /// Unix time of the home's first real packet: slot 0 of the grid starts there, and every
    /// member's output times are relative to it.
    pub start_time_s: Option<f64>,
    pub omega_s: f64,
    pub latency_budget_s: f64,
    /// Deployment, reaction lag and countermeasures (left out for `ideal`, the default).
    #[serde(skip_serializing_if = "LagSettings::is_default")]
    pub release: LagSettings,
    /// Slots of the grid from the home's first to its last real packet.
    pub slots: u64,
    /// All members of all sets.
    pub total: PadSummary,
    pub sets: Vec<SetSummary>,
    pub members: Vec<MemberSummary>,
    /// Devices of the table without a kept packet: in no set, not defended (unless a
    /// specification's sets name them: then they are members, covered).
    pub excluded: Vec<String>,
}
