//! Test harness: the app in-process over the shipped model set, on an isolated SQLite or
//! PostgreSQL database per test.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, Request, StatusCode},
};
use http_body_util::BodyExt;
use ipet::{
    app::{AppState, Limits},
    config::ModelArgs,
    jobs::WorkerConfig,
    models::{Engine, ModelSet, ModelSets},
    store::Store,
};
use tower::ServiceExt;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn model_args() -> ModelArgs {
    ModelArgs {
        models: std::env::var_os("IPET_TEST_MODELS")
            .map_or_else(|| repo().join("models/tj-oconnor-2021"), PathBuf::from),
        ort_library: std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from),
        inference_threads: 2,
        max_batch_rows: 8192,
    }
}

/// One engine per test binary: loading 35 generators on every test would only test patience.
pub fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let args = model_args();
            let set = ModelSet::load(&args.models).expect("the shipped model set loads");
            Arc::new(Engine::start(set, &args.engine_config()).expect("the engine starts"))
        })
        .clone()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// PostgreSQL server for tests; `.ci/run` starts one when none runs.
pub fn postgres_admin_url() -> String {
    std::env::var("IPET_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestApp {
    /// Sent as `Authorization: Bearer` on every request that has none (see `use_token`).
    token: std::sync::Mutex<Option<String>>,
    pub state: AppState,
    pub router: Router,
    pub db: Db,
    pub database: Option<String>,
}

pub const MAX_N: usize = 30_000;

pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        workers: 1,
        lease: Duration::from_secs(2),
        poll: Duration::from_millis(100),
        max_attempts: 3,
        rate_limit: 0,
        chunk: 64,
        max_output_rows: 5_000_000,
    }
}

impl TestApp {
    pub async fn new(db: Db) -> Self {
        Self::with_limits(db, 64).await
    }

    pub async fn with_limits(db: Db, max_concurrent: usize) -> Self {
        Self::build(db, max_concurrent, Some(worker_config())).await
    }

    /// No simulation worker: jobs stay queued.
    pub async fn without_workers(db: Db) -> Self {
        Self::build(db, 64, None).await
    }

    /// No worker, on a database URL of the test's own (its `cleanup` drops nothing).
    pub async fn on_url(url: &str) -> Self {
        let store = Store::connect(url, 4).await.expect("store connects");
        Self::on_store(store, Db::Postgres, None, 64, None, ModelSets::single(engine())).await
    }

    /// Over another model set's engine (no simulation worker).
    pub async fn with_engine(db: Db, engine: Arc<Engine>) -> Self {
        Self::build_with(db, 64, None, engine).await
    }

    async fn build(db: Db, max_concurrent: usize, workers: Option<WorkerConfig>) -> Self {
        Self::build_with(db, max_concurrent, workers, engine()).await
    }

    /// Serving several model sets (the first the default), with a simulation worker.
    pub async fn with_model_sets(db: Db, engines: Vec<Arc<Engine>>) -> Self {
        Self::build_over(db, 64, Some(worker_config()), ModelSets::of(engines).expect("model sets")).await
    }

    async fn build_with(db: Db, max_concurrent: usize, workers: Option<WorkerConfig>, engine: Arc<Engine>) -> Self {
        Self::build_over(db, max_concurrent, workers, ModelSets::single(engine)).await
    }

    async fn build_over(db: Db, max_concurrent: usize, workers: Option<WorkerConfig>, models: ModelSets) -> Self {
        let (url, database) = match db {
            Db::Sqlite => ("sqlite::memory:".to_string(), None),
            Db::Postgres => {
                let name = format!("ipet_test_{}", uuid::Uuid::new_v4().simple());
                let admin = postgres_admin_url();
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.unwrap_or_else(|e| {
                    panic!("PostgreSQL at {admin} is needed for the Postgres tests (.ci/run starts it): {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
                (format!("{base}/{name}"), Some(name))
            }
        };
        let store = Store::connect(&url, 4).await.expect("store connects");
        Self::on_store(store, db, database, max_concurrent, workers, models).await
    }

    async fn on_store(
        store: Store,
        db: Db,
        database: Option<String>,
        max_concurrent: usize,
        workers: Option<WorkerConfig>,
        models: ModelSets,
    ) -> Self {
        let limits = Limits {
            max_n: MAX_N,
            max_concurrent_requests: max_concurrent,
            request_timeout_secs: 30,
            max_body_bytes: 8 << 20,
            jobs: Default::default(),
        };
        let mut state = AppState::with_models(Arc::new(models), store, limits);
        if let Some(config) = workers {
            state = ipet::startup::start_workers(state, config).await.expect("workers start");
        }
        let router = ipet::http::router(state.clone());
        Self { token: Default::default(), state, router, db, database }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.request(Request::get(uri).body(Body::empty()).expect("request")).await
    }

    pub async fn get_with(&self, uri: &str, header: (&str, &str)) -> Reply {
        self.request(Request::get(uri).header(header.0, header.1).body(Body::empty()).expect("request")).await
    }

    /// POSTs a multipart form: (name, file name or None, bytes).
    pub async fn post_form(&self, uri: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Reply {
        let boundary = "ipet-test-boundary-7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        for (name, file, bytes) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match file {
                Some(f) => body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let req = Request::post(uri)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(Body::from(body))
            .expect("request");
        self.request(req).await
    }

    pub async fn post_json(&self, uri: &str, value: &serde_json::Value) -> Reply {
        let req = Request::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(value.to_string()))
            .expect("request");
        self.request(req).await
    }

    /// Polls a simulation until it leaves queued/running (at most `secs`).
    pub async fn wait_simulation(&self, id: &str, secs: u64) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.get(&format!("/simulations/{id}")).await.json();
            let status = v["status"].as_str().unwrap_or("").to_string();
            if status == "succeeded" || status == "failed" {
                return v;
            }
            assert!(std::time::Instant::now() < deadline, "simulation {id} still {status} after {secs} s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Requires tokens from now on (rebuilds the router over the same database).
    pub fn require_tokens(&mut self, auth: ipet::auth::Auth) {
        self.state = self.state.clone().with_auth(auth);
        self.router = ipet::http::router(self.state.clone());
    }

    pub fn use_token(&self, token: Option<&str>) {
        *self.token.lock().expect("lock") = token.map(str::to_string);
    }

    pub async fn request(&self, mut req: Request<Body>) -> Reply {
        let token = self.token.lock().expect("lock").clone();
        if let Some(t) = token
            && !req.headers().contains_key("authorization")
        {
            req.headers_mut().insert("authorization", format!("Bearer {t}").parse().expect("header"));
        }
        let res = self.router.clone().oneshot(req).await.expect("router answers");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.expect("body").to_bytes().to_vec();
        Reply { status, headers, body }
    }

    /// Drops the test's PostgreSQL database.
    pub async fn cleanup(self) {
        if let Some(name) = self.database {
            self.state.store.pool().close().await;
            if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await;
            }
        }
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts an error response: status, stable code, and a message containing `needle`.
    pub fn assert_error(&self, status: StatusCode, code: &str, needle: &str) {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        let v = self.json();
        assert_eq!(v["code"], code, "{v}");
        let msg = v["message"].as_str().expect("message");
        assert!(msg.contains(needle), "message {msg:?} should mention {needle:?}");
    }
}

/// Runs the same async test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::TestApp::new($crate::common::Db::Sqlite).await;
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::common::TestApp::new($crate::common::Db::Postgres).await;
                    super::$name(&app).await;
                    app.cleanup().await;
                }
            )*
        }
    };
}
