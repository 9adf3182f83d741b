//! How much work a simulation asks for, known before it runs: the span of its trace and an upper
//! bound on the rows of its defended output, so that a service can refuse a job too large before
//! accepting it.

use super::{
    baselines::Baseline,
    packet::Packet,
    sets::SetPartition,
    simulate::{Mode, PadSettings, RegulatorSettings, SimSettings},
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

/// Nanoseconds from the first packet to the last (packets sorted by time). Unsigned and exact for
/// any two times: the difference of two `i64` times can pass `i64::MAX` (a trace from -5e9 s to
/// 5e9 s), and a wrapped, negative span would pass every bound.
pub fn span_ns(packets: &[Packet]) -> u64 {
    match (packets.first(), packets.last()) {
        (Some(a), Some(b)) => b.time_ns.abs_diff(a.time_ns),
        _ => 0,
    }
}

/// Nanoseconds from the earliest packet of any device to the latest (each device's packets sorted
/// by time), exact as [`span_ns`].
pub fn home_span_ns(packets: &[Vec<Packet>]) -> u64 {
    let first = packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min();
    let last = packets.iter().filter_map(|p| p.last()).map(|p| p.time_ns).max();
    match (first, last) {
        (Some(a), Some(b)) => b.abs_diff(a),
        _ => 0,
    }
}

/// Nanoseconds of cover time of iPET: each active period (packets closer than `active_gap`) from
/// its first packet to `active_gap` after its last. Summed in `i128`: no period wraps.
pub fn active_ns(packets: &[Packet], active_gap_ns: i64) -> u64 {
    let gap = i128::from(active_gap_ns.max(0));
    let mut total = 0i128;
    let mut start: Option<i128> = None;
    let mut last = 0i128;
    for p in packets {
        let t = i128::from(p.time_ns);
        match start {
            None => start = Some(t),
            Some(s) if t - last >= gap => {
                total += last - s + gap;
                start = Some(t);
            }
            Some(_) => {}
        }
        last = t;
    }
    if let Some(s) = start {
        total += last - s + gap;
    }
    u64::try_from(total.max(0)).unwrap_or(u64::MAX)
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

/// The set defense whose output is bounded ([`pad_output_rows_bound`]).
#[derive(Debug, Clone, Copy)]
pub enum PadCoverKind<'a> {
    Supersequence,
    Regulator(&'a RegulatorSettings),
    /// Target rows in windows of `slots_per_window` slots, a row for device `d`'s set at most
    /// `packets_per_row[d]` packets (both directions), fake windows at `fake_window_rate` per
    /// second and set.
    TargetRows {
        packets_per_row: &'a [u64],
        slots_per_window: u32,
        fake_window_rate: f64,
    },
}

/// The most target windows that real traffic can start in a set: a window starts at a slot where
/// a member has a packet pending and no window runs, and a packet waits at most the latency
/// budget, so the packets that start two windows arrive at least `window - budget` slots apart;
/// counted greedily over the members' packets (earliest first), which finds the most such starts.
fn demand_windows(
    packets: &[Vec<Packet>],
    members: &[usize],
    origin_ns: i64,
    settings: &PadSettings,
    window: i64,
) -> u64 {
    let omega = settings.omega_ns.max(1);
    let gap = window.saturating_sub(settings.latency_budget_ns.div_euclid(omega)).max(1);
    let mut slots: Vec<i64> = members
        .iter()
        .filter_map(|&d| packets.get(d))
        .flat_map(|p| {
            p.iter().map(|p| {
                let slot = (i128::from(p.time_ns) - i128::from(origin_ns)).div_euclid(i128::from(omega));
                i64::try_from(slot).unwrap_or(i64::MAX)
            })
        })
        .collect();
    slots.sort_unstable();
    let mut count = 0;
    let mut next = i64::MIN;
    for s in slots {
        if s >= next {
            count += 1;
            next = s.saturating_add(gap);
        }
    }
    count
}

/// An upper bound on the output rows of a home defended in the sets of `partition`
/// (`packets[id]`: device `id`'s packets in time order), every member's real packets included:
/// - supersequence: per slot and direction a member sends at most the largest pending packets of
///   any member plus the packets that carry the largest pending bytes (no more than that
///   member's packets) plus one, so each member at most 3 times its set's real packets;
/// - regulator: its rates summed over slots: every pending demand (real packets, counted again
///   for each slot they wait) surges the rate by `surge` times itself, which decays by the half-life
///   (a geometric sum), the ladder rounding up by at most `levels` (at least 2) on packets and
///   bytes, plus the floor's packets over the span;
/// - target rows: window slots (windows started by real packets, see `demand_windows`, and fake
///   windows at their mean plus six standard deviations over the span, never more slots than the
///   span has), each at most a row's packets, plus the member's real packets (leaked ones go
///   beyond the target).
pub fn pad_output_rows_bound(
    packets: &[Vec<Packet>],
    partition: &SetPartition,
    cover: PadCoverKind<'_>,
    settings: &PadSettings,
) -> u64 {
    let first = packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min().unwrap_or(0);
    let omega = settings.omega_ns.max(1) as f64;
    let span_ns = home_span_ns(packets) as f64 + settings.latency_budget_ns.max(0) as f64;
    let span_s = span_ns / 1e9;
    let span_slots = (span_ns / omega).ceil() + 1.0;
    let waits = 1.0 + (settings.latency_budget_ns as f64 / omega).ceil();
    let mut total = 0.0;
    for set in &partition.sets {
        let n = set.members.len() as f64;
        let real: f64 = set.members.iter().map(|&d| packets.get(d).map_or(0, Vec::len) as f64).sum();
        let per_member = match cover {
            PadCoverKind::Supersequence => 3.0 * real,
            PadCoverKind::Regulator(r) => {
                let demand = real * waits;
                let decay = 0.5f64.powf(omega / 1e9 / r.half_life);
                let ladder = r.levels.max(2.0);
                let surged = ladder * ladder * r.surge * demand / (1.0 - decay).max(1e-12);
                surged + 2.0 * ladder * demand + 2.0 * (r.floor_rate * span_s + 1.0) + real
            }
            PadCoverKind::TargetRows { packets_per_row, slots_per_window, fake_window_rate } => {
                let w = i64::from(slots_per_window.max(1));
                let fake = fake_window_rate * span_s;
                let windows =
                    demand_windows(packets, &set.members, first, settings, w) as f64 + fake + 6.0 * fake.sqrt() + 1.0;
                let slots = (windows * w as f64).min(span_slots + w as f64);
                let per_row = set.members.iter().filter_map(|&d| packets_per_row.get(d)).copied().max().unwrap_or(0);
                slots * per_row as f64 + real
            }
        };
        total += n * per_member;
    }
    if total >= u64::MAX as f64 { u64::MAX } else { total.ceil() as u64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AnonymitySet, FixedRows, RowSource,
        set_defense::{SetDefenseKind, SetDefenseSpec, SetKnobs},
        shaper::LagSettings,
    };
    use crate::{
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
    fn spans_past_i64_are_exact_and_never_negative() {
        // -5e9 s to 5e9 s: 1e19 ns, past i64::MAX; a wrapped span would pass every bound.
        let p = |t: i64| Packet { time_ns: t, size: 1, direction: Direction::In, transport: Transport::Tcp };
        let far = [p(-5_000_000_000_000_000_000), p(5_000_000_000_000_000_000)];
        assert_eq!(span_ns(&far), 10_000_000_000_000_000_000);
        assert_eq!(home_span_ns(&[vec![far[0]], vec![], vec![far[1]]]), 10_000_000_000_000_000_000);
        assert_eq!(span_ns(&[p(i64::MIN), p(i64::MAX)]), u64::MAX);
        assert!(active_ns(&far, 5_000_000_000) > 0);
        let s = SimSettings::new(0.1, 5.0).expect("settings");
        let constant = Baseline::new(BaselineKind::Constant);
        let rows = output_rows_bound(&far, CoverKind::Baseline(&constant), &s);
        assert!(rows > 1_000_000_000, "{rows}");
        let ipet = output_rows_bound(&far, CoverKind::Ipet { mode: Mode::Slotted, cap_packets: 4.0 }, &s);
        assert!(ipet < 1_000, "{ipet}: two packets far apart are two short active periods");
        let partition =
            SetPartition { sets: vec![AnonymitySet { name: "all".into(), members: vec![0, 1] }], excluded: vec![] };
        let pad = PadSettings::new(0.1, 0.0).expect("settings");
        let home = [vec![far[0]], vec![far[1]]];
        let r = RegulatorSettings { floor_rate: 1.0, ..RegulatorSettings::default() };
        assert!(pad_output_rows_bound(&home, &partition, PadCoverKind::Regulator(&r), &pad) > 1_000_000_000);
        let per_row = [9u64; 2];
        let kind = PadCoverKind::TargetRows { packets_per_row: &per_row, slots_per_window: 40, fake_window_rate: 0.2 };
        assert!(pad_output_rows_bound(&home, &partition, kind, &pad) > 1_000_000_000);
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

    /// Three devices: bursts of packets of mixed sizes and directions, with long silences.
    fn home() -> Vec<Vec<Packet>> {
        (0..3u32)
            .map(|d| {
                let mut p = Vec::new();
                for burst in 0..20i64 {
                    let start = burst * 37_000_000_000 + i64::from(d) * 1_300_000_000;
                    for k in 0..(5 + 7 * i64::from(d) + burst % 4) {
                        p.push(Packet {
                            time_ns: start + k * 23_000_000,
                            size: 40 + ((k as u32 * 397 + d * 131) % 1400),
                            direction: if (k + i64::from(d)) % 3 == 0 { Direction::In } else { Direction::Out },
                            transport: Transport::Tcp,
                        });
                    }
                }
                p
            })
            .collect()
    }

    /// Rows the simulator writes for `defense` on the home (target rows: a fixed schedule of
    /// `[3, 900, 6, 5000]`, in windows of 40 slots with fake windows at 0.2).
    fn output_rows(
        packets: &[Vec<Packet>],
        partition: &SetPartition,
        defense: SetDefenseKind,
        regulator: RegulatorSettings,
        latency_budget: f64,
    ) -> u64 {
        let knobs = SetKnobs {
            latency_budget,
            regulator,
            fake_window_rate: 0.2,
            seed: Some(7),
            release: LagSettings::default(),
        };
        let spec = SetDefenseSpec::new(defense, 0.1, Some(40), 4.0, knobs).expect("spec");
        let rows = (defense == SetDefenseKind::Targets).then(|| {
            Box::new(|_: usize, _: &AnonymitySet, _: Option<u64>| {
                Ok(Box::new(FixedRows::new(vec![[3, 900, 6, 5000]; 100_000])?) as Box<dyn RowSource>)
            }) as crate::set_defense::RowsFor<'_>
        });
        let names: Vec<String> = (0..packets.len()).map(|d| format!("d{d}")).collect();
        let mut out = 0u64;
        spec.defend(&names, packets, partition, rows, |_, _| {
            out += 1;
            Ok(())
        })
        .expect("defended");
        out
    }

    #[test]
    fn pad_to_target_output_stays_under_its_bound() {
        let packets = home();
        let partition =
            SetPartition { sets: vec![AnonymitySet { name: "all".into(), members: vec![0, 1, 2] }], excluded: vec![] };
        for budget in [0.0, 0.5] {
            let pad = PadSettings::new(0.1, budget).expect("settings");
            let rows =
                output_rows(&packets, &partition, SetDefenseKind::Supersequence, RegulatorSettings::default(), budget);
            let bound = pad_output_rows_bound(&packets, &partition, PadCoverKind::Supersequence, &pad);
            assert!(rows <= bound, "supersequence: {rows} rows, bound {bound}");

            let r = RegulatorSettings { floor_rate: 1.0, ..RegulatorSettings::default() };
            let rows = output_rows(&packets, &partition, SetDefenseKind::Regulator, r, budget);
            let bound = pad_output_rows_bound(&packets, &partition, PadCoverKind::Regulator(&r), &pad);
            assert!(rows <= bound, "regulator: {rows} rows, bound {bound}");

            let rows = output_rows(&packets, &partition, SetDefenseKind::Targets, RegulatorSettings::default(), budget);
            let per_row = [9u64; 3];
            let kind =
                PadCoverKind::TargetRows { packets_per_row: &per_row, slots_per_window: 40, fake_window_rate: 0.2 };
            let bound = pad_output_rows_bound(&packets, &partition, kind, &pad);
            assert!(rows <= bound, "targets: {rows} rows, bound {bound}");
            assert!(bound < 20 * rows, "targets: the bound {bound} is not wildly above the {rows} rows");
        }
    }
}
