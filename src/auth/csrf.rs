//! CSRF protection for requests a browser could be made to send.
//!
//! A state-changing request (not GET/HEAD/OPTIONS) is refused with 403 when its `Origin`
//! names another site (other than those in `CORS_ALLOWED_ORIGINS`), or when it does not carry the right token, in the `X-CSRF-Token`
//! header (htmx sends it through `hx-headers`) or a `csrf_token` form field (a multipart form's first field):
//!
//! - a signed-in session's own token (made at sign-in, kept in the session);
//! - otherwise, for the pages (sign-in, sign-up, forgotten password), a stateless token:
//!   the HMAC of a random nonce that the browser holds in the `messenger_csrf` cookie
//!   (double submit). Anonymous visitors so cost no session row, and another site, which
//!   can neither read that cookie nor compute the HMAC, cannot forge a sign-in.
//!
//! Requests with a bearer token are exempt (a browser never attaches one by itself), and
//! so are API requests without a live session (scripts signing in with a password: no
//! ambient credential is involved).

use axum::{
    body::{to_bytes, Body},
    extract::{Request, State},
    http::{header, HeaderValue, Method},
    middleware::Next,
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tower_sessions::Session;

use crate::{error::AppError, state::AppState};

pub const SESSION_COOKIE: &str = "messenger_session";
/// The anonymous visitor's nonce (random, HttpOnly).
pub const NONCE_COOKIE: &str = "messenger_csrf";
pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf_token";
const MAX_FORM_BYTES: usize = 64 * 1024;

/// The nonce of this request's visitor: from their cookie, or made for this response.
#[derive(Debug, Clone)]
pub struct CsrfNonce(pub String);

/// The stateless token of a nonce: HMAC-SHA256 under a key derived from `JWT_SECRET`, so
/// every process computes the same one.
pub fn anonymous_token(state: &AppState, nonce: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(
        format!("csrf-v1:{}", state.config.jwt_secret.expose()).as_bytes(),
    )
    .expect("HMAC takes a key of any length");
    mac.update(nonce.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub async fn protect(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let nonce = cookie(&request, NONCE_COOKIE).filter(|n| n.len() == 64);
    let new_nonce = nonce.is_none() && wants_nonce(&request);
    let nonce = nonce.unwrap_or_else(crate::config::random_secret);
    request.extensions_mut().insert(CsrfNonce(nonce.clone()));
    let request = match check(&state, request, &nonce).await {
        Ok(request) => request,
        Err(e) => return e.into_response(),
    };
    let mut response = next.run(request).await;
    if new_nonce {
        let secure = if state.config.cookie_secure {
            "; Secure"
        } else {
            ""
        };
        let cookie = format!("{NONCE_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Lax{secure}");
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A page (not the API, an asset or an event stream) read by a visitor without a nonce.
fn wants_nonce(request: &Request) -> bool {
    let path = request.uri().path();
    request.method() == Method::GET
        && !path.starts_with("/api/")
        && !path.starts_with("/static/")
        && path != "/events"
}

async fn check(state: &AppState, request: Request, nonce: &str) -> Result<Request, AppError> {
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
    let session_token = match request.extensions().get::<Session>() {
        Some(session) if cookie(&request, SESSION_COOKIE).is_some() => {
            // A store that cannot be read is the database down: 503, not a refusal.
            super::stored_csrf_token(session).await?
        }
        _ => None,
    };
    let expected = match session_token {
        Some(token) => token,
        // No live session: the API takes scripts' passwords as they are; a page form
        // must carry the stateless token of the visitor's nonce.
        None if request.uri().path().starts_with("/api/") => return Ok(request),
        None if cookie(&request, NONCE_COOKIE).is_some() => anonymous_token(state, nonce),
        None => return Err(invalid()),
    };
    let (request, presented) = presented_token(request).await?;
    match presented {
        Some(presented) if constant_time_eq(expected.as_bytes(), presented.as_bytes()) => {
            Ok(request)
        }
        _ => Err(invalid()),
    }
}

fn invalid() -> AppError {
    AppError::Forbidden("invalid or missing CSRF token; reload the page and try again".into())
}

fn same_origin(state: &AppState, request: &Request) -> bool {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    // A front end the operator allowed (CORS_ALLOWED_ORIGINS): its requests still need the
    // session's CSRF token when they carry the session cookie.
    if state
        .config
        .cors_allowed_origins
        .iter()
        .any(|o| o == origin)
    {
        return true;
    }
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

/// The value of the request's cookie `name`, if it has one.
fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
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
