//! The HTTP/1.1 server loop: hyper over a bound listener, with a limit on connections held at
//! once and a timeout on request heads; the router (see [`super::router`]) answers every request.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::config::ServeConfig;

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

/// How long a stopping service lets requests in flight finish: with the runtime's own shutdown
/// (`cli::run`) the process exits within 30 s of SIGTERM.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(25);

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves: at most `max_connections` at once
/// (more wait in the backlog), each closed when a request's head takes longer than
/// `header_timeout` (idle keep-alive included). Then waits up to [`DRAIN`] for requests in flight.
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
        // Above the router's own limits (super::MAX_HEADERS, MAX_HEADER_BYTES), so that an
        // oversized head gets the JSON error body from the router; heads past this buffer get
        // hyper's own 414/431, rewritten with the JSON body (super::unreadable_head).
        .max_headers(4 * super::MAX_HEADERS)
        .max_buf_size(4 * (super::MAX_HEADER_BYTES + super::MAX_URI_BYTES));
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
        let stream = super::unreadable_head::JsonHeadErrors::new(stream);
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
        _ = tokio::time::sleep(DRAIN) => {
            tracing::warn!(drain_s = DRAIN.as_secs(), "requests still in flight; closing");
        }
    }
}
