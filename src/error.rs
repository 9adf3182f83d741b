//! The one error type of the crate.
//!
//! Every failure carries a stable machine code (`code()`, an [`ErrorCode`]), used as the `code` field of HTTP error
//! bodies and in CLI messages, and a human message naming the problem. Internal causes (database,
//! ONNX Runtime, I/O) are logged by the HTTP layer and never shown to clients. The HTTP status of
//! each kind is the HTTP layer's business (`crate::http::error`).

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every stable error code, as the `code` field of an HTTP error body and in CLI messages. The
/// one list: the OpenAPI spec enumerates it.
macro_rules! error_codes {
    ($($variant:ident = $code:literal,)*) => {
        /// A stable machine-readable error code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($variant,)*
        }

        impl ErrorCode {
            /// Every code, in the spec's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }
        }
    };
}

error_codes! {
    AmbiguousCover = "ambiguous_cover",
    AmbiguousTargets = "ambiguous_targets",
    AmbiguousTrace = "ambiguous_trace",
    CorruptCapture = "corrupt_capture",
    Forbidden = "forbidden",
    HeadersTooLarge = "headers_too_large",
    IncompatibleSchedule = "incompatible_schedule",
    InferenceFailed = "inference_failed",
    Internal = "internal",
    InvalidAddress = "invalid_address",
    InvalidBaseline = "invalid_baseline",
    InvalidCsv = "invalid_csv",
    InvalidDatabaseUrl = "invalid_database_url",
    InvalidDeviceTable = "invalid_device_table",
    InvalidField = "invalid_field",
    InvalidFormat = "invalid_format",
    InvalidGeneration = "invalid_generation",
    InvalidJobId = "invalid_job_id",
    InvalidJson = "invalid_json",
    InvalidModelSet = "invalid_model_set",
    InvalidN = "invalid_n",
    InvalidOutput = "invalid_output",
    InvalidPacket = "invalid_packet",
    InvalidPath = "invalid_path",
    InvalidQuery = "invalid_query",
    InvalidRateScale = "invalid_rate_scale",
    InvalidRegulatorSettings = "invalid_regulator_settings",
    InvalidSchedule = "invalid_schedule",
    InvalidSeed = "invalid_seed",
    InvalidSetSize = "invalid_set_size",
    InvalidSets = "invalid_sets",
    InvalidSimulationSettings = "invalid_simulation_settings",
    InvalidTargetSettings = "invalid_target_settings",
    InvalidTokens = "invalid_tokens",
    InvalidUpload = "invalid_upload",
    InvalidWindowSettings = "invalid_window_settings",
    IoFailed = "io_failed",
    JobNotFinished = "job_not_finished",
    MethodNotAllowed = "method_not_allowed",
    MissingCover = "missing_cover",
    MissingDevice = "missing_device",
    MissingN = "missing_n",
    MissingTargets = "missing_targets",
    MissingTrace = "missing_trace",
    ModelSetInvalid = "model_set_invalid",
    NoCaptures = "no_captures",
    NoCover = "no_cover",
    NoDevice = "no_device",
    NoPackets = "no_packets",
    NoRoute = "no_route",
    NotACapture = "not_a_capture",
    NotAcceptable = "not_acceptable",
    OutputTooLarge = "output_too_large",
    Overloaded = "overloaded",
    QuotaExceeded = "quota_exceeded",
    RateLimited = "rate_limited",
    SpanTooLong = "span_too_long",
    StorageFailed = "storage_failed",
    StorageUnavailable = "storage_unavailable",
    Timeout = "timeout",
    TooLarge = "too_large",
    UnauthenticatedBind = "unauthenticated_bind",
    Unauthorized = "unauthorized",
    UnknownDevice = "unknown_device",
    UnknownField = "unknown_field",
    UnknownGeneration = "unknown_generation",
    UnknownJob = "unknown_job",
    UnknownModelSet = "unknown_model_set",
    UnsortedTrace = "unsorted_trace",
    UnsupportedMediaType = "unsupported_media_type",
    UriTooLong = "uri_too_long",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::str::FromStr for ErrorCode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s).ok_or_else(|| format!("unknown error code {s:?}"))
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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
            Error::Model(_) => ErrorCode::ModelSetInvalid,
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
