//! Perturbation job records.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Store, time_from_ms};
use crate::{error::Result, models::Schedule};

#[derive(Debug, Clone)]
pub struct PerturbationJob {
    pub id: Uuid,
    pub device: String,
    /// An index, or `mix`.
    pub generation: String,
    pub n: usize,
    pub seed: Option<u64>,
    /// `name@version` of the model set that made it.
    pub model_set: String,
    pub created_at: DateTime<Utc>,
    pub requester: String,
    pub schedule: Schedule,
}

impl Store {
    /// Stores `job` (with the other jobs arriving meanwhile: `store/group_commit.rs`); gives it
    /// back once it is committed.
    pub async fn insert_perturbation(&self, job: PerturbationJob) -> Result<PerturbationJob> {
        self.group_commit.insert(job).await
    }

    /// The job with this id, if `requester` may see it (`None` sees every job).
    pub async fn get_perturbation(&self, id: Uuid, requester: Option<&str>) -> Result<Option<PerturbationJob>> {
        let sql = "SELECT device, generation, n, seed, model_set, created_at, requester, slots, generations, \
                   element_bytes, vectors FROM perturbation_jobs WHERE id = $1";
        let Some((row, owner)) = self.fetch_visible(sql, id, requester).await? else { return Ok(None) };
        let slots: i64 = row.try_get("slots")?;
        let width: i64 = row.try_get("element_bytes")?;
        let generations: Vec<u8> = row.try_get("generations")?;
        let vectors: Vec<u8> = row.try_get("vectors")?;
        let created: i64 = row.try_get("created_at")?;
        Ok(Some(PerturbationJob {
            id,
            device: row.try_get("device")?,
            generation: row.try_get("generation")?,
            n: row.try_get::<i64, _>("n")? as usize,
            seed: row.try_get::<Option<i64>, _>("seed")?.map(|s| s as u64),
            model_set: row.try_get("model_set")?,
            created_at: time_from_ms(created)?,
            requester: owner,
            schedule: Schedule::from_parts(slots as usize, generations, width as u8, vectors)?,
        }))
    }

    /// Slots per window of the job's schedule, if `requester` may see it (the schedule itself is
    /// not read).
    pub async fn perturbation_slots(&self, id: Uuid, requester: Option<&str>) -> Result<Option<usize>> {
        let sql = "SELECT requester, slots FROM perturbation_jobs WHERE id = $1";
        let Some((row, _)) = self.fetch_visible(sql, id, requester).await? else { return Ok(None) };
        Ok(Some(row.try_get::<i64, _>("slots")? as usize))
    }

    pub async fn count_perturbations(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS c FROM perturbation_jobs").fetch_one(&self.pool).await?.try_get("c")?)
    }
}
