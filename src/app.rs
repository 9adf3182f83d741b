//! Wiring: configuration -> model engine + job store -> HTTP server.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    auth::Auth,
    config::ServeConfig,
    error::{Error, Result},
    jobs::{JobSignal, WorkerConfig, worker},
    models::{Engine, ModelSets},
    store::Store,
};

/// Request limits, from the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_n: usize,
    /// Expensive requests handled at once; more get 429.
    pub max_concurrent_requests: usize,
    pub request_timeout_secs: u64,
    pub max_body_bytes: usize,
    /// Work one simulation job may ask for.
    pub jobs: crate::jobs::submit::JobLimits,
}

#[derive(Clone)]
pub struct AppState {
    /// The served model sets (the default first), chosen per request.
    pub models: Arc<ModelSets>,
    pub store: Store,
    pub limits: Arc<Limits>,
    pub prometheus: PrometheusHandle,
    /// Wakes this process's simulation workers when a job is queued.
    pub jobs: JobSignal,
    pub auth: Auth,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    /// State without simulation workers in this process (see [`AppState::with_jobs`]).
    pub fn new(engine: Arc<Engine>, store: Store, limits: Limits) -> Self {
        Self::with_models(Arc::new(ModelSets::single(engine)), store, limits)
    }

    /// State serving several model sets.
    pub fn with_models(models: Arc<ModelSets>, store: Store, limits: Limits) -> Self {
        Self {
            models,
            store,
            in_flight: Arc::new(Semaphore::new(limits.max_concurrent_requests.max(1))),
            limits: Arc::new(limits),
            prometheus: prometheus(),
            jobs: JobSignal::default(),
            auth: Auth::open(),
        }
    }

    /// Requires bearer tokens (see [`Auth`]).
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Starts `config.workers` simulation workers in this process.
    pub async fn with_jobs(mut self, config: WorkerConfig) -> Result<Self> {
        self.jobs = worker::start_with_models(self.models.clone(), self.store.clone(), config).await?;
        Ok(self)
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
        let a = &config.access;
        let auth = Auth::from_config(a.tokens_file.as_deref(), a.tokens.as_deref(), a.rate_limit_per_minute)?;
        Self::with_models(Arc::new(models), store, limits).with_auth(auth).with_jobs(config.jobs.worker_config()).await
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
    // Refuse an open service beyond loopback before loading anything.
    let a = &config.access;
    let auth = Auth::from_config(a.tokens_file.as_deref(), a.tokens.as_deref(), 0)?;
    if !auth.enabled() {
        if !config.bind.is_loopback() && !a.allow_unauthenticated {
            return Err(Error::invalid(
                "unauthenticated_bind",
                format!(
                    "no tokens are configured, so the service only listens on loopback; to listen on {} configure tokens (--tokens-file) or pass --allow-unauthenticated",
                    config.bind
                ),
            ));
        }
        tracing::warn!(bind = %config.bind, "no tokens configured: every caller is anonymous with every scope");
    }
    let state = AppState::from_config(&config).await?;
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
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::io(format!("binding {addr}"), e))?;
    let local = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    let limits = ConnectionLimits::from_config(&config);
    tracing::info!(
        %local,
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        "listening; API docs at http://{local}/docs"
    );
    serve_connections(listener, crate::http::router(state), limits, shutdown_signal()).await;
    Ok(())
}

/// How connections are held: how many at once, how long a request's head may take.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: std::time::Duration,
}

/// File descriptors kept for everything but client connections (database, models, logs).
const RESERVED_FDS: u64 = 128;

impl ConnectionLimits {
    /// From the configuration, with the open-files limit raised to fit the connection limit, or
    /// the connection limit lowered (with a warning) to fit what the system allows.
    pub fn from_config(config: &ServeConfig) -> Self {
        let wanted = config.max_connections.max(1);
        let max_connections = match rlimit::increase_nofile_limit(wanted as u64 + RESERVED_FDS) {
            Ok(limit) if limit >= wanted as u64 + RESERVED_FDS => wanted,
            Ok(limit) => {
                let fit = limit.saturating_sub(RESERVED_FDS).max(1) as usize;
                tracing::warn!(
                    open_files_limit = limit,
                    wanted,
                    allowed = fit,
                    "the open-files limit cannot be raised enough; holding fewer connections"
                );
                fit
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or raise the open-files limit; keeping --max-connections");
                wanted
            }
        };
        Self { max_connections, header_timeout: std::time::Duration::from_secs(config.header_timeout_secs.max(1)) }
    }
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves: at most `max_connections` at once
/// (more wait in the backlog), each closed when a request's head takes longer than
/// `header_timeout` (idle keep-alive included). Then waits up to 30 s for requests in flight.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Above the router's own limits (crate::http::MAX_HEADERS, MAX_HEADER_BYTES), so that an
        // oversized head gets the JSON error body from the router, not hyper's bare status.
        .max_headers(4 * crate::http::MAX_HEADERS)
        .max_buf_size(4 * (crate::http::MAX_HEADER_BYTES + crate::http::MAX_URI_BYTES));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_accept_error: Option<std::time::Instant> = None;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or the like: log once a second, back off a little.
                    if last_accept_error.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(1)) {
                        tracing::error!(error = %e, "accept failed");
                        last_accept_error = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {},
        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
            tracing::warn!("requests still in flight after 30 s; closing");
        }
    }
}

/// Reloads every model set on SIGHUP; a set that fails to load leaves the served ones in place.
#[cfg(unix)]
fn reload_on_sighup(models: Arc<crate::models::ModelSets>) {
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
