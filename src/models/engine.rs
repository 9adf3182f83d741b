//! ONNX generator sessions, owned by dedicated inference threads.
//!
//! `Session::run` takes `&mut self`, so a session behind a mutex would serialise every request.
//! Instead each of `threads` workers owns its own session of every (device, generation) and
//! takes tasks from one shared channel; a worker drains whatever else is waiting and runs the
//! tasks of the same generator as one batch (text-embeddings-inference's shape). The async side
//! never blocks: it sends tasks and awaits their replies.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Instant,
};

use crossbeam_channel::{Receiver, Sender};
use ndarray::{Array2, ArrayView2, Axis};
use ort::{session::Session, value::TensorRef};
use tokio::sync::oneshot;

use super::{
    manifest::ModelSet,
    schedule::{self, GenerationChoice, Schedule, draw},
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

/// Windows of one device, each with its generation and noise: the unit an inference thread takes.
struct Task {
    device: usize,
    generations: Vec<u8>,
    z: Array2<f32>,
    /// The task's rows in their stored form (see [`Schedule`]).
    reply: oneshot::Sender<Result<Vec<u8>>>,
}

pub struct Engine {
    set: Arc<ModelSet>,
    config: EngineConfig,
    tx: Sender<Task>,
    /// Windows per task: a larger request is cut so that every inference thread takes a part.
    chunk: usize,
    /// Bytes per schedule value, from the caps.
    width: u8,
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
/// `set-targets`), as little-endian unsigned integers of `width` bytes (the narrowest that holds
/// the model set's largest cap, which bounds every set's).
#[derive(Debug, Clone)]
struct Compact {
    caps: Vec<[f32; 4]>,
    width: u8,
}

impl Compact {
    fn of(set: &ModelSet) -> Self {
        let caps = &set.manifest.caps;
        Self {
            caps: (0..set.manifest.devices.len())
                .map(|d| {
                    let c = set.caps_of(d);
                    std::array::from_fn(|k| c[k] as f32)
                })
                .collect(),
            width: schedule::width_for(caps.iter().copied().fold(0.0, f64::max)),
        }
    }

    /// Writes `values` (rows of 4) of `device` into `out` (`values.len() * width` bytes). On a
    /// value that is not a whole number within its column's cap, says which.
    fn write(&self, device: usize, values: &[f32], out: &mut [u8]) -> std::result::Result<(), String> {
        let caps = self.caps[device];
        let mut ok = true;
        match self.width {
            1 => {
                for (row, dst) in values.chunks_exact(4).zip(out.chunks_exact_mut(4)) {
                    for k in 0..4 {
                        let (v, u) = (row[k], row[k] as u32);
                        ok &= (u as f32 == v) & (v <= caps[k]);
                        dst[k] = u as u8;
                    }
                }
            }
            w => {
                let w = usize::from(w);
                for (row, dst) in values.chunks_exact(4).zip(out.chunks_exact_mut(4 * w)) {
                    for k in 0..4 {
                        let (v, u) = (row[k], row[k] as u32);
                        ok &= (u as f32 == v) & (v <= caps[k]);
                        dst[k * w..(k + 1) * w].copy_from_slice(&u.to_le_bytes()[..w]);
                    }
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
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<()>>();
        for worker in 0..threads {
            let (set, rx, ready) = (set.clone(), rx.clone(), ready_tx.clone());
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
                    worker_loop(&set, &mut sessions, &rx, max_rows, Compact::of(&set));
                })
                .map_err(|e| Error::io("starting an inference thread", e))?;
        }
        drop(ready_tx);
        for _ in 0..threads {
            ready_rx.recv().map_err(|_| Error::Model("an inference thread died while loading".into()))??;
        }
        let width = schedule::width_for(set.manifest.caps.iter().copied().fold(0.0, f64::max));
        let engine = Self { set, config: config.clone(), tx, chunk: config.max_batch_rows.max(1), width };
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
                let (_, z) = draw(64, self.set.latent_dim(), GenerationChoice::Index(generation), 1, &mut rng(Some(0)));
                self.run_blocking(device, generation, z).map_err(|e| {
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
        z: Array2<f32>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>>>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Task { device, generations, z, reply })
            .map_err(|_| Error::Internal("the inference threads have stopped".into()))?;
        Ok(rx)
    }

    fn run_blocking(&self, device: usize, generation: usize, z: Array2<f32>) -> Result<Vec<u8>> {
        let generations = vec![generation as u8; z.nrows()];
        futures::executor::block_on(self.submit(device, generations, z)?)
            .map_err(|_| Error::Internal("an inference thread dropped a task".into()))?
    }

    /// Runs each window's noise through its generation's generator for `device`. A request is
    /// one task (one hop to an inference thread, whatever its mix of generations) unless it is
    /// larger than the batch size, when its parts run on several threads at once.
    pub async fn schedule(&self, device: usize, generations: Vec<u8>, z: Array2<f32>) -> Result<Schedule> {
        let started = Instant::now();
        let slots = self.set.slots();
        let n = generations.len();
        let dropped = || Error::Internal("an inference thread dropped a task".into());
        let bytes: Vec<u8> = if n <= self.chunk {
            self.submit(device, generations.clone(), z)?.await.map_err(|_| dropped())??
        } else {
            let mut pending = Vec::new();
            for start in (0..n).step_by(self.chunk) {
                let end = (start + self.chunk).min(n);
                let part = z.slice_axis(Axis(0), ndarray::Slice::from(start..end)).to_owned();
                pending.push(self.submit(device, generations[start..end].to_vec(), part)?);
            }
            let mut bytes = Vec::with_capacity(n * slots * 4 * usize::from(self.width));
            for rx in pending {
                bytes.extend_from_slice(&rx.await.map_err(|_| dropped())??);
            }
            bytes
        };
        metrics::histogram!("ipet_generator_seconds").record(started.elapsed().as_secs_f64());
        Schedule::from_parts(slots, generations, self.width, bytes)
    }

    /// A schedule of `n` windows for `device`: each window's generation (by `choice`) and its
    /// noise drawn from `rng` ([`draw`]), then run through the generators ([`Engine::schedule`]).
    pub async fn sample(
        &self,
        device: usize,
        n: usize,
        choice: GenerationChoice,
        rng: &mut impl rand::Rng,
    ) -> Result<Schedule> {
        let (generations, z) = draw(n, self.set.latent_dim(), choice, self.set.generations(), rng);
        self.schedule(device, generations, z).await
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

fn worker_loop(set: &ModelSet, sessions: &mut [Vec<Session>], rx: &Receiver<Task>, max_rows: usize, compact: Compact) {
    let (input, output) = (set.manifest.onnx.input.as_str(), set.manifest.onnx.output.as_str());
    let per_window = set.slots() * 4;
    let out_window = per_window * usize::from(compact.width);
    while let Ok(first) = rx.recv() {
        // Drain what else is waiting, up to max_rows windows in all.
        let mut tasks = vec![first];
        let mut rows = tasks[0].z.nrows();
        while rows < max_rows {
            match rx.try_recv() {
                Ok(t) => {
                    rows += t.z.nrows();
                    tasks.push(t);
                }
                Err(_) => break,
            }
        }
        // One run per generator, over the windows of every waiting task that use it; its output
        // is written straight into each task's rows.
        let mut outs: Vec<Vec<u8>> = tasks.iter().map(|t| vec![0u8; t.z.nrows() * out_window]).collect();
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
            let whole_task =
                members.len() == tasks[members[0].0].z.nrows() && members.iter().all(|m| m.0 == members[0].0);
            let session = &mut sessions[device][usize::from(generation)];
            let result = if whole_task {
                let ti = members[0].0;
                let out = &mut outs[ti];
                run_session(session, input, output, tasks[ti].z.view(), |values| compact.write(device, values, out))
            } else {
                let latent = tasks[0].z.ncols();
                let mut buf = Vec::with_capacity(members.len() * latent);
                for &(ti, w) in &members {
                    buf.extend(tasks[ti].z.row(w).iter());
                }
                let outs = &mut outs;
                Array2::from_shape_vec((members.len(), latent), buf)
                    .map_err(|e| Error::Internal(e.to_string()))
                    .and_then(|z| {
                        run_session(session, input, output, z.view(), |values| {
                            for (k, &(ti, w)) in members.iter().enumerate() {
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
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(m)) => Some(Error::Model(m)),
                Err(e) => Some(e),
            };
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
