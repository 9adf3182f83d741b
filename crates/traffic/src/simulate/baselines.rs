//! The paper's baseline defenses (reference doc, section 8), run by the same simulator
//! ([`super::simulate`] with [`super::Defense::Baseline`]).
//!
//! All three shape both directions the same way, on ticks of `tick` (0.1 s) aligned to the
//! trace's first packet, and go on or off together:
//! - **constant**: bursts of `burst_ticks` ticks (1 s) at a constant rate (10 KB/s), turned on at
//!   random with probability `on_probability` (0.2112, the q of stochastic traffic padding) on
//!   each tick while idle.
//! - **random**: the rate is drawn from Normal(`rate_mean` = 12.5 KB/s, `rate_sigma` = 5 KB/s),
//!   redrawn every `redraw` (5 s, on a clock aligned to the first packet); a burst keeps the rate
//!   current when it starts; `on_probability` 0.5. The paper gives no sigma: 5 KB/s (40% of the
//!   mean) is our choice, below random+'s 10 KB/s. Non-positive draws are drawn again (a
//!   truncated normal), so a burst never stalls at rate 0.
//! - **random+**: as random, but at every redraw the mean itself is first drawn uniformly from
//!   `[mean_low, mean_high]` (5-40 KB/s), with `rate_sigma` = 10 KB/s.
//!
//! KB is 1000 bytes; the rate applies to EACH direction, in transport payload bytes.
//!
//! Buffering, precisely. Real packets are queued per direction (first in, first out) when they
//! arrive; at tick `tau` the queue holds every packet that arrived at or before `tau`.
//! - Idle tick: a non-empty queue starts a burst at this tick (real traffic turns the defense on);
//!   otherwise a burst starts with probability `on_probability`. An idle tick sends nothing.
//! - Burst tick: each direction gains `rate * tick` bytes of credit. Queued real packets go first,
//!   whole, while the credit is positive (one may overdraw it; the debt is paid by the following
//!   burst ticks, so output never runs ahead of the budget by more than one packet). If the queue
//!   is then empty, the remaining whole bytes of credit are sent as cover, in packets of
//!   `cover_packet_size` (1460, a TCP MSS on Ethernet) and one smaller rest; the fraction of a
//!   byte stays as credit. So while real traffic is light, every burst tick sends exactly its
//!   byte budget, real bytes first, the rest dummy.
//! - A tick's packets of one direction are spread evenly over the tick: the k-th of n at
//!   `tau + k * tick / n`, real ones first.
//! - Latency of a real packet = its send time minus its arrival (under one tick while the rate
//!   keeps up; the queue's wait on top when it does not).
//! - After the trace's last packet, the simulation runs until the queues are empty and the
//!   current burst is over.
//!
//! All random choices come from one ChaCha20 stream: a seed makes a run reproducible.

use std::collections::VecDeque;

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use super::{Emitter, Input, OutputPacket};
use crate::{
    error::{Error, ErrorCode, Result},
    noise,
    packet::{Direction, Packet},
};

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BaselineKind {
    #[serde(rename = "constant")]
    Constant,
    #[serde(rename = "random")]
    Random,
    #[serde(rename = "random+")]
    RandomPlus,
}

impl BaselineKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Constant => "constant",
            Self::Random => "random",
            Self::RandomPlus => "random+",
        }
    }
}

impl std::fmt::Display for BaselineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A baseline and every one of its parameters ([`Baseline::new`] gives the paper's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Baseline {
    pub kind: BaselineKind,
    /// Tick length, nanoseconds (0.1 s).
    pub tick_ns: i64,
    /// Burst length in ticks (10: 1 s).
    pub burst_ticks: u32,
    /// Probability that an idle tick turns the defense on.
    pub on_probability: f64,
    /// Rate, bytes per second per direction (constant: the rate; random: the normal's mean;
    /// random+: unused, the mean is drawn from `mean_low..mean_high`).
    pub rate_mean: f64,
    /// Standard deviation of the rate, bytes per second (random, random+).
    pub rate_sigma: f64,
    /// random+: range of the mean, bytes per second.
    pub mean_low: f64,
    pub mean_high: f64,
    /// How often the rate is redrawn, nanoseconds (random, random+).
    pub redraw_ns: i64,
    /// Payload bytes of a full cover packet.
    pub cover_packet_size: u32,
    /// Random bursts start only up to this long after the last real packet (None: any time,
    /// the paper's baselines), so that a trace spread over months is not months of cover.
    #[serde(default)]
    pub idle_cover_ns: Option<i64>,
}

