//! CSRF protection for requests authenticated by the session cookie.
//!
//! A state-changing request (not GET/HEAD/OPTIONS) is refused with 403 when its
//! `Origin` names another site, or when it carries our session cookie but not the
//! session's token, in the `X-CSRF-Token` header (htmx sends it through `hx-headers`) or
//! a `csrf_token` form field (a multipart form's first field). Requests with a bearer
//! token are exempt: a browser never attaches one by itself.

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::{header, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_sessions::Session;

use crate::{error::AppError, state::AppState};

pub const SESSION_COOKIE: &str = "messenger_session";
pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf_token";
const MAX_FORM_BYTES: usize = 64 * 1024;

pub async fn protect(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn check(state: &AppState, request: Request) -> Result<Request, AppError> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return Ok(request);
    }
    if request.headers().contains_key(header::AUTHORIZATION) {
        return Ok(request);
    }
    if !same_origin(state, &request) {
        return Err(AppError::Forbidden("cross-site request refused".into()));
    }
    if !has_session_cookie(&request) {
        return Ok(request);
    }
    let session = request
        .extensions()
        .get::<Session>()
        .cloned()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("session layer missing")))?;
    let expected = super::stored_csrf_token(&session).await;
    let (request, presented) = presented_token(request).await?;
    match (expected, presented) {
        (Some(expected), Some(presented))
            if constant_time_eq(expected.as_bytes(), presented.as_bytes()) =>
        {
            Ok(request)
        }
        _ => Err(AppError::Forbidden(
            "invalid or missing CSRF token; reload the page and try again".into(),
        )),
    }
}

fn same_origin(state: &AppState, request: &Request) -> bool {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let host = state
        .config
        .trust_proxy
        .then(|| request.headers().get("x-forwarded-host"))
        .flatten()
        .or_else(|| request.headers().get(header::HOST))
        .and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn has_session_cookie(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .any(|c| c.trim().starts_with(&format!("{SESSION_COOKIE}=")))
}

/// The token from the header, else from the form body (which is put back for the handler).
async fn presented_token(request: Request) -> Result<(Request, Option<String>), AppError> {
    if let Some(token) = request.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        let token = token.to_string();
        return Ok((request, Some(token)));
    }
    if crate::attachments::upload::is_multipart(request.headers()) {
        // A form with files, posted without JavaScript: the token is its first field.
        return crate::attachments::upload::first_field(request, FIELD, MAX_FORM_BYTES).await;
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| AppError::PayloadTooLarge("form too large".into()))?;
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == FIELD)
        .map(|(_, v)| v.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
