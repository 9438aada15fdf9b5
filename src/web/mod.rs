//! The server-rendered pages: one module per area, each with its `router()`, handlers
//! and templates. Pages are thin: they parse input, call `accounts` or `store`, render.

mod account;
pub mod attachments;
pub mod avatar;
mod chats;
mod friends;
pub mod live;
mod render;
pub mod rich;

use askama::Template;
use axum::{
    extract::{FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use serde::Deserialize;
use tower_sessions::Session;

use crate::{
    auth::{
        csrf::{anonymous_token, CsrfNonce},
        csrf_token,
        extract::user_from_session_parts,
        MaybePageUser, PageUser,
    },
    error::{AppError, AppResult, RenderedError},
    state::AppState,
    store::{
        friends as friend_store,
        users::{self, User},
    },
};

pub use render::render;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .merge(account::router())
        .merge(chats::router())
        .merge(friends::router())
        .merge(rich::router())
        .route("/events", get(live::page_events))
        .route("/nav/badge", get(badge))
        .route("/nav/unread", get(unread))
        .fallback(|| async { AppError::not_found("This page does not exist.") })
}

/// What the shared layout needs: who is signed in, the CSRF token for forms and htmx,
/// where the live stream starts, and the pending-requests badge.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub username: Option<String>,
    pub csrf: String,
    pub last_event_id: i64,
    pub pending_requests: i64,
    pub section: &'static str,
    /// Unread messages of chats not muted, when the page already knows it (the chat
    /// pages); other pages fetch it (`/nav/unread`).
    pub unread_total: Option<i64>,
}

impl Layout {
    pub fn signed_in(&self) -> bool {
        self.username.is_some()
    }
}

/// A signed-in page's user and layout.
pub struct Ctx {
    pub user: User,
    pub layout: Layout,
    pub htmx: bool,
    /// htmx asks for the chat screen's right pane alone (switching chats), not the page.
    pub pane: bool,
    /// htmx restores a page from history (the back button): it wants the whole page.
    pub restore: bool,
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let PageUser(user) = PageUser::from_request_parts(parts, state).await?;
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, m)| AppError::Internal(anyhow::anyhow!(m)).into_response())?;
        let csrf = csrf_token(&session)
            .await
            .map_err(IntoResponse::into_response)?;
        let counts = friend_store::counts(&state.db, user.user_id)
            .await
            .map_err(|e| AppError::from(e).into_response())?;
        let layout = Layout {
            username: Some(user.username.clone()),
            csrf,
            last_event_id: state.events.watermark(),
            pending_requests: counts.get("received").copied().unwrap_or(0),
            section: "",
            unread_total: None,
        };
        Ok(Ctx {
            user,
            layout,
            htmx: is_htmx(&parts.headers),
            pane: is_pane_request(&parts.headers),
            restore: parts.headers.contains_key("hx-history-restore-request"),
        })
    }
}

/// An anonymous page's layout (sign-in, sign-up, forgotten password), with the stateless
/// CSRF token of the visitor's nonce: showing these pages writes no session.
pub struct AnonCtx {
    pub layout: Layout,
    pub htmx: bool,
    pub signed_in: bool,
}

impl FromRequestParts<AppState> for AnonCtx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let signed_in = user_from_session_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?
            .is_some();
        let nonce = parts.extensions.get::<CsrfNonce>().ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("CSRF layer missing")).into_response()
        })?;
        let csrf = anonymous_token(state, &nonce.0);
        Ok(AnonCtx {
            layout: Layout {
                csrf,
                ..Layout::default()
            },
            htmx: is_htmx(&parts.headers),
            signed_in,
        })
    }
}

/// Whether htmx sent the request (it then wants a fragment or `HX-Redirect`, not a page).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.get("hx-request").is_some_and(|v| v == "true")
}

/// Whether htmx asks to swap `#pane` (the chat screen's right pane). A history restore
/// (the back button after the cache missed) wants the whole page instead.
pub fn is_pane_request(headers: &HeaderMap) -> bool {
    is_htmx(headers)
        && headers.get("hx-target").is_some_and(|v| v == "pane")
        && headers.get("hx-history-restore-request").is_none()
}

/// The path of the page htmx sent a request from (`HX-Current-URL`), if any.
pub fn current_page_path(headers: &HeaderMap) -> Option<String> {
    let url = headers.get("hx-current-url")?.to_str().ok()?;
    url::Url::parse(url).ok().map(|u| u.path().to_string())
}

/// A form that names one user (friend actions, group members).
#[derive(Deserialize)]
pub struct UsernameInput {
    #[serde(default)]
    pub username: String,
}

impl UsernameInput {
    /// The user the form names, or 404 `no such user exists`.
    pub async fn user(&self, state: &AppState) -> AppResult<User> {
        users::named(&state.db, &self.username).await
    }
}

