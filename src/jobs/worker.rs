//! The simulation worker pool: claims jobs from the store, runs them on blocking threads, keeps
//! their leases alive, and stores each result once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use tokio::sync::Notify;
use tracing::Instrument;
use uuid::Uuid;

use super::{
    params::{Cover, HomeParams, JobParams, SimulationParams, TargetsSource},
    run::{HomeRunInputs, Outcome, RunInputs, RunLimits, run, run_home},
};
use crate::{
    error::Result,
    models::{Engine, ModelSets, set_targets::TargetRowsFrom},
    store::{Backend, ClaimedSimulation, Store},
    traffic::FixedRows,
};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once by this process.
    pub workers: usize,
    /// A running job whose worker has not renewed its lease for this long is taken over.
    pub lease: Duration,
    /// How often an idle worker looks for work (a submission in this process wakes it at once).
    pub poll: Duration,
    /// Claims after which a job whose worker keeps dying is failed.
    pub max_attempts: i64,
    /// Output packets per second each job may produce (0: no limit), so that simulations do not
    /// starve schedule requests on a small machine.
    pub rate_limit: u64,
    /// Windows drawn from the generators per inference call.
    pub chunk: usize,
    /// A run producing more output rows than this is stopped and the job failed.
    pub max_output_rows: u64,
}

/// Wakes the workers of this process, and stops them when the service stops.
#[derive(Clone, Default)]
pub struct JobSignal(Arc<Signal>);

#[derive(Default)]
struct Signal {
    wake: Notify,
    /// Set once the service stops: workers claim nothing more, and a running job stops at its
    /// next checkpoint (every output row, see `run::Guard`) and goes back to the queue.
    stopping: Arc<AtomicBool>,
    workers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl JobSignal {
    pub fn wake(&self) {
        self.0.wake.notify_waiters();
    }

    /// Stops the workers: no job is claimed any more, running jobs stop at their next checkpoint
    /// and are put back in the queue unfinished (the next process runs them again, from the
    /// start). Waits up to `within` for the workers to let go of their jobs; false when one had
    /// not by then (its job is then run again as after a crash: at once after a restart on
    /// SQLite, after the lease on PostgreSQL).
    pub async fn stop(&self, within: Duration) -> bool {
        self.0.stopping.store(true, Ordering::SeqCst);
        self.0.wake.notify_waiters();
        let workers = std::mem::take(&mut *self.0.workers.lock().unwrap_or_else(|e| e.into_inner()));
        tokio::time::timeout(within, async {
            for w in workers {
                let _ = w.await;
            }
        })
        .await
        .is_ok()
    }

    fn stopping(&self) -> bool {
        self.0.stopping.load(Ordering::SeqCst)
    }
}

/// Starts the workers; on SQLite (single process) first re-queues the jobs a dead process left
/// running, and fails those already claimed `max_attempts` times.
/// Workers over one engine (see [`start_with_models`]).
pub async fn start(engine: Arc<Engine>, store: Store, config: WorkerConfig) -> Result<JobSignal> {
    start_with_models(Arc::new(ModelSets::single(engine)), store, config).await
}

/// Each claimed job runs on the default model set as it is when the job is claimed (a reload
/// applies to the jobs claimed after it).
pub async fn start_with_models(models: Arc<ModelSets>, store: Store, config: WorkerConfig) -> Result<JobSignal> {
    if store.backend() == Backend::Sqlite {
        let (failed, requeued) = store.recover_after_restart(now_ms(), config.max_attempts).await?;
        if failed > 0 {
            tracing::warn!(
                jobs = failed,
                max_attempts = config.max_attempts,
                "failed simulation jobs whose runs kept stopping the process"
            );
        }
        if requeued > 0 {
            tracing::warn!(jobs = requeued, "re-queued simulation jobs left running by a previous process");
        }
    }
    let signal = JobSignal::default();
    // Claims name the process instance and the worker, for the log and the job record.
    let instance = Uuid::new_v4().simple().to_string()[..8].to_string();
    if config.workers > 0 {
        tracing::info!(%instance, workers = config.workers, "simulation workers started");
    }
    for worker in 0..config.workers {
        let instance = instance.clone();
        let (models, store, config, s) = (models.clone(), store.clone(), config.clone(), signal.clone());
        let handle = tokio::spawn(async move {
            let name = format!("{instance}-{worker}");
            loop {
                let notified = s.0.wake.notified();
                if s.stopping() {
                    tracing::info!(worker = %name, "simulation worker stopped");
                    return;
                }
                match claim_and_run_until(&models, &store, &config, &name, &s.0.stopping).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, worker = %name, "simulation worker: store error"),
                }
                tokio::select! {
                    _ = notified => {},
                    _ = tokio::time::sleep(config.poll) => {},
                }
            }
        });
        signal.0.workers.lock().unwrap_or_else(|e| e.into_inner()).push(handle);
    }
    Ok(signal)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Claims one job and runs it; false when there was none.
