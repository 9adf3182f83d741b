//! Running one simulation job: the stored trace through the simulator, the output encoded.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{
    codec::{OutputEncoder, decode_packets},
    params::{Cover, SimulationParams},
};
use crate::{
    error::{Error, Result},
    models::{Engine, GenerationChoice, GeneratorRows},
    traffic::{Baseline, Defense, FixedRows, SimSettings, simulate, simulate::Summary},
};

/// What a run produced: the summary, the encoded output, its rows.
pub struct Outcome {
    pub summary: Summary,
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
    /// Output packets per second this run may produce (0: no limit).
    pub rate_limit: u64,
    /// Windows drawn from the generators per inference call.
    pub chunk: usize,
    /// Most output rows (0: no limit): a run past it stops and fails.
    pub max_output_rows: u64,
    /// Set when the job's claim was lost: stop early.
    pub cancelled: &'a AtomicBool,
}

/// Runs the simulation. Blocking: call from a blocking thread.
pub fn run(inputs: RunInputs<'_>) -> Result<Outcome> {
    let p = inputs.params;
    let packets = decode_packets(inputs.trace)?;
    let settings = SimSettings::new(p.omega, p.active_gap)?;
    let origin = packets.first().map_or(0, |p| p.time_ns);
    let mut encoder = OutputEncoder::new(origin);
    let started = Instant::now();
    let mut emitted = 0u64;
    let sink = |pkt: &crate::traffic::simulate::OutputPacket| -> Result<()> {
        encoder.push(pkt)?;
        emitted += 1;
        if inputs.max_output_rows > 0 && emitted > inputs.max_output_rows {
            return Err(Error::invalid(
                "output_too_large",
                format!("the defended trace passed {} rows (--sim-max-output-rows); stopped", inputs.max_output_rows),
            ));
        }
        if emitted.is_multiple_of(1024) {
            if inputs.cancelled.load(Ordering::Relaxed) {
                return Err(Error::Internal("the job's claim was taken over; stopping".into()));
            }
            if inputs.rate_limit > 0 {
                let due = Duration::from_secs_f64(emitted as f64 / inputs.rate_limit as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok(())
    };
    let summary = match &p.cover {
        Cover::Baseline { baseline } => {
            simulate(packets, Defense::Baseline { baseline: Baseline::new(*baseline), seed: p.seed }, &settings, sink)?
        }
        Cover::Generation { generation } => {
            let set = inputs.engine.model_set();
            let device = set.require_device(&p.device)?;
            let choice = GenerationChoice::parse(generation, set.generations())?;
            let mut rows = GeneratorRows::new(inputs.engine.clone(), device, choice, inputs.chunk, p.seed)?;
            simulate(packets, Defense::Ipet { mode: p.mode, rows: &mut rows }, &settings, sink)?
        }
        Cover::PerturbationJob { .. } | Cover::UploadedSchedule { .. } => {
            let mut rows = inputs.schedule.ok_or_else(|| Error::Internal("the job's schedule is missing".into()))?;
            simulate(packets, Defense::Ipet { mode: p.mode, rows: &mut rows }, &settings, sink)?
        }
    };
    let (output, rows) = encoder.finish();
    Ok(Outcome { summary, output, rows })
}
