//! Wiring: configuration -> model engine + job store -> HTTP server.

use std::{net::SocketAddr, sync::{Arc, OnceLock}};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    config::ServeConfig,
    error::{Error, Result},
    models::{Engine, ModelSet},
    store::Store,
};

/// Request limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_n: usize,
    pub request_timeout_secs: u64,
    pub max_body_bytes: usize,
}

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub store: Store,
    pub limits: Arc<Limits>,
    pub prometheus: PrometheusHandle,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>, store: Store, limits: Limits, max_concurrent_requests: usize) -> Self {
        Self {
            engine,
            store,
            limits: Arc::new(limits),
            prometheus: prometheus(),
            in_flight: Arc::new(Semaphore::new(max_concurrent_requests.max(1))),
        }
    }

    /// A slot for one expensive request, or 429 when all are taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded("too many requests in flight; retry shortly".into()))
    }

    /// Loads and checks the model set, connects the store, from a configuration.
    pub async fn from_config(config: &ServeConfig) -> Result<Self> {
        let set = ModelSet::load(&config.models.models)?;
        let engine_config = config.models.engine_config();
        let engine = tokio::task::spawn_blocking(move || Engine::start(set, &engine_config))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let store = Store::connect(&config.database_url, config.db_max_connections).await?;
        let limits = Limits {
            max_n: config.max_n,
            request_timeout_secs: config.request_timeout_secs,
            max_body_bytes: config.max_body_bytes,
        };
        Ok(Self::new(Arc::new(engine), store, limits, config.max_concurrent_requests))
    }
}

/// The process-wide Prometheus recorder.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let builder = PrometheusBuilder::new().set_buckets(&buckets).unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (an embedding program's): render ours detached.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Runs the service until SIGINT/SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    let state = AppState::from_config(&config).await?;
    let set = state.engine.model_set();
    tracing::info!(
        model_set = %set.label(),
        devices = set.manifest.devices.len(),
        generations = set.generations(),
        database = ?state.store.backend(),
        "model set loaded and checked"
    );
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::io(format!("binding {addr}"), e))?;
    let local = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    tracing::info!(%local, "listening; API docs at http://{local}/docs");
    axum::serve(listener, crate::http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::io("serving", e))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
