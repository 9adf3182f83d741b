//! ONNX generator sessions, owned by dedicated inference threads.
//!
//! `Session::run` takes `&mut self`, so a session behind a mutex would serialise every request.
//! Instead each of `threads` workers owns its own session of every (device, generation) and
//! takes tasks from one shared channel; a worker drains whatever else is waiting and runs the
//! tasks of the same generator together (text-embeddings-inference's shape), in runs of at most
//! `RUN_WINDOWS` windows so that each operator's output stays in cache. A task carries the key
//! of its schedule's noise, not the noise: the worker draws it, so a large request, cut into one
//! task per thread, has its noise drawn on every thread at once. The async side never blocks: it
//! sends tasks and awaits their replies, which are the rows already in their stored form.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Instant,
};

use crossbeam_channel::{Receiver, Sender};
use ndarray::{Array2, ArrayView2};
use ort::{session::Session, value::TensorRef};
use tokio::sync::oneshot;

use super::{
    manifest::ModelSet,
    schedule::{self, GenerationChoice, NOISE_BLOCK, NoiseKey, Schedule, plan},
};
use crate::{
    error::{Error, Result},
    traffic::noise::rng,
};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The ONNX Runtime shared library (`libonnxruntime.so.1.x`).
    pub ort_library: Option<PathBuf>,
    /// Inference threads, each owning a session of every generator.
    pub threads: usize,
    /// Most noise rows one batched run may carry.
    pub max_batch_rows: usize,
}

/// Windows of one device, each with its generation, and where their noise comes from: the unit
/// an inference thread takes. The thread draws the noise itself, so that the noise of a large
/// request is drawn on every thread at once.
struct Task {
    device: usize,
    generations: Vec<u8>,
    /// The schedule's noise key, and the task's first window within the schedule (a block start).
    key: NoiseKey,
    first: usize,
    /// The task's rows in their stored form (see [`Schedule`]).
    reply: oneshot::Sender<Result<Vec<u8>>>,
}

pub struct Engine {
    set: Arc<ModelSet>,
    config: EngineConfig,
    tx: Sender<Task>,
    /// Bytes per schedule value of each device, from its caps (the workers' [`Compact`]'s).
    widths: Vec<u8>,
}

