//! The data plane's error: a stable code (the project's one list, [`ErrorCode`]) and a message
//! naming the problem.
//!
//! The service's error type (`ipet::Error`) takes every one of these as it is; codes are listed
//! here, at the bottom, so that the data plane, the service, the CLI and the gateway share them.

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
    MissingMac = "missing_mac",
    MissingN = "missing_n",
    MissingTargets = "missing_targets",
    MissingTrace = "missing_trace",
    ModelSetInvalid = "model_set_invalid",
    NoCaptures = "no_captures",
    NoDevice = "no_device",
    NoPackets = "no_packets",
    NoRoute = "no_route",
    NotACapture = "not_a_capture",
    NotAHomeSimulation = "not_a_home_simulation",
    NotAcceptable = "not_acceptable",
    OutputTooLarge = "output_too_large",
    Overloaded = "overloaded",
    QuotaExceeded = "quota_exceeded",
    RateLimited = "rate_limited",
    SpanTooLong = "span_too_long",
    StorageFailed = "storage_failed",
    StorageUnavailable = "storage_unavailable",
    TargetsNotServed = "targets_not_served",
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

/// The codes as a string enum in the spec (the list is [`ErrorCode::ALL`]).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some("A stable machine-readable error code."))
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ErrorCode {}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input is not something we can read (not a capture, bad CSV, bad parameter).
    #[error("{message}")]
    InvalidInput { code: ErrorCode, message: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// A broken invariant of our own.
    #[error("{0}")]
    Internal(String),

    /// A failure of a layer above, raised through one of the data plane's callbacks (a row
    /// source, an output sink): carried as it is, and unwrapped again by that layer.
    #[error(transparent)]
    Upstream(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::InvalidInput { code, message: message.into() }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidInput { code, .. } => *code,
            Error::Io { .. } => ErrorCode::IoFailed,
            Error::Internal(_) | Error::Upstream(_) => ErrorCode::Internal,
        }
    }
}
