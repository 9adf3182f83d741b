//! Errors as HTTP responses: one JSON shape, a stable `code` and a `message` naming the problem.
//! Internal causes are logged, never returned.

use axum::{
    Json,
    extract::rejection::{PathRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{Error, unreachable_database};

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

impl Error {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::QuotaExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Error::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::Database(e) if unreachable_database(e) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_the_4xx_ones_and_timeouts() {
        let errors = [
            Error::invalid("invalid_n", "x"),
            Error::not_found("unknown_device", "x"),
            Error::UnsupportedMediaType("x".into()),
            Error::Timeout("x".into()),
            Error::TooLarge("x".into()),
            Error::MethodNotAllowed("x".into()),
            Error::UriTooLong("x".into()),
            Error::HeadersTooLarge("x".into()),
            Error::Conflict { code: "job_not_finished", message: "x".into() },
            Error::Unauthorized("x".into()),
            Error::Forbidden("x".into()),
            Error::RateLimited { message: "x".into(), retry_after: std::time::Duration::from_secs(1) },
            Error::Model("x".into()),
            Error::QuotaExceeded("x".into()),
            Error::Overloaded("x".into()),
            Error::Database(sqlx::Error::PoolTimedOut),
            Error::Database(sqlx::Error::RowNotFound),
            Error::io("x", std::io::Error::other("x")),
            Error::Internal("x".into()),
        ];
        for e in &errors {
            let want = e.status().is_client_error() || matches!(e, Error::Timeout(_));
            assert_eq!(e.is_client_error(), want, "{e:?} answered {}", e.status());
        }
    }
}
