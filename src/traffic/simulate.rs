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

use std::{
    fs::File,
    io::{BufWriter, Seek, SeekFrom, Write},
    path::Path,
    sync::Arc,
};

use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    baselines::{self, Baseline},
    packet::{Direction, Packet, Transport, secs_to_ns},
};
use crate::{
    error::{Error, Result},
    models::{
        Engine, GenerationChoice,
        schedule::{self, Schedule},
    },
};

/// The columns of an output row, in order.
pub const OUTPUT_COLUMNS: [&str; 4] = ["direction", "is_dummy", "size_bytes", "time_s"];

/// How iPET cover is laid over the trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, clap::ValueEnum)]
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
        let bad = |m: String| Error::invalid("invalid_simulation_settings", m);
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

// ---------------------------------------------------------------------------------------------
// Row sources

/// Where perturbation rows `[in_packets, in_bytes, out_packets, out_bytes]` come from, one at a
/// time, in schedule order. `Ok(None)`: the schedule is used up.
pub trait RowSource {
    fn next_row(&mut self) -> Result<Option<[i32; 4]>>;
}

/// A fixed schedule, e.g. a reference-style `.npy` of shape `[rows, 4]`.
#[derive(Debug, Clone, Default)]
pub struct FixedRows {
    rows: Vec<[i32; 4]>,
    next: usize,
}

