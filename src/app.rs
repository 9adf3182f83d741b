//! The application state every request handler shares: the served model sets, the job store, the
//! request limits, the tokens, the signal that wakes simulation workers. Built by
//! [`crate::startup`] (and by tests); the router is built from it by [`crate::http::router`].

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    auth::Auth,
    error::{Error, Result},
    jobs::JobSignal,
    models::{Engine, ModelSets},
    store::Store,
    telemetry,
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
    /// Wakes this process's simulation workers when a job is queued (see
    /// [`crate::startup::start_workers`]; without workers it wakes nobody).
    pub jobs: JobSignal,
    pub auth: Auth,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    /// State without simulation workers in this process (see [`crate::startup::start_workers`]).
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
            prometheus: telemetry::prometheus(),
            jobs: JobSignal::default(),
            auth: Auth::open(),
        }
    }

    /// Requires bearer tokens (see [`Auth`]).
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// A slot for one expensive request, or 429 when all are taken.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit> {
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded("too many requests in flight; retry shortly".into()))
    }
}
