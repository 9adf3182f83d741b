//! Startup, in one place: configuration checked, telemetry, model sets and their engines, the job
//! store, the simulation workers, the socket bound (port 0 picks a free one); then serving until
//! a shutdown signal. `ipet serve` runs [`serve`]; tests start the same way with [`start`] and
//! read the bound address from [`Started::addr`].

use std::{net::SocketAddr, sync::Arc};

use tokio::net::TcpListener;

use crate::{
    app::{AppState, Limits},
    auth::Auth,
    config::ServeConfig,
    error::{Error, ErrorCode, Result},
    http::server::{ConnectionLimits, serve_connections},
    jobs::{WorkerConfig, worker},
    models::ModelSets,
    store::Store,
};

/// A service ready to serve: its state (model sets, store, workers running) and its bound socket.
pub struct Started {
    pub state: AppState,
    /// The address the socket is bound to (the actual port when the configuration asked for 0).
    pub addr: SocketAddr,
    listener: TcpListener,
    limits: ConnectionLimits,
}

/// Starts everything the service runs on, in order, and binds its socket: refuses an open
/// service beyond loopback before loading anything, then loads and checks the model sets,
/// connects the store (migrations applied), starts the simulation workers, reloads model sets on
/// SIGHUP, and binds.
pub async fn start(config: &ServeConfig) -> Result<Started> {
    let a = &config.access;
    let auth = Auth::from_config(a.tokens_file.as_deref(), a.tokens.as_deref(), a.rate_limit_per_minute)?;
    if !auth.enabled() {
        if !config.bind.is_loopback() && !a.allow_unauthenticated {
            return Err(Error::invalid(
                ErrorCode::UnauthenticatedBind,
                format!(
                    "no tokens are configured, so the service only listens on loopback; to listen on {} configure tokens (--tokens-file) or pass --allow-unauthenticated",
                    config.bind
                ),
            ));
        }
        tracing::warn!(bind = %config.bind, "no tokens configured: every caller is anonymous with every scope");
    }
    let mut dirs = vec![config.models.models.clone()];
    dirs.extend(config.model_sets.iter().cloned());
    let engine_config = config.models.engine_config();
    let models = tokio::task::spawn_blocking(move || ModelSets::load(dirs, engine_config))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let acquire = std::time::Duration::from_millis(config.db_acquire_timeout_ms.max(1));
    let store = Store::connect_with(&config.database_url, config.db_max_connections, acquire).await?;
    let limits = Limits {
        max_n: config.max_n,
        max_concurrent_requests: config.max_concurrent_requests,
        request_timeout_secs: config.request_timeout_secs,
        max_body_bytes: config.max_body_bytes,
        jobs: config.jobs.job_limits(),
    };
    let state = AppState::with_models(Arc::new(models), store, limits).with_auth(auth);
    let state = start_workers(state, config.jobs.worker_config()).await?;
    for engine in state.models.engines() {
        let set = engine.model_set();
        tracing::info!(
            model_set = %set.label(),
            devices = set.manifest.devices.len(),
            generations = set.generations(),
            database = ?state.store.backend(),
            "model set loaded and checked"
        );
    }
    #[cfg(unix)]
    reload_on_sighup(state.models.clone());
    let addr = SocketAddr::new(config.bind, config.port);
    let listener = TcpListener::bind(addr).await.map_err(|e| Error::io(format!("binding {addr}"), e))?;
    let addr = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    let limits = ConnectionLimits::from_config(config);
    tracing::info!(
        local = %addr,
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        "listening; API docs at http://{addr}/docs"
    );
    Ok(Started { state, addr, listener, limits })
}

/// Starts `config.workers` simulation workers in this process on the state's model sets and
/// store; the state's job signal then wakes them when a job is queued.
pub async fn start_workers(mut state: AppState, config: WorkerConfig) -> Result<AppState> {
    state.jobs = worker::start_with_models(state.models.clone(), state.store.clone(), config).await?;
    Ok(state)
}

/// How long a stopping service waits for its simulation workers to put their running jobs back
/// in the queue (each stops at its next output row, so this is a bound, not the usual time).
pub const WORKER_STOP: std::time::Duration = std::time::Duration::from_secs(10);

impl Started {
    /// Serves the API until `shutdown` resolves; then, at once and side by side, lets requests in
    /// flight finish (at most [`crate::http::server::DRAIN`]) and stops the simulation workers
    /// (at most [`WORKER_STOP`]): a running job stops at its next output row and is queued to run
    /// again, so the process exits within 30 s of the signal however long its jobs are.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let jobs = self.state.jobs.clone();
        let (signalled, stop) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            shutdown.await;
            let _ = signalled.send(());
        };
        let stop_workers = async move {
            if stop.await.is_ok() && !jobs.stop(WORKER_STOP).await {
                tracing::warn!(
                    wait_s = WORKER_STOP.as_secs(),
                    "a simulation worker did not stop in time; its job runs again after the restart"
                );
            }
        };
        tokio::join!(
            serve_connections(self.listener, crate::http::router(self.state), self.limits, shutdown),
            stop_workers
        );
    }
}

/// Runs the service until SIGINT/SIGTERM.
pub async fn serve(config: ServeConfig) -> Result<()> {
    start(&config).await?.serve(shutdown_signal()).await;
    Ok(())
}

/// Reloads every model set on SIGHUP; a set that fails to load leaves the served ones in place.
#[cfg(unix)]
fn reload_on_sighup(models: Arc<ModelSets>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: model sets reload only through POST /model-sets/reload");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match models.reload().await {
                Ok(labels) => tracing::info!(?labels, "SIGHUP: model sets reloaded"),
                Err(e) => tracing::error!(error = %e, "SIGHUP: reload failed; the loaded model sets stay served"),
            }
        }
    });
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
