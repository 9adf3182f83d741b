//! How much work a simulation asks for, known before it runs: the span of its trace and an upper
//! bound on the rows of its defended output, so that a service can refuse a job too large before
//! accepting it.

use super::{
    baselines::Baseline,
    packet::Packet,
    simulate::{Mode, SimSettings},
};

/// The defense whose output is bounded.
#[derive(Debug, Clone, Copy)]
pub enum CoverKind<'a> {
    /// iPET cover, at most `cap_packets` cover packets per direction per slot (the model set's
    /// `max_packets_per_omega`).
    Ipet {
        mode: Mode,
        cap_packets: f64,
    },
    Baseline(&'a Baseline),
}

/// Nanoseconds from the first packet to the last (packets sorted by time).
pub fn span_ns(packets: &[Packet]) -> i64 {
    match (packets.first(), packets.last()) {
        (Some(a), Some(b)) => b.time_ns - a.time_ns,
        _ => 0,
    }
}

/// Nanoseconds of cover time of iPET: each active period (packets closer than `active_gap`) from
/// its first packet to `active_gap` after its last.
pub fn active_ns(packets: &[Packet], active_gap_ns: i64) -> i64 {
    let mut total = 0i64;
    let mut start: Option<i64> = None;
    let mut last = 0i64;
    for p in packets {
        match start {
            None => start = Some(p.time_ns),
            Some(s) if p.time_ns - last >= active_gap_ns => {
                total = total.saturating_add(last - s + active_gap_ns);
                start = Some(p.time_ns);
            }
            Some(_) => {}
        }
        last = p.time_ns;
    }
    if let Some(s) = start {
        total = total.saturating_add(last - s + active_gap_ns);
    }
    total
}

/// An upper bound on the output rows (real and cover packets) of a simulation of `packets`.
/// Baselines are bounded as if on for the whole span (their worst case), with the rate at its
/// mean plus three standard deviations.
pub fn output_rows_bound(packets: &[Packet], cover: CoverKind<'_>, settings: &SimSettings) -> u64 {
    let real = packets.len() as f64;
    let cover_rows = match cover {
        CoverKind::Ipet { mode, cap_packets } => {
            let slots = (active_ns(packets, settings.active_gap_ns) as f64 / settings.omega_ns as f64).ceil();
            // Two directions; the reference simulator ticks twice per slot, a row at each tick.
            let per_slot = match mode {
                Mode::Slotted => 2.0,
                Mode::Reference => 4.0,
            } * cap_packets.max(0.0);
            slots * per_slot
        }
        CoverKind::Baseline(b) => {
            let tick_s = b.tick_ns as f64 / 1e9;
            let ticks = ((span_ns(packets) as f64 / b.tick_ns as f64).ceil() + f64::from(b.burst_ticks) + 1.0).max(1.0);
            let rate = b.rate_mean.max(b.mean_high) + 3.0 * b.rate_sigma;
            let per_tick = (rate * tick_s / f64::from(b.cover_packet_size.max(1))).ceil().max(1.0);
            2.0 * ticks * per_tick
        }
    };
    let total = real + cover_rows;
    if total >= u64::MAX as f64 { u64::MAX } else { total as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::{
        BaselineKind,
        packet::{Direction, Transport},
    };

    fn at(seconds: &[f64]) -> Vec<Packet> {
        seconds
            .iter()
            .map(|&t| Packet {
                time_ns: (t * 1e9) as i64,
                size: 100,
                direction: Direction::Out,
                transport: Transport::Tcp,
            })
            .collect()
    }

    #[test]
    fn active_time_merges_close_packets() {
        // Periods [0, 3] and [100, 100]: (3 + 5) + (0 + 5) seconds.
        assert_eq!(active_ns(&at(&[0.0, 1.0, 3.0, 100.0]), 5_000_000_000), 13_000_000_000);
        assert_eq!(active_ns(&[], 5_000_000_000), 0);
        assert_eq!(span_ns(&at(&[2.0, 7.5])), 5_500_000_000);
    }

    #[test]
    fn two_packets_ten_days_apart_bound_baselines_by_their_span_and_ipet_by_its_activity() {
        let p = at(&[0.0, 10.0 * 86_400.0]);
        let s = SimSettings::new(0.1, 5.0).expect("settings");
        let constant = Baseline::new(BaselineKind::Constant);
        let rows = output_rows_bound(&p, CoverKind::Baseline(&constant), &s);
        assert!(rows > 10_000_000, "{rows}: a constant baseline over 10 days is tens of millions of rows");
        let ipet = output_rows_bound(&p, CoverKind::Ipet { mode: Mode::Slotted, cap_packets: 4.0 }, &s);
        assert_eq!(ipet, 2 + 2 * 50 * 8);
    }
}
