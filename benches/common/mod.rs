//! What the service benches share: the engine over the shipped (or `IPET_MODELS`) model set, and
//! a PostgreSQL database of their own for the run.

use std::{path::PathBuf, sync::Arc};

use ipet::{
    config::ModelArgs,
    models::{Engine, ModelSet},
};

/// The engine the service would start (one inference thread per core), after printing what it
/// serves.
pub fn engine() -> Arc<Engine> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args = ModelArgs {
        models: std::env::var_os("IPET_MODELS").map_or_else(|| root.join("models/tj-oconnor-2021"), PathBuf::from),
        ort_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        inference_threads: 0,
        max_batch_rows: 8192,
    };
    let config = args.engine_config();
    let set = ModelSet::load(&args.models).expect("model set");
    println!(
        "model set {} | {} inference threads | {} cores",
        set.label(),
        config.threads,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Arc::new(Engine::start(set, &config).expect("engine"))
}

/// A database created for this run on the server at IPET_BENCH_POSTGRES_URL (default: the local
/// one), dropped by [`Postgres::drop_database`]; None, said on stdout, when no server answers.
pub struct Postgres {
    admin: sqlx::PgConnection,
    name: String,
    pub url: String,
}

impl Postgres {
    pub async fn create(prefix: &str) -> Option<Self> {
        let pg = std::env::var("IPET_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut admin = match <sqlx::PgConnection as sqlx::Connection>::connect(&pg).await {
            Ok(conn) => conn,
            Err(e) => {
                println!("postgres | skipped: {pg} does not answer ({e})");
                return None;
            }
        };
        let name = format!("{prefix}_{}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create db");
        let base = pg.rsplit_once('/').map_or(pg.clone(), |(b, _)| b.to_string());
        Some(Self { url: format!("{base}/{name}"), admin, name })
    }

    pub async fn drop_database(mut self) {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {} WITH (FORCE)", self.name)))
            .execute(&mut self.admin)
            .await
            .expect("drop db");
    }
}

/// Runs `f` on a multi-threaded runtime, as the service does.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime").block_on(f)
}

/// A SQLite database file in `dir`.
pub fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite:{}", dir.path().join("bench.sqlite3").display())
}
