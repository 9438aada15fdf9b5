//! Extractors that give handlers the current user, parsed once.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tower_sessions::Session;

use super::jwt::TokenKind;
use crate::{
    error::AppError,
    state::AppState,
    store::users::{self, User, UserSummary},
};

/// The user behind an API request: a bearer token, or the pages' session cookie.
pub struct ApiUser(pub User);

/// The user behind an API request as id and name only, which is all the hot paths
/// (sending, reading a conversation) need: a bearer token's user comes from the
/// directory, without a database round trip.
pub struct ApiCaller(pub UserSummary);

/// The signed-in user of a page; anyone else is sent to `/login?next=…`.
pub struct PageUser(pub User);

/// The signed-in user of a page, if any.
pub struct MaybePageUser(pub Option<User>);

/// The bearer token of the request, if it has an `Authorization: Bearer` header.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// An API request's access token: `None` without an `Authorization` header (the pages'
/// session cookie may stand in), 401 when the header is not a bearer token.
fn access_token(parts: &Parts) -> Result<Option<&str>, AppError> {
    if !parts.headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    bearer_token(parts).map(Some).ok_or(AppError::Unauthorized)
}

/// The user id a valid token of `kind` names.
fn token_user_id(state: &AppState, token: &str, kind: TokenKind) -> Result<i32, AppError> {
    let claims = state
        .jwt
        .verify(token, kind)
        .ok_or(AppError::Unauthorized)?;
    let user_id = i32::try_from(claims.user_id).map_err(|_| AppError::Unauthorized)?;
    crate::telemetry::record_user(user_id);
    Ok(user_id)
}

/// The user a valid token of `kind` names, if that user still exists.
pub async fn user_from_token(
    state: &AppState,
    token: &str,
    kind: TokenKind,
) -> Result<User, AppError> {
    users::by_id(&state.db, token_user_id(state, token, kind)?)
        .await?
        .ok_or(AppError::Unauthorized)
}

pub async fn user_from_session_parts(
    parts: &mut Parts,
    state: &AppState,
) -> Result<Option<User>, AppError> {
    let Ok(session) = Session::from_request_parts(parts, state).await else {
        return Ok(None);
    };
    let Some((user_id, fingerprint)) = super::session_user_id(&session).await? else {
        return Ok(None);
    };
    match users::by_id(&state.db, user_id).await? {
        Some(user) if super::fingerprint_matches(&user, &fingerprint) => {
            crate::telemetry::record_user(user.user_id);
            Ok(Some(user))
        }
        // The password changed in another session, or the account is gone.
        _ => {
            let _ = session.flush().await;
            Ok(None)
        }
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match access_token(parts)? {
            Some(token) => user_from_token(state, token, TokenKind::Access)
                .await
                .map(ApiUser),
            None => user_from_session_parts(parts, state)
                .await?
                .map(ApiUser)
                .ok_or(AppError::Unauthorized),
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match access_token(parts)? {
            Some(token) => {
                let user_id = token_user_id(state, token, TokenKind::Access)?;
                state.directory.by_id(&state.db, user_id).await?
            }
            None => user_from_session_parts(parts, state)
                .await?
                .map(|user| UserSummary::from(&user)),
        }
        .map(ApiCaller)
        .ok_or(AppError::Unauthorized)
    }
}

impl FromRequestParts<AppState> for MaybePageUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        user_from_session_parts(parts, state)
            .await
            .map(MaybePageUser)
    }
}

/// Sends a visitor to the sign-in page, remembering where they wanted to go.
pub struct LoginRedirect {
    next: String,
    htmx: bool,
}

impl IntoResponse for LoginRedirect {
    fn into_response(self) -> Response {
        let location = format!(
            "/login?next={}",
            utf8_percent_encode(&self.next, NON_ALPHANUMERIC)
        );
        if self.htmx {
            // htmx follows this header with a full page load instead of swapping a fragment.
            let mut response = StatusCode::NO_CONTENT.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert("HX-Redirect", value);
            }
            response
        } else {
            Redirect::to(&location).into_response()
        }
    }
}

impl FromRequestParts<AppState> for PageUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match user_from_session_parts(parts, state).await {
            Ok(Some(user)) => Ok(PageUser(user)),
            Ok(None) => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/")
                    .to_string();
                let htmx = crate::web::is_htmx(&parts.headers);
                Err(LoginRedirect { next, htmx }.into_response())
            }
            Err(e) => Err(e.into_response()),
        }
    }
}

/// The client's address: the socket peer, or with `TRUST_PROXY=true` the address the
/// nearest proxy appended to `X-Forwarded-For`.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.config.trust_proxy {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|ip| ip.trim().parse().ok());
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(ClientIp(peer))
    }
}

/// Only local paths are followed after sign-in (no open redirect).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains("://") =>
        {
            n.to_string()
        }
        _ => "/chats".to_string(),
    }
}
