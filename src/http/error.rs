//! Errors as HTTP responses: one JSON shape, a stable `code` and a `message` naming the problem.
//! Internal causes are logged, never returned.

use axum::{
    Json,
    extract::rejection::{PathRejection, QueryRejection},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Error;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_device`, `invalid_n`.
    #[schema(example = "unknown_device")]
    pub code: String,
    /// What went wrong, for a person.
    #[schema(example = "device \"toaster\" is not in the model set; devices: blink-cam-01, ...")]
    pub message: String,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            Error::RateLimited { retry_after, .. } => retry_after.as_secs().max(1),
            _ => 1,
        };
        let message = if self.is_client_error() {
            self.to_string()
        } else if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, code = self.code(), "request refused: the database does not answer");
            "the database does not answer; retry shortly".to_string()
        } else {
            tracing::error!(error = %self, code = self.code(), "request failed");
            "internal error; the cause is in the service's log".to_string()
        };
        let mut response = (status, Json(ErrorBody { code: self.code().to_string(), message })).into_response();
        if status == axum::http::StatusCode::TOO_MANY_REQUESTS || status == axum::http::StatusCode::SERVICE_UNAVAILABLE
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(retry_after));
        }
        response
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Self {
        Error::invalid("invalid_query", r.body_text())
    }
}

impl From<PathRejection> for Error {
    fn from(r: PathRejection) -> Self {
        Error::invalid("invalid_path", r.body_text())
    }
}
