//! Service configuration: every setting a flag with an environment fallback.

use std::{net::IpAddr, path::PathBuf};

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "IPET_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "IPET_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Job store: `sqlite:<file>` (created when missing), `sqlite::memory:`, or `postgres://...`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite:ipet.sqlite3")]
    pub database_url: String,
    /// Most database connections in the pool.
    #[arg(long, env = "IPET_DB_MAX_CONNECTIONS", default_value_t = 8)]
    pub db_max_connections: u32,
    /// Milliseconds a request waits for a database connection; past it (the database is down or
    /// saturated) it is answered 503 with Retry-After.
    #[arg(long, env = "IPET_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 1000)]
    pub db_acquire_timeout_ms: u64,
    #[command(flatten)]
    pub models: ModelArgs,
    /// Further model sets served beside --models (the default), each chosen per request by its
    /// manifest's name (`?model_set=NAME`); repeat the flag or separate directories with commas.
    /// SIGHUP or `POST /model-sets/reload` reloads every set from its directory.
    #[arg(long = "model-set", env = "IPET_MODEL_SETS", value_delimiter = ',')]
    pub model_sets: Vec<std::path::PathBuf>,
    /// Largest `n` (windows) one perturbation request may ask for.
    #[arg(long, env = "IPET_MAX_N", default_value_t = 50_000)]
    pub max_n: usize,
    /// Requests handled at once; more get 429 with Retry-After instead of queueing forever.
    #[arg(long, env = "IPET_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// Seconds before a request is answered 503.
    #[arg(long, env = "IPET_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Connections held open at once; further ones wait in the listen backlog until one closes.
    /// The open-files limit is raised (or this lowered) at start to leave room for them.
    #[arg(long, env = "IPET_MAX_CONNECTIONS", default_value_t = 2048)]
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's headers, counted from its opening or
    /// from the end of its previous response: idle keep-alive connections, and half-sent or
    /// dripped headers, are closed after it.
    #[arg(long, env = "IPET_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// Largest request body in bytes (trace uploads).
    #[arg(long, env = "IPET_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
    #[command(flatten)]
    pub jobs: JobArgs,
    #[command(flatten)]
    pub access: AccessArgs,
}

/// Who may call the API.
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// File of bearer tokens, one per line: `<name> <sha256-hex> [scope,scope]` (scopes:
    /// perturbations, simulations, metrics, admin). `ipet token <name>` makes one.
    #[arg(long, env = "IPET_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Tokens inline, in the file's format, lines separated by `;`.
    #[arg(long, env = "IPET_TOKENS", hide_env_values = true)]
    pub tokens: Option<String>,
    /// Requests per minute each caller may make (0: unlimited); more get 429 with Retry-After.
    #[arg(long, env = "IPET_RATE_LIMIT_PER_MINUTE", default_value_t = 0)]
    pub rate_limit_per_minute: u32,
    /// Listen beyond loopback without tokens (anyone who reaches the port gets schedules, which
    /// are secrets). Without this flag an unauthenticated service binds to loopback only.
    #[arg(long, env = "IPET_ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,
}

/// Simulation workers.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// Simulation jobs this process runs at once (0: none; another replica runs them).
    #[arg(long, env = "IPET_SIM_WORKERS", default_value_t = 1)]
    pub sim_workers: usize,
    /// Seconds without a heartbeat after which a running job's worker is taken for dead and the
    /// job is run again.
    #[arg(long, env = "IPET_SIM_LEASE_SECS", default_value_t = 30)]
    pub sim_lease_secs: u64,
    /// Claims after which a job whose worker keeps dying is failed.
    #[arg(long, env = "IPET_SIM_MAX_ATTEMPTS", default_value_t = 3)]
    pub sim_max_attempts: i64,
    /// Longest trace span one simulation may cover, seconds (first to last packet; default two
    /// weeks).
    #[arg(long, env = "IPET_SIM_MAX_SPAN_SECS", default_value_t = crate::jobs::submit::DEFAULT_MAX_SPAN_SECS)]
    pub sim_max_span_secs: u64,
    /// Most output rows one simulation may produce (bounded before it is accepted; a run past it
    /// is stopped).
    #[arg(long, env = "IPET_SIM_MAX_OUTPUT_ROWS", default_value_t = 10_000_000)]
    pub sim_max_output_rows: u64,
    /// Unfinished (queued or running) simulations one caller may hold.
    #[arg(long, env = "IPET_SIM_MAX_ACTIVE_JOBS", default_value_t = 16)]
    pub sim_max_active_jobs: u64,
    /// Output packets per second one job may produce (0: unlimited), to keep simulations from
    /// starving schedule requests on a small machine.
    #[arg(long, env = "IPET_SIM_RATE_LIMIT", default_value_t = 0)]
    pub sim_rate_limit: u64,
}

impl JobArgs {
    pub fn worker_config(&self) -> crate::jobs::WorkerConfig {
        crate::jobs::WorkerConfig {
            workers: self.sim_workers,
            lease: std::time::Duration::from_secs(self.sim_lease_secs.max(1)),
            poll: std::time::Duration::from_secs(1),
            max_attempts: self.sim_max_attempts.max(1),
            rate_limit: self.sim_rate_limit,
            chunk: 256,
            max_output_rows: self.sim_max_output_rows,
        }
    }

    pub fn job_limits(&self) -> crate::jobs::submit::JobLimits {
        crate::jobs::submit::JobLimits {
            max_span_secs: self.sim_max_span_secs,
            max_output_rows: self.sim_max_output_rows,
            max_active_per_caller: self.sim_max_active_jobs.max(1),
        }
    }
}

/// Where the model set and ONNX Runtime are, and how inference runs.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Model set directory (holding manifest.json).
    #[arg(long, env = "IPET_MODELS", default_value = "models/tj-oconnor-2021")]
    pub models: PathBuf,
    /// ONNX Runtime shared library (libonnxruntime.so.1.x). Default: the copy that
    /// scripts/onnxruntime.sh installs under .ort/, else the system's.
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_library: Option<PathBuf>,
    /// Inference threads, each owning a session of every generator (0: one per core).
    #[arg(long, env = "IPET_INFERENCE_THREADS", default_value_t = 0)]
    pub inference_threads: usize,
    /// Most noise rows one batched generator run may carry.
    #[arg(long, env = "IPET_MAX_BATCH_ROWS", default_value_t = 8192)]
    pub max_batch_rows: usize,
}

impl ModelArgs {
    pub fn engine_config(&self) -> crate::models::EngineConfig {
        let threads = match self.inference_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        crate::models::EngineConfig {
            ort_library: self.ort_library.clone().or_else(find_bundled_ort),
            threads,
            max_batch_rows: self.max_batch_rows,
        }
    }
}

/// `libonnxruntime.so.*` under `.ort/` (where scripts/onnxruntime.sh puts the PyPI wheel's copy),
/// looked for beside the working directory and the executable's ancestors.
fn find_bundled_ort() -> Option<PathBuf> {
    let mut roots = vec![std::env::current_dir().ok()?];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(|p| p.to_path_buf()));
    }
    roots.iter().find_map(|root| {
        let capi = root.join(".ort/onnxruntime/capi");
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so.")))
            .collect();
        libs.sort();
        libs.pop()
    })
}
