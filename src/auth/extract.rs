//! Extractors that give handlers the current user, parsed once.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{header, request::Parts, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tower_sessions::Session;

use super::{
    jwt::TokenKind,
    tokens::{self, Scope},
};
use crate::{
    error::AppError,
    state::AppState,
    store::users::{self, User, UserSummary},
};

/// How an API request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The pages' session cookie.
    Session,
    /// A JWT access token (`POST /api/auth/sign-in`).
    AccessToken,
    /// A personal API token, with its scope.
    PersonalToken(Scope),
}

/// Any valid credential of an API request, whatever its scope: for the few routes that
/// decide for themselves what a credential may do (token management, socket tickets).
pub struct ApiAuth {
    pub user: User,
    pub via: Via,
}

/// The user behind an API request: a bearer token (JWT or personal token), or the pages'
/// session cookie. A read-only personal token gets 403 on anything but a read.
pub struct ApiUser(pub User);

/// The user behind an API request as id and name only, which is all the hot paths
/// (sending, reading a conversation) need: a JWT's user comes from the directory, without
/// a database round trip. Scope as for [`ApiUser`].
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

/// The user id and credentials fingerprint of a valid JWT of `kind`, unless an operator
/// disabled the account or signed it out everywhere since the token was issued.
fn token_claims(
    state: &AppState,
    token: &str,
    kind: TokenKind,
) -> Result<(i32, Option<String>), AppError> {
    let claims = state
        .jwt
        .verify(token, kind)
        .ok_or(AppError::Unauthorized)?;
    let user_id = i32::try_from(claims.user_id).map_err(|_| AppError::Unauthorized)?;
    if !state.access.allows(user_id, Some(claims.issued_at())) {
        return Err(AppError::Unauthorized);
    }
    crate::telemetry::record_user(user_id);
    Ok((user_id, claims.fp))
}

/// The user a valid JWT of `kind` names, if that user still exists and the token was
/// issued with their current credentials.
pub async fn user_from_token(
    state: &AppState,
    token: &str,
    kind: TokenKind,
) -> Result<User, AppError> {
    let (user_id, fp) = token_claims(state, token, kind)?;
    match users::by_id(&state.db, user_id).await? {
        Some(user) if fp.as_deref() == Some(user.fingerprint().as_str()) => Ok(user),
        _ => Err(AppError::Unauthorized),
    }
}

/// The user of a bearer token (JWT or personal token) and how it authenticated.
async fn user_from_bearer(state: &AppState, token: &str) -> Result<(User, Via), AppError> {
    if tokens::is_personal(token) {
        let (user_id, scope) = tokens::authenticate(state, token).await?;
        crate::telemetry::record_user(user_id);
        let user = users::by_id(&state.db, user_id)
            .await?
            .ok_or(AppError::Unauthorized)?;
        return Ok((user, Via::PersonalToken(scope)));
    }
    let user = user_from_token(state, token, TokenKind::Access).await?;
    Ok((user, Via::AccessToken))
}

/// 403 for a read-only token on anything but a read.
fn check_scope(parts: &Parts, via: Via) -> Result<(), AppError> {
    let read = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    if via == Via::PersonalToken(Scope::Read) && !read {
        return Err(AppError::Forbidden(
            "this API token is read-only: make a read_write token to change anything".into(),
        ));
    }
    Ok(())
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
        Some(user)
            if super::fingerprint_matches(&user, &fingerprint)
                && state.access.allows(user.user_id, None) =>
        {
            crate::telemetry::record_user(user.user_id);
            let ip = ClientIp::from_request_parts(parts, state)
                .await
                .map(|ClientIp(ip)| ip)
                .ok();
            super::touch(&session, ip).await;
            Ok(Some(user))
        }
        // The password changed in another session, the account was disabled, or it is gone.
        _ => {
            let _ = session.flush().await;
            Ok(None)
        }
    }
}

impl FromRequestParts<AppState> for ApiAuth {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match access_token(parts)? {
            Some(token) => {
                let (user, via) = user_from_bearer(state, token).await?;
                Ok(ApiAuth { user, via })
            }
            None => user_from_session_parts(parts, state)
                .await?
                .map(|user| ApiAuth {
                    user,
                    via: Via::Session,
                })
                .ok_or(AppError::Unauthorized),
        }
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ApiAuth { user, via } = ApiAuth::from_request_parts(parts, state).await?;
        check_scope(parts, via)?;
        Ok(ApiUser(user))
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match access_token(parts)? {
            Some(token) if !tokens::is_personal(token) => {
                let (user_id, fp) = token_claims(state, token, TokenKind::Access)?;
                match state.directory.with_fingerprint(&state.db, user_id).await? {
                    Some((user, current)) if fp.as_deref() == Some(&*current) => {
                        Ok(ApiCaller(user))
                    }
                    _ => Err(AppError::Unauthorized),
                }
            }
            _ => {
                let ApiUser(user) = ApiUser::from_request_parts(parts, state).await?;
                Ok(ApiCaller(UserSummary::from(&user)))
            }
        }
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

/// Only local paths are followed after sign-in (no open redirect). Browsers drop tabs and
/// line breaks from URLs and read `\` as `/`, so `/\t/evil.example` is `//evil.example`
/// to them: any control character, whitespace or backslash refuses the path outright
/// (a control character would not even fit in a `Location` header).
pub fn safe_next(next: Option<&str>) -> String {
    const FALLBACK: &str = "/chats";
    let Some(next) = next else {
        return FALLBACK.to_string();
    };
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2048
        && !next
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
        && !next.contains("://");
    if local {
        next.to_string()
    } else {
        FALLBACK.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_plain_local_paths_are_followed() {
        for ok in [
            "/friends",
            "/chats/@bob?x=1",
            "/chats/g/4#end",
            "/%2F%2Fevil",
        ] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for evil in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r//evil.example",
            "/ /evil.example",
            "/\u{0}x",
            "/\u{7f}x",
            "/\u{85}x",
            "/\u{2028}/evil.example",
            "evil.example",
            "",
        ] {
            assert_eq!(safe_next(Some(evil)), "/chats", "{evil:?}");
        }
        assert_eq!(safe_next(None), "/chats");
    }
}
