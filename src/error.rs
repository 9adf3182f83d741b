//! The one error type of the crate.
//!
//! Every failure carries a stable machine code (`code()`, an [`ErrorCode`]), used as the `code` field of HTTP error
//! bodies and in CLI messages, and a human message naming the problem. Internal causes (database,
//! ONNX Runtime, I/O) are logged by the HTTP layer and never shown to clients. The HTTP status of
//! each kind is the HTTP layer's business (`crate::http::error`).

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use ipet_traffic::error::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not something we can read (not a capture, bad CSV, bad parameter).
    #[error("{message}")]
    InvalidInput { code: ErrorCode, message: String },

    /// A named thing does not exist (device, generation, job).
    #[error("{message}")]
    NotFound { code: ErrorCode, message: String },

    /// A request body in a media type the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),

    /// The request took longer than the configured timeout.
    #[error("{0}")]
    Timeout(String),

    /// A request body over the configured limit.
    #[error("{0}")]
    TooLarge(String),

    /// A route that exists, asked with a method it does not take.
    #[error("{0}")]
    MethodNotAllowed(String),

    /// A request target (path and query) longer than the service reads.
    #[error("{0}")]
    UriTooLong(String),

    /// Request headers larger or more numerous than the service reads.
    #[error("{0}")]
    HeadersTooLarge(String),

    /// The resource exists but is not in a state that allows this (e.g. a job still running).
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },

    /// No or an invalid bearer token.
    #[error("{0}")]
    Unauthorized(String),

    /// A valid token without the scope this needs.
    #[error("{0}")]
    Forbidden(String),

    /// A caller over its rate limit.
    #[error("{message}")]
    RateLimited { message: String, retry_after: std::time::Duration },

    /// A model set that cannot be served (manifest or ONNX file wrong).
    #[error("model set: {0}")]
    Model(String),

    /// A reload of the model sets that failed (the served sets stay): names the set and the
    /// cause, and is answered as it is (500 `model_set_invalid`; reloading is the admin's call).
    #[error("{0}")]
    ModelReload(String),

    /// A caller holding as many unfinished jobs as it may.
    #[error("{0}")]
    QuotaExceeded(String),

    /// The service is saturated; try again later.
    #[error("{0}")]
    Overloaded(String),

    #[error("ONNX Runtime: {0}")]
    Onnx(#[from] ort::Error),

    #[error("database: {0}")]
    Database(#[from] sqlx::Error),

    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{0}")]
    Internal(String),
}

/// Whether a database error means the database cannot be reached now (down, restarting, the
/// network cut, every connection busy past the acquire timeout), rather than a wrong query.
pub fn unreachable_database(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
    ) || matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| {
        // PostgreSQL: admin shutdown, crash shutdown, cannot connect now, too many connections.
        matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
    }))
}

/// The data plane's errors are the service's, variant for variant.
impl From<ipet_traffic::Error> for Error {
    fn from(e: ipet_traffic::Error) -> Self {
        match e {
            ipet_traffic::Error::InvalidInput { code, message } => Error::InvalidInput { code, message },
            ipet_traffic::Error::Io { context, source } => Error::Io { context, source },
            ipet_traffic::Error::Internal(m) => Error::Internal(m),
            ipet_traffic::Error::Upstream(e) => match e.downcast::<Error>() {
                Ok(e) => *e,
                Err(e) => Error::Internal(e.to_string()),
            },
        }
    }
}

/// A service error raised inside a data-plane callback travels through it unchanged.
impl From<Error> for ipet_traffic::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput { code, message } => ipet_traffic::Error::InvalidInput { code, message },
            e => ipet_traffic::Error::Upstream(Box::new(e)),
        }
    }
}

impl Error {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::InvalidInput { code, message: message.into() }
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::NotFound { code, message: message.into() }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidInput { code, .. } | Error::NotFound { code, .. } => *code,
            Error::TooLarge(_) => ErrorCode::TooLarge,
            Error::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            Error::UriTooLong(_) => ErrorCode::UriTooLong,
            Error::HeadersTooLarge(_) => ErrorCode::HeadersTooLarge,
            Error::Timeout(_) => ErrorCode::Timeout,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Error::Conflict { code, .. } => *code,
            Error::Model(_) | Error::ModelReload(_) => ErrorCode::ModelSetInvalid,
            Error::Overloaded(_) => ErrorCode::Overloaded,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Error::Onnx(_) => ErrorCode::InferenceFailed,
            Error::Database(e) if unreachable_database(e) => ErrorCode::StorageUnavailable,
            Error::Database(_) | Error::Migrate(_) => ErrorCode::StorageFailed,
            Error::Io { .. } => ErrorCode::IoFailed,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Whether the message may be shown to a client as is: the caller's own mistake (a 4xx over
    /// HTTP), or a timeout.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidInput { .. }
                | Error::NotFound { .. }
                | Error::UnsupportedMediaType(_)
                | Error::Timeout(_)
                | Error::TooLarge(_)
                | Error::MethodNotAllowed(_)
                | Error::UriTooLong(_)
                | Error::HeadersTooLarge(_)
                | Error::Conflict { .. }
                | Error::Unauthorized(_)
                | Error::Forbidden(_)
                | Error::RateLimited { .. }
                | Error::QuotaExceeded(_)
                | Error::Overloaded(_)
        )
    }
}
