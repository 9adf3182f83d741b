//! What a simulation sent: the [`Summary`], the latency histogram behind it, and the
//! [`Emitter`] that counts every output packet on its way to the sink.

use serde::Serialize;

use super::OutputPacket;
use crate::{
    error::{Error, Result},
    packet::{Direction, Packet},
};

/// Packets and bytes of one direction (or both), and what the cover cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficSummary {
    pub real_packets: u64,
    pub real_bytes: u64,
    pub dummy_packets: u64,
    /// Whole bytes (reference mode's fractional packet sizes summed, then rounded).
    pub dummy_bytes: u64,
    /// dummy bytes / real bytes (null without real bytes).
    pub bandwidth_overhead: Option<f64>,
    /// dummy packets / real packets (null without real packets).
    pub packet_overhead: Option<f64>,
}

/// How long the defense held real packets back (all zero for iPET, which never delays).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencySummary {
    pub mean_s: f64,
    /// Quantiles from a log-linear histogram (64 buckets per power of two: within 1.6%, rounded
    /// up, never above the maximum).
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

/// What a simulation sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Summary {
    /// `ipet-slotted`, `ipet-reference`, `constant`, `random` or `random+`.
    pub defense: String,
    /// Unix time of the trace's first real packet (output times are relative to it); null for an
    /// empty trace.
    pub start_time_s: Option<f64>,
    /// From the first to the last output packet.
    pub duration_s: f64,
    /// Time under cover: iPET's active periods (first packet to `active_gap` after the last), or
    /// a baseline's burst ticks.
    pub active_time_s: f64,
    pub incoming: TrafficSummary,
    pub outgoing: TrafficSummary,
    pub total: TrafficSummary,
    /// Added latency of the real packets.
    pub latency: LatencySummary,
    /// Perturbation rows consumed (iPET).
    pub rows_used: u64,
    /// Slots (slotted mode) or ticks (reference mode) that wanted a row when the schedule was
    /// used up, and so got no cover.
    pub slots_without_cover: u64,
    /// Real packets of the input that are not in the output (reference mode drops the last one).
    pub real_packets_dropped: u64,
    /// Rows of the output.
    pub output_packets: u64,
}

/// Latency histogram: exact below 128 ns, then 64 buckets per power of two.
#[derive(Debug, Clone)]
pub(crate) struct Latency {
    count: u64,
    sum_ns: f64,
    max_ns: u64,
    buckets: Vec<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self { count: 0, sum_ns: 0.0, max_ns: 0, buckets: vec![0; 64 * 60] }
    }
}

impl Latency {
    fn index(v: u64) -> usize {
        if v < 128 {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as usize; // >= 7
        let m = (v >> (e - 6)) as usize; // 64..128
        (e - 6) * 64 + m
    }

    fn upper(idx: usize) -> u64 {
        if idx < 128 {
            return idx as u64;
        }
        let e = idx / 64 + 5;
        let m = (idx - (e - 6) * 64) as u64;
        ((m + 1) << (e - 6)) - 1
    }

    pub(crate) fn record(&mut self, ns: i64) {
        let v = ns.max(0) as u64;
        self.count += 1;
        self.sum_ns += v as f64;
        self.max_ns = self.max_ns.max(v);
        self.buckets[Self::index(v)] += 1;
    }

    /// Adds another histogram's packets (for set and home totals).
    pub(crate) fn merge(&mut self, other: &Latency) {
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    fn quantile_ns(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper(i).min(self.max_ns);
            }
        }
        self.max_ns
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        if self.count == 0 {
            return LatencySummary::default();
        }
        LatencySummary {
            mean_s: self.sum_ns / self.count as f64 / 1e9,
            p50_s: self.quantile_ns(0.5) as f64 / 1e9,
            p99_s: self.quantile_ns(0.99) as f64 / 1e9,
            max_s: self.max_ns as f64 / 1e9,
        }
    }
}

/// Counts what goes to the sink and checks that it is time-ordered.
pub(crate) struct Emitter<S> {
    sink: S,
    real_packets: [u64; 2],
    real_bytes: [f64; 2],
    dummy_packets: [u64; 2],
    dummy_bytes: [f64; 2],
    first_ns: Option<i64>,
    last_ns: i64,
    pub(crate) latency: Latency,
    pub(crate) rows_used: u64,
    pub(crate) slots_without_cover: u64,
    pub(crate) active_ns: i64,
    pub(crate) dropped: u64,
    pub(crate) start_ns: Option<i64>,
}