impl Baseline {
    /// The paper's parameters for `kind`.
    pub fn new(kind: BaselineKind) -> Self {
        let (on_probability, rate_mean, rate_sigma) = match kind {
            BaselineKind::Constant => (0.2112, 10_000.0, 0.0),
            BaselineKind::Random => (0.5, 12_500.0, 5_000.0),
            BaselineKind::RandomPlus => (0.5, 22_500.0, 10_000.0),
        };
        Self {
            kind,
            tick_ns: 100_000_000,
            burst_ticks: 10,
            on_probability,
            rate_mean,
            rate_sigma,
            mean_low: 5_000.0,
            mean_high: 40_000.0,
            redraw_ns: 5_000_000_000,
            cover_packet_size: 1460,
            idle_cover_ns: None,
        }
    }

    pub fn constant() -> Self {
        Self::new(BaselineKind::Constant)
    }

    pub fn random() -> Self {
        Self::new(BaselineKind::Random)
    }

    pub fn random_plus() -> Self {
        Self::new(BaselineKind::RandomPlus)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::invalid(ErrorCode::InvalidBaseline, m.to_string()));
        let finite = |v: f64| v.is_finite() && v >= 0.0;
        if self.tick_ns <= 0 || self.redraw_ns <= 0 {
            return bad("tick and redraw intervals must be positive");
        }
        if self.burst_ticks == 0 {
            return bad("a burst must last at least one tick");
        }
        if !(0.0..=1.0).contains(&self.on_probability) {
            return bad("on_probability must be between 0 and 1");
        }
        if !(finite(self.rate_mean) && finite(self.rate_sigma) && finite(self.mean_low) && finite(self.mean_high)) {
            return bad("rates must be finite and not negative");
        }
        if self.mean_low > self.mean_high {
            return bad("mean_low must not exceed mean_high");
        }
        if self.idle_cover_ns.is_some_and(|n| n < 0) {
            return bad("idle_cover must not be negative");
        }
        if self.cover_packet_size == 0 {
            return bad("cover_packet_size must be at least 1 byte");
        }
        Ok(())
    }

    /// A rate for the next redraw interval, bytes per second.
    fn draw_rate(&self, rng: &mut impl Rng) -> f64 {
        let mean = match self.kind {
            BaselineKind::Constant => return self.rate_mean,
            BaselineKind::Random => self.rate_mean,
            BaselineKind::RandomPlus => {
                if self.mean_high > self.mean_low {
                    rng.random_range(self.mean_low..=self.mean_high)
                } else {
                    self.mean_low
                }
            }
        };
        let Ok(normal) = Normal::new(mean, self.rate_sigma) else {
            return mean;
        };
        (0..1000).map(|_| normal.sample(rng)).find(|&r| r > 0.0).unwrap_or(mean)
    }
}

/// A packet leaving at a tick: a real one, or cover of this many bytes.
#[derive(Clone, Copy)]
enum Send {
    Real(Packet),
    Dummy(u32),
}