/// After a successful form post: htmx follows `HX-Redirect`; a plain form gets a 303.
pub fn redirect(htmx: bool, to: &str) -> Response {
    if htmx {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert("HX-Redirect", v);
        }
        r
    } else {
        Redirect::to(to).into_response()
    }
}

async fn home(MaybePageUser(user): MaybePageUser) -> Redirect {
    match user {
        Some(_) => Redirect::to("/chats"),
        None => Redirect::to("/login"),
    }
}

async fn badge(ctx: Ctx) -> Result<Html<String>, AppError> {
    render(&render::Badge {
        count: ctx.layout.pending_requests,
    })
}

/// The navigation's unread count, for pages without the chats list.
async fn unread(
    axum::extract::State(state): axum::extract::State<AppState>,
    ctx: Ctx,
) -> Result<Html<String>, AppError> {
    render(&render::Unread {
        count: chats::unread_total(&state, ctx.user.user_id).await?,
        oob: false,
    })
}

/// What a browser or a script gets when something fails, whichever layer failed: a
/// handler's `AppError`, the CSRF check, the body limit (413), the timeout (408), a panic
/// (500) or the router (404, 405). A page gets the error page, or for htmx a short text
/// that `app.js` shows next to the form that failed; the API gets JSON `{"detail": …}`.
/// Applied around every route (`startup::router`), outside the layers that can fail.
pub async fn shape_errors(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let api = path == "/api" || path.starts_with("/api/");
    let asset = path.starts_with("/static/");
    let htmx = is_htmx(request.headers());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || asset {
        return response;
    }
    let rendered = response.extensions().get::<RenderedError>().cloned();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if api {
        if content_type.starts_with("application/json") {
            return response;
        }
        let detail = rendered
            .map(|r| r.message)
            .unwrap_or_else(|| generic_message(status).to_string());
        return replace_body(
            response,
            "application/json",
            serde_json::json!({ "detail": detail }).to_string(),
        );
    }
    if rendered.is_none() && content_type.starts_with("text/html") {
        return response;
    }
    let message = rendered
        .map(|r| r.message)
        .unwrap_or_else(|| generic_message(status).to_string());
    if htmx {
        return replace_body(response, "text/plain; charset=utf-8", message);
    }
    let page = render::ErrorPage {
        layout: Layout::default(),
        status: status.as_u16(),
        message,
    };
    match page.render() {
        Ok(html) => replace_body(response, "text/html; charset=utf-8", html),
        Err(_) => response,
    }
}

/// The same status and headers (request id, security headers, `Retry-After`,
/// `WWW-Authenticate`), another body.
fn replace_body(response: Response, content_type: &'static str, body: String) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// What to say about an error no handler explained.
fn generic_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "This page does not exist.",
        StatusCode::METHOD_NOT_ALLOWED => "Method Not Allowed",
        StatusCode::REQUEST_TIMEOUT => "The request took too long. Please try again.",
        StatusCode::PAYLOAD_TOO_LARGE => "That was too large to send.",
        StatusCode::FORBIDDEN => "You cannot do that. Reload the page and try again.",
        StatusCode::TOO_MANY_REQUESTS => "Too many requests. Please wait a moment and try again.",
        StatusCode::UNAUTHORIZED => "Could not validate credentials",
        s if s.is_server_error() => "Something went wrong on our side. Please try again.",
        _ => "That did not work. Please check and try again.",
    }
}

#[cfg(test)]
mod tests {
    use axum::{
        body::{to_bytes, Body},
        http::{header, Request, StatusCode},
        middleware,
        routing::get,
        Router,
    };
    use tower::ServiceExt;

    /// What `TimeoutLayer` answers (408, no body) reaches each kind of client in its form.
    #[tokio::test]
    async fn a_timeout_reaches_a_page_as_html_htmx_as_text_and_the_api_as_json() {
        let timed_out = || async { StatusCode::REQUEST_TIMEOUT };
        let app = Router::new()
            .route("/chats", get(timed_out))
            .route("/api/users/", get(timed_out))
            .layer(middleware::from_fn(super::shape_errors));
        let call = |path: &str, htmx: bool| {
            let mut request = Request::get(path);
            if htmx {
                request = request.header("hx-request", "true");
            }
            app.clone().oneshot(request.body(Body::empty()).unwrap())
        };
        for (path, htmx, content_type, text) in [
            ("/chats", false, "text/html", "<!doctype html>"),
            ("/chats", true, "text/plain", "The request took too long"),
            (
                "/api/users/",
                false,
                "application/json",
                r#"{"detail":"The request took too long. Please try again."}"#,
            ),
        ] {
            let response = call(path, htmx).await.unwrap();
            assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
            assert!(response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(content_type));
            let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(body.contains(text), "{path} {htmx}: {body}");
        }
    }
}
