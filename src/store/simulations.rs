//! Simulation job records and the queue protocol.
//!
//! A worker claims the oldest claimable job with a fresh claim token: a queued one, or a running
//! one whose worker stopped heart-beating for a lease (it died). On PostgreSQL the claim takes
//! the row with `FOR UPDATE SKIP LOCKED`, so replicas sharing the database never claim the same
//! job at once; SQLite is single-process and its one connection serialises claims. Finishing is
//! conditional on the claim token: a worker whose lease was taken over cannot overwrite the
//! result, so every job finishes exactly once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Backend, Store, time_from_ms};
use crate::error::{Error, Result};

/// A job as submitted.
#[derive(Debug, Clone)]
pub struct NewSimulation {
    pub id: Uuid,
    pub requester: String,
    /// JSON parameters.
    pub params: String,
    pub trace: Vec<u8>,
    pub trace_packets: u64,
    pub schedule: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

/// What a worker needs to run a claimed job.
#[derive(Debug, Clone)]
pub struct ClaimedSimulation {
    pub id: Uuid,
    pub claim: String,
    pub params: String,
    pub trace: Vec<u8>,
    pub schedule: Option<Vec<u8>>,
    pub attempts: i64,
}

/// Where a simulation job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl JobState {
    /// The name stored in the `status` column (and served).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    fn from_stored(s: &str) -> Result<Self> {
        [Self::Queued, Self::Running, Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| Error::Internal(format!("a simulation job has the unknown status {s:?}")))
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's record, without its (large) trace and output.
#[derive(Debug, Clone)]
pub struct SimulationRecord {
    pub id: Uuid,
    pub status: JobState,
    pub requester: String,
    pub params: String,
    pub trace_packets: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempts: i64,
    pub error: Option<String>,
    pub summary: Option<String>,
    pub output_rows: Option<i64>,
}

impl Store {
    pub async fn insert_simulation(&self, job: &NewSimulation) -> Result<()> {
        sqlx::query(
            "INSERT INTO simulation_jobs (id, status, requester, params, trace, trace_packets, schedule, created_at, attempts) \
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $7, 0)",
        )
        .bind(job.id.to_string())
        .bind(&job.requester)
        .bind(&job.params)
        .bind(job.trace.clone())
        .bind(job.trace_packets as i64)
        .bind(job.schedule.clone())
        .bind(job.created_at.timestamp_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Claims the oldest claimable job: queued, or running with a heartbeat older than
    /// `stale_before_ms` (its worker died) and fewer than `max_attempts` claims so far.
    pub async fn claim_simulation(
        &self,
        claim: &str,
        now_ms: i64,
        stale_before_ms: i64,
        max_attempts: i64,
    ) -> Result<Option<ClaimedSimulation>> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE simulation_jobs SET status = 'running', claim = $1, heartbeat_at = $2, \
                 started_at = COALESCE(started_at, $2), attempts = attempts + 1 \
             WHERE id = (SELECT id FROM simulation_jobs \
                 WHERE (status = 'queued' AND attempts < $4) \
                    OR (status = 'running' AND heartbeat_at < $3 AND attempts < $4) \
                 ORDER BY created_at, id LIMIT 1{lock}) \
             RETURNING id, params, trace, schedule, attempts"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(claim)
            .bind(now_ms)
            .bind(stale_before_ms)
            .bind(max_attempts)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        Ok(Some(ClaimedSimulation {
            id: Uuid::parse_str(&id).map_err(|e| Error::Internal(e.to_string()))?,
            claim: claim.to_string(),
            params: row.try_get("params")?,
            trace: row.try_get("trace")?,
            schedule: row.try_get("schedule")?,
            attempts: row.try_get("attempts")?,
        }))
    }

    /// Fails the jobs whose workers died `max_attempts` times: they would kill the next one too.
    pub async fn fail_abandoned_simulations(
        &self,
        now_ms: i64,
        stale_before_ms: i64,
        max_attempts: i64,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE simulation_jobs SET status = 'failed', finished_at = $1, claim = NULL, \
                 error = 'the worker running this job stopped ' || CAST(attempts AS TEXT) || ' times; given up' \
             WHERE status = 'running' AND heartbeat_at < $2 AND attempts >= $3",
        )
        .bind(now_ms)
        .bind(stale_before_ms)
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// After a restart of a single-process store (SQLite), when no worker can be alive: fails the
    /// running jobs that were already claimed `max_attempts` times (they took the process down
    /// with them each time) and puts the others back in the queue. (failed, re-queued)
    pub async fn recover_after_restart(&self, now_ms: i64, max_attempts: i64) -> Result<(u64, u64)> {
        let failed = sqlx::query(
            "UPDATE simulation_jobs SET status = 'failed', finished_at = $1, claim = NULL, \
                 error = 'the worker running this job stopped ' || CAST(attempts AS TEXT) || ' times; given up' \
             WHERE (status = 'running' OR status = 'queued') AND attempts >= $2",
        )
        .bind(now_ms)
        .bind(max_attempts)
        .execute(&self.pool)
        .await?;
        let requeued =
            sqlx::query("UPDATE simulation_jobs SET status = 'queued', claim = NULL WHERE status = 'running'")
                .execute(&self.pool)
                .await?;
        Ok((failed.rows_affected(), requeued.rows_affected()))
    }

    /// Renews a claim's lease; false when the claim is no longer the job's.
    pub async fn heartbeat_simulation(&self, id: Uuid, claim: &str, now_ms: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE simulation_jobs SET heartbeat_at = $1 WHERE id = $2 AND claim = $3 AND status = 'running'",
        )
        .bind(now_ms)
        .bind(id.to_string())
        .bind(claim)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a running job back in the queue, its claim given up by a worker that stops before it
    /// finished (the service shutting down): the next worker, in this process after a restart or
    /// in another, runs it from the start. The stopped run is not counted as an attempt (it did
    /// not fail). False when the claim is no longer the job's.
    pub async fn release_simulation(&self, id: Uuid, claim: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE simulation_jobs SET status = 'queued', claim = NULL, \
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $1 AND claim = $2 AND status = 'running'",
        )
        .bind(id.to_string())
        .bind(claim)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a result; false (and nothing written) when the claim is no longer the job's.
    pub async fn finish_simulation(
        &self,
        id: Uuid,
        claim: &str,
        now_ms: i64,
        result: std::result::Result<(String, Vec<u8>, u64), String>,
    ) -> Result<bool> {
        let query = match result {
            Ok((summary, output, rows)) => sqlx::query(
                "UPDATE simulation_jobs SET status = 'succeeded', finished_at = $1, summary = $2, output = $3, \
                     output_rows = $4, error = NULL \
                 WHERE id = $5 AND claim = $6 AND status = 'running'",
            )
            .bind(now_ms)
            .bind(summary)
            .bind(output)
            .bind(rows as i64),
            Err(reason) => sqlx::query(
                "UPDATE simulation_jobs SET status = 'failed', finished_at = $1, error = $2 \
                 WHERE id = $3 AND claim = $4 AND status = 'running'",
            )
            .bind(now_ms)
            .bind(reason),
        };
        let done = query.bind(id.to_string()).bind(claim).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    /// The job, if `requester` may see it (`None` sees every job).
    pub async fn get_simulation(&self, id: Uuid, requester: Option<&str>) -> Result<Option<SimulationRecord>> {
        let sql = "SELECT status, requester, params, trace_packets, created_at, started_at, finished_at, attempts, \
                   error, summary, output_rows FROM simulation_jobs WHERE id = $1";
        let Some((row, owner)) = self.fetch_visible(sql, id, requester).await? else { return Ok(None) };
        let opt_time = |c: &str| -> Result<Option<DateTime<Utc>>> {
            row.try_get::<Option<i64>, _>(c)?.map(time_from_ms).transpose()
        };
        Ok(Some(SimulationRecord {
            id,
            status: JobState::from_stored(row.try_get("status")?)?,
            requester: owner,
            params: row.try_get("params")?,
            trace_packets: row.try_get("trace_packets")?,
            created_at: time_from_ms(row.try_get("created_at")?)?,
            started_at: opt_time("started_at")?,
            finished_at: opt_time("finished_at")?,
            attempts: row.try_get("attempts")?,
            error: row.try_get("error")?,
            summary: row.try_get("summary")?,
            output_rows: row.try_get("output_rows")?,
        }))
    }

    /// The encoded output of a job (None when it has none yet).
    pub async fn get_simulation_output(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT output FROM simulation_jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("output")?,
            None => None,
        })
    }

    /// The stored trace of a job as submitted (a home's: one section per device of its table;
    /// None when there is no such job).
    pub async fn get_simulation_trace(&self, id: Uuid) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT trace FROM simulation_jobs WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("trace")?,
            None => None,
        })
    }

    /// Queued and running jobs of one requester.
    pub async fn count_active_simulations(&self, requester: &str) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS c FROM simulation_jobs WHERE requester = $1 AND (status = 'queued' OR status = 'running')",
        )
        .bind(requester)
        .fetch_one(&self.pool)
        .await?
        .try_get("c")?)
    }

    pub async fn count_simulations(&self, status: JobState) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS c FROM simulation_jobs WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&self.pool)
            .await?
            .try_get("c")?)
    }
}
