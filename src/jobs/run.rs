//! Running one simulation job: the stored trace (or a home's traces) through the simulator, the
//! output encoded.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    codec::{OutputEncoder, decode_packets, decode_sections, encode_sections},
    params::{Cover, HomeParams, SimulationParams},
};
use crate::{
    error::{Error, ErrorCode, Result},
    models::{Engine, GeneratorRows, set_targets::TargetRowsFrom},
    traffic::{Baseline, Defense, FixedRows, Packet, SimSettings, simulate},
};

/// What a run produced: the summary (JSON), the encoded output, its rows.
pub struct Outcome {
    pub summary: String,
    pub output: Vec<u8>,
    pub rows: u64,
}

/// Everything a run needs besides the trace.
pub struct RunInputs<'a> {
    pub engine: &'a Arc<Engine>,
    pub params: &'a SimulationParams,
    pub trace: &'a [u8],
    /// The schedule of a stored perturbation job or an uploaded .npy, when the cover is one.
    pub schedule: Option<FixedRows>,
    pub limits: RunLimits<'a>,
}

/// How far a run may go.
pub struct RunLimits<'a> {
    /// Output packets per second this run may produce (0: no limit).
    pub rate_limit: u64,
    /// Windows drawn from the generators per inference call.
    pub chunk: usize,
    /// Most output rows (0: no limit): a run past it stops and fails.
    pub max_output_rows: u64,
    /// Set when the job's claim was lost: stop early.
    pub cancelled: &'a AtomicBool,
    /// Set when the service stops: stop at the next row, the job is queued again.
    pub stopping: &'a AtomicBool,
}

/// Counts a run's output rows against its limits: stops it past the most rows, when its claim
/// was lost or when the service stops (checked at every row, and while it waits for the rate
/// limit), and paces it to the rate limit.
struct Guard<'a> {
    limits: &'a RunLimits<'a>,
    started: Instant,
    emitted: u64,
}

impl<'a> Guard<'a> {
    fn new(limits: &'a RunLimits<'a>) -> Self {
        Self { limits, started: Instant::now(), emitted: 0 }
    }

    fn count(&mut self) -> Result<()> {
        let l = self.limits;
        self.emitted += 1;
        if l.max_output_rows > 0 && self.emitted > l.max_output_rows {
            return Err(Error::invalid(
                ErrorCode::OutputTooLarge,
                format!("the defended trace passed {} rows (--sim-max-output-rows); stopped", l.max_output_rows),
            ));
        }
        self.checkpoint()?;
        if self.emitted.is_multiple_of(1024) && l.rate_limit > 0 {
            let due = Duration::from_secs_f64(self.emitted as f64 / l.rate_limit as f64);
            // Paced in short sleeps, so that a stop is seen within a tenth of a second.
            while let Some(wait) = due.checked_sub(self.started.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(100)));
                self.checkpoint()?;
            }
        }
        Ok(())
    }

    /// Stops the run when its claim was lost or the service stops.
    fn checkpoint(&self) -> Result<()> {
        if self.limits.stopping.load(Ordering::Relaxed) {
            return Err(Error::Internal("the service is stopping; the job is queued to run again".into()));
        }
        if self.limits.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Internal("the job's claim was taken over; stopping".into()));
        }
        Ok(())
    }
}

/// Runs the simulation. Blocking: call from a blocking thread.
pub fn run(inputs: RunInputs<'_>) -> Result<Outcome> {
    let p = inputs.params;
    let packets = decode_packets(inputs.trace)?;
    let settings = SimSettings::new(p.omega, p.active_gap)?;
    let origin = packets.first().map_or(0, |p| p.time_ns);
    let mut encoder = OutputEncoder::new(origin);
    let mut guard = Guard::new(&inputs.limits);
    let sink = |pkt: &crate::traffic::simulate::OutputPacket| -> crate::traffic::Result<()> {
        encoder.push(pkt)?;
        Ok(guard.count()?)
    };
    let summary = match &p.cover {
        Cover::Baseline { baseline } => {
            simulate(packets, Defense::Baseline { baseline: Baseline::new(*baseline), seed: p.seed }, &settings, sink)?
        }
        Cover::Generation { generation } => {
            let set = inputs.engine.model_set();
            let device = set.require_device(&p.device)?;
            let choice = generation.within(set.generations())?;
            let mut rows = GeneratorRows::new(inputs.engine.clone(), device, choice, inputs.limits.chunk, p.seed)?;
            simulate(packets, Defense::Ipet { mode: p.mode, rows: &mut rows }, &settings, sink)?
        }
        Cover::PerturbationJob { .. } | Cover::UploadedSchedule { .. } => {
            let mut rows = inputs.schedule.ok_or_else(|| Error::Internal("the job's schedule is missing".into()))?;
            simulate(packets, Defense::Ipet { mode: p.mode, rows: &mut rows }, &settings, sink)?
        }
    };
    let (output, rows) = encoder.finish();
    Ok(Outcome { summary: to_json(&summary)?, output, rows })
}

fn to_json(summary: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(summary).map_err(|e| Error::Internal(e.to_string()))
}

/// Everything a home run needs besides the traces.
pub struct HomeRunInputs<'a> {
    pub params: &'a HomeParams,
    /// The stored per-device traces (sections in the order of the device table).
    pub trace: &'a [u8],
    /// Where the target rows come from (`targets`).
    pub rows: TargetRowsFrom,
    pub limits: RunLimits<'a>,
}

/// Runs a home job: its sets defended as `ipet simulate --defense ...` does, every device's
/// output in its own section (empty for devices in no set), times counted from the home's first
/// packet. Blocking: call from a blocking thread.
pub fn run_home(inputs: HomeRunInputs<'_>) -> Result<Outcome> {
    let p = inputs.params;
    let sections = decode_sections(inputs.trace)?;
    if sections.len() != p.devices.len() {
        return Err(Error::Internal("the stored traces do not match the device table".into()));
    }
    let packets: Vec<Vec<Packet>> = sections.iter().map(|s| decode_packets(s)).collect::<Result<_>>()?;
    let names = p.names();
    let partition = p.partition()?;
    let origin = packets.iter().filter_map(|p| p.first()).map(|p| p.time_ns).min().unwrap_or(0);
    let mut encoders: Vec<OutputEncoder> = names.iter().map(|_| OutputEncoder::new(origin)).collect();
    let mut guard = Guard::new(&inputs.limits);
    let rows = inputs.rows.per_set(&names);
    let summary = p.settings.defend(&names, &packets, &partition, rows, |d, pkt| {
        encoders.get_mut(d).ok_or_else(|| Error::Internal(format!("no device {d}")))?.push(pkt)?;
        Ok(guard.count()?)
    })?;
    let mut rows = 0;
    let mut outputs = Vec::with_capacity(encoders.len());
    for e in encoders {
        let (bytes, n) = e.finish();
        rows += n;
        outputs.push(bytes);
    }
    Ok(Outcome { summary: to_json(&summary)?, output: encode_sections(&outputs), rows })
}