impl FixedRows {
    /// Refuses negative values.
    pub fn new(rows: Vec<[i32; 4]>) -> Result<Self> {
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.iter().any(|&v| v < 0)) {
            return Err(Error::invalid(
                "invalid_schedule",
                format!("schedule row {i} is {r:?}: packet and byte counts cannot be negative"),
            ));
        }
        Ok(Self { rows, next: 0 })
    }

    pub fn from_schedule(s: &Schedule) -> Result<Self> {
        Self::new(s.row_arrays())
    }

    /// A `.npy` array whose last axis has length 4 (`[rows, 4]`, or `[windows, slots, 4]`), of
    /// any integer or float dtype; floats must be whole numbers.
    pub fn from_npy_bytes(bytes: &[u8]) -> Result<Self> {
        Self::new(read_rows_npy(bytes)?)
    }

    pub fn from_npy_path(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Self::from_npy_bytes(&bytes).map_err(|e| match e {
            Error::InvalidInput { code, message } => Error::invalid(code, format!("{}: {message}", path.display())),
            other => other,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows not yet consumed.
    pub fn remaining(&self) -> usize {
        self.rows.len() - self.next
    }
}

impl RowSource for FixedRows {
    fn next_row(&mut self) -> Result<Option<[i32; 4]>> {
        let r = self.rows.get(self.next).copied();
        if r.is_some() {
            self.next += 1;
        }
        Ok(r)
    }
}

fn read_rows_npy(bytes: &[u8]) -> Result<Vec<[i32; 4]>> {
    use ndarray::ArrayD;
    use ndarray_npy::{ReadNpyError, ReadNpyExt};

    fn flatten<T: Copy>(a: ArrayD<T>, conv: impl Fn(T) -> Option<i32>) -> Result<Vec<[i32; 4]>> {
        let shape = a.shape().to_vec();
        if shape.last() != Some(&4) || shape.len() < 2 {
            return Err(Error::invalid(
                "invalid_schedule",
                format!("the schedule has shape {shape:?}; expected [rows, 4] (or [windows, slots, 4])"),
            ));
        }
        let values: Vec<T> = a.iter().copied().collect();
        let mut rows = Vec::with_capacity(values.len() / 4);
        for (i, c) in values.chunks_exact(4).enumerate() {
            let mut r = [0i32; 4];
            for (k, v) in c.iter().enumerate() {
                r[k] = conv(*v).ok_or_else(|| {
                    Error::invalid(
                        "invalid_schedule",
                        format!("schedule row {i}, column {k}: not a whole number from 0 to {}", i32::MAX),
                    )
                })?;
            }
            rows.push(r);
        }
        Ok(rows)
    }
    fn int<T: TryInto<i32>>(v: T) -> Option<i32> {
        v.try_into().ok()
    }
    fn float(v: f64) -> Option<i32> {
        (v.is_finite() && v.fract() == 0.0 && v >= f64::from(i32::MIN) && v <= f64::from(i32::MAX)).then_some(v as i32)
    }
    let bad = |e: ReadNpyError| Error::invalid("invalid_schedule", format!("not a readable .npy array: {e}"));
    macro_rules! attempt {
        ($t:ty, $conv:expr) => {
            match ArrayD::<$t>::read_npy(bytes) {
                Ok(a) => return flatten(a, $conv),
                Err(ReadNpyError::WrongDescriptor(_)) => {}
                Err(e) => return Err(bad(e)),
            }
        };
    }
    attempt!(i32, Some);
    attempt!(i64, int);
    attempt!(f64, float);
    attempt!(f32, |v: f32| float(f64::from(v)));
    attempt!(i16, |v: i16| Some(i32::from(v)));
    attempt!(u16, |v: u16| Some(i32::from(v)));
    attempt!(u8, |v: u8| Some(i32::from(v)));
    attempt!(i8, |v: i8| Some(i32::from(v)));
    attempt!(u32, int);
    attempt!(u64, int);
    Err(Error::invalid("invalid_schedule", "the .npy array's dtype is not an integer or float type"))
}

/// Rows drawn from a device's generators on demand: `chunk` windows at a time, each window with
/// fresh noise (and, for `mix`, a fresh random generation), through [`Engine::schedule_blocking`].
/// Never runs out. Blocks on inference: call from a blocking thread (`spawn_blocking`), never
/// from an async task.
pub struct GeneratorRows {
    engine: Arc<Engine>,
    device: usize,
    choice: GenerationChoice,
    chunk: usize,
    rng: ChaCha20Rng,
    values: Vec<i32>,
    at: usize,
    windows_drawn: u64,
}

impl GeneratorRows {
    /// `seed`: reproducible noise; None draws the seed from the operating system.
    pub fn new(
        engine: Arc<Engine>,
        device: usize,
        choice: GenerationChoice,
        chunk: usize,
        seed: Option<u64>,
    ) -> Result<Self> {
        let set = engine.model_set();
        if device >= set.files.len() {
            return Err(Error::not_found("unknown_device", format!("device index {device} is not in the model set")));
        }
        if let GenerationChoice::Index(g) = choice
            && g >= set.generations()
        {
            return Err(Error::not_found("unknown_generation", format!("generation {g} does not exist")));
        }
        Ok(Self {
            engine,
            device,
            choice,
            chunk: chunk.max(1),
            rng: schedule::rng(seed),
            values: Vec::new(),
            at: 0,
            windows_drawn: 0,
        })
    }

    /// Windows drawn from the generators so far.
    pub fn windows_drawn(&self) -> u64 {
        self.windows_drawn
    }
}

impl RowSource for GeneratorRows {
    fn next_row(&mut self) -> Result<Option<[i32; 4]>> {
        if self.at + 4 > self.values.len() {
            let set = self.engine.model_set();
            let (generations, z) =
                schedule::draw(self.chunk, set.latent_dim(), self.choice, set.generations(), &mut self.rng);
            let s = self.engine.schedule_blocking(self.device, generations, z)?;
            self.windows_drawn += s.windows() as u64;
            self.values = s.values;
            self.at = 0;
            if self.values.len() < 4 {
                return Err(Error::Internal("the generator returned an empty schedule".into()));
            }
        }
        let v = &self.values[self.at..self.at + 4];
        self.at += 4;
        Ok(Some([v[0].max(0), v[1].max(0), v[2].max(0), v[3].max(0)]))
    }
}

// ---------------------------------------------------------------------------------------------
// Summary

/// Packets and bytes of one direction (or both), and what the cover cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct LatencySummary {
    pub mean_s: f64,
    /// Quantiles from a log-linear histogram (64 buckets per power of two: within 1.6%, rounded
    /// up, never above the maximum).
    pub p50_s: f64,
    pub p99_s: f64,
    pub max_s: f64,
}

/// What a simulation sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
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

    fn summary(&self) -> LatencySummary {
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
        let d = dir_index(p.direction);
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

#[inline]
fn dir_index(d: Direction) -> usize {
    match d {
        Direction::In => 0,
        Direction::Out => 1,
    }
}

/// The input, checked to be in time order.
pub(crate) struct Input<I> {
    it: I,
    prev: i64,
}

impl<I: Iterator<Item = Packet>> Input<I> {
    pub(crate) fn new(it: I) -> Self {
        Self { it, prev: i64::MIN }
    }

    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Packet>> {
        match self.it.next() {
            Some(p) if p.time_ns < self.prev => Err(Error::invalid(
                "unsorted_trace",
                format!("the trace is not in time order: a packet at {} ns follows one at {} ns", p.time_ns, self.prev),
            )),
            Some(p) => {
                self.prev = p.time_ns;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The simulation

/// Defends one device's trace (`packets` in time order, else `unsorted_trace`), handing each
/// output packet to `sink` in time order, and returns what was sent.
pub fn simulate(
    packets: impl IntoIterator<Item = Packet>,
    defense: Defense<'_>,
    settings: &SimSettings,
    sink: impl FnMut(&OutputPacket) -> Result<()>,
) -> Result<Summary> {
    if settings.omega_ns <= 0 || settings.active_gap_ns < settings.omega_ns {
        return Err(Error::invalid("invalid_simulation_settings", "need 0 < omega <= active_gap"));
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

/// One slot's cover in slotted mode.
///
/// Placement: the slot's `m` incoming dummies at `s + (4j+1)*w/(4m)` and its `n` outgoing ones at
/// `s + (4j+3)*w/(4n)` (`s` the slot start, `w` its width, integer nanoseconds rounded down).
/// Spreading them evenly, rather than bursting them at one tick, keeps each packet strictly
/// inside its slot (the offsets run from w/(4m) to w - w/(4m) < w), so a feature extractor whose
/// slots are aligned to the period's first packet counts exactly the row the generator produced,
/// and it looks like traffic rather than a machine-gun burst at a tick. The quarter offsets keep
/// incoming and outgoing dummies of equal count from sharing timestamps.
struct SlotCover {
    start: i64,
    width: i64,
    row: [i32; 4],
    next_in: i32,
    next_out: i32,
}

impl SlotCover {
    #[inline]
    fn time(&self, j: i32, count: i32, quarter: i64) -> i64 {
        let num = (4 * i128::from(j) + i128::from(quarter)) * i128::from(self.width);
        self.start + (num / (4 * i128::from(count))) as i64
    }

    #[inline]
    fn size(j: i32, count: i32, bytes: i32) -> f64 {
        f64::from(bytes / count + i32::from(j < bytes % count))
    }

    /// The next dummy: (time, direction, size); incoming first on a tie.
    #[inline]
    fn peek(&self) -> Option<(i64, Direction, f64)> {
        let [ip, ib, op, ob] = self.row;
        let a = (self.next_in < ip)
            .then(|| (self.time(self.next_in, ip, 1), Direction::In, Self::size(self.next_in, ip, ib)));
        let b = (self.next_out < op)
            .then(|| (self.time(self.next_out, op, 3), Direction::Out, Self::size(self.next_out, op, ob)));
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.0 < x.0 { y } else { x }),
            (x, y) => x.or(y),
        }
    }

    #[inline]
    fn advance(&mut self, d: Direction) {
        match d {
            Direction::In => self.next_in += 1,
            Direction::Out => self.next_out += 1,
        }
    }
}

struct Period {
    start: i64,
    last: i64,
    next_slot: i64,
    slot: Option<SlotCover>,
}

struct Slotted<'r> {
    omega: i64,
    gap: i64,
    rows: &'r mut dyn RowSource,
    exhausted: bool,
}

impl Slotted<'_> {
    /// Emits the period's cover: everything before `limit`, or, when `closing`, all of it up to
    /// `last + gap`.
    fn cover<S: FnMut(&OutputPacket) -> Result<()>>(
        &mut self,
        p: &mut Period,
        limit: i64,
        closing: bool,
        out: &mut Emitter<S>,
    ) -> Result<()> {
        let end = p.last + self.gap;
        loop {
            if let Some(slot) = &mut p.slot {
                while let Some((t, d, size)) = slot.peek() {
                    if !closing && t >= limit {
                        return Ok(());
                    }
                    out.dummy(t, d, size)?;
                    slot.advance(d);
                }
                p.slot = None;
            }
            let s = p.start + p.next_slot * self.omega;
            if s >= end || (!closing && s >= limit) {
                return Ok(());
            }
            p.next_slot += 1;
            let row = if self.exhausted { None } else { self.rows.next_row()? };
            match row {
                Some(row) => {
                    out.rows_used += 1;
                    let width = self.omega.min(end - s);
                    p.slot = Some(SlotCover { start: s, width, row, next_in: 0, next_out: 0 });
                }
                None => {
                    self.exhausted = true;
                    out.slots_without_cover += 1;
                }
            }
        }
    }
}

fn slotted<I: Iterator<Item = Packet>, S: FnMut(&OutputPacket) -> Result<()>>(
    input: &mut Input<I>,
    rows: &mut dyn RowSource,
    settings: &SimSettings,
    out: &mut Emitter<S>,
) -> Result<()> {
    let mut sim = Slotted { omega: settings.omega_ns, gap: settings.active_gap_ns, rows, exhausted: false };
    let mut period: Option<Period> = None;
    while let Some(pkt) = input.next()? {
        let t = pkt.time_ns;
        out.start_ns.get_or_insert(t);
        match &mut period {
            Some(p) if t - p.last < sim.gap => {
                p.last = t;
                sim.cover(p, t, false, out)?;
            }
            _ => {
                if let Some(mut p) = period.take() {
                    sim.cover(&mut p, i64::MAX, true, out)?;
                    out.active_ns += p.last + sim.gap - p.start;
                }
                period = Some(Period { start: t, last: t, next_slot: 0, slot: None });
            }
        }
        out.real(&pkt, t)?;
    }
    if let Some(mut p) = period.take() {
        sim.cover(&mut p, i64::MAX, true, out)?;
        out.active_ns += p.last + sim.gap - p.start;
    }
    Ok(())
}

/// The published simulator's ticks of one period.
struct RefPeriod {
    start: i64,
    last: i64,
    /// Next incoming tick index and next outgoing tick index.
    k_in: i64,
    k_out: i64,
}

struct Reference<'r> {
    omega: i64,
    half: i64,
    gap: i64,
    rows: &'r mut dyn RowSource,
    exhausted: bool,
}

impl Reference<'_> {
    /// Emits the ticks before `limit` (ticks never reach `last + gap`).
    fn ticks<S: FnMut(&OutputPacket) -> Result<()>>(
        &mut self,
        p: &mut RefPeriod,
        limit: i64,
        out: &mut Emitter<S>,
    ) -> Result<()> {
        let end = (p.last + self.gap).min(limit);
        loop {
            let t_in = p.start + p.k_in * self.omega;
            let t_out = p.start + self.half + p.k_out * self.omega;
            let (t, d) = if t_in <= t_out { (t_in, Direction::In) } else { (t_out, Direction::Out) };
            if t >= end {
                return Ok(());
            }
            match d {
                Direction::In => p.k_in += 1,
                Direction::Out => p.k_out += 1,
            }
            // The defect: one row iterator for both directions.
            let row = if self.exhausted { None } else { self.rows.next_row()? };
            let Some(row) = row else {
                self.exhausted = true;
                out.slots_without_cover += 1;
                continue;
            };
            out.rows_used += 1;
            let (count, bytes) = match d {
                Direction::In => (row[0], row[1]),
                Direction::Out => (row[2], row[3]),
            };
            // The defect: a zero count still sends one packet.
            let count = count.max(1);
            let size = f64::from(bytes) / f64::from(count);
            for _ in 0..count {
                out.dummy(t, d, size)?;
            }
        }
    }
}

fn reference<I: Iterator<Item = Packet>, S: FnMut(&OutputPacket) -> Result<()>>(
    input: &mut Input<I>,
    rows: &mut dyn RowSource,
    settings: &SimSettings,
    out: &mut Emitter<S>,
) -> Result<()> {
    let mut sim = Reference {
        omega: settings.omega_ns,
        half: settings.omega_ns / 2,
        gap: settings.active_gap_ns,
        rows,
        exhausted: false,
    };
    let mut period: Option<RefPeriod> = None;
    // One packet of lookahead: the published loop stops before the last packet.
    let Some(mut held) = input.next()? else {
        return Ok(());
    };
    out.start_ns = Some(held.time_ns);
    while let Some(next) = input.next()? {
        let pkt = std::mem::replace(&mut held, next);
        let t = pkt.time_ns;
        match &mut period {
            // The published split: MORE than the gap apart.
            Some(p) if t - p.last <= sim.gap => {
                p.last = t;
                sim.ticks(p, t, out)?;
            }
            _ => {
                if let Some(mut p) = period.take() {
                    sim.ticks(&mut p, i64::MAX, out)?;
                    out.active_ns += p.last + sim.gap - p.start;
                }
                period = Some(RefPeriod { start: t, last: t, k_in: 0, k_out: 0 });
            }
        }
        out.real(&pkt, t)?;
    }
    if let Some(mut p) = period.take() {
        sim.ticks(&mut p, i64::MAX, out)?;
        out.active_ns += p.last + sim.gap - p.start;
    }
    // The defect: the last real packet is never sent.
    out.dropped += 1;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Output writers

/// Streams output rows into a float64 `.npy` of shape `[rows, 4]`: the header is written with
/// room for any row count and patched with the real one by [`NpyWriter::finish`]. Times are
/// relative to the first packet written (the trace's first real packet).
pub struct NpyWriter<W: Write + Seek> {
    out: BufWriter<W>,
    rows: u64,
    origin: Option<i64>,
}

/// Bytes before the data: magic, version, header length, padded header.
const NPY_PREAMBLE: usize = 128;

fn npy_header(rows: u64) -> Vec<u8> {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, 4), }}");
    let mut h = Vec::with_capacity(NPY_PREAMBLE);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((NPY_PREAMBLE - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(NPY_PREAMBLE - 1, b' ');
    h.push(b'\n');
    h
}

impl<W: Write + Seek> NpyWriter<W> {
    pub fn new(w: W) -> Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 16, w);
        out.write_all(&npy_header(0)).map_err(|e| Error::io("writing the .npy header", e))?;
        Ok(Self { out, rows: 0, origin: None })
    }

    #[inline]
    pub fn write(&mut self, p: &OutputPacket) -> Result<()> {
        let origin = *self.origin.get_or_insert(p.time_ns);
        let mut buf = [0u8; 32];
        for (i, v) in p.row(origin).iter().enumerate() {
            buf[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        self.out.write_all(&buf).map_err(|e| Error::io("writing .npy rows", e))?;
        self.rows += 1;
        Ok(())
    }

    /// Patches the row count into the header; returns the writer and the row count.
    pub fn finish(self) -> Result<(W, u64)> {
        let rows = self.rows;
        let mut w = self.out.into_inner().map_err(|e| Error::io("writing .npy rows", e.into_error()))?;
        let patch = (|| {
            w.seek(SeekFrom::Start(0))?;
            w.write_all(&npy_header(rows))?;
            w.seek(SeekFrom::End(0))?;
            w.flush()
        })();
        patch.map_err(|e| Error::io("patching the .npy header", e))?;
        Ok((w, rows))
    }
}

/// Streams output rows as CSV with the header `direction,is_dummy,size_bytes,time_s`.
pub struct CsvWriter<W: Write> {
    out: BufWriter<W>,
    rows: u64,
    origin: Option<i64>,
}

impl<W: Write> CsvWriter<W> {
    pub fn new(w: W) -> Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 16, w);
        writeln!(out, "{}", OUTPUT_COLUMNS.join(",")).map_err(|e| Error::io("writing CSV", e))?;
        Ok(Self { out, rows: 0, origin: None })
    }

    #[inline]
    pub fn write(&mut self, p: &OutputPacket) -> Result<()> {
        let origin = *self.origin.get_or_insert(p.time_ns);
        let dir = match p.direction {
            Direction::Out => 1,
            Direction::In => -1,
        };
        let rel = p.time_ns - origin;
        let r = if p.size.fract() == 0.0 {
            writeln!(
                self.out,
                "{dir},{},{},{}.{:09}",
                u8::from(p.dummy),
                p.size as u64,
                rel / 1_000_000_000,
                rel % 1_000_000_000
            )
        } else {
            writeln!(
                self.out,
                "{dir},{},{},{}.{:09}",
                u8::from(p.dummy),
                p.size,
                rel / 1_000_000_000,
                rel % 1_000_000_000
            )
        };
        r.map_err(|e| Error::io("writing CSV", e))?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(self) -> Result<(W, u64)> {
        let rows = self.rows;
        let w = self.out.into_inner().map_err(|e| Error::io("writing CSV", e.into_error()))?;
        Ok((w, rows))
    }
}

/// An output file, its format chosen by extension (`.npy` or `.csv`).
pub enum OutputFile {
    Npy(NpyWriter<File>),
    Csv(CsvWriter<File>),
}

impl OutputFile {
    pub fn create(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if !matches!(ext.as_deref(), Some("npy" | "csv")) {
            return Err(Error::invalid(
                "invalid_output",
                format!("{}: the output must end in .npy or .csv", path.display()),
            ));
        }
        let f = File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(match ext.as_deref() {
            Some("npy") => Self::Npy(NpyWriter::new(f)?),
            _ => Self::Csv(CsvWriter::new(f)?),
        })
    }

    #[inline]
    pub fn write(&mut self, p: &OutputPacket) -> Result<()> {
        match self {
            Self::Npy(w) => w.write(p),
            Self::Csv(w) => w.write(p),
        }
    }

    /// Flushes (and patches the .npy header); returns the row count.
    pub fn finish(self) -> Result<u64> {
        let (f, rows) = match self {
            Self::Npy(w) => w.finish()?,
            Self::Csv(w) => w.finish()?,
        };
        f.sync_all().map_err(|e| Error::io("syncing the output", e))?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;

    pub(crate) fn pkt(t_ns: i64, direction: Direction, size: u32) -> Packet {
        Packet { time_ns: t_ns, size, direction, transport: Transport::Tcp }
    }

    fn run_with(
        packets: &[Packet],
        mode: Mode,
        rows: &mut FixedRows,
        settings: SimSettings,
    ) -> (Vec<OutputPacket>, Summary) {
        let mut got = Vec::new();
        let summary = simulate(packets.iter().copied(), Defense::Ipet { mode, rows }, &settings, |p| {
            got.push(*p);
            Ok(())
        })
        .expect("simulate");
        (got, summary)
    }

    fn run(packets: &[Packet], mode: Mode, rows: Vec<[i32; 4]>) -> (Vec<OutputPacket>, Summary, usize) {
        let mut rows = FixedRows::new(rows).expect("rows");
        let (got, summary) = run_with(packets, mode, &mut rows, SimSettings::default());
        (got, summary, rows.remaining())
    }

    fn dummies(out: &[OutputPacket], d: Direction) -> Vec<OutputPacket> {
        out.iter().filter(|p| p.dummy && p.direction == d).copied().collect()
    }

    fn reals(out: &[OutputPacket]) -> Vec<OutputPacket> {
        out.iter().filter(|p| !p.dummy).copied().collect()
    }

    #[test]
    fn slotted_takes_one_row_per_slot_for_both_directions_and_keeps_dummies_in_their_slot() {
        // One packet: a period of 5 s = 50 slots; row k = [1 + k%3, 10 + k, 2, 20 + k].
        let rows: Vec<[i32; 4]> = (0..50).map(|k| [1 + k % 3, 10 + k, 2, 20 + k]).collect();
        let (out, summary, left) = run(&[pkt(7 * S, Direction::In, 100)], Mode::Slotted, rows.clone());
        assert_eq!((summary.rows_used, summary.slots_without_cover, left), (50, 0, 0));
        for (k, row) in rows.iter().enumerate() {
            let (lo, hi) = (7 * S + k as i64 * 100 * MS, 7 * S + (k as i64 + 1) * 100 * MS);
            let in_slot =
                |d| dummies(&out, d).into_iter().filter(|p| p.time_ns >= lo && p.time_ns < hi).collect::<Vec<_>>();
            let (i, o) = (in_slot(Direction::In), in_slot(Direction::Out));
            assert_eq!(i.len() as i32, row[0], "slot {k}");
            assert_eq!(i.iter().map(|p| p.size).sum::<f64>(), f64::from(row[1]), "slot {k}");
            assert_eq!(o.len() as i32, row[2], "slot {k}");
            assert_eq!(o.iter().map(|p| p.size).sum::<f64>(), f64::from(row[3]), "slot {k}");
            // Evenly placed: incoming at (4j+1)/4m of the slot, outgoing at (4j+3)/4n.
            for (j, p) in i.iter().enumerate() {
                assert_eq!(p.time_ns, lo + (4 * j as i64 + 1) * 100 * MS / (4 * i64::from(row[0])));
            }
            assert_eq!(o[0].time_ns, lo + 3 * 100 * MS / 8);
            assert_eq!(o[1].time_ns, lo + 7 * 100 * MS / 8);
        }
        assert_eq!(summary.total.dummy_packets, rows.iter().map(|r| (r[0] + r[2]) as u64).sum::<u64>());
        assert_eq!(summary.active_time_s, 5.0);
    }

    #[test]
    fn slotted_splits_bytes_exactly_with_the_remainder_first() {
        let (out, summary, _) = run(&[pkt(0, Direction::Out, 5)], Mode::Slotted, vec![[3, 10, 4, 7]]);
        let sizes = |d| dummies(&out, d).iter().map(|p| p.size as u32).collect::<Vec<_>>();
        assert_eq!(sizes(Direction::In), vec![4, 3, 3]);
        assert_eq!(sizes(Direction::Out), vec![2, 2, 2, 1]);
        assert_eq!((summary.incoming.dummy_bytes, summary.outgoing.dummy_bytes), (10, 7));
        assert_eq!(summary.total.dummy_bytes, 17);
        // One row for 50 slots: the other 49 get no cover, and the summary says so.
        assert_eq!((summary.rows_used, summary.slots_without_cover), (1, 49));
    }

    #[test]
    fn slotted_zero_packet_slots_emit_nothing_but_still_use_their_row() {
        let rows = vec![[0, 0, 0, 0], [0, 50, 1, 9], [2, 0, 0, 0]];
        let mut all = rows.clone();
        all.extend(std::iter::repeat_n([0, 0, 0, 0], 47));
        let (out, summary, left) = run(&[pkt(0, Direction::In, 1)], Mode::Slotted, all);
        assert_eq!((summary.rows_used, left), (50, 0));
        let d: Vec<(i64, Direction, u32)> =
            out.iter().filter(|p| p.dummy).map(|p| (p.time_ns / (100 * MS), p.direction, p.size as u32)).collect();
        // Slot 0 nothing; slot 1 one outgoing of 9 bytes (its in_bytes 50 has no packets);
        // slot 2 two incoming of 0 bytes.
        assert_eq!(d, vec![(1, Direction::Out, 9), (2, Direction::In, 0), (2, Direction::In, 0)]);
    }

    #[test]
    fn slotted_consumes_rows_in_order_never_skipping_or_reusing_across_periods() {
        // Two periods (20 s apart), each 50 slots: rows 0..50 to the first, 50..100 to the second.
        let rows: Vec<[i32; 4]> = (0..100).map(|k| [1, k, 0, 0]).collect();
        let trace = [pkt(0, Direction::In, 1), pkt(20 * S, Direction::Out, 1)];
        let (out, summary, _) = run(&trace, Mode::Slotted, rows);
        let got: Vec<(i64, u32)> = dummies(&out, Direction::In).iter().map(|p| (p.time_ns, p.size as u32)).collect();
        let want: Vec<(i64, u32)> = (0..100)
            .map(|k| {
                let start = if k < 50 { k * 100 * MS } else { 20 * S + (k - 50) * 100 * MS };
                (start + 25 * MS, k as u32)
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(summary.rows_used, 100);
        assert_eq!(summary.active_time_s, 10.0);
    }

    #[test]
    fn the_active_gap_threshold_is_strict_in_slotted_mode() {
        let settings = SimSettings::new(0.1, 0.45).expect("settings");
        let ones = || FixedRows::new(vec![[1, 1, 1, 1]; 100]).expect("rows");
        // 1 ns under the gap: one period from 0 to 0.45 + 0.45 - 1 ns: slots 0..9 (9 rows), the
        // last one cut at the period's end.
        let (out, s) = run_with(
            &[pkt(0, Direction::In, 1), pkt(450 * MS - 1, Direction::In, 1)],
            Mode::Slotted,
            &mut ones(),
            settings,
        );
        assert_eq!(s.rows_used, 9);
        assert_eq!(s.active_time_s, 0.9 - 1e-9);
        assert!(out.iter().all(|p| p.time_ns < 900 * MS - 1));
        let last = dummies(&out, Direction::Out).last().copied().expect("cover");
        assert_eq!(last.time_ns, 800 * MS + 3 * (100 * MS - 1) / 4);
        // Exactly the gap: two periods of 0.45 s, 5 slots each (the fifth cut to 50 ms), the
        // second aligned to its own first packet.
        let (out, s) = run_with(
            &[pkt(0, Direction::In, 1), pkt(450 * MS, Direction::In, 1)],
            Mode::Slotted,
            &mut ones(),
            settings,
        );
        assert_eq!(s.rows_used, 10);
        assert_eq!(s.active_time_s, 0.9);
        let times: Vec<i64> = dummies(&out, Direction::In).iter().map(|p| p.time_ns).collect();
        assert_eq!(
            times,
            vec![
                25 * MS,
                125 * MS,
                225 * MS,
                325 * MS,
                400 * MS + 50 * MS / 4,
                475 * MS,
                575 * MS,
                675 * MS,
                775 * MS,
                850 * MS + 50 * MS / 4
            ]
        );
        // The cover of the first period ends before the second period starts.
        assert!(out.iter().filter(|p| p.dummy && p.time_ns < 450 * MS).count() == 10);
    }

    #[test]
    fn slotted_passes_real_packets_unchanged_in_time_order_and_keeps_the_last_one() {
        let mut trace = Vec::new();
        let mut t = 0;
        let mut x: u64 = 12345;
        for i in 0..400 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            t += ((x >> 33) % 3_000) as i64 * MS + if i % 50 == 0 { 9 * S } else { 0 };
            let d = if x & 1 == 0 { Direction::In } else { Direction::Out };
            trace.push(pkt(t, d, (x >> 40) as u32 % 1500));
        }
        let rows: Vec<[i32; 4]> = (0..100_000).map(|k| [k % 4, (k * 7) % 101, (k + 1) % 4, (k * 13) % 101]).collect();
        let (out, summary, left) = run(&trace, Mode::Slotted, rows.clone());
        assert!(out.windows(2).all(|w| w[0].time_ns <= w[1].time_ns), "output is time-ordered");
        let real: Vec<Packet> = reals(&out).iter().map(|p| p.to_packet(Transport::Tcp)).collect();
        assert_eq!(real, trace, "every real packet, unchanged, the last one included");
        assert!(reals(&out).iter().all(|p| p.delay_ns == 0));
        assert_eq!(summary.total.real_packets, 400);
        assert_eq!(summary.real_packets_dropped, 0);
        assert_eq!(summary.latency, LatencySummary::default());
        let used = (rows.len() - left) as u64;
        assert_eq!(summary.rows_used, used);
        let want_bytes: i64 = rows[..used as usize]
            .iter()
            .map(|r| i64::from(if r[0] > 0 { r[1] } else { 0 }) + i64::from(if r[2] > 0 { r[3] } else { 0 }))
            .sum();
        assert_eq!(summary.total.dummy_bytes as i64, want_bytes);
        let want_packets: i64 = rows[..used as usize].iter().map(|r| i64::from(r[0] + r[2])).sum();
        assert_eq!(summary.total.dummy_packets as i64, want_packets);
        assert_eq!(summary.output_packets, out.len() as u64);
        // Overheads agree with the rows.
        let real_bytes: f64 = reals(&out).iter().map(|p| p.size).sum();
        assert_eq!(summary.total.real_bytes as f64, real_bytes);
        assert_eq!(summary.total.bandwidth_overhead, Some(want_bytes as f64 / real_bytes));
    }

    #[test]
    fn reference_mode_reproduces_the_published_defects() {
        // Ticks: incoming at 0, 100, ... ms; outgoing at 50, 150, ... ms, until 5 s after the
        // last kept packet; one shared row iterator; zero counts forced to 1.
        let rows: Vec<[i32; 4]> = (0..100).map(|k| [k % 2 * 3, 30 + k, 0, 7 + k]).collect();
        let trace = [pkt(0, Direction::In, 10), pkt(S, Direction::Out, 20), pkt(30 * S, Direction::In, 40)];
        let (out, summary, _) = run(&trace, Mode::Reference, rows);
        // The last packet (at 30 s) is dropped; the period runs from 0 to 1 s + 5 s.
        assert_eq!(reals(&out).iter().map(|p| p.time_ns).collect::<Vec<_>>(), vec![0, S]);
        assert_eq!(summary.real_packets_dropped, 1);
        assert_eq!(summary.active_time_s, 6.0);
        // 60 incoming and 60 outgoing ticks, 120 rows.
        assert_eq!(summary.rows_used, 100);
        assert_eq!(summary.slots_without_cover, 20);
        let ins = dummies(&out, Direction::In);
        let outs = dummies(&out, Direction::Out);
        // Incoming ticks see only even rows (whose in_packets is 0, forced to 1); outgoing ticks
        // odd rows (out_packets 0, forced to 1, carrying out_bytes).
        assert_eq!(ins.len(), 50);
        for (k, p) in ins.iter().enumerate() {
            assert_eq!((p.time_ns, p.size), (k as i64 * 100 * MS, f64::from(30 + 2 * k as i32)));
        }
        assert_eq!(outs.len(), 50);
        for (k, p) in outs.iter().enumerate() {
            assert_eq!((p.time_ns, p.size), (50 * MS + k as i64 * 100 * MS, f64::from(7 + 2 * k as i32 + 1)));
        }
        assert!(out.windows(2).all(|w| w[0].time_ns <= w[1].time_ns));
    }

    #[test]
    fn reference_mode_divides_bytes_as_floats_and_emits_count_packets_at_the_tick() {
        let (out, summary, _) =
            run(&[pkt(0, Direction::In, 1), pkt(1, Direction::In, 1)], Mode::Reference, vec![[3, 10, 0, 0]]);
        let ins = dummies(&out, Direction::In);
        assert_eq!(ins.len(), 3);
        assert!(ins.iter().all(|p| p.time_ns == 0 && p.size == 10.0 / 3.0));
        assert_eq!(summary.incoming.dummy_bytes, 10);
        assert_eq!(reals(&out).len(), 1);
    }

    #[test]
    fn reference_mode_keeps_packets_exactly_the_gap_apart_in_one_period() {
        let trace = [
            pkt(0, Direction::In, 1),
            pkt(5 * S, Direction::In, 1),
            pkt(11 * S, Direction::In, 1),
            pkt(99 * S, Direction::In, 1),
        ];
        let (_, s, _) = run(&trace, Mode::Reference, vec![[0, 0, 0, 0]; 1000]);
        // Periods [0, 5 s + 5 s) and [11 s, 16 s): 100 + 50 ticks of each direction.
        assert_eq!(s.rows_used, 300);
        assert_eq!(s.active_time_s, 15.0);
        // Slotted mode: 5 s apart is a new period; the last packet is kept.
        let (_, s, _) = run(&trace, Mode::Slotted, vec![[0, 0, 0, 0]; 1000]);
        assert_eq!(s.rows_used, 50 + 50 + 50 + 50);
        assert_eq!(s.real_packets_dropped, 0);
        assert_eq!(s.total.real_packets, 4);
    }

    #[test]
    fn slotted_mode_has_none_of_the_reference_defects() {
        // Zero rows: no cover at all (the reference would send one packet per tick).
        let trace = [pkt(0, Direction::In, 1), pkt(2 * S, Direction::Out, 1)];
        let (out, s, _) = run(&trace, Mode::Slotted, vec![[0, 0, 0, 0]; 1000]);
        assert_eq!(s.total.dummy_packets, 0);
        assert_eq!(out.len(), 2);
        assert_eq!(s.rows_used, 70);
        let (_, r, _) = run(&trace, Mode::Reference, vec![[0, 0, 0, 0]; 1000]);
        assert_eq!(r.total.dummy_packets, 100);
        assert_eq!(r.total.real_packets, 1);
    }

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

    fn npy_of<T: ndarray_npy::WritableElement + Clone>(shape: &[usize], v: Vec<T>) -> Vec<u8> {
        let a = ndarray::ArrayD::from_shape_vec(shape.to_vec(), v).expect("shape");
        let mut buf = Vec::new();
        ndarray_npy::WriteNpyExt::write_npy(&a, &mut buf).expect("npy");
        buf
    }

    #[test]
    fn fixed_rows_read_any_numeric_npy_and_refuse_bad_values() {
        let want = [[1, 2, 3, 4], [5, 6, 7, 8]];
        let vals: [i32; 8] = [1, 2, 3, 4, 5, 6, 7, 8];
        let cases = [
            npy_of(&[2, 4], vals.to_vec()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as i64).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as f64).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as f32).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as u8).collect()),
            npy_of(&[2, 4], vals.iter().map(|&v| v as u16).collect()),
            npy_of(&[1, 2, 4], vals.to_vec()),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let mut r = FixedRows::from_npy_bytes(bytes).expect("read");
            assert_eq!(r.len(), 2, "case {i}");
            assert_eq!(r.next_row().expect("row"), Some(want[0]));
            assert_eq!(r.next_row().expect("row"), Some(want[1]));
            assert_eq!(r.next_row().expect("row"), None);
        }
        let bad = [
            npy_of(&[2, 4], vec![1.5f64, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]),
            npy_of(&[2, 4], vec![1i32, -2, 3, 4, 5, 6, 7, 8]),
            npy_of(&[4, 2], vals.to_vec()),
            b"not an npy".to_vec(),
        ];
        for b in &bad {
            assert_eq!(FixedRows::from_npy_bytes(b).expect_err("bad").code(), "invalid_schedule");
        }
    }

    #[test]
    fn the_npy_and_csv_writers_stream_what_read_npy_and_a_csv_reader_read_back() {
        let rows: Vec<[i32; 4]> = (0..50).map(|k| [k % 3, 100, 1, k]).collect();
        let trace = [pkt(1_600_000_000 * S, Direction::Out, 99), pkt(1_600_000_000 * S + 2 * S, Direction::In, 7)];
        let mut rows = FixedRows::new(rows).expect("rows");
        let mut npy = NpyWriter::new(std::io::Cursor::new(Vec::new())).expect("npy");
        let mut csv = CsvWriter::new(Vec::new()).expect("csv");
        let mut all = Vec::new();
        simulate(trace, Defense::Ipet { mode: Mode::Slotted, rows: &mut rows }, &SimSettings::default(), |p| {
            all.push(*p);
            npy.write(p)?;
            csv.write(p)
        })
        .expect("simulate");
        let (cursor, n) = npy.finish().expect("finish");
        assert_eq!(n, all.len() as u64);
        let bytes = cursor.into_inner();
        let back: ndarray::Array2<f64> = ndarray_npy::ReadNpyExt::read_npy(&bytes[..]).expect("read back");
        assert_eq!(back.shape(), &[all.len(), 4]);
        let origin = trace[0].time_ns;
        for (i, p) in all.iter().enumerate() {
            assert_eq!(back.row(i).to_vec(), p.row(origin).to_vec());
        }
        assert_eq!(back.row(0).to_vec(), vec![1.0, 0.0, 99.0, 0.0]);
        let (text, _) = csv.finish().expect("csv");
        let text = String::from_utf8(text).expect("utf8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("direction,is_dummy,size_bytes,time_s"));
        assert_eq!(lines.next(), Some("1,0,99,0.000000000"));
        let real_in = text.lines().find(|l| l.starts_with("-1,0,")).expect("the incoming real packet");
        assert_eq!(real_in, "-1,0,7,2.000000000");
        assert_eq!(text.lines().count(), all.len() + 1);
    }

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