pub async fn claim_and_run(models: &ModelSets, store: &Store, config: &WorkerConfig, worker: &str) -> Result<bool> {
    claim_and_run_until(models, store, config, worker, &Arc::new(AtomicBool::new(false))).await
}

/// [`claim_and_run`], the run stopped and its job put back in the queue once `stopping` is set.
async fn claim_and_run_until(
    models: &ModelSets,
    store: &Store,
    config: &WorkerConfig,
    worker: &str,
    stopping: &Arc<AtomicBool>,
) -> Result<bool> {
    let now = now_ms();
    let stale = now - config.lease.as_millis() as i64;
    store.fail_abandoned_simulations(now, stale, config.max_attempts).await?;
    let claim = format!("{worker}/{}", Uuid::new_v4().simple());
    let Some(job) = store.claim_simulation(&claim, now, stale, config.max_attempts).await? else {
        return Ok(false);
    };
    // The span is attached to the future, never entered across an `.await`: a worker that
    // yields would otherwise leave it entered on a thread where another job's lines are logged.
    let span = tracing::info_span!("simulation", job = %job.id, attempt = job.attempts, worker = %worker);
    finish(models, store, config, job, claim, stopping).instrument(span).await?;
    Ok(true)
}

/// Runs a claimed job and stores its result (inside the job's span).
async fn finish(
    models: &ModelSets,
    store: &Store,
    config: &WorkerConfig,
    job: ClaimedSimulation,
    claim: String,
    stopping: &Arc<AtomicBool>,
) -> Result<()> {
    tracing::info!("claimed");
    let id = job.id;
    let result = execute(models, store, config, &job, stopping).await;
    let stored = match result {
        Err(Stopped) => {
            let released = store.release_simulation(id, &claim).await?;
            if released {
                tracing::info!("the service is stopping: the job stopped unfinished and is queued to run again");
            }
            released
        }
        Ok(outcome) => {
            tracing::info!(rows = outcome.rows, "succeeded");
            metrics::counter!("ipet_simulation_jobs_total", "status" => "succeeded").increment(1);
            store.finish_simulation(id, &claim, now_ms(), Ok((outcome.summary, outcome.output, outcome.rows))).await?
        }
        Err(Lost) => false,
        Err(Failed(reason)) => {
            tracing::warn!(%reason, "failed");
            metrics::counter!("ipet_simulation_jobs_total", "status" => "failed").increment(1);
            store.finish_simulation(id, &claim, now_ms(), Err(reason)).await?
        }
    };
    if !stored {
        tracing::warn!("the claim was taken over before the result was stored; the other worker finishes it");
    }
    Ok(())
}

enum RunError {
    /// The job's claim went to another worker.
    Lost,
    /// The job cannot succeed; the reason is stored.
    Failed(String),
    /// The service is stopping: the run stopped unfinished, the job goes back to the queue.
    Stopped,
}
use RunError::{Failed, Lost, Stopped};

/// What a claimed job runs with, read from its record before the run.
enum Prepared {
    Device { engine: Arc<Engine>, params: SimulationParams, schedule: Option<FixedRows> },
    Home { params: HomeParams, rows: TargetRowsFrom },
}

/// The stored schedule of a perturbation job or an uploaded .npy.
async fn stored_schedule(
    store: &Store,
    job: &ClaimedSimulation,
    perturbation_job: Option<Uuid>,
) -> std::result::Result<FixedRows, RunError> {
    if let Some(job_id) = perturbation_job {
        let stored = store.get_perturbation(job_id, None).await.map_err(|e| Failed(e.to_string()))?;
        let stored = stored.ok_or_else(|| Failed(format!("perturbation job {job_id} no longer exists")))?;
        return stored.schedule.fixed_rows().map_err(|e| Failed(e.to_string()));
    }
    let bytes = job.schedule.as_deref().ok_or_else(|| Failed("the uploaded schedule is missing".into()))?;
    FixedRows::from_npy_bytes(bytes).map_err(|e| Failed(e.to_string()))
}