static ORT: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process.
fn init_ort(library: Option<&Path>) -> Result<&'static ort::environment::Environment> {
    let env = ORT.get_or_init(|| {
        let builder = match library {
            Some(p) => ort::init_from(p).map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", p.display()))?,
            None => ort::init(),
        };
        builder.with_name("ipet").build().map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    env.as_ref().map_err(|e| Error::Model(e.clone()))
}

/// Opens one ONNX file on its own (tests and tools compare the engine against this).
pub fn open_standalone_session(library: Option<&Path>, path: &Path) -> Result<Session> {
    open_session(init_ort(library)?, path)
}

fn open_session(env: &ort::environment::Environment, path: &Path) -> Result<Session> {
    let fail = |e: &dyn std::fmt::Display| Error::Model(format!("{}: {e}", path.display()));
    Session::builder(env)
        .map_err(|e| fail(&e))?
        .with_intra_threads(1)
        .map_err(|e| fail(&e))?
        .with_inter_threads(1)
        .map_err(|e| fail(&e))?
        .commit_from_file(path)
        .map_err(|e| fail(&e))
}

/// Checks one generator's input and output against the manifest.
fn check_signature(session: &Session, set: &ModelSet, path: &Path) -> Result<()> {
    let m = &set.manifest;
    let fail = |what: String| Error::Model(format!("{}: {what}", path.display()));
    let (inputs, outputs) = (session.inputs(), session.outputs());
    if inputs.len() != 1 || inputs[0].name() != m.onnx.input {
        let names: Vec<&str> = inputs.iter().map(|i| i.name()).collect();
        return Err(fail(format!("inputs are {names:?}, the manifest says one input {:?}", m.onnx.input)));
    }
    let Some(out) = outputs.iter().find(|o| o.name() == m.onnx.output) else {
        let names: Vec<&str> = outputs.iter().map(|o| o.name()).collect();
        return Err(fail(format!("outputs are {names:?}, the manifest says {:?}", m.onnx.output)));
    };
    let shape = |o: &ort::value::Outlet| o.dtype().tensor_shape().map(|s| s.to_vec()).unwrap_or_default();
    let (ins, outs) = (shape(&inputs[0]), shape(out));
    let dim_ok = |d: i64, want: usize| d == -1 || d == want as i64;
    if ins.len() != 2 || !dim_ok(ins[1], m.settings.latent_dim) {
        return Err(fail(format!("input shape {ins:?}, expected [batch, {}]", m.settings.latent_dim)));
    }
    if outs.len() != 3 || !dim_ok(outs[1], m.settings.slots_per_window) || !dim_ok(outs[2], 4) {
        return Err(fail(format!("output shape {outs:?}, expected [batch, {}, 4]", m.settings.slots_per_window)));
    }
    Ok(())
}

/// Runs a generator and hands its output, still in ONNX Runtime's buffer, to `take`.
fn run_session<R>(
    session: &mut Session,
    input: &str,
    output: &str,
    z: ArrayView2<f32>,
    take: impl FnOnce(&[f32]) -> R,
) -> Result<R> {
    let tensor = TensorRef::from_array_view(z)?;
    let outputs = session.run(ort::inputs![input => tensor])?;
    let (_, data) = outputs[output].try_extract_tensor::<f32>()?;
    Ok(take(data))
}

/// How generator output is kept: whole numbers within the device's caps (its set's, for
/// `set-targets`), as little-endian unsigned integers of the narrowest width that holds the
/// device's largest cap (a set whose byte caps are a few thousand stores 2 bytes a value even
/// when another set of the model needs 4).
#[derive(Debug, Clone)]
struct Compact {
    caps: Vec<[f32; 4]>,
    widths: Vec<u8>,
}

impl Compact {
    fn of(set: &ModelSet) -> Self {
        let devices = 0..set.manifest.devices.len();
        Self {
            caps: devices
                .clone()
                .map(|d| {
                    let c = set.caps_of(d);
                    std::array::from_fn(|k| c[k] as f32)
                })
                .collect(),
            widths: devices.map(|d| schedule::width_for(set.caps_of(d).iter().copied().fold(0.0, f64::max))).collect(),
        }
    }

    /// Writes `values` (rows of 4) of `device` into `out` (`values.len()` times the device's
    /// width in bytes). On a value that is not a whole number within its column's cap, says which.
    fn write(&self, device: usize, values: &[f32], out: &mut [u8]) -> std::result::Result<(), String> {
        let caps = self.caps[device];
        let w = usize::from(self.widths[device]);
        let mut ok = true;
        const MAGIC: f32 = 8_388_608.0;
        // Caps below 2^23 (every family's so far): `v + 2^23` rounds `v` to a whole number, which
        // for `v` in [0, 2^23) is the low bits of the sum's representation. The value is kept when
        // that whole number, back as a float, is `v` and is within the cap (a negative, infinite,
        // NaN or huge `v` gives a number past every cap). Integer and float lanes only, 16 values
        // at a time, which the compiler vectorises (a float-to-int cast and a running bool per
        // value did not).
        if caps.iter().all(|&c| c < MAGIC) {
            let caps16: [u32; 16] = std::array::from_fn(|i| caps[i % 4] as u32);
            let whole = |v: f32| (v + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits());
            let mut bad = [0u32; 16];
            let mut blocks = values.chunks_exact(16);
            let mut dsts = out.chunks_exact_mut(16 * w);
            for (vals, dst) in (&mut blocks).zip(&mut dsts) {
                let mut units = [0u32; 16];
                for i in 0..16 {
                    let u = whole(vals[i]);
                    bad[i] |= u32::from(u as i32 as f32 != vals[i]) | u32::from(u > caps16[i]);
                    units[i] = u;
                }
                match w {
                    1 => {
                        for i in 0..16 {
                            dst[i] = units[i] as u8;
                        }
                    }
                    2 => {
                        for i in 0..16 {
                            dst[2 * i..2 * i + 2].copy_from_slice(&(units[i] as u16).to_le_bytes());
                        }
                    }
                    _ => {
                        for i in 0..16 {
                            dst[4 * i..4 * i + 4].copy_from_slice(&units[i].to_le_bytes());
                        }
                    }
                }
            }
            ok &= bad.iter().all(|&b| b == 0);
            let tail = dsts.into_remainder();
            for (i, &v) in blocks.remainder().iter().enumerate() {
                let u = whole(v);
                ok &= (u as i32 as f32 == v) & (u <= caps16[i]);
                tail[i * w..(i + 1) * w].copy_from_slice(&u.to_le_bytes()[..w]);
            }
        } else {
            for (row, dst) in values.chunks_exact(4).zip(out.chunks_exact_mut(4 * w)) {
                for k in 0..4 {
                    let (v, u) = (row[k], row[k] as u32);
                    ok &= (u as f32 == v) & (v <= caps[k]);
                    dst[k * w..(k + 1) * w].copy_from_slice(&u.to_le_bytes()[..w]);
                }
            }
        }
        if ok {
            return Ok(());
        }
        let (i, v) =
            values.iter().enumerate().find(|&(i, &v)| !(v as u32 as f32 == v && v <= caps[i % 4])).unwrap_or((0, &0.0));
        Err(format!(
            "column {} gives {v}, not a whole number within the cap {}",
            crate::traffic::COLUMNS[i % 4],
            caps[i % 4]
        ))
    }
}

impl Engine {
    /// Opens every generator on every inference thread, checks their signatures against the
    /// manifest, and checks that a probe batch gives whole numbers within the caps.
    pub fn start(set: ModelSet, config: &EngineConfig) -> Result<Self> {
        let env = init_ort(config.ort_library.as_deref())?;
        let set = Arc::new(set);
        let (tx, rx) = crossbeam_channel::unbounded::<Task>();
        let threads = config.threads.max(1);
        let compact = Compact::of(&set);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        for worker in 0..threads {
            let (set, rx, ready, compact) = (set.clone(), rx.clone(), ready_tx.clone(), compact.clone());
            let max_rows = config.max_batch_rows.max(1);
            std::thread::Builder::new()
                .name(format!("ipet-infer-{worker}"))
                .spawn(move || {
                    let mut sessions = Vec::with_capacity(set.files.len());
                    for per_device in &set.files {
                        let mut row = Vec::with_capacity(per_device.len());
                        for path in per_device {
                            match open_session(env, path).and_then(|s| check_signature(&s, &set, path).map(|_| s)) {
                                Ok(s) => row.push(s),
                                Err(e) => {
                                    let _ = ready.send(Err(e));
                                    return;
                                }
                            }
                        }
                        sessions.push(row);
                    }
                    let _ = ready.send(Ok(()));
                    drop(ready);
                    worker_loop(&set, &mut sessions, &rx, max_rows, compact);
                })
                .map_err(|e| Error::io("starting an inference thread", e))?;
        }
        drop(ready_tx);
        for _ in 0..threads {
            ready_rx.recv().map_err(|_| Error::Model("an inference thread died while loading".into()))??;
        }
        let engine = Self { set, config: config.clone(), tx, widths: compact.widths };
        engine.probe()?;
        Ok(engine)
    }

    pub fn model_set(&self) -> &ModelSet {
        &self.set
    }

    /// What it was started with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn model_set_arc(&self) -> Arc<ModelSet> {
        self.set.clone()
    }

    /// Every generator, on a batch of 64 fixed noise vectors: whole numbers within the caps.
    fn probe(&self) -> Result<()> {
        for device in 0..self.set.files.len() {
            for generation in 0..self.set.generations() {
                let (generations, key) = plan(64, GenerationChoice::Index(generation), 1, &mut rng(Some(0)));
                let generations = generations.iter().map(|_| generation as u8).collect();
                futures::executor::block_on(self.run(device, generations, key)).map_err(|e| {
                    let message = match e {
                        Error::Internal(m) => m,
                        other => other.to_string(),
                    };
                    Error::Model(format!("{}: {message}", self.set.files[device][generation].display()))
                })?;
            }
        }
        Ok(())
    }

    fn submit(
        &self,
        device: usize,
        generations: Vec<u8>,
        key: NoiseKey,
        first: usize,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>>>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Task { device, generations, key, first, reply })
            .map_err(|_| Error::Internal("the inference threads have stopped".into()))?;
        Ok(rx)
    }

    /// Windows per task for a request of `n`: one task for a small request (one hop to an
    /// inference thread, whatever its mix of generations); a larger one is cut into parts of
    /// whole noise blocks, at least one per thread and at most `max_batch_rows` windows each,
    /// which run on several threads at once.
    fn task_windows(&self, n: usize) -> usize {
        let (threads, max_rows) = (self.config.threads.max(1), self.config.max_batch_rows.max(1));
        let parts = n.div_ceil(max_rows).max(threads.min(n.div_ceil(NOISE_BLOCK)));
        let parts = parts.next_multiple_of(parts.min(threads));
        n.div_ceil(parts).next_multiple_of(NOISE_BLOCK)
    }

    /// Runs each window's noise (drawn under `key`) through its generation's generator for
    /// `device`.
    async fn run(&self, device: usize, generations: Vec<u8>, key: NoiseKey) -> Result<Schedule> {
        let started = Instant::now();
        let slots = self.set.slots();
        let n = generations.len();
        let dropped = || Error::Internal("an inference thread dropped a task".into());
        let step = self.task_windows(n);
        let mut pending = Vec::new();
        for first in (0..n).step_by(step) {
            let end = (first + step).min(n);
            pending.push(self.submit(device, generations[first..end].to_vec(), key, first)?);
        }
        // The first part's rows are kept as they came (a small request has only that one).
        let mut bytes: Vec<u8> = Vec::new();
        for (i, rx) in pending.into_iter().enumerate() {
            let part = rx.await.map_err(|_| dropped())??;
            if i == 0 {
                bytes = part;
                bytes.reserve(n * slots * 4 * usize::from(self.widths[device]) - bytes.len());
            } else {
                bytes.extend_from_slice(&part);
            }
        }
        metrics::histogram!("ipet_generator_seconds").record(started.elapsed().as_secs_f64());
        Schedule::from_parts(slots, generations, self.widths[device], bytes)
    }

    /// A schedule of `n` windows for `device`: each window's generation (by `choice`) and the key
    /// of their noise drawn from `rng` ([`plan`]), the noise drawn and run through the generators
    /// on the inference threads (the same as [`schedule::draw`] in one piece).
    pub async fn sample(
        &self,
        device: usize,
        n: usize,
        choice: GenerationChoice,
        rng: &mut impl rand::Rng,
    ) -> Result<Schedule> {
        let (generations, key) = plan(n, choice, self.set.generations(), rng);
        self.run(device, generations, key).await
    }

    /// Blocking form of [`Engine::sample`], for the CLI and the simulator's worker threads.
    pub fn sample_blocking(
        &self,
        device: usize,
        n: usize,
        choice: GenerationChoice,
        rng: &mut impl rand::Rng,
    ) -> Result<Schedule> {
        futures::executor::block_on(self.sample(device, n, choice, rng))
    }
}

