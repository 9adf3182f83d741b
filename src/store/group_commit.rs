//! Group commit of perturbation jobs.
//!
//! Every schedule request stores its job before it answers. One INSERT and one commit per request
//! costs, per request, a hop to the database's connection, a WAL commit (an fsync on PostgreSQL)
//! and the wake-ups between them; under load that was a quarter of the service's time. Here one
//! task writes the jobs: those that arrive while a write is under way go together into the next,
//! as one multi-row INSERT (one statement: all stored, or none). Each request still awaits the
//! commit of its own job, so nothing is answered before it is stored.

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::perturbations::PerturbationJob;
use crate::error::{Error, Result};

/// Values per job.
const COLUMNS: usize = 12;
/// Most jobs in one statement (3,072 bound values: far below SQLite's 32,766).
const MAX_JOBS: usize = 256;
/// Most schedule bytes in one statement.
const MAX_BYTES: usize = 32 << 20;

struct Pending {
    job: PerturbationJob,
    done: oneshot::Sender<Result<PerturbationJob>>,
}

/// The sending side; the writer task stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    tx: mpsc::UnboundedSender<Pending>,
}

impl GroupCommit {
    /// Starts the writer: at most `concurrent` statements at once (1 for SQLite, which has one
    /// writer; the pool's size for PostgreSQL).
    pub(super) fn start(pool: AnyPool, concurrent: usize) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        let permits = Arc::new(Semaphore::new(concurrent.max(1)));
        tokio::spawn(async move {
            loop {
                // A free statement slot first: while every slot is busy, arrivals gather into the
                // next batch.
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let Some(first) = rx.recv().await else { return };
                let mut bytes = first.job.schedule.bytes().len();
                let mut batch = vec![first];
                while batch.len() < MAX_JOBS && bytes < MAX_BYTES {
                    match rx.try_recv() {
                        Ok(p) => {
                            bytes += p.job.schedule.bytes().len();
                            batch.push(p);
                        }
                        Err(_) => break,
                    }
                }
                let pool = pool.clone();
                tokio::spawn(async move {
                    let jobs: Vec<&PerturbationJob> = batch.iter().map(|p| &p.job).collect();
                    let result = insert(&pool, &jobs).await;
                    drop(jobs);
                    metrics::histogram!("ipet_job_write_batch_size").record(batch.len() as f64);
                    for p in batch {
                        let _ = p.done.send(match &result {
                            Ok(()) => Ok(p.job),
                            Err(e) => Err(replicate(e)),
                        });
                    }
                    drop(permit);
                });
            }
        });
        Self { tx }
    }

    /// Stores `job` with whatever else is waiting; returns it once it is committed.
    pub(super) async fn insert(&self, job: PerturbationJob) -> Result<PerturbationJob> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Pending { job, done }).map_err(|_| Error::Internal("the job writer has stopped".into()))?;
        rx.await.map_err(|_| Error::Internal("the job writer dropped a job".into()))?
    }
}

async fn insert(pool: &AnyPool, jobs: &[&PerturbationJob]) -> Result<()> {
    // `$n` placeholders, which both backends take through the `Any` driver (QueryBuilder writes
    // `?` for it, which PostgreSQL refuses).
    let mut sql = String::from(
        "INSERT INTO perturbation_jobs (id, device, generation, n, seed, model_set, created_at, requester, slots, \
         generations, element_bytes, vectors) VALUES ",
    );
    for j in 0..jobs.len() {
        let p: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", j * COLUMNS + c)).collect();
        sql.push_str(&format!("{}({})", if j > 0 { ", " } else { "" }, p.join(", ")));
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for job in jobs {
        q = q
            .bind(job.id.to_string())
            .bind(&job.device)
            .bind(&job.generation)
            .bind(job.n as i64)
            // Seeds are u64; stored bit for bit in a signed BIGINT.
            .bind(job.seed.map(|s| s as i64))
            .bind(&job.model_set)
            .bind(job.created_at.timestamp_millis())
            .bind(&job.requester)
            .bind(job.schedule.slots as i64)
            .bind(job.schedule.generations.as_slice())
            .bind(i64::from(job.schedule.width()))
            .bind(job.schedule.bytes());
    }
    q.execute(pool).await?;
    Ok(())
}

/// The error of a batch, for each of its jobs: an unreachable database stays one (503 and
/// Retry-After), anything else is a storage failure naming the cause.
fn replicate(e: &Error) -> Error {
    match e {
        Error::Database(d) if crate::error::unreachable_database(d) => Error::Database(sqlx::Error::PoolTimedOut),
        Error::Database(d) => Error::Database(sqlx::Error::AnyDriverError(d.to_string().into())),
        other => Error::Internal(other.to_string()),
    }
}
