//! Operations: liveness, readiness, Prometheus metrics.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::AppState,
    auth::{Caller, Scope},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics_text))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` with the reason in `detail`.
    pub status: String,
    pub detail: Option<String>,
    pub model_set: Option<String>,
    pub database: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()), responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into(), detail: None, model_set: None, database: None })
}

/// Models are loaded and the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()), responses(
    (status = 200, description = "Ready to serve", body = Health),
    (status = 503, description = "The database does not answer", body = Health,
        headers(("Retry-After" = u64, description = "Seconds to wait before asking again"))),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let model_set = Some(state.models.default_engine().model_set().label());
    let database = Some(format!("{:?}", state.store.backend()).to_lowercase());
    // Answered within a second whatever the database does: a hung probe is no answer.
    match state.store.ping(std::time::Duration::from_secs(1)).await {
        Ok(()) => Json(Health { status: "ok".into(), detail: None, model_set, database }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                // Like every other 503 of the service (storage_unavailable).
                [(header::RETRY_AFTER, "1")],
                Json(Health {
                    status: "unavailable".into(),
                    detail: Some("the database does not answer".into()),
                    model_set,
                    database,
                }),
            )
                .into_response()
        }
    }
}

/// Prometheus metrics: requests and latencies per route, generator latency, stored jobs.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
    (status = 401, description = "No valid bearer token", body = crate::http::error::ErrorBody),
    (status = 403, description = "The token may not read metrics", body = crate::http::error::ErrorBody),
))]
pub async fn metrics_text(State(state): State<AppState>, caller: Caller) -> crate::error::Result<impl IntoResponse> {
    caller.require(Scope::Metrics)?;
    if let Ok(n) = state.store.count_perturbations().await {
        metrics::gauge!("ipet_perturbation_jobs").set(n as f64);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.prometheus.render()))
}