/// Most windows in one generator run. A task of thousands of windows is run in parts of this many:
/// each operator's output (320 KB for iPET's generators) then stays in the core's cache between
/// operators, where one run over 6,400 windows streamed 4 MB buffers through memory for each of
/// them (25,000 windows of one generation: 6.4 -> 3.9 ms; 256 to 1,024 measured alike).
const RUN_WINDOWS: usize = 512;

fn worker_loop(set: &ModelSet, sessions: &mut [Vec<Session>], rx: &Receiver<Task>, max_rows: usize, compact: Compact) {
    let (input, output) = (set.manifest.onnx.input.as_str(), set.manifest.onnx.output.as_str());
    let per_window = set.slots() * 4;
    let latent = set.latent_dim();
    let out_window = |device: usize| per_window * usize::from(compact.widths[device]);
    while let Ok(first) = rx.recv() {
        // Drain what else is waiting, up to max_rows windows in all.
        let mut tasks = vec![first];
        let mut rows = tasks[0].generations.len();
        while rows < max_rows {
            match rx.try_recv() {
                Ok(t) => {
                    rows += t.generations.len();
                    tasks.push(t);
                }
                Err(_) => break,
            }
        }
        // One run per generator, over the windows of every waiting task that use it; its output
        // is written straight into each task's rows.
        let zs: Vec<Array2<f32>> = tasks.iter().map(|t| t.key.noise(t.first, t.generations.len(), latent)).collect();
        let mut outs: Vec<Vec<u8>> =
            tasks.iter().map(|t| vec![0u8; t.generations.len() * out_window(t.device)]).collect();
        let mut failed: Vec<Option<String>> = vec![None; tasks.len()];
        let keys: std::collections::BTreeSet<(usize, u8)> =
            tasks.iter().flat_map(|t| t.generations.iter().map(move |&g| (t.device, g))).collect();
        for (device, generation) in keys {
            let members: Vec<(usize, usize)> = tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.device == device)
                .flat_map(|(ti, t)| {
                    t.generations.iter().enumerate().filter(move |&(_, &g)| g == generation).map(move |(w, _)| (ti, w))
                })
                .collect();
            let session = &mut sessions[device][usize::from(generation)];
            let out_window = out_window(device);
            let mut failure = None;
            for part in members.chunks(RUN_WINDOWS) {
                let (t0, w0) = part[0];
                let contiguous = part.iter().enumerate().all(|(k, &(ti, w))| ti == t0 && w == w0 + k);
                let result = if contiguous {
                    // A run of one task's windows: its noise and rows in place.
                    let z = zs[t0].slice_axis(ndarray::Axis(0), ndarray::Slice::from(w0..w0 + part.len()));
                    let out = &mut outs[t0][w0 * out_window..(w0 + part.len()) * out_window];
                    run_session(session, input, output, z, |values| compact.write(device, values, out))
                } else {
                    let mut buf = Vec::with_capacity(part.len() * latent);
                    for &(ti, w) in part {
                        buf.extend(zs[ti].row(w).iter());
                    }
                    let outs = &mut outs;
                    Array2::from_shape_vec((part.len(), latent), buf)
                        .map_err(|e| Error::Internal(e.to_string()))
                        .and_then(|z| {
                            run_session(session, input, output, z.view(), |values| {
                                for (k, &(ti, w)) in part.iter().enumerate() {
                                    compact.write(
                                        device,
                                        &values[k * per_window..(k + 1) * per_window],
                                        &mut outs[ti][w * out_window..(w + 1) * out_window],
                                    )?;
                                }
                                Ok(())
                            })
                        })
                };
                failure = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(m)) => Some(Error::Model(m)),
                    Err(e) => Some(e),
                };
                if failure.is_some() {
                    break;
                }
            }
            if let Some(e) = failure {
                for &(ti, _) in &members {
                    failed[ti] = Some(e.to_string());
                }
            }
        }
        for ((task, out), failure) in tasks.into_iter().zip(outs).zip(failed) {
            let _ = task.reply.send(match failure {
                None => Ok(out),
                Some(msg) => Err(Error::Internal(msg)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Compact;

    fn compact(caps: [f32; 4], width: u8) -> Compact {
        Compact { caps: vec![caps], widths: vec![width] }
    }

    #[test]
    fn compact_writes_whole_numbers_within_the_caps_at_every_width() {
        // 5 rows: 16 values take the vectorised path, the last 4 the tail.
        let values: Vec<f32> = (0..20).map(|i| (i * 5 % 101) as f32).collect();
        let caps = [100.0, 100.0, 100.0, 100.0];
        for width in [1u8, 2, 4] {
            let mut out = vec![0u8; values.len() * usize::from(width)];
            compact(caps, width).write(0, &values, &mut out).expect("whole numbers within the caps");
            let back: Vec<f32> = out
                .chunks_exact(usize::from(width))
                .map(|c| c.iter().rev().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) as f32)
                .collect();
            assert_eq!(back, values, "width {width}");
        }
        let mut out = vec![0u8; 8];
        compact([4.0, 65_535.0, 4.0, 65_535.0], 2).write(0, &[4.0, 65_535.0, -0.0, 300.0], &mut out).expect("wide");
        assert_eq!(out, [4, 0, 255, 255, 0, 0, 44, 1]);
    }

    #[test]
    fn compact_refuses_fractions_negatives_nan_and_values_past_a_cap_wherever_they_are() {
        let caps = [4.0, 100.0, 4.0, 100.0];
        for width in [1u8, 2, 4] {
            for (at, bad, column) in
                [(3, 0.5, "out_bytes"), (17, -1.0, "in_bytes"), (9, f32::NAN, "in_bytes"), (18, 5.0, "out_packets")]
            {
                let mut values = vec![1.0f32; 20];
                values[at] = bad;
                let mut out = vec![0u8; 20 * usize::from(width)];
                let err = compact(caps, width).write(0, &values, &mut out).expect_err("refused");
                assert!(err.contains(column), "width {width}, value {bad} at {at}: {err}");
            }
        }
    }
}
