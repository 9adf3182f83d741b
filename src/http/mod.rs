//! The HTTP API: one module per resource, each registering its routes with their OpenAPI docs.

pub mod auth;
pub mod devices;
pub mod error;
pub mod format;
pub mod home_request;
pub mod ops;
pub mod perturbations;
mod schedule_body;
pub mod server;
mod simulation_input;
pub mod simulations;
mod unreadable_head;

use std::time::{Duration, Instant};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::DefaultBodyLimit,
    extract::{MatchedPath, Request},
    http::HeaderName,
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    app::AppState,
    error::{Error, ErrorCode},
};

/// Schemas that operations name only indirectly (through `value_type` or stored JSON), so that
/// every `$ref` of the document resolves.
#[derive(OpenApi)]
#[openapi(components(schemas(
    format::Format,
    crate::traffic::simulate::Summary,
    crate::traffic::HomeSummary,
    simulations::JobSummary,
    crate::jobs::SimulationParams,
    crate::jobs::HomeParams,
    crate::jobs::JobParams,
)))]
struct ComponentSchemas;

/// Bearer tokens on every operation that does not say otherwise.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A gateway token, when the service is configured with tokens"))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    info(
        title = "ipet",
        description = "Cover-traffic schedules from iPET generators (PETS 2023) for smart-home gateways.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "perturbations", description = "Cover-traffic schedules, kept as job records"),
        (name = "simulations", description = "Defended traffic and its cost, as durable jobs"),
        (name = "models", description = "The served model set"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
struct ApiDoc;

/// Every documented route.
pub fn api() -> OpenApiRouter<AppState> {
    let mut doc = ApiDoc::openapi();
    doc.merge(<ComponentSchemas as OpenApi>::openapi());
    OpenApiRouter::with_openapi(doc)
        .merge(perturbations::router())
        .merge(simulations::router())
        .merge(devices::router())
        .merge(ops::router())
}

/// The OpenAPI document generated from the routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The spec as a service serves it: every query parameter `n` has the `maximum` in force
/// (`--max-n`), not the default the committed spec states.
fn with_limits(mut spec: utoipa::openapi::OpenApi, max_n: usize) -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{RefOr, Schema, path::ParameterIn};
    for item in spec.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            for p in op.parameters.iter_mut().flatten() {
                if let RefOr::T(p) = p
                    && p.name == "n"
                    && p.parameter_in == ParameterIn::Query
                    && let Some(RefOr::T(Schema::Object(schema))) = &mut p.schema
                {
                    schema.maximum = Some(utoipa::Number::UInt(max_n));
                }
            }
        }
    }
    spec
}

/// The whole application: routes, docs, and the middleware stack.
pub fn router(state: AppState) -> Router {
    let (routes, spec) = api().split_for_parts();
    let spec = with_limits(spec, state.limits.max_n);
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = Duration::from_secs(state.limits.request_timeout_secs);
    let body_limit = state.limits.max_body_bytes;
    let shed = Shed(std::sync::Arc::new(tokio::sync::Semaphore::new(state.limits.max_concurrent_requests.max(1))));
    routes
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(|| async {
            Error::not_found(ErrorCode::NoRoute, "no such route; the API is described at /openapi.json and /docs")
        })
        .method_not_allowed_fallback(|req: Request| async move {
            Error::MethodNotAllowed(format!(
                "{} is not a method of {}; the API is described at /openapi.json and /docs",
                req.method(),
                req.uri().path()
            ))
        })
        .layer(middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(CompressionLayer::new())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: tower::BoxError| async move {
                    Error::Timeout(format!("the request took longer than {} s", timeout.as_secs()))
                }))
                .timeout(timeout),
        )
        .layer(middleware::from_fn(limit_head))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(CatchPanicLayer::custom(|_| Error::Internal("a handler panicked".into()).into_response()))
        .layer(middleware::from_fn_with_state(shed, shed_load))
}

/// Requests in the service at once (--max-concurrent-requests), counted before any work
/// (tracing, request ids, tokens, bodies, the database, the generators). One more waits for a
/// slot up to [`QUEUE_WAIT`] at no cost, then is answered 429: a client that retries at once
/// (a load generator) waits instead of spinning the CPU on refusals, so goodput stays near its
/// peak. Health, readiness and metrics are never shed.
/// How long a request waits for a slot before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Shed(std::sync::Arc<tokio::sync::Semaphore>);

async fn shed_load(axum::extract::State(shed): axum::extract::State<Shed>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics") {
        return next.run(req).await;
    }
    match tokio::time::timeout(QUEUE_WAIT, shed.0.clone().acquire_owned()).await {
        Ok(Ok(permit)) => {
            let response = next.run(req).await;
            drop(permit);
            response
        }
        Ok(Err(_)) | Err(_) => {
            metrics::counter!("ipet_http_shed_total").increment(1);
            Error::Overloaded("the service is at capacity; retry shortly".into()).into_response()
        }
    }
}

/// A job id from a path: 400 naming it when it is not a UUID.
pub(crate) fn parse_job_id(raw: &str) -> crate::error::Result<uuid::Uuid> {
    uuid::Uuid::parse_str(raw)
        .map_err(|_| Error::invalid(ErrorCode::InvalidJobId, format!("job id {raw:?} is not a UUID")))
}

/// Longest request target (path and query) read, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields, and their largest total size in bytes (names and values).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses request heads over the limits with the JSON error body (414, 431), before any work.
/// The HTTP server's own limits sit above these (see [`server::serve_connections`]), so that it is this answer a
/// client gets, not a bare status line.
async fn limit_head(req: Request, next: Next) -> Response {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > MAX_URI_BYTES {
        return Error::UriTooLong(format!("the request target is {uri} bytes; at most {MAX_URI_BYTES} are read"))
            .into_response();
    }
    let headers = req.headers();
    let bytes: usize = headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Error::HeadersTooLarge(format!(
            "the request has {} header fields of {bytes} bytes; at most {MAX_HEADERS} fields of {MAX_HEADER_BYTES} bytes are read",
            headers.len()
        ))
        .into_response();
    }
    next.run(req).await
}

/// A request method as a metrics label: the standard methods by name, any other `other`, so
/// that clients cannot make a series per made-up method (unbounded memory, an endless /metrics).
fn method_label(method: &axum::http::Method) -> &str {
    match method.as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE" | "CONNECT") => m,
        _ => "other",
    }
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method()).to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("ipet_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("ipet_http_request_duration_seconds", "route" => route).record(started.elapsed().as_secs_f64());
    response
}