pub(crate) fn run<I: Iterator<Item = Packet>, S: FnMut(&OutputPacket) -> Result<()>>(
    input: &mut Input<I>,
    b: &Baseline,
    seed: Option<u64>,
    out: &mut Emitter<S>,
) -> Result<()> {
    b.validate()?;
    let mut rng = noise::rng(seed);
    let Some(first) = input.next()? else {
        return Ok(());
    };
    let t0 = first.time_ns;
    out.start_ns = Some(t0);
    let tick_s = b.tick_ns as f64 * 1e-9;
    let mut pending = Some(first);
    let mut queues: [VecDeque<Packet>; 2] = [VecDeque::new(), VecDeque::new()];
    let mut sends: [Vec<Send>; 2] = [Vec::new(), Vec::new()];
    let mut credit = [0f64; 2];
    let mut burst_left = 0u32;
    let mut burst_rate = 0f64;
    let mut epoch_rate = b.draw_rate(&mut rng);
    let mut next_redraw = t0 + b.redraw_ns;
    let cover = f64::from(b.cover_packet_size);
    let mut tick: i64 = 0;
    let mut last_real = t0;
    loop {
        let tau = t0 + tick * b.tick_ns;
        tick += 1;
        while let Some(p) = pending {
            if p.time_ns > tau {
                break;
            }
            last_real = p.time_ns;
            queues[p.direction.index()].push_back(p);
            pending = input.next()?;
        }
        let queued = !(queues[0].is_empty() && queues[1].is_empty());
        if pending.is_none() && !queued && burst_left == 0 {
            return Ok(());
        }
        while tau >= next_redraw {
            epoch_rate = b.draw_rate(&mut rng);
            next_redraw += b.redraw_ns;
        }
        let may_cover = b.idle_cover_ns.is_none_or(|idle| tau - last_real <= idle);
        if burst_left == 0 && (queued || (may_cover && rng.random::<f64>() < b.on_probability)) {
            burst_left = b.burst_ticks;
            burst_rate = epoch_rate;
        }
        if burst_left == 0 {
            continue;
        }
        burst_left -= 1;
        out.active_ns += b.tick_ns;
        for d in 0..2 {
            let list = &mut sends[d];
            list.clear();
            credit[d] += burst_rate * tick_s;
            while credit[d] > 0.0 {
                let Some(p) = queues[d].pop_front() else {
                    break;
                };
                credit[d] -= f64::from(p.size);
                list.push(Send::Real(p));
            }
            if queues[d].is_empty() && credit[d] >= 1.0 {
                let mut bytes = credit[d].floor();
                credit[d] -= bytes;
                while bytes > 0.0 {
                    let n = bytes.min(cover);
                    list.push(Send::Dummy(n as u32));
                    bytes -= n;
                }
            }
        }
        // Spread each direction's packets over the tick and merge them in time order.
        let at = |k: usize, n: usize| tau + (k as i128 * i128::from(b.tick_ns) / n as i128) as i64;
        let (n_in, n_out) = (sends[0].len(), sends[1].len());
        let (mut i, mut o) = (0, 0);
        while i < n_in || o < n_out {
            let take_in = o >= n_out || (i < n_in && at(i, n_in) <= at(o, n_out));
            let (d, k, n) = if take_in { (0, i, n_in) } else { (1, o, n_out) };
            let t = at(k, n);
            match sends[d][k] {
                Send::Real(p) => out.real(&p, t)?,
                Send::Dummy(size) => {
                    out.dummy(t, if d == 0 { Direction::In } else { Direction::Out }, f64::from(size))?
                }
            }
            if take_in {
                i += 1;
            } else {
                o += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        packet::Transport,
        simulate::{Defense, SimSettings, Summary, simulate},
    };

    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;

    fn pkt(t_ns: i64, direction: Direction, size: u32) -> Packet {
        Packet { time_ns: t_ns, size, direction, transport: Transport::Udp }
    }

    fn run(trace: &[Packet], baseline: Baseline, seed: u64) -> (Vec<OutputPacket>, Summary) {
        let mut out = Vec::new();
        let s = simulate(
            trace.iter().copied(),
            Defense::Baseline { baseline, seed: Some(seed) },
            &SimSettings::default(),
            |p| {
                out.push(*p);
                Ok(())
            },
        )
        .expect("simulate");
        (out, s)
    }

    /// Bytes per (tick index, direction, dummy) from t0.
    fn per_tick(out: &[OutputPacket], t0: i64, d: Direction) -> Vec<(i64, f64, f64)> {
        let mut v: Vec<(i64, f64, f64)> = Vec::new();
        for p in out.iter().filter(|p| p.direction == d) {
            let k = (p.time_ns - t0) / (100 * MS);
            if v.last().is_none_or(|l| l.0 != k) {
                v.push((k, 0.0, 0.0));
            }
            let l = v.last_mut().expect("tick");
            if p.dummy {
                l.2 += p.size;
            } else {
                l.1 += p.size;
            }
        }
        v
    }

    fn quiet(kind: BaselineKind) -> Baseline {
        Baseline { on_probability: 0.0, ..Baseline::new(kind) }
    }

    #[test]
    fn the_paper_defaults_are_the_fields_defaults() {
        let c = Baseline::constant();
        assert_eq!((c.tick_ns, c.burst_ticks, c.on_probability, c.rate_mean), (100 * MS, 10, 0.2112, 10_000.0));
        let r = Baseline::random();
        assert_eq!((r.on_probability, r.rate_mean, r.redraw_ns), (0.5, 12_500.0, 5 * S));
        let p = Baseline::random_plus();
        assert_eq!((p.mean_low, p.mean_high, p.rate_sigma), (5_000.0, 40_000.0, 10_000.0));
        assert!(Baseline { on_probability: 1.5, ..c.clone() }.validate().is_err());
        assert!(Baseline { burst_ticks: 0, ..c.clone() }.validate().is_err());
        assert!(Baseline { cover_packet_size: 0, ..c }.validate().is_err());
    }

    #[test]
    fn a_burst_sends_exactly_its_budget_per_tick_real_bytes_first() {
        // One incoming packet of 300 bytes; bursts only when real traffic asks (q = 0).
        let t0 = 10 * S;
        let (out, s) = run(&[pkt(t0, Direction::In, 300)], quiet(BaselineKind::Constant), 1);
        let ins = per_tick(&out, t0, Direction::In);
        let outs = per_tick(&out, t0, Direction::Out);
        assert_eq!(ins.len(), 10);
        assert_eq!(ins[0], (0, 300.0, 700.0));
        for k in 1..10 {
            assert_eq!(ins[k], (k as i64, 0.0, 1000.0));
            assert_eq!(outs[k], (k as i64, 0.0, 1000.0));
        }
        assert_eq!(outs[0], (0, 0.0, 1000.0));
        assert_eq!((s.incoming.real_bytes + s.incoming.dummy_bytes, s.outgoing.dummy_bytes), (10_000, 10_000));
        assert_eq!(s.active_time_s, 1.0);
        assert_eq!(s.latency.max_s, 0.0);
        assert_eq!(out[0].time_ns, t0);
        assert!(!out[0].dummy);
    }

    #[test]
    fn real_packets_wait_for_the_next_tick_and_for_the_budget() {
        let t0 = 0;
        // A packet at t0 starts the clock; one 30 ms later waits 70 ms for tick 1; five
        // 1000-byte packets at 2 s exceed the 1000-byte budget and go out one per tick.
        let mut trace = vec![pkt(t0, Direction::Out, 10), pkt(30 * MS, Direction::Out, 20)];
        trace.extend((0..5).map(|_| pkt(2 * S, Direction::Out, 1000)));
        let (out, s) = run(&trace, quiet(BaselineKind::Constant), 1);
        let real: Vec<(i64, i64)> = out.iter().filter(|p| !p.dummy).map(|p| (p.time_ns, p.delay_ns)).collect();
        assert_eq!(real[0], (0, 0));
        assert_eq!(real[1], (100 * MS, 70 * MS));
        let burst: Vec<i64> = real[2..].iter().map(|r| r.1).collect();
        assert_eq!(burst, vec![0, 100 * MS, 200 * MS, 300 * MS, 400 * MS]);
        // No outgoing cover while the queue drains.
        let outs = per_tick(&out, t0, Direction::Out);
        for k in 20..25 {
            assert_eq!(outs.iter().find(|t| t.0 == k).expect("tick").2, 0.0, "tick {k}");
        }
        assert_eq!(s.total.real_packets, 7);
        assert_eq!(s.latency.max_s, 0.4);
        assert!(s.latency.mean_s > 0.0 && s.latency.p99_s <= s.latency.max_s);
        assert!(out.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
    }

    #[test]
    fn cover_goes_in_mtu_sized_chunks_spread_over_the_tick() {
        let b = Baseline { rate_mean: 35_000.0, ..quiet(BaselineKind::Constant) };
        let (out, _) = run(&[pkt(0, Direction::In, 0)], b, 1);
        let tick0: Vec<(i64, f64)> = out
            .iter()
            .filter(|p| p.direction == Direction::Out && p.time_ns < 100 * MS)
            .map(|p| (p.time_ns, p.size))
            .collect();
        assert_eq!(tick0, vec![(0, 1460.0), (100 * MS / 3, 1460.0), (200 * MS / 3, 580.0)]);
    }

    #[test]
    fn a_seed_makes_a_run_reproducible() {
        let trace: Vec<Packet> = (0..200)
            .map(|i| pkt(i * 777 * MS, if i % 3 == 0 { Direction::In } else { Direction::Out }, 100 + i as u32))
            .collect();
        for kind in [BaselineKind::Constant, BaselineKind::Random, BaselineKind::RandomPlus] {
            let (a, sa) = run(&trace, Baseline::new(kind), 42);
            let (b, sb) = run(&trace, Baseline::new(kind), 42);
            let (c, _) = run(&trace, Baseline::new(kind), 43);
            assert_eq!(a, b, "{kind}");
            assert_eq!(sa, sb, "{kind}");
            assert_ne!(a, c, "{kind}");
            assert_eq!(sa.total.real_packets, 200, "{kind}");
            let real: Vec<(Direction, u32)> =
                a.iter().filter(|p| !p.dummy).map(|p| (p.direction, p.size as u32)).collect();
            let want: Vec<(Direction, u32)> = trace.iter().map(|p| (p.direction, p.size)).collect();
            let sorted = |mut v: Vec<(Direction, u32)>| {
                v.sort_by_key(|x| (x.0 == Direction::Out, x.1));
                v
            };
            assert_eq!(sorted(real), sorted(want), "{kind}");
            assert!(a.windows(2).all(|w| w[0].time_ns <= w[1].time_ns), "{kind}");
            assert!(sa.active_time_s > 0.0 && sa.total.bandwidth_overhead.expect("overhead") > 0.0);
        }
    }

    #[test]
    fn idle_ticks_turn_the_defense_on_with_the_set_probability() {
        // Two packets 1000 s apart: about q of the idle ticks start a 10-tick burst, so the
        // share of time on is about 10q / (1 + 10q) (in expectation; seeded, so exact).
        let trace = [pkt(0, Direction::In, 1), pkt(1000 * S, Direction::In, 1)];
        let (_, s) = run(&trace, Baseline::constant(), 7);
        let share = s.active_time_s / 1000.0;
        let q: f64 = 0.2112;
        let expect = 10.0 * q / (1.0 + 10.0 * q - q);
        assert!((share - expect).abs() < 0.03, "on {share}, expected about {expect}");
        let always = Baseline { on_probability: 1.0, ..Baseline::constant() };
        let (_, s) = run(&trace, always, 7);
        assert!((s.active_time_s - 1001.0).abs() < 1e-6, "{}", s.active_time_s);
        // Constant rate: 1000 bytes per tick per direction while on.
        assert_eq!(s.outgoing.dummy_bytes, 10_010 * 1000);
    }

    #[test]
    fn idle_cover_stops_random_bursts_after_the_last_real_packet() {
        // Always on while allowed: cover runs for about 10 s after the first packet (11 bursts of
        // 1 s), not the 1000 s until the second one, whose burst ends the run.
        let trace = [pkt(0, Direction::In, 1), pkt(1000 * S, Direction::In, 1)];
        let capped = Baseline { on_probability: 1.0, idle_cover_ns: Some(10 * S), ..Baseline::constant() };
        let (out, s) = run(&trace, capped, 7);
        assert!(s.active_time_s >= 11.0 && s.active_time_s <= 13.0, "{}", s.active_time_s);
        assert!(out.iter().filter(|p| p.dummy).all(|p| p.time_ns <= 12 * S || p.time_ns >= 1000 * S));
        assert!(Baseline { idle_cover_ns: Some(-1), ..Baseline::constant() }.validate().is_err());
    }

    #[test]
    fn random_rates_follow_their_distributions() {
        let mut rng = noise::rng(Some(3));
        let r = Baseline::random();
        let draws: Vec<f64> = (0..20_000).map(|_| r.draw_rate(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(draws.iter().all(|&d| d > 0.0));
        assert!((mean - 12_500.0).abs() < 200.0, "{mean}");
        let p = Baseline::random_plus();
        let draws: Vec<f64> = (0..20_000).map(|_| p.draw_rate(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!(draws.iter().all(|&d| d > 0.0));
        // Mean of U(5k, 40k) is 22.5k; truncating the normal at 0 lifts it a little.
        assert!(mean > 22_000.0 && mean < 24_500.0, "{mean}");
        assert_eq!(Baseline::constant().draw_rate(&mut rng), 10_000.0);
    }

    #[test]
    fn random_rates_change_only_at_redraws_and_a_burst_keeps_its_rate() {
        let trace = [pkt(0, Direction::In, 0), pkt(60 * S, Direction::In, 0)];
        let b = Baseline { on_probability: 1.0, ..Baseline::random() };
        let (out, _) = run(&trace, b, 5);
        let outs = per_tick(&out, 0, Direction::Out);
        // Ticks 0..50 are five bursts of the first 5 s interval: same budget (give or take
        // the carried fraction of a byte).
        let first: Vec<f64> = outs[..50].iter().map(|t| t.2).collect();
        assert!(first.iter().all(|&b| (b - first[0]).abs() <= 1.0), "{first:?}");
        let later: Vec<f64> = outs[50..100].iter().map(|t| t.2).collect();
        assert!((later[0] - first[0]).abs() > 1.0, "the rate was redrawn at 5 s");
    }
}
