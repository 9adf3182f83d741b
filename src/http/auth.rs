//! Bearer tokens over HTTP: the middleware that resolves the [`Caller`] of every request (see
//! [`crate::auth`] for tokens and scopes), and the extractor handlers take it with.

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    app::AppState,
    auth::Caller,
    error::{Error, Result},
};

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| Error::Internal("no caller on the request".into()))
    }
}

/// Paths anyone may call: liveness, readiness, the docs and the spec.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/openapi.json") || path == "/docs" || path.starts_with("/docs/")
}

/// Resolves the caller (401 without a valid token), applies the per-caller rate limit (429), and
/// puts the [`Caller`] on the request for the handlers.
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if is_public(request.uri().path()) {
        request.extensions_mut().insert(Caller::anonymous());
        return next.run(request).await;
    }
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let caller = match state.auth.caller(authorization).and_then(|c| state.auth.check_rate(&c).map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return response;
        }
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}
