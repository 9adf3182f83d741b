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

use crate::error::{Error, ErrorCode, unreachable_database};

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `unknown_device`, `invalid_n`.
    #[schema(example = "unknown_device")]
    pub code: ErrorCode,
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
        let message = if self.is_client_error() || matches!(self, Error::ModelReload(_)) {
            if !self.is_client_error() {
                tracing::error!(error = %self, code = self.code().as_str(), "request failed");
            }
            self.to_string()
        } else if status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
            tracing::warn!(error = %self, code = self.code().as_str(), "request refused: the database does not answer");
            "the database does not answer; retry shortly".to_string()
        } else {
            tracing::error!(error = %self, code = self.code().as_str(), "request failed");
            "internal error; the cause is in the service's log".to_string()
        };
        let mut response = (status, Json(ErrorBody { code: self.code(), message })).into_response();
        if status == axum::http::StatusCode::TOO_MANY_REQUESTS || status == axum::http::StatusCode::SERVICE_UNAVAILABLE
        {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(retry_after));
        }
        response
    }
}

impl From<QueryRejection> for Error {
    fn from(r: QueryRejection) -> Self {
        Error::invalid(ErrorCode::InvalidQuery, r.body_text())
    }
}

impl From<PathRejection> for Error {
    fn from(r: PathRejection) -> Self {
        Error::invalid(ErrorCode::InvalidPath, r.body_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_one_list_serialised_as_their_names() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            assert!(c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
            let json = serde_json::to_string(&c).expect("json");
            assert_eq!(json, format!("\"{c}\""));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).expect("back"), c);
        }
        assert!(serde_json::from_str::<ErrorCode>("\"no_such_code\"").is_err());
    }

    #[test]
    fn client_errors_are_the_4xx_ones_and_timeouts() {
        let errors = [
            Error::invalid(ErrorCode::InvalidN, "x"),
            Error::not_found(ErrorCode::UnknownDevice, "x"),
            Error::UnsupportedMediaType("x".into()),
            Error::Timeout("x".into()),
            Error::TooLarge("x".into()),
            Error::MethodNotAllowed("x".into()),
            Error::UriTooLong("x".into()),
            Error::HeadersTooLarge("x".into()),
            Error::Conflict { code: ErrorCode::JobNotFinished, message: "x".into() },
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