impl<S: FnMut(&OutputPacket) -> Result<()>> Emitter<S> {
    pub(crate) fn new(sink: S) -> Self {
        Self {
            sink,
            real_packets: [0; 2],
            real_bytes: [0.0; 2],
            dummy_packets: [0; 2],
            dummy_bytes: [0.0; 2],
            first_ns: None,
            last_ns: i64::MIN,
            latency: Latency::default(),
            rows_used: 0,
            slots_without_cover: 0,
            active_ns: 0,
            dropped: 0,
            start_ns: None,
        }
    }

    #[inline]
    pub(crate) fn emit(&mut self, p: OutputPacket) -> Result<()> {
        if p.time_ns < self.last_ns {
            return Err(Error::Internal(format!(
                "simulator output out of order: {} ns after {} ns",
                p.time_ns, self.last_ns
            )));
        }
        self.last_ns = p.time_ns;
        self.first_ns.get_or_insert(p.time_ns);
        let d = p.direction.index();
        if p.dummy {
            self.dummy_packets[d] += 1;
            self.dummy_bytes[d] += p.size;
        } else {
            self.real_packets[d] += 1;
            self.real_bytes[d] += p.size;
            self.latency.record(p.delay_ns);
        }
        (self.sink)(&p)
    }

    #[inline]
    pub(crate) fn real(&mut self, p: &Packet, at_ns: i64) -> Result<()> {
        self.emit(OutputPacket {
            time_ns: at_ns,
            direction: p.direction,
            dummy: false,
            size: f64::from(p.size),
            delay_ns: at_ns - p.time_ns,
        })
    }

    #[inline]
    pub(crate) fn dummy(&mut self, time_ns: i64, direction: Direction, size: f64) -> Result<()> {
        self.emit(OutputPacket { time_ns, direction, dummy: true, size, delay_ns: 0 })
    }

    pub(crate) fn finish(self, defense: &str) -> Summary {
        let traffic = |rp: u64, rb: f64, dp: u64, db: f64| TrafficSummary {
            real_packets: rp,
            real_bytes: rb.round() as u64,
            dummy_packets: dp,
            dummy_bytes: db.round() as u64,
            bandwidth_overhead: (rb > 0.0).then(|| db / rb),
            packet_overhead: (rp > 0).then(|| dp as f64 / rp as f64),
        };
        let dir =
            |d: usize| traffic(self.real_packets[d], self.real_bytes[d], self.dummy_packets[d], self.dummy_bytes[d]);
        let total = traffic(
            self.real_packets.iter().sum(),
            self.real_bytes.iter().sum(),
            self.dummy_packets.iter().sum(),
            self.dummy_bytes.iter().sum(),
        );
        Summary {
            defense: defense.to_string(),
            start_time_s: self.start_ns.map(|t| t as f64 / 1e9),
            duration_s: self.first_ns.map_or(0.0, |f| (self.last_ns - f) as f64 / 1e9),
            active_time_s: self.active_ns as f64 / 1e9,
            incoming: dir(0),
            outgoing: dir(1),
            output_packets: total.real_packets + total.dummy_packets,
            total,
            latency: self.latency.summary(),
            rows_used: self.rows_used,
            slots_without_cover: self.slots_without_cover,
            real_packets_dropped: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::MS;
    use super::*;

    #[test]
    fn the_latency_histogram_is_within_its_resolution() {
        let mut l = Latency::default();
        for v in 1..=1000i64 {
            l.record(v * MS);
        }
        let s = l.summary();
        assert!((s.mean_s - 0.5005).abs() < 1e-9);
        assert!(s.p50_s >= 0.5 && s.p50_s <= 0.5 * 1.016, "{}", s.p50_s);
        assert!(s.p99_s >= 0.99 && s.p99_s <= 0.99 * 1.016, "{}", s.p99_s);
        assert_eq!(s.max_s, 1.0);
        for v in [0u64, 1, 127, 128, 129, 1000, 123_456_789, u64::MAX / 2] {
            let i = Latency::index(v);
            assert!(Latency::upper(i) >= v && (i == 0 || Latency::upper(i - 1) < v), "{v}");
        }
    }
}