async fn prepare(
    models: &ModelSets,
    store: &Store,
    job: &ClaimedSimulation,
) -> std::result::Result<Prepared, RunError> {
    let params = JobParams::from_stored(&job.params).map_err(|e| Failed(e.to_string()))?;
    Ok(match params {
        JobParams::Device(params) => {
            let schedule = match &params.cover {
                Cover::PerturbationJob { job_id } => Some(stored_schedule(store, job, Some(*job_id)).await?),
                Cover::UploadedSchedule { .. } => Some(stored_schedule(store, job, None).await?),
                _ => None,
            };
            let engine = match &params.model_set {
                Some(name) => models.engine(Some(name)).map_err(|e| Failed(e.to_string()))?,
                None => models.default_engine(),
            };
            Prepared::Device { engine, params, schedule }
        }
        JobParams::Home(params) => {
            let rows = match &params.targets {
                None => TargetRowsFrom::None,
                Some(TargetsSource::Generation { model_set, generation, chunk }) => {
                    let engine = models.engine(Some(model_set)).map_err(|e| Failed(e.to_string()))?;
                    let set = engine.model_set();
                    let choice = generation.within(set.generations()).map_err(|e| Failed(e.to_string()))?;
                    TargetRowsFrom::Model { engine, choice, chunk: *chunk }
                }
                Some(TargetsSource::PerturbationJob { job_id }) => {
                    TargetRowsFrom::Fixed(stored_schedule(store, job, Some(*job_id)).await?)
                }
                Some(TargetsSource::UploadedSchedule { .. }) => {
                    TargetRowsFrom::Fixed(stored_schedule(store, job, None).await?)
                }
            };
            Prepared::Home { params, rows }
        }
    })
}

async fn execute(
    models: &ModelSets,
    store: &Store,
    config: &WorkerConfig,
    job: &ClaimedSimulation,
    stopping: &Arc<AtomicBool>,
) -> std::result::Result<Outcome, RunError> {
    let prepared = prepare(models, store, job).await?;

    // Keep the lease alive while the simulation runs; give up when the claim is lost.
    let cancelled = Arc::new(AtomicBool::new(false));
    let heartbeat = {
        let (store, cancelled, id, claim) = (store.clone(), cancelled.clone(), job.id, job.claim.clone());
        let every = (config.lease / 3).max(Duration::from_millis(100));
        tokio::spawn(
            async move {
                loop {
                    tokio::time::sleep(every).await;
                    match store.heartbeat_simulation(id, &claim, now_ms()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            cancelled.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            }
            .instrument(tracing::Span::current()),
        )
    };
    let (trace, rate_limit, chunk, flag, stop, max_rows) = (
        job.trace.clone(),
        config.rate_limit,
        config.chunk,
        cancelled.clone(),
        stopping.clone(),
        config.max_output_rows,
    );
    let span = tracing::Span::current();
    let result = tokio::task::spawn_blocking(move || {
        let _in_job = span.enter();
        let limits = RunLimits { rate_limit, chunk, max_output_rows: max_rows, cancelled: &flag, stopping: &stop };
        match prepared {
            Prepared::Device { engine, params, schedule } => {
                run(RunInputs { engine: &engine, params: &params, trace: &trace, schedule, limits })
            }
            Prepared::Home { params, rows } => run_home(HomeRunInputs { params: &params, trace: &trace, rows, limits }),
        }
    })
    .await;
    heartbeat.abort();
    if cancelled.load(Ordering::Relaxed) {
        return Err(Lost);
    }
    if stopping.load(Ordering::SeqCst) && !matches!(result, Ok(Ok(_))) {
        return Err(Stopped);
    }
    match result {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(e)) if e.is_client_error() => Err(Failed(e.to_string())),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "simulation failed");
            Err(Failed(format!("the simulation failed: {e}")))
        }
        Err(e) => Err(Failed(format!("the simulation panicked: {e}"))),
    }
}
