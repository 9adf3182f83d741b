//! Job records, in SQLite (embedded default, zero setup) or PostgreSQL (deployments).
//!
//! One implementation over sqlx's `Any` driver serves both backends: the queries are written once
//! with `$n` placeholders and portable types; only the migrations differ (`migrations/sqlite`,
//! `migrations/postgres`: BLOB vs BYTEA) and are applied at start.

mod group_commit;
mod perturbations;
mod simulations;

use std::{str::FromStr, time::Duration};

use sqlx::{
    AnyPool,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::Migrator,
};

pub use perturbations::PerturbationJob;
pub use simulations::{ClaimedSimulation, JobState, NewSimulation, SimulationRecord};

use crate::error::{Error, ErrorCode, Result};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// A stored time (milliseconds since the Unix epoch).
pub(crate) fn time_from_ms(ms: i64) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    chrono::Utc
        .timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| Error::Internal(format!("stored time {ms} is out of range")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Writes perturbation jobs, several per statement.
    group_commit: group_commit::GroupCommit,
    /// For an in-memory SQLite database: a second connection, never used, that keeps the database
    /// alive. It lives as long as one connection to it is open, and the pool replaces its
    /// connection when it cannot vouch for it (it did, silently, when 1,000 clients left at once
    /// with requests in flight): without this the new connection found an empty database.
    _memory_keeper: Option<std::sync::Arc<std::sync::Mutex<sqlx::AnyConnection>>>,
    /// For a SQLite file: the task that checkpoints its WAL (stops with the last clone).
    _checkpointer: Option<std::sync::Arc<Checkpointer>>,
}

/// Checkpoints a SQLite database's WAL into the database file from a connection of its own, every
/// [`CHECKPOINT_EVERY`], so that no request waits for one: SQLite otherwise runs a checkpoint
/// (copying the WAL into the file, with an fsync) inside whichever commit crosses its threshold.
/// PASSIVE: it copies what no reader still needs and never blocks the writer. Each checkpoint also
/// makes the WAL durable: what an operating-system crash or power loss can lose is what was
/// committed since the last one (a crash of the service itself loses nothing committed).
#[derive(Debug)]
struct Checkpointer(tokio::task::JoinHandle<()>);

/// How often the WAL checkpointer runs.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(50);

impl Checkpointer {
    fn start(mut conn: sqlx::AnyConnection) -> Self {
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
                    tracing::warn!(error = %e, "WAL checkpoint failed; SQLite checkpoints on its own past 256 MiB");
                }
            }
        }))
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How long a query waits for a pooled connection by default: a database that does not answer
/// within it gets 503 + Retry-After, not a request hanging for the pool's 30 s default.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the service waits at start for a database that does not answer yet.
const START_PATIENCE: Duration = Duration::from_secs(30);

impl Store {
    /// Connects (creating a SQLite file when missing) and applies the migrations, with the default
    /// acquire timeout.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, max_connections, DEFAULT_ACQUIRE_TIMEOUT).await
    }

    /// Connects and migrates; every later query waits at most `acquire_timeout` for a connection.
    /// At start a database that does not answer yet (a container starting beside this one) is
    /// waited for up to 30 s.
    pub async fn connect_with(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let bad = |m: String| Error::invalid(ErrorCode::InvalidDatabaseUrl, m);
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let memory = rest == ":memory:" || rest.contains("mode=memory");
            let url = if rest == ":memory:" {
                // A database of this store's own, by name, so that every connection opens the same
                // one: sqlx's `Any` driver gives each new connection to `:memory:` a new database.
                format!("sqlite:file:ipet-memory-{}?mode=memory&cache=shared", uuid::Uuid::new_v4().simple())
            } else if memory || rest.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{}mode=rwc", if rest.contains('?') { '&' } else { '?' })
            };
            (Backend::Sqlite, url)
        } else {
            return Err(bad(format!("database URL {url:?} must start with sqlite: or postgres://")));
        };
        let memory = backend == Backend::Sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        let options = AnyConnectOptions::from_str(&url).map_err(|e| bad(format!("{url}: {e}")))?;
        // SQLite has one writer at a time: several pooled writers only meet in its busy handler,
        // which sleeps for milliseconds. One connection queues them without sleeping.
        let connections = if backend == Backend::Sqlite { 1 } else { max_connections.max(1) };
        let mut pool = AnyPoolOptions::new().max_connections(connections).acquire_timeout(acquire_timeout);
        if memory {
            // An in-memory database lives as long as one connection to it (see `_memory_keeper`).
            pool = pool.min_connections(1).idle_timeout(None).max_lifetime(None);
        }
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    // Pages of 64 KiB (a new database only: an existing file keeps its own): a
                    // schedule of 25,000 windows is a 4 MB value, 62 pages to the WAL instead of
                    // 1,000. Checkpoints are [`Checkpointer`]'s, off the request path; the WAL
                    // checkpoints itself only past 4,096 pages (256 MiB), should that fall behind,
                    // and the file is cut back to 64 MiB when the WAL starts over.
                    sqlx::raw_sql(
                        "PRAGMA page_size = 65536; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA wal_autocheckpoint = 4096; PRAGMA journal_size_limit = 67108864; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            });
        }
        let memory_keeper = if memory {
            use sqlx::ConnectOptions;
            Some(std::sync::Arc::new(std::sync::Mutex::new(options.connect().await?)))
        } else {
            None
        };
        let started = std::time::Instant::now();
        let pool = loop {
            match pool.clone().connect_with(options.clone()).await {
                Ok(pool) => break pool,
                Err(e) if crate::error::unreachable_database(&e) && started.elapsed() < START_PATIENCE => {
                    tracing::warn!(error = %e, "the database does not answer yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let checkpointer = if backend == Backend::Sqlite && !memory {
            use sqlx::ConnectOptions;
            Some(std::sync::Arc::new(Checkpointer::start(options.connect().await?)))
        } else {
            None
        };
        let group_commit = group_commit::GroupCommit::start(pool.clone(), connections as usize);
        Ok(Self { pool, backend, group_commit, _memory_keeper: memory_keeper, _checkpointer: checkpointer })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The row of a job with this id, and its owner, if `requester` may see it (`None` sees every
    /// job): one ownership rule for every kind of job. `sql` selects `requester` and takes the id
    /// as `$1`.
    pub(crate) async fn fetch_visible(
        &self,
        sql: &'static str,
        id: uuid::Uuid,
        requester: Option<&str>,
    ) -> Result<Option<(sqlx::any::AnyRow, String)>> {
        use sqlx::Row;
        let Some(row) = sqlx::query(sql).bind(id.to_string()).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let owner: String = row.try_get("requester")?;
        if requester.is_some_and(|r| r != owner) {
            return Ok(None);
        }
        Ok(Some((row, owner)))
    }

    /// Whether the database answers within `within`.
    pub async fn ping(&self, within: Duration) -> Result<()> {
        match tokio::time::timeout(within, sqlx::query("SELECT 1").execute(&self.pool)).await {
            Ok(done) => done.map(|_| ()).map_err(Error::from),
            Err(_) => Err(Error::Database(sqlx::Error::PoolTimedOut)),
        }
    }
}
